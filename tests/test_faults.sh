#!/bin/bash
# test_faults.sh — failures during a transfer: a rank killed, a rank stopped,
# a full disk on one node, SOURCE changed mid-copy. Each must end the job
# with a nonzero status in bounded time, a message naming the node, and no
# DEST (nor temporary file) on any node.
. "$(dirname "$0")/lib.sh"

D="$WORK/d"
mkdir -p "$D"
mkfile "$WORK/src" $((96 * 65536))   # 96 chunks of 64 KiB
export P2PBCAST_TEST_READ_DELAY_MS=25 # ~2.4 s of reading: time to strike

# Start a 4-rank job in the background with mpirun's defaults (as users run it).
# --source-shared=no: the root alone reads, so the read delay above keeps the
# transfer going long enough to strike (shared reads would split it 4 ways;
# tests/test_shared_source.sh strikes shared reads).
launch_flags=("${MPI_BASE_FLAGS[@]}")
start() {
    ( cd "$WORK" && exec timeout --verbose -k 10 "$MPI_TIMEOUT" "$MPIRUN" "${launch_flags[@]}" \
        -np 4 "$P2PBCAST" --per-rank -c 64K --source-shared=no "$@" > "$WORK/out" 2>&1 )&
    job=$!
}
wait_job() {
    local t0=$SECONDS
    wait "$job"
    rc=$?
    took=$((SECONDS - t0))
    check_timeout "$(cat "$WORK/out")" "$MPIRUN -np 4 p2pbcast (fault test)" && rc=124
}
nothing_left() { only_these "$D" && [ -z "$(ls -A "$D")" ]; }

# 1. SIGKILL a receiver in the middle.
start --timeout 10 "$WORK/src" "$D/x.%r"
strike 9 2
wait_job
[ $rc -ne 0 ] && grep -q "^p2pbcast: error: .*(rank 2)" "$WORK/out" && nothing_left
ok $? "rank 2 killed mid-transfer: job status $rc after ${took}s, the dead rank is named, no DEST anywhere"
diag < "$WORK/out" 

# 1b. The same where the launcher lets the survivors run on (Open MPI with
# orte_abort_on_non_zero_status 0, srun --kill-on-bad-exit=0): the links to
# the dead rank fail, its partners tell the root, and the root stops
# waiting for its vote after a short grace instead of --timeout + 5 s.
launch_flags=("${MPI_FLAGS[@]}") # Open MPI: orte_abort_on_non_zero_status 0
start --timeout 600 "$WORK/src" "$D/x.%r"
launch_flags=("${MPI_BASE_FLAGS[@]}")
strike 9 2
wait_job
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "^p2pbcast: error: .*(rank 2)" "$WORK/out" && nothing_left
ok $? "rank 2 killed, survivors kept running by the launcher, --timeout 600: the job ends (status $rc), naming rank 2"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag

# 2. SIGSTOP a receiver: the others time out, the root names it, the job ends.
start --timeout 3 "$WORK/src" "$D/x.%r"
strike STOP 1
wait_job
kill -CONT "$pid" 2>/dev/null
[ $rc -ne 0 ] && grep -Eq "no answer after .* from 1 node\(s\): .*rank 1\)" "$WORK/out" && nothing_left
ok $? "rank 1 stopped: job status $rc after ${took}s (timeout 3 s), the stalled rank is named, no DEST"
grep 'p2pbcast: error' "$WORK/out" | head -3 | diag
[ "$took" -lt 60 ]; ok $? "a stalled rank does not hang the job (ended after ${took}s)"

# 2b. The same on a filesystem without O_TMPFILE (NFS, Lustre, GPFS): the
# copies are named hidden files. The root aborts the job: every rank that can
# still run removes its own before MPI_Abort; the stopped rank cannot, and
# the next run of the same DEST removes what it left.
export P2PBCAST_TEST_NO_TMPFILE=1
start --timeout 3 "$WORK/src" "$D/x.%r"
strike STOP 1
wait_job
kill -CONT "$pid" 2>/dev/null
left=$(cd "$D" && ls -A | tr '\n' ' ')
[ $rc -ne 0 ] && [ -z "$(cd "$D" && ls -A | grep -v '^\.x\.1\.p2pbcast-')" ]
ok $? "no O_TMPFILE, rank 1 stopped, job aborted: only the stopped rank's hidden copy is left (${left:-none})"
unset P2PBCAST_TEST_READ_DELAY_MS
: > "$D/.x.2.p2pbcast-Zz9Zz9" # as a SIGKILLed run leaves it: unlocked
run 4 -q --per-rank -c 64K "$WORK/src" "$D/x.%r"
only_these "$D" x.0 x.1 x.2 x.3 && cmp -s "$WORK/src" "$D/x.1"
ok $? "the next run of the same DEST removes a dead run's hidden copy (status $rc)"
rm -f "$D"/x.*
export P2PBCAST_TEST_READ_DELAY_MS=25
unset P2PBCAST_TEST_NO_TMPFILE

