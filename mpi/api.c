/* api.c — the public API (include/p2pbcast.h): defaults and status names
 * (from src/common/defaults.c), and p2pbcast_file() over an MPI
 * communicator. */
#include "p2pbcast.h"

#include "defaults.h"
#include "stage.h"

void p2pbcast_opts_init(struct p2pbcast_opts *o)
{
    pb_opts_defaults(o);
}

const char *p2pbcast_strstatus(int s)
{
    return pb_status_name(s);
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
