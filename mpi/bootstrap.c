/* bootstrap.c — the bootstrap once open: waits that neither spin nor outlive
 * a silent peer (heartbeats, suspects), idle-friendly collectives, the
 * transports' exchanges, and MPI's own set-up. Start-up (nodes, leaders,
 * names) is in bootstrap_open.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bootstrap_internal.h"

#include <errno.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* MPICH's MPI_STATUSES_IGNORE is (MPI_Status *)1, which gcc's
 * -Wstringop-overflow takes for an empty array in every MPI_Testall. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#define TAG_ALIVE 7302 /* "still working" (any leader in a long step) or "still waiting" (the root) */
#define TAG_SUSPECT 7304 /* a leader to the root: "my link to this leader failed" */
#define SUSPECT_GRACE 10.0 /* seconds a suspect leader has left to answer */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Fire and forget: a zero-byte message on the leaders' communicator. */
static void send_alive(struct pb_boot *b, int to)
{
    MPI_Request r;
    if (MPI_Isend(NULL, 0, MPI_BYTE, to, TAG_ALIVE, b->leaders, &r) == MPI_SUCCESS)
        MPI_Request_free(&r);
}

/* Take in the heartbeats that arrived: the time each leader was last heard
 * of (root), or of the root (others). */
static void drain_alive(struct pb_boot *b, double now)
{
    const struct pb_boot_info *in = &b->info;
    if (b->leaders == MPI_COMM_NULL || !b->heard)
        return;
    int flag = 1;
    MPI_Status st;
    while (MPI_Iprobe(MPI_ANY_SOURCE, TAG_ALIVE, b->leaders, &flag, &st) == MPI_SUCCESS && flag) {
        MPI_Recv(NULL, 0, MPI_BYTE, st.MPI_SOURCE, TAG_ALIVE, b->leaders, MPI_STATUS_IGNORE);
        if (st.MPI_SOURCE >= 0 && st.MPI_SOURCE < in->nleaders)
            b->heard[st.MPI_SOURCE] = now;
    }
    int32_t who;
    while (MPI_Iprobe(MPI_ANY_SOURCE, TAG_SUSPECT, b->leaders, &flag, &st) == MPI_SUCCESS && flag) {
        MPI_Recv(&who, 1, MPI_INT32_T, st.MPI_SOURCE, TAG_SUSPECT, b->leaders, MPI_STATUS_IGNORE);
        if (b->suspect && who >= 0 && who < in->nleaders && !b->suspect[who])
            b->suspect[who] = (now > 0 ? now : now_s()) + SUSPECT_GRACE;
    }
}

/* Wait for requests without spinning: Open MPI's blocking waits poll the
 * network at full speed, which on a small node steals the CPU from the
 * ranks that move the data. Sleep 50 us growing to 2 ms between tests.
 *
 * The deadline follows progress, not the clock alone: a request is given up
 * only when its peer has been silent for `timeout` seconds. With per_leader
 * (the root's gather, request i from leader i), a leader that is still
 * working (a long flush) says so with heartbeats; the root in turn tells
 * the leaders that already answered, and wait for its decision, that it is
 * still waiting. Returns MPI_SUCCESS, an MPI error, -1 when timeout (> 0)
 * expired, or -2 when *cancel became nonzero. */
static const volatile sig_atomic_t *wait_cancel;

/* Test each request on its own, so that every finished one becomes
 * MPI_REQUEST_NULL at once: MPI_Testall leaves them all untouched until the
 * last one completes, and wait_live must know which leaders have answered
 * (to tell them the root is still waiting, and to stop counting their
 * silence). *done: all finished. */
