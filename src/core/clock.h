/* clock.h — the one clock every layer times itself with: monotonic seconds,
 * immune to the wall clock being stepped while a broadcast runs. */
#ifndef P2PBCAST_CLOCK_H
#define P2PBCAST_CLOCK_H

#include <time.h>

static inline double pb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
