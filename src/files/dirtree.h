/* dirtree.h — a directory SOURCE: the manifest that describes the tree, the
 * root's walk that builds it, and the two ends of the data stream (the root
 * reads the files, every node writes them into a staging directory).
 *
 * The files' data are one logical byte stream: each regular file's data
 * extents (holes left out), back to back, in manifest order. The engine
 * moves that stream like the contents of one file; an offset in it maps to
 * (file, offset in file) by binary search over the entries' stream offsets.
 *
 * Manifest order: depth first, names sorted bytewise, a directory before its
 * contents; compared component by component this is strictly increasing,
 * which the parser checks (no duplicates, every parent listed before as a
 * directory, so nothing can be created through a symbolic link of the tree).
 *
 * Wire format (little-endian, version 1):
 *   "P2PBTREE" u32 version, u32 mode, u32 uid, u32 gid, i64 mtime_s,
 *   u32 mtime_ns (the top directory), u64 entries, u64 skipped;
 *   per entry: u8 type, u32 mode, u32 uid, u32 gid, i64 mtime_s,
 *   u32 mtime_ns, u16 path length, path; then
 *     file:      u64 size, u32 extents, extents x (u64 offset, u64 length)
 *     symlink:   u16 target length, target
 *     hard link: u64 index of the group's first entry (a file before it)
 *     directory: nothing.
 * The manifest is checksummed (XXH3) and broadcast before any data. */
#ifndef P2PBCAST_DIRTREE_H
#define P2PBCAST_DIRTREE_H

#include "alive.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

enum pb_dtree_type { PB_DTREE_DIR = 1, PB_DTREE_FILE = 2, PB_DTREE_SYMLINK = 3, PB_DTREE_HARDLINK = 4 };

#define PB_DTREE_PATH_MAX 4095   /* bytes of a relative path (also a link target) */
#define PB_DTREE_MAX_EXTENTS 65536 /* more data extents than this: sent as one dense extent */
#define PB_DTREE_MAX_BYTES (1ull << 31) /* a manifest larger than this is refused */
#define PB_DTREE_FD_CACHE 64
#define PB_DTREE_DIR_CACHE 64 /* the root's open directories of SOURCE */

struct pb_extent {
    uint64_t off, len;
};

struct pb_dtree_entry {
    char *path;             /* relative, '/'-separated, NUL-terminated */
    char *target;           /* symlink: where it points (never followed) */
    struct pb_extent *ext;  /* file with several extents; else `one` */
    struct pb_extent one;
    uint64_t size;          /* file: size in bytes */
    uint64_t stream_off;    /* where this entry's data start in the stream */
    uint64_t link;          /* hard link: index of the group's first entry */
    int64_t mt_sec;
    uint32_t mt_nsec, mode, uid, gid, next;
    uint8_t type;
};

/* Root only, from the walk (never sent): what tells an entry from one that
 * replaced it on SOURCE's file system since it was listed. */
struct pb_dtree_ident {
    uint64_t dev, ino;
    int64_t ct_sec;   /* ctime */
    uint32_t ct_nsec;
};

struct pb_dtree {
    struct pb_dtree_entry *e;
    struct pb_dtree_ident *id;        /* after the walk: one per entry; NULL once parsed */
    struct pb_dtree_ident top_id;     /* after the walk: the top directory */
    size_t n, cap;
    uint32_t mode, uid, gid, mt_nsec; /* the top directory */
    int64_t mt_sec;
    uint64_t stream_size;             /* sum of every file's extents */
    uint64_t nfiles, ndirs, nsymlinks, nhardlinks, nskipped;
};

static inline const struct pb_extent *pb_dtree_extents(const struct pb_dtree_entry *e)
{
    return e->next > 1 ? e->ext : &e->one;
}

void pb_dtree_free(struct pb_dtree *t);

/* Root: walk the directory SOURCE (never following a symbolic link) and
 * fill t, with the identity of every entry (t->id); special files are skipped
 * and counted (listed on `list` when not NULL). One tick of alive (may be
 * NULL) per entry. 0 ok; -1 with err naming the path and the reason. */
int pb_dtree_walk(const char *source, struct pb_dtree *t, FILE *list, struct pb_alive *alive, char *err,
                  size_t errlen);

/* Serialize t; *out is malloc'd. 0 ok, -1 out of memory. */
int pb_dtree_encode(const struct pb_dtree *t, unsigned char **out, size_t *outlen);
/* Strict parse of len bytes: 0 ok; -1 with err naming the entry. t is
 * empty (freed) on failure. */
int pb_dtree_parse(const unsigned char *buf, size_t len, struct pb_dtree *t, char *err, size_t errlen);

/* A path fit for a message: control characters shown as '?', cut at n. */
const char *pb_dtree_show(const char *path, char *buf, size_t n);

/* The stream's pieces: calls fn for each (entry, offset in the file, offset
 * in the buffer, length) that [off, off+len) covers, in order. Returns the
 * first nonzero value of fn, or -1 (errno EINVAL) when the range is outside
 * the stream. */
typedef int (*pb_dtree_piece_fn)(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len);
int pb_dtree_pieces(const struct pb_dtree *t, uint64_t off, size_t len, pb_dtree_piece_fn fn, void *ctx);

/* Files complete within the first `off` bytes of the stream (an empty or
 * all-hole file once the stream reaches it), for the progress line. The
 * cursor moves forward with off, so a run's calls cost O(entries) in all
 * (a smaller off starts it again). Zero the cursor before the first call. */
