/* digest.h — per-chunk checksums (XXH3 from libxxhash) and the manifest.
 *
 * The manifest digest combines every chunk's (index, checksum) pair in a way
 * that does not depend on arrival order, so a receiver can build it as
 * chunks land out of order without keeping a list: all nodes must end with
 * the root's value. */
#ifndef P2PBCAST_DIGEST_H
#define P2PBCAST_DIGEST_H

#include <stddef.h>
#include <stdint.h>

uint64_t pb_chunk_hash(const void *data, size_t len);

struct pb_manifest {
    uint64_t sum;    /* order-independent: sum of per-chunk mixes */
    uint64_t chunks; /* chunks folded in */
};

void pb_manifest_init(struct pb_manifest *m);
void pb_manifest_add(struct pb_manifest *m, uint64_t chunk, uint64_t hash);
/* One value that names the whole file (chunk count and size folded in). */
uint64_t pb_manifest_final(const struct pb_manifest *m, uint64_t file_size);

/* The trailer placed after a chunk's payload in a slot; little-endian on the
 * wire, whatever the host. */
struct pb_trailer {
    uint64_t hash;
    uint32_t chunk;
    uint32_t len;
    uint32_t magic;
    uint32_t reserved;
};
#define PB_TRAILER_MAGIC 0x50324243u /* "P2BC" */

void pb_trailer_put(void *dst, const struct pb_trailer *t);
void pb_trailer_get(const void *src, struct pb_trailer *t);

#endif
