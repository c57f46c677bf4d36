/* shared_dest.h — notice when several nodes' DEST is one file on a shared
 * filesystem (NFS, Lustre, GPFS, a bind mount...), so that it is written
 * once instead of by every node at the same time.
 *
 * Every leader drops a probe file next to its DEST, named after a per-job
 * nonce (not the job secret: probe names are visible to every local user),
 * a hash of the DEST path and its leader index; after a barrier each leader
 * lists the directory: probes with the same nonce and path hash come from
 * nodes that see the same file. The lowest index among them writes.
 * A local user can plant a probe with a guessed index. Each probe holds a
 * random token of its leader, in a file only the job's user can read, and
 * each leader's view is a hash over the (index, token) pairs it read: the
 * root checks that the views are mutual before anyone skips writing. */
#ifndef P2PBCAST_SHARED_DEST_H
#define P2PBCAST_SHARED_DEST_H

#include <stddef.h>
#include <stdint.h>

/* Create our probe; probe gets its path (for removal). 0 ok, -1 (errno)
 * when the directory is not writable: the sink will report that. */
int pb_probe_create(const char *dest, const uint8_t nonce[8], int leader, uint64_t token, char *probe, size_t n);

/* What one leader sees: the lowest leader index whose probe for the same
 * DEST is visible (our own when none lower is), how many, and a hash of the
 * whole set of indices (equal on every member of a genuine group). */
struct pb_probe_view {
    int32_t writer;
    int32_t sharers;
    uint64_t set_hash;
};
void pb_probe_scan(const char *dest, const uint8_t nonce[8], int leader, int nleaders, struct pb_probe_view *v);

/* Root: are the views mutual (every member of a claimed group sees the
 * same group, and the group's writer is in it)? 1 yes; 0 no, with the
 * first leader whose view no other member confirms in *bad. */
int pb_probe_views_agree(const struct pb_probe_view *views, int nleaders, int *bad);
void pb_probe_remove(char *probe);

#endif
