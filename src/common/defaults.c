/* defaults.c — the options' defaults and the status names; see defaults.h. */
#include "defaults.h"

#include <string.h>

void pb_opts_defaults(struct p2pbcast_opts *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->gid_index = -1;
    o->rdma_tclass = -1; /* the device's default */
    o->timeout = PB_DEFAULT_TIMEOUT;
}

const char *pb_status_name(int s)
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
