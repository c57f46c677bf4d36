#!/bin/bash
# tree_slurm_bench.sh - a directory on the 4-node test Slurm (issue 12,
# "Speed"): `srun p2pbcast DIR DEST_DIR` against what a Slurm user runs
# today: tar c on the first node, sbcast of the tarball, tar x on every node.
#
#   bench/tree_slurm_bench.sh [-R 3] [-o FILE] DIR...
#
# DIRs must be outside /tmp (every node sees /var/tmp; tree_bed_bench.sh
# generates them and calls this with its trees). Same skeleton as
# bench/slurm_sbcast.sh: tests/slurm/slurm-up.sh (4 nodes n1..n4, each a set
# of namespaces on this host with its own /tmp, veths to one bridge, links
# NOT shaped), always torn down; one sbatch job per tree and round, 4 nodes,
# one task per node; in each, after an untimed warm-up,
# the two methods (order alternated from round to round):
#   p2pbcast   srun --mpi=pmix p2pbcast -q --tcp-if NET --json J DIR /tmp/pt
#              (wall around srun; its own clock from the JSON)
#   sbcast     tar cf /tmp/src.tar -C DIR . on n1; sbcast -f /tmp/src.tar
#              /tmp/sb.tar; srun on every node: mkdir, tar x, rm the
#              tarball; then srun sync -f on every node (timed apart:
#              p2pbcast syncs DEST's filesystem before it returns, tar x and
#              sbcast do not, so "sbcast path + sync" is like for like)
# DEST is each node's /tmp (a directory on the VM's one virtual disk: the
# Slurm nodes' /dev/shm is 256 MiB). Every copy is compared with DIR
# (diff -r on every node, first round; the last node after) and removed.
# The jobs run while this script holds /var/tmp/p2pbcast-bench.lock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
REPS=3
RESULT=$HERE/results/tree_slurm.txt
while (($#)); do
  case $1 in
    -R) REPS=$2; shift 2 ;;
    -o) RESULT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "tree_slurm_bench: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($#)) || { echo "tree_slurm_bench: no DIR (see --help)" >&2; exit 2; }
for d in "$@"; do
  case $d in /tmp*|/dev/shm*|/[!/]*) ;; *) echo "tree_slurm_bench: $d: want an absolute path outside /tmp" >&2; exit 2 ;; esac
  case $d in /tmp*|/dev/shm*) echo "tree_slurm_bench: $d: nodes have their own /tmp" >&2; exit 2 ;; esac
  [[ -d $d ]] || { echo "tree_slurm_bench: $d: not a directory" >&2; exit 2; }
done
P2PBCAST=${P2PBCAST:-$TOP/p2pbcast}
[[ -x $P2PBCAST ]] || { echo "tree_slurm_bench: no p2pbcast at $P2PBCAST (make first)" >&2; exit 1; }
command -v jq >/dev/null || { echo "tree_slurm_bench: jq missing" >&2; exit 1; }
for v in $(compgen -v SLURM_ || true); do
  [[ $v == SLURM_TEST_* ]] || unset "$v"
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NET=${SLURM_TEST_NET:-10.78.0}
export SLURM_TEST_NODES=4
log() { echo "tree_slurm_bench: $*" >&2; }

