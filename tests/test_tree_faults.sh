#!/bin/bash
# test_tree_faults.sh — failures during the transfer of a directory SOURCE,
# as tests/test_faults.sh does for a file: a rank killed, a rank stopped, a
# full disk on one node. Each must end the job with a nonzero status within
# a bounded time, a message naming the node, and no DEST_DIR nor staging
# directory (.NAME.p2pbcast-XXXXXX) left on any node — except the one a
# killed or stopped rank could not remove itself, which the next run of the
# same DEST_DIR removes.
MPI_TIMEOUT=${MPI_TIMEOUT:-180} # each job: a fault must not hang it for long
. "$(dirname "$0")/lib.sh"

S="$WORK/src"
D="$WORK/d"
mkdir -p "$S/a/deep" "$S/b" "$S/empty" "$D"
# 96 files of 64 KiB (96 chunks of -c 64K), a few entries without data.
for i in $(seq 48); do
    head -c 65536 /dev/urandom > "$S/a/f$i"
    head -c 65536 /dev/urandom > "$S/b/g$i"
done
: > "$S/a/deep/empty file"
ln -s ../a/f1 "$S/b/link"
export P2PBCAST_TEST_READ_DELAY_MS=25 # ~2.4 s of reading: time to strike

# Start a 4-rank job in the background with mpirun's defaults (as users run it).
launch_flags=("${MPI_BASE_FLAGS[@]}")
start() {
    ( cd "$WORK" && exec timeout --verbose -k 10 "$MPI_TIMEOUT" "$MPIRUN" "${launch_flags[@]}" \
        -np 4 "$P2PBCAST" --per-rank -c 64K "$@" > "$WORK/out" 2>&1 )&
    job=$!
    t0=$SECONDS
}
wait_job() {
    wait "$job"
    rc=$?
    took=$((SECONDS - t0))
    check_timeout "$(cat "$WORK/out")" "$MPIRUN -np 4 p2pbcast (tree fault test)" && rc=124
}
# left_but RANK: nothing in $D (ls -a) but, at most, that rank's staging
# directory; RANK "" allows nothing at all.
left_but() {
    local extra
    extra=$(cd "$D" && ls -A | grep -v "^\.x\.${1:-none}\.p2pbcast-[A-Za-z0-9]\{6\}\$")
    [ -z "$extra" ] || { echo "left in $D: $extra" | diag; return 1; }
}
# The next run of the same DEST_DIR removes what a dead or stopped run left.
next_run_cleans() {
    P2PBCAST_TEST_READ_DELAY_MS=0 run 4 -q --per-rank "$S" "$D/x.%r"
    [ $rc -eq 0 ] && diff -r --no-dereference "$S" "$D/x.3" && only_these "$D" x.0 x.1 x.2 x.3
    ok $? "$1: the next run (status $rc) removes the staging directory left behind and copies the tree"
    rm -rf "${D:?}"/x.*
}

# 1. SIGKILL a receiver in the middle.
start --timeout 10 "$S" "$D/x.%r"
strike 9 2
wait_job
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "^p2pbcast: error: .*(rank 2)" "$WORK/out" && left_but 2
ok $? "tree, rank 2 killed mid-transfer: job status $rc after ${took}s, the dead rank named, no DEST_DIR, no other staging directory"
grep -q "% .* sent, [0-9,]* of 97 files" "$WORK/out"
ok $? "the progress line of a tree counts files (of 97)"
grep -m2 '% .* sent\|p2pbcast: error' "$WORK/out" | diag
next_run_cleans "after a kill"

