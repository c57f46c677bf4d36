/* api.c — the public entry point: p2pbcast_file() over an MPI communicator. */
#include "p2pbcast.h"

#include "stage.h"

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
