/* sched_tree.c — the two-tree schedule (Sanders, Speck, Träff 2009: "Two-tree
 * algorithms for full bandwidth broadcast, reduction and scan"); see plan.h;
 * its plan first, then its executor.
 *
 * Both trees have the same shape: an in-order binary tree over positions
 * 1..n (n = receivers) where the root of a range [lo, hi] is the position in
 * it with the most trailing zero bits, and its children are the roots of
 * [lo, p-1] and [p+1, hi]. Odd positions are always leaves: an odd p can be
 * the root of a range only if neither neighbour (both even, with more
 * trailing zeros) is in it. Even positions are always interior: the range
 * an even p roots starts below p (the range [1, n] starts at 1, and any
 * other range starts just above an ancestor q < p with more trailing zeros
 * than every position between, so p-1, odd, is in it).
 *
 * Tree 0 puts receiver i at position i+1; tree 1 at ((i+1) mod n)+1, a
 * cyclic shift by one. A receiver interior in tree 1 sits at an even
 * position q, so it is receiver q-2, which tree 0 puts at the odd position
 * q-1: a leaf. So no receiver is interior in both trees, and every node
 * passes on at most its half of the chunks, twice: F bytes in all.
 *
 * The root of [1, n] is the largest power of two 2^b <= n, and each
 * subrange's root has fewer trailing zeros than its parent, so the height is
 * at most b+1 = floor(log2 n)+1 levels: a chunk makes at most
 * ceil(log2 n)+1 hops from the root (tests/test_plan.c checks it).
 *
 * Lookups walk down from [1, n]: O(log^2 n) each, pure. The engine and the
 * model look up their neighbours once.
 *
 * The executor: see engine.h for its flow control, completion and
 * deadlock-freedom argument. The root and the receivers run the same loop: a chunk in a slot (the
 * root: read from SOURCE; a receiver: arrived, checked and written) is
 * queued for each of its tree's children; a child's queue drains as that
 * child grants slots; the slot is free again (the root: a read buffer; a
 * receiver: granted back to the parent it belongs to) once every child's
 * put of it completed. */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the plan --------------------------------------------------------- */

/* The position in [lo, hi] (1 <= lo <= hi) with the most trailing zeros:
 * unique, since between two multiples of 2^b lies a multiple of 2^(b+1). */
static int range_root(int lo, int hi)
{
    for (int b = 30; b > 0; b--) {
        int m = (hi >> b) << b;
        if (m >= lo)
            return m;
    }
    return hi;
}

/* Walk from [1, n] down to pos: its parent position (0 for the tree's root)
 * and the range pos roots. */
static int find_pos(int n, int pos, int *lo_out, int *hi_out)
{
    int lo = 1, hi = n, parent = 0;
    for (;;) {
        int m = range_root(lo, hi);
        if (m == pos)
            break;
        parent = m;
        if (pos < m)
            hi = m - 1;
        else
            lo = m + 1;
    }
    *lo_out = lo;
    *hi_out = hi;
    return parent;
}

static int position_of(int n, int t, int r)
{
    return t == 0 ? r + 1 : (r + 1) % n + 1;
}

static int receiver_at(int n, int t, int pos)
{
    return t == 0 ? pos - 1 : (pos - 2 + n) % n;
}

int pb_tree_root(int nrecv, int t)
{
    return nrecv > 0 ? receiver_at(nrecv, t, range_root(1, nrecv)) : -1;
}

int pb_tree_parent(int nrecv, int t, int r)
{
    int lo, hi;
    int up = find_pos(nrecv, position_of(nrecv, t, r), &lo, &hi);
    return up ? receiver_at(nrecv, t, up) : PB_FROM_ROOT;
}

int pb_tree_children(int nrecv, int t, int r, int out[2])
{
    if (nrecv <= 0)
        return 0;
    if (r == PB_FROM_ROOT) {
        out[0] = pb_tree_root(nrecv, t);
        return 1;
    }
    int lo, hi, pos = position_of(nrecv, t, r), n = 0;
    find_pos(nrecv, pos, &lo, &hi);
    if (lo < pos)
        out[n++] = receiver_at(nrecv, t, range_root(lo, pos - 1));
    if (pos < hi)
        out[n++] = receiver_at(nrecv, t, range_root(pos + 1, hi));
    return n;
}

int pb_tree_depth(int nrecv, int t, int r)
{
    int lo = 1, hi = nrecv, pos = position_of(nrecv, t, r), hops = 1;
    for (int m = range_root(lo, hi); m != pos; m = range_root(lo, hi), hops++) {
        if (pos < m)
            hi = m - 1;
        else
            lo = m + 1;
    }
    return hops;
}

