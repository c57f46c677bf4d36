#!/bin/bash
# test_shared_tree.sh — the two trees fed by readers (issue 22,
# src/core/sched_shared_tree.c): with --source-shared=yes and the trees,
# the top of each tree reads its half of SOURCE and the trees carry it.
# One machine; every rank its own node (--per-rank), or nodes of K ranks
# (P2PBCAST_TEST_RANKS_PER_NODE). Which members read (leader = rank here):
# of 3 nodes 1 (even chunks) and 0 (odd), of 4 nodes 3 and 2, of 5 nodes
# 3 and 2.
#
# A reader whose SOURCE fails under it mid-copy, and a reader killed
# mid-copy, must end every rank without a copy, naming that node. (A reader
# that sees another file is caught by the root's re-reading:
# tests/test_shared_source.sh.)
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
. "$(dirname "$0")/lib.sh"

json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }
c=65536

# 1. Sizes 0, 1, c-1, c+1, 5 MiB + r on 3, 4 and 5 nodes: exact copies, two
# readers whose shares add up to SOURCE (one reader and the root alone for 0).
for np in 3 4 5; do
    bad=""
    for size in 0 1 $((c - 1)) $((c + 1)) $((5 * 1048576 + 12345)); do
        d="$WORK/m$np-$size"
        mkdir -p "$d"
        mkfile "$d/src" "$size"
        run "$np" -v --per-rank -c 64K --schedule tree --source-shared=yes --json "$d/j.json" "$d/src" "$d/dst.%r"
        want=2 says="the tops of the two trees each read half of it (readtree)"
        [ "$size" -eq 0 ] && want=1 says="source shared: no (empty SOURCE)"
        copies=1
        for ((i = 0; i < np; i++)); do cmp -s "$d/src" "$d/dst.$i" || copies=0; done
        if [ $rc -ne 0 ] || [ $same_rc -ne 0 ] || [ $copies -ne 1 ] ||
           [ "$(json "$d/j.json" source_readers)" != "$want" ] ||
           [ "$(json "$d/j.json" source_bytes_read)" != "$size" ] || ! echo "$out" | grep -qF "$says"; then
            bad="$bad $size"
            echo "$out" | grep -v '%' | tail -5 | diag
        fi
        rm -rf "$d"
    done
    [ -z "$bad" ]
    ok $? "np=$np, --schedule tree --source-shared=yes: sizes 0, 1, c-1, c+1, 5M+r copied exactly, two readers${bad:+ (failed:$bad)}"
done

# 2. Nodes of several ranks: 5 ranks as nodes of 2, 2 and 1; the leaders
# (ranks 0, 2, 4) write the copies; of these 3 nodes the root (member 0)
# and rank 2 (member 1) read.
S="$WORK/s"
mkdir -p "$S"
mkfile "$S/src" $((3 * 1048576 + 7))
P2PBCAST_TEST_RANKS_PER_NODE=2 run 5 -v -c 64K --schedule tree --source-shared=yes --json "$S/j.json" "$S/src" "$S/dst.%r"
[ "$rcs" = "0x5 " ] && cmp -s "$S/src" "$S/dst.0" && cmp -s "$S/src" "$S/dst.2" && cmp -s "$S/src" "$S/dst.4" &&
    only_these "$S" src j.json dst.0 dst.2 dst.4 && [ "$(json "$S/j.json" source_readers)" = 2 ] &&
    echo "$out" | grep -q "(readtree)"
ok $? "5 ranks on 3 nodes (2, 2, 1): every rank exits 0 ($rcs), the 3 leaders' copies exact, two readers"
echo "$out" | grep "read .* of SOURCE\|error" | diag
rm -f "$S"/dst.* "$S/j.json"

# 3. A hostile SOURCE at one reader: in tests/test_shared_source.sh, with
# --schedule tree.

H="$WORK/h"
mkdir -p "$H"
# shellcheck source=tests/hostile_lib.sh
. "$(dirname "$0")/hostile_lib.sh"

