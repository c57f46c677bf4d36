/* model.c — discrete-event model of the scatter-ring at scale; see model.h.
 *
 * The schedule is plan.c's: the root scatters chunk k to
 * pb_plan_scatter_target(), a receiver passes a chunk on when
 * pb_plan_forwards() says so, to pb_plan_successor(), and every arrival is
 * checked against pb_plan_sender(). The flow control mirrors engine.c:
 *
 *  root      nslots buffers; a buffer is read (instantly) when free, waits in
 *            `pending` until its scatter target has a root-slot credit (oldest
 *            first; a receiver short of credits does not hold back the
 *            others), is queued on the out-link, and is free again once sent.
 *  receiver  root_slots slots granted to the root, the rest to the ring
 *            predecessor. A chunk that is to be passed on keeps its slot
 *            (transit queue if it came from the predecessor, inject queue if
 *            from the root) until its send is done; then the slot is granted
 *            back to the peer it belongs to. A chunk that is not passed on
 *            frees its slot at once. Forwarding: transit chunks go with one
 *            successor credit; inject chunks only while transit is empty and
 *            the successor has >= 2 credits (bubble rule).
 *
 * Events are kept in time buckets keyed on integer picoseconds (see evq). Credits are
 * queued with the time they become usable; a node blocked on a credit that
 * is still in flight gets a wake-up event at that time, so a message costs
 * one event when its out-link and in-link finish together, two otherwise. */
#include "model.h"
#include "model_sim.h"
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLS_ROOT 1ull /* outq entry flag: the chunk sits in one of our root slots */

struct mnode {
    struct q outq;    /* posted sends, in order: chunk | CLS_ROOT << 32 */
    struct q transit; /* receiver: chunks from the predecessor to pass on */
    struct q inject;  /* receiver: chunks from the root to pass on */
    struct q cred;    /* receiver: successor's ring-slot credits (usable-from times) */
    struct q rcred;   /* receiver: root-slot credits of this receiver, held by the root */
    uint64_t in_free; /* time our in-link is free */
    uint64_t wake_at; /* earliest wake-up scheduled, NEVER if none */
    uint64_t received;
    int out_busy;
};

struct model {
    struct pb_plan p;
    int R;                 /* receivers; the root is node R */
    int *succ, *pred;      /* pb_plan_successor/predecessor of each receiver, looked up once */
    uint64_t last_chunk;   /* the only chunk that may be short */
    int check;             /* check every arrival against pb_plan_sender */
    struct mnode *n;       /* R + 1 nodes */
    uint64_t *pool;
    uint64_t *pending;     /* root: chunks read, waiting for a credit, oldest first */
    uint32_t npending, free_bufs, nslots;
    uint64_t next_read;
    uint64_t alpha_ps, d_full, d_last;
    uint64_t now, finish, first_done, root_busy;
    uint64_t messages, events;
    int ndone;
    struct evq q;
    int bad;               /* internal error: queue overflow, schedule mismatch */
    char why[256];
};

static void bad(struct model *m, const char *what, int node, uint64_t k)
{
    if (!m->bad)
        snprintf(m->why, sizeof m->why, "model internal error: %s (node %d, chunk %llu)", what, node,
                 (unsigned long long)k);
    m->bad = 1;
}

static void push_ev(struct model *m, uint64_t t, int kind, int node, uint64_t k)
{
    if (evq_push(&m->q, t, (uint32_t)node | (uint32_t)kind << EV_SHIFT, (uint32_t)k) < 0)
        bad(m, "out of memory for events", node, k);
}

static void wake(struct model *m, int node, uint64_t t)
{
    struct mnode *x = &m->n[node];
    if (x->wake_at <= t)
        return; /* an earlier wake-up re-checks and reschedules */
    x->wake_at = t;
    push_ev(m, t, EV_WAKE, node, 0);
}

static inline int dst_of(const struct model *m, int node, uint64_t k)
{
    return node == m->R ? pb_plan_scatter_target(&m->p, k) : m->succ[node];
}

