#!/bin/bash
# run-fuzz.sh [SECONDS] — build the libFuzzer targets and run each for
# SECONDS (default 30) over a scratch copy of the seed corpus.
#
#   fuzz_wire  everything parsed off a wire (tcp_wire.c, the chunk trailer,
#              verbs_wire.c)
#   fuzz_cli   the command line (options.c, dest_path.c)
#   fuzz_manifest  a directory SOURCE's manifest as every node parses it
#              (dirtree_manifest.c)
#
# Built with clang -fsanitize=fuzzer,address,undefined straight from the
# pure sources (no configure, no MPI: tests/fuzz/stub/mpi.h stands in for
# the one MPI type the public header names). Needs clang with libFuzzer
# (Debian: clang + libclang-rt-NN-dev) and libxxhash.
#
# Before fuzzing, every file in tests/fuzz/regress/<target>-* (inputs that
# once broke a target) is replayed and must pass.
#
# Exit status: 0 no crash; 1 a target crashed, leaked, timed out or broke an
# invariant (the reproducer path is printed: rerun it with
# `<tmp>/fuzz_X <reproducer>`); 2 build failed; 77 no clang/libFuzzer (skip).
#
# Environment: CC (default clang), FUZZ_TARGETS (default "wire cli manifest"),
# FUZZ_WORKDIR (keep everything there instead of a temp dir that is removed
# when no crash happened), FUZZ_ARGS (extra libFuzzer flags).
set -u

secs=${1:-30}
case $secs in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${CC:-clang}
targets=${FUZZ_TARGETS:-wire cli manifest}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "SKIP: $CC not found (install clang and libclang-rt-dev for libFuzzer)"
    exit 77
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
    "$CC" -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
    echo "SKIP: $CC cannot link -fsanitize=fuzzer (install libclang-rt-dev)"
    exit 77
fi

if [ -n "${FUZZ_WORKDIR:-}" ]; then
    work=$FUZZ_WORKDIR
    mkdir -p "$work"
    keep=1
else
    work=$(mktemp -d /tmp/p2pbcast-fuzz.XXXXXX)
    keep=0
fi

CFLAGS=(-std=c11 -g -O1 -Wall -Wextra -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -D_GNU_SOURCE -I "$here/stub" -I "$top/include" -I "$top/src" -I "$top/src/common" -I "$top/src/core" -I "$top/src/cli" -I "$top/src/files" \
        -I "$top/src/transport" -I "$top/src/transport/tcp" -I "$top/src/transport/verbs")

build() { # build NAME SOURCES... -- LIBS...
    local name=$1
    shift
    local srcs=() libs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    libs=("$@")
    echo "# building $name"
    if ! "$CC" "${CFLAGS[@]}" "${srcs[@]}" -o "$work/$name" "${libs[@]}" 2> "$work/$name.build.log"; then
        cat "$work/$name.build.log" >&2
        echo "run-fuzz: building $name failed" >&2
        exit 2
    fi
    # warnings are shown, not fatal
    [ -s "$work/$name.build.log" ] && sed 's/^/#   /' "$work/$name.build.log"
    return 0
}

status=0
for t in $targets; do
    case $t in
    wire)
        build fuzz_wire "$here/fuzz_wire.c" "$top/src/transport/tcp/tcp_wire.c" "$top/src/transport/verbs/verbs_wire.c" \
            "$top/src/core/digest.c" "$top/src/core/plan.c" "$top/src/core/schedule.c" "$top/src/core/sched_ring.c" \
            "$top/src/core/sched_tree.c" "$top/src/core/sched_shared.c" "$top/src/core/sched_shared_tree.c" \
            "$top/src/core/engine.c" -- -lxxhash ;;
    cli)
        build fuzz_cli "$here/fuzz_cli.c" "$top/src/cli/options.c" "$top/src/files/dest_path.c" "$top/src/common/defaults.c" -- ;;
    manifest)
        build fuzz_manifest "$here/fuzz_manifest.c" "$top/src/files/dirtree_manifest.c" -- ;;
    *)
        echo "run-fuzz: unknown target '$t'" >&2
        exit 2 ;;
    esac
    # Inputs that once broke a target (tests/fuzz/regress/<target>-*): each
    # must now pass, before any fuzzing.
    for r in "$here/regress/$t-"*; do
        [ -e "$r" ] || continue
        if "$work/fuzz_$t" "$r" > "$work/regress-$(basename "$r").log" 2>&1; then
            echo "ok - fuzz_$t: regression input $(basename "$r")"
        else
            status=1
            keep=1
            echo "not ok - fuzz_$t: regression input $r fails again"
            grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: invariant|.*runtime error)' \
                "$work/regress-$(basename "$r").log" | head -3 | sed 's/^/#   /'
        fi
    done
    rm -rf "$work/corpus-$t" "$work/artifacts-$t"
    mkdir -p "$work/corpus-$t" "$work/artifacts-$t"
    cp "$here/corpus/$t/"* "$work/corpus-$t/" 2>/dev/null
    echo "# running fuzz_$t for ${secs}s"
    # -timeout: one input taking > 10 s is a hang; -rss_limit_mb: runaway memory.
    # shellcheck disable=SC2086
    "$work/fuzz_$t" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts-$t/" ${FUZZ_ARGS:-} \
        "$work/corpus-$t" > "$work/fuzz_$t.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz_$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$work/fuzz_$t.log" | tail -1)
    corpus_n=$(find "$work/corpus-$t" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        status=1
        keep=1
        echo "not ok - fuzz_$t crashed (exit $rc) after ${execs:-?} executions"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: invariant|.*runtime error)' "$work/fuzz_$t.log" | head -5 | sed 's/^/#   /'
        for a in "$work/artifacts-$t/"*; do
            [ -e "$a" ] && echo "#   reproducer: $a   (rerun: $work/fuzz_$t $a)"
        done
        echo "#   full log: $work/fuzz_$t.log"
    else
        echo "ok - fuzz_$t: ${execs:-?} executions in ${secs}s, ${cov:-cov ?}, corpus $corpus_n inputs"
    fi
done

if [ "$keep" -eq 0 ]; then
    rm -rf "$work"
else
    echo "# work directory kept: $work"
fi
exit $status
