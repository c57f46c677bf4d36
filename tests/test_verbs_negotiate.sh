#!/bin/bash
# test_verbs_negotiate.sh — what --transport auto and verbs do when one node
# of four (--per-rank, softverbs) cannot use verbs, TAP:
#   - the device hidden from one rank (a non-root, then the root): auto
#     copies over tcp, four identical copies, one warning naming that rank;
#     --transport verbs fails with status 5 on every rank naming it, and
#     nothing is created;
#   - pinned memory (SOFTVERBS_FAULT_MEMLOCK on one rank, the root then a
#     non-root): a limit between 1x and 4x the slot pool is enough (the
#     pool is registered once for every queue pair); below the pool -t verbs
#     refuses at set-up (status 5, the whole need named, no chunk sent) and
#     auto falls back to tcp with a warning;
#   - one rank's RDMA writes failing (SOFTVERBS_FAULT_PUT), a receiver then
#     the root: caught by the set-up's first puts, auto falls back to tcp,
#     -t verbs stops with status 5 naming it;
#   - a device without type 2 memory windows (one rank, the root, all):
#     verbs still, unfenced there, identical copies;
#   - no CAP_IPC_LOCK and `ulimit -l` below the need on one rank: named with
#     the need and the limit (-t verbs), auto falls back;
#   - a port with a small max_msg_sz (SOFTVERBS_MAX_MSG_SZ) and -c above
#     it: the chunk is capped and the copy succeeds.
# The fault is applied to one world rank by a wrapper around p2pbcast
# (ONE_RANK, ONE_FAULT). Every mpirun is bounded (MPI_TIMEOUT).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SV_TEST=test_verbs_negotiate
# shellcheck source=tests/softverbs_lib.sh
. "$here/softverbs_lib.sh"
unset P2PBCAST_TRANSPORT P2PBCAST_SCHEDULE
# The fault on ONE_RANK only (softverbs_lib.sh: hide, nocap, VAR=VALUE).
one_rank_faults

D=$SCR/d
mkdir -p "$D"
mkfile "$SCR/src" $((3 * 1048576 + 4321))

show() { echo "$out" | tail -15 | diag; }
# copies_ok: four copies identical to src, then removed.
copies_ok() {
    local r bad=0
    for r in 0 1 2 3; do
        cmp -s "$SCR/src" "$D/c.$r" || { echo "c.$r differs or is missing" | diag; bad=1; }
    done
    rm -rf "$D" && mkdir -p "$D"
    return $bad
}
nothing_left() { [ -z "$(ls -A "$D")" ] || { echo "left: $(ls -A "$D")" | diag; return 1; }; }
# fell_back RANK WHY_REGEX: all 0, the warning names RANK and why, tcp used.
fell_back() {
    [ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; show; return 1; }
    echo "$out" | grep -E "^p2pbcast: warning: transport auto: .*\\(rank $1\\): $2" >/dev/null ||
        { echo "no warning naming rank $1" | diag; show; return 1; }
    [ "$(echo "$out" | grep -c 'warning: transport auto')" -eq 1 ] || { echo "not one warning line" | diag; show; return 1; }
    echo "$out" | grep -q 'transport tcp' || { echo "summary does not say tcp" | diag; show; return 1; }
    copies_ok
}
# refused RANK WHY_REGEX: status 5 on every rank, RANK named with why, nothing created.
refused() {
    [ "$rcs" = "5x4 " ] || { echo "rank statuses: $rcs (want 5x4)" | diag; show; return 1; }
    echo "$out" | grep -E "^p2pbcast: error: .*\\(rank $1\\): $2" >/dev/null ||
        { echo "rank $1 not named with its reason" | diag; show; return 1; }
    if echo "$out" | grep -q 'cannot send chunk'; then echo "a chunk was sent" | diag; show; return 1; fi
    nothing_left
}

# one_rank_cannot WHAT AUTO_WHY VERBS_WHY: with ONE_FAULT on ONE_RANK, auto
# copies over tcp naming it, --transport verbs stops everywhere naming it.
one_rank_cannot() {
    run 4 --per-rank "$SCR/src" "$D/c.%r"
    fell_back $ONE_RANK "$2"
    ok $? "auto, $1 on rank $ONE_RANK of 4: tcp, identical copies, one warning naming it ($rcs)"
    run 4 --per-rank -t verbs "$SCR/src" "$D/c.%r"
    refused $ONE_RANK "$3"
    ok $? "--transport verbs, $1 on rank $ONE_RANK of 4: status 5 everywhere naming it, nothing created ($rcs)"
}

