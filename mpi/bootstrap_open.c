/* bootstrap_open.c — MPI start-up: the job split into nodes and their
 * leaders, each machine's identity, the leaders' names and the root's
 * tables, and the vote that opens the bootstrap everywhere or nowhere. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bootstrap_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Start-up: nothing can be agreed on before the bootstrap is up, so a
 * collective of it that fails or misses its deadline ends the job, with
 * status 1 (timeout, interrupted) or 6 (MPI failure). rc as wait_live's. */
static void start_fail(struct pb_boot *b, const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING] = "";
    int l = 0;
    if (rc > 0)
        MPI_Error_string(rc, s, &l);
    fprintf(stderr, "p2pbcast: error: %s (rank %d): start-up: %s: %s; aborting the job\n", b->host, b->info.rank,
            what, rc == -1 ? "not every rank took part within the deadline" : rc == -2 ? "interrupted" : s);
    fflush(stderr);
    MPI_Abort(b->job, rc == -1 || rc == -2 ? 1 : 6);
}

/* Wait for a start-up collective with the liveness rules of every wait and
 * the start-up deadline; returns only when it completed. */
static void start_wait(struct pb_boot *b, MPI_Request *req, int n, const char *what)
{
    int rc = wait_live(b, n, req, b->start_timeout, 0);
    if (rc != MPI_SUCCESS)
        start_fail(b, what, rc);
}

/* Start a non-blocking collective, or end the job when MPI refuses. */
static void start_posted(struct pb_boot *b, int rc, const char *what)
{
    if (rc != MPI_SUCCESS)
        start_fail(b, what, rc);
}
static void mpi_err(int rc, const char *what, char *err, size_t errlen)
{
    char s[MPI_MAX_ERROR_STRING];
    int l = 0;
    MPI_Error_string(rc, s, &l);
    snprintf(err, errlen, "%s: %s", what, s);
}

/* One leader per node: ranks that share memory form a node; the root leads
 * its own node so SOURCE is read where it was asked to be. Testing only
 * (P2PBCAST_TEST_RANKS_PER_NODE=K): nodes of K consecutive ranks, as if
 * they were on different machines. */
static int split_nodes(struct pb_boot *b, int per_rank, char *err, size_t errlen)
{
    struct pb_boot_info *in = &b->info;
    MPI_Comm node;
    int rc;
    const char *k = getenv("P2PBCAST_TEST_RANKS_PER_NODE");
    int test_k = k && !per_rank ? atoi(k) : 0;
    if (per_rank)
        rc = MPI_Comm_split(b->comm, in->rank, 0, &node);
    else if (test_k > 0)
        rc = MPI_Comm_split(b->comm, in->rank / test_k, in->rank == in->root ? -1 : in->rank, &node);
    else
        rc = MPI_Comm_split_type(b->comm, MPI_COMM_TYPE_SHARED, in->rank == in->root ? -1 : in->rank,
                                 MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        mpi_err(rc, "splitting the job into nodes", err, errlen);
        return -1;
    }
    int nrank, nsize;
    MPI_Comm_rank(node, &nrank);
    MPI_Comm_size(node, &nsize);
    MPI_Comm_free(&node);
    in->is_leader = nrank == 0;
    int count = in->is_leader;
    MPI_Request r[2];
    start_posted(b, MPI_Iallreduce(&nsize, &in->max_ranks_per_node, 1, MPI_INT, MPI_MAX, b->comm, &r[0]),
                 "counting the nodes");
    start_posted(b, MPI_Iallreduce(MPI_IN_PLACE, &count, 1, MPI_INT, MPI_SUM, b->comm, &r[1]), "counting the nodes");
    start_wait(b, r, 2, "counting the nodes");
    in->nleaders = count;
    /* blocking: MPI has no non-blocking split; every rank is here by now */
    rc = MPI_Comm_split(b->comm, in->is_leader ? 0 : MPI_UNDEFINED, in->rank, &b->leaders);
    if (rc != MPI_SUCCESS) {
        mpi_err(rc, "forming the node-leader communicator", err, errlen);
        return -1;
    }
    in->leader = -1;
    return 0;
}

/* Which machine and network namespace this process is in: two leaders
 * with the same id can reach each other on loopback. Hostnames do not tell
 * (containers on different machines often share one). */
static uint64_t net_identity(const char *host)
{
    char id[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(id, sizeof id, f))
            id[0] = 0;
        fclose(f);
    }
    struct stat ns;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = id; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    if (stat("/proc/self/ns/net", &ns) == 0)
        h = (h ^ (uint64_t)ns.st_ino) * 1099511628211ull;
    if (!id[0]) /* no boot id: fall back on the host name */
        for (const char *c = host; *c; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
    return h;
}

/* Record what we know of one leader: its rank, network identity and
 * "host (rank N)" for messages. */
