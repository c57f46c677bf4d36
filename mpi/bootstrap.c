/* bootstrap.c — MPI start-up, node leaders, names and idle-friendly collectives. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bootstrap.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define HOSTLEN 64
#define NAMELEN 96

struct pb_boot {
    MPI_Comm comm;     /* dup of the caller's communicator */
    MPI_Comm leaders;  /* leaders only, MPI_COMM_NULL elsewhere */
    struct pb_boot_info info;
    char host[HOSTLEN];
    char *names_buf;
    char *hosts_buf;
    const char **names;
    const char **hosts;
    int *leader_rank;
};

/* Wait for requests without spinning: Open MPI's blocking waits poll the
 * network at full speed, which on a small node steals the CPU from the
 * ranks that move the data. Sleep 50 us growing to 2 ms between tests.
 * Returns MPI_SUCCESS, an MPI error, -1 when timeout (> 0) expired, or -2
 * when *cancel became nonzero. */
static const volatile sig_atomic_t *wait_cancel;
static int wait_all_idle(int n, MPI_Request *req, double timeout)
{
    long ns = 50000;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (1) {
        int done = 0;
        /* MPICH's MPI_STATUSES_IGNORE is (MPI_Status *)1: gcc takes it for an empty array. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
        int rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
        if (rc != MPI_SUCCESS)
            return rc;
        if (done)
            return MPI_SUCCESS;
        if (wait_cancel && *wait_cancel)
            return -2;
        if (timeout > 0) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > timeout)
                return -1;
        }
        struct timespec ts = { 0, ns };
        nanosleep(&ts, NULL);
        if (ns < 2000000)
            ns *= 2;
    }
}

static int wait_idle(MPI_Request *req)
{
    return wait_all_idle(1, req, 0);
}

static void mpi_err(int rc, const char *what, char *err, size_t errlen)
{
    char s[MPI_MAX_ERROR_STRING];
    int l = 0;
    MPI_Error_string(rc, s, &l);
    snprintf(err, errlen, "%s: %s", what, s);
}

int pb_boot_open(const void *commp, int root, int per_rank, struct pb_boot **out, char *err, size_t errlen)
{
    MPI_Comm comm = *(const MPI_Comm *)commp;
    struct pb_boot *b = calloc(1, sizeof *b);
    int rc;
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    b->leaders = MPI_COMM_NULL;
    if ((rc = MPI_Comm_dup(comm, &b->comm)) != MPI_SUCCESS) {
        mpi_err(rc, "MPI_Comm_dup", err, errlen);
        free(b);
        return -1;
    }
    MPI_Comm_set_errhandler(b->comm, MPI_ERRORS_RETURN);
    struct pb_boot_info *in = &b->info;
    MPI_Comm_rank(b->comm, &in->rank);
    MPI_Comm_size(b->comm, &in->size);
    if (gethostname(b->host, sizeof b->host) < 0)
        snprintf(b->host, sizeof b->host, "unknown");
    b->host[HOSTLEN - 1] = 0;
    in->host = b->host;
    in->root = root;
    if (root < 0 || root >= in->size) {
        snprintf(err, errlen, "--root %d is out of range: this job has ranks 0 to %d", root, in->size - 1);
        if (in->rank == 0)
            fprintf(stderr, "p2pbcast: error: %s\n", err);
        pb_boot_close(b);
        return -1;
    }

    /* One leader per node: ranks that share memory form a node; the root
     * leads its own node so SOURCE is read where it was asked to be. */
    MPI_Comm node;
    if (per_rank)
        rc = MPI_Comm_split(b->comm, in->rank, 0, &node);
    else
        rc = MPI_Comm_split_type(b->comm, MPI_COMM_TYPE_SHARED, in->rank == root ? -1 : in->rank,
                                 MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        mpi_err(rc, "splitting the job into nodes", err, errlen);
        pb_boot_close(b);
        return -1;
    }
    int nrank, nsize;
    MPI_Comm_rank(node, &nrank);
    MPI_Comm_size(node, &nsize);
    MPI_Comm_free(&node);
    in->is_leader = nrank == 0;
    MPI_Allreduce(&nsize, &in->max_ranks_per_node, 1, MPI_INT, MPI_MAX, b->comm);
    rc = MPI_Comm_split(b->comm, in->is_leader ? 0 : MPI_UNDEFINED, in->rank, &b->leaders);
    if (rc != MPI_SUCCESS) {
        mpi_err(rc, "forming the node-leader communicator", err, errlen);
        pb_boot_close(b);
        return -1;
    }
    int counts[2] = { in->is_leader, 0 };
    MPI_Allreduce(MPI_IN_PLACE, counts, 1, MPI_INT, MPI_SUM, b->comm);
    in->nleaders = counts[0];
    if (in->is_leader) {
        MPI_Comm_set_errhandler(b->leaders, MPI_ERRORS_RETURN);
        MPI_Comm_rank(b->leaders, &in->leader);
        /* Leaders keep rank order, so the root's leader index is found
         * among the gathered ranks. */
        b->leader_rank = malloc((size_t)in->nleaders * sizeof *b->leader_rank);
        b->hosts_buf = malloc((size_t)in->nleaders * HOSTLEN);
        b->names_buf = malloc((size_t)in->nleaders * NAMELEN);
        b->names = malloc((size_t)in->nleaders * sizeof *b->names);
        b->hosts = malloc((size_t)in->nleaders * sizeof *b->hosts);
        if (!b->leader_rank || !b->hosts_buf || !b->names_buf || !b->names || !b->hosts) {
            snprintf(err, errlen, "out of memory");
            pb_boot_close(b);
            return -1;
        }
        MPI_Allgather(&in->rank, 1, MPI_INT, b->leader_rank, 1, MPI_INT, b->leaders);
        MPI_Allgather(b->host, HOSTLEN, MPI_CHAR, b->hosts_buf, HOSTLEN, MPI_CHAR, b->leaders);
        for (int i = 0; i < in->nleaders; i++) {
            b->hosts[i] = b->hosts_buf + (size_t)i * HOSTLEN;
            b->names[i] = b->names_buf + (size_t)i * NAMELEN;
            snprintf(b->names_buf + (size_t)i * NAMELEN, NAMELEN, "%s (rank %d)", b->hosts[i], b->leader_rank[i]);
            if (b->leader_rank[i] == root)
                in->root_leader = i;
        }
        in->names = b->names;
        in->hosts = b->hosts;
        in->leader_rank = b->leader_rank;
    } else {
        in->leader = -1;
    }
    *out = b;
    return 0;
}

const struct pb_boot_info *pb_boot_info(const struct pb_boot *b)
{
    return &b->info;
}

int pb_boot_bcast(struct pb_boot *b, void *buf, size_t len, double timeout)
{
    MPI_Request r;
    int rc = MPI_Ibcast(buf, (int)len, MPI_BYTE, b->info.root, b->comm, &r);
    if (rc == MPI_SUCCESS)
        rc = wait_all_idle(1, &r, timeout);
    return rc == MPI_SUCCESS ? 0 : rc == -1 ? 1 : rc == -2 ? 2 : -1;
}

/* Point to point rather than MPI_Igather, so that the root knows exactly
 * which leaders have not answered when the time is up. */
#define TAG_VOTE 7301
int pb_boot_gather(struct pb_boot *b, const void *mine, void *all, size_t len, double timeout,
                   unsigned char *missing)
{
    const struct pb_boot_info *in = &b->info;
    int rc;
    if (in->leader != in->root_leader) {
        MPI_Request r;
        rc = MPI_Isend(mine, (int)len, MPI_BYTE, in->root_leader, TAG_VOTE, b->leaders, &r);
        if (rc == MPI_SUCCESS)
            rc = wait_all_idle(1, &r, timeout);
        return rc == MPI_SUCCESS ? 0 : rc == -1 ? 1 : rc == -2 ? 2 : -1;
    }
    int n = in->nleaders;
    MPI_Request *req = malloc((size_t)n * sizeof *req);
    if (!req)
        return -1;
    for (int i = 0; i < n; i++) {
        req[i] = MPI_REQUEST_NULL;
        if (i == in->leader)
            memcpy((char *)all + (size_t)i * len, mine, len);
        else if (MPI_Irecv((char *)all + (size_t)i * len, (int)len, MPI_BYTE, i, TAG_VOTE, b->leaders, &req[i]) !=
                 MPI_SUCCESS)
            req[i] = MPI_REQUEST_NULL, rc = -1;
    }
    rc = wait_all_idle(n, req, timeout);
    if (rc == -1) {
        for (int i = 0; i < n; i++) {
            int done = 1;
            if (req[i] != MPI_REQUEST_NULL)
                MPI_Test(&req[i], &done, MPI_STATUS_IGNORE);
            if (missing)
                missing[i] = !done;
            if (!done) {
                MPI_Cancel(&req[i]);
                MPI_Request_free(&req[i]);
            }
        }
    }
    free(req);
    return rc == MPI_SUCCESS ? 0 : rc == -1 ? 1 : rc == -2 ? 2 : -1;
}

void pb_boot_set_cancel(struct pb_boot *b, const volatile sig_atomic_t *cancel)
{
    (void)b; /* the waits are process-wide, like the signal that sets it */
    wait_cancel = cancel;
}

void pb_boot_abort(struct pb_boot *b, int code)
{
    fflush(stderr);
    MPI_Abort(b->comm, code);
}

int pb_boot_allgather(void *boot, const void *mine, void *all, size_t len)
{
    /* Through the root: the votes have already connected every leader to
     * it, and the broadcast tree is the one the decisions use, whereas an
     * allgather would open new pairs (Open MPI connects them lazily, which
     * cost ~0.2 s at 16 hosts on the test bed). */
    struct pb_boot *b = boot;
    int rc = pb_boot_gather(b, mine, all, len, 0, NULL);
    if (rc != 0)
        return rc;
    MPI_Request r;
    rc = MPI_Ibcast(all, (int)(len * (size_t)b->info.nleaders), MPI_BYTE, b->info.root_leader, b->leaders, &r);
    return rc == MPI_SUCCESS ? wait_idle(&r) : rc;
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
    if (b->leaders != MPI_COMM_NULL)
        MPI_Comm_free(&b->leaders);
    MPI_Comm_free(&b->comm);
    free(b->leader_rank);
    free(b->hosts_buf);
    free(b->names_buf);
    free(b->names);
    free(b->hosts);
    free(b);
}

int pb_mpi_init(int *argc, char ***argv, char *err, size_t errlen)
{
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init failed (error %d): start p2pbcast with mpirun or srun", rc);
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
