#!/bin/bash
# demo.sh — a real broadcast on this one machine, nothing to prepare:
# installs what is missing and builds p2pbcast (tests/setup.sh), makes a
# 512 MiB file of random data, copies it to 4 local "nodes" (4 MPI ranks with
# --per-rank, each writing its own copy under node<rank>/), and checks every
# copy against the source. Override with NODES=8 SIZE_MB=1024 DEMO_DIR=...
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
nodes=${NODES:-4}
size_mb=${SIZE_MB:-512}
dir=${DEMO_DIR:-/var/tmp/p2pbcast-demo}
mkdir -p "$dir"
src=$dir/source.bin
if [ "$(stat -c %s "$src" 2>/dev/null || echo 0)" -ne $((size_mb * 1048576)) ]; then
    echo "demo: writing $size_mb MiB of random data to $src"
    head -c $((size_mb * 1048576)) /dev/urandom > "$src"
fi
for ((i = 0; i < nodes; i++)); do
    mkdir -p "$dir/node$i"
    rm -f "$dir/node$i/copy.bin"
done
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "demo: mpirun -np $nodes p2pbcast --per-rank $src $dir/node%r/copy.bin"
mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none -np "$nodes" \
    ./p2pbcast --per-rank "$src" "$dir/node%r/copy.bin"
for ((i = 0; i < nodes; i++)); do
    cmp "$src" "$dir/node$i/copy.bin"
done
echo "demo: all $nodes copies are identical to $src (see $dir/node*/copy.bin)"
