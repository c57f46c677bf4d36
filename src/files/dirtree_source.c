/* dirtree_source.c — the root reads the stream of a directory SOURCE, each
 * file from the very inode the walk listed.
 *
 * A file is opened relative to its directory's fd with O_NOFOLLOW, and
 * after every read its fstat is compared with the walk's record (device,
 * inode, size, mtime, ctime): a file renamed over by another of the same
 * size and mtime is caught by its inode. A directory is opened from its
 * parent's fd with O_NOFOLLOW|O_DIRECTORY and checked by device and inode,
 * so a directory swapped for a symbolic link, or for another directory,
 * is never gone through. Either fails the copy, naming the path and what
 * changed, instead of becoming N wrong copies.
 *
 * One fd per directory of a million-entry tree would be too many, and the
 * whole chain of a deep one too: a small cache (PB_DTREE_DIR_CACHE, least
 * recently used out) keeps the directories last used. The stream follows
 * the manifest's order, depth first, so consecutive files mostly share a
 * directory and its ancestors are still cached; a miss opens down from the
 * nearest cached ancestor (or the top), checking every level. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOP SIZE_MAX /* the parent of a top-level entry: SOURCE itself */
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static int is_below(const char *dir, const char *path)
{
    size_t dl = strlen(dir);
    return !strncmp(dir, path, dl) && path[dl] == '/';
}

/* The directory of each entry, by index: the deepest directory listed
 * before it that contains it (the manifest lists a directory first). */
static size_t *find_parents(const struct pb_dtree *t)
{
    size_t *parent = malloc((t->n ? t->n : 1) * sizeof *parent);
    size_t *stack = malloc((PB_DTREE_PATH_MAX / 2 + 2) * sizeof *stack), depth = 0;
    if (!parent || !stack) {
        free(parent);
        free(stack);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        while (depth && !is_below(t->e[stack[depth - 1]].path, t->e[i].path))
            depth--;
        parent[i] = depth ? stack[depth - 1] : TOP;
        if (t->e[i].type == PB_DTREE_DIR)
            stack[depth++] = i;
    }
    free(stack);
    return parent;
}

static int same_inode(const struct stat *st, const struct pb_dtree_ident *id)
{
    return (uint64_t)st->st_dev == id->dev && (uint64_t)st->st_ino == id->ino;
}

static int open_top(struct pb_dtree_source *s, char *err, size_t errlen)
{
    const struct pb_dtree *t = s->t;
    const char *path = s->path;
    if ((t->n && !t->id) || !(s->parent = find_parents(t))) {
        snprintf(err, errlen, "%s", t->n && !t->id ? "the walk's record of SOURCE is missing"
                                                   : "out of memory for the directories of SOURCE");
        return -1;
    }
    struct stat st;
    s->top = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->top < 0 || fstat(s->top, &st) < 0) {
        snprintf(err, errlen, "cannot open SOURCE directory '%s': %s", path, strerror(errno));
        return -1;
    }
    if (!same_inode(&st, &t->top_id)) {
        snprintf(err, errlen, "SOURCE directory '%s' was replaced after it was listed", path);
        return -1;
    }
    return 0;
}

int pb_dtree_source_open(struct pb_dtree_source *s, const struct pb_dtree *t, const char *path, char *err,
                        size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->path = path;
    s->top = -1;
    pb_fdcache_init(&s->fc);
    if (open_top(s, err, errlen) < 0) {
        pb_dtree_source_close(s);
        return -1;
    }
    return 0;
}

void pb_dtree_source_close(struct pb_dtree_source *s)
{
    pb_fdcache_close(&s->fc);
    for (int i = 0; i < PB_DTREE_DIR_CACHE; i++)
        if (s->dirs.used[i] && s->dirs.fd[i] >= 0)
            close(s->dirs.fd[i]);
    memset(&s->dirs, 0, sizeof s->dirs);
    if (s->top >= 0)
        close(s->top);
    s->top = -1;
    free(s->parent);
    s->parent = NULL;
}

/* ---- the directory cache */

static int dirs_get(struct pb_dtree_dirs *c, size_t idx)
{
    for (int i = 0; i < PB_DTREE_DIR_CACHE; i++)
        if (c->used[i] && c->idx[i] == idx) {
            c->used[i] = ++c->clock;
            return c->fd[i];
        }
    return -1;
}

/* Takes fd; closes the least recently used directory when full. */
static void dirs_put(struct pb_dtree_dirs *c, size_t idx, int fd)
{
    int v = 0;
    for (int i = 1; i < PB_DTREE_DIR_CACHE && c->used[v]; i++)
        if (c->used[i] < c->used[v])
            v = i;
    if (c->used[v])
        close(c->fd[v]);
    c->idx[v] = idx;
    c->fd[v] = fd;
    c->used[v] = ++c->clock;
}

/* ---- reading */

struct rd {
    struct pb_dtree_source *s;
    unsigned char *buf;
    char *err;
    size_t errlen;
};

static int rd_fail(struct rd *r, size_t idx, const char *what, const char *why)
{
    const struct pb_dtree_entry *e = &r->s->t->e[idx];
    char shown[200];
    snprintf(r->err, r->errlen, "SOURCE '%s': %s'%s' %s%s%s", r->s->path,
             e->type == PB_DTREE_DIR ? "directory " : "", pb_dtree_show(e->path, shown, sizeof shown), what,
             why ? ": " : "", why ? why : "");
    return 1; /* stops pb_dtree_pieces */
}

