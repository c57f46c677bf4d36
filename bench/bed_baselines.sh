#!/bin/bash
# bed_baselines.sh - baselines for p2pbcast on the netbed (issue 5).
#
#   bed_baselines.sh [options]            run the baselines, print a table and a CSV
#   bed_baselines.sh calibrate N RATE     can the machine carry N hosts at RATE?
#
# For every N it builds an N-host bed (tests/netbed/netbed.sh), measures the
# single-stream bandwidth B of one shaped link (bench/tcp_copy, memory to
# memory, ~3 s), then broadcasts the same generated file with each method and
# checks every host's copy.  Efficiency = (F/B) / T, F/B being the ideal.
#
# Options:
#   -n "2 4 8"     node counts (default "2 4 8")
#   -r MBIT        link rate (default 150: 16 hosts x 150 Mbit/s still run at
#                  0.94+ of B all at once on 2 cores; see calibrate)
#   -s MIB         file size in MiB (default 256)
#   -m "LIST"      methods (default "naive mpi_default mpi_pipeline mpi_sag mpi_sag_ring",
#                  plus p2pbcast when P2PBCAST_CMD is set)
#   -d PATH        DEST inside each host (default /tmp/bb-dest.bin: the host's own
#                  disk directory; /dev/shm/bb-dest.bin is its private tmpfs)
#   --no-io        memory only (MPI: --no-io, naive: --no-io); no DEST files
#   -o DIR         output directory (default bench/out)
#   -p PREFIX      netbed prefix (default bb)
#   --csv FILE     CSV path (default OUT/baselines-STAMP.csv)
#
# Hook for p2pbcast: set P2PBCAST_CMD to the command each rank runs, e.g.
#   P2PBCAST_CMD="/work/main/p2pbcast --transport tcp" bench/bed_baselines.sh
# run_p2pbcast below launches "$P2PBCAST_CMD SOURCE DEST" with one rank per
# host and times the whole mpirun (start-up, I/O and all) unless the command
# prints a "RESULT ... seconds=T" line.  With P2PBCAST_JSON=1 it adds
# "--json OUT/p2pbcast-N.json" and takes "seconds" from that report (p2pbcast's
# own clock: bootstrap, connections, transfer, fsync and rename; not MPI_Init).
# Its stderr goes to OUT/p2pbcast-TAG-N.log, TAG being P2PBCAST_TAG (bed_bench.sh
# sets "base" for its second binary), else the forced schedule, else auto.
#
# Sourcing: "source bed_baselines.sh" defines everything and runs nothing
# (bench/bed_bench.sh does that and calls main with its own options).
#
# Methods:  mpi_default   MPI_Bcast, Open MPI's fixed rules
#           mpi_pipeline  coll_tuned_bcast_algorithm 3 (pipeline), 1 MiB segments
#           mpi_sag       coll_tuned_bcast_algorithm 8 (scatter + recursive-doubling allgather)
#           mpi_sag_ring  coll_tuned_bcast_algorithm 9 (scatter + ring allgather)
#           naive         h1 sends to h2..hN one after another (bench/naive_copy.sh)
#           dbcast        mpiFileUtils' dbcast (DBCAST, default /opt/mpifileutils/bin/dbcast,
#                         built by bench/build_dbcast.sh; skipped with a note if absent):
#                         2 ranks per host, as dbcast needs (one writes DEST, the
#                         other reads its stripes of SOURCE: every host reads
#                         SOURCE, the parallel-read case).  Its time is its own
#                         clock, printed by its rank 0 ("Bcast complete: ...
#                         time=T secs"): from a barrier after every rank opened
#                         SOURCE or DEST to a barrier after every writer's
#                         fsync, close, truncate and chmod, so like
#                         mpi_bcast_copy's without mpirun's start-up.  dbcast
#                         exits 0 even when a copy failed: an ERROR line in its
#                         log fails the run, and every copy is compared anyway.
#           p2pbcast_ring, p2pbcast_tree, p2pbcast_tree_unplaced: a schedule
#                         forced; the last without placement (src/stage/rates.c)
# All MPI runs: --mca btl tcp,self, mpi_yield_when_idle 1, --bind-to none,
# ranks niced (NETBED_NICE), rank 0 on h1 like the naive sender.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETBED=$HERE/../tests/netbed/netbed.sh
export NETBED

