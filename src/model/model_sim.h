/* model_sim.h — the simulation core every modelled schedule shares: times
 * in integer picoseconds, the bucketed event queue, small FIFOs, and the
 * links, event loop and arrival count of model_sim.c. A schedule's model
 * (model.c: the ring; model_tree.c: the two trees) adds only its flow
 * control (struct sim_rules). Internal to p2pbcast-model. */
#ifndef P2PBCAST_MODEL_SIM_H
#define P2PBCAST_MODEL_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PS 1e12
#define NEVER UINT64_MAX

enum { EV_SENT = 0, EV_ARRIVE = 1, EV_XFER = 2, EV_WAKE = 3 };
#define EV_TAG_SHIFT 2 /* event kind = EV_* | a schedule's tag << EV_TAG_SHIFT */
#define EV_SHIFT 28
#define EV_NODE_MASK ((1u << EV_SHIFT) - 1)
#define MODEL_MAX_NODES (1 << 26)


struct ev {
    uint32_t who; /* node | kind << EV_SHIFT */
    uint32_t k;
};

/* The event queue. Message costs come from a handful of values (alpha,
 * alpha + c/B, alpha + last/B), so events pile up on few distinct times:
 * thousands of events share a time at scale. Keep one FIFO bucket per
 * distinct pending time, the buckets sorted by time (latest first, so the
 * earliest is popped from the end). Events at the same time run in the
 * order they were scheduled. */
struct bucket {
    uint64_t t;
    struct ev *v;
    size_t n, cap;
};

struct evq {
    struct bucket *b; /* b[0..nb-1] pending, sorted by t descending; spare ones after */
    size_t nb, cap;
    size_t hint[2];   /* indices of the buckets used last (hints) */
};

static inline int evq_push(struct evq *q, uint64_t t, uint32_t who, uint32_t k)
{
    size_t i;
    if (q->hint[0] < q->nb && q->b[q->hint[0]].t == t) {
        i = q->hint[0];
    } else if (q->hint[1] < q->nb && q->b[q->hint[1]].t == t) {
        i = q->hint[1];
    } else {
        /* first index whose time is <= t (times descending) */
        size_t lo = 0, hi = q->nb;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (q->b[mid].t > t)
                lo = mid + 1;
            else
                hi = mid;
        }
        i = lo;
        if (i == q->nb || q->b[i].t != t) {
            if (q->nb == q->cap) {
                size_t nc = q->cap ? q->cap * 2 : 64;
                struct bucket *nb = realloc(q->b, nc * sizeof *nb);
                if (!nb)
                    return -1;
                memset(nb + q->cap, 0, (nc - q->cap) * sizeof *nb);
                q->b = nb;
                q->cap = nc;
            }
            /* reuse the spare bucket just past the end, keep its storage */
            struct bucket spare = q->b[q->nb];
            memmove(q->b + i + 1, q->b + i, (q->nb - i) * sizeof *q->b);
            spare.t = t;
            spare.n = 0;
            q->b[i] = spare;
            q->nb++;
        }
        q->hint[1] = q->hint[0];
        q->hint[0] = i;
    }
    struct bucket *b = &q->b[i];
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct ev *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = (struct ev){ who, k };
    return 0;
}

static inline void evq_free(struct evq *q)
{
    for (size_t i = 0; i < q->cap; i++)
        free(q->b[i].v);
    free(q->b);
}

/* Small FIFO of 64-bit values with its storage in the model's pool. */
struct q {
    uint64_t *v;
    uint32_t cap, head, len;
};

static inline int q_push(struct q *q, uint64_t x)
{
    if (q->len == q->cap)
        return -1;
    uint32_t i = q->head + q->len++;
    if (i >= q->cap)
        i -= q->cap;
    q->v[i] = x;
    return 0;
}

static inline uint64_t q_front(const struct q *q, uint32_t i)
{
    uint32_t j = q->head + i;
    if (j >= q->cap)
        j -= q->cap;
    return q->v[j];
}

static inline uint64_t q_pop(struct q *q)
{
    uint64_t x = q->v[q->head];
    if (++q->head == q->cap)
        q->head = 0;
    q->len--;
    return x;
}

