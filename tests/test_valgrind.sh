#!/bin/bash
# test_valgrind.sh — a small real broadcast with every rank under valgrind
# memcheck: 3 ranks, --per-rank, a 1 MB file, once over the tcp transport and
# once over the mpi transport, then a small directory over tcp. Each rank's memcheck must report no error
# (invalid access, uninitialised value reaching a syscall or branch, bad
# free) and no definite leak; Open MPI's own leaks and warnings are
# suppressed by tests/valgrind.supp, narrowly, by library function/object.
# When something is reported, the first records are printed as diagnostics
# with a note of whether a p2pbcast source file is on the stack.
#
# TAP; "1..0 # SKIP" without valgrind or mpirun. Takes about 20 s per run (three runs).
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"

SUPP=${TESTS_SRCDIR:-$here}/valgrind.supp

if ! command -v valgrind >/dev/null 2>&1; then
    echo "1..0 # SKIP valgrind not found"
    exit 0
fi
if ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "1..0 # SKIP $MPIRUN not found"
    exit 0
fi
if [ "$MPI_FLAVOR" != openmpi ]; then
    echo "1..0 # SKIP the suppressions and flags are Open MPI's ($MPIRUN is $MPI_FLAVOR)"
    exit 0
fi
if [ ! -x "$P2PBCAST" ]; then
    echo "1..0 # SKIP $P2PBCAST not built"
    exit 0
fi

# The suppressions must never hide our own code.
if grep -Eq '^[[:space:]]*fun:(pb_|p2pbcast_|main$)' "$SUPP"; then
    ok 1 "valgrind.supp names no p2pbcast function"
else
    ok 0 "valgrind.supp names no p2pbcast function"
fi

mkfile "$WORK/src" $((1024 * 1024))
# and a small directory: files, an empty one, a subdirectory, links
mkdir -p "$WORK/tree/sub/empty"
mkfile "$WORK/tree/a" 300000
mkfile "$WORK/tree/sub/b" 70000
: > "$WORK/tree/sub/zero"
ln -s ../a "$WORK/tree/sub/to-a"
ln "$WORK/tree/a" "$WORK/tree/hard-a"

# Keep Open MPI's and PMIx's components loaded at exit so their frames stay
# symbolised (the suppressions rely on library names).
export OMPI_MCA_mca_base_component_disable_dlclose=1
export PMIX_MCA_mca_base_component_disable_dlclose=1
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=40 --suppressions="$SUPP")

# Our sources: a stack frame "(file.c:N)" naming one of these is our code
# (every .c under src/ and mpi/, so that a new file is never missed).
ours_list=$(find "${TESTS_SRCDIR:-$here}/../src" "${TESTS_SRCDIR:-$here}/../mpi" -name '*.c' -printf '%f\n' |
    sed 's/\.c$//' | sort -u | paste -sd'|')
ours="\\(($ours_list)\\.c:[0-9]+\\)"

same_copy() { # same_copy DEST: DEST equals the SOURCE of this case
    if [ "$tr" = tree ]; then diff -r --no-dereference "$WORK/tree" "$1" > /dev/null 2>&1; else cmp -s "$WORK/src" "$1"; fi
}

# tcp and mpi: the file; tree: the directory, over tcp
for tr in tcp mpi tree; do
    d="$WORK/run-$tr"
    src="$WORK/src" transport=$tr
    [ "$tr" = tree ] && src="$WORK/tree" transport=tcp
    mkdir -p "$d"
    : > "$d/rcs"
    out=$(cd "$d" && timeout --verbose -k 10 600 "$MPIRUN" "${MPI_FLAGS[@]}" \
        -x OMPI_MCA_mca_base_component_disable_dlclose -x PMIX_MCA_mca_base_component_disable_dlclose \
        -np 3 bash -c '"$@"; r=$?; echo "$r" >> "'"$d"'/rcs"; exit $r' _ \
        "${VG[@]}" --log-file="$d/vg.%p.log" \
        "$P2PBCAST" -q --per-rank --transport="$transport" "$src" "$d/dst.%r" 2>&1)
    rc=$?
    check_timeout "$out" "$tr: 3 ranks under valgrind" 600
    rcs=$(sort "$d/rcs" | tr '\n' ' ')
    same=0
    for r in 0 1 2; do
        same_copy "$d/dst.$r" || same=1
    done
    ok $same "$tr: 3 ranks under valgrind: every copy equals SOURCE"
    [ $same -eq 0 ] || printf '%s\n' "$out" | tail -20 | diag

    # One log per process that ran to its end (a forked child that execs
    # leaves a log without a summary: not counted).
    nlogs=0
    bad=0
    for f in "$d"/vg.*.log; do
        grep -q 'ERROR SUMMARY' "$f" 2>/dev/null || continue
        nlogs=$((nlogs + 1))
        grep -q 'ERROR SUMMARY: 0 errors' "$f" || bad=$((bad + 1))
    done
    [ "$nlogs" -eq 3 ] && [ "$bad" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$rcs" = "0 0 0 " ]
    ok $? "$tr: memcheck clean on all 3 ranks (no errors, no definite leaks; exit codes: $rcs; $nlogs logs)"
    if [ "$bad" -ne 0 ] || [ "$rc" -ne 0 ]; then
        for f in "$d"/vg.*.log; do
            grep -q 'ERROR SUMMARY' "$f" || continue
            grep -q 'ERROR SUMMARY: 0 errors' "$f" && continue
            grep -h 'ERROR SUMMARY' "$f" | diag
            # First records, each flagged when our code is on its stack.
            awk -v ours="$ours" '
                /^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|Source and|Argument|.* are definitely lost)/ {
                    if (rec != "") { print (hit ? "[ours] " : "[lib]  ") rec; n++ }
                    rec = $0; hit = 0; next }
                rec != "" && /^==[0-9]+==    (at|by) / { rec = rec "\n    " $0; if ($0 ~ ours) hit = 1; next }
                rec != "" && /^==[0-9]+== *$/ { print (hit ? "[ours] " : "[lib]  ") rec; rec = ""; n++ }
                n >= 5 { exit }
                END { if (rec != "" && n < 5) print (hit ? "[ours] " : "[lib]  ") rec }' "$f" | diag
            break
        done
    fi
done

done_testing
