/* transport_verbs.c — the RDMA data plane: one RC queue pair per peer,
 * chunks moved by RDMA WRITE WITH IMMEDIATE straight into the peer's slots.
 *
 * This file is the thin layer that calls libibverbs. The protocol, bounds
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

#else /* HAVE_VERBS && !PB_FORCE_NO_VERBS */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "topo.h"
#include "verbs_wire.h"

#define PEND_MAX 64     /* events waiting for the next poll (errors mostly) */
#define CQ_BATCH 32

#define KEEPALIVE_MS 1000 /* a link silent this long gets a PING */

/* One peer. Its QP lives in a protection domain of its own, so the rkeys
 * of the slots granted to it (registered in that PD) are useless on any
 * other QP: a peer can write only what was granted to it. */
struct vlink {
    int leader;
    struct ibv_pd *pd;
    struct ibv_qp *qp;
    struct ibv_mr *ctrl_mr;  /* sendbuf + recvbuf, local only */
    struct ibv_mr *send_mr;  /* the whole pool, local only: sources of our puts (at the first put) */
    struct pb_vw_remote rem;
    uint32_t psn, peer_qpn, peer_psn;
    uint32_t rq_depth;
    uint8_t *sendbuf;  /* sq depth * PB_VW_CTRL_SIZE, indexed by seq % depth */
    uint8_t *recvbuf;  /* rq_depth * PB_VW_CTRL_SIZE */
    double last_seen;  /* ms: the last completion of this link */
    double last_ping;
};

struct vt {
    struct pb_transport base;
    char self[128];            /* "host (rank N)" of this leader, for messages */
    char devname[64];
    uint8_t port;
    int gid_index;
    int use_grh;
    struct ibv_port_attr pattr;
    union ibv_gid gid;

    struct ibv_context *ctx;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_mr **slot_mr;   /* per slot: REMOTE_WRITE in its grantee's PD, NULL: never granted */
    struct ibv_mr **sdesc_mr;  /* per slot: its descriptor entry, likewise */
    int *slot_owner;           /* per slot: link index of the grantee, -1 none */
    uint8_t secret[16];
    size_t reg_bytes;          /* registered so far, for messages */
    void *pool;
    size_t pool_len;
    uint32_t nslots;
    size_t slot_size;
    uint8_t *desc_table;       /* nslots * PB_VW_MSG_SIZE, remote writable per granted slot */
    uint8_t *ctrl;             /* all links' send and receive message buffers */
    size_t ctrl_len;
    uint32_t max_inline;
    int cq_armed;

    int nleaders;
    int self_leader;
    int npeers;
    struct vlink *links;
    struct pb_vw_link *lks;    /* per link queue state, the array verbs_wire works on */
    int *leader_link;          /* leader index -> link index, -1 when not a peer */
    int *peer_leader;          /* link index -> leader index */
    uint32_t *peer_nslots;
    struct pb_vw_state st;

    struct pb_event pend[PEND_MAX];
    int npend;
};

static const char *selfname(const struct pb_transport_cfg *cfg, char *buf, size_t n)
{
    if (cfg->names && cfg->names[cfg->self])
        snprintf(buf, n, "%s", cfg->names[cfg->self]);
    else
        snprintf(buf, n, "leader %d", cfg->self);
    return buf;
}

static void pend_error(struct vt *t, int peer, int err, const char *what)
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

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---------------------------------------------------------------- device */

static void nodev_reason(struct ibv_device **list, int e, char *why, size_t wl)
{
    snprintf(why, wl, "no RDMA device found (ibv_get_device_list returned none%s%s%s)",
             !list && e ? ": " : "", !list && e ? strerror(e) : "",
             !list && e == ENOSYS ? ", the kernel offers no RDMA" : "");
}

/* Append to a fixed buffer, stopping quietly when it is full. */
static void appendf(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    if (*used >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (w > 0)
        *used = *used + (size_t)w >= size ? size : *used + (size_t)w;
}

static int port_ok(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *pa)
{
    memset(pa, 0, sizeof *pa); /* state reads as NOP when the query fails */
    return ibv_query_port(ctx, port, pa) == 0 && pa->state == IBV_PORT_ACTIVE;
}

/* What open_device looks for and what it saw, for the messages. */
struct dev_scan {
    char wname[64];   /* --rdma-dev device name, "" for any */
    unsigned wport;   /* --rdma-dev port, 0 for any */
    int pool_numa;
    int best_score;   /* -1: nothing usable yet; 2: a port on the pool's NUMA node */
    char seen[192];   /* ports seen and why they were not taken */
    size_t seenlen;
    char names[128];  /* every device on this host */
    size_t nameslen;
};

/* "dev[:port]" into s->wname and s->wport. */
static int parse_rdma_dev(const char *want, struct dev_scan *s, char *why, size_t wl)
{
    if (!want || !*want)
        return 0;
    snprintf(s->wname, sizeof s->wname, "%s", want);
    char *c = strrchr(s->wname, ':');
    if (!c)
        return 0;
    char *end;
    unsigned long p = strtoul(c + 1, &end, 10);
    if (*end || p == 0 || p > 255) {
        snprintf(why, wl, "bad --rdma-dev '%s': expected DEVICE or DEVICE:PORT, e.g. mlx5_0:1", want);
        return -1;
    }
    s->wport = (unsigned)p;
    *c = '\0';
    return 0;
}

/* Look at the active ports of an open device; keep it in t when one of them
 * beats what we have. Returns 1 when kept, 0 when not, -1 on a hard error. */
static int scan_ports(struct vt *t, struct ibv_context *ctx, const char *name, struct dev_scan *s, char *why,
                      size_t wl)
{
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0)
        return 0;
    if (s->wport && s->wport > da.phys_port_cnt) {
        snprintf(why, wl, "RDMA device %s has no port %u (it has %u)", name, s->wport, da.phys_port_cnt);
        return -1;
    }
    int keep = 0;
    unsigned first = s->wport ? s->wport : 1, last = s->wport ? s->wport : da.phys_port_cnt;
    for (unsigned p = first; p <= last; p++) {
        struct ibv_port_attr pa;
        if (!port_ok(ctx, (uint8_t)p, &pa)) {
            appendf(s->seen, sizeof s->seen, &s->seenlen, "%s%s:%u %s", s->seenlen ? ", " : "", name, p,
                    ibv_port_state_str(pa.state));
            continue;
        }
        int score = 1 + (s->pool_numa >= 0 && pb_topo_dev_numa(name) == s->pool_numa);
        if (score > s->best_score) {
            if (t->ctx && t->ctx != ctx)
                ibv_close_device(t->ctx);
            t->ctx = ctx;
            keep = 1;
            s->best_score = score;
            t->port = (uint8_t)p;
            t->pattr = pa;
            snprintf(t->devname, sizeof t->devname, "%s", name);
        }
        if (score == 2)
            break;
    }
    return keep;
}

