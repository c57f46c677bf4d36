/* test_manifest.c — the tree manifest: a walk of a real directory, encode
 * and strict parse round trip, the stream map, the progress line's file
 * count, hostile manifests that the parser must refuse with the entry named,
 * and what a node's staging directory does with entries the parser would
 * have refused (a name too long for DEST's filesystem, a file through a
 * symbolic link): refused, named, nothing written anywhere. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tap.h"
#include "dirtree.h"
#include "progress.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A hand-made manifest entry (the encoder does not check: hostile ones too). */
static struct pb_dtree_entry *add(struct pb_dtree *t, int type, const char *path)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->e = realloc(t->e, t->cap * sizeof *t->e);
    }
    struct pb_dtree_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    e->type = (uint8_t)type;
    e->path = strdup(path);
    e->mode = type == PB_DTREE_DIR ? 0755 : 0644;
    if (type == PB_DTREE_SYMLINK)
        e->target = strdup("target");
    return e;
}

static struct pb_dtree_entry *add_file(struct pb_dtree *t, const char *path, uint64_t size)
{
    struct pb_dtree_entry *e = add(t, PB_DTREE_FILE, path);
    e->size = size;
    e->next = size ? 1 : 0;
    e->one = (struct pb_extent){ 0, size };
    return e;
}

/* Encode t, parse it back: 0 when accepted; err holds the reason. */
static int roundtrip(struct pb_dtree *t, struct pb_dtree *out, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    if (pb_dtree_encode(t, &buf, &len) < 0)
        return -2;
    int rc = pb_dtree_parse(buf, len, out, err, errlen);
    free(buf);
    return rc;
}

/* A hostile manifest: refused, and the message names the entry. */
static void refused(struct pb_dtree *t, const char *names, const char *what)
{
    struct pb_dtree out;
    char err[512] = "";
    int rc = roundtrip(t, &out, err, sizeof err);
    ok(rc == -1 && strstr(err, names) != NULL, "refused: %s (%s)", what, err);
    if (rc == 0)
        pb_dtree_free(&out);
    pb_dtree_free(t);
}

static void test_hostile(void)
{
    struct pb_dtree t = { 0 };
    add_file(&t, "../etc/passwd", 1);
    refused(&t, "'../etc/passwd': '.' or '..' component", "'..' component");
    add_file(&t, "/etc/passwd", 1);
    refused(&t, "'/etc/passwd': absolute path", "absolute path");
    add(&t, PB_DTREE_DIR, "a");
    add_file(&t, "a//b", 1);
    refused(&t, "'a//b': empty path component", "empty component");
    add(&t, PB_DTREE_DIR, "a");
    add_file(&t, "a/./b", 1);
    refused(&t, "'a/./b'", "'.' component");
    add(&t, PB_DTREE_SYMLINK, "l");
    add_file(&t, "l/x", 1);
    refused(&t, "'l/x': its parent is not a directory", "a symlink, then a file through it");
    add_file(&t, "f", 1);
    add_file(&t, "f", 1);
    refused(&t, "'f': duplicate", "the same path twice");
    add_file(&t, "b", 1);
    add_file(&t, "a", 1);
    refused(&t, "'a': duplicate or out of order", "out of order");
    add_file(&t, "x/y", 1);
    refused(&t, "'x/y': its parent", "parent never listed");
    add(&t, PB_DTREE_HARDLINK, "a")->link = 1;
    add_file(&t, "b", 1);
    refused(&t, "'a': hard link", "hard link to a later entry");
    add(&t, PB_DTREE_DIR, "d");
    add(&t, PB_DTREE_HARDLINK, "e")->link = 0;
    refused(&t, "'e': hard link", "hard link to a directory");
    add(&t, 9, "z");
    refused(&t, "'z': unknown entry type", "unknown type");
    struct pb_dtree_entry *e = add_file(&t, "f", 10);
    e->one = (struct pb_extent){ 5, 10 };
    refused(&t, "'f': extent 0", "extent past the end of the file");
    add_file(&t, "f", 1)->mode = 0100644;
    refused(&t, "'f': bad mode", "file type bits in the mode");
    e = add(&t, PB_DTREE_SYMLINK, "l");
    free(e->target);
    e->target = strdup("");
    refused(&t, "'l': symbolic link target", "empty link target");
    add_file(&t, "new\nline", 1);
    add(&t, PB_DTREE_DIR, "new\nline");
    refused(&t, "'new?line'", "control characters are shown as '?'");
}

