/* dest_guard.c — DEST never SOURCE, above it, or (directories) inside it;
 * see dest_guard.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dest_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)
#define MAX_DEPTH 4096

static int same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Is `want` the directory fd (taken) or one of its parents up to "/"? */
static int chain_holds(int fd, const struct stat *want)
{
    int found = 0;
    for (int depth = 0; fd >= 0 && !found && depth < MAX_DEPTH; depth++) {
        struct stat cur, up;
        int ufd = -1;
        if (fstat(fd, &cur) < 0)
            break;
        found = same_inode(&cur, want);
        if (!found && (ufd = openat(fd, "..", UP_FLAGS)) >= 0 && fstat(ufd, &up) == 0 && same_inode(&up, &cur)) {
            close(ufd); /* "/": its own parent */
            ufd = -1;
        }
        close(fd);
        fd = ufd;
    }
    if (fd >= 0)
        close(fd);
    return found;
}

/* path without trailing slashes, split into its directory and its name */
static int split(const char *path, char *dir, char *base)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n >= PATH_MAX)
        return -1;
    char p[PATH_MAX];
    memcpy(p, path, n);
    p[n] = 0;
    char *slash = strrchr(p, '/');
    if (!slash) {
        snprintf(dir, PATH_MAX, ".");
        snprintf(base, NAME_MAX + 1, "%.*s", NAME_MAX, p);
        return 0;
    }
    snprintf(base, NAME_MAX + 1, "%.*s", NAME_MAX, slash + 1);
    if (slash == p)
        slash++;
    *slash = 0;
    snprintf(dir, PATH_MAX, "%s", p);
    return 0;
}

int pb_dest_guard(const char *dest, const char *source, char *err, size_t errlen)
{
    struct stat src, dst;
    char ddir[PATH_MAX], dbase[NAME_MAX + 1], sdir[PATH_MAX], sbase[NAME_MAX + 1];
    if (stat(source, &src) < 0 || split(dest, ddir, dbase) < 0 || split(source, sdir, sbase) < 0)
        return 0; /* no SOURCE here (or a path too long for the sink to take) */
    int dfd = open(ddir, UP_FLAGS);
    if (dfd < 0)
        return 0; /* the sink reports DEST's directory */
    int exists = fstatat(dfd, dbase, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && same_inode(&dst, &src)) {
        close(dfd);
        snprintf(err, errlen, "DEST '%s' is SOURCE itself on this node", dest);
        return -1;
    }
    /* SOURCE inside DEST: from SOURCE's directory up */
    if (exists && S_ISDIR(dst.st_mode) && chain_holds(open(sdir, UP_FLAGS), &dst)) {
        close(dfd);
        snprintf(err, errlen,
                 "DEST '%s' is a directory that contains SOURCE '%s' on this node: replacing it would destroy SOURCE",
                 dest, source);
        return -1;
    }
    /* DEST inside a directory SOURCE: from DEST's directory up */
    if (!S_ISDIR(src.st_mode)) {
        close(dfd);
        return 0;
    }
    if (chain_holds(dfd, &src)) {
        snprintf(err, errlen, "DEST_DIR '%s' is inside SOURCE '%s' on this node (a tree is not copied into itself)",
                 dest, source);
        return -1;
    }
    return 0;
}

int pb_dest_above_source(const char *dest, const char *source)
{
    char ddir[PATH_MAX], dbase[NAME_MAX + 1], real_dir[PATH_MAX], real_src[PATH_MAX], d[PATH_MAX + NAME_MAX + 2];
    if (split(dest, ddir, dbase) < 0 || !realpath(ddir, real_dir) || !realpath(source, real_src))
        return 0;
    if (!strcmp(dbase, ".") || !strcmp(dbase, ".."))
        return 0; /* not a name the sinks take: they say so */
    snprintf(d, sizeof d, "%s/%s", strcmp(real_dir, "/") ? real_dir : "", dbase);
    size_t n = strlen(d);
    return !strncmp(real_src, d, n) && (real_src[n] == '/' || real_src[n] == 0);
}
