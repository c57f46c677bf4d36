/* transport_mpi_setup.c — opening the MPI transport: the configuration and
 * tag range checked, the tables sized, the leaders' vote on their local
 * set-up, a private duplicate of the leaders' communicator, the control
 * receives posted. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport_mpi_internal.h"

/* The configuration makes sense and matches the leaders' communicator. */
static int check_cfg(const struct pb_transport_cfg *cfg, const char *me, char *err, size_t errlen)
{
    if (!cfg || !cfg->mpi_comm) {
        snprintf(err, errlen, "%s: mpi transport: no MPI communicator given", me);
        return -1;
    }
    if (cfg->nslots == 0 || cfg->slot_size == 0 || cfg->slot_size > INT_MAX || (cfg->npeers > 0 && !cfg->peers) ||
        !cfg->pool || cfg->npeers < 0) {
        snprintf(err, errlen, "%s: mpi transport: invalid configuration (%u slots of %zu bytes)", me, cfg->nslots,
                 cfg->slot_size);
        return -1;
    }
    MPI_Comm parent = *(MPI_Comm *)cfg->mpi_comm;
    int size = 0, rank = -1;
    if (MPI_Comm_size(parent, &size) != MPI_SUCCESS || MPI_Comm_rank(parent, &rank) != MPI_SUCCESS ||
        size != cfg->nleaders || rank != cfg->self) {
        snprintf(err, errlen, "%s: mpi transport: leader communicator (rank %d of %d) does not match leader %d of %d",
                 me, rank, size, cfg->self, cfg->nleaders);
        return -1;
    }
    return 0;
}

/* The tags our slots need fit under this MPI's MPI_TAG_UB (a property of
 * the library, the same on every leader). */
static int check_tags(struct mpi_transport *t, MPI_Comm parent, const char *me, char *err, size_t errlen)
{
    int *tag_ub = NULL, flag = 0;
    MPI_Comm_get_attr(parent, MPI_TAG_UB, &tag_ub, &flag);
    t->tag_ub = flag && tag_ub ? *tag_ub : 32767;
    long need = (long)TAG_DATA(0) + 2L * ((long)t->nslots - 1);
    if (need > t->tag_ub) {
        snprintf(err, errlen, "%s: mpi transport: %u slots need MPI tags up to %ld but this MPI allows %ld", me,
                 t->nslots, need, t->tag_ub);
        return -1;
    }
    return 0;
}

/* Our peers and receive slots; nothing posted yet. */
static int setup_tables(struct mpi_transport *t, const struct pb_transport_cfg *cfg, const char *me, char *err,
                        size_t errlen)
{
    t->peer_of = malloc((size_t)t->nleaders * sizeof *t->peer_of);
    t->peers = calloc((size_t)cfg->npeers + 1, sizeof *t->peers);
    t->rs = calloc(cfg->nslots, sizeof *t->rs);
    if (!t->peer_of || !t->peers || !t->rs) {
        snprintf(err, errlen, "%s: mpi transport: out of memory for %d peers and %u slots", me, cfg->npeers,
                 cfg->nslots);
        return -1;
    }
    for (int i = 0; i < t->nleaders; i++)
        t->peer_of[i] = -1;
    for (int i = 0; i < cfg->npeers; i++) {
        int l = cfg->peers[i];
        if (l < 0 || l >= t->nleaders) {
            snprintf(err, errlen, "%s: mpi transport: peer %d out of range (0..%d)", me, l, t->nleaders - 1);
            return -1;
        }
        if (t->peer_of[l] >= 0)
            continue; /* listed twice */
        t->peer_of[l] = t->npeers;
        t->peers[t->npeers++] = (struct peer){ .leader = l, .ctrl_idx = -1 };
    }
    for (uint32_t s = 0; s < t->nslots; s++)
        t->rs[s].hdr_idx = t->rs[s].data_idx = -1;
    return 0;
}

/* A collective of the set-up, bounded: with the bootstrap's wait when we
 * have one (liveness, cancel, the exchange deadline), else (standalone use)
 * polled until cfg->timeout. 0, 1 timeout, 2 canceled, -1 MPI failure. */
static int wait_setup(const struct pb_transport_cfg *cfg, MPI_Request *req)
{
    if (cfg->xchg.wait)
        return cfg->xchg.wait(cfg->xchg.ctx, req, 1);
    double deadline = cfg->timeout > 0 ? pb_now() + cfg->timeout : -1;
    long us = POLL_MIN_US;
    for (;;) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return -1;
        if (done)
            return 0;
        if (deadline >= 0 && pb_now() >= deadline)
            return 1;
        sleep_us(us);
        us = us * 2 > POLL_IDLE_CAP_US ? POLL_IDLE_CAP_US : us * 2;
    }
}

/* Every leader says whether its local set-up went well, a leader that
 * already failed included: nobody then waits in the collectives below for
 * one that gave up, and that one's own message (the real reason) decides.
 * 0 all well, 1 another leader failed, 2 canceled, -1. Standalone use
 * (no exchange given) skips the vote: a leader that failed locally then
 * leaves the others to their timeout. */
