/* source_shared.c — phase 1b: does every node see SOURCE, so that each can
 * read its share of the chunks (--source-shared; the ring allgather of
 * plan.h)?
 *
 * st_dev and st_ino mean nothing across NFS clients, so "the same file" is:
 * the same size, mtime and ctime (nanoseconds) and the same checksum of the
 * first and the last chunk, read by each node. The root looks first and
 * broadcasts what it saw; every other leader opens SOURCE at the same path,
 * looks, compares with the root's view, and votes at an agreement point:
 * with `yes` a difference is a SOURCE error naming the node; with `auto` it
 * rides in the vote (manifest = 1, msg = why), the root collects the votes
 * (O(N)) and broadcasts the decision, falling back to root-only reads.
 * `auto` asks only where SOURCE's filesystem keeps client caches coherent
 * (Lustre, GPFS, ...: fs_kind.h; each node must be on the same kind), or
 * where all nodes are this machine (each must open the root's inode).
 * In shared mode each leader keeps its SOURCE open for the transfer and
 * checks size, mtime and ctime with every chunk it reads (transfer.c);
 * none of this proves the bytes equal, so the root re-reads a sample of
 * every other node's chunks after the transfer (source_verify.c).
 *
 * The reader-fed trees take G pairs (plan.h) from the two rates where both
 * are known (pb_readtree_choose_pairs), and every one of their 2G trees
 * its own slots (pb_readtree_slots).
 *
 * Testing only: P2PBCAST_TEST_SOURCE_OF_RANK_<r>=PATH makes the leader of
 * MPI rank r (not the root) open PATH instead of SOURCE, to stand for a
 * node that sees another file (or none) at SOURCE's path;
 * P2PBCAST_TEST_READTREE_PAIRS=G on the root makes the reader-fed trees
 * take G pairs whatever the rates (within pb_readtree_pairs' bounds). */
#include "bootstrap.h"
#include "clock.h"
#include "digest.h"
#include "fs_kind.h"
#include "phases.h"
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SHARED_NO, SHARED_AUTO, SHARED_YES };

/* What one node sees at SOURCE's path. Fixed layout, same binary on all. */
struct src_view {
    int32_t ok; /* 0: could not look; msg says why */
    int32_t refuse; /* root, auto: its filesystem rules shared reads out; msg says why */
    uint64_t size;
    int64_t mt_sec, mt_nsec, ct_sec, ct_nsec;
    uint64_t h_first, h_last;
    uint64_t f_type, dev, ino;
    double read_rate, link_rate; /* root, auto: bytes/s, 0 when unknown */
    char msg[320];
};

static int parse_mode(const char *s)
{
    return !s || !strcmp(s, "auto") ? SHARED_AUTO : !strcmp(s, "yes") ? SHARED_YES : SHARED_NO;
}

static uint64_t chunk_hash(struct pb_source *src, const struct pb_plan *p, uint64_t k, unsigned char *buf,
                           struct src_view *v)
{
    uint64_t len = pb_plan_chunk_len(p, k);
    if (v->ok && pb_source_read(src, pb_plan_chunk_offset(p, k), buf, len, v->msg, sizeof v->msg) < 0)
        v->ok = 0;
    return v->ok ? pb_chunk_hash(buf, len) : 0;
}

/* Size, times, and the checksums of the first and last chunk of the file
 * src has open (the plan's chunks: SOURCE's size, the root's chunk size). */
