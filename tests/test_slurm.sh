#!/bin/bash
# The job scripts in jobs/ on a real Slurm: a 4-node single-machine cluster
# (tests/slurm/slurm-up.sh) is started, each script is submitted with sbatch,
# and the staged copies on every node's own /tmp are compared with the
# source.  TAP output; "1..0 # SKIP ..." when Slurm cannot run here (not
# root, packages missing, no namespaces) or p2pbcast is not built.
#
#   P2PBCAST=/path/to/p2pbcast tests/test_slurm.sh
#
# P2PBCAST defaults to $abs_top_builddir/p2pbcast, else ../p2pbcast next to
# this directory.  It may live anywhere, /tmp included (every node and the
# submit host have a private /tmp): the test copies it and the job scripts
# into the cluster's shared directory (under /var/tmp) and runs those copies.
# Every srun, salloc and sbatch (and every Slurm command) is bounded by a
# timeout that fails the check with a message; so is starting the cluster.
# SLURM_TEST_KEEP=1 leaves the cluster running for debugging (prints how to
# stop it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir_top=$(cd "$here/.." && pwd)
jobs_dir=$srcdir_top/jobs

if [[ -n ${P2PBCAST:-} ]]; then
  :
elif [[ -n ${abs_top_builddir:-} ]]; then
  P2PBCAST=$abs_top_builddir/p2pbcast
else
  P2PBCAST=$srcdir_top/p2pbcast
fi

# Jobs submitted from inside a Slurm job would inherit its SLURM_* variables.
for v in $(compgen -v SLURM_ || true); do
  [[ $v == SLURM_TEST_* ]] || unset "$v"
done

# Open MPI's mpirun refuses root unless told; the cluster's jobs run as the
# user running this test (root: it needs namespaces).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

skip_all() { echo "1..0 # SKIP $*"; exit 0; }

[[ -x $P2PBCAST ]] || skip_all "p2pbcast not built ($P2PBCAST); set P2PBCAST"
P2PBCAST=$(cd "$(dirname "$P2PBCAST")" && pwd)/$(basename "$P2PBCAST")
if head -c 2 "$P2PBCAST" | grep -q '#!'; then
  skip_all "$P2PBCAST is a libtool wrapper, not the program: build with --disable-shared or set P2PBCAST"
fi
command -v mpicc >/dev/null 2>&1 || skip_all "mpicc not found (Debian: apt-get install libopenmpi-dev)"

# bounded SECONDS CMD...: CMD, killed after SECONDS; a timeout says so on
# stderr (which the checks below put into their diagnostics) and returns 124.
bounded() {
  local lim=$1 rc=0
  shift
  timeout -k 10 "$lim" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "TIMEOUT: '$*' did not finish within $lim s and was killed" >&2
    rc=124
  fi
  return "$rc"
}

