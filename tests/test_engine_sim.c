/* test_engine_sim.c — many engines in one process over a simulated network.
 *
 * A fake transport delivers every message in a random order across links
 * (in order within a link, as TCP, RC queue pairs and MPI do) and checks
 * that nobody writes into a slot it was not granted. Each node's copy must
 * equal SOURCE, the manifests must agree, and no run may stall: this is
 * where deadlocks in the credit scheme would show. */
#include "digest.h"
#include "engine.h"
#include "placement.h"
#include "tap.h"
#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { M_DATA, M_CREDIT, M_NOTIFY };

struct msg {
    int kind, from, to;
    uint32_t slot, tag, len;
    const unsigned char *buf;
    uint64_t cookie;
    struct msg *next;
};

struct node;
struct sim {
    int n;
    struct node *nodes;
    struct msg **head, **tail; /* per link (from*n+to) FIFO */
    uint64_t inflight;
    int violations;
    uint64_t slow_data; /* data messages the slow node sent */
};

/* One slow link direction: what slow_node sends is delivered at a quarter
 * of the others' pace (-1: none). With `placed`, run() gives the trees the
 * order placement.h makes from those rates. */
static int slow_node = -1, placed;

struct fake {
    struct pb_transport base;
    struct sim *sim;
    int self;
};

struct node {
    struct fake tp;
    struct pb_engine *e;
    unsigned char *pool;
    unsigned char *copy;
    int *owner; /* our slot -> peer granted */
    struct pb_event *evq;
    int evlen, evcap;
};

static void push(struct sim *s, struct msg m)
{
    struct msg *x = malloc(sizeof *x);
    *x = m;
    x->next = NULL;
    int l = m.from * s->n + m.to;
    if (s->tail[l])
        s->tail[l]->next = x;
    else
        s->head[l] = x;
    s->tail[l] = x;
    s->inflight++;
}

static void add_ev(struct node *nd, struct pb_event ev)
{
    if (nd->evlen == nd->evcap) {
        nd->evcap = nd->evcap ? nd->evcap * 2 : 64;
        nd->evq = realloc(nd->evq, (size_t)nd->evcap * sizeof *nd->evq);
    }
    nd->evq[nd->evlen++] = ev;
}

static int f_put(struct pb_transport *t, int peer, uint32_t slot, uint32_t tag, const void *buf, uint32_t len,
                 uint64_t cookie)
{
    struct fake *f = (struct fake *)t;
    push(f->sim, (struct msg){ M_DATA, f->self, peer, slot, tag, len, buf, cookie, NULL });
    return 0;
}
static int f_grant(struct pb_transport *t, int peer, uint32_t slot)
{
    struct fake *f = (struct fake *)t;
    f->sim->nodes[f->self].owner[slot] = peer;
    push(f->sim, (struct msg){ M_CREDIT, f->self, peer, slot, 0, 0, NULL, 0, NULL });
    return 0;
}
static int f_notify(struct pb_transport *t, int peer, uint32_t code)
{
    struct fake *f = (struct fake *)t;
    push(f->sim, (struct msg){ M_NOTIFY, f->self, peer, 0, code, 0, NULL, 0, NULL });
    return 0;
}
static int f_poll(struct pb_transport *t, struct pb_event *ev, int max, int ms)
{
    (void)t, (void)ev, (void)max, (void)ms;
    return 0;
}
static int f_close(struct pb_transport *t) { (void)t; return 0; }
static const struct pb_transport_ops fake_ops = { "fake", f_put, f_grant, f_notify, f_poll, f_close };

/* Deliver one message from a random non-empty link. */
static int deliver_one(struct sim *s, size_t slot_size)
{
    if (!s->inflight)
        return 0;
    int nl = s->n * s->n, l = rand() % nl;
    while (!s->head[l])
        l = (l + 1) % nl;
    if (l / s->n == slow_node && rand() % 4) { /* three times in four: another link, if any has something */
        int other = (l + 1) % nl;
        while (other != l && (!s->head[other] || other / s->n == slow_node))
            other = (other + 1) % nl;
        l = other;
    }
    struct msg *m = s->head[l];
    s->head[l] = m->next;
    if (!s->head[l])
        s->tail[l] = NULL;
    s->inflight--;
    struct node *to = &s->nodes[m->to], *from = &s->nodes[m->from];
    if (m->kind == M_DATA) {
        s->slow_data += m->from == slow_node;
        if (to->owner[m->slot] != m->from || m->len > slot_size)
            s->violations++;
        to->owner[m->slot] = -1;
        memcpy(to->pool + m->slot * slot_size, m->buf, m->len);
        add_ev(to, (struct pb_event){ .kind = PB_EV_ARRIVED, .peer = m->from, .slot = m->slot, .tag = m->tag,
                                      .len = m->len });
        add_ev(from, (struct pb_event){ .kind = PB_EV_SENT, .peer = m->to, .cookie = m->cookie });
    } else if (m->kind == M_CREDIT) {
        add_ev(to, (struct pb_event){ .kind = PB_EV_CREDIT, .peer = m->from, .slot = m->slot });
    } else {
        add_ev(to, (struct pb_event){ .kind = PB_EV_NOTIFY, .peer = m->from, .tag = m->tag });
    }
    free(m);
    return 1;
}

