/* dest.c — the phases that concern DEST on each node: where it writes (2),
 * which nodes share one file (2b), the temporary copy (3) and its name at
 * the end (6). */
#include "dest_path.h"
#include "phases.h"
#include "bootstrap.h"
#include "shared_dest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int expand_dest(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    struct pb_vote mine = { 0 };
    if (bi->is_leader) {
        char perr[256];
        if (pb_expand_dest(st->dest, bi->host, bi->rank, st->dpath, sizeof st->dpath, perr, sizeof perr) < 0)
            pb_vote_set(&mine, P2PBCAST_ERR_USAGE, 0, perr);
    }
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

/* Root: do the views of the shared-DEST probes agree? The verdict goes to
 * every rank: {1 or 0, the first leader whose view is not confirmed}. */
static int check_views(struct stage *st, const struct pb_probe_view *mine, int32_t verdict[2])
{
    const struct pb_boot_info *bi = st->bi;
    struct pb_probe_view *all = st->root ? calloc((size_t)bi->nleaders, sizeof *all) : NULL;
    int rc = 0;
    if (bi->is_leader)
        rc = st->root && !all ? -1 : pb_agree_gather(&st->ag, mine, all, sizeof *mine);
    verdict[0] = 1;
    verdict[1] = -1;
    if (st->root)
        verdict[0] = rc == 0 && pb_probe_views_agree(all, bi->nleaders, &verdict[1]);
    free(all);
    int brc = pb_agree_bcast(&st->ag, verdict, 2 * sizeof *verdict);
    return rc == 2 || brc == 2 ? 2 : rc < 0 || brc < 0 ? -1 : 0;
}

/* Nodes that see one DEST file on a shared filesystem: only the
 * lowest-numbered of them writes it; the others still receive, check and
 * pass chunks on. All probes exist before anyone looks (an agreement
 * point); the root then checks that what the leaders saw is mutual, since
 * a local user may plant probes: if not, every node writes its own copy. */
static int find_sharers(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    st->writes = bi->is_leader;
    st->sharers = 1;
    uint64_t token = 0;
    if (bi->is_leader && pb_boot_random(&token, sizeof token) == 0)
        (void)pb_probe_create(st->dpath, st->meta.probe_nonce, bi->leader, token, st->probe, sizeof st->probe);
    if (pb_agree_ok(st))
        return st->d.code;
    struct pb_probe_view mine = { bi->leader, 1, (uint64_t)bi->leader };
    if (bi->is_leader && st->probe[0])
        pb_probe_scan(st->dpath, st->meta.probe_nonce, bi->leader, bi->nleaders, &mine);
    int32_t verdict[2];
    int rc = check_views(st, &mine, verdict);
    if (rc == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    if (rc < 0) {
        st->d.code = P2PBCAST_ERR_INTERNAL;
        snprintf(st->d.msg, sizeof st->d.msg, "MPI exchange of the shared-DEST views failed");
        return st->d.code;
    }
    if (verdict[0] && bi->is_leader) {
        st->writes = mine.writer == bi->leader;
        st->sharers = mine.sharers;
        if (st->verbose && st->sharers > 1)
            fprintf(stderr, "p2pbcast: %s: DEST '%s' is shared by %d nodes; %s\n", bi->names[bi->leader],
                    st->dpath, st->sharers, st->writes ? "this node writes it" : "written by another node");
    } else if (!verdict[0] && st->root) {
        fprintf(stderr,
                "p2pbcast: warning: the shared-DEST probes seen by %s are not confirmed by the nodes they name "
                "(a file planted next to DEST?): every node writes its own copy\n",
                verdict[1] >= 0 ? bi->names[verdict[1]] : "a node");
    }
    pb_probe_remove(st->probe);
    return 0;
}

int pb_phase_dest(struct stage *st)
{
    if (expand_dest(st))
        return st->d.code;
    return find_sharers(st);
}

/* The temporary copy with its space reserved: one posix_fallocate that can
 * take long (emulated block by block where the filesystem lacks it). */
struct open_job {
    struct stage *st;
    char *err;
    size_t errlen;
};

static int open_step(void *arg)
{
    struct open_job *j = arg;
    return pb_sink_open(&j->st->sink, j->st->dpath, &j->st->want, j->err, j->errlen);
}

int pb_phase_open_sink(struct stage *st)
{
    if (st->dtree.on)
        return pb_dtree_open(st);
    const struct pb_meta *m = &st->meta;
    st->want = (struct pb_sink_want){
        .size = m->size,
        .mode = (mode_t)m->mode,
        .mtime = { .tv_sec = (time_t)m->mt_sec, .tv_nsec = (long)m->mt_nsec },
        .force = !!(st->o.flags & P2PBCAST_FORCE),
        .source = st->root ? &st->src.st : NULL,
        .resume = !!(st->o.flags & P2PBCAST_RESUME),
        .chunk_size = m->chunk,
        /* testing only: the named-temporary path of NFS, Lustre, GPFS */
        .no_tmpfile = getenv("P2PBCAST_TEST_NO_TMPFILE") != NULL,
    };
    struct pb_vote mine = { 0 };
    char err[512];
    if (st->writes) {
        if (pb_stage_run_alive(st, open_step, &(struct open_job){ st, err, sizeof err }) < 0)
            pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, err);
        else
            st->sink_open = 1;
    }
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

/* Every node holds a verified copy: give it its name. */
int pb_phase_commit(struct stage *st)
{
    struct pb_vote mine = { 0 };
    char err[512];
    pb_stage_alive(st, "P2PBCAST_TEST_REMOVE_DELAY_US"); /* a tree's sink ticks it removing the tree it replaces */
    if (st->writes && (st->dtree.on ? pb_dtree_sink_commit(&st->dtree.sink, err, sizeof err)
                                   : pb_sink_commit(&st->sink, err, sizeof err)) < 0)
        pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, err);
    pb_stage_alive(st, NULL); /* the test delay slows this step alone */
    return pb_agree(&st->ag, &mine, &st->d, 0);
}
