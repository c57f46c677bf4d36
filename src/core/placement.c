/* placement.c — slow senders to the positions that send least (see
 * placement.h). */
#include "placement.h"

#include <stdlib.h>

int pb_place_load(const struct pb_plan *p, int r)
{
    int n = 0, kids[2];
    for (int t = 0; t < PB_TREES; t++)
        n += pb_plan_tree_children(p, t, r, kids);
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

uint64_t pb_place_median(const uint64_t *rate, int nleaders)
{
    uint64_t *known = malloc(((size_t)nleaders + 1) * sizeof *known);
    int n = 0;
    if (!known)
        return 0;
    for (int l = 0; l < nleaders; l++)
        if (rate[l])
            known[n++] = rate[l];
    qsort(known, (size_t)n, sizeof *known, cmp_u64);
    uint64_t m = n ? (n % 2 ? known[n / 2] : (known[n / 2 - 1] + known[n / 2]) / 2) : 0;
    free(known);
    return m;
}

int pb_place_slow(const uint64_t *rate, int nleaders, int *slow)
{
    double cut = PB_SLOW_FRACTION * (double)pb_place_median(rate, nleaders);
    int n = 0;
    for (int l = 0; l < nleaders; l++) {
        if (!rate[l] || (double)rate[l] >= cut)
            continue;
        int i = n++; /* insertion: slowest first, ties by leader index */
        while (i > 0 && rate[slow[i - 1]] > rate[l]) {
            slow[i] = slow[i - 1];
            i--;
        }
        slow[i] = l;
    }
    return n;
}

/* Receiver positions by what they send, least first; among equals the
 * later position first (R-1 is the hung or leaf-in-both one). */
static int *positions_by_load(const struct pb_plan *q)
{
    int R = q->nrecv, *pos = malloc((size_t)R * sizeof *pos), *load = malloc((size_t)R * sizeof *load);
    if (!pos || !load) {
        free(pos);
        free(load);
        return NULL;
    }
    for (int r = 0; r < R; r++)
        load[r] = pb_place_load(q, r);
    for (int i = 0; i < R; i++) {
        int r = R - 1 - i, j = i;
        while (j > 0 && load[pos[j - 1]] > load[r]) {
            pos[j] = pos[j - 1];
            j--;
        }
        pos[j] = r;
    }
    free(load);
    return pos;
}

static void rotation(int root_leader, int nleaders, int *order)
{
    for (int r = 0; r < nleaders - 1; r++)
        order[r] = (root_leader + 1 + r) % nleaders;
}

/* Slow receivers (slowest first) to the positions that send least; every
 * other leader keeps its rotation order over the positions left. */
static int assign(const struct pb_plan *q, int root_leader, int nleaders, const int *slow, int nslow, int *order)
{
    int R = q->nrecv, *pos = positions_by_load(q);
    unsigned char *taken = calloc((size_t)nleaders, 1), *filled = calloc((size_t)R, 1);
    int placed = 0;
    if (pos && taken && filled) {
        for (int i = 0; i < nslow; i++) {
            if (slow[i] == root_leader)
                continue;
            order[pos[placed]] = slow[i];
            filled[pos[placed++]] = 1;
            taken[slow[i]] = 1;
        }
        for (int r = 0, next = 0; r < R; r++) {
            if (filled[r])
                continue;
            while (taken[(root_leader + 1 + next) % nleaders])
                next++;
            order[r] = (root_leader + 1 + next++) % nleaders;
        }
    }
    if (!pos || !taken || !filled) {
        rotation(root_leader, nleaders, order);
        placed = 0;
    }
    free(pos);
    free(taken);
    free(filled);
    return placed;
}

int pb_place(const struct pb_plan *p, int root_leader, int nleaders, const uint64_t *rate, int *order, int *hang)
{
    int R = nleaders - 1;
    *hang = 0;
    rotation(root_leader, nleaders, order);
    if (p->schedule != PB_SCHED_TREE || R < 2 || p->nrecv != R)
        return 0;
    int *slow = malloc((size_t)nleaders * sizeof *slow);
    if (!slow)
        return 0;
    int nslow = pb_place_slow(rate, nleaders, slow), receivers = 0;
    for (int i = 0; i < nslow; i++)
        receivers += slow[i] != root_leader;
    int placed = 0;
    if (receivers) {
        struct pb_plan q = *p;
        q.order = NULL;
        q.tree_hang = R % 2 == 0;
        placed = assign(&q, root_leader, nleaders, slow, nslow, order);
        *hang = placed ? q.tree_hang : 0;
    }
    free(slow);
    return placed;
}

double pb_place_bottleneck(const struct pb_plan *p, int root_leader, int nleaders, const uint64_t *rate)
{
    double worst = rate[root_leader] ? 1.0 / (double)rate[root_leader] : 0;
    for (int r = 0; r < p->nrecv; r++) {
        int l = pb_plan_leader_of(p, root_leader, nleaders, r);
        double t = rate[l] ? pb_place_load(p, r) / 2.0 / (double)rate[l] : 0;
        if (t > worst)
            worst = t;
    }
    return worst;
}
