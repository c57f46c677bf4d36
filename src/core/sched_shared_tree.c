/* sched_shared_tree.c — the trees fed by readers, for a SOURCE every node
 * sees (issue 22): G pairs of the two trees of sched_tree.c. Its plan (see
 * plan.h for the per-node bytes) first, then its executor.
 *
 * Why not the ring allgather (sched_shared.c) at every N: its chunks make
 * N-1 hops and the whole ring moves at the pace of its slowest member; on
 * the bed at 16 hosts it fell below the root-fed trees. Here the trees of
 * sched_tree.c carry the chunks (about log2 N hops, every node sends at
 * most F), and only their entry changes: the top of each tree reads that
 * tree's chunks itself instead of receiving them from the root, so SOURCE
 * is read at 2G nodes at once and the root is an ordinary member, which
 * reads nothing unless it sits at a top. Why G pairs: two readers read at
 * 2 rho, short of a link's B where SOURCE reads slower than the network
 * (a parallel filesystem client at 1 GB/s, 5 GB/s links); pair g carries
 * every G-th pair of chunks over the members shifted by 2g, so that its
 * two tops are two more members and, each pair being two trees of
 * sched_tree.c, a node is interior in at most one tree of each pair and
 * sends at most 2 F/2G per pair: F in all.
 *
 * The executor runs the same loop on every member: a chunk in a slot (read
 * from SOURCE into a read buffer, or arrived from the parent of its tree,
 * checked and written) is queued for each child of its tree; a child's
 * queue drains as the child grants slots; the slot is free again (a read
 * buffer for the next read, or granted back to its parent) once every
 * child's put of it completed. The slots are split in 2G classes, one per
 * tree: a tree we read gets read buffers, any other is granted to our
 * parent in it (a parent in several trees may put any of their chunks in
 * any of their slots; a slot goes back to its own class). Deadlock freedom
 * as for the trees (engine.h): each tree is acyclic and has its own slots
 * (at least one: the executor needs 2G); a slot waits only for its
 * children's credits, which they return once their own copy is written and
 * passed on. Completion: DONE counts travel up tree 0 as in sched_tree.c;
 * the top of tree 0 then holds the count of every other member and tells
 * the root (FIN) unless it is the root. A member is finished once its part
 * of tree 0 is done; the root once FIN came too.
 *
 * The executor resembles sched_tree.c's (pass_on, release, send_queued)
 * but is not shared with it: there the root has no parent, reads every
 * chunk into buffers of its own class and finishes without FIN. */
#include "engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the plan --------------------------------------------------------- */

static int members(const struct pb_plan *p)
{
    return p->nrecv + 1;
}

int pb_readtree_pairs(const struct pb_plan *p)
{
    int G = p->pairs < 1 ? 1 : p->pairs > PB_READTREE_MAX_PAIRS ? PB_READTREE_MAX_PAIRS : p->pairs;
    while (G > 1 && 2 * G > members(p))
        G--;
    return G;
}

/* Tree i = 2g + t: pair g's tree t, its members shifted by 2g. */
static int shift_of(const struct pb_plan *p, int i)
{
    return 2 * (i / 2) % members(p);
}

static int to_base(const struct pb_plan *p, int i, int m)
{
    return (m - shift_of(p, i) + members(p)) % members(p);
}

static int from_base(const struct pb_plan *p, int i, int b)
{
    return (b + shift_of(p, i)) % members(p);
}

int pb_readtree_top(const struct pb_plan *p, int i)
{
    return from_base(p, i, pb_tree_root(members(p), i % 2));
}

int pb_readtree_parent(const struct pb_plan *p, int i, int m)
{
    int up = pb_tree_parent(members(p), i % 2, to_base(p, i, m));
    return up == PB_FROM_ROOT ? PB_SELF_READ : from_base(p, i, up);
}

int pb_readtree_children(const struct pb_plan *p, int i, int m, int out[2])
{
    int n = pb_tree_children(members(p), i % 2, to_base(p, i, m), out);
    for (int j = 0; j < n; j++)
        out[j] = from_base(p, i, out[j]);
    return n;
}

