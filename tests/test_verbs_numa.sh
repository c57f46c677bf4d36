#!/bin/bash
# test_verbs_numa.sh — each verbs rail's share of the slot pool near its own
# device, on two softverbs devices, TAP:
#   - an hwloc XML topology (tests/topo-2numa.xml, HWLOC_XMLFILE with
#     HWLOC_THISSYSTEM=1) puts softverbs0 on NUMA node 0 and softverbs1 on
#     node 1: -v says, per rail, that its slots went to its device's node,
#     or why not (a kernel without node 1 refuses to bind there), and that
#     the pool is placed by rail; copies identical;
#   - the same with the rails the other way round (softverbs1 the faster,
#     so the first rail): the stage's pool near the first rail is not bound
#     (no node 1 here), the second rail's share still moves to node 0;
#   - this machine's own topology: one NUMA node, nothing moves.
# Every mpirun is bounded (MPI_TIMEOUT).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SV_TEST=test_verbs_numa
# shellcheck source=tests/softverbs_lib.sh
. "$here/softverbs_lib.sh"
unset P2PBCAST_TRANSPORT P2PBCAST_SCHEDULE HWLOC_XMLFILE HWLOC_THISSYSTEM HWLOC_COMPONENTS # it would hide the XML
export SOFTVERBS_NDEV=2

D=$SCR/d
mkdir -p "$D"
mkfile "$SCR/src" $((3 * 1048576 + 4321))

show() { echo "$out" | grep -v '^p2pbcast: .*: \(chunk\|progress\)' | tail -20 | diag; }
# same_copies N: c.0 ... c.N-1 identical to src (else st=1), then removed.
same_copies() {
    local r
    for r in $(seq 0 $(($1 - 1))); do cmp -s "$SCR/src" "$D/c.$r" || { echo "c.$r differs or is missing" | diag; st=1; }; done
    rm -rf "$D" && mkdir -p "$D"
}
# count PATTERN: lines of -v matching the extended regex.
count() { echo "$out" | grep -Ec "$1"; }
# Node 1 exists on a two-socket machine: binding there then works.
if [ -d /sys/devices/system/node/node1 ]; then
    on1='on NUMA node 1 near its device \([0-9]+ pages\)'
else
    on1=', device on NUMA node 1: slots not moved there \(binding to NUMA node 1 failed: [^)]+\)'
fi

# split_run DESC R0 S0 R1 S1 [ARG...]: 3 nodes over two rails under the XML
# topology, softverbs0 (node 0) rail R0 with S0 slots ("4 of 8"), softverbs1
# (node 1) rail R1 with S1: softverbs0's share moved to node 0, softverbs1's
# to node 1 or the refusal said, the pool said to be split, copies identical.
split_run() {
    local desc=$1 r0=$2 s0=$3 r1=$4 s1=$5
    shift 5
    run 3 --per-rank -t verbs -v "$@" "$SCR/src" "$D/c.%r"
    st=0
    [ "$rcs" = "0x3 " ] || { echo "rank statuses: $rcs (want 0x3)" | diag; st=1; }
    [ "$(count "verbs on softverbs0:1 \\(.*\\), rail $r0 of 2, $s0 slots on NUMA node 0 near its device \\([0-9]+ pages\\)\$")" -eq 3 ] ||
        { echo "softverbs0's share not said to be moved to node 0" | diag; st=1; }
    [ "$(count "verbs on softverbs1:1 \\(.*\\), rail $r1 of 2, $s1 slots$on1\$")" -eq 3 ] ||
        { echo "softverbs1's share: not on node 1 nor why not" | diag; st=1; }
    [ "$(count 'verbs over 2 rails .* pool of [0-9.]+ [KMG]iB placed by rail \(each rail.s line says where\),')" -eq 3 ] ||
        { echo "the pool not said to be split" | diag; st=1; }
    [ $st -eq 0 ] || show
    same_copies 3
    ok $st "$desc: each rail's share on its device's node or why not, identical copies ($rcs)"
}

export HWLOC_XMLFILE=$here/topo-2numa.xml HWLOC_THISSYSTEM=1
# 1. Two rails on two NUMA nodes (hwloc's view): each rail's share near its device.
split_run "rails on NUMA nodes 0 and 1 (hwloc XML)" 1 "4 of 8" 2 "4 of 8"
# 2. The other way round: the first rail (the faster, softverbs1 at 200
#    Gbit/s, 6 of 9 slots) on node 1: the stage's pool near it is not bound
#    where node 1 is missing, the second rail's share still moves to node 0.
SOFTVERBS_ACTIVE_SPEED=32,64 split_run "the first rail on node 1, the second on node 0" 2 "3 of 9" 1 "6 of 9" \
    --slots 9 --rdma-dev softverbs0,softverbs1
unset HWLOC_XMLFILE HWLOC_THISSYSTEM

# 3. This machine's topology: where every rail's device shares one node (or
#    none is known, as with softverbs), nothing moves.
if [ -d /sys/devices/system/node/node1 ]; then
    skip "one NUMA node: this machine has several"
else
    run 2 --per-rank -t verbs -v "$SCR/src" "$D/c.%r"
    st=0
    [ "$rcs" = "0x2 " ] || { echo "rank statuses: $rcs (want 0x2)" | diag; st=1; }
    [ "$(count 'rail [12] of 2, 4 of 8 slots, device on NUMA node (0|-1)$')" -eq 4 ] ||
        { echo "a rail's slots not left with the pool" | diag; st=1; }
    [ "$(count 'pool of [0-9.]+ [KMG]iB on NUMA node (0|-1),')" -eq 2 ] && [ "$(count 'placed by rail|near its device \(')" -eq 0 ] ||
        { echo "the pool said to be split on one node" | diag; st=1; }
    [ $st -eq 0 ] || show
    same_copies 2
    ok $st "one NUMA node: nothing moves, the pool on one node ($rcs)"
fi

done_testing