# 1b. The same where the launcher lets the survivors run on (Open MPI with
# orte_abort_on_non_zero_status 0, srun --kill-on-bad-exit=0): the job still
# ends, naming rank 2, well before --timeout 600.
launch_flags=("${MPI_FLAGS[@]}")
start --timeout 600 "$S" "$D/x.%r"
launch_flags=("${MPI_BASE_FLAGS[@]}")
strike 9 2
wait_job
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "^p2pbcast: error: .*(rank 2)" "$WORK/out" && left_but 2
ok $? "tree, rank 2 killed, survivors kept running by the launcher, --timeout 600: the job ends (status $rc after ${took}s), rank 2 named"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag
next_run_cleans "after a kill (survivors kept running)"

# 2. SIGSTOP a receiver: the others time out, the root names it, the job
# ends; every rank that can run removes its staging directory.
start --timeout 3 "$S" "$D/x.%r"
strike STOP 1
wait_job
[ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -Eq "no answer after .* from 1 node\(s\): .*rank 1\)" "$WORK/out" && left_but 1
ok $? "tree, rank 1 stopped, --timeout 3: job status $rc after ${took}s, the stalled rank named, no DEST_DIR, no other staging directory"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag
[ "$took" -lt 60 ]; ok $? "a stopped rank does not hang a tree's job (ended after ${took}s)"
next_run_cleans "after a stop"

# 2b. A rank stopped for longer than --timeout, then continued before the
# root gives up on it (as a node back from a long swap storm or a frozen
# NFS mount): its peers have failed, it fails too and votes, so the job
# ends through the vote, not MPI_Abort; every rank removes its own staging
# directory, the continued one included: nothing at all is left.
start --timeout 3 "$S" "$D/x.%r"
strike STOP 1
for _ in $(seq 600); do grep -q "^p2pbcast: error" "$WORK/out" && break; sleep 0.05; done
[ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
wait_job
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "^p2pbcast: error: .*rank 1)" "$WORK/out" && left_but ""
ok $? "tree, rank 1 stopped past --timeout then continued: status $rc after ${took}s, rank 1 named, nothing left on any node"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag
rm -rf "${D:?}"/x.* "$D"/.x.* 2>/dev/null
unset P2PBCAST_TEST_READ_DELAY_MS

# 3. DEST's filesystem full on one node (rank 2): every rank fails before the
# transfer, rank 2 and the file are named, nothing left on any node.
mkdir -p "$WORK/n0" "$WORK/n1" "$WORK/n2" "$WORK/n3"
if mount -t tmpfs -o size=1m tmpfs "$WORK/n2" 2>/dev/null; then
    run 4 --per-rank "$S" "$WORK/n%r/x"
    [ "$rcs" = "4x4 " ] &&
        echo "$out" | grep -q "rank 2): DEST_DIR '$WORK/n2/x': cannot reserve 65536 bytes for '[ab]/[fg][0-9]*': No space left on device" &&
        [ -z "$(find "$WORK/n0" "$WORK/n1" "$WORK/n2" "$WORK/n3" -mindepth 1)" ]
    ok $? "tree, DEST full on rank 2: status 4 on every rank ($rcs), rank 2 and the file named, nothing left on any node"
    echo "$out" | grep 'error' | head -3 | diag
    umount "$WORK/n2"
else
    skip "tree, DEST full on one node: cannot mount a tmpfs here"
fi

# 3b. No inodes left on one node: the same, the entry named.
if mount -t tmpfs -o size=20m,nr_inodes=40 tmpfs "$WORK/n1" 2>/dev/null; then
    run 4 --per-rank "$S" "$WORK/n%r/x"
    [ "$rcs" = "4x4 " ] && echo "$out" | grep -q "rank 1): DEST_DIR '$WORK/n1/x': cannot create .*: No space left on device" &&
        [ -z "$(find "$WORK/n0" "$WORK/n1" "$WORK/n2" "$WORK/n3" -mindepth 1)" ]
    ok $? "tree, no inodes left on rank 1: status 4 on every rank ($rcs), the entry named, nothing left on any node"
    echo "$out" | grep 'error' | head -3 | diag
    umount "$WORK/n1"
else
    skip "tree, no inodes on one node: cannot mount a tmpfs here"
fi
done_testing
