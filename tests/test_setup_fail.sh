#!/bin/bash
# test_setup_fail.sh — one node's slot pool cannot be allocated (test hook
# P2PBCAST_TEST_FAIL_ALLOC_RANK, as if memory ran out there). The others
# must not wait for it in the transport's set-up collectives: the job ends
# well before --timeout, every rank exits with status 6 (internal error:
# out of memory), the message names that rank and "memory", and no DEST is
# left. The fault is on ONE node of three, the root or another. The same
# for the bootstrap's node tables (P2PBCAST_TEST_FAIL_BOOT_ALLOC_RANK).
. "$(dirname "$0")/lib.sh"

# A hang would last at least --timeout (60 s); the bound below stops it
# before and makes it a failure, without timing anything.
export MPI_TIMEOUT=${SETUP_FAIL_TIMEOUT:-45}
mkfile "$WORK/src" $((3 * 1048576))

# check BAD WHAT: the last run ended (no timeout) with status 6 on every
# rank, rank BAD and "memory" named, and no DEST nor temporary file left.
check() {
    local bad=$1
    shift
    [ "$rc" -ne 124 ] && [ "$rcs" = "6x3 " ] &&
        grep -q "^p2pbcast: error: .*(rank $bad): .*memory" <<< "$out" &&
        only_these "$WORK" src rcs
    ok $? "$*, fails on rank $bad of 3: statuses $rcs(want 6x3), that rank and memory named, no DEST"
    diag <<< "$out"
}

for t in mpi tcp; do
    for bad in 1 0; do
        P2PBCAST_TEST_FAIL_ALLOC_RANK=$bad run 3 --per-rank -t "$t" --timeout 60 -c 1M \
            "$WORK/src" "$WORK/d.$t.%r"
        check $bad "-t $t, slot pool"
    done
done

# The same in the bootstrap, before any transport: the node tables cannot be
# allocated on one node (P2PBCAST_TEST_FAIL_BOOT_ALLOC_RANK). That node still
# takes part in the start-up collectives and the start-up vote stops all.
for bad in 1 0; do
    P2PBCAST_TEST_FAIL_BOOT_ALLOC_RANK=$bad run 3 --per-rank --timeout 60 "$WORK/src" "$WORK/d.boot.%r"
    check $bad "start-up, node tables"
done
done_testing
