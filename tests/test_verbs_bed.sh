#!/bin/bash
# test_verbs_bed.sh — p2pbcast -t verbs across emulated hosts (tests/netbed),
# TAP. 4 hosts (network namespaces, one rank each), softverbs in RoCE mode:
# each host's softverbs0 puts the host's own address in its GID
# (SOFTVERBS_IP, ::ffff:10.77.0.x), so every RDMA connection goes over the
# bed's bridge between namespaces. 16 MiB, default schedule and source mode,
# then --schedule tree --source-shared=no: every rank exits 0, the transport
# says it used RoCE with an address GID, the copy on every host is identical,
# no temporary file is left. Then h3 without a device: --transport auto
# copies over tcp naming h3, --transport verbs and --check -t verbs stop with
# status 5 naming h3, --check (auto) says all are ready over tcp; nothing is
# created by a failed run or a check. The bed is torn down and nothing remains.
# Skips (exit 0) where network namespaces cannot be created.
#
# The hosts have a private /tmp: the binary, softverbs (library and wrapper)
# and SOURCE live in the bed's shared directory (netbed.sh share).
# Environment: P2PBCAST (default ../p2pbcast), TEST_BED_TIMEOUT (seconds one
# broadcast may take before it is killed and fails, default 180).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NB=$HERE/netbed/netbed.sh
SV=$HERE/softverbs
P2PBCAST=${P2PBCAST:-$HERE/../p2pbcast}
SUBNET=10.77.0.0/24
PFX=vb$(($$ % 1000000))
export NETBED_PREFIX=$PFX
export NETBED_MPIRUN_TIMEOUT=${TEST_BED_TIMEOUT:-180}
N=4

