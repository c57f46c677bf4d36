#!/bin/bash
# Run tests/test_boot_abandon under mpirun with 3 ranks (TAP from the root).
# A crash of the root (writing into a buffer it gave up) fails the test.
set -u
. "$(dirname "$0")/lib.sh"
bin=${TESTS_BUILDDIR:-$(dirname "$0")}/test_boot_abandon
[ -x "$bin" ] || { echo "Bail out! test_boot_abandon not built"; exit 99; }
out=$(mpi_timeout "$MPIRUN" "${MPI_FLAGS[@]}" -np 3 "$bin" 2>&1)
rc=$?
echo "$out" | grep -E '^(ok|not ok) ' > "$WORK/lines"
if check_timeout "$out" "$MPIRUN -np 3 test_boot_abandon"; then
    done_testing
    exit 1
fi
while read -r line; do
    case $line in ok\ *) st=0 ;; *) st=1 ;; esac
    ok $st "${line#* - }"
done < "$WORK/lines"
[ $rc -eq 0 ] && [ "$(wc -l < "$WORK/lines")" -eq 2 ]
ok $? "every rank ends normally (mpirun status $rc)"
[ $rc -eq 0 ] || echo "$out" | tail -15 | diag
done_testing
