#!/bin/bash
# Start a real single-machine Slurm cluster for the tests: munged, slurmctld
# and N slurmd daemons from Debian's packages, no systemd, all state in one
# temporary directory.
#
#   tests/slurm/slurm-up.sh [STATE_DIR]     prints STATE_DIR on stdout
#   tests/slurm/slurm-down.sh STATE_DIR     stops everything, removes STATE_DIR
#
# Layout (why): every node n1..nN is a set of private namespaces (UTS, mount,
# IPC, network) held open by a "holder" process, so each node has its own
# hostname, /tmp, /dev/shm, SysV IPC and IP address: Open MPI's shared-memory
# segments, its session directories and Slurm's PMIx directories would
# otherwise collide between the "nodes".  slurmctld lives in a "hub" namespace
# (hostname ctl) that also holds a bridge; each node is joined to it by a
# veth pair.  The private subnet (default 10.78.0.0/24) exists only inside
# these namespaces: the host's own network is never touched, and when the
# namespaces die, every interface dies with them.  Mounts are made only
# inside the private mount namespaces, so the host has none to undo.
#
# After it returns, STATE_DIR holds:
#   env.sh            SLURM_CONF etc. (source it)
#   bin/slurm-run     run a command in the hub (submit host): slurm-run sbatch ...
#   bin/node-run NODE run a command inside node NODE's namespaces
#   shared/           a directory every node sees: submit from here
#   nodes/NODE/tmp    what NODE sees as /tmp (nodes/ctl/tmp: the hub's)
#
# Exit status: 0 up, 77 cannot run here (not root, packages missing, no
# namespaces), 1 failed (and everything it started is stopped again).
#
# Environment: SLURM_TEST_NODES (default 4), SLURM_TEST_NET (default 10.78.0,
# a /24 prefix), SLURM_TEST_CPUS (CPUs declared per node, default 4).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- internal: the process that holds one node's (or the hub's) namespaces.
# It runs inside fresh UTS+mount+net namespaces made by unshare.
if [[ ${1:-} == __holder ]]; then
  name=$2 D=$3
  hostname "$name"
  # Its own /tmp and /dev/shm (mount propagation is private, so the host
  # never sees these mounts); the hub gets its own /tmp too, so that mpirun
  # started there (salloc) leaves nothing in the host's /tmp.
  mount --bind "$D/nodes/$name/tmp" /tmp
  mount -t tmpfs -o size=256m,mode=1777 "shm-$name" /dev/shm
  # IPv4 only on the test network: nothing then tries link-local IPv6.
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
  # Names of all nodes resolve to their private addresses inside the cluster.
  mount --bind "$D/etc/hosts" /etc/hosts
  ip link set lo up
  echo $$ >"$D/ns/$name.pid.tmp"
  mv "$D/ns/$name.pid.tmp" "$D/ns/$name.pid"
  exec sleep infinity
fi

