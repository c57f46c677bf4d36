/* dirtree_same.c — whether an existing DEST_DIR already is the tree the
 * manifest describes, by the rule a file DEST follows: same entries, same
 * types, files of the same size and mtime, links to the same targets. Such
 * a DEST_DIR is replaced by the verified copy without --force; one that
 * differs is refused, naming the first difference. Read-only: every name
 * is looked at relative to a directory fd, without following a link. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Entries below dfd, not following links; stops counting past limit. */
static size_t count_entries(int dfd, size_t limit, struct pb_alive *alive)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return limit + 1;
    }
    size_t n = 0;
    struct dirent *e;
    while (n <= limit && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        pb_alive_tick(alive);
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            n += count_entries(sub, limit - n, alive);
    }
    closedir(d);
    return n;
}

/* 0 when the entry on disk is what the manifest says; else why. */
static int entry_differs(int dfd, const struct pb_dtree *t, const struct pb_dtree_entry *e, char *why, size_t wl)
{
    struct stat st;
    if (fstatat(dfd, e->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        snprintf(why, wl, "%s", strerror(errno));
        return 1;
    }
    const struct pb_dtree_entry *data = e->type == PB_DTREE_HARDLINK ? &t->e[e->link] : e;
    switch (e->type) {
    case PB_DTREE_DIR:
        if (!S_ISDIR(st.st_mode))
            return snprintf(why, wl, "not a directory"), 1;
        return 0;
    case PB_DTREE_SYMLINK: {
        char target[PATH_MAX];
        ssize_t n = S_ISLNK(st.st_mode) ? readlinkat(dfd, e->path, target, sizeof target - 1) : -1;
        if (n < 0 || (size_t)n != strlen(e->target) || memcmp(target, e->target, (size_t)n))
            return snprintf(why, wl, "not the same symbolic link"), 1;
        return 0;
    }
    default:
        if (!S_ISREG(st.st_mode))
            return snprintf(why, wl, "not a regular file"), 1;
        if ((uint64_t)st.st_size != data->size || st.st_mtim.tv_sec != data->mt_sec ||
            (uint32_t)st.st_mtim.tv_nsec != data->mt_nsec)
            return snprintf(why, wl, "size or modification time differs"), 1;
        return 0;
    }
}

int pb_dtree_same(int pfd, const char *base, const struct pb_dtree *t, struct pb_alive *alive, char *why, size_t wl)
{
    int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(why, wl, "it is not a directory");
        return 0;
    }
    char reason[128], shown[200];
    for (size_t i = 0; i < t->n; i++) {
        pb_alive_tick(alive);
        if (entry_differs(dfd, t, &t->e[i], reason, sizeof reason)) {
            snprintf(why, wl, "'%s': %s", pb_dtree_show(t->e[i].path, shown, sizeof shown), reason);
            close(dfd);
            return 0;
        }
    }
    if (count_entries(dfd, t->n, alive) != t->n) { /* closes dfd */
        snprintf(why, wl, "it holds entries SOURCE does not have");
        return 0;
    }
    return 1;
}
