#!/bin/bash
# test_check.sh — p2pbcast --check (the preflight) on 4 ranks (--per-rank,
# tcp over loopback), TAP:
#   - all ready: status 0 on every rank, one "all 4 nodes are ready" line,
#     the summary, a --json table with 4 ready nodes, nothing created;
#   - rank 2's DEST on a 1 MiB tmpfs, SOURCE 3 MiB: status 4 everywhere,
#     rank 2 named with both sizes, only rank 2 not ready in the table,
#     nothing created anywhere;
#   - SOURCE missing, and SOURCE unreadable (mode 000, run as nobody) on
#     the root: status 3 everywhere, nothing created.
# Every mpirun is bounded (MPI_TIMEOUT).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
. "$here/lib.sh"
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
[ -x "$P2PBCAST" ] || skip_all "no p2pbcast binary at $P2PBCAST"
command -v "$MPIRUN" >/dev/null || skip_all "mpirun not found"
MPI_TIMEOUT=${MPI_TIMEOUT:-120}
unset P2PBCAST_TRANSPORT P2PBCAST_SCHEDULE

SCR=$(mktemp -d /var/tmp/test_check.XXXXXX)
chmod 755 "$SCR"
MNT=""
trap '[ -n "$MNT" ] && umount "$MNT"; rm -rf "$SCR" "$WORK"' EXIT
mkfile "$SCR/src" $((3 * 1048576 + 99))
for r in 0 1 2 3; do mkdir -p "$SCR/d/r$r"; done
chmod -R 777 "$SCR/d"
show() { echo "$out" | tail -15 | diag; }
# nothing_created: every DEST directory as empty as it started.
nothing_created() {
    local left
    left=$(ls -A "$SCR"/d/r*)
    [ -z "$(find "$SCR/d" -mindepth 2)" ] || { echo "created: $left" | diag; return 1; }
}
# node_ready N: the JSON table's line of rank N says ready (true/false).
node_ready() { grep -q "{\"node\": \"[^\"]*(rank $1)\", \"ready\": $2," "$SCR/c.json"; }

run 4 --per-rank --check -t tcp --json "$SCR/c.json" "$SCR/src" "$SCR/d/r%r/c"
st=0
[ "$rcs" = "0x4 " ] || { echo "rank statuses: $rcs (want 0x4)" | diag; st=1; }
echo "$out" | grep -q '^p2pbcast: check: all 4 nodes are ready' || { echo "no 'all 4 nodes are ready'" | diag; st=1; }
echo "$out" | grep -q '^p2pbcast: check: transport tcp' || { echo "no transport line" | diag; st=1; }
echo "$out" | grep -Eq '^p2pbcast: check: DEST: least free space .*, SOURCE is 3.00 MiB' || { echo "no DEST line" | diag; st=1; }
for r in 0 1 2 3; do node_ready $r true || { echo "rank $r not ready in the JSON" | diag; st=1; }; done
grep -q '"status": 0,' "$SCR/c.json" || st=1
[ $st -eq 0 ] || show
nothing_created || st=1
ok $st "all ready: status 0 on 4 ranks, the summary and a JSON table of 4 ready nodes, nothing created ($rcs)"

if mount -t tmpfs -o size=1m,mode=777 tmpfs "$SCR/d/r2" 2>/dev/null; then
    MNT=$SCR/d/r2
    run 4 --per-rank --check -t tcp --json "$SCR/c.json" "$SCR/src" "$SCR/d/r%r/c"
    st=0
    [ "$rcs" = "4x4 " ] || { echo "rank statuses: $rcs (want 4x4)" | diag; st=1; }
    echo "$out" | grep -Eq "^p2pbcast: error: .*\\(rank 2\\): DEST '.*/d/r2/c': 1.00 MiB free on its filesystem, SOURCE is 3.00 MiB" ||
        { echo "rank 2 not named with the sizes" | diag; st=1; }
    echo "$out" | grep -q 'check: FAILED (DEST error): 1 of 4 node(s) not ready' || { echo "no FAILED line" | diag; st=1; }
    node_ready 2 false && node_ready 0 true && node_ready 1 true && node_ready 3 true ||
        { echo "JSON: not exactly rank 2 not ready" | diag; st=1; }
    [ $st -eq 0 ] || show
    nothing_created || st=1
    ok $st "rank 2's DEST on a 1 MiB tmpfs: status 4 everywhere, rank 2 named with the sizes, nothing created ($rcs)"
    umount "$MNT" && MNT=""
else
    skip "cannot mount a tmpfs here"
fi

run 4 --per-rank --check -t tcp "$SCR/nosuch" "$SCR/d/r%r/c"
st=0
[ "$rcs" = "3x4 " ] || { echo "rank statuses: $rcs (want 3x4)" | diag; st=1; }
echo "$out" | grep -Eq "error: .*\\(rank 0\\): cannot open SOURCE '.*nosuch'" || { echo "root not named" | diag; st=1; }
[ $st -eq 0 ] || show
nothing_created || st=1
ok $st "SOURCE missing on the root: status 3 everywhere, nothing created ($rcs)"

cp "$SCR/src" "$SCR/locked" && chmod 000 "$SCR/locked"
if [ "$(id -u)" -eq 0 ]; then
    if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then RUN_AS=nobody; else RUN_AS=""; fi
fi
if [ "$(id -u)" -ne 0 ] || [ -n "${RUN_AS:-}" ]; then
    run 4 --per-rank --check -t tcp "$SCR/locked" "$SCR/d/r%r/c"
    st=0
    [ "$rcs" = "3x4 " ] || { echo "rank statuses: $rcs (want 3x4)" | diag; st=1; }
    echo "$out" | grep -Eq "error: .*\\(rank 0\\): cannot open SOURCE '.*locked': Permission denied" ||
        { echo "root not named with the reason" | diag; st=1; }
    [ $st -eq 0 ] || show
    nothing_created || st=1
    ok $st "SOURCE unreadable on the root: status 3 everywhere, nothing created ($rcs)"
    RUN_AS=""
else
    skip "root without setpriv or user nobody: cannot make SOURCE unreadable"
fi

done_testing