static void test_bytes(void)
{
    struct pb_dtree t = { 0 }, out;
    add_file(&t, "a", 3);
    unsigned char *buf;
    size_t len;
    char err[512];
    pb_dtree_encode(&t, &buf, &len);
    int bad = 0;
    for (size_t cut = 0; cut < len; cut++) /* every truncation is refused, without reading past it */
        if (pb_dtree_parse(buf, cut, &out, err, sizeof err) == 0) {
            bad++;
            pb_dtree_free(&out);
        }
    ok(bad == 0, "every truncated manifest is refused (%zu cuts)", len);
    unsigned char *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0;
    ok(pb_dtree_parse(more, len + 1, &out, err, sizeof err) == -1 && strstr(err, "after the last entry"),
       "trailing bytes are refused");
    buf[8] = 2;
    ok(pb_dtree_parse(buf, len, &out, err, sizeof err) == -1 && strstr(err, "version 2"), "an unknown version is refused");
    /* a NUL inside a path (the length is explicit) */
    buf[8] = 1;
    size_t plen_at = 8 + 4 + 24 + 16 + 1 + 24; /* header, then type + attributes */
    ok(buf[plen_at] == 1 && buf[plen_at + 2] == 'a', "layout as documented");
    buf[plen_at + 2] = 0;
    ok(pb_dtree_parse(buf, len, &out, err, sizeof err) == -1 && strstr(err, "NUL byte"), "a NUL in a path is refused");
    free(more);
    free(buf);
    pb_dtree_free(&t);
}

static uint64_t got_idx[16], got_foff[16], got_len[16];
static int npieces;
static int piece(void *ctx, size_t idx, uint64_t foff, size_t boff, size_t len)
{
    (void)ctx;
    (void)boff;
    got_idx[npieces] = idx;
    got_foff[npieces] = foff;
    got_len[npieces++] = len;
    return 0;
}

static void test_roundtrip_and_map(void)
{
    struct pb_dtree t = { 0 }, out;
    add(&t, PB_DTREE_DIR, "d");
    add_file(&t, "d/a", 10);
    add_file(&t, "d/empty", 0);
    struct pb_dtree_entry *s = add_file(&t, "d/sparse", 1000);
    s->next = 2;
    s->ext = malloc(2 * sizeof *s->ext);
    s->ext[0] = (struct pb_extent){ 100, 5 };
    s->ext[1] = (struct pb_extent){ 900, 100 };
    add(&t, PB_DTREE_HARDLINK, "d/z")->link = 1;
    add(&t, PB_DTREE_SYMLINK, "d b");
    add_file(&t, "e", 7);
    char err[512];
    int rc = roundtrip(&t, &out, err, sizeof err);
    ok(rc == 0, "a valid manifest round-trips (%s)", rc ? err : "ok");
    if (rc)
        return;
    ok(out.n == 7 && out.stream_size == 10 + 105 + 7 && out.nfiles == 4 && out.ndirs == 1 && out.nsymlinks == 1 &&
           out.nhardlinks == 1,
       "counts and stream size");
    ok(!strcmp(out.e[5].target, "target") && out.e[4].link == 1 && out.e[3].next == 2 &&
           pb_dtree_extents(&out.e[3])[1].off == 900,
       "link target, hard link, extents");
    npieces = 0;
    pb_dtree_pieces(&out, 8, 10, piece, NULL); /* 2 of a, 5 of sparse@100, 3 of sparse@900 */
    ok(npieces == 3 && got_idx[0] == 1 && got_foff[0] == 8 && got_len[0] == 2 && got_idx[1] == 3 &&
           got_foff[1] == 100 && got_len[1] == 5 && got_idx[2] == 3 && got_foff[2] == 900 && got_len[2] == 3,
       "a stream range maps to (file, offset) pieces across files and holes");
    npieces = 0;
    pb_dtree_pieces(&out, 115, 7, piece, NULL);
    ok(npieces == 1 && got_idx[0] == 6 && got_foff[0] == 0 && got_len[0] == 7, "the last file");
    ok(pb_dtree_pieces(&out, 120, 3, piece, NULL) == -1, "a range past the stream is refused");
    pb_dtree_free(&out);
    pb_dtree_free(&t);
}

