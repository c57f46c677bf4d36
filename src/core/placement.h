/* placement.h — which receiver position each node takes, from the rates
 * the nodes send at: slow senders where the schedule makes them send least.
 * Pure: no I/O; the stage measures the rates (src/stage/placement.c).
 *
 * The two trees: R receivers, the root sends F/2 to each tree's root, an
 * interior node F/2 to each child. For R odd one receiver is a leaf
 * in both trees and sends nothing; for R even the plan's tree_hang shape
 * (plan.h) makes one: receiver R-1, hung below the leaf-in-both of the
 * trees over R-1 receivers. The slowest sender goes there, the next ones
 * to the positions with a single child (F/2), the rest keep the default
 * order. The ring moves every chunk through every receiver: no position
 * relieves a slow sender, so the ring keeps its order (NULL). The root
 * sends F under every schedule and is never moved. */
#ifndef P2PBCAST_PLACEMENT_H
#define P2PBCAST_PLACEMENT_H

#include "plan.h"

#include <stdint.h>

/* A node is slow when it sends below this fraction of the median rate. */
#define PB_SLOW_FRACTION 0.6

/* Bytes a receiver at position r passes on per F bytes of the file, in
 * halves of F (0, 1 or 2) under the plan's trees (its shape: tree_hang). */
int pb_place_load(const struct pb_plan *p, int r);

/* The median of the known rates (rate[l] > 0) of nleaders leaders; 0 when
 * none is known. */
uint64_t pb_place_median(const uint64_t *rate, int nleaders);

/* The leaders whose rate is known and below PB_SLOW_FRACTION of the median,
 * slowest first, in slow[] (room for nleaders); the root among them if it
 * is slow. Returns their count. */
int pb_place_slow(const uint64_t *rate, int nleaders, int *slow);

/* The placement for plan p (its schedule and R = p->nrecv = nleaders - 1):
 * fills order[R] (receiver position -> leader) and *hang (the tree_hang to
 * set). Returns how many slow receivers it moved; 0 when none is slow or
 * the schedule is not the trees: order is then the default rotation and
 * *hang 0 (the caller leaves p->order NULL). rate[l]: leader l's send rate,
 * any unit, 0 unknown (counted as not slow). */
int pb_place(const struct pb_plan *p, int root_leader, int nleaders, const uint64_t *rate, int *order, int *hang);

/* Time to send the whole file, in units of F / rate, of the slowest sender
 * under plan p (its order and shape), with the root sending F: the largest
 * load/rate. For tests and the model. */
double pb_place_bottleneck(const struct pb_plan *p, int root_leader, int nleaders, const uint64_t *rate);

#endif
