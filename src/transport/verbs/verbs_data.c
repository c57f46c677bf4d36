/* verbs_data.c — the data path of the verbs transport: posting puts (RDMA
 * WRITE WITH IMMEDIATE into a granted slot), window binds and credits
 * (grants) and notifies, with the send backlog when a queue is full
 * (accounting in verbs_wire.c). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

/* A put: the descriptor (RDMA WRITE) then the data (WRITE WITH IMM), with
 * the rkeys of the peer's latest credit for that slot. */
static int post_put(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    struct pb_vw_link *lk = &t->lks[li];
    struct pb_vw_sq *sq = &lk->sq;
    if (r->slot >= lk->peer_nslots || !lk->rkey_data[r->slot]) {
        snprintf(why, wl, "put into slot %u, which the peer never granted", r->slot);
        errno = EINVAL;
        return -1;
    }
    struct pb_vw_remote rem = L->rem;
    rem.pool_rkey = lk->rkey_data[r->slot];
    rem.desc_rkey = lk->rkey_desc[r->slot];
    struct pb_vw_put_plan p;
    struct pb_vw_local loc = {(uintptr_t)t->pool, t->pool_len};
    if (pb_vw_plan_put(&loc, &rem, r->slot, r->tag, r->buf, r->len, &p, why, wl) != 0) {
        errno = EINVAL;
        return -1;
    }
    int sig0, sig1;
    uint64_t seq0 = pb_vw_sq_take(sq, 0, &sig0), seq1 = pb_vw_sq_take(sq, 1, &sig1);
    uint8_t *m = L->sendbuf + (seq0 % sq->depth) * PB_VW_CTRL_SIZE;
    memcpy(m, p.desc, PB_VW_MSG_SIZE);
    struct ibv_sge sge[2] = {
        {.addr = (uintptr_t)m, .length = PB_VW_MSG_SIZE, .lkey = R->ctrl_mr->lkey},
        {.addr = p.data_laddr, .length = p.len, .lkey = R->pool_mr->lkey},
    };
    struct ibv_send_wr wr[2], *bad = NULL;
    memset(wr, 0, sizeof wr);
    wr[0].wr_id = pb_vw_wrid(PB_VW_K_DESC, li, seq0);
    wr[0].opcode = IBV_WR_RDMA_WRITE;
    wr[0].sg_list = &sge[0];
    wr[0].num_sge = 1;
    wr[0].send_flags = (sig0 ? IBV_SEND_SIGNALED : 0) | (R->max_inline >= PB_VW_MSG_SIZE ? IBV_SEND_INLINE : 0);
    wr[0].wr.rdma.remote_addr = p.desc_raddr;
    wr[0].wr.rdma.rkey = p.desc_rkey;
    wr[0].next = &wr[1];
    wr[1].wr_id = pb_vw_wrid(PB_VW_K_DATA, li, seq1);
    wr[1].opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr[1].sg_list = &sge[1];
    wr[1].num_sge = p.len ? 1 : 0;
    wr[1].send_flags = IBV_SEND_SIGNALED;
    wr[1].imm_data = htonl(p.imm);
    wr[1].wr.rdma.remote_addr = p.data_raddr;
    wr[1].wr.rdma.rkey = p.data_rkey;
    lk->cookies[seq1 % sq->depth] = r->cookie;
    int rc = ibv_post_send(L->qp, wr, &bad);
    if (rc != 0) {
        /* Nothing of this request reached the queue only if the first WR
         * was refused; a half-posted put breaks the link anyway. */
        if (bad == &wr[0]) {
            pb_vw_sq_untake(sq, seq1, sig1);
            pb_vw_sq_untake(sq, seq0, sig0);
        }
        snprintf(why, wl, "posting a chunk write failed: %s", strerror(rc));
        errno = rc;
        return -1;
    }
    R->puts++;
    R->put_bytes += p.len;
    return 0;
}

