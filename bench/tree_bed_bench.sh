#!/bin/bash
# tree_bed_bench.sh - a directory SOURCE on the multi-host bed (issue 12,
# "Speed"), side by side in one run, reported as ratios.
#
#   bench/tree_bed_bench.sh [-n 8] [-r 150] [-R 3] [-p "bed rss slurm"]
#                           [--small 100000] [--slurm-small 100000] [-o DIR]
#
#   -n N        bed hosts (default 8)
#   -r MBIT     link rate (default 100; see bed_baselines.sh calibrate N RATE)
#   -R REPS     runs of each method per tree (default 3; medians reported)
#   -p PARTS    any of bed, rss, slurm (default all three)
#   --small K   files in the many-small-files tree (default 100000, 4 KiB each)
#   --slurm-small K  files of that tree for the Slurm part (default: --small)
#   --rss "A B" entry counts of the memory trees (default "100000 1000000")
#   -o DIR      results (default bench/results): tree_bed.{txt,csv},
#               tree_rss.txt, tree_slurm.txt
#
# Part "bed": an N-host bed (tests/netbed, links shaped to RATE), B measured
# with one TCP stream, then for a tree of K files of 4 KiB and a tree of 100
# files of 4 MiB, REPS rounds (order rotated) of:
#   tree     mpirun p2pbcast SRC_DIR /dev/shm/t           (every host)
#   tar      tar c of SRC_DIR on h1 into h1's /dev/shm, mpirun p2pbcast of the
#            tarball, then tar x on every host at once (and the tarball
#            removed): the workaround, timed end to end
#   single   mpirun p2pbcast of the same tarball (already on h1's /dev/shm)
#   localx   one tar x of the tarball on h1 alone
# Every p2pbcast runs with --source-shared=no (the root alone reads, as for
# a directory), --tcp-if on the bed's subnet, one rank per host, -v (logs
# kept under bench/out/tree-bed/ for the phases). DEST is each host's private
# /dev/shm (a tmpfs: the network and the per-file work are measured, not the
# VM's one shared disk). Times are wall clocks around the whole command,
# mpirun's start-up included (p2pbcast's own --json clock is in the CSV).
# Targets (issue 12): tree <= 1.5 x (single + localx) for the small files,
# tree <= 1.05 x single for the large ones.
#
# Part "rss": a 2-host bed; peak RSS (GNU time %M) of the root (h1) and the
# receiver (h2) for trees of empty files (1,000 per directory), of one entry
# and of each count in --rss, in bytes per entry.
#
# Part "slurm": bench/tree_slurm_bench.sh with the same trees: sbcast of the
# tarball + srun tar x against srun p2pbcast DIR on the 4-node test Slurm.
#
# The trees are generated once (bench/tree_gen.py) under /var/tmp and
# removed at the end. Each part holds /var/tmp/p2pbcast-bench.lock while it
# measures. Needs root, a built ./p2pbcast, python3.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/bed_baselines.sh
source "$BENCH/bed_baselines.sh"

T_NODES=8 T_RATE=100 T_REPS=3 T_PARTS="bed rss slurm" T_SMALL=100000 T_SSMALL=
T_RSS="100000 1000000" T_RES=$BENCH/results
while (( $# )); do
    case $1 in
        -n) T_NODES=$2; shift 2 ;;
        -r) T_RATE=$2; shift 2 ;;
        -R) T_REPS=$2; shift 2 ;;
        -p) T_PARTS=$2; shift 2 ;;
        --small) T_SMALL=$2; shift 2 ;;
        --slurm-small) T_SSMALL=$2; shift 2 ;;
        --rss) T_RSS=$2; shift 2 ;;
        -o) T_RES=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tree_bed_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
T_SSMALL=${T_SSMALL:-$T_SMALL}
(( EUID == 0 )) || die "must run as root (network namespaces)"
P2P_SRC=${P2PBCAST:-$BENCH/../p2pbcast}
[[ -x $P2P_SRC ]] || die "no p2pbcast at $P2P_SRC (make first)"
mkdir -p "$T_RES" "$OUT/bin" "$OUT/tree-bed"
LOGS=$OUT/tree-bed
# A private copy where every host sees it: a rebuild during the run changes nothing.
P2P=$OUT/bin/p2pbcast-tree
cp -f "$P2P_SRC" "$P2P"
export NETBED_SHM_SIZE=3g   # h1 holds a tarball, a received copy and a tree at once