NODES="2 4 8"
RATE=150
SIZE_MIB=256
METHODS="naive mpi_default mpi_pipeline mpi_sag mpi_sag_ring"
DEST=/tmp/bb-dest.bin
NO_IO=0
OUT=$HERE/out
PREFIX=bb
BUFSIZE=64M
DBCAST=${DBCAST:-/opt/mpifileutils/bin/dbcast}

die() { echo "bed_baselines: $*" >&2; exit 1; }
log() { echo "bed_baselines: $*" >&2; }
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }   # machine load (shared 2-core box)
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
result_field() {  # key: value of key=... in the RESULT line on stdin
    awk -v k="$1" '/^RESULT/ { for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) v = substr($i, length(k) + 2) } END { print v }'
}

# Binaries live outside /tmp (the hosts have a private /tmp).
build() {
    local bin=$OUT/bin
    mkdir -p "$bin"
    if [[ ! -x $bin/mpi_bcast_copy || $HERE/mpi_bcast_copy.c -nt $bin/mpi_bcast_copy ]]; then
        mpicc -O2 -std=c11 -Wall -Wextra -o "$bin/mpi_bcast_copy" "$HERE/mpi_bcast_copy.c"
    fi
    if [[ ! -x $bin/tcp_copy || $HERE/tcp_copy.c -nt $bin/tcp_copy ]]; then
        "${CC:-cc}" -O2 -std=c11 -Wall -Wextra -o "$bin/tcp_copy" "$HERE/tcp_copy.c"
    fi
    MBC=$bin/mpi_bcast_copy
    TCP_COPY=$bin/tcp_copy
    export TCP_COPY
}

bed_up() {  # n rate
    NETBED_PREFIX=$PREFIX "$NETBED" up "$1" "$2" "$PREFIX" 2>&2
    export NETBED_PREFIX=$PREFIX
}
bed_down() { NETBED_PREFIX=$PREFIX "$NETBED" down "$PREFIX" || true; }

# Single-stream bandwidth h1 -> h2, memory to memory, about 3 s of data.
measure_b() {  # rate -> Mbit/s
    local bytes addr log
    bytes=$(( $1 * 3000000 / 8 ))
    addr=$("$NETBED" addr h2)
    log=$(mktemp /var/tmp/bb-recv.XXXXXX)
    "$NETBED" exec h2 timeout 60 "$TCP_COPY" recv --no-io "$addr" 5301 x >"$log" 2>&1 &
    local rp=$!
    "$NETBED" exec h1 "$TCP_COPY" send --no-io --size "$bytes" - "$addr:5301" | result_field mbit
    wait "$rp" || true
    rm -f "$log"
}