/* One device of the list: skip, or open and scan its ports. */
static int try_device(struct vt *t, struct ibv_device *dev, struct dev_scan *s, char *why, size_t wl)
{
    const char *name = ibv_get_device_name(dev);
    appendf(s->names, sizeof s->names, &s->nameslen, "%s%s", s->nameslen ? ", " : "", name);
    if (*s->wname && strcmp(name, s->wname) != 0)
        return 0;
    if (!*s->wname && strncmp(name, "softverbs", 9) == 0 && !getenv("SOFTVERBS"))
        return 0; /* the test double of tests/softverbs: only under its wrapper */
    struct ibv_context *ctx = ibv_open_device(dev);
    if (!ctx) {
        appendf(s->seen, sizeof s->seen, &s->seenlen, "%s%s (cannot open: %s)", s->seenlen ? ", " : "", name,
                strerror(errno));
        return 0;
    }
    int kept = scan_ports(t, ctx, name, s, why, wl);
    if (kept <= 0)
        ibv_close_device(ctx);
    return kept < 0 ? -1 : 0;
}

/* Nothing found: say what there was. A port without a LID is no use either. */
static int check_chosen(const struct vt *t, const struct dev_scan *s, char *why, size_t wl)
{
    if (!t->ctx) {
        if (*s->wname && !*s->seen)
            snprintf(why, wl, "RDMA device %s not found (this host has: %s)", s->wname, s->names);
        else
            snprintf(why, wl, "no active RDMA port (%s): check cables, the subnet manager and `ibstat`", s->seen);
        return -1;
    }
    if (t->pattr.link_layer != IBV_LINK_LAYER_ETHERNET && t->pattr.lid == 0) {
        snprintf(why, wl, "RDMA device %s port %u has no LID: is a subnet manager running?", t->devname,
                 t->port);
        return -1;
    }
    return 0;
}

/* Open the device and port to use: the one named in want ("dev[:port]"), or
 * the first active port, preferring a device on the pool's NUMA node. */
static int open_device(struct vt *t, const char *want, char *why, size_t wl)
{
    struct dev_scan s = {.pool_numa = pb_topo_mem_numa(t->pool, t->pool_len), .best_score = -1};
    if (parse_rdma_dev(want, &s, why, wl) != 0)
        return -1;
    int n = 0;
    errno = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) {
        nodev_reason(list, errno, why, wl);
        if (list)
            ibv_free_device_list(list);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0 && s.best_score < 2; i++)
        rc = try_device(t, list[i], &s, why, wl);
    ibv_free_device_list(list);
    return rc != 0 ? -1 : check_chosen(t, &s, why, wl);
}

/* RoCE needs a GID (and a GRH on every packet); pick RoCE v2 with an IPv4
 * address first, as that is what routed Ethernet fabrics use. */
static int choose_gid(struct vt *t, int want, char *why, size_t wl)
{
    int eth = t->pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
    t->use_grh = eth || want >= 0;
    if (want >= 0) {
        if (want >= t->pattr.gid_tbl_len || ibv_query_gid(t->ctx, t->port, want, &t->gid) != 0) {
            snprintf(why, wl, "GID index %d is not valid on %s port %u (table has %d entries; see `show_gids`)",
                     want, t->devname, t->port, t->pattr.gid_tbl_len);
            return -1;
        }
        t->gid_index = want;
        return 0;
    }
    if (!eth) {
        t->gid_index = 0;
        if (ibv_query_gid(t->ctx, t->port, 0, &t->gid) != 0)
            memset(&t->gid, 0, sizeof t->gid);
        return 0;
    }
    int best = -1, bestscore = 0;
    for (int i = 0; i < t->pattr.gid_tbl_len; i++) {
        struct ibv_gid_entry ge;
        if (ibv_query_gid_ex(t->ctx, t->port, (uint32_t)i, &ge, 0) != 0)
            continue;
        static const uint8_t zero[16];
        if (memcmp(ge.gid.raw, zero, 16) == 0)
            continue;
        int v4 = memcmp(ge.gid.raw, zero, 10) == 0 && ge.gid.raw[10] == 0xff && ge.gid.raw[11] == 0xff;
        int score = ge.gid_type == IBV_GID_TYPE_ROCE_V2 ? (v4 ? 3 : 2) : 1;
        if (score > bestscore) {
            bestscore = score;
            best = i;
            t->gid = ge.gid;
        }
    }
    if (best < 0) {
        snprintf(why, wl, "RoCE port %s:%u has no usable GID (no IP address on its netdev?); pass --gid-index",
                 t->devname, t->port);
        return -1;
    }
    t->gid_index = best;
    return 0;
}

