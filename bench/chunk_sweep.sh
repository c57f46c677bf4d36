#!/bin/bash
# chunk_sweep.sh - p2pbcast's time against its chunk size on the multi-host
# bed, per schedule, at the bed's rate and on unshaped ("fast") links
# (issue 11, "Chunk size": re-measure the 64 KiB tcp cap).
#
#   bench/chunk_sweep.sh [options]
#
# For each link kind and each N it builds an N-host bed (tests/netbed, via
# bench/bed_baselines.sh), measures B with one TCP stream h1 -> h2 (memory to
# memory) in the same bed, then broadcasts one generated file with
#   p2pbcast -q --tcp-if 10.77.0.0/24 -c CHUNK --schedule S --source-shared=no
# for every chunk and schedule, REPEATS times, interleaved (repeat, chunk,
# schedule) so that the machine's load hits every point alike. SOURCE (under
# bench/out) is visible to every host, so --source-shared=auto would turn the
# ring into the shared-read allgather; the ring and the trees are therefore
# measured with the root alone reading (--source-shared=no), and the
# allgather, if asked for, with --source-shared=yes (its ring carries no
# scatter from the root). Time: p2pbcast's --json "seconds". Every copy is
# compared with SOURCE after each run.
#
# Link kinds:  shaped  HTB at RATE Mbit/s on both ends of every veth (the bed)
#              fast    the same bed with every HTB qdisc deleted: the veth
#                      pairs run at what the 2 cores allow; B measured alike
#
# Options:
#   -n "2 4 8"               node counts
#   -c "32K 64K 256K 1M 4M"  chunk sizes (p2pbcast -c)
#   -S "ring tree"           schedules: ring, tree, allgather
#   -k 3                     repeats per point (median reported)
#   -l "shaped fast"         link kinds
#   -r 150                   shaped link rate, Mbit/s
#   -s 64                    file size for shaped links, MiB
#   -f 512                   file size for fast links, MiB
#   -o DIR                   output directory (default bench/out)
#   -p PREFIX                netbed prefix (default cs)
#
# Writes OUT/chunk-sweep-STAMP.csv (one row per run) and .txt (medians and
# efficiency (F/B)/T per link kind, N, schedule and chunk). Each (link kind,
# N) block holds the bench lock /var/tmp/p2pbcast-bench.lock (flock) for its
# bed and runs, so do not wrap this script in that lock yourself.
# Environment: P2PBCAST (binary, default ../p2pbcast). Needs root.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/bed_baselines.sh
source "$BENCH/bed_baselines.sh"

C_NODES="2 4 8"
C_CHUNKS="32K 64K 256K 1M 4M"
C_SCHEDS="ring tree"
C_REPEATS=3
C_LINKS="shaped fast"
C_RATE=150
C_SIZE_SHAPED=64
C_SIZE_FAST=512
C_OUT=$BENCH/out
C_PREFIX=cs
C_LOCK=/var/tmp/p2pbcast-bench.lock
while (( $# )); do
    case $1 in
        -n) C_NODES=$2; shift 2 ;;
        -c) C_CHUNKS=$2; shift 2 ;;
        -S) C_SCHEDS=$2; shift 2 ;;
        -k) C_REPEATS=$2; shift 2 ;;
        -l) C_LINKS=$2; shift 2 ;;
        -r) C_RATE=$2; shift 2 ;;
        -s) C_SIZE_SHAPED=$2; shift 2 ;;
        -f) C_SIZE_FAST=$2; shift 2 ;;
        -o) C_OUT=$2; shift 2 ;;
        -p) C_PREFIX=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "chunk_sweep: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
(( EUID == 0 )) || die "must run as root (network namespaces)"
OUT=$C_OUT PREFIX=$C_PREFIX DEST=/dev/shm/cs-dest.bin
mkdir -p "$OUT/bin"
P2P_SRC=${P2PBCAST:-$BENCH/../p2pbcast}
[[ -x $P2P_SRC ]] || die "no p2pbcast at $P2P_SRC (make first)"
cp -f "$P2P_SRC" "$OUT/bin/p2pbcast-sweep"
export P2PBCAST_JSON=1
build
trap bed_down EXIT
trap 'exit 130' INT TERM

make_source() {  # MiB -> sets SOURCE
    SOURCE=$OUT/data-${1}M.bin
    if [[ ! -f $SOURCE || $(stat -c %s "$SOURCE") -ne $(( $1 << 20 )) ]]; then
        log "generating $SOURCE"
        head -c "$(( $1 << 20 ))" /dev/urandom >"$SOURCE.tmp"
        mv -f "$SOURCE.tmp" "$SOURCE"
    fi
}

# Delete the HTB qdisc on both ends of every host's veth (netbed.sh shapes
# "v hK" in the bridge's namespace and eth0 in the host's).
unshape() {  # n
    local k
    for (( k = 1; k <= $1; k++ )); do
        tc -n "$PREFIX-br" qdisc del dev "vh$k" root
        tc -n "$PREFIX-h$k" qdisc del dev eth0 root
    done
}

