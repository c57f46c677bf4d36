#!/bin/bash
# shared_source_bench.sh - p2pbcast with and without --source-shared on the
# multi-host bed (issue 14).
#
#   bench/shared_source_bench.sh [-n "4 8"] [-r 150] [-s 128]
#
# Runs bench/bed_bench.sh twice: p2pbcast with --source-shared=no (the root
# reads SOURCE and feeds the scatter-ring), then p2pbcast with
# --source-shared=yes (every host reads its share of SOURCE and the ring
# allgather passes the rest) beside mpiFileUtils' dbcast (2 ranks per host,
# every host reads its stripes of the same SOURCE; DBCAST names the binary,
# default /opt/mpifileutils/bin/dbcast, built by bench/build_dbcast.sh; left
# out with a note if absent). SOURCE is bed_baselines' generated
# file under bench/out, a directory every bed host sees (the hosts have only
# a private /tmp), as a file on NFS or Lustre would be. Each run prints its
# table (efficiency = (F/B)/T, B measured in the same run); this script then
# prints them side by side. Above 1.0 of F/B is possible only with shared
# reads: each host then takes (N-1)/N of the file from its link.
# Needs root (network namespaces).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES="4 8" RATE=150 SIZE=128
while (( $# )); do
    case $1 in
        -n) NODES=$2; shift 2 ;;
        -r) RATE=$2; shift 2 ;;
        -s) SIZE=$2; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
out=$BENCH/out
mkdir -p "$out"
for mode in no yes; do
    methods=p2pbcast
    [[ $mode == yes ]] && methods="p2pbcast dbcast"
    P2PBCAST_ARGS="--source-shared=$mode ${P2PBCAST_ARGS:-}" \
        "$BENCH/bed_bench.sh" -n "$NODES" -r "$RATE" -s "$SIZE" -m "$methods" -p ss -o "$out" |
        tee "$out/shared-$mode.txt"
done
eff() {  # method n file: that row's efficiency, "-" if it did not run
    awk -v m="$1" -v n="$2" '$1 == m && $2 == n { e = $5 } END { print (e == "" ? "-" : e) }' "$3"
}
echo
echo "efficiency (F/B)/T, p2pbcast --source-shared=no vs yes, and dbcast (every host reads):"
for n in $NODES; do
    echo "  N=$n: no $(eff p2pbcast "$n" "$out/shared-no.txt"), yes $(eff p2pbcast "$n" "$out/shared-yes.txt")," \
         "dbcast $(eff dbcast "$n" "$out/shared-yes.txt")"
done
