/* engine.c — the node's state machine: the public entry points and the
 * helpers every schedule's executor shares (engine_internal.h); each
 * schedule's own flow control is in its sched_*.c (schedule.h). See
 * engine.h. */
#include "engine_internal.h"
#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pb_eng_fail(struct pb_engine *e, int cls, const char *fmt, ...)
{
    if (e->err)
        return; /* keep the first cause */
    e->err = cls;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

const char *pb_eng_name(const struct pb_engine *e, int leader)
{
    return leader >= 0 && leader < e->c.nleaders && e->c.names ? e->c.names[leader] : "?";
}

int pb_eng_skipped(const struct pb_engine *e, uint64_t k)
{
    return e->c.skip && ((e->c.skip[k / 8] >> (k % 8)) & 1);
}

unsigned char *pb_eng_slot_mem(struct pb_engine *e, uint32_t s)
{
    return e->c.pool + (size_t)s * e->c.slot_size;
}

struct pb_engine *pb_engine_create(const struct pb_engine_cfg *cfg, char *err, size_t errlen)
{
    const struct pb_plan *p = cfg->plan;
    if (cfg->slot_size < p->chunk_size + PB_TRAILER_SIZE || cfg->nslots < 4 ||
        cfg->slot_size > UINT32_MAX) {
        snprintf(err, errlen, "engine: slots too small or too few (%u x %zu for chunks of %llu)",
                 cfg->nslots, cfg->slot_size, (unsigned long long)p->chunk_size);
        return NULL;
    }
    struct pb_engine *e = calloc(1, sizeof *e);
    if (!e)
        goto oom;
    e->c = *cfg;
    e->p = p;
    /* With no receivers there is nothing to schedule: the root reads and
     * writes its own copy, which the ring's executor does. */
    e->ops = pb_sched_of(p->nrecv > 0 ? p->schedule : PB_SCHED_RING);
    e->lost_peer = -1;
    e->recv = pb_plan_receiver_of(p, cfg->root, cfg->nleaders, cfg->self);
    e->pred = e->succ = -1;
    e->state = calloc(cfg->nslots, 1);
    e->chunk_of = calloc(cfg->nslots, sizeof *e->chunk_of);
    e->len_of = calloc(cfg->nslots, sizeof *e->len_of);
    if (!e->state || !e->chunk_of || !e->len_of)
        goto oom;
    err[0] = 0;
    if (e->ops->setup(e, err, errlen) < 0) {
        if (err[0]) {
            pb_engine_destroy(e);
            return NULL;
        }
        goto oom;
    }
    pb_manifest_init(&e->man);
    for (uint64_t k = 0; cfg->skip && k < p->nchunks; k++)
        e->nskip += pb_eng_skipped(e, k);
    return e;
oom:
    snprintf(err, errlen, "engine: out of memory");
    pb_engine_destroy(e);
    return NULL;
}

int pb_eng_root_buffers(struct pb_engine *e)
{
    if (fifo_init(&e->free_bufs, e->c.nslots))
        return -1;
    for (uint32_t s = 0; s < e->c.nslots; s++)
        fifo_push(&e->free_bufs, s);
    return 0;
}

int pb_eng_chunk_map(struct pb_engine *e)
{
    e->have = calloc(e->p->nchunks / 8 + 1, 1);
    return e->have ? 0 : -1;
}

void pb_engine_destroy(struct pb_engine *e)
{
    if (!e)
        return;
    if (e->ops)
        e->ops->free(e);
    free(e->done_from);
    free(e->free_bufs.v);
    free(e->pending.v);
    free(e->succ_credits.v);
    free(e->transit.v);
    free(e->inject.v);
    free(e->have);
    free(e->state);
    free(e->chunk_of);
    free(e->len_of);
    free(e);
}

/* Receiver: which peer a slot belongs to. */
int pb_eng_class_peer(const struct pb_engine *e, uint32_t s)
{
    return e->ops->slot_peer(e, s);
}

void pb_eng_grant(struct pb_engine *e, uint32_t s)
{
    e->state[s] = SLOT_GRANTED;
    if (e->c.tp->ops->grant(e->c.tp, pb_eng_class_peer(e, s), s) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot return a credit to %s: %s", pb_eng_name(e, pb_eng_class_peer(e, s)), strerror(errno));
}

void pb_engine_start(struct pb_engine *e)
{
    e->ops->start(e);
}

void pb_eng_grant_all(struct pb_engine *e)
{
    if (e->recv < 0)
        return;
    for (uint32_t s = 0; s < e->c.nslots && !e->err; s++)
        pb_eng_grant(e, s);
}

int pb_eng_root_load(struct pb_engine *e, uint32_t b, uint64_t k)
{
    const struct pb_plan *p = e->p;
    uint64_t off = pb_plan_chunk_offset(p, k), len = pb_plan_chunk_len(p, k);
    unsigned char *m = pb_eng_slot_mem(e, b);
    char why[400];
    /* next_read moves on only once the chunk is written: held (--resume) */
    if (e->c.io.read(e->c.io.ctx, off, m, len, why, sizeof why) < 0) {
        pb_eng_fail(e, PB_EE_SOURCE, "%s", why);
        return -1;
    }
    struct pb_trailer t = { pb_chunk_hash(m, len), (uint32_t)k, (uint32_t)len, PB_TRAILER_MAGIC, 0 };
    pb_trailer_put(m + len, &t);
    pb_manifest_add(&e->man, k, t.hash);
    if (e->c.hashes)
        e->c.hashes[k] = t.hash;
    if (e->c.io.write(e->c.io.ctx, off, m, len, why, sizeof why) < 0) {
        pb_eng_fail(e, PB_EE_DEST, "%s", why);
        return -1;
    }
    e->next_read = k + 1;
    e->read_bytes += len;
    e->chunk_of[b] = (uint32_t)k;
    e->len_of[b] = (uint32_t)(len + PB_TRAILER_SIZE);
    return 0;
}

void pb_eng_put(struct pb_engine *e, int peer, uint32_t dst_slot, uint32_t s)
{
    if (e->c.tp->ops->put(e->c.tp, peer, dst_slot, e->chunk_of[s], pb_eng_slot_mem(e, s), e->len_of[s], s) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot send chunk %u to %s: %s", e->chunk_of[s], pb_eng_name(e, peer), strerror(errno));
}

int pb_engine_finished(const struct pb_engine *e)
{
    return !e->err && e->ops->finished(e);
}

void pb_engine_pump(struct pb_engine *e)
{
    if (!e->err)
        e->ops->pump(e);
}

int pb_eng_accept(struct pb_engine *e, const struct pb_event *ev, uint64_t *kp)
{
    const struct pb_plan *p = e->p;
    uint32_t s = ev->slot;
    if ((e->recv < 0 && !e->ops->every_node_reads) || s >= e->c.nslots || e->state[s] != SLOT_GRANTED || pb_eng_class_peer(e, s) != ev->peer) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: %s wrote into slot %u that was not granted to it",
                    pb_eng_name(e, ev->peer), s);
        return -1;
    }
    if (ev->len < PB_TRAILER_SIZE || ev->len > e->c.slot_size) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: %s sent %u bytes into slot %u", pb_eng_name(e, ev->peer),
                    ev->len, s);
        return -1;
    }
    unsigned char *m = pb_eng_slot_mem(e, s);
    uint32_t plen = ev->len - PB_TRAILER_SIZE;
    struct pb_trailer t;
    pb_trailer_get(m + plen, &t);
    uint64_t k = t.chunk;
    if (t.magic != PB_TRAILER_MAGIC || t.chunk != ev->tag || k >= p->nchunks ||
        t.len != plen || plen != pb_plan_chunk_len(p, k)) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: malformed chunk (tag %u, %u bytes) from %s", ev->tag, plen,
             pb_eng_name(e, ev->peer));
        return -1;
    }
    int want = e->ops->sender_leader(e, k);
    if (want != ev->peer || (e->have[k / 8] >> (k % 8)) & 1 || pb_eng_skipped(e, k)) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: chunk %llu from %s was %s", (unsigned long long)k,
             pb_eng_name(e, ev->peer), want != ev->peer ? "expected from another node" : "already received");
        return -1;
    }
    if (pb_chunk_hash(m, plen) != t.hash) {
        pb_eng_fail(e, PB_EE_DATA, "chunk %llu (offset %llu) from %s failed its checksum: corrupted in transit, no copy kept",
             (unsigned long long)k, (unsigned long long)pb_plan_chunk_offset(p, k), pb_eng_name(e, ev->peer));
        return -1;
    }
    char why[400];
    if (e->c.io.write(e->c.io.ctx, pb_plan_chunk_offset(p, k), m, plen, why, sizeof why) < 0) {
        pb_eng_fail(e, PB_EE_DEST, "%s", why);
        return -1;
    }
    e->have[k / 8] |= (unsigned char)(1u << (k % 8));
    e->received++;
    pb_manifest_add(&e->man, k, t.hash);
    if (e->c.hashes)
        e->c.hashes[k] = t.hash;
    e->chunk_of[s] = (uint32_t)k;
    e->len_of[s] = ev->len;
    *kp = k;
    return 0;
}