one_run() {  # links n sched chunk rep b ideal fbytes
    local links=$1 n=$2 sched=$3 chunk=$4 s eff shared=no
    [[ $sched == allgather ]] && shared=yes
    P2PBCAST_CMD="$OUT/bin/p2pbcast-sweep -q --tcp-if 10.77.0.0/24 -c $chunk --source-shared=$shared"
    [[ $sched != allgather ]] && P2PBCAST_CMD+=" --schedule $sched"
    if ! s=$(P2PBCAST_SCHEDULE="" run_p2pbcast "$n") || [[ -z $s ]]; then
        log "$links N=$n $sched -c $chunk: FAILED"; s=nan
    fi
    verify_and_clean "$n" || s=nan
    if [[ $s == nan ]]; then eff=nan; else eff=$(calc "$7 / $s" 3); s=$(calc "$s" 3); fi
    log "$links N=$n $sched -c $chunk #$5: $s s, efficiency $eff (load $(load1))"
    echo "$links,$n,$C_RATE,$6,$8,$sched,$chunk,$5,$s,$7,$eff,$(load1)" >>"$CSV"
}

block() {  # links n: one bed, B, every point; under the bench lock
    local links=$1 n=$2 size b ideal rep chunk sched rate=$C_RATE
    size=$C_SIZE_SHAPED
    [[ $links == fast ]] && size=$C_SIZE_FAST
    make_source "$size"
    exec 9>"$C_LOCK"
    local w0
    w0=$(now)
    flock 9
    LOCK_WAIT=$(calc "$LOCK_WAIT + $(now) - $w0" 1)
    log "$links N=$n: bed up (lock held)"
    bed_up "$n" "$rate"
    if [[ $links == fast ]]; then
        unshape "$n"
        rate=8000 # measure_b sends rate*3 Mbit: 3 GB
    fi
    b=$(measure_b "$rate")
    ideal=$(calc "$size * 1048576 * 8 / ($b * 1000000)" 4)
    log "$links N=$n: B=$b Mbit/s, F=$size MiB, ideal F/B=$ideal s"
    for (( rep = 1; rep <= C_REPEATS; rep++ )); do
        for chunk in $C_CHUNKS; do
            for sched in $C_SCHEDS; do
                one_run "$links" "$n" "$sched" "$chunk" "$rep" "$b" "$ideal" "$(( size << 20 ))"
            done
        done
    done
    bed_down
    flock -u 9
    exec 9>&-
}

STAMP=$(date +%Y%m%d-%H%M%S)
CSV=$OUT/chunk-sweep-$STAMP.csv
TXT=$OUT/chunk-sweep-$STAMP.txt
T_START=$(now)
LOCK_WAIT=0
LOAD_START=$(cat /proc/loadavg)
echo "links,nodes,rate_mbit,b_mbit,bytes,schedule,chunk,rep,seconds,ideal_seconds,efficiency,load1" >"$CSV"
for links in $C_LINKS; do
    for n in $C_NODES; do block "$links" "$n"; done
done

# Medians per (links, N, schedule, chunk); efficiency of the median time.
summary() {
    awk -F, -v chunks="$C_CHUNKS" '
        function median(key,   n, i, j, t, a) {
            n = split(v[key], a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR == 1 { next }
        $9 == "nan" { bad[$1 "," $2 "," $6 "," $7]++; next }
        { k = $1 "," $2 "," $6 "," $7; v[k] = v[k] " " $9; ideal[$1 "," $2] = $10; b[$1 "," $2] = $4
          f[$1] = $5; if (!($1 "," $2 "," $6 in seen)) { seen[$1 "," $2 "," $6] = 1; order[++no] = $1 "," $2 "," $6 }
          ld[$1 "," $2] = ld[$1 "," $2] " " $12 }
        END {
            nc = split(chunks, c, " ")
            for (i = 1; i <= no; i++) {
                split(order[i], o, ",")
                lk = o[1] "," o[2]
                if (lk != last) {
                    nl = split(ld[lk], l, " "); lo = hi = l[1]
                    for (j = 2; j <= nl; j++) { if (l[j] + 0 < lo + 0) lo = l[j]; if (l[j] + 0 > hi + 0) hi = l[j] }
                    printf "\n%s links, N=%d: B=%.0f Mbit/s (one TCP stream), F=%d MiB, F/B=%.3f s, load1 %s-%s\n", o[1], o[2], b[lk], f[o[1]] / 1048576, ideal[lk], lo, hi
                    printf "%-10s", "schedule"
                    for (j = 1; j <= nc; j++) printf " %14s", c[j]
                    printf "\n"
                    last = lk
                }
                printf "%-10s", o[3]
                for (j = 1; j <= nc; j++) {
                    k = order[i] "," c[j]
                    if (v[k] == "") { printf " %14s", "-"; continue }
                    m = median(k)
                    printf " %6.3f s %5.3f", m, ideal[lk] / m
                }
                printf "\n"
            }
            printf "\ncells: median seconds (p2pbcast --json) and efficiency (F/B)/T\n"
            for (k in bad) printf "failed runs: %s x%d\n", k, bad[k]
        }' "$CSV"
}
{
    echo "chunk sweep: nodes $C_NODES, chunks $C_CHUNKS, schedules $C_SCHEDS, $C_REPEATS repeats" \
         "(--source-shared=no for ring/tree; DEST in each host's /dev/shm)"
    summary
    echo
    echo "p2pbcast: $OUT/bin/p2pbcast-sweep -q --tcp-if 10.77.0.0/24 -c CHUNK ..."
    echo "load average at start: $LOAD_START; at end: $(cat /proc/loadavg)"
    echo "total time of this benchmark: $(calc "$(now) - $T_START" 0) s, of which waiting for the bench lock: $LOCK_WAIT s"
} | tee "$TXT"
echo "CSV: $CSV"
echo "table: $TXT"
