#!/bin/bash
# test_rails_bed.sh - the tcp transport's rails on emulated hosts with two
# networks (tests/netbed, NETBED_RAIL1_RATE), TAP.  One rank per host, root
# on h1, no --tcp-if unless said:
#   1. rail 0 (eth0, the default route) at 20 Mbit/s, rail 1 (eth1) at 150:
#      the copy succeeds on all 4 hosts; -v names eth1 as chosen and eth0 as
#      not, with their rates; eth0 carried little (MPI, the probe), eth1 the
#      file.
#   2. both rails at 100 Mbit/s: both chosen, each carried a good part of
#      the file; the same with --tcp-if eth0,eth1 (an explicit list), and
#      with the two trees instead of the ring; with the send-rate probe on
#      (placement), one probe serves both: every node's send rate is the sum
#      of its rails', the rails are chosen once, each rail gets a full
#      window of slots and the chunk is cut for two rails; --tcp-if naming
#      a rail that one host lacks (h3, then the root h1) fails cleanly,
#      naming it.
#   3. both rails at 50 Mbit/s, a larger file, and once the transfer is under
#      way eth1 is taken down inside ONE host (h3, then the root h1): every
#      rank fails with the same nonzero status, the root names that host and
#      the rail (eth1), and no host keeps a DEST or a temporary file; or,
#      where the kernel carries eth1's connections over eth0 (it answers ARP
#      for any of its addresses on any interface), every rank exits 0 with an
#      identical copy and nothing else beside it.
# Must run under the bed lock (flock /var/lock/p2pbcast-bed.lock ...).
# Skips (exit 0) where network namespaces cannot be created.
# Environment: P2PBCAST (the binary, default ../p2pbcast relative to tests/),
# TEST_BED_TIMEOUT (seconds one broadcast may take, default 180).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/netbed/bedtap.sh
source "$HERE/netbed/bedtap.sh"
bed_tap_start test_rails_bed r
SRC=$WORK/src.bin
DDIR=/tmp/tr
DEST=$DDIR/dest.bin
N=4

# bed RATE0 RATE1: a fresh 4-host bed with two rails, empty DEST directories.
bed() {
    "$NB" down "$PFX" >/dev/null 2>&1 || true
    NETBED_RAIL1_RATE=$2 "$NB" up "$N" "$1" "$PFX" 2>/dev/null || return 1
    local k
    for (( k = 1; k <= N; k++ )); do
        "$NB" exec "h$k" sh -c "rm -rf '$DDIR' && mkdir -p '$DDIR'" || return 1
    done
}

# bcast ARGS...: p2pbcast SRC DEST on h1..h4 (stdout+stderr in $WORK/out,
# tagged), in the background; sets BPID.  wait_bcast then sets out, rcs
# ("host status" per rank) and mrc.  MPI_X: extra mpirun words (-x VAR=1).
MPI_X=()
bcast_start() {
    : >"$WORK/rcs"
    : >"$WORK/out"
    # shellcheck disable=SC2016 # expanded by the rank's bash
    timeout -k 10 $(( NETBED_MPIRUN_TIMEOUT + 30 )) "$NB" mpirun -np "$N" --tag-output \
        --mca orte_abort_on_non_zero_status 0 "${MPI_X[@]}" \
        bash -c '"$@"; r=$?; echo "$(hostname) $r" >>'"$WORK/rcs"'; exit $r' _ \
        "$BIN" "$@" "$SRC" "$DEST" >"$WORK/out" 2>&1 &
    BPID=$!
}
wait_bcast() {
    set +e
    wait "$BPID"
    mrc=$?
    set -e
    out=$(cat "$WORK/out")
    if (( mrc == 124 || mrc == 137 )); then
        echo "# TIMEOUT: p2pbcast did not finish within $NETBED_MPIRUN_TIMEOUT s (status $mrc)"
        echo "timeout" >>"$WORK/rcs"
    fi
    rcs=$(sort "$WORK/rcs")
}
bcast() { bcast_start "$@"; wait_bcast; }

