#!/bin/bash
# naive_copy.sh - the naive single-sender baseline: one source copies the file
# to every node's DEST, one node after another.
#
#   naive_copy.sh local SOURCE DEST1 [DEST2 ...]
#       cp SOURCE to each DEST in turn (each flushed with sync FILE).
#   naive_copy.sh bed [--no-io] [--port P] SOURCE DEST N
#       on the netbed named by $NETBED_PREFIX: host h1 (the root, where rank 0
#       of the MPI runs sits) copies SOURCE to its own DEST, then sends it over
#       one TCP stream to h2, h3, ..., hN in turn (bench/tcp_copy).  DEST is a
#       path inside each host (its private /tmp or /dev/shm).  With --no-io
#       nothing is read or written: F bytes (F = size of SOURCE) go from
#       memory to memory.
# Prints: RESULT method=naive nodes=N bytes=F seconds=T
# Environment: TCP_COPY (path of the tcp_copy binary; built into bench/out/bin
# from bench/tcp_copy.c when unset), NETBED (path of netbed.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETBED=${NETBED:-$HERE/../tests/netbed/netbed.sh}

die() { echo "naive_copy: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

# Build tcp_copy outside /tmp: the hosts of the bed have a private /tmp.
tcp_copy_bin() {
    if [[ -n ${TCP_COPY:-} ]]; then echo "$TCP_COPY"; return 0; fi
    local out=$HERE/out/bin/tcp_copy
    if [[ ! -x $out || $HERE/tcp_copy.c -nt $out ]]; then
        mkdir -p "$HERE/out/bin"
        "${CC:-cc}" -O2 -std=c11 -Wall -Wextra -o "$out.tmp.$$" "$HERE/tcp_copy.c" ||
            die "cannot build tcp_copy"
        mv -f "$out.tmp.$$" "$out"
    fi
    echo "$out"
}

run_local() {
    (( $# >= 2 )) || die "usage: naive_copy.sh local SOURCE DEST..."
    local src=$1 t0 t1 d bytes
    shift
    [[ -r $src ]] || die "cannot read $src"
    bytes=$(stat -c %s "$src")
    t0=$(now)
    for d in "$@"; do
        cp -- "$src" "$d"
        sync -- "$d"   # the bytes are on disk, as the other methods fsync
    done
    t1=$(now)
    echo "RESULT method=naive_local nodes=$# bytes=$bytes seconds=$(elapsed "$t0" "$t1")"
}

RECV_PIDS=()
LOGDIR=""
cleanup() {
    local p
    for p in "${RECV_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -n $LOGDIR ]] && rm -rf "$LOGDIR"
    return 0
}

run_bed() {
    local no_io=0 port=5201
    while (( $# )) && [[ $1 == --* ]]; do
        case $1 in
            --no-io) no_io=1; shift ;;
            --port) port=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    (( $# == 3 )) || die "usage: naive_copy.sh bed [--no-io] [--port P] SOURCE DEST N"
    local src=$1 dest=$2 n=$3 tc bytes k addr t0 t1
    local -a targets=() opt=()
    [[ -r $src ]] || die "cannot read $src (it must be outside /tmp to be seen by h1)"
    if ! [[ $n =~ ^[0-9]+$ ]] || (( n < 1 )); then die "N must be a number >= 1"; fi
    tc=$(tcp_copy_bin)
    bytes=$(stat -c %s "$src")
    (( no_io )) && opt=(--no-io)

    trap cleanup EXIT
    trap 'exit 130' INT TERM
    LOGDIR=$(mktemp -d /var/tmp/naive_copy.XXXXXX)
    # All receivers listen before the clock starts: their start-up is not
    # part of a copy a user would do with a running sshd/daemon.
    for (( k = 2; k <= n; k++ )); do
        addr=$("$NETBED" addr "h$k")
        "$NETBED" exec "h$k" "$tc" recv "${opt[@]}" "$addr" "$port" "$dest" \
            >"$LOGDIR/h$k.log" 2>&1 &
        RECV_PIDS+=($!)
        targets+=("$addr:$port")
    done
    for (( k = 2; k <= n; k++ )); do
        for _ in $(seq 100); do
            grep -q LISTENING "$LOGDIR/h$k.log" 2>/dev/null && break
            sleep 0.05
        done
        grep -q LISTENING "$LOGDIR/h$k.log" || die "receiver on h$k did not start: $(cat "$LOGDIR/h$k.log")"
    done

    t0=$(now)
    if (( ! no_io )); then
        # The root's own copy first (sh expands its own $1 $2).
        # shellcheck disable=SC2016
        "$NETBED" exec h1 sh -c 'cp -- "$1" "$2" && sync -- "$2"' sh "$src" "$dest"
    fi
    # Then every other node in turn, over one TCP stream each.
    if (( n > 1 )); then
        if (( no_io )); then
            "$NETBED" exec h1 "$tc" send --no-io --size "$bytes" - "${targets[@]}" >/dev/null
        else
            "$NETBED" exec h1 "$tc" send "$src" "${targets[@]}" >/dev/null
        fi
    fi
    t1=$(now)
    for k in "${RECV_PIDS[@]}"; do
        wait "$k" || die "a receiver failed: $(cat "$LOGDIR"/*.log)"
    done
    RECV_PIDS=()
    echo "RESULT method=naive nodes=$n bytes=$bytes seconds=$(elapsed "$t0" "$t1")"
}

case ${1:-} in
    local) shift; run_local "$@" ;;
    bed) shift; run_bed "$@" ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
