#!/bin/bash
# mpi_poll_compare.sh - the mpi transport's polling (issue 23): two builds of
# p2pbcast side by side on one machine, -t mpi, in one run.
#
#   bench/mpi_poll_compare.sh BEFORE [AFTER] [-n 2] [-s 256] [-r 5] [-c 4M]
#                             [-b "self,vader self,tcp"] [-d /dev/shm]
#
# BEFORE and AFTER are p2pbcast binaries (AFTER defaults to this tree's
# ./p2pbcast; BEFORE e.g. main's build). For each btl list, REPS rounds of
# one run of each, interleaved so both see the same machine load:
#   mpirun -np NP --mca btl BTL p2pbcast -q --per-rank -t mpi -c CHUNK
#          --json J SOURCE DIR/mpc.%r
# on one generated SIZE MiB file (page cache), DESTs in DIR (tmpfs).
# Time: p2pbcast's own clock (--json seconds, after MPI_Init). Reported: the
# median of each and the ratio AFTER/BEFORE (below 1: AFTER is faster).
# mpirun flags as bench/local_compare.sh: --oversubscribe --allow-run-as-root
# --bind-to none --mca btl_vader_single_copy_mechanism none (vader then
# copies through shared-memory fragments, inside MPI calls, as ob1 does).
# Output: table on stdout, also OUT/mpi-poll-STAMP.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NP=2
SIZE_MIB=256
REPS=5
CHUNK=4M
BTLS="self,vader self,tcp"
DDIR=/dev/shm
OUT=$HERE/out
BINS=()
while (( $# )); do
    case $1 in
        -n) NP=$2; shift 2 ;;
        -s) SIZE_MIB=$2; shift 2 ;;
        -r) REPS=$2; shift 2 ;;
        -c) CHUNK=$2; shift 2 ;;
        -b) BTLS=$2; shift 2 ;;
        -d) DDIR=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "mpi_poll_compare: unknown option $1" >&2; exit 2 ;;
        *) BINS+=("$1"); shift ;;
    esac
done
(( ${#BINS[@]} >= 1 )) || { echo "mpi_poll_compare: name the BEFORE binary (see --help)" >&2; exit 2; }
BEFORE=${BINS[0]}
AFTER=${BINS[1]:-$HERE/../p2pbcast}
for b in "$BEFORE" "$AFTER"; do
    [[ -x $b ]] || { echo "mpi_poll_compare: no p2pbcast at $b" >&2; exit 1; }
done

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/mpc.XXXXXX")
trap 'rm -rf "$WORK" "$DDIR"/mpc.*' EXIT
head -c $((SIZE_MIB * 1048576)) /dev/urandom > "$WORK/src"
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none
     --mca btl_vader_single_copy_mechanism none -np "$NP")
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# one run: prints p2pbcast's seconds
one() { # one BIN BTL
    rm -f "$DDIR"/mpc.* "$WORK/j.json"
    timeout -k 10 600 "${MPI[@]}" --mca btl "$2" "$1" -q --per-rank -t mpi -c "$CHUNK" \
        --json "$WORK/j.json" "$WORK/src" "$DDIR/mpc.%r" >/dev/null
    sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$WORK/j.json"
}

report=$OUT/mpi-poll-$(date +%Y%m%d-%H%M%S).txt
{
    echo "# mpi transport polling: $SIZE_MIB MiB, -np $NP, -c $CHUNK, $REPS rounds, median seconds"
    echo "# before: $BEFORE"
    echo "# after:  $AFTER"
    printf '%-12s %10s %10s %8s\n' btl before after ratio
    for btl in $BTLS; do
        tb="" ta=""
        one "$BEFORE" "$btl" >/dev/null # warm-up (tmpfs pages, page cache)
        for ((r = 0; r < REPS; r++)); do
            tb+=" $(one "$BEFORE" "$btl")"
            ta+=" $(one "$AFTER" "$btl")"
        done
        mb=$(median <<<"$tb")
        ma=$(median <<<"$ta")
        printf '%-12s %10.3f %10.3f %8.3f\n' "$btl" "$mb" "$ma" "$(awk "BEGIN { print $ma / $mb }")"
    done
} | tee "$report"
