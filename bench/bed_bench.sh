#!/bin/bash
# bed_bench.sh - p2pbcast against its baselines on the multi-host bed (issue 5).
#
#   bench/bed_bench.sh [-n "2 4 8 16"] [-r 150] [-s 128] [-m METHODS] [-p PREFIX]
#
# One command, one session, the same generated file for every method: for each
# N it builds an N-host bed (tests/netbed) with every link shaped to RATE
# Mbit/s, measures B (one TCP stream h1 -> h2, memory to memory), then runs
#   p2pbcast      one rank per host, root on h1, --tcp-if 10.77.0.0/24, defaults
#                 (--schedule auto --source-shared=auto: the root reads, as
#                 the bed's hosts share a local filesystem, not a coherent
#                 parallel one; P2PBCAST_ARGS=--source-shared=yes: each host
#                 reads its share of SOURCE under bench/out)
#   p2pbcast_ring, p2pbcast_tree   a schedule forced, the root alone reading
#   p2pbcast_allgather, p2pbcast_readtree   --source-shared=yes with the ring
#                 (every host reads its share, ring allgather) or the trees
#                 (the two trees' tops read, the trees carry it)
#   p2pbcast_base the binary named by P2PBCAST_BASE (e.g. a build of the last
#                 release) with exactly p2pbcast's options: before and after
#                 side by side in one run (-m "p2pbcast p2pbcast_base")
#   mpi_default   mpi_bcast_copy, Open MPI's fixed rules
#   mpi_pipeline  coll_tuned_bcast_algorithm 3 forced, 1 MiB segments
#   mpi_sag       coll_tuned_bcast_algorithm 8 forced (scatter + recursive-doubling allgather)
#   mpi_sag_ring  coll_tuned_bcast_algorithm 9 forced (scatter + ring allgather)
#   naive         h1 sends the whole file to h2..hN one after another
#   dbcast        mpiFileUtils' dbcast, 2 ranks per host (one writes, one reads
#                 its stripes of SOURCE under bench/out: every host reads);
#                 DBCAST names the binary (default /opt/mpifileutils/bin/dbcast,
#                 bench/build_dbcast.sh); skipped with a note if absent
# and the ideal F/B.  DEST is each host's private /dev/shm for every method
# (the network is measured, not this VM's disk).  All MPI runs use
# --mca mpi_yield_when_idle 1, --bind-to none, btl tcp,self and niced ranks
# (tests/netbed/netbed.sh mpirun), so that no rank spins on the 2 cores.
#
# Prints a table: method, N, seconds, efficiency = (F/B)/T, and each method's
# time divided by p2pbcast's at the same N (ratio > 1: p2pbcast is faster).
# Writes bench/out/bed-STAMP.csv, .txt and .png (gnuplot, bench/plot.gp).
# Times: p2pbcast's own clock (--json "seconds": bootstrap, connections,
# transfer, fsync, rename), mpi_bcast_copy's barrier-to-barrier clock (file
# read, bcast, write, fsync), dbcast's own barrier-to-barrier clock (after
# every rank opened its file: read, transfer, write, fsync, close), the naive
# sender's wall clock; none includes mpirun's start-up ("wall" column: the
# whole command; dbcast launches 2N ranks, the other MPI methods N).
#
# Reuses bench/bed_baselines.sh (sourced) for the bed, B and every baseline.
# Environment: P2PBCAST (binary, default ../p2pbcast), P2PBCAST_ARGS (extra
# options, e.g. "-c 1M --slots 16", given to p2pbcast and p2pbcast_base alike),
# DBCAST (mpiFileUtils' dbcast, outside /tmp, as the hosts run it in place),
# P2PBCAST_BASE (a second binary for the method p2pbcast_base; outside /tmp,
# which the hosts do not share; copied to OUT/bin like the first; the table
# ends with its time over p2pbcast's).  Needs root (network namespaces).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/bed_baselines.sh
source "$BENCH/bed_baselines.sh"

B_NODES="2 4 8 16"
B_RATE=150
B_SIZE=128
B_METHODS="p2pbcast p2pbcast_ring p2pbcast_tree mpi_default mpi_pipeline mpi_sag mpi_sag_ring naive dbcast"
B_PREFIX=bb
B_OUT=$BENCH/out
while (( $# )); do
    case $1 in
        -n) B_NODES=$2; shift 2 ;;
        -r) B_RATE=$2; shift 2 ;;
        -s) B_SIZE=$2; shift 2 ;;
        -m) B_METHODS=$2; shift 2 ;;
        -p) B_PREFIX=$2; shift 2 ;;
        -o) B_OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bed_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
(( EUID == 0 )) || { echo "bed_bench: must run as root (network namespaces)" >&2; exit 1; }
mkdir -p "$B_OUT/bin"

# The binary where every host sees it (the hosts have a private /tmp).
P2P_SRC=${P2PBCAST:-$BENCH/../p2pbcast}
[[ -x $P2P_SRC ]] || { echo "bed_bench: no p2pbcast at $P2P_SRC (make first)" >&2; exit 1; }
cp -f "$P2P_SRC" "$B_OUT/bin/p2pbcast"
export P2PBCAST_CMD="$B_OUT/bin/p2pbcast -q --tcp-if 10.77.0.0/24 ${P2PBCAST_ARGS:-}"
export P2PBCAST_JSON=1
# The "before" binary, run exactly as p2pbcast (its logs and JSON tagged base).
if [[ -n ${P2PBCAST_BASE:-} ]]; then
    [[ -x $P2PBCAST_BASE ]] || { echo "bed_bench: P2PBCAST_BASE=$P2PBCAST_BASE is not an executable" >&2; exit 1; }
    cp -f "$P2PBCAST_BASE" "$B_OUT/bin/p2pbcast_base"
    P2PBCAST_BASE_CMD="$B_OUT/bin/p2pbcast_base -q --tcp-if 10.77.0.0/24 ${P2PBCAST_ARGS:-}"
