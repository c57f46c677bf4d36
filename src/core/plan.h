/* plan.h — chunking and the schedules' pure functions, no I/O. plan.c holds
 * what they share; each schedule's own functions are in its sched_*.c
 * (schedule.h).
 *
 * Receivers are numbered 0..R-1 (the node leaders other than the root's).
 *
 * Ring (PB_SCHED_RING, sched_ring.c): chunk k is scattered by the root to receiver k mod
 * R, then passed along the ring r -> r+1 until every receiver has it: the
 * receiver just before the scatter target does not forward it.
 *
 * Two trees (PB_SCHED_TREE, sched_tree.c): chunk k travels binary tree
 * k mod 2; the root sends it to that tree's root, every interior node passes
 * it on to its children in that tree. No receiver is interior in both trees,
 * so every node sends at most F bytes and talks to at most 4 partners. */
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

enum pb_schedule { PB_SCHED_RING = 0, PB_SCHED_TREE = 1, PB_SCHED_SHARED = 2, PB_SCHED_READTREE = 3 };

struct pb_plan {
    uint64_t file_size;
    uint64_t chunk_size;
    uint64_t nchunks;
    int nrecv;          /* R: receivers, not counting the root */
    int schedule;       /* enum pb_schedule; pb_plan_init sets the ring */
    /* Placement (placement.h): receiver r is leader order[r]; NULL: the
     * rotation by the root (pb_plan_leader_of). Owned by the caller. */
    const int *order;
    /* Trees with R even: built over receivers 0..R-2 (R-1 odd, so receiver
     * R-2 is a leaf in both), receiver R-1 hung below R-2 as its only
     * child in both trees (sched_tree.c). Set by placement only. */
    int tree_hang;
    /* The reader-fed trees (PB_SCHED_READTREE): pairs of trees, G; 0 or 1
     * for one pair. pb_plan_init sets 1; pb_readtree_pairs bounds it. */
    int pairs;
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
/* Who sends chunk k to receiver r: PB_FROM_ROOT or a receiver index (the
 * ring predecessor, or r's parent in tree k mod 2). The allgather counts
 * members instead: pb_shared_sender. */
int pb_plan_sender(const struct pb_plan *p, int r, uint64_t k);
/* The receivers that r (PB_FROM_ROOT: the root) sends chunk k to, in out[]
 * (at most 2); returns their count. The allgather: member r's successor
 * while the chunk travels on. */
int pb_plan_targets(const struct pb_plan *p, int r, uint64_t k, int out[2]);
/* The leaders that `leader` exchanges chunks or credits with under the
 * plan's schedule, in out[] (room for max(R, 4) entries, no duplicates);
 * returns their count. Ring: the root talks to every receiver. Trees: the
 * root to both tree roots, a receiver to its two parents and its children.
 * Allgather: the root to everyone, a member to its ring neighbours and the
 * root. */
int pb_plan_partners(const struct pb_plan *p, int root_leader, int nleaders, int leader, int *out);
/* How many hops chunk k has made when it reaches receiver r (0 = from root). */
int pb_plan_hops(const struct pb_plan *p, int r, uint64_t k);

/* ---- the chunk rule's cost model ---------------------------------------
 * Besides its bytes every chunk costs a per-message time alpha (the
 * transport's software, a credit's round, syscalls or work requests); in
 * bytes' worth of wire time at the link rate B that is alpha*B. The chunk
 * rules balance (F/c) alpha*B against the pipeline's tail, hops * c. */
struct pb_link_cost {
    double alpha;          /* per-message cost, seconds */
    double rate;           /* the link's rate B, bytes/s; 0 unknown */
    int tcp_between_hosts; /* cap a chunk's wire time (pb_plan_tcp_chunk_cap) */
    const char *what;      /* -v: where alpha and B come from (may be NULL) */
};
/* alpha*B where the rate is unknown: 16 KiB, 2-20 us at 1-12 GB/s. */
#define PB_ALPHA_B_UNKNOWN 16384.0
/* alpha*B in bytes; PB_ALPHA_B_UNKNOWN for NULL or an unknown rate. */
double pb_plan_alpha_b(const struct pb_link_cost *lc);
/* The largest default chunk: the largest power of two of at most
 * 64 alpha*B (per-message cost within ~1.6 %), within [4 MiB, 64 MiB]. */
#define PB_CEIL_MIN (4ull << 20)
#define PB_CEIL_MAX (64ull << 20)
uint64_t pb_plan_chunk_ceiling(double alpha_b);
/* sqrt(F alpha*B / hops), the chunk that minimises (F/c) alpha*B + hops*c,
 * rounded to the nearest power of two (log scale) within [32 KiB,
 * pb_plan_chunk_ceiling(alpha_b)]. */
uint64_t pb_plan_rule_chunk(uint64_t file_size, double hops, double alpha_b);
/* Default slots per node for a chunk size: 8, fewer above 16 MiB chunks so
 * that the pool (slots x chunk) stays within 128 MiB, never below 4. */
#define PB_DEFAULT_SLOTS 8u
#define PB_POOL_BUDGET (128ull << 20)
uint32_t pb_plan_default_slots(uint64_t chunk);
/* Slots per node over `rails` networks at once: each rail keeps the window
 * of nslots (a chunk's trip and its credit's take as long on either, and
 * they now come twice as fast: 8 slots over two 150 Mbit/s rails held the
 * ring at 0.89 of their sum on the bed, 16 at 0.98), as far as the pool
 * stays within PB_POOL_BUDGET; never fewer than nslots, at most 4096. */
uint32_t pb_plan_rail_slots(uint32_t nslots, int rails, uint64_t chunk);
/* The chunk over `rails` tcp networks at once: chunk / rails, a power of two
 * no smaller than 32 KiB (and never larger than chunk). Each chunk goes
 * whole to one rail, so the split between rails is as fine as a chunk: on
 * the bed two 150 Mbit/s rails ran the ring 2-3 % faster with 32 KiB
 * chunks than with 64 KiB (8 hosts, three runs each; one rail: equal). */
uint64_t pb_plan_rail_chunk(uint64_t chunk, int rails);

/* The ring's chunk: its tail is R-1 hops (pb_plan_rule_chunk). */
uint64_t pb_plan_default_chunk(uint64_t file_size, int nrecv, double alpha_b);

/* ---- two trees (sched_tree.c) ----------------------------------------- */
#define PB_TREES 2
/* Tree chunk k travels: k mod 2. */
static inline int pb_tree_of_chunk(uint64_t k) { return (int)(k & 1); }
/* Receiver at the top of tree t (the root sends it that tree's chunks). */
int pb_tree_root(int nrecv, int t);
/* Parent of receiver r in tree t: a receiver index, or PB_FROM_ROOT. */
int pb_tree_parent(int nrecv, int t, int r);
/* Children of receiver r (PB_FROM_ROOT: the root) in tree t; returns count. */
int pb_tree_children(int nrecv, int t, int r, int out[2]);
/* Hops from the root to receiver r in tree t (the tree root is 1 hop). */
int pb_tree_depth(int nrecv, int t, int r);
/* The same for the plan's trees: its shape (tree_hang) in receiver indices. */
int pb_plan_tree_root(const struct pb_plan *p, int t);
int pb_plan_tree_parent(const struct pb_plan *p, int t, int r);
int pb_plan_tree_children(const struct pb_plan *p, int t, int r, int out[2]);
int pb_plan_tree_depth(const struct pb_plan *p, int t, int r);
/* ceil(log2 n) for n >= 1 (0 for n <= 1). */
int pb_ceil_log2(uint64_t n);

/* The chunk size for the two trees: per-message cost (F/c)*alpha against
 * the pipeline's fill 2*ceil(log2 R)*c/B (pb_plan_rule_chunk). */
uint64_t pb_plan_default_chunk_tree(uint64_t file_size, int nrecv, double alpha_b);

/* Over tcp between hosts a node's downlink carries two streams (the root's
 * scatter and the ring, or a node's two tree parents) and every burst of one
 * chunk delays the other: keep a chunk's wire time at the link rate within
 * about 4 ms. The largest power of two of at most link_mbit * 4 ms, within
 * [64 KiB, PB_CEIL_MAX]; 64 KiB when the rate is unknown (0). */
uint64_t pb_plan_tcp_chunk_cap(uint64_t link_mbit);

/* The default chunk size: the schedule's rule from F, R and alpha*B
 * (lc, NULL: alpha*B unknown), capped by pb_plan_tcp_chunk_cap when
 * lc->tcp_between_hosts. why (may be NULL): one line for -v, with the
 * alpha*B assumed. */
uint64_t pb_plan_choose_chunk(uint64_t file_size, int nrecv, int schedule, const struct pb_link_cost *lc, char *why,
                              size_t whylen);

/* "ring", "tree", "allgather" (schedule.c's table); pb_schedule_parse takes
 * the names --schedule offers and "auto" (returns -2); -1 for anything
 * else. */
const char *pb_schedule_name(int schedule);
int pb_schedule_parse(const char *s);

/* Which schedule `auto` takes for F bytes to nleaders nodes over links of
 * cost lc (NULL: alpha*B unknown), each schedule with the chunk
 * pb_plan_choose_chunk gives it; why (may be NULL): one line for -v. */
int pb_schedule_auto(uint64_t file_size, int nleaders, const struct pb_link_cost *lc, char *why, size_t whylen);

/* ---- shared SOURCE: ring allgather (sched_shared.c) -------------------
 * Every node sees SOURCE (--source-shared): the N = nrecv + 1 leaders form
 * one ring, the root an ordinary member. Members are leader indices;
 * member m's successor is (m + 1) mod N. Chunk k is read by member k mod N
 * (its reader), injected into the ring there and passed on N-1 hops, so
 * every member holds every chunk once; each node reads 1/N of the file and
 * receives (N-1)/N of it. */
#define PB_SELF_READ (-2)
static inline int pb_shared_members(const struct pb_plan *p) { return p->nrecv + 1; }
int pb_shared_reader(const struct pb_plan *p, uint64_t k);
int pb_shared_successor(const struct pb_plan *p, int m);
int pb_shared_predecessor(const struct pb_plan *p, int m);
/* Hops chunk k has made when it reaches member m (0 at its reader). */
int pb_shared_hops(const struct pb_plan *p, int m, uint64_t k);
/* Does member m pass chunk k on to its successor? */
bool pb_shared_forwards(const struct pb_plan *p, int m, uint64_t k);
/* Who gives member m chunk k: PB_SELF_READ (m reads it) or a member. */
int pb_shared_sender(const struct pb_plan *p, int m, uint64_t k);
/* Bytes of SOURCE member m reads, chunks set in skip (may be NULL) left out
 * (any schedule where every node reads: pb_plan_reader). */
uint64_t pb_shared_read_bytes(const struct pb_plan *p, int m, const unsigned char *skip);
/* The root's check of the other readers (issue 18): after the transfer it
 * re-reads a random sample of their chunks and compares each with the
 * checksum it received. Bytes it re-reads at most: F/32 within [64 MiB,
 * 1 GiB] (and at least one chunk per reader, whatever that costs); the cap
 * keeps the other nodes' wait for the vote short of their deadline. */
#define PB_SAMPLE_MIN_BYTES (64ull << 20)
#define PB_SAMPLE_MAX_BYTES (1ull << 30)
uint64_t pb_shared_sample_budget(uint64_t file_size);
/* Draw the sample: chunks read by members other than root (pb_plan_reader:
 * the allgather or the reader-fed trees), none set in skip (may be NULL).
 * Where all of them fit in budget bytes, all of them; else from each of
 * the n other readers with m such chunks, min(m, max(1, budget / (c n)))
 * of them, uniformly without replacement (rnd: 64 random bits per call).
 * Writes the chunk numbers in increasing order to out (room for nchunks)
 * and returns how many. */
uint64_t pb_shared_sample(const struct pb_plan *p, int root, const unsigned char *skip, uint64_t budget,
                          uint64_t (*rnd)(void *ctx), void *ctx, uint64_t *out);
/* ---- shared SOURCE: the trees fed by readers (sched_shared_tree.c) -----
 * The N = nrecv + 1 leaders are the members of G pairs of trees (member m
 * is leader m, the root an ordinary member). Pair g (0 <= g < G) carries
 * the chunks k with (k / 2) mod G == g, its tree t the ones with k mod 2
 * == t: tree 2g + t of the 2G. Pair g is the two trees of sched_tree.c
 * (pb_tree_* over N positions) with every member shifted by 2g: member m
 * stands where member (m - 2g) mod N stands in pair 0. The member at the
 * top of a tree reads that tree's chunks from SOURCE instead of receiving
 * them; everyone else receives each chunk from its parent in the chunk's
 * tree. The tops of the 2G trees are members 2^b - 2 .. 2^b - 3 + 2G mod N
 * (2^b the largest power of two <= N): 2G distinct readers while 2G <= N.
 * Per node (F bytes, every chunk read once):
 *
 *   member                     reads     receives        sends
 *   top of tree i              F/2G      F - F/2G        F/2G per child in tree i
 *   interior in tree i         0         F               F/2G per child in tree i
 *   leaf in every tree         0         F               0
 *
 * No member is interior in both trees of one pair (sched_tree.c), so it
 * sends at most twice F/2G per pair: F in all (plus one chunk where the
 * chunks do not split evenly over the 2G trees). Partners: two parents
 * and at most two children per pair, 4G, and the root and tree 0's top
 * each other. G = 1 is the two trees fed by their two tops. Tree 0's top
 * learns that every node is done (the DONE counts up tree 0) and tells
 * the root. */
#define PB_READTREE_MAX_PAIRS 4
/* G for the plan: p->pairs within [1, PB_READTREE_MAX_PAIRS] and 2G <= N
 * (so that the 2G readers differ). */
int pb_readtree_pairs(const struct pb_plan *p);
/* Which of the 2G trees carries chunk k: 2 ((k / 2) mod G) + k mod 2. */
static inline int pb_readtree_tree_of(uint64_t k, int G) { return 2 * (int)((k / 2) % (uint64_t)G) + (int)(k & 1); }
/* Member m's parent in tree i (PB_SELF_READ at its top), its children
 * (returns their count), its depth (the top: 0), and the top itself. */
int pb_readtree_top(const struct pb_plan *p, int i);
int pb_readtree_parent(const struct pb_plan *p, int i, int m);
int pb_readtree_children(const struct pb_plan *p, int i, int m, int out[2]);
int pb_readtree_depth(const struct pb_plan *p, int i, int m);
/* The member that reads chunk k: the top of its tree. */
int pb_readtree_reader(const struct pb_plan *p, uint64_t k);
/* Bytes member m reads, sends and receives, chunks in skip (may be NULL)
 * left out (the table above; tests and -v). */
void pb_readtree_bytes(const struct pb_plan *p, int m, const unsigned char *skip, uint64_t *read, uint64_t *sent,
                       uint64_t *received);
/* The pairs the reader-fed trees take for nleaders nodes: enough readers
 * that 2G rho >= B (rho: SOURCE's read rate per client, B: the link rate,
 * bytes/s), within PB_READTREE_MAX_PAIRS and 2G <= nleaders; 1 where
 * either rate is unknown (0). why (may be NULL): one line for -v. */
int pb_readtree_choose_pairs(int nleaders, double read_rate, double link_rate, char *why, size_t whylen);
/* Slots per node for G pairs: every one of the 2G trees has its own
 * (sched_shared_tree.c), 4 per tree as the two trees have by default, as
 * far as the pool stays within PB_POOL_BUDGET; never fewer than nslots.
 * The executor needs 2G at least; the root takes fewer pairs rather than
 * fewer than 2 per tree. */
uint32_t pb_readtree_slots(uint32_t nslots, int G, uint64_t chunk);

/* --source-shared=auto: the root only (-1), the ring allgather
 * (PB_SCHED_SHARED) or the reader-fed trees (PB_SCHED_READTREE) for F
 * bytes to nleaders nodes, from SOURCE's read rate at the root and the link
 * rate in bytes/s (0: unknown); root_schedule is the plan's root-fed
 * schedule; only (0: either) limits the choice to that one parallel mode
 * (an explicit --schedule); root_leader: the root's leader index (does it
 * read chunks of its own?). pairs (may be NULL): the G the reader-fed
 * trees take (pb_readtree_choose_pairs). why: one line for -v with the
 * predictions. */
int pb_shared_choose(uint64_t file_size, int nleaders, int root_leader, uint64_t chunk, double read_rate,
                     double link_rate, int root_schedule, int only, int *pairs, char *why, size_t whylen);
/* Does the root (leader root_leader) top one of the G pairs' trees over
 * nleaders nodes, reading chunks of its own? (Else it reads its sample of
 * the other readers' chunks during the transfer: source_verify.c.) */
int pb_readtree_root_reads(int nleaders, int G, int root_leader);

/* Which member reads chunk k under the plan's schedule: root (a leader
 * index) for the root-fed schedules. */
int pb_plan_reader(const struct pb_plan *p, int root, uint64_t k);

/* Receiver index <-> leader index: receiver i is leader p->order[i] when
 * the plan has an order (placement.h), else the root's leader taken out of
 * the ring: leader (root_leader + 1 + i) mod nleaders. */
int pb_plan_leader_of(const struct pb_plan *p, int root_leader, int nleaders, int r);
int pb_plan_receiver_of(const struct pb_plan *p, int root_leader, int nleaders, int leader);

#endif
