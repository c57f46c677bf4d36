#!/bin/bash
# startup_bench.sh - start-up time and memory against the number of nodes.
#
#   bench/startup_bench.sh [-n "16 32 64 128 256"] [-s ring|tree|auto]...
#
# Local ranks, each its own node (--per-rank), a 4 KiB file to /dev/shm: the
# broadcast itself is negligible, so p2pbcast's own clock (--json "seconds":
# bootstrap, agreement rounds, connections, transfer, commit) is start-up.
# For each schedule and N it also reports the largest peak RSS of any rank
# (GNU time's maximum resident set size). The machine has 2 cores: hundreds
# of ranks share them, so times here are upper bounds, to compare between
# schedules in the same run, not absolute figures for a cluster.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P2P=${P2PBCAST:-$HERE/../p2pbcast}
NODES="16 32 64 128 256"
SCHEDS="ring tree"
while (( $# )); do
    case $1 in
        -n) NODES=$2; shift 2 ;;
        -s) SCHEDS=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "startup_bench: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -x /usr/bin/time ]] || { echo "startup_bench: needs GNU time (apt-get install time)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d /dev/shm/p2p-startup.XXXXXX)
trap 'rm -rf "$W"' EXIT
head -c 4096 /dev/urandom > "$W/src"
printf '%-6s %6s %10s %14s\n' schedule N seconds "max RSS (KiB)"
for s in $SCHEDS; do
    for n in $NODES; do
        rm -f "$W"/d.* "$W"/rss.* "$W/j.json"
        timeout 600 mpirun --oversubscribe --allow-run-as-root --bind-to none \
            --mca btl_vader_single_copy_mechanism none -np "$n" \
            bash -c '/usr/bin/time -f %M -o "'"$W"'/rss.$OMPI_COMM_WORLD_RANK" "$@"' _ \
            "$P2P" -q --per-rank --schedule "$s" --source-shared=no --json "$W/j.json" "$W/src" "$W/d.%r" \
            > "$W/out" 2>&1 || { echo "startup_bench: $s N=$n failed:"; tail -5 "$W/out"; continue; }
        secs=$(sed -n 's/^ *"seconds": *\([0-9.]*\).*/\1/p' "$W/j.json")
        rss=$(cat "$W"/rss.* | sort -n | tail -1)
        printf '%-6s %6d %10s %14s\n' "$s" "$n" "$secs" "$rss"
    done
done
