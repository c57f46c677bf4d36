#!/bin/bash
# slurm_sbcast.sh - p2pbcast side by side with Slurm's own sbcast, same file,
# same allocation (issue 6, "Side by side").
#
#   bench/slurm_sbcast.sh [-s 256] [-r 3] [-o bench/results/slurm_sbcast.txt]
#                         [-w 120] [--no-lz4]
#
#   -s MiB     size of the generated file (random bytes), default 256
#   -r N       rounds, default 3 (the table gives the median of N)
#   -o FILE    where the table and conditions go (also printed), default
#              bench/results/slurm_sbcast.txt
#   -w SEC     wait at most SEC for the 1-minute load average to fall below
#              the number of CPUs before the timed part (default 120; the
#              load is recorded either way)
#   --no-lz4   skip the `sbcast --compress=lz4` variant
#
# What it does: starts the single-machine test Slurm (tests/slurm/slurm-up.sh:
# 4 nodes n1..n4, each a set of namespaces on this host with its own /tmp,
# joined by veths to one bridge, 10.78.0.0/24), always tears it down again
# (trap), generates SOURCE in the cluster's shared directory (seen by every
# node, page cache after generation), and submits ONE sbatch job of 4 nodes,
# one task per node.  Inside that job, after an untimed warm-up (a 1 MiB file
# through both tools, which also probes whether --compress=lz4 works), each
# round runs, in an order rotated from round to round:
#   sbcast       sbcast -f SOURCE /tmp/sb.bin            timed with date +%s.%N
#   sbcast_lz4   sbcast -f --compress=lz4 SOURCE /tmp/sbz.bin   (if it works)
#   p2pbcast     srun --mpi=pmix -N4 --ntasks-per-node=1 p2pbcast -q
#                --tcp-if 10.78.0.0/24 --json J SOURCE /tmp/pb.bin
#                timed by its JSON "seconds" (its own clock, from before its
#                MPI bootstrap to the final rename) and by date around srun
# After each sbcast the copies are made durable with `srun sync FILE` on every
# node (fsync), timed separately: p2pbcast fsyncs DEST before it renames it and
# returns, sbcast returns once the data is in the nodes' page cache, so
# "sbcast + fsync" is the like-for-like row.  Every copy is compared with
# SOURCE (cmp, run on every node with srun) and removed before the next one.
#
# Ratios are T_method / T_p2pbcast, per column: above 1, p2pbcast is faster.
# The fair pair is sbcast (+ fsync) against p2pbcast's wall time: both include
# their start-up (sbcast: credential from slurmctld; p2pbcast: srun launch,
# PMIx, MPI_Init).
#
# Needs root (namespaces, daemons), Debian's slurm-wlm, munge, Open MPI with
# PMIx, jq, and a built ./p2pbcast.  Takes about 2-3 minutes at the defaults.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
SIZE_MIB=256
ROUNDS=3
RESULT=$HERE/results/slurm_sbcast.txt
WAIT_LOAD=120
LZ4=1
while (($#)); do
  case $1 in
    -s) SIZE_MIB=$2; shift 2 ;;
    -r) ROUNDS=$2; shift 2 ;;
    -o) RESULT=$2; shift 2 ;;
    -w) WAIT_LOAD=$2; shift 2 ;;
    --no-lz4) LZ4=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "slurm_sbcast: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || { echo "slurm_sbcast: -s wants MiB" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "slurm_sbcast: -r wants a count" >&2; exit 2; }
