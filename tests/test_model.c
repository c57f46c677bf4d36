/* test_model.c — the scale model (src/model.c): sane predictions from the
 * real schedule, flat time in N, the tail term, no deadlock for any slot
 * count, and the 10,000-node case. No assertion looks at wall-clock time. */
#include "model.h"
#include "plan.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define GB 1e9
#define US 1e-6

static int run(uint64_t F, int N, double B, double alpha, uint64_t c, uint32_t slots, uint32_t root_slots,
               struct pb_model_result *r, char *err, size_t errlen)
{
    struct pb_model_cfg cfg = { .file_size = F, .nodes = N, .bandwidth = B, .alpha = alpha,
                                .chunk_size = c, .slots = slots, .root_slots = root_slots, .check = 1 };
    return pb_model_run(&cfg, r, err, errlen);
}

static int run_tree(uint64_t F, int N, double B, double alpha, uint64_t c, uint32_t slots,
                    struct pb_model_result *r, char *err, size_t errlen)
{
    struct pb_model_cfg cfg = { .file_size = F, .nodes = N, .bandwidth = B, .alpha = alpha, .chunk_size = c,
                                .slots = slots, .check = 1, .schedule = PB_SCHED_TREE };
    return pb_model_run(&cfg, r, err, errlen);
}

/* The two trees: every arrival checked against the plan, no deadlock for
 * small slot counts, and the targets of issue 11 at 1,000 nodes. */
static void test_trees(void)
{
    struct pb_model_result r;
    char err[512] = "";
    int all = 1;
    const int ns[] = { 2, 3, 4, 5, 8, 17, 100, 257 };
    for (size_t i = 0; i < sizeof ns / sizeof *ns && all; i++)
        for (uint32_t slots = 4; slots <= 9 && all; slots += 5)
            all = run_tree(200 * 65536 + 17, ns[i], 5 * GB, 2 * US, 65536, slots, &r, err, sizeof err) == 0 &&
                  r.time > r.ideal;
    ok(all, "trees: 2..257 nodes, 4 and 9 slots: every arrival from its plan sender, no deadlock %s", err);
    ok(run_tree(5000000000ull, 1000, 5 * GB, 2 * US, 0, 0, &r, err, sizeof err) == 0 && r.efficiency >= 0.97 &&
           r.chunk_size == pb_plan_default_chunk_tree(5000000000ull, 999, 2 * US * 5 * GB),
       "trees: 5 GB to 1,000 nodes at 5 GB/s, alpha 2 us: efficiency %.3f >= 0.97 with the trees' chunk",
       r.efficiency);
    ok(run_tree(5000000000ull, 1000, 5 * GB, 20 * US, 0, 0, &r, err, sizeof err) == 0 && r.efficiency >= 0.90,
       "trees: the same with alpha 20 us: efficiency %.3f >= 0.90", r.efficiency);
}

/* --slow-node: one node sends at a quarter. The ring moves every chunk
 * through it; the trees place it where it passes nothing on (issue 22). */
static void test_slow_node(void)
{
    struct pb_model_result r;
    char err[512] = "";
    int all = 1;
    const int ns[] = { 3, 4, 5, 8, 9, 16, 17, 64 };
    for (size_t i = 0; i < sizeof ns / sizeof *ns && all; i++) {
        struct pb_model_cfg cfg = { .file_size = 400 * 65536, .nodes = ns[i], .bandwidth = 5 * GB, .alpha = 2 * US,
                                    .chunk_size = 65536, .check = 1, .schedule = PB_SCHED_TREE,
                                    .slow_rate = 1.25 * GB };
        struct pb_model_result equal;
        all = pb_model_run(&cfg, &r, err, sizeof err) == 0;
        cfg.slow_rate = 0;
        all = all && pb_model_run(&cfg, &equal, err, sizeof err) == 0 && r.efficiency >= 0.95 * equal.efficiency;
        if (!all && !err[0])
            snprintf(err, sizeof err, "N %d: efficiency %.3f, %.3f with equal nodes", ns[i], r.efficiency,
                     equal.efficiency);
    }
    ok(all, "slow node, trees placed, 3..64 nodes (R odd and even): every arrival from its plan sender, "
            "within 5 %% of the efficiency with equal nodes %s", err);
    struct pb_model_cfg ring = { .file_size = 400 * 65536, .nodes = 16, .bandwidth = 5 * GB, .alpha = 2 * US,
                                 .chunk_size = 65536, .check = 1, .slow_rate = 1.25 * GB };
    ok(pb_model_run(&ring, &r, err, sizeof err) == 0 && r.efficiency < 0.3,
       "slow node, ring, 16 nodes: every chunk passes through it, efficiency %.3f < 0.3", r.efficiency);
    struct pb_model_cfg big = { .file_size = 5000000000ull, .nodes = 1000, .bandwidth = 5 * GB, .alpha = 2 * US,
                                .schedule = PB_SCHED_TREE, .slow_rate = 1.25 * GB };
    ok(pb_model_run(&big, &r, err, sizeof err) == 0 && r.efficiency >= 0.9,
       "slow node at a quarter, 5 GB to 1,000 nodes at 5 GB/s, trees placed: efficiency %.3f >= 0.9 %s",
       r.efficiency, err);
}

