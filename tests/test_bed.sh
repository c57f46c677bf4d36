#!/bin/bash
# test_bed.sh - p2pbcast on emulated hosts (tests/netbed), TAP.
#
# For N = 2, 4, 8 hosts (one rank per host, root on h1, 300 Mbit/s links,
# tcp transport on the bed's subnet): every host ends with an identical DEST,
# every rank exits 0, and no temporary file is left; -v on 4 hosts names the
# chunk size and why (64 KiB: a veth's rate is unknown) and that
# --source-shared=auto lets the root read (the hosts share a local
# filesystem, not one machine), while yes reads in parallel and the root
# re-reads the other hosts' chunks.  On the 4-host bed
# two real DEST faults:
#   - h3's DEST directory is a read-only bind mount (EROFS even for root);
#   - h4's DEST "directory" is a regular file (ENOTDIR);
# each run must fail on every rank with the same nonzero status, the root's
# stderr must name the failed host, and no host may keep a DEST or a partial
# temporary file.  The bed is always torn down (trap).
# Skips (exit 0) where network namespaces cannot be created.
#
# Environment: P2PBCAST (the binary, default ../p2pbcast relative to tests/),
# TEST_BED_RATE (Mbit/s, default 300), TEST_BED_TIMEOUT (seconds one
# broadcast may take before it is killed and fails, default 180).
# Independent of where the checkout lives: the binary is copied to a scratch
# directory under /var/tmp that every host sees (the hosts have their own
# /tmp), and netbed.sh hands mpirun an agent in its shared directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/netbed/bedtap.sh
source "$HERE/netbed/bedtap.sh"
RATE=${TEST_BED_RATE:-300}
SUBNET=10.77.0.0/24
bed_tap_start test_bed b

# A few MB, not a multiple of any chunk size.
SRC=$WORK/src.bin
head -c $(( 6 * 1048576 + 12345 )) /dev/urandom >"$SRC"
DDIR=/tmp/tb               # DEST's directory inside every host
TCP_IF_ARGS=(--tcp-if "$SUBNET")
DEST=$DDIR/dest.bin

# bcast N: p2pbcast to DEST on h1..hN with TCP_IF_ARGS (bedtap.sh, bed_bcast).
bcast() { bed_bcast "$1" -- ${TCP_IF_ARGS[@]+"${TCP_IF_ARGS[@]}"}; }

all_exit() {  # n status: n ranks, one per host, each exited with status
    local n=$1 st=$2 k want=""
    for (( k = 1; k <= n; k++ )); do want+="h$k $st"$'\n'; done
    [[ $rcs == "$(sort <<<"${want%$'\n'}")" ]] || { diag "rank statuses: $rcs"; return 1; }
}