# 1. No device on one rank.
for ONE_RANK in 2 0; do
    ONE_FAULT=hide
    one_rank_cannot "no device" 'no RDMA device found' 'no RDMA device found'
done
ONE_RANK=none
run 4 --per-rank "$SCR/src" "$D/c.%r"
[ "$rcs" = "0x4 " ] && echo "$out" | grep -q 'transport verbs' && ! echo "$out" | grep -q warning
st=$?
[ $st -eq 0 ] || show
copies_ok || st=1
ok $st "auto, every rank has the device: verbs, no warning ($rcs)"

# 1b. The preflight over verbs: all ready, then no device on rank 2.
run 4 --per-rank --check "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
echo "$out" | grep -q '^p2pbcast: check: all 4 nodes are ready' || { echo "not all ready" | diag; st=1; }
echo "$out" | grep -q '^p2pbcast: check: transport verbs (auto: every node can use verbs)' || { echo "no verbs line" | diag; st=1; }
echo "$out" | grep -Eq '^p2pbcast: check: pinned memory: up to [0-9.]+ MiB needed' || { echo "no pinned memory line" | diag; st=1; }
echo "$out" | grep -Eq 'check: .*\(rank 0\): verbs softverbs0:1 \(100 Gbit/s\), 3 of 3 partner\(s\) answered' || { echo "root's links not probed" | diag; st=1; }
[ $st -eq 0 ] || show
nothing_left || st=1
ok $st "--check over verbs, all ready: status 0, verbs and the pinned memory in the summary, nothing created ($rcs)"
ONE_RANK=2 ONE_FAULT=hide
run 4 --per-rank --check -t verbs "$SCR/src" "$D/c.%r"
refused 2 'no RDMA device found'
st=$?
echo "$out" | grep -q 'check: FAILED (transport set-up failed): 1 of 4 node(s) not ready' || { echo "no FAILED line" | diag; st=1; }
ok $st "--check -t verbs, no device on rank 2: status 5 naming it, nothing created ($rcs)"
ONE_RANK=none

