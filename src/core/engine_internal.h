/* engine_internal.h — the engine's state and the helpers every schedule's
 * executor (sched_*.c, through schedule.h) shares with engine.c. The
 * schedules include this header; it knows none of them. Not part of any
 * public interface. */
#ifndef P2PBCAST_ENGINE_INTERNAL_H
#define P2PBCAST_ENGINE_INTERNAL_H

#include "digest.h"
#include "engine.h"
#include "schedule.h"

#include <stdlib.h>

enum slot_state {
    SLOT_IDLE = 0,  /* root: free read buffer; receiver: not granted (transient) */
    SLOT_GRANTED,   /* receiver: granted to its class peer, waiting for data */
    SLOT_BUSY       /* holds a chunk being sent or waiting to be forwarded */
};

/* Fixed-capacity FIFO of slot numbers. */
struct fifo {
    uint32_t *v;
    uint32_t cap, head, len;
};

static inline int fifo_init(struct fifo *f, uint32_t cap)
{
    f->v = calloc(cap ? cap : 1, sizeof *f->v);
    f->cap = cap;
    f->head = f->len = 0;
    return f->v ? 0 : -1;
}
static inline int fifo_push(struct fifo *f, uint32_t x)
{
    if (f->len == f->cap)
        return -1;
    f->v[(f->head + f->len++) % f->cap] = x;
    return 0;
}
static inline uint32_t fifo_pop(struct fifo *f)
{
    uint32_t x = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return x;
}

/* The two-tree executor's state (sched_tree.c). Children: the root's are
 * the two tree roots; a receiver's are its children in the one tree where
 * it is interior. */
struct tree_part {
    int parent[PB_TREES];        /* leaders; the root's leader for a tree root */
    uint32_t split;              /* receiver: slots [0, split) are parent[0]'s */
    int nchild;
    int child[2];                /* leaders */
    int ntarget[PB_TREES];       /* per tree: the children chunks of that tree go to */
    int target[PB_TREES][2];     /* indices into child[] */
    struct fifo credits[2];      /* per child: its slots granted to us */
    struct fifo outq[2];         /* per child: our slots waiting for its credit */
    unsigned char *sends_left;   /* per slot: puts still to complete */
    unsigned char child_done[2];
    int children_done;
    uint32_t subtree_done;       /* nodes of our tree-0 subtree done (us included when we are) */
    uint32_t busy;               /* slots holding a chunk not yet passed on to every child */
    int done;                    /* receiver: DONE sent; root: every child done */
};

/* The ring allgather's state (sched_shared.c); the ring fields of
 * struct pb_engine (pred, succ, succ_credits, transit, inject, have,
 * forwarding, notified, fin, free_bufs as read buffers) serve it too. */
struct shared_part {
    uint32_t read_slots;         /* slots [0, read_slots) are read buffers */
    uint64_t next_own;           /* next chunk of ours to read */
};

struct readtree_part; /* sched_shared_tree.c */

struct pb_engine {
    struct pb_engine_cfg c;
    const struct pb_plan *p;
    const struct pb_sched *ops; /* the plan's schedule (the ring with no receivers) */
    int recv;            /* our receiver index, -1 on the root */
    int pred, succ;      /* leader indices of ring neighbours, -1 if none */
    unsigned char *state;
    uint32_t *chunk_of;  /* chunk held by a busy slot */
    uint32_t *len_of;    /* bytes (payload + trailer) held by a busy slot */

    /* root */
    struct fifo free_bufs;
    struct fifo pending;     /* buffers read, waiting for a credit (in read order) */
    struct fifo *credits;    /* per receiver: its root slots granted to us */
    unsigned char *done_from;
    uint64_t next_read, sent_bytes;
    int nodes_done;

    /* receiver */
    struct fifo succ_credits;
    struct fifo transit;     /* chunks from the predecessor to pass on */
    struct fifo inject;      /* chunks from the root to pass on */
    unsigned char *have;     /* bitmap of chunks received */
    uint64_t received;
    uint64_t nskip;          /* chunks nobody needs (--resume) */
    uint32_t forwarding;     /* puts to the successor not yet sent */
    int notified;            /* DONE sent to the root */
    int fin;                 /* FIN received from the root (receiver), sent (root) */

    /* two trees (sched_tree.c) */
    struct tree_part tr;

    /* shared SOURCE: ring allgather (sched_shared.c) */
    struct shared_part sh;
    uint64_t read_bytes;     /* bytes of SOURCE this node read */

    /* shared SOURCE: the two trees fed by readers (sched_shared_tree.c) */
    struct readtree_part *rt;

    struct pb_manifest man;
    int more_losses;
    int lost_peer;       /* the first peer whose link failed, -1 */
    int err;
    char msg[512];
};

void pb_eng_fail(struct pb_engine *e, int cls, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *pb_eng_name(const struct pb_engine *e, int leader);
int pb_eng_skipped(const struct pb_engine *e, uint64_t k);
unsigned char *pb_eng_slot_mem(struct pb_engine *e, uint32_t s);
/* Receiver: the peer a slot is granted to, and granting it (again). */
int pb_eng_class_peer(const struct pb_engine *e, uint32_t s);
void pb_eng_grant(struct pb_engine *e, uint32_t s);
/* Receiver: grant every slot to the peer it belongs to (a start op). */
void pb_eng_grant_all(struct pb_engine *e);
/* For setup ops: every slot a free read buffer (the root); the map of
 * chunks held (a receiver). -1 when out of memory. */
int pb_eng_root_buffers(struct pb_engine *e);
int pb_eng_chunk_map(struct pb_engine *e);
void pb_eng_put(struct pb_engine *e, int peer, uint32_t dst_slot, uint32_t s);
/* Root: read chunk k into buffer b, seal it with its trailer, write our
 * copy. -1 after failing the engine. */
int pb_eng_root_load(struct pb_engine *e, uint32_t b, uint64_t k);
/* Receiver: check an arrival (granted slot, sender, trailer, checksum),
 * write it and record it. 0 with the chunk in *k; -1 after failing. */
int pb_eng_accept(struct pb_engine *e, const struct pb_event *ev, uint64_t *k);

#endif