/* The progress line's file count: a file is done once the stream passes
 * its last byte; empty and all-hole files once the stream reaches them. */
static void test_files_done(void)
{
    struct pb_dtree t = { 0 }, out;
    add_file(&t, "a", 10);          /* stream [0, 10) */
    add(&t, PB_DTREE_DIR, "d");
    add_file(&t, "d/empty", 0);     /* at 10 */
    struct pb_dtree_entry *s = add_file(&t, "d/holes", 100);
    s->next = 0;                    /* all holes: at 10 */
    add_file(&t, "d/x", 5);         /* [10, 15) */
    add(&t, PB_DTREE_SYMLINK, "l");
    add_file(&t, "z", 7);           /* [15, 22) */
    char err[512];
    int rc = roundtrip(&t, &out, err, sizeof err);
    ok(rc == 0 && out.nfiles == 5 && out.stream_size == 22, "a manifest for the file count (%s)", rc ? err : "ok");
    if (rc == 0) {
        struct pb_dtree_cursor c = { 0 };
        uint64_t at[] = { 0, 9, 10, 14, 15, 21, 22 }, want[] = { 0, 0, 3, 3, 4, 4, 5 };
        int good = 1;
        for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
            good &= pb_dtree_files_done(&out, at[i], &c) == want[i];
        ok(good, "files done as the stream advances: 0 0 3 3 4 4 5");
        ok(pb_dtree_files_done(&out, 10, &c) == 3 && pb_dtree_files_done(&out, 22, &c) == 5,
           "a smaller offset starts the count again");
        struct pb_dtree none = { 0 };
        struct pb_dtree_cursor c0 = { 0 };
        ok(pb_dtree_files_done(&none, 0, &c0) == 0, "an empty tree has no files");
        pb_dtree_free(&out);
    }
    pb_dtree_free(&t);
    char b[32];
    ok(!strcmp(pb_fmt_count(0, b, sizeof b), "0") && !strcmp(pb_fmt_count(999, b, sizeof b), "999") &&
           !strcmp(pb_fmt_count(12345, b, sizeof b), "12,345") &&
           !strcmp(pb_fmt_count(1000000, b, sizeof b), "1,000,000") &&
           !strcmp(pb_fmt_count(UINT64_MAX, b, sizeof b), "18,446,744,073,709,551,615"),
       "counts with thousands separators (%s)", b);
    char small[6];
    ok(!strcmp(pb_fmt_count(1234567, small, sizeof small), "1,234"), "a short buffer is cut, terminated (%s)", small);
}

static uint64_t fake_files(void *ctx, uint64_t bytes)
{
    (void)ctx;
    return bytes / 1000;
}

/* The log lines (stderr not a terminal) of a tree: files counted; one more
 * line once every node is done, only after a line was printed. The time
 * of the last line is moved by hand instead of waited for. */
static void test_progress_lines(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct pb_progress p;
    pb_progress_init(&p, f, 1, 100000, 3);
    p.last += 1000;
    pb_progress_files(&p, 100, fake_files, NULL);
    pb_progress_update(&p, 100000, 3); /* at the start: no line, and no "all done" line either */
    fflush(f);
    ok(len == 0, "no line within the first second, nor an all-done line before any other");
    pb_progress_init(&p, f, 1, 100000, 3);
    pb_progress_files(&p, 12345, fake_files, NULL);
    p.last -= 2;
    pb_progress_update(&p, 50000, 0);
    p.last += 1000; /* the next ones come "within a second" of it, whatever the machine's speed */
    pb_progress_update(&p, 60000, 0);
    pb_progress_update(&p, 100000, 2);
    pb_progress_update(&p, 100000, 3); /* every node done: one more line */
    pb_progress_update(&p, 100000, 3);
    fclose(f);
    ok(text && strstr(text, "p2pbcast:  50% 48.83 KiB of 97.66 KiB sent, 50 of 12,345 files, ") &&
           strstr(text, "0/3 nodes done\n") && strstr(text, "p2pbcast: 100% 97.66 KiB of 97.66 KiB sent, 100 of 12,345 files") &&
           strstr(text, "3/3 nodes done\n") && !strstr(text, "2/3 nodes") && !strstr(text, " 61%"),
       "log lines of a tree count files; the last says every node is done");
    int lines = 0;
    for (const char *c = text; c && *c; c++)
        lines += *c == '\n';
    ok(lines == 2, "two lines in all (%d)", lines);
    free(text);
}