struct pb_dtree_cursor {
    size_t next;    /* first entry not yet passed */
    uint64_t files; /* files among the entries passed */
    uint64_t off;   /* the last off asked for */
};
uint64_t pb_dtree_files_done(const struct pb_dtree *t, uint64_t off, struct pb_dtree_cursor *c);

/* ---- directories opened relative to a top directory, never through a link */

/* The parent directory of the last path asked for stays open: entries come
 * in manifest order, so consecutive ones mostly share it. */
struct pb_dircache {
    int top;                       /* not owned */
    int fd;                        /* the cached directory, or -1 */
    char path[PB_DTREE_PATH_MAX + 1]; /* its path relative to top ("" = top) */
};
void pb_dircache_init(struct pb_dircache *c, int top);
/* fd of rel's parent directory (owned by the cache), *base = rel's last
 * component; -1 with errno. */
int pb_dircache_parent(struct pb_dircache *c, const char *rel, const char **base);
void pb_dircache_close(struct pb_dircache *c);

/* A few open files, by entry index (round robin). */
struct pb_fdcache {
    size_t idx[PB_DTREE_FD_CACHE];
    int fd[PB_DTREE_FD_CACHE];
    unsigned next;
};
void pb_fdcache_init(struct pb_fdcache *c);
int pb_fdcache_get(const struct pb_fdcache *c, size_t idx);
void pb_fdcache_put(struct pb_fdcache *c, size_t idx, int fd);
void pb_fdcache_close(struct pb_fdcache *c);

/* Remove dfd/name and everything under it, never following a link; one
 * tick of alive (may be NULL) per entry. 0 ok, -1 with errno of the first
 * failure (the rest is still attempted). */
int pb_rmtree_at(int dfd, const char *name, struct pb_alive *alive);

/* ---- the root's side: read the stream (dirtree_source.c) */
/* The directories of SOURCE last used, each checked against the walk when
 * opened; the least recently used one is closed to make room. */
struct pb_dtree_dirs {
    size_t idx[PB_DTREE_DIR_CACHE];  /* entry index of the directory */
    int fd[PB_DTREE_DIR_CACHE];
    uint64_t used[PB_DTREE_DIR_CACHE]; /* when last used; 0: a free slot */
    uint64_t clock;
};
struct pb_dtree_source {
    const struct pb_dtree *t;
    const char *path;  /* SOURCE */
    int top;
    size_t *parent;    /* entry index of each entry's directory; SIZE_MAX: the top */
    struct pb_dtree_dirs dirs;
    struct pb_fdcache fc;
};
/* t: the manifest with the walk's identities (t->id, t->top_id). SOURCE
 * must still be the directory that was walked. 0 ok; -1 with err. */
int pb_dtree_source_open(struct pb_dtree_source *s, const struct pb_dtree *t, const char *path, char *err,
                        size_t errlen);
/* Read len bytes of the stream at off, each file from the inode the walk
 * listed: its directories and itself opened without following a link and
 * checked (device and inode; a file's size, mtime and ctime too) after
 * every read. 0 ok; -1 with err naming the path and what changed. */
int pb_dtree_source_read(struct pb_dtree_source *s, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
void pb_dtree_source_close(struct pb_dtree_source *s);

/* ---- a node's side: build the tree in a staging directory, then rename it */
struct pb_dtree_sink {
    const struct pb_dtree *t;
    int pfd;                  /* DEST_DIR's parent directory */
    int sfd;                  /* the staging directory (locked) */
    int force, chown;
    int same;                 /* DEST_DIR exists and already holds the tree */
    char dest[PATH_MAX];
    char base[NAME_MAX + 1];
    char stage[NAME_MAX + 1]; /* .BASE.p2pbcast-XXXXXX in the parent, "" when none */
    struct pb_dircache dc;
    struct pb_fdcache fc;
    struct pb_alive *alive;   /* ticked by the long loops of open, commit and abort */
};
/* Whether DEST_DIR (base in the directory pfd) already holds t: the same
 * entries and types, files of the same size and mtime, links to the same
 * targets (dirtree_same.c). 1 yes; 0 no, with why (the first difference). */
int pb_dtree_same(int pfd, const char *base, const struct pb_dtree *t, struct pb_alive *alive, char *why, size_t wl);

/* Check DEST_DIR (absent, the same tree, or --force), create the staging directory and
 * every entry in it with space reserved. source: the root's SOURCE (refused
 * as DEST). alive (may be NULL): ticked per entry here and at commit. 0 ok;
 * -1 with err (nothing left behind). */
int pb_dtree_sink_open(struct pb_dtree_sink *k, const struct pb_dtree *t, const char *dest, int force,
                      const struct stat *source, struct pb_alive *alive, char *err, size_t errlen);
int pb_dtree_sink_write(struct pb_dtree_sink *k, uint64_t off, const void *buf, size_t len, char *err, size_t errlen);
/* Owners, modes and mtimes (deepest first), then flush to stable storage. */
int pb_dtree_sink_finish(struct pb_dtree_sink *k, char *err, size_t errlen);
/* Rename the staging directory to DEST_DIR (with --force, in exchange for
 * the old one, which is then removed). */
int pb_dtree_sink_commit(struct pb_dtree_sink *k, char *err, size_t errlen);
/* Remove the staging directory (if any) and close everything. Safe twice. */
void pb_dtree_sink_abort(struct pb_dtree_sink *k);

#endif