static int test_each(int n, MPI_Request *req, int *done)
{
    *done = 1;
    for (int i = 0; i < n; i++) {
        int flag = 1;
        if (req[i] != MPI_REQUEST_NULL) {
            int rc = MPI_Test(&req[i], &flag, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                return rc;
        }
        *done &= flag;
    }
    return MPI_SUCCESS;
}

#define SPIN_SECONDS 0.005

int wait_live(struct pb_boot *b, int n, MPI_Request *req, double timeout, int per_leader)
{
    const struct pb_boot_info *in = &b->info;
    long ns = 50000;
    double t0 = now_s(), told = t0;
    double every = timeout / 3 > 1 ? timeout / 3 : 1;
    while (1) {
        int done = 0;
        int rc = test_each(n, req, &done);
        if (rc != MPI_SUCCESS)
            return rc;
        if (done)
            return MPI_SUCCESS;
        if (wait_cancel && *wait_cancel)
            return -2;
        double now = now_s();
        drain_alive(b, now);
        if (timeout > 0) {
            int late = 0;
            for (int i = 0; i < n && !late; i++) {
                if (req[i] == MPI_REQUEST_NULL)
                    continue;
                double last = t0;
                if (b->heard) {
                    int who = per_leader ? i : in->root_leader;
                    last = b->heard[who] > last ? b->heard[who] : last;
                }
                late = now - last > timeout || (per_leader && b->suspect && b->suspect[i] && now > b->suspect[i]);
            }
            if (late)
                return -1;
        }
        if (per_leader && now - told > every) {
            for (int i = 0; i < n; i++)
                if (req[i] == MPI_REQUEST_NULL && i != in->leader)
                    send_alive(b, i);
            told = now;
        }
        /* Non-blocking collectives move only while tested: for the first
         * few milliseconds of a wait (start-up's rounds take a few each)
         * yield instead of sleeping, then back off to spare the CPU. */
        if (now - t0 < SPIN_SECONDS) {
            sched_yield();
            continue;
        }
        struct timespec ts = { 0, ns };
        nanosleep(&ts, NULL);
        if (ns < 2000000)
            ns *= 2;
    }
}

void pb_boot_alive(struct pb_boot *b)
{
    const struct pb_boot_info *in = &b->info;
    if (!in->is_leader)
        return;
    if (in->leader != in->root_leader) {
        send_alive(b, in->root_leader);
        return;
    }
    for (int i = 0; i < in->nleaders; i++)
        if (i != in->leader)
            send_alive(b, i);
}

const struct pb_boot_info *pb_boot_info(const struct pb_boot *b)
{
    return &b->info;
}

static int boot_status(int rc)
{
    return rc == MPI_SUCCESS ? 0 : rc == -1 ? 1 : rc == -2 ? 2 : -1;
}

/* Give up on requests (timeout, signal): cancel the receives, and keep
 * the requests and their buffer until close. Takes ownership of reqs and
 * buf; frees them at once when MPI is done with them. */
static void keep(struct pb_boot *b, MPI_Request *reqs, int n, void *buf);
static void orphan(struct pb_boot *b, MPI_Request *reqs, int n, void *buf)
{
    for (int i = 0; i < n; i++) {
        int done = 0;
        if (reqs[i] != MPI_REQUEST_NULL && MPI_Test(&reqs[i], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done)
            MPI_Cancel(&reqs[i]); /* receives: reliable; sends and collectives: a no-op or refused */
    }
    keep(b, reqs, n, buf);
}

/* Requests that may finish later, with their buffer: kept until close. */
static void keep(struct pb_boot *b, MPI_Request *reqs, int n, void *buf)
{
    int done = 0;
    if (MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE) == MPI_SUCCESS && done) {
        free(reqs);
        free(buf);
        return;
    }
    struct orphan *o = realloc(b->orphans, ((size_t)b->norphans + 1) * sizeof *o);
    if (!o)
        return; /* leak rather than free what MPI may still write */
    b->orphans = o;
    o[b->norphans++] = (struct orphan){ reqs, n, buf };
}

/* At close: what finished by now is freed; the rest stays allocated. */
static void free_orphans(struct pb_boot *b)
{
    for (int i = 0; i < b->norphans; i++) {
        int done = 0;
        if (MPI_Testall(b->orphans[i].n, b->orphans[i].reqs, &done, MPI_STATUSES_IGNORE) == MPI_SUCCESS && done) {
            free(b->orphans[i].reqs);
            free(b->orphans[i].buf);
        }
    }
    free(b->orphans);
    b->orphans = NULL;
    b->norphans = 0;
}

static MPI_Request *new_reqs(int n)
{
    MPI_Request *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; r && i < n; i++)
        r[i] = MPI_REQUEST_NULL;
    return r;
}

