/* meta.c — phase 1: the root looks at SOURCE, chooses the transport, the
 * schedule and the chunk size, draws the job secret, and tells every rank. */
#include "bootstrap.h"
#include "phases.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* By name, or with auto the root's own best guess, which every node then
 * confirms or not (negotiate.c). */
static const char *choose_transport(struct stage *st)
{
    const char *want = st->o.transport ? st->o.transport : "auto";
    if (strcmp(want, "auto"))
        return want;
    st->meta.negotiate = 1;
    char why[256] = "";
    want = pb_verbs_available(why, sizeof why) ? "verbs" : "tcp";
    if (st->verbose)
        fprintf(stderr, "p2pbcast: transport auto, the root's guess: %s%s%s%s\n", want, why[0] ? " (" : "", why, why[0] ? ")" : "");
    return want;
}

/* Per-message cost of each transport (alpha), for the chunk and schedule
 * rules (plan.h, struct pb_link_cost). verbs: a work request and its
 * completion, ~1.5 us, the port's rate not read: 100 Gbit/s assumed, so
 * alpha*B stays near the 16 KiB the rules always used for RDMA. tcp:
 * syscalls, epoll and the credit's round, 20-50 us on 25-50 GB/s links
 * (issue 23), times the rate of the interface it uses (unknown on virtual
 * ones). mpi: two messages (header, payload) and a credit per chunk, and
 * the same interface's rate. All nodes on one machine: no link to size. */
#define ALPHA_VERBS 1.5e-6
#define VERBS_ASSUMED_RATE (100e9 / 8)
#define ALPHA_TCP 30e-6
#define ALPHA_MPI 5e-6

struct link_desc {
    struct pb_link_cost lc;
    char what[96], ifname[32];
};

static void link_cost(const struct stage *st, const char *transport, struct link_desc *d)
{
    const struct pb_boot_info *bi = st->bi;
    int tcp = !strcmp(transport, "tcp"), verbs = !strcmp(transport, "verbs");
    memset(d, 0, sizeof *d);
    d->lc.what = d->what;
    d->lc.alpha = verbs ? ALPHA_VERBS : tcp ? ALPHA_TCP : ALPHA_MPI;
    /* all leaders on this machine: loopback, no shared link */
    d->lc.tcp_between_hosts = tcp && !bi->all_local;
    if (verbs) {
        d->lc.rate = VERBS_ASSUMED_RATE;
        snprintf(d->what, sizeof d->what, "verbs: 1.5 us per message at an assumed 100 Gbit/s");
        return;
    }
    uint64_t mbit = bi->all_local ? 0 : pb_tcp_link_mbit(st->o.tcp_if, d->ifname, sizeof d->ifname);
    d->lc.rate = (double)mbit * 1e6 / 8;
    if (mbit)
        snprintf(d->what, sizeof d->what, "%s: %.0f us per message at the link's %llu Mbit/s", transport,
                 d->lc.alpha * 1e6, (unsigned long long)mbit);
    else
        snprintf(d->what, sizeof d->what, "%s: %s", transport,
                 bi->all_local ? "all nodes on one machine, no link rate" : "link rate unknown");
}

/* The schedule's rule from F, N and the transport's alpha*B, capped over
 * tcp between hosts by the wire time of a chunk at the root's link rate
 * (pb_plan_choose_chunk says why; measurements in bench/README.md, "Chunk
 * size against link rate"). */
uint64_t pb_meta_choose_chunk(const struct stage *st, uint64_t size, const char *transport, int schedule)
{
    const struct pb_boot_info *bi = st->bi;
    if (st->o.chunk_size) {
        if (st->verbose)
            fprintf(stderr, "p2pbcast: chunk: %llu bytes (--chunk-size)\n", (unsigned long long)st->o.chunk_size);
        return st->o.chunk_size;
    }
    struct link_desc d;
    char why[400];
    link_cost(st, transport, &d);
    int tcp_hosts = d.lc.tcp_between_hosts;
    uint64_t chunk = pb_plan_choose_chunk(size, bi->nleaders - 1, schedule, &d.lc, why, sizeof why);
    if (st->verbose)
        fprintf(stderr, "p2pbcast: chunk: %s%s%s%s\n", why, tcp_hosts ? " [interface " : "",
                tcp_hosts ? (d.ifname[0] ? d.ifname : "?") : "", tcp_hosts ? "]" : "");
    return chunk;
}

/* The ring or the two trees; -1 for a name we do not know (API callers). */
static int choose_schedule(const struct stage *st, uint64_t size, const char *transport)
{
    int s = pb_schedule_parse(st->o.schedule);
    if (s != -2)
        return s;
    char why[400];
    struct link_desc d;
    link_cost(st, transport, &d);
    s = pb_schedule_auto(size, st->bi->nleaders, &d.lc, why, sizeof why);
    if (st->verbose)
        fprintf(stderr, "p2pbcast: schedule auto: %s\n", why);
    return s;
}

