#!/bin/bash
# Run tests/test_boot_abandon under mpirun with 3 ranks (TAP from the root).
# A crash of the root (writing into a buffer it gave up) fails the test.
set -u
. "$(dirname "$0")/lib.sh"
mpi_tap_program 3 test_boot_abandon 2
done_testing