static int near(double a, double b, double rel)
{
    double d = a > b ? a - b : b - a;
    return d <= rel * (b > 0 ? b : 1);
}

static int run_cpu(uint64_t F, int N, double B, double alpha, double C, int sched, uint64_t c, uint32_t slots,
                   struct pb_model_result *r, char *err, size_t errlen)
{
    struct pb_model_cfg cfg = { .file_size = F, .nodes = N, .bandwidth = B, .alpha = alpha, .chunk_size = c,
                                .slots = slots, .check = 1, .schedule = sched, .cpu_rate = C };
    return pb_model_run(&cfg, r, err, errlen);
}

/* The CPU (issue 23): one thread per node spends len/C on every chunk
 * before passing it on. Slower than the link, it binds: T >= F/C, and
 * the model names it; faster, it adds about one chunk's c/C per hop. */
static void test_cpu(void)
{
    struct pb_model_result r, r0;
    char err[512] = "";
    const uint64_t F = 1ull << 30, c = 1u << 20;
    for (int s = 0; s < 2; s++) {
        const char *nm = s ? "trees" : "ring";
        int rc = run_cpu(F, 16, 10 * GB, 2 * US, 2 * GB, s, c, 0, &r, err, sizeof err);
        double FC = (double)F / (2 * GB);
        ok(rc == 0 && r.time >= FC && r.time <= FC * 1.05 && !strcmp(r.limit, "cpu"),
           "%s, 16 nodes, C 2 GB/s below B 10 GB/s: T %.4f s in [F/C, 1.05 F/C] = [%.4f, %.4f], limit %s %s", nm,
           r.time, FC, FC * 1.05, r.limit ? r.limit : "?", err);
        rc = run_cpu(F, 16, 10 * GB, 2 * US, 0, s, c, 0, &r0, err, sizeof err);
        int rc2 = run_cpu(F, 16, 10 * GB, 2 * US, 40 * GB, s, c, 0, &r, err, sizeof err);
        ok(rc == 0 && rc2 == 0 && near(r.time, r0.time, 0.02) && !strcmp(r.limit, "link") &&
               !strcmp(r0.limit, "link"),
           "%s, C 40 GB/s above B: within 2 %% of the time without the CPU (%.4f vs %.4f s), the link binds", nm,
           r.time, r0.time);
    }
    /* N = 2, the root and one receiver, both at C = B/2: the root's thread
     * and the receiver's each take F/C, pipelined chunk by chunk. */
    int rc = run_cpu(F, 2, 1 * GB, 0, 0.5 * GB, PB_SCHED_RING, c, 0, &r, err, sizeof err);
    double lo = (double)F / (0.5 * GB), hi = lo + 3 * (double)c / (0.5 * GB);
    ok(rc == 0 && r.time >= lo && r.time <= hi, "N=2, C = B/2: T %.4f s within [F/C, F/C + 3c/C] = [%.4f, %.4f]",
       r.time, lo, hi);
    /* no deadlock with the CPU slower or faster than the link, few slots */
    int fails = 0;
    const int Ns[] = { 2, 3, 5, 17, 64 };
    for (int s = 0; s < 2; s++)
        for (uint32_t slots = 4; slots <= 9; slots += 5)
            for (size_t i = 0; i < sizeof Ns / sizeof *Ns; i++)
                for (int k = 0; k < 2; k++) {
                    rc = run_cpu(100 * 65536 + 17, Ns[i], GB, 2 * US, k ? 3 * GB : 0.3 * GB, s, 65536, slots, &r,
                                 err, sizeof err);
                    if (rc || r.messages != 101ull * (uint64_t)(Ns[i] - 1)) {
                        if (fails++ < 3)
                            printf("# %s N=%d slots %u: rc %d %s\n", s ? "trees" : "ring", Ns[i], slots, rc, err);
                    }
                }
    ok(fails == 0, "with the CPU counted: no deadlock, every chunk to every node once (ring, trees, 4 and 9 slots)");
}

