/* dirtree_stage.c — a directory SOURCE through the phases; see tree_stage.h.
 * The engine does not know: it moves the tree's data stream like a file. */
#include "dirtree_stage.h"

#include "bootstrap.h"
#include "dest_path.h"
#include "phases.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PIECE (4u << 20) /* the manifest is broadcast in pieces of this size */

/* Root: is its own DEST_DIR inside SOURCE? A tree is not copied into
 * itself (the walk would race with the staging directory). */
static int dest_inside_source(struct stage *st)
{
    char dest[PATH_MAX], perr[256], src[PATH_MAX], parent[PATH_MAX];
    if (pb_expand_dest(st->dest, st->bi->host, st->bi->rank, dest, sizeof dest, perr, sizeof perr) < 0 ||
        !realpath(st->source, src))
        return 0;
    size_t n = strlen(dest);
    while (n > 1 && dest[n - 1] == '/')
        dest[--n] = 0;
    char *slash = strrchr(dest, '/');
    if (slash)
        *(slash == dest ? slash + 1 : slash) = 0;
    if (!realpath(slash ? dest : ".", parent))
        return 0;
    size_t sl = strlen(src);
    return !strncmp(parent, src, sl) && (parent[sl] == '/' || parent[sl] == 0 || sl == 1);
}

int pb_dtree_root_meta(struct stage *st)
{
    struct pb_dtree_job *tj = &st->dtree;
    struct pb_meta *m = &st->meta;
    if (stat(st->source, &tj->top) < 0 || !S_ISDIR(tj->top.st_mode))
        return 0;
    char err[400];
    if (st->o.flags & P2PBCAST_RESUME) {
        m->code = P2PBCAST_ERR_USAGE;
        snprintf(m->msg, sizeof m->msg,
                 "--resume does not work with a directory SOURCE ('%.200s'): run again without it", st->source);
        return -1;
    }
    if (dest_inside_source(st)) {
        m->code = P2PBCAST_ERR_SOURCE;
        snprintf(m->msg, sizeof m->msg,
                 "SOURCE '%.180s' is a directory that contains DEST_DIR '%.180s' (a tree is not copied into itself)",
                 st->source, st->dest);
        return -1;
    }
    struct pb_dtree walked;
    int rc = pb_dtree_walk(st->source, &walked, st->verbose ? stderr : NULL,
                           pb_stage_alive(st, "P2PBCAST_TEST_WALK_DELAY_US"), err, sizeof err);
    pb_stage_alive(st, NULL); /* the test delay slows this step alone */
    if (rc < 0) {
        m->code = P2PBCAST_ERR_SOURCE;
        pb_copy_str(m->msg, sizeof m->msg, err);
        return -1;
    }
    if (walked.nskipped && !st->quiet)
        fprintf(stderr, "p2pbcast: warning: SOURCE '%s': skipped %llu socket(s), FIFO(s) or device(s)%s\n",
                st->source, (unsigned long long)walked.nskipped, st->verbose ? "" : " (-v lists them)");
    rc = pb_dtree_encode(&walked, &tj->wire, &tj->wire_len);
    /* The walk's identities (the same entries in the same order) outlive it:
     * the reader checks every file against them. */
    struct pb_dtree_ident *id = walked.id, top_id = walked.top_id;
    walked.id = NULL;
    pb_dtree_free(&walked);
    if (rc < 0) {
        free(id);
        m->code = P2PBCAST_ERR_INTERNAL;
        snprintf(m->msg, sizeof m->msg, "out of memory for the manifest of SOURCE '%.300s'", st->source);
        return -1;
    }
    /* The root uses what every node parses: its own encoding, parsed. */
    rc = pb_dtree_parse(tj->wire, tj->wire_len, &tj->man, err, sizeof err);
    if (rc == 0) {
        tj->man.id = id;
        tj->man.top_id = top_id;
    } else {
        free(id);
    }
    if (rc < 0 || pb_dtree_source_open(&tj->src, &tj->man, st->source, err, sizeof err) < 0) {
        m->code = P2PBCAST_ERR_SOURCE;
        snprintf(m->msg, sizeof m->msg, "SOURCE '%.200s': %.200s", st->source, err);
        return -1;
    }
    tj->src_open = 1;
    m->size = tj->man.stream_size;
    m->mode = S_IFDIR | tj->man.mode;
    m->mt_sec = tj->man.mt_sec;
    m->mt_nsec = tj->man.mt_nsec;
    return 1;
}