copies_identical() {  # n: via each host's /tmp as seen from here
    local n=$1 k d
    for (( k = 1; k <= n; k++ )); do
        d=$("$NB" dir "h$k")${DEST#/tmp}
        cmp -s "$SRC" "$d" || { diag "h$k: $d differs or is missing"; return 1; }
    done
}

only_dest_left() {  # n: DEST's directory holds DEST alone (no temp file)
    local n=$1 k l
    for (( k = 1; k <= n; k++ )); do
        l=$(ls -A "$("$NB" dir "h$k")${DDIR#/tmp}")
        [[ $l == "${DEST##*/}" ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
    done
}

nothing_left() {  # n: no DEST, no temporary file on any host
    local n=$1 k d l
    for (( k = 1; k <= n; k++ )); do
        d=$("$NB" dir "h$k")${DDIR#/tmp}
        if [[ -d $d ]]; then
            l=$(ls -A "$d")
            [[ -z $l ]] || { diag "h$k: $DDIR holds: $l"; return 1; }
        fi
        # the read-only mount lives in h3's mount namespace only: look there too
        l=$("$NB" exec "h$k" sh -c "[ -d '$DDIR' ] && ls -A '$DDIR' || true")
        [[ -z $l ]] || { diag "h$k (inside): $DDIR holds: $l"; return 1; }
    done
}

root_names() {  # host: the root (rank 0) says that host failed
    local h=$1
    grep '^\[[0-9]*,0\]<stderr>:' <<<"$out" | grep -qw "$h" ||
        { diag "$out"; return 1; }
}

NETNS_DIR_BEFORE=0
[[ -e /run/netns ]] && NETNS_DIR_BEFORE=1
for N in 2 4 8; do
    "$NB" down "$PFX" >/dev/null 2>&1 || true
    ok "N=$N: bed up at $RATE Mbit/s" "$NB" up "$N" "$RATE" "$PFX"
    ok "N=$N: DEST directories ready" prepare_dirs "$N"
    bcast "$N"
    good() { (( mrc == 0 )) || { diag "$out"; return 1; }; }
    ok "N=$N: p2pbcast succeeds (mpirun status $mrc)" good
    ok "N=$N: every rank exits 0" all_exit "$N" 0
    ok "N=$N: identical copy on every host" copies_identical "$N"
    ok "N=$N: no temporary file left" only_dest_left "$N"

    if (( N == 2 )); then
        # Containers on different machines often share a hostname: the
        # transport must not take them for one machine (and use loopback),
        # and must find the interface that reaches the other host unaided.
        same_name() { "$NB" exec h1 hostname node && "$NB" exec h2 hostname node; }
        ok "N=2: both hosts called 'node'" same_name
        prepare_dirs 2
        TCP_IF_ARGS=()
        bcast 2
        TCP_IF_ARGS=(--tcp-if "$SUBNET")
        good_same() { (( mrc == 0 )) && [[ $rcs == $'node 0\nnode 0' ]] || { diag "$out"; return 1; }; }
        ok "N=2, one hostname, no --tcp-if: p2pbcast succeeds on both (mpirun status $mrc)" good_same
        ok "N=2, one hostname: identical copy on every host" copies_identical 2
        "$NB" exec h1 hostname h1 && "$NB" exec h2 hostname h2
    fi
    if (( N == 4 )); then
        # -v names the chunk and why: a veth has no device, so the link rate
        # is unknown and the tcp cap keeps 64 KiB (the rule gives 256 KiB).
        prepare_dirs 4
        TCP_IF_ARGS=(--tcp-if "$SUBNET" -v)
        bcast 4
        TCP_IF_ARGS=(--tcp-if "$SUBNET")
        chunk_said() {
            grep '<stderr>' <<<"$out" | grep -q 'chunk: 64 KiB: .*capped over tcp between hosts (link rate unknown' ||
                { diag "$(grep -i chunk <<<"$out")"; return 1; }
        }
        ok "N=4, -v: 64 KiB chunks over the bed's veth links (rate unknown), and why" chunk_said
        # The hosts share one local filesystem but are not one machine (each
        # its own network namespace): auto lets the root read alone; with
        # yes every host reads its share and the root re-reads the others'.
        auto_said() {
            grep '<stderr>' <<<"$out" |
                grep -q 'source shared auto: no: SOURCE .* is on .*, a local filesystem, and the nodes are not all this machine' ||
                { diag "$(grep -i 'source' <<<"$out")"; return 1; }
        }
        ok "N=4, -v, auto: a local filesystem between hosts: the root reads alone, and why" auto_said
        prepare_dirs 4
        TCP_IF_ARGS=(--tcp-if "$SUBNET" -v --source-shared=yes)
        bcast 4
        TCP_IF_ARGS=(--tcp-if "$SUBNET")
        verified() {
            (( mrc == 0 )) && all_exit 4 0 && copies_identical 4 &&
                grep '<stderr>' <<<"$out" | grep -q 'source verify: the root re-read [0-9]* chunks, .*(all of them)' ||
                { diag "$(grep -i 'source' <<<"$out")"; return 1; }
        }
        ok "N=4, --source-shared=yes: every host reads its share, the root re-reads the others' chunks, copies identical" verified

        # Fault 1: h3's DEST directory is a read-only bind mount in h3.
        prepare_dirs 4
        ro_mount() {
            "$NB" exec h3 sh -c "mount --bind '$DDIR' '$DDIR' && mount -o remount,bind,ro '$DDIR'" &&
                ! "$NB" exec h3 touch "$DDIR/probe" 2>/dev/null
        }
        ok "h3: DEST directory is a read-only mount (root cannot write)" ro_mount
        bcast 4
        failed() { local st; st=$(awk '{print $2}' <<<"$rcs" | sort -u)
            [[ $st =~ ^[1-9][0-9]*$ ]] && all_exit 4 "$st"; }
        ok "read-only DEST dir on h3: every rank exits with the same nonzero status ($(awk '{print $2}' <<<"$rcs" | sort -u | tr '\n' ' '))" failed
        ok "read-only DEST dir on h3: root's message names h3" root_names h3
        diag "$(grep '<stderr>' <<<"$out" | head -n 3)"
        ok "read-only DEST dir on h3: nothing partial on any host" nothing_left 4
        "$NB" exec h3 umount "$DDIR" || true

        # Fault 2: on h4 a regular file stands where DEST's directory should be.
        prepare_dirs 4
        "$NB" exec h4 sh -c "rmdir '$DDIR' && echo notadir >'$DDIR'"
        bcast 4
        ok "DEST dir is a file on h4: every rank exits with the same nonzero status ($(awk '{print $2}' <<<"$rcs" | sort -u | tr '\n' ' '))" failed
        ok "DEST dir is a file on h4: root's message names h4" root_names h4
        diag "$(grep '<stderr>' <<<"$out" | head -n 3)"
        notadir_kept() { [[ $(cat "$("$NB" dir h4)${DDIR#/tmp}") == notadir ]]; }
        ok "DEST dir is a file on h4: the file is untouched" notadir_kept
        "$NB" exec h4 rm -f "$DDIR"
        ok "DEST dir is a file on h4: nothing partial on any host" nothing_left 4
    fi
done

left_nothing() {
    [[ -z $(ip netns list | grep "^$PFX-" || true) ]] &&
        [[ ! -e /run/netbed/$PFX && ! -e /tmp/netbed-$PFX && ! -e /var/tmp/netbed-$PFX.share ]] &&
        { (( NETNS_DIR_BEFORE )) || [[ ! -e /run/netns ]]; }
}
ok "down" "$NB" down "$PFX"
ok "down leaves no namespace or directory" left_nothing

echo "1..$T"
(( FAILED == 0 ))