elif [[ " $B_METHODS " == *" p2pbcast_base "* ]]; then
    echo "bed_bench: method p2pbcast_base needs P2PBCAST_BASE (the binary to compare with)" >&2; exit 1
fi
run_p2pbcast_base() { P2PBCAST_CMD=$P2PBCAST_BASE_CMD P2PBCAST_TAG=base run_p2pbcast "$@"; }
run_p2pbcast_allgather() {
    P2PBCAST_CMD="$P2PBCAST_CMD --schedule ring --source-shared=yes" P2PBCAST_TAG=allgather run_p2pbcast "$@"
}
run_p2pbcast_readtree() {
    P2PBCAST_CMD="$P2PBCAST_CMD --schedule tree --source-shared=yes" P2PBCAST_TAG=readtree run_p2pbcast "$@"
}

command -v gnuplot >/dev/null || {
    echo "bed_bench: gnuplot missing: installing gnuplot-nox" >&2
    apt-get install -y gnuplot-nox >/dev/null 2>&1 || echo "bed_bench: no gnuplot: no plot" >&2
}

STAMP=$(date +%Y%m%d-%H%M%S)
CSV=$B_OUT/bed-$STAMP.csv
TXT=$B_OUT/bed-$STAMP.txt
PNG=$B_OUT/bed-$STAMP.png
T_START=$(now)
LOAD_START=$(cat /proc/loadavg)

# bed_baselines' main: bed per N, B, every method, verification, CSV.
main -n "$B_NODES" -r "$B_RATE" -s "$B_SIZE" -m "$B_METHODS" -d /dev/shm/bb-dest.bin \
    -o "$B_OUT" -p "$B_PREFIX" --csv "$CSV" >"$B_OUT/bed-$STAMP.baselines.txt"

# ---------------------------------------------------------------- table
table() {
    awk -F, -v t0="$T_START" '
        NR == 1 { next }
        { m[NR] = $1; n[NR] = $2; s[NR] = $7; w[NR] = $8; e[NR] = $10; b[$2] = $4; f = $5; rate = $3; l[NR] = $11
          if ($1 == "p2pbcast") p[$2] = $7
          if ($1 == "p2pbcast_base") { pb[$2] = $7; nb[++kb] = $2 }
          rows = NR }
        END {
            printf "F = %d MiB (%.1f MB), link rate %d Mbit/s, DEST in each host'"'"'s /dev/shm\n", f / 1048576, f / 1e6, rate
            printf "B measured per N with one TCP stream h1 -> h2:"
            for (k in b) printf " N=%s %.1f", k, b[k]
            printf " Mbit/s\n\n"
            printf "%-13s %3s %9s %9s %10s %12s %6s\n", "method", "N", "seconds", "wall", "efficiency", "T/T_p2pbcast", "load1"
            for (i = 2; i <= rows; i++) {
                r = (p[n[i]] != "" && p[n[i]] != "nan" && s[i] != "nan") ? sprintf("%.2f", s[i] / p[n[i]]) : "-"
                printf "%-13s %3d %9s %9s %10s %12s %6s\n", m[i], n[i], s[i], (w[i] == "" ? "-" : w[i]), e[i], r, l[i]
                if (i < rows && n[i + 1] != n[i]) printf "\n"
            }
            if (kb) printf "\np2pbcast / p2pbcast_base (after / before; below 1: p2pbcast is faster):"
            for (j = 1; j <= kb; j++) {
                k = nb[j]
                if (p[k] != "" && p[k] != "nan" && pb[k] != "nan") printf " N=%s %.3f", k, p[k] / pb[k]
                else printf " N=%s -", k
            }
            if (kb) printf "\n"
        }' "$CSV"
}
{
    table
    echo
    echo "MPI baselines: Open MPI $(mpirun --version 2>/dev/null | sed -n 's/.*Open MPI) //p;q'), --mca btl tcp,self," \
         "--mca mpi_yield_when_idle 1 (ranks block instead of spinning), --bind-to none, nice ${NETBED_NICE:-5}"
    echo "p2pbcast: $P2PBCAST_CMD"
    [[ -n ${P2PBCAST_BASE:-} ]] && echo "p2pbcast_base: $P2PBCAST_BASE_CMD (copy of $P2PBCAST_BASE)"
    [[ " $B_METHODS " == *" dbcast "* ]] && echo "dbcast: ${DBCAST} (2 ranks per host)$([[ -x $DBCAST ]] || echo ': absent, skipped')"
    echo "load average at start: $LOAD_START; at end: $(cat /proc/loadavg)"
    echo "total time of this benchmark: $(calc "$(now) - $T_START" 0) s"
} | tee "$TXT"

# ---------------------------------------------------------------- plot
if command -v gnuplot >/dev/null; then
    gnuplot -e "csv='$CSV'; out='$PNG'" "$BENCH/plot.gp" && echo "plot: $PNG"
fi
echo "CSV: $CSV"
echo "table: $TXT"
