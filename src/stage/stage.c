/* stage.c — orchestrates one broadcast across the job.
 *
 * Every rank walks the same sequence of agreement points, so a failure
 * anywhere makes every rank stop at the same place with the same status:
 *   1. the root checks SOURCE and broadcasts what it found (size, mode,
 *      mtime, chunk size, transport, the job secret);
 *   2. leaders expand DEST; the root refuses two leaders writing one path;
 *   3. leaders open their temporary DEST file (space reserved);
 *   4. leaders open the transport (connections between neighbours);
 *   5. the transfer; every leader flushes its copy and votes with the
 *      manifest digest of the chunks it verified;
 *   6. on a unanimous vote whose digests equal the root's, every leader
 *      renames its copy into place; otherwise every copy is discarded.
 * The root prints each node's failure, host and rank first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "stage.h"

#include "../mpi/bootstrap.h"
#include "engine.h"
#include "options.h"
#include "plan.h"
#include "digest.h"
#include "progress.h"
#include "shared_dest.h"
#include "sink.h"
#include "source.h"
#include "topo.h"
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SLOTS 8
#define DEFAULT_TIMEOUT 60.0
#define TCP_DEFAULT_CHUNK_MAX (64u * 1024u)

void p2pbcast_opts_init(struct p2pbcast_opts *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->gid_index = -1;
    o->timeout = DEFAULT_TIMEOUT;
}

const char *p2pbcast_strstatus(int s)
{
    switch (s) {
    case P2PBCAST_OK: return "success";
    case P2PBCAST_ERR_TRANSFER: return "transfer failed";
    case P2PBCAST_ERR_USAGE: return "usage error";
    case P2PBCAST_ERR_SOURCE: return "SOURCE error";
    case P2PBCAST_ERR_DEST: return "DEST error";
    case P2PBCAST_ERR_TRANSPORT: return "transport set-up failed";
    case P2PBCAST_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

/* Broadcast by the root at step 1. Fixed layout, same binary on all ranks. */
struct meta {
    int32_t code;
    uint32_t mode;
    uint64_t size;
    uint64_t chunk;
    int64_t mt_sec, mt_nsec;
    uint32_t slots;
    char transport[16];
    uint8_t secret[16];
    char base[256];  /* SOURCE's file name, for messages */
    char msg[448];
};

/* A leader's vote at each agreement point. */
struct vote {
    int32_t code;
    int32_t secondary; /* failed because a peer failed */
    uint64_t manifest;
    char msg[496];
};

/* The root's decision, broadcast to every rank. */
struct decision {
    int32_t code;
    int32_t nfail;
    int32_t discard_resume; /* a kept copy proved wrong: do not keep it */
    char msg[500];
};

struct stage {
    struct pb_boot *boot;
    const struct pb_boot_info *bi;
    const struct p2pbcast_opts *o;
    struct meta meta;
    struct vote *votes;       /* root: one per leader */
    struct pb_failure *fails; /* root: failures to report */
    char (*fail_msgs)[496];
    int nfails;
    int quiet, verbose;
    int printed_self; /* the root already printed its own failure */
    int canceled;     /* a signal asked us to stop */
    int mismatch;     /* root: a node's digest differed from the root's */
    double t0;        /* start, for -v timings */
    int rounds;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_root(const struct stage *st)
{
    return st->bi->rank == st->bi->root;
}

/* Gather every leader's vote to the root, decide, broadcast the decision.
 * The first failure that is not merely a consequence of another decides
 * the status; every failure is printed by the root. */
/* Bounded copy: messages are cut, never overflow, whatever their source. */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = strnlen(src ? src : "", n - 1);
    memcpy(dst, src ? src : "", l);
    dst[l] = 0;
}

static void set_vote(struct vote *v, int code, int secondary, const char *msg)
{
    v->code = code;
    v->secondary = secondary;
    copy_str(v->msg, sizeof v->msg, msg);
}

typedef void (*vote_check)(struct stage *st, const struct vote *root_vote);