D=
teardown() {
  if [[ -n $D && -d $D ]]; then
    "$TOP/tests/slurm/slurm-down.sh" "$D" >&2 || log "warning: slurm-down.sh failed ($D)"
  fi
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rc=0
D=$("$TOP/tests/slurm/slurm-up.sh") || rc=$?
((rc == 77)) && { log "cannot run here"; exit 77; }
((rc == 0)) || { log "slurm-up.sh failed"; exit 1; }
S=$D/shared
mkdir -p "$S/bin" "$S/out"
cp -f "$P2PBCAST" "$S/bin/p2pbcast"
head -c 1048576 /dev/urandom >"$S/warm.bin"
run() { "$D/bin/slurm-run" "$@"; }

cat >"$S/job.sh" <<'JOB'
#!/bin/bash
# On n1. Appends to $OUT/rows.tsv: tree method round wall own tar_c bcast tar_x sync ok load
set -uo pipefail
per=(--nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --mpi=none)
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ld() { cut -d' ' -f1 /proc/loadavg; }
rows=$OUT/rows.tsv
verify() {  # DEST round: 1 when every checked node's DEST equals SRC
  local good want=$SLURM_JOB_NUM_NODES
  if (($2 == 1)); then
    good=$(srun "${per[@]}" bash -c 'diff -rq --no-dereference -- "$1" "$2" >/dev/null && echo ok' _ "$SRC" "$1" | grep -c '^ok$')
  else
    want=1
    good=$(srun "${per[@]}" bash -c '[[ $SLURM_PROCID != 0 ]] || { diff -rq --no-dereference -- "$1" "$2" >/dev/null && echo ok; }' _ "$SRC" "$1" | grep -c '^ok$')
  fi
  [[ $good -eq $want ]] && echo 1 || echo 0
}
# Removed, then flushed (untimed): the next run must not pay for this one's writeback.
clean() { srun "${per[@]}" rm -rf /tmp/pt /tmp/sx /tmp/sb.tar /tmp/src.tar; sync; }
p2p_run() {
  local r=$1 t0 t1 rc s ok j=$OUT/p2p-$TREE-$1.json l=$(ld)
  rm -f "$j"; t0=$(now)
  srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --mpi=pmix "$P2P" -q --tcp-if "$NET.0/24" --json "$j" "$SRC" /tmp/pt
  rc=$?; t1=$(now)
  s=$(jq -r '.seconds // empty' "$j" 2>/dev/null); [[ -n $s ]] || s=nan
  ok=0; ((rc == 0)) && ok=$(verify /tmp/pt "$r")
  printf '%s\tp2pbcast\t%s\t%s\t%s\t-\t-\t-\t0\t%s\t%s\n' "$TREE" "$r" "$(dt "$t0" "$t1")" "$s" "$ok" "$l" >>"$rows"
  echo "$TREE round $r p2pbcast: $(dt "$t0" "$t1") s wall, $s s own, rc=$rc ok=$ok"
}
sb_run() {
  local r=$1 t0 t1 t2 t3 t4 rc=0 ok l=$(ld)
  t0=$(now)
  tar cf /tmp/src.tar -C "$SRC" . || rc=1
  t1=$(now)
  sbcast -f /tmp/src.tar /tmp/sb.tar || rc=1
  t2=$(now)
  srun "${per[@]}" sh -c 'mkdir /tmp/sx && tar xf /tmp/sb.tar -C /tmp/sx && rm /tmp/sb.tar' || rc=1
  t3=$(now)
  srun "${per[@]}" sync -f /tmp/sx || rc=1
  t4=$(now)
  ok=0; ((rc == 0)) && ok=$(verify /tmp/sx "$r")
  printf '%s\tsbcast\t%s\t%s\t-\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TREE" "$r" "$(dt "$t0" "$t3")" "$(dt "$t0" "$t1")" \
    "$(dt "$t1" "$t2")" "$(dt "$t2" "$t3")" "$(dt "$t3" "$t4")" "$ok" "$l" >>"$rows"
  echo "$TREE round $r sbcast path: $(dt "$t0" "$t3") s (+ sync $(dt "$t3" "$t4")) rc=$rc ok=$ok"
}
echo "$TREE: batch host $(hostname), nodes $SLURM_JOB_NODELIST, load $(cut -d' ' -f1-3 /proc/loadavg)"
srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --mpi=pmix "$P2P" -q --tcp-if "$NET.0/24" "$WARM" /tmp/warm.bin
sbcast -f "$WARM" /tmp/warm2.bin
srun "${per[@]}" rm -f /tmp/warm.bin /tmp/warm2.bin
clean
r=$ROUND
if ((r % 2)); then p2p_run "$r"; clean; sb_run "$r"; clean
else sb_run "$r"; clean; p2p_run "$r"; clean; fi
JOB
chmod 755 "$S/job.sh"

exec 9>/var/tmp/p2pbcast-bench.lock
log "waiting for the bench lock"
flock 9
load_start=$(cat /proc/loadavg)
: >"$S/out/rows.tsv"
# One job per tree and round (a job may last 15 minutes on the test Slurm).
for src in "$@"; do
 for ((round = 1; round <= REPS; round++)); do
  tree=$(basename "$src")
  id=$(SRC="$src" TREE="$tree" WARM="$S/warm.bin" P2P="$S/bin/p2pbcast" OUT="$S/out" NET="$NET" ROUND="$round" \
       run sbatch --parsable -N4 --ntasks-per-node=1 --time=15 --job-name="tree-$tree" --chdir="$S" \
         --output="$S/out/job-%j.out" "$S/job.sh" </dev/null)
  st=
  for ((i = 0; i < 15 * 120 + 60; i++)); do
    st=$(run squeue -h -t all -j "$id" -o %T 2>/dev/null || true)
    case $st in PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|"") sleep 0.5 ;; *) break ;; esac
  done
  sed 's/^/  job: /' "$S/out/job-$id.out" >&2 || true
  [[ $st == COMPLETED ]] || log "job $id ($tree, round $round) ended $st: its runs are left out"
 done
