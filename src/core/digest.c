/* digest.c — XXH3 chunk checksums and the order-independent manifest. */
#include "digest.h"
#include "plan.h"

#include <string.h>
#include <xxhash.h>

_Static_assert(PB_TRAILER_SIZE == 24, "trailer layout is part of the wire format");

uint64_t pb_chunk_hash(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

void pb_manifest_init(struct pb_manifest *m)
{
    m->sum = 0;
    m->chunks = 0;
}

void pb_manifest_add(struct pb_manifest *m, uint64_t chunk, uint64_t hash)
{
    /* Mix index and hash so that swapped or duplicated chunks change the sum. */
    uint64_t pair[2] = { chunk, hash };
    m->sum += XXH3_64bits(pair, sizeof pair);
    m->chunks++;
}

uint64_t pb_manifest_final(const struct pb_manifest *m, uint64_t file_size)
{
    uint64_t v[3] = { m->sum, m->chunks, file_size };
    return XXH3_64bits(v, sizeof v);
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void pb_trailer_put(void *dst, const struct pb_trailer *t)
{
    unsigned char *p = dst;
    put_le(p, t->hash, 8);
    put_le(p + 8, t->chunk, 4);
    put_le(p + 12, t->len, 4);
    put_le(p + 16, t->magic, 4);
    put_le(p + 20, t->reserved, 4);
}

void pb_trailer_get(const void *src, struct pb_trailer *t)
{
    const unsigned char *p = src;
    t->hash = get_le(p, 8);
    t->chunk = (uint32_t)get_le(p + 8, 4);
    t->len = (uint32_t)get_le(p + 12, 4);
    t->magic = (uint32_t)get_le(p + 16, 4);
    t->reserved = (uint32_t)get_le(p + 20, 4);
}