/* Start the head of node's out-queue now. */
static void start(struct model *m, int node)
{
    struct mnode *x = &m->n[node];
    uint64_t k = (uint32_t)q_front(&x->outq, 0);
    uint64_t d = k == m->last_chunk ? m->d_last : m->d_full;
    int dst = dst_of(m, node, k);
    struct mnode *y = &m->n[dst];
    uint64_t out_end = m->now + d;
    uint64_t in_start = y->in_free > m->now ? y->in_free : m->now;
    uint64_t arrive = in_start + d;
    y->in_free = arrive;
    x->out_busy = 1;
    m->messages++;
    if (node == m->R)
        m->root_busy += d;
    if (arrive == out_end) {
        push_ev(m, out_end, EV_XFER, node, k);
    } else {
        push_ev(m, out_end, EV_SENT, node, k);
        push_ev(m, arrive, EV_ARRIVE, node, k);
    }
}

static void post(struct model *m, int node, uint64_t entry)
{
    struct mnode *x = &m->n[node];
    if (q_push(&x->outq, entry) < 0) {
        bad(m, "out-queue overflow", node, (uint32_t)entry);
        return;
    }
    if (!x->out_busy)
        start(m, node);
}

/* Receiver r frees a slot of class cls: the credit reaches its owner alpha later. */
static void grant(struct model *m, int r, int from_root)
{
    uint64_t t = m->now + m->alpha_ps;
    if (from_root) {
        if (q_push(&m->n[r].rcred, t) < 0)
            bad(m, "root credit overflow", r, 0);
        if (m->npending)
            wake(m, m->R, t);
    } else {
        int pr = m->pred[r];
        struct mnode *x = &m->n[pr];
        if (q_push(&x->cred, t) < 0)
            bad(m, "ring credit overflow", r, 0);
        if (x->transit.len || x->inject.len)
            wake(m, pr, t);
    }
}

static void pump_root(struct model *m)
{
    while (m->free_bufs && m->next_read < m->p.nchunks) {
        m->pending[m->npending++] = m->next_read++;
        m->free_bufs--;
    }
    uint64_t later = NEVER;
    uint32_t j = 0;
    for (uint32_t i = 0; i < m->npending; i++) {
        uint64_t k = m->pending[i];
        int r = pb_plan_scatter_target(&m->p, k);
        struct q *c = &m->n[r].rcred;
        if (c->len && q_front(c, 0) <= m->now) {
            q_pop(c);
            post(m, m->R, k | CLS_ROOT << 32);
        } else {
            m->pending[j++] = k;
            if (c->len && q_front(c, 0) < later)
                later = q_front(c, 0);
        }
    }
    m->npending = j;
    if (later != NEVER)
        wake(m, m->R, later);
}

static void pump_recv(struct model *m, int r)
{
    struct mnode *x = &m->n[r];
    struct q *c = &x->cred;
    while (x->transit.len && c->len && q_front(c, 0) <= m->now) {
        q_pop(c);
        post(m, r, q_pop(&x->transit));
    }
    if (x->transit.len) {
        if (c->len)
            wake(m, r, q_front(c, 0));
        return;
    }
    /* Bubble rule: a chunk enters the ring only if a free ring slot stays. */
    while (x->inject.len && c->len >= 2 && q_front(c, 1) <= m->now) {
        q_pop(c);
        post(m, r, q_pop(&x->inject) | CLS_ROOT << 32);
    }
    if (x->inject.len && c->len >= 2)
        wake(m, r, q_front(c, 1));
}

static void on_sent(struct model *m, int node)
{
    struct mnode *x = &m->n[node];
    uint64_t e = q_pop(&x->outq);
    x->out_busy = 0;
    if (x->outq.len)
        start(m, node);
    if (node == m->R) {
        m->free_bufs++;
        pump_root(m);
    } else {
        grant(m, node, (int)(e >> 32 & CLS_ROOT));
    }
}

static void on_arrive(struct model *m, int sender, uint64_t k)
{
    int from_root = sender == m->R;
    int r = dst_of(m, sender, k);
    if (m->check && pb_plan_sender(&m->p, r, k) != (from_root ? PB_FROM_ROOT : sender)) {
        bad(m, "chunk arrived from the wrong sender", r, k);
        return;
    }
    struct mnode *x = &m->n[r];
    if (++x->received == m->p.nchunks) {
        if (!m->ndone++)
            m->first_done = m->now;
        if (m->now > m->finish)
            m->finish = m->now;
    }
    if (pb_plan_forwards(&m->p, r, k)) {
        if (q_push(from_root ? &x->inject : &x->transit, k) < 0) {
            bad(m, "slot overflow", r, k);
            return;
        }
        pump_recv(m, r);
    } else {
        grant(m, r, from_root);
    }
}


