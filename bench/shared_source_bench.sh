#!/bin/bash
# shared_source_bench.sh - p2pbcast with and without --source-shared on the
# multi-host bed (issue 14).
#
#   bench/shared_source_bench.sh [-n "4 8"] [-r 150] [-s 128]
#
# Runs bench/bed_bench.sh (method p2pbcast only) twice: once with
# --source-shared=no (the root reads SOURCE and feeds the scatter-ring) and
# once with --source-shared=yes (every host reads its share of SOURCE and
# the ring allgather passes the rest). SOURCE is bed_baselines' generated
# file under bench/out, a directory every bed host sees (the hosts have only
# a private /tmp), as a file on NFS or Lustre would be. Each run prints its
# table (efficiency = (F/B)/T, B measured in the same run); this script then
# prints both side by side. Above 1.0 of F/B is possible only with shared
# reads: each host then takes (N-1)/N of the file from its link.
# mpiFileUtils' dbcast is not built here (not packaged for Debian 12; not
# in scope), so it is not in the table. Needs root (network namespaces).
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
    P2PBCAST_ARGS="--source-shared=$mode ${P2PBCAST_ARGS:-}" \
        "$BENCH/bed_bench.sh" -n "$NODES" -r "$RATE" -s "$SIZE" -m p2pbcast -p ss -o "$out" |
        tee "$out/shared-$mode.txt"
done
echo
echo "efficiency (F/B)/T, p2pbcast, --source-shared=no vs yes:"
for n in $NODES; do
    no=$(awk -v n="$n" '$1 == "p2pbcast" && $2 == n { print $5 }' "$out/shared-no.txt")
    yes=$(awk -v n="$n" '$1 == "p2pbcast" && $2 == n { print $5 }' "$out/shared-yes.txt")
    echo "  N=$n: no $no, yes $yes"
done
