/* verbs_place.h — which pages of the slot pool go to which NUMA node, when
 * the verbs rails' devices sit on different nodes: each slot near the HCA
 * of the rail it belongs to (verbs_mr.c assign_slots), the pool still one
 * block per node. No libibverbs and no hwloc here: arithmetic, unit-tested
 * (tests/test_verbs_place.c); verbs_mr.c applies the plan with topo.h. */
#ifndef P2PBCAST_VERBS_PLACE_H
#define P2PBCAST_VERBS_PLACE_H

#include <stddef.h>
#include <stdint.h>

#include "verbs_rails.h"

/* Pages [first, first + npages) of the pool to bind to NUMA node `node`. */
struct pb_vplace_run {
    size_t first, npages;
    int node;
};

struct pb_vplace_plan {
    int split;            /* 1: the rails' devices sit on two or more NUMA nodes: runs to apply;
                           * 0: one node (or none known): nothing moves, no runs */
    size_t npages;        /* whole pages of the pool (a partial last page is left where it is) */
    size_t shared;        /* pages holding bytes of slots of rails on different nodes */
    size_t rail_pages[PB_VERBS_MAX_RAILS]; /* pages given to each rail's node (split only) */
    size_t nruns;
    struct pb_vplace_run *runs; /* consecutive pages for one node merged; free with pb_vplace_free */
};

/* The plan for a pool of pool_len bytes (page aligned) cut into nslots
 * slots of slot_size bytes, slot s belonging to rail slot_rail[s], rail r's
 * device on NUMA node rail_node[r] (-1: unknown, its slots stay where they
 * are). Slots need not be page-sized: a page holding bytes of slots of
 * rails on different nodes goes to the node with most of its bytes (ties:
 * the lower slot's). 0, or -1 when out of memory or the arguments are
 * inconsistent (plan left empty). */
int pb_vplace_plan(size_t pool_len, size_t page, size_t slot_size, uint32_t nslots, const uint8_t *slot_rail,
                   const int *rail_node, int nrails, struct pb_vplace_plan *out);
void pb_vplace_free(struct pb_vplace_plan *p);

#endif
