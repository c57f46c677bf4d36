/* test_plan.c — the schedule: every receiver gets every chunk exactly once,
 * nobody sends to itself, no chunk loops, for R = 1..64 and awkward sizes. */
#include "plan.h"
#include "schedule.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* Walk every chunk's path the way the engine does and check it. */
static int check_plan(uint64_t size, uint64_t chunk, int R, char *why, size_t n)
{
    struct pb_plan p;
    char err[128];
    if (pb_plan_init(&p, size, chunk, R, err, sizeof err)) {
        snprintf(why, n, "init: %s", err);
        return 0;
    }
    uint64_t expect_chunks = size / chunk + (size % chunk != 0);
    if (p.nchunks != expect_chunks) {
        snprintf(why, n, "nchunks %llu", (unsigned long long)p.nchunks);
        return 0;
    }
    uint64_t total = 0;
    for (uint64_t k = 0; k < p.nchunks; k++) {
        uint64_t len = pb_plan_chunk_len(&p, k);
        if (len == 0 || len > chunk || pb_plan_chunk_offset(&p, k) != total) {
            snprintf(why, n, "chunk %llu len %llu", (unsigned long long)k, (unsigned long long)len);
            return 0;
        }
        total += len;
        if (R == 0)
            continue;
        int *got = calloc((size_t)R, sizeof *got);
        int s = pb_plan_scatter_target(&p, k);
        if (s < 0 || s >= R) {
            free(got);
            snprintf(why, n, "scatter target %d", s);
            return 0;
        }
        /* The root delivers to s; then each holder forwards while the plan says so. */
        int at = s, steps = 0;
        got[at]++;
        if (pb_plan_sender(&p, at, k) != PB_FROM_ROOT) {
            free(got);
            snprintf(why, n, "scatter target does not expect the root");
            return 0;
        }
        while (pb_plan_forwards(&p, at, k)) {
            int nx = pb_plan_successor(&p, at);
            if (nx == at || pb_plan_sender(&p, nx, k) != at || ++steps > R) {
                free(got);
                snprintf(why, n, "bad hop %d -> %d for chunk %llu", at, nx, (unsigned long long)k);
                return 0;
            }
            at = nx;
            got[at]++;
        }
        for (int r = 0; r < R; r++)
            if (got[r] != 1) {
                snprintf(why, n, "receiver %d got chunk %llu %d times", r, (unsigned long long)k, got[r]);
                free(got);
                return 0;
            }
        free(got);
    }
    if (total != size) {
        snprintf(why, n, "covered %llu of %llu bytes", (unsigned long long)total, (unsigned long long)size);
        return 0;
    }
    return 1;
}

/* Walk chunk k from the root along pb_plan_targets, breadth first: every
 * receiver must get it exactly once, from the node that pb_plan_sender
 * names, which got it earlier on the walk; depth[] gets the hops. */
static int walk_chunk(const struct pb_plan *p, uint64_t k, int *depth, int *queue, char *why, size_t n)
{
    int R = p->nrecv, head = 0, tail = 0;
    for (int r = 0; r < R; r++)
        depth[r] = -1;
    int first[2], nf = pb_plan_targets(p, PB_FROM_ROOT, k, first);
    if (R > 0 && (nf != 1 || pb_plan_sender(p, first[0], k) != PB_FROM_ROOT)) {
        snprintf(why, n, "chunk %llu: the root sends to %d receivers", (unsigned long long)k, nf);
        return 0;
    }
    for (int i = 0; i < nf; i++) {
        depth[first[i]] = 1;
        queue[tail++] = first[i];
    }
    while (head < tail) {
        int at = queue[head++], to[2], nt = pb_plan_targets(p, at, k, to);
        for (int i = 0; i < nt; i++) {
            if (to[i] == at || to[i] < 0 || to[i] >= R || depth[to[i]] >= 0 || pb_plan_sender(p, to[i], k) != at) {
                snprintf(why, n, "chunk %llu: bad hop %d -> %d (sender %d)", (unsigned long long)k, at, to[i],
                         to[i] >= 0 && to[i] < R ? pb_plan_sender(p, to[i], k) : -9);
                return 0;
            }
            depth[to[i]] = depth[at] + 1;
            queue[tail++] = to[i];
        }
    }
    if (tail != R) {
        snprintf(why, n, "chunk %llu reached %d of %d receivers", (unsigned long long)k, tail, R);
        return 0;
    }
    return 1;
}

