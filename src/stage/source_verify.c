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
 * Where the root reads no chunk of its own (the reader-fed trees when it
 * tops none of them), its reads of SOURCE are idle during the transfer:
 * it draws the sample before, reads and hashes it in a thread while the
 * chunks move (pb_source_verify_early), and compares once they all
 * arrived. Drawn by the root alone and never told, the sample is no more
 * known to the readers than after the transfer. With reads at 1 GB/s a
 * sample of F/32 costs F/(32 GB/s) after the transfer: 16 % of F/B on
 * 5 GB/s links; during it, nothing while it takes less than the transfer.
 *
 * Testing only: P2PBCAST_TEST_SAMPLE_BYTES=N sets the budget to N bytes. */
#include "bootstrap.h"
#include "clock.h"
#include "digest.h"
#include "phases.h"

#include <pthread.h>
#include <stdatomic.h>
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

static void differs(const struct stage *st, uint64_t k, char *err, size_t errlen)
{
    const struct pb_plan *p = &st->plan;
    snprintf(err, errlen, "chunk %llu (offset %llu, %llu bytes) as read by %s differs from SOURCE '%s' on "
             "the root: that node sees other contents at SOURCE's path (a stale client cache, or another "
             "file); no copy kept",
             (unsigned long long)k, (unsigned long long)pb_plan_chunk_offset(p, k),
             (unsigned long long)pb_plan_chunk_len(p, k), st->bi->names[pb_plan_reader(p, st->bi->root_leader, k)],
             st->source);
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
            differs(st, k, err, errlen);
            return -1;
        }
    }
    return 0;
}

/* The sample read during the transfer: got[i] is pick[i]'s checksum as the
 * root's SOURCE has it, for the first `done` of them. */
struct pb_sample_job {
    struct stage *st;
    uint64_t *pick, *got, n, done, bytes;
    unsigned char *buf;
    pthread_t th;
    atomic_int stop;
    int rc;
    char err[512];
};

static void *read_sample(void *arg)
{
    struct pb_sample_job *j = arg;
    const struct pb_plan *p = &j->st->plan;
    for (; j->done < j->n && !atomic_load(&j->stop); j->done++) {
        uint64_t k = j->pick[j->done], len = pb_plan_chunk_len(p, k);
        if (pb_source_read(&j->st->src, pb_plan_chunk_offset(p, k), j->buf, len, j->err, sizeof j->err) < 0) {
            j->rc = -1;
            break;
        }
        j->got[j->done] = pb_chunk_hash(j->buf, len);
        j->bytes += len;
    }
    return NULL;
}

static void free_job(struct pb_sample_job *j)
{
    free(j->pick);
    free(j->got);
    free(j->buf);
    free(j);
}

struct pb_sample_job *pb_source_verify_early(struct stage *st)
{
    const struct pb_plan *p = &st->plan;
    if (!st->root || !st->shared || pb_shared_read_bytes(p, st->bi->root_leader, st->nskip ? st->skip : NULL))
        return NULL;
    struct pb_sample_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->st = st;
    j->pick = malloc((p->nchunks ? p->nchunks : 1) * sizeof *j->pick);
    j->got = malloc((p->nchunks ? p->nchunks : 1) * sizeof *j->got);
    j->buf = malloc(p->chunk_size ? p->chunk_size : 1);
    if (!j->pick || !j->got || !j->buf) {
        free_job(j);
        return NULL; /* after the transfer, then */
    }
    j->n = draw(st, j->pick);
    if (pthread_create(&j->th, NULL, read_sample, j) != 0) {
        free_job(j);
        return NULL;
    }
    return j;
}

void pb_source_verify_drop(struct pb_sample_job *j)
{
    if (!j)
        return;
    atomic_store(&j->stop, 1);
    pthread_join(j->th, NULL);
    free_job(j);
}

static int join_step(void *arg)
{
    struct pb_sample_job *j = arg;
    pthread_join(j->th, NULL);
    return j->rc;
}

/* The early sample's end: what is left of its reads (the others wait with
 * heartbeats), then the comparison. */
static int finish_early(struct stage *st, struct pb_sample_job *j, const uint64_t *hashes, char *err, size_t errlen)
{
    int rc = pb_stage_run_alive(st, join_step, j);
    if (rc < 0)
        snprintf(err, errlen, "%s", j->err);
    for (uint64_t i = 0; i < j->done && !rc; i++)
        if (j->got[i] != hashes[j->pick[i]]) {
            differs(st, j->pick[i], err, errlen);
            rc = -1;
        }
    return rc;
}

int pb_source_verify(struct stage *st, struct pb_sample_job *early, const uint64_t *hashes, char *err, size_t errlen)
{
    const struct pb_plan *p = &st->plan;
    double t = pb_now();
    uint64_t *pick = early ? NULL : malloc((p->nchunks ? p->nchunks : 1) * sizeof *pick);
    unsigned char *buf = early ? NULL : malloc(p->chunk_size ? p->chunk_size : 1);
    int rc = -1;
    uint64_t n = 0, bytes = 0;
    if (early) {
        rc = finish_early(st, early, hashes, err, errlen);
        n = early->n, bytes = early->bytes;
        free_job(early);
    } else if (!pick || !buf) {
        snprintf(err, errlen, "out of memory for the check of the chunks other nodes read");
    } else {
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
                        "(%s), %s %.3f s: all equal its SOURCE\n",
                (unsigned long long)n, pb_fmt_bytes(bytes, b, sizeof b), pb_fmt_bytes(others, o, sizeof o),
                bytes == others ? "all of them" : "a random sample of each node's",
                early ? "during the transfer, then waited" : "after the transfer, in", pb_now() - t);
    }
    free(pick);
    free(buf);
    return rc;
}