/* After the first failure, the root still notes every other lost peer. */
static void note_loss(struct pb_engine *e, const struct pb_event *ev)
{
    size_t len = strlen(e->msg);
    if (e->recv >= 0 || e->err != PB_EE_PEER || ev->kind != PB_EV_ERROR || ev->peer < 0 ||
        len > sizeof e->msg - 100)
        return;
    snprintf(e->msg + len, sizeof e->msg - len, "%s%s", e->more_losses++ ? ", " : "; also lost: ",
             pb_eng_name(e, ev->peer));
}

void pb_engine_handle(struct pb_engine *e, const struct pb_event *ev)
{
    if (ev->kind == PB_EV_ERROR && ev->peer >= 0 && e->lost_peer < 0)
        e->lost_peer = ev->peer;
    if (e->err) {
        note_loss(e, ev);
        return;
    }
    if (ev->kind != PB_EV_ERROR)
        e->ops->handle(e, ev);
    else if (ev->peer >= 0)
        pb_eng_fail(e, PB_EE_PEER, "connection to %s failed: %s%s%s", pb_eng_name(e, ev->peer), ev->what,
                    ev->err ? ": " : "", ev->err ? strerror(ev->err) : "");
    else
        pb_eng_fail(e, PB_EE_INTERNAL, "transport failure: %s%s%s", ev->what, ev->err ? ": " : "",
                    ev->err ? strerror(ev->err) : "");
}

