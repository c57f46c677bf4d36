/* phases.h — the state of one broadcast as it passes through its phases, and
 * the phases themselves (stage.c tells the story; each phase lives in the
 * file of its concern). Every phase runs on every rank and ends at an
 * agreement point, so all ranks stop at the same place with the same
 * status; it returns the decision's code (0: go on). */
#ifndef P2PBCAST_PHASES_H
#define P2PBCAST_PHASES_H

#include "agreement.h"
#include "alive.h"
#include "engine.h"
#include "p2pbcast.h"
#include "plan.h"
#include "progress.h"
#include "sink.h"
#include "source.h"
#include "transport.h"
#include "tcp_rails.h"
#include "dirtree_stage.h"

#include <limits.h>

/* Step 1: what the root found, broadcast to every rank. Fixed layout, same
 * binary on all ranks. */
struct pb_meta {
    int32_t code;
    uint32_t mode;
    uint64_t size;
    uint64_t chunk;
    int64_t mt_sec, mt_nsec;
    uint32_t slots;
    int32_t schedule; /* enum pb_schedule */
    char transport[16];
    int32_t negotiate; /* --transport auto: every node says what it can (negotiate.c) */
    uint8_t secret[16];
    uint8_t probe_nonce[8]; /* names the shared-DEST probes (visible to all) */
    char base[256]; /* SOURCE's file name, for messages */
    char msg[448];
};

struct stage {
    /* what the caller asked for */
    struct p2pbcast_opts o;
    const char *source, *dest;
    int quiet, verbose;
    double t0;
    struct pb_boot *boot;
    const struct pb_boot_info *bi;
    int root; /* this rank reads SOURCE */
    struct pb_agreement ag;
    struct pb_decision d; /* the last decision: why we stopped */
    struct pb_alive alive; /* the long local step under way (liveness.c) */

    /* 1. meta */
    struct pb_meta meta;
    struct pb_plan plan;
    int have_plan;
    struct pb_source src;
    /* 1b. --source-shared: every leader reads its share (plan: allgather) */
    int shared;
    /* 1c. the transport: this leader's verbs answer; why the root chose */
    struct pb_verbs_fit vfit;
    char tp_why[256];
    char links[160]; /* what the transport runs on here, for --check (tcp: the rails) */
    /* 1d. placement (rates.c): the plan's order, and on the root the line
     * naming the slow senders and their places ("" if none) */
    int *order;
    char placement[600];
    /* 1d. over tcp between machines, the rails, chosen with the send rates
     * (rates.c) and handed to the transport (have_rails 0: it chooses) */
    struct pb_tcp_rail_set rails;
    int have_rails;
    /* 2. where this node writes */
    char dpath[PATH_MAX];
    char probe[PATH_MAX]; /* our shared-DEST probe file, removed at the end */
    int writes;           /* this node writes DEST (not a sharer of another's) */
    int probes_unconfirmed; /* the root could not confirm who shares DEST (same on every rank) */
    int sharers;
    /* 3. the temporary copy */
    struct pb_sink sink;
    struct pb_sink_want want;
    int sink_open;
    /* 3b. --resume: chunks every node holds */
    unsigned char *skip;
    uint64_t nskip;
    /* 4. the slot pool and the connections */
    unsigned char *pool;
    size_t pool_len, slot_size;
    int pool_placed; /* allocated by topo.c, near a device */
    int *peers;
    int npeers;
    struct pb_transport *tp;
    int pool_in_use; /* a closed transport left requests into the pool */
    /* 5. the transfer */
    struct pb_engine *eng;
    struct pb_progress prog;
    /* --check (check.c) */
    uint64_t dest_free;
    int probes_answered;
    /* a directory SOURCE (dirtree_stage.c) */
    struct pb_dtree_job dtree;
};

