#!/bin/bash
# test_tree.sh — a directory SOURCE (placeholder, filled below)
. "$(dirname "$0")/lib.sh"
done_testing
