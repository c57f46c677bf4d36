/* transport_verbs.c — the RDMA data plane: one RC queue pair per peer and
 * rail (a device port; several are striped, each slot of a node's pool
 * belonging to one), chunks moved by RDMA WRITE WITH IMMEDIATE straight
 * into the peer's slots.
 *
 * This file and its siblings are the thin layer that calls libibverbs:
 * here opening (the set-up rounds) and closing; the device in
 * verbs_device.c, registrations in verbs_mr.c, queue pairs in
 * verbs_connect.c, posting in verbs_data.c, completions in verbs_poll.c
 * (shared struct: verbs_internal.h). The protocol, bounds
 * checks, queue accounting and completion handling live in verbs_wire.c,
 * which is unit-tested without a device. Connection set-up uses no rdmacm:
 * endpoint info goes through the MPI bootstrap (cfg->xchg.per_peer), to and
 * from this leader's partners only, so no extra listening ports or IPoIB
 * addresses are needed and a leader's set-up costs O(partners) bytes and
 * memory whatever the number of nodes (rounds: verbs_wire.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport.h"

#include <stdio.h>
#include <string.h>

/* PB_FORCE_NO_VERBS lets a test build the without-verbs variant even where
 * rdma-core is installed (config.h would define HAVE_VERBS). */
#if !defined(HAVE_VERBS) || defined(PB_FORCE_NO_VERBS)

struct pb_transport *pb_verbs_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "this p2pbcast was built without RDMA verbs support (on %s): rebuild with rdma-core "
             "installed (Debian: apt-get install libibverbs-dev) or use --transport tcp or mpi",
             cfg && cfg->names ? cfg->names[cfg->self] : "this host");
    return NULL;
}

int pb_verbs_available(char *why, size_t whylen)
{
    snprintf(why, whylen, "this p2pbcast was built without RDMA verbs support");
    return 0;
}

int pb_verbs_probe(const struct pb_verbs_want *w, struct pb_verbs_fit *f)
{
    (void)w;
    memset(f, 0, sizeof *f);
    pb_verbs_available(f->why, sizeof f->why);
    return 0;
}

#else /* HAVE_VERBS && !PB_FORCE_NO_VERBS */

#include "verbs_internal.h"

static const char *selfname(const struct pb_transport_cfg *cfg, char *buf, size_t n)
{
    if (cfg->names && cfg->names[cfg->self])
        snprintf(buf, n, "%s", cfg->names[cfg->self]);
    else
        snprintf(buf, n, "leader %d", cfg->self);
    return buf;
}

void pend_error(struct vt *t, int peer, int err, const char *what)
{
    if (t->npend >= PEND_MAX)
        return; /* already drowning in errors: the first ones are what matters */
    struct pb_event *e = &t->pend[t->npend++];
    memset(e, 0, sizeof *e);
    e->kind = PB_EV_ERROR;
    e->peer = peer;
    e->err = err;
    size_t n = strnlen(what, sizeof e->what - 1); /* what[] is short: keep the start */
    memcpy(e->what, what, n);
    e->what[n] = '\0';
}

/* " (over DEV:PORT)" at the end of what, when there are several rails:
 * which of them failed. Keeps the start of what when it is long. */
void name_rail(struct vt *t, int li, char *what, size_t n)
{
    if (t->nrails < 2)
        return;
    const struct vrail *R = rail_of(t, li);
    char tail[96];
    int tl = snprintf(tail, sizeof tail, " (over %s:%u)", R->devname, R->port);
    size_t len = strlen(what);
    if (tl <= 0 || (size_t)tl >= n)
        return;
    if (len + (size_t)tl >= n)
        len = n - 1 - (size_t)tl;
    memcpy(what + len, tail, (size_t)tl + 1);
}

/* Has another rail's link to li's peer failed already (and so the peer been
 * reported lost)? Then a second error for it says nothing new. */