struct io {
    const unsigned char *src;
    unsigned char *dst;
};
static int io_read(void *c, uint64_t off, void *buf, size_t len, char *err, size_t n)
{
    (void)err, (void)n;
    memcpy(buf, ((struct io *)c)->src + off, len);
    return 0;
}
static int io_write(void *c, uint64_t off, const void *buf, size_t len, char *err, size_t n)
{
    (void)err, (void)n;
    memcpy(((struct io *)c)->dst + off, buf, len);
    return 0;
}

/* Run one simulated broadcast. Returns 1 when every copy is right. */
static int sched = PB_SCHED_RING; /* the schedule run() uses */
static int pairs = 1;             /* and the reader-fed trees' G */

static int run(int L, int root, uint64_t size, uint64_t chunk, uint32_t nslots, unsigned seed, int64_t corrupt_at,
               int corrupt_node, char *why, size_t whylen)
{
    srand(seed);
    struct pb_plan plan;
    char err[256];
    if (pb_plan_init(&plan, size, chunk, L - 1, err, sizeof err)) {
        snprintf(why, whylen, "plan: %s", err);
        return 0;
    }
    plan.schedule = sched;
    plan.pairs = pairs;
    int *order = calloc((size_t)L, sizeof *order), hang = 0;
    if (placed && slow_node >= 0) {
        uint64_t *rate = calloc((size_t)L, sizeof *rate);
        for (int i = 0; i < L; i++)
            rate[i] = i == slow_node ? 25 : 100;
        if (pb_place(&plan, root, L, rate, order, &hang) != (slow_node != root && L > 2)) {
            snprintf(why, whylen, "placement moved no slow node");
            free(rate);
            free(order);
            return 0;
        }
        plan.order = slow_node != root && L > 2 ? order : NULL;
        plan.tree_hang = hang;
        free(rate);
    }
    unsigned char *src = malloc(size + 1);
    for (uint64_t i = 0; i < size; i++)
        src[i] = (unsigned char)(rand() >> 7);
    size_t slot_size = chunk + PB_TRAILER_SIZE;
    struct sim s = { .n = L };
    s.nodes = calloc((size_t)L, sizeof *s.nodes);
    s.head = calloc((size_t)L * L, sizeof *s.head);
    s.tail = calloc((size_t)L * L, sizeof *s.tail);
    struct io *ios = calloc((size_t)L, sizeof *ios);
    const char **names = calloc((size_t)L, sizeof *names);
    char (*nb)[48] = calloc((size_t)L, 48);
    for (int i = 0; i < L; i++) {
        snprintf(nb[i], 48, "node%d (rank %d)", i, i);
        names[i] = nb[i];
    }
    int okay = 1;
    for (int i = 0; i < L && okay; i++) {
        struct node *nd = &s.nodes[i];
        nd->tp = (struct fake){ { &fake_ops }, &s, i };
        nd->pool = malloc(slot_size * nslots);
        nd->copy = calloc(size + 1, 1);
        nd->owner = malloc(nslots * sizeof *nd->owner);
        for (uint32_t k = 0; k < nslots; k++)
            nd->owner[k] = -1;
        ios[i] = (struct io){ src, nd->copy };
        struct pb_engine_cfg c = {
            .plan = &plan, .self = i, .root = root, .nleaders = L, .tp = &nd->tp.base, .pool = nd->pool,
            .slot_size = slot_size, .nslots = nslots, .root_slots = nslots / 4,
            .io = { io_read, io_write, &ios[i] }, .names = names, .timeout = 10,
            .corrupt_chunk = i == corrupt_node ? corrupt_at : -1,
        };
        nd->e = pb_engine_create(&c, err, sizeof err);
        if (!nd->e) {
            snprintf(why, whylen, "create: %s", err);
            okay = 0;
        }
    }
    for (int i = 0; i < L && okay; i++)
        pb_engine_start(s.nodes[i].e);
    /* Step until everyone is finished, someone failed, or nothing moves. */
    int failed = 0, stalled = 0;
    uint64_t steps = 0;
    while (okay && !failed) {
        int alldone = 1, moved = 0;
        for (int i = 0; i < L; i++) {
            struct node *nd = &s.nodes[i];
            /* Hand over queued events in a random-sized batch. */
            int take = nd->evlen ? 1 + rand() % nd->evlen : 0;
            for (int k = 0; k < take; k++)
                pb_engine_handle(nd->e, &nd->evq[k]);
            if (take) {
                memmove(nd->evq, nd->evq + take, (size_t)(nd->evlen - take) * sizeof *nd->evq);
                nd->evlen -= take;
            }
            moved |= take > 0;
            pb_engine_pump(nd->e);
            if (pb_engine_error(nd->e, NULL))
                failed = 1;
            alldone &= pb_engine_finished(nd->e);
        }
        if (alldone)
            break;
        int burst = 1 + rand() % 4;
        for (int k = 0; k < burst; k++)
            moved |= deliver_one(&s, slot_size);
        if (!moved && !s.inflight) {
            stalled = 1;
            break;
        }
        if (++steps > 10000000) {
            stalled = 1;
            break;
        }
    }
    if (okay && corrupt_node >= 0) {
        /* Some engine must have failed with a checksum error, and no copy may pass. */
        const char *msg = "";
        int found = 0;
        for (int i = 0; i < L; i++)
            if (pb_engine_error(s.nodes[i].e, &msg) == PB_EE_DATA && strstr(msg, "checksum"))
                found = 1, snprintf(why, whylen, "%s", msg);
        okay = found;
    } else if (okay) {
        if (stalled || failed) {
            char w[256] = "";
            const char *msg = "";
            for (int i = 0; i < L; i++) {
                if (pb_engine_error(s.nodes[i].e, &msg))
                    break;
                if (!pb_engine_finished(s.nodes[i].e)) {
                    pb_engine_waiting_for(s.nodes[i].e, w, sizeof w);
                    msg = w;
                    break;
                }
            }
            snprintf(why, whylen, "%s: %s", stalled ? "stalled" : "failed", msg);
            okay = 0;
        }
        uint64_t m0 = okay ? pb_engine_manifest(s.nodes[root].e) : 0;
        for (int i = 0; i < L && okay; i++) {
            if (memcmp(s.nodes[i].copy, src, size)) {
                snprintf(why, whylen, "node %d: copy differs", i);
                okay = 0;
            } else if (pb_engine_manifest(s.nodes[i].e) != m0) {
                snprintf(why, whylen, "node %d: manifest differs", i);
                okay = 0;
            }
        }
        int every_reads = sched == PB_SCHED_SHARED || sched == PB_SCHED_READTREE;
        for (int i = 0; i < L && okay && every_reads; i++)
            if (pb_engine_read_bytes(s.nodes[i].e) != pb_shared_read_bytes(&plan, i, NULL)) {
                snprintf(why, whylen, "node %d read %llu bytes of SOURCE, its share is %llu", i,
                         (unsigned long long)pb_engine_read_bytes(s.nodes[i].e),
                         (unsigned long long)pb_shared_read_bytes(&plan, i, NULL));
                okay = 0;
            }
        if (okay && !every_reads && pb_engine_read_bytes(s.nodes[root].e) != size) {
            snprintf(why, whylen, "the root read %llu of %llu bytes", (unsigned long long)pb_engine_read_bytes(s.nodes[root].e),
                     (unsigned long long)size);
            okay = 0;
        }
        if (s.violations) {
            snprintf(why, whylen, "%d puts into slots not granted", s.violations);
            okay = 0;
        }
        if (okay && plan.order && s.slow_data) {
            snprintf(why, whylen, "the placed slow node %d passed on %llu chunks", slow_node,
                     (unsigned long long)s.slow_data);
            okay = 0;
        }
    }
    for (int i = 0; i < L; i++) {
        struct node *nd = &s.nodes[i];
        pb_engine_destroy(nd->e);
        free(nd->pool);
        free(nd->copy);
        free(nd->owner);
        free(nd->evq);
    }
    for (int l = 0; l < L * L; l++)
        while (s.head[l]) {
            struct msg *m = s.head[l];
            s.head[l] = m->next;
            free(m);
        }
    free(s.head);
    free(s.tail);
    free(s.nodes);
    free(ios);
    free(names);
    free(nb);
    free(src);
    free(order);
    return okay;
}