case $RESULT in /*) ;; *) RESULT=$PWD/$RESULT ;; esac
mkdir -p "$(dirname "$RESULT")"
P2PBCAST=${P2PBCAST:-$TOP/p2pbcast}
[[ -x $P2PBCAST ]] || { echo "slurm_sbcast: no p2pbcast at $P2PBCAST (make first)" >&2; exit 1; }
command -v jq >/dev/null || { echo "slurm_sbcast: jq missing (Debian: apt-get install jq)" >&2; exit 1; }

# Jobs must not inherit an outer job's SLURM_* variables.
for v in $(compgen -v SLURM_ || true); do
  [[ $v == SLURM_TEST_* ]] || unset "$v"
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NET=${SLURM_TEST_NET:-10.78.0}
NNODES=4
export SLURM_TEST_NODES=$NNODES

log() { echo "slurm_sbcast: $*" >&2; }

# --- cluster up, always down ---------------------------------------------
D=
teardown() {
  if [[ -n $D && -d $D ]]; then
    log "tearing the test cluster down"
    "$TOP/tests/slurm/slurm-down.sh" "$D" >&2 || log "warning: slurm-down.sh failed ($D)"
  fi
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting the 4-node test Slurm"
rc=0
D=$("$TOP/tests/slurm/slurm-up.sh") || rc=$?
if ((rc == 77)); then log "cannot run here (see above)"; exit 77; fi
((rc == 0)) || { log "slurm-up.sh failed"; exit 1; }
S=$D/shared
mkdir -p "$S/bin" "$S/data" "$S/out"
cd "$S"
run() { "$D/bin/slurm-run" "$@"; }

# A private copy of the binary: a rebuild in the tree during the run must not
# change what is measured.
cp -f "$P2PBCAST" "$S/bin/p2pbcast"
SRC=$S/data/sb-src-${SIZE_MIB}M.bin
log "generating $SIZE_MIB MiB of random bytes in $SRC"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$SRC"
head -c 1048576 /dev/urandom >"$S/data/warm.bin"

# --- the job ---------------------------------------------------------------
cat >"$S/bench-job.sh" <<'JOB'
#!/bin/bash
# Runs on the allocation's first node (n1). Writes $OUT/rows.tsv:
#   method round seconds wall sync_s verified
set -uo pipefail
per=(--nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1)
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rows=$OUT/rows.tsv
: >"$rows"
echo "batch host: $(hostname); nodes: $SLURM_JOB_NODELIST; load: $(cut -d' ' -f1-3 /proc/loadavg)"

# verify DEST: every node's own DEST equals SOURCE (1 = all good)
verify() {
  local good
  good=$(srun "${per[@]}" --mpi=none bash -c 'cmp -s -- "$1" "$2" && echo ok' _ "$SRC" "$1" | grep -c '^ok$')
  [[ $good -eq $SLURM_JOB_NUM_NODES ]] && echo 1 || echo 0
}
rm_all() { srun "${per[@]}" --mpi=none rm -f /tmp/sb.bin /tmp/sbz.bin /tmp/pb.bin /tmp/warm-sb.bin /tmp/warm-sbz.bin /tmp/warm-pb.bin; }
fsync_all() { srun "${per[@]}" --mpi=none sync -- "$1"; }

# sbcast_run METHOD ROUND DEST [sbcast options]
sbcast_run() {
  local m=$1 r=$2 dest=$3 t0 t1 t2 rc ok; shift 3
  t0=$(now); sbcast -f "$@" "$SRC" "$dest"; rc=$?; t1=$(now)
  fsync_all "$dest"; t2=$(now)
  ok=0; ((rc == 0)) && ok=$(verify "$dest")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$r" "$(dt "$t0" "$t1")" "$(dt "$t0" "$t1")" "$(dt "$t1" "$t2")" "$ok" >>"$rows"
  echo "round $r $m: $(dt "$t0" "$t1") s (+ fsync $(dt "$t1" "$t2") s) rc=$rc verified=$ok"
}
p2p_run() {
  local r=$1 t0 t1 rc ok s j=$OUT/p2p-$1.json
  rm -f "$j"
  t0=$(now)
  srun "${per[@]}" --mpi=pmix "$P2P" -q --tcp-if "$NET.0/24" --json "$j" "$SRC" /tmp/pb.bin
  rc=$?; t1=$(now)
  s=$(jq -r '.seconds // empty' "$j" 2>/dev/null); [[ -n $s ]] || s=nan
  ok=0; ((rc == 0)) && ok=$(verify /tmp/pb.bin)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' p2pbcast "$r" "$s" "$(dt "$t0" "$t1")" 0 "$ok" >>"$rows"
  echo "round $r p2pbcast: $s s own clock, $(dt "$t0" "$t1") s wall, rc=$rc verified=$ok"
}

# srun's own launch cost on this cluster, for reading the wall times.
srun_true() {
  local t0 t1
  t0=$(now); srun "${per[@]}" --mpi=none true; t1=$(now)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' srun_true "$1" "$(dt "$t0" "$t1")" "$(dt "$t0" "$t1")" 0 1 >>"$rows"
}

# Warm-up (untimed): srun/PMIx/MPI start paths, binaries in cache, lz4 probe.
srun "${per[@]}" --mpi=pmix "$P2P" -q --tcp-if "$NET.0/24" "$WARM" /tmp/warm-pb.bin ||
  echo "warm-up p2pbcast failed"
sbcast -f "$WARM" /tmp/warm-sb.bin || echo "warm-up sbcast failed"
if [[ $LZ4 == 1 ]]; then
  if msg=$(sbcast -f --compress=lz4 "$WARM" /tmp/warm-sbz.bin 2>&1) &&
     [[ $(SRC=$WARM verify /tmp/warm-sbz.bin) == 1 ]]; then
    echo "lz4: works"
  else
    echo "lz4: unsupported: ${msg:-copy differs}"; LZ4=0
  fi
fi
rm_all
echo "load before rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

methods=(sbcast p2pbcast)
[[ $LZ4 == 1 ]] && methods=(sbcast sbcast_lz4 p2pbcast)
n=${#methods[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    m=${methods[$(((i + r - 1) % n))]}
    case $m in
      sbcast) sbcast_run sbcast "$r" /tmp/sb.bin ;;
      sbcast_lz4) sbcast_run sbcast_lz4 "$r" /tmp/sbz.bin --compress=lz4 ;;
      p2pbcast) p2p_run "$r" ;;
    esac
    rm_all
  done
  srun_true "$r"
done
echo "load after rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
JOB
chmod 755 "$S/bench-job.sh"

# --- wait for a quieter machine (other benchmarks share the 2 cores) --------
ncpu=$(nproc)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((w = 0; w < WAIT_LOAD; w += 10)); do
  awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$ncpu" 'BEGIN { exit !(l < n) }' && break
  ((w == 0)) && log "load $(cut -d' ' -f1 /proc/loadavg) >= $ncpu CPUs: waiting up to ${WAIT_LOAD}s"
  sleep 10
done
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

tlimit=$((3 + ROUNDS * (SIZE_MIB / 256 + 1)))
((tlimit > 15)) && tlimit=15
log "submitting one 4-node job: $ROUNDS rounds (time limit ${tlimit} min)"
OUTD=$S/out
id=$(SRC="$SRC" WARM="$S/data/warm.bin" P2P="$S/bin/p2pbcast" OUT="$OUTD" NET="$NET" \
     ROUNDS="$ROUNDS" LZ4="$LZ4" \
     run sbatch --parsable -N"$NNODES" --ntasks-per-node=1 --time="$tlimit" \
       --job-name=sbcast-bench --chdir="$S" --output="$OUTD/job-%j.out" \
       "$S/bench-job.sh" </dev/null)
st=
for ((i = 0; i < tlimit * 120 + 60; i++)); do
  st=$(run squeue -h -t all -j "$id" -o %T 2>/dev/null || true)
  case $st in
    PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|"") sleep 0.5 ;;
    *) break ;;
  esac
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
joblog=$OUTD/job-$id.out
sed 's/^/  job: /' "$joblog" >&2 || true
[[ $st == COMPLETED ]] || { log "job $id ended $st"; exit 1; }
rows=$OUTD/rows.tsv
[[ -s $rows ]] || { log "no results from the job"; exit 1; }

# --- table -------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
  if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v m="$1" -v c="$2" '$1 == m && $6 == 1 { print $c }' "$rows"; }
sum_col() { awk -F'\t' -v m="$1" '$1 == m && $6 == 1 { printf "%.3f\n", $3 + $5 }' "$rows"; }
bad=$(awk -F'\t' '$6 != 1' "$rows" | wc -l)

p_own=$(col p2pbcast 3 | median)
p_wall=$(col p2pbcast 4 | median)
declare -A T=()
T["p2pbcast (own clock)"]=$p_own
T["p2pbcast (wall, incl. srun)"]=$p_wall
T["sbcast"]=$(col sbcast 3 | median)
T["sbcast + fsync"]=$(sum_col sbcast | median)
order=("p2pbcast (own clock)" "p2pbcast (wall, incl. srun)" "sbcast" "sbcast + fsync")
if grep -q '^sbcast_lz4' "$rows"; then
  T["sbcast --compress=lz4"]=$(col sbcast_lz4 3 | median)
  T["sbcast lz4 + fsync"]=$(sum_col sbcast_lz4 | median)
  order+=("sbcast --compress=lz4" "sbcast lz4 + fsync")
fi
T["srun -N4 true (launch only)"]=$(col srun_true 3 | median)
order+=("srun -N4 true (launch only)")
lz4_line=$(grep '^lz4:' "$joblog" || echo "lz4: not tried (--no-lz4)")

table() {
  printf '%-30s %9s %14s %13s %13s\n' method "median s" "MiB/s per node" "T/T_p2p wall" "T/T_p2p own"
  for m in "${order[@]}"; do
    if [[ $m == srun* ]]; then
      printf '%-30s %9.3f %14s %13s %13s\n' "$m" "${T[$m]}" - - -; continue
    fi
    awk -v m="$m" -v t="${T[$m]}" -v f="$SIZE_MIB" -v pw="$p_wall" -v po="$p_own" 'BEGIN {
      printf "%-30s %9.3f %14.1f %13.2f %13.2f\n", m, t, (t > 0 ? f / t : 0), t / pw, t / po }'
  done
}

{
  echo "Slurm sbcast vs p2pbcast, one allocation of 4 Slurm nodes on ONE machine"
  echo "F = $SIZE_MIB MiB (random bytes), median of $ROUNDS rounds, DEST = each node's own /tmp"
  echo
  table
  echo
  echo "T/T_p2p: the method's median time over p2pbcast's (wall = srun launch + MPI start +"
  echo "transfer + fsync; own = p2pbcast's --json \"seconds\"). Above 1: p2pbcast is faster."
  echo "The like-for-like pair is 'sbcast + fsync' vs 'p2pbcast (wall)': both include their"
  echo "start-up and both leave durable copies. 'sbcast' alone returns with the copies in the"
  echo "nodes' page cache; its fsync is measured after it with 'srun sync FILE' on every node"
  echo "(that step's own srun launch is included in the + fsync rows). 'srun -N4 true' is"
  echo "timed once per round: the bare launch cost inside those rows and p2pbcast's wall."
  echo "$lz4_line"
  [[ $bad -gt 0 ]] && echo "WARNING: $bad run(s) failed or gave a copy differing from SOURCE (left out above)"
  echo
  echo "Every run (s): method round seconds wall fsync verified"
  sed 's/^/  /; s/\t/ /g' "$rows"
  echo
  echo "Conditions: one physical machine (a VM), $ncpu cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM."
  echo "The 4 Slurm nodes n1..n4 are namespace sets on that one host (tests/slurm/slurm-up.sh):"
  echo "they share one kernel, one disk (each node's /tmp is a directory on the same virtual"
  echo "disk) and one memory bus; the links are veths to one bridge, NOT shaped, so this"
  echo "measures the tools' software overheads (copies, syscalls, start-up, fsync on a shared"
  echo "disk), not network bandwidth. On a real cluster each node has its own disk and NIC;"
  echo "see bench/bed_bench.sh for shaped links."
  echo "SOURCE is read on n1 (the batch host) from a shared directory, in page cache."
  echo "sbcast: $(run sbcast --version 2>&1 | head -1), default block size and fanout"
  echo "(TreeWidth default); p2pbcast: $("$S/bin/p2pbcast" --version 2>&1 | head -1),"
  echo "transport tcp on $NET.0/24, default chunk size; Open MPI $(ompi_info --version 2>/dev/null | sed -n 's/^Open MPI v//p' | head -1) via srun --mpi=pmix."
  echo "Order of the methods rotated from round to round; one untimed warm-up of each first."
  echo "Load average (1/5/15 min): at script start $load_before, before the job $load_start,"
  echo "after it $load_end; in the job: $(grep '^load before rounds' "$joblog" | cut -d: -f2-) before the"
  echo "rounds,$(grep '^load after rounds' "$joblog" | cut -d: -f2-) after (other work shares the 2 cores)."
  echo
  echo "Command: bench/slurm_sbcast.sh -s $SIZE_MIB -r $ROUNDS$([[ $LZ4 == 1 ]] || echo ' --no-lz4'), run $(date -u '+%Y-%m-%d %H:%M UTC')."
} >"$RESULT.tmp"
mv "$RESULT.tmp" "$RESULT"
cat "$RESULT"
((bad == 0))
