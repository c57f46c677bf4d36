/* test_readtree.c — the G pairs of trees fed by readers
 * (sched_shared_tree.c, plan.h), G = 1..4: every member gets every chunk
 * exactly once, from the member pb_plan_sender names; the tops of the 2G
 * trees read, 2G distinct readers, nobody else does; no member is interior
 * in both trees of a pair, none sends more than F plus one chunk; the
 * partners (at most 4G, and the root and tree 0's top each other) are
 * mutual and cover every hop; the root's sample of other readers' chunks
 * takes only theirs; the plan's G from the rates. */
#include "plan.h"
#include "schedule.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* Walk chunk k from its reader along pb_plan_targets, breadth first. */
static int walk_chunk(const struct pb_plan *p, uint64_t k, int *got, int *queue, char *why, size_t n)
{
    int N = p->nrecv + 1, head = 0, tail = 0, reader = pb_readtree_reader(p, k);
    memset(got, 0, (size_t)N * sizeof *got);
    if (reader < 0 || reader >= N || pb_plan_sender(p, reader, k) != PB_SELF_READ) {
        snprintf(why, n, "chunk %llu: reader %d", (unsigned long long)k, reader);
        return 0;
    }
    got[reader] = 1;
    queue[tail++] = reader;
    while (head < tail) {
        int at = queue[head++], to[2], nt = pb_plan_targets(p, at, k, to);
        for (int i = 0; i < nt; i++) {
            if (to[i] < 0 || to[i] >= N || to[i] == at || got[to[i]] || pb_plan_sender(p, to[i], k) != at) {
                snprintf(why, n, "chunk %llu: bad hop %d -> %d", (unsigned long long)k, at, to[i]);
                return 0;
            }
            got[to[i]] = 1;
            queue[tail++] = to[i];
        }
    }
    if (tail != N) {
        snprintf(why, n, "chunk %llu reached %d of %d members", (unsigned long long)k, tail, N);
        return 0;
    }
    /* Depth: at most ceil(log2 N) levels below the reader. */
    int tree = pb_readtree_tree_of(k, pb_readtree_pairs(p));
    for (int m = 0; m < N; m++)
        if (pb_readtree_depth(p, tree, m) > pb_ceil_log2((uint64_t)N) || (m == reader) != !pb_readtree_depth(p, tree, m)) {
            snprintf(why, n, "member %d too deep", m);
            return 0;
        }
    return 1;
}

/* Per member: reads + receives = F; interior in at most one tree of each
 * pair, sends at most twice the bytes of those trees, and at most F plus
 * one chunk; the sums balance; 2G readers (fewer only with fewer chunks). */
static int check_bytes(const struct pb_plan *p, int root, char *why, size_t n)
{
    int N = p->nrecv + 1, readers = 0, G = pb_readtree_pairs(p);
    uint64_t F = p->file_size, tree_bytes[2 * PB_READTREE_MAX_PAIRS] = { 0 }, sum_read = 0, sum_sent = 0,
             sum_recv = 0;
    for (uint64_t k = 0; k < p->nchunks; k++)
        tree_bytes[pb_readtree_tree_of(k, G)] += pb_plan_chunk_len(p, k);
    for (int m = 0; m < N; m++) {
        uint64_t rd, sent, recv, max_sent = 0;
        pb_readtree_bytes(p, m, NULL, &rd, &sent, &recv);
        int kids[2], both = 0, tops = 0;
        for (int g = 0; g < G; g++) {
            int in0 = pb_readtree_children(p, 2 * g, m, kids) > 0, in1 = pb_readtree_children(p, 2 * g + 1, m, kids) > 0;
            both |= in0 && in1;
            max_sent += in0 ? 2 * tree_bytes[2 * g] : in1 ? 2 * tree_bytes[2 * g + 1] : 0;
        }
        for (int i = 0; i < 2 * G; i++)
            tops += pb_readtree_top(p, i) == m;
        if (rd + recv != F || sent > max_sent || sent > F + p->chunk_size || both || (tops > 1 && N > 1) ||
            rd != pb_shared_read_bytes(p, m, NULL)) {
            snprintf(why, n, "N %d G %d member %d: read %llu + received %llu of %llu, sent %llu (max %llu), interior "
                     "in both trees of a pair %d, tops %d trees", N, G, m, (unsigned long long)rd,
                     (unsigned long long)recv, (unsigned long long)F, (unsigned long long)sent,
                     (unsigned long long)max_sent, both, tops);
            return 0;
        }
        if (m == root && rd && !tops) {
            snprintf(why, n, "N %d: the root reads %llu bytes but tops no tree", N, (unsigned long long)rd);
            return 0;
        }
        readers += rd > 0;
        sum_read += rd, sum_sent += sent, sum_recv += recv;
    }
    uint64_t want = p->nchunks < 2 * (uint64_t)G ? p->nchunks : 2 * (uint64_t)G;
    if (sum_read != F || sum_sent != sum_recv || (F && N > 1 && (uint64_t)readers != want)) {
        snprintf(why, n, "N %d G %d: read %llu of %llu, sent %llu, received %llu, %d readers", N, G,
                 (unsigned long long)sum_read, (unsigned long long)F, (unsigned long long)sum_sent,
                 (unsigned long long)sum_recv, readers);
        return 0;
    }
    return 1;
}