int main(void)
{
    const uint64_t c = 4096;
    char why[300];
    for (int L = 1; L <= 9; L++) {
        const uint64_t sizes[] = { 0, 1, c - 1, c, c + 1, 37 * c + 11, 3 * (uint64_t)L * c };
        int all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            for (unsigned seed = 1; seed <= 3 && all; seed++)
                all = run(L, 0, sizes[i], c, 4 + seed * 2, seed * 7919 + L, -1, -1, why, sizeof why);
        ok(all, "%d node(s): copies exact, manifests agree, no stall %s", L, why);
    }
    int all = 1;
    for (unsigned seed = 1; seed <= 20 && all; seed++)
        all = run(5, (int)(seed % 5), 50 * c + 7, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "5 nodes, root not 0, minimum 4 slots, 20 random schedules %s", why);
    all = 1;
    for (unsigned seed = 1; seed <= 3 && all; seed++)
        all = run(33, 4, 200 * c, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "33 nodes, minimum slots: no deadlock on a long ring %s", why);
    ok(run(6, 0, 40 * c, c, 8, 99, 13, 2, why, sizeof why), "a byte flipped while forwarding is caught: %s", why);

    sched = PB_SCHED_TREE;
    for (int L = 1; L <= 70; L++) {
        const uint64_t sizes[] = { 0, 1, c, c + 1, 3 * c, 37 * c + 11, 2 * (uint64_t)L * c };
        all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            for (unsigned seed = 1; seed <= 2 && all; seed++)
                all = run(L, (int)((seed * 5 + i) % (unsigned)L), sizes[i], c, seed == 1 ? 4 : 7, seed * 7919 + L,
                          -1, -1, why, sizeof why);
        ok(all, "trees, %d node(s), 4 or 7 slots, roots vary: copies exact, manifests agree, no stall %s", L, why);
    }
    all = 1;
    for (unsigned seed = 1; seed <= 20 && all; seed++)
        all = run(13, (int)(seed % 13), 60 * c + 7, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "trees, 13 nodes, minimum 4 slots, 20 random delivery orders %s", why);
    all = run(257, 100, 64 * c + 3, c, 4, 42, -1, -1, why, sizeof why);
    ok(all, "trees, 257 nodes, 4 slots: no deadlock, copies exact %s", why);
    ok(run(9, 0, 40 * c, c, 8, 99, 13, 5, why, sizeof why), "trees: a byte flipped while forwarding is caught: %s",
       why);
    /* One slow link direction, the trees placed around it (placement.h):
     * R even (the hung shape) and odd, the slow node every non-root node
     * in turn and the root too; the placed slow node sends nothing. */
    placed = 1;
    const int sizes_placed[] = { 3, 4, 5, 6, 8, 9, 16, 17 };
    for (size_t i = 0; i < sizeof sizes_placed / sizeof *sizes_placed; i++) {
        int L = sizes_placed[i];
        all = 1;
        why[0] = 0;
        for (slow_node = 0; slow_node < L && all; slow_node++)
            for (unsigned seed = 1; seed <= 4 && all; seed++)
                all = run(L, (int)(seed % 2), 40 * c + 5, c, seed % 2 ? 4 : 8, seed * 31 + (unsigned)slow_node, -1,
                          -1, why, sizeof why);
        ok(all, "placed trees, %d nodes (R %s), one slow link direction at each node, roots 0 and 1, 4 random "
                "delivery orders each: copies exact, no stall, the slow node passes nothing on %s",
           L, (L - 1) % 2 ? "odd" : "even", why);
    }
    slow_node = -1;
    placed = 0;

    /* Shared SOURCE: every node reads its share, the ring allgather. */
    sched = PB_SCHED_SHARED;
    for (int L = 1; L <= 40; L++) {
        const uint64_t sizes[] = { 0, 1, c - 1, c + 1, 3 * c, 37 * c + 11, 3 * (uint64_t)L * c + 5 };
        all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            for (unsigned seed = 1; seed <= 3 && all; seed++)
                all = run(L, (int)((seed * 3 + i) % (unsigned)L), sizes[i], c, 2 + seed * 2, seed * 7919 + L, -1, -1,
                          why, sizeof why);
        ok(all, "allgather, %d node(s), 4 to 8 slots, roots vary: copies exact, each node read its share, "
                "manifests agree, no stall %s", L, why);
    }
    all = 1;
    for (unsigned seed = 1; seed <= 30 && all; seed++)
        all = run(7, (int)(seed % 7), 90 * c + 7, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "allgather, 7 nodes, minimum 4 slots, 30 random delivery orders %s", why);
    all = 1;
    for (unsigned seed = 1; seed <= 2 && all; seed++)
        all = run(150, 17, 400 * c + 1, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "allgather, 150 nodes, 4 slots: no deadlock on a long ring, copies exact %s", why);
    ok(run(6, 0, 40 * c, c, 8, 99, 13, 2, why, sizeof why), "allgather: a byte flipped while forwarding is caught: %s",
       why);

    /* Shared SOURCE: the tops of the two trees read, the trees carry it. */
    sched = PB_SCHED_READTREE;
    for (int L = 1; L <= 40; L++) {
        const uint64_t sizes[] = { 0, 1, c, c + 1, 3 * c, 37 * c + 11, 2 * (uint64_t)L * c + 5 };
        all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            for (unsigned seed = 1; seed <= 2 && all; seed++)
                all = run(L, (int)((seed * 5 + i) % (unsigned)L), sizes[i], c, seed == 1 ? 4 : 7, seed * 7919 + L,
                          -1, -1, why, sizeof why);
        ok(all, "reader-fed trees, %d node(s), 4 or 7 slots, roots vary: copies exact, the two readers read their "
                "halves, manifests agree, no stall %s", L, why);
    }
    all = 1;
    for (unsigned seed = 1; seed <= 30 && all; seed++)
        all = run(13, (int)(seed % 13), 60 * c + 7, c, 4, seed, -1, -1, why, sizeof why);
    ok(all, "reader-fed trees, 13 nodes, minimum 4 slots, 30 random delivery orders %s", why);
    all = run(257, 100, 64 * c + 3, c, 4, 42, -1, -1, why, sizeof why);
    ok(all, "reader-fed trees, 257 nodes, 4 slots: no deadlock, copies exact %s", why);
    /* Node 7 is the top of tree 0 of 9 (it reads), node 2 interior in tree 1. */
    ok(run(9, 0, 40 * c, c, 8, 99, 12, 7, why, sizeof why),
       "reader-fed trees: a byte flipped by a reader while passing its chunk on is caught: %s", why);
    ok(run(9, 0, 40 * c, c, 8, 99, 13, 2, why, sizeof why),
       "reader-fed trees: a byte flipped while forwarding is caught: %s", why);
    /* G pairs of reader-fed trees: 2G readers, 2G slot classes; from one
     * slot per tree (the executor's least) up. */
    for (pairs = 2; pairs <= 3; pairs++) {
        all = 1;
        why[0] = 0;
        for (int L = 1; L <= 24 && all; L++) {
            const uint64_t sizes[] = { 1, c + 1, 5 * c, 37 * c + 11, 4 * (uint64_t)L * c + 5 };
            for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
                for (unsigned seed = 1; seed <= 2 && all; seed++)
                    all = run(L, (int)((seed * 5 + i) % (unsigned)L), sizes[i], c,
                              seed == 1 ? 2 * (uint32_t)pairs : 8 * (uint32_t)pairs + 1, seed * 7919 + L, -1, -1,
                              why, sizeof why);
        }
        ok(all, "%d pairs of reader-fed trees, 1..24 nodes, 1 or 4 slots per tree, roots vary: copies exact, each "
                "reader read its trees' chunks, manifests agree, no stall %s", pairs, why);
        all = 1;
        for (unsigned seed = 1; seed <= 30 && all; seed++)
            all = run(13, (int)(seed % 13), 90 * c + 7, c, seed % 2 ? 2 * (uint32_t)pairs : 4 * (uint32_t)pairs, seed,
                      -1, -1, why, sizeof why);
        ok(all, "%d pairs of reader-fed trees, 13 nodes, 30 random delivery orders, 1 or 2 slots per tree %s", pairs,
           why);
        all = run(150, 77, 200 * c + 3, c, 2 * (uint32_t)pairs, 42 + (unsigned)pairs, -1, -1, why, sizeof why);
        ok(all, "%d pairs of reader-fed trees, 150 nodes, one slot per tree: no deadlock, copies exact %s", pairs, why);
    }
    /* Member 9 tops tree 2 of 12 (pair 1's tree 0): it reads chunk 4. */
    pairs = 2;
    ok(run(12, 0, 40 * c, c, 8, 99, 4, 9, why, sizeof why),
       "2 pairs of reader-fed trees: a byte flipped by a pair-1 reader while passing its chunk on is caught: %s", why);
    pairs = 1;
    return tap_done();
}
