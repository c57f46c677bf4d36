/* sink.c — DEST on one node; see sink.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, linkat with AT_EMPTY_PATH */
#endif
#include "sink.h"
#include "space.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static void split_path(struct pb_sink *k, const char *dest)
{
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s", dest);
    snprintf(b, sizeof b, "%s", dest);
    snprintf(k->dir, sizeof k->dir, "%s", dirname(a));
    snprintf(k->base, sizeof k->base, "%s", basename(b));
}

/* Next to DEST, every file is opened relative to the directory fd and
 * never through a symbolic link: in a group-writable directory another
 * user may plant links under the names we use. New files are created
 * exclusively. */
#define NOFOLLOW (O_NOFOLLOW | O_CLOEXEC)
#define WRITEBACK_EVERY (32u << 20)

/* A hidden unique name next to DEST, created exclusively and locked (so a
 * later run can tell a live run's file from a stale one):
 * .NAME.p2pbcast-XXXXXX */
static int create_hidden(struct pb_sink *k)
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[6];
    for (int tries = 0; tries < 100; tries++) {
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            return -1;
        char x[7];
        for (int i = 0; i < 6; i++)
            x[i] = abc[rnd[i] % 62];
        x[6] = 0;
        int n = snprintf(k->tmpname, sizeof k->tmpname, ".%s.p2pbcast-%s", k->base, x);
        if (n < 0 || (size_t)n >= sizeof k->tmpname) {
            errno = ENAMETOOLONG;
            k->tmpname[0] = 0;
            return -1;
        }
        int fd = openat(k->dfd, k->tmpname, O_RDWR | O_CREAT | O_EXCL | NOFOLLOW, 0600);
        if (fd >= 0) {
            (void)flock(fd, LOCK_EX | LOCK_NB);
            return fd;
        }
        if (errno != EEXIST)
            break;
    }
    k->tmpname[0] = 0;
    return -1;
}

/* Hidden copies an earlier run of this DEST left behind (killed before it
 * could clean up, e.g. by MPI_Abort on a filesystem without O_TMPFILE):
 * ours, regular, and not locked by a live run. */
static void remove_stale(struct pb_sink *k)
{
    char prefix[NAME_MAX + 16];
    int n = snprintf(prefix, sizeof prefix, ".%s.p2pbcast-", k->base);
    int dfd = dup(k->dfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + n;
        if (strncmp(e->d_name, prefix, (size_t)n) || strlen(rest) != 6 || !strcmp(rest, "resume"))
            continue; /* the resume copy and its map are kept on purpose */
        int fd = openat(k->dfd, e->d_name, O_RDONLY | NOFOLLOW | O_NONBLOCK);
        struct stat st;
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            flock(fd, LOCK_EX | LOCK_NB) == 0)
            (void)unlinkat(k->dfd, e->d_name, 0);
        close(fd);
    }
    closedir(d);
}

/* Hidden name next to DEST: .NAME.p2pbcast-XXXXXX */
static int make_tmp_template(struct pb_sink *k, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, ".%s.p2pbcast-XXXXXX", k->base);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int reserve(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    if (w->size == 0)
        return 0;
    /* Reserve the space now: a full disk fails here, before any transfer. */
    int rc = pb_space_reserve(k->fd, 0, w->size);
    if (rc) {
        snprintf(err, errlen, "cannot reserve %llu bytes for DEST '%s': %s", (unsigned long long)w->size, k->dest,
                 strerror(rc));
        return -1;
    }
    return 0;
}

/* The map next to a kept file: what it copies and which chunks it holds. */
struct resume_head {
    char magic[8];
    uint64_t size, chunk, nchunks;
    int64_t mt_sec, mt_nsec;
};

static void resume_head_of(const struct pb_sink_want *w, uint64_t nchunks, struct resume_head *h)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "P2PBRES1", 8);
    h->size = w->size;
    h->chunk = w->chunk_size;
    h->nchunks = nchunks;
    h->mt_sec = w->mtime.tv_sec;
    h->mt_nsec = w->mtime.tv_nsec;
}

