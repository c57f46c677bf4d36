/* tree_walk.c — the root walks a directory SOURCE into a manifest: sorted
 * names, depth first, never following a symbolic link; see dirtree.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dirtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEPTH 512 /* one open directory per level */

/* Regular files with several links, by (dev, ino): the first entry. */
struct inode_map {
    struct ino_slot {
        dev_t dev;
        ino_t ino;
        size_t idx;
        int used;
    } *s;
    size_t cap, n;
};

struct walk {
    struct pb_dtree *t;
    const char *source;
    int srclen; /* without trailing slashes, for messages */
    FILE *list;
    struct pb_alive *alive;
    char rel[PB_DTREE_PATH_MAX + 2];
    size_t rlen;
    int depth;
    struct inode_map hl;
    char *err;
    size_t errlen;
};

static int werr(struct walk *w, const char *what, int e)
{
    char shown[200];
    snprintf(w->err, w->errlen, "SOURCE '%.*s': %s '%s': %s", w->srclen, w->source, what,
             pb_dtree_show(w->rlen ? w->rel : ".", shown, sizeof shown), strerror(e));
    return -1;
}

static size_t *map_find(struct inode_map *m, dev_t dev, ino_t ino, int add, size_t idx)
{
    if (add && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct ino_slot *s = calloc(cap, sizeof *s);
        if (!s)
            return NULL;
        for (size_t i = 0; i < m->cap; i++)
            if (m->s[i].used) {
                size_t h = ((size_t)m->s[i].ino * 2654435761u ^ (size_t)m->s[i].dev) & (cap - 1);
                while (s[h].used)
                    h = (h + 1) & (cap - 1);
                s[h] = m->s[i];
            }
        free(m->s);
        m->s = s;
        m->cap = cap;
    }
    if (!m->cap)
        return NULL;
    size_t h = ((size_t)ino * 2654435761u ^ (size_t)dev) & (m->cap - 1);
    for (; m->s[h].used; h = (h + 1) & (m->cap - 1))
        if (m->s[h].dev == dev && m->s[h].ino == ino)
            return &m->s[h].idx;
    if (!add)
        return NULL;
    m->s[h] = (struct ino_slot){ dev, ino, idx, 1 };
    m->n++;
    return &m->s[h].idx;
}

/* Whom the root's read must find again (dirtree_source.c). */
static struct pb_dtree_ident ident(const struct stat *st)
{
    return (struct pb_dtree_ident){ (uint64_t)st->st_dev, (uint64_t)st->st_ino, st->st_ctim.tv_sec,
                                    (uint32_t)st->st_ctim.tv_nsec };
}

static struct pb_dtree_entry *add_entry(struct walk *w, int type, const struct stat *st)
{
    struct pb_dtree *t = w->t;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        struct pb_dtree_entry *e = realloc(t->e, cap * sizeof *e);
        if (e)
            t->e = e;
        struct pb_dtree_ident *id = e ? realloc(t->id, cap * sizeof *id) : NULL;
        if (!id)
            return NULL;
        t->id = id;
        t->cap = cap;
    }
    struct pb_dtree_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    if (!(e->path = strdup(w->rel)))
        return NULL;
    t->id[t->n] = ident(st);
    t->n++;
    e->type = (uint8_t)type;
    e->mode = (uint32_t)st->st_mode & 07777;
    e->uid = (uint32_t)st->st_uid;
    e->gid = (uint32_t)st->st_gid;
    e->mt_sec = st->st_mtim.tv_sec;
    e->mt_nsec = (uint32_t)st->st_mtim.tv_nsec;
    e->stream_off = t->stream_size;
    return e;
}

/* Data extents by SEEK_DATA/SEEK_HOLE; one dense extent where the file
 * system cannot tell or the file is not sparse. */
static int find_extents(int fd, const struct stat *st, struct pb_dtree_entry *e)
{
    uint64_t size = (uint64_t)st->st_size;
    e->one = (struct pb_extent){ 0, size };
    e->next = size ? 1 : 0;
    if (!size || (uint64_t)st->st_blocks * 512 >= size)
        return 0;
    struct pb_extent *x = NULL;
    uint32_t n = 0, cap = 0;
    for (off_t pos = 0; (uint64_t)pos < size;) {
        off_t d = lseek(fd, pos, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            break;
        off_t h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
        if (d < 0 || h < 0 || n == PB_DTREE_MAX_EXTENTS) {
            free(x); /* cannot tell: dense */
            return 0;
        }
        if ((uint64_t)h > size)
            h = (off_t)size;
        if (h <= d)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct pb_extent *nx = realloc(x, cap * sizeof *nx);
            if (!nx) {
                free(x);
                return -1;
            }
            x = nx;
        }
        x[n++] = (struct pb_extent){ (uint64_t)d, (uint64_t)(h - d) };
        pos = h;
    }
    e->next = n;
    if (n == 1)
        e->one = x[0];
    if (n <= 1)
        free(x);
    else
        e->ext = x;
    return 0;
}

