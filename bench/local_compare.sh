#!/bin/bash
# local_compare.sh - the core issue's side-by-side on one machine, no bed.
#
#   bench/local_compare.sh [-n 4] [-s 1024] [-r 5] [-d /dev/shm] [-o bench/out]
#
# NP local "nodes" (mpirun -np NP --oversubscribe, p2pbcast --per-rank: every
# rank writes its own DEST), one generated SIZE MiB file, REPS runs of each:
#   p2pbcast     mpirun -np NP p2pbcast --per-rank SOURCE DIR/lc-p2p.%r
#                (transport auto -> tcp over loopback on one host)
#   naive cp     cp SOURCE to each of the NP DESTs one after another, each
#                followed by sync FILE (bench/naive_copy.sh local)
#   mpi_bcast    mpirun -np NP bench/mpi_bcast_copy SOURCE DIR/lc-mbc.%r
#                (MPI_Bcast of 64 MiB pieces, Open MPI defaults, shared memory)
# DEST directory DIR defaults to /dev/shm (tmpfs: the tools are measured, not
# this VM's disk, which caps at ~300 MB/s with fsync).  SOURCE lives in
# bench/out (page cache after the first read).
# Times: "tool" is each tool's own clock (p2pbcast --json seconds, after
# MPI_Init; mpi_bcast_copy barrier to barrier; cp loop wall), "wall" is the
# whole command including mpirun start-up.  Median of REPS runs.
# Peak RSS per rank: /usr/bin/time -f %M around every rank (largest over REPS).
# mpirun flags: --oversubscribe --allow-run-as-root --bind-to none
#   --mca btl_vader_single_copy_mechanism none; the MPI baseline also gets
#   --mca mpi_yield_when_idle 1 (its ranks block instead of spinning on the
#   2 cores, as p2pbcast does in epoll_wait).
# One untimed warm-up cp loop first (fresh tmpfs pages are slow to touch here).
# Output: table on stdout, also OUT/local-STAMP.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NP=4
SIZE_MIB=1024
REPS=5
DDIR=/dev/shm
OUT=$HERE/out
while (( $# )); do
    case $1 in
        -n) NP=$2; shift 2 ;;
        -s) SIZE_MIB=$2; shift 2 ;;
        -r) REPS=$2; shift 2 ;;
        -d) DDIR=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "local_compare: unknown option $1" >&2; exit 2 ;;
    esac
done
P2PBCAST=${P2PBCAST:-$HERE/../p2pbcast}
[[ -x $P2PBCAST ]] || { echo "local_compare: no p2pbcast at $P2PBCAST (make first)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "local_compare: /usr/bin/time missing (Debian: time)" >&2; exit 1; }

mkdir -p "$OUT/bin"
MBC=$OUT/bin/mpi_bcast_copy
if [[ ! -x $MBC || $HERE/mpi_bcast_copy.c -nt $MBC ]]; then
    mpicc -O2 -std=c11 -Wall -Wextra -o "$MBC" "$HERE/mpi_bcast_copy.c"
fi
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none
     --mca btl_vader_single_copy_mechanism none -np "$NP")
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

SOURCE=$OUT/data-${SIZE_MIB}M.bin
if [[ ! -f $SOURCE || $(stat -c %s "$SOURCE") -ne $(( SIZE_MIB << 20 )) ]]; then
    echo "local_compare: generating $SOURCE" >&2
    head -c "$(( SIZE_MIB << 20 ))" /dev/urandom >"$SOURCE.tmp"
    mv -f "$SOURCE.tmp" "$SOURCE"
fi
cat "$SOURCE" >/dev/null   # page cache: every method reads it from memory

WORK=$(mktemp -d /var/tmp/local_compare.XXXXXX)
clean_dests() { rm -f "$DDIR"/lc-p2p.* "$DDIR"/lc-mbc.* "$DDIR"/lc-cp.* "$DDIR"/.lc-p2p.* 2>/dev/null || true; }
trap 'clean_dests; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

verify() {  # prefix: every rank's DEST equals SOURCE
    local r
    for (( r = 0; r < NP; r++ )); do
        cmp -s "$SOURCE" "$DDIR/$1.$r" || { echo "local_compare: $DDIR/$1.$r differs" >&2; return 1; }
    done
}
# Peak RSS of every rank (KiB), largest per rank over all repetitions.
rss_row() {  # tag
    local r m row=""
    for (( r = 0; r < NP; r++ )); do
        m=$(cat "$WORK/$1".*.rss."$r" 2>/dev/null | sort -n | tail -n1)
        row+="$(calc "${m:-0} / 1024" 0) "
    done
    echo "$row"
}
# Every rank under /usr/bin/time; its file names the repetition and the rank.
rank_wrap() {  # tag rep -> argv prefix
    # shellcheck disable=SC2016 # expanded by the rank's bash
    printf '%s\0' bash -c '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$WORK/$1.$2.rss"
}

