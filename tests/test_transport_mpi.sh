#!/bin/sh
# Run the MPI transport test under mpirun with 2 and 4 ranks, over the tcp
# and the shared-memory (vader) btl. One TAP line per run; the inner test's
# own TAP is shown as comments. Exit nonzero if any run fails.
# TEST_TRANSPORT_MPI: the test binary (default: $TESTS_BUILDDIR, then the
# build tree); MPIRUN: the launcher. Under ASan, leaks inside Open MPI's own
# plugins are ignored; a leak whose stack names our files fails the run.
set -u
bin=${TEST_TRANSPORT_MPI:-}
if [ -z "$bin" ]; then
    for b in "${TESTS_BUILDDIR:-.}/test_transport_mpi" ./tests/test_transport_mpi \
             "$(dirname "$0")/test_transport_mpi"; do
        [ -x "$b" ] && { bin=$b; break; }
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "Bail out! test_transport_mpi not built"; exit 99; }
mpirun=${MPIRUN:-mpirun}
command -v "$mpirun" >/dev/null 2>&1 || { echo "1..0 # SKIP $mpirun not found"; exit 0; }

log=$(mktemp "${TMPDIR:-/tmp}/test_transport_mpi.XXXXXX") || exit 99
trap 'rm -f "$log"' EXIT
trap 'exit 1' INT TERM
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}:exitcode=0"
status=0
n=0
echo "1..4"
for btl in self,tcp self,vader; do
    for np in 2 4; do
        n=$((n + 1))
        timeout --verbose -k 10 120 "$mpirun" --oversubscribe --allow-run-as-root --bind-to none \
            --mca btl "$btl" --mca mpi_yield_when_idle 1 -np "$np" "$bin" >"$log" 2>&1
        rc=$?
        # Open MPI's own plugins leak at exit under LSan: show only our lines.
        grep -E -e '^(ok|not ok|#|rank )' -e 'transport_mpi[a-z_]*\.c' -e 'ERROR: AddressSanitizer' \
            -e 'runtime error:' "$log" | sed 's/^/# /'
        why=""
        [ $rc -ne 0 ] && why="exit status $rc"
        grep -q '^timeout: sending signal' "$log" && why="$why (TIMEOUT: killed after 120 s)"
        grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' "$log" && why="$why sanitizer report"
        grep -A40 -e 'leak of' "$log" | grep -q -e 'transport_mpi[a-z_]*\.c' && why="$why leak in transport_mpi"
        grep -q '^not ok' "$log" && why="$why failed checks"
        grep -q '^ok' "$log" || why="$why no checks ran"
        if [ -z "$why" ]; then
            echo "ok $n - mpi transport, np $np, btl $btl ($(grep -c '^ok' "$log") checks)"
        else
            echo "not ok $n - mpi transport, np $np, btl $btl:$why"
            status=1
        fi
    done
done
exit $status
