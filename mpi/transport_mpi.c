/* transport_mpi.c — the transport interface over MPI point-to-point.
 *
 * For fabrics MPI drives well (UCX, OFI) where raw verbs does not reach.
 *
 * Wire protocol, on a private duplicate of the leaders' communicator:
 *   tag 1              control message (struct ctrl: credit or notify)
 *   tag 2 + 2*slot     chunk header for `slot` (struct hdr: slot, tag, len)
 *   tag 3 + 2*slot     chunk bytes for `slot`, contiguous MPI_BYTE
 * A put is two messages: a 16-byte header and the payload. The payload stays
 * a plain contiguous buffer so MPI keeps its zero/single-copy paths (CMA,
 * UCX rendezvous); folding the header in with a derived datatype would push
 * many MPIs onto pack/unpack. The 32-bit chunk tag travels in the header
 * because MPI_TAG_UB may be as small as 32767.
 *
 * Matching: grant(peer, slot) pre-posts the header receive from that one
 * peer on the slot's header tag. A slot is granted to one peer at a time and
 * the peer puts once per grant, so each message has exactly one receive it
 * can match, whatever order the peer fills its slots in; only the granted
 * peer can match, so MPI checks the source. When the header is in and sane
 * (magic, slot, len <= slot_size) the payload is matched with MPI_Improbe,
 * its size compared with the header, and only then received (MPI_Imrecv)
 * straight into the slot. Not pre-posting the payload costs one poll round
 * trip per chunk, hidden by the pipeline; it is needed because Open MPI 4.1
 * writes a truncated rendezvous message past the end of the receive buffer
 * (measured with ob1 over tcp and vader), so a receive sized to the slot
 * would not protect the next slot from an oversized put.
 *
 * Control: one receive per peer on the control tag, reposted after each
 * message. With a single posted receive per peer, MPI's non-overtaking rule
 * hands us that peer's control messages in send order. A notify carries the
 * number of puts its sender had issued to us; it is held back (and with it
 * that peer's later control messages) until that many of its chunks have
 * arrived, so "done" never overtakes the data, as on a TCP stream or an RC QP.
 *
 * Polling: Open MPI (ob1) and MPICH without async progress move the bytes
 * of a large message only inside MPI calls, and their blocking waits spin.
 * poll() therefore runs MPI_Testsome over every outstanding request and,
 * while any chunk is in flight (a payload sent or received, or a header in
 * whose payload is still to be matched), keeps testing, yielding the CPU
 * with sched_yield() between passes: the data moves at the pace of the link,
 * not of a timer. Only when no chunk is in flight does it sleep, with an
 * exponential backoff (POLL_MIN_US doubling up to a cap) until the timeout:
 * short (POLL_BUSY_CAP_US) while chunks have recently completed, so the
 * next header is seen soon, and after POLL_IDLE_MS without any completion
 * up to POLL_IDLE_CAP_US so an idle rank costs almost nothing on a shared
 * node.
 *
 * All calls into one transport must come from one thread at a time (MPI
 * initialised at least MPI_THREAD_SERIALIZED if that thread is not the main
 * one). Nodes are assumed to share byte order (headers travel as MPI_BYTE).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

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

static const struct pb_transport_ops mpi_ops;

static struct op *op_at(struct mpi_transport *t, int i)
{
    return &t->blocks[i / OPS_PER_BLOCK][i % OPS_PER_BLOCK];
}

static const char *peer_name(const struct mpi_transport *t, int peer)
{
    if (t->names && peer >= 0 && peer < t->nleaders && t->names[peer])
        return t->names[peer];
    return "?";
}

static void mpi_errstr(int code, char *buf, size_t len)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, s, &n) != MPI_SUCCESS || n <= 0)
        snprintf(s, sizeof s, "MPI error %d", code);
    snprintf(buf, len, "%s", s);
}

/* Grow the table by one block. */
static int table_grow(struct mpi_transport *t)
{
    int ncap = t->cap + OPS_PER_BLOCK;
    struct op **nb = realloc(t->blocks, (size_t)(t->nblocks + 1) * sizeof *nb);
    if (!nb)
        return -1;
    t->blocks = nb;
    struct op *blk = calloc(OPS_PER_BLOCK, sizeof *blk);
    if (!blk)
        return -1;
    MPI_Request *nr = realloc(t->reqs, (size_t)ncap * sizeof *nr);
    if (!nr) {
        free(blk);
        return -1;
    }
    t->reqs = nr;
    int *nf = realloc(t->freelist, (size_t)ncap * sizeof *nf);
    if (!nf) {
        free(blk);
        return -1;
    }
    t->freelist = nf;
    for (int i = t->cap; i < ncap; i++)
        t->reqs[i] = MPI_REQUEST_NULL;
    t->blocks[t->nblocks++] = blk;
    t->cap = ncap;
    return 0;
}

