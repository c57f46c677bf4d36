#!/bin/bash
# test_readtree_pairs.sh — G pairs of reader-fed trees (issue 22,
# src/core/sched_shared_tree.c): with --source-shared=yes and the trees,
# the tops of the 2G trees each read their 1/2G of SOURCE. On one machine
# the link rate is unknown, so the plan keeps one pair;
# P2PBCAST_TEST_READTREE_PAIRS=G on the root asks for G (within 2G <= nodes,
# at most 4). Readers (member = node leader's index; plan.h): of 4 nodes
# 3, 2 (pair 0) and 1, 0 (pair 1, shifted by 2); of 6 nodes 3, 2, 5, 4;
# of 7 nodes 3, 2, 5, 4, 0, 6.
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
. "$(dirname "$0")/lib.sh"

json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }
c=65536
copies_of() { for r in "$@"; do cmp -s "$S/src" "$S/dst.$r" || return 1; done; }
S="$WORK/s"
mkdir -p "$S"

# 1. 8 ranks as 4 nodes of 2, two pairs: the 4 leaders' copies exact, 4
# readers whose shares add up to SOURCE; -v says G and why.
mkfile "$S/src" $((3 * 1048576 + 7))
P2PBCAST_TEST_READTREE_PAIRS=2 P2PBCAST_TEST_RANKS_PER_NODE=2 \
    run 8 -v -c 64K --schedule tree --source-shared=yes --json "$S/j.json" "$S/src" "$S/dst.%r"
[ "$rcs" = "0x8 " ] && copies_of 0 2 4 6 && only_these "$S" src j.json dst.0 dst.2 dst.4 dst.6 &&
    [ "$(json "$S/j.json" source_readers)" = 4 ] && [ "$(json "$S/j.json" source_bytes_read)" = $((3 * 1048576 + 7)) ] &&
    echo "$out" | grep -q "readtree: 2 pairs of trees, 4 readers, 16 slots per node: asked for by P2PBCAST_TEST_READTREE_PAIRS=2" &&
    echo "$out" | grep -q "the tops of the 4 trees each read 1/4 of it (readtree, 2 pairs)"
ok $? "8 ranks on 4 nodes of 2, 2 pairs: every rank exits 0 ($rcs), the 4 leaders' copies exact, 4 readers, -v says G"
echo "$out" | grep "readtree\|read .* of SOURCE\|error" | diag
rm -f "$S"/dst.* "$S/j.json"

# 2. 7 nodes, 4 pairs asked for: 3 (2G <= 7), 6 readers; sizes that leave
# some trees a chunk short, or empty, copied exactly.
bad=""
for size in 1 $((5 * c + 3)) $((46 * c + 12345)); do
    mkfile "$S/in" "$size"
    P2PBCAST_TEST_READTREE_PAIRS=4 run 7 -v --per-rank -c 64K --schedule tree --source-shared=yes --json "$S/j.json" \
        "$S/in" "$S/dst.%r"
    copies=1
    for ((i = 0; i < 7; i++)); do cmp -s "$S/in" "$S/dst.$i" || copies=0; done
    # source_readers: the members the plan gives chunks to, whatever the size
    if [ $rc -ne 0 ] || [ $same_rc -ne 0 ] || [ $copies -ne 1 ] || [ "$(json "$S/j.json" source_readers)" != 6 ] ||
       [ "$(json "$S/j.json" source_bytes_read)" != "$size" ] ||
       ! echo "$out" | grep -q "readtree: 3 pairs of trees, 6 readers, .*(fewer: 2G <= nodes"; then
        bad="$bad $size"
        echo "$out" | grep -v '%' | tail -5 | diag
    fi
    rm -f "$S"/dst.* "$S/j.json" "$S/in"
done
[ -z "$bad" ]
ok $? "7 nodes, 4 pairs asked for: 3 pairs, 6 readers; sizes 1, 5c+3, 46c+r copied exactly${bad:+ (failed:$bad)}"

# 3. The root's check of the other readers' chunks: where it tops no tree
# (6 nodes, root 0) it reads its sample during the transfer; where it reads
# chunks of its own (--root 3) after it.
mkfile "$S/src" $((40 * c + 5))
P2PBCAST_TEST_READTREE_PAIRS=2 run 6 -v --per-rank -c 64K --schedule tree --source-shared=yes "$S/src" "$S/dst.%r"
early=$(echo "$out" | grep -c "source verify: the root re-read [0-9]* chunks, .* during the transfer")
P2PBCAST_TEST_READTREE_PAIRS=2 run 6 -v --per-rank -c 64K --schedule tree --source-shared=yes --root 3 "$S/src" "$S/dst.%r"
late=$(echo "$out" | grep -c "source verify: the root re-read [0-9]* chunks, .* after the transfer")
[ $rc -eq 0 ] && [ "$early" = 1 ] && [ "$late" = 1 ] && copies_of 0 1 2 3 4 5
ok $? "the root's sample: read during the transfer where it tops no tree, after it where it reads ($early, $late)"
echo "$out" | grep "source verify" | diag
rm -f "$S"/dst.* "$S/src"

# 4. A hostile SOURCE at one non-root reader of pair 1 (issue 18): rank 5
# reads a file equal to SOURCE in size, times, first and last chunk, but
# not in chunk 10, which only pair 1's tree 0 carries (chunks k with
# (k/2) mod 2 == 1, k even) and whose top of 6 nodes is rank 5. The root's
# re-reading catches it: status 3 on every rank, no DEST. With one pair,
# chunk 10 would be rank 3's to read and rank 5 would read nothing. The same
# with the root a reader (rank 3, --root 3) and rank 4 reading chunk 11
# (pair 1's tree 1), and on 4 nodes of 2 ranks, where member 1 (rank 2)
# tops pair 1's tree 0.
H="$WORK/h"
mkdir -p "$H"
# shellcheck source=tests/hostile_lib.sh
. "$(dirname "$0")/hostile_lib.sh"
# NP HOOKRANK CHUNK [OPTIONS]
for t in "6 5 10 --per-rank" "6 4 11 --per-rank --root 3" "8 2 10"; do
    set -- $t
    np=$1 hr=$2 k=$3
    shift 3
    rpn=""
    [ "${1:-}" = --per-rank ] || rpn=2
    hostile 21 "$k" "$k"
    P2PBCAST_TEST_RANKS_PER_NODE=$rpn P2PBCAST_TEST_READTREE_PAIRS=2 hostile_caught "$np" "$hr" "$k" --schedule tree "$@"
    ok $? "np=$np${rpn:+ in nodes of $rpn}${1:+ $*}, 2 pairs, reader rank $hr sees another chunk $k: status 3 on every rank ($rcs), rank $hr and chunk $k named, no DEST"
    echo "$out" | grep "error:" | head -2 | diag
done
rm -rf "$H" "$S"
done_testing
