/* stage.c — one broadcast across the job, as a sequence of phases.
 *
 * Every rank walks the same sequence of agreement points (agreement.c), so
 * a failure anywhere makes every rank stop at the same place with the same
 * status:
 *   1. meta      the root checks SOURCE and broadcasts what it found (size,
 *                mode, mtime, chunk size, transport, the job secret);
 *   1a. manifest a directory SOURCE: the root's manifest of the tree reaches
 *                every node leader, checked, before anything is created;
 *   1b. shared   with --source-shared (auto by default), every leader looks
 *                at SOURCE; if all see the root's file, each reads its share;
 *   1c. transport with --transport auto, verbs only if every node can use it
 *                (device, port, GID, pinned memory), else tcp; with verbs the
 *                chunk fits the smallest port's largest message;
 *   1d. rates    over tcp between machines, when worth it, every leader's
 *                send rate is probed; slow senders make auto take the trees
 *                and go where they send least (the plan's order);
 *   2. dest      leaders expand DEST and find the nodes that share one file;
 *   3. sink      leaders open their temporary DEST file (space reserved);
 *                with --resume, the chunks every node already holds;
 *   4. connect   the slot pool and the connections between partners;
 *   5. transfer  the chunks move; every leader flushes its copy and votes
 *                with the digest of the chunks it verified;
 *   6. commit    on a unanimous vote whose digests equal the root's, every
 *                leader renames its copy into place; otherwise every copy
 *                is discarded.
 * The root prints each node's failure, host and rank first. A node busy
 * with a long local step (a walk, a staging tree, a flush) keeps the others
 * waiting with heartbeats (liveness.c): deadlines count silence only.
 * --check (check.c) runs 1 to 2, then looks at DEST's free space instead of
 * 3, and after 4 sends one message each way on every link: nothing is
 * created under DEST. */
#include "stage.h"

#include "bootstrap.h"
#include "clock.h"
#include "defaults.h"
#include "phases.h"
#include "shared_dest.h"
#include "tcp_rails.h"
#include "verbs_rails.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job is being aborted (a node is silent): leave nothing behind. */
static void cleanup_before_abort(void *ctx)
{
    struct stage *st = ctx;
    pb_probe_remove(st->probe);
    if (st->sink_open)
        pb_sink_abort(&st->sink);
    pb_dtree_abort(st);
}

/* The library's inputs, checked alike on every rank (the call is
 * collective with the same arguments), so a bad one is a usage error
 * everywhere rather than a crash or a hang somewhere. */
static int check_inputs(const char *source, const char *dest, const struct p2pbcast_opts *o, char *err,
                        size_t errlen)
{
    const char *t = o->transport;
    struct pb_tcp_if_spec specs[PB_TCP_MAX_RAILS];
    struct pb_verbs_rail_spec rails[PB_VERBS_MAX_RAILS];
    char why[200];
    if (!source || !*source || !dest || !*dest)
        snprintf(err, errlen, "SOURCE and DEST must be given and not empty");
    else if (isnan(o->timeout) || o->timeout > 7 * 86400.0)
        snprintf(err, errlen, "timeout %g s out of range (up to 7 days; <= 0 means the default)", o->timeout);
    else if (o->slots && (o->slots < 4 || o->slots > 4096))
        snprintf(err, errlen, "slot count %u out of range (4 to 4096)", o->slots);
    else if (o->chunk_size && (o->chunk_size < PB_MIN_CHUNK || o->chunk_size > PB_MAX_CHUNK))
        snprintf(err, errlen, "chunk size %llu out of range (4 KiB to 1 GiB)", (unsigned long long)o->chunk_size);
    else if (t && strcmp(t, "auto") && strcmp(t, "tcp") && strcmp(t, "mpi") && strcmp(t, "verbs"))
        snprintf(err, errlen, "unknown transport '%.32s': choose auto, tcp, mpi or verbs", t);
    else if (o->source_shared && strcmp(o->source_shared, "auto") && strcmp(o->source_shared, "yes") &&
             strcmp(o->source_shared, "no"))
        snprintf(err, errlen, "unknown --source-shared '%.32s': choose auto, yes or no", o->source_shared);
    else if (o->gid_index < -1 || o->gid_index > 255)
        snprintf(err, errlen, "GID index %d out of range (-1 to 255)", o->gid_index);
    else if (o->rdma_tclass < -1 || o->rdma_tclass > 255)
        snprintf(err, errlen, "RDMA traffic class %d out of range (-1 to 255)", o->rdma_tclass);
    /* the list's form is the same everywhere: a usage error, not a node's */
    else if (o->tcp_if && pb_tcp_if_parse(o->tcp_if, specs, PB_TCP_MAX_RAILS, why, sizeof why) < 0)
        snprintf(err, errlen, "%s", why);
    else if (o->rdma_dev && pb_verbs_dev_parse(o->rdma_dev, rails, PB_VERBS_MAX_RAILS, why, sizeof why) < 0)
        snprintf(err, errlen, "%s", why);
    else
        return 0;
    return -1;
}

/* Options with defaults, the bootstrap and the agreement. -1 when there is
 * no job to agree with (res says why). */
