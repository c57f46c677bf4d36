# shellcheck shell=bash
# bedtap.sh - the start every p2pbcast TAP test on the bed shares (sourced by
# tests/test_bed.sh, test_rails_bed.sh, test_adapt_bed.sh; bash, set -euo pipefail).
# Defines diag, skip_all and ok (T tests, FAILED failures), then
# bed_tap_start NAME PREFIX_LETTER: skips (exit 0) where the bed cannot be
# built; sets NB (netbed.sh), PFX and NETBED_PREFIX (a bed of our own),
# NETBED_MPIRUN_TIMEOUT (TEST_BED_TIMEOUT, default 180 s), WORK (a scratch
# directory under /var/tmp that every host sees, removed with the bed at
# exit) and BIN (a copy there of P2PBCAST, default ../p2pbcast from tests/).
# bed_bcast and prepare_dirs (below) use SRC, DEST and DDIR.

diag() { while IFS= read -r l; do echo "# $l"; done <<<"$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

T=0 FAILED=0
ok() {  # description, then the command to check
    local d=$1
    shift
    T=$(( T + 1 ))
    if "$@"; then echo "ok $T - $d"; else echo "not ok $T - $d"; FAILED=$(( FAILED + 1 )); fi
}

bed_tap_start() {  # name prefix-letter
    local tests
    tests=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    NB=$tests/netbed/netbed.sh
    P2PBCAST=${P2PBCAST:-$tests/../p2pbcast}
    PFX=$2$(( $$ % 10000000 ))
    export NETBED_PREFIX=$PFX
    export NETBED_MPIRUN_TIMEOUT=${TEST_BED_TIMEOUT:-180}
    (( EUID == 0 )) || skip_all "needs root to create network namespaces"
    local t
    for t in ip tc nsenter unshare mpirun mount cmp; do
        command -v "$t" >/dev/null || skip_all "$t not installed"
    done
    unshare --net --uts --ipc --mount true 2>/dev/null || skip_all "cannot create namespaces here"
    [[ -x $P2PBCAST ]] || skip_all "no p2pbcast binary at $P2PBCAST (build it first)"

    # Everything the hosts must see lives outside /tmp (each host has its own).
    WORK=$(mktemp -d "/var/tmp/$1.XXXXXX")
    chmod 755 "$WORK"
    trap '"$NB" down "$PFX" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
    trap 'exit 130' INT TERM

    # The binary: always a copy in WORK, which every host sees wherever the
    # build lives (a build under /tmp does not exist on the hosts).
    BIN=$(readlink -f "$P2PBCAST")
    if head -c 2 "$BIN" | grep -q '#!'; then
        skip_all "$BIN is a libtool wrapper, not the program: build with --disable-shared or set P2PBCAST"
    fi
    cp "$BIN" "$WORK/p2pbcast"
    BIN=$WORK/p2pbcast
}

# bed_bcast N [MPIRUN_ARGS...] -- [P2PBCAST_ARGS...]: p2pbcast ($BIN) from
# $SRC to $DEST on h1..hN. Sets out (stdout+stderr, tagged with
# [job,rank]), rcs ("host status" per rank, sorted), mrc (mpirun's status).
# orte_abort_on_non_zero_status 0: every rank finishes and reports its own
# status instead of being killed by mpirun after the first failure. A
# timeout fails every check of the run (the statuses are incomplete) and
# says so.
bed_bcast() {
    local n=$1 margs=()
    shift
    while (( $# )) && [[ $1 != -- ]]; do margs+=("$1"); shift; done
    (( $# )) && shift
    : >"$WORK/rcs"
    set +e
    # shellcheck disable=SC2016 # expanded by the rank's bash
    out=$(timeout -k 10 $(( NETBED_MPIRUN_TIMEOUT + 30 )) "$NB" mpirun -np "$n" --tag-output \
        --mca orte_abort_on_non_zero_status 0 ${margs[@]+"${margs[@]}"} \
        bash -c '"$@"; r=$?; echo "$(hostname) $r" >>'"$WORK/rcs"'; exit $r' _ \
        "$BIN" "$@" "$SRC" "$DEST" 2>&1)
    mrc=$?
    set -e
    if (( mrc == 124 || mrc == 137 )); then
        echo "# TIMEOUT: p2pbcast on $n hosts did not finish within $NETBED_MPIRUN_TIMEOUT s (status $mrc)"
        echo "timeout" >>"$WORK/rcs"
    fi
    rcs=$(sort "$WORK/rcs")
}

prepare_dirs() {  # n: an empty $DDIR (DEST's directory) on every host
    local k
    for (( k = 1; k <= $1; k++ )); do
        "$NB" exec "h$k" sh -c "rm -rf '$DDIR' && mkdir -p '$DDIR'" || return 1
    done
}
