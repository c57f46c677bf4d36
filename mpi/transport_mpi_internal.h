/* transport_mpi_internal.h — what the files of the MPI transport share: the
 * wire constants, the request table entries (struct op), the per slot and
 * per peer state and the transport object (struct mpi_transport), and the
 * functions one file calls in another. Private to mpi/transport_mpi*.c;
 * the protocol is described at the top of transport_mpi.c. */
#ifndef PB_TRANSPORT_MPI_INTERNAL_H
#define PB_TRANSPORT_MPI_INTERNAL_H

#include <mpi.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "transport.h"

#define TAG_CTRL 1
#define TAG_HDR(slot) (2 + 2 * (int)(slot))
#define TAG_DATA(slot) (3 + 2 * (int)(slot))

#define HDR_MAGIC 0x31484250u  /* "PBH1" */
#define CTRL_MAGIC 0x31434250u /* "PBC1" */
#define CTRL_CREDIT 1u
#define CTRL_NOTIFY 2u

/* Backoff of poll() when nothing completes; see the top of the file.
 * Overridable at build time for measurements. */
#ifndef POLL_MIN_US
#define POLL_MIN_US 50
#endif
#ifndef POLL_BUSY_CAP_US
#define POLL_BUSY_CAP_US 200
#endif
#ifndef POLL_IDLE_CAP_US
#define POLL_IDLE_CAP_US 2000
#endif
#ifndef POLL_IDLE_MS
#define POLL_IDLE_MS 20
#endif
#define CLOSE_GRACE_MS 2000 /* how long close() lets in-flight sends finish */
#define OPS_PER_BLOCK 256

struct hdr {
    uint32_t magic, slot, tag, len;
};

struct ctrl {
    uint32_t magic, kind, value, nputs;
};

enum op_kind {
    OP_FREE = 0,
    OP_RX_HDR, OP_RX_DATA, OP_RX_DISCARD, OP_RX_CTRL,
    OP_TX_HDR, OP_TX_DATA, OP_TX_CTRL
};

/* One outstanding request. Lives in blocks that never move, because MPI
 * reads/writes buf until the request completes. */
struct op {
    enum op_kind kind;
    int peer;          /* leader index */
    uint32_t slot;
    uint64_t cookie;
    void *scratch;     /* OP_RX_DISCARD: heap buffer swallowing a bad chunk */
    union {
        struct hdr h;
        struct ctrl c;
    } buf;
};

enum rs_state {
    RS_FREE = 0,
    RS_HDR,   /* granted: header receive posted */
    RS_PROBE, /* header valid: waiting to match the payload with MPI_Improbe */
    RS_DATA   /* payload receive posted into the slot */
};

struct rslot {
    enum rs_state state;
    int peer;
    int hdr_idx, data_idx; /* request table indices; data_idx reserved at grant */
    struct hdr h;
};

struct peer {
    int leader;
    int dead;          /* its control receive failed: stop reposting */
    int ctrl_idx;      /* request index of the posted control receive, or -1 */
    uint32_t puts_sent; /* puts we issued to it */
    uint32_t arrived;   /* chunks from it we reported */
    int held;          /* a notify waiting for its chunks */
    uint32_t held_code, held_nputs;
};

struct mpi_transport {
    struct pb_transport base;
    MPI_Comm comm;
    int self, nleaders;
    char *pool;
    size_t slot_size;
    uint32_t nslots;
    const char *const *names;
    int verbose;
    long tag_ub;       /* MPI_TAG_UB of our communicator */
    int closing;       /* in close(): drain, never repost */

    struct peer *peers;
    int npeers;
    int *peer_of;      /* leader -> index into peers, or -1 */
    struct rslot *rs;  /* nslots */
    int nprobe;        /* slots in RS_PROBE */

    /* Request table: reqs[] contiguous for MPI_Testsome, ops[] in blocks. */
    MPI_Request *reqs;
    struct op **blocks;
    int nblocks;
    int cap, hi;       /* capacity; indices >= hi have never been used */
    int *freelist, nfree;
    /* Scratch for Testsome. Sized at the start of each pass, not by
     * table_grow(), because handling a completion may grow the table. */
    int *done_idx;
    MPI_Status *done_st;
    int done_cap;

    /* Events completed but not yet handed out. */
    struct pb_event *q;
    int qhead, qlen, qcap;

    struct timespec last_activity;
};

/* transport_mpi.c */
int post_ctrl_recv(struct mpi_transport *t, struct peer *p);
void sleep_us(long us);
int mpi_close(struct pb_transport *bt);
extern const struct pb_transport_ops mpi_ops;

/* transport_mpi_requests.c */
struct op *op_at(struct mpi_transport *t, int i);
const char *peer_name(const struct mpi_transport *t, int peer);
void mpi_errstr(int code, char *buf, size_t len);
/* Why post_ctrl_recv failed: rc > 0 an MPI error code, else errno. */
void ctrl_recv_errstr(int rc, char *buf, size_t len);
int op_alloc(struct mpi_transport *t, enum op_kind kind, int peer, uint32_t slot);
void op_release(struct mpi_transport *t, int i);
int q_reserve(struct mpi_transport *t, int n);
struct pb_event *q_push(struct mpi_transport *t, enum pb_ev_kind kind, int peer);
void q_error(struct mpi_transport *t, int peer, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int call_failed(struct mpi_transport *t, int peer, int rc, const char *what);

#endif /* PB_TRANSPORT_MPI_INTERNAL_H */