static void sh(const char *cmd)
{
    if (system(cmd) != 0)
        tap_add("# command failed: %s\n", cmd);
}

static void test_walk(void)
{
    char dir[] = "/tmp/p2pbcast-manifest.XXXXXX";
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && mkdir -p s/b s/a/empty && echo hi > s/a/f && ln s/a/f s/b/hard && ln -s ../a s/b/link && "
             "truncate -s 10M s/sparse && printf data | dd of=s/sparse bs=1 seek=5000000 conv=notrunc 2>/dev/null && "
             "mkfifo s/fifo && touch 's/x y'",
             dir);
    sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/s", dir);
    struct pb_dtree t, out;
    char err[512];
    int rc = pb_dtree_walk(cmd, &t, NULL, NULL, err, sizeof err);
    ok(rc == 0, "walk a directory (%s)", rc ? err : "ok");
    if (rc == 0) {
        const char *want[] = { "a", "a/empty", "a/f", "b", "b/hard", "b/link", "sparse", "x y" };
        int order = t.n == 8;
        for (size_t i = 0; order && i < 8; i++)
            order = !strcmp(t.e[i].path, want[i]);
        ok(order, "sorted, depth first, a directory before its contents (%zu entries)", t.n);
        ok(t.nskipped == 1 && t.e[4].type == PB_DTREE_HARDLINK && t.e[4].link == 2 && t.e[5].type == PB_DTREE_SYMLINK &&
               !strcmp(t.e[5].target, "../a"),
           "fifo skipped, hard link to its first path, symlink kept as a link");
        const struct pb_dtree_entry *sp = &t.e[6];
        ok(sp->size == 10 << 20 && sp->next >= 1 && pb_dtree_extents(sp)[0].off > 0 && t.stream_size < (1 << 20),
           "sparse file: holes are not in the stream (%llu bytes)", (unsigned long long)t.stream_size);
        rc = roundtrip(&t, &out, err, sizeof err);
        ok(rc == 0 && out.n == t.n && out.stream_size == t.stream_size, "what the walk finds parses back");
        if (rc == 0)
            pb_dtree_free(&out);
        pb_dtree_free(&t);
    }
    snprintf(cmd, sizeof cmd, "%s/nonexistent", dir);
    ok(pb_dtree_walk(cmd, &t, NULL, NULL, err, sizeof err) == -1 && strstr(err, "No such file"), "missing SOURCE: %s", err);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

static int open_fds(void)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "exit $(ls /proc/%d/fd | wc -l)", (int)getpid());
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The root's reader: 150 directories (more than its cache holds) each with
 * a subdirectory and a file, read as one stream; then a file renamed over
 * by a look-alike of the same size and mtime. */
static void test_source(void)
{
    char dir[] = "/tmp/p2pbcast-source.XXXXXX", cmd[1024], err[512];
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "cd %s && for i in $(seq 100 249); do mkdir -p s/d$i/x && echo $i > s/d$i/x/f; done", dir);
    sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/s", dir);
    struct pb_dtree t;
    struct pb_dtree_source src;
    char want[150 * 4 + 1], got[150 * 4 + 1] = "";
    for (int i = 0; i < 150; i++)
        snprintf(want + 4 * i, 5, "%d\n", 100 + i);
    int base = open_fds();
    int rc = pb_dtree_walk(cmd, &t, NULL, NULL, err, sizeof err);
    if (rc == 0)
        rc = pb_dtree_source_open(&src, &t, cmd, err, sizeof err);
    ok(rc == 0 && t.stream_size == 600 && t.id, "walk and open a tree of 300 directories (%s)", rc ? err : "ok");
    if (rc != 0) {
        if (t.n)
            pb_dtree_free(&t);
        return;
    }
    rc = pb_dtree_source_read(&src, 0, got, 600, err, sizeof err);
    int during = open_fds();
    ok(rc == 0 && !memcmp(got, want, 600), "the stream read through the directory cache (%s)", rc ? err : "ok");
    ok(during - base <= 1 + PB_DTREE_DIR_CACHE + PB_DTREE_FD_CACHE,
       "open fds stay bounded: %d more than before for 300 directories and 150 files", during - base);
    pb_dtree_source_close(&src);
    ok(open_fds() == base, "all closed after (%d open, %d before)", open_fds(), base);
    snprintf(cmd, sizeof cmd, "cd %s/s && echo 999 > d180/x/g && touch -r d180/x/f d180/x/g && mv d180/x/g d180/x/f",
             dir);
    sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/s", dir);
    rc = pb_dtree_source_open(&src, &t, cmd, err, sizeof err);
    if (rc == 0) {
        rc = pb_dtree_source_read(&src, 0, got, 600, err, sizeof err);
        pb_dtree_source_close(&src);
    }
    ok(rc < 0 && strstr(err, "'d180/x/f' was replaced during the copy") && strstr(err, "inode"),
       "a file renamed over by a look-alike is refused: %s", err);
    pb_dtree_free(&t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

/* 0 when dir is empty (ls -A), else 1 */
static int entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    return system(cmd) == 0 ? 0 : 1;
}

