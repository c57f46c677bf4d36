#!/bin/bash
# netbed.sh - emulate N hosts on this machine for multi-host tests of p2pbcast.
#
# Every host hK is a network namespace (its own eth0 with 10.77.0.(10+K)/24),
# a UTS namespace (hostname hK), an IPC namespace, and a mount namespace with
# its own /tmp (bind of a per-host directory), /dev/shm (fresh tmpfs),
# /etc/hosts and /etc/resolv.conf (files of the bed).  A veth pair joins each
# host to a Linux bridge living in its own namespace; both ends of every veth
# are shaped with HTB to RATE Mbit/s, so a host's uplink and downlink each
# carry RATE.  A "head" host on the same bridge runs mpirun, because mpirun in
# the root namespace advertises addresses the namespaces cannot reach; head has
# its own network/UTS/IPC namespaces but the root mount namespace (see
# make_head_ns), so it resolves no bed names: use addresses there.
# Nothing in the bed has a route outside its /24: test traffic cannot leave.
#
# A second rail (NETBED_RAIL1_RATE=M): every host hK also gets eth1 with
# 10.78.0.(10+K)/24 on a second bridge (br1, same namespace as br0), shaped
# to M Mbit/s both ways, and eth0 becomes the hosts' default route (a route
# into br0, which leads nowhere else), as a management network would be.
# head stays on rail 0 only.
#
# One slow uplink (NETBED_SLOW_HOST=K NETBED_SLOW_RATE=M): host hK's eth0
# egress is shaped to M Mbit/s instead of RATE; its downlink keeps RATE, so
# it receives at full rate and only what it sends is slow (a degraded link
# direction).
#
# usage: netbed.sh up N RATE_MBIT [PREFIX]   build hosts h1..hN (+ head)
#        netbed.sh down [PREFIX]             remove everything up created
#        netbed.sh exec HOST CMD...          run CMD inside HOST (hK, head, br)
#        netbed.sh hosts [PREFIX]            print h1,h2,...,hN
#        netbed.sh addr HOST [PREFIX]        print HOST's address
#        netbed.sh dir HOST [PREFIX]         print the root-namespace path of HOST's /tmp
#        netbed.sh share [PREFIX]            print a directory every host and head see
#        netbed.sh agent [PREFIX]            print the rsh agent's path (inside share)
#        netbed.sh mpirun [MPIRUN ARGS...]   mpirun from head with the bed's MCA settings
#        netbed.sh status [PREFIX]
# PREFIX defaults to $NETBED_PREFIX or "nb"; exec/mpirun take it only from
# $NETBED_PREFIX.  Other environment: NETBED_DIR (parent of the per-host
# directories, default /tmp), NETBED_NICE (nice level of launched MPI daemons
# and ranks, default 5), NETBED_SHM_SIZE (each host's /dev/shm, default 2g),
# NETBED_SHARE_BASE (parent of the shared directory, default /var/tmp; never
# /tmp or /dev/shm), NETBED_MPIRUN_TIMEOUT (seconds before "mpirun" is killed
# and fails with status 124, default 600), NETBED_RAIL1_RATE (Mbit/s of a
# second rail, see above; default none), NETBED_SLOW_HOST and
# NETBED_SLOW_RATE (one slow uplink, see above; default none).
#
# Every host has a private /tmp, so nothing under /tmp (a checkout, a build)
# exists on the hosts.  "up" therefore copies the rsh agent into the shared
# directory (created by up, removed by down) and "mpirun" hands that copy to
# Open MPI: the orted on every host is given the agent's path and fails when
# it does not exist there.  Put binaries the ranks run there too (or anywhere
# outside /tmp and /dev/shm).
set -euo pipefail

readonly SUBNET_BASE=10.77.0
readonly SUBNET=${SUBNET_BASE}.0/24
readonly RAIL1_BASE=10.78.0
readonly HEAD_IP=${SUBNET_BASE}.250
readonly STATE_ROOT=/run/netbed
readonly MAX_HOSTS=200
readonly MPIRUN_TIMEOUT=${NETBED_MPIRUN_TIMEOUT:-600}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE

