/* transfer.c — phase 5: the engine moves the chunks; every leader then
 * accounts for the chunks a resumed run skipped, flushes its copy and votes
 * with the digest of everything it holds. With --source-shared the root
 * first checks a sample of the chunks the other nodes read
 * (source_verify.c). */
#include "bootstrap.h"
#include "clock.h"
#include "digest.h"
#include "phases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The engine's file I/O: SOURCE on the root (every node when shared), DEST where this node writes. */
struct io_ctx {
    struct pb_source *src;
    struct pb_sink *sink;
    long read_delay_ms; /* testing only: P2PBCAST_TEST_READ_DELAY_MS */
    int writes;
    struct pb_dtree_job *dtree; /* a directory SOURCE: its stream instead */
};

static int io_read(void *c, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    struct io_ctx *io = c;
    if (io->read_delay_ms > 0) {
        struct timespec ts = { io->read_delay_ms / 1000, (io->read_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (io->dtree) /* checks every file it reads from */
        return pb_dtree_source_read(&io->dtree->src, off, buf, len, err, errlen);
    /* A SOURCE that changes under us must not become N wrong copies: check
     * size and mtime with every chunk (one fstat per chunk). */
    if (pb_source_read(io->src, off, buf, len, err, errlen) < 0)
        return -1;
    return pb_source_check_unchanged(io->src, err, errlen);
}

static int io_write(void *c, uint64_t off, const void *buf, size_t len, char *err, size_t errlen)
{
    struct io_ctx *io = c;
    if (io->dtree)
        return io->writes ? pb_dtree_sink_write(&io->dtree->sink, off, buf, len, err, errlen) : 0;
    return io->writes ? pb_sink_write(io->sink, off, buf, len, err, errlen) : 0;
}

static int engine_status(int cls)
{
    switch (cls) {
    case PB_EE_SOURCE: return P2PBCAST_ERR_SOURCE;
    case PB_EE_DEST: return P2PBCAST_ERR_DEST;
    case PB_EE_INTERNAL: return P2PBCAST_ERR_INTERNAL;
    default: return P2PBCAST_ERR_TRANSFER;
    }
}

static struct pb_engine *create_engine(struct stage *st, struct io_ctx *io, uint64_t *hashes, char *err,
                                        size_t errlen)
{
    const struct pb_boot_info *bi = st->bi;
    struct pb_engine_cfg ec = {
        .plan = &st->plan,
        .self = bi->leader,
        .root = bi->root_leader,
        .nleaders = bi->nleaders,
        .tp = st->tp,
        .pool = st->pool,
        .slot_size = st->slot_size,
        .nslots = st->meta.slots,
        .root_slots = st->meta.slots / 4,
        .io = { io_read, io_write, io },
        .names = bi->names,
        .timeout = st->o.timeout,
        .progress = st->root ? pb_progress_update : NULL,
        .progress_ctx = &st->prog,
        .corrupt_chunk = pb_test_hook(st, "P2PBCAST_TEST_CORRUPT_CHUNK", -1),
        .cancel = st->o.cancel,
        .skip = st->nskip ? st->skip : NULL,
        .hashes = hashes,
    };
    return pb_engine_create(&ec, err, errlen);
}

/* The engine stopped on an error: vote it, and say it at once on the root
 * (if a rank died, the launcher may end the job before the votes are
 * counted). Close the transport now so that neighbours notice at once, not
 * at their timeout. What this node wrote goes first (a tree's staging
 * directory, a named temporary DEST, unless --resume keeps it): without
 * this node's copy the job cannot succeed, and closing the transport or
 * waiting for the vote may outlast the second between the launcher's
 * SIGTERM and its SIGKILL. */
static void engine_failed(struct stage *st, int cls, struct pb_vote *mine)
{
    pb_dtree_abort(st);
    if (st->sink_open && !st->want.resume)
        pb_sink_abort(&st->sink);
    const char *emsg;
    pb_engine_error(st->eng, &emsg);
    if (pb_engine_lost_peer(st->eng) >= 0)
        pb_boot_suspect(st->boot, pb_engine_lost_peer(st->eng));
    pb_vote_set(mine, engine_status(cls), cls == PB_EE_PEER || cls == PB_EE_TIMEOUT || cls == PB_EE_CANCELED, emsg);
    if (st->root) {
        pb_progress_end(&st->prog);
        fprintf(stderr, "p2pbcast: error: %s: %s\n", st->bi->names[st->bi->leader], emsg);
        st->ag.printed_self = 1;
    }
    pb_connect_close(st);
}

/* Chunks nobody was sent (--resume) still count: checksum them where they
 * are, SOURCE on the root and the kept copy elsewhere. */
static void account_skipped(struct stage *st, struct pb_vote *mine)
{
    char err[512];
    for (uint64_t k = 0; st->nskip && k < st->plan.nchunks && !mine->code; k++) {
        if (!((st->skip[k / 8] >> (k % 8)) & 1))
            continue;
        uint64_t off = pb_plan_chunk_offset(&st->plan, k), len = pb_plan_chunk_len(&st->plan, k);
        int rr = st->root ? pb_source_read(&st->src, off, st->pool, len, err, sizeof err)
                          : pb_sink_read(&st->sink, off, st->pool, len, err, sizeof err);
        if (rr < 0)
            pb_vote_set(mine, st->root ? P2PBCAST_ERR_SOURCE : P2PBCAST_ERR_DEST, 0, err);
        else
            pb_engine_manifest_add(st->eng, k, pb_chunk_hash(st->pool, len));
    }
}

/* The final flush of a large DEST on a busy parallel filesystem can take
 * longer than --timeout: the node says it is still working meanwhile. */
struct flush_job {
    struct stage *st;
    char *err;
    size_t errlen;
    long delay; /* testing: a slow filesystem (P2PBCAST_TEST_FLUSH_DELAY_MS) */
};

static int flush_step(void *arg)
{
    struct flush_job *j = arg;
    if (j->delay > 0)
        nanosleep(&(struct timespec){ j->delay / 1000, (j->delay % 1000) * 1000000L }, NULL);
    return j->st->dtree.on ? pb_dtree_sink_finish(&j->st->dtree.sink, j->err, j->errlen)
                           : pb_sink_flush(&j->st->sink, &j->st->want, j->err, j->errlen);
}

static int flush_alive(struct stage *st, char *err, size_t errlen)
{
    struct flush_job j = { st, err, errlen, pb_test_hook(st, "P2PBCAST_TEST_FLUSH_DELAY_MS", 0) };
    return pb_stage_run_alive(st, flush_step, &j);
}

static void run_leader(struct stage *st, struct pb_vote *mine)
{
    char err[512];
    struct io_ctx io = { &st->src, &st->sink, pb_test_hook(st, "P2PBCAST_TEST_READ_DELAY_MS", 0), st->writes,
                         st->dtree.on ? &st->dtree : NULL };
    /* The root keeps the checksum of every chunk others read, to vouch for them. */
    uint64_t *hashes = st->root && st->shared ? calloc(st->plan.nchunks ? st->plan.nchunks : 1, sizeof *hashes) : NULL;
    struct pb_sample_job *early = NULL; /* the root's sample, read during the transfer where it reads nothing else */
    if (st->root && st->shared && !hashes)
        pb_vote_set(mine, P2PBCAST_ERR_INTERNAL, 0, "out of memory for the chunks' checksums");
    else if (!(st->eng = create_engine(st, &io, hashes, err, sizeof err))) {
        pb_vote_set(mine, P2PBCAST_ERR_INTERNAL, 0, err);
    } else {
        early = hashes ? pb_source_verify_early(st) : NULL;
        int cls = pb_engine_run(st->eng);
        if (cls) {
            engine_failed(st, cls, mine);
        } else {
            account_skipped(st, mine);
            mine->manifest = pb_engine_manifest(st->eng);
        }
    }
    if (!mine->code && hashes && pb_source_verify(st, early, hashes, err, sizeof err) < 0)
        pb_vote_set(mine, P2PBCAST_ERR_SOURCE, 0, err);
    else if (mine->code)
        pb_source_verify_drop(early);
    free(hashes);
    /* Every node that read SOURCE (the root; with --source-shared all). */
    if (!mine->code && st->src.fd >= 0 && pb_source_check_unchanged(&st->src, err, sizeof err) < 0)
        pb_vote_set(mine, P2PBCAST_ERR_SOURCE, 0, err);
    if (!mine->code && st->writes && flush_alive(st, err, sizeof err) < 0)
        pb_vote_set(mine, P2PBCAST_ERR_DEST, 0, err);
}

int pb_phase_transfer(struct stage *st)
{
    struct pb_vote mine = { 0 };
    pb_progress_init(&st->prog, stderr, st->root && !st->quiet, st->meta.size, st->plan.nrecv);
    pb_dtree_progress(st);
    if (st->bi->is_leader)
        run_leader(st, &mine);
    if (st->root)
        pb_progress_end(&st->prog);
    if (st->o.cancel && *st->o.cancel)
        return pb_agree_interrupted(&st->ag, &st->d);
    return pb_agree(&st->ag, &mine, &st->d, 1);
}
