#!/bin/bash
# test_abi.sh — the library's ABI (issue 23): a program built against an
# old header (tests/test_abi_old.c, e0857a3) and one using the sized
# interface (tests/test_abi_new.c), each run against libp2pbcast under
# mpirun with 2 ranks. ABI_LIBDIR=DIR runs them against another build's
# libp2pbcast.so.0 (e.g. an older one, to see these checks fail there).
. "$(dirname "$0")/lib.sh"

export WORK
[ -n "${ABI_LIBDIR:-}" ] && export LD_LIBRARY_PATH="$ABI_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
MPI_TIMEOUT=${ABI_TIMEOUT:-120}
mpi_tap_program 2 test_abi_old 7
mpi_tap_program 2 test_abi_new 8
done_testing
