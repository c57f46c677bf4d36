/* dirtree_sink.c — a node builds the tree in a hidden staging directory beside
 * DEST_DIR (.NAME.p2pbcast-XXXXXX, created exclusively and locked), every
 * name created relative to a directory fd, exclusively and never through a
 * link; after the unanimous vote the staging directory is renamed to
 * DEST_DIR. See dirtree.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

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

/* Staging directories an earlier run left behind (killed before it could
 * clean up): ours, and not locked by a live run. */
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
        if (strncmp(e->d_name, prefix, (size_t)n) || strlen(e->d_name + n) != 6)
            continue;
        int sfd = openat(k->pfd, e->d_name, O_RDONLY | O_DIRECTORY | NOFOLLOW);
        struct stat st;
        if (sfd < 0)
            continue;
        if (fstat(sfd, &st) == 0 && st.st_uid == geteuid() && flock(sfd, LOCK_EX | LOCK_NB) == 0)
            (void)pb_rmtree_at(k->pfd, e->d_name, k->alive);
        close(sfd);
    }
    closedir(d);
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
        int rc = posix_fallocate(fd, (off_t)x[k].off, (off_t)x[k].len);
        if (rc == EOPNOTSUPP || rc == EINVAL)
            return dense && ftruncate(fd, (off_t)e->size) < 0 ? errno : 0;
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
    k->pfd = k->sfd = -1;
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
 * relative to its parent, never through a link. */
static int set_attrs(struct pb_dtree_sink *k, int dfd, const char *name, const struct pb_dtree_entry *e)
{
    struct timespec ts[2] = { { (time_t)e->mt_sec, (long)e->mt_nsec }, { (time_t)e->mt_sec, (long)e->mt_nsec } };
    if (k->chown && fchownat(dfd, name, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    /* not a link: this directory was made by us, 0700, and holds what we made */
    if (e->type != PB_DTREE_SYMLINK && fchmodat(dfd, name, (mode_t)(e->mode & 01777), 0) < 0)
        return -1;
    return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

int pb_dtree_sink_finish(struct pb_dtree_sink *k, char *err, size_t errlen)
{
    const struct pb_dtree *t = k->t;
    pb_fdcache_close(&k->fc);
    /* Backwards: every entry after everything below it, so a directory's
     * mtime is set after its contents, deepest first. Hard links share the
     * inode of their group's first entry. */
    for (size_t i = t->n; i-- > 0;) {
        const struct pb_dtree_entry *e = &t->e[i];
        if (e->type == PB_DTREE_HARDLINK)
            continue;
        const char *base;
        int dfd = pb_dircache_parent(&k->dc, e->path, &base);
        if (dfd < 0 || set_attrs(k, dfd, base, e) < 0)
            return serr(k, err, errlen, "cannot set owner, mode or mtime of", e->path, errno);
    }
    pb_dircache_close(&k->dc);
    struct timespec ts[2] = { { (time_t)t->mt_sec, (long)t->mt_nsec }, { (time_t)t->mt_sec, (long)t->mt_nsec } };
    if ((k->chown && fchown(k->sfd, (uid_t)t->uid, (gid_t)t->gid) < 0) || fchmod(k->sfd, (mode_t)(t->mode & 01777)) < 0 ||
        futimens(k->sfd, ts) < 0)
        return serr(k, err, errlen, "cannot set owner, mode or mtime of", ".", errno);
    if (syncfs(k->sfd) < 0)
        return serr(k, err, errlen, "cannot flush", ".", errno);
    return 0;
}

int pb_dtree_sink_commit(struct pb_dtree_sink *k, char *err, size_t errlen)
{
    struct stat cur;
    int exists = fstatat(k->pfd, k->base, &cur, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !k->force && !k->same) {
        snprintf(err, errlen, "DEST_DIR '%s' appeared during the copy: use --force to replace it", k->dest);
        return -1;
    }
    int rc = exists ? renameat2(k->pfd, k->stage, k->pfd, k->base, RENAME_EXCHANGE)
                    : renameat2(k->pfd, k->stage, k->pfd, k->base, RENAME_NOREPLACE);
    if (rc < 0 && (errno == EINVAL || errno == ENOSYS) && !exists)
        rc = renameat(k->pfd, k->stage, k->pfd, k->base);
    if (rc < 0 && (errno == EINVAL || errno == ENOSYS) && exists) {
        /* no RENAME_EXCHANGE here: the old one aside (under our hidden name,
         * now free... after one more rename), the new one in */
        char old[NAME_MAX + 1];
        snprintf(old, sizeof old, "%s", k->stage);
        old[strlen(old) - 6] = 'o'; /* .NAME.p2pbcast-oXXXXX: also removed as stale */
        rc = renameat(k->pfd, k->base, k->pfd, old);
        if (rc == 0 && (rc = renameat(k->pfd, k->stage, k->pfd, k->base)) == 0)
            snprintf(k->stage, sizeof k->stage, "%s", old);
    }
    if (rc < 0) {
        snprintf(err, errlen, "cannot rename the finished tree to DEST_DIR '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    if (!exists)
        k->stage[0] = 0;
    /* The old DEST_DIR now has the staging name: removed by abort (the
     * staging directory's fd still points at the new tree, unlocked then). */
    if (exists && pb_rmtree_at(k->pfd, k->stage, k->alive) < 0)
        fprintf(stderr, "p2pbcast: warning: DEST_DIR '%s' replaced, but removing the old one (now '%s') failed: %s\n",
                k->dest, k->stage, strerror(errno));
    k->stage[0] = 0;
    if (fsync(k->pfd) < 0 && errno != EINVAL) {
        snprintf(err, errlen, "flushing the directory of DEST_DIR '%s' failed: %s", k->dest, strerror(errno));
        return -1;
    }
    return 0;
}

void pb_dtree_sink_abort(struct pb_dtree_sink *k)
{
    pb_fdcache_close(&k->fc);
    pb_dircache_close(&k->dc);
    if (k->stage[0] && k->pfd >= 0)
        (void)pb_rmtree_at(k->pfd, k->stage, k->alive); /* a failed node still votes after this */
    k->stage[0] = 0;
    if (k->sfd >= 0)
        close(k->sfd);
    k->sfd = -1;
    if (k->pfd >= 0)
        close(k->pfd);
    k->pfd = -1;
}
