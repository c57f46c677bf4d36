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
 * The links, the event loop and the arrival count are model_sim.c's, shared
 * with the trees; this file adds the ring's flow control. Credits are
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
    struct sim_node l; /* l.outq: posted sends, in order: chunk | CLS_ROOT << 32 */
    struct q transit; /* receiver: chunks from the predecessor to pass on */
    struct q inject;  /* receiver: chunks from the root to pass on */
    struct q cred;    /* receiver: successor's ring-slot credits (usable-from times) */
    struct q rcred;   /* receiver: root-slot credits of this receiver, held by the root */
};

struct model {
    struct sim s;
    struct pb_plan p;
    int R;                 /* receivers; the root is node R */
    int *succ, *pred;      /* pb_plan_successor/predecessor of each receiver, looked up once */
    int check;             /* check every arrival against pb_plan_sender */
    struct mnode *n;       /* R + 1 nodes */
    uint64_t *pool;
    uint64_t *pending;     /* root: chunks read, waiting for a credit, oldest first */
    uint32_t npending, free_bufs, nslots;
    uint64_t next_read;
};

static void bad(struct model *m, const char *what, int node, uint64_t k)
{
    sim_bad(&m->s, what, node, k);
}

static void wake(struct model *m, int node, uint64_t t)
{
    sim_wake(&m->s, &m->n[node].l, node, t);
}

static inline int dst_of(const struct model *m, int node, uint64_t k)
{
    return node == m->R ? pb_plan_scatter_target(&m->p, k) : m->succ[node];
}

/* Start the head of node's out-queue now. */
static void start(struct model *m, int node)
{
    struct mnode *x = &m->n[node];
    uint64_t k = (uint32_t)q_front(&x->l.outq, 0);
    sim_transmit(&m->s, node, &x->l, &m->n[dst_of(m, node, k)].l, k, 0);
}

static void post(struct model *m, int node, uint64_t entry)
{
    struct mnode *x = &m->n[node];
    if (q_push(&x->l.outq, entry) < 0) {
        bad(m, "out-queue overflow", node, (uint32_t)entry);
        return;
    }
    if (!x->l.out_busy)
        start(m, node);
}

