/* test_placement.c — placement.h: slow senders go where the trees make
 * them send least, everything else keeps its order. */
#include "placement.h"
#include "plan.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static void tree_plan(struct pb_plan *p, int nleaders)
{
    char err[128];
    pb_plan_init(p, 1 << 20, 4096, nleaders - 1, err, sizeof err);
    p->schedule = PB_SCHED_TREE;
}

/* order[] holds every leader but the root once. */
static int is_permutation(const int *order, int R, int root, int nleaders)
{
    unsigned char *seen = calloc((size_t)nleaders, 1);
    int good = seen != NULL;
    for (int r = 0; r < R && good; r++) {
        good = order[r] >= 0 && order[r] < nleaders && order[r] != root && !seen[order[r]];
        if (good)
            seen[order[r]] = 1;
    }
    free(seen);
    return good;
}

/* Place with rates rate[] and apply the result to p. */
static int place(struct pb_plan *p, int *order, int root, int nleaders, const uint64_t *rate)
{
    int hang;
    int n = pb_place(p, root, nleaders, rate, order, &hang);
    p->order = n ? order : NULL;
    p->tree_hang = hang;
    return n;
}

/* One slow sender, every leader in turn, R = 2..40, two roots: it ends at
 * a position that sends nothing and the trees run at the others' rate. */
static void test_one_slow(void)
{
    char why[160] = "";
    int good = 1;
    for (int N = 3; N <= 41 && good; N++)
        for (int root = 0; root < N && good; root += N / 2) {
            for (int slow = 0; slow < N && good; slow++) {
                if (slow == root)
                    continue;
                uint64_t rate[64];
                int order[64];
                struct pb_plan p;
                for (int l = 0; l < N; l++)
                    rate[l] = l == slow ? 37 : 148;
                tree_plan(&p, N);
                int n = place(&p, order, root, N, rate);
                int r = pb_plan_receiver_of(&p, root, N, slow);
                double b = pb_place_bottleneck(&p, root, N, rate);
                if (n != 1 || !is_permutation(order, N - 1, root, N) || r < 0 || pb_place_load(&p, r) != 0 ||
                    b > 1.0 / 148 + 1e-12 || p.tree_hang != ((N - 1) % 2 == 0)) {
                    snprintf(why, sizeof why, "N %d root %d slow %d: placed %d at %d, load %d, bottleneck %g", N,
                             root, slow, n, r, r >= 0 ? pb_place_load(&p, r) : -1, b * 148);
                    good = 0;
                }
            }
        }
    ok(good, "one slow sender (a quarter), N = 3..41 (R odd and even), each leader in turn, roots 0 and N/2: "
             "at a position that sends nothing, the trees at the others' rate %s", why);
}

/* Two slow ones: the slowest sends nothing, the next half the file. */
static void test_two_slow(void)
{
    char why[160] = "";
    int good = 1;
    for (int N = 4; N <= 40 && good; N++) {
        uint64_t rate[64];
        int order[64];
        struct pb_plan p, id;
        for (int l = 0; l < N; l++)
            rate[l] = 100;
        int a = N - 1, b = N / 2;
        rate[a] = 25;
        rate[b] = 40;
        tree_plan(&p, N);
        tree_plan(&id, N);
        int n = place(&p, order, 0, N, rate);
        int ra = pb_plan_receiver_of(&p, 0, N, a), rb = pb_plan_receiver_of(&p, 0, N, b);
        double placed = pb_place_bottleneck(&p, 0, N, rate), before = pb_place_bottleneck(&id, 0, N, rate);
        int least = 2; /* the least any other position sends */
        for (int r = 0; r < N - 1; r++)
            if (r != ra && pb_place_load(&p, r) < least)
                least = pb_place_load(&p, r);
        if (n != 2 || !is_permutation(order, N - 1, 0, N) || pb_place_load(&p, ra) != 0 ||
            pb_place_load(&p, rb) != least || placed > before) {
            snprintf(why, sizeof why, "N %d: placed %d, loads %d and %d, bottleneck %g (before %g)", N, n,
                     pb_place_load(&p, ra), pb_place_load(&p, rb), placed, before);
            good = 0;
        }
    }
    ok(good, "two slow senders, N = 4..40: the slowest sends nothing, the next where the least is left, "
             "never worse than the default order %s", why);
}

/* Equal rates, rates within noise, unknown rates, a slow root, the ring:
 * nothing moves. */
static void test_nothing_to_place(void)
{
    uint64_t rate[16];
    int order[16], hang = 7;
    struct pb_plan p;
    tree_plan(&p, 9);
    for (int l = 0; l < 9; l++)
        rate[l] = 150;
    int n = pb_place(&p, 2, 9, rate, order, &hang);
    int ident = 1;
    for (int r = 0; r < 8; r++)
        ident &= order[r] == (2 + 1 + r) % 9;
    ok(n == 0 && hang == 0 && ident, "equal rates: the default order, no hang");
    for (int l = 0; l < 9; l++)
        rate[l] = 150 - (uint64_t)(l * 7); /* 150 .. 94: all above 0.6 of the median */
    ok(pb_place(&p, 2, 9, rate, order, &hang) == 0 && hang == 0, "rates within 0.6 of the median: nothing moves");
    memset(rate, 0, sizeof rate);
    ok(pb_place(&p, 2, 9, rate, order, &hang) == 0, "unknown rates: nothing moves");
    for (int l = 0; l < 9; l++)
        rate[l] = l == 2 ? 30 : 150;
    int slow[16];
    ok(pb_place(&p, 2, 9, rate, order, &hang) == 0 && pb_place_slow(rate, 9, slow) == 1 && slow[0] == 2,
       "a slow root is named slow but never moved (it sends F in every schedule)");
    for (int l = 0; l < 9; l++)
        rate[l] = l == 5 ? 30 : 150;
    p.schedule = PB_SCHED_RING;
    ok(pb_place(&p, 2, 9, rate, order, &hang) == 0 && hang == 0,
       "the ring keeps its order: every receiver forwards alike");
    ok(pb_place_median(rate, 9) == 150, "median of the known rates");
}

int main(void)
{
    test_one_slow();
    test_two_slow();
    test_nothing_to_place();
    return tap_done();
}
