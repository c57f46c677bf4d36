/* sink.c — DEST on one node; see sink.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE, linkat with AT_EMPTY_PATH */
#endif
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Hidden name next to DEST: .NAME.p2pbcast-XXXXXX */
static int make_tmp_template(struct pb_sink *k, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/.%s.p2pbcast-XXXXXX", k->dir, k->base);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int reserve(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    if (w->size == 0)
        return 0;
    /* Reserve the space now: a full disk fails here, before any transfer. */
    int rc = posix_fallocate(k->fd, 0, (off_t)w->size);
    if (rc == EOPNOTSUPP || rc == EINVAL)
        rc = ftruncate(k->fd, (off_t)w->size) < 0 ? errno : 0;
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

static int open_resumable(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    k->resume = 1;
    k->nchunks = w->chunk_size ? w->size / w->chunk_size + (w->size % w->chunk_size != 0) : 0;
    int n1 = snprintf(k->tmpname, sizeof k->tmpname, "%s/.%s.p2pbcast-resume", k->dir, k->base);
    int n2 = snprintf(k->mapname, sizeof k->mapname, "%s.map", k->tmpname);
    if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof k->mapname) {
        snprintf(err, errlen, "DEST '%s': temporary file name too long", k->dest);
        return -1;
    }
    /* A kept file counts only if its map describes this very SOURCE. */
    struct resume_head want, got;
    resume_head_of(w, k->nchunks, &want);
    size_t nb = (size_t)(k->nchunks / 8 + 1);
    int mfd = open(k->mapname, O_RDONLY | O_CLOEXEC);
    struct stat tst;
    if (mfd >= 0 && read(mfd, &got, sizeof got) == (ssize_t)sizeof got && !memcmp(&got, &want, sizeof got) &&
        stat(k->tmpname, &tst) == 0 && (uint64_t)tst.st_size == w->size && (k->have = calloc(nb, 1)) &&
        read(mfd, k->have, nb) == (ssize_t)nb) {
        k->fd = open(k->tmpname, O_RDWR | O_CLOEXEC);
    } else {
        free(k->have);
        k->have = NULL;
        k->fd = open(k->tmpname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    if (mfd >= 0)
        close(mfd);
    (void)unlink(k->mapname); /* valid again only when rewritten after a failure */
    if (k->fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in DEST directory '%s': %s", k->dir, strerror(errno));
        k->tmpname[0] = 0;
        return -1;
    }
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
        int mfd = open(k->mapname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (mfd >= 0) {
            rc = write(mfd, &h, sizeof h) == (ssize_t)sizeof h && write(mfd, held, nb) == (ssize_t)nb &&
                         fsync(mfd) == 0
                     ? 0
                     : -1;
            close(mfd);
        }
    }
    if (rc < 0)
        (void)unlink(k->mapname);
    /* Keep the data file under its hidden name either way: without a map
     * it is simply overwritten by the next run. */
    close(k->fd);
    k->fd = -1;
    k->tmpname[0] = 0;
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

int pb_sink_open(struct pb_sink *k, const char *dest, const struct pb_sink_want *w,
                 char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->fd = -1;
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

    struct stat dst;
    if (stat(k->dir, &dst) < 0) {
        snprintf(err, errlen, "DEST directory '%s': %s", k->dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(dst.st_mode)) {
        snprintf(err, errlen, "DEST directory '%s' is not a directory", k->dir);
        return -1;
    }
    struct stat cur;
    if (stat(dest, &cur) == 0) {
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
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "DEST '%s': %s", dest, strerror(errno));
        return -1;
    }

    if (w->resume)
        return open_resumable(k, w, err, errlen);
    k->fd = open(k->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (k->fd >= 0) {
        k->anonymous = 1;
        k->tmpname[0] = 0;
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL || errno == ENOENT) {
        /* Filesystem without O_TMPFILE (e.g. some network filesystems). */
        char tmpl[PATH_MAX];
        if (make_tmp_template(k, tmpl, sizeof tmpl) < 0) {
            snprintf(err, errlen, "DEST '%s': temporary file name too long", dest);
            return -1;
        }
        k->fd = mkostemp(tmpl, O_CLOEXEC);
        if (k->fd < 0) {
            snprintf(err, errlen, "cannot create a temporary file in DEST directory '%s': %s", k->dir, strerror(errno));
            return -1;
        }
        snprintf(k->tmpname, sizeof k->tmpname, "%s", tmpl);
    } else {
        snprintf(err, errlen, "cannot create a temporary file in DEST directory '%s': %s", k->dir, strerror(errno));
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
    return 0;
}

int pb_sink_flush(struct pb_sink *k, const struct pb_sink_want *w, char *err, size_t errlen)
{
    struct timespec ts[2] = { w->mtime, w->mtime };
    if (fchmod(k->fd, w->mode & 07777) < 0 || futimens(k->fd, ts) < 0) {
        snprintf(err, errlen, "cannot set mode/mtime of DEST '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    if (fsync(k->fd) < 0) {
        snprintf(err, errlen, "fsync of DEST '%s' failed: %s", k->dest, strerror(errno));
        return -1;
    }
    return 0;
}

int pb_sink_commit(struct pb_sink *k, char *err, size_t errlen)
{
    if (k->anonymous) {
        /* Give the anonymous file a hidden name, then rename it over DEST:
         * linkat cannot replace an existing file, rename can, atomically. */
        char tmpl[PATH_MAX], proc[64];
        if (make_tmp_template(k, tmpl, sizeof tmpl) < 0) {
            snprintf(err, errlen, "DEST '%s': temporary file name too long", k->dest);
            return -1;
        }
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", k->fd);
        for (int tries = 0;; tries++) {
            char name[PATH_MAX];
            snprintf(name, sizeof name, "%s", tmpl);
            /* mktemp-style unique name; the link fails with EEXIST on a clash. */
            static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            char *x = name + strlen(name) - 6;
            unsigned long r = (unsigned long)getpid() * 2654435761u + (unsigned long)tries * 40503u +
                              (unsigned long)time(NULL);
            for (int i = 0; i < 6; i++, r /= 62)
                x[i] = abc[r % 62];
            if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 ||
                linkat(k->fd, "", AT_FDCWD, name, AT_EMPTY_PATH) == 0) {
                snprintf(k->tmpname, sizeof k->tmpname, "%s", name);
                break;
            }
            if (errno != EEXIST || tries > 100) {
                snprintf(err, errlen, "cannot link the finished copy into DEST directory '%s': %s", k->dir,
                         strerror(errno));
                return -1;
            }
        }
        k->anonymous = 0;
    }
    if (rename(k->tmpname, k->dest) < 0) {
        snprintf(err, errlen, "cannot rename the finished copy to DEST '%s': %s", k->dest, strerror(errno));
        return -1;
    }
    k->tmpname[0] = 0;
    if (k->mapname[0])
        (void)unlink(k->mapname);
    /* Make the new name durable. */
    int dfd = open(k->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    close(k->fd);
    k->fd = -1;
    return 0;
}

void pb_sink_abort(struct pb_sink *k)
{
    free(k->have);
    k->have = NULL;
    if (k->tmpname[0]) {
        (void)unlink(k->tmpname);
        k->tmpname[0] = 0;
    }
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}
