/* tree_stage.h — a directory SOURCE in the phases of one broadcast
 * (tree_stage.c): the root walks it in phase 1, the manifest reaches every
 * rank before the data (phase 1b), nodes build the tree in a staging
 * directory (phase 3) and the engine's I/O goes to the tree's files. */
#ifndef P2PBCAST_TREE_STAGE_H
#define P2PBCAST_TREE_STAGE_H

#include "tree.h"

#include <limits.h>
#include <sys/stat.h>

struct stage;
struct pb_summary;

struct pb_tree_job {
    int on;                    /* SOURCE is a directory: meta.mode has S_IFDIR */
    struct pb_tree man;        /* leaders: the parsed manifest */
    unsigned char *wire;       /* root: the encoded manifest, until broadcast */
    size_t wire_len;
    struct stat top;           /* root: SOURCE (refused as DEST) */
    struct pb_tree_source src; /* root */
    int src_open;
    struct pb_tree_sink sink;  /* nodes that write */
    int sink_open;
    char dest[PATH_MAX];       /* DEST_DIR without trailing slashes */
};

/* Root, phase 1: 1 SOURCE is a directory, walked (meta filled), 0 it is
 * not, -1 failed (meta.code and meta.msg set). */
int pb_tree_root_meta(struct stage *st);
/* Phase 1b (no-op for a file): the manifest to every rank, checked. */
int pb_phase_manifest(struct stage *st);
/* Phase 3 for a tree: the staging directory, every entry, space reserved. */
int pb_tree_open(struct stage *st);
void pb_tree_release(struct stage *st);
/* From the abort path: remove the staging directory. */
void pb_tree_abort(struct stage *st);
/* Root: the tree's counts in the summary. */
void pb_tree_summary(const struct stage *st, struct pb_summary *s);

#endif