# 3. SOURCE changed while it is read.
cp "$WORK/src" "$WORK/src2"
start "$WORK/src2" "$D/x.%r"
under_way
echo more >> "$WORK/src2"
wait_job
[ $rc -eq 3 ] && grep -q "SOURCE '$WORK/src2' was modified during the copy" "$WORK/out" && nothing_left
ok $? "SOURCE appended to mid-copy: status $rc, reported, no DEST"
unset P2PBCAST_TEST_READ_DELAY_MS

# 4. DEST's filesystem full on one node: fails before the transfer.
mkdir -p "$WORK/n0" "$WORK/n1" "$WORK/n2"
if mount -t tmpfs -o size=1m tmpfs "$WORK/n2" 2>/dev/null; then
    run 3 --per-rank "$WORK/src" "$WORK/n%r/x"
    [ "$rcs" = "4x3 " ] && echo "$out" | grep -q "rank 2): cannot reserve 6291456 bytes for DEST '$WORK/n2/x': No space left on device" &&
        [ -z "$(find "$WORK/n0" "$WORK/n1" "$WORK/n2" -mindepth 1)" ]
    ok $? "DEST filesystem full on rank 2: status 4 on every rank ($rcs), named, nothing left"
    umount "$WORK/n2"
else
    skip "DEST filesystem full: cannot mount a tmpfs here"
fi
# 5. --resume: a failed run keeps hidden partial copies; the next run sends
# only what some node lacks; a kept copy that went bad is caught and dropped.
R="$WORK/r"
mkdir -p "$R"
mkfile "$R/src" $((46 * 65536 + 123))
P2PBCAST_TEST_CORRUPT_CHUNK=30 run 4 -q --resume --per-rank -c 64K "$R/src" "$R/d.%r"
kept=$(find "$R" -name '.d.*.p2pbcast-resume' | wc -l)
maps=$(find "$R" -name '.d.*.p2pbcast-resume.map' | wc -l)
[ "$rcs" = "1x4 " ] && [ "$kept" -eq 4 ] && [ "$maps" -eq 4 ] && [ -z "$(find "$R" -name 'd.*')" ]
ok $? "--resume: a failed run keeps a hidden copy and map on every node ($kept, $maps), no DEST"
run 4 -q --resume --per-rank -c 64K --json "$R/j.json" "$R/src" "$R/d.%r"
skipped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks_skipped"])' "$R/j.json" 2>/dev/null)
all=0
for i in 0 1 2 3; do cmp -s "$R/src" "$R/d.$i" || all=1; done
[ "$rcs" = "0x4 " ] && [ "$all" -eq 0 ] && [ "${skipped:-0}" -gt 0 ] && only_these "$R" src d.0 d.1 d.2 d.3 j.json
ok $? "--resume: the repeated run skips $skipped chunks every node held, copies exact, nothing hidden left"
rm -f "$R"/d.* "$R/j.json"
P2PBCAST_TEST_CORRUPT_CHUNK=30 run 4 -q --resume --per-rank -c 64K "$R/src" "$R/d.%r"
# Change, in rank 2's kept copy, a chunk every node's map says it holds (so
# the next run skips it): the maps are a 48-byte header, then a bitmap.
common=$(python3 - "$R" <<'PY'
import sys
maps = [open(f"{sys.argv[1]}/.d.{r}.p2pbcast-resume.map", "rb").read()[48:] for r in range(4)]
bits = [all(m[k // 8] >> (k % 8) & 1 for m in maps) for k in range(len(maps[0]) * 8)]
print(bits.index(True) if True in bits else -1)
PY
)
[ "${common:--1}" -ge 0 ] || echo "no chunk held by every node after the failed run" | diag
printf 'XXXX' | dd of="$R/.d.2.p2pbcast-resume" bs=1 seek=$((${common:-0} * 65536 + 100)) conv=notrunc status=none
run 4 -q --resume --per-rank -c 64K "$R/src" "$R/d.%r"
[ "${common:--1}" -ge 0 ] && [ "$rcs" = "1x4 " ] && echo "$out" | grep -q "rank 2): copy does not match SOURCE" &&
    [ -z "$(find "$R" -name '.d.*' -o -name 'd.*')" ]
ok $? "--resume: a kept copy changed on disk is caught by the digest and every kept copy is dropped"
run 4 -q --resume --per-rank -c 64K "$R/src" "$R/d.%r"
[ "$rcs" = "0x4 " ] && cmp -s "$R/src" "$R/d.2"; ok $? "--resume: the run after that copies everything afresh"

# 6. Start-up at scale: every greeting arrives 3 s after its connection (a
# connector finishing its connects one by one, a retransmitted SYN). Within
# --timeout that is not a failure.
L="$WORK/late"
mkdir -p "$L"
mkfile "$L/src" 300000
P2PBCAST_TEST_HELLO_DELAY_MS=3000 run 3 -q --per-rank --timeout 30 "$L/src" "$L/d.%r"
[ "$rcs" = "0x3 " ] && cmp -s "$L/src" "$L/d.1" && cmp -s "$L/src" "$L/d.2"
ok $? "greetings 3 s late, --timeout 30: the set-up waits for them (statuses $rcs)"
echo "$out" | grep 'dropped\|error' | head -3 | diag

# A flush longer than --timeout + 5 s on one node (the root, a non-root):
# tests/test_liveness.sh.
done_testing
