/* model_tree.c — the two-tree schedule on the simulation core the ring's
 * model runs on too (model_sim.c; model.h: one message at a time per link
 * direction, alpha per message, cut-through, credits alpha after a slot is
 * freed). The schedule
 * is sched_tree.c's plan; the flow control is its executor's:
 *
 *  root      nslots buffers; a buffer is read (instantly) when free, waits
 *            for a credit of the root of its chunk's tree, is sent, and is
 *            free again once sent.
 *  receiver  nslots/2 slots granted to its tree-0 parent, the rest to its
 *            tree-1 parent. A chunk is queued for each child of its tree
 *            (per-child FIFO, sent as that child's credits come, in order on
 *            the out-link); its slot goes back to its parent once every put
 *            is done. A leaf's slot goes back at once.
 *
 * A node holds the chunks of one tree in arrival order and frees them in
 * the same order (each child's FIFO runs in order), so the puts still to do
 * for chunk k are kept in a ring of nslots counters per tree. */
#include "model_sim.h"
#include "model.h"
#include "placement.h"
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>

/* Events carry the child a message goes to as their tag. */

struct tnode {
    struct sim_node l;    /* l.outq: posted puts, in order: chunk | child << 32 */
    struct q wait[2];     /* per child: chunks waiting for its credit */
    struct q cred[2];     /* per child: its credits (usable-from times) */
    int parent[2];        /* per tree: node index (R: the root) */
    int up_idx[2];        /* per tree: our index among that parent's children */
    int child[2], nchild;
    int ntarget[2], target[2][2];
    unsigned char *left;  /* [tree][slot ring]: puts still to do */
};

struct tmodel {
    struct sim s;
    struct pb_plan p;
    int R;
    uint32_t nslots, split, free_bufs;
    struct tnode *n;
    uint64_t *pool;
    unsigned char *left_pool;
    uint64_t next_read;
    int check;
};

static void tbad(struct tmodel *m, const char *what, int node, uint64_t k)
{
    sim_bad(&m->s, what, node, k);
}

static void twake(struct tmodel *m, int node, uint64_t t)
{
    sim_wake(&m->s, &m->n[node].l, node, t);
}

static unsigned char *left_of(struct tmodel *m, int node, uint64_t k)
{
    return &m->n[node].left[(k & 1) * m->nslots + (k >> 1) % m->nslots];
}

static void tstart(struct tmodel *m, int node)
{
    struct tnode *x = &m->n[node];
    uint64_t e = q_front(&x->l.outq, 0), k = (uint32_t)e;
    int c = (int)(e >> 32);
    sim_transmit(&m->s, node, &x->l, &m->n[x->child[c]].l, k, c << EV_TAG_SHIFT);
}

/* Send what has credit now; wake up when the next credit becomes usable. */
static void tpump(struct tmodel *m, int node)
{
    struct tnode *x = &m->n[node];
    if (node == m->R) {
        while (m->free_bufs && m->next_read < m->p.nchunks) {
            uint64_t k = m->next_read++;
            m->free_bufs--;
            sim_root_read(&m->s, &x->l, k);
            if (q_push(&x->wait[x->target[k & 1][0]], k) < 0)
                tbad(m, "root queue overflow", node, k);
        }
    }
    for (int c = 0; c < x->nchild; c++) {
        struct q *w = &x->wait[c], *cr = &x->cred[c];
        uint64_t ready = 0; /* the root's chunk goes once read, hashed and written */
        while (w->len && cr->len && q_front(cr, 0) <= m->s.now &&
               (node != m->R || (ready = sim_root_ready(&m->s, q_front(w, 0))) <= m->s.now)) {
            q_pop(cr);
            if (q_push(&x->l.outq, q_pop(w) | (uint64_t)c << 32) < 0)
                tbad(m, "out-queue overflow", node, 0);
            if (!x->l.out_busy)
                tstart(m, node);
        }
        if (w->len && cr->len)
            twake(m, node, ready > m->s.now ? ready : q_front(cr, 0));
    }
}

/* Receiver r frees the slot of chunk k: a credit to its parent in k's tree. */
static void tgrant(struct tmodel *m, int r, int tree)
{
    struct tnode *x = &m->n[r];
    struct tnode *up = &m->n[x->parent[tree]];
    int i = x->up_idx[tree];
    uint64_t t = m->s.now + m->s.alpha_ps;
    if (q_push(&up->cred[i], t) < 0)
        tbad(m, "credit overflow", r, 0);
    if (up->wait[i].len)
        twake(m, x->parent[tree], t);
}

static void ton_sent(struct tmodel *m, int node)
{
    struct tnode *x = &m->n[node];
    uint64_t k = (uint32_t)q_pop(&x->l.outq);
    x->l.out_busy = 0;
    if (x->l.outq.len)
        tstart(m, node);
    if (node == m->R) {
        m->free_bufs++;
        tpump(m, node);
    } else if (--*left_of(m, node, k) == 0) {
        tgrant(m, node, (int)(k & 1));
    }
}

static void ton_arrive(struct tmodel *m, int sender, int c, uint64_t k)
{
    int r = m->n[sender].child[c], tree = (int)(k & 1);
    struct tnode *x = &m->n[r];
    if (m->check && pb_plan_sender(&m->p, r, k) != (sender == m->R ? PB_FROM_ROOT : sender)) {
        tbad(m, "chunk arrived from the wrong sender", r, k);
        return;
    }
    sim_count_arrival(&m->s, &x->l);
    int n = x->ntarget[tree];
    if (n == 0) {
        tgrant(m, r, tree);
        return;
    }
    *left_of(m, r, k) = (unsigned char)n;
    for (int i = 0; i < n; i++)
        if (q_push(&x->wait[x->target[tree][i]], k) < 0)
            tbad(m, "slot overflow", r, k);
    tpump(m, r);
}

