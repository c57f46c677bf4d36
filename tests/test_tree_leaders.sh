#!/bin/bash
# test_tree_leaders.sh — the manifest of a directory SOURCE goes to the node
# leaders only (issue 18): on a node of 64 ranks, 63 copies of a large
# manifest would be wasted. One machine is split into nodes of K consecutive
# ranks by the test hook P2PBCAST_TEST_RANKS_PER_NODE, and every rank says
# how many bytes of manifest it received (P2PBCAST_TEST_MANIFEST_BYTES).
# 8 ranks as 2 nodes of 4: the other leader (rank 4) receives all of it,
# the six ranks that are not leaders none; both leaders write their copy and
# every rank exits alike. A manifest the leaders refuse still ends every
# rank, leader or not, with the same status.
. "$(dirname "$0")/lib.sh"

S="$WORK/src"
D="$WORK/d"
mkdir -p "$S/dir" "$D"
for i in $(seq 500); do echo "file $i" > "$S/dir/a-file-with-a-rather-long-name-$i"; done
export P2PBCAST_TEST_MANIFEST_BYTES=1
# got RANK: the bytes of manifest that rank says it received
got() { echo "$out" | sed -n "s/^p2pbcast: test: .* (rank $1): \([0-9]*\) bytes of manifest received\$/\1/p"; }

P2PBCAST_TEST_RANKS_PER_NODE=4 run 8 -v "$S" "$D/x.%r"
size=$(echo "$out" | sed -n 's/^p2pbcast: manifest: \([0-9]*\) bytes.*/\1/p')
[ "$rcs" = "0x8 " ] && [ -n "$size" ] && [ "$size" -gt 20000 ] && echo "$out" | grep -q "nodes: 2\b\|2 nodes"
ok $? "a tree to 8 ranks on 2 nodes: every rank exits 0 ($rcs), a manifest of ${size:-?} bytes"
echo "$out" | grep -v '^p2pbcast: test:' | tail -4 | diag
[ -n "$size" ] && [ "$(got 4)" = "$size" ]
ok $? "the other node's leader (rank 4) received the whole manifest ($(got 4) of ${size:-?} bytes)"
bad=""
for r in 0 1 2 3 5 6 7; do [ "$(got $r)" = 0 ] || bad="$bad rank $r: '$(got $r)';"; done
[ -z "$bad" ]
ok $? "the root and the 6 ranks that are not leaders received no byte of manifest${bad:+ ($bad)}"
diff -r "$S" "$D/x.0" && diff -r "$S" "$D/x.4" && only_these "$D" x.0 x.4
ok $? "each node's leader wrote the tree, no other rank wrote anything"
rm -rf "${D:?}"/x.*

# The root sends a broken manifest (and votes failure itself): on 3 nodes
# (3, 3 and 2 ranks) the other leaders refuse it, and all 8 ranks, leaders
# or not, stop with the same status; nothing is created.
printf 'not a manifest at all' > "$WORK/bad"
P2PBCAST_TEST_RANKS_PER_NODE=3 P2PBCAST_TEST_MANIFEST="$WORK/bad" run 8 "$S" "$D/x.%r"
[ "$rcs" = "6x8 " ] && echo "$out" | grep -q "(rank 3): bad manifest" &&
    echo "$out" | grep -q "(rank 6): bad manifest" && [ -z "$(ls -A "$D")" ]
ok $? "a manifest refused by the other leaders: status 6 on all 8 ranks ($rcs), nothing created"
echo "$out" | grep 'error' | head -3 | diag
ls -A "$D" | diag
done_testing
