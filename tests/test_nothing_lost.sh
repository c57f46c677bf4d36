#!/bin/bash
# test_nothing_lost.sh — nothing the user had is lost (issue 18): DEST is
# never SOURCE, a directory above it, or (a directory SOURCE) inside it, as
# the root sees it or as any other node does; and a --force that cannot
# complete leaves the old DEST_DIR where it was on every node, with or
# without RENAME_EXCHANGE (P2PBCAST_TEST_NO_RENAME_EXCHANGE: as on NFS;
# P2PBCAST_TEST_FAIL_RENAME_OF_RANK_<r>=N,...: that rank's N-th rename of
# the commit fails); and a DEST_DIR that several nodes may share is written
# by one node or by none (P2PBCAST_TEST_PROBES_UNCONFIRMED).
. "$(dirname "$0")/lib.sh"

# A project directory: SOURCE (env, a tree, and file) with things beside it.
mkproj() { # mkproj DIR
    mkdir -p "$1/env/sub" "$1/other"
    echo env > "$1/env/sub/f"
    echo beside > "$1/other/g"
    echo file > "$1/file"
}
intact() { # intact DIR: mkproj's contents, nothing else
    diff -r "$1" "$WORK/pristine" > /dev/null || { echo "$1 changed:" | diag; diff -r "$1" "$WORK/pristine" | head -5 | diag; return 1; }
}
mkproj "$WORK/pristine"

# expect_refused NAME PATTERN DIR NP ARGS...: status 4 on every rank, the
# message, DIR intact.
expect_refused() {
    local name=$1 pat=$2 dir=$3 np=$4
    shift 4
    run "$np" -q "$@"
    local why=""
    [ $same_rc -eq 0 ] && [ "$rcs" = "4x$np " ] || why="$why rank statuses '$rcs';"
    echo "$out" | grep -Eq -- "$pat" || why="$why message does not match /$pat/;"
    intact "$dir" || why="$why SOURCE's directory changed;"
    [ -z "$why" ] || echo "$out" | grep p2pbcast | head -5 | diag
    [ -z "$why" ]; ok $? "$name: refused with status 4 on all $np ranks, SOURCE intact${why:+ —$why}"
}

P="$WORK/anc/proj"
mkproj "$P"
expect_refused "--force onto the directory above a directory SOURCE (the root sees it)" \
    "DEST_DIR '$P' is SOURCE '$P/env' or a directory that contains it" "$P" 3 --per-rank --force "$P/env" "$P"
expect_refused "the same, two levels up, node mode (3 ranks, one node)" \
    "DEST_DIR '$WORK/anc' is SOURCE .* or a directory that contains it" "$P" 3 --force "$P/env" "$WORK/anc"
ln -s anc/proj "$WORK/alias"
expect_refused "the same through a link to the directory" "is SOURCE '$WORK/alias/env' or a directory that contains it" \
    "$P" 3 --per-rank --force "$WORK/alias/env" "$P"
expect_refused "--force onto the directory above a file SOURCE" \
    "DEST '$P' is a directory that contains SOURCE '$P/file' on this node" "$P" 3 --per-rank --force "$P/file" "$P"

# Only one node's DEST is above (or is) SOURCE: rank 1 of 3 (DEST with %r).
R="$WORK/r1"
mkproj "$R"
expect_refused "--force onto the directory above a directory SOURCE on rank 1 only" \
    "\(rank 1\): DEST '$R' is a directory that contains SOURCE '$R/env' on this node" "$R" 3 --per-rank --force "$R/env" "$WORK/r%r"
[ ! -e "$WORK/r0" ] && [ ! -e "$WORK/r2" ]
ok $? "and no other node made its DEST_DIR"
F="$WORK/files"
mkdir -p "$F"
cp "$WORK/pristine/file" "$F/f1"
cp -r "$F" "$WORK/pristine-files"
run 3 -q --per-rank --force "$F/f1" "$F/f%r"
[ $same_rc -eq 0 ] && [ "$rcs" = "4x3 " ] && echo "$out" | grep -q "(rank 1): DEST '$F/f1' is SOURCE itself on this node" &&
    diff -r "$F" "$WORK/pristine-files" > /dev/null
ok $? "a file DEST that is SOURCE on rank 1 only: refused with status 4 on all 3 ranks, nothing written (rcs $rcs)"