void know_leader(struct pb_boot *b, int i, const struct leader_id *id, char *name)
{
    b->leader_rank[i] = id->rank;
    b->netids[i] = id->netid;
    snprintf(name, NAMELEN, "%.*s (rank %d)", HOSTLEN - 1, id->host, (int)id->rank);
    b->names[i] = name;
}

/* Leaders we know nothing of yet (not the root, not a partner) are named
 * by their index: "node 17". */
static int name_unknown_leaders(struct pb_boot *b, size_t n)
{
    b->unknown_buf = malloc(n * UNKNOWNLEN);
    if (!b->unknown_buf)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *s = b->unknown_buf + i * UNKNOWNLEN;
        snprintf(s, UNKNOWNLEN, "node %d", (int)i);
        b->names[i] = s;
        b->leader_rank[i] = -1;
        b->netids[i] = 0;
    }
    return 0;
}

/* Testing only: P2PBCAST_TEST_FAIL_BOOT_ALLOC_RANK=R makes the node tables'
 * allocation fail on rank R, as if memory had run out there. */
static int tables_fail_here(const struct pb_boot *b)
{
    const char *v = getenv("P2PBCAST_TEST_FAIL_BOOT_ALLOC_RANK");
    char *end;
    long r = v && *v ? strtol(v, &end, 10) : -1;
    return v && *v && !*end && r == b->info.rank;
}

static int alloc_leader_tables(struct pb_boot *b, size_t n, size_t nnames)
{
    b->leader_rank = malloc(n * sizeof *b->leader_rank);
    b->netids = malloc(n * sizeof *b->netids);
    b->names = malloc(n * sizeof *b->names);
    b->names_buf = malloc(nnames * NAMELEN);
    return b->leader_rank && b->netids && b->names && b->names_buf &&
                   name_unknown_leaders(b, n) == 0
               ? 0
               : -1;
}

/* Leaders: the root's leader index and whether every leader shares one
 * machine and network namespace (loopback reaches them all): O(log N). */
static void find_root_and_machines(struct pb_boot *b, uint64_t netid)
{
    struct pb_boot_info *in = &b->info;
    int me = in->rank == in->root ? in->leader : -1;
    uint64_t span[2] = { netid, ~netid }; /* min of both: lowest id, ~highest id */
    MPI_Request r[2];
    start_posted(b, MPI_Iallreduce(&me, &in->root_leader, 1, MPI_INT, MPI_MAX, b->leaders, &r[0]),
                 "finding the root's node");
    start_posted(b, MPI_Iallreduce(MPI_IN_PLACE, span, 2, MPI_UINT64_T, MPI_MIN, b->leaders, &r[1]),
                 "finding the root's node");
    start_wait(b, r, 2, "finding the root's node");
    in->all_local = span[0] == ~span[1];
}

/* Leaders: every identity to the root, straight (a tree-shaped MPI_Gather
 * would pass up to N/2 of them through one leader). A root without `all`
 * (out of memory) receives nothing: the identities are small enough to be
 * sent eagerly, and the start-up vote then stops everyone. -1 when the
 * root could not take them. */
static int gather_ids(struct pb_boot *b, const struct leader_id *me, struct leader_id *all)
{
    const struct pb_boot_info *in = &b->info;
    if (in->leader != in->root_leader) {
        MPI_Request r;
        start_posted(b, MPI_Isend(me, (int)sizeof *me, MPI_BYTE, in->root_leader, TAG_IDENTITY, b->leaders, &r),
                     "sending this node's identity to the root");
        start_wait(b, &r, 1, "sending this node's identity to the root");
        return 0;
    }
    MPI_Request *r = all ? malloc((size_t)in->nleaders * sizeof *r) : NULL;
    if (!r)
        return -1;
    for (int i = 0; i < in->nleaders; i++)
        r[i] = MPI_REQUEST_NULL;
    all[in->leader] = *me;
    for (int i = 0; i < in->nleaders; i++)
        if (i != in->leader)
            start_posted(b, MPI_Irecv(&all[i], (int)sizeof *all, MPI_BYTE, i, TAG_IDENTITY, b->leaders, &r[i]),
                         "gathering the node names");
    int rc = wait_live(b, in->nleaders, r, b->start_timeout, 0);
    if (rc == -1) {
        int missing = 0, first = -1;
        for (int i = 0; i < in->nleaders; i++)
            if (r[i] != MPI_REQUEST_NULL && missing++ == 0)
                first = i;
        char what[160];
        snprintf(what, sizeof what, "no identity from %d of %d nodes (the first: node %d)", missing, in->nleaders,
                 first);
        start_fail(b, what, rc);
    } else if (rc != MPI_SUCCESS) {
        start_fail(b, "gathering the node names", rc);
    }
    free(r);
    return 0;
}

/* Leaders: the root learns every leader's identity (a gather, O(N) at the
 * root only); every leader learns the root's (a broadcast) and its own. The
 * partners' come later, from pb_boot_meet_partners: nothing here is O(N)
 * per leader in bytes sent or received. */
