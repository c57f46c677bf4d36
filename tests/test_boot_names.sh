#!/bin/bash
# Run tests/test_boot_names under mpirun with 6 ranks (TAP from rank 0):
# what each leader knows of the others, before and after meeting its partners.
set -u
. "$(dirname "$0")/lib.sh"
mpi_tap_program 6 test_boot_names 4
done_testing
