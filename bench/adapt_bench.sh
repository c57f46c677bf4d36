#!/bin/bash
# adapt_bench.sh - one slow uplink on the bed (issue 22): placement against
# the fixed schedules, side by side in one run.
#
#   bench/adapt_bench.sh [-n "8 16"] [-r 150] [-k 4] [-w 37] [-s 128] [-o DIR]
#
# 1. Slow case: for each N, an N-host bed at RATE Mbit/s with host hK's
#    egress shaped to SLOW Mbit/s (NETBED_SLOW_HOST/NETBED_SLOW_RATE; it
#    still receives at RATE, so F/B stays the ideal), and bench/bed_bench.sh
#    with: p2pbcast (default options), p2pbcast_ring and p2pbcast_tree
#    (forced, placement on), p2pbcast_tree_unplaced (forced, no probe, the
#    default order), mpi_pipeline, and dbcast when bench/bed_baselines.sh
#    has it (run_dbcast).
# 2. Equal hosts at 8: p2pbcast against P2PBCAST_BASE (a build before
#    placement, outside /tmp), for "no slower"; without it, against the
#    ring forced.
# Tables (fractions of F/B) go to OUT (default bench/out) and are printed.
# Run it under the bed's lock: flock /var/lock/p2pbcast-bed.lock
# bench/adapt_bench.sh. Needs root.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES="8 16"
RATE=150
SLOW_HOST=4
SLOW_RATE=37
SIZE=128
OUT=$BENCH/out
while (( $# )); do
    case $1 in
        -n) NODES=$2; shift 2 ;;
        -r) RATE=$2; shift 2 ;;
        -k) SLOW_HOST=$2; shift 2 ;;
        -w) SLOW_RATE=$2; shift 2 ;;
        -s) SIZE=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "adapt_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

methods="p2pbcast p2pbcast_ring p2pbcast_tree p2pbcast_tree_unplaced mpi_pipeline"
grep -q '^run_dbcast()' "$BENCH/bed_baselines.sh" && methods+=" dbcast"

echo "== slow uplink: h$SLOW_HOST sends at $SLOW_RATE of $RATE Mbit/s; load $(cat /proc/loadavg)"
NETBED_SLOW_HOST=$SLOW_HOST NETBED_SLOW_RATE=$SLOW_RATE \
    "$BENCH/bed_bench.sh" -n "$NODES" -r "$RATE" -s "$SIZE" -m "$methods" -p ad -o "$OUT"

base=${P2PBCAST_BASE:-}
echo "== equal hosts: 8 at $RATE Mbit/s; load $(cat /proc/loadavg)"
if [[ -n $base ]]; then
    P2PBCAST_BASE=$base "$BENCH/bed_bench.sh" -n 8 -r "$RATE" -s "$SIZE" -m "p2pbcast p2pbcast_base" -p ae -o "$OUT"
else
    "$BENCH/bed_bench.sh" -n 8 -r "$RATE" -s "$SIZE" -m "p2pbcast p2pbcast_ring" -p ae -o "$OUT"
fi