/* Root: a node whose digest differs from the root's holds a bad copy. */
static void check_manifests(struct stage *st, const struct vote *root_vote)
{
    for (int i = 0; i < st->bi->nleaders; i++) {
        struct vote *v = &st->votes[i];
        if (!v->code && v->manifest != root_vote->manifest) {
            st->mismatch = 1;
            v->code = P2PBCAST_ERR_TRANSFER;
            snprintf(v->msg, sizeof v->msg, "copy does not match SOURCE (manifest digest %016llx, root %016llx)",
                     (unsigned long long)v->manifest, (unsigned long long)root_vote->manifest);
        }
    }
}

/* How long an agreement point may wait. Leaders leave the transfer within
 * about one --timeout of each other (a node whose peers fail notices at once
 * or times out), so the root waits one timeout plus a margin for the votes,
 * and the other leaders wait twice that for the decision. Other ranks on a
 * node wait as long as the job runs. */
static double vote_timeout(const struct stage *st)
{
    if (!st->bi->is_leader)
        return 0;
    return is_root(st) ? st->o->timeout + 5 : 2 * st->o->timeout + 10;
}

/* An agreement point did not complete in time: a node is stalled or gone.
 * Say who, then end the whole job: waiting longer would be a hang. */
static void give_up(struct stage *st, const unsigned char *missing)
{
    const struct pb_boot_info *bi = st->bi;
    char who[1024] = "";
    size_t n = 0;
    int count = 0;
    for (int i = 0; missing && i < bi->nleaders; i++)
        if (missing[i]) {
            count++;
            if (n < sizeof who - 64)
                n += (size_t)snprintf(who + n, sizeof who - n, "%s%s", n ? ", " : "", bi->names[i]);
        }
    if (is_root(st))
        fprintf(stderr, "p2pbcast: error: no answer within %.0f s from %d node(s): %s%s; aborting the job\n",
                vote_timeout(st), count, who, n >= sizeof who - 64 ? ", ..." : "");
    else
        fprintf(stderr, "p2pbcast: error: %s: no word from the root %s within %.0f s; aborting the job\n",
                bi->names[bi->leader], bi->names[bi->root_leader], vote_timeout(st));
    pb_boot_abort(st->boot, P2PBCAST_ERR_TRANSFER);
}

/* A signal asked us to stop while waiting for the others: they are being
 * ended too, so do not wait for a vote that will not come. */
static int interrupted(struct stage *st, struct decision *d)
{
    st->canceled = 1;
    d->code = P2PBCAST_ERR_TRANSFER;
    /* names[] exists on leaders only; every rank knows its host and rank. */
    snprintf(d->msg, sizeof d->msg, "%s (rank %d): interrupted by signal %d", st->bi->host, st->bi->rank,
             st->o->cancel ? (int)*st->o->cancel : 0);
    return d->code;
}

static int agree(struct stage *st, struct vote *mine, struct decision *d, vote_check check)
{
    const struct pb_boot_info *bi = st->bi;
    if (st->verbose && is_root(st))
        fprintf(stderr, "p2pbcast: [%.3f s] agreement %d\n", now_s() - st->t0, ++st->rounds);
    memset(d, 0, sizeof *d);
    if (bi->is_leader) {
        unsigned char *missing = is_root(st) ? calloc((size_t)bi->nleaders, 1) : NULL;
        int rc = pb_boot_gather(st->boot, mine, st->votes, sizeof *mine, vote_timeout(st), missing);
        if (rc == 1 && is_root(st))
            give_up(st, missing);
        free(missing);
        if (rc == 2)
            return interrupted(st, d);
        if (rc < 0) {
            d->code = P2PBCAST_ERR_INTERNAL;
            snprintf(d->msg, sizeof d->msg, "MPI gather of the nodes' status failed");
        }
    }
    if (is_root(st) && !d->code) {
        if (check)
            check(st, mine);
        int first = -1, first_any = -1;
        for (int i = 0; i < bi->nleaders; i++) {
            struct vote *v = &st->votes[i];
            if (!v->code)
                continue;
            d->nfail++;
            if (first_any < 0)
                first_any = i;
            if (first < 0 && !v->secondary)
                first = i;
            if (st->nfails < bi->nleaders) {
                memcpy(st->fail_msgs[st->nfails], v->msg, sizeof v->msg);
                st->fail_msgs[st->nfails][sizeof v->msg - 1] = 0;
                st->fails[st->nfails].node = bi->names[i];
                st->fails[st->nfails].code = v->code;
                st->fails[st->nfails].message = st->fail_msgs[st->nfails];
                st->nfails++;
            }
        }
        /* Primary causes first, then the nodes that stopped because of them;
         * the root's own failure was printed the moment it happened. */
        for (int pass = 0; pass < 2 && d->nfail; pass++)
            for (int i = 0; i < bi->nleaders; i++)
                if (st->votes[i].code && st->votes[i].secondary == pass &&
                    !(i == bi->root_leader && st->printed_self))
                    fprintf(stderr, "p2pbcast: error: %s: %s\n", bi->names[i], st->votes[i].msg);
        if (first < 0)
            first = first_any;
        d->discard_resume = st->mismatch;
        if (first >= 0) {
            d->code = st->votes[first].code;
            snprintf(d->msg, sizeof d->msg, "%s: %s", bi->names[first], st->votes[first].msg);
        }
    }
    int rc = pb_boot_bcast(st->boot, d, sizeof *d, vote_timeout(st));
    if (rc == 1)
        give_up(st, NULL);
    if (rc == 2)
        return interrupted(st, d);
    if (rc < 0 && !d->code) {
        d->code = P2PBCAST_ERR_INTERNAL;
        snprintf(d->msg, sizeof d->msg, "MPI broadcast of the decision failed");
    }
    return d->code;
}