int peer_already_lost(const struct vt *t, int li)
{
    int i = li % t->npeers;
    for (int r = 0; r < t->nrails; r++)
        if (r * t->npeers + i != li && t->lks[r * t->npeers + i].dead)
            return 1;
    return 0;
}

/* Link li failed: no more from it, and the error (naming its rail). */
void link_error(struct vt *t, int li, int err, const char *what)
{
    char w[sizeof t->pend[0].what];
    snprintf(w, sizeof w, "%s", what);
    name_rail(t, li, w, sizeof w);
    t->lks[li].dead = 1;
    if (!peer_already_lost(t, li))
        pend_error(t, t->links[li].leader, err, w);
}

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void destroy(struct vt *t)
{
    if (!t)
        return;
    free_windows(t);
    free_probes(t);
    for (int i = 0; t->links && i < t->nlinks; i++) {
        if (t->links[i].qp)
            ibv_destroy_qp(t->links[i].qp);
        if (t->lks)
            pb_vw_link_fini(&t->lks[i]);
    }
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        struct ibv_mr *mrs[] = {R->pool_mr, R->desc_mr, R->ctrl_mr};
        for (size_t i = 0; i < sizeof mrs / sizeof mrs[0]; i++)
            if (mrs[i])
                ibv_dereg_mr(mrs[i]);
        if (R->cq)
            ibv_destroy_cq(R->cq); /* every event we took was acked at once, so this cannot block */
        if (R->ch)
            ibv_destroy_comp_channel(R->ch);
        if (R->pd)
            ibv_dealloc_pd(R->pd);
        if (R->ctx)
            ibv_close_device(R->ctx);
    }
    free(t->desc_table);
    free(t->ctrl);
    free(t->slot_mw);
    free(t->sdesc_mw);
    free(t->slot_owner);
    free(t->slot_rail);
    free(t->links);
    free(t->lks);
    free(t->leader_link);
    free(t->peer_leader);
    free(t->peer_nslots);
    free(t);
}

/* -v: what each rail carried, when there are several. */
static void say_rails(const struct vt *t)
{
    if (!t->verbose || t->nrails < 2)
        return;
    char buf[512];
    size_t used = 0;
    for (int r = 0; r < t->nrails && used < sizeof buf; r++) {
        const struct vrail *R = &t->rails[r];
        int w = snprintf(buf + used, sizeof buf - used, "%s%s:%u %llu chunks (%s), %u slots", r ? "; " : "",
                         R->devname, R->port, (unsigned long long)R->puts, pb_verbs_size_str(R->put_bytes).s,
                         R->nslots);
        used = w < 0 ? sizeof buf : used + (size_t)w;
    }
    fprintf(stderr, "p2pbcast: %s: verbs rails sent: %s\n", t->self, buf);
}

static int v_close(struct pb_transport *bt)
{
    say_rails((struct vt *)bt);
    destroy((struct vt *)bt); /* the queue pairs are gone: no more DMA */
    return 0;
}

static const struct pb_transport_ops verbs_ops = {
    .name = "verbs",
    .put = v_put,
    .grant = v_grant,
    .notify = v_notify,
    .poll = v_poll,
    .close = v_close,
};

/* ---------------------------------------------------------------- open */