int pb_phase_meta(struct stage *st);       /* meta.c */
int pb_phase_source_shared(struct stage *st); /* source_shared.c */
int pb_phase_transport(struct stage *st);  /* negotiate.c */
int pb_phase_rates(struct stage *st);      /* rates.c */
int pb_phase_dest(struct stage *st);       /* dest.c */
int pb_phase_open_sink(struct stage *st);  /* dest.c */
int pb_phase_resume(struct stage *st);     /* resume.c */
int pb_phase_connect(struct stage *st);    /* connect.c */
int pb_phase_transfer(struct stage *st);   /* transfer.c */
int pb_phase_commit(struct stage *st);     /* dest.c */
/* --check, instead of the sink, resume, transfer and commit (check.c) */
int pb_phase_check_space(struct stage *st);
int pb_phase_probe_links(struct stage *st);
/* --check: the per-node table at the root (and --json); collective over
 * the leaders, after the phases, whatever their outcome. */
void pb_check_report(struct stage *st, int status);

/* source_shared.c: bytes of SOURCE all nodes read (the plan's shares),
 * how many nodes read; with say, one -v line per node (root). */
uint64_t pb_source_shared_report(const struct stage *st, int *readers, int say);

/* source_verify.c, root with --source-shared: re-read a random sample of
 * the chunks other nodes read and compare each with the checksum received
 * (hashes: one per chunk), after the transfer. 0 all equal; -1 with err
 * naming the node, the chunk and its offset. Where the root reads no chunk
 * of its own, pb_source_verify_early (before the engine runs) draws the
 * sample and reads it in a thread during the transfer (NULL: not here, or
 * no memory or thread for it: after the transfer then); pb_source_verify
 * then waits for it and compares, taking the job; pb_source_verify_drop
 * ends it unused (the transfer failed). */
struct pb_sample_job;
struct pb_sample_job *pb_source_verify_early(struct stage *st);
void pb_source_verify_drop(struct pb_sample_job *job);
int pb_source_verify(struct stage *st, struct pb_sample_job *early, const uint64_t *hashes, char *err, size_t errlen);
/* meta.c: the default chunk for this transport and schedule (the root). */
uint64_t pb_meta_choose_chunk(const struct stage *st, uint64_t size, const char *transport, int schedule);
/* The pool's slot for a chunk: payload, trailer, rounded up to 64 bytes. */
static inline size_t pb_slot_size(uint64_t chunk)
{
    return (size_t)((chunk + PB_TRAILER_SIZE + 63) / 64 * 64);
}

/* resume.c: after a failure with --resume, keep what this node holds. */
void pb_resume_keep(struct stage *st);
/* connect.c: close the connections (at once when a node fails, so that
 * its neighbours notice); release them and the slot pool. */
void pb_connect_close(struct stage *st);
void pb_connect_release(struct stage *st);
/* connect.c: what every transport set-up of this leader is given (the
 * bootstrap's exchanges, names, options, secret), without partners or pool;
 * also sets the exchanges' timeout. */
void pb_stage_transport_cfg(struct stage *st, struct pb_transport_cfg *tc);

/* liveness.c: the ticks of the long local step about to start, wired to
 * the bootstrap's heartbeat; test_delay_us names the test hook that slows
 * each tick on the ranks it names (NULL: none). */
struct pb_alive *pb_stage_alive(struct stage *st, const char *test_delay_us);
/* liveness.c: run step(ctx), a step that cannot tick (one long system
 * call), in a thread while this thread ticks; returns step's value. */
int pb_stage_run_alive(struct stage *st, int (*step)(void *ctx), void *ctx);
/* test_hooks.c: the P2PBCAST_TEST_* variable `name` as a number on this
 * rank ("VALUE" everywhere, "VALUE@R1,R2" on those ranks), else dflt. */
long pb_test_hook(const struct stage *st, const char *name, long dflt);

/* An empty vote, for the phases that only ask "everyone still there?". */
static inline int pb_agree_ok(struct stage *st)
{
    struct pb_vote mine = { 0 };
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

#endif