static int vote_setup(const struct pb_transport_cfg *cfg, int ok)
{
    if (!cfg->xchg.with_peers)
        return ok ? 0 : -1;
    return cfg->xchg.with_peers(cfg->xchg.ctx, ok, NULL, NULL, 0, NULL, 0);
}

/* Our own communicator, so that no other traffic can match our tags:
 * MPI_Comm_idup, waited with a deadline. On 1 (timeout) or 2 (canceled)
 * MPI may still write the new handle into t->comm later. */
static int dup_comm(struct mpi_transport *t, const struct pb_transport_cfg *cfg, const char *me, char *err,
                    size_t errlen)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Comm_idup(*(MPI_Comm *)cfg->mpi_comm, &t->comm, &req);
    if (rc != MPI_SUCCESS) {
        char s[MPI_MAX_ERROR_STRING];
        mpi_errstr(rc, s, sizeof s);
        snprintf(err, errlen, "%s: mpi transport: MPI_Comm_idup: %s", me, s);
        t->comm = MPI_COMM_NULL;
        return -1;
    }
    int w = wait_setup(cfg, &req);
    if (w != 0) {
        snprintf(err, errlen, "%s: mpi transport: duplicating the leaders' communicator: %s", me,
                 w == 1 ? "the other nodes did not join in time" : w == 2 ? "interrupted" : "MPI failure");
        return w;
    }
    MPI_Comm_set_errhandler(t->comm, MPI_ERRORS_RETURN);
    return 0;
}

/* One control receive posted per peer. */
static int post_ctrl_recvs(struct mpi_transport *t, const char *me, char *err, size_t errlen)
{
    for (int i = 0; i < t->npeers; i++) {
        int rc = post_ctrl_recv(t, &t->peers[i]);
        if (rc != 0) {
            char s[MPI_MAX_ERROR_STRING];
            ctrl_recv_errstr(rc, s, sizeof s);
            snprintf(err, errlen, "%s: mpi transport: receive from %s: %s", me, peer_name(t, t->peers[i].leader),
                     s);
            return -1;
        }
    }
    return 0;
}

/* Before a communicator exists: only our own memory to give back. */
static void free_tables(struct mpi_transport *t)
{
    if (!t)
        return;
    free(t->peer_of);
    free(t->peers);
    free(t->rs);
    free(t);
}

/* Our state, with tables, checked against MPI's tag range. NULL (err
 * filled) when this leader cannot take part in the transfer. */
static struct mpi_transport *new_transport(const struct pb_transport_cfg *cfg, const char *me, char *err,
                                           size_t errlen)
{
    if (check_cfg(cfg, me, err, errlen) < 0)
        return NULL;
    struct mpi_transport *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "%s: mpi transport: out of memory", me);
        return NULL;
    }
    t->base.ops = &mpi_ops;
    t->comm = MPI_COMM_NULL;
    t->self = cfg->self;
    t->nleaders = cfg->nleaders;
    t->pool = cfg->pool;
    t->slot_size = cfg->slot_size;
    t->nslots = cfg->nslots;
    t->names = cfg->names;
    t->verbose = cfg->verbose;
    clock_gettime(CLOCK_MONOTONIC, &t->last_activity);
    if (check_tags(t, *(MPI_Comm *)cfg->mpi_comm, me, err, errlen) < 0 || setup_tables(t, cfg, me, err, errlen) < 0) {
        free_tables(t);
        return NULL;
    }
    return t;
}

/* Steps: local set-up, the leaders' vote (collective, every leader), our
 * communicator (collective, bounded), the control receives. */
struct pb_transport *pb_mpi_transport_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    const char *me = "?";
    if (cfg && cfg->names && cfg->self >= 0 && cfg->self < cfg->nleaders && cfg->names[cfg->self])
        me = cfg->names[cfg->self];
    struct mpi_transport *t = new_transport(cfg, me, err, errlen);
    if (!cfg)
        return NULL;
    int vote = vote_setup(cfg, t != NULL);
    if (!t)
        return NULL; /* our own reason is in err */
    if (vote != 0) {
        free_tables(t);
        if (vote == 1 && cfg->failed_elsewhere)
            *cfg->failed_elsewhere = 1;
        snprintf(err, errlen, "mpi transport: %s",
                 vote == 1 ? "set-up failed on another node (see its message)"
                 : vote == 2 ? "interrupted during set-up" : "the set-up vote failed (MPI)");
        return NULL;
    }
    int rc = dup_comm(t, cfg, me, err, errlen);
    if (rc > 0)
        return NULL; /* t stays allocated: MPI may still write t->comm */
    if (rc < 0) {
        free_tables(t);
        return NULL;
    }
    if (post_ctrl_recvs(t, me, err, errlen) < 0) {
        mpi_close(&t->base); /* cancels what was posted, frees everything */
        return NULL;
    }
    if (t->verbose)
        fprintf(stderr, "p2pbcast: %s: mpi transport: %d peers, %u slots of %zu bytes, tag_ub %ld\n", me, t->npeers,
                t->nslots, t->slot_size, t->tag_ub);
    return &t->base;
}