/* Receiver r frees a slot of class cls: the credit reaches its owner alpha later. */
static void grant(struct model *m, int r, int from_root)
{
    uint64_t t = m->s.now + m->s.alpha_ps;
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
        sim_root_read(&m->s, &m->n[m->R].l, m->next_read);
        m->pending[m->npending++] = m->next_read++;
        m->free_bufs--;
    }
    uint64_t later = NEVER;
    uint32_t j = 0;
    for (uint32_t i = 0; i < m->npending; i++) {
        uint64_t k = m->pending[i], ready = sim_root_ready(&m->s, k);
        int r = pb_plan_scatter_target(&m->p, k);
        struct q *c = &m->n[r].rcred;
        if (ready > m->s.now) { /* still being read, hashed, written */
            m->pending[j++] = k;
            if (ready < later)
                later = ready;
        } else if (c->len && q_front(c, 0) <= m->s.now) {
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
    while (x->transit.len && c->len && q_front(c, 0) <= m->s.now) {
        q_pop(c);
        post(m, r, q_pop(&x->transit));
    }
    if (x->transit.len) {
        if (c->len)
            wake(m, r, q_front(c, 0));
        return;
    }
    /* Bubble rule: a chunk enters the ring only if a free ring slot stays. */
    while (x->inject.len && c->len >= 2 && q_front(c, 1) <= m->s.now) {
        q_pop(c);
        post(m, r, q_pop(&x->inject) | CLS_ROOT << 32);
    }
    if (x->inject.len && c->len >= 2)
        wake(m, r, q_front(c, 1));
}

static void on_sent(struct model *m, int node)
{
    struct mnode *x = &m->n[node];
    uint64_t e = q_pop(&x->l.outq);
    x->l.out_busy = 0;
    if (x->l.outq.len)
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
    sim_count_arrival(&m->s, &x->l);
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
    while (r < m->R && m->n[r].l.received == m->p.nchunks)
        r++;
    struct mnode *x = &m->n[r < m->R ? r : 0];
    snprintf(err, errlen,
             "model deadlock at t=%.6f s: %d of %d receivers done; receiver %d holds %llu of %llu chunks, "
             "transit %u, inject %u, successor credits %u, out-queue %u; root: %u pending, %u free buffers, "
             "%llu of %llu read",
             (double)m->s.now / PS, m->s.ndone, m->R, r, (unsigned long long)x->l.received,
             (unsigned long long)m->p.nchunks, x->transit.len, x->inject.len, x->cred.len, x->l.outq.len,
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
    evq_free(&m->s.q);
    free(m->succ);
    free(m->pred);
    free(m->n);
    free(m->pool);
    free(m->pending);
    sim_cpu_free(&m->s);
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
        x->l.outq = (struct q){ b, slots, 0, 0 };
        b += slots;
        x->transit = (struct q){ b, ring_slots, 0, 0 };
        b += ring_slots;
        x->inject = (struct q){ b, root_slots, 0, 0 };
        b += root_slots;
        x->cred = (struct q){ b, ring_slots, 0, 0 };
        b += ring_slots;
        x->rcred = (struct q){ b, root_slots, 0, 0 };
        x->l.wake_at = NEVER;
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

static struct sim_node *rule_node(void *m, int node)
{
    return &((struct model *)m)->n[node].l;
}

static void rule_sent(void *m, int node)
{
    on_sent(m, node);
}

static void rule_arrive(void *m, int sender, int tag, uint64_t k)
{
    (void)tag;
    on_arrive(m, sender, k);
}

static void rule_pump(void *mv, int node)
{
    struct model *m = mv;
    if (node == m->R)
        pump_root(m);
    else
        pump_recv(m, node);
}

static const struct sim_rules ring_rules = { rule_node, rule_sent, rule_arrive, rule_pump };

static int model_result(struct model *m, struct pb_model_result *res, char *err, size_t errlen)
{
    int rc = sim_result(&m->s, res, err, errlen);
    if (rc == -2)
        describe_stuck(m, err, errlen);
    return rc;
}

int pb_model_run(const struct pb_model_cfg *cfg, struct pb_model_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int R = cfg->nodes - 1;
    int tree = cfg->schedule == PB_SCHED_TREE;
    uint64_t c = cfg->chunk_size ? cfg->chunk_size : pb_model_default_chunk(cfg);
    uint32_t slots = cfg->slots ? cfg->slots : pb_plan_default_slots(c);
    if (check_cfg(cfg, slots, err, errlen) < 0)
        return -1;
    if (!(cfg->cpu_rate >= 0) || cfg->cpu_rate > 1e18) {
        snprintf(err, errlen, "CPU rate must be positive, or 0 to leave the CPU out");
        return -1;
    }
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
        res->limit = "link";
        free(m);
        return 0;
    }
    if (tree) {
        int rc = pb_model_tree_sim(cfg, &m->p, slots, res, err, errlen);
        res->limit = pb_model_limit(cfg, res);
        free(m);
        return rc;
    }

    m->R = R;
    m->nslots = slots;
    m->free_bufs = slots;
    m->check = cfg->check;
    sim_init(&m->s, cfg, &m->p);
    if (cfg->slow_rate > 0)
        sim_set_slow(&m->s, cfg, &m->p, 0); /* any receiver: the ring moves every chunk through each */
    m->s.label = "";
    if (model_alloc(m, slots, root_slots) < 0 || sim_cpu_init(&m->s, cfg, &m->p, slots) < 0) {
        snprintf(err, errlen, "out of memory for %d nodes", cfg->nodes);
        model_free(m);
        return -1;
    }
    model_start(m, root_slots, slots - root_slots);
    sim_run(&m->s, &ring_rules, m);
    int rc = model_result(m, res, err, errlen);
    res->limit = pb_model_limit(cfg, res);
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
