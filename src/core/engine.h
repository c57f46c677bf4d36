/* engine.h — the pipelined state machine of one node leader, for every
 * schedules of plan.h (engine.c drives them; each schedule's flow control is
 * in its sched_*.c: sched_ring.c, sched_tree.c, sched_shared.c).
 *
 * It moves chunks between a bounded pool of slots, the transport (which it
 * sees only through transport.h) and the node's file (through two callbacks),
 * following the schedule in plan.h. Memory is nslots * slot_size whatever the
 * file size.
 *
 * Ring flow control: a sender puts only into slots the receiver granted. A
 * receiver's slots are split in two classes: root slots (granted to the root
 * for scattered chunks) and ring slots (granted to the ring predecessor).
 * Deadlock freedom on the ring comes from bubble flow control: a chunk that
 * is already travelling the ring is passed on with one credit, but a chunk
 * entering the ring from the root is passed on only while the successor has
 * at least two free ring slots, so the ring never fills up completely and
 * the travelling chunks can always move.
 *
 * Two-tree flow control: a receiver's slots are split in two classes, one
 * per parent (its parent in tree 0 and in tree 1; the root for a tree's
 * root): slots [0, nslots/2) are granted to the tree-0 parent, the rest to
 * the tree-1 parent. A slot holding chunk k is queued for each child of k's
 * tree (per-child FIFOs, sent as that child's credits come) and granted
 * back to its parent only once it was written and every put to a child
 * completed. The root's read buffers work the same way with the two tree
 * roots as its children.
 * Deadlock freedom: a slot of tree t waits only for credits of tree-t slots
 * of the children in tree t (a child's slots granted to us belong to us as
 * its tree-t parent alone). So within one tree the waits-for graph follows
 * the tree's edges downwards and has no cycle; a leaf frees a slot as soon
 * as the chunk is written; by induction from the leaves up, every held slot
 * is freed in finite time, and the root's buffers with them. The two trees
 * share no slot class, so they cannot block each other; the root's buffers
 * are shared, but a buffer waiting for one tree root's credit is freed once
 * that tree moves, which it does on its own.
 *
 * Two-tree completion: a receiver sends DONE (PB_NOTIFY_TREE_DONE, with the
 * number of done nodes of its tree-0 subtree in the bits above the low
 * byte) to its tree-0 parent once it holds every chunk, every put it made
 * completed, and each of its tree-0 children said DONE. Tree 0 spans every
 * receiver, so the root is finished when the tree-0 root said DONE (count
 * R) and its own puts completed. Not both trees: a node interior in tree 1
 * waiting for its tree-1 children while they wait for their tree-0
 * children would make a cycle (with 2 receivers each is the other's
 * child). No FIN
 * is needed: once a node holds every chunk and its children are served,
 * nothing more is asked of it (a parent sends only chunks the child lacks,
 * so nothing can arrive after DONE but stray credits), and every connection
 * stays open until after the final vote, so a finished node's late credits
 * and notices still reach their peers. So the root talks only to the two
 * tree roots.
 *
 * Shared SOURCE, ring allgather (PB_SCHED_SHARED, sched_shared.c): every
 * node, the root included, is a ring member, reads its own chunks (k mod N)
 * from SOURCE into its read buffers (slots [0, root_slots), never granted)
 * and injects them into the ring; its other slots (at least two) are ring
 * slots granted to its predecessor. The bubble rule is the ring's: a
 * travelling chunk is passed on with one credit, an injected chunk only
 * while the successor has at least two free ring slots (we hold two of its
 * credits), and only when no travelling chunk waits here.
 * Deadlock freedom: only travelling chunks occupy ring slots (injected ones
 * wait in the reader's own buffers), and an injection takes a ring slot
 * only when another stays free at that node, so the ring slots are never
 * all occupied by chunks waiting to move: some node j always has a free
 * ring slot, whose credit its predecessor holds (or will receive). Walk
 * backwards from j: the first node with a travelling chunk waiting finds
 * the successor's credit (every node between has free ring slots, its
 * credits with its predecessor), so it moves; if no node has one waiting,
 * every node's ring slots are free and an injection can go. A chunk that
 * reached its last member is written and its slot granted back at once,
 * and a read buffer is free once its put completed, which needs no
 * progress from the receiver beyond the granted slot. So some chunk always
 * moves until every node holds every chunk.
 * Completion as on the ring: every other node says DONE to the root once it
 * holds every chunk and passed on what it must, and the root answers FIN
 * to all once it is done itself and heard every DONE.
 *
 * Shared SOURCE, the two trees fed by readers (PB_SCHED_READTREE,
 * sched_shared_tree.c): the two-tree flow control over every leader, the
 * root an ordinary member; the top of each tree fills read buffers from
 * SOURCE instead of slots granted to a parent. Its deadlock freedom and
 * completion (tree 0's top tells the root) are in that file. */
