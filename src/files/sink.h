/* sink.h — write DEST on one node without ever exposing a partial file.
 *
 * Data goes to an anonymous O_TMPFILE in DEST's directory (a named hidden
 * temporary file where the filesystem lacks O_TMPFILE), space is reserved up
 * front, chunks are written out of order with pwrite, and the file is linked
 * to DEST's name only at commit, after every chunk was written and verified.
 * A crash before commit leaves nothing under DEST (and, with O_TMPFILE,
 * nothing at all). */
#ifndef P2PBCAST_SINK_H
#define P2PBCAST_SINK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct pb_sink {
    int fd;
    int dfd;                  /* DEST's directory: every name is opened relative to it */
    int anonymous;            /* O_TMPFILE: no name until commit */
    uint64_t size;
    uint64_t unsynced;        /* bytes written since writeback was last started */
    char dest[PATH_MAX];
    char dir[PATH_MAX];
    char base[NAME_MAX + 1];
    char tmpname[NAME_MAX + 1]; /* named temporary file in dir, "" when anonymous */
    /* --resume: a fixed-name temporary file and a map of the chunks it holds,
     * kept after a failure so that a repeated run need not send them again */
    int resume;
    uint64_t nchunks;
    unsigned char *have;      /* chunks found in a kept file (bitmap), or NULL */
    char mapname[NAME_MAX + 1];
};

struct pb_sink_want {
    uint64_t size;
    mode_t mode;              /* permission bits to give DEST */
    struct timespec mtime;    /* modification time to give DEST */
    int force;                /* replace an existing DEST that differs */
    const struct stat *source; /* on the root's node: refuse DEST == SOURCE */
    int resume;               /* keep and reuse .NAME.p2pbcast-resume */
    uint64_t chunk_size;      /* resume: the kept map must match it */
    int no_tmpfile;           /* testing: behave as on a filesystem without O_TMPFILE */
};

/* 0 ok; -1 with err naming the path and the reason. */
int pb_sink_open(struct pb_sink *k, const char *dest, const struct pb_sink_want *w,
                 char *err, size_t errlen);
int pb_sink_write(struct pb_sink *k, uint64_t off, const void *buf, size_t len,
                  char *err, size_t errlen);
/* Flush data and metadata to stable storage (before the commit vote). */
int pb_sink_flush(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen);
/* Give the file DEST's name (atomic rename over an existing DEST). */
int pb_sink_commit(struct pb_sink *k, char *err, size_t errlen);
/* Remove every trace of the temporary file. Safe to call twice, and from a
 * path that is about to end the process (no allocation). */
void pb_sink_abort(struct pb_sink *k);
/* --resume after a failure: flush what was written and record which chunks
 * (bitmap) are in the kept file; the file keeps its hidden name. */
int pb_sink_keep(struct pb_sink *k, const unsigned char *held, const struct pb_sink_want *w);
/* Read back len bytes at off (to checksum chunks a resumed run skips). */
int pb_sink_read(struct pb_sink *k, uint64_t off, void *buf, size_t len, char *err, size_t errlen);

#endif