/* Root only: look at SOURCE and fill the meta. */
static void root_meta(struct stage *st)
{
    struct pb_meta *m = &st->meta;
    char err[320];
    int dir = pb_dtree_root_meta(st); /* 1: a directory, walked (dirtree_stage.c) */
    if (dir < 0)
        return;
    if (!dir && pb_source_open(&st->src, st->source, err, sizeof err) < 0) {
        m->code = P2PBCAST_ERR_SOURCE;
        pb_copy_str(m->msg, sizeof m->msg, err);
        return;
    }
    if (!dir) {
        m->size = (uint64_t)st->src.st.st_size;
        m->mode = (uint32_t)st->src.st.st_mode & 07777;
        m->mt_sec = st->src.st.st_mtim.tv_sec;
        m->mt_nsec = st->src.st.st_mtim.tv_nsec;
    }
    const char *slash = strrchr(st->source, '/');
    snprintf(m->base, sizeof m->base, "%s", slash ? slash + 1 : st->source);
    snprintf(m->transport, sizeof m->transport, "%s", choose_transport(st));
    m->schedule = choose_schedule(st, m->size, m->transport);
    if (m->schedule < 0) {
        m->code = P2PBCAST_ERR_USAGE;
        snprintf(m->msg, sizeof m->msg, "unknown schedule '%.64s': choose auto, ring or tree", st->o.schedule);
        return;
    }
    m->chunk = pb_meta_choose_chunk(st, m->size, m->transport, m->schedule);
    /* 8, fewer for chunks above 16 MiB: the pool within 128 MiB */
    m->slots = st->o.slots ? st->o.slots : pb_plan_default_slots(m->chunk);
    if (pb_boot_random(m->secret, sizeof m->secret) < 0 ||
        pb_boot_random(m->probe_nonce, sizeof m->probe_nonce) < 0) {
        m->code = P2PBCAST_ERR_INTERNAL;
        snprintf(m->msg, sizeof m->msg, "cannot draw the job secret: %s", strerror(errno));
    }
}

/* The root could not start: every rank stops with its reason. names[]
 * exists on node leaders only; the other ranks name the root by rank. */
static int root_failed(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    st->d.code = st->meta.code;
    st->d.nfail = 1;
    if (bi->is_leader)
        snprintf(st->d.msg, sizeof st->d.msg, "%s: %.440s", bi->names[bi->root_leader], st->meta.msg);
    else
        snprintf(st->d.msg, sizeof st->d.msg, "the root (rank %d): %.440s", bi->root, st->meta.msg);
    if (st->root) {
        fprintf(stderr, "p2pbcast: error: %s\n", st->d.msg);
        pb_agree_record(&st->ag, bi->root_leader, st->d.code, st->meta.msg);
    }
    return st->d.code;
}

static void say_plan(const struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    const struct pb_meta *m = &st->meta;
    char sz[32], cs[32];
    fprintf(stderr,
            "p2pbcast: %s: %s in %llu chunks of %s to %d node(s) (%d receivers, schedule %s), %u slots per node, "
            "transport %s, %d rank(s), up to %d per node\n",
            st->source, pb_fmt_bytes(m->size, sz, sizeof sz), (unsigned long long)st->plan.nchunks,
            pb_fmt_bytes(m->chunk, cs, sizeof cs), bi->nleaders, st->plan.nrecv, pb_schedule_name(m->schedule),
            m->slots, m->transport, bi->size, bi->max_ranks_per_node);
}

int pb_phase_meta(struct stage *st)
{
    if (st->root && !st->meta.code)
        root_meta(st);
    int rc = pb_agree_bcast(&st->ag, &st->meta, sizeof st->meta);
    if (rc == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    if (rc != 0) {
        st->d.code = P2PBCAST_ERR_INTERNAL;
        snprintf(st->d.msg, sizeof st->d.msg, "MPI broadcast from the root failed");
        return st->d.code;
    }
    if (st->meta.code)
        return root_failed(st);
    char err[256];
    if (pb_plan_init(&st->plan, st->meta.size, st->meta.chunk, st->bi->nleaders - 1, err, sizeof err) < 0) {
        st->d.code = P2PBCAST_ERR_USAGE;
        pb_copy_str(st->d.msg, sizeof st->d.msg, err);
        if (st->root)
            fprintf(stderr, "p2pbcast: error: %s\n", err);
        return st->d.code;
    }
    st->plan.schedule = st->meta.schedule;
    st->have_plan = 1;
    if (st->root && st->verbose)
        say_plan(st);
    return 0;
}