/* The plan's shape. With tree_hang (R even, placement.h): the trees over
 * receivers 0..R-2, whose count is odd, so that receiver R-2 is a leaf in
 * both (tree 0 puts it at the odd position R-1, tree 1 at position 1);
 * receiver R-1 hangs below it in both trees. R-2 then passes on every
 * chunk once, F bytes like any interior node, and R-1 passes on nothing:
 * the place for the slowest sender. Depth: R-1 is one hop below a leaf of
 * R-1 receivers' trees, within ceil(log2 R)+1 hops (R even). */
static int hangs(const struct pb_plan *p)
{
    return p->tree_hang && p->nrecv >= 2 && p->nrecv % 2 == 0;
}

int pb_plan_tree_root(const struct pb_plan *p, int t)
{
    return pb_tree_root(hangs(p) ? p->nrecv - 1 : p->nrecv, t);
}

int pb_plan_tree_parent(const struct pb_plan *p, int t, int r)
{
    if (!hangs(p))
        return pb_tree_parent(p->nrecv, t, r);
    return r == p->nrecv - 1 ? p->nrecv - 2 : pb_tree_parent(p->nrecv - 1, t, r);
}

int pb_plan_tree_children(const struct pb_plan *p, int t, int r, int out[2])
{
    if (!hangs(p))
        return pb_tree_children(p->nrecv, t, r, out);
    if (r == p->nrecv - 1)
        return 0;
    if (r == p->nrecv - 2) {
        out[0] = p->nrecv - 1;
        return 1;
    }
    return pb_tree_children(p->nrecv - 1, t, r, out);
}

int pb_plan_tree_depth(const struct pb_plan *p, int t, int r)
{
    if (!hangs(p))
        return pb_tree_depth(p->nrecv, t, r);
    return r == p->nrecv - 1 ? pb_tree_depth(p->nrecv - 1, t, r - 1) + 1 : pb_tree_depth(p->nrecv - 1, t, r);
}

uint64_t pb_plan_default_chunk_tree(uint64_t file_size, int nrecv, double alpha_b)
{
    /* A chunk crosses ceil(log2 R) levels and every interior node sends it
     * twice: the pipeline fills in about 2*ceil(log2 R)*c/B, the rule's
     * hops. */
    int levels = pb_ceil_log2(nrecv > 1 ? (uint64_t)nrecv : 2);
    return pb_plan_rule_chunk(file_size, 2.0 * levels, alpha_b);
}

static int tree_sender(const struct pb_plan *p, int r, uint64_t k)
{
    return pb_plan_tree_parent(p, pb_tree_of_chunk(k), r);
}

static int tree_targets(const struct pb_plan *p, int r, uint64_t k, int out[2])
{
    return pb_plan_tree_children(p, pb_tree_of_chunk(k), r, out);
}

/* A receiver's partners: both parents, its children; the root's: the two
 * tree roots. */
static int tree_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    int r = pb_plan_receiver_of(p, root_leader, nleaders, leader);
    if (r < 0)
        r = PB_FROM_ROOT;
    int n = 0;
    for (int t = 0; t < PB_TREES; t++) {
        int up = r == PB_FROM_ROOT ? PB_FROM_ROOT : pb_plan_tree_parent(p, t, r);
        if (r != PB_FROM_ROOT)
            n = pb_plan_add_partner(out, n, up == PB_FROM_ROOT ? root_leader : pb_plan_leader_of(p, root_leader, nleaders, up));
        int kids[2], nk = pb_plan_tree_children(p, t, r, kids);
        for (int i = 0; i < nk; i++)
            n = pb_plan_add_partner(out, n, pb_plan_leader_of(p, root_leader, nleaders, kids[i]));
    }
    return n;
}

/* ---- the executor ----------------------------------------------------- */

/* The low byte of a tree DONE notice; the count of done nodes of the
 * sender's tree-0 subtree rides in the bits above it. */
#define TREE_DONE_SHIFT 8u

static int child_index(const struct pb_engine *e, int leader)
{
    for (int c = 0; c < e->tr.nchild; c++)
        if (e->tr.child[c] == leader)
            return c;
    return -1;
}

static int add_child(struct tree_part *t, int leader)
{
    for (int c = 0; c < t->nchild; c++)
        if (t->child[c] == leader)
            return c;
    t->child[t->nchild] = leader;
    return t->nchild++;
}

/* Our parents, children and per-tree targets, looked up once; the root's
 * read buffers or a receiver's map of chunks held. */