# --force that cannot complete: the old DEST_DIR stays DEST_DIR everywhere.
S="$WORK/src"
D="$WORK/d"
mkdir -p "$S/a" "$D"
head -c 300000 /dev/urandom > "$S/a/data"
echo new > "$S/new"
old_trees() { # one old DEST_DIR per rank, each with its own contents
    rm -rf "${D:?}"/* "$D"/.[!.]* 2>/dev/null
    for r in 0 1 2; do mkdir -p "$D/x.$r/old"; echo "old $r" > "$D/x.$r/old/keep"; done
}
old_in_place() { # every node's DEST_DIR is its old one, nothing else in $D
    local r bad=""
    for r in 0 1 2; do
        [ "$(cat "$D/x.$r/old/keep" 2>/dev/null)" = "old $r" ] && [ "$(ls -A "$D/x.$r")" = old ] || bad="$bad $r"
    done
    [ -z "$bad" ] || echo "old DEST_DIR not in place on:$bad" | diag
    [ -z "$bad" ] && only_these "$D" x.0 x.1 x.2
}
# run_env VAR=VALUE...: a --force of 3 nodes with those test hooks set
run_env() {
    local kv
    for kv in "$@"; do export "${kv?}"; done
    run 3 -q --per-rank --force "$S" "$D/x.%r"
    for kv in "$@"; do unset "${kv%%=*}"; done
}

for case in "1|2|rank 1 (no RENAME_EXCHANGE), the new tree cannot take the old one's place" \
            "0|2|rank 0, the root (no RENAME_EXCHANGE), the same" \
            "2|1|rank 2 (no RENAME_EXCHANGE), the old one cannot be moved aside"; do
    IFS='|' read -r rank nth what <<< "$case"
    old_trees
    run_env P2PBCAST_TEST_NO_RENAME_EXCHANGE=1 "P2PBCAST_TEST_FAIL_RENAME_OF_RANK_$rank=$nth"
    [ $same_rc -eq 0 ] && [ "$rcs" = "4x3 " ] && old_in_place &&
        echo "$out" | grep -q "(rank $rank): cannot .* DEST_DIR '$D/x.$rank'.*(.* in place, unchanged)"
    ok $? "$what: status 4 on every rank, every node's old DEST_DIR in place (rcs $rcs)"
    [ "$rcs" = "4x3 " ] || echo "$out" | grep p2pbcast | head -4 | diag
done

old_trees
run_env "P2PBCAST_TEST_FAIL_RENAME_OF_RANK_1=1"
[ $same_rc -eq 0 ] && [ "$rcs" = "4x3 " ] && old_in_place &&
    echo "$out" | grep -q "(rank 1): cannot exchange the finished tree with DEST_DIR '$D/x.1'"
ok $? "with RENAME_EXCHANGE, rank 1's exchange fails: the others exchange back, every old DEST_DIR in place (rcs $rcs)"

# Even the rename back fails on rank 2: the error says where the old tree is,
# and no later run takes it for a stale leftover.
old_trees
run_env P2PBCAST_TEST_NO_RENAME_EXCHANGE=1 "P2PBCAST_TEST_FAIL_RENAME_OF_RANK_2=2,3"
hidden=$(cd "$D" && ls -A | grep '^\.x\.2\.p2pbcast-old-')
[ "$rcs" = "4x3 " ] && [ -n "$hidden" ] && [ "$(cat "$D/$hidden/old/keep")" = "old 2" ] &&
    echo "$out" | grep -q "(rank 2): .*the old DEST_DIR is now '$hidden' in the same directory (renaming it back failed: .*): rename it back" &&
    [ "$(cat "$D/x.0/old/keep")" = "old 0" ] && [ "$(cat "$D/x.1/old/keep")" = "old 1" ]
ok $? "the rename back fails too: the message names '$hidden', the other nodes' old trees in place"
run 3 -q --per-rank --force "$S" "$D/x.%r"
[ $rc -eq 0 ] && [ "$(cat "$D/$hidden/old/keep" 2>/dev/null)" = "old 2" ] && diff -r "$S" "$D/x.2" > /dev/null &&
    echo "$out" | grep -q "the old DEST_DIR '$D/x.2' of an earlier run that could not replace it is kept as '$hidden'"
ok $? "the next run copies the tree, keeps '$hidden' and says where it is"
rm -rf "${D:?}/$hidden"

# Without RENAME_EXCHANGE and nothing failing: replaced, the old trees gone.
old_trees
run_env P2PBCAST_TEST_NO_RENAME_EXCHANGE=1
[ $rc -eq 0 ] && diff -r "$S" "$D/x.0" > /dev/null && diff -r "$S" "$D/x.2" > /dev/null && only_these "$D" x.0 x.1 x.2
ok $? "without RENAME_EXCHANGE a --force replaces every DEST_DIR, no old tree nor marker left (rcs $rcs)"

# One DEST_DIR seen by 3 nodes whose probes the root cannot confirm
# (P2PBCAST_TEST_PROBES_UNCONFIRMED): no node writes it (several writers
# would race on one staging area); a file DEST is still written by each.
rm -rf "${D:?}"/* "$D"/.[!.]* 2>/dev/null
export P2PBCAST_TEST_PROBES_UNCONFIRMED=1
run 3 -q --per-rank "$S" "$D/shared"
[ $same_rc -eq 0 ] && [ "$rcs" = "4x3 " ] && [ -z "$(ls -A "$D")" ] &&
    echo "$out" | grep -q "DEST_DIR '$D/shared': the nodes that see one DEST_DIR could not be confirmed"
ok $? "a shared DEST_DIR whose probes are not confirmed: refused before anything is written, status 4 everywhere (rcs $rcs)"
run 3 -q --per-rank "$S/new" "$D/new"
[ $rc -eq 0 ] && cmp -s "$S/new" "$D/new" && only_these "$D" new
ok $? "a shared file DEST in the same case: every node writes its own copy (rcs $rcs)"
unset P2PBCAST_TEST_PROBES_UNCONFIRMED

done_testing