static void destroy(struct vt *t)
{
    if (!t)
        return;
    for (int i = 0; t->links && i < t->npeers; i++) {
        if (t->links[i].qp)
            ibv_destroy_qp(t->links[i].qp);
        if (t->lks)
            pb_vw_link_fini(&t->lks[i]);
    }
    for (uint32_t s = 0; t->slot_mr && s < t->nslots; s++) {
        if (t->slot_mr[s])
            ibv_dereg_mr(t->slot_mr[s]);
        if (t->sdesc_mr[s])
            ibv_dereg_mr(t->sdesc_mr[s]);
    }
    for (int i = 0; t->links && i < t->npeers; i++) {
        if (t->links[i].ctrl_mr)
            ibv_dereg_mr(t->links[i].ctrl_mr);
        if (t->links[i].send_mr)
            ibv_dereg_mr(t->links[i].send_mr);
    }
    if (t->cq)
        ibv_destroy_cq(t->cq); /* every event we took was acked at once, so this cannot block */
    if (t->ch)
        ibv_destroy_comp_channel(t->ch);
    for (int i = 0; t->links && i < t->npeers; i++)
        if (t->links[i].pd)
            ibv_dealloc_pd(t->links[i].pd);
    if (t->ctx)
        ibv_close_device(t->ctx);
    free(t->desc_table);
    free(t->ctrl);
    free(t->slot_mr);
    free(t->sdesc_mr);
    free(t->slot_owner);
    free(t->links);
    free(t->lks);
    free(t->leader_link);
    free(t->peer_leader);
    free(t->peer_nslots);
    free(t);
}

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
static int size_queues(struct vt *t, uint32_t *sq, uint32_t *rq, char *why, size_t wl)
{
    struct ibv_device_attr da;
    if (ibv_query_device(t->ctx, &da) != 0) {
        snprintf(why, wl, "cannot query RDMA device %s: %s", t->devname, strerror(errno));
        return -1;
    }
    uint32_t maxwr = clampu((uint64_t)da.max_qp_wr, 16, 8192);
    *sq = clampu(2ull * t->nslots + 32, 16, maxwr);
    *rq = clampu(2ull * t->nslots + 32, 16, maxwr);
    uint64_t need = (uint64_t)t->npeers * (*sq + *rq);
    if (t->npeers && need > (uint64_t)da.max_cqe) {
        *sq = *rq = clampu((uint64_t)da.max_cqe / (2u * (uint64_t)t->npeers), 8, maxwr);
        if ((uint64_t)t->npeers * (*sq + *rq) > (uint64_t)da.max_cqe) {
            snprintf(why, wl, "RDMA device %s completion queue (%d entries) too small for %d peers",
                     t->devname, da.max_cqe, t->npeers);
            return -1;
        }
    }
    return 0;
}

