/* plan.c — chunking, the scatter-ring schedule, and what both schedules
 * share (sender, targets, partners); the trees are in plan_tree.c. */
#include "plan.h"

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

int pb_plan_scatter_target(const struct pb_plan *p, uint64_t k)
{
    if (p->nrecv <= 0)
        return -1;
    return (int)(k % (uint64_t)p->nrecv);
}

int pb_plan_successor(const struct pb_plan *p, int r)
{
    return (r + 1) % p->nrecv;
}

int pb_plan_predecessor(const struct pb_plan *p, int r)
{
    return (r + p->nrecv - 1) % p->nrecv;
}

int pb_plan_hops(const struct pb_plan *p, int r, uint64_t k)
{
    int s = pb_plan_scatter_target(p, k);
    return (r - s + p->nrecv) % p->nrecv;
}

bool pb_plan_forwards(const struct pb_plan *p, int r, uint64_t k)
{
    /* The chunk has reached every receiver once it has made R-1 hops. */
    return p->nrecv > 1 && pb_plan_hops(p, r, k) < p->nrecv - 1;
}

int pb_plan_sender(const struct pb_plan *p, int r, uint64_t k)
{
    if (p->schedule == PB_SCHED_TREE)
        return pb_tree_parent(p->nrecv, pb_tree_of_chunk(k), r);
    return pb_plan_hops(p, r, k) == 0 ? PB_FROM_ROOT : pb_plan_predecessor(p, r);
}

int pb_plan_targets(const struct pb_plan *p, int r, uint64_t k, int out[2])
{
    if (p->nrecv <= 0)
        return 0;
    if (p->schedule == PB_SCHED_TREE) {
        if (r == PB_FROM_ROOT) {
            out[0] = pb_tree_root(p->nrecv, pb_tree_of_chunk(k));
            return 1;
        }
        return pb_tree_children(p->nrecv, pb_tree_of_chunk(k), r, out);
    }
    if (r == PB_FROM_ROOT) {
        out[0] = pb_plan_scatter_target(p, k);
        return 1;
    }
    if (!pb_plan_forwards(p, r, k))
        return 0;
    out[0] = pb_plan_successor(p, r);
    return 1;
}

static int add_partner(int *out, int n, int leader)
{
    for (int i = 0; i < n; i++)
        if (out[i] == leader)
            return n;
    out[n] = leader;
    return n + 1;
}

/* Receiver r's partners in the trees: both parents, its children. */
static int tree_partners(const struct pb_plan *p, int root_leader, int nleaders, int r, int *out)
{
    int n = 0;
    for (int t = 0; t < PB_TREES; t++) {
        int up = r == PB_FROM_ROOT ? PB_FROM_ROOT : pb_tree_parent(p->nrecv, t, r);
        if (r != PB_FROM_ROOT)
            n = add_partner(out, n, up == PB_FROM_ROOT ? root_leader : pb_plan_leader_of(root_leader, nleaders, up));
        int kids[2], nk = pb_tree_children(p->nrecv, t, r, kids);
        for (int i = 0; i < nk; i++)
            n = add_partner(out, n, pb_plan_leader_of(root_leader, nleaders, kids[i]));
    }
    return n;
}

/* Allgather: the ring neighbours, and the root (DONE and FIN notices);
 * the root talks to everyone. */
static int shared_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    int n = 0;
    if (leader == root_leader) {
        for (int l = 0; l < nleaders; l++)
            if (l != root_leader)
                out[n++] = l;
        return n;
    }
    n = add_partner(out, n, root_leader);
    n = add_partner(out, n, pb_shared_predecessor(p, leader));
    return add_partner(out, n, pb_shared_successor(p, leader));
}

int pb_plan_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out)
{
    int r = pb_plan_receiver_of(root_leader, nleaders, leader);
    if (p->nrecv <= 0)
        return 0;
    if (p->schedule == PB_SCHED_SHARED)
        return shared_partners(p, root_leader, nleaders, leader, out);
    if (p->schedule == PB_SCHED_TREE)
        return tree_partners(p, root_leader, nleaders, r < 0 ? PB_FROM_ROOT : r, out);
    int n = 0;
    if (r < 0) {
        for (int i = 0; i < p->nrecv; i++)
            out[n++] = pb_plan_leader_of(root_leader, nleaders, i);
        return n;
    }
    n = add_partner(out, n, root_leader);
    if (p->nrecv > 1) {
        n = add_partner(out, n, pb_plan_leader_of(root_leader, nleaders, pb_plan_predecessor(p, r)));
        n = add_partner(out, n, pb_plan_leader_of(root_leader, nleaders, pb_plan_successor(p, r)));
    }
    return n;
}

uint64_t pb_plan_default_chunk(uint64_t file_size, int nrecv)
{
    /* Two costs pull in opposite directions: every chunk pays a per-message
     * cost (alpha*B bytes' worth), and the ring's tail adds (R-1)*c/B. Their
     * sum is smallest near c = sqrt(F * alpha*B / (R-1)). With alpha*B taken
     * as 16 KiB (TCP, verbs and MPI on current fabrics: 2-20 us at 1-12 GB/s)
     * p2pbcast-model finds this within a few percent of the best chunk from
     * 16 to 10,000 nodes (README, "Choosing the chunk size"). Rounded to the
     * nearest power of two, within [32 KiB, 4 MiB]. */
    const double alpha_b = 16384.0;
    const uint64_t lo = 32u * 1024u, hi = 4u * 1024u * 1024u;
    double ring = nrecv > 2 ? (double)(nrecv - 1) : 1.0;
    double target = (double)file_size * alpha_b / ring; /* c squared */
    uint64_t c = lo;
    while (c < hi && (double)(2 * c) * (double)(2 * c) <= target)
        c *= 2;
    if (c < hi && target >= 2.0 * (double)c * (double)c)
        c *= 2; /* nearer to the next power of two, in log scale */
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
    int tree = schedule == PB_SCHED_TREE;
    uint64_t rule = tree ? pb_plan_default_chunk_tree(file_size, nrecv) : pb_plan_default_chunk(file_size, nrecv);
    uint64_t cap = pb_plan_tcp_chunk_cap(link_mbit);
    int capped = tcp_between_hosts && rule > cap;
    char a[32], b[32], rate[96] = "link rate unknown: 64 KiB";
    if (link_mbit)
        snprintf(rate, sizeof rate, "%s, ~4 ms at the link's %llu Mbit/s", fmt_chunk(cap, b, sizeof b),
                 (unsigned long long)link_mbit);
    if (why && capped)
        snprintf(why, whylen, "%s: the %s rule gives %s for %d receiver(s), capped over tcp between hosts (%s)",
                 fmt_chunk(cap, a, sizeof a), tree ? "trees'" : "ring's", fmt_chunk(rule, b, sizeof b), nrecv, rate);
    else if (why)
        snprintf(why, whylen, "%s: the %s rule for %d receiver(s)%s%s%s", fmt_chunk(rule, a, sizeof a),
                 tree ? "trees'" : "ring's", nrecv, tcp_between_hosts ? ", within the tcp cap (" : "",
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