# Warm-up (not timed): the first touch of fresh tmpfs pages is slow on this VM.
wdests=()
for (( r = 0; r < NP; r++ )); do wdests+=("$DDIR/lc-cp.$r"); done
"$HERE/naive_copy.sh" local "$SOURCE" "${wdests[@]}" >/dev/null
P2P_T="" P2P_W="" CP_T="" MBC_T="" MBC_W=""
for (( i = 1; i <= REPS; i++ )); do
    # p2pbcast
    clean_dests
    mapfile -d '' wrap < <(rank_wrap p2p "$i")
    t0=$(now)
    "${MPI[@]}" "${wrap[@]}" "$P2PBCAST" -q --per-rank --json "$WORK/p2p.json" \
        "$SOURCE" "$DDIR/lc-p2p.%r" >"$WORK/p2p.log" 2>&1 || { cat "$WORK/p2p.log" >&2; exit 1; }
    t1=$(now)
    verify lc-p2p
    P2P_T+=" $(sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$WORK/p2p.json")"
    P2P_W+=" $(calc "$t1 - $t0")"
    # naive cp loop
    clean_dests
    dests=()
    for (( r = 0; r < NP; r++ )); do dests+=("$DDIR/lc-cp.$r"); done
    t0=$(now)
    "$HERE/naive_copy.sh" local "$SOURCE" "${dests[@]}" >/dev/null
    t1=$(now)
    verify lc-cp
    CP_T+=" $(calc "$t1 - $t0")"
    # MPI_Bcast copy
    clean_dests
    mapfile -d '' wrap < <(rank_wrap mbc "$i")
    t0=$(now)
    out=$("${MPI[@]}" --mca mpi_yield_when_idle 1 "${wrap[@]}" "$MBC" "$SOURCE" "$DDIR/lc-mbc.%r" 2>"$WORK/mbc.log") ||
        { cat "$WORK/mbc.log" >&2; exit 1; }
    t1=$(now)
    verify lc-mbc
    MBC_T+=" $(awk '/^RESULT/ { for (i = 1; i <= NF; i++) if ($i ~ /^seconds=/) print substr($i, 9) }' <<<"$out")"
    MBC_W+=" $(calc "$t1 - $t0")"
    echo "local_compare: rep $i: p2pbcast$P2P_T | cp$CP_T | mpi_bcast$MBC_T" >&2
done
clean_dests

pt=$(median <<<"$P2P_T") pw=$(median <<<"$P2P_W") ct=$(median <<<"$CP_T")
mt=$(median <<<"$MBC_T") mw=$(median <<<"$MBC_W")
{
    echo "local side by side: $NP ranks on one host ($(nproc) cores), F = $SIZE_MIB MiB, DEST in $DDIR, median of $REPS"
    printf '%-26s %9s %9s %12s %12s\n' method "tool s" "wall s" "tool/p2p" "wall/p2p"
    printf '%-26s %9s %9s %12s %12s\n' "p2pbcast (tcp loopback)" "$pt" "$pw" 1.00 1.00
    printf '%-26s %9s %9s %12s %12s\n' "naive cp loop" "$ct" "$ct" "$(calc "$ct / $pt" 2)" "$(calc "$ct / $pw" 2)"
    printf '%-26s %9s %9s %12s %12s\n' "mpi_bcast_copy" "$mt" "$mw" "$(calc "$mt / $pt" 2)" "$(calc "$mw / $pw" 2)"
    echo
    echo "min (s): p2pbcast $(tr ' ' '\n' <<<"$P2P_T" | grep . | sort -g | head -n1), cp $(tr ' ' '\n' <<<"$CP_T" | grep . | sort -g | head -n1), mpi_bcast $(tr ' ' '\n' <<<"$MBC_T" | grep . | sort -g | head -n1)"
    echo "all runs (s): p2pbcast tool:$P2P_T wall:$P2P_W | cp:$CP_T | mpi_bcast tool:$MBC_T wall:$MBC_W"
    echo "peak RSS per rank (MiB, ranks 0..$(( NP - 1 ))):"
    echo "  p2pbcast:       $(rss_row p2p)"
    echo "  mpi_bcast_copy: $(rss_row mbc)  (64 MiB MPI_Bcast pieces)"
    echo "mpirun: ${MPI[*]:1}; MPI baseline adds --mca mpi_yield_when_idle 1"
    echo "p2pbcast $("$P2PBCAST" --version | head -n1), Open MPI $(mpirun --version 2>/dev/null | sed -n 's/.*Open MPI) //p;q'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/local-$(date +%Y%m%d-%H%M%S).txt"