void pb_boot_suspect(struct pb_boot *b, int leader)
{
    const struct pb_boot_info *in = &b->info;
    if (!in->is_leader || leader < 0 || leader >= in->nleaders)
        return;
    if (b->suspect) {
        if (!b->suspect[leader])
            b->suspect[leader] = now_s() + SUSPECT_GRACE;
        return;
    }
    MPI_Request *r = new_reqs(1);
    int32_t *buf = malloc(sizeof *buf);
    if (!r || !buf) {
        free(r);
        free(buf);
        return;
    }
    *buf = leader;
    if (MPI_Isend(buf, 1, MPI_INT32_T, in->root_leader, TAG_SUSPECT, b->leaders, r) == MPI_SUCCESS)
        keep(b, r, 1, buf); /* freed once sent, at the latest at close */
    else {
        free(r);
        free(buf);
    }
}

/* The collectives work on buffers of their own (bounce buffers), so that a
 * request abandoned on a timeout or a signal never points into the
 * caller's memory after it has returned. */
/* One request and a copy of buf to post it on; 0, or -1 out of memory. */
static int bounce(const void *buf, size_t len, MPI_Request **r, void **tmp)
{
    *r = new_reqs(1);
    *tmp = malloc(len ? len : 1);
    if (!*r || !*tmp) {
        free(*r);
        free(*tmp);
        return -1;
    }
    memcpy(*tmp, buf, len);
    return 0;
}

/* Wait for a request posted on a bounce buffer (rc: how posting went);
 * copy the result out when out is given. What did not complete is left
 * to MPI, with its buffer, until close. */
static int finish(struct pb_boot *b, int rc, MPI_Request *r, void *tmp, void *out, size_t len, double timeout)
{
    if (rc == MPI_SUCCESS)
        rc = wait_live(b, 1, r, timeout, 0);
    if (rc != MPI_SUCCESS) {
        orphan(b, r, 1, tmp);
        return boot_status(rc);
    }
    if (out)
        memcpy(out, tmp, len);
    free(r);
    free(tmp);
    return 0;
}

/* root's len bytes to every rank of comm */
static int bcast_on(struct pb_boot *b, MPI_Comm comm, int root, void *buf, size_t len, double timeout)
{
    MPI_Request *r;
    void *tmp;
    if (bounce(buf, len, &r, &tmp) < 0)
        return -1;
    int rc = MPI_Ibcast(tmp, (int)len, MPI_BYTE, root, comm, r);
    return finish(b, rc, r, tmp, buf, len, timeout);
}

int pb_boot_bcast(struct pb_boot *b, void *buf, size_t len, double timeout)
{
    return bcast_on(b, b->comm, b->info.root, buf, len, timeout);
}

int pb_boot_bcast_leaders(struct pb_boot *b, void *buf, size_t len, double timeout)
{
    if (!b->info.is_leader)
        return -1;
    return bcast_on(b, b->leaders, b->info.root_leader, buf, len, timeout);
}

/* Point to point rather than MPI_Igather, so that the root knows exactly
 * which leaders have not answered when the time is up. */
#define TAG_VOTE 7301
static int gather_send(struct pb_boot *b, const void *mine, size_t len, double timeout)
{
    MPI_Request *r;
    void *tmp;
    if (bounce(mine, len, &r, &tmp) < 0)
        return -1;
    int rc = MPI_Isend(tmp, (int)len, MPI_BYTE, b->info.root_leader, TAG_VOTE, b->leaders, r);
    return finish(b, rc, r, tmp, NULL, 0, timeout);
}

