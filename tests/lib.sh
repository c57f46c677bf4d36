# lib.sh — shared by the shell tests: TAP output, a scratch directory that is
# always removed, and an mpirun wrapper that records every rank's exit code.
# shellcheck shell=bash

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P2PBCAST=${P2PBCAST:-$here/../p2pbcast}
MPIRUN=${MPIRUN:-mpirun}
# MPI_TIMEOUT: seconds one mpirun may take (read at each call); then
# mpi_timeout kills it (TERM, and KILL 10 s later), timeout reports that on
# stderr, and check_timeout turns the report into a failing test.
MPI_TIMEOUT=${MPI_TIMEOUT:-300}
mpi_timeout() { timeout --verbose -k 10 "$MPI_TIMEOUT" "$@"; }

# The launcher's flavour decides its flags (MPI_FLAVOR=openmpi|mpich to
# force): Open MPI's mpirun, or MPICH's Hydra (mpiexec.mpich).
if [ -z "${MPI_FLAVOR:-}" ]; then
    case $("$MPIRUN" --version 2>&1) in
        *"Open MPI"* | *OpenRTE*) MPI_FLAVOR=openmpi ;;
        *HYDRA* | *[Mm][Pp][Ii][Cc][Hh]*) MPI_FLAVOR=mpich ;;
        *) MPI_FLAVOR=openmpi ;;
    esac
fi
case $MPI_FLAVOR in
    mpich)
        # Hydra: every rank on this host, started with fork (never ssh, nor
        # Slurm when the tests run inside an allocation). It runs as root
        # and oversubscribes without being told, does not bind by default,
        # and waits for every rank and reports the worst status.
        MPI_BASE_FLAGS=(-launcher fork)
        MPI_FLAGS=("${MPI_BASE_FLAGS[@]}")
        ;;
    *)
        # Everything the job may need as root, on a small machine, without a
        # network.
        MPI_BASE_FLAGS=(--oversubscribe --allow-run-as-root --bind-to none
                        --mca btl_vader_single_copy_mechanism none)
        MPI_FLAGS=("${MPI_BASE_FLAGS[@]}" --mca rmaps_base_oversubscribe 1
                   --mca orte_abort_on_non_zero_status 0)
        # (the last one lets every rank finish and report its own exit status)
        export OMPI_MCA_hwloc_base_binding_policy=none
        ;;
esac

t_n=0
t_fail=0
ok() { # ok STATUS DESCRIPTION...
    local st=$1
    shift
    t_n=$((t_n + 1))
    if [ "$st" -eq 0 ]; then
        echo "ok $t_n - $*"
    else
        echo "not ok $t_n - $*"
        t_fail=$((t_fail + 1))
    fi
}
skip() { t_n=$((t_n + 1)); echo "ok $t_n - # SKIP $*"; }
# todo STATUS REASON DESCRIPTION...: a check of a known bug (TAP TODO: shown,
# not counted as a failure; "ok ... # TODO" once the bug is fixed).
todo() {
    local st=$1 why=$2
    shift 2
    t_n=$((t_n + 1))
    if [ "$st" -eq 0 ]; then echo "ok $t_n - $* # TODO $why (passes now: remove the TODO)"
    else echo "not ok $t_n - $* # TODO $why"; fi
}
# signalled: the statuses >= 128 (a rank killed by a signal) of the last run.
signalled() { grep -E '^[0-9]+$' "$WORK/rcs" | awk '$1 >= 128' | sort -u | tr '\n' ' '; }
diag() { sed 's/^/# /'; }
done_testing() { echo "1..$t_n"; [ "$t_fail" -eq 0 ]; }

# check_timeout OUTPUT WHAT [SECONDS]: when OUTPUT holds the report of a command killed
# by mpi_timeout, a failing test that says so; returns 0 then. With TODO=REASON
# set (a check of a known bug), the line is a TAP TODO too.
check_timeout() {
    if printf '%s\n' "$1" | grep -q '^timeout: sending signal'; then
        if [ -n "${TODO:-}" ]; then
            todo 1 "$TODO" "TIMEOUT: $2 did not finish within ${3:-$MPI_TIMEOUT} s and was killed"
        else
            ok 1 "TIMEOUT: $2 did not finish within ${3:-$MPI_TIMEOUT} s and was killed"
        fi
        return 0
    fi
    return 1
}