/* The transport object with its per-peer arrays, the peer list checked. */
static struct vt *vt_new(const struct pb_transport_cfg *cfg, const char *me, char *why, size_t wl)
{
    size_t np = (size_t)(cfg->npeers > 0 ? cfg->npeers : 1) * PB_VERBS_MAX_RAILS; /* links, at most */
    struct vt *t = calloc(1, sizeof *t);
    if (t) {
        t->base.ops = &verbs_ops;
        t->verbose = cfg->verbose;
        snprintf(t->self, sizeof t->self, "%s", me);
        t->pool = cfg->pool;
        t->nslots = cfg->nslots;
        t->slot_size = cfg->slot_size;
        t->pool_len = (size_t)cfg->nslots * cfg->slot_size;
        t->nleaders = cfg->nleaders;
        t->self_leader = cfg->self;
        memcpy(t->secret, cfg->secret, sizeof t->secret);
        t->npeers = cfg->npeers;
        t->links = calloc(np, sizeof *t->links);
        t->lks = calloc(np, sizeof *t->lks);
        t->leader_link = malloc((size_t)(cfg->nleaders > 0 ? cfg->nleaders : 1) * sizeof(int));
        t->peer_leader = calloc(np, sizeof(int));
        t->peer_nslots = calloc(np, sizeof(uint32_t));
    }
    if (!t || !t->links || !t->lks || !t->leader_link || !t->peer_leader || !t->peer_nslots) {
        snprintf(why, wl, "out of memory");
        return t;
    }
    if (!cfg->pool || cfg->nslots == 0 || cfg->slot_size == 0 || cfg->slot_size > UINT32_MAX ||
        cfg->nslots > UINT32_MAX / PB_VW_MSG_SIZE || cfg->slot_size > SIZE_MAX / cfg->nslots ||
        cfg->npeers >= PB_VW_MAX_PEERS) {
        snprintf(why, wl, "invalid slot pool for RDMA (%u slots of %zu bytes)", cfg->nslots, cfg->slot_size);
        return t;
    }
    for (int i = 0; i < cfg->nleaders; i++)
        t->leader_link[i] = -1;
    for (int i = 0; i < cfg->npeers; i++) {
        int p = cfg->peers[i];
        if (p < 0 || p >= cfg->nleaders || p == cfg->self || t->leader_link[p] >= 0) {
            snprintf(why, wl, "invalid peer list (leader %d)", p);
            return t;
        }
        t->leader_link[p] = i;
        t->peer_leader[i] = p;
        t->links[i].leader = p;
    }
    why[0] = '\0';
    return t;
}

/* What the set-up rounds keep per partner (link index i), and the bytes
 * exchanged, for -v. */
struct xround {
    struct pb_vw_info *infos;  /* the partner's endpoint */
    struct pb_vw_conn *sent;   /* the queue pair we made for it */
    struct pb_vw_conn *got;    /* the queue pair it made for us */
    uint8_t *out, *in;         /* npeers messages each way */
    size_t bytes;
};

/* One round with the partners (see verbs_wire.h): every leader's vote on
 * `ok`, then len bytes to and from each partner. A leader that failed
 * exchanges nothing (the vote stops everyone), so it may have no buffers.
 * 0 when every leader is still well; else -1 and err, naming this leader
 * and its reason when it failed itself. Who else failed, the stage's vote
 * names at the root. */
static int round_with_peers(const struct pb_transport_cfg *cfg, const char *what, int ok, const char *why,
                            struct xround *x, size_t len, char *err, size_t errlen)
{
    char me[128];
    selfname(cfg, me, sizeof me);
    int n = ok && len ? cfg->npeers : 0;
    int rc = cfg->xchg.per_peer ? cfg->xchg.per_peer(cfg->xchg.ctx, ok, x->out, x->in, len, cfg->peers, n) : -1;
    if (rc == 0 && ok) {
        x->bytes += 2 * (size_t)n * len;
        return 0;
    }
    if (!ok)
        snprintf(err, errlen, "%s on %s", why[0] ? why : "RDMA set-up failed", me);
    else if (rc == 1) {
        if (cfg->failed_elsewhere)
            *cfg->failed_elsewhere = 1;
        snprintf(err, errlen, "another node's RDMA set-up failed (see its message; this is %s)", me);
    }
    else
        snprintf(err, errlen, "RDMA %s failed on %s%s", what, me, rc == 2 ? ": interrupted" : "");
    return -1;
}

/* Room for one round's messages each way, and the per-link records. */
static int xround_alloc(struct xround *x, int nlinks)
{
    size_t np = (size_t)(nlinks > 0 ? nlinks : 1);
    x->infos = calloc(np, sizeof *x->infos);
    x->sent = calloc(np, sizeof *x->sent);
    x->got = calloc(np, sizeof *x->got);
    x->out = calloc(np, PB_VW_OFFER_SIZE);
    x->in = calloc(np, PB_VW_OFFER_SIZE);
    return x->infos && x->sent && x->got && x->out && x->in ? 0 : -1;
}