int pb_boot_gather(struct pb_boot *b, const void *mine, void *all, size_t len, double timeout,
                   unsigned char *missing)
{
    const struct pb_boot_info *in = &b->info;
    if (in->leader != in->root_leader)
        return gather_send(b, mine, len, timeout);
    int n = in->nleaders;
    MPI_Request *req = new_reqs(n);
    char *tmp = malloc((size_t)n * len + 1);
    if (!req || !tmp) {
        free(req);
        free(tmp);
        return -1;
    }
    int rc = MPI_SUCCESS;
    for (int i = 0; i < n && rc == MPI_SUCCESS; i++) {
        if (i == in->leader)
            memcpy(tmp + (size_t)i * len, mine, len);
        else
            rc = MPI_Irecv(tmp + (size_t)i * len, (int)len, MPI_BYTE, i, TAG_VOTE, b->leaders, &req[i]);
    }
    if (rc == MPI_SUCCESS)
        rc = wait_live(b, n, req, timeout, 1);
    if (rc == -1 && missing) {
        for (int i = 0; i < n; i++) {
            int done = 1;
            if (req[i] != MPI_REQUEST_NULL)
                MPI_Test(&req[i], &done, MPI_STATUS_IGNORE);
            missing[i] = !done;
        }
    }
    if (rc == MPI_SUCCESS) {
        memcpy(all, tmp, (size_t)n * len);
        free(req);
        free(tmp);
    } else {
        orphan(b, req, n, tmp);
    }
    return boot_status(rc);
}

#define DECISION_MAX 256
int pb_boot_root_decides(void *boot, const void *mine, size_t len, void *out, size_t dlen,
                         void (*decide)(const void *all, int n, void *out, void *arg), void *arg)
{
    struct pb_boot *b = boot;
    const struct pb_boot_info *in = &b->info;
    double t = b->xchg_timeout > 0 ? 2 * b->xchg_timeout + 10 : 0;
    int is_root = in->leader == in->root_leader;
    /* status, then the decision: every leader takes part in the broadcast,
     * whatever happened to it before, so that nobody waits for it */
    unsigned char msg[sizeof(int32_t) + DECISION_MAX] = { 0 };
    int32_t st = -1;
    char *all = is_root ? malloc((size_t)in->nleaders * len + 1) : NULL;
    if (dlen <= DECISION_MAX && (!is_root || all) && pb_boot_gather(b, mine, all, len, t, NULL) == 0) {
        st = 0;
        if (is_root)
            decide(all, in->nleaders, msg + sizeof st, arg);
    }
    free(all);
    if (is_root)
        memcpy(msg, &st, sizeof st);
    int rc = bcast_on(b, b->leaders, in->root_leader, msg, sizeof msg, t);
    memcpy(&st, msg, sizeof st);
    if (rc != 0 || st != 0)
        return rc ? rc : 1;
    memcpy(out, msg + sizeof st, dlen);
    return 0;
}

void pb_boot_set_cancel(struct pb_boot *b, const volatile sig_atomic_t *cancel)
{
    (void)b; /* the waits are process-wide, like the signal that sets it */
    wait_cancel = cancel;
}

void pb_boot_on_abort(struct pb_boot *b, void (*fn)(void *ctx), void *ctx)
{
    b->on_abort = fn;
    b->on_abort_ctx = ctx;
}

void pb_boot_abort(struct pb_boot *b, int code)
{
    /* MPI_Abort kills every rank, this one included: remove what this
     * rank created first (a named temporary DEST, probe files). */
    if (b->on_abort)
        b->on_abort(b->on_abort_ctx);
    fflush(stderr);
    MPI_Abort(b->comm, code);
}

void pb_boot_set_exchange_timeout(struct pb_boot *b, double seconds)
{
    b->xchg_timeout = seconds;
}

#define TAG_ENDPOINT 7303
/* Everyone's set-up status, then endpoints with the partners only: the same
 * len bytes to each (each = 0), or mine + i*len to peers[i] (each = 1). */