int pb_readtree_depth(const struct pb_plan *p, int i, int m)
{
    return pb_tree_depth(members(p), i % 2, to_base(p, i, m)) - 1;
}

static int tree_of(const struct pb_plan *p, uint64_t k)
{
    return pb_readtree_tree_of(k, pb_readtree_pairs(p));
}

int pb_readtree_reader(const struct pb_plan *p, uint64_t k)
{
    return pb_readtree_top(p, tree_of(p, k));
}

static int rt_sender(const struct pb_plan *p, int m, uint64_t k)
{
    return pb_readtree_parent(p, tree_of(p, k), m);
}

static int rt_targets(const struct pb_plan *p, int m, uint64_t k, int out[2])
{
    return m < 0 ? 0 : pb_readtree_children(p, tree_of(p, k), m, out);
}

void pb_readtree_bytes(const struct pb_plan *p, int m, const unsigned char *skip, uint64_t *read, uint64_t *sent,
                       uint64_t *received)
{
    *read = *sent = *received = 0;
    int kids[2], nk[2 * PB_READTREE_MAX_PAIRS], G = pb_readtree_pairs(p);
    for (int i = 0; i < 2 * G; i++)
        nk[i] = pb_readtree_children(p, i, m, kids);
    for (uint64_t k = 0; k < p->nchunks; k++) {
        if (skip && ((skip[k / 8] >> (k % 8)) & 1))
            continue;
        uint64_t len = pb_plan_chunk_len(p, k);
        *(pb_readtree_reader(p, k) == m ? read : received) += len;
        *sent += len * (uint64_t)nk[tree_of(p, k)];
    }
}

int pb_readtree_choose_pairs(int nleaders, double read_rate, double link_rate, char *why, size_t whylen)
{
    /* 2G readers each read F/2G: the reads keep up with the links once
     * 2G rho >= B. The cap: every pair costs each node up to 4 partners
     * and two slot classes. */
    int G = 1, cap = nleaders / 2 < PB_READTREE_MAX_PAIRS ? nleaders / 2 : PB_READTREE_MAX_PAIRS;
    if (read_rate > 0 && link_rate > 0)
        while (G < cap && 2.0 * G * read_rate < link_rate)
            G++;
    if (why && (read_rate <= 0 || link_rate <= 0))
        snprintf(why, whylen, "%d pair of trees, 2 readers (read or link rate unknown)", G);
    else if (why)
        snprintf(why, whylen, "%d pair%s of trees, %d readers: %d x %.3g MB/s %s the links' %.3g MB/s%s", G,
                 G > 1 ? "s" : "", 2 * G, 2 * G, read_rate / 1e6, 2.0 * G * read_rate >= link_rate ? ">=" : "<",
                 link_rate / 1e6, 2.0 * G * read_rate >= link_rate ? "" : cap == nleaders / 2 ? " (2G <= nodes)"
                                                                                      : " (at most 4 pairs)");
    return G;
}

uint32_t pb_readtree_slots(uint32_t nslots, int G, uint64_t chunk)
{
    uint64_t want = 8u * (uint64_t)(G > 1 ? G : 1), fit = chunk ? PB_POOL_BUDGET / chunk : want;
    if (want > fit)
        want = fit;
    return G > 1 && want > nslots ? (uint32_t)want : nslots;
}

static double slower(double a, double b)
{
    return a > b ? a : b;
}

int pb_readtree_root_reads(int nleaders, int G, int root_leader)
{
    struct pb_plan p = { .nrecv = nleaders - 1, .pairs = G, .schedule = PB_SCHED_READTREE };
    for (int i = 0; i < 2 * pb_readtree_pairs(&p); i++)
        if (pb_readtree_top(&p, i) == root_leader)
            return 1;
    return 0;
}