static void describe_stuck(struct model *m, char *err, size_t errlen)
{
    int r = 0;
    while (r < m->R && m->n[r].received == m->p.nchunks)
        r++;
    struct mnode *x = &m->n[r < m->R ? r : 0];
    snprintf(err, errlen,
             "model deadlock at t=%.6f s: %d of %d receivers done; receiver %d holds %llu of %llu chunks, "
             "transit %u, inject %u, successor credits %u, out-queue %u; root: %u pending, %u free buffers, "
             "%llu of %llu read",
             (double)m->now / PS, m->ndone, m->R, r, (unsigned long long)x->received,
             (unsigned long long)m->p.nchunks, x->transit.len, x->inject.len, x->cred.len, x->outq.len,
             m->npending, m->free_bufs, (unsigned long long)m->next_read, (unsigned long long)m->p.nchunks);
}

static uint64_t ceil_log2(uint64_t n)
{
    uint64_t l = 0;
    while (((uint64_t)1 << l) < n)
        l++;
    return l;
}

static int check_cfg(const struct pb_model_cfg *cfg, uint32_t slots, char *err, size_t errlen)
{
    if (cfg->nodes < 1 || cfg->nodes > MODEL_MAX_NODES) {
        snprintf(err, errlen, "node count %d out of range (1 to %d)", cfg->nodes, MODEL_MAX_NODES);
        return -1;
    }
    if (!(cfg->bandwidth > 0) || cfg->bandwidth > 1e18) {
        snprintf(err, errlen, "bandwidth must be positive");
        return -1;
    }
    if (!(cfg->alpha >= 0) || cfg->alpha > 1e3) {
        snprintf(err, errlen, "latency must be between 0 and 1000 s");
        return -1;
    }
    if (slots < 4 || slots > 65536) {
        snprintf(err, errlen, "slot count %u out of range (4 to 65536)", slots);
        return -1;
    }
    return 0;
}

/* Receivers' slot classes, as engine.c settles them. */
static uint32_t settle_root_slots(const struct pb_model_cfg *cfg, uint32_t slots, int R)
{
    uint32_t root_slots = cfg->root_slots ? cfg->root_slots : slots / 4;
    if (R == 1)
        return slots;
    if (root_slots < 1 || root_slots > slots - 2)
        return slots / 4 ? slots / 4 : 1;
    return root_slots;
}

/* The closed forms beside the simulation: the ideal, the ring's terms, and
 * what the usual alternatives would take. */
static void closed_forms(const struct pb_model_cfg *cfg, const struct pb_plan *p, uint64_t c,
                         struct pb_model_result *res)
{
    int R = cfg->nodes - 1;
    uint64_t F = cfg->file_size;
    double B = cfg->bandwidth;
    res->ideal = (double)F / B;
    /* Hops after the root's link, of payload and alpha: R-1 round the ring;
     * in the trees about 2 per level (every interior node sends twice). */
    double hops = p->schedule == PB_SCHED_TREE ? 2.0 * pb_ceil_log2((uint64_t)R) + 1 : (double)(R - 1);
    res->tail = R >= 1 ? hops * (cfg->alpha + (double)c / B) : 0;
    res->per_message = R >= 1 ? (double)p->nchunks * cfg->alpha : 0;
    /* The root's link carries every chunk (payload, trailer, alpha), then
     * the last chunk makes R-1 more hops. */
    res->estimate = R >= 1 && p->nchunks
                        ? (double)(F + p->nchunks * PB_TRAILER_SIZE) / B + res->per_message +
                              hops * (cfg->alpha + (double)(c + PB_TRAILER_SIZE) / B)
                        : 0;
    res->single_sender = (double)R * res->ideal;
    res->scatter_allgather = 2.0 * (double)R / (double)cfg->nodes * res->ideal;
    res->binomial = (double)ceil_log2((uint64_t)cfg->nodes) * res->ideal;
}

static void model_free(struct model *m)
{
    evq_free(&m->q);
    free(m->succ);
    free(m->pred);
    free(m->n);
    free(m->pool);
    free(m->pending);
    free(m);
}