static void look(struct pb_source *src, const struct pb_plan *p, struct src_view *v)
{
    v->ok = 1;
    v->size = (uint64_t)src->st.st_size;
    v->mt_sec = src->st.st_mtim.tv_sec;
    v->mt_nsec = src->st.st_mtim.tv_nsec;
    v->ct_sec = src->st.st_ctim.tv_sec;
    v->ct_nsec = src->st.st_ctim.tv_nsec;
    v->dev = (uint64_t)src->st.st_dev;
    v->ino = (uint64_t)src->st.st_ino;
    unsigned long f_type = 0;
    if (pb_source_fs_type(src, &f_type, v->msg, sizeof v->msg) < 0) {
        v->ok = 0;
        return;
    }
    v->f_type = f_type;
    if (v->size != p->file_size) /* differs: nothing more to compare */
        return;
    unsigned char *buf = malloc(p->chunk_size ? p->chunk_size : 1);
    if (!buf) {
        v->ok = 0;
        snprintf(v->msg, sizeof v->msg, "out of memory for one chunk");
        return;
    }
    v->h_first = p->nchunks ? chunk_hash(src, p, 0, buf, v) : 0;
    v->h_last = p->nchunks ? chunk_hash(src, p, p->nchunks - 1, buf, v) : 0;
    free(buf);
}

/* Root, auto: how fast SOURCE reads here, in bytes/s (0: could not tell).
 * The first chunks, at most 64 MiB or about 100 ms: the transfer reads
 * them again, from the page cache if they stay there. */
static double read_rate(struct stage *st)
{
    const struct pb_plan *p = &st->plan;
    const uint64_t most = 64ull << 20;
    unsigned char *buf = malloc(p->chunk_size ? p->chunk_size : 1);
    uint64_t done = 0;
    char err[200];
    double t0 = pb_now(), t = t0;
    for (uint64_t k = 0; buf && k < p->nchunks && done < most && t - t0 < 0.1; k++, t = pb_now()) {
        if (pb_source_read(&st->src, pb_plan_chunk_offset(p, k), buf, pb_plan_chunk_len(p, k), err, sizeof err) < 0)
            break; /* the transfer's own read will say why */
        done += pb_plan_chunk_len(p, k);
    }
    free(buf);
    return done && t > t0 ? (double)done / (t - t0) : 0;
}

/* Root, auto: the link rate in bytes/s, 0 where unknown (one machine, or
 * an interface that does not say). */
static double link_rate(const struct stage *st)
{
    char ifname[32];
    if (strcmp(st->meta.transport, "tcp") || st->bi->all_local)
        return 0;
    return (double)pb_tcp_link_mbit(st->o.tcp_if, ifname, sizeof ifname) * 1e6 / 8;
}

static const char *leader_path(const struct stage *st)
{
    char name[64];
    snprintf(name, sizeof name, "P2PBCAST_TEST_SOURCE_OF_RANK_%d", st->bi->rank);
    const char *alt = getenv(name);
    return alt && *alt ? alt : st->source;
}

/* 0 when mine is the root's file; else 1 with the difference in why. */
static int differs(const struct src_view *root, const struct src_view *mine, const char *path, char *why, size_t n)
{
    if (!mine->ok)
        snprintf(why, n, "%s", mine->msg);
    else if (mine->size != root->size)
        snprintf(why, n, "SOURCE '%s' is %llu bytes here, %llu on the root", path, (unsigned long long)mine->size,
                 (unsigned long long)root->size);
    else if (mine->mt_sec != root->mt_sec || mine->mt_nsec != root->mt_nsec)
        snprintf(why, n, "SOURCE '%s' has mtime %lld.%09lld here, %lld.%09lld on the root", path,
                 (long long)mine->mt_sec, (long long)mine->mt_nsec, (long long)root->mt_sec, (long long)root->mt_nsec);
    else if (mine->ct_sec != root->ct_sec || mine->ct_nsec != root->ct_nsec)
        snprintf(why, n, "SOURCE '%s' has ctime %lld.%09lld here, %lld.%09lld on the root", path,
                 (long long)mine->ct_sec, (long long)mine->ct_nsec, (long long)root->ct_sec, (long long)root->ct_nsec);
    else if (mine->h_first != root->h_first || mine->h_last != root->h_last)
        snprintf(why, n, "SOURCE '%s' has other contents here than on the root (checksum of the %s chunk)", path,
                 mine->h_first != root->h_first ? "first" : "last");
    else
        return 0;
    return 1;
}