/* A control message: credit (with the slot's rkeys), notify, hello, ping. */
static int post_ctrl(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    struct pb_vw_sq *sq = &t->lks[li].sq;
    struct pb_vw_ctrl c = {0};
    switch (r->kind) {
    case PB_VW_REQ_CREDIT: c = (struct pb_vw_ctrl){PB_VW_MSG_CREDIT, r->slot, r->tag, r->len, 0}; break;
    case PB_VW_REQ_NOTIFY: c = (struct pb_vw_ctrl){PB_VW_MSG_NOTIFY, r->tag, 0, 0, 0}; break;
    case PB_VW_REQ_HELLO:
        c = (struct pb_vw_ctrl){PB_VW_MSG_HELLO, 0, 0, 0,
                                pb_vw_hello_mac(t->secret, (uint32_t)t->self_leader, (uint32_t)L->leader,
                                                L->qp->qp_num, L->peer_qpn, L->psn, L->peer_psn)};
        break;
    default: c.type = PB_VW_MSG_PING; break;
    }
    int sig;
    /* hello and ping are signalled: a dead peer must surface as an error */
    uint64_t seq = pb_vw_sq_take(sq, r->kind == PB_VW_REQ_HELLO || r->kind == PB_VW_REQ_PING, &sig);
    uint8_t *m = L->sendbuf + (seq % sq->depth) * PB_VW_CTRL_SIZE;
    pb_vw_ctrl_pack(m, &c);
    struct ibv_sge sge = {.addr = (uintptr_t)m, .length = PB_VW_CTRL_SIZE, .lkey = R->ctrl_mr->lkey};
    struct ibv_send_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_CTRL, li, seq), .sg_list = &sge, .num_sge = 1,
                             .opcode = IBV_WR_SEND,
                             .send_flags = (sig ? IBV_SEND_SIGNALED : 0) |
                                           (R->max_inline >= PB_VW_CTRL_SIZE ? IBV_SEND_INLINE : 0)},
                       *bad;
    int rc = ibv_post_send(L->qp, &wr, &bad);
    if (rc != 0) {
        pb_vw_sq_untake(sq, seq, sig);
        snprintf(why, wl, "posting a control message failed: %s", strerror(rc));
        errno = rc;
        return -1;
    }
    return 0;
}

/* Bind n (at most 2) type 2 windows to link li's QP, remote write only,
 * each with the key chosen for it. Unsignalled like a credit; a failed
 * bind completes in error and breaks the link. */
int bind_windows(struct vt *t, int li, const struct window *w, int n, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct pb_vw_sq *sq = &t->lks[li].sq;
    struct ibv_send_wr wr[2], *bad = NULL;
    int sig[2];
    uint64_t seq[2];
    memset(wr, 0, sizeof wr);
    for (int i = 0; i < n && i < 2; i++) {
        seq[i] = pb_vw_sq_take(sq, 0, &sig[i]);
        wr[i].wr_id = pb_vw_wrid(PB_VW_K_CTRL, li, seq[i]);
        wr[i].opcode = IBV_WR_BIND_MW;
        wr[i].send_flags = sig[i] ? IBV_SEND_SIGNALED : 0;
        wr[i].bind_mw.mw = w[i].mw;
        wr[i].bind_mw.rkey = w[i].mw->rkey;
        wr[i].bind_mw.bind_info = (struct ibv_mw_bind_info){.mr = w[i].mr, .addr = (uintptr_t)w[i].addr,
                                                             .length = w[i].len,
                                                             .mw_access_flags = IBV_ACCESS_REMOTE_WRITE};
        wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
    }
    int rc = ibv_post_send(L->qp, wr, &bad);
    if (rc != 0) {
        for (int i = n - 1; i >= 0 && bad == &wr[0]; i--)
            pb_vw_sq_untake(sq, seq[i], sig[i]);
        snprintf(why, wl, "binding a memory window for %s failed: %s", w[0].what, strerror(rc));
        errno = rc;
        return -1;
    }
    return 0;
}

/* Slot r->slot's windows (slot, descriptor entry) bound to this QP. */
static int post_bind(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    if (t->slot_owner[r->slot] != li)
        return 0; /* granted to another peer since: its own bind follows */
    char what[32];
    snprintf(what, sizeof what, "slot %u", r->slot);
    struct vrail *R = rail_of(t, li);
    struct window w[2] = {
        {t->slot_mw[r->slot], R->pool_mr, (uint8_t *)t->pool + (size_t)r->slot * t->slot_size, t->slot_size, what},
        {t->sdesc_mw[r->slot], R->desc_mr, t->desc_table + (size_t)r->slot * PB_VW_MSG_SIZE, PB_VW_MSG_SIZE, what},
    };
    return bind_windows(t, li, w, 2, why, wl);
}

static int post_req(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    switch (r->kind) {
    case PB_VW_REQ_PUT: return post_put(t, li, r, why, wl);
    case PB_VW_REQ_BIND: return post_bind(t, li, r, why, wl);
    default: return post_ctrl(t, li, r, why, wl);
    }
}

/* A credit gives the peer keys: not before it proved the job secret. */
static int must_wait(const struct pb_vw_link *lk, const struct pb_vw_req *r)
{
    return pb_vw_sq_room(&lk->sq) < pb_vw_req_wrs(r->kind) || (r->kind == PB_VW_REQ_CREDIT && lk->hello_wait);
}