static int add_child(struct tnode *x, int node)
{
    for (int c = 0; c < x->nchild; c++)
        if (x->child[c] == node)
            return c;
    x->child[x->nchild] = node;
    return x->nchild++;
}

/* Every node's neighbours from sched_tree.c's plan, and its queues from one pool. */
static int tmodel_alloc(struct tmodel *m)
{
    int R = m->R;
    uint32_t S = m->nslots;
    size_t per = 2 * (size_t)S + 4 * (size_t)S; /* outq, wait[2], cred[2] */
    m->n = calloc((size_t)R + 1, sizeof *m->n);
    m->pool = malloc(((size_t)R + 1) * per * sizeof *m->pool);
    m->left_pool = calloc(((size_t)R + 1) * 2 * S, 1);
    if (!m->n || !m->pool || !m->left_pool)
        return -1;
    for (int i = 0; i <= R; i++) {
        struct tnode *x = &m->n[i];
        uint64_t *b = m->pool + (size_t)i * per;
        x->l.outq = (struct q){ b, 2 * S, 0, 0 };
        for (int c = 0; c < 2; c++) {
            x->wait[c] = (struct q){ b + 2 * S + (size_t)c * S, S, 0, 0 };
            x->cred[c] = (struct q){ b + 4 * S + (size_t)c * S, S, 0, 0 };
        }
        x->left = m->left_pool + (size_t)i * 2 * S;
        x->l.wake_at = NEVER;
        int me = i == R ? PB_FROM_ROOT : i;
        for (int t = 0; t < PB_TREES; t++) {
            int kids[2], nk = pb_plan_tree_children(&m->p, t, me, kids);
            for (int j = 0; j < nk; j++)
                x->target[t][x->ntarget[t]++] = add_child(x, kids[j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < PB_TREES; t++) {
            int up = pb_plan_tree_parent(&m->p, t, r);
            struct tnode *x = &m->n[r];
            x->parent[t] = up == PB_FROM_ROOT ? R : up;
            x->up_idx[t] = add_child(&m->n[x->parent[t]], r);
        }
    return 0;
}

static struct sim_node *trule_node(void *m, int node)
{
    return &((struct tmodel *)m)->n[node].l;
}

static void trule_sent(void *m, int node)
{
    ton_sent(m, node);
}

static void trule_arrive(void *m, int sender, int child, uint64_t k)
{
    ton_arrive(m, sender, child, k);
}

static void trule_pump(void *m, int node)
{
    tpump(m, node);
}

static const struct sim_rules tree_rules = { trule_node, trule_sent, trule_arrive, trule_pump };

static void tsimulate(struct tmodel *m)
{
    /* t = 0: every receiver grants all its slots, the root starts. */
    for (int r = 0; r < m->R; r++)
        for (uint32_t s = 0; s < m->nslots; s++)
            tgrant(m, r, s < m->split ? 0 : 1);
    tpump(m, m->R);
    sim_run(&m->s, &tree_rules, m);
}

/* --slow-node: p2pbcast's placement (placement.h) of one slow sender among
 * the leaders (root leader 0, the slow one leader 1): the plan's shape,
 * and the receiver index it lands on (-1: not placed). */
static int place_slow(const struct pb_model_cfg *cfg, struct pb_plan *p)
{
    int N = p->nrecv + 1, hang = 0, placed = 0, r = -1;
    uint64_t *rate = malloc((size_t)N * sizeof *rate);
    int *order = malloc((size_t)N * sizeof *order);
    if (rate && order && N >= 3) {
        for (int l = 0; l < N; l++)
            rate[l] = l == 1 ? (uint64_t)(cfg->slow_rate / 1e3) + 1 : (uint64_t)(cfg->bandwidth / 1e3) + 1;
        placed = pb_place(p, 0, N, rate, order, &hang);
        for (int i = 0; i < p->nrecv && placed; i++)
            if (order[i] == 1)
                r = i;
        p->tree_hang = placed ? hang : 0;
    }
    free(rate);
    free(order);
    return placed ? r : 0; /* unplaced (rates close, or too few nodes): receiver 0 */
}

int pb_model_tree_sim(const struct pb_model_cfg *cfg, const struct pb_plan *p, uint32_t slots,
                      struct pb_model_result *res, char *err, size_t errlen)
{
    struct tmodel *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->p = *p;
    m->p.schedule = PB_SCHED_TREE;
    int slow = cfg->slow_rate > 0 ? place_slow(cfg, &m->p) : -1;
    m->R = p->nrecv;
    m->nslots = slots;
    m->split = slots / 2;
    m->free_bufs = slots;
    m->check = cfg->check;
    sim_init(&m->s, cfg, &m->p);
    if (slow >= 0)
        sim_set_slow(&m->s, cfg, &m->p, slow);
    m->s.label = " (trees)";
    int rc = 0;
    if (tmodel_alloc(m) < 0 || sim_cpu_init(&m->s, cfg, p, slots) < 0) {
        snprintf(err, errlen, "out of memory for %d nodes", cfg->nodes);
        rc = -1;
    } else {
        tsimulate(m);
        rc = sim_result(&m->s, res, err, errlen);
        if (rc == -2)
            snprintf(err, errlen, "model deadlock (trees) at t=%.6f s: %d of %d receivers done",
                     (double)m->s.now / PS, m->s.ndone, m->R);
    }
    evq_free(&m->s.q);
    sim_cpu_free(&m->s);
    free(m->n);
    free(m->pool);
    free(m->left_pool);
    free(m);
    return rc;
}
