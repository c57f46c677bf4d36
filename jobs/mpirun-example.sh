#!/bin/bash
# Broadcast a file to every node with mpirun instead of srun: inside a Slurm
# allocation (mpirun reads the node list from Slurm) or on a plain list of
# hosts (mpirun starts the ranks over ssh).
#
#   salloc -N 4 jobs/mpirun-example.sh SOURCE [DEST]          interactive allocation
#   sbatch -N 4 jobs/mpirun-example.sh SOURCE [DEST]          batch job
#   HOSTFILE=hosts.txt jobs/mpirun-example.sh SOURCE [DEST]   no Slurm: one host per line
#
# Variables (arguments win over the environment, which wins over defaults):
#   SOURCE         file to broadcast (1st argument; read on the first node)
#   DEST           path of the copy on every node (2nd argument;
#                  default /tmp/<name of SOURCE>); its directory must exist
#   HOSTFILE       host list for mpirun when not inside an allocation
#   P2PBCAST       p2pbcast command (p2pbcast from PATH)
#   P2PBCAST_OPTS  extra p2pbcast options, e.g. "--transport tcp --force"
#   MPIRUN         mpirun command (mpirun)
#   MPIRUN_OPTS    how to place one rank per node; Open MPI's default is
#                  "--map-by ppr:1:node"; for MPICH / Intel MPI use "-ppn 1"
#                  (with -n set to the number of nodes).  More ranks per node
#                  also work: only one per node writes.
#
#SBATCH --job-name=mpirun-bcast
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:30:00
#SBATCH --output=%x-%j.out
set -euo pipefail

SOURCE=${1:-${SOURCE:-}}
[[ -n $SOURCE ]] || { echo "usage: $0 SOURCE [DEST]  (or set SOURCE)" >&2; exit 2; }
DEST=${2:-${DEST:-/tmp/$(basename -- "$SOURCE")}}
P2PBCAST=${P2PBCAST:-p2pbcast}
P2PBCAST_OPTS=${P2PBCAST_OPTS:-}
MPIRUN=${MPIRUN:-mpirun}
MPIRUN_OPTS=${MPIRUN_OPTS:---map-by ppr:1:node}

hosts=()
if [[ -n ${HOSTFILE:-} ]]; then
  # Outside Slurm: name the hosts explicitly.
  hosts=(--hostfile "$HOSTFILE")
  where="hosts in $HOSTFILE"
elif [[ -n ${SLURM_JOB_ID:-} ]]; then
  # Inside an allocation mpirun finds the nodes itself.
  where="${SLURM_JOB_NUM_NODES:-?} node(s) of job $SLURM_JOB_ID: ${SLURM_JOB_NODELIST:-?}"
else
  echo "$0: not inside a Slurm allocation and HOSTFILE is not set" >&2
  exit 2
fi

echo "broadcasting $SOURCE to $DEST on $where"
rc=0
# shellcheck disable=SC2086 # *_OPTS are lists of options
"$MPIRUN" $MPIRUN_OPTS "${hosts[@]}" "$P2PBCAST" $P2PBCAST_OPTS "$SOURCE" "$DEST" || rc=$?
if ((rc != 0)); then
  echo "mpirun-example: broadcast of $SOURCE failed with status $rc (see p2pbcast's message above)" >&2
  exit "$rc"
fi
echo "every node holds a verified copy at $DEST"
