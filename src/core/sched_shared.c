/* sched_shared.c — the ring allgather for a SOURCE every node sees: its
 * plan (see plan.h) first, then its executor (see engine.h for its flow
 * control and why it cannot deadlock).
 *
 * Every node, the root included, runs the same loop: read its own chunks
 * (k mod N == self) into its read buffers, write them, and inject them into
 * the ring under the bubble rule; check, write and pass on what arrives
 * from the predecessor. The root still closes the job: every other node
 * says DONE to it, and it answers FIN to all. */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plan --------------------------------------------------------- */

int pb_shared_reader(const struct pb_plan *p, uint64_t k)
{
    return (int)(k % (uint64_t)pb_shared_members(p));
}

int pb_shared_successor(const struct pb_plan *p, int m)
{
    return (m + 1) % pb_shared_members(p);
}

int pb_shared_predecessor(const struct pb_plan *p, int m)
{
    int n = pb_shared_members(p);
    return (m + n - 1) % n;
}

int pb_shared_hops(const struct pb_plan *p, int m, uint64_t k)
{
    int n = pb_shared_members(p);
    return (m - pb_shared_reader(p, k) + n) % n;
}

bool pb_shared_forwards(const struct pb_plan *p, int m, uint64_t k)
{
    /* Every member holds the chunk once it has made N-1 hops. */
    return pb_shared_hops(p, m, k) < pb_shared_members(p) - 1;
}

int pb_shared_sender(const struct pb_plan *p, int m, uint64_t k)
{
    return pb_shared_hops(p, m, k) == 0 ? PB_SELF_READ : pb_shared_predecessor(p, m);
}

uint64_t pb_shared_read_bytes(const struct pb_plan *p, int m, const unsigned char *skip)
{
    /* The allgather's member m reads every N-th chunk from m; any other
     * schedule where every node reads: the chunks its reader function gives m. */
    int ring = p->schedule == PB_SCHED_SHARED;
    uint64_t sum = 0, step = ring ? (uint64_t)pb_shared_members(p) : 1;
    for (uint64_t k = ring ? (uint64_t)m : 0; k < p->nchunks; k += step)
        if ((ring || pb_plan_reader(p, -1, k) == m) && !(skip && ((skip[k / 8] >> (k % 8)) & 1)))
            sum += pb_plan_chunk_len(p, k);
    return sum;
}

uint64_t pb_shared_sample_budget(uint64_t file_size)
{
    uint64_t b = file_size / 32;
    return b < PB_SAMPLE_MIN_BYTES ? PB_SAMPLE_MIN_BYTES : b > PB_SAMPLE_MAX_BYTES ? PB_SAMPLE_MAX_BYTES : b;
}

static bool skipped(const unsigned char *skip, uint64_t k)
{
    return skip && ((skip[k / 8] >> (k % 8)) & 1);
}

uint64_t pb_shared_sample(const struct pb_plan *p, int root, const unsigned char *skip, uint64_t budget,
                          uint64_t (*rnd)(void *ctx), void *ctx, uint64_t *out)
{
    /* Every schedule where every node reads: the members are the leaders,
     * pb_plan_reader says who read chunk k. */
    int N = pb_shared_members(p);
    uint64_t others = 0, n = 0, *left = calloc((size_t)N, sizeof *left), *want = calloc((size_t)N, sizeof *want);
    int readers = 0;
    for (uint64_t k = 0; k < p->nchunks; k++) {
        int m = pb_plan_reader(p, root, k);
        if (m == root || skipped(skip, k))
            continue;
        others += pb_plan_chunk_len(p, k);
        if (left && !left[m]++)
            readers++;
    }
    uint64_t per = others <= budget ? UINT64_MAX
                   : readers && p->chunk_size ? budget / (p->chunk_size * (uint64_t)readers) : 1;
    if (per < 1)
        per = 1;
    if (!left || !want) { /* no memory for the draw: check every chunk */
        per = UINT64_MAX;
        free(left);
        free(want);
        left = want = NULL;
    }
    for (int m = 0; left && m < N; m++)
        want[m] = left[m] < per ? left[m] : per;
    /* Out in increasing order: walk the chunks once, each reader's
     * selection sampling (Knuth's algorithm S) interleaved with the others'. */
    for (uint64_t k = 0; k < p->nchunks; k++) {
        int m = pb_plan_reader(p, root, k);
        if (m == root || skipped(skip, k))
            continue;
        if (!left) {
            out[n++] = k;
            continue;
        }
        if (want[m] && (want[m] == left[m] || rnd(ctx) % left[m] < want[m])) {
            out[n++] = k;
            want[m]--;
        }
        left[m]--;
    }
    free(left);
    free(want);
    return n;
}