/* Reserve a table entry; the caller fills the op and posts into reqs[i]. */
static int op_alloc(struct mpi_transport *t, enum op_kind kind, int peer, uint32_t slot)
{
    int i;
    if (t->nfree > 0) {
        i = t->freelist[--t->nfree];
    } else {
        if (t->hi == t->cap && table_grow(t) != 0) {
            errno = ENOMEM;
            return -1;
        }
        i = t->hi++;
    }
    struct op *o = op_at(t, i);
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->peer = peer;
    o->slot = slot;
    t->reqs[i] = MPI_REQUEST_NULL;
    return i;
}

static void op_release(struct mpi_transport *t, int i)
{
    op_at(t, i)->kind = OP_FREE;
    t->reqs[i] = MPI_REQUEST_NULL;
    t->freelist[t->nfree++] = i;
}

/* Make room for n more queued events. */
static int q_reserve(struct mpi_transport *t, int n)
{
    if (t->qhead > 0 && t->qhead + t->qlen + n > t->qcap) {
        memmove(t->q, t->q + t->qhead, (size_t)t->qlen * sizeof *t->q);
        t->qhead = 0;
    }
    if (t->qlen + n <= t->qcap)
        return 0;
    int ncap = t->qcap ? t->qcap : 64;
    while (ncap < t->qlen + n)
        ncap *= 2;
    struct pb_event *nq = realloc(t->q, (size_t)ncap * sizeof *nq);
    if (!nq)
        return -1;
    t->q = nq;
    t->qcap = ncap;
    return 0;
}

