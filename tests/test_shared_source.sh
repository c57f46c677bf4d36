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
# auto; with yes the ring allgather is used.
run 4 -q --per-rank -c 64K --schedule tree --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 1 ]
ok $? "--schedule tree, auto: the trees from the root, copies exact"
rm -f "$S"/dst.* "$S/j.json"
run 4 -q --per-rank -c 64K --schedule tree --source-shared=yes --json "$S/j.json" "$S/src" "$S/dst.%r"
[ $rc -eq 0 ] && check_copies 4 "$S/src" "$S/dst" && [ "$(json "$S/j.json" source_readers)" = 4 ]
ok $? "--schedule tree --source-shared=yes: the allgather, copies exact"
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
unset P2PBCAST_TEST_READ_DELAY_MS

# 5. Bad option values.
run 2 --per-rank --source-shared=maybe "$S/src" "$S/dst.%r"
[ "$rcs" = "2x2 " ] && echo "$out" | grep -q "unknown --source-shared 'maybe': choose auto, yes or no"
ok $? "--source-shared=maybe: usage error on every rank"
done_testing