int pb_shared_choose(uint64_t file_size, int nleaders, int root_leader, uint64_t chunk, double read_rate,
                     double link_rate, int root_schedule, int only, int *pairs, char *why, size_t whylen)
{
    /* Seconds, alpha = 16 us per chunk (alpha*B = 16 KiB at 1 GB/s, as in
     * pb_schedule_auto). Each mode moves at the slower of its reads and its
     * network; reading at other nodes costs the root's re-read of their
     * sample V (pb_shared_sample_budget, at the read rate), afterwards, or
     * during the transfer where the root reads nothing else (source_verify.c):
     *   root only   max(F/rho,      net(root's schedule))
     *   readtree    max(F/(2G rho), (F + (2 ceil(log2 N) + 1) c)/B + (F/c) alpha) + V/rho
     *               (the root tops no tree: max(F/(2G rho), net, V/rho))
     *   allgather   max(F/(N rho),  ((N-1)/N F + (N-1) c)/B + (F/c) alpha)      + V/rho
     * with G pairs of trees from pb_readtree_choose_pairs. The ring
     * allgather only up to 8 nodes: its ring moves at the pace of
     * its slowest member, and on the bed it lost to the trees at 16 hosts
     * (bench/README.md), as the root-fed ring does (pb_schedule_auto). A
     * parallel mode must win by 5 %: reading at other nodes is not free of
     * risk (their client caches). An unknown read rate (0) costs nothing;
     * with an unknown link rate (one machine: loopback, or an interface
     * that does not say) nothing can be weighed: the allgather up to 8
     * nodes (what it gives on one machine and the bed), the root beyond. */
    const double alpha = 16e-6, F = (double)file_size, c = (double)(chunk ? chunk : 1);
    int N = nleaders, R = N - 1;
    char gwhy[160];
    int G = pb_readtree_choose_pairs(N, read_rate, link_rate, gwhy, sizeof gwhy);
    double rho = read_rate > 0 ? read_rate : 1e30, B = link_rate > 0 ? link_rate : 1.25e9; /* B: for -v only when unknown */
    double V = F < (double)pb_shared_sample_budget(file_size) ? F : (double)pb_shared_sample_budget(file_size);
    double per_msg = F / c * alpha;
    double net_tree = (F + (2.0 * pb_ceil_log2(R > 1 ? (uint64_t)R : 1) + 1) * c) / B + per_msg;
    double net_ring = (F + (R > 1 ? R - 1 : 0) * c) / B + per_msg;
    double root = slower(F / rho, root_schedule == PB_SCHED_TREE ? net_tree : net_ring);
    double rtree = slower(F / (2 * G * rho), (F + (2.0 * pb_ceil_log2((uint64_t)N) + 1) * c) / B + per_msg);
    rtree = pb_readtree_root_reads(N, G, root_leader) ? rtree + V / rho : slower(rtree, V / rho);
    double ag = slower(F / (N * rho), (F * (N - 1) / N + (N - 1) * c) / B + per_msg) + V * (N - 1) / N / rho;
    int pick = -1;
    double best = root / 1.05;
    int ag_ok = only != PB_SCHED_READTREE && N <= 8, rtree_ok = only != PB_SCHED_SHARED;
    if (link_rate <= 0)
        pick = ag_ok ? PB_SCHED_SHARED : -1;
    else if (ag_ok && ag < best)
        pick = PB_SCHED_SHARED, best = ag;
    if (link_rate > 0 && rtree_ok && rtree < best)
        pick = PB_SCHED_READTREE;
    if (pairs)
        *pairs = G;
    if (why)
        snprintf(why, whylen, "%s: %d nodes, SOURCE read at %.3g MB/s%s, links %.3g MB/s%s: predicted %.3g s (root "
                 "reads, %s), %.3g s (readtree, %s), %s%.3g s (allgather)",
                 pick < 0 ? "root only" : pick == PB_SCHED_READTREE ? "readtree" : "allgather", N, rho / 1e6,
                 read_rate > 0 ? "" : " (not measured)", B / 1e6, link_rate > 0 ? "" : " (unknown: the allgather up to 8 nodes, else the root; figures at 10 Gbit/s)", root,
                 pb_schedule_name(root_schedule), rtree, gwhy, N <= 8 ? "" : "beyond 8 nodes never ", ag);
    return pick;
}

/* Our parent (unless we read that tree) and children in each of the 2G
 * trees; the root and tree 0's top also each other (FIN). */
