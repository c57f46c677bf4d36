/* dirtree_manifest.c — the manifest of a directory SOURCE: serialize, strict
 * parse, and the map from stream offsets to files; see dirtree.h. Pure: no
 * file system, no MPI (unit-tested and fuzzed). */
#include "dirtree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "P2PBTREE"
#define VERSION 1u
#define MAX_SIZE (1ull << 62) /* a file or the stream larger than this is refused */

void pb_dtree_free(struct pb_dtree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].path);
        free(t->e[i].target);
        free(t->e[i].ext);
    }
    free(t->e);
    free(t->id);
    memset(t, 0, sizeof *t);
}

const char *pb_dtree_show(const char *path, char *buf, size_t n)
{
    size_t i = 0;
    for (; path && path[i] && i + 1 < n; i++)
        buf[i] = (unsigned char)path[i] < 0x20 || path[i] == 0x7f ? '?' : path[i];
    buf[i] = 0;
    return buf;
}

/* ---- encode */

struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
};

static void put(struct wbuf *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *p = realloc(w->p, cap);
        if (!p) {
            w->oom = 1;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u(struct wbuf *w, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, (size_t)bytes);
}

static void put_attrs(struct wbuf *w, uint32_t mode, uint32_t uid, uint32_t gid, int64_t s, uint32_t ns)
{
    put_u(w, mode, 4);
    put_u(w, uid, 4);
    put_u(w, gid, 4);
    put_u(w, (uint64_t)s, 8);
    put_u(w, ns, 4);
}

static void put_entry(struct wbuf *w, const struct pb_dtree_entry *e)
{
    put_u(w, e->type, 1);
    put_attrs(w, e->mode, e->uid, e->gid, e->mt_sec, e->mt_nsec);
    size_t pl = strlen(e->path);
    put_u(w, pl, 2);
    put(w, e->path, pl);
    if (e->type == PB_DTREE_FILE) {
        put_u(w, e->size, 8);
        put_u(w, e->next, 4);
        const struct pb_extent *x = pb_dtree_extents(e);
        for (uint32_t k = 0; k < e->next; k++) {
            put_u(w, x[k].off, 8);
            put_u(w, x[k].len, 8);
        }
    } else if (e->type == PB_DTREE_SYMLINK) {
        size_t tl = strlen(e->target);
        put_u(w, tl, 2);
        put(w, e->target, tl);
    } else if (e->type == PB_DTREE_HARDLINK) {
        put_u(w, e->link, 8);
    }
}

int pb_dtree_encode(const struct pb_dtree *t, unsigned char **out, size_t *outlen)
{
    struct wbuf w = { 0 };
    put(&w, MAGIC, 8);
    put_u(&w, VERSION, 4);
    put_attrs(&w, t->mode, t->uid, t->gid, t->mt_sec, t->mt_nsec);
    put_u(&w, t->n, 8);
    put_u(&w, t->nskipped, 8);
    for (size_t i = 0; i < t->n && !w.oom; i++)
        put_entry(&w, &t->e[i]);
    if (w.oom) {
        free(w.p);
        return -1;
    }
    *out = w.p;
    *outlen = w.len;
    return 0;
}

/* ---- parse */

struct rbuf {
    const unsigned char *p;
    size_t len, pos;
    int short_read;
};

static uint64_t get_u(struct rbuf *r, int bytes)
{
    if (r->len - r->pos < (size_t)bytes) {
        r->short_read = 1;
        r->pos = r->len;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[r->pos + (size_t)i] << (8 * i);
    r->pos += (size_t)bytes;
    return v;
}

/* A string of n bytes, NUL-terminated copy; NULL on short input or memory. */
static char *get_str(struct rbuf *r, size_t n)
{
    if (r->len - r->pos < n) {
        r->short_read = 1;
        r->pos = r->len;
        return NULL;
    }
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, r->p + r->pos, n);
        s[n] = 0;
    }
    r->pos += n;
    return s;
}