static int shared_targets(const struct pb_plan *p, int m, uint64_t k, int out[2])
{
    if (m < 0 || !pb_shared_forwards(p, m, k))
        return 0;
    out[0] = pb_shared_successor(p, m);
    return 1;
}

/* Allgather: the ring neighbours, and the root (DONE and FIN notices);
 * the root talks to everyone. */
static int shared_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    int n = 0;
    if (leader == root_leader) {
        for (int l = 0; l < nleaders; l++)
            if (l != root_leader)
                out[n++] = l;
        return n;
    }
    n = pb_plan_add_partner(out, n, root_leader);
    n = pb_plan_add_partner(out, n, pb_shared_predecessor(p, leader));
    return pb_plan_add_partner(out, n, pb_shared_successor(p, leader));
}

/* ---- the executor ----------------------------------------------------- */

static int members(const struct pb_engine *e)
{
    return pb_shared_members(e->p);
}

static int pb_shared_setup(struct pb_engine *e, char *err, size_t errlen)
{
    const struct pb_plan *p = e->p;
    if (e->c.nleaders != p->nrecv + 1) {
        snprintf(err, errlen, "engine: allgather over %d nodes but %d leaders", p->nrecv + 1, e->c.nleaders);
        return -1;
    }
    struct shared_part *sh = &e->sh;
    uint32_t n = e->c.nslots, rs = e->c.root_slots;
    if (members(e) > 1) {
        e->pred = pb_shared_predecessor(p, e->c.self);
        e->succ = pb_shared_successor(p, e->c.self);
    }
    /* Read buffers: root_slots of them (a quarter by default); at least two
     * ring slots stay for the bubble rule. Alone, every slot reads. */
    if (members(e) == 1)
        rs = n;
    else if (rs < 1 || rs > n - 2)
        rs = n / 4 ? n / 4 : 1;
    sh->read_slots = rs;
    sh->next_own = (uint64_t)e->c.self;
    if (fifo_init(&e->free_bufs, n) || fifo_init(&e->succ_credits, n) || fifo_init(&e->transit, n) ||
        fifo_init(&e->inject, n))
        return -1;
    for (uint32_t s = 0; s < rs; s++)
        fifo_push(&e->free_bufs, s);
    e->have = calloc(p->nchunks / 8 + 1, 1);
    e->done_from = calloc((size_t)members(e), 1);
    return e->have && e->done_from ? 0 : -1;
}

static void pb_shared_start(struct pb_engine *e)
{
    for (uint32_t s = e->sh.read_slots; s < e->c.nslots && !e->err; s++)
        pb_eng_grant(e, s);
}

static void held(struct pb_engine *e, uint64_t k)
{
    e->have[k / 8] |= (unsigned char)(1u << (k % 8));
    e->sent_bytes += pb_plan_chunk_len(e->p, k); /* progress: bytes this node holds */
    if (e->c.progress)
        e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
}

