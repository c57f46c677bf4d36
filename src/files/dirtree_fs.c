/* tree_fs.c — directories opened relative to a top directory without ever
 * following a link, a small cache of open files, and removal of a tree;
 * see dirtree.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

void pb_dircache_init(struct pb_dircache *c, int top)
{
    c->top = top;
    c->fd = -1;
    c->path[0] = 0;
}

void pb_dircache_close(struct pb_dircache *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->path[0] = 0;
}

/* Open the components of rel[from, plen) one by one below fd (not closed). */
static int walk_down(int fd, const char *rel, size_t from, size_t plen)
{
    int cur = fd;
    char comp[NAME_MAX + 1];
    while (from < plen) {
        const char *c = rel + from;
        const char *slash = memchr(c, '/', plen - from);
        size_t cl = slash ? (size_t)(slash - c) : plen - from;
        if (cl == 0 || cl > NAME_MAX) {
            if (cur != fd)
                close(cur);
            errno = cl ? ENAMETOOLONG : EINVAL;
            return -1;
        }
        memcpy(comp, c, cl);
        comp[cl] = 0;
        int next = openat(cur, comp, DIR_FLAGS);
        if (cur != fd)
            close(cur);
        if (next < 0)
            return -1;
        cur = next;
        from += cl + 1;
    }
    return cur == fd ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : cur;
}

int pb_dircache_parent(struct pb_dircache *c, const char *rel, const char **base)
{
    const char *slash = strrchr(rel, '/');
    size_t plen = slash ? (size_t)(slash - rel) : 0;
    *base = slash ? slash + 1 : rel;
    if (plen > PB_DTREE_PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t cl = strlen(c->path);
    if (c->fd >= 0 && cl == plen && !strncmp(c->path, rel, plen))
        return c->fd;
    int fd;
    if (c->fd >= 0 && cl < plen && (cl == 0 || (!strncmp(c->path, rel, cl) && rel[cl] == '/')))
        fd = walk_down(c->fd, rel, cl ? cl + 1 : 0, plen); /* deeper below the cached one */
    else
        fd = walk_down(c->top, rel, 0, plen);
    if (fd < 0)
        return -1;
    pb_dircache_close(c);
    c->fd = fd;
    memcpy(c->path, rel, plen);
    c->path[plen] = 0;
    return fd;
}

void pb_fdcache_init(struct pb_fdcache *c)
{
    for (int i = 0; i < PB_DTREE_FD_CACHE; i++)
        c->fd[i] = -1;
    c->next = 0;
}

int pb_fdcache_get(const struct pb_fdcache *c, size_t idx)
{
    for (int i = 0; i < PB_DTREE_FD_CACHE; i++)
        if (c->fd[i] >= 0 && c->idx[i] == idx)
            return c->fd[i];
    return -1;
}

void pb_fdcache_put(struct pb_fdcache *c, size_t idx, int fd)
{
    unsigned s = c->next++ % PB_DTREE_FD_CACHE;
    if (c->fd[s] >= 0)
        close(c->fd[s]);
    c->fd[s] = fd;
    c->idx[s] = idx;
}

void pb_fdcache_close(struct pb_fdcache *c)
{
    for (int i = 0; i < PB_DTREE_FD_CACHE; i++) {
        if (c->fd[i] >= 0)
            close(c->fd[i]);
        c->fd[i] = -1;
    }
}

/* Empty the directory fd (taken), removing what is inside. */
static int empty_dir(int fd, struct pb_alive *alive)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int rc = 0, first = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        pb_alive_tick(alive);
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            continue;
        if ((errno == EISDIR || errno == EPERM) && pb_rmtree_at(dirfd(d), de->d_name, alive) == 0)
            continue;
        if (!rc)
            first = errno;
        rc = -1;
    }
    closedir(d);
    errno = first;
    return rc;
}

int pb_rmtree_at(int dfd, const char *name, struct pb_alive *alive)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
    /* A directory of ours made read-only (its mode from SOURCE) is made
     * writable first, as a tree we are allowed to replace. Not a link: it
     * was looked at without following. */
    if ((st.st_mode & 0700) != 0700 && st.st_uid == geteuid())
        (void)fchmodat(dfd, name, 0700, 0);
    int fd = openat(dfd, name, DIR_FLAGS);
    if (fd < 0)
        return -1;
    int rc = empty_dir(fd, alive);
    int e = errno;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
        if (rc == 0)
            e = errno;
        rc = -1;
    }
    errno = e;
    return rc;
}