static int rt_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    (void)nleaders;
    int n = 0, top0 = pb_readtree_top(p, 0);
    for (int i = 0; i < 2 * pb_readtree_pairs(p); i++) {
        int up = pb_readtree_parent(p, i, leader), kids[2], nk = pb_readtree_children(p, i, leader, kids);
        if (up != PB_SELF_READ)
            n = pb_plan_add_partner(out, n, up);
        for (int j = 0; j < nk; j++)
            n = pb_plan_add_partner(out, n, kids[j]);
    }
    if (root_leader != top0 && (leader == root_leader || leader == top0))
        n = pb_plan_add_partner(out, n, leader == top0 ? root_leader : top0);
    return n;
}

/* ---- the executor ----------------------------------------------------- */

/* The low byte of a tree DONE notice; the count of done members of the
 * sender's tree-0 subtree rides in the bits above it (as in sched_tree.c). */
#define RT_DONE_SHIFT 8u

#define RT_MAX_TREES (2 * PB_READTREE_MAX_PAIRS)
#define RT_MAX_CHILDREN (2 * RT_MAX_TREES)

struct readtree_part {
    int ntrees;                      /* 2G */
    int reads[RT_MAX_TREES];         /* we are that tree's top: we read its chunks */
    int parent[RT_MAX_TREES];        /* leader, -1 where we read */
    unsigned char *tree_of_slot;     /* per slot: its class, the tree it serves */
    int nchild;
    int child[RT_MAX_CHILDREN];      /* leaders */
    int ntarget[RT_MAX_TREES];
    int target[RT_MAX_TREES][2];     /* per tree: indices into child[] */
    struct fifo credits[RT_MAX_CHILDREN]; /* per child: its slots granted to us */
    struct fifo outq[RT_MAX_CHILDREN];    /* per child: our slots waiting for its credit */
    struct fifo bufs[RT_MAX_TREES];  /* free read buffers of a tree we read */
    uint64_t next[RT_MAX_TREES];     /* next chunk of a tree we read */
    unsigned char *sends_left;       /* per slot: puts still to complete */
    unsigned char child_done[RT_MAX_CHILDREN];
    int children_done;
    uint32_t subtree_done;           /* members of our tree-0 subtree done */
    uint32_t busy;                   /* slots holding a chunk not yet passed on to every child */
    int done;                        /* our part of tree 0 done (DONE or FIN sent) */
    int all_done;                    /* root: tree 0's top said every member is done */
};

static int tree_of_slot(const struct pb_engine *e, uint32_t s)
{
    return e->rt->tree_of_slot[s];
}

static int add_child(struct readtree_part *t, int leader)
{
    for (int c = 0; c < t->nchild; c++)
        if (t->child[c] == leader)
            return c;
    t->child[t->nchild] = leader;
    return t->nchild++;
}

static int child_index(const struct pb_engine *e, int leader)
{
    for (int c = 0; c < e->rt->nchild; c++)
        if (e->rt->child[c] == leader)
            return c;
    return -1;
}

/* The slots in 2G classes, one per tree (each carries 1/2G of the chunks);
 * a tree we read gets its class as read buffers. */
static int split_slots(struct pb_engine *e)
{
    struct readtree_part *t = e->rt;
    uint32_t S = e->c.nslots, T = (uint32_t)t->ntrees;
    t->tree_of_slot = malloc(S);
    if (!t->tree_of_slot)
        return -1;
    for (uint32_t s = 0; s < S; s++)
        t->tree_of_slot[s] = (unsigned char)((uint64_t)s * T / S);
    for (int tree = 0; tree < t->ntrees; tree++)
        if (t->reads[tree] && fifo_init(&t->bufs[tree], S))
            return -1;
    for (uint32_t s = 0; s < S; s++)
        if (t->reads[t->tree_of_slot[s]])
            fifo_push(&t->bufs[t->tree_of_slot[s]], s);
    return 0;
}