/* A protection domain per peer (see struct vlink). */
static int alloc_pd(struct vt *t, struct vlink *L, const char *peer, char *why, size_t wl)
{
    L->pd = ibv_alloc_pd(t->ctx);
    if (!L->pd) {
        snprintf(why, wl, "cannot allocate a protection domain for %s on %s: %s", peer, t->devname,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* One completion channel and one CQ for every QP, both non-blocking. */
static int create_cq(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl)
{
    t->ch = ibv_create_comp_channel(t->ctx);
    if (!t->ch || set_nonblock(t->ch->fd) != 0 || set_nonblock(t->ctx->async_fd) != 0) {
        snprintf(why, wl, "cannot create a completion channel on %s: %s", t->devname, strerror(errno));
        return -1;
    }
    int cqe = (int)((uint64_t)t->npeers * (sq + rq) + 1);
    t->cq = ibv_create_cq(t->ctx, cqe, NULL, t->ch, 0);
    if (!t->cq) {
        snprintf(why, wl, "cannot create a completion queue of %d entries on %s: %s", cqe, t->devname,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Whether this process has CAP_IPC_LOCK in its effective set (bit 14 of
 * CapEff in /proc/self/status): then RLIMIT_MEMLOCK does not limit what it
 * may pin. -1: unknown. */
static int has_cap_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    int r = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long eff;
        if (sscanf(line, "CapEff: %llx", &eff) == 1) {
            r = (eff >> 14) & 1; /* CAP_IPC_LOCK */
            break;
        }
    }
    fclose(f);
    return r;
}

/* n bytes for a message: "512 B", "12.0 KiB", "4.00 MiB", "1.50 GiB". */
struct sz {
    char s[24];
};
static struct sz size_str(unsigned long long n)
{
    struct sz r;
    if (n < 1024)
        snprintf(r.s, sizeof r.s, "%llu B", n);
    else if (n < 1048576)
        snprintf(r.s, sizeof r.s, "%.1f KiB", n / 1024.0);
    else if (n < 1073741824ull)
        snprintf(r.s, sizeof r.s, "%.2f MiB", n / 1048576.0);
    else
        snprintf(r.s, sizeof r.s, "%.2f GiB", n / 1073741824.0);
    return r;
}

/* Why a registration of len bytes failed (errno e). memlock is blamed only
 * when it can be the cause: a finite limit below what this process needs
 * pinned (what it registered so far plus this request, and at least the
 * pool, the descriptor table and every peer's control buffers), and no
 * CAP_IPC_LOCK. */
static void reg_error(struct vt *t, const char *what, size_t len, int e, char *why, size_t wl)
{
    size_t dlen = (size_t)t->nslots * PB_VW_MSG_SIZE;
    size_t base = t->pool_len + dlen + t->ctrl_len;
    size_t need = t->reg_bytes + len > base ? t->reg_bytes + len : base;
    snprintf(why, wl, "cannot register %s (%s) with %s: %s; registered before: %s (pool %s, control buffers %s, "
             "descriptors %s)",
             what, size_str(len).s, t->devname, strerror(e), size_str(t->reg_bytes).s, size_str(t->pool_len).s,
             size_str(t->ctrl_len).s, size_str(dlen).s);
    size_t n = strlen(why);
    if (n + 1 >= wl || (e != ENOMEM && e != EAGAIN && e != EPERM))
        return;
    why += n;
    wl -= n;
    const char *other = "the device's or the system's pinning limits";
    struct rlimit rl;
    int cap = has_cap_ipc_lock();
    if (cap == 1)
        snprintf(why, wl, "; not memlock (this process has CAP_IPC_LOCK): %s", other);
    else if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        snprintf(why, wl, "; ulimit -l (memlock) must be unlimited or exceed %s, or %s", size_str(need).s, other);
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(why, wl, "; not memlock (ulimit -l is unlimited): %s", other);
    else if (rl.rlim_cur >= need)
        snprintf(why, wl, "; not memlock (ulimit -l is %s, above the %s needed): %s", size_str(rl.rlim_cur).s,
                 size_str(need).s, other);
    else
        snprintf(why, wl,
                 "; check `ulimit -l` (memlock, now %s): it must be unlimited or exceed %s "
                 "(limits.conf, Slurm PropagateResourceLimits)",
                 size_str(rl.rlim_cur).s, size_str(need).s);
}

/* Register len bytes at addr in pd; counts what is registered. */
static struct ibv_mr *reg(struct vt *t, struct ibv_pd *pd, void *addr, size_t len, int acc, const char *what,
                          char *why, size_t wl)
{
    struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, acc);
    if (!mr)
        reg_error(t, what, len, errno, why, wl);
    else
        t->reg_bytes += len;
    return mr;
}

/* The descriptor table and the control message buffers; the per-slot
 * tables of grants. The pool itself is registered per peer: the slots
 * granted to it when granted, all of it (local only) at its first put. */
static int alloc_memory(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl)
{
    size_t dlen = (size_t)t->nslots * PB_VW_MSG_SIZE;
    t->ctrl_len = (size_t)t->npeers * (sq + rq) * PB_VW_CTRL_SIZE;
    t->slot_mr = calloc(t->nslots, sizeof *t->slot_mr);
    t->sdesc_mr = calloc(t->nslots, sizeof *t->sdesc_mr);
    t->slot_owner = malloc(t->nslots * sizeof *t->slot_owner);
    if (posix_memalign((void **)&t->desc_table, 4096, dlen) != 0)
        t->desc_table = NULL;
    if (t->ctrl_len && posix_memalign((void **)&t->ctrl, 4096, t->ctrl_len) != 0)
        t->ctrl = NULL;
    if (!t->slot_mr || !t->sdesc_mr || !t->slot_owner || !t->desc_table || (t->ctrl_len && !t->ctrl)) {
        snprintf(why, wl, "out of memory for the descriptor table and control buffers");
        return -1;
    }
    memset(t->desc_table, 0, dlen);
    if (t->ctrl)
        memset(t->ctrl, 0, t->ctrl_len);
    for (uint32_t s = 0; s < t->nslots; s++)
        t->slot_owner[s] = -1;
    return 0;
}

static const char *leader_name(const struct pb_transport_cfg *cfg, int leader)
{
    return cfg->names && cfg->names[leader] ? cfg->names[leader] : "a peer";
}

/* An RC QP on the shared CQ, with inline data when the provider allows. */
static int create_qp(struct vt *t, struct vlink *L, uint32_t sq, uint32_t rq, const char *peer, char *why,
                     size_t wl)
{
    struct ibv_qp_init_attr qa = {
        .send_cq = t->cq,
        .recv_cq = t->cq,
        .cap = {.max_send_wr = sq, .max_recv_wr = rq, .max_send_sge = 1, .max_recv_sge = 1,
                .max_inline_data = PB_VW_CTRL_SIZE},
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0, /* selective signalling */
    };
    L->qp = ibv_create_qp(L->pd, &qa);
    if (!L->qp) {
        /* Some providers refuse inline data: retry without. */
        qa.cap.max_inline_data = 0;
        L->qp = ibv_create_qp(L->pd, &qa);
    }
    if (!L->qp) {
        snprintf(why, wl, "cannot create a queue pair for %s on %s: %s", peer, t->devname, strerror(errno));
        return -1;
    }
    if (L == &t->links[0] || qa.cap.max_inline_data < t->max_inline)
        t->max_inline = qa.cap.max_inline_data; /* what the provider granted, for every QP */
    return 0;
}

static int qp_to_init(struct vt *t, struct vlink *L, const char *peer, char *why, size_t wl)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = t->port,
                            .qp_access_flags = IBV_ACCESS_REMOTE_WRITE};
    int rc = ibv_modify_qp(L->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) {
        snprintf(why, wl, "cannot move the queue pair for %s to INIT on %s: %s", peer, t->devname, strerror(rc));
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
                              .length = PB_VW_CTRL_SIZE, .lkey = L->ctrl_mr->lkey};
        struct ibv_recv_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_RECV, li, k), .sg_list = &sge, .num_sge = 1}, *bad;
        int rc = ibv_post_recv(L->qp, &wr, &bad);
        if (rc != 0) {
            snprintf(why, wl, "cannot post receives for %s on %s: %s", peer, t->devname, strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Per peer: buffers, queue state, a QP in INIT with its receives posted. */
static int create_links(struct vt *t, const struct pb_transport_cfg *cfg, uint32_t sq, uint32_t rq, char *why,
                        size_t wl)
{
    for (int i = 0; i < t->npeers; i++) {
        struct vlink *L = &t->links[i];
        const char *peer = leader_name(cfg, L->leader);
        L->rq_depth = rq;
        L->sendbuf = t->ctrl + (size_t)i * (sq + rq) * PB_VW_CTRL_SIZE;
        L->recvbuf = L->sendbuf + (size_t)sq * PB_VW_CTRL_SIZE;
        if (pb_vw_link_init(&t->lks[i], sq) != 0) {
            snprintf(why, wl, "out of memory for link state");
            return -1;
        }
        if (alloc_pd(t, L, peer, why, wl) != 0)
            return -1;
        char what[192];
        snprintf(what, sizeof what, "the control buffers for %s", peer);
        L->ctrl_mr = reg(t, L->pd, L->sendbuf, (size_t)(sq + rq) * PB_VW_CTRL_SIZE, IBV_ACCESS_LOCAL_WRITE, what,
                         why, wl);
        if (!L->ctrl_mr || create_qp(t, L, sq, rq, peer, why, wl) != 0 || qp_to_init(t, L, peer, why, wl) != 0)
            return -1;
        L->psn = random_psn(i);
        if (post_receives(t, i, peer, why, wl) != 0)
            return -1;
    }
    return 0;
}

/* Everything local: device, memory, queue pairs in INIT with receives posted. */
/* The pool and the descriptor table are registered per peer later (at a
 * grant, at the first put), where a failure reaches the user only as a
 * short event. Pin both once now, then let go: what cannot be pinned at
 * all (a low memlock limit, a device limit) fails the set-up here, on
 * every leader, with the whole reason (reg_error). */
static int probe_pinning(struct vt *t, char *why, size_t wl)
{
    if (t->npeers == 0 || t->pool_len == 0)
        return 0;
    struct ibv_pd *pd = t->links[0].pd;
    struct ibv_mr *p = reg(t, pd, t->pool, t->pool_len, IBV_ACCESS_LOCAL_WRITE, "the slot pool", why, wl);
    struct ibv_mr *d = p ? reg(t, pd, t->desc_table, (size_t)t->nslots * PB_VW_MSG_SIZE, IBV_ACCESS_LOCAL_WRITE,
                               "the descriptor table", why, wl)
                         : NULL;
    if (d) {
        ibv_dereg_mr(d);
        t->reg_bytes -= (size_t)t->nslots * PB_VW_MSG_SIZE;
    }
    if (p) {
        ibv_dereg_mr(p);
        t->reg_bytes -= t->pool_len;
    }
    return d ? 0 : -1;
}

static int setup_local(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl)
{
    uint32_t sq, rq;
    if (open_device(t, cfg->rdma_dev, why, wl) != 0 || choose_gid(t, cfg->gid_index, why, wl) != 0 ||
        size_queues(t, &sq, &rq, why, wl) != 0 || create_cq(t, sq, rq, why, wl) != 0 ||
        alloc_memory(t, sq, rq, why, wl) != 0 || create_links(t, cfg, sq, rq, why, wl) != 0 ||
        probe_pinning(t, why, wl) != 0)
        return -1;
    return 0;
}

static void fill_info(const struct vt *t, struct pb_vw_info *in)
{
    memset(in, 0, sizeof *in);
    in->npeers = (uint32_t)t->npeers;
    in->nslots = t->nslots;
    in->slot_size = t->slot_size;
    in->pool_addr = (uintptr_t)t->pool;
    in->pool_rkey = 0; /* keys come with each credit */
    in->desc_addr = (uintptr_t)t->desc_table;
    in->desc_rkey = 0;
    in->rq_depth = t->npeers ? t->links[0].rq_depth : 1;
    in->lid = t->pattr.lid;
    in->port = t->port;
    in->link_layer = t->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? PB_VW_LL_ETH : PB_VW_LL_IB;
    in->mtu = (uint8_t)t->pattr.active_mtu;
    memcpy(in->gid, t->gid.raw, 16);
}

static int connect_link(struct vt *t, struct vlink *L, const struct pb_vw_info *pi,
                        const struct pb_vw_conn *pc, const char *peername, char *why, size_t wl)
{
    uint8_t ll = t->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? PB_VW_LL_ETH : PB_VW_LL_IB;
    if (pi->link_layer != ll) {
        snprintf(why, wl, "%s uses %s but we use %s: no RDMA path between them", peername,
                 pi->link_layer == PB_VW_LL_ETH ? "RoCE" : "InfiniBand", ll == PB_VW_LL_ETH ? "RoCE" : "InfiniBand");
        return -1;
    }
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = (enum ibv_mtu)(pi->mtu < t->pattr.active_mtu ? pi->mtu : t->pattr.active_mtu);
    a.dest_qp_num = pc->qpn;
    a.rq_psn = pc->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12; /* 0.64 ms: receives are reposted as soon as polled */
    a.ah_attr.dlid = pi->lid;
    a.ah_attr.port_num = t->port;
    if (t->use_grh) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, pi->gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)t->gid_index;
        a.ah_attr.grh.hop_limit = 64;
    }
    int rc = ibv_modify_qp(L->qp, &a,
                           IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                               IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) {
        snprintf(why, wl, "queue pair to %s failed to reach RTR: %s%s", peername, strerror(rc),
                 t->use_grh ? " (RoCE: check --gid-index and that both ends share an IP subnet or route)" : "");
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

/* ---------------------------------------------------------------- posting */

/* The whole pool, local access only, in this peer's PD: the lkey of the
 * sources of our puts to it. Registered at the first put, so a node that
 * never sends to a peer (most links of the root's receivers) pins nothing
 * more for it. */
static int ensure_send_mr(struct vt *t, int li, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    if (!L->send_mr)
        L->send_mr = reg(t, L->pd, t->pool, t->pool_len, IBV_ACCESS_LOCAL_WRITE, "the slot pool for sending", why,
                         wl);
    return L->send_mr ? 0 : -1;
}

/* A put: the descriptor (RDMA WRITE) then the data (WRITE WITH IMM), with
 * the rkeys of the peer's latest credit for that slot. */
static int post_put(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
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
    if (ensure_send_mr(t, li, why, wl) != 0)
        return -1;
    int sig0, sig1;
    uint64_t seq0 = pb_vw_sq_take(sq, 0, &sig0), seq1 = pb_vw_sq_take(sq, 1, &sig1);
    uint8_t *m = L->sendbuf + (seq0 % sq->depth) * PB_VW_CTRL_SIZE;
    memcpy(m, p.desc, PB_VW_MSG_SIZE);
    struct ibv_sge sge[2] = {
        {.addr = (uintptr_t)m, .length = PB_VW_MSG_SIZE, .lkey = L->ctrl_mr->lkey},
        {.addr = p.data_laddr, .length = p.len, .lkey = L->send_mr->lkey},
    };
    struct ibv_send_wr wr[2], *bad = NULL;
    memset(wr, 0, sizeof wr);
    wr[0].wr_id = pb_vw_wrid(PB_VW_K_DESC, li, seq0);
    wr[0].opcode = IBV_WR_RDMA_WRITE;
    wr[0].sg_list = &sge[0];
    wr[0].num_sge = 1;
    wr[0].send_flags = (sig0 ? IBV_SEND_SIGNALED : 0) | (t->max_inline >= PB_VW_MSG_SIZE ? IBV_SEND_INLINE : 0);
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
    return 0;
}

/* A control message: credit (with the slot's rkeys), notify, hello, ping. */
static int post_ctrl(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
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
    struct ibv_sge sge = {.addr = (uintptr_t)m, .length = PB_VW_CTRL_SIZE, .lkey = L->ctrl_mr->lkey};
    struct ibv_send_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_CTRL, li, seq), .sg_list = &sge, .num_sge = 1,
                             .opcode = IBV_WR_SEND,
                             .send_flags = (sig ? IBV_SEND_SIGNALED : 0) |
                                           (t->max_inline >= PB_VW_CTRL_SIZE ? IBV_SEND_INLINE : 0)},
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

static int post_req(struct vt *t, int li, const struct pb_vw_req *r, char *why, size_t wl)
{
    return r->kind == PB_VW_REQ_PUT ? post_put(t, li, r, why, wl) : post_ctrl(t, li, r, why, wl);
}

/* A credit gives the peer keys: not before it proved the job secret. */
static int must_wait(const struct pb_vw_link *lk, const struct pb_vw_req *r)
{
    return pb_vw_sq_room(&lk->sq) < pb_vw_req_wrs(r->kind) || (r->kind == PB_VW_REQ_CREDIT && lk->hello_wait);
}

/* Post what waited for queue space, in order. */
static void drain_backlog(struct vt *t, int li)
{
    struct pb_vw_link *lk = &t->lks[li];
    const struct pb_vw_req *r;
    char why[160];
    while (!lk->dead && (r = pb_vw_link_peek(lk)) && !must_wait(lk, r)) {
        if (post_req(t, li, r, why, sizeof why) != 0) {
            lk->dead = 1;
            pend_error(t, t->links[li].leader, errno, why);
            return;
        }
        pb_vw_link_pop(lk);
    }
}

static int submit(struct vt *t, int peer, const struct pb_vw_req *r)
{
    char why[160];
    if (peer < 0 || peer >= t->nleaders || t->leader_link[peer] < 0) {
        errno = EINVAL;
        return -1;
    }
    int li = t->leader_link[peer];
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
            pend_error(t, peer, EINVAL, why);
            errno = EINVAL;
            return -1;
        }
    }
    if (pb_vw_link_peek(lk) || must_wait(lk, r))
        return pb_vw_link_push(lk, r);
    if (post_req(t, li, r, why, sizeof why) != 0) {
        int e = errno;
        lk->dead = 1;
        pend_error(t, peer, e, why);
        errno = e;
        return -1;
    }
    return 0;
}

