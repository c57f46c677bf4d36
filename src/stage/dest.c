/* dest.c — the phases that concern DEST on each node: where it writes (2),
 * which nodes share one file (2b), the temporary copy (3) and its name at
 * the end (6). */
#include "dest_path.h"
#include "phases.h"
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

/* Nodes that see one DEST file on a shared filesystem: only the
 * lowest-numbered of them writes it; the others still receive, check and
 * pass chunks on. Two agreement points: all probes exist before anyone
 * looks, and nobody removes its probe before everyone has looked. */
static int find_sharers(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    st->writes = bi->is_leader;
    st->sharers = 1;
    if (bi->is_leader)
        (void)pb_probe_create(st->dpath, st->meta.secret, bi->leader, st->probe, sizeof st->probe);
    if (pb_agree_ok(st))
        return st->d.code;
    if (bi->is_leader && st->probe[0]) {
        int w = pb_probe_writer(st->dpath, st->meta.secret, bi->leader, &st->sharers);
        st->writes = w == bi->leader;
        if (st->verbose && st->sharers > 1)
            fprintf(stderr, "p2pbcast: %s: DEST '%s' is shared by %d nodes; %s\n", bi->names[bi->leader],
                    st->dpath, st->sharers, st->writes ? "this node writes it" : "written by another node");
    }
    if (pb_agree_ok(st))
        return st->d.code;
    pb_probe_remove(st->probe);
    return 0;
}

int pb_phase_dest(struct stage *st)
{
    if (expand_dest(st))
        return st->d.code;
    return find_sharers(st);
}

int pb_phase_open_sink(struct stage *st)
{
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
        if (pb_sink_open(&st->sink, st->dpath, &st->want, err, sizeof err) < 0)
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
    if (st->writes && pb_sink_commit(&st->sink, err, sizeof err) < 0)
        pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, err);
    return pb_agree(&st->ag, &mine, &st->d, 0);
}