/* Space was reserved by q_reserve() before anything could complete. */
static struct pb_event *q_push(struct mpi_transport *t, enum pb_ev_kind kind, int peer)
{
    struct pb_event *e = &t->q[t->qhead + t->qlen++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->peer = peer;
    return e;
}

static void q_error(struct mpi_transport *t, int peer, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void q_error(struct mpi_transport *t, int peer, int err, const char *fmt, ...)
{
    struct pb_event *e = q_push(t, PB_EV_ERROR, peer);
    e->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
    if (t->verbose)
        fprintf(stderr, "p2pbcast: mpi transport: %s: %s\n", peer_name(t, peer), e->what);
}

/* An MPI call failed inside put/grant/notify: report it as an event too, so
 * the engine sees the MPI reason, and fail the call with EIO. */
static int call_failed(struct mpi_transport *t, int peer, int rc, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    mpi_errstr(rc, s, sizeof s);
    if (q_reserve(t, 1) == 0)
        q_error(t, peer, 0, "%s: %s", what, s);
    errno = EIO;
    return -1;
}

static int check_peer(const struct mpi_transport *t, int peer)
{
    if (peer < 0 || peer >= t->nleaders || t->peer_of[peer] < 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int post_ctrl_recv(struct mpi_transport *t, struct peer *p)
{
    int i = op_alloc(t, OP_RX_CTRL, p->leader, 0);
    if (i < 0)
        return -1;
    struct op *o = op_at(t, i);
    int rc = MPI_Irecv(&o->buf.c, (int)sizeof o->buf.c, MPI_BYTE, p->leader, TAG_CTRL,
                       t->comm, &t->reqs[i]);
    if (rc != MPI_SUCCESS) {
        op_release(t, i);
        return rc;
    }
    p->ctrl_idx = i;
    return 0;
}

static int send_ctrl(struct mpi_transport *t, int peer, uint32_t kind, uint32_t value)
{
    if (check_peer(t, peer) != 0)
        return -1;
    struct peer *p = &t->peers[t->peer_of[peer]];
    int i = op_alloc(t, OP_TX_CTRL, peer, 0);
    if (i < 0)
        return -1;
    struct op *o = op_at(t, i);
    o->buf.c = (struct ctrl){CTRL_MAGIC, kind, value, p->puts_sent};
    int rc = MPI_Isend(&o->buf.c, (int)sizeof o->buf.c, MPI_BYTE, peer, TAG_CTRL, t->comm,
                       &t->reqs[i]);
    if (rc != MPI_SUCCESS) {
        op_release(t, i);
        return call_failed(t, peer, rc, kind == CTRL_CREDIT ? "MPI send of a credit"
                                                            : "MPI send of a notify");
    }
    return 0;
}

static int mpi_put(struct pb_transport *bt, int peer, uint32_t slot, uint32_t tag,
                   const void *buf, uint32_t len, uint64_t cookie)
{
    struct mpi_transport *t = (struct mpi_transport *)bt;
    /* Slots are of one size on every leader, so our own limits apply. */
    if (check_peer(t, peer) != 0 || slot >= t->nslots || len > t->slot_size ||
        (len > 0 && !buf)) {
        errno = EINVAL;
        return -1;
    }
    int hi = op_alloc(t, OP_TX_HDR, peer, slot);
    if (hi < 0)
        return -1;
    int di = op_alloc(t, OP_TX_DATA, peer, slot);
    if (di < 0) {
        op_release(t, hi);
        return -1;
    }
    struct op *ho = op_at(t, hi), *dop = op_at(t, di);
    dop->cookie = cookie;
    ho->buf.h = (struct hdr){HDR_MAGIC, slot, tag, len};
    int rc = MPI_Isend(&ho->buf.h, (int)sizeof ho->buf.h, MPI_BYTE, peer, TAG_HDR(slot),
                       t->comm, &t->reqs[hi]);
    if (rc != MPI_SUCCESS) {
        op_release(t, di);
        op_release(t, hi);
        return call_failed(t, peer, rc, "MPI send of a chunk header");
    }
    rc = MPI_Isend(buf, (int)len, MPI_BYTE, peer, TAG_DATA(slot), t->comm, &t->reqs[di]);
    if (rc != MPI_SUCCESS) {
        /* The header is out; the peer will wait for the payload until the
         * engine gives up on the error we report. Leave the header send to
         * complete in poll/close. */
        op_release(t, di);
        return call_failed(t, peer, rc, "MPI send of a chunk");
    }
    t->peers[t->peer_of[peer]].puts_sent++;
    return 0;
}

static int mpi_grant(struct pb_transport *bt, int peer, uint32_t slot)
{
    struct mpi_transport *t = (struct mpi_transport *)bt;
    if (check_peer(t, peer) != 0 || slot >= t->nslots) {
        errno = EINVAL;
        return -1;
    }
    struct rslot *r = &t->rs[slot];
    if (r->state != RS_FREE) {
        errno = EBUSY; /* the engine must not grant a slot twice */
        return -1;
    }
    int hi = op_alloc(t, OP_RX_HDR, peer, slot);
    if (hi < 0)
        return -1;
    /* Reserve the payload's entry now so matching it later cannot fail for
     * memory; its request stays MPI_REQUEST_NULL until then. */
    int di = op_alloc(t, OP_RX_DATA, peer, slot);
    if (di < 0) {
        op_release(t, hi);
        return -1;
    }
    struct op *ho = op_at(t, hi);
    int rc = MPI_Irecv(&ho->buf.h, (int)sizeof ho->buf.h, MPI_BYTE, peer, TAG_HDR(slot),
                       t->comm, &t->reqs[hi]);
    if (rc != MPI_SUCCESS) {
        op_release(t, di);
        op_release(t, hi);
        return call_failed(t, peer, rc, "MPI receive for a chunk header");
    }
    *r = (struct rslot){.state = RS_HDR, .peer = peer, .hdr_idx = hi, .data_idx = di};
    if (send_ctrl(t, peer, CTRL_CREDIT, slot) != 0) {
        int e = errno;
        MPI_Cancel(&t->reqs[hi]);
        MPI_Wait(&t->reqs[hi], MPI_STATUS_IGNORE);
        op_release(t, di);
        op_release(t, hi);
        r->state = RS_FREE;
        errno = e;
        return -1;
    }
    return 0;
}

static int mpi_notify(struct pb_transport *bt, int peer, uint32_t code)
{
    return send_ctrl((struct mpi_transport *)bt, peer, CTRL_NOTIFY, code);
}

/* Hand out a held notify once the chunks sent before it have arrived, and
 * resume that peer's control stream. */
static void release_notify(struct mpi_transport *t, struct peer *p)
{
    if (!p->held || (int32_t)(p->arrived - p->held_nputs) < 0)
        return;
    struct pb_event *e = q_push(t, PB_EV_NOTIFY, p->leader);
    e->tag = p->held_code;
    p->held = 0;
    if (!p->dead && !t->closing) {
        int rc = post_ctrl_recv(t, p);
        if (rc != 0) {
            char s[MPI_MAX_ERROR_STRING];
            if (rc > 0)
                mpi_errstr(rc, s, sizeof s);
            else
                snprintf(s, sizeof s, "%s", strerror(errno));
            p->dead = 1;
            q_error(t, p->leader, rc > 0 ? 0 : errno, "MPI receive for control messages: %s", s);
        }
    }
}

/* Give a slot back after its chunk arrived or failed. */
static void slot_free(struct mpi_transport *t, struct rslot *r)
{
    if (r->state == RS_PROBE)
        t->nprobe--;
    if (r->data_idx >= 0 && t->reqs[r->data_idx] == MPI_REQUEST_NULL)
        op_release(t, r->data_idx);
    r->state = RS_FREE;
    r->hdr_idx = r->data_idx = -1;
}

/* A header arrived for `slot`: check it before any payload byte may land. */
static void header_in(struct mpi_transport *t, uint32_t slot, const struct hdr *h, int count)
{
    struct rslot *r = &t->rs[slot];
    r->hdr_idx = -1;
    if (count != (int)sizeof *h || h->magic != HDR_MAGIC || h->slot != slot ||
        h->len > t->slot_size) {
        q_error(t, r->peer, EPROTO,
                "bad chunk header for slot %u (%d bytes, magic %#x, slot %u, len %u; slots hold %zu bytes)",
                slot, count, h->magic, h->slot, h->len, t->slot_size);
        slot_free(t, r);
        return;
    }
    r->h = *h;
    r->state = RS_PROBE;
    t->nprobe++;
}

/* Match payloads of slots whose header is in. A matched probe tells the
 * payload's exact size before it is received: Open MPI 4.1 (ob1) writes a
 * truncated rendezvous message past the end of the receive buffer, so a
 * receive sized to the slot would not bound anything. Returns how many
 * payloads were matched. */
static int probe_payloads(struct mpi_transport *t)
{
    int matched = 0;
    for (uint32_t s = 0; s < t->nslots && t->nprobe > 0; s++) {
        struct rslot *r = &t->rs[s];
        if (r->state != RS_PROBE)
            continue;
        int flag = 0;
        MPI_Message msg = MPI_MESSAGE_NULL;
        MPI_Status st;
        int rc = MPI_Improbe(r->peer, TAG_DATA(s), t->comm, &flag, &msg, &st);
        if (rc != MPI_SUCCESS) {
            char e[MPI_MAX_ERROR_STRING];
            mpi_errstr(rc, e, sizeof e);
            q_error(t, r->peer, 0, "MPI probe for a chunk into slot %u: %s", s, e);
            slot_free(t, r);
            continue;
        }
        if (!flag)
            continue;
        matched++;
        t->nprobe--;
        int count = -1;
        MPI_Get_count(&st, MPI_BYTE, &count);
        struct op *o = op_at(t, r->data_idx);
        if (count < 0 || (uint32_t)count != r->h.len) {
            q_error(t, r->peer, EPROTO, "chunk into slot %u has %d bytes, its header said %u", s,
                    count, r->h.len);
            /* Swallow it into scratch memory so the sender is not left
             * hanging; if even that fails, the message stays matched. */
            o->kind = OP_RX_DISCARD;
            o->scratch = malloc(count > 0 ? (size_t)count : 1);
            if (!o->scratch || MPI_Imrecv(o->scratch, count > 0 ? count : 0, MPI_BYTE, &msg,
                                          &t->reqs[r->data_idx]) != MPI_SUCCESS) {
                free(o->scratch);
                o->scratch = NULL;
                op_release(t, r->data_idx);
            }
            r->state = RS_FREE;
            r->hdr_idx = r->data_idx = -1;
            continue;
        }
        rc = MPI_Imrecv(t->pool + (size_t)s * t->slot_size, count, MPI_BYTE, &msg,
                        &t->reqs[r->data_idx]);
        if (rc != MPI_SUCCESS) {
            char e[MPI_MAX_ERROR_STRING];
            mpi_errstr(rc, e, sizeof e);
            q_error(t, r->peer, 0, "MPI receive of a chunk into slot %u: %s", s, e);
            r->state = RS_DATA; /* so slot_free does not count it twice */
            slot_free(t, r);
            continue;
        }
        r->state = RS_DATA;
    }
    return matched;
}

/* The payload is in the slot: report it. */
static void payload_in(struct mpi_transport *t, uint32_t slot)
{
    struct rslot *r = &t->rs[slot];
    int peer = r->peer;
    struct pb_event *e = q_push(t, PB_EV_ARRIVED, peer);
    e->slot = slot;
    e->tag = r->h.tag;
    e->len = r->h.len;
    r->data_idx = -1; /* already released by the caller */
    slot_free(t, r);
    struct peer *p = &t->peers[t->peer_of[peer]];
    p->arrived++;
    release_notify(t, p);
}

static const char *op_what(enum op_kind k)
{
    switch (k) {
    case OP_RX_HDR: return "MPI receive of a chunk header";
    case OP_RX_DATA: return "MPI receive of a chunk";
    case OP_RX_DISCARD: return "MPI receive of a bad chunk";
    case OP_RX_CTRL: return "MPI receive of a control message";
    case OP_TX_HDR: return "MPI send of a chunk header";
    case OP_TX_DATA: return "MPI send of a chunk";
    case OP_TX_CTRL: return "MPI send of a control message";
    default: return "MPI request";
    }
}

/* One completed request: turn it into events. */
static void on_rx_hdr(struct mpi_transport *t, int i, int errcode, int cancelled, int count, const char *s)
{
    struct op *o = op_at(t, i);
    uint32_t slot = o->slot;
    struct hdr h = o->buf.h;
    struct rslot *r = &t->rs[slot];
    op_release(t, i);
    if (errcode != MPI_SUCCESS) {
        q_error(t, r->peer, 0, "%s for slot %u: %s", op_what(OP_RX_HDR), slot, s);
        r->hdr_idx = -1;
        slot_free(t, r);
    } else if (cancelled) {
        r->hdr_idx = -1; /* only close() cancels */
        slot_free(t, r);
    } else {
        header_in(t, slot, &h, count);
    }
}

static void on_rx_data(struct mpi_transport *t, int i, int errcode, int cancelled, const char *s)
{
    uint32_t slot = op_at(t, i)->slot;
    struct rslot *r = &t->rs[slot];
    op_release(t, i);
    if (errcode != MPI_SUCCESS || cancelled) {
        if (errcode != MPI_SUCCESS)
            q_error(t, r->peer, 0, "%s into slot %u: %s", op_what(OP_RX_DATA), slot, s);
        r->data_idx = -1;
        slot_free(t, r);
    } else {
        payload_in(t, slot);
    }
}

/* A credit is an event; a notify is held behind the chunks the peer sent
 * before it. Either way the next control receive is posted. */
static void on_ctrl(struct mpi_transport *t, struct peer *p, int peer, const struct ctrl *c)
{
    if (c->kind == CTRL_NOTIFY) {
        /* Hold it (and the peer's later control messages) behind the
         * chunks it sent first; released at once if they are all in. */
        p->held = 1;
        p->held_code = c->value;
        p->held_nputs = c->nputs;
        release_notify(t, p);
        return;
    }
    struct pb_event *e = q_push(t, PB_EV_CREDIT, peer);
    e->slot = c->value;
    if (t->closing)
        return;
    int rc = post_ctrl_recv(t, p);
    if (rc != 0) {
        char s[MPI_MAX_ERROR_STRING];
        p->dead = 1;
        if (rc > 0)
            mpi_errstr(rc, s, sizeof s);
        else
            snprintf(s, sizeof s, "%s", strerror(errno));
        q_error(t, peer, rc > 0 ? 0 : errno, "MPI receive for control messages: %s", s);
    }
}

static void on_rx_ctrl(struct mpi_transport *t, int i, int errcode, int cancelled, int count, const char *s)
{
    struct op *o = op_at(t, i);
    struct peer *p = &t->peers[t->peer_of[o->peer]];
    struct ctrl c = o->buf.c;
    int peer = o->peer;
    p->ctrl_idx = -1;
    op_release(t, i);
    if (cancelled) {
        p->dead = 1;
        return;
    }
    if (errcode != MPI_SUCCESS) {
        p->dead = 1;
        q_error(t, peer, 0, "%s: %s", op_what(OP_RX_CTRL), s);
        return;
    }
    if (count != (int)sizeof c || c.magic != CTRL_MAGIC || (c.kind == CTRL_CREDIT && c.value >= t->nslots) ||
        (c.kind != CTRL_CREDIT && c.kind != CTRL_NOTIFY)) {
        p->dead = 1;
        q_error(t, peer, EPROTO, "bad control message (%d bytes, magic %#x, kind %u, value %u)", count, c.magic,
                c.kind, c.value);
        return;
    }
    on_ctrl(t, p, peer, &c);
}

static void on_tx(struct mpi_transport *t, int i, int errcode, const char *s)
{
    struct op *o = op_at(t, i);
    if (o->kind == OP_TX_DATA && errcode != MPI_SUCCESS) {
        q_error(t, o->peer, 0, "%s to slot %u: %s", op_what(o->kind), o->slot, s);
    } else if (o->kind == OP_TX_DATA) {
        struct pb_event *e = q_push(t, PB_EV_SENT, o->peer);
        e->slot = o->slot;
        e->cookie = o->cookie;
    } else if (errcode != MPI_SUCCESS) {
        q_error(t, o->peer, 0, "%s: %s", op_what(o->kind), s);
    }
    op_release(t, i);
}

/* A request completed (or failed, or was cancelled): hand it to its kind. */
static void handle(struct mpi_transport *t, int i, MPI_Status *st, int errcode)
{
    struct op *o = op_at(t, i);
    int cancelled = 0;
    if (errcode == MPI_SUCCESS)
        MPI_Test_cancelled(st, &cancelled);
    int count = 0;
    if (errcode == MPI_SUCCESS && !cancelled && MPI_Get_count(st, MPI_BYTE, &count) != MPI_SUCCESS)
        count = -1;
    char s[MPI_MAX_ERROR_STRING] = "";
    if (errcode != MPI_SUCCESS)
        mpi_errstr(errcode, s, sizeof s);
    switch (o->kind) {
    case OP_RX_HDR: on_rx_hdr(t, i, errcode, cancelled, count, s); return;
    case OP_RX_DATA: on_rx_data(t, i, errcode, cancelled, s); return;
    case OP_RX_CTRL: on_rx_ctrl(t, i, errcode, cancelled, count, s); return;
    case OP_RX_DISCARD:
        free(o->scratch);
        o->scratch = NULL;
        op_release(t, i);
        return;
    case OP_TX_DATA:
    case OP_TX_HDR:
    case OP_TX_CTRL: on_tx(t, i, errcode, s); return;
    default: op_release(t, i); return;
    }
}

static int done_reserve(struct mpi_transport *t)
{
    if (t->done_cap >= t->hi)
        return 0;
    int *nd = realloc(t->done_idx, (size_t)t->cap * sizeof *nd);
    if (!nd)
        return -1;
    t->done_idx = nd;
    MPI_Status *ns = realloc(t->done_st, (size_t)t->cap * sizeof *ns);
    if (!ns)
        return -1;
    t->done_st = ns;
    t->done_cap = t->cap;
    return 0;
}

/* One MPI_Testsome pass. Returns the number of requests completed, or -1. */
static int progress(struct mpi_transport *t)
{
    if (t->hi == 0)
        return 0;
    /* Each completion yields at most three events (a chunk, the notify it
     * releases, a failure to repost); reserve first so nothing completed
     * can be lost. */
    if (q_reserve(t, 3 * t->hi + 2) != 0 || done_reserve(t) != 0) {
        errno = ENOMEM;
        return -1;
    }
    int outcount = 0;
    int rc = MPI_Testsome(t->hi, t->reqs, &outcount, t->done_idx, t->done_st);
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
        char s[MPI_MAX_ERROR_STRING];
        mpi_errstr(rc, s, sizeof s);
        q_error(t, -1, 0, "MPI_Testsome: %s", s);
        return -1;
    }
    if (outcount == MPI_UNDEFINED || outcount < 0)
        outcount = 0;
    for (int k = 0; k < outcount; k++) {
        int e = rc == MPI_ERR_IN_STATUS ? t->done_st[k].MPI_ERROR : MPI_SUCCESS;
        handle(t, t->done_idx[k], &t->done_st[k], e);
    }
    int n = outcount + (t->nprobe > 0 ? probe_payloads(t) : 0);
    if (n > 0)
        clock_gettime(CLOCK_MONOTONIC, &t->last_activity);
    return n;
}

static int take(struct mpi_transport *t, struct pb_event *ev, int max)
{
    int n = t->qlen < max ? t->qlen : max;
    memcpy(ev, t->q + t->qhead, (size_t)n * sizeof *ev);
    t->qhead += n;
    t->qlen -= n;
    if (t->qlen == 0)
        t->qhead = 0;
    return n;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL); /* EINTR: the caller loops anyway */
}

/* Whether a chunk's bytes may be moving now: a payload send or receive
 * posted, or a header in whose payload is yet to be matched. MPI moves such
 * bytes only while we call it, so poll() must not sleep then. */
static int data_in_flight(struct mpi_transport *t)
{
    if (t->nprobe > 0)
        return 1;
    for (int i = 0; i < t->hi; i++) {
        if (t->reqs[i] == MPI_REQUEST_NULL)
            continue;
        enum op_kind k = op_at(t, i)->kind;
        if (k == OP_TX_DATA || k == OP_RX_DATA || k == OP_RX_DISCARD)
            return 1;
    }
    return 0;
}

/* How long to sleep when nothing is in flight: short after recent
 * completions, longer when the transport has been idle for a while. */
static long idle_cap_us(const struct mpi_transport *t, double now)
{
    double idle = now - ((double)t->last_activity.tv_sec + t->last_activity.tv_nsec * 1e-9);
    return idle * 1000.0 < POLL_IDLE_MS ? POLL_BUSY_CAP_US : POLL_IDLE_CAP_US;
}

static int mpi_poll(struct pb_transport *bt, struct pb_event *ev, int max, int timeout_ms)
{
    struct mpi_transport *t = (struct mpi_transport *)bt;
    if (max <= 0 || !ev) {
        errno = EINVAL;
        return -1;
    }
    double deadline = timeout_ms < 0 ? -1 : pb_now() + timeout_ms / 1000.0;
    long backoff = POLL_MIN_US;
    for (;;) {
        /* Completions repost control receives, which may match at once:
         * test again (a bounded number of times) before waiting. */
        for (int pass = 0; pass < 8 && t->qlen < max; pass++) {
            int n = progress(t);
            if (n < 0 && t->qlen == 0)
                return -1;
            if (n <= 0)
                break;
        }
        if (t->qlen > 0)
            return take(t, ev, max);
        if (timeout_ms == 0)
            return 0;
        double now = pb_now();
        if (deadline >= 0 && now >= deadline)
            return 0;
        if (data_in_flight(t)) {
            sched_yield(); /* busy: our calls are what moves the bytes */
            backoff = POLL_MIN_US;
            continue;
        }
        long cap = idle_cap_us(t, now);
        long us = backoff;
        if (deadline >= 0 && (deadline - now) * 1e6 < (double)us)
            us = (long)((deadline - now) * 1e6) + 1;
        sleep_us(us);
        backoff = backoff * 2 > cap ? cap : backoff * 2;
    }
}

static int mpi_close(struct pb_transport *bt)
{
    struct mpi_transport *t = (struct mpi_transport *)bt;
    if (!t)
        return 0;
    /* Unmatched receives will never be needed again: cancel them. Chunks a
     * peer already started (header matched) are still drained into their
     * slot, so that peer's send completes instead of hanging in its close.
     * Our own sends get a grace period: Open MPI cannot cancel a send
     * reliably, and waiting on one whose receiver has gone would hang. */
    t->closing = 1;
    for (int i = 0; i < t->hi; i++) {
        enum op_kind k = op_at(t, i)->kind;
        if (t->reqs[i] != MPI_REQUEST_NULL && (k == OP_RX_HDR || k == OP_RX_CTRL))
            MPI_Cancel(&t->reqs[i]);
    }
    double deadline = pb_now() + CLOSE_GRACE_MS / 1000.0;
    long backoff = POLL_MIN_US;
    for (;;) {
        int active = t->nprobe > 0;
        for (int i = 0; i < t->hi && !active; i++)
            active = t->reqs[i] != MPI_REQUEST_NULL;
        if (!active)
            break;
        int n = progress(t);
        t->qhead = t->qlen = 0; /* nobody will read these events */
        if (n < 0)
            break;
        if (n > 0)
            continue;
        if (pb_now() >= deadline)
            break;
        sleep_us(backoff);
        backoff = backoff * 2 > POLL_IDLE_CAP_US ? POLL_IDLE_CAP_US : backoff * 2;
    }
    int left = 0, unsafe = 0, pool_in_use = 0;
    for (int i = 0; i < t->hi; i++) {
        if (t->reqs[i] != MPI_REQUEST_NULL) {
            /* Still in flight: let MPI finish or drop it on its own. Its
             * buffer is either ours (scratch, control) or the caller's pool:
             * whichever it is must outlive the request. */
            enum op_kind k = op_at(t, i)->kind;
            if (k == OP_TX_DATA || k == OP_RX_DATA)
                pool_in_use = 1;
            else
                unsafe = 1;
            MPI_Cancel(&t->reqs[i]);
            MPI_Request_free(&t->reqs[i]);
            left++;
        }
    }
    if (left > 0 && t->verbose)
        fprintf(stderr, "p2pbcast: mpi transport: %d requests still in flight at close\n", left);
    MPI_Comm_free(&t->comm);
    /* If a request with a buffer of ours was abandoned, MPI may still touch
     * it: keep those blocks rather than risk a use after free. */
    if (!unsafe) {
        for (int i = 0; i < t->hi; i++)
            free(op_at(t, i)->scratch);
        for (int b = 0; b < t->nblocks; b++)
            free(t->blocks[b]);
    }
    free(t->blocks);
    free(t->reqs);
    free(t->freelist);
    free(t->done_idx);
    free(t->done_st);
    free(t->q);
    free(t->rs);
    free(t->peers);
    free(t->peer_of);
    free(t);
    return pool_in_use;
}

static const struct pb_transport_ops mpi_ops = {
    .name = "mpi",
    .put = mpi_put,
    .grant = mpi_grant,
    .notify = mpi_notify,
    .poll = mpi_poll,
    .close = mpi_close,
};

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
            if (rc > 0)
                mpi_errstr(rc, s, sizeof s);
            else
                snprintf(s, sizeof s, "%s", strerror(errno));
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