static int stage_begin(struct stage *st, const void *comm, const char *source, const char *dest,
                       const struct p2pbcast_opts *opts, struct p2pbcast_result *res)
{
    memset(st, 0, sizeof *st);
    memset(res, 0, sizeof *res);
    res->struct_size = sizeof *res;
    st->t0 = pb_now();
    pb_opts_defaults(&st->o);
    if (opts->struct_size >= sizeof(size_t))
        memcpy(&st->o, opts, opts->struct_size < sizeof st->o ? opts->struct_size : sizeof st->o);
    st->o.struct_size = sizeof st->o;
    if (check_inputs(source, dest, &st->o, res->message, sizeof res->message) < 0) {
        res->status = P2PBCAST_ERR_USAGE;
        return -1;
    }
    if (st->o.timeout <= 0)
        st->o.timeout = PB_DEFAULT_TIMEOUT;
    st->source = source;
    st->dest = dest;
    st->quiet = !!(st->o.flags & P2PBCAST_QUIET);
    st->verbose = !!(st->o.flags & P2PBCAST_VERBOSE);
    st->src.fd = st->sink.fd = -1;

    char err[512];
    if (pb_boot_open(comm, st->o.root, !!(st->o.flags & P2PBCAST_PER_RANK), st->o.timeout, &st->boot, err,
                     sizeof err) < 0) {
        res->status = strstr(err, "--root") ? P2PBCAST_ERR_USAGE : P2PBCAST_ERR_INTERNAL;
        snprintf(res->message, sizeof res->message, "%s", err);
        return -1;
    }
    st->bi = pb_boot_info(st->boot);
    st->root = st->bi->rank == st->bi->root;
    pb_boot_on_abort(st->boot, cleanup_before_abort, st);
    pb_stage_alive(st, NULL);
    if (st->verbose && st->root)
        fprintf(stderr, "p2pbcast: [%.3f s] bootstrap done\n", pb_now() - st->t0);
    if (pb_agreement_init(&st->ag, st->boot, st->o.timeout, st->o.cancel, st->verbose, st->t0) < 0) {
        st->meta.code = P2PBCAST_ERR_INTERNAL; /* the root tells everyone in phase 1 */
        snprintf(st->meta.msg, sizeof st->meta.msg, "out of memory on the root");
    }
    return 0;
}

/* The result every rank returns, and on the root the summary and report. */
static void report(struct stage *st, struct p2pbcast_result *res)
{
    res->status = st->d.code;
    pb_copy_str(res->message, sizeof res->message, st->d.msg);
    res->bytes = st->meta.size;
    res->seconds = pb_now() - st->t0;
    res->nodes = st->bi->nleaders;
    res->failed_nodes = st->d.nfail;
    res->chunk_size = st->meta.chunk;
    res->chunks = st->have_plan ? st->plan.nchunks : 0;
    res->chunks_skipped = st->nskip;
    snprintf(res->transport, sizeof res->transport, "%s", st->meta.transport);
    if (!st->root || (st->o.flags & P2PBCAST_CHECK))
        return; /* --check: pb_check_report spoke */
    struct pb_summary s = {
        .status = res->status, .source = st->source, .dest = st->dest, .transport = res->transport,
        .bytes = res->bytes, .chunk_size = res->chunk_size, .chunks = res->chunks,
        .seconds = res->seconds, .nodes = res->nodes, .ranks = st->bi->size,
        .chunks_skipped = st->nskip,
        .failures = st->ag.fails, .nfailures = st->ag.nfails,
        .placement = st->placement[0] ? st->placement : NULL,
    };
    pb_dtree_summary(st, &s);
    s.source_read = pb_source_shared_report(st, &s.source_readers, st->verbose && !res->status);
    char err[512];
    if (!st->quiet || res->status)
        pb_summary_print(stderr, &s);
    if (st->o.json_path && pb_report_json(st->o.json_path, &s, err, sizeof err) < 0)
        fprintf(stderr, "p2pbcast: warning: %s\n", err);
}

/* Release what the phases took, in the order that keeps buffers alive while
 * anything may still touch them: the engine, then the transport, then the
 * pool. The agreement and the bootstrap stay for the report. */
static void release(struct stage *st)
{
    /* First what a failed run leaves on disk (a staging directory, a named
     * temporary DEST): when the launcher is ending the job, SIGKILL follows
     * SIGTERM within a second or so, and closing the transport can take
     * longer. After a commit this only closes. */
    st->alive.say = NULL; /* after the last agreement nobody waits: no more heartbeats */
    pb_dtree_abort(st);
    pb_probe_remove(st->probe);
    pb_resume_keep(st);
    if (st->sink_open)
        pb_sink_abort(&st->sink); /* after a commit this only closes: the name is DEST's */
    if (st->eng)
        pb_engine_destroy(st->eng);
    pb_connect_release(st);
    pb_source_close(&st->src);
    pb_dtree_release(st);
}

int pb_stage_file(const void *comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct p2pbcast_result *res)
{
    struct stage st;
    if (stage_begin(&st, comm, source, dest, opts, res) < 0)
        return res->status;
    int check = !!(st.o.flags & P2PBCAST_CHECK);
    if (!pb_phase_meta(&st) && !pb_phase_manifest(&st) && !pb_phase_source_shared(&st) &&
        !pb_phase_transport(&st) && !pb_phase_rates(&st) && !pb_phase_dest(&st)) {
        if (check) {
            if (!pb_phase_check_space(&st) && !pb_phase_connect(&st))
                pb_phase_probe_links(&st);
        } else if (!pb_phase_open_sink(&st) && !pb_phase_resume(&st) && !pb_phase_connect(&st) &&
                   !pb_phase_transfer(&st)) {
            pb_phase_commit(&st);
        }
    }
    release(&st);
    if (check)
        pb_check_report(&st, st.d.code);
    report(&st, res);
    free(st.skip); /* after the report: it counts the chunks SOURCE gave */
    free(st.order);
    pb_agreement_free(&st.ag);
    pb_boot_close(st.boot);
    return res->status;
}