/* The trees for nleaders nodes and root leader `root`: every chunk's walk,
 * disjoint interiors, depth, partners (few, mutual, cover every hop).
 * placed: the plan's shape with tree_hang and a scrambled order (a
 * permutation of the leaders other than the root), as placement gives. */
static int check_trees_as(int nleaders, int root, uint64_t size, int placed, char *why, size_t n)
{
    struct pb_plan p;
    char err[128];
    int R = nleaders - 1, ok_ = 1;
    if (pb_plan_init(&p, size, 4096, R, err, sizeof err)) {
        snprintf(why, n, "init: %s", err);
        return 0;
    }
    p.schedule = PB_SCHED_TREE;
    int *order = NULL;
    if (placed && R > 0) {
        order = calloc((size_t)R, sizeof *order);
        unsigned long long x = 88172645463325252ull + (unsigned)nleaders; /* a fixed shuffle */
        for (int r = 0; r < R; r++)
            order[r] = (root + 1 + r) % nleaders;
        for (int r = R - 1; r > 0; r--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int j = (int)(x % (unsigned long long)(r + 1)), tmp = order[r];
            order[r] = order[j];
            order[j] = tmp;
        }
        p.order = order;
        p.tree_hang = 1;
    }
    int *depth = calloc((size_t)R + 1, sizeof *depth), *queue = calloc((size_t)R + 1, sizeof *queue);
    int *interior = calloc((size_t)R + 1, sizeof *interior);
    int maxdepth = pb_ceil_log2((uint64_t)R) + 1;
    /* The schedule depends on k mod 2 only: chunks 0 and 1 cover it, and
     * every chunk of a small file is walked. */
    uint64_t last = p.nchunks < 64 ? p.nchunks : 2;
    for (uint64_t k = 0; k < last && ok_; k++) {
        ok_ = walk_chunk(&p, k, depth, queue, why, n);
        for (int r = 0; r < R && ok_; r++)
            if (depth[r] > maxdepth || depth[r] != pb_plan_tree_depth(&p, pb_tree_of_chunk(k), r)) {
                snprintf(why, n, "receiver %d at depth %d in tree %d (max %d)", r, depth[r], (int)(k & 1), maxdepth);
                ok_ = 0;
            }
    }
    /* Every receiver passes on at most F: interior in one tree only, or
     * (the hung shape's R-2) one child in each. */
    for (int t = 0; t < PB_TREES && ok_; t++)
        for (int r = 0; r < R && ok_; r++) {
            int kids[2], nk = pb_plan_tree_children(&p, t, r, kids);
            if (nk > 0 && ((!placed && interior[r]) || (interior[r] += nk) > 2)) {
                snprintf(why, n, "receiver %d is interior in both trees", r);
                ok_ = 0;
            }
        }
    int *part = calloc((size_t)nleaders + 4, sizeof *part), *back = calloc((size_t)nleaders + 4, sizeof *back);
    for (int l = 0; l < nleaders && ok_; l++) {
        int np = pb_plan_partners(&p, root, nleaders, l, part);
        if (np > (l == root ? 2 : 4) || (R > 0 && np < 1)) {
            snprintf(why, n, "leader %d has %d partners", l, np);
            ok_ = 0;
        }
        for (int i = 0; i < np && ok_; i++) {
            int nb = pb_plan_partners(&p, root, nleaders, part[i], back), mutual = 0;
            for (int j = 0; j < nb; j++)
                mutual |= back[j] == l;
            if (part[i] == l || !mutual) {
                snprintf(why, n, "leader %d: partner %d %s", l, part[i], part[i] == l ? "is itself" : "not mutual");
                ok_ = 0;
            }
        }
        /* Every hop of both trees is between partners. */
        int r = pb_plan_receiver_of(&p, root, nleaders, l);
        for (int t = 0; t < PB_TREES && ok_ && r >= 0; t++) {
            int up = pb_plan_tree_parent(&p, t, r), upl = up == PB_FROM_ROOT ? root : pb_plan_leader_of(&p, root, nleaders, up);
            int found = 0;
            for (int i = 0; i < np; i++)
                found |= part[i] == upl;
            if (!found) {
                snprintf(why, n, "leader %d: parent %d in tree %d is no partner", l, upl, t);
                ok_ = 0;
            }
        }
    }
    free(depth);
    free(queue);
    free(interior);
    free(part);
    free(back);
    free(order);
    return ok_;
}