/* The kept copy of an earlier failed run, if its map describes this very
 * SOURCE; NULL otherwise. */
static unsigned char *read_map(struct pb_sink *k, const struct pb_sink_want *w, int fd)
{
    struct resume_head want, got;
    resume_head_of(w, k->nchunks, &want);
    size_t nb = (size_t)(k->nchunks / 8 + 1);
    int mfd = openat(k->dfd, k->mapname, O_RDONLY | NOFOLLOW);
    struct stat tst;
    unsigned char *have = NULL;
    if (mfd >= 0 && read(mfd, &got, sizeof got) == (ssize_t)sizeof got && !memcmp(&got, &want, sizeof got) &&
        fstat(fd, &tst) == 0 && (uint64_t)tst.st_size == w->size && (have = calloc(nb, 1)) &&
        read(mfd, have, nb) != (ssize_t)nb) {
        free(have);
        have = NULL;
    }
    if (mfd >= 0)
        close(mfd);
    return have;
}

/* The resume copy has a fixed name, so it is locked: two runs of one DEST
 * never share it. An existing file is reused only if it is a regular file
 * of ours. */
static int open_resumable(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    k->resume = 1;
    k->nchunks = w->chunk_size ? w->size / w->chunk_size + (w->size % w->chunk_size != 0) : 0;
    int n1 = snprintf(k->tmpname, sizeof k->tmpname, ".%s.p2pbcast-resume", k->base);
    int n2 = snprintf(k->mapname, sizeof k->mapname, "%s.map", k->tmpname);
    if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof k->mapname) {
        snprintf(err, errlen, "DEST '%s': temporary file name too long", k->dest);
        k->tmpname[0] = k->mapname[0] = 0;
        return -1;
    }
    k->fd = openat(k->dfd, k->tmpname, O_RDWR | NOFOLLOW);
    struct stat st;
    if (k->fd >= 0 && (fstat(k->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())) {
        snprintf(err, errlen, "DEST directory '%s': '%s' is not a regular file of ours: remove it", k->dir,
                 k->tmpname);
        close(k->fd);
        k->fd = -1;
        k->tmpname[0] = k->mapname[0] = 0;
        return -1;
    }
    if (k->fd < 0)
        k->fd = openat(k->dfd, k->tmpname, O_RDWR | O_CREAT | O_EXCL | NOFOLLOW, 0600);
    if (k->fd < 0) {
        snprintf(err, errlen, "cannot create '%s' in DEST directory '%s': %s", k->tmpname, k->dir, strerror(errno));
        k->tmpname[0] = k->mapname[0] = 0;
        return -1;
    }
    if (flock(k->fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "DEST '%s' is being written by another p2pbcast run (lock on '%s/%s')", k->dest,
                 k->dir, k->tmpname);
        close(k->fd);
        k->fd = -1;
        k->tmpname[0] = k->mapname[0] = 0; /* theirs: leave it */
        return -1;
    }
    k->have = read_map(k, w, k->fd);
    if (!k->have && ftruncate(k->fd, 0) < 0) {
        snprintf(err, errlen, "cannot reset '%s' in DEST directory '%s': %s", k->tmpname, k->dir, strerror(errno));
        pb_sink_abort(k);
        return -1;
    }
    (void)unlinkat(k->dfd, k->mapname, 0); /* valid again only when rewritten after a failure */
    if (reserve(k, w, err, errlen) < 0) {
        pb_sink_abort(k);
        return -1;
    }
    return 0;
}

