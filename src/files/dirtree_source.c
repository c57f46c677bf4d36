/* tree_source.c — the root reads the stream of a directory SOURCE: each
 * piece from its file (opened relative to SOURCE, never through a link),
 * checking that the file still has the manifest's size and mtime. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int pb_dtree_source_open(struct pb_dtree_source *s, const struct pb_dtree *t, const char *path, char *err,
                        size_t errlen)
{
    s->t = t;
    s->path = path;
    pb_fdcache_init(&s->fc);
    s->top = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    pb_dircache_init(&s->dc, s->top);
    if (s->top < 0) {
        snprintf(err, errlen, "cannot open SOURCE directory '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void pb_dtree_source_close(struct pb_dtree_source *s)
{
    pb_fdcache_close(&s->fc);
    pb_dircache_close(&s->dc);
    if (s->top >= 0)
        close(s->top);
    s->top = -1;
}

struct rd {
    struct pb_dtree_source *s;
    unsigned char *buf;
    char *err;
    size_t errlen;
};

static int rd_fail(struct rd *r, const struct pb_dtree_entry *e, const char *what, const char *why)
{
    char shown[200];
    snprintf(r->err, r->errlen, "SOURCE '%s': '%s' %s%s%s", r->s->path, pb_dtree_show(e->path, shown, sizeof shown),
             what, why ? ": " : "", why ? why : "");
    return 1; /* stops pb_dtree_pieces */
}

static int open_file(struct pb_dtree_source *s, size_t idx)
{
    int fd = pb_fdcache_get(&s->fc, idx);
    if (fd >= 0)
        return fd;
    const char *base;
    int dfd = pb_dircache_parent(&s->dc, s->t->e[idx].path, &base);
    fd = dfd < 0 ? -1 : openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0)
        pb_fdcache_put(&s->fc, idx, fd);
    return fd;
}

static int read_piece(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len)
{
    struct rd *r = ctx;
    const struct pb_dtree_entry *e = &r->s->t->e[idx];
    int fd = open_file(r->s, idx);
    if (fd < 0)
        return rd_fail(r, e, errno == ENOENT ? "disappeared during the copy" : "cannot be opened", strerror(errno));
    for (size_t got = 0; got < len;) {
        ssize_t n = pread(fd, r->buf + boff + got, len - got, (off_t)(foff + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rd_fail(r, e, "cannot be read", strerror(errno));
        if (n == 0)
            return rd_fail(r, e, "shrank during the copy: copies discarded", NULL);
        got += (size_t)n;
    }
    /* A file that changes under us must not become N wrong copies. */
    struct stat now;
    if (fstat(fd, &now) < 0)
        return rd_fail(r, e, "cannot be checked", strerror(errno));
    if ((uint64_t)now.st_size != e->size || now.st_mtim.tv_sec != e->mt_sec ||
        (uint32_t)now.st_mtim.tv_nsec != e->mt_nsec || !S_ISREG(now.st_mode)) {
        char why[96];
        snprintf(why, sizeof why, "size %llu -> %lld", (unsigned long long)e->size, (long long)now.st_size);
        return rd_fail(r, e, "was modified during the copy (copies discarded)", why);
    }
    return 0;
}

int pb_dtree_source_read(struct pb_dtree_source *s, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    struct rd r = { s, buf, err, errlen };
    int rc = pb_dtree_pieces(s->t, off, len, read_piece, &r);
    if (rc == -1)
        snprintf(err, errlen, "SOURCE '%s': read outside the data stream at %llu", s->path, (unsigned long long)off);
    return rc ? -1 : 0;
}
