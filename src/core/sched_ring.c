/* sched_ring.c — the scatter-ring: its plan (see plan.h) first, then its
 * executor (see engine.h for its flow control and why it cannot deadlock).
 *
 * The root scatters chunk k to receiver k mod R; every receiver passes what
 * it gets on to its successor until the chunk has made R-1 hops. Each
 * receiver says DONE to the root once it holds and has passed on every
 * chunk; the root answers FIN to all once every receiver is done. */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plan --------------------------------------------------------- */

int pb_plan_scatter_target(const struct pb_plan *p, uint64_t k)
{
    if (p->nrecv <= 0)
        return -1;
    return (int)(k % (uint64_t)p->nrecv);
}

int pb_plan_successor(const struct pb_plan *p, int r)
{
    return (r + 1) % p->nrecv;
}

int pb_plan_predecessor(const struct pb_plan *p, int r)
{
    return (r + p->nrecv - 1) % p->nrecv;
}

int pb_plan_hops(const struct pb_plan *p, int r, uint64_t k)
{
    int s = pb_plan_scatter_target(p, k);
    return (r - s + p->nrecv) % p->nrecv;
}

bool pb_plan_forwards(const struct pb_plan *p, int r, uint64_t k)
{
    /* The chunk has reached every receiver once it has made R-1 hops. */
    return p->nrecv > 1 && pb_plan_hops(p, r, k) < p->nrecv - 1;
}

uint64_t pb_plan_default_chunk(uint64_t file_size, int nrecv, double alpha_b)
{
    /* Every chunk pays a per-message cost (alpha*B bytes' worth) and the
     * ring's tail adds (R-1)*c/B: the rule's hops are R-1 (README,
     * "Choosing the chunk size"). */
    return pb_plan_rule_chunk(file_size, nrecv > 2 ? (double)(nrecv - 1) : 1.0, alpha_b);
}

static int ring_sender(const struct pb_plan *p, int r, uint64_t k)
{
    return pb_plan_hops(p, r, k) == 0 ? PB_FROM_ROOT : pb_plan_predecessor(p, r);
}

static int ring_targets(const struct pb_plan *p, int r, uint64_t k, int out[2])
{
    if (r == PB_FROM_ROOT) {
        out[0] = pb_plan_scatter_target(p, k);
        return 1;
    }
    if (!pb_plan_forwards(p, r, k))
        return 0;
    out[0] = pb_plan_successor(p, r);
    return 1;
}

/* The root talks to every receiver; a receiver to the root and its two
 * ring neighbours. */
static int ring_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    int r = pb_plan_receiver_of(p, root_leader, nleaders, leader), n = 0;
    if (r < 0) {
        for (int i = 0; i < p->nrecv; i++)
            out[n++] = pb_plan_leader_of(p, root_leader, nleaders, i);
        return n;
    }
    n = pb_plan_add_partner(out, n, root_leader);
    if (p->nrecv > 1) {
        n = pb_plan_add_partner(out, n, pb_plan_leader_of(p, root_leader, nleaders, pb_plan_predecessor(p, r)));
        n = pb_plan_add_partner(out, n, pb_plan_leader_of(p, root_leader, nleaders, pb_plan_successor(p, r)));
    }
    return n;
}

/* ---- the executor ----------------------------------------------------- */

/* Ring neighbours and slot classes; the root's read buffers and per-receiver
 * credits, or a receiver's queues and map of chunks held. */
static int ring_setup(struct pb_engine *e, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const struct pb_plan *p = e->p;
    uint32_t n = e->c.nslots;
    if (e->recv < 0) {
        if (pb_eng_root_buffers(e) || fifo_init(&e->pending, n))
            return -1;
        int R = p->nrecv;
        e->credits = calloc(R ? (size_t)R : 1, sizeof *e->credits);
        e->done_from = calloc(R ? (size_t)R : 1, 1);
        if (!e->credits || !e->done_from)
            return -1;
        for (int r = 0; r < R; r++)
            if (fifo_init(&e->credits[r], n))
                return -1;
        return 0;
    }
    if (p->nrecv > 1) {
        e->pred = pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, pb_plan_predecessor(p, e->recv));
        e->succ = pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, pb_plan_successor(p, e->recv));
    }
    /* Keep at least two ring slots (bubble flow control). */
    if (p->nrecv == 1)
        e->c.root_slots = n;
    else if (e->c.root_slots < 1 || e->c.root_slots > n - 2)
        e->c.root_slots = n / 4 ? n / 4 : 1;
    if (fifo_init(&e->succ_credits, n) || fifo_init(&e->transit, n) || fifo_init(&e->inject, n))
        return -1;
    return pb_eng_chunk_map(e);
}

