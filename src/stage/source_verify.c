/* source_verify.c — with --source-shared, the root vouches for the chunks
 * the other nodes read (issue 18: exit 0 is only ever said of verified
 * copies of the root's SOURCE).
 *
 * Every chunk reached the root with the checksum its reader computed from
 * what it read. After the transfer, so that no reader can know which, the
 * root draws a sample of the other readers' chunks (plan.h: every other
 * reader at least once; all of them while they fit in the budget), re-reads
 * them from its own SOURCE and compares. A node whose client cache held
 * another version of a region of the file is caught with high probability;
 * a difference fails the run as a SOURCE error naming that node, the chunk
 * and its offset.
 *
 * Testing only: P2PBCAST_TEST_SAMPLE_BYTES=N sets the budget to N bytes. */
#include "bootstrap.h"
#include "clock.h"
#include "digest.h"
#include "phases.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

/* 64 random bits per call from the kernel (getrandom), 32 at a time: up
 * to 256 bytes a call are never cut short by a signal. */
struct rng {
    uint64_t buf[32];
    unsigned n;
    int failed;
};

static uint64_t rng_next(void *ctx)
{
    struct rng *r = ctx;
    if (!r->n) {
        if (getrandom(r->buf, sizeof r->buf, 0) != (ssize_t)sizeof r->buf) {
            r->failed = 1;
            return 0;
        }
        r->n = sizeof r->buf / sizeof r->buf[0];
    }
    return r->buf[--r->n];
}

static uint64_t budget(const struct stage *st)
{
    const char *t = getenv("P2PBCAST_TEST_SAMPLE_BYTES");
    return t && *t ? strtoull(t, NULL, 10) : pb_shared_sample_budget(st->plan.file_size);
}

/* The chunks to re-read, in increasing order; every one of them when the
 * kernel has no randomness to give (a predictable sample is no check). */
static uint64_t draw(const struct stage *st, uint64_t *pick)
{
    const unsigned char *skip = st->nskip ? st->skip : NULL;
    struct rng r = { .n = 0 };
    uint64_t n = pb_shared_sample(&st->plan, st->bi->root_leader, skip, budget(st), rng_next, &r, pick);
    if (r.failed)
        n = pb_shared_sample(&st->plan, st->bi->root_leader, skip, UINT64_MAX, rng_next, &r, pick);
    return n;
}

/* 0 when every chunk drawn equals the root's SOURCE; else -1 with err. */
static int compare(struct stage *st, const uint64_t *hashes, const uint64_t *pick, uint64_t n, unsigned char *buf,
                   uint64_t *bytes, char *err, size_t errlen)
{
    const struct pb_plan *p = &st->plan;
    struct pb_alive *alive = pb_stage_alive(st, NULL); /* the others wait for the root's vote meanwhile */
    for (uint64_t i = 0; i < n; i++) {
        pb_alive_tick(alive);
        uint64_t k = pick[i], off = pb_plan_chunk_offset(p, k), len = pb_plan_chunk_len(p, k);
        if (pb_source_read(&st->src, off, buf, len, err, errlen) < 0)
            return -1;
        *bytes += len;
        if (pb_chunk_hash(buf, len) != hashes[k]) {
            snprintf(err, errlen, "chunk %llu (offset %llu, %llu bytes) as read by %s differs from SOURCE '%s' on "
                     "the root: that node sees other contents at SOURCE's path (a stale client cache, or another "
                     "file); no copy kept",
                     (unsigned long long)k, (unsigned long long)off, (unsigned long long)len,
                     st->bi->names[pb_plan_reader(p, st->bi->root_leader, k)], st->source);
            return -1;
        }
    }
    return 0;
}

int pb_source_verify(struct stage *st, const uint64_t *hashes, char *err, size_t errlen)
{
    const struct pb_plan *p = &st->plan;
    double t = pb_now();
    uint64_t *pick = malloc((p->nchunks ? p->nchunks : 1) * sizeof *pick);
    unsigned char *buf = malloc(p->chunk_size ? p->chunk_size : 1);
    int rc = -1;
    uint64_t n = 0, bytes = 0;
    if (!pick || !buf)
        snprintf(err, errlen, "out of memory for the check of the chunks other nodes read");
    else {
        n = draw(st, pick);
        rc = compare(st, hashes, pick, n, buf, &bytes, err, errlen);
    }
    if (!rc && st->verbose) {
        char b[32], o[32];
        uint64_t others = 0;
        for (uint64_t k = 0; k < p->nchunks; k++)
            if (pb_plan_reader(p, st->bi->root_leader, k) != st->bi->root_leader &&
                !(st->nskip && ((st->skip[k / 8] >> (k % 8)) & 1)))
                others += pb_plan_chunk_len(p, k);
        fprintf(stderr, "p2pbcast: source verify: the root re-read %llu chunks, %s of the %s the other nodes read "
                        "(%s), in %.3f s: all equal its SOURCE\n",
                (unsigned long long)n, pb_fmt_bytes(bytes, b, sizeof b), pb_fmt_bytes(others, o, sizeof o),
                bytes == others ? "all of them" : "a random sample of each node's", pb_now() - t);
    }
    free(pick);
    free(buf);
    return rc;
}