static int pb_tree_setup(struct pb_engine *e, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct tree_part *t = &e->tr;
    const struct pb_plan *p = e->p;
    int me = e->recv < 0 ? PB_FROM_ROOT : e->recv;
    for (int tree = 0; tree < PB_TREES; tree++) {
        if (e->recv >= 0) {
            int up = pb_plan_tree_parent(p, tree, e->recv);
            t->parent[tree] = up == PB_FROM_ROOT ? e->c.root : pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, up);
        }
        int kids[2], nk = pb_plan_tree_children(p, tree, me, kids);
        for (int i = 0; i < nk; i++)
            t->target[tree][t->ntarget[tree]++] =
                add_child(t, pb_plan_leader_of(e->p, e->c.root, e->c.nleaders, kids[i]));
    }
    /* Half the slots per parent: each tree carries half the chunks. */
    t->split = e->c.nslots / 2;
    t->sends_left = calloc(e->c.nslots, 1);
    if (!t->sends_left || (e->recv < 0 ? pb_eng_root_buffers(e) : pb_eng_chunk_map(e)) < 0)
        return -1;
    for (int c = 0; c < t->nchild; c++)
        if (fifo_init(&t->credits[c], e->c.nslots) || fifo_init(&t->outq[c], e->c.nslots))
            return -1;
    return 0;
}

static void pb_tree_free(struct pb_engine *e)
{
    for (int c = 0; c < 2; c++) {
        free(e->tr.credits[c].v);
        free(e->tr.outq[c].v);
    }
    free(e->tr.sends_left);
}

/* Every child's put of slot s completed: free it for the next chunk. */
static void release(struct pb_engine *e, uint32_t s)
{
    e->tr.busy--;
    if (e->recv >= 0) {
        if ((int64_t)e->chunk_of[s] == e->c.corrupt_chunk)
            pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* undo: our own copy was written before */
        pb_eng_grant(e, s);
        return;
    }
    e->state[s] = SLOT_IDLE;
    e->sent_bytes += e->len_of[s] - PB_TRAILER_SIZE;
    fifo_push(&e->free_bufs, s);
    if (e->c.progress)
        e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
}

/* Slot s holds chunk k: queue it for each child of k's tree. */
static void pass_on(struct pb_engine *e, uint32_t s, uint64_t k)
{
    int tree = pb_tree_of_chunk(k), n = e->tr.ntarget[tree];
    e->state[s] = SLOT_BUSY;
    e->tr.busy++;
    e->tr.sends_left[s] = (unsigned char)n;
    if (n == 0) {
        release(e, s);
        return;
    }
    if (e->recv >= 0 && (int64_t)k == e->c.corrupt_chunk)
        pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* test-only fault injection, see --help of the test suite */
    for (int i = 0; i < n; i++)
        fifo_push(&e->tr.outq[e->tr.target[tree][i]], s);
}

static void root_read(struct pb_engine *e)
{
    while (!e->err && e->free_bufs.len && e->next_read < e->p->nchunks) {
        if (pb_eng_skipped(e, e->next_read)) {
            e->next_read++;
            continue;
        }
        uint32_t b = fifo_pop(&e->free_bufs);
        uint64_t k = e->next_read;
        if (pb_eng_root_load(e, b, k) < 0)
            return;
        pass_on(e, b, k);
    }
}

static void send_queued(struct pb_engine *e)
{
    for (int c = 0; c < e->tr.nchild; c++)
        while (!e->err && e->tr.outq[c].len && e->tr.credits[c].len)
            pb_eng_put(e, e->tr.child[c], fifo_pop(&e->tr.credits[c]), fifo_pop(&e->tr.outq[c]));
}

/* Every chunk here, every put completed, every tree-0 child done. */
static int subtree_done(const struct pb_engine *e)
{
    int all_here = e->recv < 0 ? e->next_read == e->p->nchunks
                               : e->received + e->nskip == e->p->nchunks;
    return all_here && e->tr.busy == 0 && e->tr.children_done == e->tr.ntarget[0];
}

static void pb_tree_pump(struct pb_engine *e)
{
    if (e->recv < 0)
        root_read(e);
    send_queued(e);
    if (e->err || e->tr.done || !subtree_done(e))
        return;
    e->tr.done = 1;
    if (e->recv < 0)
        return;
    /* Up tree 0 only: see engine.h for why not both trees. */
    uint32_t code = PB_NOTIFY_TREE_DONE | (e->tr.subtree_done + 1) << TREE_DONE_SHIFT;
    if (e->c.tp->ops->notify(e->c.tp, e->tr.parent[0], code) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot tell %s that our part of tree 0 is done: %s",
                    pb_eng_name(e, e->tr.parent[0]), strerror(errno));
}

static int is_tree0_child(const struct pb_engine *e, int c)
{
    for (int i = 0; i < e->tr.ntarget[0]; i++)
        if (e->tr.target[0][i] == c)
            return 1;
    return 0;
}