diag() { while IFS= read -r l; do echo "# $l"; done <<<"$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
((EUID == 0)) || skip_all "needs root to create network namespaces"
for t in ip tc nsenter unshare mpirun mount cmp make; do
    command -v "$t" >/dev/null || skip_all "$t not installed"
done
[[ -e /usr/include/infiniband/verbs.h ]] || skip_all "libibverbs-dev not installed"
unshare --net --uts --ipc --mount true 2>/dev/null || skip_all "cannot create namespaces here"
[[ -x $P2PBCAST ]] || skip_all "no p2pbcast binary at $P2PBCAST (build it first)"
BIN=$(readlink -f "$P2PBCAST")
head -c 2 "$BIN" | grep -q '#!' && skip_all "$BIN is a libtool wrapper, not the program"
"$BIN" --help 2>&1 | grep -q verbs || skip_all "p2pbcast has no verbs transport"

T=0 FAILED=0
ok() { # description, then the command to check
    local d=$1
    shift
    T=$((T + 1))
    if "$@"; then echo "ok $T - $d"; else echo "not ok $T - $d"; FAILED=$((FAILED + 1)); fi
}

NETNS_DIR_BEFORE=0
[[ -e /run/netns ]] && NETNS_DIR_BEFORE=1
cleanup() { "$NB" down "$PFX" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ok "bed of $N hosts up" "$NB" up "$N" 500 "$PFX"
SH=$("$NB" share "$PFX")
# What the hosts run, in the shared directory (removed by "down").
setup_share() {
    cp "$BIN" "$SH/p2pbcast" && cp "$SV/softverbs-run" "$SH/softverbs-run" &&
        make -s -C "$SV" O="$SH/svlib" >"$SH/build.log" 2>&1 || { diag "$(cat "$SH/build.log")"; return 1; }
    head -c $((16 * 1048576)) /dev/urandom >"$SH/src"
    # Per rank: softverbs in RoCE mode on this host's own address; Open
    # MPI's TCP on the bed's subnet (softverbs-run would default it to lo).
    cat >"$SH/rank.sh" <<EOF
#!/bin/bash
a=\$(ip -4 -o addr show dev eth0 | awk '{print \$4}')
export SOFTVERBS_IP=\${a%/*} SOFTVERBS_MODE=roce SOFTVERBS_LIBDIR=$SH/svlib
export OMPI_MCA_btl_tcp_if_include=$SUBNET OMPI_MCA_oob_tcp_if_include=$SUBNET
if [ "\$(hostname)" = "\${NO_DEVICE_HOST:-none}" ]; then
    "$SH/softverbs-run" env -u SOFTVERBS "\$@" # softverbs lists no device without SOFTVERBS
else
    "$SH/softverbs-run" "\$@"
fi
r=\$?
echo "\$(hostname) \$r" >>"$SH/rcs"
exit \$r
EOF
    chmod 755 "$SH/rank.sh"
}
ok "binary, softverbs and SOURCE in the shared directory $SH" setup_share

DDIR=/tmp/vb
DEST=$DDIR/dest.bin
prepare_dirs() {
    local k
    for ((k = 1; k <= N; k++)); do
        "$NB" exec "h$k" sh -c "rm -rf '$DDIR' && mkdir -p '$DDIR'" || return 1
    done
}
# bcast ARGS...: p2pbcast -t verbs -v on h1..hN (root h1), bounded; PER
# ranks per host (node mode when 2: the first rank of each host leads it);
# TRANSPORT (-t), NO_DEVICE_HOST (that host's ranks see no RDMA device).
PER=1 TRANSPORT=verbs
export NO_DEVICE_HOST=none
bcast() {
    local hosts k
    hosts=$(for ((k = 1; k <= N; k++)); do printf 'h%d:%d,' "$k" "$PER"; done)
    : >"$SH/rcs"
    set +e
    out=$(timeout -k 10 $((NETBED_MPIRUN_TIMEOUT + 30)) "$NB" mpirun -np $((N * PER)) --host "${hosts%,}" \
        --tag-output --mca orte_abort_on_non_zero_status 0 -x NO_DEVICE_HOST \
        "$SH/rank.sh" "$SH/p2pbcast" -t "$TRANSPORT" -v "$@" "$SH/src" "$DEST" 2>&1)
    mrc=$?
    set -e
    if ((mrc == 124 || mrc == 137)); then
        echo "# TIMEOUT: p2pbcast -t verbs on $N hosts did not finish within $NETBED_MPIRUN_TIMEOUT s (status $mrc)"
    fi
    rcs=$(sort "$SH/rcs")
}
all_exit_0() {
    local k want=""
    for ((k = 1; k <= N * PER; k++)); do want+="h$(((k - 1) / PER + 1)) 0"$'\n'; done
    ((mrc == 0)) && [[ $rcs == "${want%$'\n'}" ]] || { diag "mpirun $mrc, ranks: $rcs"; diag "$out"; return 1; }
}
used_roce() { # every rank's transport line: softverbs0, RoCE, its own address in the GID
    local k
    for ((k = 1; k <= N; k++)); do
        grep -q "verbs on softverbs0:1 (RoCE, .*GID ::ffff:10.77.0.$((10 + k))" <<<"$out" ||
            { diag "no RoCE line for h$k:"; diag "$(grep 'verbs on' <<<"$out")"; return 1; }
    done
}
copies_identical() {
    local k d
    for ((k = 1; k <= N; k++)); do
        d=$("$NB" dir "h$k")${DEST#/tmp}
        cmp -s "$SH/src" "$d" || { diag "h$k: $DEST differs or is missing"; return 1; }
    done
}
only_dest_left() {
    local k l
    for ((k = 1; k <= N; k++)); do
        l=$(ls -A "$("$NB" dir "h$k")${DDIR#/tmp}")
        [[ $l == "${DEST##*/}" ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}

for args in "" "--schedule tree --source-shared=no" "node mode"; do
    what="16 MiB to $N hosts over RoCE softverbs${args:+ ($args)}"
    if [[ $args == "node mode" ]]; then args="" PER=2 what="16 MiB to $N hosts, 2 ranks each (node mode), RoCE"; fi
    ok "$what: DEST directories ready" prepare_dirs
    # shellcheck disable=SC2086 # args is a list of options
    bcast $args
    ok "$what: every rank exits 0" all_exit_0
    ok "$what: each host's transport used RoCE with its own address GID" used_roce
    diag "$(grep 'verbs on' <<<"$out" | head -n 2)"
    ok "$what: identical copy on every host" copies_identical
    ok "$what: no temporary file left" only_dest_left
done

# One host without a device (h3, a receiver): auto negotiates tcp for all,
# naming h3; --transport verbs refuses, naming h3; the preflight says the same
# and creates nothing.
PER=1 NO_DEVICE_HOST=h3
names_h3() { grep -q "verbs cannot be used on 1:.*h3" <<<"$out" || { diag "$out"; return 1; }; }
used_tcp() { grep -q "tcp" <<<"$(grep -i 'transport' <<<"$out")" && ! grep -q "verbs on softverbs0" <<<"$out" || { diag "$out"; return 1; }; }
what="16 MiB to $N hosts, h3 without an RDMA device, --transport auto"
ok "$what: DEST directories ready" prepare_dirs
TRANSPORT=auto bcast
ok "$what: every rank exits 0" all_exit_0
ok "$what: the warning names h3, and tcp carries the copy" eval 'names_h3 && used_tcp'
ok "$what: identical copy on every host" copies_identical
statuses_are() { # statuses_are S: every rank exited S
    local k want=""
    for ((k = 1; k <= N; k++)); do want+="h$k $1"$'\n'; done
    [[ $rcs == "${want%$'\n'}" ]] || { diag "ranks: $rcs"; diag "$out"; return 1; }
}
nothing_created() {
    local k l
    for ((k = 1; k <= N; k++)); do
        l=$(ls -A "$("$NB" dir "h$k")${DDIR#/tmp}")
        [[ -z $l ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}
what="16 MiB to $N hosts, h3 without an RDMA device"
ok "$what, --transport verbs: DEST directories ready" prepare_dirs
TRANSPORT=verbs bcast
ok "$what, --transport verbs: status 5 on every rank, h3 named" eval 'statuses_are 5 && grep -q "h3" <<<"$(grep -i error <<<"$out")"'
ok "$what, --transport verbs: nothing left in DEST's directory" nothing_created
TRANSPORT=verbs bcast --check
ok "$what, --check --transport verbs: status 5 on every rank, h3 named, nothing created" \
    eval 'statuses_are 5 && grep -q "h3" <<<"$out" && nothing_created'
TRANSPORT=auto bcast --check
check_auto_ready() {
    statuses_are 0 && names_h3 && nothing_created &&
        { grep -q "all $N nodes are ready" <<<"$out" || { diag "$out"; return 1; }; }
}
ok "$what, --check (auto): exit 0, all nodes ready over tcp, h3 named, nothing created" check_auto_ready
NO_DEVICE_HOST=none

left_nothing() {
    [[ -z $(ip netns list | grep "^$PFX-" || true) ]] &&
        [[ ! -e /run/netbed/$PFX && ! -e /tmp/netbed-$PFX && ! -e $SH ]] &&
        { ((NETNS_DIR_BEFORE)) || [[ ! -e /run/netns ]]; }
}
ok "down" "$NB" down "$PFX"
ok "down leaves no namespace or directory" left_nothing

echo "1..$T"
((FAILED == 0))