/* Post what waited for queue space, in order. */
void drain_backlog(struct vt *t, int li)
{
    struct pb_vw_link *lk = &t->lks[li];
    const struct pb_vw_req *r;
    char why[160];
    while (!lk->dead && (r = pb_vw_link_peek(lk)) && !must_wait(lk, r)) {
        if (post_req(t, li, r, why, sizeof why) != 0) {
            link_error(t, li, errno, why);
            return;
        }
        pb_vw_link_pop(lk);
    }
}

/* Post r on link li now, or after what waits in its backlog. */
int submit(struct vt *t, int li, const struct pb_vw_req *r)
{
    char why[160];
    struct vlink *L = &t->links[li];
    struct pb_vw_link *lk = &t->lks[li];
    if (lk->dead) {
        errno = EPIPE;
        return -1;
    }
    if (r->kind == PB_VW_REQ_PUT) {
        /* Refuse a bad put now, not when it leaves the backlog. */
        struct pb_vw_put_plan p;
        struct pb_vw_local loc = {(uintptr_t)t->pool, t->pool_len};
        struct pb_vw_remote rem = L->rem;
        int granted = r->slot < lk->peer_nslots && lk->rkey_data[r->slot];
        if (granted)
            rem.pool_rkey = lk->rkey_data[r->slot];
        if (!granted)
            snprintf(why, sizeof why, "put into slot %u, which the peer never granted", r->slot);
        if (!granted || pb_vw_plan_put(&loc, &rem, r->slot, r->tag, r->buf, r->len, &p, why, sizeof why) != 0) {
            pend_error(t, L->leader, EINVAL, why);
            errno = EINVAL;
            return -1;
        }
    }
    if (pb_vw_link_peek(lk) || must_wait(lk, r))
        return pb_vw_link_push(lk, r);
    if (post_req(t, li, r, why, sizeof why) != 0) {
        int e = errno;
        link_error(t, li, e, why);
        errno = e;
        return -1;
    }
    return 0;
}

/* The peer's link on rail 0 (notifies, and where checks start), -1 when
 * leader is not a peer. */
static int peer_link(const struct vt *t, int peer)
{
    return peer < 0 || peer >= t->nleaders ? -1 : t->leader_link[peer];
}

/* A put into the peer's slot goes over the rail its credit came on: that
 * link alone holds the slot's keys (the peer's slots each belong to one of
 * its rails). Rail 0's link when none does, to fail there. */
static int put_link(const struct vt *t, int i, uint32_t slot)
{
    for (int r = 0; r < t->nrails; r++) {
        const struct pb_vw_link *lk = &t->lks[r * t->npeers + i];
        if (slot < lk->peer_nslots && lk->rkey_data[slot])
            return r * t->npeers + i;
    }
    return i;
}

int v_put(struct pb_transport *bt, int peer, uint32_t slot, uint32_t tag, const void *buf,
          uint32_t len, uint64_t cookie)
{
    struct vt *t = (struct vt *)bt;
    int i = peer_link(t, peer);
    if (i < 0) {
        errno = EINVAL;
        return -1;
    }
    struct pb_vw_req r = {PB_VW_REQ_PUT, slot, tag, len, buf, cookie};
    return submit(t, put_link(t, i, slot), &r);
}

int v_grant(struct pb_transport *bt, int peer, uint32_t slot)
{
    struct vt *t = (struct vt *)bt;
    int i = peer_link(t, peer);
    if (slot >= t->nslots || i < 0) {
        errno = EINVAL;
        return -1;
    }
    char why[512];
    int li = t->slot_rail[slot] * t->npeers + i; /* the slot's rail */
    struct pb_vw_req bind;
    if (t->lks[li].dead) {
        errno = EPIPE;
        return -1;
    }
    if (grant_windows(t, li, slot, &bind, why, sizeof why) != 0) {
        int e = errno;
        link_error(t, li, e, why);
        errno = e;
        return -1;
    }
    if (bind.kind && submit(t, li, &bind) != 0)
        return -1;
    struct vrail *R = rail_of(t, li);
    struct pb_vw_req r = {PB_VW_REQ_CREDIT, slot, t->fenced ? t->slot_mw[slot]->rkey : R->pool_mr->rkey,
                          t->fenced ? t->sdesc_mw[slot]->rkey : R->desc_mr->rkey, NULL, 0};
    return submit(t, li, &r);
}

int v_notify(struct pb_transport *bt, int peer, uint32_t code)
{
    struct vt *t = (struct vt *)bt;
    int i = peer_link(t, peer);
    if (i < 0) {
        errno = EINVAL;
        return -1;
    }
    struct pb_vw_req r = {PB_VW_REQ_NOTIFY, 0, code, 0, NULL, 0};
    return submit(t, i, &r);
}

#endif /* HAVE_VERBS */