static int check_trees(int nleaders, int root, uint64_t size, char *why, size_t n)
{
    return check_trees_as(nleaders, root, size, 0, why, n);
}

static void test_trees(void)
{
    char why[200] = "";
    const uint64_t c = 4096;
    const uint64_t sizes[] = { 0, 1, c, 3 * c + 1, 61 * c };
    int all = 1;
    for (int N = 1; N <= 300 && all; N++)
        for (int root = 0; root < N && all; root += N > 3 ? N / 3 : 1)
            for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
                all = check_trees(N, root, sizes[i], why, sizeof why);
    ok(all, "trees, N = 1..300, several roots, 0 to 61 chunks: every receiver gets every chunk once from a "
            "holder, no self-sends, interiors disjoint, depth <= ceil(log2 n)+1, <= 4 partners (root 2) %s", why);
    for (int N = 1; N <= 300 && all; N++)
        for (int root = 0; root < N && all; root += N > 3 ? N / 3 : 1)
            for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
                all = check_trees_as(N, root, sizes[i], 1, why, sizeof why);
    ok(all, "placed trees (an order, the last receiver hung below a leaf for R even), N = 1..300: the same "
            "checks %s", why);
    const int big[] = { 1000, 4097, 10007 };
    for (int i = 0; i < 3; i++) {
        int N = big[i];
        all = check_trees(N, 0, 2 * c, why, sizeof why) && check_trees(N, N / 2 + 1, 3 * c, why, sizeof why) &&
              check_trees(N, N - 1, 0, why, sizeof why);
        ok(all, "trees, N = %d: the same checks, roots 0, N/2+1, N-1 %s", N, why);
    }
    /* The construction itself: tree 1 is tree 0 shifted by one position. */
    ok(pb_tree_root(7, 0) == 3 && pb_tree_root(7, 1) == 2 && pb_tree_parent(7, 0, 0) == 1 &&
           pb_tree_parent(7, 0, 3) == PB_FROM_ROOT && pb_tree_parent(7, 1, 6) == 0,
       "7 receivers: tree 0 roots at position 4 (receiver 3), tree 1 at receiver 2");
    struct pb_plan p;
    char err[128];
    pb_plan_init(&p, 10 * c, c, 9, err, sizeof err);
    int part[16];
    ok(pb_plan_partners(&p, 0, 10, 0, part) == 9, "ring: the root's partners are every receiver");
    p.schedule = PB_SCHED_TREE;
    ok(pb_plan_partners(&p, 0, 10, 0, part) == 2, "trees: the root's partners are the two tree roots");
    uint64_t t1 = pb_plan_default_chunk_tree(5000000000ull, 999, PB_ALPHA_B_UNKNOWN), t2 = pb_plan_default_chunk_tree(5000000000ull, 9999, PB_ALPHA_B_UNKNOWN);
    ok(t1 == 2u << 20 && t2 == 2u << 20, "tree chunk for 5 GB x 1,000 / 10,000 nodes: 2 MiB / 2 MiB (%llu, %llu)",
       (unsigned long long)t1, (unsigned long long)t2);
    ok(pb_schedule_auto(5000000000ull, 4, NULL, NULL, 0) == PB_SCHED_RING &&
           pb_schedule_auto(5000000000ull, 1000, NULL, NULL, 0) == PB_SCHED_TREE &&
           pb_schedule_auto(0, 2, NULL, NULL, 0) == PB_SCHED_RING,
       "auto: the ring for 4 nodes, the trees for 1,000");
    ok(pb_schedule_parse("tree") == PB_SCHED_TREE && pb_schedule_parse("ring") == PB_SCHED_RING &&
           pb_schedule_parse("auto") == -2 && pb_schedule_parse("star") == -1,
       "schedule names parse");
}

/* The allgather for N members: every chunk starts at its reader (who
 * reads it: PB_SELF_READ), and walking pb_shared_forwards from there every
 * member gets it exactly once, from the member pb_shared_sender names,
 * which holds it by then; nobody sends to itself. The read shares add up
 * to the file, and the partners are mutual and cover every hop. */
