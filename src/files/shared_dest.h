/* shared_dest.h — notice when several nodes' DEST is one file on a shared
 * filesystem (NFS, Lustre, GPFS, a bind mount...), so that it is written
 * once instead of by every node at the same time.
 *
 * Every leader drops a probe file next to its DEST, named after the job
 * secret, a hash of the DEST path and its leader index; after a barrier each
 * leader lists the directory: probes with the same secret and path hash come
 * from nodes that see the same file. The lowest index among them writes. */
#ifndef P2PBCAST_SHARED_DEST_H
#define P2PBCAST_SHARED_DEST_H

#include <stddef.h>
#include <stdint.h>

/* Create our probe; probe gets its path (for removal). 0 ok, -1 (errno)
 * when the directory is not writable: the sink will report that. */
int pb_probe_create(const char *dest, const uint8_t secret[16], int leader, char *probe, size_t n);
/* The lowest leader index whose probe for the same DEST is visible (our own
 * index when none lower is). Also counts the sharers. */
int pb_probe_writer(const char *dest, const uint8_t secret[16], int leader, int *sharers);
void pb_probe_remove(char *probe);

#endif
