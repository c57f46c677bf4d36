/* test_chunk_rule.c — the chunk and schedule rules (plan.c) against the
 * model (src/model) that runs the real schedules: over alpha*B from 10 KB
 * to 1.25 MB the default chunk is within 10 % of the model's best one, and
 * `auto` takes a schedule within 3 % of the faster (issue 23). The network
 * alone (no CPU): the rules are about the per-message cost. No assertion
 * looks at wall-clock time. */
#include "model.h"
#include "plan.h"
#include "tap.h"

#include <stdio.h>

#define GB 1e9

static double run(uint64_t F, int N, double B, double alpha, int sched, uint64_t c, uint64_t *chunk, char *err,
                  size_t errlen)
{
    struct pb_model_cfg cfg = { .file_size = F, .nodes = N, .bandwidth = B, .alpha = alpha, .chunk_size = c,
                                .schedule = sched };
    struct pb_model_result r;
    if (pb_model_run(&cfg, &r, err, errlen) != 0)
        return -1;
    if (chunk)
        *chunk = r.chunk_size;
    return r.time;
}

/* The model's best chunk near c (T(c) is convex: per-message cost falls
 * as 1/c, the tail grows as c): powers of two and their half-steps from c/8
 * to 8c, within [32 KiB, 64 MiB]. Returns its time, the chunk in *best. */
static double best_near(uint64_t F, int N, double B, double alpha, int sched, uint64_t c, uint64_t *best, char *err,
                        size_t errlen)
{
    double tbest = -1;
    for (uint64_t p = c / 8 < 32768 ? 32768 : c / 8; p <= 8 * c && p <= PB_CEIL_MAX; p *= 2)
        for (int half = 0; half < 2; half++) {
            uint64_t x = half ? (p * 181 / 128 + 4095) / 4096 * 4096 : p; /* p sqrt 2, in 4 KiB */
            double t = run(F, N, B, alpha, sched, x, NULL, err, errlen);
            if (t < 0)
                return -1;
            if (tbest < 0 || t < tbest) {
                tbest = t;
                *best = x;
            }
        }
    return tbest;
}

static void test_rule_against_model(void)
{
    const double B = 25 * GB;
    const double ab[] = { 10e3, 40e3, 160e3, 625e3, 1.25e6 };
    const struct { uint64_t F; int N; } cases[] = {
        { 1ull << 30, 4 }, { 5ull << 30, 16 }, { 4ull << 30, 128 }, { 8ull << 30, 1000 },
    };
    char err[512];
    for (int sched = PB_SCHED_RING; sched <= PB_SCHED_TREE; sched++) {
        double worst = 1;
        char at[200] = "";
        int fails = 0;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            for (size_t j = 0; j < sizeof ab / sizeof *ab; j++) {
                if (sched == PB_SCHED_RING && cases[i].N > 128)
                    continue; /* the ring at 1,000 nodes: auto never takes it */
                double alpha = ab[j] / B;
                uint64_t c = 0, best = 0;
                double t = run(cases[i].F, cases[i].N, B, alpha, sched, 0, &c, err, sizeof err);
                double tb = t < 0 ? -1 : best_near(cases[i].F, cases[i].N, B, alpha, sched, c, &best, err, sizeof err);
                if (t < 0 || tb < 0) {
                    fails++;
                    printf("# %s\n", err);
                    continue;
                }
                printf("# %-4s F %5.2f GiB N %4d alpha*B %7.0f: rule %8llu KiB T %.4f s, best %8llu KiB T %.4f s (%.3f)\n",
                       sched ? "tree" : "ring", (double)cases[i].F / (1 << 30), cases[i].N, ab[j],
                       (unsigned long long)c >> 10, t, (unsigned long long)best >> 10, tb, t / tb);
                if (t / tb > worst) {
                    worst = t / tb;
                    snprintf(at, sizeof at, "F %.2f GiB, N %d, alpha*B %.0f: %llu KiB vs best %llu KiB",
                             (double)cases[i].F / (1 << 30), cases[i].N, ab[j], (unsigned long long)c >> 10,
                             (unsigned long long)best >> 10);
                }
            }
        ok(!fails && worst <= 1.10, "%s: the default chunk's time within 10 %% of the model's best chunk for alpha*B "
                                    "10 KB..1.25 MB at 25 GB/s (worst %.3f: %s)",
           sched ? "trees" : "ring", worst, at);
    }
}

/* auto, with the chunk each schedule would use: within 3 % of the faster. */
static void test_auto(void)
{
    const struct { uint64_t F; int N; double B, alpha; } cases[] = {
        { 256ull << 20, 12, 25 * GB, 20e-6 }, /* issue 23: ring 21.4 ms, trees 16.4 ms, auto took the ring */
        { 256ull << 20, 9, 25 * GB, 20e-6 },  { 1ull << 30, 16, 25 * GB, 30e-6 },
        { 5ull << 30, 16, 25 * GB, 1.5e-6 },  { 5ull << 30, 64, 12.5 * GB, 30e-6 },
        { 5000000000ull, 1000, 5 * GB, 2e-6 },
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct pb_link_cost lc = { .alpha = cases[i].alpha, .rate = cases[i].B };
        int pick = pb_schedule_auto(cases[i].F, cases[i].N, &lc, NULL, 0);
        double t[2];
        for (int s = 0; s < 2; s++)
            t[s] = run(cases[i].F, cases[i].N, cases[i].B, cases[i].alpha, s, 0, NULL, err, sizeof err);
        double fast = t[0] < t[1] ? t[0] : t[1];
        ok(t[0] > 0 && t[1] > 0 && t[pick] <= 1.03 * fast,
           "auto, %.3g GiB to %d nodes at %.3g GB/s, alpha %.3g us: %s, %.4g ms (ring %.4g ms, trees %.4g ms)",
           (double)cases[i].F / (1 << 30), cases[i].N, cases[i].B / GB, cases[i].alpha * 1e6, pick ? "trees" : "ring",
           t[pick] * 1e3, t[0] * 1e3, t[1] * 1e3);
    }
}

int main(void)
{
    test_rule_against_model();
    test_auto();
    return tap_done();
}