static int v_put(struct pb_transport *bt, int peer, uint32_t slot, uint32_t tag, const void *buf,
                 uint32_t len, uint64_t cookie)
{
    struct pb_vw_req r = {PB_VW_REQ_PUT, slot, tag, len, buf, cookie};
    return submit((struct vt *)bt, peer, &r);
}

/* The slot and its descriptor entry writable by link li's QP only: the
 * first grant of a slot registers both in that peer's PD; a grant to
 * another peer later (another schedule) moves them. */
static int grant_slot_mr(struct vt *t, int li, uint32_t slot, char *why, size_t wl)
{
    if (t->slot_owner[slot] == li)
        return 0;
    if (t->slot_mr[slot]) {
        ibv_dereg_mr(t->slot_mr[slot]);
        t->reg_bytes -= t->slot_size;
    }
    if (t->sdesc_mr[slot]) {
        ibv_dereg_mr(t->sdesc_mr[slot]);
        t->reg_bytes -= PB_VW_MSG_SIZE;
    }
    t->slot_mr[slot] = t->sdesc_mr[slot] = NULL;
    t->slot_owner[slot] = -1;
    int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    struct ibv_pd *pd = t->links[li].pd;
    t->slot_mr[slot] = reg(t, pd, (uint8_t *)t->pool + (size_t)slot * t->slot_size, t->slot_size, acc,
                           "a slot of the pool", why, wl);
    t->sdesc_mr[slot] = t->slot_mr[slot] ? reg(t, pd, t->desc_table + (size_t)slot * PB_VW_MSG_SIZE,
                                               PB_VW_MSG_SIZE, acc, "a descriptor entry", why, wl)
                                         : NULL;
    if (!t->sdesc_mr[slot])
        return -1;
    t->slot_owner[slot] = li;
    return 0;
}

