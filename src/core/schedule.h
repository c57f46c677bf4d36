/* schedule.h — what a schedule provides, as transport.h is for transports.
 *
 * A schedule is one file (sched_ring.c, sched_tree.c, sched_shared.c,
 * sched_shared_tree.c): its
 * pure functions (who sends chunk k to whom, which peers a node talks to,
 * its chunk rule) beside its executor (the flow control the engine runs for
 * it). plan.c and engine.c dispatch through the table in schedule.c and
 * know no schedule by name. Adding a schedule: one file and one entry in
 * that table (and its number in enum pb_schedule).
 *
 * The executor's half works on struct pb_engine through the helpers of
 * engine_internal.h; it never calls back into another schedule. */
#ifndef P2PBCAST_SCHEDULE_H
#define P2PBCAST_SCHEDULE_H

#include "plan.h"

#include <stddef.h>
#include <stdint.h>

struct pb_engine;
struct pb_event;

struct pb_sched {
    const char *name;      /* pb_schedule_name */
    int selectable;        /* --schedule takes the name */
    const char *rule_name; /* -v: "the ring's rule" */

    /* ---- the pure schedule (receiver indices, PB_FROM_ROOT for the root) */
    /* Who sends chunk k to r (see pb_plan_sender). */
    int (*sender)(const struct pb_plan *p, int r, uint64_t k);
    /* Whom r sends chunk k to, at most 2 (see pb_plan_targets). */
    int (*targets)(const struct pb_plan *p, int r, uint64_t k, int out[2]);
    /* The leaders `leader` exchanges chunks, credits or notices with. */
    int (*partners)(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out);
    /* Every node reads: which member reads chunk k (NULL: the root). */
    int (*reader)(const struct pb_plan *p, uint64_t k);
    /* The default chunk size for F bytes to nrecv receivers at a
     * per-message cost of alpha_b bytes' worth (pb_plan_rule_chunk). */
    uint64_t (*default_chunk)(uint64_t file_size, int nrecv, double alpha_b);

    /* ---- the executor ---------------------------------------------------- */
    /* Every node reads SOURCE and the root receives chunks too. */
    int every_node_reads;
    /* After the engine's common state exists: this schedule's state, its
     * neighbours and slot classes. -1 with err set (else out of memory). */
    int (*setup)(struct pb_engine *e, char *err, size_t errlen);
    /* Hand out the first credits. */
    void (*start)(struct pb_engine *e);
    /* Receiver: the leader slot s is granted to (-1: never granted). */
    int (*slot_peer)(const struct pb_engine *e, uint32_t s);
    /* The leader chunk k must arrive from (-1: none, we read it). */
    int (*sender_leader)(const struct pb_engine *e, uint64_t k);
    /* Every event but PB_EV_ERROR, which the engine handles. */
    void (*handle)(struct pb_engine *e, const struct pb_event *ev);
    /* Read, send and notify what can be now. */
    void (*pump)(struct pb_engine *e);
    int (*finished)(const struct pb_engine *e);
    void (*waiting_for)(const struct pb_engine *e, char *out, size_t outlen);
    /* Release what setup took (also after a failed setup). */
    void (*free)(struct pb_engine *e);
};

/* The schedule of an enum pb_schedule value, the ring for unknown ones. */
const struct pb_sched *pb_sched_of(int schedule);

/* The table's entries, one per sched_*.c. */
extern const struct pb_sched pb_sched_ring, pb_sched_tree, pb_sched_shared, pb_sched_readtree;

/* For the partners functions: append leader to out[0..n) unless present;
 * returns the new count. */
int pb_plan_add_partner(int *out, int n, int leader);

#endif