static int peer_exchange(void *boot, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers,
                         int each)
{
    struct pb_boot *b = boot;
    const struct pb_boot_info *in = &b->info;
    double t = b->xchg_timeout > 0 ? 2 * b->xchg_timeout + 10 : 0;
    int all_ok = ok ? 1 : 0;
    MPI_Request *r = new_reqs(2 * npeers + 1);
    size_t nmine = each ? (size_t)npeers : 1;
    char *tmp = malloc(len * ((size_t)npeers + nmine) + 1); /* theirs, then a copy of mine */
    int *flag = malloc(sizeof *flag);
    if (!r || !tmp || !flag) {
        free(r);
        free(tmp);
        free(flag);
        return -1;
    }
    *flag = all_ok;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, flag, 1, MPI_INT, MPI_MIN, b->leaders, &r[0]);
    if (rc == MPI_SUCCESS)
        rc = wait_live(b, 1, r, t, 0);
    if (rc == -1) {
        fprintf(stderr, "p2pbcast: error: %s: the other nodes did not reach the connection set-up within %.0f s; "
                        "aborting the job\n", in->names[in->leader], t);
        pb_boot_abort(b, 5);
    }
    if (rc != MPI_SUCCESS) {
        orphan(b, r, 1, flag);
        free(tmp);
        return rc == -2 ? 2 : -1;
    }
    all_ok = *flag;
    free(flag);
    if (!all_ok) {
        free(r);
        free(tmp);
        return 1;
    }
    char *my = tmp + len * (size_t)npeers;
    if (len > 0 && nmine > 0)
        memcpy(my, mine, len * nmine);
    for (int i = 0; i < npeers && rc == MPI_SUCCESS; i++) {
        rc = MPI_Irecv(tmp + (size_t)i * len, (int)len, MPI_BYTE, peers[i], TAG_ENDPOINT, b->leaders, &r[2 * i]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Isend(my + (each ? (size_t)i * len : 0), (int)len, MPI_BYTE, peers[i], TAG_ENDPOINT, b->leaders,
                           &r[2 * i + 1]);
    }
    if (rc == MPI_SUCCESS)
        rc = wait_live(b, 2 * npeers, r, t, 0);
    if (rc == -1) {
        fprintf(stderr, "p2pbcast: error: %s: no endpoint from a partner within %.0f s; aborting the job\n",
                in->names[in->leader], t);
        pb_boot_abort(b, 5);
    }
    if (rc == MPI_SUCCESS) {
        if (len > 0 && npeers > 0) /* npeers 0, the vote alone: out may be NULL */
            memcpy(out, tmp, len * (size_t)npeers);
        free(r);
        free(tmp);
        return 0;
    }
    orphan(b, r, 2 * npeers, tmp);
    return rc == -2 ? 2 : -1;
}

int pb_boot_peer_exchange(void *boot, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers)
{
    return peer_exchange(boot, ok, mine, out, len, peers, npeers, 0);
}

int pb_boot_peer_exchange_each(void *boot, int ok, const void *mine, void *out, size_t len, const int *peers,
                               int npeers)
{
    return peer_exchange(boot, ok, mine, out, len, peers, npeers, 1);
}

int pb_boot_wait_setup(void *boot, void *reqs, int n)
{
    struct pb_boot *b = boot;
    double t = b->xchg_timeout > 0 ? 2 * b->xchg_timeout + 10 : 0; /* as the exchanges */
    int rc = wait_live(b, n, reqs, t, 0);
    if (rc == -1) {
        fprintf(stderr, "p2pbcast: error: %s: the other nodes did not finish the connection set-up within %.0f s; "
                        "aborting the job\n", b->info.names[b->info.leader], t);
        pb_boot_abort(b, 5);
    }
    return boot_status(rc);
}

/* Leaders: learn the partners' identities from the partners themselves
 * (the root already knows every leader, and every leader the root). */