W=$(mktemp -d /var/tmp/p2pbcast-treebed.XXXXXX)
chmod 755 "$W"
cleanup() { bed_down; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bench lock (other helpers measure on this machine too), per part.
lock() { exec 9>/var/tmp/p2pbcast-bench.lock; log "waiting for the bench lock"; flock 9; }
unlock() { flock -u 9; exec 9>&-; }
nodes_seq() { seq 1 "$1"; }
onall() {  # n cmd...: cmd on every host at once; fails if one fails
    local n=$1 k rc=0
    shift
    local -a pids=()
    for k in $(nodes_seq "$n"); do "$NETBED" exec "h$k" "$@" & pids+=($!); done
    for k in "${pids[@]}"; do wait "$k" || rc=1; done
    return "$rc"
}
json_seconds() { sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$1" 2>/dev/null; }
gen() {  # gen DIR COUNT SIZE [PER_DIR]
    [[ -d $1 ]] && return 0
    log "generating $1: $2 files of $3 bytes"
    python3 "$BENCH/tree_gen.py" "$@"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (!NR) { print "nan"; exit }
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------- part bed
# p2pbcast over the bed: p2p TAG SRC DEST [args]; prints "wall own".
p2p() {
    local tag=$1 src=$2 dest=$3 t0 t1 j=$LOGS/$1.json
    shift 3
    rm -f "$j"
    t0=$(now)
    "$NETBED" mpirun -np "$T_NODES" "$P2P" -v --tcp-if 10.77.0.0/24 --source-shared=no \
        --json "$j" "$@" "$src" "$dest" >"$LOGS/$tag.log" 2>&1 ||
        { log "$tag failed: $(tail -n 5 "$LOGS/$tag.log")"; echo "nan nan - - -"; return 1; }
    t1=$(now)
    echo "$(calc "$t1 - $t0" 3) $(json_seconds "$j") - - -"
}
# Each method prints "wall own" (own = p2pbcast's clock, - for none).
m_tree() { p2p "tree-$1-$2" "$3" /dev/shm/t; }
m_single() { p2p "single-$1-$2" /dev/shm/src.tar /dev/shm/one.tar; }
m_tar() {
    local t0 t1 t2 t3 r
    t0=$(now)
    "$NETBED" exec h1 tar cf /dev/shm/wa.tar -C "$3" . || { echo "nan nan - - -"; return 1; }
    t1=$(now)
    r=$(p2p "tar-$1-$2" /dev/shm/wa.tar /dev/shm/wa-dst.tar) || { echo "nan nan - - -"; return 1; }
    t2=$(now)
    onall "$T_NODES" sh -c 'mkdir /dev/shm/x && tar xf /dev/shm/wa-dst.tar -C /dev/shm/x && rm /dev/shm/wa-dst.tar' ||
        { echo "nan nan - - -"; return 1; }
    t3=$(now)
    "$NETBED" exec h1 rm -f /dev/shm/wa.tar
    echo "$(calc "$t3 - $t0" 3) - $(calc "$t1 - $t0" 3) $(calc "$t2 - $t1" 3) $(calc "$t3 - $t2" 3)"
}
m_localx() {
    local t0 t1
    t0=$(now)
    "$NETBED" exec h1 sh -c 'mkdir /dev/shm/lx && tar xf /dev/shm/src.tar -C /dev/shm/lx' || { echo "nan nan - - -"; return 1; }
    t1=$(now)
    echo "$(calc "$t1 - $t0" 3) - - - -"
}
# Check what a method left (all hosts on round 1, the last host after), then clean.
check_clean() {  # method round src
    local m=$1 r=$2 src=$3 d bad=0 k hosts
    case $m in tree) d=/dev/shm/t ;; tar) d=/dev/shm/x ;; localx) d=/dev/shm/lx ;; single) d= ;; esac
    if [[ -n $d ]]; then
        if (( r == 1 )); then hosts=$(nodes_seq "$T_NODES"); else hosts=$T_NODES; fi
        [[ $m == localx ]] && hosts=1
        for k in $hosts; do
            "$NETBED" exec "h$k" diff -r --no-dereference -q "$src" "$d" >/dev/null ||
                { log "h$k: $d differs from $src after $m"; bad=1; }
        done
    else
        if (( r == 1 )); then hosts=$(nodes_seq "$T_NODES"); else hosts=$T_NODES; fi
        for k in $hosts; do
            [[ $("$NETBED" exec "h$k" md5sum /dev/shm/one.tar) == "$TAR_MD5 "* ]] ||
                { log "h$k: /dev/shm/one.tar differs from h1's /dev/shm/src.tar"; bad=1; }
        done
    fi
    onall "$T_NODES" rm -rf /dev/shm/t /dev/shm/x /dev/shm/lx /dev/shm/one.tar /dev/shm/wa-dst.tar
    return "$bad"
}

