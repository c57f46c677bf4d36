#!/bin/bash
# test_verbs_striped.sh — the verbs transport striped over several rails, on
# two softverbs devices (SOFTVERBS_NDEV=2: two "HCAs", a QP of one reaching
# only the same device on the peer), TAP:
#   - a file to 4 nodes (--per-rank) and a directory to 2 nodes of 2 ranks
#     (P2PBCAST_TEST_RANKS_PER_NODE=2): both rails carried chunks (-v's
#     per-rail counters), copies identical; --check names the rails; the
#     same in RoCE mode, over the tree, on devices without memory windows;
#   - --rdma-dev naming one device: that one rail only;
#   - the slot pool is the same size with two rails as with one (-v);
#   - rails of unequal rates named by --rdma-dev: slots split 1:2; by
#     default only the fastest kind is used;
#   - one node with one device only: every node agrees on one rail;
#   - the RDMA writes of ONE rail (SOFTVERBS_FAULT_PUT_DEV) failing on one
#     non-root node, then on the root: -t verbs stops with status 5 on every
#     rank, naming the host, rank, peer and the rail (device:port), and
#     nothing is created; the same mid-transfer (SOFTVERBS_FAULT_PUT_AFTER):
#     one failure status everywhere, the rail named, no partial DEST (the
#     job does not go on over the other rail).
# Every mpirun is bounded (MPI_TIMEOUT).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SV_TEST=test_verbs_striped
# shellcheck source=tests/softverbs_lib.sh
. "$here/softverbs_lib.sh"
unset P2PBCAST_TRANSPORT P2PBCAST_SCHEDULE
# The fault on ONE_RANK only: ONE_FAULT is "VAR=VALUE[ VAR=VALUE...]".
one_rank_faults
export SOFTVERBS_NDEV=2

D=$SCR/d
mkdir -p "$D"
mkfile "$SCR/src" $((3 * 1048576 + 4321))
mkdir -p "$SCR/tree/sub"
mkfile "$SCR/tree/a" 1500000
mkfile "$SCR/tree/sub/b" 700000
mkfile "$SCR/tree/sub/c" 123

show() { echo "$out" | tail -15 | diag; }
# copies_ok RANK...: each DEST copy identical to src, then removed.
copies_ok() {
    local r bad=0
    for r in "$@"; do
        cmp -s "$SCR/src" "$D/c.$r" || { echo "c.$r differs or is missing" | diag; bad=1; }
    done
    rm -rf "$D" && mkdir -p "$D"
    return $bad
}
# chunks DEV: the chunks every node sent over DEV, summed (-v's rail counters).
chunks() {
    echo "$out" | grep 'verbs rails sent:' | grep -o "$1:1 [0-9]* chunks" | awk '{s += $2} END {print s + 0}'
}
# pool_of: the pool size -v reports ("pool of 2.00 MiB"), one value.
pool_of() { echo "$out" | grep -o 'verbs over [0-9] rails\? .*pool of [0-9.]* [KMG]\?i\?B' | sed 's/.*pool of //' | sort -u; }

# 1. A file to 4 nodes over two rails.
run 4 --per-rank -t verbs -v "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs over 2 rails')" -eq 4 ] || { echo "not every node on 2 rails" | diag; st=1; }
c0=$(chunks softverbs0) c1=$(chunks softverbs1)
[ "$c0" -gt 0 ] && [ "$c1" -gt 0 ] || { echo "chunks per rail: softverbs0 $c0, softverbs1 $c1" | diag; st=1; }
pool2=$(pool_of)
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "a file to 4 nodes: both rails carried chunks (softverbs0 ${c0:-?}, softverbs1 ${c1:-?}), identical copies ($rcs)"

# 1b. The preflight names the first rail, its rate and the count.
run 4 --per-rank -t verbs --check -v "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -Ec '^p2pbcast: check: .*: verbs softverbs0:1 \(100 Gbit/s, 2 rails\), ([0-9]) of \1 partner')" -eq 4 ] ||
    { echo "not every node's line names 2 rails" | diag; st=1; }
[ $st -eq 0 ] || show
[ -z "$(ls -A "$D")" ] || { echo "left: $(ls -A "$D")" | diag; st=1; }
ok $st "--check -v: every node's line names its rails (softverbs0:1, 100 Gbit/s, 2 rails), nothing created ($rcs)"

# 2. A directory to 2 nodes of 2 ranks.
P2PBCAST_TEST_RANKS_PER_NODE=2 run 4 -t verbs -v "$SCR/tree" "$D/t.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
c0=$(chunks softverbs0) c1=$(chunks softverbs1)
[ "$c0" -gt 0 ] && [ "$c1" -gt 0 ] || { echo "chunks per rail: softverbs0 $c0, softverbs1 $c1" | diag; st=1; }
for r in 0 2; do diff -r "$SCR/tree" "$D/t.$r" > /dev/null || { echo "t.$r differs" | diag; st=1; }; done
[ $st -eq 0 ] || show
rm -rf "$D" && mkdir -p "$D"
ok $st "a directory to 2 nodes of 2 ranks: both rails carried chunks ($c0, $c1), identical trees ($rcs)"

# 2b. RoCE mode, the tree schedule, devices without type 2 windows
#     (unfenced: the credits carry each rail's own pool key).
SOFTVERBS_MODE=roce SOFTVERBS_NO_MW=1 run 4 --per-rank -t verbs -v --schedule tree --source-shared=no "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs over 2 rails.*(unfenced)')" -eq 4 ] || { echo "not every node on 2 rails, unfenced" | diag; st=1; }
c0=$(chunks softverbs0) c1=$(chunks softverbs1)
[ "$c0" -gt 0 ] && [ "$c1" -gt 0 ] || { echo "chunks per rail: softverbs0 $c0, softverbs1 $c1" | diag; st=1; }
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "RoCE, tree, no memory windows: both rails carried chunks ($c0, $c1), identical copies ($rcs)"