static int v_grant(struct pb_transport *bt, int peer, uint32_t slot)
{
    struct vt *t = (struct vt *)bt;
    if (slot >= t->nslots) {
        errno = EINVAL;
        return -1;
    }
    if (peer < 0 || peer >= t->nleaders || t->leader_link[peer] < 0) {
        errno = EINVAL;
        return -1;
    }
    char why[512];
    int li = t->leader_link[peer];
    if (!t->lks[li].dead && grant_slot_mr(t, li, slot, why, sizeof why) != 0) {
        int e = errno;
        t->lks[li].dead = 1;
        pend_error(t, peer, e, why);
        errno = e;
        return -1;
    }
    struct pb_vw_req r = {PB_VW_REQ_CREDIT, slot, t->slot_mr[slot]->rkey, t->sdesc_mr[slot]->rkey, NULL, 0};
    return submit(t, peer, &r);
}

static int v_notify(struct pb_transport *bt, int peer, uint32_t code)
{
    struct pb_vw_req r = {PB_VW_REQ_NOTIFY, 0, code, 0, NULL, 0};
    return submit((struct vt *)bt, peer, &r);
}

/* ---------------------------------------------------------------- polling */

static const uint8_t *recv_buf(void *ctx, int li, uint64_t idx)
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
                          .lkey = L->ctrl_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = pb_vw_wrid(PB_VW_K_RECV, li, idx), .sg_list = &sge, .num_sge = 1}, *bad;
    int rc = ibv_post_recv(L->qp, &wr, &bad);
    if (rc != 0 && !t->lks[li].dead) {
        char why[160];
        snprintf(why, sizeof why, "reposting a receive failed: %s", strerror(rc));
        t->lks[li].dead = 1;
        pend_error(t, L->leader, rc, why);
    }
}