# --- bring the cluster up ---------------------------------------------------
D=
up_err=
teardown() {
  [[ -n $up_err ]] && rm -f "$up_err"
  if [[ -n $D && -d $D ]]; then
    if [[ ${SLURM_TEST_KEEP:-0} == 1 ]]; then
      echo "# cluster kept: $D (stop: $here/slurm/slurm-down.sh $D)"
    else
      "$here/slurm/slurm-down.sh" "$D" >&2 || true
      rmdir "$D" 2>/dev/null || true   # still empty when slurm-up.sh skipped
    fi
  fi
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

up_err=$(mktemp)
rc=0
# The state directory is made here, so that teardown knows it even when
# slurm-up.sh is killed by the timeout before it prints it.
D=$(mktemp -d "${SLURM_TEST_BASE:-/var/tmp}/p2pbcast-slurm.XXXXXX")
bounded 300 "$here/slurm/slurm-up.sh" "$D" >/dev/null 2>"$up_err" || rc=$?
if ((rc == 77)); then
  reason=$(tr '\n' ' ' <"$up_err"); rm -f "$up_err"
  skip_all "${reason#slurm-up: cannot run here: }"
fi

ntests=17
echo "1..$ntests"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/# /' "$@" || true; }

if ((rc != 0)); then
  not_ok "4-node Slurm cluster starts"
  diag "$up_err"; rm -f "$up_err"
  for ((i = n + 1; i <= ntests; i++)); do echo "not ok $i - not run: the cluster did not start"; done
  exit 1
fi
rm -f "$up_err"
ok "4-node Slurm cluster starts (state in $D)"

S=$D/shared            # seen by every node: submit from here, keep data here
mkdir -p "$S/out" "$S/data" "$S/bin"
cd "$S"
# Slurm commands on the submit host and commands inside one node, bounded.
run() { bounded "${SLURM_TEST_CMD_TIMEOUT:-60}" "$D/bin/slurm-run" "$@"; }
on_node() { bounded "${SLURM_TEST_CMD_TIMEOUT:-60}" "$D/bin/node-run" "$@"; }
nodes=(n1 n2 n3 n4)

# What the nodes run must be where they see it: the program and the job
# scripts are copied into the shared directory (the checkout and the build
# may be under /tmp, which is private to every node and to the submit host).
install -m 755 "$P2PBCAST" "$S/bin/p2pbcast"
P2PBCAST=$S/bin/p2pbcast
cp -R "$jobs_dir" "$S/jobs"
jobs_dir=$S/jobs
visible() {
  local nd f
  for nd in ctl "${nodes[@]}"; do
    for f in "$P2PBCAST" "$jobs_dir/stage-dataset.sbatch" "$jobs_dir/mpirun-example.sh"; do
      if [[ $nd == ctl ]]; then run test -r "$f"; else on_node "$nd" test -r "$f"; fi ||
        { echo "# $nd: $f does not exist there"; return 1; }
    done
  done
}
if visible; then
  ok "p2pbcast and the job scripts exist on the submit host and on every node"
else
  not_ok "p2pbcast and the job scripts exist on the submit host and on every node"
fi

# --- harness proof: MPI hello, own hostname, own /tmp and /dev/shm ------------
mpicc -O2 -o "$S/mpi_hello" "$here/slurm/mpi_hello.c"

# check_hello OUTPUT TAG: one rank on each of n1..n4, each seeing only its
# own marker in /tmp and /dev/shm, and the marker is in that node's own /tmp.
check_hello() {
  local out=$1 tag=$2 nd r
  [[ $(grep -c '^hello ' "$out") -eq 4 ]] || return 1
  for nd in "${nodes[@]}"; do
    r=$(sed -n "s/^hello rank=\([0-9]*\) size=4 host=$nd tmp_markers=1 shm_markers=1\$/\1/p" "$out")
    [[ $r =~ ^[0-3]$ ]] || return 1
    [[ -f $D/nodes/$nd/tmp/hello-$tag-$r ]] || return 1
    [[ $(find "$D/nodes/$nd/tmp" -name "hello-$tag-*" | wc -l) -eq 1 ]] || return 1
  done
}

out=$S/out/hello-srun.txt
if bounded 120 "$D/bin/slurm-run" srun --mpi=pmix -N4 -n4 --time=2 "$S/mpi_hello" srun \
     >"$out" 2>&1 && check_hello "$out" srun; then
  ok "srun --mpi=pmix -N4 -n4: each rank on its own host with its own /tmp and /dev/shm"
else
  not_ok "srun --mpi=pmix -N4 -n4: each rank on its own host with its own /tmp and /dev/shm"; diag "$out"
fi

out=$S/out/hello-salloc.txt
if bounded 120 "$D/bin/slurm-run" salloc -N4 --time=2 mpirun --map-by ppr:1:node "$S/mpi_hello" salloc \
     >"$out" 2>&1 && check_hello "$out" salloc; then
  ok "mpirun inside salloc -N4: each rank on its own host with its own /tmp and /dev/shm"
else
  not_ok "mpirun inside salloc -N4: each rank on its own host with its own /tmp and /dev/shm"; diag "$out"
fi

# --- batch jobs -------------------------------------------------------------
# submit NAME SCRIPT [ARGS...]: submit with the test's defaults (4 nodes, a
# short time limit: an MPI start that hangs must not hang the test); prints
# the job id.  The job's variables are set as assignments before the call
# (sbatch passes the environment on).
submit() {
  local name=$1; shift
  run sbatch --parsable -N4 --ntasks-per-node=1 --time=3 --job-name="$name" \
    --chdir="$S" --output="$S/out/%x-%j.out" "$@" </dev/null
}

# wait_job ID: poll squeue (sbatch --wait notices the end late) until the job
# leaves the pending/running states, at most 150 s; sets $st to the final
# state.  It runs in this shell (not in $(...)), so a signal to the test is
# handled within half a second.
wait_job() {
  local id=$1
  st=NOT-SUBMITTED
  [[ -n $id ]] || return 0
  for _ in $(seq 300); do
    st=$(run squeue -h -t all -j "$id" -o %T 2>/dev/null || true)
    case $st in
      PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|"") sleep 0.5;;
      *) return 0;;
    esac
  done
  run scancel "$id" 2>/dev/null || true
  st="TIMEOUT(test)"
}

