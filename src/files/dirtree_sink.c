/* dirtree_sink.c — a node builds the tree in a hidden staging directory beside
 * DEST_DIR (.NAME.p2pbcast-XXXXXX, created exclusively and locked), every
 * name created relative to a directory fd, exclusively and never through a
 * link; after the unanimous vote the staging directory is renamed to
 * DEST_DIR. See dirtree.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"
#include "space.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#define NOFOLLOW (O_NOFOLLOW | O_CLOEXEC)
#define OLD_TAG "old-" /* .NAME.p2pbcast-old-XXXXXX: never taken for a staging directory */

static int serr(struct pb_dtree_sink *k, char *err, size_t errlen, const char *what, const char *rel, int e)
{
    char shown[200];
    snprintf(err, errlen, "DEST_DIR '%s': %s '%s': %s", k->dest, what, pb_dtree_show(rel, shown, sizeof shown),
             strerror(e));
    return -1;
}

/* DEST_DIR without trailing slashes: its parent and its name. */
static int split_dest(struct pb_dtree_sink *k, const char *dest, char *err, size_t errlen)
{
    size_t n = strlen(dest);
    while (n > 1 && dest[n - 1] == '/')
        n--;
    if (n >= sizeof k->dest) {
        snprintf(err, errlen, "DEST_DIR '%.64s...' is longer than PATH_MAX", dest);
        return -1;
    }
    memcpy(k->dest, dest, n);
    k->dest[n] = 0;
    char *slash = strrchr(k->dest, '/');
    const char *base = slash ? slash + 1 : k->dest;
    if (strlen(base) > NAME_MAX) {
        snprintf(err, errlen, "DEST_DIR '%s': %s", dest, strerror(ENAMETOOLONG));
        return -1;
    }
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
        snprintf(err, errlen, "DEST_DIR '%s' must end with the name of the directory to create", dest);
        return -1;
    }
    snprintf(k->base, sizeof k->base, "%s", base);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash == k->dest ? 1 : slash - k->dest) : 1,
             slash ? k->dest : ".");
    k->pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (k->pfd < 0) {
        snprintf(err, errlen, "DEST_DIR's parent directory '%s': %s", parent, strerror(errno));
        return -1;
    }
    return 0;
}

