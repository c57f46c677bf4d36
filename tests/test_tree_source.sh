#!/bin/bash
# test_tree_source.sh — a directory SOURCE that changes between the root's
# walk and its read, on 3 nodes (--per-rank): a file renamed over by another
# of the same size and mtime, a directory swapped for a symbolic link to a
# look-alike elsewhere, or for that look-alike itself (the same names, sizes
# and mtimes, other bytes). The root must read each file from the inode it
# listed: the job fails with status 3 on every rank, naming the path and
# what changed, and no DEST_DIR nor staging directory is left on any node.
# (Only the root reads a directory SOURCE: the fault is on the root.)
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
. "$(dirname "$0")/lib.sh"

S="$WORK/src"
D="$WORK/d"
L="$WORK/lookalike"
# Three 64 KiB files read first, then z/sub/last: with -c 64K and a delay of
# 1.5 s before each chunk read, z/sub/last is read at least 6 s after the
# transfer starts, long after the swap below.
export P2PBCAST_TEST_READ_DELAY_MS=1500
make_tree() {
    rm -rf "$S" "$L" "$WORK/old" "${D:?}"
    mkdir -p "$S/a" "$S/z/sub" "$D"
    for i in 1 2 3; do head -c 65536 /dev/urandom > "$S/a/f$i"; done
    head -c 65536 /dev/urandom > "$S/z/sub/last"
    cp -a "$S/z" "$L" # the same names, sizes and mtimes ...
    head -c 65536 /dev/urandom > "$L/sub/last" # ... other bytes
    touch -r "$S/z/sub/last" "$L/sub/last"
}
# swap_after_walk COMMANDS: run COMMANDS in the background as soon as a
# node's staging directory exists (the walk is over, no data read yet).
swap_after_walk() {
    (
        for _ in $(seq 1200); do
            ls -A "$D" 2>/dev/null | grep -q '^\.x\.[0-9]\.p2pbcast-' && { eval "$1"; exit 0; }
            sleep 0.05
        done
        echo "no staging directory appeared: nothing swapped" | diag
    ) &
    swapper=$!
}
# fails_naming CASE REGEX: status 3 on every rank, the root's message
# matches, nothing left in $D.
fails_naming() {
    wait "$swapper"
    [ "$rcs" = "3x3 " ] && echo "$out" | grep -q "^p2pbcast: error: .*$2" && [ -z "$(ls -A "$D")" ]
    ok $? "$1: status 3 on every rank ($rcs), the path and the change named, nothing left in DEST's directory"
    echo "$out" | grep 'p2pbcast: error' | head -2 | diag
    ls -A "$D" | head -3 | diag
}

# 1. A file renamed over by another of the same size and mtime.
make_tree
swap_after_walk 'head -c 65536 /dev/urandom > "$S/z/sub/.new" && touch -r "$S/z/sub/last" "$S/z/sub/.new" &&
    mv -f "$S/z/sub/.new" "$S/z/sub/last"'
run 3 --per-rank -c 64K "$S" "$D/x.%r"
fails_naming "a file renamed over by a look-alike" \
    "SOURCE '$S': 'z/sub/last' was replaced during the copy (copies discarded): inode [0-9]* -> [0-9]*, ctime"

# 2. A directory swapped for a symbolic link to a look-alike elsewhere.
make_tree
swap_after_walk 'mv "$S/z" "$WORK/old" && ln -s "$L" "$S/z"'
run 3 --per-rank -c 64K "$S" "$D/x.%r"
fails_naming "a directory swapped for a symbolic link" \
    "SOURCE '$S': directory 'z' was replaced during the copy (copies discarded): now a symbolic link"

# 3. A directory swapped for a look-alike directory.
make_tree
swap_after_walk 'mv "$S/z" "$WORK/old" && mv "$L" "$S/z"'
run 3 --per-rank -c 64K "$S" "$D/x.%r"
fails_naming "a directory swapped for another" \
    "SOURCE '$S': directory 'z' was replaced during the copy (copies discarded): inode [0-9]* -> [0-9]*"

# 4. Nothing changed: the same tree copies (the checks do not fail a good run).
make_tree
P2PBCAST_TEST_READ_DELAY_MS=0 run 3 -q --per-rank -c 64K "$S" "$D/x.%r"
[ "$rcs" = "0x3 " ] && diff -r --no-dereference "$S" "$D/x.0" && diff -r --no-dereference "$S" "$D/x.2"
ok $? "an unchanged tree is copied to every node ($rcs)"
done_testing