skip() { echo "slurm-up: cannot run here: $*" >&2; exit 77; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

nnodes=${SLURM_TEST_NODES:-4}
net=${SLURM_TEST_NET:-10.78.0}
cpus=${SLURM_TEST_CPUS:-4}
[[ $nnodes =~ ^[1-9]$ ]] || die "SLURM_TEST_NODES must be 1..9"

# --- can we run at all?
[[ $(id -u) -eq 0 ]] || skip "needs root (namespaces, daemons)"
for c in slurmctld slurmd slurmstepd munged mungekey munge sinfo scontrol \
         sbatch srun squeue salloc unshare nsenter ip setpriv; do
  command -v "$c" >/dev/null 2>&1 ||
    skip "$c not found (Debian: apt-get install slurm-wlm munge iproute2 util-linux)"
done
id munge >/dev/null 2>&1 || skip "no munge user (Debian: apt-get install munge)"
# Several slurmd on one machine need a build with --enable-multiple-slurmd
# (Debian's has it): it is what gives slurmd the -N option.
slurmd -h 2>&1 | grep -q -- '-N node' || skip "slurmd lacks -N (not built with multiple-slurmd)"
unshare --net --uts --mount --ipc true 2>/dev/null || skip "cannot create namespaces"
unshare --net sh -c 'ip link add p2pt0 type veth peer name p2pt1 && ip link add p2pt2 type bridge' \
  2>/dev/null || skip "cannot create veth or bridge interfaces"

# --- state directory: not under /tmp, because every node mounts its own /tmp
# and the state (config, munge socket, shared dir) must be seen by all.
D=${1:-}
if [[ -z $D ]]; then
  D=$(mktemp -d "${SLURM_TEST_BASE:-/var/tmp}/p2pbcast-slurm.XXXXXX")
else
  mkdir -p "$D"
fi
D=$(cd "$D" && pwd)
case $D in /tmp|/tmp/*|/dev/shm/*) die "STATE_DIR must not be under /tmp or /dev/shm";; esac
chmod 755 "$D"

ok=0
cleanup_on_failure() {
  if [[ $ok -ne 1 ]]; then
    echo "slurm-up: failed; logs:" >&2
    for f in "$D"/log/*.log "$D"/munge/munged.log; do
      [[ -s $f ]] && { echo "== $f"; tail -n 15 "$f"; } >&2
    done
    "$here/slurm-down.sh" "$D" >&2 || true
  fi
}
trap cleanup_on_failure EXIT

mkdir -p "$D"/{etc,log,ns,bin,ctld,shared}
chmod 1777 "$D/shared"
nodes=()
for i in $(seq 1 "$nnodes"); do
  nodes+=("n$i")
  mkdir -p "$D/nodes/n$i/spool"
done
for n in ctl "${nodes[@]}"; do
  mkdir -p "$D/nodes/$n/tmp"
  chmod 1777 "$D/nodes/$n/tmp"
done
nodelist="n[1-$nnodes]"

# --- munge: our own key and socket, so nothing on the host is used or changed.
mkdir -p "$D/munge"
mungekey -c -k "$D/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$D/munge"
chmod 755 "$D/munge"
chmod 600 "$D/munge/munge.key"
sock=$D/munge/munge.socket
# munged refuses to run as root: start it as the munge user.
setpriv --reuid=munge --regid=munge --init-groups \
  munged --socket="$sock" --key-file="$D/munge/munge.key" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
  --seed-file="$D/munge/munged.seed" </dev/null >/dev/null 2>&1 ||
  die "munged did not start: $(tail -n 3 "$D/munge/munged.log" 2>/dev/null)"
for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.1; done
munge -S "$sock" -n | unmunge -S "$sock" >/dev/null || die "munge does not work"

# --- configuration
{
  echo "127.0.0.1 localhost"
  echo "$net.1 ctl"
  for i in $(seq 1 "$nnodes"); do echo "$net.$((10 + i)) n$i"; done
} >"$D/etc/hosts"

: >"$D/etc/plugstack.conf"   # keep the host's /etc/slurm/plugstack.conf.d out
cat >"$D/etc/slurm.conf" <<EOF
# Generated by tests/slurm/slurm-up.sh: a throw-away test cluster.
ClusterName=p2ptest
SlurmctldHost=ctl($net.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$D/ctld
SlurmctldPidFile=$D/ctld/slurmctld.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdSpoolDir=$D/nodes/%n/spool
SlurmdPidFile=$D/nodes/%n/slurmd.pid
SlurmdLogFile=$D/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$D/etc/plugstack.conf
# No cgroups: the nodes share one kernel and the host's cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Declare more CPUs than the machine has (it is a test bed, not a benchmark).
SlurmdParameters=config_overrides
# Each node has its own /tmp (its own mount namespace).
TmpFS=/tmp
ReturnToService=2
MailProg=/bin/true
# Keep finished jobs visible to scontrol long enough for the tests to read
# their state (there is no accounting database, so no sacct).
MinJobAge=900
KillWait=5
InactiveLimit=0
MessageTimeout=20
SlurmdTimeout=120
UnkillableStepTimeout=60
EOF
for i in $(seq 1 "$nnodes"); do
  echo "NodeName=n$i NodeHostname=n$i NodeAddr=$net.$((10 + i)) CPUs=$cpus RealMemory=1000 State=UNKNOWN"
done >>"$D/etc/slurm.conf"
echo "PartitionName=test Nodes=$nodelist Default=YES DefaultTime=00:05:00 MaxTime=00:15:00 State=UP" \
  >>"$D/etc/slurm.conf"

# Slurm's default PMIx fence hung or crashed about 1 in 60 multi-node
# `srun --mpi=pmix` starts here; the ring fence gave 0 in 400.
cat >"$D/etc/mpi.conf" <<EOF
PMIxCollFence=ring
EOF

# --- namespaces: one holder per node and one for the hub
start_holder() {
  local name=$1
  setsid unshare --net --uts --mount --ipc --propagation private -- \
    bash "$here/slurm-up.sh" __holder "$name" "$D" \
    </dev/null >>"$D/log/holder-$name.log" 2>&1 &
  disown   # slurm-down.sh ends it; no job-control noise from bash then
  for _ in $(seq 100); do [[ -s $D/ns/$name.pid ]] && break; sleep 0.1; done
  [[ -s $D/ns/$name.pid ]] || die "namespace holder for $name did not start"
  readlink "/proc/$(cat "$D/ns/$name.pid")/ns/net" >"$D/ns/$name.netns"
}
start_holder ctl
for n in "${nodes[@]}"; do start_holder "$n"; done
hub=$(cat "$D/ns/ctl.pid")
in_hub() { nsenter --target "$hub" --net --uts --mount --wd=/ -- "$@"; }
in_node() { local p; p=$(cat "$D/ns/$1.pid"); shift; nsenter --target "$p" --net --uts --mount --wd=/ -- "$@"; }

# --- network: a bridge in the hub, a veth pair per node (created inside the
# hub namespace, so no interface ever appears in the host's namespace).
in_hub ip link add br0 type bridge
in_hub ip addr add "$net.1/24" dev br0
in_hub ip link set br0 up
for i in $(seq 1 "$nnodes"); do
  in_hub ip link add "vn$i" type veth peer name eth0 netns "$(cat "$D/ns/n$i.pid")"
  in_hub ip link set "vn$i" master br0 up
  in_node "n$i" ip addr add "$net.$((10 + i))/24" dev eth0
  in_node "n$i" ip link set eth0 up
done

# --- wrappers used by the tests (and by people debugging the cluster)
cat >"$D/env.sh" <<EOF
export SLURM_TEST_DIR='$D'
export SLURM_CONF='$D/etc/slurm.conf'
EOF
cat >"$D/bin/slurm-run" <<EOF
#!/bin/bash
# Run a command on the submit host (the hub, hostname ctl) of the test cluster.
export SLURM_CONF='$D/etc/slurm.conf'
exec nsenter --target "\$(cat '$D/ns/ctl.pid')" --net --uts --mount --wd="\$PWD" -- "\$@"
EOF
cat >"$D/bin/node-run" <<EOF
#!/bin/bash
# node-run NODE CMD...: run a command inside node NODE's namespaces.
n=\$1; shift
export SLURM_CONF='$D/etc/slurm.conf'
exec nsenter --target "\$(cat "$D/ns/\$n.pid")" --net --uts --mount --wd="\$PWD" -- "\$@"
EOF
chmod 755 "$D/bin/slurm-run" "$D/bin/node-run"

# --- daemons (they daemonize and write their pid files into $D)
export SLURM_CONF=$D/etc/slurm.conf
in_hub slurmctld -f "$SLURM_CONF" -i </dev/null >>"$D/log/start.log" 2>&1 ||
  die "slurmctld did not start"
for _ in $(seq 100); do
  in_hub scontrol ping 2>/dev/null | grep -q UP && break
  sleep 0.2
done
in_hub scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer"
for n in "${nodes[@]}"; do
  in_node "$n" slurmd -f "$SLURM_CONF" -N "$n" </dev/null >>"$D/log/start.log" 2>&1 ||
    die "slurmd $n did not start"
done
idle=0
for _ in $(seq 150); do
  idle=$(in_hub sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
  [[ $idle -eq $nnodes ]] && break
  sleep 0.2
done
[[ $idle -eq $nnodes ]] || die "only $idle of $nnodes nodes became idle: $(in_hub sinfo -N 2>&1)"

ok=1
echo "$D"