static int check_existing(struct pb_dtree_sink *k, const struct stat *source, char *err, size_t errlen)
{
    struct stat cur;
    if (fstatat(k->pfd, k->base, &cur, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "DEST_DIR '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    if (source && cur.st_dev == source->st_dev && cur.st_ino == source->st_ino) {
        snprintf(err, errlen, "DEST_DIR '%s' is SOURCE itself on this node", k->dest);
        return -1;
    }
    if (k->force)
        return 0;
    char why[400];
    k->same = pb_dtree_same(k->pfd, k->base, k->t, k->alive, why, sizeof why);
    if (!k->same) {
        snprintf(err, errlen, "DEST_DIR '%s' exists and differs from SOURCE (%s): use --force to replace it", k->dest,
                 why);
        return -1;
    }
    return 0;
}

/* An earlier run's old DEST_DIR set aside (old) and its marker (marker).
 * With the marker the new tree was committed: the old one goes. Without it
 * the replacement did not complete and it is the user's only copy: kept,
 * and said where. */
static void stale_old_tree(struct pb_dtree_sink *k, const char *name)
{
    char marker[NAME_MAX + 16];
    struct stat st;
    if (snprintf(marker, sizeof marker, "%s.done", name) >= (int)sizeof marker)
        return;
    int mfd = openat(k->pfd, marker, O_RDONLY | O_NONBLOCK | NOFOLLOW);
    if (mfd < 0) {
        fprintf(stderr,
                "p2pbcast: warning: the old DEST_DIR '%s' of an earlier run that could not replace it is kept as "
                "'%s' beside it: rename it back, or remove it\n",
                k->dest, name);
        return;
    }
    if (fstat(mfd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        pb_rmtree_at(k->pfd, name, k->alive) == 0)
        (void)unlinkat(k->pfd, marker, 0);
    close(mfd);
}

/* Staging directories an earlier run left behind (killed before it could
 * clean up): ours, and not locked by a live run; and old trees whose
 * replacement was committed. */
static void remove_stale(struct pb_dtree_sink *k)
{
    char prefix[NAME_MAX + 16];
    int n = snprintf(prefix, sizeof prefix, ".%s.p2pbcast-", k->base);
    int fd = fcntl(k->pfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + n;
        if (strncmp(e->d_name, prefix, (size_t)n))
            continue;
        if (!strncmp(rest, OLD_TAG, strlen(OLD_TAG)) && strlen(rest) == strlen(OLD_TAG) + 6) {
            stale_old_tree(k, e->d_name);
            continue;
        }
        if (strlen(rest) != 6)
            continue;
        int sfd = openat(k->pfd, e->d_name, O_RDONLY | O_DIRECTORY | NOFOLLOW);
        struct stat st;
        if (sfd < 0)
            continue;
        if (fstat(sfd, &st) == 0 && st.st_uid == geteuid() && flock(sfd, LOCK_EX | LOCK_NB) == 0)
            (void)pb_rmtree_fd(sfd, k->pfd, e->d_name, k->alive);
        close(sfd);
    }
    closedir(d);
}

int pb_dtree_old_name(const char *stage, char *out, size_t n)
{
    size_t sl = strlen(stage);
    if (sl < 6) {
        errno = EINVAL;
        return -1;
    }
    int w = snprintf(out, n, "%.*s%s%s", (int)(sl - 6), stage, OLD_TAG, stage + sl - 6);
    if (w < 0 || (size_t)w >= n || w + 5 > NAME_MAX) { /* its marker adds ".done" */
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int make_stage(struct pb_dtree_sink *k, char *err, size_t errlen)
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int tries = 0; tries < 100; tries++) {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            break;
        int n = snprintf(k->stage, sizeof k->stage, ".%s.p2pbcast-XXXXXX", k->base);
        if (n < 0 || (size_t)n >= sizeof k->stage) {
            errno = ENAMETOOLONG;
            break;
        }
        for (int i = 0; i < 6; i++)
            k->stage[n - 6 + i] = abc[rnd[i] % 62];
        if (mkdirat(k->pfd, k->stage, 0700) < 0) {
            if (errno == EEXIST)
                continue;
            break;
        }
        k->sfd = openat(k->pfd, k->stage, O_RDONLY | O_DIRECTORY | NOFOLLOW);
        if (k->sfd < 0 || flock(k->sfd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            (void)unlinkat(k->pfd, k->stage, AT_REMOVEDIR);
            errno = e;
            break;
        }
        pb_dircache_init(&k->dc, k->sfd);
        return 0;
    }
    int e = errno;
    k->stage[0] = 0;
    snprintf(err, errlen, "cannot create a staging directory beside DEST_DIR '%s': %s", k->dest, strerror(e));
    return -1;
}

/* Reserve the space now: a full disk fails here, before any transfer.
 * Holes stay holes: only the data extents are allocated. */
static int reserve(int fd, const struct pb_dtree_entry *e)
{
    const struct pb_extent *x = pb_dtree_extents(e);
    int dense = e->next == 1 && x[0].off == 0 && x[0].len == e->size;
    if (!dense && e->size && ftruncate(fd, (off_t)e->size) < 0)
        return errno;
    for (uint32_t k = 0; k < e->next; k++) {
        int rc = pb_space_reserve(fd, x[k].off, x[k].len);
        if (rc)
            return rc;
    }
    return 0;
}

static int create_one(struct pb_dtree_sink *k, size_t i, struct pb_dircache *links, char *err, size_t errlen)
{
    const struct pb_dtree_entry *e = &k->t->e[i];
    const char *base, *tbase;
    int dfd = pb_dircache_parent(&k->dc, e->path, &base);
    if (dfd < 0)
        return serr(k, err, errlen, "cannot open the directory of", e->path, errno);
    switch (e->type) {
    case PB_DTREE_DIR:
        if (mkdirat(dfd, base, 0700) < 0)
            return serr(k, err, errlen, "cannot create directory", e->path, errno);
        return 0;
    case PB_DTREE_SYMLINK:
        if (symlinkat(e->target, dfd, base) < 0)
            return serr(k, err, errlen, "cannot create symbolic link", e->path, errno);
        return 0;
    case PB_DTREE_HARDLINK: {
        const char *tpath = k->t->e[e->link].path;
        int tfd = pb_dircache_parent(links, tpath, &tbase);
        if (tfd < 0 || linkat(tfd, tbase, dfd, base, 0) < 0)
            return serr(k, err, errlen, "cannot create hard link", e->path, errno);
        return 0;
    }
    default: {
        int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | NOFOLLOW, 0600);
        if (fd < 0)
            return serr(k, err, errlen, "cannot create", e->path, errno);
        int rc = reserve(fd, e);
        if (close(fd) < 0 && !rc)
            rc = errno;
        if (rc) {
            char what[80];
            snprintf(what, sizeof what, "cannot reserve %llu bytes for", (unsigned long long)e->size);
            return serr(k, err, errlen, what, e->path, rc);
        }
        return 0;
    }
    }
}

int pb_dtree_sink_open(struct pb_dtree_sink *k, const struct pb_dtree *t, const char *dest, int force,
                      const struct stat *source, struct pb_alive *alive, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->t = t;
    k->alive = alive;
    k->pfd = k->sfd = k->oldfd = -1;
    k->force = force;
    k->chown = geteuid() == 0;
    pb_fdcache_init(&k->fc);
    pb_dircache_init(&k->dc, -1);
    if (split_dest(k, dest, err, errlen) < 0 || check_existing(k, source, err, errlen) < 0) {
        pb_dtree_sink_abort(k);
        return -1;
    }
    remove_stale(k);
    if (make_stage(k, err, errlen) < 0) {
        pb_dtree_sink_abort(k);
        return -1;
    }
    struct stat cur;
    if (fstatat(k->pfd, k->base, &cur, AT_SYMLINK_NOFOLLOW) == 0 && pb_dtree_old_name(k->stage, k->old, sizeof k->old) < 0) {
        snprintf(err, errlen, "DEST_DIR '%s': no hidden name beside it for the old one while it is replaced: %s",
                 k->dest, strerror(errno));
        pb_dtree_sink_abort(k);
        return -1;
    }
    k->old[0] = 0;
    struct pb_dircache links;
    pb_dircache_init(&links, k->sfd);
    int rc = 0;
    for (size_t i = 0; !rc && i < t->n; i++) {
        pb_alive_tick(alive);
        rc = create_one(k, i, &links, err, errlen);
    }
    pb_dircache_close(&links);
    if (rc) {
        pb_dtree_sink_abort(k);
        return -1;
    }
    return 0;
}

struct wr {
    struct pb_dtree_sink *k;
    const unsigned char *buf;
    char *err;
    size_t errlen;
};

static int write_piece(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len)
{
    struct wr *w = ctx;
    struct pb_dtree_sink *k = w->k;
    const struct pb_dtree_entry *e = &k->t->e[idx];
    int fd = pb_fdcache_get(&k->fc, idx);
    if (fd < 0) {
        const char *base;
        int dfd = pb_dircache_parent(&k->dc, e->path, &base);
        fd = dfd < 0 ? -1 : openat(dfd, base, O_WRONLY | NOFOLLOW);
        if (fd < 0)
            return -serr(k, w->err, w->errlen, "cannot open", e->path, errno);
        pb_fdcache_put(&k->fc, idx, fd);
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(fd, w->buf + boff + done, len - done, (off_t)(foff + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -serr(k, w->err, w->errlen, "write failed to", e->path, errno);
        done += (size_t)n;
    }
    return 0;
}

int pb_dtree_sink_write(struct pb_dtree_sink *k, uint64_t off, const void *buf, size_t len, char *err, size_t errlen)
{
    struct wr w = { k, buf, err, errlen };
    int rc = pb_dtree_pieces(k->t, off, len, write_piece, &w);
    if (rc == -1)
        snprintf(err, errlen, "DEST_DIR '%s': write outside the data stream at %llu", k->dest,
                 (unsigned long long)off);
    return rc ? -1 : 0;
}

/* Owner (as root), mode (without setuid/setgid) and mtime of one entry,
 * through an fd opened relative to its parent without following a link (a
 * symbolic link itself by name), then flushed: the caller goes deepest
 * first, so a directory is flushed after everything in it. 0; -1 (errno)
 * when an attribute could not be set, -2 when the flush failed. */
static int set_attrs(struct pb_dtree_sink *k, int dfd, const char *name, const struct pb_dtree_entry *e)
{
    struct timespec ts[2] = { { (time_t)e->mt_sec, (long)e->mt_nsec }, { (time_t)e->mt_sec, (long)e->mt_nsec } };
    if (e->type == PB_DTREE_SYMLINK)
        return (k->chown && fchownat(dfd, name, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0) ||
                       utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0
                   ? -1
                   : 0;
    int fd = openat(dfd, name, O_RDONLY | (e->type == PB_DTREE_DIR ? O_DIRECTORY : O_NONBLOCK) | NOFOLLOW);
    if (fd < 0)
        return -1;
    int rc = (k->chown && fchown(fd, (uid_t)e->uid, (gid_t)e->gid) < 0) || fchmod(fd, (mode_t)(e->mode & 01777)) < 0 ||
                     futimens(fd, ts) < 0
                 ? -1
                 : fsync(fd) < 0 && errno != EINVAL ? -2 : 0;
    int e_ = errno;
    close(fd);
    errno = e_;
    return rc;
}

/* Start writing every file's data out before waiting on any (set_attrs
 * waits, file by file): only what this run wrote is flushed, never the
 * whole filesystem (syncfs would flush other jobs' dirty pages too). */
static void start_writeback(struct pb_dtree_sink *k)
{
    const struct pb_dtree *t = k->t;
    for (size_t i = 0; i < t->n; i++) {
        const struct pb_dtree_entry *e = &t->e[i];
        const char *base;
        int dfd = e->type == PB_DTREE_FILE && e->size ? pb_dircache_parent(&k->dc, e->path, &base) : -1;
        int fd = dfd < 0 ? -1 : openat(dfd, base, O_RDONLY | O_NONBLOCK | NOFOLLOW);
        if (fd >= 0) {
            (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            close(fd);
        }
    }
}

int pb_dtree_sink_finish(struct pb_dtree_sink *k, char *err, size_t errlen)
{
    const struct pb_dtree *t = k->t;
    pb_fdcache_close(&k->fc);
    start_writeback(k);
    /* Backwards: every entry after everything below it, so a directory's
     * mtime is set (and it is flushed) after its contents, deepest first.
     * Hard links share the inode of their group's first entry. */
    for (size_t i = t->n; i-- > 0;) {
        const struct pb_dtree_entry *e = &t->e[i];
        if (e->type == PB_DTREE_HARDLINK)
            continue;
        const char *base;
        int dfd = pb_dircache_parent(&k->dc, e->path, &base);
        int rc = dfd < 0 ? -1 : set_attrs(k, dfd, base, e);
        if (rc < 0)
            return serr(k, err, errlen, rc == -2 ? "cannot flush" : "cannot set owner, mode or mtime of", e->path,
                        errno);
    }
    pb_dircache_close(&k->dc);
    struct timespec ts[2] = { { (time_t)t->mt_sec, (long)t->mt_nsec }, { (time_t)t->mt_sec, (long)t->mt_nsec } };
    if ((k->chown && fchown(k->sfd, (uid_t)t->uid, (gid_t)t->gid) < 0) || fchmod(k->sfd, (mode_t)(t->mode & 01777)) < 0 ||
        futimens(k->sfd, ts) < 0)
        return serr(k, err, errlen, "cannot set owner, mode or mtime of", ".", errno);
    if (fsync(k->sfd) < 0 && errno != EINVAL)
        return serr(k, err, errlen, "cannot flush", ".", errno);
    return 0;
}

/* One rename of the commit; the test hooks make the exchange unsupported
 * (EINVAL, as on NFS) or the n-th rename fail (EIO). */
static int rename_at(struct pb_dtree_sink *k, const char *from, const char *to, unsigned flags)
{
    if ((flags & RENAME_EXCHANGE) && k->test_no_exchange) {
        errno = EINVAL;
        return -1;
    }
    unsigned nth = ++k->renames;
    if (nth < 32 && (k->test_fail_renames & (1u << nth))) {
        errno = EIO;
        return -1;
    }
    int rc = renameat2(k->pfd, from, k->pfd, to, flags);
    if (rc < 0 && (flags & RENAME_NOREPLACE) && (errno == EINVAL || errno == ENOSYS))
        rc = renameat(k->pfd, from, k->pfd, to); /* a filesystem without it: the name was checked free */
    return rc;
}

static const char *kind_of(const struct stat *st)
{
    return S_ISDIR(st->st_mode) ? "DEST_DIR" : "the file or link named DEST_DIR";
}

/* Without RENAME_EXCHANGE: the old one aside under its hidden name, the new
 * one in; if that fails, the old one back. 0, or -1 with err saying where
 * the old one is. */
static int replace_aside(struct pb_dtree_sink *k, const struct stat *cur, char *err, size_t errlen)
{
    if (rename_at(k, k->base, k->old, RENAME_NOREPLACE) < 0) {
        snprintf(err, errlen, "cannot move the old %s '%s' aside to '%s': %s (it is in place, unchanged)",
                 kind_of(cur), k->dest, k->old, strerror(errno));
        return -1;
    }
    if (rename_at(k, k->stage, k->base, RENAME_NOREPLACE) == 0) {
        k->aside = 1;
        return 0;
    }
    int e = errno;
    if (rename_at(k, k->old, k->base, RENAME_NOREPLACE) == 0) {
        snprintf(err, errlen, "cannot rename the finished tree to DEST_DIR '%s': %s (the old one is in place, unchanged)",
                 k->dest, strerror(e));
        return -1;
    }
    snprintf(err, errlen,
             "cannot rename the finished tree to DEST_DIR '%s': %s; the old %s is now '%s' in the same directory "
             "(renaming it back failed: %s): rename it back",
             k->dest, strerror(e), kind_of(cur), k->old, strerror(errno));
    k->old[0] = 0; /* the user's: never removed */
    return -1;
}

int pb_dtree_sink_commit(struct pb_dtree_sink *k, char *err, size_t errlen)
{
    struct stat cur;
    int exists = fstatat(k->pfd, k->base, &cur, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !k->force && !k->same) {
        snprintf(err, errlen, "DEST_DIR '%s' appeared during the copy: use --force to replace it", k->dest);
        return -1;
    }
    k->renames = 0;
    if (exists) {
        /* the old one, to remove it through a checked fd once the vote allows */
        k->oldfd = S_ISDIR(cur.st_mode) ? openat(k->pfd, k->base, O_PATH | O_DIRECTORY | NOFOLLOW) : -1;
        if (pb_dtree_old_name(k->stage, k->old, sizeof k->old) < 0) {
            snprintf(err, errlen, "DEST_DIR '%s': no hidden name for the old one beside it: %s", k->dest,
                     strerror(errno));
            return -1;
        }
        if (rename_at(k, k->stage, k->base, RENAME_EXCHANGE) == 0)
            k->exchanged = 1;
        else if (errno != EINVAL && errno != ENOSYS) {
            snprintf(err, errlen, "cannot exchange the finished tree with DEST_DIR '%s': %s (the old one is in place)",
                     k->dest, strerror(errno));
            return -1;
        } else if (replace_aside(k, &cur, err, errlen) < 0)
            return -1;
    } else if (rename_at(k, k->stage, k->base, RENAME_NOREPLACE) < 0) {
        snprintf(err, errlen, "cannot rename the finished tree to DEST_DIR '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    k->committed = 1;
    if (fsync(k->pfd) < 0 && errno != EINVAL) {
        snprintf(err, errlen, "flushing the directory of DEST_DIR '%s' failed: %s", k->dest, strerror(errno));
        return -1;
    }
    return 0;
}

int pb_dtree_sink_undo(struct pb_dtree_sink *k)
{
    if (!k->committed)
        return 0;
    k->committed = 0;
    int rc;
    if (k->exchanged)
        rc = rename_at(k, k->stage, k->base, RENAME_EXCHANGE);
    else if ((rc = rename_at(k, k->base, k->stage, RENAME_NOREPLACE)) == 0 && k->aside)
        rc = rename_at(k, k->old, k->base, RENAME_NOREPLACE);
    if (rc == 0) {
        k->aside = k->exchanged = 0;
        (void)fsync(k->pfd);
        return 0;
    }
    int e = errno;
    if (k->exchanged || !k->aside)
        fprintf(stderr, "p2pbcast: warning: the job failed, but DEST_DIR '%s' could not be given back: %s%s%s%s\n",
                k->dest, strerror(e), k->exchanged ? "; the old one is '" : "", k->exchanged ? k->stage : "",
                k->exchanged ? "' beside it" : "");
    else
        fprintf(stderr, "p2pbcast: warning: the job failed, but the old DEST_DIR '%s' could not be put back: %s; it "
                        "is '%s' beside it\n", k->dest, strerror(e), k->old);
    k->stage[0] = k->old[0] = 0; /* nothing of this is removed now */
    return -1;
}

/* The old tree (at name) goes, through the fd opened before the rename;
 * a file or link named DEST_DIR by name. */
static int remove_old(struct pb_dtree_sink *k, const char *name)
{
    return k->oldfd >= 0 ? pb_rmtree_fd(k->oldfd, k->pfd, name, k->alive) : unlinkat(k->pfd, name, 0);
}

void pb_dtree_sink_settle(struct pb_dtree_sink *k)
{
    if (!k->committed)
        return;
    k->committed = 0;
    if (k->exchanged) {
        /* the old one has the staging name, unlocked: a later run removes
         * it as stale should this fail */
        if (remove_old(k, k->stage) < 0 && errno != ENOENT)
            fprintf(stderr, "p2pbcast: warning: DEST_DIR '%s' replaced, but removing the old one (now '%s' beside "
                            "it) failed: %s; the next run of this DEST_DIR removes it\n",
                    k->dest, k->stage, strerror(errno));
    } else if (k->aside) {
        /* the marker says the new tree was committed: a later run may
         * remove the old one should this fail */
        char marker[NAME_MAX + 16];
        snprintf(marker, sizeof marker, "%s.done", k->old);
        int mfd = openat(k->pfd, marker, O_WRONLY | O_CREAT | O_EXCL | NOFOLLOW, 0600);
        if (mfd >= 0)
            close(mfd);
        if (remove_old(k, k->old) < 0 && errno != ENOENT)
            fprintf(stderr, "p2pbcast: warning: DEST_DIR '%s' replaced, but removing the old one (now '%s' beside "
                            "it) failed: %s%s\n",
                    k->dest, k->old, strerror(errno), mfd >= 0 ? "; the next run of this DEST_DIR removes it" : "");
        else if (mfd >= 0)
            (void)unlinkat(k->pfd, marker, 0);
    }
    k->stage[0] = k->old[0] = 0;
    k->aside = k->exchanged = 0;
}

void pb_dtree_sink_abort(struct pb_dtree_sink *k)
{
    (void)pb_dtree_sink_undo(k); /* a commit not agreed on is given back */
    pb_fdcache_close(&k->fc);
    pb_dircache_close(&k->dc);
    if (k->stage[0] && k->pfd >= 0)
        (void)(k->sfd >= 0 ? pb_rmtree_fd(k->sfd, k->pfd, k->stage, k->alive)
                           : pb_rmtree_at(k->pfd, k->stage, k->alive)); /* a failed node still votes after this */
    k->stage[0] = 0;
    if (k->oldfd >= 0)
        close(k->oldfd);
    k->oldfd = -1;
    if (k->sfd >= 0)
        close(k->sfd);
    k->sfd = -1;
    if (k->pfd >= 0)
        close(k->pfd);
    k->pfd = -1;
}
