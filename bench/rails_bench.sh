#!/bin/bash
# rails_bench.sh - p2pbcast on hosts with two networks (issue 20), one run of
# each method side by side on a 4-host bed with a second rail
# (tests/netbed/netbed.sh, NETBED_RAIL1_RATE).  Run it under the bed lock:
#   flock /var/lock/p2pbcast-bed.lock bench/rails_bench.sh [-s MIB] [-n N] [--no-default-route]
# Two beds:
#   slow default route: rail 0 (eth0, default route) at 20 Mbit/s, rail 1 at
#     150.  B = one TCP stream h1 -> h2 on rail 1.  p2pbcast with no option
#     (it should find rail 1), with --tcp-if eth1 (the rail named: what the
#     choice should match) and with --tcp-if eth0 (the default route alone,
#     as before rails).
#   two rails: both at 150 Mbit/s.  B = one TCP stream h1 -> h2 on rail 0.
#     p2pbcast with no option (both rails), with --tcp-if eth1 (one rail),
#     and Open MPI's MPI_Bcast (bench/mpi_bcast_copy, default rules; its
#     traffic stays on rail 0, the bed's MCA settings).
# Every p2pbcast run uses --source-shared=no (the root alone reads SOURCE:
# the ring, so that F/B is the bound) and DEST in each host's /dev/shm.
# Prints one table: method, seconds, (F/B)/T; writes it to
# bench/out/rails.txt, .csv and .png (gnuplot, bench/rails_plot.gp).  Needs root and a built ./p2pbcast.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/bed_baselines.sh
source "$HERE/bed_baselines.sh"
N=4
SIZE_MIB=64
PREFIX=rb
DEST=/dev/shm/rb-dest.bin
NO_DEFAULT_ROUTE=  # --no-default-route: leave out the run on the 20 Mbit/s route alone (slow)
while (( $# )); do
    case $1 in
        -s) SIZE_MIB=$2; shift 2 ;;
        -n) N=$2; shift 2 ;;
        --no-default-route) NO_DEFAULT_ROUTE=1; shift ;;
        *) die "usage: rails_bench.sh [-s MIB] [-n N] [--no-default-route]" ;;
    esac
done
(( EUID == 0 )) || die "must run as root (network namespaces)"
build
mkdir -p "$OUT"
BIN=$OUT/bin/p2pbcast
cp "$HERE/../p2pbcast" "$BIN"
SOURCE=$OUT/data-${SIZE_MIB}M.bin
if [[ ! -f $SOURCE || $(stat -c %s "$SOURCE") -ne $(( SIZE_MIB << 20 )) ]]; then
    head -c "$(( SIZE_MIB << 20 ))" /dev/urandom >"$SOURCE"
fi
F_MBIT=$(( (SIZE_MIB << 20) * 8 / 1000000 ))
echo "bed,method,seconds,ratio,hosts,mib" >"$OUT/rails.csv"
trap bed_down EXIT
trap 'exit 130' INT TERM

rails_up() {  # rate0 rate1
    bed_down >/dev/null 2>&1
    NETBED_RAIL1_RATE=$2 bed_up "$N" "$1"
}

# One TCP stream h1 -> h2 to h2's address on a rail (10.77 or 10.78), ~3 s.
measure_rail() {  # rate addr
    local bytes=$(( $1 * 3000000 / 8 )) rp
    "$NETBED" exec h2 timeout 60 "$TCP_COPY" recv --no-io "$2" 5301 x >/dev/null 2>&1 &
    rp=$!
    sleep 0.3
    "$NETBED" exec h1 "$TCP_COPY" send --no-io --size "$bytes" - "$2:5301" | result_field mbit
    wait "$rp" || true
}

# p2pbcast with extra options; prints its seconds (from --json).
p2p() {
    local json=$OUT/rails.json
    rm -f "$json"
    "$NETBED" mpirun -np "$N" "$BIN" -q --source-shared=no --json "$json" "$@" "$SOURCE" "$DEST" \
        2>"$OUT/rails-p2p.log" >/dev/null || { log "p2pbcast $* failed: $(tail -n 3 "$OUT/rails-p2p.log")"; echo NaN; return; }
    verify_and_clean "$N" || log "p2pbcast $*: a copy differs"
    sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$json"
}

row() {  # bed method seconds B; also a line of $OUT/rails.csv
    local r
    r=$(calc "$F_MBIT / $4 / $3")
    printf '%-18s %-34s %8s s  (F/B)/T = %s\n' "$1" "$2" "$3" "$r"
    printf '%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$r" "$N" "$SIZE_MIB" >>"$OUT/rails.csv"
}

{
    echo "# rails_bench.sh: $N hosts, $SIZE_MIB MiB, $(date -u +%Y-%m-%d)"
    rails_up 20 150
    B=$(measure_rail 150 10.78.0.12)
    echo "# slow default route (eth0 20 Mbit/s) + rail 1 (eth1 150): B on rail 1 = $B Mbit/s"
    row "slow-default" "p2pbcast (no option)" "$(p2p)" "$B"
    row "slow-default" "p2pbcast --tcp-if eth1 (named)" "$(p2p --tcp-if eth1)" "$B"
    [[ $NO_DEFAULT_ROUTE ]] ||
        row "slow-default" "p2pbcast --tcp-if eth0 (default route)" "$(p2p --tcp-if eth0)" "$B"

    rails_up 150 150
    B=$(measure_rail 150 10.77.0.12)
    echo "# two rails at 150 Mbit/s: B on one rail = $B Mbit/s"
    row "two-rails" "p2pbcast (no option: both rails)" "$(p2p)" "$B"
    row "two-rails" "p2pbcast --tcp-if eth1 (one rail)" "$(p2p --tcp-if eth1)" "$B"
    s=$(run_mpi_default "$N")
    verify_and_clean "$N" || log "MPI_Bcast: a copy differs"
    row "two-rails" "MPI_Bcast (Open MPI default rules)" "$s" "$B"
} | tee "$OUT/rails.txt"
if command -v gnuplot >/dev/null; then
    gnuplot -e "csv='$OUT/rails.csv'; out='$OUT/rails.png'" "$HERE/rails_plot.gp" && echo "plot: $OUT/rails.png"
fi