static int check_shared(int N, int root, uint64_t size, char *why, size_t n)
{
    struct pb_plan p;
    char err[128];
    if (pb_plan_init(&p, size, 4096, N - 1, err, sizeof err)) {
        snprintf(why, n, "init: %s", err);
        return 0;
    }
    p.schedule = PB_SCHED_SHARED;
    int *got = calloc((size_t)N, sizeof *got), ok_ = 1;
    uint64_t read_total = 0;
    /* The schedule depends on k mod N: chunks 0..N cover it (small files: all). */
    uint64_t last = p.nchunks < (uint64_t)N + 2 ? p.nchunks : (uint64_t)N + 2;
    for (uint64_t k = 0; k < last && ok_; k++) {
        memset(got, 0, (size_t)N * sizeof *got);
        int at = pb_shared_reader(&p, k), steps = 0;
        if (at < 0 || at >= N || pb_shared_sender(&p, at, k) != PB_SELF_READ || (uint64_t)at != k % (uint64_t)N) {
            snprintf(why, n, "chunk %llu: reader %d", (unsigned long long)k, at);
            ok_ = 0;
            break;
        }
        got[at]++;
        while (ok_ && pb_shared_forwards(&p, at, k)) {
            int nx = pb_shared_successor(&p, at);
            if (nx == at || pb_shared_sender(&p, nx, k) != at || got[nx] || ++steps >= N) {
                snprintf(why, n, "bad hop %d -> %d for chunk %llu", at, nx, (unsigned long long)k);
                ok_ = 0;
            }
            at = nx;
            got[at]++;
        }
        for (int m = 0; m < N && ok_; m++)
            if (got[m] != 1) {
                snprintf(why, n, "member %d got chunk %llu %d times", m, (unsigned long long)k, got[m]);
                ok_ = 0;
            }
    }
    for (int m = 0; m < N; m++)
        read_total += pb_shared_read_bytes(&p, m, NULL);
    if (ok_ && read_total != size) {
        snprintf(why, n, "members read %llu of %llu bytes", (unsigned long long)read_total, (unsigned long long)size);
        ok_ = 0;
    }
    int *out = calloc((size_t)N + 4, sizeof *out), *o2 = calloc((size_t)N + 4, sizeof *o2);
    for (int m = 0; m < N && ok_ && N > 1; m++) {
        int np = pb_plan_partners(&p, root, N, m, out), has_succ = 0;
        for (int i = 0; i < np && ok_; i++) {
            int back = pb_plan_partners(&p, root, N, out[i], o2), mutual = 0;
            for (int j = 0; j < back; j++)
                mutual |= o2[j] == m;
            has_succ |= out[i] == pb_shared_successor(&p, m);
            if (out[i] == m || !mutual) {
                snprintf(why, n, "member %d: partner %d %s", m, out[i], out[i] == m ? "is itself" : "not mutual");
                ok_ = 0;
            }
        }
        if (ok_ && (!has_succ || np > (m == root ? N - 1 : 3))) {
            snprintf(why, n, "member %d: %d partners, successor %s", m, np, has_succ ? "in" : "missing");
            ok_ = 0;
        }
    }
    free(out);
    free(o2);
    free(got);
    return ok_;
}