# ------------------------------------------------------------- methods
# Each prints the method's own seconds (RESULT line) on stdout.
mpi_run() {  # n extra-mca-args...
    local n=$1
    shift
    local -a io=()
    (( NO_IO )) && io=(--no-io)
    "$NETBED" mpirun -np "$n" "$@" "$MBC" -b "$BUFSIZE" "${io[@]}" "$SOURCE" "$DEST" | result_field seconds
}
run_mpi_default() { mpi_run "$1"; }
run_mpi_pipeline() {
    mpi_run "$1" --mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_bcast_algorithm 3 \
        --mca coll_tuned_bcast_algorithm_segmentsize 1048576
}
run_mpi_sag() { mpi_run "$1" --mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_bcast_algorithm 8; }
run_mpi_sag_ring() { mpi_run "$1" --mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_bcast_algorithm 9; }
run_naive() {
    local -a io=()
    (( NO_IO )) && io=(--no-io)
    "$HERE/naive_copy.sh" bed "${io[@]}" "$SOURCE" "$DEST" "$1" | result_field seconds
}
# mpiFileUtils' dbcast, two ranks on every host (rank 0 on h1); its output
# (progress and errors of every rank) goes to OUT/dbcast-N.log.
run_dbcast() {
    local n=$1 k hosts="" log=$OUT/dbcast-$1.log
    for (( k = 1; k <= n; k++ )); do hosts+="${hosts:+,}h$k:2"; done
    "$NETBED" mpirun -np "$(( 2 * n ))" --host "$hosts" "$DBCAST" "$SOURCE" "$DEST" >"$log" 2>&1 ||
        { log "dbcast failed: $(tail -n 5 "$log")"; return 1; }
    if grep -q 'ERROR:' "$log"; then
        log "dbcast reported errors: $(grep 'ERROR:' "$log" | head -n 5)"; return 1
    fi
    sed -n 's/.*Bcast complete: .* time=\([0-9.]*\) secs.*/\1/p' "$log"
}

