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

uint64_t pb_plan_tcp_chunk_cap(uint64_t link_mbit)
{
    /* Measured (bench/chunk_sweep.sh, bench/README.md): at 150 Mbit/s 32-64 KiB
     * chunks (2-3.5 ms of wire time) beat 256 KiB by 5-10 % and 4 MiB by up to
     * 40 % at 4-8 hosts, ring and trees alike; on 7-12 Gbit/s links 1-4 MiB
     * beat 64 KiB by about 1.5x, per-chunk CPU costing more than the bursts;
     * with 2 hosts at 150 Mbit/s 4 MiB cost 4-6 % (one chunk's wire time to
     * fill and drain). All fit one wire time per chunk, about 4 ms. */
    const uint64_t lo = 64u * 1024u, hi = 4u * 1024u * 1024u;
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

uint64_t pb_plan_choose_chunk(uint64_t file_size, int nrecv, int schedule, int tcp_between_hosts, uint64_t link_mbit,
                              char *why, size_t whylen)
{
    const struct pb_sched *s = pb_sched_of(schedule);
    uint64_t rule = s->default_chunk(file_size, nrecv);
    uint64_t cap = pb_plan_tcp_chunk_cap(link_mbit);
    int capped = tcp_between_hosts && rule > cap;
    char a[32], b[32], rate[96] = "link rate unknown: 64 KiB";
    if (link_mbit)
        snprintf(rate, sizeof rate, "%s, ~4 ms at the link's %llu Mbit/s", fmt_chunk(cap, b, sizeof b),
                 (unsigned long long)link_mbit);
    if (why && capped)
        snprintf(why, whylen, "%s: the %s rule gives %s for %d receiver(s), capped over tcp between hosts (%s)",
                 fmt_chunk(cap, a, sizeof a), s->rule_name, fmt_chunk(rule, b, sizeof b), nrecv, rate);
    else if (why)
        snprintf(why, whylen, "%s: the %s rule for %d receiver(s)%s%s%s", fmt_chunk(rule, a, sizeof a),
                 s->rule_name, nrecv, tcp_between_hosts ? ", within the tcp cap (" : "",
                 tcp_between_hosts ? rate : "", tcp_between_hosts ? ")" : "");
    return capped ? cap : rule;
}

int pb_plan_leader_of(int root_leader, int nleaders, int r)
{
    return (root_leader + 1 + r) % nleaders;
}

int pb_plan_receiver_of(int root_leader, int nleaders, int leader)
{
    if (leader == root_leader)
        return -1;
    return (leader - root_leader - 1 + nleaders) % nleaders;
}

int pb_schedule_auto(uint64_t file_size, int nleaders, char *why, size_t whylen)
{
    /* Closed forms in bytes' worth of time (times B), alpha*B = 16 KiB:
     *   ring  F + (R-1) c + (F/c) alpha*B          (tail R-1 hops of c)
     *   trees F + (2 ceil(log2 R) + 1) c + (F/c) alpha*B
     * each with its own default chunk. Up to 8 nodes the ring stays: the
     * closed forms and p2pbcast-model give the trees nothing there (tail
     * 6c against 7c at 8 nodes; equal times at 16 in the model), the ring
     * is what the 8-host bed measured (bench/README.md), and on the bed
     * at 64 KiB chunks the two measure alike (0.885 vs 0.88 of F/B at 4
     * hosts, 0.907 vs 0.91 at 8; bench/results/chunk-sweep.txt). Beyond 8, the trees win as soon as
     * the ring's tail outgrows theirs, and spare the root a connection to
     * every node. */
    int R = nleaders - 1;
    const double ab = 16384.0, F = (double)file_size;
    double cr = (double)pb_plan_default_chunk(file_size, R), ct = (double)pb_plan_default_chunk_tree(file_size, R);
    double ring = F + (R > 1 ? R - 1 : 0) * cr + F / cr * ab;
    double tree = F + (2.0 * pb_ceil_log2(R > 1 ? (uint64_t)R : 1) + 1) * ct + F / ct * ab;
    int pick = nleaders > 8 && tree < ring ? PB_SCHED_TREE : PB_SCHED_RING;
    if (why)
        snprintf(why, whylen, "%s: %d nodes%s, predicted %.3g s (ring) vs %.3g s (tree) at 1 GB/s",
                 pb_schedule_name(pick), nleaders, nleaders <= 8 ? " (the ring up to 8)" : "", ring / 1e9,
                 tree / 1e9);
    return pick;
}
