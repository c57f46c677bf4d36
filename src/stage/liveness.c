/* liveness.c — the stage's side of alive.h: a long local step's ticks
 * become the bootstrap's heartbeat ("still working" from a leader to the
 * root, from the root to every leader), at most once a second, well within
 * the shortest deadline of a wait (--timeout + 5 s). */
#include "bootstrap.h"
#include "phases.h"

#include <pthread.h>
#include <stdatomic.h>

static void say_alive(void *ctx)
{
    pb_boot_alive(ctx);
}

struct pb_alive *pb_stage_alive(struct stage *st, const char *test_delay_us)
{
    st->alive = (struct pb_alive){
        .say = say_alive,
        .ctx = st->boot,
        .every = 1.0,
        .last = pb_now(),
        .delay_us = test_delay_us ? pb_test_hook(st, test_delay_us, 0) : 0,
    };
    return &st->alive;
}

/* A step that cannot tick (one long system call: a flush, a reservation)
 * runs in a thread while this one, which makes the MPI calls, ticks. */
struct run_job {
    int (*step)(void *ctx);
    void *ctx;
    int rc;
    atomic_int done;
};

static void *run_thread(void *arg)
{
    struct run_job *j = arg;
    j->rc = j->step(j->ctx);
    atomic_store(&j->done, 1);
    return NULL;
}

int pb_stage_run_alive(struct stage *st, int (*step)(void *ctx), void *ctx)
{
    struct run_job j = { step, ctx, 0, 0 };
    pthread_t th;
    if (pthread_create(&th, NULL, run_thread, &j) != 0)
        return step(ctx); /* no thread to spare: the step alone, silent */
    struct pb_alive *alive = pb_stage_alive(st, NULL);
    /* Most such steps are short (a small file's flush): look again after
     * 50 us, doubling to 20 ms, so a short step costs no fixed 20 ms. */
    long ns = 50000;
    while (!atomic_load(&j.done)) {
        nanosleep(&(struct timespec){ 0, ns }, NULL);
        pb_alive_tick(alive);
        if (ns < 20000000L)
            ns *= 2;
    }
    pthread_join(th, NULL);
    return j.rc;
}