/* Step 1, root only: look at SOURCE and fill the meta. */
static void root_meta(struct stage *st, struct pb_source *src, const char *source)
{
    struct meta *m = &st->meta;
    const struct p2pbcast_opts *o = st->o;
    char err[320];
    if (pb_source_open(src, source, err, sizeof err) < 0) {
        m->code = P2PBCAST_ERR_SOURCE;
        copy_str(m->msg, sizeof m->msg, err);
        return;
    }
    m->size = (uint64_t)src->st.st_size;
    m->mode = (uint32_t)src->st.st_mode & 07777;
    m->mt_sec = src->st.st_mtim.tv_sec;
    m->mt_nsec = src->st.st_mtim.tv_nsec;
    int R = st->bi->nleaders - 1;
    m->slots = o->slots ? o->slots : DEFAULT_SLOTS;
    const char *slash = strrchr(source, '/');
    snprintf(m->base, sizeof m->base, "%s", slash ? slash + 1 : source);
    const char *want = o->transport ? o->transport : "auto";
    if (!strcmp(want, "auto")) {
        char why[256] = "";
        want = pb_verbs_available(why, sizeof why) ? "verbs" : "tcp";
        if (st->verbose)
            fprintf(stderr, "p2pbcast: transport auto: %s%s%s%s\n", want, why[0] ? " (" : "", why, why[0] ? ")" : "");
    }
    snprintf(m->transport, sizeof m->transport, "%s", want);
    m->chunk = o->chunk_size ? o->chunk_size : pb_plan_default_chunk(m->size, R);
    /* Over TCP the root's stream and the ring's stream into a node share its
     * link, and the ring pays for every burst: on the 8-host bed (150 Mbit/s
     * links, 64 MiB) 1 MiB chunks took 5.2 s, 512 KiB 4.8 s, 128 KiB 4.4 s,
     * 64 KiB 4.1 s and 32 KiB 4.1 s against 3.75 s ideal. The model, whose
     * links carry one message at a time, does not see this. */
    int one_host = 1; /* all leaders here: loopback, no shared link */
    for (int i = 0; i < st->bi->nleaders; i++)
        one_host &= !strcmp(st->bi->hosts[i], st->bi->host);
    if (!o->chunk_size && !strcmp(want, "tcp") && !one_host && m->chunk > TCP_DEFAULT_CHUNK_MAX)
        m->chunk = TCP_DEFAULT_CHUNK_MAX;
    if (pb_boot_random(m->secret, sizeof m->secret) < 0) {
        m->code = P2PBCAST_ERR_INTERNAL;
        snprintf(m->msg, sizeof m->msg, "cannot draw the job secret: %s", strerror(errno));
    }
}

