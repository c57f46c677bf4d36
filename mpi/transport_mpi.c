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

#include "transport_mpi_internal.h"

static int check_peer(const struct mpi_transport *t, int peer)
{
    if (peer < 0 || peer >= t->nleaders || t->peer_of[peer] < 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

int post_ctrl_recv(struct mpi_transport *t, struct peer *p)
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
            int e = errno;
            ctrl_recv_errstr(rc, s, sizeof s);
            p->dead = 1;
            q_error(t, p->leader, rc > 0 ? 0 : e, "MPI receive for control messages: %s", s);
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

void sleep_us(long us)
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

int mpi_close(struct pb_transport *bt)
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

const struct pb_transport_ops mpi_ops = {
    .name = "mpi",
    .put = mpi_put,
    .grant = mpi_grant,
    .notify = mpi_notify,
    .poll = mpi_poll,
    .close = mpi_close,
};