static int rt_setup(struct pb_engine *e, char *err, size_t errlen)
{
    const struct pb_plan *p = e->p;
    int N = members(p), me = e->c.self, G = pb_readtree_pairs(p);
    if (e->c.nleaders != N) {
        snprintf(err, errlen, "engine: reader-fed trees over %d nodes but %d leaders", N, e->c.nleaders);
        return -1;
    }
    if (e->c.nslots < 2u * (uint32_t)G) {
        snprintf(err, errlen, "engine: %d pairs of reader-fed trees need %d slots, not %u", G, 2 * G, e->c.nslots);
        return -1;
    }
    struct readtree_part *t = e->rt = calloc(1, sizeof *e->rt);
    if (!t)
        return -1;
    t->ntrees = 2 * G;
    for (int tree = 0; tree < t->ntrees; tree++) {
        int up = pb_readtree_parent(p, tree, me), kids[2], nk = pb_readtree_children(p, tree, me, kids);
        t->reads[tree] = up == PB_SELF_READ;
        t->parent[tree] = t->reads[tree] ? -1 : up;
        t->next[tree] = (uint64_t)tree; /* chunk 2g + t is tree 2g + t's first */
        for (int i = 0; i < nk; i++)
            t->target[tree][t->ntarget[tree]++] = add_child(t, kids[i]);
    }
    t->sends_left = calloc(e->c.nslots, 1);
    if (!t->sends_left || split_slots(e) < 0 || pb_eng_chunk_map(e) < 0)
        return -1;
    for (int c = 0; c < t->nchild; c++)
        if (fifo_init(&t->credits[c], e->c.nslots) || fifo_init(&t->outq[c], e->c.nslots))
            return -1;
    return 0;
}

static void rt_free(struct pb_engine *e)
{
    struct readtree_part *t = e->rt;
    if (!t)
        return;
    for (int c = 0; c < RT_MAX_CHILDREN; c++) {
        free(t->credits[c].v);
        free(t->outq[c].v);
    }
    for (int tree = 0; tree < RT_MAX_TREES; tree++)
        free(t->bufs[tree].v);
    free(t->sends_left);
    free(t->tree_of_slot);
    free(t);
    e->rt = NULL;
}

/* Grant every slot of a tree we do not read to its parent. */
static void rt_start(struct pb_engine *e)
{
    for (uint32_t s = 0; s < e->c.nslots && !e->err; s++)
        if (!e->rt->reads[tree_of_slot(e, s)])
            pb_eng_grant(e, s);
}

/* Chunk k is ours now (read or arrived): mark it, count it for progress. */
static void held(struct pb_engine *e, uint64_t k)
{
    e->have[k / 8] |= (unsigned char)(1u << (k % 8));
    e->sent_bytes += pb_plan_chunk_len(e->p, k); /* progress: bytes this node holds */
    if (e->c.progress)
        e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
}

/* Every child's put of slot s completed: free it for the next chunk. */
static void release(struct pb_engine *e, uint32_t s)
{
    int tree = tree_of_slot(e, s); /* a parent in several trees puts any of their chunks in any of their slots */
    e->rt->busy--;
    if ((int64_t)e->chunk_of[s] == e->c.corrupt_chunk && e->rt->ntarget[tree_of(e->p, e->chunk_of[s])])
        pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* undo: our own copy was written before */
    if (e->rt->reads[tree]) {
        e->state[s] = SLOT_IDLE;
        fifo_push(&e->rt->bufs[tree], s);
    } else {
        pb_eng_grant(e, s);
    }
}

/* Slot s holds chunk k: queue it for each child of k's tree. */
static void pass_on(struct pb_engine *e, uint32_t s, uint64_t k)
{
    struct readtree_part *t = e->rt;
    int tree = tree_of(e->p, k), n = t->ntarget[tree];
    e->state[s] = SLOT_BUSY;
    t->busy++;
    t->sends_left[s] = (unsigned char)n;
    if (n == 0) {
        release(e, s);
        return;
    }
    if ((int64_t)k == e->c.corrupt_chunk)
        pb_eng_slot_mem(e, s)[0] ^= 0x5a; /* test-only fault injection, see --help of the test suite */
    for (int i = 0; i < n; i++)
        fifo_push(&t->outq[t->target[tree][i]], s);
}