static int check_partners(const struct pb_plan *p, int root, char *why, size_t n)
{
    int N = p->nrecv + 1, *out = calloc((size_t)N + 8, sizeof *out), *back = calloc((size_t)N + 8, sizeof *back);
    int ok_ = 1;
    for (int m = 0; m < N && ok_; m++) {
        int np = pb_plan_partners(p, root, N, m, out), G = pb_readtree_pairs(p);
        int fin = root != pb_readtree_top(p, 0) && (m == root || m == pb_readtree_top(p, 0));
        if (np > 4 * G + fin || (N > 1 && np < 1)) {
            snprintf(why, n, "N %d member %d: %d partners", N, m, np);
            ok_ = 0;
        }
        for (int i = 0; i < np && ok_; i++) {
            int nb = pb_plan_partners(p, root, N, out[i], back), mutual = 0;
            for (int j = 0; j < nb; j++)
                mutual |= back[j] == m;
            if (out[i] == m || !mutual) {
                snprintf(why, n, "N %d member %d: partner %d %s", N, m, out[i], out[i] == m ? "is itself" : "not mutual");
                ok_ = 0;
            }
        }
        for (uint64_t k = 0; k < 2 * (uint64_t)G && ok_; k++) {
            int to[2], nt = pb_plan_targets(p, m, k, to);
            for (int i = 0; i < nt && ok_; i++) {
                int found = 0;
                for (int j = 0; j < np; j++)
                    found |= out[j] == to[i];
                if (!found) {
                    snprintf(why, n, "N %d member %d: child %d is no partner", N, m, to[i]);
                    ok_ = 0;
                }
            }
        }
    }
    free(out);
    free(back);
    return ok_;
}

static int check(int N, int G, int root, uint64_t size, char *why, size_t n)
{
    struct pb_plan p;
    char err[128];
    if (pb_plan_init(&p, size, 4096, N - 1, err, sizeof err)) {
        snprintf(why, n, "init: %s", err);
        return 0;
    }
    p.schedule = PB_SCHED_READTREE;
    p.pairs = G;
    int *got = calloc((size_t)N, sizeof *got), *queue = calloc((size_t)N, sizeof *queue), ok_ = N > 0;
    /* The schedule depends on k mod 2G: chunks 0..4G-1 cover it. */
    for (uint64_t k = 0; k < p.nchunks && k < 4 * (uint64_t)G && ok_ && N > 1; k++)
        ok_ = walk_chunk(&p, k, got, queue, why, n);
    ok_ = ok_ && check_bytes(&p, root, why, n) && check_partners(&p, root, why, n);
    free(got);
    free(queue);
    return ok_;
}

/* The readtree time in pb_shared_choose's line: "..., 1.1 s (readtree, ...". */
static double readtree_time(const char *why)
{
    const char *at = strstr(why, " s (readtree"), *p = at;
    while (p && p > why && p[-1] != ' ')
        p--;
    return p ? strtod(p, NULL) : 0;
}

static uint64_t counter(void *ctx)
{
    return (*(uint64_t *)ctx)++ * 0x9e3779b97f4a7c15ull;
}

