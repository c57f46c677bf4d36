/* model_sim.h — what the ring's and the trees' simulations share: times in
 * integer picoseconds, the bucketed event queue, small FIFOs. Internal to
 * p2pbcast-model (model.c, model_tree.c). */
#ifndef P2PBCAST_MODEL_SIM_H
#define P2PBCAST_MODEL_SIM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PS 1e12
#define NEVER UINT64_MAX

enum { EV_SENT = 0, EV_ARRIVE = 1, EV_XFER = 2, EV_WAKE = 3 };
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

struct pb_model_cfg;
struct pb_model_result;
struct pb_plan;
/* model_tree.c: simulate the two trees (R >= 1, at least one chunk). */
int pb_model_tree_sim(const struct pb_model_cfg *cfg, const struct pb_plan *p, uint32_t slots,
                      struct pb_model_result *res, char *err, size_t errlen);

static inline uint64_t to_ps(double s)
{
    double v = s * PS + 0.5;
    return v >= 1.8e19 ? NEVER : (uint64_t)v;
}

#endif
