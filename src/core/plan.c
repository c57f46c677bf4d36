/* plan.c — what every schedule shares: chunking, leader numbering, the
 * chunk-size cap and choice; sender, targets and partners dispatch to the
 * plan's schedule (schedule.h, one sched_*.c each). */
#include "plan.h"
#include "schedule.h"

#include <stdio.h>

int pb_plan_init(struct pb_plan *p, uint64_t file_size, uint64_t chunk_size, int nrecv,
                 char *err, size_t errlen)
{
    if (nrecv < 0) {
        snprintf(err, errlen, "negative receiver count %d", nrecv);
        return -1;
    }
    if (chunk_size < PB_MIN_CHUNK || chunk_size > PB_MAX_CHUNK) {
        snprintf(err, errlen, "chunk size %llu out of range (%u bytes to %u MiB)",
                 (unsigned long long)chunk_size, PB_MIN_CHUNK, PB_MAX_CHUNK >> 20);
        return -1;
    }
    p->file_size = file_size;
    p->chunk_size = chunk_size;
    p->nchunks = file_size / chunk_size + (file_size % chunk_size != 0);
    p->nrecv = nrecv;
    p->schedule = PB_SCHED_RING;
    p->order = NULL;
    p->tree_hang = 0;
    p->pairs = 1;
    /* Chunk ids travel as 32-bit tags (RDMA immediate data). */
    if (p->nchunks > UINT32_MAX) {
        snprintf(err, errlen, "%llu chunks is too many: use a larger chunk size",
                 (unsigned long long)p->nchunks);
        return -1;
    }
    return 0;
}

uint64_t pb_plan_chunk_offset(const struct pb_plan *p, uint64_t k)
{
    return k * p->chunk_size;
}

uint64_t pb_plan_chunk_len(const struct pb_plan *p, uint64_t k)
{
    if (k >= p->nchunks)
        return 0;
    uint64_t off = k * p->chunk_size;
    uint64_t rest = p->file_size - off;
    return rest < p->chunk_size ? rest : p->chunk_size;
}






int pb_plan_sender(const struct pb_plan *p, int r, uint64_t k)
{
    return pb_sched_of(p->schedule)->sender(p, r, k);
}

int pb_plan_targets(const struct pb_plan *p, int r, uint64_t k, int out[2])
{
    if (p->nrecv <= 0)
        return 0;
    return pb_sched_of(p->schedule)->targets(p, r, k, out);
}

int pb_plan_reader(const struct pb_plan *p, int root, uint64_t k)
{
    const struct pb_sched *s = pb_sched_of(p->schedule);
    return s->reader ? s->reader(p, k) : root;
}

int pb_plan_add_partner(int *out, int n, int leader)
{
    for (int i = 0; i < n; i++)
        if (out[i] == leader)
            return n;
    out[n] = leader;
    return n + 1;
}

int pb_plan_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    if (p->nrecv <= 0)
        return 0;
    return pb_sched_of(p->schedule)->partners(p, root_leader, nleaders, leader, out);
}

int pb_ceil_log2(uint64_t n)
{
    int l = 0;
    while (l < 63 && ((uint64_t)1 << l) < n)
        l++;
    return l;
}

double pb_plan_alpha_b(const struct pb_link_cost *lc)
{
    return lc && lc->rate > 0 ? lc->alpha * lc->rate : PB_ALPHA_B_UNKNOWN;
}

uint64_t pb_plan_chunk_ceiling(double alpha_b)
{
    /* At c = 64 alpha*B the per-message cost is 1/64 of the wire time;
     * below 4 MiB the ceiling stays where it always was (alpha*B 16 KiB
     * gives 1 MiB), above 64 MiB a default pool would grow past 256 MiB. */
    uint64_t c = PB_CEIL_MIN;
    while (c < PB_CEIL_MAX && (double)(2 * c) <= 64.0 * alpha_b)
        c *= 2;
    return c;
}

