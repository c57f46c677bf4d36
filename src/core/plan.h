/* plan.h — chunking and the scatter-ring schedule. Pure functions, no I/O.
 *
 * Receivers are numbered 0..R-1 in ring order (the node leaders other than
 * the root's). Chunk k is scattered by the root to receiver k mod R, then
 * passed along the ring r -> r+1 until every receiver has it: the receiver
 * just before the scatter target does not forward it. */
#ifndef P2PBCAST_PLAN_H
#define P2PBCAST_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PB_FROM_ROOT (-1)

/* Bytes appended after every chunk's payload in a slot: its checksum and id. */
#define PB_TRAILER_SIZE 24u
#define PB_MIN_CHUNK (4u * 1024u)
#define PB_MAX_CHUNK (1024u * 1024u * 1024u)

struct pb_plan {
    uint64_t file_size;
    uint64_t chunk_size;
    uint64_t nchunks;
    int nrecv;          /* R: receivers, not counting the root */
};

/* 0 on success; -1 with a reason in err when the combination is impossible. */
int pb_plan_init(struct pb_plan *p, uint64_t file_size, uint64_t chunk_size, int nrecv,
                 char *err, size_t errlen);

uint64_t pb_plan_chunk_offset(const struct pb_plan *p, uint64_t k);
uint64_t pb_plan_chunk_len(const struct pb_plan *p, uint64_t k);

/* Receiver the root sends chunk k to; -1 when there are no receivers. */
int pb_plan_scatter_target(const struct pb_plan *p, uint64_t k);
int pb_plan_successor(const struct pb_plan *p, int r);
int pb_plan_predecessor(const struct pb_plan *p, int r);
/* Does receiver r pass chunk k on to its successor? */
bool pb_plan_forwards(const struct pb_plan *p, int r, uint64_t k);
/* Who sends chunk k to receiver r: PB_FROM_ROOT or the predecessor's index. */
int pb_plan_sender(const struct pb_plan *p, int r, uint64_t k);
/* How many hops chunk k has made when it reaches receiver r (0 = from root). */
int pb_plan_hops(const struct pb_plan *p, int r, uint64_t k);

/* Chunk size chosen from the file size and receiver count, balancing the
 * per-message cost against the ring's tail term (R-1)*c/B. A power of two
 * from 32 KiB to 4 MiB. */
uint64_t pb_plan_default_chunk(uint64_t file_size, int nrecv);

/* Receiver index <-> leader index, with the root's leader taken out of the
 * ring: receiver i is leader (root_leader + 1 + i) mod nleaders. */
int pb_plan_leader_of(int root_leader, int nleaders, int r);
int pb_plan_receiver_of(int root_leader, int nleaders, int leader);

#endif
