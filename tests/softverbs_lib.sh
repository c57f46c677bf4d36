# softverbs_lib.sh — the start of a shell test that runs p2pbcast over
# tests/softverbs through lib.sh's run(): skip where that cannot work, a
# scratch directory $SCR under /var/tmp (removed at exit), mpirun wrapped in
# softverbs-run (every rank then sees the fake device, and Open MPI is kept
# off it), lib.sh sourced, the library built into $SCR/lib. Source it with
# SV_TEST set to the test's name.
# shellcheck shell=bash
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SV=$here/softverbs

skip_all() { echo "1..0 # SKIP $*"; exit 0; }
command -v "${MPIRUN:-mpirun}" >/dev/null || skip_all "mpirun not found"
[ -e /usr/include/infiniband/verbs.h ] || skip_all "libibverbs-dev not installed"
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

SCR=$(mktemp -d "/var/tmp/$SV_TEST.XXXXXX")
export SOFTVERBS_LIBDIR=$SCR/lib
REAL_MPIRUN=$(command -v "${MPIRUN:-mpirun}")
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$SV/softverbs-run" "$REAL_MPIRUN" > "$SCR/mpirun"
chmod 755 "$SCR/mpirun"
MPIRUN=$SCR/mpirun
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
# shellcheck source=tests/lib.sh
. "$here/lib.sh"
trap 'rm -rf "$SCR" "$WORK"' EXIT

[ -x "$P2PBCAST" ] || skip_all "no p2pbcast binary at $P2PBCAST"
"$P2PBCAST" --help 2>&1 | grep -q verbs || skip_all "p2pbcast has no verbs transport"
if ! make -s -C "$SV" O="$SOFTVERBS_LIBDIR" > "$SCR/build.log" 2>&1; then
    echo "not ok 1 - build softverbs"; diag < "$SCR/build.log"; echo "1..1"; exit 1
fi

# one_rank_faults: P2PBCAST becomes a wrapper that puts a fault on world
# rank ONE_RANK only (exported; "none": no rank), ONE_FAULT one of
#   hide        the device is not listed (softverbs lists none without SOFTVERBS)
#   nocap       no CAP_IPC_LOCK, ulimit -l 1024 (KiB)
#   VAR=VALUE[ VAR=VALUE...]  more variables in that rank's environment
one_rank_faults() {
    local real
    real=$(cd "$(dirname "$P2PBCAST")" && pwd)/$(basename "$P2PBCAST")
    cat > "$SCR/onerank" <<WRAP
#!/bin/bash
if [ "\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-}}" = "\${ONE_RANK:-none}" ]; then
    case \$ONE_FAULT in
        hide) unset SOFTVERBS ;;
        nocap) ulimit -l 1024 || exit 99; exec setpriv --bounding-set=-ipc_lock "$real" "\$@" ;;
        *=*) for kv in \$ONE_FAULT; do export "\$kv"; done ;;
    esac
fi
exec "$real" "\$@"
WRAP
    chmod 755 "$SCR/onerank"
    P2PBCAST=$SCR/onerank
    ONE_RANK=${ONE_RANK:-none} ONE_FAULT=${ONE_FAULT:-}
    export ONE_RANK ONE_FAULT
}
