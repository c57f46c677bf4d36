/* model_sim.c — the simulation core every modelled schedule runs on: the
 * links, the event loop, the arrival count and the result (model_sim.h).
 * A schedule's model (model.c: the ring, model_tree.c: the two trees)
 * supplies only its flow control, through struct sim_rules. */
#include "model_sim.h"
#include "model.h"
#include "plan.h"

#include <stdio.h>

void sim_init(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p)
{
    double B = cfg->bandwidth;
    s->R = p->nrecv;
    s->nchunks = p->nchunks;
    s->last_chunk = p->nchunks - 1;
    s->alpha_ps = to_ps(cfg->alpha);
    s->d_full = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(p, 0) + PB_TRAILER_SIZE) / B);
    s->d_last = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(p, s->last_chunk) + PB_TRAILER_SIZE) / B);
    s->slow = -1;
}

void sim_set_slow(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p, int node)
{
    double B = cfg->slow_rate;
    s->slow = node;
    s->d_full_slow = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(p, 0) + PB_TRAILER_SIZE) / B);
    s->d_last_slow = to_ps(cfg->alpha + (double)(pb_plan_chunk_len(p, s->last_chunk) + PB_TRAILER_SIZE) / B);
}

int sim_cpu_init(struct sim *s, const struct pb_model_cfg *cfg, const struct pb_plan *p, uint32_t slots)
{
    if (!(cfg->cpu_rate > 0))
        return 0;
    s->cpu_full = to_ps((double)pb_plan_chunk_len(p, 0) / cfg->cpu_rate);
    s->cpu_last = to_ps((double)pb_plan_chunk_len(p, s->last_chunk) / cfg->cpu_rate);
    s->root_ready = calloc(slots, sizeof *s->root_ready);
    s->root_nready = slots;
    return s->root_ready ? 0 : -1;
}

void sim_cpu_free(struct sim *s)
{
    free(s->root_ready);
    s->root_ready = NULL;
    s->root_nready = 0;
}

/* The node's thread takes chunk k at t (or when it is free): when done. */
static uint64_t cpu_take(struct sim *s, struct sim_node *x, uint64_t t, uint64_t k)
{
    uint64_t d = k == s->last_chunk ? s->cpu_last : s->cpu_full;
    if (!d)
        return t;
    x->cpu_free = (x->cpu_free > t ? x->cpu_free : t) + d;
    return x->cpu_free;
}

uint64_t sim_root_read(struct sim *s, struct sim_node *root, uint64_t k)
{
    uint64_t t = cpu_take(s, root, s->now, k);
    if (s->root_nready)
        s->root_ready[k % s->root_nready] = t;
    return t;
}

void sim_bad(struct sim *s, const char *what, int node, uint64_t k)
{
    if (!s->bad)
        snprintf(s->why, sizeof s->why, "model internal error%s: %s (node %d, chunk %llu)", s->label, what, node,
                 (unsigned long long)k);
    s->bad = 1;
}

void sim_push(struct sim *s, uint64_t t, int kind, int node, uint64_t k)
{
    if (evq_push(&s->q, t, (uint32_t)node | (uint32_t)kind << EV_SHIFT, (uint32_t)k) < 0)
        sim_bad(s, "out of memory for events", node, k);
}

void sim_wake(struct sim *s, struct sim_node *x, int node, uint64_t t)
{
    if (x->wake_at <= t)
        return; /* an earlier wake-up re-checks and reschedules */
    x->wake_at = t;
    sim_push(s, t, EV_WAKE, node, 0);
}

void sim_transmit(struct sim *s, int node, struct sim_node *x, struct sim_node *y, uint64_t k, int tag)
{
    uint64_t d = node == s->slow ? (k == s->last_chunk ? s->d_last_slow : s->d_full_slow)
                                 : (k == s->last_chunk ? s->d_last : s->d_full);
    uint64_t out_end = s->now + d;
    uint64_t arrive = (y->in_free > s->now ? y->in_free : s->now) + d;
    y->in_free = arrive;
    arrive = cpu_take(s, y, arrive, k); /* y's thread: hash, write (tcp: copy) */
    x->out_busy = 1;
    s->messages++;
    if (node == s->R)
        s->root_busy += d;
    if (arrive == out_end) {
        sim_push(s, out_end, EV_XFER | tag, node, k);
    } else {
        sim_push(s, out_end, EV_SENT | tag, node, k);
        sim_push(s, arrive, EV_ARRIVE | tag, node, k);
    }
}

void sim_count_arrival(struct sim *s, struct sim_node *y)
{
    if (++y->received == s->nchunks) {
        if (!s->ndone++)
            s->first_done = s->now;
        if (s->now > s->finish)
            s->finish = s->now;
    }
}

static void run_event(struct sim *s, const struct sim_rules *rules, void *m, struct ev e)
{
    s->events++;
    int node = (int)(e.who & EV_NODE_MASK), kind = (int)(e.who >> EV_SHIFT);
    int tag = kind >> EV_TAG_SHIFT;
    switch (kind & ((1 << EV_TAG_SHIFT) - 1)) {
    case EV_SENT:
        rules->sent(m, node);
        break;
    case EV_ARRIVE:
        rules->arrive(m, node, tag, e.k);
        break;
    case EV_XFER:
        rules->sent(m, node);
        rules->arrive(m, node, tag, e.k);
        break;
    case EV_WAKE: {
        struct sim_node *x = rules->node(m, node);
        if (x->wake_at == s->now)
            x->wake_at = NEVER;
        rules->pump(m, node);
        break;
    }
    }
}

/* Run the earliest bucket until every receiver is done or nothing is left;
 * events scheduled for the same time while a bucket runs are appended to it
 * and run too. Later buckets are inserted before it: it stays the last. */
void sim_run(struct sim *s, const struct sim_rules *rules, void *m)
{
    while (s->q.nb && s->ndone < s->R && !s->bad) {
        struct bucket *b = &s->q.b[s->q.nb - 1];
        s->now = b->t;
        for (size_t i = 0; i < s->q.b[s->q.nb - 1].n && !s->bad; i++)
            run_event(s, rules, m, s->q.b[s->q.nb - 1].v[i]);
        /* Retire it (nothing earlier can have been added); keep its
         * storage as the spare. */
        s->q.b[s->q.nb - 1].n = 0;
        s->q.nb--;
    }
}

int sim_result(struct sim *s, struct pb_model_result *res, char *err, size_t errlen)
{
    int rc = 0;
    if (s->bad) {
        snprintf(err, errlen, "%s", s->why);
        rc = -1;
    } else if (s->ndone < s->R) {
        rc = -2;
    } else {
        res->time = (double)s->finish / PS;
        res->first_done = (double)s->first_done / PS;
        res->efficiency = res->ideal / res->time;
        res->root_busy = (double)s->root_busy / (double)s->finish;
        if (res->root_busy > 1)
            res->root_busy = 1;
    }
    res->messages = s->messages;
    res->events = s->events;
    return rc;
}