# HOOK: the p2pbcast run.  One rank per host, rank 0 (root) on h1, same MCA
# settings as the MPI baselines.  Reports its own RESULT seconds if it prints
# one, else the wall time of the whole mpirun.
run_p2pbcast() {
    local n=$1 t0 t1 out s json="" tag=${P2PBCAST_TAG:-${P2PBCAST_SCHEDULE:-auto}}
    local log=$OUT/p2pbcast-$tag-$1.log
    local -a extra=() mca=()
    [[ -n ${P2PBCAST_SCHEDULE:-} ]] && extra+=(--schedule "$P2PBCAST_SCHEDULE" --source-shared=no)
    # the placement switch (src/stage/rates.c) reaches the ranks only through -x
    [[ -n ${P2PBCAST_TEST_PLACEMENT:-} ]] && mca+=(-x P2PBCAST_TEST_PLACEMENT)
    if [[ ${P2PBCAST_JSON:-0} == 1 ]]; then
        json=$OUT/p2pbcast-$tag-$n.json
        rm -f "$json"
        extra+=(--json "$json")
    fi
    t0=$(now)
    # shellcheck disable=SC2086 # P2PBCAST_CMD is a command line
    out=$("$NETBED" mpirun -np "$n" ${mca[@]+"${mca[@]}"} $P2PBCAST_CMD "${extra[@]}" "$SOURCE" "$DEST" 2>"$log") ||
        { log "p2pbcast failed: $(tail -n 5 "$log")"; return 1; }
    t1=$(now)
    s=$(result_field seconds <<<"$out")
    if [[ -z $s && -n $json && -r $json ]]; then
        s=$(sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$json")
    fi
    [[ -n $s ]] || s=$(calc "$t1 - $t0" 6)
    echo "$s"
}

# Each schedule forced, the root alone reading SOURCE (p2pbcast alone is the
# default: --schedule auto --source-shared=auto).
run_p2pbcast_ring() { P2PBCAST_SCHEDULE=ring run_p2pbcast "$@"; }
run_p2pbcast_tree() { P2PBCAST_SCHEDULE=tree run_p2pbcast "$@"; }
# The trees without placement (no send-rate probe, the default order): what
# placement buys (bench/adapt_bench.sh).
run_p2pbcast_tree_unplaced() {
    P2PBCAST_TAG=tree_unplaced P2PBCAST_SCHEDULE=tree P2PBCAST_TEST_PLACEMENT=0 run_p2pbcast "$@"
}

# dbcast is built outside the project: without it the method is left out.
drop_missing_dbcast() {
    [[ " $METHODS " == *" dbcast "* ]] || return 0
    case $DBCAST in
        /tmp|/tmp/*|/dev/shm|/dev/shm/*) die "DBCAST=$DBCAST: the bed's hosts have a private /tmp and /dev/shm" ;;
    esac
    [[ -x $DBCAST ]] && return 0
    log "no dbcast at $DBCAST (bench/build_dbcast.sh builds it; DBCAST names another): method dbcast skipped"
    local m kept=""
    for m in $METHODS; do [[ $m == dbcast ]] || kept+="${kept:+ }$m"; done
    METHODS=$kept
}

# Every host holds an identical DEST; then remove it.
verify_and_clean() {  # n
    local k bad=0
    for (( k = 1; k <= $1; k++ )); do
        if (( ! NO_IO )); then
            "$NETBED" exec "h$k" cmp -s "$SOURCE" "$DEST" || { log "h$k: DEST differs from SOURCE"; bad=1; }
        fi
        "$NETBED" exec "h$k" rm -f "$DEST"
    done
    return "$bad"
}

# ------------------------------------------------------------- calibrate
# Every host sends to its successor at once (a ring, as p2pbcast's steady
# state: each link busy in both directions) for ~4 s; prints each stream's
# rate and the CPU idle share, so one can see whether the links or the CPU
# are the limit at this N and RATE.
calibrate() {  # n rate
    local n=$1 rate=$2 k addr bytes b
    build
    trap bed_down EXIT
    bed_up "$n" "$rate"
    b=$(measure_b "$rate")
    bytes=$(( rate * 4000000 / 8 ))
    local dir
    dir=$(mktemp -d /var/tmp/bb-cal.XXXXXX)
    for (( k = 1; k <= n; k++ )); do
        addr=$("$NETBED" addr "h$k")
        "$NETBED" exec "h$k" timeout 60 "$TCP_COPY" recv --no-io "$addr" 5302 x >"$dir/r$k" 2>&1 &
    done
    sleep 0.3
    local -a cpu0 cpu1
    read -r -a cpu0 < <(grep '^cpu ' /proc/stat)
    for (( k = 1; k <= n; k++ )); do
        addr=$("$NETBED" addr "h$(( k % n + 1 ))")
        "$NETBED" exec "h$k" "$TCP_COPY" send --no-io --size "$bytes" - "$addr:5302" >"$dir/s$k" 2>&1 &
    done
    wait
    read -r -a cpu1 < <(grep '^cpu ' /proc/stat)
    local tot=0 i idle
    for i in 1 2 3 4 5 6 7 8; do tot=$(( tot + cpu1[i] - cpu0[i] )); done
    idle=$(( (cpu1[4] - cpu0[4]) * 100 / (tot > 0 ? tot : 1) ))
    local rates
    rates=$(grep -ho "mbit=[0-9.]*" "$dir"/s* | cut -d= -f2 | sort -n | tr "\n" " ")
    cat "$dir"/s* | awk -v n="$n" -v r="$rate" -v b="$b" -v idle="$idle" '
        /^RESULT/ { for (i = 1; i <= NF; i++) if ($i ~ /^mbit=/) { v = substr($i, 6); s += v; if (min == "" || v < min) min = v } }
        END { printf "calibrate N=%d rate=%d Mbit/s: single stream B=%.1f; ring, all at once: min %.1f (%.2f of B), aggregate %.0f Mbit/s, CPU idle %d%%\n", n, r, b, min, min / b, s, idle }'
    echo "  per-stream Mbit/s: $rates"
    rm -rf "$dir"
}

# ------------------------------------------------------------- main
main() {
    while (( $# )); do
        case $1 in
            -n) NODES=$2; shift 2 ;;
            -r) RATE=$2; shift 2 ;;
            -s) SIZE_MIB=$2; shift 2 ;;
            -m) METHODS=$2; shift 2 ;;
            -d) DEST=$2; shift 2 ;;
            -o) OUT=$2; shift 2 ;;
            -p) PREFIX=$2; shift 2 ;;
            --csv) CSV=$2; shift 2 ;;
            -b) BUFSIZE=$2; shift 2 ;;
            --no-io) NO_IO=1; shift ;;
            -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
    done
    if [[ -n ${P2PBCAST_CMD:-} && " $METHODS " != *" p2pbcast "* ]]; then
        METHODS="p2pbcast $METHODS"
    fi
    (( EUID == 0 )) || die "must run as root (network namespaces)"
    drop_missing_dbcast
    build
    trap bed_down EXIT
    trap 'exit 130' INT TERM

    # The same generated file for every method and N.  Outside /tmp so that
    # h1 (the root) sees it; the other hosts only ever read their own DEST.
    SOURCE=$OUT/data-${SIZE_MIB}M.bin
    if [[ ! -f $SOURCE || $(stat -c %s "$SOURCE") -ne $(( SIZE_MIB << 20 )) ]]; then
        log "generating $SOURCE"
        head -c "$(( SIZE_MIB << 20 ))" /dev/urandom >"$SOURCE.tmp"
        mv -f "$SOURCE.tmp" "$SOURCE"
    fi
    local fbytes=$(( SIZE_MIB << 20 )) stamp csv n b ideal m s eff wall t0 t1
    stamp=$(date +%Y%m%d-%H%M%S)
    csv=${CSV:-$OUT/baselines-$stamp.csv}
    mkdir -p "$(dirname "$csv")"
    echo "method,nodes,rate_mbit,b_mbit,bytes,io,seconds,wall_seconds,ideal_seconds,efficiency,load1" >"$csv"

    local -a rows=()
    for n in $NODES; do
        log "N=$n: bed up at $RATE Mbit/s"
        bed_up "$n" "$RATE"
        b=$(measure_b "$RATE")
        ideal=$(calc "$fbytes * 8 / ($b * 1000000)" 3)
        log "N=$n: B=$b Mbit/s, ideal F/B=$ideal s"
        rows+=("$(printf '%-14s %4d %9s %9s %10s' ideal "$n" "$ideal" "$ideal" 1.000)")
        echo "ideal,$n,$RATE,$b,$fbytes,$(( ! NO_IO )),$ideal,,$ideal,1.000,$(load1)" >>"$csv"
        for m in $METHODS; do
            declare -F "run_$m" >/dev/null || die "unknown method $m"
            t0=$(now)
            if ! s=$("run_$m" "$n") || [[ -z $s ]]; then
                log "N=$n $m: FAILED"; s=nan
            fi
            t1=$(now)
            wall=$(calc "$t1 - $t0" 3)
            verify_and_clean "$n" || s=nan
            if [[ $s == nan ]]; then eff=nan; else eff=$(calc "$ideal / $s" 3); s=$(calc "$s" 3); fi
            log "N=$n $m: $s s (wall $wall s), efficiency $eff"
            rows+=("$(printf '%-14s %4d %9s %9s %10s' "$m" "$n" "$s" "$wall" "$eff")")
            echo "$m,$n,$RATE,$b,$fbytes,$(( ! NO_IO )),$s,$wall,$ideal,$eff,$(load1)" >>"$csv"
        done
        bed_down
    done

    printf '\nF = %d MiB, link rate %d Mbit/s, DEST %s%s\n' "$SIZE_MIB" "$RATE" "$DEST" \
        "$( (( NO_IO )) && echo ' (memory only)')"
    printf '%-14s %4s %9s %9s %10s\n' method N seconds wall efficiency
    printf '%s\n' "${rows[@]}"
    echo "CSV: $csv"
}

CSV=${CSV:-}
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    case ${1:-} in
        calibrate)
            (( $# == 3 )) || die "usage: bed_baselines.sh calibrate N RATE_MBIT"
            calibrate "$2" "$3" ;;
        *) main "$@" ;;
    esac
fi
