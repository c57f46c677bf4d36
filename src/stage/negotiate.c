/* negotiate.c — phase 1c: the transport every node can use.
 *
 * With --transport auto every node leader looks at its own RDMA device as
 * the verbs transport would (an active port, a usable GID for RoCE, the
 * pinned memory this schedule registers under its memlock limit) and
 * tells the root; the root takes verbs only when every node can, else tcp,
 * with one warning line naming each node that cannot and why. An explicit
 * --transport verbs never falls back: every node that cannot fails the job
 * with status 5 and its reason. Over verbs the root also caps the chunk so
 * that a slot fits in one message of the smallest port (max_msg_sz). */
#include "bootstrap.h"
#include "phases.h"
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The root's choice, to every rank. */
struct pb_choice {
    char transport[16];
    uint64_t chunk;
    uint32_t rails; /* verbs: the rails every node opens, the fewest any node has */
    uint32_t pad;
};

/* The largest chunk whose slot (chunk + trailer, rounded up to 64 bytes as
 * the pool cuts it) fits in one message of max_msg bytes, in whole 4 KiB;
 * UINT64_MAX when max_msg is unknown (0), 0 when no chunk fits. */
static uint64_t chunk_cap(uint64_t max_msg)
{
    if (max_msg == 0)
        return UINT64_MAX;
    if (max_msg < PB_MIN_CHUNK + 64)
        return 0;
    uint64_t c = (max_msg - 64) / 4096 * 4096; /* chunk + trailer + rounding <= chunk + 64 */
    return c > PB_MAX_CHUNK ? PB_MAX_CHUNK : c;
}

/* This leader's answer: can it run verbs for this plan? */
static void probe_verbs(const struct stage *st, struct pb_verbs_fit *fit)
{
    const struct pb_boot_info *bi = st->bi;
    int *peers = malloc(((size_t)bi->nleaders + 4) * sizeof *peers);
    int npeers = peers ? pb_plan_partners(&st->plan, bi->root_leader, bi->nleaders, bi->leader, peers) : 0;
    free(peers);
    struct pb_verbs_want w = {
        .rdma_dev = st->o.rdma_dev, .gid_index = st->o.gid_index,
        .slot_size = pb_slot_size(st->meta.chunk), .nslots = st->meta.slots,
        .npeers = npeers,
    };
    if (pb_verbs_probe(&w, fit) && chunk_cap(fit->max_msg) == 0) {
        fit->ok = 0;
        snprintf(fit->why, sizeof fit->why, "%s port %u takes messages of at most %llu bytes: too small for a chunk",
                 fit->dev, fit->port, (unsigned long long)fit->max_msg);
    }
    if (st->verbose && fit->ok)
        fprintf(stderr, "p2pbcast: %s: verbs usable on %u rail%s from %s:%u%s; active ports: %s (pinned memory "
                "needed %llu bytes)\n", bi->names[bi->leader], fit->nrails, fit->nrails == 1 ? "" : "s", fit->dev,
                fit->port, fit->roce ? " (RoCE)" : "", fit->rails, (unsigned long long)fit->pin_need);
    else if (st->verbose)
        fprintf(stderr, "p2pbcast: %s: verbs not usable: %s\n", bi->names[bi->leader], fit->why);
}

/* Root, auto: verbs when every node can, else tcp; one warning line names
 * each node that cannot (unless none can: then verbs was never in reach). */
static void root_choose_transport(struct stage *st, const struct pb_verbs_fit *fits, struct pb_choice *c)
{
    const struct pb_boot_info *bi = st->bi;
    int nok = 0;
    for (int i = 0; i < bi->nleaders; i++)
        nok += fits[i].ok != 0;
    if (nok == bi->nleaders) {
        snprintf(st->tp_why, sizeof st->tp_why, "auto: every node can use verbs");
        return;
    }
    snprintf(c->transport, sizeof c->transport, "tcp");
    if (!st->o.chunk_size && strcmp(st->meta.transport, "tcp"))
        c->chunk = pb_meta_choose_chunk(st, st->meta.size, "tcp", st->plan.schedule);
    snprintf(st->tp_why, sizeof st->tp_why, "auto: verbs cannot be used on %d of %d nodes", bi->nleaders - nok,
             bi->nleaders);
    if (nok == 0) {
        snprintf(st->tp_why, sizeof st->tp_why, "auto: no node can use verbs: %.200s", fits[bi->root_leader].why);
        if (st->verbose)
            fprintf(stderr, "p2pbcast: transport auto: tcp (no node can use verbs: %s)\n", fits[bi->root_leader].why);
        return;
    }
    fprintf(stderr, "p2pbcast: warning: transport auto: tcp for all %d nodes, as verbs cannot be used on %d:",
            bi->nleaders, bi->nleaders - nok);
    for (int i = 0, sep = 0; i < bi->nleaders; i++)
        if (!fits[i].ok)
            fprintf(stderr, "%s %s: %s", sep++ ? ";" : "", bi->names[i], fits[i].why);
    fputc('\n', stderr);
}

/* Root, verbs chosen: every node stripes over as many rails as the node
 * with the fewest has (rail k of one node talks to rail k of the others). */
