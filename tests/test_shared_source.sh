#!/bin/bash
# test_shared_source.sh — --source-shared (issue 14): every rank sees SOURCE
# (here: one machine, one path), so each node reads its share of the chunks
# and the ring allgather exchanges the rest. Every rank is its own node
# (--per-rank); copies must equal SOURCE, every rank exit alike.
#
# A node that sees another file at SOURCE's path is simulated with the test
# hook P2PBCAST_TEST_SOURCE_OF_RANK_<r>=PATH: the leader of MPI rank r (not
# the root) opens PATH instead of SOURCE (src/stage/source_shared.c).
. "$(dirname "$0")/lib.sh"

check_copies() { # check_copies NP SRC DESTPREFIX
    local np=$1 src=$2 pre=$3 i
    for ((i = 0; i < np; i++)); do
        cmp -s "$src" "$pre.$i" || { echo "copy $pre.$i differs or is missing" | diag; return 1; }
    done
}
dests() { local i; for ((i = 0; i < $1; i++)); do echo "dst.$i"; done; }
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }

# 1. Size matrix, --source-shared=yes: 0, 1, c-1, c+1, 5 MiB + r (not a
# multiple of c), on 2, 3, 4 and 8 nodes.
c=65536
sizes=(0 1 $((c - 1)) $((c + 1)) $((5 * 1048576 + 12345)))
for np in 2 3 4 8; do
    bad=""
    for size in "${sizes[@]}"; do
        d="$WORK/m$np-$size"
        mkdir -p "$d"
        mkfile "$d/src" "$size"
        run "$np" -q --per-rank -c 64K --source-shared=yes --json "$d/j.json" "$d/src" "$d/dst.%r"
        readers=$(json "$d/j.json" source_readers)
        want=$np
        [ "$size" -eq 0 ] && want=1 # nothing to read: not worth asking
        if [ $rc -ne 0 ] || [ $same_rc -ne 0 ] || ! check_copies "$np" "$d/src" "$d/dst" ||
           [ "$readers" != "$want" ] || ! only_these "$d" src j.json $(dests "$np"); then
            bad="$bad $size"
            echo "$out" | tail -5 | diag
        fi
        rm -rf "$d"
    done
    [ -z "$bad" ]; ok $? "np=$np, --source-shared=yes: sizes 0, 1, c-1, c+1, 5M+r copied exactly, every node read its share${bad:+ (failed:$bad)}"
done

# 2. auto (the default) takes shared reads when every node sees SOURCE.
S="$WORK/s"
mkdir -p "$S"
mkfile "$S/src" $((3 * 1048576 + 7))
run 4 -v --per-rank -c 64K --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 4 ] &&
    [ "$(json "$S/j.json" source_bytes_read)" = $((3 * 1048576 + 7)) ] &&
    echo "$out" | grep -q "source shared auto: yes: all 4 nodes see the same SOURCE" &&
    [ "$(echo "$out" | grep -c "read .* of SOURCE$")" -eq 4 ]
ok $? "auto: shared reads chosen (-v says so, one line per node), JSON: 4 readers, $(json "$S/j.json" source_bytes_read) bytes in all"
rm -f "$S"/dst.* "$S/j.json"
run 4 -q --per-rank -c 64K --source-shared=no --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 1 ]
ok $? "--source-shared=no: the root alone reads, copies exact"
rm -f "$S"/dst.* "$S/j.json"
# Both schedules: an explicit --schedule tree keeps the root's reads under
# auto at 4 nodes; with yes the trees fed by readers (tests/test_shared_tree.sh).
run 4 -q --per-rank -c 64K --schedule tree --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 1 ]
ok $? "--schedule tree, auto: the trees from the root, copies exact"
rm -f "$S"/dst.* "$S/j.json"
run 4 -q --per-rank -c 64K --schedule tree --source-shared=yes --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 2 ]
ok $? "--schedule tree --source-shared=yes: the trees fed by their two tops, copies exact"
rm -f "$S"/dst.* "$S/j.json"