# 3. --rdma-dev naming one device: one rail, that one; the pool as large as with two.
run 4 --per-rank -t verbs -v --rdma-dev softverbs1 "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs on softverbs1:1 (.*), rail 1 of 1,')" -eq 4 ] || { echo "not softverbs1 alone" | diag; st=1; }
echo "$out" | grep -q 'softverbs0:1 [0-9]* chunks' && { echo "softverbs0 carried chunks" | diag; st=1; }
pool1=$(pool_of)
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "--rdma-dev softverbs1: that rail alone, identical copies ($rcs)"
[ -n "$pool1" ] && [ "$pool1" = "$pool2" ]
ok $? "the slot pool is the same with two rails as with one (${pool2:-?} and ${pool1:-?})"

# 4. Rails of unequal rates: named, slots in proportion (EDR 100, HDR 200
#    Gbit/s: 8 slots split 3 and 5 or closer to 1:2); by default the fastest only.
export SOFTVERBS_ACTIVE_SPEED=32,64
run 4 --per-rank -t verbs -v --slots 9 --rdma-dev softverbs0,softverbs1 "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs on softverbs1:1 (InfiniBand, 200 Gbit/s.*), rail 1 of 2, 6 of 9 slots')" -eq 4 ] &&
    [ "$(echo "$out" | grep -c 'verbs on softverbs0:1 (InfiniBand, 100 Gbit/s.*), rail 2 of 2, 3 of 9 slots')" -eq 4 ] ||
    { echo "slots not split 6:3 by rate" | diag; st=1; }
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "--rdma-dev softverbs0,softverbs1 at 100 and 200 Gbit/s: the faster first, 6 and 3 of 9 slots, identical copies ($rcs)"
run 4 --per-rank -t verbs -v "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs on softverbs1:1 (InfiniBand, 200 Gbit/s.*), rail 1 of 1,')" -eq 4 ] ||
    { echo "not the 200 Gbit/s port alone" | diag; st=1; }
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "no --rdma-dev, ports of 100 and 200 Gbit/s: the fastest kind only, identical copies ($rcs)"
unset SOFTVERBS_ACTIVE_SPEED

# 5. One node with one device: every node uses one rail.
ONE_RANK=2 ONE_FAULT=SOFTVERBS_NDEV=1
run 4 --per-rank -t verbs -v "$SCR/src" "$D/c.%r"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
echo "$out" | grep -q '^p2pbcast: verbs: 1 rail per node' || { echo "no agreement on 1 rail" | diag; st=1; }
[ "$(echo "$out" | grep -c 'verbs over 1 rail ')" -eq 4 ] || { echo "not every node on 1 rail" | diag; st=1; }
[ $st -eq 0 ] || show
copies_ok 0 1 2 3 || st=1
ok $st "rank 2 has one device, the others two: all agree on one rail, identical copies ($rcs)"

# 6. The writes of one rail failing on one node (a non-root, then the root):
#    caught by that rail's first puts; status 5 everywhere naming the host,
#    the rank and the rail; nothing created.
for ONE_RANK in 2 0; do
    ONE_FAULT="SOFTVERBS_FAULT_PUT=access SOFTVERBS_FAULT_PUT_DEV=softverbs1"
    run 4 --per-rank -t verbs "$SCR/src" "$D/c.%r"
    st=0
    [ "$rcs" = "5x4 " ] || { echo "rank statuses: $rcs (want 5x4)" | diag; st=1; }
    echo "$out" | grep -Eq "^p2pbcast: error: .*\\(rank $ONE_RANK\\): the first RDMA write to .* over softverbs1:1 failed: remote access error" ||
        { echo "rank $ONE_RANK and the rail not named" | diag; st=1; }
    [ -z "$(ls -A "$D")" ] || { echo "left: $(ls -A "$D")" | diag; st=1; }
    [ $st -eq 0 ] || show
    ok $st "the writes over softverbs1 failing on rank $ONE_RANK of 4: status 5 everywhere, rank and rail named, nothing created ($rcs)"
done

# 7. The writes of one rail failing mid-transfer (from the 8th work request
#    of each of that rail's queue pairs on) on one node, a non-root then the
#    root: every rank stops with the same failure status, that node names
#    the peer and the rail, no partial DEST is left.
mkfile "$SCR/big" $((8 * 1048576))
for ONE_RANK in 2 0; do
    ONE_FAULT="SOFTVERBS_FAULT_PUT=access SOFTVERBS_FAULT_PUT_DEV=softverbs1 SOFTVERBS_FAULT_PUT_AFTER=8"
    run 4 --per-rank -t verbs --source-shared=no "$SCR/big" "$D/c.%r"
    st=0
    [ $same_rc -eq 0 ] && [ "$rcs" != "0x4 " ] || { echo "rank statuses: $rcs (want one failure status)" | diag; st=1; }
    echo "$out" | grep -Eq "^p2pbcast: error: .*\(rank $ONE_RANK\): connection to .* failed: RDMA write of a chunk.* failed: remote access error .*\(over softverbs1:1\)" ||
        { echo "rank $ONE_RANK, the peer and the rail not named" | diag; st=1; }
    [ -z "$(ls -A "$D")" ] || { echo "left: $(ls -A "$D")" | diag; st=1; }
    [ $st -eq 0 ] || show
    rm -rf "$D" && mkdir -p "$D"
    ok $st "softverbs1's writes failing mid-transfer on rank $ONE_RANK of 4: one failure status everywhere, peer and rail named, no partial DEST ($rcs)"
done
ONE_RANK=none ONE_FAULT=

done_testing
