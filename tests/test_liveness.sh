#!/bin/bash
# test_liveness.sh — a slow node is waited for, a silent one is named. One
# long local step (the final flush, the root's walk of a directory SOURCE, a
# node's creation of the staging tree, the removal of the tree a copy
# replaces) is slowed on ONE node of four, root or not, well beyond the
# deadline a silent node gets (--timeout + 5 s for the root's wait,
# 2 x --timeout + 10 s for the other leaders'): the job must wait for it and
# succeed. A node that really stops in such a step is still named and the
# job ends.
MPI_TIMEOUT=${MPI_TIMEOUT:-120} # each job: well above the delays below
. "$(dirname "$0")/lib.sh"

# --timeout 2: the root gives a silent node 7 s, the others give the root 14 s.
mkfile "$WORK/src" 1048576
F="$WORK/f"
mkdir -p "$F"
same_files() { for r in 0 1 2 3; do cmp -s "$WORK/src" "$F/c.$r" || return 1; done; }

# 1. The final flush of rank 2 takes 9 s: the root hears it is still
# working, and tells ranks 1 and 3 (which voted at once) it still waits.
P2PBCAST_TEST_FLUSH_DELAY_MS=9000@2 run 4 -q --per-rank --timeout 2 --source-shared=no "$WORK/src" "$F/c.%r"
[ "$rcs" = "0x4 " ] && same_files
ok $? "the flush of rank 2 alone takes 9 s, --timeout 2: the job waits for it (statuses $rcs), four identical copies"
echo "$out" | grep 'error' | head -3 | diag
rm -f "$F"/c.*

# 2. The root's own flush takes 30 s: it tells every leader it is still
# working. (A leader waits up to 14 s for its vote to be taken, then 14 s
# more for the decision: the flush must outlast both.)
P2PBCAST_TEST_FLUSH_DELAY_MS=30000@0 run 4 -q --per-rank --timeout 2 --source-shared=no "$WORK/src" "$F/c.%r"
[ "$rcs" = "0x4 " ] && same_files
ok $? "the flush of the root alone takes 30 s, --timeout 2: the job waits for it (statuses $rcs), four identical copies"
echo "$out" | grep 'error' | head -3 | diag
rm -f "$F"/c.*

# A tree of 3,000 entries: 30 directories of 98 empty files and one of 5 KiB.
S="$WORK/tree"
D="$WORK/d"
mkdir -p "$S" "$D"
for i in $(seq 30); do
    mkdir "$S/d$i"
    (cd "$S/d$i" && touch f{2..99})
    head -c 5000 /dev/urandom > "$S/d$i/f1"
done
[ "$(find "$S" -mindepth 1 | wc -l)" -eq 3000 ] || echo "the tree does not have 3,000 entries" | diag
same_trees() { for r in 0 1 2 3; do diff -r --no-dereference "$S" "$D/x.$r" > /dev/null || return 1; done; }

# 3. The root's walk: 6 ms per entry, 18 s in all.
P2PBCAST_TEST_WALK_DELAY_US=6000@0 run 4 -q --per-rank --timeout 2 "$S" "$D/x.%r"
[ "$rcs" = "0x4 " ] && same_trees && only_these "$D" x.0 x.1 x.2 x.3
ok $? "the root walks a 3,000-entry SOURCE in 18 s, --timeout 2: the job waits for it (statuses $rcs), identical trees"
echo "$out" | grep 'error' | head -3 | diag
rm -rf "${D:?}"/x.*

# 4. Rank 2 creates its staging tree at 3 ms per entry, 9 s in all.
P2PBCAST_TEST_CREATE_DELAY_US=3000@2 run 4 -q --per-rank --timeout 2 "$S" "$D/x.%r"
[ "$rcs" = "0x4 " ] && same_trees && only_these "$D" x.0 x.1 x.2 x.3
ok $? "rank 2 creates its 3,000 entries in 9 s, --timeout 2: the job waits for it (statuses $rcs), identical trees"
echo "$out" | grep 'error' | head -3 | diag
rm -rf "${D:?}"/x.*

# 5. --force over the trees of a first run: rank 2 removes the 3,000
# entries of the tree it replaced at 3 ms each, 9 s in all.
run 4 -q --per-rank "$S" "$D/x.%r"
P2PBCAST_TEST_REMOVE_DELAY_US=3000@2 run 4 -q --per-rank --timeout 2 --force "$S" "$D/x.%r"
[ "$rcs" = "0x4 " ] && same_trees && only_these "$D" x.0 x.1 x.2 x.3
ok $? "--force: rank 2 removes the 3,000 entries of the tree it replaced in 9 s, --timeout 2: the job waits for it (statuses $rcs)"
echo "$out" | grep 'error' | head -3 | diag
rm -rf "${D:?}"/x.*

# 6. Rank 2 stops (SIGSTOP) while it creates its staging tree: its
# heartbeats stop with it, the root names it, the job ends.
( cd "$WORK" && P2PBCAST_TEST_CREATE_DELAY_US=3000@2 exec timeout --verbose -k 10 "$MPI_TIMEOUT" "$MPIRUN" \
    "${MPI_BASE_FLAGS[@]}" -np 4 "$P2PBCAST" -q --per-rank --timeout 2 "$S" "$D/x.%r" > "$WORK/out" 2>&1 )&
job=$!
pid=""
for _ in $(seq 300); do
    ls -A "$D" | grep -q '^\.x\.2\.p2pbcast-' && pid=$(rank_pid 2 2>/dev/null) && break
    sleep 0.05
done
[ -n "$pid" ] && kill -STOP "$pid"
wait "$job"
rc=$?
[ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
check_timeout "$(cat "$WORK/out")" "$MPIRUN -np 4 p2pbcast (rank 2 stopped)" && rc=124
[ -n "$pid" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] &&
    grep -Eq "no answer after .* from 1 node\(s\): .*\(rank 2\)" "$WORK/out" &&
    [ -z "$(ls "$D")" ]
ok $? "rank 2 stopped while creating its staging tree: job status $rc, the stopped rank named, no DEST_DIR"
# The job was aborted while the nodes held staging trees; what the launcher
# killed before it could remove its own, the next run removes.
run 4 -q --per-rank "$S" "$D/x.%r"
[ "$rcs" = "0x4 " ] && same_trees && only_these "$D" x.0 x.1 x.2 x.3
ok $? "the next run (statuses $rcs) removes the staging trees left behind and copies the tree"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag
done_testing
