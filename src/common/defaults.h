/* defaults.h — the public API's constant tables: the options' defaults and
 * the status names. Below every layer that uses them (stage/, report/), so
 * that none has to call up into the API (mpi/api.c exports them). */
#ifndef P2PBCAST_DEFAULTS_H
#define P2PBCAST_DEFAULTS_H

#include "p2pbcast.h"

/* Seconds without progress before a transfer fails (opts.timeout <= 0). */
#define PB_DEFAULT_TIMEOUT 60.0

/* p2pbcast_opts_init: every field zero but these. */
void pb_opts_defaults(struct p2pbcast_opts *o);

/* p2pbcast_strstatus: "success", "transfer failed", ... */
const char *pb_status_name(int status);

#endif