int pb_boot_meet_partners(struct pb_boot *b, const int *peers, int npeers)
{
    const struct pb_boot_info *in = &b->info;
    if (in->leader == in->root_leader || npeers <= 0)
        return 0;
    double t = b->xchg_timeout > 0 ? 2 * b->xchg_timeout + 10 : 0;
    MPI_Request *r = new_reqs(2 * npeers);
    struct leader_id *ids = calloc((size_t)npeers + 1, sizeof *ids); /* theirs, then mine */
    char *buf = malloc((size_t)npeers * NAMELEN);
    if (!r || !ids || !buf) {
        free(r);
        free(ids);
        free(buf);
        return -1;
    }
    struct leader_id *my = &ids[npeers];
    *my = (struct leader_id){ .rank = in->rank, .netid = b->netids[in->leader] };
    memcpy(my->host, b->host, HOSTLEN);
    int rc = MPI_SUCCESS, n = 0;
    for (int i = 0; i < npeers && rc == MPI_SUCCESS; i++) {
        if (peers[i] == in->root_leader || peers[i] == in->leader)
            continue;
        rc = MPI_Irecv(&ids[i], (int)sizeof *ids, MPI_BYTE, peers[i], TAG_IDENTITY, b->leaders, &r[n++]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Isend(my, (int)sizeof *my, MPI_BYTE, peers[i], TAG_IDENTITY, b->leaders, &r[n++]);
    }
    if (rc == MPI_SUCCESS)
        rc = wait_live(b, n, r, t, 0);
    if (rc == -1) {
        fprintf(stderr, "p2pbcast: error: %s: no word from a partner within %.0f s; aborting the job\n",
                in->names[in->leader], t);
        pb_boot_abort(b, 5);
    }
    if (rc != MPI_SUCCESS) {
        free(buf);
        orphan(b, r, n, ids);
        return rc == -2 ? 2 : -1;
    }
    for (int i = 0; i < npeers; i++)
        if (peers[i] != in->root_leader && peers[i] != in->leader)
            know_leader(b, peers[i], &ids[i], buf + (size_t)i * NAMELEN);
    free(b->partner_names);
    b->partner_names = buf;
    free(r);
    free(ids);
    return 0;
}

void *pb_boot_leader_comm(struct pb_boot *b)
{
    return &b->leaders;
}

int pb_boot_random(void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

void pb_boot_close(struct pb_boot *b)
{
    if (!b)
        return;
    free_orphans(b);
    if (b->leaders != MPI_COMM_NULL) {
        drain_alive(b, 0); /* heartbeats that came after the last wait */
        MPI_Comm_free(&b->leaders);
    }
    free(b->heard);
    free(b->suspect);
    MPI_Comm_free(&b->comm);
    free(b->leader_rank);
    free(b->netids);
    free(b->names_buf);
    free(b->unknown_buf);
    free(b->partner_names);
    free(b->names);
    free(b);
}

int pb_mpi_init(int *argc, char ***argv, char *err, size_t errlen)
{
    /* FUNNELED: long local steps (a flush, a reservation) run in a worker
     * thread while this one keeps the heartbeat going; only this thread
     * calls MPI. Every MPI provides at least SINGLE, and FUNNELED in
     * practice; the level granted is not checked further since the worker
     * makes no MPI call. */
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init_thread failed (error %d): start p2pbcast with mpirun or srun", rc);
        return -1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return 0;
}

void pb_mpi_finalize(void)
{
    MPI_Finalize();
}

void *pb_mpi_world(void)
{
    static MPI_Comm world = MPI_COMM_WORLD;
    return &world;
}

int pb_mpi_world_rank(void)
{
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

const char *pb_mpi_library_version(char *buf, size_t len)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int l = 0;
    if (MPI_Get_library_version(v, &l) != MPI_SUCCESS)
        snprintf(v, sizeof v, "an unknown MPI");
    v[strcspn(v, "\n")] = 0;
    snprintf(buf, len, "%s", v);
    return buf;
}
