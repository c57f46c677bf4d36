#!/bin/bash
# shared_tree_bench.sh - SOURCE read at several hosts (issue 22): the modes
# of --source-shared side by side on the multi-host bed, in one run.
#
#   bench/shared_tree_bench.sh [-n "4 8 16"] [-r 150] [-s 128]
#
# Runs bench/bed_bench.sh with the methods
#   p2pbcast            the default (--source-shared=auto: on the bed the
#                       root reads alone, as the hosts share a local
#                       filesystem, not a coherent parallel one)
#   p2pbcast_allgather  --source-shared=yes --schedule ring: every host
#                       reads its share, the ring allgather passes the rest
#   p2pbcast_readtree   --source-shared=yes --schedule tree: the tops of the
#                       two trees each read half, the trees carry it
#   p2pbcast_tree       the root-fed trees (--source-shared=no)
#   dbcast              mpiFileUtils' dbcast, 2 ranks per host, every host
#                       reading the same SOURCE (only where bed_baselines.sh
#                       has the method and DBCAST is built)
# SOURCE is bed_baselines' generated file under bench/out, which every bed
# host sees. Efficiency = (F/B)/T, B measured in the same run. Needs root
# (network namespaces); run it under the bed's lock:
#   flock /var/lock/p2pbcast-bed.lock bench/shared_tree_bench.sh
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES="4 8 16" RATE=150 SIZE=128
while (( $# )); do
    case $1 in
        -n) NODES=$2; shift 2 ;;
        -r) RATE=$2; shift 2 ;;
        -s) SIZE=$2; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
methods="p2pbcast p2pbcast_allgather p2pbcast_readtree p2pbcast_tree"
if grep -q '^run_dbcast()' "$BENCH/bed_baselines.sh"; then
    methods+=" dbcast"
else
    echo "shared_tree_bench: bed_baselines.sh has no method dbcast: left out" >&2
fi
"$BENCH/bed_bench.sh" -n "$NODES" -r "$RATE" -s "$SIZE" -m "$methods" -p st -o "$BENCH/out"