static void ring_free(struct pb_engine *e)
{
    if (e->credits)
        for (int r = 0; r < e->p->nrecv; r++)
            free(e->credits[r].v);
    free(e->credits);
}

static int ring_slot_peer(const struct pb_engine *e, uint32_t s)
{
    return s < e->c.root_slots ? e->c.root : e->pred;
}

static int ring_sender_leader(const struct pb_engine *e, uint64_t k)
{
    return pb_plan_sender(e->p, e->recv, k) == PB_FROM_ROOT ? e->c.root : e->pred;
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

static void root_send(struct pb_engine *e)
{
    /* Send what has credit, oldest first; a receiver that is short of
     * credits does not hold back the others. */
    uint32_t n = e->pending.len;
    for (uint32_t i = 0; i < n && !e->err; i++) {
        uint32_t b = fifo_pop(&e->pending);
        int r = pb_plan_scatter_target(e->p, e->chunk_of[b]);
        if (e->credits[r].len) {
            pb_eng_put(e, pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, r), fifo_pop(&e->credits[r]), b);
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

static int ring_finished(const struct pb_engine *e)
{
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

static void ring_pump(struct pb_engine *e)
{
    if (e->recv < 0) {
        root_read(e);
        root_send(e);
        if (!e->fin && !e->err && own_part_done(e)) {
            for (int r = 0; r < e->p->nrecv && !e->err; r++) {
                int l = pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, r);
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
        int r = pb_plan_receiver_of(e->p, e->c.root, e->c.nleaders, ev->peer);
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
    int r = e->recv < 0 ? pb_plan_receiver_of(e->p, e->c.root, e->c.nleaders, ev->peer) : -1;
    if (ev->tag != PB_NOTIFY_DONE || r < 0 || r >= e->p->nrecv || e->done_from[r]) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag, pb_eng_name(e, ev->peer));
        return;
    }
    e->done_from[r] = 1;
    e->nodes_done++;
    if (e->c.progress)
        e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
}

static void ring_handle(struct pb_engine *e, const struct pb_event *ev)
{
    switch (ev->kind) {
    case PB_EV_ARRIVED: on_arrived(e, ev); break;
    case PB_EV_SENT: on_sent(e, ev); break;
    case PB_EV_CREDIT: on_credit(e, ev); break;
    case PB_EV_NOTIFY: on_notify(e, ev); break;
    default: pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown event %d", (int)ev->kind);
    }
}

static void ring_waiting_for(const struct pb_engine *e, char *out, size_t outlen)
{
    if (e->recv < 0) {
        int first = -1;
        for (int r = 0; r < e->p->nrecv && first < 0; r++)
            if (!e->done_from[r])
                first = r;
        if (first >= 0)
            snprintf(out, outlen, "%d of %d nodes not done, first %s", e->p->nrecv - e->nodes_done,
                     e->p->nrecv, pb_eng_name(e, pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, first)));
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

const struct pb_sched pb_sched_ring = {
    .name = "ring",
    .selectable = 1,
    .rule_name = "ring's",
    .sender = ring_sender,
    .targets = ring_targets,
    .partners = ring_partners,
    .default_chunk = pb_plan_default_chunk,
    .setup = ring_setup,
    .start = pb_eng_grant_all,
    .slot_peer = ring_slot_peer,
    .sender_leader = ring_sender_leader,
    .handle = ring_handle,
    .pump = ring_pump,
    .finished = ring_finished,
    .waiting_for = ring_waiting_for,
    .free = ring_free,
};
