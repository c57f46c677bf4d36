/* model.h — a chunk-level discrete-event model of a p2pbcast run at scale.
 *
 * It drives the real schedule (plan.h: scatter targets, who forwards what,
 * ring successors, the default chunk size) through the same flow control as
 * engine.c (a bounded slot pool per node split into root slots and ring
 * slots, credits, bubble rule), on an idealised network:
 *
 *  - every node has an out-link and an in-link of rate B bytes/s, and a
 *    non-blocking switch in between;
 *  - a message of len bytes (chunk payload plus the 24-byte trailer) costs
 *    alpha + len/B on the sender's out-link and alpha + len/B on the
 *    receiver's in-link. Each link serves one message at a time, in order.
 *    The in-link may start a message as soon as the sender starts it
 *    (cut-through); when the in-link is still busy the message waits in the
 *    switch and the sender's out-link is not held up (the credits bound how
 *    much can wait). The sender's slot is free when its out-link is done; the
 *    chunk has arrived when the receiver's in-link is done. An isolated
 *    message therefore takes alpha + len/B end to end, not twice that;
 *  - a credit (slot grant) is a control message: it arrives alpha after the
 *    slot was freed and does not occupy either link;
 *  - with cpu_rate C > 0, every node's one thread spends len/C on each
 *    chunk (the root: read, hash, write; a receiver: hash, write, and over
 *    tcp the copy out of the socket) before the chunk can be sent on, in
 *    arrival order; with C = 0 that is instant (the network schedule
 *    alone). Disks are not modelled;
 *  - the predicted time is when the last receiver holds the last chunk; the
 *    final DONE/FIN notices (about 2 alpha) are not counted.
 *
 * Times are kept as integer picoseconds, so runs are exact and repeatable.
 * Cost is O(messages log nodes) with messages about nchunks * (N - 1). */
#ifndef P2PBCAST_MODEL_H
#define P2PBCAST_MODEL_H

#include <stddef.h>
#include <stdint.h>

struct pb_model_cfg {
    uint64_t file_size;   /* F, bytes */
    int nodes;            /* N, node leaders including the root's (>= 1) */
    double bandwidth;     /* B, bytes/s per link and direction (> 0) */
    double alpha;         /* per-message cost, seconds (>= 0) */
    uint64_t chunk_size;  /* 0: the schedule's rule at alpha*B, as p2pbcast picks it */
    uint32_t slots;       /* slots per node; 0: pb_plan_default_slots(chunk), >= 4 */
    uint32_t root_slots;  /* receivers' slots for the root; 0: slots / 4 as p2pbcast does */
    int check;            /* also check every arrival against pb_plan_sender (slower) */
    int schedule;         /* PB_SCHED_RING (0) or PB_SCHED_TREE (model_tree.c) */
    double cpu_rate;      /* C, bytes/s one node's thread hashes and writes; 0: not counted */
    /* One node sends at this rate, bytes/s (0: none; it still receives at
     * B). The trees place it as p2pbcast does (placement.h); in the ring it
     * is a receiver like any other (every receiver forwards alike). */
    double slow_rate;
};

struct pb_model_result {
    double time;              /* predicted seconds until every node has the file */
    double ideal;             /* F/B */
    double efficiency;        /* ideal / time (1 when nothing has to move) */
    double tail;              /* ring: (N-2) * (alpha + c/B), its drain; trees:
                                 (2 ceil(log2 (N-1)) + 1) * (alpha + c/B) */
    double per_message;       /* nchunks * alpha: what the root's link spends on latency */
    double estimate;          /* closed form: (F + trailers)/B + per_message + tail */
    double single_sender;     /* (N-1) * F/B */
    double scatter_allgather; /* 2 (N-1)/N * F/B */
    double binomial;          /* ceil(log2 N) * F/B */
    double root_busy;         /* fraction of time the root's out-link was busy */
    double first_done;        /* time the first receiver had every chunk */
    uint64_t chunk_size;
    uint64_t nchunks;
    uint64_t messages;        /* chunk transfers simulated */
    uint64_t events;          /* simulation events processed */
    uint32_t slots, root_slots, ring_slots; /* trees: tree-0 and tree-1 parents' */
    int default_chunk;        /* the chunk size was the schedule's rule's */
    const char *limit;        /* what binds: "link", "alpha", "tail" or "cpu" (pb_model_limit) */
};

/* The default chunk for cfg: the schedule's rule at alpha*B = cfg->alpha *
 * cfg->bandwidth (p2pbcast's own choice where it knows the link's rate). */
uint64_t pb_model_default_chunk(const struct pb_model_cfg *cfg);

/* Which limit binds a run: "link" where T is within 5 % of F/B, else the
 * largest loss against F/B: "cpu" (F/C - F/B, one thread slower than the
 * link), "alpha" (chunks*alpha) or "tail" (the pipeline's drain). */
const char *pb_model_limit(const struct pb_model_cfg *cfg, const struct pb_model_result *res);

/* One thread's rate of XXH3 and memcpy (hash and write) on this machine,
 * bytes/s, measured over ~0.1 s; copies: extra memcpy per byte (1 for
 * tcp's copy out of the socket). */
double pb_model_measure_cpu(int copies);

/* Run the model. 0 on success; -1 with a reason in err for bad parameters;
 * -2 with a description in err if the flow control deadlocked (it must not). */
int pb_model_run(const struct pb_model_cfg *cfg, struct pb_model_result *res, char *err,
                 size_t errlen);

/* "5GB/s" (decimal), "4.5GiB/s", "100Gbit/s", "100Gb/s", "1e9" (bytes/s) -> bytes/s.
 * 0 ok, -1 bad. */
int pb_model_parse_bandwidth(const char *s, double *out);

/* "2us", "2µs", "1.5ms", "500ns", "0", "1e-6" (seconds) -> seconds. 0 ok, -1 bad. */
int pb_model_parse_duration(const char *s, double *out);

#endif