/* The trees we top: read their chunks into free read buffers. */
static void read_own(struct pb_engine *e)
{
    struct readtree_part *t = e->rt;
    for (int tree = 0; tree < t->ntrees; tree++) {
        while (t->reads[tree] && !e->err && t->bufs[tree].len && t->next[tree] < e->p->nchunks) {
            uint64_t k = t->next[tree];
            t->next[tree] += (uint64_t)t->ntrees;
            if (pb_eng_skipped(e, k))
                continue;
            uint32_t b = fifo_pop(&t->bufs[tree]);
            if (pb_eng_root_load(e, b, k) < 0)
                return;
            e->received++;
            held(e, k);
            pass_on(e, b, k);
        }
    }
}

static void send_queued(struct pb_engine *e)
{
    struct readtree_part *t = e->rt;
    for (int c = 0; c < t->nchild; c++)
        while (!e->err && t->outq[c].len && t->credits[c].len)
            pb_eng_put(e, t->child[c], fifo_pop(&t->credits[c]), fifo_pop(&t->outq[c]));
}

/* Every chunk here, every put completed, every tree-0 child done. */
static int part_done(const struct pb_engine *e)
{
    const struct readtree_part *t = e->rt;
    return e->received + e->nskip == e->p->nchunks && t->busy == 0 && t->children_done == t->ntarget[0];
}

/* Our part of tree 0 is done: say so to our tree-0 parent, or, at its
 * top, tell the root that every member is. */
static void report_done(struct pb_engine *e)
{
    struct readtree_part *t = e->rt;
    t->done = 1;
    if (!t->reads[0]) {
        uint32_t code = PB_NOTIFY_TREE_DONE | (t->subtree_done + 1) << RT_DONE_SHIFT;
        if (e->c.tp->ops->notify(e->c.tp, t->parent[0], code) < 0)
            pb_eng_fail(e, PB_EE_PEER, "cannot tell %s that our part of tree 0 is done: %s",
                        pb_eng_name(e, t->parent[0]), strerror(errno));
        return;
    }
    e->nodes_done = (int)t->subtree_done;
    if (e->recv < 0)
        t->all_done = 1;
    else if (e->c.tp->ops->notify(e->c.tp, e->c.root, PB_NOTIFY_FIN) < 0)
        pb_eng_fail(e, PB_EE_PEER, "cannot tell the root %s that every node is done: %s",
                    pb_eng_name(e, e->c.root), strerror(errno));
}

static void rt_pump(struct pb_engine *e)
{
    read_own(e);
    send_queued(e);
    if (!e->err && !e->rt->done && part_done(e))
        report_done(e);
}

static int rt_finished(const struct pb_engine *e)
{
    return e->rt->done && (e->recv >= 0 || e->rt->all_done);
}

static int is_tree0_child(const struct pb_engine *e, int c)
{
    for (int i = 0; i < e->rt->ntarget[0]; i++)
        if (e->rt->target[0][i] == c)
            return 1;
    return 0;
}

static void on_sent(struct pb_engine *e, const struct pb_event *ev)
{
    uint32_t s = (uint32_t)ev->cookie;
    if (s >= e->c.nslots || e->state[s] != SLOT_BUSY || !e->rt->sends_left[s]) {
        pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown send (cookie %llu)",
                    (unsigned long long)ev->cookie);
        return;
    }
    if (--e->rt->sends_left[s] == 0)
        release(e, s);
}

static void on_credit(struct pb_engine *e, const struct pb_event *ev)
{
    int c = child_index(e, ev->peer);
    if (c < 0 || ev->slot >= e->c.nslots || fifo_push(&e->rt->credits[c], ev->slot) < 0)
        pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected credit for slot %u from %s", ev->slot,
                    pb_eng_name(e, ev->peer));
}