static void test_shared(void)
{
    char why[200] = "";
    int all = 1;
    for (int N = 1; N <= 300 && all; N++) {
        const uint64_t sizes[] = { 0, 1, 4095, 4097, (uint64_t)N * 4096 - 1, (uint64_t)(2 * N + 3) * 4096 + 5 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            all = check_shared(N, (int)((i * 7) % (size_t)N), sizes[i], why, sizeof why);
    }
    ok(all, "allgather, N = 1..300, several roots: every member gets every chunk once from a member holding it, "
            "never from itself; reads add up to the file; partners mutual %s", why);
    struct pb_plan p;
    char err[64];
    pb_plan_init(&p, 10 * 4096 + 1, 4096, 3, err, sizeof err);
    p.schedule = PB_SCHED_SHARED;
    unsigned char skip[2] = { 0x01, 0 }; /* chunk 0 skipped */
    ok(pb_shared_read_bytes(&p, 0, NULL) == 3 * 4096 && pb_shared_read_bytes(&p, 0, skip) == 2 * 4096 &&
           pb_shared_read_bytes(&p, 2, NULL) == 2 * 4096 + 1 && pb_shared_reader(&p, 6) == 2,
       "4 members, 11 chunks: member 0 reads chunks 0, 4, 8; member 2 reads 2, 6 and the 1-byte chunk 10");
    ok(!strcmp(pb_schedule_name(PB_SCHED_SHARED), "allgather") && pb_schedule_parse("allgather") == -1,
       "the allgather is named, but not a --schedule users pick");
}

/* A link whose alpha*B is the 16 KiB the rules used before alpha*B came
 * from the transport (the cap's tests): tcp between hosts or not, a rate. */
static const struct pb_link_cost *cost16k(int tcp, uint64_t mbit)
{
    static struct pb_link_cost lc[8];
    static int next;
    struct pb_link_cost *l = &lc[next++ % 8];
    l->rate = (double)mbit * 1e6 / 8;
    l->alpha = mbit ? PB_ALPHA_B_UNKNOWN / l->rate : 0;
    l->tcp_between_hosts = tcp;
    l->what = "test";
    return l;
}

/* The tcp cap: about 4 ms of wire time at the link rate, 64 KiB when the
 * rate is unknown; applied over tcp between hosts, to the ring's and the
 * trees' rule alike. */
static void test_chunk_choice(void)
{
    ok(pb_plan_tcp_chunk_cap(0) == 64 * 1024 && pb_plan_tcp_chunk_cap(150) == 64 * 1024,
       "tcp cap: 64 KiB for an unknown rate and at 150 Mbit/s");
    ok(pb_plan_tcp_chunk_cap(1000) == 256 * 1024 && pb_plan_tcp_chunk_cap(2500) == 1u << 20 &&
           pb_plan_tcp_chunk_cap(10000) == 4u << 20 && pb_plan_tcp_chunk_cap(200000) == 64u << 20 &&
           pb_plan_tcp_chunk_cap(400000) == 64u << 20,
       "tcp cap: 256 KiB at 1 Gbit/s, 1 MiB at 2.5, 4 MiB at 10, 64 MiB (the ceiling) from 200 Gbit/s on");
    int mono = 1;
    for (uint64_t m = 1, prev = 0; m < 1000000 && mono; m = m * 3 / 2 + 1) {
        uint64_t c = pb_plan_tcp_chunk_cap(m);
        mono = c >= prev && (c & (c - 1)) == 0 && c >= 64 * 1024 && c <= PB_CEIL_MAX &&
               (c == 64 * 1024 || (double)c * 8 / ((double)m * 1e6) <= 0.004);
        prev = c;
    }
    ok(mono, "tcp cap: a power of two in [64 KiB, 64 MiB], never above 4 ms of wire time unless 64 KiB, "
             "growing with the rate");

    char why[256] = "";
    uint64_t F = 64ull << 20;
    uint64_t ring = pb_plan_default_chunk(F, 7, PB_ALPHA_B_UNKNOWN), tree = pb_plan_default_chunk_tree(F, 7, PB_ALPHA_B_UNKNOWN);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_RING, cost16k(0, 0), why, sizeof why) == ring && strstr(why, "ring's"),
       "not tcp between hosts: the ring's rule (%s)", why);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_TREE, cost16k(0, 0), why, sizeof why) == tree && strstr(why, "trees'"),
       "not tcp between hosts: the trees' rule (%s)", why);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_RING, cost16k(1, 0), why, sizeof why) == 64 * 1024 && strstr(why, "capped") &&
           strstr(why, "unknown"),
       "tcp, 8 hosts, rate unknown: 64 KiB (%s)", why);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_TREE, cost16k(1, 150), why, sizeof why) == 64 * 1024 && strstr(why, "150 Mbit/s"),
       "tcp, 8 hosts, 150 Mbit/s, trees: 64 KiB (%s)", why);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_RING, cost16k(1, 10000), why, sizeof why) == ring && !strstr(why, "capped"),
       "tcp, 8 hosts, 10 Gbit/s: the ring's rule, under the cap (%s)", why);
    ok(pb_plan_choose_chunk(1ull << 30, 1, PB_SCHED_RING, cost16k(1, 0), why, sizeof why) == 64 * 1024 &&
           pb_plan_choose_chunk(1ull << 30, 1, PB_SCHED_RING, cost16k(1, 25000), why, sizeof why) == 4u << 20,
       "tcp, 2 hosts: 64 KiB at an unknown rate, 4 MiB at 25 Gbit/s (%s)", why);
    ok(pb_plan_choose_chunk(5000000000ull, 999, PB_SCHED_TREE, cost16k(1, 1000), why, sizeof why) == 256 * 1024,
       "tcp, 1,000 hosts at 1 Gbit/s, trees: 256 KiB (%s)", why);
    ok(pb_plan_choose_chunk(F, 7, PB_SCHED_RING, cost16k(1, 0), NULL, 0) == 64 * 1024, "why may be NULL");
}