/* Root, auto: does SOURCE's filesystem let the other nodes read it for us?
 * Where client caches are coherent (fs_kind.h), yes; on one machine, where
 * every node must then open the root's very inode, yes; else no (NFS and
 * the like only with --source-shared=yes). 0, or 1 with the reason in msg. */
static int fs_refuses(const struct stage *st, struct src_view *v)
{
    char b[32];
    const char *name = pb_fs_name((unsigned long)v->f_type, b, sizeof b);
    enum pb_fs_kind kind = pb_fs_kind((unsigned long)v->f_type);
    if (kind == PB_FS_COHERENT || st->bi->all_local)
        return 0;
    snprintf(v->msg, sizeof v->msg, "SOURCE '%.120s' is on %s, %s; --source-shared=yes reads in parallel anyway",
             st->source, name,
             kind == PB_FS_CLIENT_CACHED ? "whose clients cache on their own (another node may read stale bytes)"
                                         : "a local filesystem, and the nodes are not all this machine");
    return 1;
}

/* Auto: mine must also be on the root's kind of filesystem, and on one
 * machine the root's inode. 0, or 1 with the reason in why. */
static int auto_differs(const struct stage *st, const struct src_view *root, const struct src_view *mine,
                        const char *path, char *why, size_t n)
{
    char b1[32], b2[32];
    if (pb_fs_kind((unsigned long)root->f_type) == PB_FS_COHERENT && mine->f_type != root->f_type)
        snprintf(why, n, "SOURCE '%s' is on %s here, %s on the root", path,
                 pb_fs_name((unsigned long)mine->f_type, b1, sizeof b1),
                 pb_fs_name((unsigned long)root->f_type, b2, sizeof b2));
    else if (pb_fs_kind((unsigned long)root->f_type) != PB_FS_COHERENT && st->bi->all_local &&
             (mine->dev != root->dev || mine->ino != root->ino))
        snprintf(why, n, "SOURCE '%s' is another file here than on the root, on this same machine (device and inode)",
                 path);
    else
        return 0;
    return 1;
}

/* A non-root leader: open SOURCE, look, compare, and say so in the vote. */
static void leader_vote(struct stage *st, const struct src_view *rv, int mode, struct pb_vote *mine)
{
    struct src_view v = { 0 };
    const char *path = leader_path(st);
    char why[480];
    if (pb_source_open(&st->src, path, v.msg, sizeof v.msg) == 0)
        look(&st->src, &st->plan, &v);
    if (!differs(rv, &v, path, why, sizeof why) &&
        (mode == SHARED_YES || !auto_differs(st, rv, &v, path, why, sizeof why)))
        return;
    if (mode == SHARED_YES) {
        char m[sizeof mine->msg];
        snprintf(m, sizeof m, "%.400s (--source-shared=yes needs every node to see the same SOURCE)", why);
        pb_vote_set(mine, P2PBCAST_ERR_SOURCE, 0, m);
    } else {
        mine->manifest = 1; /* at this point: "cannot share" */
        pb_copy_str(mine->msg, sizeof mine->msg, why);
    }
}

/* Every node reads: the ring allgather where the plan has the ring, the
 * trees fed by readers where it has the trees (sched_shared_tree.c). Same
 * on every rank: meta.schedule came from the root. */
static int shared_schedule(const struct stage *st)
{
    return st->meta.schedule == PB_SCHED_TREE ? PB_SCHED_READTREE : PB_SCHED_SHARED;
}

/* Root, the reader-fed trees: G pairs (plan.h), as many as the rates ask
 * for (pb_shared_choose gave it as *pairs), the test hook's, within the
 * plan's bounds and, with --slots, two slots per tree. */
