/* progress.c — progress bar, log lines, summary and JSON report. */
#include "progress.h"
#include "clock.h"
#include "defaults.h"
#include "p2pbcast.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *pb_fmt_bytes(uint64_t b, char *buf, size_t len)
{
    static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)b);
    else
        snprintf(buf, len, "%.2f %s", v, u[i]);
    return buf;
}

const char *pb_fmt_count(uint64_t n, char *buf, size_t len)
{
    char d[24];
    int nd = snprintf(d, sizeof d, "%llu", (unsigned long long)n);
    size_t o = 0;
    for (int i = 0; i < nd && o + 1 < len; i++) {
        if (i && (nd - i) % 3 == 0 && o + 2 < len)
            buf[o++] = ',';
        buf[o++] = d[i];
    }
    if (len)
        buf[o < len ? o : len - 1] = 0;
    return buf;
}

const char *pb_fmt_rate(double bytes_per_s, char *buf, size_t len)
{
    static const char *u[] = { "B/s", "kB/s", "MB/s", "GB/s", "TB/s" };
    double v = bytes_per_s > 0 ? bytes_per_s : 0;
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, u[i]);
    return buf;
}

void pb_progress_init(struct pb_progress *p, FILE *out, int enabled, uint64_t total, int nodes)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->enabled = enabled;
    p->tty = isatty(fileno(out));
    p->t0 = p->last = pb_now();
    p->total = total;
    p->nodes = nodes;
}

void pb_progress_files(struct pb_progress *p, uint64_t total, uint64_t (*done)(void *ctx, uint64_t bytes), void *ctx)
{
    p->files_total = total;
    p->files_done = done;
    p->files_ctx = ctx;
}

/* ", 12,345 of 100,000 files" (sep ", ", word "of") or "" for a file. */
static const char *files_part(const struct pb_progress *p, const char *sep, const char *of, char *buf, size_t len)
{
    char d[32], t[32];
    buf[0] = 0;
    if (!p->files_done)
        return buf;
    pb_fmt_count(p->files_done(p->files_ctx, p->bytes), d, sizeof d);
    snprintf(buf, len, "%s%s%s%s files", sep, d, of, pb_fmt_count(p->files_total, t, sizeof t));
    return buf;
}

static void draw(struct pb_progress *p, double t)
{
    double el = t - p->t0;
    double frac = p->total ? (double)p->bytes / (double)p->total : 1.0;
    double rate = el > 0 ? (double)p->bytes / el : 0;
    char done[32], tot[32], eta[32] = "--";
    if (rate > 0 && p->bytes < p->total) {
        double s = (double)(p->total - p->bytes) / rate;
        snprintf(eta, sizeof eta, "%d:%02d", (int)s / 60, (int)s % 60);
    }
    pb_fmt_bytes(p->bytes, done, sizeof done);
    pb_fmt_bytes(p->total, tot, sizeof tot);
    char rs[32], files[80];
    pb_fmt_rate(rate, rs, sizeof rs);
    if (p->tty) {
        char bar[31];
        int w = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < w ? '=' : i == w ? '>' : ' ';
        bar[30] = 0;
        fprintf(p->out, "\r[%s] %3.0f%% %s/%s%s %s ETA %s nodes %d/%d ", bar, frac * 100, done, tot,
                files_part(p, " ", "/", files, sizeof files), rs, eta, p->nodes_done, p->nodes);
        p->drew = 1;
    } else {
        fprintf(p->out, "p2pbcast: %3.0f%% %s of %s sent%s, %s, ETA %s, %d/%d nodes done\n", frac * 100, done, tot,
                files_part(p, ", ", " of ", files, sizeof files), rs, eta, p->nodes_done, p->nodes);
        p->lines++;
    }
    fflush(p->out);
}

void pb_progress_update(void *arg, uint64_t bytes, int nodes_done)
{
    struct pb_progress *p = arg;
    p->bytes = bytes;
    p->nodes_done = nodes_done;
    if (!p->enabled)
        return;
    double t = pb_now();
    if (p->tty) {
        /* A bar redraws ten times a second. */
        if (t - p->last < 0.1)
            return;
    } else {
        /* A log gets a line at each tenth of the way (at most one a second),
         * at least every 30 s, so long runs still show life, and once every
         * node is done: nodes finish within a pipeline's depth of the end,
         * so the tenths alone would leave "0/N nodes done" as the last word
         * of a log that showed progress. */
        int tenth = p->total ? (int)(p->bytes * 10 / p->total) : 10;
        int all = p->lines && p->nodes > 0 && nodes_done == p->nodes && !p->said_all_done;
        if (!((tenth > p->last_tenth && t - p->last >= 1.0) || t - p->last >= 30.0 || all))
            return;
        p->last_tenth = tenth;
        p->said_all_done |= all;
    }
    p->last = t;
    draw(p, t);
}

void pb_progress_end(struct pb_progress *p)
{
    if (p->enabled && p->tty && p->drew) {
        draw(p, pb_now());
        fputc('\n', p->out);
        fflush(p->out);
        p->drew = 0;
    }
}

