#!/bin/bash
# test_big_chunks.sh — chunks above 16 MiB (the ceiling of fast links,
# issue 23) keep the slot pool bounded: without --slots a node takes 8 slots
# up to 16 MiB chunks and fewer beyond, so that the pool stays within
# 128 MiB (4 slots of 32 MiB); --slots still wins. Each copy is exact, with
# the ring and the trees, over tcp and mpi.
. "$(dirname "$0")/lib.sh"

mkfile "$WORK/src" $((70 * 1048576 + 12345))

# big CHUNK SLOTS SCHEDULE TRANSPORT [ARGS...]: one run on 3 ranks, -v; the
# plan line says SLOTS slots per node, every copy equals SOURCE.
big() {
    local chunk=$1 slots=$2 sched=$3 tr=$4
    shift 4
    run 3 --per-rank -v --source-shared=no -c "${chunk}M" --schedule "$sched" -t "$tr" "$@" "$WORK/src" "$WORK/d.%r"
    local st=0
    [ "$rcs" = "0x3 " ] || st=1
    grep -q "chunks of $chunk.00 MiB .*schedule $sched), $slots slots per node" <<< "$out" || st=1
    for r in 0 1 2; do
        cmp -s "$WORK/src" "$WORK/d.$r" || st=1
    done
    [ $st -eq 0 ] || diag <<< "$out"
    rm -f "$WORK"/d.*
    return $st
}

for tr in tcp mpi; do
    for sched in ring tree; do
        big 32 4 $sched $tr
        ok $? "-t $tr, $sched, -c 32M: 4 slots per node (pool 128 MiB), exact copies ($rcs)"
    done
done
big 16 8 tree tcp
ok $? "-c 16M: 8 slots per node (pool 128 MiB), exact copies ($rcs)"
big 32 6 ring tcp --slots 6
ok $? "-c 32M --slots 6: the 6 slots asked for, exact copies ($rcs)"
done_testing