static int pb_tree_finished(const struct pb_engine *e)
{
    return e->tr.done;
}

static void on_arrived(struct pb_engine *e, const struct pb_event *ev)
{
    uint64_t k;
    if (pb_eng_accept(e, ev, &k) == 0)
        pass_on(e, ev->slot, k);
}

static void on_sent(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = (uint32_t)ev->cookie;
    if (s >= e->c.nslots || e->state[s] != SLOT_BUSY || !e->tr.sends_left[s]) {
        pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown send (cookie %llu)",
                    (unsigned long long)ev->cookie);
        return;
    }
    if (--e->tr.sends_left[s] == 0)
        release(e, s);
}

static void on_credit(struct pb_engine *e, const struct pb_event *ev)
{
    int c = child_index(e, ev->peer);
    if (c < 0 || ev->slot >= e->c.nslots || fifo_push(&e->tr.credits[c], ev->slot) < 0)
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected credit for slot %u from %s", ev->slot,
                    pb_eng_name(e, ev->peer));
}

static void on_notify(struct pb_engine *e, const struct pb_event *ev)
{
    int c = child_index(e, ev->peer);
    uint32_t count = ev->tag >> TREE_DONE_SHIFT;
    if ((ev->tag & 0xffu) != PB_NOTIFY_TREE_DONE || c < 0 || !is_tree0_child(e, c) || e->tr.child_done[c] ||
        count == 0 || count > (uint32_t)e->p->nrecv) {
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag,
                    pb_eng_name(e, ev->peer));
        return;
    }
    e->tr.child_done[c] = 1;
    e->tr.children_done++;
    e->tr.subtree_done += count;
    if (e->recv < 0) {
        e->nodes_done = (int)e->tr.subtree_done;
        if (e->c.progress)
            e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
    }
}

static void pb_tree_handle(struct pb_engine *e, const struct pb_event *ev)
{
    switch (ev->kind) {
    case PB_EV_ARRIVED:
        if (e->recv < 0)
            pb_eng_fail(e, PB_EE_DATA, "protocol error: %s sent data to the root", pb_eng_name(e, ev->peer));
        else
            on_arrived(e, ev);
        break;
    case PB_EV_SENT: on_sent(e, ev); break;
    case PB_EV_CREDIT: on_credit(e, ev); break;
    case PB_EV_NOTIFY: on_notify(e, ev); break;
    default: pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown event %d", (int)ev->kind);
    }
}

static void pb_tree_waiting_for(const struct pb_engine *e, char *out, size_t outlen)
{
    uint64_t k = 0;
    while (e->recv >= 0 && k < e->p->nchunks && (((e->have[k / 8] >> (k % 8)) & 1) || pb_eng_skipped(e, k)))
        k++;
    if (e->recv >= 0 && k < e->p->nchunks) {
        snprintf(out, outlen, "waiting for chunk %llu of %llu from %s (tree %d)", (unsigned long long)k,
                 (unsigned long long)e->p->nchunks, pb_eng_name(e, e->tr.parent[pb_tree_of_chunk(k)]), (int)(k & 1));
        return;
    }
    for (int c = 0; c < e->tr.nchild; c++) {
        if (e->tr.outq[c].len || (is_tree0_child(e, c) && !e->tr.child_done[c])) {
            snprintf(out, outlen, "%s: %u chunks to pass on, %u credits, %s", pb_eng_name(e, e->tr.child[c]),
                     e->tr.outq[c].len, e->tr.credits[c].len,
                     e->tr.outq[c].len ? "waiting for its credits" : "its part of tree 0 not done");
            return;
        }
    }
    snprintf(out, outlen, "%u sends outstanding", e->tr.busy);
}

static int tree_slot_peer(const struct pb_engine *e, uint32_t s)
{
    return e->tr.parent[s < e->tr.split ? 0 : 1];
}

static int tree_sender_leader(const struct pb_engine *e, uint64_t k)
{
    return e->tr.parent[pb_tree_of_chunk(k)];
}

const struct pb_sched pb_sched_tree = {
    .name = "tree",
    .selectable = 1,
    .rule_name = "trees'",
    .sender = tree_sender,
    .targets = tree_targets,
    .partners = tree_partners,
    .default_chunk = pb_plan_default_chunk_tree,
    .setup = pb_tree_setup,
    .start = pb_eng_grant_all,
    .slot_peer = tree_slot_peer,
    .sender_leader = tree_sender_leader,
    .handle = pb_tree_handle,
    .pump = pb_tree_pump,
    .finished = pb_tree_finished,
    .waiting_for = pb_tree_waiting_for,
    .free = pb_tree_free,
};