static void root_count_rails(const struct stage *st, const struct pb_verbs_fit *fits, struct pb_choice *c)
{
    const struct pb_boot_info *bi = st->bi;
    c->rails = 0;
    for (int i = 0; i < bi->nleaders; i++)
        if (fits[i].nrails && (c->rails == 0 || fits[i].nrails < c->rails))
            c->rails = fits[i].nrails;
    if (st->verbose)
        fprintf(stderr, "p2pbcast: verbs: %u rail%s per node (the fewest any node has of its fastest kind or "
                "named)\n", c->rails, c->rails == 1 ? "" : "s");
}

/* Root, verbs chosen: a slot must fit in one message of every port. */
static void root_cap_chunk(const struct stage *st, const struct pb_verbs_fit *fits, struct pb_choice *c)
{
    const struct pb_boot_info *bi = st->bi;
    int low = -1;
    for (int i = 0; i < bi->nleaders; i++)
        if (fits[i].max_msg && (low < 0 || fits[i].max_msg < fits[low].max_msg))
            low = i;
    uint64_t cap = low < 0 ? UINT64_MAX : chunk_cap(fits[low].max_msg);
    if (c->chunk <= cap)
        return;
    if (st->o.chunk_size || st->verbose)
        fprintf(stderr, "p2pbcast: %schunk size %llu capped at %llu bytes: %s port %s:%u takes messages of at most "
                "%llu bytes (max_msg_sz)\n", st->o.chunk_size ? "warning: " : "", (unsigned long long)c->chunk,
                (unsigned long long)cap, bi->names[low], fits[low].dev, fits[low].port,
                (unsigned long long)fits[low].max_msg);
    c->chunk = cap;
}

/* Every rank: the transport and chunk the root chose; a new chunk size
 * means a new plan (same schedule). */
static int apply_choice(struct stage *st, const struct pb_choice *c)
{
    pb_copy_str(st->meta.transport, sizeof st->meta.transport, c->transport);
    st->vfit.nrails = c->rails; /* what this node opens: the agreed count */
    if (c->chunk == st->meta.chunk)
        return 0;
    int schedule = st->plan.schedule, pairs = st->plan.pairs;
    char err[256];
    st->meta.chunk = c->chunk;
    if (pb_plan_init(&st->plan, st->meta.size, st->meta.chunk, st->bi->nleaders - 1, err, sizeof err) < 0) {
        st->d.code = P2PBCAST_ERR_INTERNAL;
        pb_copy_str(st->d.msg, sizeof st->d.msg, err);
        return st->d.code;
    }
    st->plan.schedule = schedule;
    st->plan.pairs = pairs;
    if (!st->o.slots) /* the pool within its budget for the new chunk; the reader-fed trees' slot classes */
        st->meta.slots = schedule == PB_SCHED_READTREE
                             ? pb_readtree_slots(pb_plan_default_slots(c->chunk), pb_readtree_pairs(&st->plan), c->chunk)
                             : pb_plan_default_slots(c->chunk);
    return 0;
}

int pb_phase_transport(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    int is_auto = st->meta.negotiate;
    snprintf(st->tp_why, sizeof st->tp_why, "--transport %s", st->meta.transport);
    if (!is_auto && strcmp(st->meta.transport, "verbs"))
        return 0; /* tcp or mpi, asked for by name */
    struct pb_verbs_fit fit = { 0 };
    if (bi->is_leader)
        probe_verbs(st, &fit);
    st->vfit = fit;
    int rc;
    if (!is_auto) { /* every node that cannot is named, status 5 */
        struct pb_vote mine = { 0 };
        if (bi->is_leader && !fit.ok)
            pb_vote_set(&mine, P2PBCAST_ERR_TRANSPORT, 0, fit.why);
        if ((rc = pb_agree(&st->ag, &mine, &st->d, 0)) != 0)
            return rc;
    }
    struct pb_verbs_fit *fits = st->root ? calloc((size_t)bi->nleaders, sizeof *fits) : NULL;
    struct pb_vote mine = { 0 };
    if (st->root && !fits)
        pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, "out of memory for the nodes' transport answers");
    rc = bi->is_leader ? pb_agree_gather(&st->ag, &fit, fits, sizeof fit) : 0;
    if (rc == 2) {
        free(fits);
        return pb_agree_interrupted(&st->ag, &st->d);
    }
    if (rc != 0)
        pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, "MPI gather of the transport answers failed");
    struct pb_choice c = { .chunk = st->meta.chunk };
    if (st->root && fits && !rc) {
        pb_copy_str(c.transport, sizeof c.transport, "verbs");
        if (is_auto)
            root_choose_transport(st, fits, &c);
        if (!strcmp(c.transport, "verbs")) {
            root_cap_chunk(st, fits, &c);
            root_count_rails(st, fits, &c);
        }
    }
    free(fits);
    if ((rc = pb_agree(&st->ag, &mine, &st->d, 0)) != 0)
        return rc;
    if ((rc = pb_agree_bcast(&st->ag, &c, sizeof c)) != 0)
        return rc == 2 ? pb_agree_interrupted(&st->ag, &st->d) : (st->d.code = P2PBCAST_ERR_INTERNAL);
    return apply_choice(st, &c);
}