uint64_t pb_plan_rule_chunk(uint64_t file_size, double hops, double alpha_b)
{
    const uint64_t lo = 32u * 1024u, hi = pb_plan_chunk_ceiling(alpha_b);
    double target = (double)file_size * alpha_b / (hops > 1 ? hops : 1); /* c squared */
    uint64_t c = lo;
    while (c < hi && (double)(2 * c) * (double)(2 * c) <= target)
        c *= 2;
    if (c < hi && target >= 2.0 * (double)c * (double)c)
        c *= 2; /* nearer to the next power of two, in log scale */
    return c;
}

uint32_t pb_plan_default_slots(uint64_t chunk)
{
    uint64_t n = chunk ? PB_POOL_BUDGET / chunk : PB_DEFAULT_SLOTS;
    return n >= PB_DEFAULT_SLOTS ? PB_DEFAULT_SLOTS : n < 4 ? 4u : (uint32_t)n;
}

uint32_t pb_plan_rail_slots(uint32_t nslots, int rails, uint64_t chunk)
{
    uint64_t want = (uint64_t)nslots * (uint64_t)(rails > 1 ? rails : 1);
    uint64_t cap = chunk ? PB_POOL_BUDGET / chunk : want;
    if (want > cap)
        want = cap > nslots ? cap : nslots;
    return want > 4096 ? 4096u : (uint32_t)want;
}

uint64_t pb_plan_rail_chunk(uint64_t chunk, int rails)
{
    const uint64_t lo = 32u * 1024u;
    if (rails < 2 || chunk <= lo)
        return chunk;
    uint64_t c = lo;
    while (2 * c <= chunk / (uint64_t)rails)
        c *= 2;
    return c;
}

uint64_t pb_plan_tcp_chunk_cap(uint64_t link_mbit)
{
    /* Measured (bench/chunk_sweep.sh, bench/README.md): at 150 Mbit/s 32-64 KiB
     * chunks (2-3.5 ms of wire time) beat 256 KiB by 5-10 % and 4 MiB by up to
     * 40 % at 4-8 hosts, ring and trees alike; on 7-12 Gbit/s links 1-4 MiB
     * beat 64 KiB by about 1.5x, per-chunk CPU costing more than the bursts;
     * with 2 hosts at 150 Mbit/s 4 MiB cost 4-6 % (one chunk's wire time to
     * fill and drain). All fit one wire time per chunk, about 4 ms. */
    const uint64_t lo = 64u * 1024u, hi = PB_CEIL_MAX;
    double budget = (double)link_mbit * 1e6 / 8.0 * 0.004; /* bytes in 4 ms */
    uint64_t c = lo;
    while (c < hi && (double)(2 * c) <= budget)
        c *= 2;
    return c;
}

static const char *fmt_chunk(uint64_t c, char *buf, size_t n)
{
    if (c >= (1u << 20) && c % (1u << 20) == 0)
        snprintf(buf, n, "%llu MiB", (unsigned long long)(c >> 20));
    else
        snprintf(buf, n, "%llu KiB", (unsigned long long)(c >> 10));
    return buf;
}

/* "alpha*B 750 KB (tcp: 30 us per message at 200000 Mbit/s)" */
static const char *fmt_alpha_b(const struct pb_link_cost *lc, char *buf, size_t n)
{
    double ab = pb_plan_alpha_b(lc);
    const char *what = lc && lc->what ? lc->what : "link rate unknown";
    if (ab >= 1e6)
        snprintf(buf, n, "alpha*B %.3g MB (%s)", ab / 1e6, what);
    else
        snprintf(buf, n, "alpha*B %.3g KB (%s)", ab / 1e3, what);
    return buf;
}

static uint64_t rate_mbit(const struct pb_link_cost *lc)
{
    return lc && lc->rate > 0 ? (uint64_t)(lc->rate * 8 / 1e6 + 0.5) : 0;
}

