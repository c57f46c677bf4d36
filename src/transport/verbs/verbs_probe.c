/* verbs_probe.c — the first puts of the verbs transport: at set-up, once
 * every queue pair is in RTS and before any chunk, one small RDMA WRITE WITH
 * IMMEDIATE from this leader to each partner, into a probe area the partner
 * opened to this link alone (a type 2 window bound to its queue pair, key
 * and place in the offer). A link that connects but cannot carry a put
 * (remote access, length, RNR or retry errors on hardware) then fails the
 * set-up, where --transport auto still falls back to tcp before a byte of
 * DEST is written, instead of failing the first chunk. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

_Static_assert(PB_VW_PROBE_SIZE <= PB_VW_CTRL_SIZE, "a probe is sent from a control buffer");

/* Long enough for a loaded machine and a congested fabric (a failing write
 * errs within about half a second: timeout 14, retry_cnt 7); bounded, since
 * an RNR retried forever never errs. */
#define PROBE_WAIT_MS 20000

/* The window over our probe area for link li, its key chosen now: it goes
 * in the offer to that peer, the bind follows at RTS (bind_probe). */
int open_probe(struct vt *t, int li, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    if (!t->fenced)
        return 0; /* the table's own key opens the probe area */
    L->probe_mw = ibv_alloc_mw(rail_of(t, li)->pd, IBV_MW_TYPE_2);
    if (!L->probe_mw) {
        snprintf(why, wl, "cannot allocate a memory window for the set-up probe on %s: %s", rail_of(t, li)->devname,
                 strerror(errno));
        return -1;
    }
    L->probe_mw->rkey = ibv_inc_rkey(L->probe_mw->rkey);
    return 0;
}

/* Connected: where our first put to this peer goes, and our own probe
 * area opened to it. Before the vote that ends the connect round, so that
 * no peer's probe finds it closed. */
int bind_probe(struct vt *t, int li, const struct pb_vw_info *pi, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    L->probe_raddr = pi->desc_addr + pi->probe_off;
    L->probe_rkey = pi->probe_rkey;
    if (!t->fenced)
        return 0;
    struct window w = {L->probe_mw, rail_of(t, li)->desc_mr, t->desc_table + t->probe_off + (size_t)li * PB_VW_PROBE_SIZE,
                       PB_VW_PROBE_SIZE, "the set-up probe"};
    return bind_windows(t, li, &w, 1, why, wl);
}

void free_probes(struct vt *t)
{
    for (int i = 0; t->links && i < t->nlinks; i++)
        if (t->links[i].probe_mw) {
            ibv_dealloc_mw(t->links[i].probe_mw);
            t->links[i].probe_mw = NULL;
        }
}

static int post_probe(struct vt *t, int li, const char *peer, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    struct pb_vw_sq *sq = &t->lks[li].sq;
    int sig;
    L->probe_seq = pb_vw_sq_take(sq, 1, &sig);
    uint8_t *m = L->sendbuf + (L->probe_seq % sq->depth) * PB_VW_CTRL_SIZE;
    memset(m, 0xa5, PB_VW_PROBE_SIZE);
    struct ibv_sge sge = {.addr = (uintptr_t)m, .length = PB_VW_PROBE_SIZE, .lkey = R->ctrl_mr->lkey};
    struct ibv_send_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_PROBE, li, L->probe_seq), .sg_list = &sge, .num_sge = 1,
                             .opcode = IBV_WR_RDMA_WRITE_WITH_IMM, .send_flags = IBV_SEND_SIGNALED,
                             .imm_data = htonl(PB_VW_PROBE_IMM)},
                       *bad;
    wr.wr.rdma.remote_addr = L->probe_raddr;
    wr.wr.rdma.rkey = L->probe_rkey;
    int rc = ibv_post_send(L->qp, &wr, &bad);
    if (rc != 0) {
        pb_vw_sq_untake(sq, L->probe_seq, sig);
        snprintf(why, wl, "cannot post the first RDMA write to %s on %s:%u: %s", peer, R->devname, R->port,
                 strerror(rc));
        return -1;
    }
    return 0;
}

/* One completion while the probes are out: ours (done, or why it failed),
 * or anything else through the protocol (a partner's probe arriving; a
 * failed window bind). 0 or -1 with why. */
static int probe_wc(struct vt *t, const struct pb_transport_cfg *cfg, const struct ibv_wc *wc, int *left,
                    char *why, size_t wl)
{
    enum pb_vw_kind k;
    int li;
    uint64_t low;
    pb_vw_wrid_split(wc->wr_id, &k, &li, &low);
    if (k != PB_VW_K_PROBE) {
        struct pb_event ev;
        if (take_wc(t, wc, now_ms(), &ev) == 1 && ev.kind == PB_EV_ERROR) {
            snprintf(why, wl, "link to %s failed at set-up: %s", leader_name(cfg, ev.peer), ev.what);
            return -1;
        }
        return 0;
    }
    if (li < 0 || li >= t->nlinks || t->links[li].probe_done)
        return 0;
    struct vlink *L = &t->links[li];
    struct vrail *R = rail_of(t, li);
    if (wc->status != IBV_WC_SUCCESS) {
        t->lks[li].dead = 1;
        snprintf(why, wl, "the first RDMA write to %s over %s:%u failed: %s (vendor error %#x): the link connects "
                 "but cannot carry a put", leader_name(cfg, L->leader), R->devname, R->port,
                 ibv_wc_status_str(wc->status), wc->vendor_err);
        return -1;
    }
    pb_vw_sq_complete(&t->lks[li].sq, L->probe_seq);
    L->probe_done = 1;
    (*left)--;
    return 0;
}

/* Every queue pair in RTS on every leader: one put to each partner, each
 * waited for (its completion says the peer's HCA placed it), with a
 * deadline. The caller's vote then stops every leader alike. */
int first_puts(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl)
{
    for (int i = 0; i < t->nlinks; i++)
        if (post_probe(t, i, leader_name(cfg, t->links[i].leader), why, wl) != 0)
            return -1;
    int left = t->nlinks;
    double deadline = now_ms() + PROBE_WAIT_MS;
    while (left > 0) {
        int got = 0;
        for (int r = 0; r < t->nrails; r++) {
            struct ibv_wc wc[16];
            int n = ibv_poll_cq(t->rails[r].cq, 16, wc);
            if (n < 0) {
                snprintf(why, wl, "polling the completion queue of %s failed", t->rails[r].devname);
                return -1;
            }
            for (int i = 0; i < n; i++)
                if (probe_wc(t, cfg, &wc[i], &left, why, wl) != 0)
                    return -1;
            got += n;
        }
        if (got == 0 && now_ms() > deadline) {
            for (int i = 0; i < t->nlinks; i++)
                if (!t->links[i].probe_done) {
                    snprintf(why, wl, "the first RDMA write to %s over %s:%u did not complete within %d s",
                             leader_name(cfg, t->links[i].leader), rail_of(t, i)->devname, rail_of(t, i)->port,
                             PROBE_WAIT_MS / 1000);
                    break;
                }
            return -1;
        }
        if (got == 0)
            usleep(500); /* set-up only, and briefly: the puts are small */
    }
    return 0;
}

#endif /* HAVE_VERBS */
