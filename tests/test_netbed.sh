#!/bin/bash
# test_netbed.sh - self-test of the multi-host test bed (tests/netbed), TAP.
# Brings up 2 and then 4 emulated hosts, checks hostnames, private /tmp,
# isolation, that everything handed to mpirun (the rsh agent, the programs)
# exists on the hosts, an MPI run across the hosts from the head (also from a
# working directory under /tmp, which the hosts do not have), the shaped rate
# of a link, and that "down" (also after a failed "up") leaves nothing behind.
# Independent of where the checkout lives (/tmp included): the hosts have a
# private /tmp, so the bed copies its agent to a shared directory.  Every
# mpirun is bounded (NETBED_MPIRUN_TIMEOUT) and fails with a message.
# Skips (exit 0) where network namespaces cannot be created.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
NB=$HERE/netbed/netbed.sh
RATE=100
PFX=t$(( $$ % 10000000 ))
export NETBED_PREFIX=$PFX
# A launch that hangs (e.g. an orted dying on a host) fails after this long.
export NETBED_MPIRUN_TIMEOUT=${NETBED_MPIRUN_TIMEOUT:-180}

diag() { while IFS= read -r l; do echo "# $l"; done <<<"$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
(( EUID == 0 )) || skip_all "needs root to create network namespaces"
for t in ip tc nsenter unshare mpicc mpirun cc; do
    command -v "$t" >/dev/null || skip_all "$t not installed"
done
unshare --net --uts --ipc --mount true 2>/dev/null || skip_all "cannot create namespaces here"

T=0 FAILED=0
ok() {  # description, then the command to check
    local d=$1
    shift
    T=$(( T + 1 ))
    if "$@"; then echo "ok $T - $d"; else echo "not ok $T - $d"; FAILED=$(( FAILED + 1 )); fi
}

# Binaries go outside /tmp: the hosts have their own /tmp.
WORK=$(mktemp -d /var/tmp/test_netbed.XXXXXX)
cleanup() { "$NB" down "$PFX" >/dev/null 2>&1 || true; rm -rf "$WORK" "/tmp/test_netbed.$PFX"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# netbed.sh mpirun, bounded once more from outside (in case netbed.sh itself
# hangs): a timeout fails the check with a message.
nb_mpirun() {
    local rc=0 lim=$(( NETBED_MPIRUN_TIMEOUT + 30 ))
    timeout -k 10 "$lim" "$NB" mpirun "$@" || rc=$?
    (( rc == 124 || rc == 137 )) && echo "test_netbed: 'netbed.sh mpirun $*' did not finish (timeout)" >&2
    return "$rc"
}

NETNS_DIR_BEFORE=0
[[ -e /run/netns ]] && NETNS_DIR_BEFORE=1
echo "1..18"
ok "build test programs" bash -c "mpicc -O2 -std=c11 -o '$WORK/mpi_hello' '$HERE/netbed/mpi_hello.c' &&
    mpicc -O2 -std=c11 -o '$WORK/mpi_bcast_copy' '$TOP/bench/mpi_bcast_copy.c' &&
    cc -O2 -std=c11 -o '$WORK/tcp_copy' '$TOP/bench/tcp_copy.c'"

# ---- 2 hosts
ok "up 2 hosts" "$NB" up 2 "$RATE" "$PFX"
ok "hosts lists h1,h2" test "$("$NB" hosts)" = "h1,h2"
ok "each host has its own hostname" test "$("$NB" exec h1 hostname)/$("$NB" exec h2 hostname)/$("$NB" exec head hostname)" = "h1/h2/head"
private_tmp() {
    "$NB" exec h1 sh -c 'echo one > /tmp/netbed-probe' &&
        ! "$NB" exec h2 test -e /tmp/netbed-probe &&
        [[ ! -e /tmp/netbed-probe ]] &&
        [[ $(cat "$("$NB" dir h1)/netbed-probe") == one ]]
}
ok "each host has a private /tmp" private_tmp
isolated() {
    # No route leaves the test subnet (checked in the routing table; nothing is sent).
    ! "$NB" exec h1 ip route get 192.0.2.1 >/dev/null 2>&1 &&
        [[ $("$NB" exec h1 ip -4 -o addr show dev eth0 | awk '{print $4}') == 10.77.0.11/24 ]]
}
ok "hosts have only the test subnet" isolated

# ---- 4 hosts: a second "up" with the same prefix replaces the stale bed
ok "up 4 hosts over a stale bed" "$NB" up 4 "$RATE" "$PFX"
ok "stale bed's files are gone" bash -c "! test -e '$("$NB" dir h1)/netbed-probe'"
# What mpirun is handed must exist on every host: the orted there is given the
# agent's path and dies when it is missing (then mpirun used to wait forever).
visible_on_hosts() {
    local agent k f
    agent=$("$NB" agent) || return 1
    for k in 1 2 3 4; do
        for f in "$agent" "$WORK/mpi_hello" "$WORK/mpi_bcast_copy"; do
            "$NB" exec "h$k" test -x "$f" || { diag "h$k: $f does not exist there"; return 1; }
        done
    done
}
ok "the rsh agent and the programs handed to mpirun exist on every host" visible_on_hosts
hello() {
    local out
    out=$(nb_mpirun -np 4 "$WORK/mpi_hello" 2>&1) || { diag "$out"; return 1; }
    diag "$out"
    [[ $(echo "$out" | grep -c '^rank ') == 4 ]] &&
        [[ $(echo "$out" | awk '/^rank / { print $6 }' | sort -u | wc -l) == 4 ]] &&
        [[ $(echo "$out" | awk '/^rank / { print $7 }' | sort -u | wc -l) == 4 ]] &&
        echo "$out" | grep -q '^hello: ok'
}
ok "4-rank MPI run, one rank per host, from head" hello
# mpirun started in a directory that exists only in the root /tmp.
mkdir -p "/tmp/test_netbed.$PFX"
hello_from_tmp() { (cd "/tmp/test_netbed.$PFX" && hello); }
ok "the same run from a working directory under /tmp" hello_from_tmp
rmdir "/tmp/test_netbed.$PFX"
# A job that never ends is killed after NETBED_MPIRUN_TIMEOUT with status 124
# and a message (here: 3 s).
bounded() {
    local out rc=0
    out=$(NETBED_MPIRUN_TIMEOUT=3 "$NB" mpirun -np 2 sleep 600 2>&1) || rc=$?
    diag "$out"
    (( rc == 124 )) && grep -q 'did not finish within 3 s' <<<"$out"
}
ok "a hanging mpirun is killed after NETBED_MPIRUN_TIMEOUT, status 124, message" bounded
bcast_copy() {
    head -c $(( 6 << 20 )) /dev/urandom >"$WORK/src"
    nb_mpirun -np 4 "$WORK/mpi_bcast_copy" -b 1M --check "$WORK/src" /tmp/copy >/dev/null || return 1
    local k
    for k in 1 2 3 4; do cmp -s "$WORK/src" "$("$NB" dir "h$k")/copy" || return 1; done
}
ok "mpi_bcast_copy writes an identical DEST on every host" bcast_copy
rate_ok() {
    # 2 s of data, memory to memory; generous bounds: 0.6..1.05 of RATE.
    local addr out mbit
    addr=$("$NB" addr h2)
    "$NB" exec h2 timeout 30 "$WORK/tcp_copy" recv --no-io "$addr" 5401 x >/dev/null 2>&1 &
    out=$("$NB" exec h1 timeout 30 "$WORK/tcp_copy" send --no-io --size $(( RATE * 250000 )) - "$addr:5401")
    wait
    mbit=$(echo "$out" | sed -n 's/.*mbit=\([0-9.]*\).*/\1/p')
    echo "# one stream over a $RATE Mbit/s link: $mbit Mbit/s"
    awk -v m="$mbit" -v r="$RATE" 'BEGIN { exit !(m > 0.6 * r && m < 1.05 * r) }'
}
ok "a shaped link carries about its rate" rate_ok

left_nothing() {
    [[ -z $(ip netns list | grep "^$PFX-" || true) ]] &&
        ! grep -q "/run/netbed/$PFX" /proc/self/mountinfo &&
        [[ ! -e /run/netbed/$PFX && ! -e /tmp/netbed-$PFX && ! -e /var/tmp/netbed-$PFX.share ]] &&
        ! pgrep -f "$WORK/" >/dev/null &&
        { (( NETNS_DIR_BEFORE )) || [[ ! -e /run/netns ]]; }
}
ok "down" "$NB" down "$PFX"
ok "down leaves no namespace, mount, directory or process" left_nothing

# A failing "up" (here: a bad /dev/shm size) must tear down what it built.
ok "failed up cleans up after itself" bash -c "! NETBED_SHM_SIZE=bogus '$NB' up 2 $RATE $PFX 2>/dev/null"
ok "nothing left after the failed up" left_nothing

(( FAILED == 0 ))
