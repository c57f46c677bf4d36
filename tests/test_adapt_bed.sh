#!/bin/bash
# test_adapt_bed.sh - one slow uplink on the bed (tests/netbed), TAP: issue 22.
#
# 5 hosts at 100 Mbit/s, h4's egress shaped to 25 (NETBED_SLOW_HOST; it
# still receives at 100). Default options, -v, one rank per host, root on h1,
# the send-rate probe forced on (P2PBCAST_TEST_PLACEMENT=1: the test's file
# is too small for the probe's size rule):
#   - 5 hosts (4 receivers, even: the hung tree shape): every rank exits 0,
#     identical copies, and the root's -v names h4, its rate and its place
#     (passes nothing on), that auto took the trees, and --json says it;
#   - 4 hosts (3 receivers, odd): the same, h4 a leaf in both trees;
#   - h4 as the root (--root 3): still every rank exits 0 and the copies are
#     identical; -v says the root sends the whole file under every schedule
#     (nothing can relieve it).
# Ratios of F/B belong to bench/ (bench/adapt_bench.sh), not here.
# Run under the bed's lock: flock /var/lock/p2pbcast-bed.lock make check
# TESTS=tests/test_adapt_bed.sh. Skips (exit 0) where namespaces cannot be
# made. Environment as tests/test_bed.sh (P2PBCAST, TEST_BED_TIMEOUT).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/netbed/bedtap.sh
source "$HERE/netbed/bedtap.sh"
bed_tap_start test_adapt_bed a

SRC=$WORK/src.bin
head -c $(( 12 * 1048576 + 4321 )) /dev/urandom >"$SRC"
DDIR=/tmp/ta
DEST=$DDIR/dest.bin
SUBNET=10.77.0.0/24

# bcast N ARGS...: p2pbcast -v to DEST on h1..hN (bedtap.sh, bed_bcast).
bcast() {
    local n=$1
    shift
    bed_bcast "$n" -x P2PBCAST_TEST_PLACEMENT=1 -- --tcp-if "$SUBNET" -v "$@"
}

succeeded() {  # n: mpirun and every rank exit 0, identical copies, DEST alone
    local n=$1 k want="" d l
    (( mrc == 0 )) || { diag "$out"; return 1; }
    for (( k = 1; k <= n; k++ )); do want+="h$k 0"$'\n'; done
    [[ $rcs == "$(sort <<<"${want%$'\n'}")" ]] || { diag "rank statuses: $rcs"; return 1; }
    for (( k = 1; k <= n; k++ )); do
        d=$("$NB" dir "h$k")${DDIR#/tmp}
        cmp -s "$SRC" "$d/dest.bin" || { diag "h$k: DEST differs or is missing"; return 1; }
        l=$(ls -A "$d")
        [[ $l == dest.bin ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}

said() {  # pattern: the root's stderr has a line matching it
    grep '^\[[0-9]*,0\]<stderr>:' <<<"$out" | grep -q -- "$1" ||
        { diag "$(grep '<stderr>' <<<"$out" | grep -i 'rate\|slow\|placement\|schedule' || true)"; return 1; }
}

export NETBED_SLOW_HOST=4 NETBED_SLOW_RATE=25
ok "bed up: 5 hosts at 100 Mbit/s, h4 sends at 25" "$NB" up 5 100 "$PFX"
unset NETBED_SLOW_HOST NETBED_SLOW_RATE

prepare_dirs 5
bcast 5 --json "$WORK/r.json"
ok "5 hosts, h4 slow: p2pbcast succeeds, identical copies (mpirun status $mrc)" succeeded 5
ok "5 hosts: -v names h4's rate against the median and places it below a leaf of both trees" \
    said 'placement: h4 (rank 3) sent at [0-9]* Mbit/s, 0\.[0-4][0-9] of the median [0-9]*; hung below a leaf of both trees'
ok "5 hosts: auto took the trees because of the slow sender" said 'schedule auto: tree: 1 slow sender'
ok "5 hosts: the summary names the slow sender" said 'p2pbcast: slow sender: h4 (rank 3)'
json_says() { grep -q '"placement": "h4 (rank 3) sent at' "$WORK/r.json" || { diag "$(cat "$WORK/r.json")"; return 1; }; }
ok "5 hosts: --json has the placement" json_says

prepare_dirs 4
bcast 4
ok "4 hosts, h4 slow: p2pbcast succeeds, identical copies (mpirun status $mrc)" succeeded 4
ok "4 hosts (3 receivers): h4 placed as a leaf in both trees" \
    said 'placement: h4 (rank 3) sent at [0-9]* Mbit/s, .*; a leaf in both trees'

prepare_dirs 5
bcast 5 --root 3
root_ok() {  # the root's line is rank 3's here
    (( mrc == 0 )) && succeeded 5 &&
        grep '^\[[0-9]*,3\]<stderr>:' <<<"$out" |
            grep -q 'h4 (rank 3) sent at [0-9]* Mbit/s, .*the root sends the whole file under every schedule' ||
        { diag "$(grep '<stderr>' <<<"$out" | grep -i 'rate\|slow\|placement' || true)"; return 1; }
}
ok "5 hosts, the slow h4 is the root: succeeds, identical copies, -v says the root cannot be relieved" root_ok

echo "1..$T"
(( FAILED == 0 ))