int pb_sink_keep(struct pb_sink *k, const unsigned char *held, const struct pb_sink_want *w)
{
    if (!k->resume || k->fd < 0 || !k->tmpname[0])
        return -1;
    struct resume_head h;
    resume_head_of(w, k->nchunks, &h);
    size_t nb = (size_t)(k->nchunks / 8 + 1);
    int rc = -1;
    if (fsync(k->fd) == 0) {
        (void)unlinkat(k->dfd, k->mapname, 0);
        int mfd = openat(k->dfd, k->mapname, O_WRONLY | O_CREAT | O_EXCL | NOFOLLOW, 0600);
        if (mfd >= 0) {
            rc = write(mfd, &h, sizeof h) == (ssize_t)sizeof h && write(mfd, held, nb) == (ssize_t)nb &&
                         fsync(mfd) == 0
                     ? 0
                     : -1;
            if (close(mfd) < 0)
                rc = -1;
        }
    }
    if (rc < 0)
        (void)unlinkat(k->dfd, k->mapname, 0);
    /* Keep the data file under its hidden name either way: without a map
     * it is simply overwritten by the next run. */
    close(k->fd);
    k->fd = -1;
    k->tmpname[0] = 0;
    k->mapname[0] = 0;
    return rc;
}

int pb_sink_read(struct pb_sink *k, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(k->fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            snprintf(err, errlen, "cannot read back the kept copy of DEST '%s': %s", k->dest,
                     n < 0 ? strerror(errno) : "file too short");
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* An existing DEST: refused if it is a directory, not a regular file,
 * SOURCE itself, or different without --force. */
static int check_existing(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    const char *dest = k->dest;
    struct stat cur;
    if (fstatat(k->dfd, k->base, &cur, 0) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "DEST '%s': %s", dest, strerror(errno));
        return -1;
    }
    if (S_ISDIR(cur.st_mode)) {
        snprintf(err, errlen, "DEST '%s' is a directory: give the file name to create inside it", dest);
        return -1;
    }
    if (!S_ISREG(cur.st_mode)) {
        snprintf(err, errlen, "DEST '%s' exists and is not a regular file", dest);
        return -1;
    }
    if (w->source && cur.st_dev == w->source->st_dev && cur.st_ino == w->source->st_ino) {
        snprintf(err, errlen, "DEST '%s' is SOURCE itself on this node", dest);
        return -1;
    }
    int same = (uint64_t)cur.st_size == w->size && cur.st_mtim.tv_sec == w->mtime.tv_sec &&
               cur.st_mtim.tv_nsec == w->mtime.tv_nsec;
    if (!same && !w->force) {
        snprintf(err, errlen, "DEST '%s' exists and differs from SOURCE (size %lld, SOURCE %llu): use --force to replace it",
                 dest, (long long)cur.st_size, (unsigned long long)w->size);
        return -1;
    }
    return 0;
}

int pb_sink_open(struct pb_sink *k, const char *dest, const struct pb_sink_want *w,
                 char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->fd = k->dfd = -1;
    k->size = w->size;
    if (strlen(dest) >= sizeof k->dest) {
        snprintf(err, errlen, "DEST '%.64s...' is longer than PATH_MAX", dest);
        return -1;
    }
    snprintf(k->dest, sizeof k->dest, "%s", dest);
    if (dest[strlen(dest) - 1] == '/') {
        snprintf(err, errlen, "DEST '%s' names a directory: give the file name to create, e.g. %sNAME", dest, dest);
        return -1;
    }
    split_path(k, dest);
    k->dfd = open(k->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (k->dfd < 0) {
        snprintf(err, errlen, errno == ENOTDIR ? "DEST directory '%s' is not a directory" : "DEST directory '%s': %s",
                 k->dir, strerror(errno));
        return -1;
    }
    if (check_existing(k, w, err, errlen) < 0) {
        pb_sink_abort(k);
        return -1;
    }
    remove_stale(k);
    if (w->resume)
        return open_resumable(k, w, err, errlen);
    k->fd = w->no_tmpfile ? (errno = EOPNOTSUPP, -1) : openat(k->dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (k->fd >= 0) {
        k->anonymous = 1;
        k->tmpname[0] = 0;
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL || errno == ENOENT) {
        /* Filesystem without O_TMPFILE (e.g. some network filesystems). */
        k->fd = create_hidden(k);
    }
    if (k->fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in DEST directory '%s': %s", k->dir, strerror(errno));
        pb_sink_abort(k);
        return -1;
    }
    if (reserve(k, w, err, errlen) < 0) {
        pb_sink_abort(k);
        return -1;
    }
    return 0;
}

int pb_sink_write(struct pb_sink *k, uint64_t off, const void *buf, size_t len,
                  char *err, size_t errlen)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(k->fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "write to DEST '%s' failed at offset %llu: %s", k->dest,
                     (unsigned long long)(off + done), strerror(errno));
            return -1;
        }
        done += (size_t)n;
    }
    /* Start writeback as the data comes, so that the flush at the end (which
     * every node waits for) has little left to do. */
    k->unsynced += len;
    if (k->unsynced >= WRITEBACK_EVERY) {
        (void)sync_file_range(k->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        k->unsynced = 0;
    }
    return 0;
}

int pb_sink_flush(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    struct timespec ts[2] = { w->mtime, w->mtime };
    /* setuid and setgid are not copied: a staged file should not become a
     * privileged program on every node unless an admin makes it one. */
    if (fchmod(k->fd, w->mode & 01777) < 0 || futimens(k->fd, ts) < 0) {
        snprintf(err, errlen, "cannot set mode/mtime of DEST '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    if (fsync(k->fd) < 0) {
        snprintf(err, errlen, "fsync of DEST '%s' failed: %s", k->dest, strerror(errno));
        return -1;
    }
    return 0;
}

/* Give the anonymous file a hidden unique name (linkat cannot replace an
 * existing file, rename can, atomically). */
static int link_anonymous(struct pb_sink *k, char *err, size_t errlen)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", k->fd);
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int tries = 0; tries < 100; tries++) {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            break;
        if (make_tmp_template(k, k->tmpname, sizeof k->tmpname) < 0) {
            errno = ENAMETOOLONG;
            break;
        }
        char *x = k->tmpname + strlen(k->tmpname) - 6;
        for (int i = 0; i < 6; i++)
            x[i] = abc[rnd[i] % 62];
        if (linkat(AT_FDCWD, proc, k->dfd, k->tmpname, AT_SYMLINK_FOLLOW) == 0 ||
            linkat(k->fd, "", k->dfd, k->tmpname, AT_EMPTY_PATH) == 0) {
            k->anonymous = 0;
            return 0;
        }
        if (errno != EEXIST)
            break;
    }
    snprintf(err, errlen, "cannot link the finished copy into DEST directory '%s': %s", k->dir, strerror(errno));
    k->tmpname[0] = 0;
    return -1;
}

