/* source.c — SOURCE on the root node; see source.h. */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

int pb_source_open(struct pb_source *s, const char *path, char *err, size_t errlen)
{
    s->path = path;
    s->fd = -1;
    /* Look before opening: a socket cannot be opened at all, and the reason
     * the user needs is what the path is, not ENXIO. */
    struct stat pre;
    if (stat(path, &pre) == 0 && !S_ISREG(pre.st_mode)) {
        if (S_ISDIR(pre.st_mode))
            snprintf(err, errlen, "SOURCE '%s' is a directory (p2pbcast copies one file; tar the directory first)",
                     path);
        else
            snprintf(err, errlen, "SOURCE '%s' is not a regular file (fifo, device or socket)", path);
        return -1;
    }
    /* O_NONBLOCK: a fifo swapped in meanwhile must not hang the open. */
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot open SOURCE '%s': %s", path, strerror(errno));
        return -1;
    }
    if (fstat(s->fd, &s->st) < 0) {
        snprintf(err, errlen, "cannot stat SOURCE '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(s->st.st_mode)) {
        snprintf(err, errlen, "SOURCE '%s' is a directory (p2pbcast copies one file; tar the directory first)", path);
        goto fail;
    }
    if (!S_ISREG(s->st.st_mode)) {
        snprintf(err, errlen, "SOURCE '%s' is not a regular file (fifo, device or socket)", path);
        goto fail;
    }
    int fl = fcntl(s->fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(s->fd, F_SETFL, fl & ~O_NONBLOCK);
    /* We read once, front to back. */
    (void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return 0;
fail:
    close(s->fd);
    s->fd = -1;
    return -1;
}

int pb_source_read(struct pb_source *s, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(s->fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "read error on SOURCE '%s' at offset %llu: %s", s->path,
                     (unsigned long long)(off + got), strerror(errno));
            return -1;
        }
        if (n == 0) {
            snprintf(err, errlen, "SOURCE '%s' shrank during the copy (end of file at offset %llu, expected %llu bytes)",
                     s->path, (unsigned long long)(off + got), (unsigned long long)s->st.st_size);
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int pb_source_check_unchanged(struct pb_source *s, char *err, size_t errlen)
{
    struct stat now;
    if (fstat(s->fd, &now) < 0) {
        snprintf(err, errlen, "cannot stat SOURCE '%s': %s", s->path, strerror(errno));
        return -1;
    }
    /* ctime too: a rewrite that restores size and mtime (touch -r, rsync,
     * tar x) cannot restore it. */
    if (now.st_size != s->st.st_size || now.st_mtim.tv_sec != s->st.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != s->st.st_mtim.tv_nsec || now.st_ctim.tv_sec != s->st.st_ctim.tv_sec ||
        now.st_ctim.tv_nsec != s->st.st_ctim.tv_nsec) {
        if (now.st_size != s->st.st_size)
            snprintf(err, errlen, "SOURCE '%s' was modified during the copy (size %lld -> %lld): copies discarded",
                     s->path, (long long)s->st.st_size, (long long)now.st_size);
        else
            snprintf(err, errlen, "SOURCE '%s' was modified during the copy (%s changed): copies discarded", s->path,
                     now.st_mtim.tv_sec != s->st.st_mtim.tv_sec || now.st_mtim.tv_nsec != s->st.st_mtim.tv_nsec
                         ? "mtime"
                         : "ctime");
        return -1;
    }
    return 0;
}

int pb_source_fs_type(struct pb_source *s, unsigned long *f_type, char *err, size_t errlen)
{
    struct statfs sf;
    if (fstatfs(s->fd, &sf) < 0) {
        snprintf(err, errlen, "cannot statfs SOURCE '%s': %s", s->path, strerror(errno));
        return -1;
    }
    *f_type = (unsigned long)sf.f_type;
    return 0;
}

void pb_source_close(struct pb_source *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