/* Our own chunks: read, seal, write, and queue them for the ring. */
static void read_own(struct pb_engine *e)
{
    const struct pb_plan *p = e->p;
    while (!e->err && e->free_bufs.len && e->sh.next_own < p->nchunks) {
        uint64_t k = e->sh.next_own;
        e->sh.next_own += (uint64_t)members(e);
        if (pb_eng_skipped(e, k))
            continue;
        uint32_t b = fifo_pop(&e->free_bufs);
        if (pb_eng_root_load(e, b, k) < 0)
            return;
        e->received++;
        held(e, k);
        if (pb_shared_forwards(p, e->c.self, k)) {
            e->state[b] = SLOT_BUSY;
            fifo_push(&e->inject, b);
        } else {
            fifo_push(&e->free_bufs, b);
        }
    }
}

/* Travelling chunks first, with one credit; ours enter the ring only while
 * the successor keeps a free ring slot (the bubble rule). */
static void forward(struct pb_engine *e)
{
    while (!e->err && e->succ_credits.len && e->transit.len) {
        pb_eng_put(e, e->succ, fifo_pop(&e->succ_credits), fifo_pop(&e->transit));
        e->forwarding++;
    }
    while (!e->err && !e->transit.len && e->succ_credits.len >= 2 && e->inject.len) {
        pb_eng_put(e, e->succ, fifo_pop(&e->succ_credits), fifo_pop(&e->inject));
        e->forwarding++;
    }
}

static int own_part_done(const struct pb_engine *e)
{
    return e->received + e->nskip == e->p->nchunks && e->sh.next_own >= e->p->nchunks && e->forwarding == 0 &&
           !e->transit.len && !e->inject.len && e->free_bufs.len == e->sh.read_slots;
}

static void send_fin(struct pb_engine *e)
{
    for (int l = 0; l < members(e) && !e->err; l++)
        if (l != e->c.self && e->c.tp->ops->notify(e->c.tp, l, PB_NOTIFY_FIN) < 0)
            pb_eng_fail(e, PB_EE_PEER, "cannot send the final notice to %s: %s", pb_eng_name(e, l), strerror(errno));
    e->fin = 1;
}

static void pb_shared_pump(struct pb_engine *e)
{
    read_own(e);
    forward(e);
    if (e->err || !own_part_done(e))
        return;
    if (e->recv < 0) {
        if (!e->fin && e->nodes_done == members(e) - 1)
            send_fin(e);
    } else if (!e->notified) {
        e->notified = 1;
        if (e->c.tp->ops->notify(e->c.tp, e->c.root, PB_NOTIFY_DONE) < 0)
            pb_eng_fail(e, PB_EE_PEER, "cannot tell the root %s we are done: %s", pb_eng_name(e, e->c.root),
                        strerror(errno));
    }
}

static int pb_shared_finished(const struct pb_engine *e)
{
    return e->recv < 0 ? e->fin : e->notified && e->fin;
}

static void on_arrived(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = ev->slot;
    uint64_t k;
    if (pb_eng_accept(e, ev, &k) < 0)
        return;
    held(e, k);
    if (!pb_shared_forwards(e->p, e->c.self, k)) {
        pb_eng_grant(e, s);
        return;
    }
    e->state[s] = SLOT_BUSY;
    if ((int64_t)k == e->c.corrupt_chunk)
        pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* test-only fault injection */
    fifo_push(&e->transit, s);
}

static void on_sent(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = (uint32_t)ev->cookie;
    if (s >= e->c.nslots || e->state[s] != SLOT_BUSY || !e->forwarding) {
        pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown send (cookie %llu)",
                    (unsigned long long)ev->cookie);
        return;
    }
    e->forwarding--;
    if (s < e->sh.read_slots) {
        e->state[s] = SLOT_IDLE;
        fifo_push(&e->free_bufs, s);
        return;
    }
    if ((int64_t)e->chunk_of[s] == e->c.corrupt_chunk)
        pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* undo: our own copy was written before */
    pb_eng_grant(e, s);
}

