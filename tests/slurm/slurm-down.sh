#!/bin/bash
# Stop the test cluster started by slurm-up.sh and remove its state directory.
#
#   tests/slurm/slurm-down.sh STATE_DIR
#
# Safe to call more than once and on a half-started cluster.  It ends only
# processes it can prove are the cluster's: those living in the network
# namespaces that slurm-up.sh created (daemons, job steps, MPI ranks, the
# namespace holders) and the munged whose pid file and command line name
# STATE_DIR.  When the holders are gone the namespaces, their mounts (/tmp,
# /dev/shm, /etc/hosts) and their interfaces (bridge, veths) vanish with them.
set -euo pipefail

D=${1:?usage: slurm-down.sh STATE_DIR}
[[ -d $D ]] || exit 0
D=$(cd "$D" && pwd)
# Refuse anything that does not look like a state directory of ours.
[[ -f $D/etc/slurm.conf || -d $D/ns || -d $D/munge ]] ||
  { echo "slurm-down: $D is not a slurm-up.sh state directory" >&2; exit 1; }

# The namespaces we made, by identity (net:[inode]), recorded at start.
declare -A ours=()
for f in "$D"/ns/*.netns; do
  [[ -s $f ]] && ours[$(cat "$f")]=1
done

# Pids of every process in one of our network namespaces.
ns_pids() {
  local p ns
  ((${#ours[@]})) || return 0
  for p in /proc/[0-9]*; do
    ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
    [[ -n ${ours[$ns]:-} ]] && echo "${p#/proc/}"
  done
  return 0
}

# 1. Let the daemons stop cleanly first (slurmd kills its job steps).
for pf in "$D"/nodes/*/slurmd.pid "$D"/ctld/slurmctld.pid; do
  [[ -s $pf ]] || continue
  p=$(cat "$pf")
  ns=$(readlink "/proc/$p/ns/net" 2>/dev/null) || continue
  if [[ -n ${ours[$ns]:-} ]]; then kill -TERM "$p" 2>/dev/null || true; fi
done
for _ in $(seq 50); do
  alive=0
  for pf in "$D"/nodes/*/slurmd.pid "$D"/ctld/slurmctld.pid; do
    [[ -s $pf ]] || continue
    p=$(cat "$pf")
    ns=$(readlink "/proc/$p/ns/net" 2>/dev/null) || continue
    [[ -n ${ours[$ns]:-} ]] && alive=1
  done
  [[ $alive -eq 0 ]] && break
  sleep 0.1
done

# 2. Everything still inside our namespaces (job steps, ranks, holders).
for _ in $(seq 50); do
  pids=$(ns_pids)
  [[ -z $pids ]] && break
  # shellcheck disable=SC2086 # a list of pids
  kill -KILL $pids 2>/dev/null || true
  sleep 0.1
done
pids=$(ns_pids)
[[ -z $pids ]] || echo "slurm-down: warning: processes still alive: $pids" >&2

# 3. munged (host namespace): only if its command line names our directory.
pf=$D/munge/munged.pid
if [[ -s $pf ]]; then
  p=$(cat "$pf")
  if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$D/munge/"; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do [[ -d /proc/$p ]] || break; sleep 0.1; done
    if [[ -d /proc/$p ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  fi
fi

# 4. No mount of ours may remain before removing files (there should be none
# in the host's namespace: all were made in private mount namespaces).
if grep -qF " $D/" /proc/self/mountinfo; then
  echo "slurm-down: error: mounts under $D remain; not removing it" >&2
  exit 1
fi
rm -rf -- "$D"