static int name_leaders(struct pb_boot *b, char *err, size_t errlen)
{
    struct pb_boot_info *in = &b->info;
    MPI_Comm_set_errhandler(b->leaders, MPI_ERRORS_RETURN);
    MPI_Comm_rank(b->leaders, &in->leader);
    size_t n = (size_t)in->nleaders;
    struct leader_id me = { .rank = in->rank, .netid = net_identity(b->host) }, root_id;
    memcpy(me.host, b->host, HOSTLEN);
    find_root_and_machines(b, me.netid);
    int root = in->leader == in->root_leader;
    /* A leader short of memory still takes part in every collective below,
     * so that nobody waits for it; the start-up vote then stops everyone. */
    struct leader_id *all = root ? malloc(n * sizeof *all) : NULL;
    int ok = !tables_fail_here(b) && alloc_leader_tables(b, n, root ? n : 2) == 0 && (!root || all);
    if (gather_ids(b, &me, ok ? all : NULL) < 0)
        ok = 0;
    root_id = me;
    MPI_Request r;
    start_posted(b, MPI_Ibcast(&root_id, (int)sizeof root_id, MPI_BYTE, in->root_leader, b->leaders, &r),
                 "learning the root's name");
    start_wait(b, &r, 1, "learning the root's name");
    if (ok && root) {
        for (size_t i = 0; i < n; i++)
            know_leader(b, (int)i, &all[i], b->names_buf + i * NAMELEN);
    } else if (ok) {
        know_leader(b, in->leader, &me, b->names_buf);
        know_leader(b, in->root_leader, &root_id, b->names_buf + NAMELEN);
    }
    free(all);
    if (ok) {
        in->names = b->names;
        in->leader_rank = b->leader_rank;
        in->netids = b->netids;
        b->heard = calloc(n, sizeof *b->heard);
        if (root)
            b->suspect = calloc(n, sizeof *b->suspect);
        ok = b->heard && (!root || b->suspect);
    }
    if (!ok)
        snprintf(err, errlen, "out of memory for the tables of %zu nodes: %s", n, strerror(ENOMEM));
    return ok ? 0 : -1;
}

/* Every rank says whether its part of the start-up went well, and all
 * learn the lowest rank that failed: then every rank returns -1, the one
 * that failed after saying why on stderr, the others with err naming it. */
static int start_vote(struct pb_boot *b, int ok, char *err, size_t errlen)
{
    int mine[2] = { ok ? 1 : 0, b->info.rank }, all[2] = { 0, 0 };
    MPI_Request r;
    start_posted(b, MPI_Iallreduce(mine, all, 1, MPI_2INT, MPI_MINLOC, b->comm, &r), "the start-up vote");
    start_wait(b, &r, 1, "the start-up vote");
    if (all[0])
        return 0;
    if (ok)
        snprintf(err, errlen, "start-up failed on rank %d (see its message)", all[1]);
    else
        fprintf(stderr, "p2pbcast: error: %s (rank %d): %s\n", b->host, b->info.rank, err);
    return -1;
}

int pb_boot_open(const void *commp, int root, int per_rank, double timeout, struct pb_boot **out, char *err,
                 size_t errlen)
{
    MPI_Comm comm = *(const MPI_Comm *)commp;
    struct pb_boot *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct pb_boot_info *in = &b->info;
    b->job = comm;
    b->leaders = MPI_COMM_NULL;
    b->start_timeout = timeout > 0 ? 2 * timeout + 10 : 0; /* as the exchanges: start-up skew */
    MPI_Comm_rank(comm, &in->rank);
    MPI_Comm_size(comm, &in->size);
    if (gethostname(b->host, sizeof b->host) < 0)
        snprintf(b->host, sizeof b->host, "unknown");
    b->host[HOSTLEN - 1] = 0;
    in->host = b->host;
    in->root = root;
    MPI_Request r;
    int rc = MPI_Comm_idup(comm, &b->comm, &r);
    if (rc != MPI_SUCCESS) {
        mpi_err(rc, "MPI_Comm_idup", err, errlen);
        free(b);
        return -1;
    }
    start_wait(b, &r, 1, "duplicating the communicator");
    MPI_Comm_set_errhandler(b->comm, MPI_ERRORS_RETURN);
    if (root < 0 || root >= in->size) {
        snprintf(err, errlen, "--root %d is out of range: this job has ranks 0 to %d", root, in->size - 1);
        pb_boot_close(b);
        return -1;
    }
    int ok = split_nodes(b, per_rank, err, errlen) == 0 && (!in->is_leader || name_leaders(b, err, errlen) == 0);
    if (start_vote(b, ok, err, errlen) < 0) {
        pb_boot_close(b);
        return -1;
    }
    *out = b;
    return 0;
}