int pb_engine_lost_peer(const struct pb_engine *e)
{
    return e->lost_peer;
}

int pb_engine_error(const struct pb_engine *e, const char **msg)
{
    if (msg)
        *msg = e->msg;
    return e->err;
}

void pb_engine_manifest_add(struct pb_engine *e, uint64_t chunk, uint64_t hash)
{
    pb_manifest_add(&e->man, chunk, hash);
}

int pb_engine_holds(const struct pb_engine *e, uint64_t k)
{
    if (k >= e->p->nchunks)
        return 0;
    if (pb_eng_skipped(e, k))
        return 1;
    if (e->recv < 0 && !e->ops->every_node_reads)
        return k < e->next_read; /* the root writes a chunk as it reads it */
    return (e->have[k / 8] >> (k % 8)) & 1;
}

uint64_t pb_engine_read_bytes(const struct pb_engine *e)
{
    return e->read_bytes;
}

uint64_t pb_engine_manifest(const struct pb_engine *e)
{
    return pb_manifest_final(&e->man, e->p->file_size);
}

void pb_engine_waiting_for(const struct pb_engine *e, char *out, size_t outlen)
{
    e->ops->waiting_for(e, out, outlen);
}

/* The root lost a peer: the others around it usually fail a moment later
 * because of it. Listen a little longer and name every node that went away
 * (see note_loss), so the message contains the one that really died. */
static void root_collect_losses(struct pb_engine *e)
{
    struct pb_event ev[64];
    double until = pb_now() + 0.25;
    /* At least a few polls even if we were descheduled past the deadline. */
    for (int round = 0; round < 3 || pb_now() < until; round++) {
        int n = e->c.tp->ops->poll(e->c.tp, ev, 64, 20);
        for (int i = 0; i < n; i++)
            pb_engine_handle(e, &ev[i]);
    }
}

int pb_engine_run(struct pb_engine *e)
{
    struct pb_event ev[64];
    double last = pb_now();
    pb_engine_start(e);
    while (!e->err && !pb_engine_finished(e)) {
        pb_engine_pump(e);
        if (e->err || pb_engine_finished(e))
            break;
        int n = e->c.tp->ops->poll(e->c.tp, ev, 64, 250);
        if (n < 0) {
            pb_eng_fail(e, PB_EE_INTERNAL, "transport poll failed: %s", strerror(errno));
            break;
        }
        /* All of them, also after a failure: the root notes every lost peer. */
        for (int i = 0; i < n; i++)
            pb_engine_handle(e, &ev[i]);
        if (e->c.cancel && *e->c.cancel && !e->err) {
            /* Take in what already arrived first: when a peer's death is
             * what ends the job, its closed connection is the cause to tell. */
            n = e->c.tp->ops->poll(e->c.tp, ev, 64, 0);
            for (int i = 0; i < n; i++)
                pb_engine_handle(e, &ev[i]);
            pb_eng_fail(e, PB_EE_CANCELED, "interrupted by signal %d while transferring", (int)*e->c.cancel);
            break;
        }
        double t = pb_now();
        if (n > 0) {
            last = t;
        } else if (t - last > e->c.timeout) {
            char w[256];
            pb_engine_waiting_for(e, w, sizeof w);
            pb_eng_fail(e, PB_EE_TIMEOUT, "no progress for %.0f s (%s)", e->c.timeout, w);
        }
    }
    if (e->err == PB_EE_PEER && e->recv < 0)
        root_collect_losses(e);
    return e->err;
}