/* Every node's queues, carved from one pool: outq(slots) transit(ring)
 * inject(root) cred(ring) rcred(root). */
static int model_alloc(struct model *m, uint32_t slots, uint32_t root_slots)
{
    int R = m->R;
    uint32_t ring_slots = slots - root_slots;
    size_t per = (size_t)slots + 2 * ring_slots + 2 * root_slots;
    m->n = calloc((size_t)R + 1, sizeof *m->n);
    m->pool = malloc(((size_t)R + 1) * per * sizeof *m->pool);
    m->pending = malloc(slots * sizeof *m->pending);
    m->succ = malloc((size_t)R * sizeof *m->succ);
    m->pred = malloc((size_t)R * sizeof *m->pred);
    if (!m->n || !m->pool || !m->pending || !m->succ || !m->pred)
        return -1;
    for (int r = 0; r < R; r++) {
        m->succ[r] = pb_plan_successor(&m->p, r);
        m->pred[r] = pb_plan_predecessor(&m->p, r);
    }
    for (int i = 0; i <= R; i++) {
        struct mnode *x = &m->n[i];
        uint64_t *b = m->pool + (size_t)i * per;
        x->outq = (struct q){ b, slots, 0, 0 };
        b += slots;
        x->transit = (struct q){ b, ring_slots, 0, 0 };
        b += ring_slots;
        x->inject = (struct q){ b, root_slots, 0, 0 };
        b += root_slots;
        x->cred = (struct q){ b, ring_slots, 0, 0 };
        b += ring_slots;
        x->rcred = (struct q){ b, root_slots, 0, 0 };
        x->wake_at = NEVER;
    }
    return 0;
}

/* t = 0: every receiver grants all its slots (pb_engine_start), the root
 * starts sending. */
static void model_start(struct model *m, uint32_t root_slots, uint32_t ring_slots)
{
    for (int r = 0; r < m->R; r++) {
        for (uint32_t s = 0; s < root_slots; s++)
            grant(m, r, 1);
        for (uint32_t s = 0; s < ring_slots; s++)
            grant(m, r, 0);
    }
    pump_root(m);
}

static void run_event(struct model *m, struct ev e)
{
    m->events++;
    int node = (int)(e.who & EV_NODE_MASK);
    switch (e.who >> EV_SHIFT) {
    case EV_SENT:
        on_sent(m, node);
        break;
    case EV_ARRIVE:
        on_arrive(m, node, e.k);
        break;
    case EV_XFER:
        on_sent(m, node);
        on_arrive(m, node, e.k);
        break;
    case EV_WAKE:
        if (m->n[node].wake_at == m->now)
            m->n[node].wake_at = NEVER;
        if (node == m->R)
            pump_root(m);
        else
            pump_recv(m, node);
        break;
    }
}

/* Run the earliest bucket until every receiver is done or nothing is left;
 * events scheduled for the same time while a bucket runs are appended to it
 * and run too. Later buckets are inserted before it: it stays the last. */
static void simulate(struct model *m)
{
    while (m->q.nb && m->ndone < m->R && !m->bad) {
        m->now = m->q.b[m->q.nb - 1].t;
        for (size_t i = 0; i < m->q.b[m->q.nb - 1].n && !m->bad; i++)
            run_event(m, m->q.b[m->q.nb - 1].v[i]);
        /* Retire it (nothing earlier can have been added); keep its
         * storage as the spare. */
        m->q.b[m->q.nb - 1].n = 0;
        m->q.nb--;
    }
}

static int model_result(struct model *m, struct pb_model_result *res, char *err, size_t errlen)
{
    int rc = 0;
    if (m->bad) {
        snprintf(err, errlen, "%s", m->why);
        rc = -1;
    } else if (m->ndone < m->R) {
        describe_stuck(m, err, errlen);
        rc = -2;
    } else {
        res->time = (double)m->finish / PS;
        res->first_done = (double)m->first_done / PS;
        res->efficiency = res->ideal / res->time;
        res->root_busy = (double)m->root_busy / (double)m->finish;
        if (res->root_busy > 1)
            res->root_busy = 1;
    }
    res->messages = m->messages;
    res->events = m->events;
    return rc;
}