# 3. One node sees another file at SOURCE's path, or none.
head -c $((3 * 1048576 + 7)) /dev/urandom > "$S/other"
touch -r "$S/src" "$S/other" # same size and mtime: ctime / checksums tell
P2PBCAST_TEST_SOURCE_OF_RANK_2="$S/other" run 4 --per-rank -c 64K --source-shared=yes "$S/src" "$S/dst.%r"
[ "$rcs" = "3x4 " ] && echo "$out" | grep -q "error: .*(rank 2): SOURCE '$S/other' has .* here" &&
    only_these "$S" src other
ok $? "yes, rank 2 sees another file: status 3 on every rank ($rcs), rank 2 and the difference named, no DEST"
echo "$out" | grep "error:" | head -2 | diag
P2PBCAST_TEST_SOURCE_OF_RANK_1="$S/missing" run 3 --per-rank -c 64K --source-shared=yes "$S/src" "$S/dst.%r"
[ "$rcs" = "3x3 " ] && echo "$out" | grep -q "error: .*(rank 1): cannot open SOURCE '$S/missing': No such file" &&
    only_these "$S" src other
ok $? "yes, rank 1 cannot see SOURCE: status 3 on every rank ($rcs), rank 1 named"
P2PBCAST_TEST_SOURCE_OF_RANK_2="$S/other" run 4 -v --per-rank -c 64K --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 1 ] &&
    echo "$out" | grep -q "source shared auto: no: .*(rank 2): SOURCE '$S/other' has .*; only the root reads SOURCE"
ok $? "auto, rank 2 sees another file: falls back to the root's reads (-v says why), copies exact"
rm -f "$S"/dst.* "$S/j.json"