/* Poll at most max completions, each giving at most one event. */
static int drain_cq(struct vt *t, struct pb_event *ev, int max)
{
    struct ibv_wc wc[CQ_BATCH];
    int n = 0;
    while (n < max) {
        int want = max - n < CQ_BATCH ? max - n : CQ_BATCH;
        int got = ibv_poll_cq(t->cq, want, wc);
        if (got < 0) {
            pend_error(t, -1, EIO, "polling the completion queue failed");
            break;
        }
        double now = got > 0 ? now_ms() : 0;
        for (int i = 0; i < got; i++) {
            enum pb_vw_kind k;
            int cl;
            uint64_t low;
            pb_vw_wrid_split(wc[i].wr_id, &k, &cl, &low);
            if (cl >= 0 && cl < t->npeers)
                t->links[cl].last_seen = now;
            struct pb_vw_cqe c = {
                .wr_id = wc[i].wr_id,
                .ok = wc[i].status == IBV_WC_SUCCESS,
                .status_str = ibv_wc_status_str(wc[i].status),
                .vendor_err = wc[i].vendor_err,
                .op = wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM ? PB_VW_OP_RECV_IMM
                      : (wc[i].opcode & IBV_WC_RECV)            ? PB_VW_OP_RECV
                                                                : PB_VW_OP_SEND_DONE,
                .imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc[i].imm_data) : 0,
                .byte_len = wc[i].byte_len,
            };
            int rl;
            int64_t ri;
            if (pb_vw_handle_cqe(&t->st, &c, &ev[n], &rl, &ri) == 1)
                n++;
            if (rl >= 0)
                repost_recv(t, rl, (uint64_t)ri);
        }
        if (got < want)
            break;
    }
    for (int li = 0; li < t->npeers; li++)
        drain_backlog(t, li);
    return n;
}

static void handle_async(struct vt *t)
{
    struct ibv_async_event ae;
    char what[160];
    while (ibv_get_async_event(t->ctx, &ae) == 0) {
        int peer = -1;
        switch (ae.event_type) {
        case IBV_EVENT_QP_FATAL:
        case IBV_EVENT_QP_REQ_ERR:
        case IBV_EVENT_QP_ACCESS_ERR:
            for (int i = 0; i < t->npeers; i++)
                if (t->links[i].qp == ae.element.qp)
                    peer = i;
            if (peer >= 0 && !t->lks[peer].dead) {
                snprintf(what, sizeof what, "queue pair error: %s", ibv_event_type_str(ae.event_type));
                t->lks[peer].dead = 1;
                pend_error(t, t->links[peer].leader, EIO, what);
            }
            break;
        case IBV_EVENT_PORT_ERR:
        case IBV_EVENT_DEVICE_FATAL:
        case IBV_EVENT_CQ_ERR:
            snprintf(what, sizeof what, "RDMA device %s port %u: %s", t->devname, t->port,
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
    for (int li = 0; li < t->npeers; li++) {
        struct vlink *L = &t->links[li];
        if (t->lks[li].dead || now - L->last_seen < KEEPALIVE_MS || now - L->last_ping < KEEPALIVE_MS)
            continue;
        L->last_ping = now;
        if (!pb_vw_link_peek(&t->lks[li])) { /* a backlog means sends are stuck: they will fail anyway */
            struct pb_vw_req r = {.kind = PB_VW_REQ_PING};
            (void)submit(t, L->leader, &r);
        }
    }
}

static int v_poll(struct pb_transport *bt, struct pb_event *ev, int max, int timeout_ms)
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
        if (!t->cq_armed) {
            /* Arm, then look once more: a completion may have slipped in
             * between the empty poll and the arming. */
            if (ibv_req_notify_cq(t->cq, 0) != 0) {
                errno = EIO;
                return -1;
            }
            t->cq_armed = 1;
            continue;
        }
        int wait = KEEPALIVE_MS / 4; /* wake up for the keepalives */
        if (timeout_ms > 0) {
            double left = deadline - now_ms();
            if (left <= 0)
                return 0;
            if (left + 1 < wait)
                wait = (int)left + 1;
        }
        struct pollfd pf[2] = {{.fd = t->ch->fd, .events = POLLIN}, {.fd = t->ctx->async_fd, .events = POLLIN}};
        int pr = poll(pf, 2, wait);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pf[1].revents)
            handle_async(t);
        if (pf[0].revents) {
            struct ibv_cq *ecq;
            void *ectx;
            if (ibv_get_cq_event(t->ch, &ecq, &ectx) == 0) {
                ibv_ack_cq_events(ecq, 1);
                t->cq_armed = 0;
            }
        }
    }
}

