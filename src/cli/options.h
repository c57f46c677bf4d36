/* options.h — the command line: parse, validate, expand DEST placeholders.
 * Pure: no I/O except what the caller prints, so it is unit-tested. */
#ifndef P2PBCAST_OPTIONS_H
#define P2PBCAST_OPTIONS_H

#include "p2pbcast.h"

#include <stddef.h>
#include <stdint.h>

struct pb_cli {
    struct p2pbcast_opts opts;
    const char *source;
    const char *dest;
    int help;
    int version;
};

/* 0 on success; -1 with a one-line reason in err (usage error, exit 2). */
int pb_cli_parse(int argc, char **argv, struct pb_cli *cli, char *err, size_t errlen);

/* "4M", "512k", "1GiB", "65536" -> bytes (powers of 1024). 0 ok, -1 bad. */
int pb_parse_size(const char *s, uint64_t *out);

extern const char pb_usage_text[];

#endif