/* Append to a list of differences ("a, b"). */
static void note(char *out, size_t n, const char *fmt, ...)
{
    size_t l = strlen(out);
    if (l && l + 2 < n) {
        memcpy(out + l, ", ", 3);
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + l, n - l, fmt, ap);
    va_end(ap);
}

/* What differs between entry idx as the walk saw it and st ("" if
 * nothing); 1 when st is another entry (replaced), else 0. */
static int differences(const struct pb_dtree_source *s, size_t idx, const struct stat *st, char *out, size_t n)
{
    const struct pb_dtree_entry *e = &s->t->e[idx];
    const struct pb_dtree_ident *id = &s->t->id[idx];
    int dir = e->type == PB_DTREE_DIR;
    out[0] = 0;
    if (S_ISLNK(st->st_mode))
        note(out, n, "now a symbolic link");
    else if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        note(out, n, "no longer a %s", dir ? "directory" : "regular file");
    if ((uint64_t)st->st_dev != id->dev)
        note(out, n, "device %llu -> %llu", (unsigned long long)id->dev, (unsigned long long)st->st_dev);
    if ((uint64_t)st->st_ino != id->ino)
        note(out, n, "inode %llu -> %llu", (unsigned long long)id->ino, (unsigned long long)st->st_ino);
    int replaced = out[0] != 0;
    if (dir)
        return replaced; /* its contents may change: the files are checked one by one */
    if ((uint64_t)st->st_size != e->size)
        note(out, n, "size %llu -> %lld", (unsigned long long)e->size, (long long)st->st_size);
    if (st->st_mtim.tv_sec != e->mt_sec || (uint32_t)st->st_mtim.tv_nsec != e->mt_nsec)
        note(out, n, "mtime");
    if (st->st_ctim.tv_sec != id->ct_sec || (uint32_t)st->st_ctim.tv_nsec != id->ct_nsec)
        note(out, n, "ctime");
    return replaced;
}

/* fd (or, when it could not be opened, dfd/name) against the walk's record
 * of entry idx: 0 the same; else rd_fail's 1 naming what changed. */
static int check(struct rd *r, size_t idx, int fd, int dfd, const char *name, int open_errno)
{
    struct stat st;
    char what[240];
    int rc = fd >= 0 ? fstat(fd, &st) : fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
    if (rc < 0 && errno == ENOENT)
        return rd_fail(r, idx, "disappeared during the copy", strerror(errno));
    if (rc < 0)
        return rd_fail(r, idx, "cannot be checked", strerror(errno));
    int replaced = differences(r->s, idx, &st, what, sizeof what);
    if (what[0])
        return rd_fail(r, idx, replaced ? "was replaced during the copy (copies discarded)"
                                        : "was modified during the copy (copies discarded)", what);
    if (fd < 0)
        return rd_fail(r, idx, "cannot be opened", strerror(open_errno));
    return 0;
}

static int open_dir(struct rd *r, size_t idx);

/* Open entry idx with flags relative to its directory (checked): the fd,
 * or -1 with errno; *dfd is -1 when the directory failed (reported). */
static int open_entry(struct rd *r, size_t idx, int flags, int *dfd, const char **name)
{
    if ((*dfd = open_dir(r, r->s->parent[idx])) < 0)
        return -1;
    const char *path = r->s->t->e[idx].path, *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    return openat(*dfd, *name, flags);
}

/* fd of directory idx (TOP: SOURCE), owned by the cache; -1 after rd_fail. */
static int open_dir(struct rd *r, size_t idx)
{
    struct pb_dtree_source *s = r->s;
    if (idx == TOP)
        return s->top;
    int fd = dirs_get(&s->dirs, idx), pfd;
    if (fd >= 0)
        return fd;
    const char *name;
    fd = open_entry(r, idx, DIR_FLAGS, &pfd, &name);
    if (pfd < 0)
        return -1;
    if (check(r, idx, fd, pfd, name, errno)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    dirs_put(&s->dirs, idx, fd); /* may close pfd: no longer needed */
    return fd;
}

/* fd of file idx, owned by the file cache; -1 after rd_fail. */
static int open_file(struct rd *r, size_t idx)
{
    int fd = pb_fdcache_get(&r->s->fc, idx), dfd;
    if (fd >= 0)
        return fd;
    const char *name;
    fd = open_entry(r, idx, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, &dfd, &name);
    if (dfd < 0)
        return -1;
    if (fd < 0) {
        check(r, idx, -1, dfd, name, errno);
        return -1;
    }
    pb_fdcache_put(&r->s->fc, idx, fd);
    return fd;
}

static int read_piece(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len)
{
    struct rd *r = ctx;
    int fd = open_file(r, idx);
    if (fd < 0)
        return 1;
    for (size_t got = 0; got < len;) {
        ssize_t n = pread(fd, r->buf + boff + got, len - got, (off_t)(foff + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return rd_fail(r, idx, "cannot be read", strerror(errno));
        if (n == 0)
            return check(r, idx, fd, -1, NULL, 0) ? 1 : rd_fail(r, idx, "shrank during the copy: copies discarded", NULL);
        got += (size_t)n;
    }
    /* Checked after the read: the bytes just read are the listed file's. */
    return check(r, idx, fd, -1, NULL, 0);
}

int pb_dtree_source_read(struct pb_dtree_source *s, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    struct rd r = { s, buf, err, errlen };
    int rc = pb_dtree_pieces(s->t, off, len, read_piece, &r);
    if (rc == -1)
        snprintf(err, errlen, "SOURCE '%s': read outside the data stream at %llu", s->path, (unsigned long long)off);
    return rc ? -1 : 0;
}