/* A node's sink given t as is (no parser in between): 0 when it built the
 * staging directory; err holds the reason. Always aborted after. */
static int sink_try(const struct pb_dtree *t, const char *dest, char *err, size_t errlen)
{
    struct pb_dtree_sink k;
    int rc = pb_dtree_sink_open(&k, t, dest, 0, NULL, NULL, err, errlen);
    if (rc == 0)
        pb_dtree_sink_abort(&k);
    return rc;
}

static void test_sink_refuses(void)
{
    char dir[] = "/tmp/p2pbcast-sink.XXXXXX";
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    char dest[300], outside[300], err[1024] = "", cmd[700];
    snprintf(dest, sizeof dest, "%s/parent/out", dir);
    snprintf(outside, sizeof outside, "%s/outside", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/parent %s", dir, outside);
    sh(cmd);

    struct pb_dtree t = { 0 };
    char longname[300];
    memset(longname, 'n', 299);
    longname[299] = 0;
    add(&t, PB_DTREE_DIR, "a");
    add_file(&t, "a/ok", 0);
    char path[310];
    snprintf(path, sizeof path, "a/%s", longname);
    add_file(&t, path, 0);
    int rc = sink_try(&t, dest, err, sizeof err);
    ok(rc == -1 && strstr(err, "cannot create 'a/nnnn") && strstr(err, "File name too long"),
       "a name too long for DEST's filesystem: refused, the entry named (%.120s...)", err);
    snprintf(cmd, sizeof cmd, "%s/parent", dir);
    ok(entries(cmd) == 0, "nothing left beside DEST_DIR after the refusal");
    pb_dtree_free(&t);

    /* a symbolic link to a directory outside, then a file through it */
    struct pb_dtree_entry *l = add(&t, PB_DTREE_SYMLINK, "l");
    free(l->target);
    l->target = strdup(outside);
    add_file(&t, "l/x", 0);
    err[0] = 0;
    rc = sink_try(&t, dest, err, sizeof err);
    ok(rc == -1 && strstr(err, "'l/x'"), "a file through a symbolic link of the tree: refused (%s)", err);
    ok(entries(outside) == 0, "nothing written through the link");
    snprintf(cmd, sizeof cmd, "%s/parent", dir);
    ok(entries(cmd) == 0, "nothing left beside DEST_DIR");
    pb_dtree_free(&t);

    /* a hard link whose group leader is a symbolic link to a file outside */
    snprintf(cmd, sizeof cmd, "echo secret > %s/file", outside);
    sh(cmd);
    char target[320];
    snprintf(target, sizeof target, "%s/file", outside);
    l = add(&t, PB_DTREE_SYMLINK, "s");
    free(l->target);
    l->target = strdup(target);
    add(&t, PB_DTREE_HARDLINK, "t")->link = 0;
    err[0] = 0;
    rc = sink_try(&t, dest, err, sizeof err);
    struct stat st;
    ok(stat(target, &st) == 0 && st.st_nlink == 1, "a hard link to a symbolic link never links the file outside (%s)",
       rc ? err : "made a link to the link");
    snprintf(cmd, sizeof cmd, "%s/parent", dir);
    ok(entries(cmd) == 0, "nothing left beside DEST_DIR");
    pb_dtree_free(&t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

int main(void)
{
    test_roundtrip_and_map();
    test_hostile();
    test_bytes();
    test_files_done();
    test_progress_lines();
    test_walk();
    test_source();
    test_sink_refuses();
    return tap_done();
}
