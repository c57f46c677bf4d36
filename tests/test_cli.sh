#!/bin/bash
# test_cli.sh — the command outside mpirun: --help, --version, usage errors,
# and the man page documenting every option that --help lists.
. "$(dirname "$0")/lib.sh"

help=$("$P2PBCAST" --help)
ok $? "--help exits 0"
echo "$help" | grep -q '^Usage: p2pbcast' ; ok $? "--help prints the usage line"
ver=$("$P2PBCAST" --version)
ok $? "--version exits 0"
echo "$ver" | grep -Eq '^p2pbcast [0-9]+\.[0-9]+\.[0-9]+$'; ok $? "--version prints the version ($ver)"

echo "$ver" | grep -q '^built with .*MPI'; ok $? "--version names the MPI library it was built with"
echo "$ver" | grep -q '^transports: tcp mpi'; ok $? "--version lists the transports built in"

# The shared library exports the public API and nothing else.
lib=$(dirname "$P2PBCAST")/.libs/libp2pbcast.so
if [ -f "$lib" ] && command -v nm >/dev/null; then
    extra=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^p2pbcast_' | head -5 | tr '\n' ' ')
    api=$(nm -D --defined-only "$lib" | grep -c ' T p2pbcast_')
    [ -z "$extra" ] && [ "$api" -ge 3 ]; ok $? "libp2pbcast exports only p2pbcast_* ($api of them)${extra:+; also: $extra}"
else
    skip "libp2pbcast.so not built here"
fi

man=${TESTS_SRCDIR:-$here}/../doc/p2pbcast.1
missing=""
for opt in $(echo "$help" | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    grep -qF -- "${opt//-/\\-}" "$man" || grep -qF -- "$opt" "$man" || missing="$missing $opt"
done
[ -z "$missing" ]; ok $? "the man page documents every option in --help${missing:+ (missing:$missing)}"
ex=$(sed -n '/^\.SH "\?EXIT STATUS/,/^\.SH/p' "$man")
all=0
for code in 0 1 2 3 4 5 6; do echo "$ex" | grep -q "^$code\$" || all=1; done
ok $all "the man page's EXIT STATUS lists codes 0 to 6"

# Usage errors outside mpirun: MPI starts as a singleton, one message, exit 2.
err=$("$P2PBCAST" --bogus a b 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "unknown option"; ok $? "unknown option: exit 2 and says so ($rc)"
err=$("$P2PBCAST" onlyone 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "missing SOURCE"; ok $? "one operand: exit 2 ($rc)"
done_testing