static void xround_free(struct xround *x)
{
    free(x->infos);
    free(x->sent);
    free(x->got);
    free(x->out);
    free(x->in);
}

/* Round 1: to each partner our endpoint and the queue pair made for it;
 * from each, its own. Every leader takes part even after a local failure,
 * so nobody waits forever. A bad offer fails this leader (*ok = 0) for the
 * next round's vote. */
static int exchange_offers(struct vt *t, const struct pb_transport_cfg *cfg, int *ok, char *why, size_t wl,
                           struct xround *x, char *err, size_t errlen)
{
    /* to each partner: one offer per rail, rail by rail */
    size_t len = (size_t)(t && t->nrails > 0 ? t->nrails : 1) * PB_VW_OFFER_SIZE; /* t: NULL when out of memory */
    for (int li = 0; *ok && li < t->nlinks; li++) {
        struct vlink *L = &t->links[li];
        struct vrail *R = rail_of(t, li);
        int i = li % t->npeers, r = li / t->npeers;
        struct pb_vw_info mine;
        fill_info(t, R, &mine);
        mine.probe_rkey = t->fenced ? L->probe_mw->rkey : R->desc_mr->rkey; /* fenced: this link's alone */
        mine.probe_off = (uint32_t)(t->probe_off + (size_t)li * PB_VW_PROBE_SIZE);
        x->sent[li] = (struct pb_vw_conn){(uint32_t)L->leader, L->qp->qp_num, L->psn};
        pb_vw_offer_pack(&mine, &x->sent[li], x->out + (size_t)i * len + (size_t)r * PB_VW_OFFER_SIZE);
    }
    if (round_with_peers(cfg, "endpoint exchange", *ok, why, x, len, err, errlen) != 0)
        return -1;
    for (int li = 0; *ok && li < t->nlinks; li++) {
        char w[256];
        int i = li % t->npeers, r = li / t->npeers;
        if (pb_vw_offer_unpack(x->in + (size_t)i * len + (size_t)r * PB_VW_OFFER_SIZE, (uint32_t)cfg->self,
                               &x->infos[li], &x->got[li], w, sizeof w) != 0) {
            snprintf(why, wl, "bad RDMA endpoint from %s: %s", leader_name(cfg, t->links[li].leader), w);
            *ok = 0;
        }
    }
    return 0;
}

/* Connect every queue pair to its partner's, up to RTS, and arm the HELLO
 * check (what the peer's first message must prove, see post_ctrl). */
static int connect_links(struct vt *t, const struct pb_transport_cfg *cfg, const struct xround *x, char *why,
                         size_t wl)
{
    for (int i = 0; i < t->nlinks; i++) {
        struct vlink *L = &t->links[i];
        const char *peer = leader_name(cfg, L->leader);
        t->peer_nslots[i] = x->infos[i].nslots;
        if (connect_link(t, i, &x->infos[i], &x->got[i], peer, why, wl) != 0 ||
            bind_probe(t, i, &x->infos[i], why, wl) != 0)
            return -1;
        if (pb_vw_link_peer_slots(&t->lks[i], t->peer_nslots[i]) != 0) {
            snprintf(why, wl, "out of memory for the keys of %s", peer);
            return -1;
        }
        t->lks[i].hello_wait = 1;
        t->lks[i].hello_mac = pb_vw_hello_mac(t->secret, (uint32_t)L->leader, (uint32_t)cfg->self, x->got[i].qpn,
                                              L->qp->qp_num, x->got[i].psn, L->psn);
    }
    return 0;
}

/* Round 2: each end of every link says what it sent and what it got; both
 * must agree before the queue pairs connect. *ok = 0 on a mismatch or a
 * failed connect, for the last round's vote. */