static int fail(char *err, size_t errlen, size_t idx, const char *path, const char *fmt, ...)
{
    char shown[160], why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (path)
        snprintf(err, errlen, "bad manifest: entry %zu '%s': %s", idx, pb_dtree_show(path, shown, sizeof shown), why);
    else
        snprintf(err, errlen, "bad manifest: entry %zu: %s", idx, why);
    return -1;
}

/* A relative path: components not empty, not "." or "..", at most NAME_MAX
 * bytes; no NUL (the length is explicit), not absolute. */
static const char *bad_path(const char *p, size_t len)
{
    if (len == 0)
        return "empty path";
    if (len > PB_DTREE_PATH_MAX)
        return "path too long";
    if (strlen(p) != len)
        return "NUL byte in the path";
    if (p[0] == '/')
        return "absolute path";
    for (const char *c = p;;) {
        const char *slash = strchr(c, '/');
        size_t cl = slash ? (size_t)(slash - c) : strlen(c);
        if (cl == 0)
            return "empty path component";
        if ((cl == 1 && c[0] == '.') || (cl == 2 && c[0] == '.' && c[1] == '.'))
            return "'.' or '..' component";
        if (cl > NAME_MAX)
            return "path component longer than NAME_MAX";
        if (!slash)
            return NULL;
        c = slash + 1;
    }
}

/* Manifest order: component by component, i.e. bytewise with '/' lowest. */
static int tree_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned ca = *a == '/' ? 1u : *a ? (unsigned char)*a + 1u : 0u;
        unsigned cb = *b == '/' ? 1u : *b ? (unsigned char)*b + 1u : 0u;
        if (ca != cb || !ca)
            return ca < cb ? -1 : ca > cb;
    }
}

/* The parent of `path` must be the deepest directory on the stack of open
 * directories (the top when none): pop those that do not contain it. */
static int parent_ok(const struct pb_dtree *t, size_t *stack, size_t *depth, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t plen = slash ? (size_t)(slash - path) : 0;
    while (*depth) {
        const char *d = t->e[stack[*depth - 1]].path;
        size_t dl = strlen(d);
        if (dl < strlen(path) && !strncmp(d, path, dl) && path[dl] == '/')
            break;
        (*depth)--;
    }
    if (!*depth)
        return plen == 0;
    return strlen(t->e[stack[*depth - 1]].path) == plen;
}

static int parse_file(struct rbuf *r, struct pb_dtree *t, struct pb_dtree_entry *e, size_t i, char *err, size_t errlen)
{
    e->size = get_u(r, 8);
    e->next = (uint32_t)get_u(r, 4);
    e->stream_off = t->stream_size;
    if (e->size > MAX_SIZE)
        return fail(err, errlen, i, e->path, "file size %llu too large", (unsigned long long)e->size);
    if (e->next > PB_DTREE_MAX_EXTENTS || (size_t)e->next * 16 > r->len - r->pos)
        return fail(err, errlen, i, e->path, "bad extent count %u", e->next);
    if (e->next > 1 && !(e->ext = malloc((size_t)e->next * sizeof *e->ext)))
        return fail(err, errlen, i, e->path, "out of memory");
    struct pb_extent *x = e->next > 1 ? e->ext : &e->one;
    uint64_t end = 0;
    for (uint32_t k = 0; k < e->next; k++) {
        x[k].off = get_u(r, 8);
        x[k].len = get_u(r, 8);
        if (x[k].len == 0 || x[k].off < end || x[k].off > e->size || x[k].len > e->size - x[k].off)
            return fail(err, errlen, i, e->path, "extent %u out of order or outside the file", k);
        end = x[k].off + x[k].len;
        if (x[k].len > MAX_SIZE - t->stream_size)
            return fail(err, errlen, i, e->path, "data stream too large");
        t->stream_size += x[k].len;
    }
    t->nfiles++;
    return 0;
}

