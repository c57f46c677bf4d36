/* tree_stage.h — a directory SOURCE in the phases of one broadcast
 * (dirtree_stage.c): the root walks it in phase 1, the manifest reaches every
 * node leader before the data (phase 1b), nodes build the tree in a staging
 * directory (phase 3) and the engine's I/O goes to the tree's files. */
#ifndef P2PBCAST_DIRTREE_STAGE_H
#define P2PBCAST_DIRTREE_STAGE_H

#include "dirtree.h"

#include <limits.h>
#include <sys/stat.h>

struct stage;
struct pb_summary;

struct pb_dtree_job {
    int on;                    /* SOURCE is a directory: meta.mode has S_IFDIR */
    struct pb_dtree man;        /* leaders: the parsed manifest */
    unsigned char *wire;       /* root: the encoded manifest, until broadcast */
    size_t wire_len;
    struct stat top;           /* root: SOURCE (refused as DEST) */
    struct pb_dtree_source src; /* root */
    int src_open;
    struct pb_dtree_sink sink;  /* nodes that write */
    int sink_open;
    char dest[PATH_MAX];       /* DEST_DIR without trailing slashes */
    struct pb_dtree_cursor files; /* root: files done, for the progress line */
    uint64_t received;         /* bytes of manifest this rank received */
};

/* Root, phase 1: 1 SOURCE is a directory, walked (meta filled), 0 it is
 * not, -1 failed (meta.code and meta.msg set). */
int pb_dtree_root_meta(struct stage *st);
/* Phase 1b (no-op for a file): the manifest to every node leader, checked;
 * the other ranks only take part in the agreement. */
int pb_phase_manifest(struct stage *st);
/* Phase 3 for a tree: the staging directory, every entry, space reserved. */
int pb_dtree_open(struct stage *st);
void pb_dtree_release(struct stage *st);
/* From the abort path: remove the staging directory. */
void pb_dtree_abort(struct stage *st);
/* Root, before the transfer: the progress line counts files too. */
void pb_dtree_progress(struct stage *st);
/* Root: the tree's counts in the summary. */
void pb_dtree_summary(const struct stage *st, struct pb_summary *s);

#endif