static int exchange_echoes(struct vt *t, const struct pb_transport_cfg *cfg, int *ok, char *why, size_t wl,
                           struct xround *x, char *err, size_t errlen)
{
    size_t len = (size_t)(t && t->nrails > 0 ? t->nrails : 1) * PB_VW_ECHO_SIZE;
    for (int li = 0; *ok && li < t->nlinks; li++)
        pb_vw_echo_pack(&x->sent[li], &x->got[li],
                        x->out + (size_t)(li % t->npeers) * len + (size_t)(li / t->npeers) * PB_VW_ECHO_SIZE);
    if (round_with_peers(cfg, "queue pair exchange", *ok, why, x, len, err, errlen) != 0)
        return -1;
    for (int li = 0; *ok && li < t->nlinks; li++) {
        char w[320];
        if (pb_vw_echo_check(x->in + (size_t)(li % t->npeers) * len + (size_t)(li / t->npeers) * PB_VW_ECHO_SIZE,
                             &x->sent[li], &x->got[li], w, sizeof w) != 0) {
            snprintf(why, wl, "with %s: %s", leader_name(cfg, t->links[li].leader), w);
            *ok = 0;
        }
    }
    if (*ok && connect_links(t, cfg, x, why, wl) != 0)
        *ok = 0;
    return 0;
}

/* Connected: the completion handler's state (from the first puts on). */
static void init_state(struct vt *t)
{
    t->st = (struct pb_vw_state){
        .npeers = t->nlinks,
        .peer_leader = t->peer_leader,
        .links = t->lks,
        .peer_nslots = t->peer_nslots,
        .desc_table = t->desc_table,
        .nslots = t->nslots,
        .slot_size = t->slot_size,
        .recv_buf = recv_buf,
        .ctx = t,
    };
}

/* Say hello on every link (the first message, proving the job secret); say
 * what we use. */
static void finish_open(struct vt *t, const struct pb_transport_cfg *cfg, size_t xbytes)
{
    double now = now_ms();
    for (int i = 0; i < t->nlinks; i++) {
        struct pb_vw_req r = {.kind = PB_VW_REQ_HELLO};
        t->links[i].last_seen = t->links[i].last_ping = now;
        (void)submit(t, i, &r); /* a failure is pending for the first poll */
    }
    if (!cfg->verbose)
        return;
    char pool_where[64] = "placed by rail (each rail's line says where)";
    if (!t->pool_split)
        snprintf(pool_where, sizeof pool_where, "on NUMA node %d", pb_topo_mem_numa(t->pool, t->pool_len));
    for (int r = 0; r < t->nrails; r++) {
        const struct vrail *R = &t->rails[r];
        char gid[64] = "", rate[32] = "rate unknown";
        if (R->mbit)
            snprintf(rate, sizeof rate, "%g Gbit/s", R->mbit / 1000.0);
        if (R->use_grh)
            inet_ntop(AF_INET6, R->gid.raw, gid, sizeof gid);
        fprintf(stderr, "p2pbcast: %s: verbs on %s:%u (%s, %s, LID %u%s%s, MTU %d), rail %d of %d, %u of %u slots%s\n",
                t->self, R->devname, R->port, R->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand",
                rate, R->pattr.lid, R->use_grh ? ", GID " : "", gid, 128 << R->pattr.active_mtu, r + 1, t->nrails,
                R->nslots, t->nslots, R->place);
    }
    fprintf(stderr,
            "p2pbcast: %s: verbs over %d rail%s (active ports: %s), %d queue pair%s, pool of %s %s, %s; "
            "set-up exchanged %zu bytes with its partners\n",
            t->self, t->nrails, t->nrails == 1 ? "" : "s", t->rails_seen, t->nlinks, t->nlinks == 1 ? "" : "s",
            pb_verbs_size_str(t->pool_len).s, pool_where,
            t->fenced ? "peers fenced to their slots by type 2 memory windows"
                      : "no type 2 memory windows: partners write through the pool's own key (unfenced)",
            xbytes);
}