/* The rule at the transport's alpha*B (issue 23): the ceiling follows
 * alpha*B, the pool stays bounded, -v names the alpha*B. */
static void test_alpha_rule(void)
{
    ok(pb_plan_chunk_ceiling(PB_ALPHA_B_UNKNOWN) == 4u << 20 && pb_plan_chunk_ceiling(37500) == 4u << 20 &&
           pb_plan_chunk_ceiling(750e3) == 32u << 20 && pb_plan_chunk_ceiling(1.25e6) == 64u << 20 &&
           pb_plan_chunk_ceiling(1e9) == 64u << 20,
       "ceiling: 4 MiB at alpha*B 16 KiB and 37.5 KB, 32 MiB at 750 KB, 64 MiB from 1.25 MB on");
    int bounded = 1;
    for (uint64_t c = 32768; c <= PB_CEIL_MAX; c *= 2) {
        uint32_t n = pb_plan_default_slots(c);
        bounded &= n >= 4 && n <= 8 && (c > (16u << 20) || n == 8) && (n == 4 || n * c <= PB_POOL_BUDGET);
    }
    ok(bounded && pb_plan_default_slots(32u << 20) == 4 && pb_plan_default_slots(64u << 20) == 4,
       "default slots: 8 up to 16 MiB chunks (pool <= 128 MiB), 4 at 32 and 64 MiB (128 and 256 MiB)");
    ok(pb_plan_rail_slots(8, 1, 64 << 10) == 8 && pb_plan_rail_slots(8, 2, 64 << 10) == 16 &&
           pb_plan_rail_slots(8, 4, 64 << 10) == 32 && pb_plan_rail_slots(16, 3, 64 << 10) == 48,
       "rail slots: a full window per rail (8 over one, 16 over two, 32 over four)");
    ok(pb_plan_rail_slots(8, 2, 16u << 20) == 8 && pb_plan_rail_slots(6, 2, 16u << 20) == 8 &&
           pb_plan_rail_slots(4, 2, 64u << 20) == 4 && pb_plan_rail_slots(1000, 8, 4096) == 4096,
       "rail slots: the pool stays within 128 MiB (8 x 16 MiB), never fewer than before, at most 4096");
    ok(pb_plan_rail_chunk(64 << 10, 1) == 64 << 10 && pb_plan_rail_chunk(64 << 10, 2) == 32 << 10 &&
           pb_plan_rail_chunk(64 << 10, 4) == 32 << 10 && pb_plan_rail_chunk(4u << 20, 2) == 2u << 20 &&
           pb_plan_rail_chunk(4u << 20, 3) == 1u << 20 && pb_plan_rail_chunk(16 << 10, 2) == 16 << 10,
       "rail chunk: chunk / rails as a power of two, not below 32 KiB (nor above the chunk)");
    struct pb_link_cost tcp25 = { .alpha = 30e-6, .rate = 25e9, .tcp_between_hosts = 1, .what = "tcp, 25 GB/s" };
    char why[400] = "";
    uint64_t c = pb_plan_choose_chunk(5ull << 30, 15, PB_SCHED_TREE, &tcp25, why, sizeof why);
    ok(c == 16u << 20 && strstr(why, "alpha*B 750 KB (tcp, 25 GB/s)") && strstr(why, "within the tcp cap"),
       "tcp at 25 GB/s, alpha 30 us, 5 GiB to 16 nodes, trees: 16 MiB (%s)", why);
    ok(pb_plan_choose_chunk(50ull << 30, 999, PB_SCHED_TREE, &tcp25, NULL, 0) == 32u << 20,
       "the same, 50 GiB to 1,000 nodes: 32 MiB (the ceiling)");
    struct pb_link_cost none = { .alpha = 30e-6, .rate = 0 };
    int same = 1;
    for (uint64_t f = 1000; f < (1ull << 40); f = f * 7 + 3)
        for (int r = 1; r < 5000 && same; r = r * 3 + 1)
            same = pb_plan_choose_chunk(f, r, PB_SCHED_RING, &none, NULL, 0) ==
                       pb_plan_default_chunk(f, r, PB_ALPHA_B_UNKNOWN) &&
                   pb_plan_choose_chunk(f, r, PB_SCHED_TREE, NULL, NULL, 0) ==
                       pb_plan_default_chunk_tree(f, r, PB_ALPHA_B_UNKNOWN);
    ok(same, "link rate unknown: alpha*B 16 KiB, the rules as before");
    int mono = 1;
    for (double ab = 1e3; ab < 1e8 && mono; ab *= 1.7)
        mono = pb_plan_rule_chunk(5ull << 30, 8, ab) <= pb_plan_rule_chunk(5ull << 30, 8, ab * 1.7);
    ok(mono, "the chunk never shrinks as alpha*B grows");
}