job_exit() { [[ -n $1 ]] && run scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^ExitCode=//p'; true; }
job_out() { echo "$S/out/$1-$2.out"; }

# same_on_all_nodes SOURCE DEST: every node's own DEST equals SOURCE
# (compared from inside each node, so each node's /tmp is the one read).
same_on_all_nodes() {
  local nd
  for nd in "${nodes[@]}"; do
    on_node "$nd" cmp -s -- "$1" "$2" || { echo "# $nd: $2 missing or different"; return 1; }
  done
}
absent_on_all_nodes() {
  local nd
  for nd in "${nodes[@]}"; do
    on_node "$nd" test ! -e "$1" || { echo "# $nd: $1 still exists"; return 1; }
  done
}

# check_job DESC ID WANT_STATE: one TAP line for the job's final state.
check_job() {
  local desc=$1 id=$2 want=$3 name=$4
  wait_job "$id"
  if [[ $st == "$want" ]]; then
    ok "$desc: job $id $st (exit $(job_exit "$id"))"
  else
    not_ok "$desc: job $id $st, expected $want (exit $(job_exit "$id"))"
    diag "$(job_out "$name" "$id")"
  fi
}

# Test data, small: the machine is shared.  Odd sizes, not chunk multiples.
mkdir -p "$S/data/tree/sub"
head -c 3000001 /dev/urandom >"$S/data/tree/a.bin"
head -c 777 /dev/urandom >"$S/data/tree/sub/b.txt"
head -c 4194304 /dev/urandom >"$S/data/tree/sub/c.bin"
tar -cf "$S/data/dataset.tar" -C "$S/data/tree" .
head -c 12582917 /dev/urandom >"$S/data/app.sif"
head -c 5000011 /dev/urandom >"$S/data/model.bin"
head -c 3145739 /dev/urandom >"$S/data/mpirun.bin"

# stage-and-cleanup near its time limit: Slurm sends the batch shell SIGTERM
# (--signal=B:TERM@55 with a 1-minute limit: 5 s in, give or take Slurm's
# 30 s event loop); the trap must stop the application and remove the copies.
# Submitted first and checked last: it runs beside the other jobs.
sig_id=$(P2PBCAST="$P2PBCAST" SOURCE="$S/data/model.bin" STAGE_DIR=/tmp/stage-cleanup-signal \
     APP_CMD='srun --nodes=4 --ntasks=4 --mpi=none sleep 300' \
     submit stage-and-cleanup-signal --time=1 --signal=B:TERM@55 \
     "$jobs_dir/stage-and-cleanup.sbatch") || sig_id=

# stage-dataset: stage, unpack, the default application lists the tree.
id=$(P2PBCAST="$P2PBCAST" DATASET="$S/data/dataset.tar" STAGE_DIR=/tmp/stage-dataset \
     submit stage-dataset "$jobs_dir/stage-dataset.sbatch") || id=
check_job "stage-dataset.sbatch" "$id" COMPLETED stage-dataset
o=$(job_out stage-dataset "$id")
if same_on_all_nodes "$S/data/dataset.tar" /tmp/stage-dataset/dataset.tar &&
   [[ $(grep -cE '^n[1-4]: 3 files in /tmp/stage-dataset/data$' "$o") -eq 4 ]]; then
  ok "stage-dataset.sbatch: identical copy in every node's /tmp, unpacked on every node"
else
  not_ok "stage-dataset.sbatch: identical copy in every node's /tmp, unpacked on every node"; diag "$o"
fi

# stage-dataset with a directory: the tree itself lands on every node.
id=$(P2PBCAST="$P2PBCAST" DATASET="$S/data/tree" STAGE_DIR=/tmp/stage-tree \
     submit stage-tree "$jobs_dir/stage-dataset.sbatch") || id=
check_job "stage-dataset.sbatch (directory)" "$id" COMPLETED stage-tree
o=$(job_out stage-tree "$id")
if same_on_all_nodes "$S/data/tree/sub/c.bin" /tmp/stage-tree/data/sub/c.bin &&
   [[ $(grep -cE '^n[1-4]: 3 files in /tmp/stage-tree/data$' "$o") -eq 4 ]]; then
  ok "stage-dataset.sbatch with a directory: the same tree in every node's /tmp"
else
  not_ok "stage-dataset.sbatch with a directory: the same tree in every node's /tmp"; diag "$o"
fi

# stage-container: stage the image; the default "run" checks every node.
id=$(P2PBCAST="$P2PBCAST" IMAGE="$S/data/app.sif" STAGE_DIR=/tmp/stage-container \
     submit stage-container "$jobs_dir/stage-container.sbatch") || id=
check_job "stage-container.sbatch" "$id" COMPLETED stage-container
o=$(job_out stage-container "$id")
if same_on_all_nodes "$S/data/app.sif" /tmp/stage-container/app.sif &&
   [[ $(grep -cE '^n[1-4]: /tmp/stage-container/app.sif present' "$o") -eq 4 ]]; then
  ok "stage-container.sbatch: identical image in every node's /tmp, checked by the run step"
else
  not_ok "stage-container.sbatch: identical image in every node's /tmp, checked by the run step"; diag "$o"
fi

# stage-and-cleanup, success: the application saw the copy on every node,
# and the per-job directory (default STAGE_DIR) is gone from every node.
id=$(P2PBCAST="$P2PBCAST" SOURCE="$S/data/model.bin" \
     submit stage-and-cleanup "$jobs_dir/stage-and-cleanup.sbatch") || id=
wait_job "$id"
o=$(job_out stage-and-cleanup "$id")
dir=/tmp/$(id -un).$id
if [[ $st == COMPLETED ]] &&
   [[ $(grep -cE "^n[1-4]: $dir/model.bin present" "$o") -eq 4 ]] &&
   absent_on_all_nodes "$dir"; then
  ok "stage-and-cleanup.sbatch: job $id COMPLETED, copy seen on every node, removed afterwards"
else
  not_ok "stage-and-cleanup.sbatch: job $id $st, copy seen on every node, removed afterwards"; diag "$o"
fi

# stage-and-cleanup, failing application: the job fails with the
# application's status and the copies are still removed.
id=$(P2PBCAST="$P2PBCAST" SOURCE="$S/data/model.bin" STAGE_DIR=/tmp/stage-cleanup-fail \
     APP_CMD='echo "app fails on purpose"; exit 7' \
     submit stage-and-cleanup-fail "$jobs_dir/stage-and-cleanup.sbatch") || id=
wait_job "$id"
o=$(job_out stage-and-cleanup-fail "$id")
if [[ $st == FAILED && $(job_exit "$id") == 7:0 ]] && grep -q 'app fails on purpose' "$o" &&
   absent_on_all_nodes /tmp/stage-cleanup-fail/model.bin; then
  ok "stage-and-cleanup.sbatch: failing application -> job FAILED (exit 7), copies removed"
else
  not_ok "stage-and-cleanup.sbatch: failing application -> job $st (exit $(job_exit "$id")), copies removed"
  diag "$o"
fi

# mpirun-example.sh as a batch job: mpirun inside the allocation.
id=$(P2PBCAST="$P2PBCAST" \
     submit mpirun-example "$jobs_dir/mpirun-example.sh" "$S/data/mpirun.bin" /tmp/mpirun.bin) || id=
wait_job "$id"
o=$(job_out mpirun-example "$id")
if [[ $st == COMPLETED ]] && same_on_all_nodes "$S/data/mpirun.bin" /tmp/mpirun.bin; then
  ok "mpirun-example.sh under sbatch: job $id COMPLETED, identical copy in every node's /tmp"
else
  not_ok "mpirun-example.sh under sbatch: job $id $st, identical copy in every node's /tmp"; diag "$o"
fi

# mpirun-example.sh inside an interactive allocation (salloc runs it on the
# submit host, which is not one of the nodes).
out=$S/out/mpirun-example-salloc.txt
if P2PBCAST="$P2PBCAST" bounded 120 "$D/bin/slurm-run" salloc -N4 --time=2 \
     "$jobs_dir/mpirun-example.sh" "$S/data/app.sif" /tmp/salloc.sif >"$out" 2>&1 &&
   same_on_all_nodes "$S/data/app.sif" /tmp/salloc.sif; then
  ok "mpirun-example.sh inside salloc -N4: identical copy in every node's /tmp"
else
  not_ok "mpirun-example.sh inside salloc -N4: identical copy in every node's /tmp"; diag "$out"
fi

# Bad SOURCE: the job must fail, with p2pbcast's own message (naming the
# missing path) in its output, and leave no DEST anywhere.
bad=$S/data/no-such-dataset.tar
id=$(P2PBCAST="$P2PBCAST" DATASET="$bad" STAGE_DIR=/tmp/stage-bad \
     submit stage-bad "$jobs_dir/stage-dataset.sbatch") || id=
wait_job "$id"
o=$(job_out stage-bad "$id")
code=$(job_exit "$id")
if [[ $st == FAILED && $code != 0:0 ]] &&
   grep -v '^stage-dataset:' "$o" | grep -i 'p2pbcast' | grep -qF 'no-such-dataset.tar' &&
   absent_on_all_nodes /tmp/stage-bad/no-such-dataset.tar; then
  ok "bad SOURCE: job $id FAILED (exit $code) with p2pbcast's message, no DEST left"
else
  not_ok "bad SOURCE: job $id $st (exit $code), expected FAILED with p2pbcast's message"; diag "$o"
fi

wait_job "$sig_id"
o=$(job_out stage-and-cleanup-signal "$sig_id")
if [[ $st == FAILED && $(job_exit "$sig_id") == 143:0 ]] &&
   grep -q '^cleanup: removing staged copies' "$o" &&
   absent_on_all_nodes /tmp/stage-cleanup-signal/model.bin; then
  ok "stage-and-cleanup.sbatch: SIGTERM before the time limit -> application stopped, copies removed"
else
  not_ok "stage-and-cleanup.sbatch: SIGTERM before the time limit -> job $st (exit $(job_exit "$sig_id")), copies removed"
  diag "$o"
fi

# --- teardown: nothing of the cluster may remain ---------------------------
cd /
netns=$(cat "$D"/ns/*.netns 2>/dev/null | sort -u)
munged_pid=$(cat "$D/munge/munged.pid" 2>/dev/null || true)
if [[ ${SLURM_TEST_KEEP:-0} == 1 ]]; then
  ok "teardown # SKIP SLURM_TEST_KEEP=1"
elif "$here/slurm/slurm-down.sh" "$D" >&2; then
  left=0
  for p in /proc/[0-9]*; do
    ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
    grep -qxF "$ns" <<<"$netns" && left=$((left + 1))
  done
  [[ -n $munged_pid && -d /proc/$munged_pid ]] && left=$((left + 1))
  if ((left == 0)) && [[ ! -e $D ]]; then
    ok "teardown: no process, namespace or state directory left"
  else
    not_ok "teardown: $left process(es) left or $D still there"
  fi
  D=
else
  not_ok "teardown: slurm-down.sh failed"
fi

((failed == 0))