die() { echo "netbed: $*" >&2; exit 1; }
log() { echo "netbed: $*" >&2; }

check_prefix() {
    [[ $1 =~ ^[a-z][a-z0-9]{0,7}$ ]] ||
        die "bad prefix '$1' (1-8 chars, [a-z][a-z0-9]*)"
}

host_ip() {  # host name -> address
    case $1 in
        head) echo "$HEAD_IP" ;;
        h[0-9]*) echo "${SUBNET_BASE}.$(( ${1#h} + 10 ))" ;;
        *) die "unknown host '$1'" ;;
    esac
}

# Mount points below a directory, deepest first (so nested ones go first).
mounts_under() {
    awk -v d="$1" '{ gsub(/\\040/, " ", $5); if (index($5, d "/") == 1 || $5 == d) print $5 }' \
        /proc/self/mountinfo | sort -r
}

# The directory every host and head see (same path everywhere), outside /tmp.
share_dir() {
    local base=${NETBED_SHARE_BASE:-/var/tmp}
    case $base in
        /tmp|/tmp/*|/dev/shm|/dev/shm/*) die "NETBED_SHARE_BASE=$base: the hosts have their own /tmp and /dev/shm" ;;
    esac
    echo "$base/netbed-$PREFIX.share"
}

state_get() {  # key [default]
    local f=$STATE_ROOT/$PREFIX/state
    if [[ -r $f ]]; then
        local v
        v=$(sed -n "s/^$1=//p" "$f" | tail -n1)
        [[ -n $v ]] && { echo "$v"; return 0; }
    fi
    echo "${2:-}"
}

# ---------------------------------------------------------------- down
cmd_down() {
    local s=$STATE_ROOT/$PREFIX ns pids i m dir netns_dir
    local -a nss=()
    netns_dir=$(state_get netns_dir "")
    # Our network namespaces are exactly those named PREFIX-*.
    while read -r ns _; do
        [[ $ns == "$PREFIX"-* ]] && nss+=("$ns")
    done < <(ip netns list 2>/dev/null)

    # Stop every process still inside the bed (orted, ranks, iperf3 ...):
    # they would pin namespaces and the per-host directories.
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=""
        for ns in "${nss[@]}"; do
            pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
        done
        pids=$(echo "$pids" | xargs)
        [[ -z $pids ]] && break
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        if (( i < 6 )); then kill -TERM $pids 2>/dev/null || true
        else kill -KILL $pids 2>/dev/null || true; fi
        sleep 0.3
    done
    [[ -n ${pids:-} ]] && log "warning: processes still in the bed: $pids"

    # Unpin UTS/IPC/mount namespaces, then the private state directory.
    if [[ -d $s ]]; then
        dir=$(state_get dir "")
        while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                log "warning: cannot unmount $m"
        done < <(mounts_under "$s")
        rm -f "$s"/*.uts "$s"/*.mnt "$s"/*.ipc "$s"/hosts "$s"/resolv.conf "$s"/state
        rmdir "$s" 2>/dev/null || log "warning: $s not empty, left in place"
        rmdir "$STATE_ROOT" 2>/dev/null || true
    else
        dir=""
    fi

    # Deleting a network namespace destroys its veth ends and the bridge.
    for ns in "${nss[@]}"; do
        ip netns del "$ns" 2>/dev/null || log "warning: cannot delete netns $ns"
    done

    # /run/netns itself, if this bed made it and nobody else uses it now.
    if [[ $netns_dir == created && -d /run/netns && -z $(ls -A /run/netns) ]]; then
        while mountpoint -q /run/netns && umount /run/netns 2>/dev/null; do :; done
        rmdir /run/netns 2>/dev/null || true
    fi

    # Per-host directories: only the one that carries our marker.
    [[ -z $dir ]] && dir=${NETBED_DIR:-/tmp}/netbed-$PREFIX
    if [[ -f $dir/.netbed-$PREFIX ]]; then
        rm -rf --one-file-system "$dir"
    fi
    # The shared directory: likewise only with our marker.
    dir=$(state_get share "$(share_dir)")
    if [[ -f $dir/.netbed-$PREFIX ]]; then
        rm -rf --one-file-system "$dir"
    fi
}

# ---------------------------------------------------------------- up
shape() {  # netns dev rate_mbit: HTB at RATE on the egress of dev
    local ns=$1 dev=$2 r=$3 burst limit
    # Burst: 2 ms at rate but at least one 64 KiB GSO packet plus slack,
    # else HTB under-runs its rate with TSO-sized packets.
    burst=$(( r * 250 )); (( burst < 100000 )) && burst=100000
    # Queue: about 50 ms at rate, so converging flows queue instead of drop.
    limit=$(( r * 6250 )); (( limit < 262144 )) && limit=262144
    ip -n "$ns" link set "$dev" txqueuelen 1000
    tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 10
    tc -n "$ns" class add dev "$dev" parent 1: classid 1:10 htb \
        rate "${r}mbit" ceil "${r}mbit" burst "$burst" cburst "$burst" quantum 60000
    tc -n "$ns" qdisc add dev "$dev" parent 1:10 handle 10: bfifo limit "$limit"
}

# Create the persistent UTS/IPC/mount namespaces of one host, inside its
# network namespace, and set them up (hostname, /tmp, /dev/shm, /etc/hosts).
make_host_ns() {  # name
    local h=$1 s=$STATE_ROOT/$PREFIX hd=$DIR/$1
    mkdir -p "$hd/tmp"
    chmod 1777 "$hd/tmp"
    touch "$s/$h.uts" "$s/$h.mnt" "$s/$h.ipc"
    # shellcheck disable=SC2016 # the script is expanded by the inner sh
    nsenter --net="/run/netns/$PREFIX-$h" \
        unshare --uts="$s/$h.uts" --ipc="$s/$h.ipc" --mount="$s/$h.mnt" --propagation private \
        /bin/sh -eu -c '
            hostname "$1"
            mount --bind "$2/tmp" /tmp
            mount -t tmpfs -o "mode=1777,size=$4" netbed-shm /dev/shm
            mount --bind "$3/hosts" /etc/hosts
            mount --bind "$3/resolv.conf" /etc/resolv.conf
            # sysfs of this network namespace, as "ip netns exec" does.
            if umount -l /sys 2>/dev/null; then mount -t sysfs netbed-sys /sys || true; fi
            # A host needs no copy of the bed'"'"'s namespace files; dropping them
            # keeps one host from pinning another.
            umount -l "$3" 2>/dev/null || true
            umount -l /run/netns 2>/dev/null || true
        ' sh "$h" "$hd" "$s" "${NETBED_SHM_SIZE:-2g}"
}

# The head keeps the root mount namespace: the kernel never copies the files
# that pin mount namespaces into a new mount namespace, so mpirun's rsh agent
# could not enter the hosts from a private one.  It gets its own network,
# hostname and IPC; it writes no DEST (ranks run on the hosts only).
make_head_ns() {
    local s=$STATE_ROOT/$PREFIX
    touch "$s/head.uts" "$s/head.ipc"
    nsenter --net="/run/netns/$PREFIX-head" \
        unshare --uts="$s/head.uts" --ipc="$s/head.ipc" hostname head
}

# The second rail of host h: eth1 on br1, shaped to rate both ways; eth0
# keeps the default route.
add_rail1() {  # host rate
    local h=$1 r=$2 br=$PREFIX-br
    ip -n "$br" link show br1 >/dev/null 2>&1 || {
        ip -n "$br" link add br1 type bridge stp_state 0 forward_delay 0
        ip -n "$br" link set br1 up
    }
    ip -n "$br" link add "w$h" type veth peer name eth1 netns "$PREFIX-$h"
    ip -n "$br" link set "w$h" master br1 up
    ip -n "$PREFIX-$h" addr add "$RAIL1_BASE.$(( ${h#h} + 10 ))/24" dev eth1
    ip -n "$PREFIX-$h" link set eth1 up
    ip -n "$PREFIX-$h" route add default dev eth0
    shape "$br" "w$h" "$r"
    shape "$PREFIX-$h" eth1 "$r"
}

cmd_up() {
    local n=$1 rate=$2 s=$STATE_ROOT/$PREFIX k h br=$PREFIX-br
    if ! [[ $n =~ ^[0-9]+$ ]] || (( n < 1 || n > MAX_HOSTS )); then die "N must be 1..$MAX_HOSTS"; fi
    if ! [[ $rate =~ ^[0-9]+$ ]] || (( rate < 1 || rate > 100000 )); then die "RATE_MBIT must be 1..100000"; fi
    local rail1=${NETBED_RAIL1_RATE:-}
    if [[ -n $rail1 ]] && { ! [[ $rail1 =~ ^[0-9]+$ ]] || (( rail1 < 1 || rail1 > 100000 )); }; then
        die "NETBED_RAIL1_RATE must be 1..100000"
    fi
    local slow=${NETBED_SLOW_HOST:-} slow_rate=${NETBED_SLOW_RATE:-}
    if [[ -n $slow || -n $slow_rate ]]; then
        if ! [[ $slow =~ ^[0-9]+$ && $slow_rate =~ ^[0-9]+$ ]] || (( slow < 1 || slow > n || slow_rate < 1 ||
                                                                      slow_rate > 100000 )); then
            die "NETBED_SLOW_HOST must be 1..N and NETBED_SLOW_RATE 1..100000 (both or neither)"
        fi
    fi
    (( EUID == 0 )) || die "must run as root (network namespaces)"
    for t in ip tc nsenter unshare mount; do
        command -v "$t" >/dev/null || die "$t not found (Debian: iproute2, util-linux, mount)"
    done
    if (( (n - 1) * rate > 2500 )); then
        log "warning: (N-1)*RATE = $(( (n - 1) * rate )) Mbit/s > 2500: the CPU, not the links, may be measured"
    fi

    # A stale bed of the same prefix (crashed run): clean it, never reuse it.
    if [[ -e $s ]] || ip netns list 2>/dev/null | grep -q "^$PREFIX-"; then
        log "removing stale bed '$PREFIX'"
        cmd_down
    fi

    DIR=${NETBED_DIR:-/tmp}/netbed-$PREFIX
    [[ -e $DIR ]] && die "$DIR exists and is not ours; remove it or set NETBED_DIR"
    local share
    share=$(share_dir)
    [[ -e $share ]] && die "$share exists and is not ours; remove it or set NETBED_SHARE_BASE"
    # Any failure from here on (set -e, die, a signal) removes the half bed.
    UP_DONE=0
    trap 'if (( ! UP_DONE )); then log "up failed, tearing down"; cmd_down; fi' EXIT
    trap 'exit 130' INT TERM

    # ip netns makes /run/netns (a shared self-bind) on first use: remember
    # whether this bed did, so that down removes it too.
    local netns_dir=existed
    [[ -e /run/netns ]] || netns_dir=created
    mkdir -p "$DIR"
    touch "$DIR/.netbed-$PREFIX"
    # The shared directory and the agent in it (see the header).
    mkdir -p "$share"
    chmod 755 "$share"
    touch "$share/.netbed-$PREFIX"
    install -m 755 "$HERE/rsh-agent" "$share/rsh-agent"
    mkdir -p "$s"
    # Namespace files must sit on a private mount, else the bind mounts that
    # pin the mount namespaces are refused (or propagate into the hosts).
    mount --bind "$s" "$s"
    mount --make-private "$s"
    printf 'n=%s\nrate=%s\ndir=%s\nnetns_dir=%s\nshare=%s\nrail1=%s\nslow=%s\nslow_rate=%s\n' "$n" "$rate" "$DIR" \
        "$netns_dir" "$share" "$rail1" "$slow" "$slow_rate" >"$s/state"
    {
        echo "127.0.0.1 localhost"
        echo "$HEAD_IP head"
        for (( k = 1; k <= n; k++ )); do echo "$(host_ip "h$k") h$k"; done
    } >"$s/hosts"
    # No nameserver: a lookup of an unknown name must not leave the bed.
    echo "options timeout:1 attempts:1" >"$s/resolv.conf"

    ip netns add "$br"
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$br" link set br0 up

    for h in $(seq -f 'h%g' 1 "$n") head; do
        ip netns add "$PREFIX-$h"
        # Create the pair inside the bridge namespace: no name ever appears
        # in the root namespace.
        ip -n "$br" link add "v$h" type veth peer name eth0 netns "$PREFIX-$h"
        ip -n "$br" link set "v$h" master br0 up
        ip -n "$PREFIX-$h" link set lo up
        ip -n "$PREFIX-$h" addr add "$(host_ip "$h")/24" dev eth0
        ip -n "$PREFIX-$h" link set eth0 up
        shape "$br" "v$h" "$rate"            # downlink of the host
        if [[ $h == "h$slow" ]]; then
            shape "$PREFIX-$h" eth0 "$slow_rate" # the slow uplink (NETBED_SLOW_HOST)
        else
            shape "$PREFIX-$h" eth0 "$rate"  # uplink of the host
        fi
        [[ -n $rail1 && $h != head ]] && add_rail1 "$h" "$rail1"
    done
    for (( k = 1; k <= n; k++ )); do make_host_ns "h$k"; done
    make_head_ns

    # Wait until every host answers from head (bridge ports forwarding).
    # ping is not always installed: a TCP connect to a closed port answered
    # by "refused" proves the path both ways.
    for (( k = 1; k <= n; k++ )); do
        local ok=0 err
        for _ in $(seq 50); do
            err=$(ip netns exec "$PREFIX-head" timeout 1 bash -c \
                "exec 3<>/dev/tcp/$(host_ip "h$k")/9" 2>&1 || true)
            if [[ $err == *refused* ]]; then ok=1; break; fi
            sleep 0.1
        done
        (( ok )) || die "h$k does not answer from head: $err"
    done
    # shellcheck disable=SC2034 # read by the EXIT trap
    UP_DONE=1
    trap - INT TERM
    log "bed '$PREFIX' up: $n hosts at ${rate} Mbit/s, head $HEAD_IP, subnet $SUBNET${rail1:+, rail 1 $RAIL1_BASE.0/24 at $rail1 Mbit/s}${slow:+, h$slow sends at $slow_rate Mbit/s}"
}

# ---------------------------------------------------------------- exec
# Enter all namespaces of a host.  Kept in sync with rsh-agent.
cmd_exec() {
    local h=$1 s=$STATE_ROOT/$PREFIX wd=/
    shift
    (( $# )) || die "exec: no command"
    if [[ $h == br ]]; then
        exec ip netns exec "$PREFIX-br" "$@"
    fi
    [[ -e $s/$h.uts ]] || die "no host '$h' in bed '$PREFIX' (is it up?)"
    local -a ns=(--net="/run/netns/$PREFIX-$h" --uts="$s/$h.uts" --ipc="$s/$h.ipc")
    if [[ $h != head ]]; then
        ns+=(--mount="$s/$h.mnt")
        # Keep the working directory when the host has it (not under /tmp).
        [[ $PWD != /tmp* && $PWD != /dev/shm* ]] && wd=$PWD
    else
        wd=$PWD
    fi
    NETBED_PREFIX=$PREFIX exec nsenter "${ns[@]}" --wd="$wd" -- "$@"
}

cmd_hosts() {
    local n
    n=$(state_get n "") ; [[ -n $n ]] || die "bed '$PREFIX' is not up"
    seq -s, -f 'h%g' 1 "$n"
}

# mpirun from head with what every run on the bed needs: launch through the
# rsh agent, Open MPI traffic on the test subnet only, TCP between hosts (no
# shared memory), no binding to core 0, ranks that yield instead of spinning.
# Tree spawn is off: an orted inside a host cannot enter other hosts.
# The agent is the copy in the shared directory (see the header); mpirun is
# killed after NETBED_MPIRUN_TIMEOUT seconds and then fails with a message
# and status 124 instead of waiting forever for a daemon that died.
cmd_mpirun() {
    local agent
    agent=$(state_get share "")/rsh-agent
    [[ -x $agent ]] || die "bed '$PREFIX' is not up (no rsh agent at $agent)"
    local -a args=(--allow-run-as-root
        --mca plm_rsh_agent "$agent"
        --mca plm_rsh_no_tree_spawn 1
        --mca oob_tcp_if_include "$SUBNET"
        --mca btl_tcp_if_include "$SUBNET"
        --mca btl 'tcp,self'
        --mca mpi_yield_when_idle 1
        --bind-to none)
    local a has_host=0
    for a in "$@"; do
        case $a in --host|-H|--hostfile|-hostfile|--machinefile) has_host=1 ;; esac
    done
    (( has_host )) || args+=(--host "$(cmd_hosts)")
    local rc=0 t0=$SECONDS
    ( cmd_exec head timeout -k 10 "$MPIRUN_TIMEOUT" mpirun "${args[@]}" "$@" ) || rc=$?
    if (( rc == 124 || (rc == 137 && SECONDS - t0 >= MPIRUN_TIMEOUT) )); then
        log "mpirun did not finish within $MPIRUN_TIMEOUT s: killed (NETBED_MPIRUN_TIMEOUT)"
        rc=124
    fi
    return "$rc"
}

cmd_status() {
    ip netns list | grep "^$PREFIX-" || true
    [[ -r $STATE_ROOT/$PREFIX/state ]] && cat "$STATE_ROOT/$PREFIX/state"
    mounts_under "$STATE_ROOT/$PREFIX"
}

# ---------------------------------------------------------------- main
PREFIX=${NETBED_PREFIX:-nb}
cmd=${1:-}
(( $# )) && shift
case $cmd in
    up)
        (( $# >= 2 && $# <= 3 )) || die "usage: netbed.sh up N RATE_MBIT [PREFIX]"
        PREFIX=${3:-$PREFIX}; check_prefix "$PREFIX"; cmd_up "$1" "$2" ;;
    down)
        PREFIX=${1:-$PREFIX}; check_prefix "$PREFIX"; cmd_down ;;
    exec)
        (( $# >= 2 )) || die "usage: netbed.sh exec HOST CMD..."
        check_prefix "$PREFIX"; cmd_exec "$@" ;;
    hosts)
        PREFIX=${1:-$PREFIX}; check_prefix "$PREFIX"; cmd_hosts ;;
    addr)
        (( $# >= 1 )) || die "usage: netbed.sh addr HOST [PREFIX]"
        host_ip "$1" ;;
    dir)
        (( $# >= 1 )) || die "usage: netbed.sh dir HOST [PREFIX]"
        PREFIX=${2:-$PREFIX}; check_prefix "$PREFIX"
        echo "$(state_get dir "${NETBED_DIR:-/tmp}/netbed-$PREFIX")/$1/tmp" ;;
    share)
        PREFIX=${1:-$PREFIX}; check_prefix "$PREFIX"
        [[ -n $(state_get share "") ]] || die "bed '$PREFIX' is not up"
        state_get share ;;
    agent)
        PREFIX=${1:-$PREFIX}; check_prefix "$PREFIX"
        [[ -n $(state_get share "") ]] || die "bed '$PREFIX' is not up"
        echo "$(state_get share)/rsh-agent" ;;
    mpirun)
        check_prefix "$PREFIX"; cmd_mpirun "$@" ;;
    status)
        PREFIX=${1:-$PREFIX}; check_prefix "$PREFIX"; cmd_status ;;
    *)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2 ;;
esac
