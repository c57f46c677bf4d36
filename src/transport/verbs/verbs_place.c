/* verbs_place.c — the slot pool's pages per NUMA node (verbs_place.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "verbs_place.h"

#include <stdlib.h>
#include <string.h>

/* Two or more distinct known nodes among the rails. */
static int rails_split(const int *rail_node, int nrails)
{
    int first = -1;
    for (int r = 0; r < nrails; r++) {
        if (rail_node[r] < 0)
            continue;
        if (first < 0)
            first = rail_node[r];
        else if (rail_node[r] != first)
            return 1;
    }
    return 0;
}

/* The rail whose node page pg goes to: the one with most bytes in it, of
 * rails whose node is known (-1: none). *mixed: the page holds bytes of
 * rails on different nodes. */
static int page_rail(size_t pg, size_t page, size_t slot_size, uint32_t nslots, const uint8_t *slot_rail,
                     const int *rail_node, int *mixed)
{
    size_t lo = pg * page, hi = lo + page, bytes[PB_VERBS_MAX_RAILS] = {0};
    int best = -1, node = -2;
    *mixed = 0;
    for (size_t s = lo / slot_size; s < nslots && s * slot_size < hi; s++) {
        size_t a = s * slot_size > lo ? s * slot_size : lo, b = (s + 1) * slot_size < hi ? (s + 1) * slot_size : hi;
        int r = slot_rail[s];
        if (rail_node[r] < 0)
            continue;
        if (node != -2 && node != rail_node[r])
            *mixed = 1;
        node = rail_node[r];
        bytes[r] += b - a;
        if (best < 0 || bytes[r] > bytes[best])
            best = r;
    }
    return best;
}

static int add_run(struct pb_vplace_plan *p, size_t *cap, size_t pg, int node)
{
    struct pb_vplace_run *last = p->nruns ? &p->runs[p->nruns - 1] : NULL;
    if (last && last->node == node && last->first + last->npages == pg) {
        last->npages++;
        return 0;
    }
    if (p->nruns == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        struct pb_vplace_run *r = realloc(p->runs, n * sizeof *r);
        if (!r)
            return -1;
        p->runs = r;
        *cap = n;
    }
    p->runs[p->nruns++] = (struct pb_vplace_run){pg, 1, node};
    return 0;
}

int pb_vplace_plan(size_t pool_len, size_t page, size_t slot_size, uint32_t nslots, const uint8_t *slot_rail,
                   const int *rail_node, int nrails, struct pb_vplace_plan *out)
{
    memset(out, 0, sizeof *out);
    if (!page || !slot_size || nrails < 1 || nrails > PB_VERBS_MAX_RAILS || pool_len / slot_size < nslots)
        return -1;
    for (uint32_t s = 0; s < nslots; s++)
        if (slot_rail[s] >= nrails)
            return -1;
    out->npages = pool_len / page;
    out->split = rails_split(rail_node, nrails);
    if (!out->split)
        return 0; /* the common case: no per-page work at all */
    size_t cap = 0;
    for (size_t pg = 0; pg < out->npages; pg++) {
        int mixed, r = page_rail(pg, page, slot_size, nslots, slot_rail, rail_node, &mixed);
        if (r < 0)
            continue; /* padding past the last slot, or only rails of unknown place */
        out->shared += mixed;
        out->rail_pages[r]++;
        if (add_run(out, &cap, pg, rail_node[r]) != 0) {
            pb_vplace_free(out);
            return -1;
        }
    }
    return 0;
}

void pb_vplace_free(struct pb_vplace_plan *p)
{
    free(p->runs);
    memset(p, 0, sizeof *p);
}
