#!/bin/bash
# test_verbs_guard.sh — the verbs transport's access control over softverbs
# (TAP): a peer cannot write a slot granted to another peer (its RDMA WRITE
# with the other's rkey fails with IBV_WC_REM_ACCESS_ERR and the receiver's
# data stays intact), and a process without the job secret gets no credit
# and its link is refused. The checks are in tests/softverbs/sv_verbs_guard.c.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib.sh
. "$here/lib.sh"
SV=$here/softverbs
top=$here/..

skip_all() { echo "1..0 # SKIP $*"; exit 0; }
command -v "$MPIRUN" >/dev/null || skip_all "mpirun not found"
command -v mpicc >/dev/null || skip_all "mpicc not found"
[ -e /usr/include/infiniband/verbs.h ] || skip_all "libibverbs-dev not installed"
[ -f "$top/.libs/libp2pbcore.a" ] || skip_all "build p2pbcast first (no .libs/libp2pbcore.a)"
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
SCR=$(mktemp -d /var/tmp/test_verbs_guard.XXXXXX)
trap 'rm -rf "$SCR" "$WORK"' EXIT
export SOFTVERBS_LIBDIR=$SCR/lib
st=0
make -s -C "$SV" O="$SOFTVERBS_LIBDIR" > "$SCR/build.log" 2>&1 || st=1
mpicc -std=c11 -D_GNU_SOURCE -DHAVE_CONFIG_H -I"$top" -I"$top/src/transport" -I"$top/src/transport/verbs" \
    -I"$top/src/core" -I"$top/include" -Wall -Wextra -Werror -O1 -o "$SCR/guard" "$SV/sv_verbs_guard.c" \
    "$top/.libs/libp2pbcore.a" -libverbs $(pkg-config --libs hwloc) -lxxhash >> "$SCR/build.log" 2>&1 || st=1
[ $st -eq 0 ] || diag < "$SCR/build.log"
ok $st "build softverbs and sv_verbs_guard"
[ $st -eq 0 ] || { done_testing; exit 1; }

guard() { # guard MODE: 3 ranks, bounded; sets out and rc
    out=$(cd "$SCR" && timeout 120 "$SV/softverbs-run" "$MPIRUN" "${MPI_FLAGS[@]}" -np 3 "$SCR/guard" "$1" 2>&1)
    rc=$?
    [ $rc -eq 124 ] && echo "sv_verbs_guard $1 timed out after 120 s" | diag
}

guard guard
st=$rc
echo "$out" | grep -q "rank 1: foreign-key write completed with remote access error" || st=1
echo "$out" | grep -q "rank 0: slot 1 intact after the foreign write: yes" || st=1
[ "$(echo "$out" | grep -c ': pass$')" -eq 3 ] || st=1
[ $st -eq 0 ] || echo "$out" | tail -20 | diag
ok $st "a peer writing a slot granted to another gets REM_ACCESS_ERR; the data stays intact"

guard stranger
st=$rc
echo "$out" | grep -q "rank 0: link to the stranger refused: yes" || st=1
echo "$out" | grep -q "rank 2 (stranger): got a credit from rank 0: no" || st=1
echo "$out" | grep -q "rank 1: credit from rank 0: yes" || st=1
[ $st -eq 0 ] || echo "$out" | tail -20 | diag
ok $st "a process without the job secret is refused and gets no credit; the others work"

done_testing
