#!/bin/bash
# test_integration_mpi.sh — the integration tests again, every broadcast over
# --transport mpi (the file over 4 GiB is left to the tcp run).
export P2PBCAST_TRANSPORT=mpi P2PBCAST_SKIP_BIG=1
exec bash "$(dirname "$0")/test_integration.sh"
