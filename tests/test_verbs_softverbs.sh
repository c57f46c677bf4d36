#!/bin/bash
# test_verbs_softverbs.sh — p2pbcast's verbs transport end to end over
# softverbs (tests/softverbs), TAP: identical copies for a size matrix with
# 2 and 4 ranks (--per-rank), IB and RoCE-like modes, root != 0, set-up
# bytes per leader that follow its partners (4 and 16 ranks, trees; the
# ring's root), and a corrupted chunk that must fail everywhere and leave
# no DEST.
# Needs P2PBCAST built with verbs (libibverbs-dev) and MPIRUN (tests/lib.sh).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
. "$here/lib.sh"
SV=$here/softverbs

skip_all() { echo "1..0 # SKIP $*"; exit 0; }
[ -x "$P2PBCAST" ] || skip_all "no p2pbcast binary at $P2PBCAST"
command -v "$MPIRUN" >/dev/null || skip_all "mpirun not found"
[ -e /usr/include/infiniband/verbs.h ] || skip_all "libibverbs-dev not installed"
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# Scratch under /var/tmp (sizes up to 64 MiB); lib.sh's $WORK holds rcs.
SCR=$(mktemp -d /var/tmp/test_verbs_softverbs.XXXXXX)
trap 'rm -rf "$SCR" "$WORK"' EXIT
export SOFTVERBS_LIBDIR=$SCR/lib
if ! make -s -C "$SV" O="$SOFTVERBS_LIBDIR" > "$SCR/build.log" 2>&1; then
    echo "not ok 1 - build softverbs"; diag < "$SCR/build.log"; echo "1..1"; exit 1
fi
"$P2PBCAST" --help 2>&1 | grep -q verbs || skip_all "p2pbcast has no verbs transport"

# sv NP ARGS...: p2pbcast under softverbs-run and mpirun, bounded.
sv() {
    local np=$1
    shift
    : > "$WORK/rcs"
    out=$(cd "$SCR" && timeout 120 "$SV/softverbs-run" "$MPIRUN" "${MPI_FLAGS[@]}" -np "$np" \
        bash -c '"$@"; r=$?; echo "$r" >> "'"$WORK"'/rcs"; exit $r' _ "$P2PBCAST" -t verbs "$@" 2>&1)
    rc=$?
    [ "$rc" -eq 124 ] && echo "timed out after 120 s: $np ranks, $*" | diag
    rcs=$(sort "$WORK/rcs" | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
}

copies_ok() { # copies_ok NP SRC: every dst.R identical to SRC, then removed
    local np=$1 src=$2 r bad=0
    for ((r = 0; r < np; r++)); do
        cmp -s "$src" "$SCR/dst.$r" || { echo "dst.$r differs or is missing" | diag; bad=1; }
    done
    rm -f "$SCR"/dst.*
    return $bad
}

for mode in ib roce; do
    export SOFTVERBS_MODE=$mode
    for np in 2 4; do
        for size in 0 1 4095 $((1048576 + 7)) $((64 * 1048576)); do
            [ "$size" -eq $((64 * 1048576)) ] && [ "$mode" = roce ] && [ "$np" -eq 2 ] && continue
            head -c "$size" /dev/urandom > "$SCR/src"
            sv "$np" --per-rank "$SCR/src" "$SCR/dst.%r"
            [ "$rc" -eq 0 ] || echo "$out" | tail -20 | diag
            st=$rc
            copies_ok "$np" "$SCR/src" || st=1
            ok "$st" "$mode: $size bytes to $np ranks, identical copies"
        done
    done
done
export SOFTVERBS_MODE=ib

head -c $((4 * 1048576 + 3)) /dev/urandom > "$SCR/src"
sv 4 --per-rank --root 2 "$SCR/src" "$SCR/dst.%r"
[ "$rc" -eq 0 ] || echo "$out" | tail -20 | diag
st=$rc; copies_ok 4 "$SCR/src" || st=1
ok "$st" "root 2 of 4 ranks, identical copies"

sv 8 --per-rank "$SCR/src" "$SCR/dst.%r"
[ "$rc" -eq 0 ] || echo "$out" | tail -20 | diag
st=$rc; copies_ok 8 "$SCR/src" || st=1
ok "$st" "8 ranks, identical copies"

# Set-up talks to the partners only: -v reports the bytes each leader
# exchanged, a fixed amount per queue pair (an offer and an echo, each
# way), so a leader's cost follows its partners, not the number of nodes
# (an allgather of endpoints would grow with every rank added).
PER_QP=$((2 * (256 + 12 + 24)))
setup_bytes() { # setup_bytes NP ARGS...: st=1 unless every leader reports qps*PER_QP; $maxq $maxb
    local np=$1 q b n=0
    sv "$@" -v --per-rank "$SCR/src" "$SCR/dst.%r"
    st=$rc
    copies_ok "$np" "$SCR/src" || st=1
    maxq=0 maxb=0
    while read -r q b; do
        n=$((n + 1))
        [ "$b" -eq $((q * PER_QP)) ] || { echo "$q queue pairs but $b bytes exchanged" | diag; st=1; }
        [ "$q" -gt "$maxq" ] && maxq=$q
        [ "$b" -gt "$maxb" ] && maxb=$b
    done < <(echo "$out" | sed -n 's/.* \([0-9]*\) queue pairs*,.*set-up exchanged \([0-9]*\) bytes.*/\1 \2/p')
    [ "$n" -eq "$np" ] || { echo "$n of $np leaders reported their set-up bytes" | diag; echo "$out" | tail -5 | diag; st=1; }
}
head -c $((3 * 1048576)) /dev/urandom > "$SCR/src"
for np in 4 16; do
    setup_bytes $np --schedule tree
    [ "$maxb" -le $((4 * PER_QP)) ] || { echo "a leader exchanged $maxb bytes ($maxq queue pairs)" | diag; st=1; }
    ok "$st" "--schedule tree, $np ranks: each leader's set-up exchanged $PER_QP bytes per partner, at most 4 partners ($maxb bytes at most), copies exact"
done
setup_bytes 16 --schedule ring
[ "$maxq" -eq 15 ] && [ "$maxb" -eq $((15 * PER_QP)) ] || { echo "ring root: $maxq queue pairs, $maxb bytes" | diag; st=1; }
ok "$st" "--schedule ring, 16 ranks: the root's set-up grows with its 15 partners, $PER_QP bytes each, not with their square"

# A corrupted chunk: every rank exits 1 and no DEST is left.
head -c $((2 * 1048576)) /dev/urandom > "$SCR/src"
P2PBCAST_TEST_CORRUPT_CHUNK=3 sv 4 --per-rank "$SCR/src" "$SCR/dst.%r"
st=0
[ "$rcs" = "1x4 " ] || { echo "rank statuses: $rcs (want 1x4)" | diag; echo "$out" | tail -10 | diag; st=1; }
left=$(ls "$SCR" | grep '^dst\.' || true)
[ -z "$left" ] || { echo "left behind: $left" | diag; st=1; }
ok "$st" "corrupted chunk 3: every rank exits 1, no DEST left"
rm -f "$SCR"/dst.*

done_testing
