/* verbs_connect.c — connection set-up of the verbs transport: queue sizes,
 * a completion queue per rail, one RC queue pair per rail per peer (in the
 * rail's PD), and the QP state transitions INIT -> RTR -> RTS with the
 * peer's endpoint info (exchanged by verbs.c through the MPI bootstrap). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static uint32_t clampu(uint64_t v, uint32_t lo, uint32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (uint32_t)v;
}

/* Queue depths from the device limits. Incoming per peer: at most nslots
 * writes into our slots plus the peer's credits (its nslots, assumed like
 * ours) plus a few notifies. Outgoing: 2 WRs per put plus credits. More
 * than this waits in the backlog (sends) or is retried by the HCA (RNR,
 * receives). */
int size_queues(struct vt *t, uint32_t *sq, uint32_t *rq, char *why, size_t wl)
{
    *sq = *rq = UINT32_MAX;
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        struct ibv_device_attr da;
        if (query_device(R, &da, why, wl) != 0)
            return -1;
        uint32_t maxwr = clampu((uint64_t)da.max_qp_wr, 16, 8192);
        uint32_t s = clampu(2ull * t->nslots + 32, 16, maxwr), q = s;
        uint64_t need = (uint64_t)t->npeers * (s + q);
        if (t->npeers && need > (uint64_t)da.max_cqe) {
            s = q = clampu((uint64_t)da.max_cqe / (2u * (uint64_t)t->npeers), 8, maxwr);
            if ((uint64_t)t->npeers * (s + q) > (uint64_t)da.max_cqe) {
                snprintf(why, wl, "RDMA device %s completion queue (%d entries) too small for %d peers",
                         R->devname, da.max_cqe, t->npeers);
                return -1;
            }
        }
        *sq = s < *sq ? s : *sq; /* one size for every link, whatever its rail */
        *rq = q < *rq ? q : *rq;
    }
    return 0;
}

