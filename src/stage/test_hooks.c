/* test_hooks.c — the P2PBCAST_TEST_* variables of the test suite, read on
 * the ranks they name. VALUE applies on every rank; VALUE@R1,R2,... only on
 * those ranks of the job's communicator (world ranks for the command), so
 * that a test can slow or break one node of several. */
#include "phases.h"

#include <stdlib.h>

long pb_test_hook(const struct stage *st, const char *name, long dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    long val = strtol(v, &end, 10);
    if (*end != '@')
        return val;
    while (*end == '@' || *end == ',') {
        const char *r = end + 1;
        long rank = strtol(r, &end, 10);
        if (end == r)
            break;
        if (rank == st->bi->rank)
            return val;
    }
    return dflt;
}