static int add_file(struct walk *w, int dfd, const char *name, const struct stat *st)
{
    size_t *first = st->st_nlink > 1 ? map_find(&w->hl, st->st_dev, st->st_ino, 0, 0) : NULL;
    if (first) {
        struct pb_dtree_entry *e = add_entry(w, PB_DTREE_HARDLINK, st);
        if (!e)
            return werr(w, "cannot list", ENOMEM);
        e->link = *first;
        w->t->nhardlinks++;
        return 0;
    }
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return werr(w, "cannot open", errno);
    struct stat now;
    struct pb_dtree_entry *e = NULL;
    int rc = fstat(fd, &now) < 0 ? errno : now.st_ino != st->st_ino || !S_ISREG(now.st_mode) ? EAGAIN : 0;
    if (!rc && !(e = add_entry(w, PB_DTREE_FILE, &now)))
        rc = ENOMEM;
    if (!rc && find_extents(fd, &now, e) < 0)
        rc = ENOMEM;
    close(fd);
    if (rc)
        return werr(w, rc == EAGAIN ? "changed while listed" : "cannot read", rc);
    e->size = (uint64_t)now.st_size;
    for (uint32_t k = 0; k < e->next; k++)
        w->t->stream_size += pb_dtree_extents(e)[k].len;
    w->t->nfiles++;
    if (now.st_nlink > 1 && !map_find(&w->hl, now.st_dev, now.st_ino, 1, w->t->n - 1))
        return werr(w, "cannot list", ENOMEM);
    return 0;
}

static int add_symlink(struct walk *w, int dfd, const char *name, const struct stat *st)
{
    char target[PB_DTREE_PATH_MAX + 1];
    ssize_t n = readlinkat(dfd, name, target, sizeof target);
    if (n < 0)
        return werr(w, "cannot read the symbolic link", errno);
    if (n == 0 || (size_t)n > PB_DTREE_PATH_MAX || memchr(target, 0, (size_t)n))
        return werr(w, "symbolic link target", ENAMETOOLONG);
    target[n] = 0;
    struct pb_dtree_entry *e = add_entry(w, PB_DTREE_SYMLINK, st);
    if (!e || !(e->target = strdup(target)))
        return werr(w, "cannot list", ENOMEM);
    w->t->nsymlinks++;
    return 0;
}

static int walk_dir(struct walk *w, int dfd);

static int add_one(struct walk *w, int dfd, const char *name)
{
    struct stat st;
    pb_alive_tick(w->alive);
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return werr(w, "cannot stat", errno);
    if (S_ISREG(st.st_mode))
        return add_file(w, dfd, name, &st);
    if (S_ISLNK(st.st_mode))
        return add_symlink(w, dfd, name, &st);
    if (!S_ISDIR(st.st_mode)) {
        w->t->nskipped++;
        if (w->list)
            fprintf(w->list, "p2pbcast: skipping special file '%.*s/%s' (%s)\n", w->srclen, w->source, w->rel,
                    S_ISSOCK(st.st_mode) ? "socket" : S_ISFIFO(st.st_mode) ? "fifo" : "device");
        return 0;
    }
    if (!add_entry(w, PB_DTREE_DIR, &st))
        return werr(w, "cannot list", ENOMEM);
    w->t->ndirs++;
    if (w->depth >= MAX_DEPTH)
        return werr(w, "directory nesting deeper than 512 levels at", ELOOP);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return werr(w, "cannot open directory", errno);
    w->depth++;
    int rc = walk_dir(w, fd);
    w->depth--;
    close(fd);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dfd, sorted; *out malloc'd (names too). */
static int list_names(struct walk *w, int dfd, char ***out, size_t *count)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return werr(w, "cannot read directory", errno);
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char **nv = n == cap ? realloc(v, (cap = cap ? cap * 2 : 32) * sizeof *v) : v;
        if (!nv || !(nv[n] = strdup(de->d_name)))
            rc = werr(w, "cannot list", ENOMEM);
        else
            n++;
        v = nv ? nv : v;
        errno = 0;
    }
    if (!rc && errno)
        rc = werr(w, "cannot read directory", errno);
    closedir(d);
    if (n > 1) /* an empty directory has v == NULL: not for qsort */
        qsort(v, n, sizeof *v, by_name);
    *out = v;
    *count = n;
    return rc;
}

static int walk_dir(struct walk *w, int dfd)
{
    char **names = NULL;
    size_t n = 0, save = w->rlen;
    int rc = list_names(w, dfd, &names, &n);
    for (size_t i = 0; !rc && i < n; i++) {
        size_t nl = strlen(names[i]);
        if (save + (save ? 1 : 0) + nl > PB_DTREE_PATH_MAX) {
            rc = werr(w, "path too long below", ENAMETOOLONG);
            break;
        }
        w->rlen = save;
        if (save)
            w->rel[w->rlen++] = '/';
        memcpy(w->rel + w->rlen, names[i], nl + 1);
        w->rlen += nl;
        rc = add_one(w, dfd, names[i]);
    }
    w->rlen = save;
    w->rel[save] = 0;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int pb_dtree_walk(const char *source, struct pb_dtree *t, FILE *list, struct pb_alive *alive, char *err,
                  size_t errlen)
{
    memset(t, 0, sizeof *t);
    struct walk w = { .t = t, .source = source, .list = list, .alive = alive, .err = err, .errlen = errlen };
    w.srclen = (int)strnlen(source, PATH_MAX);
    while (w.srclen > 1 && source[w.srclen - 1] == '/')
        w.srclen--;
    int fd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot open SOURCE directory '%s': %s", source, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    t->mode = (uint32_t)st.st_mode & 07777;
    t->uid = (uint32_t)st.st_uid;
    t->gid = (uint32_t)st.st_gid;
    t->mt_sec = st.st_mtim.tv_sec;
    t->mt_nsec = (uint32_t)st.st_mtim.tv_nsec;
    t->top_id = ident(&st);
    int rc = walk_dir(&w, fd);
    close(fd);
    free(w.hl.s);
    if (rc < 0)
        pb_dtree_free(t);
    return rc;
}