int main(void)
{
    struct pb_model_result r, r2;
    char err[512] = "";
    int rc;

    /* N = 2: the root streams every chunk to the one receiver: F/B plus
     * alpha (the first credits), plus per message alpha and the trailer. */
    {
        uint64_t F = 1ull << 30, c = 4u << 20;
        double B = 1 * GB, a = 2 * US;
        rc = run(F, 2, B, a, c, 0, 0, &r, err, sizeof err);
        double n = (double)(F / c);
        double lo = (double)F / B + a, hi = (double)F / B + a + n * (a + PB_TRAILER_SIZE / B) + 1e-9;
        ok(rc == 0 && r.time >= lo && r.time <= hi, "N=2: %.6f s within [F/B + alpha, F/B + alpha + n(alpha + trailer/B)] = [%.6f, %.6f] %s",
           r.time, lo, hi, rc ? err : "");
        ok(rc == 0 && near(r.time, (double)F / B + a, 0.002), "N=2: ~F/B + alpha (%.6f vs %.6f)", r.time,
           (double)F / B + a);
        rc = run(F, 2, B, 0, c, 0, 0, &r, err, sizeof err);
        ok(rc == 0 && near(r.time, (double)(F + n * PB_TRAILER_SIZE) / B, 1e-9),
           "N=2, alpha=0: exactly the wire bytes over B (%.9f s)", r.time);
        ok(rc == 0 && r.messages == (uint64_t)n && r.root_busy > 0.999, "N=2: one message per chunk, root link always busy");
    }

    /* N = 1: nothing to send. */
    rc = run(1u << 20, 1, GB, 2 * US, 0, 0, 0, &r, err, sizeof err);
    ok(rc == 0 && r.time == 0 && r.efficiency == 1 && r.messages == 0, "N=1: nothing moves");
    /* Empty file. */
    rc = run(0, 8, GB, 2 * US, 0, 0, 0, &r, err, sizeof err);
    ok(rc == 0 && r.time == 0 && r.messages == 0, "empty file: nothing moves");

    /* Efficiency: within (0, 1] everywhere, and high where it should be. */
    {
        int sane = 1, high = 1, cnt = 0;
        const int Ns[] = { 2, 3, 4, 7, 16, 33, 100 };
        const uint64_t Fs[] = { 1000, 4096 * 3 + 5, 1u << 20, 100u << 20, 1ull << 30 };
        const double As[] = { 0, 2 * US, 50 * US };
        for (size_t i = 0; i < sizeof Ns / sizeof *Ns; i++)
            for (size_t j = 0; j < sizeof Fs / sizeof *Fs; j++)
                for (size_t k = 0; k < sizeof As / sizeof *As; k++) {
                    rc = run(Fs[j], Ns[i], 5 * GB, As[k], 0, 0, 0, &r, err, sizeof err);
                    cnt++;
                    if (rc || !(r.efficiency > 0) || r.efficiency > 1 || r.time < r.ideal) {
                        if (sane)
                            printf("# N=%d F=%llu alpha=%g: rc %d eff %f time %g ideal %g %s\n", Ns[i],
                                   (unsigned long long)Fs[j], As[k], rc, r.efficiency, r.time, r.ideal, err);
                        sane = 0;
                    }
                    if (!rc && Fs[j] >= (1u << 30) && As[k] <= 2 * US && r.efficiency < 0.85) {
                        printf("# low efficiency %.3f at N=%d F=%llu alpha=%g\n", r.efficiency, Ns[i],
                               (unsigned long long)Fs[j], As[k]);
                        high = 0;
                    }
                }
        ok(sane, "efficiency in (0, 1] and time >= F/B in %d cases", cnt);
        ok(high, "efficiency >= 0.85 for 1 GiB with the default chunk and alpha <= 2 us");
    }

    /* The model agrees with the closed form F/B + chunks*alpha + (N-2)(alpha + c/B)
     * when links are the only limit. */
    {
        rc = run(1ull << 30, 64, 5 * GB, 2 * US, 256u << 10, 0, 0, &r, err, sizeof err);
        ok(rc == 0 && near(r.time, r.estimate, 0.02), "N=64: model %.6f s vs closed form %.6f s (2%%)", r.time,
           r.estimate);
    }

    /* Flat: for a large file, time grows at most slightly with N. */
    {
        uint64_t F = 4ull << 30;
        double t2 = 0, worst = 0;
        int okall = 1;
        const int Ns[] = { 2, 4, 16, 64, 256, 1024 };
        for (size_t i = 0; i < sizeof Ns / sizeof *Ns; i++) {
            rc = run(F, Ns[i], 5 * GB, 2 * US, 0, 0, 0, &r, err, sizeof err);
            if (rc) {
                okall = 0;
                printf("# N=%d: %s\n", Ns[i], err);
                continue;
            }
            printf("#   N=%-5d chunk %7llu  T=%.4f s  eff %.3f\n", Ns[i], (unsigned long long)r.chunk_size, r.time,
                   r.efficiency);
            if (i == 0)
                t2 = r.time;
            if (r.time / t2 > worst)
                worst = r.time / t2;
        }
        ok(okall && worst <= 1.15, "flat in N: T(N)/T(2) <= %.3f (limit 1.15) for 4 GiB, N = 2..1024", worst);
    }

    /* Tail term: at large N a larger chunk is slower, by about the tail. */
    {
        uint64_t F = 2ull << 30;
        rc = run(F, 1000, 5 * GB, 2 * US, 256u << 10, 0, 0, &r, err, sizeof err);
        int rc2 = run(F, 1000, 5 * GB, 2 * US, 4u << 20, 0, 0, &r2, err, sizeof err);
        ok(rc == 0 && rc2 == 0 && r2.time > r.time, "N=1000: 4 MiB chunks (%.4f s) slower than 256 KiB (%.4f s)",
           r2.time, r.time);
        ok(rc2 == 0 && r2.tail > r.tail && r2.time >= r2.ideal + r2.tail * 0.9,
           "N=1000, 4 MiB: time %.4f s >= F/B + 0.9 tail (%.4f + %.4f)", r2.time, r2.ideal, r2.tail);
        ok(r.tail == 998 * (2 * US + (double)(256u << 10) / (5 * GB)), "tail term is (N-2)(alpha + c/B)");
        /* and at small N the larger chunk costs nothing worth mentioning */
        rc = run(F, 4, 5 * GB, 2 * US, 256u << 10, 0, 0, &r, err, sizeof err);
        rc2 = run(F, 4, 5 * GB, 2 * US, 4u << 20, 0, 0, &r2, err, sizeof err);
        ok(rc == 0 && rc2 == 0 && r2.time < r.time * 1.01, "N=4: 4 MiB chunks are not slower (%.4f vs %.4f s)",
           r2.time, r.time);
    }

    /* Comparison columns. */
    {
        rc = run(1000000000, 1000, 5 * GB, 2 * US, 0, 0, 0, &r, err, sizeof err);
        ok(rc == 0 && near(r.single_sender, 999 * 0.2, 1e-12) && near(r.scatter_allgather, 2.0 * 999 / 1000 * 0.2, 1e-12) &&
               near(r.binomial, 10 * 0.2, 1e-12),
           "baselines: single %.3f, scatter+allgather %.4f, binomial %.3f", r.single_sender, r.scatter_allgather,
           r.binomial);
        ok(rc == 0 && r.chunk_size == pb_model_default_chunk(&(struct pb_model_cfg){ .file_size = 1000000000, .nodes = 1000, .bandwidth = 5 * GB, .alpha = 2 * US }) && r.default_chunk,
           "chunk size defaults to the ring's rule at alpha*B");
        rc = run(1000000000, 1000, 5 * GB, 2 * US, 0, 0, 0, &r2, err, sizeof err);
        ok(rc == 0 && r2.time == r.time && r2.events == r.events, "deterministic");
    }

    /* No deadlock for any slot count and root share, awkward sizes included. */
    {
        int fails = 0, cases = 0;
        const int Ns[] = { 2, 3, 5, 9, 17, 64 };
        const uint64_t Fs[] = { 1, 4096, 4096 * 7 + 1, 4096 * 64, 4096 * 1000 + 17 };
        const double As[] = { 0, 2 * US };
        for (uint32_t s = 4; s <= 16; s++)
            for (uint32_t rs = 0; rs <= s - 2; rs++)
                for (size_t i = 0; i < sizeof Ns / sizeof *Ns; i++)
                    for (size_t j = 0; j < sizeof Fs / sizeof *Fs; j++)
                        for (size_t k = 0; k < sizeof As / sizeof *As; k++) {
                            rc = run(Fs[j], Ns[i], GB, As[k], 4096, s, rs, &r, err, sizeof err);
                            cases++;
                            uint64_t n = (Fs[j] + 4095) / 4096;
                            if (rc || r.messages != n * (uint64_t)(Ns[i] - 1)) {
                                if (fails++ < 5)
                                    printf("# slots %u root %u N=%d F=%llu: rc %d, %llu messages: %s\n", s, rs,
                                           Ns[i], (unsigned long long)Fs[j], rc, (unsigned long long)r.messages, err);
                            }
                        }
        ok(fails == 0, "no deadlock, every chunk to every node once: slots 4..16, every root share, %d cases", cases);
        /* and the default split with bigger rings and more chunks than slots */
        fails = 0;
        for (uint32_t s = 4; s <= 16; s++) {
            rc = run(64ull << 20, 500, 5 * GB, 2 * US, 64u << 10, s, 0, &r, err, sizeof err);
            if (rc || r.messages != 1024ull * 499) {
                fails++;
                printf("# slots %u: rc %d %s\n", s, rc, err);
            }
        }
        ok(fails == 0, "no deadlock with N=500, 1024 chunks, slots 4..16");
    }

    /* Bad parameters are refused, not simulated. */
    ok(run(1u << 20, 0, GB, 0, 0, 0, 0, &r, err, sizeof err) == -1, "N=0 refused");
    ok(run(1u << 20, 4, 0, 0, 0, 0, 0, &r, err, sizeof err) == -1, "B=0 refused");
    ok(run(1u << 20, 4, GB, 0, 0, 3, 0, &r, err, sizeof err) == -1, "3 slots refused (the engine needs 4)");
    ok(run(1u << 20, 4, GB, 0, 1000, 0, 0, &r, err, sizeof err) == -1, "chunk below the plan's minimum refused");

    /* Parsers. */
    {
        double v;
        ok(pb_model_parse_bandwidth("5GB/s", &v) == 0 && v == 5e9, "5GB/s = 5e9 bytes/s");
        ok(pb_model_parse_bandwidth("100Gbit/s", &v) == 0 && v == 12.5e9, "100Gbit/s = 12.5e9 bytes/s");
        ok(pb_model_parse_bandwidth("100Gb/s", &v) == 0 && v == 12.5e9, "100Gb/s = 12.5e9 bytes/s");
        ok(pb_model_parse_bandwidth("2GiB/s", &v) == 0 && v == 2147483648.0, "2GiB/s binary");
        ok(pb_model_parse_bandwidth("1e9", &v) == 0 && v == 1e9, "plain number is bytes/s");
        ok(pb_model_parse_bandwidth("500MB/s", &v) == 0 && v == 5e8, "500MB/s");
        ok(pb_model_parse_bandwidth("fast", &v) < 0 && pb_model_parse_bandwidth("5GB/h", &v) < 0 &&
               pb_model_parse_bandwidth("-1GB/s", &v) < 0 && pb_model_parse_bandwidth("0", &v) < 0 &&
               pb_model_parse_bandwidth("", &v) < 0,
           "bad rates refused");
        ok(pb_model_parse_duration("2us", &v) == 0 && near(v, 2e-6, 1e-12), "2us");
        ok(pb_model_parse_duration("500ns", &v) == 0 && near(v, 5e-7, 1e-12), "500ns");
        ok(pb_model_parse_duration("1.5ms", &v) == 0 && near(v, 1.5e-3, 1e-12), "1.5ms");
        ok(pb_model_parse_duration("0", &v) == 0 && v == 0, "0");
        ok(pb_model_parse_duration("2 parsecs", &v) < 0 && pb_model_parse_duration("-2us", &v) < 0,
           "bad durations refused");
    }

    /* Scale: 10,000 nodes and 20,000 chunks (2e8 messages) completes. */
    {
        uint64_t c = 64u << 10;
        rc = run(20000 * (uint64_t)c, 10000, 5 * GB, 2 * US, c, 0, 0, &r, err, sizeof err);
        ok(rc == 0 && r.nchunks == 20000 && r.messages == 20000ull * 9999 && r.efficiency > 0 && r.efficiency <= 1,
           "N=10000, 20000 chunks: %llu messages, T=%.4f s, efficiency %.3f %s", (unsigned long long)r.messages,
           r.time, r.efficiency, rc ? err : "");
    }
    test_trees();
    test_cpu();
    test_slow_node();
    return tap_done();
}