bench_tree() {  # name src
    local name=$1 src=$2 r i m out load
    "$NETBED" exec h1 tar cf /dev/shm/src.tar -C "$src" .
    local tbytes
    tbytes=$("$NETBED" exec h1 stat -c %s /dev/shm/src.tar)
    TAR_MD5=$("$NETBED" exec h1 md5sum /dev/shm/src.tar | cut -d' ' -f1)
    local -a ms=(tree tar single localx)
    for (( r = 1; r <= T_REPS; r++ )); do
        for (( i = 0; i < 4; i++ )); do
            m=${ms[$(( (i + r - 1) % 4 ))]}
            load=$(load1)
            out=$("m_$m" "$name" "$r" "$src") || true
            check_clean "$m" "$r" "$src" || out="nan nan - - -"
            log "$name round $r $m: $out (load $load)"
            echo "$name,$m,$r,$(tr ' ' , <<<"$out"),$load,$tbytes" >>"$RAW"
        done
    done
    "$NETBED" exec h1 rm -f /dev/shm/src.tar
}

part_bed() {
    local t_start
    t_start=$(date -u '+%Y-%m-%d %H:%M UTC')
    RAW=$LOGS/raw.csv
    echo "tree,method,round,wall,own,tar_c,tarball_p2p_wall,tar_x_all,load1,tar_bytes" >"$RAW"
    # shellcheck disable=SC2034 # read by bed_up/bed_down
    PREFIX=tb
    build
    local load_before b
    load_before=$(cat /proc/loadavg)
    CALIB=$("$BENCH/bed_baselines.sh" calibrate "$T_NODES" "$T_RATE" 2>/dev/null | sed -n 1p) || CALIB="calibrate failed"
    log "$CALIB"
    bed_up "$T_NODES" "$T_RATE"
    b=$(measure_b "$T_RATE")
    log "B = $b Mbit/s"
    bench_tree small "$W/small"
    bench_tree large "$W/large"
    bed_down
    report_bed "$b" "$load_before" "$t_start"
}

report_bed() {  # b load_before start
    local csv=$T_RES/tree_bed.csv txt=$T_RES/tree_bed.txt
    cp "$RAW" "$csv"
    local ds=$(( T_SMALL * 4096 )) dl=$(( 100 << 22 ))
    {
        echo "Directory SOURCE on the bed: $T_NODES hosts, links $T_RATE Mbit/s (B = $1 Mbit/s, one TCP stream),"
        echo "DEST in each host's private /dev/shm, SOURCE on h1 (/var/tmp, page cache), root h1."
        echo "Median of $T_REPS rounds, wall seconds (mpirun start-up included), order rotated per round."
        echo
        for t in small large; do
            med() { awk -F, -v t="$t" -v m="$1" -v c="$2" '$1 == t && $2 == m && $4 != "nan" { print $c }' "$RAW" | median; }
            local tt ta tc tp tx ts tl to so tb
            tt=$(med tree 4); to=$(med tree 5)
            ta=$(med tar 4); tc=$(med tar 6); tp=$(med tar 7); tx=$(med tar 8)
            ts=$(med single 4); so=$(med single 5); tl=$(med localx 4)
            tb=$(awk -F, -v t="$t" '$1 == t { print $10; exit }' "$RAW")
            if [[ $t == small ]]; then
                printf 'tree of %d files of 4 KiB (%.0f MB of data; tarball %.0f MB)\n' "$T_SMALL" "$(calc "$ds / 1e6" 0)" "$(calc "$tb / 1e6" 0)"
            else
                printf 'tree of 100 files of 4 MiB (%.0f MB of data; tarball %.0f MB)\n' "$(calc "$dl / 1e6" 0)" "$(calc "$tb / 1e6" 0)"
            fi
            printf '  %-44s %8s s   (own clock %s s)\n' "p2pbcast DIR" "$tt" "$to"
            printf '  %-44s %8s s   (tar c %s + p2pbcast %s + tar x on all %s)\n' "tar c + p2pbcast tarball + tar x everywhere" "$ta" "$tc" "$tp" "$tx"
            printf '  %-44s %8s s   (own clock %s s)\n' "p2pbcast of the tarball alone (single file)" "$ts" "$so"
            printf '  %-44s %8s s\n' "one local tar x on h1" "$tl"
            printf '  %-44s %8s s\n' "ideal tarball/B" "$(calc "$tb * 8 / ($1 * 1e6)" 3)"
            printf '  ratio tree / workaround:         %s\n' "$(calc "$tt / $ta" 3)"
            printf '  ratio tree / single file:        %s\n' "$(calc "$tt / $ts" 3)"
            if [[ $t == small ]]; then
                printf '  ratio tree / (single + local x): %s   (target <= 1.5: %s)\n' "$(calc "$tt / ($ts + $tl)" 3)" \
                    "$(awk -v a="$tt" -v b="$ts" -v c="$tl" 'BEGIN { print (a <= 1.5 * (b + c)) ? "met" : "MISSED" }')"
            else
                printf '  target tree <= 1.05 x single: %s\n' "$(awk -v a="$tt" -v b="$ts" 'BEGIN { print (a <= 1.05 * b) ? "met" : "MISSED" }')"
            fi
            echo
        done
        echo "Every run: tree method round wall own_clock tar_c tarball_p2p tar_x_all load1 tarball_bytes"
        sed '1d; s/^/  /; s/,/ /g' "$RAW"
        echo
        echo "Just before, $CALIB"
        echo "load average before: $2; after: $(cat /proc/loadavg); 2-core VM shared with other work."
        echo "p2pbcast: $("$P2P" --version | head -1), -v --tcp-if 10.77.0.0/24 --source-shared=no, default chunk."
        echo "Command: bench/tree_bed_bench.sh -n $T_NODES -r $T_RATE -R $T_REPS --small $T_SMALL, started $3."
    } >"$txt"
    cat "$txt"
}