done
flock -u 9
rows=$S/out/rows.tsv

median() { sort -g | awk '{ a[NR] = $1 } END { if (!NR) { print "nan"; exit }
  if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v t="$1" -v m="$2" -v c="$3" '$1 == t && $2 == m && $10 == 1 { print $c }' "$rows"; }
{
  echo "Directory on the 4-node test Slurm (namespaces on ONE 2-core VM, links not shaped),"
  echo "DEST each node's /tmp (a directory on the VM's one virtual disk). Median of $REPS rounds, wall seconds."
  echo
  for src in "$@"; do
    tree=$(basename "$src")
    nf=$(find "$src" -type f | wc -l); by=$(du -sb "$src" | cut -f1)
    pw=$(col "$tree" p2pbcast 4 | median); po=$(col "$tree" p2pbcast 5 | median)
    sw=$(col "$tree" sbcast 4 | median); sc=$(col "$tree" sbcast 6 | median)
    sb=$(col "$tree" sbcast 7 | median); sx=$(col "$tree" sbcast 8 | median)
    ss=$(awk -F'\t' -v t="$tree" '$1 == t && $2 == "sbcast" && $10 == 1 { printf "%.3f\n", $4 + $9 }' "$rows" | median)
    echo "$tree: $nf files, $by bytes"
    printf '  %-48s %8s s  (own clock %s s)\n' "srun p2pbcast DIR /tmp/pt" "$pw" "$po"
    printf '  %-48s %8s s  (tar c %s, sbcast %s, srun tar x %s)\n' "tar c + sbcast + srun tar x" "$sw" "$sc" "$sb" "$sx"
    printf '  %-48s %8s s\n' "  the same + srun sync -f (durable, like p2pbcast)" "$ss"
    printf '  ratio (sbcast path + sync) / p2pbcast: %s;  without the sync: %s\n' \
      "$(awk -v a="$ss" -v b="$pw" 'BEGIN { printf "%.2f", a / b }')" "$(awk -v a="$sw" -v b="$pw" 'BEGIN { printf "%.2f", a / b }')"
    echo
  done
  echo "Every run: tree method round wall own tar_c sbcast tar_x sync verified load1"
  sed 's/^/  /; s/\t/ /g' "$rows"
  bad=$(awk -F'\t' '$10 != 1' "$rows" | wc -l)
  ((bad)) && echo "WARNING: $bad run(s) failed or differ (left out of the medians)"
  echo
  echo "sbcast: $(run sbcast --version 2>&1 | head -1); p2pbcast $("$S/bin/p2pbcast" --version | head -1), tcp on $NET.0/24."
  echo "load average at start: $load_start; at end: $(cat /proc/loadavg). $(date -u '+%Y-%m-%d %H:%M UTC')."
} >"$RESULT.tmp"
mv "$RESULT.tmp" "$RESULT"
cat "$RESULT"
