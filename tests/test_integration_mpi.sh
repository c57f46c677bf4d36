#!/bin/bash
# test_integration_mpi.sh — the integration tests again, every broadcast over
# --transport mpi (the file over 4 GiB, np 4-7 of the size matrix and the
# 128 ranks under 64 open files, a tcp limit, are left to the tcp run).
export P2PBCAST_TRANSPORT=mpi P2PBCAST_SKIP_BIG=1 P2PBCAST_MATRIX_NP=${P2PBCAST_MATRIX_NP:-1 2 3 8} \
    P2PBCAST_SKIP_SCALE=1
exec bash "$(dirname "$0")/test_integration.sh"
