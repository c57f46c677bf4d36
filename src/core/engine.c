/* engine.c — the node's state machine: the public entry points, the
 * helpers both schedules share, and the scatter-ring executor; the two
 * trees are in engine_tree.c. See engine.h. */
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
    e->lost_peer = -1;
    e->recv = pb_plan_receiver_of(cfg->root, cfg->nleaders, cfg->self);
    e->tree = p->schedule == PB_SCHED_TREE && p->nrecv > 0;
    e->shared = p->schedule == PB_SCHED_SHARED;
    e->pred = e->succ = -1;
    if (e->shared && cfg->nleaders != p->nrecv + 1) {
        snprintf(err, errlen, "engine: allgather over %d nodes but %d leaders", p->nrecv + 1, cfg->nleaders);
        free(e);
        return NULL;
    }
    if (!e->tree && !e->shared && e->recv >= 0 && p->nrecv > 1) {
        e->pred = pb_plan_leader_of(cfg->root, cfg->nleaders, pb_plan_predecessor(p, e->recv));
        e->succ = pb_plan_leader_of(cfg->root, cfg->nleaders, pb_plan_successor(p, e->recv));
    }
    if (!e->tree && !e->shared && e->recv >= 0) {
        /* With a ring, keep at least two ring slots (bubble flow control). */
        if (p->nrecv == 1)
            e->c.root_slots = cfg->nslots;
        else if (e->c.root_slots < 1 || e->c.root_slots > cfg->nslots - 2)
            e->c.root_slots = cfg->nslots / 4 ? cfg->nslots / 4 : 1;
    }
    e->state = calloc(cfg->nslots, 1);
    e->chunk_of = calloc(cfg->nslots, sizeof *e->chunk_of);
    e->len_of = calloc(cfg->nslots, sizeof *e->len_of);
    if (!e->state || !e->chunk_of || !e->len_of)
        goto oom;
    if (e->shared) {
        if (pb_shared_setup(e) < 0)
            goto oom;
    } else if (e->recv < 0) {
        if (fifo_init(&e->free_bufs, cfg->nslots) || fifo_init(&e->pending, cfg->nslots))
            goto oom;
        for (uint32_t s = 0; s < cfg->nslots; s++)
            fifo_push(&e->free_bufs, s);
        int R = e->tree ? 0 : p->nrecv;
        e->credits = calloc(R ? (size_t)R : 1, sizeof *e->credits);
        e->done_from = calloc(R ? (size_t)R : 1, 1);
        if (!e->credits || !e->done_from)
            goto oom;
        for (int r = 0; r < R; r++)
            if (fifo_init(&e->credits[r], cfg->nslots))
                goto oom;
    } else {
        if (fifo_init(&e->succ_credits, cfg->nslots) || fifo_init(&e->transit, cfg->nslots) ||
            fifo_init(&e->inject, cfg->nslots))
            goto oom;
        e->have = calloc(p->nchunks / 8 + 1, 1);
        if (!e->have)
            goto oom;
    }
    if (e->tree && pb_tree_setup(e) < 0)
        goto oom;
    pb_manifest_init(&e->man);
    for (uint64_t k = 0; cfg->skip && k < p->nchunks; k++)
        e->nskip += pb_eng_skipped(e, k);
    return e;
oom:
    snprintf(err, errlen, "engine: out of memory");
    pb_engine_destroy(e);
    return NULL;
}

void pb_engine_destroy(struct pb_engine *e)
{
    if (!e)
        return;
    pb_tree_free(e);
    if (e->credits && !e->tree)
        for (int r = 0; r < e->p->nrecv; r++)
            free(e->credits[r].v);
    free(e->credits);
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
    if (e->shared)
        return s < e->sh.read_slots ? -1 : e->pred;
    if (e->tree)
        return e->tr.parent[s < e->tr.split ? 0 : 1];
    return s < e->c.root_slots ? e->c.root : e->pred;
}