# 4. A reader's SOURCE fails under it mid-copy (truncated: only rank 3
# reads $H/other), and a reader killed mid-copy.
D="$WORK/d"
mkdir -p "$D"
mkfile "$H/src" $((96 * c))
cp "$H/src" "$H/other"
same_ctime "$H/src" "$H/other"
export P2PBCAST_TEST_READ_DELAY_MS=60 # 48 chunks per reader: ~2.9 s of reading
start() {
    : > "$WORK/rcs"
    ( cd "$WORK" && P2PBCAST_TEST_SOURCE_OF_RANK_3="$H/other" mpi_timeout "$MPIRUN" "${MPI_FLAGS[@]}" -np 4 bash -c \
        '"$@"; r=$?; echo $r >> "'"$WORK"'/rcs"; exit $r' _ "$P2PBCAST" -v --per-rank -c 64K --schedule tree \
        --source-shared=yes --timeout 10 "$H/src" "$D/x.%r" > "$WORK/out" 2>&1 ) &
    job=$!
}
finish() {
    wait "$job"
    rcs=$(sort "$WORK/rcs" | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
    check_timeout "$(cat "$WORK/out")" "$MPIRUN -np 4 p2pbcast (readtree fault test)" && rcs="timeout"
}
start
under_way || echo "the transfer never reported progress" | diag
truncate -s 100000 "$H/other"
finish
[ "$rcs" = "3x4 " ] && grep -q "(readtree)" "$WORK/out" &&
    grep -Eq "error: .*\(rank 3\): SOURCE '$H/other' (shrank|was modified) during the copy" "$WORK/out" &&
    [ -z "$(ls -A "$D")" ]
ok $? "reader rank 3's SOURCE truncated mid-copy: status 3 on every rank ($rcs), rank 3 named, nothing left"
grep "error:" "$WORK/out" | head -3 | diag

cp "$H/src" "$H/other"
same_ctime "$H/src" "$H/other"
rm -rf "${D:?}"/.x.* "${D:?}"/x.*
start
strike 9 3
finish
survivors=$(grep -c . "$WORK/rcs")
[ "$rcs" != "timeout" ] && ! grep -qx 0 "$WORK/rcs" && grep -q "(readtree)" "$WORK/out" &&
    grep -q "^p2pbcast: error: .*(rank 3)" "$WORK/out" &&
    [ -z "$(cd "$D" && ls -A | grep -v '^\.x\.3\.')" ]
ok $? "reader rank 3 killed mid-copy: no rank exits 0 ($rcs, $survivors ranks reported), rank 3 named, no copy left"
grep "error:" "$WORK/out" | head -3 | diag
unset P2PBCAST_TEST_READ_DELAY_MS
rm -rf "$H" "$D"

# 5. The model's --read-rate: SOURCE at 1 GB/s per client, 5 GB/s links:
# the root alone reaches 0.2 of F/B at any N; at 1,000 and 10,000 nodes the
# reader-fed trees take 3 pairs (6 readers: 6 GB/s of reads), and the root,
# which tops none of their trees, reads its sample during the transfer:
# >= 0.9; auto takes the allgather at 4 nodes and the reader-fed trees at
# 1,000; the root alone where it reads at 20 GB/s.
model=$("$(dirname "$P2PBCAST")/p2pbcast-model" -s 5G -n 4,1000,10000 -b 5GB/s --read-rate 1GB/s)
fast=$("$(dirname "$P2PBCAST")/p2pbcast-model" -s 5G -n 1000 -b 5GB/s --read-rate 20GB/s)
echo "$model" | awk '$1 == 4 && $5 == "0.200" && $NF == "allgather" { a = 1 }
                     $1 == 1000 && $5 == "0.200" && $8 $9 == "(G3)" && $10 >= 0.9 && $NF == "readtree" { b = 1 }
                     $1 == 10000 && $8 $9 == "(G3)" && $10 >= 0.9 && $NF == "readtree" { c = 1 }
                     END { exit !(a && b && c) }' &&
    echo "$fast" | awk '$1 == 1000 && $NF == "reads" { ok = 1 } END { exit !ok }'
ok $? "p2pbcast-model --read-rate: root 0.2 of F/B, reader-fed trees with 3 pairs >= 0.9 at 1,000 and 10,000 nodes, auto's picks at 4 and 1,000 nodes"
echo "$model" | diag
done_testing