#ifndef P2PBCAST_ENGINE_H
#define P2PBCAST_ENGINE_H

#include "plan.h"
#include "transport.h"

#include <signal.h>

#include <stddef.h>
#include <stdint.h>

/* Notices. A receiver says DONE to the root once it holds and has passed on
 * every chunk; the root answers FIN to all once every receiver is done, so
 * a receiver keeps serving its links (credits, queued notices) until the
 * whole ring has finished. */
#define PB_NOTIFY_DONE 1u
#define PB_NOTIFY_FIN 2u
#define PB_NOTIFY_TREE_DONE 3u /* trees: subtree done; see above */

struct pb_engine_io {
    /* root: read len bytes of SOURCE at off */
    int (*read)(void *ctx, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
    /* every node: write len bytes of the copy at off */
    int (*write)(void *ctx, uint64_t off, const void *buf, size_t len, char *err, size_t errlen);
    void *ctx;
};

struct pb_engine_cfg {
    const struct pb_plan *plan;
    int self;                 /* our leader index */
    int root;                 /* the root's leader index */
    int nleaders;
    struct pb_transport *tp;
    unsigned char *pool;      /* nslots * slot_size bytes */
    size_t slot_size;         /* >= chunk_size + PB_TRAILER_SIZE */
    uint32_t nslots;
    uint32_t root_slots;      /* receivers: slots granted to the root */
    struct pb_engine_io io;
    const char *const *names; /* "host (rank N)" per leader */
    double timeout;           /* seconds without any event before failing */
    /* root only: called as bytes leave; may be NULL */
    void (*progress)(void *ctx, uint64_t bytes, int nodes_done);
    void *progress_ctx;
    /* --resume: chunks every node already holds (bitmap), not sent; NULL */
    const unsigned char *skip;
    /* stop when *cancel becomes nonzero; may be NULL */
    const volatile sig_atomic_t *cancel;
    /* testing only: flip one byte of this chunk when forwarding it (-1: off) */
    int64_t corrupt_chunk;
    /* where to keep each chunk's checksum as read or accepted (nchunks
     * entries), for the root's check of the other readers; NULL: not kept */
    uint64_t *hashes;
};

struct pb_engine;

/* Error classes, mapped onto p2pbcast_status by the caller. */
enum pb_engine_err {
    PB_EE_NONE = 0,
    PB_EE_PEER,     /* a peer failed or went away (usually a consequence) */
    PB_EE_DATA,     /* corrupt or unexpected data: checksum, protocol */
    PB_EE_SOURCE,   /* reading SOURCE */
    PB_EE_DEST,     /* writing DEST */
    PB_EE_TIMEOUT,  /* nothing moved for cfg.timeout seconds */
    PB_EE_CANCELED, /* *cfg.cancel became nonzero (a signal) */
    PB_EE_INTERNAL
};

/* Step interface (used by pb_engine_run and by the simulation tests). */
struct pb_engine *pb_engine_create(const struct pb_engine_cfg *cfg, char *err, size_t errlen);
void pb_engine_start(struct pb_engine *e);
void pb_engine_handle(struct pb_engine *e, const struct pb_event *ev);
void pb_engine_pump(struct pb_engine *e);
int pb_engine_finished(const struct pb_engine *e);
/* PB_EE_NONE while healthy; otherwise the class, with the message. */
int pb_engine_error(const struct pb_engine *e, const char **msg);
uint64_t pb_engine_manifest(const struct pb_engine *e);
/* The first peer whose link failed (dead, or gone after its own failure), -1. */
int pb_engine_lost_peer(const struct pb_engine *e);
/* Fold in a chunk that was not transferred (skipped by --resume). */
void pb_engine_manifest_add(struct pb_engine *e, uint64_t chunk, uint64_t hash);
/* Bytes of SOURCE this node read (the root; with PB_SCHED_SHARED every node). */
uint64_t pb_engine_read_bytes(const struct pb_engine *e);
/* Does this node's copy hold chunk k now (written and verified)? */
int pb_engine_holds(const struct pb_engine *e, uint64_t k);
/* A description of what the engine is waiting for (for timeouts). */
void pb_engine_waiting_for(const struct pb_engine *e, char *out, size_t outlen);
void pb_engine_destroy(struct pb_engine *e);

/* Poll the transport and step until finished or failed. Returns PB_EE_*. */
int pb_engine_run(struct pb_engine *e);

#endif