static void on_notify(struct pb_engine *e, const struct pb_event *ev)
{
    struct readtree_part *t = e->rt;
    if (ev->tag == PB_NOTIFY_FIN) {
        if (e->recv >= 0 || t->all_done || ev->peer != pb_readtree_top(e->p, 0))
            goto bad;
        t->all_done = 1;
        e->nodes_done = e->p->nrecv;
        if (e->c.progress)
            e->c.progress(e->c.progress_ctx, e->sent_bytes, e->nodes_done);
        return;
    }
    int c = child_index(e, ev->peer);
    uint32_t count = ev->tag >> RT_DONE_SHIFT;
    if ((ev->tag & 0xffu) != PB_NOTIFY_TREE_DONE || c < 0 || !is_tree0_child(e, c) || t->child_done[c] ||
        count == 0 || count > (uint32_t)e->p->nrecv)
        goto bad;
    t->child_done[c] = 1;
    t->children_done++;
    t->subtree_done += count;
    return;
bad:
    pb_eng_fail(e, PB_EE_DATA, "protocol error: unexpected notice %u from %s", ev->tag, pb_eng_name(e, ev->peer));
}

static void rt_handle(struct pb_engine *e, const struct pb_event *ev)
{
    uint64_t k;
    switch (ev->kind) {
    case PB_EV_ARRIVED:
        if (pb_eng_accept(e, ev, &k) == 0) {
            held(e, k);
            pass_on(e, ev->slot, k);
        }
        break;
    case PB_EV_SENT: on_sent(e, ev); break;
    case PB_EV_CREDIT: on_credit(e, ev); break;
    case PB_EV_NOTIFY: on_notify(e, ev); break;
    default: pb_eng_fail(e, PB_EE_INTERNAL, "transport reported an unknown event %d", (int)ev->kind);
    }
}

static void rt_waiting_for(const struct pb_engine *e, char *out, size_t outlen)
{
    const struct readtree_part *t = e->rt;
    uint64_t k = 0;
    while (k < e->p->nchunks && (((e->have[k / 8] >> (k % 8)) & 1) || pb_eng_skipped(e, k)))
        k++;
    int tree = k < e->p->nchunks ? tree_of(e->p, k) : 0;
    if (k < e->p->nchunks && t->reads[tree]) {
        snprintf(out, outlen, "chunk %llu of %llu to read from SOURCE (tree %d of %d), %u read buffers free",
                 (unsigned long long)k, (unsigned long long)e->p->nchunks, tree, t->ntrees, t->bufs[tree].len);
        return;
    }
    if (k < e->p->nchunks) {
        snprintf(out, outlen, "waiting for chunk %llu of %llu from %s (tree %d of %d, fed by readers)",
                 (unsigned long long)k, (unsigned long long)e->p->nchunks, pb_eng_name(e, t->parent[tree]), tree,
                 t->ntrees);
        return;
    }
    for (int c = 0; c < t->nchild; c++)
        if (t->outq[c].len || (is_tree0_child(e, c) && !t->child_done[c])) {
            snprintf(out, outlen, "%s: %u chunks to pass on, %u credits, %s", pb_eng_name(e, t->child[c]),
                     t->outq[c].len, t->credits[c].len,
                     t->outq[c].len ? "waiting for its credits" : "its part of tree 0 not done");
            return;
        }
    if (t->done && !t->all_done && e->recv < 0)
        snprintf(out, outlen, "waiting for %s (top of tree 0) to say every node is done",
                 pb_eng_name(e, pb_readtree_top(e->p, 0)));
    else
        snprintf(out, outlen, "%u sends outstanding", t->busy);
}

static int rt_slot_peer(const struct pb_engine *e, uint32_t s)
{
    return e->rt->parent[tree_of_slot(e, s)];
}

static int rt_sender_leader(const struct pb_engine *e, uint64_t k)
{
    return e->rt->parent[tree_of(e->p, k)];
}

const struct pb_sched pb_sched_readtree = {
    .name = "readtree",
    .selectable = 0, /* --source-shared chooses it, not --schedule */
    .rule_name = "trees'",
    .sender = rt_sender,
    .targets = rt_targets,
    .partners = rt_partners,
    .reader = pb_readtree_reader,
    .default_chunk = pb_plan_default_chunk_tree,
    .every_node_reads = 1,
    .setup = rt_setup,
    .start = rt_start,
    .slot_peer = rt_slot_peer,
    .sender_leader = rt_sender_leader,
    .handle = rt_handle,
    .pump = rt_pump,
    .finished = rt_finished,
    .waiting_for = rt_waiting_for,
    .free = rt_free,
};
