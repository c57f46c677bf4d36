/* verbs_poll.c — completion handling of the verbs transport: draining the
 * completion queue into transport events (through verbs_wire.c), reposting
 * receives, async device events, keepalives, and the blocking poll. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

#define CQ_BATCH 32

#define KEEPALIVE_MS 1000 /* a link silent this long gets a PING */

const uint8_t *recv_buf(void *ctx, int li, uint64_t idx)
{
    static const uint8_t zero[PB_VW_CTRL_SIZE];
    struct vt *t = ctx;
    if (idx >= t->links[li].rq_depth)
        return zero; /* fails validation: reported as a protocol error */
    return t->links[li].recvbuf + idx * PB_VW_CTRL_SIZE;
}

static void repost_recv(struct vt *t, int li, uint64_t idx)
{
    struct vlink *L = &t->links[li];
    struct ibv_sge sge = {.addr = (uintptr_t)(L->recvbuf + idx * PB_VW_CTRL_SIZE), .length = PB_VW_CTRL_SIZE,
                          .lkey = rail_of(t, li)->ctrl_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_RECV, li, idx), .sg_list = &sge, .num_sge = 1}, *bad;
    int rc = ibv_post_recv(L->qp, &wr, &bad);
    if (rc != 0 && !t->lks[li].dead) {
        char why[160];
        snprintf(why, sizeof why, "reposting a receive failed: %s", strerror(rc));
        link_error(t, li, rc, why);
    }
}

/* One completion through the protocol (verbs_wire.c): 1 when it gave *ev. */
int take_wc(struct vt *t, const struct ibv_wc *wc, double now, struct pb_event *ev)
{
    enum pb_vw_kind k;
    int cl;
    uint64_t low;
    pb_vw_wrid_split(wc->wr_id, &k, &cl, &low);
    if (cl >= 0 && cl < t->nlinks)
        t->links[cl].last_seen = now;
    struct pb_vw_cqe c = {
        .wr_id = wc->wr_id,
        .ok = wc->status == IBV_WC_SUCCESS,
        .status_str = ibv_wc_status_str(wc->status),
        .vendor_err = wc->vendor_err,
        .op = wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM ? PB_VW_OP_RECV_IMM
              : (wc->opcode & IBV_WC_RECV)            ? PB_VW_OP_RECV
                                                      : PB_VW_OP_SEND_DONE,
        .imm = (wc->wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc->imm_data) : 0,
        .byte_len = wc->byte_len,
    };
    int rl;
    int64_t ri;
    int n = pb_vw_handle_cqe(&t->st, &c, ev, &rl, &ri);
    if (n == 1 && ev->kind == PB_EV_ERROR && cl >= 0 && cl < t->nlinks) {
        name_rail(t, cl, ev->what, sizeof ev->what);
        if (peer_already_lost(t, cl))
            n = 0; /* one error per peer, whatever the rails */
    }
    if (rl >= 0)
        repost_recv(t, rl, (uint64_t)ri);
    return n;
}

/* Poll at most max completions, each giving at most one event, from every
 * rail's CQ in turn. */
static int drain_cq(struct vt *t, struct pb_event *ev, int max)
{
    struct ibv_wc wc[CQ_BATCH];
    int n = 0;
    for (int r = 0; r < t->nrails && n < max; r++)
        while (n < max) {
            int want = max - n < CQ_BATCH ? max - n : CQ_BATCH;
            int got = ibv_poll_cq(t->rails[r].cq, want, wc);
            if (got < 0) {
                pend_error(t, -1, EIO, "polling the completion queue failed");
                break;
            }
            double now = got > 0 ? now_ms() : 0;
            for (int i = 0; i < got; i++)
                n += take_wc(t, &wc[i], now, &ev[n]);
            if (got < want)
                break;
        }
    for (int li = 0; li < t->nlinks; li++)
        drain_backlog(t, li);
    return n;
}