void pb_summary_print(FILE *out, const struct pb_summary *s)
{
    char sz[32], cs[32];
    pb_fmt_bytes(s->bytes, sz, sizeof sz);
    pb_fmt_bytes(s->chunk_size, cs, sizeof cs);
    if (s->status == 0) {
        double rate = s->seconds > 0 ? (double)s->bytes / s->seconds : 0;
        char r1[32], r2[32];
        fprintf(out,
                "p2pbcast: %s to %d node%s in %.2f s: %s per node (%s aggregate), "
                "%llu chunks of %s, transport %s, %d rank%s",
                sz, s->nodes, s->nodes == 1 ? "" : "s", s->seconds, pb_fmt_rate(rate, r1, sizeof r1),
                pb_fmt_rate(rate * s->nodes, r2, sizeof r2),
                (unsigned long long)s->chunks, cs, s->transport, s->ranks, s->ranks == 1 ? "" : "s");
        if (s->source_readers > 1)
            fprintf(out, ", SOURCE read in parallel by %d nodes (%s in all)", s->source_readers,
                    pb_fmt_bytes(s->source_read, r1, sizeof r1));
        fputc('\n', out);
        if (s->placement)
            fprintf(out, "p2pbcast: slow sender: %s\n", s->placement);
        if (s->dirtree)
            fprintf(out, "p2pbcast: directory: %llu files, %llu directories, %llu symbolic links, %llu hard links, "
                         "%llu special files skipped\n",
                    (unsigned long long)s->files, (unsigned long long)s->dirs, (unsigned long long)s->symlinks,
                    (unsigned long long)s->hardlinks, (unsigned long long)s->skipped);
    } else {
        if (s->nfailures)
            fprintf(out, "p2pbcast: FAILED (%s) after %.2f s: %d of %d node%s reported an error; no node keeps a "
                         "partial DEST\n",
                    pb_status_name(s->status), s->seconds, s->nfailures, s->nodes, s->nodes == 1 ? "" : "s");
        else
            fprintf(out, "p2pbcast: FAILED (%s) after %.2f s; nothing was written to DEST on any node\n",
                    pb_status_name(s->status), s->seconds);
    }
    fflush(out);
}

void pb_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

FILE *pb_json_create(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen)
{
    /* A name nobody can predict, created exclusively (never through a link
     * planted in a shared directory), then renamed over PATH. */
    if (snprintf(tmp, tmplen, "%s.tmp.XXXXXX", path) >= (int)tmplen) {
        snprintf(err, errlen, "--json path too long");
        return NULL;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && (!f || fchmod(fd, 0644) < 0)) {
        int e = errno;
        if (f)
            fclose(f);
        else
            close(fd);
        unlink(tmp);
        errno = e;
        f = NULL;
    }
    if (!f)
        snprintf(err, errlen, "cannot write JSON report '%s': %s", path, strerror(errno));
    return f;
}

int pb_json_finish(FILE *f, const char *tmp, const char *path, char *err, size_t errlen)
{
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        snprintf(err, errlen, "cannot write JSON report '%s': %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int pb_report_json(const char *path, const struct pb_summary *s, char *err, size_t errlen)
{
    char tmp[4096];
    FILE *f = pb_json_create(path, tmp, sizeof tmp, err, errlen);
    if (!f)
        return -1;
    double rate = s->seconds > 0 && s->status == 0 ? (double)s->bytes / s->seconds : 0;
    fprintf(f, "{\n  \"version\": \"%s\",\n  \"status\": %d,\n  \"status_name\": ", P2PBCAST_VERSION, s->status);
    pb_json_str(f, pb_status_name(s->status));
    fprintf(f, ",\n  \"source\": ");
    pb_json_str(f, s->source);
    fprintf(f, ",\n  \"dest\": ");
    pb_json_str(f, s->dest);
    fprintf(f, ",\n  \"transport\": ");
    pb_json_str(f, s->transport);
    fprintf(f,
            ",\n  \"bytes\": %llu,\n  \"seconds\": %.6f,\n  \"bytes_per_second_per_node\": %.0f,\n"
            "  \"nodes\": %d,\n  \"ranks\": %d,\n  \"chunk_size\": %llu,\n  \"chunks\": %llu,\n"
            "  \"chunks_skipped\": %llu,\n  \"source_bytes_read\": %llu,\n  \"source_readers\": %d,\n",
            (unsigned long long)s->bytes, s->seconds, rate, s->nodes, s->ranks, (unsigned long long)s->chunk_size,
            (unsigned long long)s->chunks, (unsigned long long)s->chunks_skipped,
            (unsigned long long)s->source_read, s->source_readers);
    if (s->placement) {
        fprintf(f, "  \"placement\": ");
        pb_json_str(f, s->placement);
        fprintf(f, ",\n");
    }
    if (s->dirtree)
        fprintf(f, "  \"directory\": {\"files\": %llu, \"directories\": %llu, \"symlinks\": %llu, \"hardlinks\": %llu, "
                   "\"skipped\": %llu},\n",
                (unsigned long long)s->files, (unsigned long long)s->dirs, (unsigned long long)s->symlinks,
                (unsigned long long)s->hardlinks, (unsigned long long)s->skipped);
    fprintf(f, "  \"failures\": [");
    for (int i = 0; i < s->nfailures; i++) {
        fprintf(f, "%s\n    {\"node\": ", i ? "," : "");
        pb_json_str(f, s->failures[i].node);
        fprintf(f, ", \"code\": %d, \"message\": ", s->failures[i].code);
        pb_json_str(f, s->failures[i].message);
        fprintf(f, "}");
    }
    fprintf(f, "%s]\n}\n", s->nfailures ? "\n  " : "");
    return pb_json_finish(f, tmp, path, err, errlen);
}