static int32_t choose_pairs(struct stage *st, const struct src_view *rv, int G)
{
    char why[200];
    struct pb_plan p = st->plan;
    p.pairs = (int)pb_test_hook(st, "P2PBCAST_TEST_READTREE_PAIRS", G);
    if (p.pairs != G)
        snprintf(why, sizeof why, "asked for by P2PBCAST_TEST_READTREE_PAIRS=%d", p.pairs);
    else
        pb_readtree_choose_pairs(st->bi->nleaders, rv->read_rate, rv->link_rate, why, sizeof why);
    G = pb_readtree_pairs(&p);
    uint32_t slots = st->o.slots ? st->o.slots : pb_readtree_slots(st->meta.slots, G, st->meta.chunk);
    while (G > 1 && slots < 4u * (uint32_t)G)
        slots = st->o.slots ? st->o.slots : pb_readtree_slots(st->meta.slots, --G, st->meta.chunk);
    if (st->verbose)
        fprintf(stderr, "p2pbcast: readtree: %d pair%s of trees, %d readers, %u slots per node: %s%s\n", G,
                G > 1 ? "s" : "", 2 * G, slots, why,
                G != p.pairs ? " (fewer: 2G <= nodes, at most 4, 2 slots per tree within the pool)" : "");
    return G;
}

/* Root: every vote said "same file"? Then which schedule (0: the root
 * reads alone) and, for the reader-fed trees, how many pairs. With -v,
 * why. */
static int32_t root_decides(struct stage *st, const struct src_view *rv, int mode, int32_t *pairs)
{
    const struct pb_boot_info *bi = st->bi;
    if (rv->refuse) {
        if (st->verbose)
            fprintf(stderr, "p2pbcast: source shared auto: no: %s; only the root reads SOURCE\n", rv->msg);
        return 0;
    }
    for (int i = 0; i < bi->nleaders; i++)
        if (st->ag.votes[i].manifest) {
            if (st->verbose)
                fprintf(stderr, "p2pbcast: source shared auto: no: %s: %.400s; only the root reads SOURCE\n",
                        bi->names[i], st->ag.votes[i].msg);
            return 0;
        }
    int32_t pick = shared_schedule(st);
    int G = pb_readtree_choose_pairs(bi->nleaders, rv->read_rate, rv->link_rate, NULL, 0);
    if (mode == SHARED_AUTO) {
        char why[400];
        /* An explicit --schedule keeps its family: the trees or the ring. */
        int only = !st->o.schedule || !strcmp(st->o.schedule, "auto") ? 0 : shared_schedule(st);
        pick = pb_shared_choose(st->meta.size, bi->nleaders, bi->root_leader, st->plan.chunk_size, rv->read_rate,
                                rv->link_rate,
                                st->meta.schedule, only, &G, why, sizeof why);
        if (st->verbose)
            fprintf(stderr, "p2pbcast: source shared auto: %s\n", why);
        if (pick < 0) {
            if (st->verbose)
                fprintf(stderr, "p2pbcast: source shared auto: no: all %d nodes see the same SOURCE, but reading "
                                "it at other nodes does not pay here; only the root reads SOURCE\n", bi->nleaders);
            return 0;
        }
    }
    *pairs = pick == PB_SCHED_READTREE ? choose_pairs(st, rv, G) : 1;
    char how[96];
    if (pick != PB_SCHED_READTREE)
        snprintf(how, sizeof how, "each reads its share, ring allgather");
    else if (*pairs == 1)
        snprintf(how, sizeof how, "the tops of the two trees each read half of it (readtree)");
    else
        snprintf(how, sizeof how, "the tops of the %d trees each read 1/%d of it (readtree, %d pairs)", 2 * *pairs,
                 2 * *pairs, *pairs);
    if (st->verbose)
        fprintf(stderr, "p2pbcast: source shared %s: yes: all %d nodes see the same SOURCE (size, mtime, ctime, "
                        "first and last chunk); %s\n",
                st->o.source_shared ? st->o.source_shared : "auto", bi->nleaders, how);
    return pick;
}

/* Before looking: is shared mode worth asking for? 0 with -v's reason when not. */
static int worth_asking(struct stage *st, int mode)
{
    const char *why = NULL;
    if (mode == SHARED_NO)
        why = "--source-shared=no";
    else if (st->dtree.on)
        why = "a directory SOURCE (read by the root)";
    else if (st->bi->nleaders == 1)
        why = "one node";
    else if (st->meta.size == 0)
        why = "empty SOURCE";
    if (why && st->verbose && st->root)
        fprintf(stderr, "p2pbcast: source shared: no (%s): only the root reads SOURCE\n", why);
    return !why;
}