static struct pb_transport *open_transport(struct stage *st, const struct pb_transport_cfg *cfg, char *err,
                                           size_t errlen)
{
    const char *name = st->meta.transport;
    if (!strcmp(name, "tcp"))
        return pb_tcp_open(cfg, err, errlen);
    if (!strcmp(name, "verbs"))
        return pb_verbs_open(cfg, err, errlen);
    if (!strcmp(name, "mpi"))
        return pb_mpi_transport_open(cfg, err, errlen);
    snprintf(err, errlen, "transport '%s' is not built into this p2pbcast", name);
    return NULL;
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

struct io_ctx {
    struct pb_source *src;
    struct pb_sink *sink;
    long read_delay_ms; /* testing only: P2PBCAST_TEST_READ_DELAY_MS */
    int writes;         /* this node writes DEST (not a sharer of another's) */
};

static int io_read(void *c, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    struct io_ctx *io = c;
    if (io->read_delay_ms > 0) {
        struct timespec ts = { io->read_delay_ms / 1000, (io->read_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    /* A SOURCE that changes under us must not become N wrong copies: check
     * size and mtime with every chunk (one fstat per chunk). */
    if (pb_source_read(io->src, off, buf, len, err, errlen) < 0)
        return -1;
    return pb_source_check_unchanged(io->src, err, errlen);
}

static int io_write(void *c, uint64_t off, const void *buf, size_t len, char *err, size_t errlen)
{
    struct io_ctx *io = c;
    return io->writes ? pb_sink_write(io->sink, off, buf, len, err, errlen) : 0;
}

/* The peers a leader talks to: the root talks to every receiver; a
 * receiver to the root and its ring neighbours. */
static int ring_peers(const struct pb_plan *p, const struct pb_boot_info *bi, int *peers)
{
    int n = 0;
    int self = bi->leader, root = bi->root_leader, L = bi->nleaders;
    int r = pb_plan_receiver_of(root, L, self);
    if (r < 0) {
        for (int i = 0; i < p->nrecv; i++)
            peers[n++] = pb_plan_leader_of(root, L, i);
        return n;
    }
    peers[n++] = root;
    if (p->nrecv > 1) {
        int pred = pb_plan_leader_of(root, L, pb_plan_predecessor(p, r));
        int succ = pb_plan_leader_of(root, L, pb_plan_successor(p, r));
        peers[n++] = pred;
        if (succ != pred)
            peers[n++] = succ;
    }
    return n;
}

/* --resume: every leader tells the root which chunks its kept copy holds;
 * the root sends back those that all hold. Returns 0, 2 when interrupted,
 * -1 on failure; a leader that does not answer ends the job (give_up). */
static int share_resume(struct stage *st, const struct pb_plan *plan, const unsigned char *have,
                        unsigned char **skip, uint64_t *nskip)
{
    const struct pb_boot_info *bi = st->bi;
    size_t nb = (size_t)(plan->nchunks / 8 + 1);
    *skip = calloc(nb, 1);
    unsigned char *mine = calloc(nb, 1), *all = NULL;
    if (!*skip || !mine)
        return -1;
    if (have)
        memcpy(mine, have, nb);
    int rc = 0;
    if (bi->is_leader) {
        unsigned char *missing = is_root(st) ? calloc((size_t)bi->nleaders, 1) : NULL;
        if (is_root(st))
            all = malloc(nb * (size_t)bi->nleaders);
        rc = is_root(st) && !all ? -1 : pb_boot_gather(st->boot, mine, all, nb, vote_timeout(st), missing);
        if (rc == 1 && is_root(st))
            give_up(st, missing);
        free(missing);
        if (is_root(st) && rc == 0) {
            memset(*skip, 0xff, nb);
            for (int i = 0; i < bi->nleaders; i++)
                for (size_t j = 0; j < nb; j++)
                    (*skip)[j] &= all[(size_t)i * nb + j];
            /* Bits past the last chunk stay clear. */
            for (uint64_t k = plan->nchunks; k < nb * 8; k++)
                (*skip)[k / 8] &= (unsigned char)~(1u << (k % 8));
        }
    }
    free(all);
    free(mine);
    int brc = pb_boot_bcast(st->boot, *skip, nb, vote_timeout(st));
    if (brc == 1)
        give_up(st, NULL);
    if (rc == 2 || brc == 2)
        return 2;
    if (rc < 0 || brc < 0)
        return -1;
    *nskip = 0;
    for (uint64_t k = 0; k < plan->nchunks; k++)
        *nskip += ((*skip)[k / 8] >> (k % 8)) & 1;
    return 0;
}

int pb_stage_file(const void *comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct p2pbcast_result *res)
{
    struct p2pbcast_opts o;
    p2pbcast_opts_init(&o);
    memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    if (o.timeout <= 0)
        o.timeout = DEFAULT_TIMEOUT;
    struct stage st = { .o = &o };
    st.quiet = !!(o.flags & P2PBCAST_QUIET);
    st.verbose = !!(o.flags & P2PBCAST_VERBOSE);
    memset(res, 0, sizeof *res);
    double t0 = now_s();

    char err[512];
    if (pb_boot_open(comm, o.root, !!(o.flags & P2PBCAST_PER_RANK), &st.boot, err, sizeof err) < 0) {
        res->status = strstr(err, "--root") ? P2PBCAST_ERR_USAGE : P2PBCAST_ERR_INTERNAL;
        snprintf(res->message, sizeof res->message, "%s", err);
        return res->status;
    }
    st.bi = pb_boot_info(st.boot);
    st.t0 = t0;
    if (st.verbose && st.bi->rank == st.bi->root)
        fprintf(stderr, "p2pbcast: [%.3f s] bootstrap done\n", now_s() - t0);
    const struct pb_boot_info *bi = st.bi;
    int root = is_root(&st);

    struct pb_source src = { .fd = -1 };
    struct pb_sink sink = { .fd = -1 };
    struct pb_transport *tp = NULL;
    struct pb_engine *eng = NULL;
    unsigned char *pool = NULL;
    size_t pool_len = 0;
    int pool_placed = 0; /* allocated by topo.c (near a device) */
    int *peers = NULL;
    int sink_open = 0;
    struct vote mine;
    struct decision d = { 0 };
    struct pb_plan plan;
    struct pb_progress prog;
    char dpath[4096] = "";
    char probe[4096] = ""; /* our shared-DEST probe file, removed at the end */
    unsigned char *skip = NULL; /* --resume: chunks every node holds */
    uint64_t nskip = 0;
    int writes = 0, sharers = 1;

    if (root) {
        st.votes = calloc((size_t)bi->nleaders, sizeof *st.votes);
        st.fails = calloc((size_t)bi->nleaders, sizeof *st.fails);
        st.fail_msgs = calloc((size_t)bi->nleaders, sizeof *st.fail_msgs);
        if (!st.votes || !st.fails || !st.fail_msgs) {
            st.meta.code = P2PBCAST_ERR_INTERNAL;
            snprintf(st.meta.msg, sizeof st.meta.msg, "out of memory on the root");
        } else {
            root_meta(&st, &src, source);
        }
    }
    /* 1. What the root found. */
    pb_boot_set_cancel(st.boot, o.cancel);
    int brc = pb_boot_bcast(st.boot, &st.meta, sizeof st.meta, vote_timeout(&st));
    if (brc == 1)
        give_up(&st, NULL);
    if (brc == 2) {
        interrupted(&st, &d);
        goto out;
    }
    if (brc != 0) {
        d.code = P2PBCAST_ERR_INTERNAL;
        snprintf(d.msg, sizeof d.msg, "MPI broadcast from the root failed");
        goto out;
    }
    if (st.meta.code) {
        d.code = st.meta.code;
        d.nfail = 1;
        snprintf(d.msg, sizeof d.msg, "%s: %.440s", bi->names[bi->root_leader], st.meta.msg);
        if (root) {
            fprintf(stderr, "p2pbcast: error: %s\n", d.msg);
            if (st.fails) {
                copy_str(st.fail_msgs[0], sizeof st.fail_msgs[0], st.meta.msg);
                st.fails[0] = (struct pb_failure){ bi->names[bi->root_leader], d.code, st.fail_msgs[0] };
                st.nfails = 1;
            }
        }
        goto out;
    }
    const struct meta *m = &st.meta;
    if (pb_plan_init(&plan, m->size, m->chunk, bi->nleaders - 1, err, sizeof err) < 0) {
        d.code = P2PBCAST_ERR_USAGE;
        copy_str(d.msg, sizeof d.msg, err);
        if (root)
            fprintf(stderr, "p2pbcast: error: %s\n", err);
        goto out;
    }
    if (root && st.verbose) {
        char sz[32], cs[32];
        fprintf(stderr, "p2pbcast: %s: %s in %llu chunks of %s to %d node(s) (%d in the ring), %u slots per node, "
                        "transport %s, %d rank(s), up to %d per node\n",
                source, pb_fmt_bytes(m->size, sz, sizeof sz), (unsigned long long)plan.nchunks,
                pb_fmt_bytes(m->chunk, cs, sizeof cs), bi->nleaders, plan.nrecv, m->slots, m->transport, bi->size,
                bi->max_ranks_per_node);
    }

    /* 2. Where each node writes. */
    memset(&mine, 0, sizeof mine);
    if (bi->is_leader) {
        char perr[256];
        if (pb_expand_dest(dest, bi->host, bi->rank, dpath, sizeof dpath, perr, sizeof perr) < 0)
            set_vote(&mine, P2PBCAST_ERR_USAGE, 0, perr);
    }
    if (agree(&st, &mine, &d, NULL))
        goto out;

    /* 2b. Nodes that see one DEST file on a shared filesystem: only the
     * lowest-numbered of them writes it; the others still receive, check
     * and pass chunks on. Two barriers: all probes exist before anyone
     * looks, and nobody removes its probe before everyone has looked. */
    writes = bi->is_leader;
    if (bi->is_leader)
        (void)pb_probe_create(dpath, m->secret, bi->leader, probe, sizeof probe);
    memset(&mine, 0, sizeof mine);
    if (agree(&st, &mine, &d, NULL))
        goto out;
    if (bi->is_leader && probe[0]) {
        int w = pb_probe_writer(dpath, m->secret, bi->leader, &sharers);
        writes = w == bi->leader;
        if (st.verbose && sharers > 1)
            fprintf(stderr, "p2pbcast: %s: DEST '%s' is shared by %d nodes; %s\n", bi->names[bi->leader], dpath,
                    sharers, writes ? "this node writes it" : "written by another node");
    }
    memset(&mine, 0, sizeof mine);
    if (agree(&st, &mine, &d, NULL))
        goto out;
    pb_probe_remove(probe);

    /* 3. Open the temporary copy on every node that writes. */
    struct pb_sink_want want = {
        .size = m->size,
        .mode = (mode_t)m->mode,
        .mtime = { .tv_sec = (time_t)m->mt_sec, .tv_nsec = (long)m->mt_nsec },
        .force = !!(o.flags & P2PBCAST_FORCE),
        .source = root ? &src.st : NULL,
        .resume = !!(o.flags & P2PBCAST_RESUME),
        .chunk_size = m->chunk,
    };
    memset(&mine, 0, sizeof mine);
    if (writes) {
        if (pb_sink_open(&sink, dpath, &want, err, sizeof err) < 0)
            set_vote(&mine, P2PBCAST_ERR_DEST, 0, err);
        else
            sink_open = 1;
    }
    if (agree(&st, &mine, &d, NULL))
        goto out;

    /* 3b. --resume: chunks that every node already holds are not sent. */
    if (want.resume) {
        int rc = share_resume(&st, &plan, sink_open ? sink.have : NULL, &skip, &nskip);
        if (rc == 2) {
            interrupted(&st, &d);
            goto out;
        }
        if (rc < 0) {
            d.code = P2PBCAST_ERR_INTERNAL;
            snprintf(d.msg, sizeof d.msg, "--resume: exchanging the kept chunks failed");
            goto out;
        }
        if (root && nskip && !st.quiet)
            fprintf(stderr, "p2pbcast: resuming: %llu of %llu chunks are already on every node\n",
                    (unsigned long long)nskip, (unsigned long long)plan.nchunks);
    }

    /* 4. Connections between neighbours. */
    size_t slot_size = (size_t)((m->chunk + PB_TRAILER_SIZE + 63) / 64 * 64);
    uint32_t nslots = m->slots;
    memset(&mine, 0, sizeof mine);
    if (bi->is_leader) {
        peers = malloc((size_t)bi->nleaders * sizeof *peers);
        /* The slot pool (and this thread) next to the network device, when
         * we know which one it is. */
        const char *dev = !strcmp(m->transport, "verbs") ? o.rdma_dev
                          : o.tcp_if && !strchr(o.tcp_if, '/') ? o.tcp_if : NULL;
        struct pb_topo_place place;
        pool_len = slot_size * nslots;
        /* Loading the topology costs ~0.15 s of CPU per process (PCI scan):
         * only when there is a device to be near. */
        pool_placed = dev || !strcmp(m->transport, "verbs");
        if (pool_placed) {
            pool = pb_topo_alloc_near(dev, pool_len, &place);
            if (pool)
                pb_topo_place_thread(dev, &place);
        } else if (posix_memalign((void **)&pool, 4096, pool_len) == 0) {
            memset(pool, 0, pool_len); /* first touch now, not mid-transfer */
            snprintf(place.desc, sizeof place.desc, "pool not placed: no device named (--tcp-if NAME places it)");
        } else {
            pool = NULL;
        }
        if (pool && st.verbose)
            fprintf(stderr, "p2pbcast: %s: %s\n", bi->names[bi->leader], place.desc);
        if (!peers || !pool) {
            set_vote(&mine, P2PBCAST_ERR_INTERNAL, 0, "out of memory for the slot pool");
            /* Still join the transport's collective exchange below. */
        }
        struct pb_transport_cfg tc = {
            .self = bi->leader,
            .nleaders = bi->nleaders,
            .peers = peers,
            .npeers = peers ? ring_peers(&plan, bi, peers) : 0,
            .pool = pool,
            .slot_size = slot_size,
            .nslots = nslots,
            .names = bi->names,
            .hosts = bi->hosts,
            .xchg = { pb_boot_allgather, st.boot },
            .timeout = o.timeout,
            .verbose = st.verbose,
            .tcp_if = o.tcp_if,
            .rdma_dev = o.rdma_dev,
            .gid_index = o.gid_index,
            .mpi_comm = pb_boot_leader_comm(st.boot),
        };
        memcpy(tc.secret, m->secret, sizeof tc.secret);
        tp = open_transport(&st, &tc, err, sizeof err);
        if (!tp && !mine.code)
            set_vote(&mine, P2PBCAST_ERR_TRANSPORT, 0, err);
        if (tp && mine.code) {
            tp->ops->close(tp);
            tp = NULL;
        }
    }
    if (agree(&st, &mine, &d, NULL))
        goto out;

    /* 5. The transfer. */
    memset(&mine, 0, sizeof mine);
    pb_progress_init(&prog, stderr, root && !st.quiet, m->size, plan.nrecv);
    if (bi->is_leader) {
        const char *delay = getenv("P2PBCAST_TEST_READ_DELAY_MS");
        struct io_ctx io = { &src, &sink, delay ? strtol(delay, NULL, 10) : 0, writes };
        const char *fault = getenv("P2PBCAST_TEST_CORRUPT_CHUNK");
        struct pb_engine_cfg ec = {
            .plan = &plan,
            .self = bi->leader,
            .root = bi->root_leader,
            .nleaders = bi->nleaders,
            .tp = tp,
            .pool = pool,
            .slot_size = slot_size,
            .nslots = nslots,
            .root_slots = nslots / 4,
            .io = { io_read, io_write, &io },
            .names = bi->names,
            .timeout = o.timeout,
            .progress = root ? pb_progress_update : NULL,
            .progress_ctx = &prog,
            .corrupt_chunk = fault && *fault ? strtoll(fault, NULL, 10) : -1,
            .cancel = o.cancel,
            .skip = nskip ? skip : NULL,
        };
        eng = pb_engine_create(&ec, err, sizeof err);
        if (!eng) {
            set_vote(&mine, P2PBCAST_ERR_INTERNAL, 0, err);
        } else {
            const char *emsg;
            int cls = pb_engine_run(eng);
            if (cls) {
                pb_engine_error(eng, &emsg);
                set_vote(&mine, engine_status(cls), cls == PB_EE_PEER || cls == PB_EE_TIMEOUT || cls == PB_EE_CANCELED,
                         emsg);
                if (root) {
                    /* Say it now: if a rank died, the launcher may end the
                     * job before the votes are counted. */
                    pb_progress_end(&prog);
                    fprintf(stderr, "p2pbcast: error: %s: %s\n", bi->names[bi->leader], emsg);
                    st.printed_self = 1;
                }
                /* Close now so that neighbours notice at once, not at their timeout. */
                tp->ops->close(tp);
                tp = NULL;
            } else {
                /* Chunks nobody was sent still count: checksum them where
                 * they are (SOURCE on the root, the kept copy elsewhere). */
                for (uint64_t k = 0; nskip && k < plan.nchunks && !mine.code; k++) {
                    if (!((skip[k / 8] >> (k % 8)) & 1))
                        continue;
                    uint64_t off = pb_plan_chunk_offset(&plan, k), len = pb_plan_chunk_len(&plan, k);
                    int rr = root ? pb_source_read(&src, off, pool, len, err, sizeof err)
                                  : pb_sink_read(&sink, off, pool, len, err, sizeof err);
                    if (rr < 0)
                        set_vote(&mine, root ? P2PBCAST_ERR_SOURCE : P2PBCAST_ERR_DEST, 0, err);
                    else
                        pb_engine_manifest_add(eng, k, pb_chunk_hash(pool, len));
                }
                mine.manifest = pb_engine_manifest(eng);
            }
        }
        if (!mine.code && root && pb_source_check_unchanged(&src, err, sizeof err) < 0)
            set_vote(&mine, P2PBCAST_ERR_SOURCE, 0, err);
        if (!mine.code && writes && pb_sink_flush(&sink, &want, err, sizeof err) < 0)
            set_vote(&mine, P2PBCAST_ERR_DEST, 0, err);
    }
    if (root)
        pb_progress_end(&prog);
    if (o.cancel && *o.cancel) {
        interrupted(&st, &d);
        goto out;
    }
    if (agree(&st, &mine, &d, check_manifests))
        goto out;

    /* 6. Every node holds a verified copy: give it its name. */
    memset(&mine, 0, sizeof mine);
    if (writes) {
        if (pb_sink_commit(&sink, err, sizeof err) < 0)
            set_vote(&mine, P2PBCAST_ERR_DEST, 0, err);
    }
    agree(&st, &mine, &d, NULL);

out:
    pb_probe_remove(probe);
    if (sink_open && want.resume && d.code && !d.discard_resume && sink.fd >= 0) {
        /* Keep what this node holds for the next --resume run. */
        unsigned char *held = calloc((size_t)(plan.nchunks / 8 + 1), 1);
        for (uint64_t k = 0; held && k < plan.nchunks; k++)
            if (eng ? pb_engine_holds(eng, k) : sink.have && ((sink.have[k / 8] >> (k % 8)) & 1))
                held[k / 8] |= (unsigned char)(1u << (k % 8));
        if (held && pb_sink_keep(&sink, held, &want) == 0 && st.verbose)
            fprintf(stderr, "p2pbcast: %s: kept the partial copy for --resume\n", bi->names[bi->leader]);
        free(held);
    }
    if (eng)
        pb_engine_destroy(eng);
    if (tp)
        tp->ops->close(tp);
    if (sink_open)
        pb_sink_abort(&sink); /* after a commit this only closes: the name is DEST's */
    pb_source_close(&src);
    if (pool && pool_placed)
        pb_topo_free(pool, pool_len);
    else
        free(pool);
    if (pool_placed)
        pb_topo_release();
    free(peers);

    res->status = d.code;
    copy_str(res->message, sizeof res->message, d.msg);
    res->bytes = st.meta.size;
    res->seconds = now_s() - t0;
    res->nodes = bi->nleaders;
    res->failed_nodes = d.nfail;
    res->chunk_size = st.meta.chunk;
    res->chunks = st.meta.code ? 0 : plan.nchunks;
    res->chunks_skipped = nskip;
    snprintf(res->transport, sizeof res->transport, "%s", st.meta.transport);

    if (root) {
        struct pb_summary s = {
            .status = res->status, .source = source, .dest = dest, .transport = res->transport,
            .bytes = res->bytes, .chunk_size = res->chunk_size, .chunks = res->chunks,
            .seconds = res->seconds, .nodes = res->nodes, .ranks = bi->size,
            .chunks_skipped = nskip,
            .failures = st.fails, .nfailures = st.nfails,
        };
        if (!st.quiet || res->status)
            pb_summary_print(stderr, &s);
        if (o.json_path && pb_report_json(o.json_path, &s, err, sizeof err) < 0)
            fprintf(stderr, "p2pbcast: warning: %s\n", err);
    }
    free(skip);
    free(st.votes);
    free(st.fails);
    free(st.fail_msgs);
    pb_boot_close(st.boot);
    return res->status;
}