all_exit() {  # status: every rank, one per host, exited with it
    local st=$1 k want=""
    for (( k = 1; k <= N; k++ )); do want+="h$k $st"$'\n'; done
    [[ $rcs == "$(sort <<<"${want%$'\n'}")" ]] || { diag "rank statuses: $rcs"; diag "$(tail -n 20 <<<"$out")"; return 1; }
}
same_failure() {
    local st
    st=$(awk '{print $2}' <<<"$rcs" | sort -u)
    [[ $st =~ ^[1-9][0-9]*$ ]] && all_exit "$st"
}
copies_identical() {
    local k d
    for (( k = 1; k <= N; k++ )); do
        d=$("$NB" dir "h$k")${DEST#/tmp}
        cmp -s "$SRC" "$d" || { diag "h$k: $d differs or is missing"; return 1; }
    done
}
nothing_left() {
    local k l
    for (( k = 1; k <= N; k++ )); do
        l=$(ls -A "$("$NB" dir "h$k")${DDIR#/tmp}")
        [[ -z $l ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}
only_dest() {
    local k l
    for (( k = 1; k <= N; k++ )); do
        l=$(ls -A "$("$NB" dir "h$k")${DDIR#/tmp}")
        [[ $l == "${DEST##*/}" ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}
said() {  # pattern: some rank's stderr matches
    grep '<stderr>' <<<"$out" | grep -qE "$1" || { diag "$(grep -i rail <<<"$out")"; return 1; }
}
root_said() {  # pattern: the root's stderr matches
    grep '^\[[0-9]*,0\]<stderr>:' <<<"$out" | grep -qE "$1" || { diag "$(grep '<stderr>' <<<"$out" | tail -n 8)"; return 1; }
}

tx() {  # host dev: bytes sent on that interface so far
    "$NB" exec "$1" cat "/sys/class/net/$2/statistics/tx_bytes"
}
tx_all() {  # dev: bytes sent by all hosts on it
    local k s=0
    for (( k = 1; k <= N; k++ )); do s=$(( s + $(tx "h$k" "$1") )); done
    echo "$s"
}

# ---- 1: the fast rail, not the default route ------------------------------
head -c $(( 12 * 1048576 + 4321 )) /dev/urandom >"$SRC"
SIZE=$(stat -c %s "$SRC")
ok "bed up: rail 0 (default route) 20 Mbit/s, rail 1 150 Mbit/s" bed 20 150
eth0_before=$(tx_all eth0) eth1_before=$(tx_all eth1)
bcast -v --source-shared=no
eth0_used=$(( $(tx_all eth0) - eth0_before )) eth1_used=$(( $(tx_all eth1) - eth1_before ))
ok "slow default route: every rank exits 0" all_exit 0
ok "slow default route: identical copy on every host" copies_identical
ok "-v: eth1 chosen and eth0 not, with their rates" \
    root_said 'tcp rails .*not chosen eth0 \(root 10\.77\.0\.11\) [0-9.]+ Mbit/s measured \(below a third of the best\); chosen eth1 \(root 10\.78\.0\.11\) [0-9.]+ Mbit/s measured'
hosts_say() {  # pattern: every host's rails line matches it
    local n
    n=$(tr -d '\r' <<<"$out" | grep -cE "tcp rail\(s\): $1")
    (( n == N )) || { diag "$(grep 'tcp rail' <<<"$out")"; return 1; }
}
ok "-v: every host says it uses eth1 alone" hosts_say 'eth1 10\.78\.0\.1[1-4] \([0-9.]+ Mbit/s\)$'
diag "bytes sent on eth0: $eth0_used, on eth1: $eth1_used (file $SIZE, each of 3 receivers gets it)"
# eth0 still carries MPI's own traffic, the launch and output, and the probe
ok "the file crossed eth1, not the default route (eth0 carried < 1/6 of the data)" \
    test "$eth1_used" -ge $(( 3 * SIZE )) -a "$eth0_used" -lt $(( SIZE / 2 ))
bcast --check --source-shared=no
ok "--check: every rank exits 0" all_exit 0
ok "--check: the root names eth1 with its measured rate" \
    root_said 'check: h1 \(rank 0\): tcp eth1 \([0-9]+ Mbit/s measured\)'

# ---- 2: two similar rails at once -----------------------------------------
ok "bed up: two rails at 100 Mbit/s" bed 100 100
for args in "-v" "-v --tcp-if eth0,eth1" "-v --schedule tree"; do
    for k in 1 2 3 4; do "$NB" exec "h$k" rm -f "$DEST"; done
    eth0_before=$(tx_all eth0) eth1_before=$(tx_all eth1)
    # shellcheck disable=SC2086 # the option words are meant to split
    bcast $args --source-shared=no
    eth0_used=$(( $(tx_all eth0) - eth0_before )) eth1_used=$(( $(tx_all eth1) - eth1_before ))
    ok "two rails ($args): every rank exits 0" all_exit 0
    ok "two rails ($args): identical copy on every host" copies_identical
    ok "two rails ($args): every host stripes over eth0 and eth1" hosts_say 'eth[01] [0-9.]+ \([0-9.]+ Mbit/s\) eth[01] '
    diag "bytes sent on eth0: $eth0_used, on eth1: $eth1_used (file $SIZE to 3 receivers)"
    ok "two rails ($args): each carried at least a quarter of the data" \
        test "$eth0_used" -ge $(( 3 * SIZE / 4 )) -a "$eth1_used" -ge $(( 3 * SIZE / 4 ))
done
# placement's send-rate probe forced on (the file is small): it measures both
# rails, and the transport takes the rails it chose instead of probing again
MPI_X=(-x P2PBCAST_TEST_PLACEMENT=1)
for k in 1 2 3 4; do "$NB" exec "h$k" rm -f "$DEST"; done
bcast -v --source-shared=no
MPI_X=()
ok "one probe for rails and placement: every rank exits 0" all_exit 0
ok "one probe for rails and placement: identical copy on every host" copies_identical
# "send rates (tcp probe, median M Mbit/s): h1 (rank 0) R, ..." against the
# rails line's "chosen eth0 (root ...) X Mbit/s measured"
sums_rails() {
    local line rail
    line=$(tr -d '\r' <<<"$out" | grep -oE 'send rates \(tcp probe, median [0-9]+ Mbit/s\).*' | head -n 1)
    rail=$(tr -d '\r' <<<"$out" | grep -oE 'chosen eth0 \(root [0-9.]+\) [0-9.]+' | head -n 1 | awk '{print $NF}')
    diag "rail eth0: ${rail:-?} Mbit/s; $line"
    [[ -n $line && -n $rail ]] || return 1
    # every node's rate: the part after each "(rank K)"
    grep -oE '\(rank [0-9]+\) [0-9]+' <<<"$line" | awk -v r="$rail" '
        { n++; if ($3 < 1.5 * r) bad++ } END { exit !(n == 4 && !bad) }'
}
ok "one probe: every node's send rate is the sum of its two rails' (> 1.5x one rail)" sums_rails
ok "one probe: the rails are chosen once (one rails line from the root)" \
    test "$(tr -d '\r' <<<"$out" | grep -c 'tcp rails (the slowest')" -eq 1
ok "one probe: every rail keeps a full window (-v: 16 slots, 8 for each of 2 rails)" \
    root_said '16 slots per node: 8 for each of 2 rails'
ok "one probe: the chunk is cut for two rails (-v: 32 KiB over 2 rails)" \
    root_said 'chunk: 32 KiB over 2 rails'
ok "one probe: every host stripes over eth0 and eth1" hosts_say 'eth[01] [0-9.]+ \([0-9.]+ Mbit/s\) eth[01] '

bcast --check --source-shared=no
ok "--check, two rails: the root names both with their rates" \
    root_said 'check: h1 \(rank 0\): tcp eth[01] \([0-9]+ Mbit/s measured\) \+ eth[01] \([0-9]+ Mbit/s measured\)'

# A rail named that one host lacks (a non-root, then the root): the choice
# fails on that host, every rank stops at set-up with the same status, the
# host and eth1 named.
for victim in h3 h1; do
    "$NB" exec "$victim" ip link set eth1 down
    for k in 1 2 3 4; do "$NB" exec "h$k" rm -f "$DEST"; done
    bcast --tcp-if eth0,eth1 --source-shared=no
    ok "eth1 missing on $victim, --tcp-if eth0,eth1: every rank exits with the same nonzero status" same_failure
    ok "eth1 missing on $victim: the root names $victim and eth1" root_said "error: $victim .*eth1"
    ok "eth1 missing on $victim: nothing on any host" nothing_left
    "$NB" exec "$victim" ip link set eth1 up
done

# ---- 3: a rail goes down on one host --------------------------------------
head -c $(( 40 * 1048576 + 999 )) /dev/urandom >"$SRC"
for victim in h3 h1; do
    ok "bed up: two rails at 50 Mbit/s ($victim loses eth1)" bed 50 50
    bcast_start --timeout 10 --source-shared=no
    under_way() {
        for _ in $(seq 600); do grep -q '% .* sent' "$WORK/out" 2>/dev/null && return 0; sleep 0.05; done
        return 1
    }
    ok "$victim: the transfer is under way" under_way
    "$NB" exec "$victim" ip link set eth1 down
    wait_bcast
    st=$(awk '{print $2}' <<<"$rcs" | sort -u | tr '\n' ' ')
    if [[ $st == "0 " ]]; then
        # Linux answers ARP for any of its addresses on any interface, so
        # the kernel may carry eth1's connections over eth0 once eth1's
        # routes are gone; chunks stuck on eth1 then arrive late, new ones
        # go to the rail that drains, and the copy completes. Exit 0 must
        # then mean what it always means.
        ok "eth1 down on $victim: the copy completed over eth0: every rank exits 0" all_exit 0
        ok "eth1 down on $victim: identical copy on every host" copies_identical
        ok "eth1 down on $victim: DEST alone in its directory on every host" only_dest
    else
        ok "eth1 down on $victim: every rank exits with the same nonzero status ($st)" same_failure
        ok "eth1 down on $victim: the root names $victim and the rail" root_said "error: .*$victim.*eth1|error: .*eth1.*$victim"
        diag "$(grep '^\[[0-9]*,0\]<stderr>:.*error' <<<"$out" | head -n 4)"
        ok "eth1 down on $victim: nothing partial on any host" nothing_left
    fi
done

left_nothing() {
    [[ -z $(ip netns list | grep "^$PFX-" || true) ]] &&
        [[ ! -e /run/netbed/$PFX && ! -e /tmp/netbed-$PFX && ! -e /var/tmp/netbed-$PFX.share ]]
}
ok "down" "$NB" down "$PFX"
ok "down leaves no namespace or directory" left_nothing

echo "1..$T"
(( FAILED == 0 ))