static int parse_tail(struct rbuf *r, struct pb_dtree *t, struct pb_dtree_entry *e, size_t i, char *err, size_t errlen)
{
    e->stream_off = t->stream_size;
    switch (e->type) {
    case PB_DTREE_DIR:
        t->ndirs++;
        return 0;
    case PB_DTREE_FILE:
        return parse_file(r, t, e, i, err, errlen);
    case PB_DTREE_SYMLINK: {
        size_t tl = (size_t)get_u(r, 2);
        if (r->short_read)
            return fail(err, errlen, i, e->path, "truncated");
        if (tl == 0 || tl > PB_DTREE_PATH_MAX)
            return fail(err, errlen, i, e->path, "symbolic link target of bad length %zu", tl);
        if (!(e->target = get_str(r, tl)))
            return fail(err, errlen, i, e->path, r->short_read ? "truncated" : "out of memory");
        if (strlen(e->target) != tl)
            return fail(err, errlen, i, e->path, "NUL byte in the symbolic link target");
        t->nsymlinks++;
        return 0;
    }
    case PB_DTREE_HARDLINK:
        e->link = get_u(r, 8);
        if (e->link >= i || t->e[e->link].type != PB_DTREE_FILE)
            return fail(err, errlen, i, e->path, "hard link to entry %llu, not a file listed before",
                        (unsigned long long)e->link);
        t->nhardlinks++;
        return 0;
    default:
        return fail(err, errlen, i, e->path, "unknown entry type %u", e->type);
    }
}

static int parse_entry(struct rbuf *r, struct pb_dtree *t, size_t *stack, size_t *depth, char *err, size_t errlen)
{
    size_t i = t->n;
    struct pb_dtree_entry *e = &t->e[i];
    memset(e, 0, sizeof *e);
    t->n++; /* owned by t from now on: freed with it */
    e->type = (uint8_t)get_u(r, 1);
    e->mode = (uint32_t)get_u(r, 4);
    e->uid = (uint32_t)get_u(r, 4);
    e->gid = (uint32_t)get_u(r, 4);
    e->mt_sec = (int64_t)get_u(r, 8);
    e->mt_nsec = (uint32_t)get_u(r, 4);
    size_t pl = (size_t)get_u(r, 2);
    if (r->short_read)
        return fail(err, errlen, i, NULL, "truncated");
    if (!(e->path = get_str(r, pl)))
        return fail(err, errlen, i, NULL, r->short_read ? "truncated" : "out of memory");
    const char *why = bad_path(e->path, pl);
    if (why)
        return fail(err, errlen, i, e->path, "%s", why);
    if (e->mode & ~07777u || e->mt_nsec >= 1000000000u)
        return fail(err, errlen, i, e->path, "bad mode or mtime");
    if (i > 0 && tree_cmp(t->e[i - 1].path, e->path) >= 0)
        return fail(err, errlen, i, e->path, "duplicate or out of order");
    if (!parent_ok(t, stack, depth, e->path))
        return fail(err, errlen, i, e->path, "its parent is not a directory listed before it");
    if (parse_tail(r, t, e, i, err, errlen) < 0)
        return -1;
    if (r->short_read)
        return fail(err, errlen, i, e->path, "truncated");
    if (e->type == PB_DTREE_DIR)
        stack[(*depth)++] = i;
    return 0;
}

