#!/bin/bash
# Run tests/test_boot_names under mpirun with 6 ranks (TAP from the root).
# What each leader knows of the others, before and after meeting its partners.
set -u
. "$(dirname "$0")/lib.sh"
bin=${TESTS_BUILDDIR:-$(dirname "$0")}/test_boot_names
[ -x "$bin" ] || { echo "Bail out! test_boot_names not built"; exit 99; }
out=$(mpi_timeout "$MPIRUN" "${MPI_FLAGS[@]}" -np 6 "$bin" 2>&1)
rc=$?
echo "$out" | grep -E '^(ok|not ok) ' > "$WORK/lines"
if check_timeout "$out" "$MPIRUN -np 6 test_boot_names"; then
    done_testing
    exit 1
fi
while read -r line; do
    case $line in ok\ *) st=0 ;; *) st=1 ;; esac
    ok $st "${line#* - }"
done < "$WORK/lines"
[ $rc -eq 0 ] && [ "$(wc -l < "$WORK/lines")" -eq 4 ]
ok $? "every rank ends normally (mpirun status $rc)"
[ $rc -eq 0 ] || echo "$out" | tail -15 | diag
done_testing
