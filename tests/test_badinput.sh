#!/bin/bash
# test_badinput.sh — every bad input ends with a message that says what and
# where, the documented exit status on every rank, and no DEST (nor any
# temporary file) left behind.
. "$(dirname "$0")/lib.sh"

mkfile "$WORK/src" 300000
D="$WORK/d"
mkdir -p "$D"

# expect NAME CODE PATTERN NP ARGS... : run and check all of it: every
# rank's status (none killed by a signal), the message, nothing left.
# TODO=REASON: a known bug, reported as a TAP TODO.
expect() {
    local name=$1 code=$2 pat=$3 np=$4
    shift 4
    run "$np" "$@"
    local why="" sig
    [ $same_rc -eq 0 ] && [ "$rcs" = "${code}x$np " ] || why="$why rank statuses '$rcs';"
    sig=$(signalled)
    [ -z "$sig" ] || why="$why a rank died of a signal (status $sig);"
    echo "$out" | grep -Eq -- "$pat" || why="$why message does not match /$pat/;"
    only_these "$D" ${KEEP:-} || why="$why files left in DEST's directory;"
    [ -z "$why" ] || { echo "$out" | head -8 | diag; }
    if [ -n "${TODO:-}" ]; then
        [ -z "$why" ]; todo $? "$TODO" "$name: exit $code on all $np ranks, message, nothing left${why:+ —$why}"
    else
        [ -z "$why" ]; ok $? "$name: exit $code on all $np ranks, message, nothing left${why:+ —$why}"
    fi
    rm -rf "${D:?}"/* "$D"/.[!.]* 2>/dev/null
}

expect "missing SOURCE" 3 "cannot open SOURCE '$WORK/nope': No such file" 3 --per-rank "$WORK/nope" "$D/x.%r"
expect "SOURCE is a directory" 3 "SOURCE '$WORK' is a directory" 3 --per-rank "$WORK" "$D/x.%r"
mkfifo "$WORK/fifo"
expect "SOURCE is a fifo" 3 "SOURCE '$WORK/fifo' is not a regular file" 2 --per-rank "$WORK/fifo" "$D/x.%r"
expect "missing DEST directory" 4 "DEST directory '$D/no/such': No such file or directory" 3 --per-rank "$WORK/src" "$D/no/such/x.%r"
expect "DEST is a directory" 4 "DEST '$D' is a directory" 1 --per-rank "$WORK/src" "$D"
echo old > "$D/x.1"
KEEP=x.1 expect "DEST exists and differs" 4 "DEST '$D/x.1' exists and differs from SOURCE .*--force" 3 --per-rank "$WORK/src" "$D/x.%r"
expect "chunk size 0" 2 "chunk-size 0 out of range" 2 --per-rank -c 0 "$WORK/src" "$D/x.%r"
expect "absurd chunk size" 2 "chunk-size 64G out of range" 2 --per-rank -c 64G "$WORK/src" "$D/x.%r"
expect "unknown option" 2 "unknown option or missing argument: --frobnicate" 3 --frobnicate "$WORK/src" "$D/x"
expect "root out of range" 2 "--root 5 is out of range: this job has ranks 0 to 2" 3 --per-rank --root 5 "$WORK/src" "$D/x.%r"
expect "unknown placeholder" 2 "unknown placeholder '%q'" 2 --per-rank "$WORK/src" "$D/x.%q"
expect "transport verbs without an RDMA device" 5 "(no RDMA device|without RDMA)" 2 --per-rank -t verbs "$WORK/src" "$D/x.%r"
expect "--tcp-if naming no interface" 5 "--tcp-if 'nosuch0' matches no interface" 2 --per-rank --tcp-if nosuch0 "$WORK/src" "$D/x.%r"
expect "conflicting options -q -v" 2 "contradict" 2 -q -v "$WORK/src" "$D/x"
expect "SOURCE is a device" 3 "SOURCE '/dev/null' is not a regular file" 2 --per-rank /dev/null "$D/x.%r"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$WORK/sock"
expect "SOURCE is a socket" 3 "SOURCE '$WORK/sock' is not a regular file" 2 --per-rank "$WORK/sock" "$D/x.%r"
expect "empty SOURCE argument" 2 "must not be empty" 2 --per-rank "" "$D/x.%r"
expect "missing DEST operand" 2 "missing SOURCE and/or DEST" 2 "$WORK/src"
expect "extra operand" 2 "too many arguments" 2 "$WORK/src" "$D/x" "$D/y"
expect "DEST ends with /" 4 "names a directory: give the file name" 1 --per-rank "$WORK/src" "$D/"
long=$(printf 'n%.0s' $(seq 300))
expect "DEST file name too long" 4 "File name too long" 1 --per-rank "$WORK/src" "$D/$long"
expect "placeholder % at the end" 2 "'%' at the end" 2 --per-rank "$WORK/src" "$D/x%"
expect "unknown transport" 2 "unknown transport 'smoke-signals'" 2 -t smoke-signals "$WORK/src" "$D/x"
expect "--tcp-if with the mpi transport" 2 "--tcp-if applies to the tcp transport" 2 -t mpi --tcp-if lo "$WORK/src" "$D/x"
# A list malformed in itself is the same on every node: a usage error (2),
# said once; a name no node has is a node's failure (5, above).
expect "--tcp-if with a malformed CIDR" 2 "--tcp-if '10.0.0.0/99' is not a valid IPv4 CIDR" 2 --per-rank --tcp-if 10.0.0.0/99 "$WORK/src" "$D/x.%r"
expect "--tcp-if list with an empty element" 2 "--tcp-if 'lo,,eth0': an empty element" 3 --per-rank --tcp-if lo,,eth0 "$WORK/src" "$D/x.%r"
expect "--rdma-dev list with an empty element" 2 "--rdma-dev 'mlx5_0,,mlx5_1': an empty element" 3 --per-rank -t verbs --rdma-dev mlx5_0,,mlx5_1 "$WORK/src" "$D/x.%r"
expect "--rdma-dev with port 0" 2 "--rdma-dev 'mlx5_1:0': expected DEVICE or DEVICE:PORT" 2 --per-rank -t verbs --rdma-dev mlx5_0,mlx5_1:0 "$WORK/src" "$D/x.%r"
expect "--timeout not a number" 2 "invalid --timeout 'soon'" 2 --timeout soon "$WORK/src" "$D/x"
expect "--slots too few" 2 "invalid --slots '1'" 2 --slots 1 "$WORK/src" "$D/x"
expect "--root not a number" 2 "invalid --root 'first'" 2 --root first "$WORK/src" "$D/x"
expect "DEST is SOURCE on the root" 4 "DEST '$WORK/src' is SOURCE itself" 1 --per-rank --force "$WORK/src" "$WORK/src"
if mkdir -p "$WORK/ro" && mount -t tmpfs -o ro,size=1m tmpfs "$WORK/ro" 2>/dev/null; then
    expect "DEST on a read-only filesystem" 4 "in DEST directory '$WORK/ro': Read-only file system" 2 --per-rank "$WORK/src" "$WORK/ro/x.%r"
    umount "$WORK/ro"
else
    skip "DEST on a read-only filesystem: cannot mount here"
fi
P2PBCAST_TEST_CORRUPT_CHUNK=1 expect "a chunk corrupted in transit" 1 "chunk 1 .* failed its checksum" 4 --per-rank -c 64K "$WORK/src" "$D/x.%r"

# Node mode: several ranks on this one node, no --per-rank (one leader
# writes DEST, the other ranks wait for it). Every rank must exit with the
# documented status; none may die of a signal. Bad input must fail fast:
# 60 s is far beyond any of these runs.
# (Issue 10 item 1: with a bad SOURCE the non-leader ranks used to crash,
# status 139, and the leader sometimes waited forever.)
MPI_TIMEOUT=60
expect "node mode: missing SOURCE" 3 "cannot open SOURCE '$WORK/nope': No such file" 3 "$WORK/nope" "$D/x"
expect "node mode: SOURCE is a directory" 3 "SOURCE '$WORK' is a directory" 3 "$WORK" "$D/x"
expect "node mode: SOURCE is a device" 3 "SOURCE '/dev/null' is not a regular file" 2 /dev/null "$D/x"
expect "node mode: missing DEST directory" 4 "DEST directory '$D/no/such': No such file or directory" 3 "$WORK/src" "$D/no/such/x"
echo old > "$D/x"
KEEP=x expect "node mode: DEST exists and differs" 4 "DEST '$D/x' exists and differs from SOURCE .*--force" 3 "$WORK/src" "$D/x"
expect "node mode: DEST ends with /" 4 "names a directory: give the file name" 2 "$WORK/src" "$D/"
expect "node mode: DEST is SOURCE" 4 "DEST '$WORK/src' is SOURCE itself" 2 --force "$WORK/src" "$WORK/src"
expect "node mode: chunk size 0" 2 "chunk-size 0 out of range" 3 -c 0 "$WORK/src" "$D/x"
expect "node mode: root out of range" 2 "--root 5 is out of range: this job has ranks 0 to 2" 3 --root 5 "$WORK/src" "$D/x"
expect "node mode: transport verbs without an RDMA device" 5 "(no RDMA device|without RDMA)" 2 -t verbs "$WORK/src" "$D/x"
expect "node mode: --tcp-if naming no interface" 5 "--tcp-if 'nosuch0' matches no interface" 3 --tcp-if nosuch0 "$WORK/src" "$D/x"
MPI_TIMEOUT=300

# With mpirun's defaults (the first failing rank ends the job), mpirun's own
# status must be nonzero too, so that job scripts notice.
out=$(cd "$WORK" && mpi_timeout "$MPIRUN" "${MPI_BASE_FLAGS[@]}" -np 3 \
      "$P2PBCAST" -q --per-rank "$WORK/nope" "$D/x.%r" 2>&1)
rc=$?
check_timeout "$out" "plain $MPIRUN -np 3"
[ $rc -eq 3 ]; ok $? "plain mpirun returns the failing status (got $rc)"

# Permission problems need a user that root's privileges do not cover.
if setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
    chmod 777 "$D"
    cp "$WORK/src" "$WORK/secret" && chmod 600 "$WORK/secret"
    RUN_AS=nobody expect "unreadable SOURCE" 3 "cannot open SOURCE '$WORK/secret': Permission denied" 2 --per-rank "$WORK/secret" "$D/x.%r"
    chmod 555 "$D"
    RUN_AS=nobody expect "unwritable DEST directory" 4 "cannot create a temporary file in DEST directory '$D': Permission denied" 3 --per-rank "$WORK/src" "$D/x.%r"
    chmod 755 "$D"
else
    skip "unreadable SOURCE: cannot switch to user nobody"
    skip "unwritable DEST directory: cannot switch to user nobody"
fi
done_testing