static void handle_async(struct vt *t, struct vrail *R)
{
    struct ibv_async_event ae;
    char what[160];
    while (ibv_get_async_event(R->ctx, &ae) == 0) {
        int li = -1;
        switch (ae.event_type) {
        case IBV_EVENT_QP_FATAL:
        case IBV_EVENT_QP_REQ_ERR:
        case IBV_EVENT_QP_ACCESS_ERR:
            for (int i = 0; i < t->nlinks; i++)
                if (t->links[i].qp == ae.element.qp)
                    li = i;
            if (li >= 0 && !t->lks[li].dead) {
                snprintf(what, sizeof what, "queue pair error: %s", ibv_event_type_str(ae.event_type));
                link_error(t, li, EIO, what);
            }
            break;
        case IBV_EVENT_PORT_ERR:
        case IBV_EVENT_DEVICE_FATAL:
        case IBV_EVENT_CQ_ERR:
            snprintf(what, sizeof what, "RDMA device %s port %u: %s", R->devname, R->port,
                     ibv_event_type_str(ae.event_type));
            pend_error(t, -1, EIO, what);
            break;
        default:
            break; /* informational (port active, LID change, ...) */
        }
        ibv_ack_async_event(&ae);
    }
}

static int take_pending(struct vt *t, struct pb_event *ev, int max)
{
    int n = t->npend < max ? t->npend : max;
    memcpy(ev, t->pend, (size_t)n * sizeof *ev);
    memmove(t->pend, t->pend + n, (size_t)(t->npend - n) * sizeof *ev);
    t->npend -= n;
    return n;
}

/* FINDINGS #2: an RC QP with nothing outstanding never learns that its
 * peer died. A link silent for KEEPALIVE_MS gets a signalled PING (at most
 * one a KEEPALIVE_MS); a dead peer then fails it with RETRY_EXC_ERR after
 * timeout x (retry_cnt+1), about half a second, naming the peer. */
static void keepalive(struct vt *t)
{
    double now = now_ms();
    for (int li = 0; li < t->nlinks; li++) {
        struct vlink *L = &t->links[li];
        if (t->lks[li].dead || now - L->last_seen < KEEPALIVE_MS || now - L->last_ping < KEEPALIVE_MS)
            continue;
        L->last_ping = now;
        if (!pb_vw_link_peek(&t->lks[li])) { /* a backlog means sends are stuck: they will fail anyway */
            struct pb_vw_req r = {.kind = PB_VW_REQ_PING};
            (void)submit(t, li, &r);
        }
    }
}

/* Arm every rail's CQ not armed yet: 1 when one was (look again before
 * sleeping), 0 when all were, -1 on failure. */
static int arm_cqs(struct vt *t)
{
    int armed = 0;
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        if (R->cq_armed)
            continue;
        if (ibv_req_notify_cq(R->cq, 0) != 0)
            return -1;
        R->cq_armed = armed = 1;
    }
    return armed;
}

/* Sleep until a rail's completion channel or async fd has something, or
 * wait ms; take what it has. */
static int wait_rails(struct vt *t, int wait)
{
    struct pollfd pf[2 * PB_VERBS_MAX_RAILS];
    for (int r = 0; r < t->nrails; r++) {
        pf[2 * r] = (struct pollfd){.fd = t->rails[r].ch->fd, .events = POLLIN};
        pf[2 * r + 1] = (struct pollfd){.fd = t->rails[r].ctx->async_fd, .events = POLLIN};
    }
    int pr = poll(pf, (nfds_t)(2 * t->nrails), wait);
    if (pr < 0)
        return errno == EINTR ? 0 : -1;
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        if (pf[2 * r + 1].revents)
            handle_async(t, R);
        struct ibv_cq *ecq;
        void *ectx;
        if (pf[2 * r].revents && ibv_get_cq_event(R->ch, &ecq, &ectx) == 0) {
            ibv_ack_cq_events(ecq, 1);
            R->cq_armed = 0;
        }
    }
    return 0;
}

int v_poll(struct pb_transport *bt, struct pb_event *ev, int max, int timeout_ms)
{
    struct vt *t = (struct vt *)bt;
    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    double deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
    for (;;) {
        keepalive(t);
        int n = take_pending(t, ev, max);
        n += drain_cq(t, ev + n, max - n);
        n += take_pending(t, ev + n, max - n);
        if (n > 0 || timeout_ms == 0)
            return n;
        int armed = arm_cqs(t);
        if (armed < 0) {
            errno = EIO;
            return -1;
        }
        if (armed > 0)
            continue; /* look once more: a completion may have slipped in before the arming */
        int wait = KEEPALIVE_MS / 4; /* wake up for the keepalives */
        if (timeout_ms > 0) {
            double left = deadline - now_ms();
            if (left <= 0)
                return 0;
            if (left + 1 < wait)
                wait = (int)left + 1;
        }
        if (wait_rails(t, wait) < 0)
            return -1;
    }
}

#endif /* HAVE_VERBS */
