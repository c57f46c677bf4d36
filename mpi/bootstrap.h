/* bootstrap.h — everything the core needs from MPI, and nothing more:
 * who is a node leader, who the root is, the names of the nodes, and a few
 * collectives (broadcast from the root, gather to the root, exchanges with
 * the partners) that never busy-wait: they poll with short sleeps so that idle
 * ranks leave the CPU to the ones moving data. */
#ifndef P2PBCAST_BOOTSTRAP_H
#define P2PBCAST_BOOTSTRAP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct pb_boot;

struct pb_boot_info {
    int rank, size;           /* in the caller's communicator */
    int root;                 /* rank that reads SOURCE */
    int is_leader;            /* this rank receives and writes for its node */
    int leader, nleaders;     /* our leader index (when a leader), count */
    int root_leader;          /* the root's leader index */
    const char *host;         /* our host name */
    /* Leaders only, one entry per leader. Complete on the root; elsewhere
     * known for this leader, the root, and (after pb_boot_meet_partners)
     * the partners; the others are named "node I", rank -1, netid 0. */
    const char *const *names; /* "host (rank N)", for messages */
    const int *leader_rank;   /* rank of each leader */
    const uint64_t *netids;   /* machine + network namespace of each leader;
                               * equal ids reach each other on loopback */
    int all_local;            /* leaders: every leader shares our netid */
    int max_ranks_per_node;
};

/* comm points to an MPI_Comm (kept opaque so src/ needs no mpi.h).
 * Collective. Every collective of the start-up is bounded by a deadline
 * derived from timeout (seconds, as --timeout; <= 0: none) and ends the job
 * when missed; a rank that fails locally (out of memory) still takes part,
 * and then every rank returns -1 (err says why, or names that rank). */
int pb_boot_open(const void *comm, int root, int per_rank, double timeout, struct pb_boot **out, char *err,
                 size_t errlen);
const struct pb_boot_info *pb_boot_info(const struct pb_boot *b);

/* All ranks: the root's len bytes to every rank. timeout in seconds (<= 0:
 * wait as long as it takes). Returns 0, 1 on timeout, 2 when canceled, -1 on
 * MPI failure. */
int pb_boot_bcast(struct pb_boot *b, void *buf, size_t len, double timeout);
/* Leaders only: the same, to every leader (what only the nodes' writers
 * need, such as a directory's manifest). -1 elsewhere. */
int pb_boot_bcast_leaders(struct pb_boot *b, void *buf, size_t len, double timeout);
/* Leaders only: every leader's len bytes to the root, in leader order.
 * Returns 0, -1 on MPI failure, 2 when canceled, 1 on timeout; then, on the root, missing[i]
 * is 1 for each leader not heard from (missing may be NULL elsewhere). */
int pb_boot_gather(struct pb_boot *b, const void *mine, void *all, size_t len, double timeout,
                   unsigned char *missing);
/* Leaders: this node is still working on a long local step (a walk, the
 * staging tree, a flush). A leader tells the root, the root tells every
 * leader: the deadline of a wait for that node counts from its last word.
 * Call it from the thread that makes the MPI calls. */
void pb_boot_alive(struct pb_boot *b);
/* Leaders: this node's link to `leader` failed (it died, or closed after
 * its own failure). The root then waits only a short grace for its vote
 * instead of the whole --timeout, and names it if none comes. */
void pb_boot_suspect(struct pb_boot *b, int leader);
/* Make every wait return 2 as soon as *cancel becomes nonzero. */
void pb_boot_set_cancel(struct pb_boot *b, const volatile sig_atomic_t *cancel);
/* End the whole job now with this exit status (a rank does not answer),
 * after calling the cleanup set with pb_boot_on_abort. */
void pb_boot_abort(struct pb_boot *b, int code);
void pb_boot_on_abort(struct pb_boot *b, void (*fn)(void *ctx), void *ctx);
/* Leaders only: whether every leader's set-up went well (returns 1 if one's
 * did not), then len bytes with each partner (out[i] from peers[i]).
 * Partners must be mutual. O(log N) per leader. 0, 1, 2 canceled, -1. */
int pb_boot_peer_exchange(void *boot, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers);
/* The same, with a message of its own for each partner: mine holds
 * npeers*len bytes, mine + i*len goes to peers[i]. npeers 0: the vote alone. */
int pb_boot_peer_exchange_each(void *boot, int ok, const void *mine, void *out, size_t len, const int *peers,
                               int npeers);
/* Leaders only: wait for n requests (MPI_Request[n]) of a collective over
 * the leaders' communicator (the mpi transport's set-up), with the liveness
 * rules and deadline of the exchanges. 0, 1 timeout (the job is ended), 2
 * canceled, -1 MPI failure; on 1 and 2 the requests may complete later. */
int pb_boot_wait_setup(void *boot, void *reqs, int n);
/* Leaders only: every leader's len bytes to the root, which turns them into
 * dlen (at most 256) bytes with decide(); every leader receives those.
 * 0, or nonzero on every leader when the root did not hear from all. */
int pb_boot_root_decides(void *boot, const void *mine, size_t len, void *out, size_t dlen,
                         void (*decide)(const void *all, int n, void *out, void *arg), void *arg);
/* The exchange's deadline, in seconds (--timeout); 0: wait as long as it takes. */
void pb_boot_set_exchange_timeout(struct pb_boot *b, double seconds);
/* Leaders only: exchange identities with the partners (mutual; the root
 * may be among them and is skipped), so that their names and netids are
 * known. Bounded by the exchange timeout. 0, 2 canceled, -1. */
int pb_boot_meet_partners(struct pb_boot *b, const int *peers, int npeers);
/* Leaders only: pointer to the leaders' MPI_Comm (for the mpi transport). */
void *pb_boot_leader_comm(struct pb_boot *b);
/* Fill buf with random bytes (the per-job secret). */
int pb_boot_random(void *buf, size_t len);
void pb_boot_close(struct pb_boot *b);

/* Process-level helpers for the command (src/main.c). */
int pb_mpi_init(int *argc, char ***argv, char *err, size_t errlen);
void pb_mpi_finalize(void);
void *pb_mpi_world(void);
int pb_mpi_world_rank(void);
/* "Open MPI v4.1.4, ..." (first line), callable before MPI_Init. */
const char *pb_mpi_library_version(char *buf, size_t len);

#endif
