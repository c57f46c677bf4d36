/* stage.h — one broadcast of a file, from SOURCE checks to the commit vote.
 * Runs on every rank; talks to MPI only through mpi/bootstrap.h. */
#ifndef P2PBCAST_STAGE_H
#define P2PBCAST_STAGE_H

#include "p2pbcast.h"

/* comm points to an MPI_Comm. Same contract as p2pbcast_file(). */
int pb_stage_file(const void *comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                  struct p2pbcast_result *res);

#endif