static int parse_header(struct rbuf *r, struct pb_dtree *t, uint64_t *n, char *err, size_t errlen)
{
    if (r->len < 8 || memcmp(r->p, MAGIC, 8)) {
        snprintf(err, errlen, "bad manifest: not a p2pbcast tree manifest");
        return -1;
    }
    r->pos = 8;
    uint32_t version = (uint32_t)get_u(r, 4);
    t->mode = (uint32_t)get_u(r, 4);
    t->uid = (uint32_t)get_u(r, 4);
    t->gid = (uint32_t)get_u(r, 4);
    t->mt_sec = (int64_t)get_u(r, 8);
    t->mt_nsec = (uint32_t)get_u(r, 4);
    *n = get_u(r, 8);
    t->nskipped = get_u(r, 8);
    if (r->short_read)
        snprintf(err, errlen, "bad manifest: truncated header");
    else if (version != VERSION)
        snprintf(err, errlen, "bad manifest: version %u (this p2pbcast reads version %u)", version, VERSION);
    else if (t->mode & ~07777u || t->mt_nsec >= 1000000000u)
        snprintf(err, errlen, "bad manifest: bad mode or mtime of the top directory");
    else if (*n > (r->len - r->pos) / 27) /* the smallest entry takes 27 bytes */
        snprintf(err, errlen, "bad manifest: %llu entries cannot fit in %zu bytes", (unsigned long long)*n, r->len);
    else
        return 0;
    return -1;
}

int pb_dtree_parse(const unsigned char *buf, size_t len, struct pb_dtree *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    struct rbuf r = { buf, len, 0, 0 };
    uint64_t n;
    if (parse_header(&r, t, &n, err, errlen) < 0)
        return -1;
    /* depth is bounded by the path length: components take 2 bytes at least */
    size_t *stack = malloc((PB_DTREE_PATH_MAX / 2 + 2) * sizeof *stack), depth = 0;
    t->e = calloc(n ? (size_t)n : 1, sizeof *t->e);
    t->cap = (size_t)n;
    int rc = stack && t->e ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "bad manifest: out of memory for %llu entries", (unsigned long long)n);
    while (rc == 0 && t->n < n)
        rc = parse_entry(&r, t, stack, &depth, err, errlen);
    if (rc == 0 && r.pos != r.len) {
        snprintf(err, errlen, "bad manifest: %zu bytes after the last entry", r.len - r.pos);
        rc = -1;
    }
    free(stack);
    if (rc < 0)
        pb_dtree_free(t);
    return rc;
}

/* ---- stream offsets */

/* The last entry whose data start at or before off: entries without data
 * share the offset of the next one, so it is one that holds off. */
static size_t locate(const struct pb_dtree *t, uint64_t off)
{
    size_t lo = 0, hi = t->n; /* first entry with stream_off > off is in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->e[mid].stream_off <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

int pb_dtree_pieces(const struct pb_dtree *t, uint64_t off, size_t len, pb_dtree_piece_fn fn, void *ctx)
{
    if (off > t->stream_size || len > t->stream_size - off || (len && !t->n)) {
        errno = EINVAL;
        return -1;
    }
    size_t boff = 0;
    size_t i = len ? locate(t, off) : 0;
    while (boff < len && i < t->n) {
        const struct pb_dtree_entry *e = &t->e[i];
        const struct pb_extent *x = pb_dtree_extents(e);
        uint64_t d = off + boff - e->stream_off; /* offset in this entry's data */
        for (uint32_t k = 0; e->type == PB_DTREE_FILE && k < e->next && boff < len; k++) {
            if (d >= x[k].len) {
                d -= x[k].len;
                continue;
            }
            uint64_t n = x[k].len - d;
            size_t take = n < len - boff ? (size_t)n : len - boff;
            int rc = fn(ctx, i, x[k].off + d, boff, take);
            if (rc)
                return rc;
            boff += take;
            d = 0;
        }
        i++;
    }
    if (boff < len) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* A file's data end where the next entry's start (or the stream ends). */
static uint64_t data_end(const struct pb_dtree *t, size_t i)
{
    return i + 1 < t->n ? t->e[i + 1].stream_off : t->stream_size;
}

uint64_t pb_dtree_files_done(const struct pb_dtree *t, uint64_t off, struct pb_dtree_cursor *c)
{
    if (off < c->off)
        *c = (struct pb_dtree_cursor){ 0 };
    c->off = off;
    for (; c->next < t->n; c->next++) {
        if (t->e[c->next].type != PB_DTREE_FILE)
            continue;
        if (data_end(t, c->next) > off)
            break;
        c->files++;
    }
    return c->files;
}