int pb_model_run(const struct pb_model_cfg *cfg, struct pb_model_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    uint32_t slots = cfg->slots ? cfg->slots : 8;
    if (check_cfg(cfg, slots, err, errlen) < 0)
        return -1;
    int R = cfg->nodes - 1;
    int tree = cfg->schedule == PB_SCHED_TREE;
    uint64_t c = cfg->chunk_size ? cfg->chunk_size
                 : tree          ? pb_plan_default_chunk_tree(cfg->file_size, R)
                                 : pb_plan_default_chunk(cfg->file_size, R);
    struct model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pb_plan_init(&m->p, cfg->file_size, c, R, err, errlen) < 0) {
        free(m);
        return -1;
    }
    m->p.schedule = tree ? PB_SCHED_TREE : PB_SCHED_RING;
    uint32_t root_slots = tree ? slots / 2 : settle_root_slots(cfg, slots, R);
    res->chunk_size = c;
    res->nchunks = m->p.nchunks;
    res->slots = slots;
    res->root_slots = root_slots;
    res->ring_slots = slots - root_slots;
    res->default_chunk = cfg->chunk_size == 0;
    closed_forms(cfg, &m->p, c, res);
    if (R == 0 || m->p.nchunks == 0) {
        res->efficiency = 1;
        free(m);
        return 0;
    }
    if (tree) {
        int rc = pb_model_tree_sim(cfg, &m->p, slots, res, err, errlen);
        free(m);
        return rc;
    }

    double B = cfg->bandwidth;
    m->R = R;
    m->nslots = slots;
    m->free_bufs = slots;
    m->alpha_ps = to_ps(cfg->alpha);
    m->check = cfg->check;
    m->last_chunk = m->p.nchunks - 1;
    m->d_full = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(&m->p, 0) + PB_TRAILER_SIZE) / B);
    m->d_last = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(&m->p, m->last_chunk) + PB_TRAILER_SIZE) / B);
    if (model_alloc(m, slots, root_slots) < 0) {
        snprintf(err, errlen, "out of memory for %d nodes", cfg->nodes);
        model_free(m);
        return -1;
    }
    model_start(m, root_slots, slots - root_slots);
    simulate(m);
    int rc = model_result(m, res, err, errlen);
    model_free(m);
    return rc;
}

/* Number then unit; returns the unit text (leading blanks skipped). */
static int split_number(const char *s, double *v, const char **unit)
{
    if (!s)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    char *end;
    *v = strtod(s, &end);
    if (errno || end == s || !(*v >= 0) || *v > 1e30)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    *unit = end;
    return 0;
}

int pb_model_parse_bandwidth(const char *s, double *out)
{
    double v;
    const char *u;
    if (split_number(s, &v, &u))
        return -1;
    double mult = 1;
    switch (*u) {
    case 'k': case 'K': mult = 1e3; u++; break;
    case 'M': mult = 1e6; u++; break;
    case 'G': mult = 1e9; u++; break;
    case 'T': mult = 1e12; u++; break;
    default: break;
    }
    if (mult != 1 && *u == 'i') {
        mult = mult == 1e3 ? 1024.0 : mult == 1e6 ? 1048576.0 : mult == 1e9 ? 1073741824.0 : 1099511627776.0;
        u++;
    }
    double per = 1; /* bytes per unit */
    if (!strncmp(u, "bit", 3)) {
        per = 1.0 / 8;
        u += 3;
    } else if (*u == 'b') {
        per = 1.0 / 8;
        u++;
    } else if (*u == 'B') {
        u++;
    } else if (mult != 1 && *u != '/' && *u) {
        return -1;
    }
    if (!strcmp(u, "/s") || !strcmp(u, "ps") || !*u) {
        *out = v * mult * per;
        return *out > 0 ? 0 : -1;
    }
    return -1;
}

int pb_model_parse_duration(const char *s, double *out)
{
    double v;
    const char *u;
    if (split_number(s, &v, &u))
        return -1;
    double mult;
    if (!*u || !strcmp(u, "s"))
        mult = 1;
    else if (!strcmp(u, "ms"))
        mult = 1e-3;
    else if (!strcmp(u, "us") || !strcmp(u, "\xc2\xb5s") || !strcmp(u, "\xce\xbcs"))
        mult = 1e-6;
    else if (!strcmp(u, "ns"))
        mult = 1e-9;
    else
        return -1;
    *out = v * mult;
    return 0;
}
