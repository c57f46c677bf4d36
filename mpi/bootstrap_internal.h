/* bootstrap_internal.h — what the two files of the bootstrap share: the
 * bootstrap object (struct pb_boot), what a leader tells about itself
 * (struct leader_id), and the functions one file calls in the other.
 * Private to mpi/bootstrap*.c: bootstrap.c waits, beats and exchanges,
 * bootstrap_open.c starts up (nodes, leaders, names). */
#ifndef P2PBCAST_BOOTSTRAP_INTERNAL_H
#define P2PBCAST_BOOTSTRAP_INTERNAL_H

#include <mpi.h>

#include "bootstrap.h"

#define HOSTLEN 72 /* HOST_NAME_MAX (64) + NUL, rounded up */
#define NAMELEN 104
#define UNKNOWNLEN 24 /* "node 2147483647" */

struct pb_boot {
    MPI_Comm job;      /* the caller's communicator (to end the job at start-up) */
    MPI_Comm comm;     /* dup of the caller's communicator */
    MPI_Comm leaders;  /* leaders only, MPI_COMM_NULL elsewhere */
    struct pb_boot_info info;
    char host[HOSTLEN];
    char *names_buf;      /* NAMELEN per leader we know: all on the root, else
                           * ourselves, the root, then our partners */
    char *partner_names;  /* NAMELEN per partner (pb_boot_meet_partners) */
    char *unknown_buf;    /* "node I" for the leaders we do not know */
    const char **names;
    int *leader_rank;
    uint64_t *netids;
    double xchg_timeout;  /* deadline of the transports' exchange; 0: none */
    double start_timeout; /* deadline of each start-up collective; 0: none */
    double *heard;        /* leaders: when each leader was last heard of (TAG_ALIVE) */
    double *suspect;      /* root: deadline of each leader whose link failed, 0 if none */
    void (*on_abort)(void *ctx);
    void *on_abort_ctx;
    /* Requests a timeout or a signal left behind, with the buffers MPI may
     * still write: kept until close, never freed under MPI's feet. */
    struct orphan {
        MPI_Request *reqs;
        int n;
        void *buf;
    } *orphans;
    int norphans;
};

/* What a leader tells the root (all of them) and its partners about itself. */
struct leader_id {
    int32_t rank;
    uint32_t pad;
    uint64_t netid;
    char host[HOSTLEN];
};

#define TAG_IDENTITY 7305

/* bootstrap.c: wait for requests without spinning (see there). */
int wait_live(struct pb_boot *b, int n, MPI_Request *req, double timeout, int per_leader);

/* bootstrap_open.c: record what we know of one leader. */
void know_leader(struct pb_boot *b, int i, const struct leader_id *id, char *name);

#endif /* P2PBCAST_BOOTSTRAP_INTERNAL_H */