WORK=$(mktemp -d /tmp/p2pbcast-test.XXXXXX)
chmod 755 "$WORK"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# run NP [p2pbcast args...]: runs p2pbcast under mpirun with NP ranks.
# Sets: rc (mpirun's status), out (stdout+stderr), rcs (every rank's status,
# one per line, sorted), same_rc (0 when all ranks exited alike).
run() {
    local np=$1
    shift
    : > "$WORK/rcs"
    chmod 666 "$WORK/rcs"
    local as=() tr=() lim=""
    # P2PBCAST_TRANSPORT: run the same tests over another transport (an
    # explicit -t in the arguments still wins: getopt keeps the last).
    [ -n "${P2PBCAST_TRANSPORT:-}" ] && tr=(-t "$P2PBCAST_TRANSPORT")
    # P2PBCAST_SCHEDULE: the same for the schedule (ring, tree, auto).
    [ -n "${P2PBCAST_SCHEDULE:-}" ] && tr+=(--schedule "$P2PBCAST_SCHEDULE")
    # RUN_NOFILE=N: every rank limited to N open files (soft and hard).
    [ -n "${RUN_NOFILE:-}" ] && lim="ulimit -n $RUN_NOFILE || exit 99; "
    # RUN_AS=nobody: the whole job without root's power over permissions.
    [ -n "${RUN_AS:-}" ] && as=(setpriv --reuid="$RUN_AS" --regid=nogroup --clear-groups env HOME="$WORK")
    out=$(cd "$WORK" && mpi_timeout "${as[@]}" "$MPIRUN" "${MPI_FLAGS[@]}" -np "$np" \
        bash -c "$lim"'"$@"; r=$?; echo "$r" >> "'"$WORK"'/rcs"; exit $r' _ "$P2PBCAST" "${tr[@]}" "$@" 2>&1)
    rc=$?
    if check_timeout "$out" "$MPIRUN -np $np p2pbcast $*"; then
        rc=124
        echo timeout >> "$WORK/rcs"
    fi
    rcs=$(sort "$WORK/rcs" | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
    local kinds
    kinds=$(sort -u "$WORK/rcs" | wc -l)
    same_rc=1
    [ "$kinds" -eq 1 ] && [ "$(wc -l < "$WORK/rcs")" -eq "$np" ] && same_rc=0
}

# A file of SIZE bytes of random data.
mkfile() { head -c "$2" /dev/urandom > "$1"; }

# Nothing left in DIR but the files named (partial or temporary copies).
only_these() { # only_these DIR NAME...
    local dir=$1
    shift
    local extra
    extra=$(cd "$dir" && ls -A | grep -vxF -f <(printf '%s\n' "$@" ""))
    [ -z "$extra" ] || { echo "unexpected in $dir: $extra" | diag; return 1; }
}

# Fault injection (test_faults.sh, test_tree_faults.sh): the job runs in the
# background with its output in $WORK/out and its copies at $D/x.%r.
# pid of the p2pbcast process of world rank $1 of that job
rank_pid() {
    local p
    for p in $(pgrep -f "$D/x.%r"); do
        tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1\|PMI_RANK=$1" &&
            [ "$(cat /proc/$p/comm)" = p2pbcast ] && { echo "$p"; return 0; }
    done
    return 1
}
# Wait until the root reports progress: the transfer is under way.
under_way() {
    for _ in $(seq 300); do grep -q '% .* sent' "$WORK/out" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
# strike SIG RANK: once the transfer is under way, send SIG to that rank.
strike() {
    pid=""
    for _ in $(seq 100); do pid=$(rank_pid "$2") && break; sleep 0.1; done
    under_way || echo "the transfer never reported progress" | diag
    [ -n "$pid" ] && kill -"$1" "$pid" 2>/dev/null
}

# mpi_tap_program NP NAME LINES: run the check program tests/NAME under
# mpirun with NP ranks; its rank 0 prints LINES "ok"/"not ok" lines, which
# become this script's tests, then one more: every rank ended normally.
mpi_tap_program() {
    local np=$1 name=$2 lines=$3 out rc line st
    local bin=${TESTS_BUILDDIR:-$here}/$name
    [ -x "$bin" ] || { echo "Bail out! $name not built"; exit 99; }
    out=$(mpi_timeout "$MPIRUN" "${MPI_FLAGS[@]}" -np "$np" "$bin" 2>&1)
    rc=$?
    echo "$out" | grep -E '^(ok|not ok) ' > "$WORK/lines"
    if check_timeout "$out" "$MPIRUN -np $np $name"; then
        return 1
    fi
    while read -r line; do
        case $line in ok\ *) st=0 ;; *) st=1 ;; esac
        ok $st "${line#* - }"
    done < "$WORK/lines"
    [ $rc -eq 0 ] && [ "$(wc -l < "$WORK/lines")" -eq "$lines" ]
    ok $? "every rank ends normally (mpirun status $rc)"
    [ $rc -eq 0 ] || echo "$out" | tail -15 | diag
}