static inline uint64_t to_ps(double s)
{
    double v = s * PS + 0.5;
    return v >= 1.8e19 ? NEVER : (uint64_t)v;
}

struct pb_model_cfg;
struct pb_model_result;
struct pb_plan;

/* A node's links: its out-link sends the head of outq, one message at a
 * time; its in-link is free from in_free on. */
struct sim_node {
    struct q outq;    /* posted sends, in order (the schedule's encoding) */
    uint64_t in_free; /* time our in-link is free */
    uint64_t wake_at; /* earliest wake-up scheduled, NEVER if none */
    uint64_t received;
    uint64_t cpu_free; /* time this node's one thread is free (cfg->cpu_rate) */
    int out_busy;
};

/* Receivers are nodes 0..R-1, the root is node R. */
struct sim {
    int R;
    uint64_t nchunks, last_chunk;
    uint64_t alpha_ps, d_full, d_last; /* alpha; alpha + (chunk + trailer)/B */
    uint64_t cpu_full, cpu_last;       /* chunk/C, last chunk/C; 0: CPU not counted */
    uint64_t *root_ready;              /* the root's chunk k is read, hashed, written at [k % slots] */
    uint32_t root_nready;
    int slow;                          /* the node that sends slowly, -1 none */
    uint64_t d_full_slow, d_last_slow; /* its message times */
    uint64_t now, finish, first_done, root_busy;
    uint64_t messages, events;
    int ndone;
    struct evq q;
    int bad;             /* internal error: queue overflow, schedule mismatch */
    const char *label;   /* in error messages: "" or " (trees)" */
    char why[256];
};

/* A schedule's flow control, called by sim_run. */
struct sim_rules {
    struct sim_node *(*node)(void *m, int node);
    void (*sent)(void *m, int node);                       /* node's out-link finished its head */
    void (*arrive)(void *m, int sender, int tag, uint64_t k); /* sender's message reached its target */
    void (*pump)(void *m, int node);                       /* a wake-up: send what can go now */
};

void sim_init(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p);
/* The CPU (cfg->cpu_rate): every node hashes and writes (and over tcp
 * copies) each chunk on one thread before it can pass it on. For the
 * root's read-ahead of at most `slots` chunks. -1 out of memory. */
int sim_cpu_init(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p, uint32_t slots);
void sim_cpu_free(struct sim *s);
/* The root reads chunk k now: returns when it is hashed and written (its
 * thread takes them in order) and can be sent. */
uint64_t sim_root_read(struct sim *s, struct sim_node *root, uint64_t k);
static inline uint64_t sim_root_ready(const struct sim *s, uint64_t k)
{
    return s->root_nready ? s->root_ready[k % s->root_nready] : 0;
}
/* Node sends at cfg->slow_rate (--slow-node): its messages take longer on
 * its out-link and on the receiver's in-link alike (cut-through). */
void sim_set_slow(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p, int node);
void sim_bad(struct sim *s, const char *what, int node, uint64_t k);
void sim_push(struct sim *s, uint64_t t, int kind, int node, uint64_t k);
/* Run pump(node) at t, unless an earlier wake-up is already scheduled. */
void sim_wake(struct sim *s, struct sim_node *x, int node, uint64_t t);
/* Node x starts sending chunk k to y now: alpha + len/B on x's out-link,
 * then as much on y's in-link, cut-through, then len/C on y's thread
 * (sim_cpu_init) before y has it; tag rides in the events. */
void sim_transmit(struct sim *s, int node, struct sim_node *x, struct sim_node *y, uint64_t k, int tag);
/* y received a chunk: count it, and y once it holds them all. */
void sim_count_arrival(struct sim *s, struct sim_node *y);
void sim_run(struct sim *s, const struct sim_rules *rules, void *m);
/* Time, efficiency, root busy, counts into res. 0; -1 with err after an
 * internal error; -2 when receivers are not done (the caller says why). */
int sim_result(struct sim *s, struct pb_model_result *res, char *err, size_t errlen);

/* model_tree.c: simulate the two trees (R >= 1, at least one chunk). */
int pb_model_tree_sim(const struct pb_model_cfg *cfg, const struct pb_plan *p, uint32_t slots,
                      struct pb_model_result *res, char *err, size_t errlen);

#endif
