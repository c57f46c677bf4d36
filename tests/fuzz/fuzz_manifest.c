/* fuzz_manifest.c — libFuzzer target for the tree manifest parser
 * (src/files/dirtree_manifest.c): every node parses the root's manifest before
 * it creates anything, so a manifest must never make a node write outside
 * its staging directory or read out of bounds.
 *
 * The whole input is the manifest. Beyond "no crash, no sanitizer report",
 * an accepted manifest must satisfy what dirtree_sink.c relies on (abort()
 * otherwise):
 *   - every path is relative, without empty, "." or ".." components, and
 *     its parent is a directory listed before it (so nothing is created
 *     through a symbolic link of the tree);
 *   - paths are strictly increasing in manifest order (no duplicates);
 *   - a hard link names an earlier regular file;
 *   - extents are sorted, inside their file, and sum to the stream size;
 *   - the stream map covers the stream exactly, every piece inside a data
 *     extent of a regular file;
 *   - re-encoding gives the same bytes.
 *
 * Build: see run-fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dirtree.h"

#include "fuzz_check.h"

static int path_ok(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    for (const char *c = p;;) {
        const char *s = strchr(c, '/');
        size_t n = s ? (size_t)(s - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!s)
            return 1;
        c = s + 1;
    }
}

/* The parent of e[i] is the top or a directory listed before it. */
static int parent_listed(const struct pb_dtree *t, size_t i)
{
    const char *p = t->e[i].path, *slash = strrchr(p, '/');
    if (!slash)
        return 1;
    size_t pl = (size_t)(slash - p);
    for (size_t j = i; j-- > 0;)
        if (strlen(t->e[j].path) == pl && !strncmp(t->e[j].path, p, pl))
            return t->e[j].type == PB_DTREE_DIR;
    return 0;
}

struct cover {
    const struct pb_dtree *t;
    uint64_t total;
};

static int piece(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len)
{
    struct cover *c = ctx;
    CHECK(idx < c->t->n && boff == c->total && len > 0);
    const struct pb_dtree_entry *e = &c->t->e[idx];
    CHECK(e->type == PB_DTREE_FILE);
    const struct pb_extent *x = pb_dtree_extents(e);
    int inside = 0;
    for (uint32_t k = 0; k < e->next; k++)
        inside |= foff >= x[k].off && foff - x[k].off + len <= x[k].len;
    CHECK(inside);
    c->total += len;
    return 0;
}

static void check_entries(const struct pb_dtree *t)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct pb_dtree_entry *e = &t->e[i];
        CHECK(path_ok(e->path) && parent_listed(t, i));
        CHECK(i == 0 || strcmp(t->e[i - 1].path, e->path) != 0);
        CHECK(e->stream_off == sum);
        if (e->type == PB_DTREE_HARDLINK)
            CHECK(e->link < i && t->e[e->link].type == PB_DTREE_FILE);
        if (e->type == PB_DTREE_SYMLINK)
            CHECK(e->target && *e->target && strlen(e->target) <= PB_DTREE_PATH_MAX);
        if (e->type != PB_DTREE_FILE)
            continue;
        const struct pb_extent *x = pb_dtree_extents(e);
        uint64_t end = 0;
        for (uint32_t k = 0; k < e->next; k++) {
            CHECK(x[k].len > 0 && x[k].off >= end && x[k].off + x[k].len <= e->size);
            end = x[k].off + x[k].len;
            sum += x[k].len;
        }
    }
    CHECK(sum == t->stream_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1); /* exactly the input: ASan sees reads past it */
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct pb_dtree t;
    char err[512];
    if (pb_dtree_parse(buf, size, &t, err, sizeof err) == 0) {
        check_entries(&t);
        struct cover c = { &t, 0 };
        /* the callback only sees offsets: the whole stream, however large */
        CHECK(pb_dtree_pieces(&t, 0, (size_t)t.stream_size, piece, &c) == 0 && c.total == t.stream_size);
        unsigned char *again;
        size_t len;
        CHECK(pb_dtree_encode(&t, &again, &len) == 0);
        CHECK(len == size && !memcmp(again, buf, size));
        free(again);
        pb_dtree_free(&t);
    } else {
        CHECK(strstr(err, "bad manifest") != NULL);
    }
    free(buf);
    return 0;
}