static int bcast_failed(struct stage *st, int rc)
{
    if (rc == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    st->d.code = P2PBCAST_ERR_INTERNAL;
    snprintf(st->d.msg, sizeof st->d.msg, "MPI broadcast of the manifest failed");
    return st->d.code;
}

/* The manifest's bytes, piece by piece, from the root to every leader,
 * into buf (NULL: received and dropped, in scratch). 0, or
 * pb_agree_bcast_leaders's failure. */
static int bcast_pieces(struct stage *st, unsigned char *buf, uint64_t len)
{
    unsigned char *scratch = NULL;
    if (!buf && len && !(scratch = malloc(len < PIECE ? (size_t)len : PIECE)))
        return -1;
    int rc = 0;
    for (uint64_t off = 0; !rc && off < len; off += PIECE) {
        size_t n = len - off < PIECE ? (size_t)(len - off) : PIECE;
        rc = pb_agree_bcast_leaders(&st->ag, buf ? buf + off : scratch, n);
        if (!rc && !st->root)
            st->dtree.received += n;
    }
    free(scratch);
    return rc;
}

/* A leader other than the root: check the hash, parse strictly. */
static void take_manifest(struct stage *st, const unsigned char *buf, uint64_t len, uint64_t hash,
                          struct pb_vote *mine)
{
    char err[400];
    if (!buf) {
        snprintf(err, sizeof err, "cannot hold a manifest of %llu bytes (out of memory or over the limit)",
                 (unsigned long long)len);
        pb_vote_set(mine, P2PBCAST_ERR_INTERNAL, 0, err);
    } else if (XXH3_64bits(buf, (size_t)len) != hash) {
        pb_vote_set(mine, P2PBCAST_ERR_TRANSFER, 0, "the manifest does not match the root's checksum");
    } else if (pb_dtree_parse(buf, (size_t)len, &st->dtree.man, err, sizeof err) < 0) {
        pb_vote_set(mine, P2PBCAST_ERR_TRANSFER, 0, err);
    }
}

/* Testing only (P2PBCAST_TEST_MANIFEST=FILE): the root sends FILE's bytes as
 * the manifest, as a hostile or broken peer would, and votes failure
 * itself, so such a run can never report success. */
static void test_swap_manifest(struct pb_dtree_job *tj, struct pb_vote *mine)
{
    const char *path = getenv("P2PBCAST_TEST_MANIFEST");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(PIECE);
    size_t n = f && buf ? fread(buf, 1, PIECE, f) : 0;
    if (f)
        fclose(f);
    if (!n) {
        free(buf);
        pb_vote_set(mine, P2PBCAST_ERR_INTERNAL, 0, "P2PBCAST_TEST_MANIFEST: cannot read the test manifest");
        return;
    }
    free(tj->wire);
    tj->wire = buf;
    tj->wire_len = n;
    pb_vote_set(mine, P2PBCAST_ERR_INTERNAL, 0, "P2PBCAST_TEST_MANIFEST: sent a test manifest (this run fails)");
}

/* A leader's part: the manifest from the root to every leader, checked.
 * 0, or the code of a failed broadcast (d filled). */
static int share_manifest(struct stage *st, struct pb_vote *mine)
{
    struct pb_dtree_job *tj = &st->dtree;
    if (st->root)
        test_swap_manifest(tj, mine);
    uint64_t head[2] = { tj->wire_len, st->root ? XXH3_64bits(tj->wire, tj->wire_len) : 0 };
    int rc = pb_agree_bcast_leaders(&st->ag, head, sizeof head);
    if (rc)
        return bcast_failed(st, rc);
    unsigned char *buf = st->root ? tj->wire : NULL;
    if (!st->root && head[0] <= PB_DTREE_MAX_BYTES)
        buf = malloc(head[0] ? (size_t)head[0] : 1);
    rc = bcast_pieces(st, buf, head[0]);
    if (!rc && !st->root)
        take_manifest(st, buf, head[0], head[1], mine);
    if (!st->root)
        free(buf);
    free(tj->wire);
    tj->wire = NULL;
    if (rc)
        return bcast_failed(st, rc);
    if (st->root && st->verbose)
        fprintf(stderr, "p2pbcast: manifest: %llu bytes, %zu entries, %llu bytes of data\n",
                (unsigned long long)head[0], tj->man.n, (unsigned long long)tj->man.stream_size);
    return 0;
}

int pb_phase_manifest(struct stage *st)
{
    struct pb_dtree_job *tj = &st->dtree;
    if ((st->meta.mode & S_IFMT) != S_IFDIR)
        return 0;
    tj->on = 1;
    /* trailing slashes make no difference: DEST_DIR names the new tree */
    size_t dl = strlen(st->dest);
    while (dl > 1 && st->dest[dl - 1] == '/')
        dl--;
    snprintf(tj->dest, sizeof tj->dest, "%.*s", (int)dl, st->dest);
    st->dest = tj->dest;
    /* Only the leaders write: the other ranks of a node need nothing of the
     * manifest, and wait for the outcome in the agreement below. */
    struct pb_vote mine = { 0 };
    int rc = st->bi->is_leader ? share_manifest(st, &mine) : 0;
    if (getenv("P2PBCAST_TEST_MANIFEST_BYTES")) /* testing: who received it */
        fprintf(stderr, "p2pbcast: test: %s (rank %d): %llu bytes of manifest received\n", st->bi->host,
                st->bi->rank, (unsigned long long)tj->received);
    return rc ? rc : pb_agree(&st->ag, &mine, &st->d, 0);
}

int pb_dtree_open(struct stage *st)
{
    struct pb_dtree_job *tj = &st->dtree;
    struct pb_vote mine = { 0 };
    char err[512];
    if (st->writes) {
        if (pb_dtree_sink_open(&tj->sink, &tj->man, st->dpath, !!(st->o.flags & P2PBCAST_FORCE),
                              st->root ? &tj->top : NULL, pb_stage_alive(st, "P2PBCAST_TEST_CREATE_DELAY_US"), err,
                              sizeof err) < 0)
            pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, err);
        else
            tj->sink_open = 1;
        pb_stage_alive(st, NULL); /* the test delay slows this step alone; the sink ticks on at commit */
    }
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

void pb_dtree_abort(struct stage *st)
{
    if (st->dtree.sink_open)
        pb_dtree_sink_abort(&st->dtree.sink);
    st->dtree.sink_open = 0;
}

void pb_dtree_release(struct stage *st)
{
    struct pb_dtree_job *tj = &st->dtree;
    pb_dtree_abort(st); /* after a commit this only closes */
    if (tj->src_open)
        pb_dtree_source_close(&tj->src);
    tj->src_open = 0;
    free(tj->wire);
    tj->wire = NULL;
    struct pb_dtree counts = tj->man; /* for the report */
    pb_dtree_free(&tj->man);
    tj->man.nfiles = counts.nfiles;
    tj->man.ndirs = counts.ndirs;
    tj->man.nsymlinks = counts.nsymlinks;
    tj->man.nhardlinks = counts.nhardlinks;
    tj->man.nskipped = counts.nskipped;
}

static uint64_t files_done(void *ctx, uint64_t bytes)
{
    struct pb_dtree_job *tj = ctx;
    return pb_dtree_files_done(&tj->man, bytes, &tj->files);
}

void pb_dtree_progress(struct stage *st)
{
    if (!st->dtree.on || !st->root)
        return;
    st->dtree.files = (struct pb_dtree_cursor){ 0 };
    pb_progress_files(&st->prog, st->dtree.man.nfiles, files_done, &st->dtree);
}

void pb_dtree_summary(const struct stage *st, struct pb_summary *s)
{
    const struct pb_dtree *t = &st->dtree.man;
    s->dirtree = st->dtree.on;
    s->files = t->nfiles;
    s->dirs = t->ndirs;
    s->symlinks = t->nsymlinks;
    s->hardlinks = t->nhardlinks;
    s->skipped = t->nskipped;
}