int pb_sink_commit(struct pb_sink *k, char *err, size_t errlen)
{
    if (k->anonymous && link_anonymous(k, err, errlen) < 0)
        return -1;
    if (renameat(k->dfd, k->tmpname, k->dfd, k->base) < 0) {
        snprintf(err, errlen, "cannot rename the finished copy to DEST '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    k->tmpname[0] = 0;
    if (k->mapname[0])
        (void)unlinkat(k->dfd, k->mapname, 0);
    k->mapname[0] = 0;
    /* A network filesystem may report a failed write only at close, and the
     * new name is durable only once the directory is flushed. */
    int rc = close(k->fd);
    k->fd = -1;
    if (rc < 0) {
        snprintf(err, errlen, "closing DEST '%s' failed: %s", k->dest, strerror(errno));
        return -1;
    }
    if (fsync(k->dfd) < 0 && errno != EINVAL) {
        snprintf(err, errlen, "flushing DEST directory '%s' failed: %s", k->dir, strerror(errno));
        return -1;
    }
    return 0;
}

void pb_sink_abort(struct pb_sink *k)
{
    free(k->have);
    k->have = NULL;
    if (k->tmpname[0] && k->dfd >= 0)
        (void)unlinkat(k->dfd, k->tmpname, 0);
    k->tmpname[0] = 0;
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    if (k->dfd >= 0)
        close(k->dfd);
    k->dfd = -1;
}