# ---------------------------------------------------------------- part rss
rss_run() {  # src tag -> "root_kB receiver_kB"
    local d=$LOGS/rss-$2
    rm -rf "$d"; mkdir -p "$d"
    "$NETBED" mpirun -np 2 sh -c 'exec /usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$d/rss" \
        "$P2P" -q --tcp-if 10.77.0.0/24 "$1" /dev/shm/m >"$d/log" 2>&1 ||
        { log "rss $2 failed: $(tail -n 5 "$d/log")"; echo "nan nan - - -"; return 1; }
    onall 2 rm -rf /dev/shm/m
    echo "$(tail -n 1 "$d/rss.0") $(tail -n 1 "$d/rss.1")"
}
part_rss() {
    local n rows=() base
    # shellcheck disable=SC2034 # read by bed_up/bed_down
    PREFIX="tr"
    bed_up 2 1000
    base=$(rss_run "$W/rss-1" 1)
    for n in $T_RSS; do rows+=("$n $(rss_run "$W/rss-$n" "$n")"); done
    bed_down
    local txt=$T_RES/tree_rss.txt
    {
        echo "Peak RSS (GNU time %M, kB) per node, 2-host bed, DEST each host's /dev/shm; trees of empty files,"
        echo "1,000 per directory (entries = files + directories)."
        printf '%-10s %12s %12s %14s %14s\n' entries root_kB receiver_kB root_B/entry recv_B/entry
        printf '%-10s %12s %12s %14s %14s\n' 1 "${base% *}" "${base#* }" - -
        local e r v
        for row in "${rows[@]}"; do
            read -r n r v <<<"$row"
            e=$(( n + n / 1000 ))
            printf '%-10s %12s %12s %14s %14s\n' "$e" "$r" "$v" \
                "$(calc "($r - ${base% *}) * 1024 / $e" 0)" "$(calc "($v - ${base#* }) * 1024 / $e" 0)"
        done
        if (( ${#rows[@]} >= 2 )); then
            local n0 r0 v0 n1 r1 v1
            read -r n0 r0 v0 <<<"${rows[0]}"; read -r n1 r1 v1 <<<"${rows[-1]}"
            n0=$(( n0 + n0 / 1000 )); n1=$(( n1 + n1 / 1000 ))
            echo "slope between $n0 and $n1 entries: root $(calc "($r1 - $r0) * 1024 / ($n1 - $n0)" 0) B/entry," \
                 "receiver $(calc "($v1 - $v0) * 1024 / ($n1 - $n0)" 0) B/entry"
        fi
        echo "load average: $(cat /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
    } >"$txt"
    cat "$txt"
}

# ---------------------------------------------------------------- part slurm
part_slurm() {
    local small=$W/small
    (( T_SSMALL != T_SMALL )) && small=$W/slurm-small
    "$BENCH/tree_slurm_bench.sh" -R "$T_REPS" -o "$T_RES/tree_slurm.txt" "$small" "$W/large"
}

# Every tree first (slow, and needs no lock), then the parts.
for part in $T_PARTS; do
    case $part in
        bed|slurm) gen "$W/small" "$T_SMALL" 4096; gen "$W/large" 100 $(( 4 << 20 )) ;;&
        slurm) (( T_SSMALL == T_SMALL )) || gen "$W/slurm-small" "$T_SSMALL" 4096 ;;
        rss) mkdir -p "$W/rss-1"; : >"$W/rss-1/f"; for n in $T_RSS; do gen "$W/rss-$n" "$n" 0 1000; done ;;
    esac
done
for part in $T_PARTS; do
    case $part in
        bed) lock; part_bed; unlock ;;
        rss) lock; part_rss; unlock ;;
        slurm) part_slurm ;;   # takes the lock itself, after the cluster is up
        *) die "unknown part $part" ;;
    esac
done