# 4. SOURCE truncated or rewritten while the nodes read it: a named error,
# the same nonzero status on every rank, nothing left.
D="$WORK/d"
mkdir -p "$D"
mkfile "$WORK/orig" $((96 * 65536))
export P2PBCAST_TEST_READ_DELAY_MS=60 # 24 chunks per reader: ~1.4 s of reading
strike() { # strike WHAT: start a 4-rank shared copy of $WORK/src, do WHAT once it is under way
    cp "$WORK/orig" "$WORK/src"
    : > "$WORK/rcs"
    ( cd "$WORK" && mpi_timeout "$MPIRUN" "${MPI_FLAGS[@]}" -np 4 bash -c \
        '"$@"; r=$?; echo $r >> "'"$WORK"'/rcs"; exit $r' _ "$P2PBCAST" --per-rank -c 64K --source-shared=yes \
        "$WORK/src" "$D/x.%r" > "$WORK/out" 2>&1 ) &
    local job=$!
    for _ in $(seq 400); do grep -q '% .* sent' "$WORK/out" 2>/dev/null && break; sleep 0.02; done
    eval "$1"
    wait "$job"
    rc=$?
    rcs=$(sort "$WORK/rcs" | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
}
strike 'truncate -s 100000 "$WORK/src"'
[ "$rcs" = "3x4 " ] && grep -Eq "error: .*\(rank [0-9]+\): SOURCE '$WORK/src' (shrank|was modified) during the copy" "$WORK/out" &&
    [ -z "$(ls -A "$D")" ]
ok $? "SOURCE truncated mid-copy: status 3 on every rank ($rcs), the node that noticed named, nothing left"
grep "error:" "$WORK/out" | head -3 | diag
strike 'head -c $((96 * 65536)) /dev/urandom > "$WORK/src"'
[ "$rcs" = "3x4 " ] && grep -Eq "error: .*\(rank [0-9]+\): SOURCE '$WORK/src' (shrank|was modified) during the copy" "$WORK/out" &&
    [ -z "$(ls -A "$D")" ]
ok $? "SOURCE rewritten mid-copy: status 3 on every rank ($rcs), named, nothing left"
grep "error:" "$WORK/out" | head -3 | diag
# 4b. chmod changes SOURCE's ctime only (not size, not mtime): the per-read
# check sees it too.
strike 'chmod 600 "$WORK/src"'
[ "$rcs" = "3x4 " ] && grep -Eq "error: .*\(rank [0-9]+\): SOURCE '$WORK/src' was modified during the copy .*ctime changed" "$WORK/out" &&
    [ -z "$(ls -A "$D")" ]
ok $? "SOURCE's ctime changes mid-copy (chmod): status 3 on every rank ($rcs), named, nothing left"
grep "error:" "$WORK/out" | head -3 | diag
unset P2PBCAST_TEST_READ_DELAY_MS

# 6. A hostile shared SOURCE (issue 18): one non-root node reads a file
# equal to SOURCE in size, mtime, ctime (one touch of both: the same clock
# tick) and first and last chunk, but not in the middle. Nothing but the
# root's re-reading of the chunks other nodes read can tell; exit 0 would
# mean N identical wrong copies.
H="$WORK/h"
mkdir -p "$H"
# shellcheck source=tests/hostile_lib.sh
. "$(dirname "$0")/hostile_lib.sh"
c=65536
# NP HOOKRANK CHUNK [OPTIONS]: CHUNK is one that HOOKRANK's node reads; with
# --schedule tree the reader-fed trees, where the tops of the trees read
# (tests/test_shared_tree.sh): of 3 nodes 1 (even chunks) and 0, of 4 and 5
# nodes 3 and 2 (the allgather would have had another node read these).
for t in "3 1 10" "4 3 11" "3 0 9 --root 2" "4 2 10 --root 3" "3 1 12 --schedule tree" "4 2 11 --schedule tree" \
         "5 3 10 --schedule tree" "4 3 10 --schedule tree --root 2"; do
    set -- $t
    np=$1 hr=$2 k=$3
    shift 3
    hostile 21 "$k" "$k"
    hostile_caught "$np" "$hr" "$k" --per-rank "$@"
    ok $? "np=$np${1:+ $*}, rank $hr reads a file equal in size, times, first and last chunk: status 3 on every rank ($rcs), rank $hr and chunk $k named, no DEST"
    echo "$out" | grep "error:" | head -2 | diag
done

# auto on one machine: the other file is another inode, so the root reads
# alone, and the copies are the root's SOURCE.
hostile 21 10 10
P2PBCAST_TEST_SOURCE_OF_RANK_2="$H/other" run 4 -v --per-rank -c 64K --json "$H/j.json" "$H/src" "$H/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$H/src" "$H/dst" && [ "$(json "$H/j.json" source_readers)" = 1 ] &&
    echo "$out" | grep -q "source shared auto: no: .*(rank 2): SOURCE '$H/other' is another file here than on the root"
ok $? "auto, rank 2 reads another inode with equal size, times, first and last chunk: the root reads alone, copies exact"
rm -f "$H"/dst.* "$H/j.json"

# A sample, not every chunk (P2PBCAST_TEST_SAMPLE_BYTES: a budget of one
# chunk, so one chunk of each other reader): a node whose whole middle is
# stale is still caught, and the sample is as big as the rule says.
hostile 41 1 39
P2PBCAST_TEST_SAMPLE_BYTES=$c P2PBCAST_TEST_SOURCE_OF_RANK_2="$H/other" \
    run 4 --per-rank -c 64K --source-shared=yes "$H/src" "$H/dst.%r"
[ "$rcs" = "3x4 " ] && echo "$out" | grep -q "error: .*: chunk [0-9]* .* as read by [^ ]* (rank 2) differs" &&
    only_these "$H" src other
ok $? "one sampled chunk per reader: rank 2's stale middle caught, status 3 on every rank ($rcs), no DEST"
P2PBCAST_TEST_SAMPLE_BYTES=$c run 4 -v --per-rank -c 64K --source-shared=yes "$H/src" "$H/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$H/src" "$H/dst" &&
    echo "$out" | grep -q "source verify: the root re-read 3 chunks, "
ok $? "the same budget on an honest run: 3 chunks re-read (one per other node), exit 0"
echo "$out" | grep "source verify" | diag
rm -rf "$H"

# 5. Bad option values.
run 2 --per-rank --source-shared=maybe "$S/src" "$S/dst.%r"
[ "$rcs" = "2x2 " ] && echo "$out" | grep -q "unknown --source-shared 'maybe': choose auto, yes or no"
ok $? "--source-shared=maybe: usage error on every rank"
done_testing