/* Like rc_pingpong: open the device, query the port, allocate a PD, register
 * memory, create the CQ and QPs (setup_local), then four rounds with the
 * partners only: offers, echoes and connect, the vote that every QP reached
 * RTS, the vote that every leader's first puts (verbs_probe.c) arrived.
 * Collective: every leader goes through every round. */
struct pb_transport *pb_verbs_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen)
{
    char why[512] = "";
    char me[128];
    selfname(cfg, me, sizeof me);

    struct vt *t = vt_new(cfg, me, why, sizeof why);
    struct xround x = {0};
    int ok = t && !why[0] && setup_local(t, cfg, why, sizeof why) == 0;
    if (ok && xround_alloc(&x, t->nlinks) != 0) {
        snprintf(why, sizeof why, "out of memory for the endpoint exchange");
        ok = 0;
    }
    if (exchange_offers(t, cfg, &ok, why, sizeof why, &x, err, errlen) != 0 ||
        exchange_echoes(t, cfg, &ok, why, sizeof why, &x, err, errlen) != 0 ||
        round_with_peers(cfg, "connection agreement", ok, why, &x, 0, err, errlen) != 0) {
        xround_free(&x);
        destroy(t);
        return NULL;
    }
    init_state(t);
    ok = first_puts(t, cfg, why, sizeof why) == 0;
    if (round_with_peers(cfg, "first puts", ok, why, &x, 0, err, errlen) != 0) {
        xround_free(&x);
        destroy(t);
        return NULL;
    }
    finish_open(t, cfg, x.bytes);
    xround_free(&x);
    return &t->base;
}

/* The probe's answers from the rails open_rails chose (the first named). */
static void fill_fit(const struct vt *t, const struct pb_verbs_pin *pin, int nfast, struct pb_verbs_fit *f)
{
    const struct vrail *R = &t->rails[0];
    snprintf(f->dev, sizeof f->dev, "%s", R->devname);
    snprintf(f->rails, sizeof f->rails, "%s", t->rails_seen);
    f->port = R->port;
    f->mbit = R->mbit;
    f->nrails = (uint32_t)nfast;
    f->roce = R->pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
    f->gid_index = R->use_grh ? R->gid_index : -1;
    f->max_msg = R->pattr.max_msg_sz;
    for (int r = 1; r < t->nrails; r++)
        if (t->rails[r].pattr.max_msg_sz < f->max_msg)
            f->max_msg = t->rails[r].pattr.max_msg_sz;
    f->pin_need = pin->total;
    f->pin_limit = pb_verbs_pin_limit();
}

int pb_verbs_probe(const struct pb_verbs_want *w, struct pb_verbs_fit *f)
{
    memset(f, 0, sizeof *f);
    struct vt *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(f->why, sizeof f->why, "out of memory");
        return 0;
    }
    t->nslots = w->nslots;
    t->npeers = w->npeers;
    t->slot_size = (size_t)w->slot_size;
    uint32_t sq = 0, rq = 0;
    char *why = f->why;
    size_t wl = sizeof f->why;
    int nfast = 0, ok = open_rails(t, w->rdma_dev, 0, &nfast, why, wl) == 0;
    for (int r = 0; ok && r < t->nrails; r++)
        ok = choose_gid(&t->rails[r], w->gid_index, why, wl) == 0;
    t->nlinks = t->nrails * t->npeers;
    if (ok && check_windows(t, why, wl) == 0 && size_queues(t, &sq, &rq, why, wl) == 0) {
        struct pb_verbs_pin pin;
        rails_pin(t, (uint64_t)t->nlinks * (sq + rq) * PB_VW_CTRL_SIZE, &pin);
        fill_fit(t, &pin, nfast, f);
        f->ok = pb_verbs_check_pin(&pin, t->rails[0].devname, why, wl) == 0;
    }
    t->npeers = t->nlinks = 0; /* no links were made */
    destroy(t);
    return f->ok;
}

#endif /* HAVE_VERBS */