static int v_close(struct pb_transport *bt)
{
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
    size_t np = (size_t)(cfg->npeers > 0 ? cfg->npeers : 1);
    struct vt *t = calloc(1, sizeof *t);
    if (t) {
        t->base.ops = &verbs_ops;
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

/* Room for one round's messages each way, and the per-partner records. */
static int xround_alloc(struct xround *x, int npeers)
{
    size_t np = (size_t)(npeers > 0 ? npeers : 1);
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
    if (*ok) {
        struct pb_vw_info mine;
        fill_info(t, &mine);
        for (int i = 0; i < t->npeers; i++) {
            struct vlink *L = &t->links[i];
            x->sent[i] = (struct pb_vw_conn){(uint32_t)L->leader, L->qp->qp_num, L->psn};
            pb_vw_offer_pack(&mine, &x->sent[i], x->out + (size_t)i * PB_VW_OFFER_SIZE);
        }
    }
    if (round_with_peers(cfg, "endpoint exchange", *ok, why, x, PB_VW_OFFER_SIZE, err, errlen) != 0)
        return -1;
    for (int i = 0; *ok && i < t->npeers; i++) {
        char w[256];
        if (pb_vw_offer_unpack(x->in + (size_t)i * PB_VW_OFFER_SIZE, (uint32_t)cfg->self, &x->infos[i], &x->got[i],
                               w, sizeof w) != 0) {
            snprintf(why, wl, "bad RDMA endpoint from %s: %s", leader_name(cfg, t->links[i].leader), w);
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
    for (int i = 0; i < t->npeers; i++) {
        struct vlink *L = &t->links[i];
        const char *peer = leader_name(cfg, L->leader);
        t->peer_nslots[i] = x->infos[i].nslots;
        if (connect_link(t, L, &x->infos[i], &x->got[i], peer, why, wl) != 0)
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
    for (int i = 0; *ok && i < t->npeers; i++)
        pb_vw_echo_pack(&x->sent[i], &x->got[i], x->out + (size_t)i * PB_VW_ECHO_SIZE);
    if (round_with_peers(cfg, "queue pair exchange", *ok, why, x, PB_VW_ECHO_SIZE, err, errlen) != 0)
        return -1;
    for (int i = 0; *ok && i < t->npeers; i++) {
        char w[320];
        if (pb_vw_echo_check(x->in + (size_t)i * PB_VW_ECHO_SIZE, &x->sent[i], &x->got[i], w, sizeof w) != 0) {
            snprintf(why, wl, "with %s: %s", leader_name(cfg, t->links[i].leader), w);
            *ok = 0;
        }
    }
    if (*ok && connect_links(t, cfg, x, why, wl) != 0)
        *ok = 0;
    return 0;
}

static int submit(struct vt *t, int peer, const struct pb_vw_req *r);

/* Connected: hand the completion handler its state, say hello on every
 * link (the first message, proving the job secret); say what we use. */
static void finish_open(struct vt *t, const struct pb_transport_cfg *cfg, size_t xbytes)
{
    t->st = (struct pb_vw_state){
        .npeers = t->npeers,
        .peer_leader = t->peer_leader,
        .links = t->lks,
        .peer_nslots = t->peer_nslots,
        .desc_table = t->desc_table,
        .nslots = t->nslots,
        .slot_size = t->slot_size,
        .recv_buf = recv_buf,
        .ctx = t,
    };
    double now = now_ms();
    for (int i = 0; i < t->npeers; i++) {
        struct pb_vw_req r = {.kind = PB_VW_REQ_HELLO};
        t->links[i].last_seen = t->links[i].last_ping = now;
        (void)submit(t, t->links[i].leader, &r); /* a failure is pending for the first poll */
    }
    if (!cfg->verbose)
        return;
    char gid[64] = "";
    if (t->use_grh)
        inet_ntop(AF_INET6, t->gid.raw, gid, sizeof gid);
    fprintf(stderr,
            "p2pbcast: %s: verbs on %s:%u (%s, LID %u%s%s, MTU %d), %d queue pair%s, "
            "pool on NUMA node %d, device on NUMA node %d; set-up exchanged %zu bytes with its partners\n",
            t->self, t->devname, t->port, t->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand",
            t->pattr.lid, t->use_grh ? ", GID " : "", gid, 128 << t->pattr.active_mtu, t->npeers,
            t->npeers == 1 ? "" : "s", pb_topo_mem_numa(t->pool, t->pool_len), pb_topo_dev_numa(t->devname),
            xbytes);
}

/* Like rc_pingpong: open the device, query the port, allocate a PD, register
 * memory, create the CQ and QPs (setup_local), then three rounds with the
 * partners only: offers, echoes and connect, the vote that every QP reached
 * RTS. Collective: every leader goes through every round. */
struct pb_transport *pb_verbs_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen)
{
    char why[512] = "";
    char me[128];
    selfname(cfg, me, sizeof me);

    struct vt *t = vt_new(cfg, me, why, sizeof why);
    struct xround x = {0};
    int ok = t && !why[0] && setup_local(t, cfg, why, sizeof why) == 0;
    if (ok && xround_alloc(&x, cfg->npeers) != 0) {
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
    finish_open(t, cfg, x.bytes);
    xround_free(&x);
    return &t->base;
}

int pb_verbs_available(char *why, size_t whylen)
{
    int n = 0;
    errno = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) {
        int e = errno;
        nodev_reason(list, e, why, whylen);
        if (list)
            ibv_free_device_list(list);
        return 0;
    }
    int found = 0;
    size_t used = 0;
    why[0] = '\0';
    for (int i = 0; i < n && !found; i++) {
        if (strncmp(ibv_get_device_name(list[i]), "softverbs", 9) == 0 && !getenv("SOFTVERBS"))
            continue; /* never chosen automatically outside tests/softverbs/softverbs-run */
        struct ibv_context *ctx = ibv_open_device(list[i]);
        struct ibv_device_attr da;
        if (!ctx)
            continue;
        if (ibv_query_device(ctx, &da) == 0)
            for (uint8_t p = 1; p <= da.phys_port_cnt && !found; p++) {
                struct ibv_port_attr pa;
                if (port_ok(ctx, p, &pa)) {
                    snprintf(why, whylen, "%s:%u active (%s)", ibv_get_device_name(list[i]), p,
                             pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand");
                    found = 1;
                } else {
                    appendf(why, whylen, &used, "%s%s:%u %s", used ? ", " : "no active RDMA port: ",
                            ibv_get_device_name(list[i]), p, ibv_port_state_str(pa.state));
                }
            }
        ibv_close_device(ctx);
    }
    if (!found && !why[0])
        snprintf(why, whylen, "RDMA devices present but none could be opened");
    ibv_free_device_list(list);
    return found;
}

#endif /* HAVE_VERBS */
