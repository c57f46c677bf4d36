#!/bin/bash
# tree_bench.sh — a directory SOURCE on one host, 4 ranks (--per-rank, DEST
# under /dev/shm): `p2pbcast DIR` against the workaround users run today
# (tar c on the root, p2pbcast of the tarball, tar x on every node), for
# 20,000 files of 4 KiB and 100 files of 4 MiB; then the peak RSS per rank
# of a tree of 100,000 empty files, in bytes per entry.
#
#   bench/tree_bench.sh [REPEATS]      (default 3; the median is reported)
#
# Wall times include mpirun's start-up (~0.3 s here), the same for both.
set -u
cd "$(dirname "$0")/.."
top=$PWD
P2PBCAST=${P2PBCAST:-$top/p2pbcast}
reps=${1:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_hwloc_base_binding_policy=none
MPI=(timeout -k 10 600 mpirun --oversubscribe --allow-run-as-root --bind-to none
     --mca btl_vader_single_copy_mechanism none -np 4)
W=$(mktemp -d /var/tmp/p2pbcast-treebench.XXXXXX)
O=$(mktemp -d /dev/shm/p2pbcast-treebench.XXXXXX)
trap 'rm -rf "$W" "$O"' EXIT

gen() { # gen DIR NFILES SIZE: NFILES files of SIZE bytes in 100 per directory
    local d=$1 n=$2 size=$3 i
    mkdir -p "$d"
    head -c "$size" /dev/urandom > "$W/blob"
    for ((i = 0; i < n; i++)); do
        ((i % 100 == 0)) && mkdir -p "$d/$((i / 100))"
        cp "$W/blob" "$d/$((i / 100))/f$i"
        printf '%08d' "$i" | dd of="$d/$((i / 100))/f$i" conv=notrunc status=none
    done
}

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

tree_once() { # seconds for p2pbcast DIR
    rm -rf "${O:?}"/*
    local t0 t1
    t0=$(now)
    "${MPI[@]}" "$P2PBCAST" -q --per-rank "$1" "$O/t.%r" || echo "tree run failed" >&2
    t1=$(now)
    echo "$t1 - $t0" | bc
}

tar_once() { # seconds for tar c + p2pbcast of the tarball + tar x on every node
    rm -rf "${O:?}"/*
    local t0 t1 r
    t0=$(now)
    tar cf "$O/src.tar" -C "$1" .
    "${MPI[@]}" "$P2PBCAST" -q --per-rank "$O/src.tar" "$O/tar.%r" || echo "tarball run failed" >&2
    for r in 0 1 2 3; do (mkdir "$O/x.$r" && tar xf "$O/tar.$r" -C "$O/x.$r" && rm "$O/tar.$r") & done
    wait
    t1=$(now)
    echo "$t1 - $t0" | bc
}

compare() { # compare NAME DIR
    local i tt ta
    tt=$(for ((i = 0; i < reps; i++)); do tree_once "$2"; done | median)
    ta=$(for ((i = 0; i < reps; i++)); do tar_once "$2"; done | median)
    diff -r --no-dereference "$2" "$O/x.3" > /dev/null && tree_once "$2" > /dev/null &&
        diff -r --no-dereference "$2" "$O/t.3" > /dev/null || echo "copies differ!" >&2
    printf '| %s | %.2f s | %.2f s | %.2f |\n' "$1" "$tt" "$ta" "$(echo "$tt / $ta" | bc -l)"
}

echo "| tree | p2pbcast DIR | tar c + p2pbcast + tar x | ratio (tree / tar) |"
echo "|---|---|---|---|"
gen "$W/small" 20000 4096
compare "20,000 files of 4 KiB (78 MiB)" "$W/small"
rm -rf "$W/small"
gen "$W/large" 100 $((4 << 20))
compare "100 files of 4 MiB (400 MiB)" "$W/large"
rm -rf "$W/large"

# Peak RSS per rank: a 100,000-entry tree against a 1-entry tree.
rss() { # rss DIR: the largest "Maximum resident set size" (kB) of the 4 ranks
    rm -rf "${O:?}"/*
    "${MPI[@]}" /usr/bin/time -v "$P2PBCAST" -q --per-rank "$1" "$O/m.%r" 2>&1 |
        sed -n 's/.*Maximum resident set size (kbytes): //p' | sort -n | tail -1
}
mkdir -p "$W/one" "$W/empty100k"
: > "$W/one/f"
for ((d = 0; d < 100; d++)); do
    mkdir "$W/empty100k/$d"
    (cd "$W/empty100k/$d" && seq -f 'f%g' 0 998 | xargs touch)
done
n=$(find "$W/empty100k" -mindepth 1 | wc -l)
r1=$(rss "$W/one")
rn=$(rss "$W/empty100k")
echo
echo "peak RSS per rank: $r1 kB (1 entry), $rn kB ($n entries): $(( (rn - r1) * 1024 / n )) bytes per entry"