/* Per rail one completion channel and one CQ for its QPs, both non-blocking. */
static int create_cq(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl)
{
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        R->ch = ibv_create_comp_channel(R->ctx);
        if (!R->ch || set_nonblock(R->ch->fd) != 0 || set_nonblock(R->ctx->async_fd) != 0) {
            snprintf(why, wl, "cannot create a completion channel on %s: %s", R->devname, strerror(errno));
            return -1;
        }
        int cqe = (int)((uint64_t)t->npeers * (sq + rq) + 1);
        R->cq = ibv_create_cq(R->ctx, cqe, NULL, R->ch, 0);
        if (!R->cq) {
            snprintf(why, wl, "cannot create a completion queue of %d entries on %s: %s", cqe, R->devname,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

const char *leader_name(const struct pb_transport_cfg *cfg, int leader)
{
    return cfg->names && cfg->names[leader] ? cfg->names[leader] : "a peer";
}

/* An RC QP on its rail's CQ, with inline data when the provider allows. */
static int create_qp(struct vt *t, int li, uint32_t sq, uint32_t rq, const char *peer, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    struct ibv_qp_init_attr qa = {
        .send_cq = R->cq,
        .recv_cq = R->cq,
        .cap = {.max_send_wr = sq, .max_recv_wr = rq, .max_send_sge = 1, .max_recv_sge = 1,
                .max_inline_data = PB_VW_CTRL_SIZE},
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0, /* selective signalling */
    };
    L->qp = ibv_create_qp(R->pd, &qa);
    if (!L->qp) {
        /* Some providers refuse inline data: retry without. */
        qa.cap.max_inline_data = 0;
        L->qp = ibv_create_qp(R->pd, &qa);
    }
    if (!L->qp) {
        snprintf(why, wl, "cannot create a queue pair for %s on %s: %s", peer, R->devname, strerror(errno));
        return -1;
    }
    if (li % t->npeers == 0 || qa.cap.max_inline_data < R->max_inline)
        R->max_inline = qa.cap.max_inline_data; /* what the provider granted, for every QP of the rail */
    return 0;
}

static int qp_to_init(struct vt *t, int li, const char *peer, char *why, size_t wl)
{
    struct vrail *R = rail_of(t, li);
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = R->port,
                            .qp_access_flags = IBV_ACCESS_REMOTE_WRITE};
    int rc = ibv_modify_qp(t->links[li].qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) {
        snprintf(why, wl, "cannot move the queue pair for %s to INIT on %s: %s", peer, R->devname, strerror(rc));
        return -1;
    }
    return 0;
}

static uint32_t random_psn(int salt)
{
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)time(NULL) ^ (uint32_t)getpid() ^ (uint32_t)salt * 2654435761u;
    return r & 0xffffff;
}

/* Receives first: a peer may send as soon as it reaches RTS. */
static int post_receives(struct vt *t, int li, const char *peer, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    for (uint32_t k = 0; k < L->rq_depth; k++) {
        struct ibv_sge sge = {.addr = (uintptr_t)(L->recvbuf + (size_t)k * PB_VW_CTRL_SIZE),
                              .length = PB_VW_CTRL_SIZE, .lkey = rail_of(t, li)->ctrl_mr->lkey};
        struct ibv_recv_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_RECV, li, k), .sg_list = &sge, .num_sge = 1}, *bad;
        int rc = ibv_post_recv(L->qp, &wr, &bad);
        if (rc != 0) {
            snprintf(why, wl, "cannot post receives for %s on %s: %s", peer, rail_of(t, li)->devname, strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Per link (rail and peer): buffers, queue state, a QP in INIT with its
 * receives posted. */
static int create_links(struct vt *t, const struct pb_transport_cfg *cfg, uint32_t sq, uint32_t rq, char *why,
                        size_t wl)
{
    for (int i = 0; i < t->nlinks; i++) {
        struct vlink *L = &t->links[i];
        const char *peer = leader_name(cfg, L->leader);
        L->rq_depth = rq;
        L->sendbuf = t->ctrl + (size_t)i * (sq + rq) * PB_VW_CTRL_SIZE;
        L->recvbuf = L->sendbuf + (size_t)sq * PB_VW_CTRL_SIZE;
        if (pb_vw_link_init(&t->lks[i], sq) != 0) {
            snprintf(why, wl, "out of memory for link state");
            return -1;
        }
        if (create_qp(t, i, sq, rq, peer, why, wl) != 0 || qp_to_init(t, i, peer, why, wl) != 0 ||
            open_probe(t, i, why, wl) != 0)
            return -1;
        L->psn = random_psn(i);
        if (post_receives(t, i, peer, why, wl) != 0)
            return -1;
    }
    return 0;
}

/* The links of every rail to every peer, in the order rail by rail. */
static void lay_out_links(struct vt *t)
{
    t->nlinks = t->nrails * t->npeers;
    for (int li = t->npeers; li < t->nlinks; li++) {
        t->links[li].leader = t->links[li % t->npeers].leader;
        t->peer_leader[li] = t->peer_leader[li % t->npeers];
    }
}

/* Everything local: the rails, memory, queue pairs in INIT with receives
 * posted. */
int setup_local(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl)
{
    uint32_t sq, rq;
    int nfast;
    if (open_rails(t, cfg->rdma_dev, cfg->rdma_rails, &nfast, why, wl) != 0)
        return -1;
    lay_out_links(t);
    for (int r = 0; r < t->nrails; r++)
        if (choose_gid(&t->rails[r], cfg->gid_index, why, wl) != 0)
            return -1;
    if (check_windows(t, why, wl) != 0 || size_queues(t, &sq, &rq, why, wl) != 0 ||
        create_cq(t, sq, rq, why, wl) != 0 || alloc_memory(t, sq, rq, why, wl) != 0 ||
        check_limits(t, cfg, why, wl) != 0)
        return -1;
    place_slots(t); /* now: registering pins the pages where they are */
    if (register_memory(t, why, wl) != 0 || create_links(t, cfg, sq, rq, why, wl) != 0)
        return -1;
    return 0;
}

void fill_info(const struct vt *t, const struct vrail *R, struct pb_vw_info *in)
{
    memset(in, 0, sizeof *in);
    in->npeers = (uint32_t)t->npeers;
    in->nslots = t->nslots;
    in->slot_size = t->slot_size;
    in->pool_addr = (uintptr_t)t->pool;
    in->desc_addr = (uintptr_t)t->desc_table; /* probe_rkey, probe_off: per partner (exchange_offers) */
    in->rq_depth = t->npeers ? t->links[0].rq_depth : 1;
    in->lid = R->pattr.lid;
    in->port = R->port;
    in->link_layer = R->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? PB_VW_LL_ETH : PB_VW_LL_IB;
    in->mtu = (uint8_t)R->pattr.active_mtu;
    memcpy(in->gid, R->gid.raw, 16);
}

int connect_link(struct vt *t, int li, const struct pb_vw_info *pi,
                 const struct pb_vw_conn *pc, const char *peername, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    uint8_t ll = R->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? PB_VW_LL_ETH : PB_VW_LL_IB;
    if (pi->link_layer != ll) {
        snprintf(why, wl, "%s uses %s but we use %s: no RDMA path between them", peername,
                 pi->link_layer == PB_VW_LL_ETH ? "RoCE" : "InfiniBand", ll == PB_VW_LL_ETH ? "RoCE" : "InfiniBand");
        return -1;
    }
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = (enum ibv_mtu)(pi->mtu < R->pattr.active_mtu ? pi->mtu : R->pattr.active_mtu);
    a.dest_qp_num = pc->qpn;
    a.rq_psn = pc->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12; /* 0.64 ms: receives are reposted as soon as polled */
    a.ah_attr.dlid = pi->lid;
    a.ah_attr.port_num = R->port;
    if (R->use_grh) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, pi->gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)R->gid_index;
        a.ah_attr.grh.hop_limit = 64;
        a.ah_attr.grh.traffic_class = (uint8_t)R->tclass;
    }
    int rc = ibv_modify_qp(L->qp, &a,
                           IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                               IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) {
        snprintf(why, wl, "queue pair to %s failed to reach RTR: %s%s", peername, strerror(rc),
                 R->use_grh ? " (RoCE: check --gid-index and that both ends share an IP subnet or route)" : "");
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = L->psn;
    a.timeout = 14;   /* ~67 ms per try: long enough for a congested fabric */
    a.retry_cnt = 7;
    a.rnr_retry = 7;  /* infinite: a receiver late to repost a receive is not an error */
    a.max_rd_atomic = 1;
    rc = ibv_modify_qp(L->qp, &a,
                       IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                           IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) {
        snprintf(why, wl, "queue pair to %s failed to reach RTS: %s", peername, strerror(rc));
        return -1;
    }
    L->rem.pool_addr = pi->pool_addr;
    L->rem.desc_addr = pi->desc_addr;
    L->peer_qpn = pc->qpn;
    L->peer_psn = pc->psn;
    L->rem.nslots = pi->nslots;
    L->rem.slot_size = pi->slot_size;
    return 0;
}

#endif /* HAVE_VERBS */