/* The table of schedules (schedule.h): every entry complete, names and
 * --schedule parsing from it, and the shared entry points answering with
 * the plan's own schedule, the allgather's in member indices. */
static void test_schedule_table(void)
{
    const int all[] = { PB_SCHED_RING, PB_SCHED_TREE, PB_SCHED_SHARED };
    int complete = 1, named = 1;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        const struct pb_sched *s = pb_sched_of(all[i]);
        complete &= s->name && s->rule_name && s->sender && s->targets && s->partners && s->default_chunk &&
                    s->setup && s->start && s->slot_peer && s->sender_leader && s->handle && s->pump &&
                    s->finished && s->waiting_for && s->free;
        named &= !strcmp(pb_schedule_name(all[i]), s->name) &&
                 pb_schedule_parse(s->name) == (s->selectable ? all[i] : -1);
    }
    ok(complete, "every schedule in the table fills every operation");
    ok(named && pb_schedule_parse("auto") == -2 && pb_schedule_parse("ring") == PB_SCHED_RING &&
           pb_schedule_parse("tree") == PB_SCHED_TREE && pb_schedule_parse("bogus") == -1,
       "names and --schedule come from the table (ring, tree; auto; allgather not selectable)");
    ok(pb_sched_of(-5) == &pb_sched_ring && pb_sched_of(99) == &pb_sched_ring, "unknown numbers fall back to the ring");
    struct pb_plan p;
    char err[64];
    pb_plan_init(&p, 23 * 4096 + 5, 4096, 4, err, sizeof err); /* 5 members */
    p.schedule = PB_SCHED_SHARED;
    int agree = 1;
    for (uint64_t k = 0; k < p.nchunks; k++)
        for (int m = 0; m < 5; m++) {
            int out[2], n = pb_plan_targets(&p, m, k, out);
            agree &= pb_plan_sender(&p, m, k) == pb_shared_sender(&p, m, k);
            agree &= n == (pb_shared_forwards(&p, m, k) ? 1 : 0) && (!n || out[0] == pb_shared_successor(&p, m));
        }
    ok(agree, "allgather: pb_plan_sender and pb_plan_targets follow the ring of members");
}

