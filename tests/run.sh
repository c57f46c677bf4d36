#!/bin/bash
# run.sh — the whole test suite, as CI runs it:
#   1. install and build (tests/setup.sh), gcc with -Werror;
#   2. make check: unit, mpirun integration, bad input, transports, the
#      multi-host bed and the single-machine Slurm (these two skip where
#      namespaces or Slurm cannot run);
#   3. a clang build with -Werror, and its unit tests (this build and the
#      next two are made beside step 2, niced);
#   4. an MPICH build (MPICC=mpicc.mpich, gcc -Werror) running the
#      integration and bad-input tests under MPICH's mpiexec (the unit tests
#      call no MPI: the gcc, clang and sanitizer builds run them);
#   5. an ASan+UBSan build running the unit, integration and bad-input tests;
#   6. libFuzzer over everything parsed from the wire and the command line.
# Ends with one line "total: N passed, N failed, N skipped"; exits nonzero on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bash tests/setup.sh || exit 1
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
jobs=$(nproc)
status=0
step() { echo; echo "=== $*"; }

UNIT="tests/test_plan tests/test_options tests/test_wire tests/test_engine_sim tests/test_sink \
tests/test_verbs_wire tests/test_topo tests/test_verbs_nodevice tests/test_verbs_noverbs tests/test_manifest \
tests/test_rails tests/test_verbs_rails tests/test_verbs_place tests/test_source_check tests/test_rmtree tests/test_old_name tests/test_space"

# The other builds start from the distribution tree: that also proves the
# tarball has every file it needs.
scratch=$(mktemp -d /var/tmp/p2pbcast-ci.XXXXXX)
chmod 755 "$scratch" # the permission tests run as user nobody
trap 'rm -rf "$scratch"' EXIT
make -s distdir distdir="$scratch/dist" > /dev/null || status=1
# The tarball's tree: sources only (no object, library, dependency stamp or
# ELF program from a build), with the scripts the README names.
dist_bad=$(cd "$scratch/dist" &&
    find . \( -name '*.o' -o -name '*.lo' -o -name '*.la' -o -name '.deps' -o -name '.libs' \
        -o -name '.dirstamp' \) -print &&
    find . -type f -exec sh -c 'head -c 4 "$1" | grep -q ELF' _ {} \; -print &&
    for f in tests/run.sh tests/setup.sh; do [ -f "$f" ] || echo "missing $f"; done)
if [ -n "$dist_bad" ]; then
    echo "=== make distdir: build products in, or files missing from, the distribution:"
    echo "$dist_bad"
    status=1
fi
cp -a "$scratch/dist" "$scratch/clang"
cp -a "$scratch/dist" "$scratch/mpich"
mv "$scratch/dist" "$scratch/asan"

san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# build NAME ENV... -- CONFIGURE ARGS...: configure and build one tree, its
# test programs too; the output in NAME.build.log, the status in NAME.built.
build() {
    local name=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    ( cd "$scratch/$name" && env "${envs[@]}" ./configure -q "$@" > configure.out &&
      env "${envs[@]}" make -s -j"$jobs" > /dev/null && env "${envs[@]}" make -s -j"$jobs" check TESTS= > /dev/null
    ) > "$scratch/$name.build.log" 2>&1
    echo $? > "$scratch/$name.built"
}
built() { # NAME: 0 when its build went through, else its log and 1
    [ "$(cat "$scratch/$1.built" 2>/dev/null)" = 0 ] && return 0
    echo "=== the $1 build failed:"; tail -n 30 "$scratch/$1.build.log"; return 1
}
# The three builds run niced beside the gcc suite, one tree at a time: that
# suite mostly waits (mpirun start-up, the bed's shaped links, the
# deliberate delays of the liveness tests), and the builds took ~4 of CI's
# 30 minutes when they ran after it.
( renice -n 19 -p "$BASHPID" > /dev/null 2>&1 || true
  build clang OMPI_CC=clang -- CFLAGS="-O2 -g -Werror"
  build mpich -- MPICC=mpicc.mpich CFLAGS="-O2 -g -Werror"
  build asan -- CFLAGS="-O1 -g $san" LDFLAGS="$san" ) > /dev/null 2>&1 &
builds=$!

step "make check (gcc, -Werror)"
make -s check -j1 || status=1
wait "$builds"

step "clang build (-Werror) and unit tests"
( built clang && cd "$scratch/clang" && OMPI_CC=clang make -s check TESTS="$UNIT" ) || status=1

step "MPICH build (MPICC=mpicc.mpich, -Werror): integration and bad-input tests"
# configure must take MPICC by name and find MPICH's own launcher; the
# binary must link MPICH, not Open MPI.
( built mpich && cd "$scratch/mpich" &&
  grep -E '^(CC|MPI_LIBRARY|MPIRUN) = ' Makefile &&
  grep -q '^MPIRUN = .*mpiexec\.mpich$' Makefile &&
  { ldd p2pbcast | grep -q libmpich ||
    { echo "MPICH build: p2pbcast does not link libmpich" >&2; false; }; } &&
  P2PBCAST_SKIP_BIG=1 P2PBCAST_MATRIX_NP="1 2 3 8" \
      make -s check TESTS="tests/test_integration.sh tests/test_badinput.sh" ) || status=1

step "ASan + UBSan: unit, integration and bad-input tests"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leak checking where no MPI is loaded: Open MPI unloads its plugins at
# MPI_Finalize, so their start-up allocations show up as leaks in unknown
# modules that no suppression can name. The mpirun runs are checked for
# leaks by valgrind (tests/test_valgrind.sh) with narrow suppressions.
# hwloc's PCI plugin leaks on every topology load: leave it out.
( built asan && cd "$scratch/asan" &&
  ASAN_OPTIONS=detect_leaks=1:exitcode=86 HWLOC_COMPONENTS=-pci make -s check TESTS="$UNIT" &&
  ASAN_OPTIONS=detect_leaks=0:exitcode=86 P2PBCAST_SKIP_BIG=1 P2PBCAST_MATRIX_NP="1 2 3 8" P2PBCAST_SKIP_SCALE=1 \
      make -s check TESTS="tests/test_integration.sh tests/test_badinput.sh" ) || status=1
unset UBSAN_OPTIONS

if [ -x tests/fuzz/run-fuzz.sh ]; then
    step "libFuzzer, ${FUZZ_SECONDS:-20} s per target"
    bash tests/fuzz/run-fuzz.sh "${FUZZ_SECONDS:-20}" || status=1
fi

# One closing line over every test result of every build.
read -r pass fail skip < <(cat tests/*.trs "$scratch"/*/tests/*.trs 2>/dev/null |
    awk '/^:test-result:/ { if ($2 == "PASS" || $2 == "XFAIL") p++; else if ($2 == "SKIP") s++; else f++ }
         END { print p + 0, f + 0, s + 0 }')
echo
for d in . "$scratch/clang" "$scratch/mpich" "$scratch/asan"; do
    [ -f "$d/test-suite.log" ] && grep -q '^# FAIL: *[1-9]\|^# ERROR: *[1-9]' "$d/test-suite.log" &&
        { echo "=== failures in $d/test-suite.log:"; grep -E '^(FAIL|ERROR):' "$d/test-suite.log"; }
done
echo "total: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || status=1
exit $status
