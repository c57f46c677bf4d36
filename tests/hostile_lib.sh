# hostile_lib.sh — a SOURCE that one node sees with other contents, for the
# shell tests of parallel reads (test_shared_source.sh, test_shared_tree.sh,
# test_readtree_pairs.sh). Source it after lib.sh; set H (a directory) and
# c (the chunk size) first.
# shellcheck shell=bash

# same_ctime FILE...: touch them all at once until they share one ctime
# (the same clock tick): nobody can set a ctime, so only this makes two
# files look alike in size, mtime and ctime.
same_ctime() {
    for _ in $(seq 50); do
        touch -d "2026-01-01 12:00:00.25" "$@"
        [ "$(stat -c %z "$@" | sort -u | wc -l)" = 1 ] && return 0
    done
    echo "could not give $* one ctime" | diag
    return 1
}

# hostile NCHUNKS FROM TO: $H/src of NCHUNKS chunks and 77 bytes; $H/other
# equal to it in size, times, first and last chunk, but not in chunks
# FROM..TO (100 bytes of chunk FROM when FROM = TO).
hostile() {
    local n=$1 from=$2 to=$3
    mkfile "$H/src" $((n * c + 77))
    cp "$H/src" "$H/other"
    if [ "$from" -eq "$to" ]; then
        printf '%100s' differs | dd of="$H/other" bs=1 seek=$((from * c + 1000)) conv=notrunc status=none
    else
        head -c $(((to - from + 1) * c)) /dev/urandom |
            dd of="$H/other" bs=$c seek="$from" conv=notrunc status=none
    fi
    same_ctime "$H/src" "$H/other"
}

# hostile_caught NP RANK CHUNK [OPTION...]: p2pbcast from $H/src with the
# leader of RANK reading $H/other (chunks of $c bytes, --source-shared=yes);
# 0 when every rank exits 3, the root names RANK and CHUNK, and no DEST is
# left. Sets what run sets.
hostile_caught() {
    local np=$1 hr=$2 k=$3
    shift 3
    export "P2PBCAST_TEST_SOURCE_OF_RANK_$hr=$H/other"
    run "$np" -c "$c" --source-shared=yes "$@" "$H/src" "$H/dst.%r"
    unset "P2PBCAST_TEST_SOURCE_OF_RANK_$hr"
    [ "$rcs" = "3x$np " ] &&
        echo "$out" | grep -q "error: .*: chunk $k (offset $((k * c)), $c bytes) as read by [^ ]* (rank $hr) differs from SOURCE '$H/src' on the root" &&
        only_these "$H" src other
}
