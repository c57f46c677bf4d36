/* api.c — the public API (include/p2pbcast.h): defaults and status names
 * (from src/common/defaults.c), and p2pbcast_file() over an MPI
 * communicator, with the sizes the caller was
 * compiled with; and the first interface (P2PBCAST_0.1, without sizes) for
 * programs built before the sizes existed. */
#include "p2pbcast.h"

#include "defaults.h"
#include "stage.h"

#include <stdio.h>
#include <string.h>

/* The first published layouts (p2pbcast 0.1.0, before the sizes): the
 * options up to flags, the result without a size, up to message. Programs
 * built then may hold nothing more, so the unsized entry points assume them. */
#define OPTS_FIRST_SIZE offsetof(struct p2pbcast_opts, cancel)
struct result_first {
    int status;
    uint64_t bytes;
    double seconds;
    int nodes;
    int failed_nodes;
    uint64_t chunk_size;
    uint64_t chunks;
    char transport[16];
    char message[512];
};
/* The smallest sized result: this struct as the sizes were introduced. */
#define RESULT_SIZED_MIN (offsetof(struct p2pbcast_result, chunks_skipped) + sizeof(uint64_t))

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

int p2pbcast_opts_init_sized(struct p2pbcast_opts *o, size_t size)
{
    if (!o || size < OPTS_FIRST_SIZE)
        return P2PBCAST_ERR_USAGE;
    struct p2pbcast_opts d;
    pb_opts_defaults(&d);
    memset(o, 0, size); /* fields newer than this library: 0 is their default */
    memcpy(o, &d, min_size(size, sizeof d));
    o->struct_size = size;
    return P2PBCAST_OK;
}

const char *p2pbcast_version(void)
{
    return P2PBCAST_VERSION;
}

const char *p2pbcast_strstatus(int s)
{
    return pb_status_name(s);
}

/* Options this library can honour: at least the first layout, and nothing
 * set in bytes it does not know (a newer caller's fields must be 0). */
static int check_opts(const struct p2pbcast_opts *o, char *msg, size_t len)
{
    if (o->struct_size < OPTS_FIRST_SIZE) {
        snprintf(msg, len, "options: struct_size %zu is smaller than any p2pbcast_opts (%zu): "
                 "initialize them with p2pbcast_opts_init()", o->struct_size, (size_t)OPTS_FIRST_SIZE);
        return -1;
    }
    const unsigned char *b = (const unsigned char *)o;
    for (size_t i = sizeof *o; i < o->struct_size; i++) {
        if (b[i]) {
            snprintf(msg, len, "options: byte %zu of %zu is set, but this library (p2pbcast %s) knows only the "
                     "first %zu: a field of a newer p2pbcast.h it cannot honour", i, o->struct_size,
                     P2PBCAST_VERSION, sizeof *o);
            return -1;
        }
    }
    return 0;
}

/* The broadcast into a full result of this library's layout. */
static int run(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
               struct p2pbcast_result *res)
{
    struct p2pbcast_opts def;
    if (!opts) {
        p2pbcast_opts_init_sized(&def, sizeof def);
        opts = &def;
    }
    if (check_opts(opts, res->message, sizeof res->message) < 0) {
        res->struct_size = sizeof *res;
        res->status = P2PBCAST_ERR_USAGE;
        return res->status;
    }
    return pb_stage_file(&comm, source, dest, opts, res);
}

int p2pbcast_file_sized(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                        struct p2pbcast_result *result, size_t result_size)
{
    if (result && result_size < RESULT_SIZED_MIN)
        return P2PBCAST_ERR_USAGE; /* too small to hold even the status: write nothing */
    struct p2pbcast_result full;
    memset(&full, 0, sizeof full);
    int st = run(comm, source, dest, opts, &full);
    if (result) {
        full.struct_size = min_size(result_size, sizeof full);
        memcpy(result, &full, full.struct_size); /* a newer caller's later fields: untouched */
    }
    return st;
}

/* ---- The first interface (P2PBCAST_0.1): no sizes, the first layouts.
 * The header's macros hide these names from new callers. */
#undef p2pbcast_opts_init
#undef p2pbcast_file
void p2pbcast_opts_init(struct p2pbcast_opts *o);
int p2pbcast_file(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct result_first *result);

/* Only the first layout's bytes are written (a caller built later may have
 * more fields, but they were never given defaults here: that is the bug
 * the sizes fix); what it sets beyond them is ignored, as struct_size says. */
void p2pbcast_opts_init(struct p2pbcast_opts *o)
{
    p2pbcast_opts_init_sized(o, OPTS_FIRST_SIZE);
}

int p2pbcast_file(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct result_first *result)
{
    struct p2pbcast_result full;
    memset(&full, 0, sizeof full);
    int st = run(comm, source, dest, opts, &full);
    if (result) {
        result->status = full.status;
        result->bytes = full.bytes;
        result->seconds = full.seconds;
        result->nodes = full.nodes;
        result->failed_nodes = full.failed_nodes;
        result->chunk_size = full.chunk_size;
        result->chunks = full.chunks;
        memcpy(result->transport, full.transport, sizeof result->transport);
        memcpy(result->message, full.message, sizeof result->message);
    }
    return st;
}