static void on_notify(struct pb_engine *e, const struct pb_event *ev)
{
    int l = ev->peer;
    if (e->recv >= 0) {
        if (ev->tag == PB_NOTIFY_FIN && l == e->c.root && e->notified && !e->fin) {
            e->fin = 1;
            return;
        }
    } else if (ev->tag == PB_NOTIFY_DONE && l >= 0 && l < members(e) && l != e->c.self && !e->done_from[l]) {
        e->done_from[l] = 1;
        e->nodes_done++;
        if (e->c.progress)
            e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
        return;
    }
    pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag, pb_eng_name(e, l));
}

static void pb_shared_handle(struct pb_engine *e, const struct pb_event *ev)
{
    switch (ev->kind) {
    case PB_EV_ARRIVED: on_arrived(e, ev); break;
    case PB_EV_SENT: on_sent(e, ev); break;
    case PB_EV_CREDIT:
        if (ev->peer != e->succ || ev->slot >= e->c.nslots || fifo_push(&e->succ_credits, ev->slot) < 0)
            pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected credit for slot %u from %s", ev->slot,
                        pb_eng_name(e, ev->peer));
        break;
    case PB_EV_NOTIFY: on_notify(e, ev); break;
    default: pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown event %d", (int)ev->kind);
    }
}

static void pb_shared_waiting_for(const struct pb_engine *e, char *out, size_t outlen)
{
    uint64_t k = 0;
    while (k < e->p->nchunks && (((e->have[k / 8] >> (k % 8)) & 1) || pb_eng_skipped(e, k)))
        k++;
    if (k < e->p->nchunks && pb_shared_reader(e->p, k) == e->c.self)
        snprintf(out, outlen, "chunk %llu of %llu to read from SOURCE, %u read buffers free",
                 (unsigned long long)k, (unsigned long long)e->p->nchunks, e->free_bufs.len);
    else if (k < e->p->nchunks)
        snprintf(out, outlen, "waiting for chunk %llu of %llu from %s (allgather)", (unsigned long long)k,
                 (unsigned long long)e->p->nchunks, pb_eng_name(e, e->pred));
    else if (!own_part_done(e))
        snprintf(out, outlen, "waiting to pass %u chunks on to %s", e->transit.len + e->inject.len + e->forwarding,
                 pb_eng_name(e, e->succ));
    else if (e->recv < 0)
        snprintf(out, outlen, "%d of %d nodes not done", members(e) - 1 - e->nodes_done, members(e) - 1);
    else
        snprintf(out, outlen, "done, waiting for the other nodes to finish (root %s)", pb_eng_name(e, e->c.root));
}

static int shared_slot_peer(const struct pb_engine *e, uint32_t s)
{
    return s < e->sh.read_slots ? -1 : e->pred;
}

static int shared_sender_leader(const struct pb_engine *e, uint64_t k)
{
    return pb_shared_sender(e->p, e->c.self, k) == PB_SELF_READ ? -1 : e->pred;
}

static void shared_free(struct pb_engine *e)
{
    (void)e; /* the engine frees the ring fields this schedule uses */
}

const struct pb_sched pb_sched_shared = {
    .name = "allgather",
    .selectable = 0, /* --source-shared chooses it, not --schedule */
    .rule_name = "ring's",
    .sender = pb_shared_sender,
    .targets = shared_targets,
    .reader = pb_shared_reader,
    .partners = shared_partners,
    .default_chunk = pb_plan_default_chunk,
    .every_node_reads = 1,
    .setup = pb_shared_setup,
    .start = pb_shared_start,
    .slot_peer = shared_slot_peer,
    .sender_leader = shared_sender_leader,
    .handle = pb_shared_handle,
    .pump = pb_shared_pump,
    .finished = pb_shared_finished,
    .waiting_for = pb_shared_waiting_for,
    .free = shared_free,
};
