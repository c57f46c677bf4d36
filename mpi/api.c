/* api.c — the public API (include/p2pbcast.h): defaults, status names, and
 * p2pbcast_file() over an MPI communicator. */
#include "p2pbcast.h"

#include "stage.h"

#include <string.h>

void p2pbcast_opts_init(struct p2pbcast_opts *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->gid_index = -1;
    o->rdma_tclass = -1;
    o->timeout = PB_DEFAULT_TIMEOUT;
}

const char *p2pbcast_strstatus(int s)
{
    switch (s) {
    case P2PBCAST_OK: return "success";
    case P2PBCAST_ERR_TRANSFER: return "transfer failed";
    case P2PBCAST_ERR_USAGE: return "usage error";
    case P2PBCAST_ERR_SOURCE: return "SOURCE error";
    case P2PBCAST_ERR_DEST: return "DEST error";
    case P2PBCAST_ERR_TRANSPORT: return "transport set-up failed";
    case P2PBCAST_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

int p2pbcast_file(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct p2pbcast_result *result)
{
    struct p2pbcast_opts def;
    struct p2pbcast_result scratch;
    if (!opts) {
        p2pbcast_opts_init(&def);
        opts = &def;
    }
    return pb_stage_file(&comm, source, dest, opts, result ? result : &scratch);
}