int main(void)
{
    const uint64_t c = 4096;
    const uint64_t sizes[] = { 0, 1, c - 1, c, c + 1, 7 * c, 63 * c + 5, 200 * c };
    char why[160];
    for (int R = 0; R <= 64; R++) {
        int all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            if (!check_plan(sizes[i], c, R, why, sizeof why))
                all = 0;
        ok(all, "R=%d: every receiver gets every chunk once, no self-sends, no loops %s", R, why);
    }

    struct pb_plan p;
    char err[128];
    ok(pb_plan_init(&p, 100, 0, 3, err, sizeof err) < 0, "chunk size 0 refused: %s", err);
    ok(pb_plan_init(&p, 100, 1, 3, err, sizeof err) < 0, "chunk size 1 refused");
    ok(pb_plan_init(&p, 100, (uint64_t)PB_MAX_CHUNK + 1, 3, err, sizeof err) < 0, "chunk size > 1 GiB refused");
    ok(pb_plan_init(&p, (uint64_t)1 << 50, 4096, 3, err, sizeof err) < 0, "more than 2^32 chunks refused: %s", err);
    ok(pb_plan_init(&p, 5ull << 30, 1 << 20, 3, err, sizeof err) == 0 && p.nchunks == 5120 &&
           pb_plan_chunk_offset(&p, 5119) == (5ull << 30) - (1 << 20),
       "5 GiB file: offsets beyond 4 GiB are exact");

    /* Receivers with no scattered chunk (fewer chunks than receivers). */
    ok(pb_plan_init(&p, 3 * c, c, 10, err, sizeof err) == 0 && pb_plan_scatter_target(&p, 2) == 2 &&
           pb_plan_forwards(&p, 2, 2) && !pb_plan_forwards(&p, 1, 2),
       "3 chunks over 10 receivers: chunk 2 goes round to receiver 1 and stops");

    /* Default chunk size: the values p2pbcast-model finds best (README). */
    uint64_t a = pb_plan_default_chunk(5ull * 1000 * 1000 * 1000, 999, PB_ALPHA_B_UNKNOWN);
    uint64_t a2 = pb_plan_default_chunk(5ull * 1000 * 1000 * 1000, 9999, PB_ALPHA_B_UNKNOWN);
    uint64_t b = pb_plan_default_chunk(1ull << 30, 3, PB_ALPHA_B_UNKNOWN);
    ok(a == 256 * 1024, "default chunk for 5 GB x 1,000 nodes = 256 KiB (%llu)", (unsigned long long)a);
    ok(a2 == 64 * 1024, "default chunk for 5 GB x 10,000 nodes = 64 KiB (%llu)", (unsigned long long)a2);
    ok(b == 4u << 20, "default chunk for 1 GiB x 3 receivers = 4 MiB (%llu)", (unsigned long long)b);
    ok(pb_plan_default_chunk(0, 0, PB_ALPHA_B_UNKNOWN) == 32 * 1024, "empty file: minimum chunk");
    ok(pb_plan_default_chunk(1ull << 50, 1, PB_ALPHA_B_UNKNOWN) == 4u << 20, "huge file: capped at 4 MiB");
    int pow2 = 1;
    for (uint64_t f = 1; f < (1ull << 44) && pow2; f = f * 3 + 7)
        for (int r = 0; r < 20000 && pow2; r = r * 2 + 1) {
            uint64_t c = pb_plan_default_chunk(f, r, PB_ALPHA_B_UNKNOWN);
            pow2 = (c & (c - 1)) == 0 && c >= 32 * 1024 && c <= 4u << 20;
        }
    ok(pow2, "default chunk is always a power of two in [32 KiB, 4 MiB]");
    uint64_t prev = pb_plan_default_chunk(5ull << 30, 2, PB_ALPHA_B_UNKNOWN);
    int shrinks = 1;
    for (int r = 3; r < 10000; r = r * 3 / 2 + 1) {
        uint64_t c = pb_plan_default_chunk(5ull << 30, r, PB_ALPHA_B_UNKNOWN);
        shrinks &= c <= prev;
        prev = c;
    }
    ok(shrinks, "default chunk never grows as nodes are added");
    test_chunk_choice();
    test_alpha_rule();

    /* Leader <-> receiver mapping skips the root and is a bijection. */
    int bij = 1;
    struct pb_plan q;
    for (int L = 1; L <= 9 && bij; L++)
        for (int root = 0; root < L && bij; root++)
            for (int r = 0; r < L - 1 && bij; r++) {
                char e2[64];
                bij = pb_plan_init(&q, 1, 4096, L - 1, e2, sizeof e2) == 0;
                int l = pb_plan_leader_of(&q, root, L, r);
                bij = bij && l != root && pb_plan_receiver_of(&q, root, L, l) == r;
            }
    ok(bij, "leader/receiver numbering is a bijection that skips the root");
    ok(pb_plan_receiver_of(&q, 2, 5, 2) == -1, "the root is no receiver");
    test_trees();
    test_shared();
    test_schedule_table();
    return tap_done();
}