int pb_phase_source_shared(struct stage *st)
{
    int mode = parse_mode(st->o.source_shared);
    if (!worth_asking(st, mode))
        return 0;
    struct src_view rv = { 0 };
    if (st->root) {
        look(&st->src, &st->plan, &rv);
        rv.refuse = rv.ok && mode == SHARED_AUTO && fs_refuses(st, &rv);
        /* auto weighs both; yes with the trees needs both for G (with an
         * unknown link rate, one pair: no read to time) */
        if (rv.ok && !rv.refuse && (mode == SHARED_AUTO || shared_schedule(st) == PB_SCHED_READTREE)) {
            rv.link_rate = link_rate(st);
            if (mode == SHARED_AUTO || rv.link_rate > 0)
                rv.read_rate = read_rate(st);
        }
    }
    int rc = pb_agree_bcast(&st->ag, &rv, sizeof rv);
    if (rc == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    struct pb_vote mine = { 0 };
    if (rc != 0)
        pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, "MPI broadcast of SOURCE's description failed");
    else if (st->root && !rv.ok)
        pb_vote_set(&mine, P2PBCAST_ERR_SOURCE, 0, rv.msg);
    else if (st->bi->is_leader && !st->root && !rv.refuse)
        leader_vote(st, &rv, mode, &mine);
    if ((rc = pb_agree(&st->ag, &mine, &st->d, 0)) != 0)
        return rc;
    int32_t d[2] = { 0, 1 }; /* the schedule (0: the root reads), the reader-fed trees' pairs */
    if (st->root)
        d[0] = root_decides(st, &rv, mode, &d[1]);
    if ((rc = pb_agree_bcast(&st->ag, d, sizeof d)) != 0)
        return rc == 2 ? pb_agree_interrupted(&st->ag, &st->d) : (st->d.code = P2PBCAST_ERR_INTERNAL);
    st->shared = d[0] != 0;
    if (d[0]) {
        st->plan.schedule = d[0];
        st->plan.pairs = d[1];
        if (!st->o.slots)
            st->meta.slots = pb_readtree_slots(st->meta.slots, pb_readtree_pairs(&st->plan), st->meta.chunk);
    } else if (!st->root) {
        pb_source_close(&st->src);
    }
    return 0;
}

uint64_t pb_source_shared_report(const struct stage *st, int *readers, int say)
{
    const struct pb_boot_info *bi = st->bi;
    const unsigned char *skip = st->nskip ? st->skip : NULL;
    *readers = st->shared ? bi->nleaders : 1;
    if (!st->have_plan)
        return 0;
    if (!st->shared) {
        uint64_t sum = 0;
        for (uint64_t k = 0; k < st->plan.nchunks; k++)
            if (!skip || !((skip[k / 8] >> (k % 8)) & 1))
                sum += pb_plan_chunk_len(&st->plan, k);
        return sum;
    }
    /* Readers: the members the schedule gives chunks to read (the
     * allgather: all; the reader-fed trees: the two tops), whatever the size. */
    unsigned char *reads = calloc((size_t)bi->nleaders, 1);
    uint64_t total = 0;
    for (uint64_t k = 0; reads && k < (uint64_t)bi->nleaders; k++)
        reads[pb_plan_reader(&st->plan, bi->root_leader, k)] = 1;
    *readers = 0;
    for (int i = 0; i < bi->nleaders; i++) {
        uint64_t b = pb_shared_read_bytes(&st->plan, i, skip);
        char s[32];
        if (say && (!reads || reads[i]))
            fprintf(stderr, "p2pbcast: %s read %s of SOURCE\n", bi->names[i], pb_fmt_bytes(b, s, sizeof s));
        total += b;
        *readers += !reads || reads[i];
    }
    free(reads);
    return total;
}
