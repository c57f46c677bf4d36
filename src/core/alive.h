/* alive.h — a long local step (the root's walk of SOURCE, a node's staging
 * tree, the check of an existing DEST_DIR, the removal of an old tree, a
 * flush) says it is still making progress, so that the other nodes wait for
 * it however long it takes, yet name it once it falls silent.
 *
 * The step calls pb_alive_tick once per unit of work (an entry); the
 * owner's callback runs at most once every `every` seconds. The stage wires
 * it to the bootstrap's heartbeat; the layers below know nothing of MPI. */
#ifndef P2PBCAST_ALIVE_H
#define P2PBCAST_ALIVE_H

#include "clock.h"

#include <time.h>

struct pb_alive {
    void (*say)(void *ctx); /* "still working"; NULL: nobody listens */
    void *ctx;
    double every;           /* seconds between two calls of say */
    double last;            /* when say last ran */
    long delay_us;          /* testing only: every tick first sleeps this long (a slow filesystem) */
};

/* One unit of work done. a may be NULL (a step nobody waits for). */
static inline void pb_alive_tick(struct pb_alive *a)
{
    if (!a)
        return;
    if (a->delay_us > 0)
        nanosleep(&(struct timespec){ a->delay_us / 1000000, (a->delay_us % 1000000) * 1000 }, NULL);
    double now = pb_now();
    if (a->say && now - a->last >= a->every) {
        a->last = now;
        a->say(a->ctx);
    }
}

#endif
