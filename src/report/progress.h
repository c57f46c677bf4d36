/* progress.h — what the user sees: a bar on a terminal, plain lines in a log,
 * a closing summary and an optional JSON report. Root only. */
#ifndef P2PBCAST_PROGRESS_H
#define P2PBCAST_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

struct pb_progress {
    FILE *out;
    int enabled;
    int tty;
    double t0, last;
    uint64_t total, bytes;
    int nodes, nodes_done;
    int drew;            /* a bar is on screen and must be cleared */
    int last_tenth;      /* log lines: last tenth of the way reported */
    int lines;           /* log lines printed */
    int said_all_done;   /* log lines: the line with every node done is out */
    /* a directory SOURCE: files whose data are all sent, of files_total */
    uint64_t files_total;
    uint64_t (*files_done)(void *ctx, uint64_t bytes);
    void *files_ctx;
};

void pb_progress_init(struct pb_progress *p, FILE *out, int enabled, uint64_t total, int nodes);
/* Engine callback: bytes sent by the root so far, receivers done. */
void pb_progress_update(void *p, uint64_t bytes, int nodes_done);
/* Show files too: done(ctx, bytes) counts the files that many bytes of the
 * stream complete (called only when a line is drawn). */
void pb_progress_files(struct pb_progress *p, uint64_t total, uint64_t (*done)(void *ctx, uint64_t bytes), void *ctx);
void pb_progress_end(struct pb_progress *p);

struct pb_failure {
    const char *node;    /* "host (rank N)" */
    int code;
    const char *message;
};

struct pb_summary {
    int status;
    const char *source, *dest, *transport;
    uint64_t bytes, chunk_size, chunks, chunks_skipped;
    uint64_t source_read; /* bytes read from SOURCE, all nodes together */
    int source_readers;   /* nodes that read SOURCE */
    const char *placement; /* slow senders and where they were placed, or NULL */
    double seconds;
    int nodes, ranks;
    const struct pb_failure *failures;
    int nfailures;
    /* a directory SOURCE: what the tree held */
    int dirtree;
    uint64_t files, dirs, symlinks, hardlinks, skipped;
};

/* "1.23 GB/s", "512 kB/s": a rate in the unit that fits; returns buf. */
const char *pb_fmt_rate(double bytes_per_s, char *buf, size_t len);
/* "12,345": a count with thousands separators; returns buf. */
const char *pb_fmt_count(uint64_t n, char *buf, size_t len);
/* "1.00 GiB" style; returns buf. */
const char *pb_fmt_bytes(uint64_t b, char *buf, size_t len);
void pb_summary_print(FILE *out, const struct pb_summary *s);
/* A JSON report: created under a temporary name next to path (tmp, room
 * for path + 12), then renamed over path by pb_json_finish; NULL or -1
 * with err. pb_json_str writes a quoted, escaped string. */
FILE *pb_json_create(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen);
int pb_json_finish(FILE *f, const char *tmp, const char *path, char *err, size_t errlen);
void pb_json_str(FILE *f, const char *s);
/* 0 ok, -1 with err. Written to a temporary name and renamed. */
int pb_report_json(const char *path, const struct pb_summary *s, char *err, size_t errlen);

#endif