# 2. Pinned memory. A ring of 4 with 64 KiB chunks pins the pool (512.5 KiB)
#    once, shared by every queue pair, plus control buffers and descriptors.
#    A limit between 1x and 4x the pool is enough: 1200000 B on the root
#    (3 partners: the old set-up pinned the pool 4 times there) or 800000 B
#    on a receiver (2 times before). Below the pool (400000 B): refused at
#    set-up with the whole need named, tcp instead under auto.
ring=(--per-rank --schedule ring -c 64K --source-shared=no)
for fault in 0:1200000 2:800000; do
    ONE_RANK=${fault%%:*}
    ONE_FAULT=SOFTVERBS_FAULT_MEMLOCK=${fault#*:}
    run 4 "${ring[@]}" -t verbs -v "$SCR/src" "$D/c.%r"
    st=0
    [ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
    echo "$out" | grep -q 'transport verbs' || { echo "summary does not say verbs" | diag; st=1; }
    [ $st -eq 0 ] || show
    copies_ok || st=1
    ok $st "--transport verbs, registrations beyond ${fault#*:} B (under 4x the pool) on rank $ONE_RANK: the pool is pinned once, identical copies ($rcs)"
done
for ONE_RANK in 0 2; do
    ONE_FAULT=SOFTVERBS_FAULT_MEMLOCK=400000
    run 4 "${ring[@]}" -t verbs "$SCR/src" "$D/c.%r"
    refused $ONE_RANK 'cannot register the slot pool \(512.5 KiB\).*; this node pins [0-9.]+ KiB in all \(the slot pool once, shared by every queue pair\)'
    ok $? "--transport verbs, registrations beyond 400000 B (below the pool) on rank $ONE_RANK: refused at set-up with the whole need, nothing created ($rcs)"
    run 4 "${ring[@]}" "$SCR/src" "$D/c.%r"
    fell_back $ONE_RANK 'cannot register the slot pool'
    ok $? "auto, registrations beyond 400000 B on rank $ONE_RANK: verbs set-up fails, tcp instead, identical copies ($rcs)"
done

# 2b. A link that connects but cannot carry a put (SOFTVERBS_FAULT_PUT: every
#     RDMA write of one rank, a receiver then the root, completes with a
#     remote access error): the first puts of the set-up fail, so auto
#     copies over tcp with one warning naming that rank, and -t verbs stops
#     with status 5 naming it, before any chunk or DEST.
for ONE_RANK in 2 0; do
    ONE_FAULT=SOFTVERBS_FAULT_PUT=access
    one_rank_cannot "RDMA writes failing (caught by the set-up's first puts)" \
        'the first RDMA write to .* failed: remote access error' \
        'the first RDMA write to .* failed: remote access error .*cannot carry a put'
done
ONE_RANK=1 ONE_FAULT=SOFTVERBS_FAULT_PUT=length
run 4 --per-rank --check -t verbs "$SCR/src" "$D/c.%r"
refused 1 'the first RDMA write to .* failed: remote invalid request error'
st=$?
echo "$out" | grep -q 'check: FAILED (transport set-up failed)' || { echo "no FAILED line" | diag; st=1; }
ok $st "--check -t verbs, the puts of rank 1 fail (length): status 5 naming it, nothing created ($rcs)"

# 2c. A device without type 2 memory windows (SOFTVERBS_NO_MW, as siw or
#     qedr): verbs is still used, that node's pool and table writable
#     through their own keys (unfenced, said by -v), on one non-root, on the
#     root, and on every rank; identical copies, no fallback.
for ONE_RANK in 2 0 all; do
    if [ "$ONE_RANK" = all ]; then
        ONE_RANK=none
        export SOFTVERBS_NO_MW=1
    else
        ONE_FAULT=SOFTVERBS_NO_MW=1
    fi
    run 4 --per-rank -t verbs -v "$SCR/src" "$D/c.%r"
    unset SOFTVERBS_NO_MW
    st=0
    [ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
    echo "$out" | grep -q 'transport verbs' || { echo "summary does not say verbs" | diag; st=1; }
    echo "$out" | grep -q 'no type 2 memory windows: partners write through the pool.s own key (unfenced)' ||
        { echo "-v does not say unfenced" | diag; st=1; }
    [ $st -eq 0 ] || show
    copies_ok || st=1
    ok $st "--transport verbs, no memory windows on rank ${ONE_RANK/none/0-3}: verbs unfenced there, identical copies ($rcs)"
done
ONE_RANK=none ONE_FAULT=

# 3. No CAP_IPC_LOCK and ulimit -l 1 MiB on one rank: the negotiation names
#    the need and the limit before any queue pair exists.
if command -v setpriv >/dev/null && setpriv --bounding-set=-ipc_lock true 2>/dev/null; then
    ONE_RANK=1 ONE_FAULT=nocap
    run 4 --per-rank -t verbs "$SCR/src" "$D/c.%r"
    refused 1 'verbs on softverbs0 needs [0-9.]+ MiB of pinned memory .* but .ulimit -l. \(RLIMIT_MEMLOCK\) is 1.00 MiB'
    ok $? "--transport verbs, ulimit -l 1 MiB without CAP_IPC_LOCK on rank 1: status 5, need and limit named ($rcs)"
    run 4 --per-rank "$SCR/src" "$D/c.%r"
    fell_back 1 'verbs on softverbs0 needs [0-9.]+ MiB of pinned memory'
    ok $? "auto, ulimit -l 1 MiB without CAP_IPC_LOCK on rank 1: tcp, identical copies ($rcs)"
else
    skip "setpriv cannot drop CAP_IPC_LOCK here"
    skip "setpriv cannot drop CAP_IPC_LOCK here"
fi

# 4. A port that takes messages of at most 300000 bytes, chunks of 1 MiB
#    asked for: capped, and the copy goes through.
ONE_RANK=none ONE_FAULT=
SOFTVERBS_MAX_MSG_SZ=300000 run 4 --per-rank -t verbs -c 1M "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs" | diag; st=1; }
echo "$out" | grep -q 'warning: chunk size 1048576 capped at 299008 bytes: .*(max_msg_sz)' || { echo "no cap warning" | diag; st=1; }
echo "$out" | grep -q 'chunks of 292.00 KiB, transport verbs' || { echo "summary: not 292 KiB chunks over verbs" | diag; st=1; }
[ $st -eq 0 ] || show
copies_ok || st=1
ok $st "max_msg_sz 300000 and -c 1M: chunk capped at 299008 bytes, verbs, identical copies ($rcs)"

done_testing