uint64_t pb_plan_choose_chunk(uint64_t file_size, int nrecv, int schedule, const struct pb_link_cost *lc, char *why,
                              size_t whylen)
{
    const struct pb_sched *s = pb_sched_of(schedule);
    uint64_t rule = s->default_chunk(file_size, nrecv, pb_plan_alpha_b(lc));
    uint64_t link_mbit = rate_mbit(lc);
    uint64_t cap = pb_plan_tcp_chunk_cap(link_mbit);
    int tcp_hosts = lc && lc->tcp_between_hosts;
    int capped = tcp_hosts && rule > cap;
    char a[32], b[32], rate[96] = "link rate unknown: 64 KiB", ab[160];
    if (link_mbit)
        snprintf(rate, sizeof rate, "%s, ~4 ms at the link's %llu Mbit/s", fmt_chunk(cap, b, sizeof b),
                 (unsigned long long)link_mbit);
    fmt_alpha_b(lc, ab, sizeof ab);
    if (why && capped)
        snprintf(why, whylen, "%s: the %s rule gives %s for %d receiver(s) at %s, capped over tcp between hosts (%s)",
                 fmt_chunk(cap, a, sizeof a), s->rule_name, fmt_chunk(rule, b, sizeof b), nrecv, ab, rate);
    else if (why)
        snprintf(why, whylen, "%s: the %s rule for %d receiver(s) at %s%s%s%s", fmt_chunk(rule, a, sizeof a),
                 s->rule_name, nrecv, ab, tcp_hosts ? ", within the tcp cap (" : "", tcp_hosts ? rate : "",
                 tcp_hosts ? ")" : "");
    return capped ? cap : rule;
}

int pb_plan_leader_of(const struct pb_plan *p, int root_leader, int nleaders, int r)
{
    if (p->order && r >= 0 && r < p->nrecv)
        return p->order[r];
    return (root_leader + 1 + r) % nleaders;
}

int pb_plan_receiver_of(const struct pb_plan *p, int root_leader, int nleaders, int leader)
{
    if (leader == root_leader)
        return -1;
    if (p->order) {
        for (int r = 0; r < p->nrecv; r++)
            if (p->order[r] == leader)
                return r;
        return -1;
    }
    return (leader - root_leader - 1 + nleaders) % nleaders;
}

int pb_schedule_auto(uint64_t file_size, int nleaders, const struct pb_link_cost *lc, char *why, size_t whylen)
{
    /* Closed forms in bytes' worth of time (times B):
     *   ring  F + (R-1) c + (F/c) alpha*B          (tail R-1 hops of c)
     *   trees F + (2 ceil(log2 R) + 1) c + (F/c) alpha*B
     * each with the chunk it would really use here (its rule at this
     * alpha*B, the tcp cap). Up to 8 nodes the ring stays: the
     * closed forms and p2pbcast-model give the trees nothing there (tail
     * 6c against 7c at 8 nodes; equal times at 16 in the model), the ring
     * is what the 8-host bed measured (bench/README.md), and on the bed
     * at 64 KiB chunks the two measure alike (0.885 vs 0.88 of F/B at 4
     * hosts, 0.907 vs 0.91 at 8; bench/results/chunk-sweep.txt). Beyond 8, the trees win as soon as
     * the ring's tail outgrows theirs, and spare the root a connection to
     * every node. */
    int R = nleaders - 1;
    const double ab = pb_plan_alpha_b(lc), F = (double)file_size;
    uint64_t cr = pb_plan_choose_chunk(file_size, R, PB_SCHED_RING, lc, NULL, 0);
    uint64_t ct = pb_plan_choose_chunk(file_size, R, PB_SCHED_TREE, lc, NULL, 0);
    double ring = F + (R > 1 ? R - 1 : 0) * (double)cr + F / (double)cr * ab;
    double tree = F + (2.0 * pb_ceil_log2(R > 1 ? (uint64_t)R : 1) + 1) * (double)ct + F / (double)ct * ab;
    int pick = nleaders > 8 && tree < ring ? PB_SCHED_TREE : PB_SCHED_RING;
    double rate = lc && lc->rate > 0 ? lc->rate : 1e9;
    char a[32], b[32], abs[160];
    if (why)
        snprintf(why, whylen, "%s: %d nodes%s, predicted %.3g s (ring, %s chunks) vs %.3g s (tree, %s) at %.3g GB/s%s, %s",
                 pb_schedule_name(pick), nleaders, nleaders <= 8 ? " (the ring up to 8)" : "", ring / rate,
                 fmt_chunk(cr, a, sizeof a), tree / rate, fmt_chunk(ct, b, sizeof b), rate / 1e9,
                 lc && lc->rate > 0 ? "" : " (rate unknown)", fmt_alpha_b(lc, abs, sizeof abs));
    return pick;
}