void pb_eng_grant(struct pb_engine *e, uint32_t s)
{
    e->state[s] = SLOT_GRANTED;
    if (e->c.tp->ops->grant(e->c.tp, pb_eng_class_peer(e, s), s) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot return a credit to %s: %s", pb_eng_name(e, pb_eng_class_peer(e, s)), strerror(errno));
}

void pb_engine_start(struct pb_engine *e)
{
    if (e->shared) {
        pb_shared_start(e);
        return;
    }
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

static void root_read(struct pb_engine *e)
{
    const struct pb_plan *p = e->p;
    while (!e->err && e->free_bufs.len && e->next_read < p->nchunks) {
        if (pb_eng_skipped(e, e->next_read)) {
            e->next_read++;
            continue;
        }
        uint32_t b = fifo_pop(&e->free_bufs);
        uint64_t k = e->next_read;
        if (pb_eng_root_load(e, b, k) < 0)
            return;
        uint64_t len = pb_plan_chunk_len(p, k);
        if (p->nrecv == 0) {
            fifo_push(&e->free_bufs, b);
            e->sent_bytes += len;
            if (e->c.progress)
                e->c.progress(e->c.progress_ctx, e->sent_bytes, 0);
        } else {
            e->state[b] = SLOT_BUSY;
            fifo_push(&e->pending, b);
        }
    }
}

void pb_eng_put(struct pb_engine *e, int peer, uint32_t dst_slot, uint32_t s)
{
    if (e->c.tp->ops->put(e->c.tp, peer, dst_slot, e->chunk_of[s], pb_eng_slot_mem(e, s), e->len_of[s], s) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot send chunk %u to %s: %s", e->chunk_of[s], pb_eng_name(e, peer), strerror(errno));
}

static void root_send(struct pb_engine *e)
{
    /* Send what has credit, oldest first; a receiver that is short of
     * credits does not hold back the others. */
    uint32_t n = e->pending.len;
    for (uint32_t i = 0; i < n && !e->err; i++) {
        uint32_t b = fifo_pop(&e->pending);
        int r = pb_plan_scatter_target(e->p, e->chunk_of[b]);
        if (e->credits[r].len) {
            pb_eng_put(e, pb_plan_leader_of(e->c.root, e->c.nleaders, r), fifo_pop(&e->credits[r]), b);
        } else {
            fifo_push(&e->pending, b);
        }
    }
}

static void recv_forward(struct pb_engine *e)
{
    while (!e->err && e->succ_credits.len && e->transit.len) {
        uint32_t s = fifo_pop(&e->transit);
        pb_eng_put(e, e->succ, fifo_pop(&e->succ_credits), s);
        e->forwarding++;
    }
    /* Bubble rule: a chunk enters the ring only if a free ring slot stays. */
    while (!e->err && !e->transit.len && e->succ_credits.len >= 2 && e->inject.len) {
        uint32_t s = fifo_pop(&e->inject);
        pb_eng_put(e, e->succ, fifo_pop(&e->succ_credits), s);
        e->forwarding++;
    }
}

int pb_engine_finished(const struct pb_engine *e)
{
    if (e->err)
        return 0;
    if (e->tree)
        return pb_tree_finished(e);
    if (e->shared)
        return pb_shared_finished(e);
    if (e->recv < 0)
        return e->fin;
    return e->notified && e->fin;
}

/* Has this node done its own part (the root: everything sent, every
 * receiver done; a receiver: every chunk held and passed on)? */
static int own_part_done(const struct pb_engine *e)
{
    if (e->recv < 0)
        return e->next_read == e->p->nchunks && e->free_bufs.len == e->c.nslots &&
               e->nodes_done == e->p->nrecv;
    return e->received + e->nskip == e->p->nchunks && e->forwarding == 0 && !e->transit.len && !e->inject.len;
}

void pb_engine_pump(struct pb_engine *e)
{
    if (e->err)
        return;
    if (e->tree) {
        pb_tree_pump(e);
        return;
    }
    if (e->shared) {
        pb_shared_pump(e);
        return;
    }
    if (e->recv < 0) {
        root_read(e);
        root_send(e);
        if (!e->fin && !e->err && own_part_done(e)) {
            for (int r = 0; r < e->p->nrecv && !e->err; r++) {
                int l = pb_plan_leader_of(e->c.root, e->c.nleaders, r);
                if (e->c.tp->ops->notify(e->c.tp, l, PB_NOTIFY_FIN) < 0)
                    pb_eng_fail(e, PB_EE_PEER, "cannot send the final notice to %s: %s", pb_eng_name(e, l), strerror(errno));
            }
            e->fin = 1;
        }
        return;
    }
    recv_forward(e);
    if (!e->notified && own_part_done(e)) {
        e->notified = 1;
        if (e->c.tp->ops->notify(e->c.tp, e->c.root, PB_NOTIFY_DONE) < 0)
            pb_eng_fail(e, PB_EE_PEER, "cannot tell the root %s we are done: %s", pb_eng_name(e, e->c.root), strerror(errno));
    }
}

/* Receiver: the leader chunk k must come from. */
static int sender_leader(const struct pb_engine *e, uint64_t k)
{
    if (e->tree)
        return e->tr.parent[pb_tree_of_chunk(k)];
    if (e->shared)
        return pb_shared_sender(e->p, e->c.self, k) == PB_SELF_READ ? -1 : e->pred;
    return pb_plan_sender(e->p, e->recv, k) == PB_FROM_ROOT ? e->c.root : e->pred;
}

int pb_eng_accept(struct pb_engine *e, const struct pb_event *ev, uint64_t *kp)
{
    const struct pb_plan *p = e->p;
    uint32_t s = ev->slot;
    if ((e->recv < 0 && !e->shared) || s >= e->c.nslots || e->state[s] != SLOT_GRANTED || pb_eng_class_peer(e, s) != ev->peer) {
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
    int want = sender_leader(e, k);
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

static void on_arrived(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = ev->slot;
    uint64_t k;
    if (pb_eng_accept(e, ev, &k) < 0)
        return;
    unsigned char *m = pb_eng_slot_mem(e, s);
    if (pb_plan_forwards(e->p, e->recv, k)) {
        e->state[s] = SLOT_BUSY;
        if ((int64_t)k == e->c.corrupt_chunk)
            m[0] ^= 0x5a; /* test-only fault injection, see --help of the test suite */
        fifo_push(ev->peer == e->c.root ? &e->inject : &e->transit, s);
    } else {
        pb_eng_grant(e, s);
    }
}

static void on_sent(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = (uint32_t)ev->cookie;
    if (s >= e->c.nslots || e->state[s] != SLOT_BUSY) {
        pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown send (cookie %llu)", (unsigned long long)ev->cookie);
        return;
    }
    if (e->recv < 0) {
        e->state[s] = SLOT_IDLE;
        e->sent_bytes += e->len_of[s] - PB_TRAILER_SIZE;
        fifo_push(&e->free_bufs, s);
        if (e->c.progress)
            e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
    } else {
        if ((int64_t)e->chunk_of[s] == e->c.corrupt_chunk)
            pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* undo: our own copy was written before */
        e->forwarding--;
        pb_eng_grant(e, s);
    }
}

static void on_credit(struct pb_engine *e, const struct pb_event *ev)
{
    struct fifo *f = NULL;
    if (e->recv < 0) {
        int r = pb_plan_receiver_of(e->c.root, e->c.nleaders, ev->peer);
        if (r >= 0 && r < e->p->nrecv)
            f = &e->credits[r];
    } else if (ev->peer == e->succ) {
        f = &e->succ_credits;
    }
    if (!f || ev->slot >= e->c.nslots || fifo_push(f, ev->slot) < 0)
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected credit for slot %u from %s", ev->slot, pb_eng_name(e, ev->peer));
}

static void on_notify(struct pb_engine *e, const struct pb_event *ev)
{
    if (e->recv >= 0) {
        if (ev->tag != PB_NOTIFY_FIN || ev->peer != e->c.root || !e->notified || e->fin) {
            pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag, pb_eng_name(e, ev->peer));
            return;
        }
        e->fin = 1;
        return;
    }
    int r = e->recv < 0 ? pb_plan_receiver_of(e->c.root, e->c.nleaders, ev->peer) : -1;
    if (ev->tag != PB_NOTIFY_DONE || r < 0 || r >= e->p->nrecv || e->done_from[r]) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag, pb_eng_name(e, ev->peer));
        return;
    }
    e->done_from[r] = 1;
    e->nodes_done++;
    if (e->c.progress)
        e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
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
    if (e->tree && ev->kind != PB_EV_ERROR) {
        pb_tree_handle(e, ev);
        return;
    }
    if (e->shared && ev->kind != PB_EV_ERROR) {
        pb_shared_handle(e, ev);
        return;
    }
    switch (ev->kind) {
    case PB_EV_ARRIVED: on_arrived(e, ev); break;
    case PB_EV_SENT: on_sent(e, ev); break;
    case PB_EV_CREDIT: on_credit(e, ev); break;
    case PB_EV_NOTIFY: on_notify(e, ev); break;
    case PB_EV_ERROR:
        if (ev->peer >= 0)
            pb_eng_fail(e, PB_EE_PEER, "connection to %s failed: %s%s%s", pb_eng_name(e, ev->peer), ev->what,
                 ev->err ? ": " : "", ev->err ? strerror(ev->err) : "");
        else
            pb_eng_fail(e, PB_EE_INTERNAL, "transport failure: %s%s%s", ev->what, ev->err ? ": " : "",
                 ev->err ? strerror(ev->err) : "");
        break;
    default:
        pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown event %d", (int)ev->kind);
    }
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
    if (e->recv < 0 && !e->shared)
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
    if (e->tree) {
        pb_tree_waiting_for(e, out, outlen);
        return;
    }
    if (e->shared) {
        pb_shared_waiting_for(e, out, outlen);
        return;
    }
    if (e->recv < 0) {
        int first = -1;
        for (int r = 0; r < e->p->nrecv && first < 0; r++)
            if (!e->done_from[r])
                first = r;
        if (first >= 0)
            snprintf(out, outlen, "%d of %d nodes not done, first %s", e->p->nrecv - e->nodes_done,
                     e->p->nrecv, pb_eng_name(e, pb_plan_leader_of(e->c.root, e->c.nleaders, first)));
        else
            snprintf(out, outlen, "%u sends outstanding", e->c.nslots - e->free_bufs.len);
        return;
    }
    uint64_t k = 0;
    while (k < e->p->nchunks && (((e->have[k / 8] >> (k % 8)) & 1) || pb_eng_skipped(e, k)))
        k++;
    if (k < e->p->nchunks) {
        int from = pb_plan_sender(e->p, e->recv, k) == PB_FROM_ROOT ? e->c.root : e->pred;
        snprintf(out, outlen, "waiting for chunk %llu of %llu from %s", (unsigned long long)k,
                 (unsigned long long)e->p->nchunks, pb_eng_name(e, from));
    } else {
        if (own_part_done(e))
            snprintf(out, outlen, "done, waiting for the other nodes to finish (root %s)", pb_eng_name(e, e->c.root));
        else
            snprintf(out, outlen, "waiting to pass %u chunks on to %s",
                     e->transit.len + e->inject.len + e->forwarding, pb_eng_name(e, e->succ));
    }
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