int main(void)
{
    char why[300] = "";
    int all = 1;
    for (int N = 1; N <= 300 && all; N++) {
        const uint64_t sizes[] = { 0, 1, 4095, 4097, 3 * 4096, (uint64_t)(2 * N + 3) * 4096 + 5 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            all = check(N, 1, (int)((i * 7) % (size_t)N), sizes[i], why, sizeof why);
    }
    ok(all, "reader-fed trees, N = 1..300, several roots: every member gets every chunk once from its parent, "
            "the readers from SOURCE; reads + receives = F; sends <= its tree's bytes twice; partners mutual %s",
       why);
    for (int G = 2; G <= PB_READTREE_MAX_PAIRS + 1; G++) {
        all = 1;
        why[0] = 0;
        for (int N = 1; N <= 200 && all; N++) {
            const uint64_t sizes[] = { 1, 4097, (uint64_t)(2 * G - 1) * 4096 + 9, (uint64_t)(4 * G + 3) * 4096,
                                       (uint64_t)(2 * N + 3) * 4096 + 5 };
            for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
                all = check(N, G, (int)((i * 7) % (size_t)N), sizes[i], why, sizeof why);
        }
        ok(all, "%d pairs of reader-fed trees asked for, N = 1..200, several roots: every member gets every chunk "
                "once from its parent; 2G distinct readers (G <= 4, 2G <= N), none tops two trees; interior in at "
                "most one tree per pair, sends <= F + one chunk; partners <= 4G, mutual %s", G, why);
    }

    /* The per-node table of plan.h, at 12 nodes and 24 chunks of 4 KiB
     * (F = 96 KiB): members 7 and 6 top the trees (position 8 in tree 0
     * and in tree 1), each reads 48 KiB, receives the other 48 KiB and
     * sends its 48 KiB to two children: F; member 0 (a leaf of tree 0,
     * interior in tree 1) reads nothing and receives F; nobody sends more. */
    struct pb_plan p;
    char err[64];
    pb_plan_init(&p, 24 * 4096, 4096, 11, err, sizeof err);
    p.schedule = PB_SCHED_READTREE;
    uint64_t rd[12], sent[12], recv[12], maxsent = 0;
    for (int m = 0; m < 12; m++) {
        pb_readtree_bytes(&p, m, NULL, &rd[m], &sent[m], &recv[m]);
        maxsent = sent[m] > maxsent ? sent[m] : maxsent;
    }
    ok(pb_readtree_reader(&p, 0) == 7 && pb_readtree_reader(&p, 1) == 6 && rd[7] == 48 * 1024 &&
           rd[6] == 48 * 1024 && recv[7] == 48 * 1024 && sent[7] == 96 * 1024 && sent[6] == 96 * 1024 &&
           rd[0] == 0 && recv[0] == 96 * 1024 && maxsent == 96 * 1024,
       "12 nodes, F = 96 KiB: members 7 and 6 read 48 KiB each, receive the other half and send F; nobody sends "
       "more than F (%llu %llu %llu %llu)", (unsigned long long)rd[7], (unsigned long long)rd[6],
       (unsigned long long)sent[7], (unsigned long long)maxsent);
    /* Two pairs at 12 nodes, 24 chunks (F = 96 KiB; each of the 4 trees
     * carries 6 chunks, 24 KiB): pair 0's tops are members 7 and 6 as
     * above, pair 1's, shifted by 2, members 9 and 8. Per member:
     *   members 6..9   read 24 KiB, receive 72 KiB, send 96 KiB (F)
     *   members 2..5   read 0,      receive 96 KiB, send 96 KiB (F)
     *   0, 1, 10, 11   read 0,      receive 96 KiB, send 72 KiB
     * (each interior in one tree of each pair: two children, or one). */
    p.pairs = 2;
    uint64_t want_sent[12] = { 72, 72, 96, 96, 96, 96, 96, 96, 96, 96, 72, 72 }, bad_rows = 0;
    for (int m = 0; m < 12; m++) {
        pb_readtree_bytes(&p, m, NULL, &rd[m], &sent[m], &recv[m]);
        int reads = m >= 6 && m <= 9;
        bad_rows += rd[m] != (reads ? 24 * 1024u : 0) || recv[m] != (reads ? 72 * 1024u : 96 * 1024u) ||
                    sent[m] != want_sent[m] * 1024;
    }
    ok(pb_readtree_top(&p, 0) == 7 && pb_readtree_top(&p, 1) == 6 && pb_readtree_top(&p, 2) == 9 &&
           pb_readtree_top(&p, 3) == 8 && pb_readtree_reader(&p, 2) == 9 && pb_readtree_reader(&p, 7) == 8 &&
           pb_readtree_reader(&p, 4) == 7 && !bad_rows,
       "12 nodes, two pairs: members 7, 6, 9, 8 read 24 KiB each; the per-member bytes of the table (%llu rows off)",
       (unsigned long long)bad_rows);
    p.pairs = 1;
    unsigned char skip[4] = { 0x03, 0, 0, 0 }; /* chunks 0 and 1 skipped */
    uint64_t r7, s7, v7;
    pb_readtree_bytes(&p, 7, skip, &r7, &s7, &v7);
    ok(r7 == 44 * 1024 && v7 == 44 * 1024 && pb_shared_read_bytes(&p, 7, skip) == r7,
       "skipped chunks are neither read nor received");

    /* The root's check: only chunks other members read, each reader's. */
    uint64_t *pick = calloc(p.nchunks, sizeof *pick), ctr = 1;
    uint64_t np = pb_shared_sample(&p, 0, NULL, UINT64_MAX, counter, &ctr, pick), bad = 0;
    for (uint64_t i = 0; i < np; i++)
        bad += pb_plan_reader(&p, 0, pick[i]) == 0;
    ok(np == p.nchunks && !bad, "the root (a non-reader) re-checks every chunk when they fit its budget");
    np = pb_shared_sample(&p, 7, NULL, 4096, counter, &ctr, pick);
    ok(np == 1 && pb_plan_reader(&p, 7, pick[0]) == 6,
       "the root at member 7 (a reader) samples only member 6's chunks, at least one");
    np = pb_shared_sample(&p, 0, NULL, 4096, counter, &ctr, pick);
    int seen6 = 0, seen7 = 0;
    for (uint64_t i = 0; i < np; i++)
        seen6 |= pb_plan_reader(&p, 0, pick[i]) == 6, seen7 |= pb_plan_reader(&p, 0, pick[i]) == 7;
    ok(np == 2 && seen6 && seen7, "a small budget still takes one chunk of each of the two readers");
    free(pick);
    p.schedule = PB_SCHED_TREE;
    ok(pb_plan_reader(&p, 3, 5) == 3, "root-fed trees: the root reads every chunk");
    ok(!strcmp(pb_schedule_name(PB_SCHED_READTREE), "readtree") && pb_schedule_parse("readtree") == -1,
       "the reader-fed trees are named, but not a --schedule users pick");

    /* --source-shared=auto's closed form. The bed: 150 Mbit/s links,
     * SOURCE on tmpfs (2 GB/s): the allgather at 4 nodes (each receives
     * 3/4 F), the root alone at 16 (no read to spare, the ring too slow).
     * A parallel filesystem read at 1 GB/s per client, 5 GB/s links: the
     * allgather at 4 nodes (4 readers), the reader-fed trees at 1,000. */
    const uint64_t MiB = 1 << 20;
    ok(pb_shared_choose(128 * MiB, 4, 0, 64 * 1024, 2e9, 150e6 / 8, PB_SCHED_RING, 0, NULL, NULL, 0) == PB_SCHED_SHARED &&
           pb_shared_choose(128 * MiB, 16, 0, 64 * 1024, 2e9, 150e6 / 8, PB_SCHED_TREE, 0, NULL, NULL, 0) == -1,
       "auto on the bed: the allgather at 4 nodes, the root alone at 16");
    ok(pb_shared_choose(5000 * MiB, 4, 0, 4 * MiB, 1e9, 5e9, PB_SCHED_RING, 0, NULL, NULL, 0) == PB_SCHED_SHARED &&
           pb_shared_choose(5000 * MiB, 1000, 0, 4 * MiB, 1e9, 5e9, PB_SCHED_TREE, 0, NULL, NULL, 0) == PB_SCHED_READTREE &&
           pb_shared_choose(5000 * MiB, 1000, 0, 4 * MiB, 20e9, 5e9, PB_SCHED_TREE, 0, NULL, NULL, 0) == -1,
       "auto, SOURCE at 1 GB/s, 5 GB/s links: the allgather at 4 nodes, the reader-fed trees at 1,000; the root "
       "alone where it reads at 20 GB/s");
    ok(pb_shared_choose(3 * MiB, 4, 0, 64 * 1024, 3e9, 0, PB_SCHED_RING, 0, NULL, why, sizeof why) == PB_SCHED_SHARED &&
           pb_shared_choose(3 * MiB, 16, 0, 64 * 1024, 3e9, 0, PB_SCHED_TREE, 0, NULL, NULL, 0) == -1 && strstr(why, "unknown"),
       "auto, link rate unknown: the allgather up to 8 nodes, the root beyond (%s)", why);
    ok(pb_shared_choose(3 * MiB, 4, 0, 64 * 1024, 3e9, 0, PB_SCHED_TREE, PB_SCHED_READTREE, NULL, NULL, 0) == -1 &&
           pb_shared_choose(5000 * MiB, 4, 0, 4 * MiB, 1e9, 5e9, PB_SCHED_TREE, PB_SCHED_READTREE, NULL, NULL, 0) ==
               PB_SCHED_READTREE,
       "--schedule tree: the root's trees or the reader-fed trees, never the allgather");
    /* The plan's G: 2G readers at rho keep up with B, within 4 pairs and
     * 2G <= N; one pair where a rate is unknown. */
    ok(pb_readtree_choose_pairs(1000, 1e9, 5e9, NULL, 0) == 3 && pb_readtree_choose_pairs(1000, 0, 5e9, NULL, 0) == 1 &&
           pb_readtree_choose_pairs(1000, 1e9, 0, NULL, 0) == 1 &&
           pb_readtree_choose_pairs(1000, 1e8, 5e9, NULL, 0) == PB_READTREE_MAX_PAIRS &&
           pb_readtree_choose_pairs(5, 1e9, 5e9, NULL, 0) == 2 && pb_readtree_choose_pairs(1000, 3e9, 5e9, NULL, 0) == 1,
       "G: 3 pairs for 1 GB/s reads and 5 GB/s links, 1 where either is unknown or 2 readers keep up, at most 4, "
       "2G <= N");
    p.pairs = 9;
    ok(pb_readtree_pairs(&p) == PB_READTREE_MAX_PAIRS && (p.nrecv = 4, pb_readtree_pairs(&p) == 2) &&
           (p.pairs = 0, pb_readtree_pairs(&p) == 1),
       "the plan bounds G: at most 4, 2G <= N, at least 1");
    ok(pb_readtree_slots(8, 1, MiB) == 8 && pb_readtree_slots(8, 3, 2 * MiB) == 24 &&
           pb_readtree_slots(8, 3, 16 * MiB) == 8 && pb_readtree_slots(32, 2, MiB) == 32,
       "slots: 4 per tree for G pairs within the 128 MiB pool, never fewer than before, G = 1 as it was");
    int G = 0;
    ok(pb_shared_choose(5000 * MiB, 1000, 0, 2 * MiB, 1e9, 5e9, PB_SCHED_TREE, 0, &G, why, sizeof why) ==
               PB_SCHED_READTREE && G == 3 && strstr(why, "3 pairs"),
       "auto at 1,000 nodes, 1 GB/s reads, 5 GB/s links: the reader-fed trees with 3 pairs (%s)", why);
    /* The root's sample: during the transfer where it tops no tree, so
     * that it costs nothing beyond the transfer; after it where it reads.
     * 1,000 nodes, G = 3: the tops are members 510..515. */
    ok(!pb_readtree_root_reads(1000, 3, 0) && pb_readtree_root_reads(1000, 3, 512) &&
           pb_readtree_root_reads(8, 3, 0) && !pb_readtree_root_reads(8, 1, 0),
       "the root reads chunks of its own only where it tops one of the 2G trees");
    char w2[300];
    pb_shared_choose(5000 * MiB, 1000, 0, 2 * MiB, 1e9, 5e9, PB_SCHED_TREE, 0, NULL, why, sizeof why);
    pb_shared_choose(5000 * MiB, 1000, 512, 2 * MiB, 1e9, 5e9, PB_SCHED_TREE, 0, NULL, w2, sizeof w2);
    double t_early = readtree_time(why), t_late = readtree_time(w2);
    ok(t_early > 1 && t_early < 1.15 && t_late > t_early + 0.15,
       "auto's readtree time: the sample hidden where the root tops no tree (%.3g s), after the transfer where it "
       "does (%.3g s)", t_early, t_late);
    return tap_done();
}
