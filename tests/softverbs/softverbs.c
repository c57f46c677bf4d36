/* softverbs.c — a software RC verbs device for tests, in place of libibverbs.
 *
 * One device, one active port. Every context listens on a TCP socket (on
 * SOFTVERBS_IP, default 127.0.0.1); its queue pair numbers are
 * (listening port << 8 | index), so the QP number and the destination
 * address (the IPv4 address in a RoCE GID, else 127.0.0.1) are all a
 * requester needs to reach its responder. A QP that reaches RTS opens one
 * TCP connection to its destination QP and carries its requests on it
 * (SEND, SEND_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM), each answered in order
 * by ACK, RNR NAK, sequence/not-ready NAK or an access/operation error. A
 * progress thread per context moves the bytes; a mutex per context guards
 * every object of the context.
 *
 * Written from the man pages and the public header, not from rdma-core.
 */

#include "sv_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ config */

struct sv_cfg sv_cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;

static long long envll(const char *n, long long dflt)
{
    const char *v = getenv(n);
    if (!v || !*v)
        return dflt;
    char *end;
    long long x = strtoll(v, &end, 0);
    return *end ? dflt : x;
}

/* The devices: names from SOFTVERBS_DEVNAME (a comma list; a name not
 * starting with "softverbs" falls back to softverbsI), else SOFTVERBS_NDEV
 * of them (softverbs0, softverbs1, ...); each port's active_speed from
 * SOFTVERBS_ACTIVE_SPEED (a comma list, the last repeated; default 32, EDR). */
static void devices_init(void)
{
    const char *v = getenv("SOFTVERBS_DEVNAME");
    sv_cfg.ndev = 0;
    for (const char *p = v && *v ? v : NULL; p && sv_cfg.ndev < SV_MAX_DEV;) {
        const char *comma = strchr(p, ',');
        int len = comma ? (int)(comma - p) : (int)strlen(p);
        char *name = sv_cfg.devname[sv_cfg.ndev];
        if (len > 0 && len < 64 && strncmp(p, "softverbs", 9) == 0)
            snprintf(name, 64, "%.*s", len, p);
        else
            snprintf(name, 64, "softverbs%d", sv_cfg.ndev);
        sv_cfg.ndev++;
        p = comma ? comma + 1 : NULL;
    }
    if (sv_cfg.ndev == 0) {
        long long n = envll("SOFTVERBS_NDEV", 1);
        sv_cfg.ndev = n < 1 ? 1 : n > SV_MAX_DEV ? SV_MAX_DEV : (int)n;
        for (int i = 0; i < sv_cfg.ndev; i++)
            snprintf(sv_cfg.devname[i], 64, "softverbs%d", i);
    }
    v = getenv("SOFTVERBS_ACTIVE_SPEED");
    long speed = 32;
    for (int i = 0; i < sv_cfg.ndev; i++) {
        if (v && *v) {
            char *end;
            long x = strtol(v, &end, 0);
            if (end != v && x > 0 && x < 256)
                speed = x;
            v = *end == ',' ? end + 1 : NULL;
        }
        sv_cfg.speed[i] = (uint8_t)speed;
    }
}

static void cfg_init(void)
{
    const char *v;
    sv_cfg.enabled = envll("SOFTVERBS", 0) != 0;
    v = getenv("SOFTVERBS_MODE");
    sv_cfg.roce = v && strcmp(v, "roce") == 0;
    devices_init();
    v = getenv("SOFTVERBS_IP");
    struct in_addr a;
    snprintf(sv_cfg.ip, sizeof sv_cfg.ip, "%s", v && inet_pton(AF_INET, v, &a) == 1 ? v : "127.0.0.1");
    sv_cfg.lid = (uint16_t)envll("SOFTVERBS_LID", 1);
    sv_cfg.cq_delay_us = (unsigned)envll("SOFTVERBS_FAULT_CQ_DELAY_US", 0);
    sv_cfg.reorder = envll("SOFTVERBS_FAULT_REORDER", 0) != 0;
    sv_cfg.memlock = envll("SOFTVERBS_FAULT_MEMLOCK", -1);
    sv_cfg.die_writes = envll("SOFTVERBS_FAULT_KILL_AFTER_WRITES", -1);
    sv_cfg.die_bytes = envll("SOFTVERBS_FAULT_KILL_AFTER_BYTES", -1);
    sv_cfg.drop = envll("SOFTVERBS_FAULT_DROP", 0) != 0;
    sv_cfg.no_mw = envll("SOFTVERBS_NO_MW", 0) != 0;
    /* A link that connects but whose puts fail, as hardware reports it. */
    v = getenv("SOFTVERBS_FAULT_PUT");
    sv_cfg.put_status = !v || !*v                ? 0
                        : strcmp(v, "length") == 0 ? IBV_WC_REM_INV_REQ_ERR
                        : strcmp(v, "rnr") == 0    ? IBV_WC_RNR_RETRY_EXC_ERR
                                                   : IBV_WC_REM_ACCESS_ERR;
    v = getenv("SOFTVERBS_FAULT_PUT_DEV");
    snprintf(sv_cfg.put_dev, sizeof sv_cfg.put_dev, "%s", v ? v : "");
    sv_cfg.put_after = envll("SOFTVERBS_FAULT_PUT_AFTER", 0);
    sv_cfg.max_timeout_ms = (unsigned)envll("SOFTVERBS_MAX_TIMEOUT_MS", 100);
    sv_cfg.debug = envll("SOFTVERBS_DEBUG", 0) != 0;
    sv_cfg.max_qp_wr = (int)envll("SOFTVERBS_MAX_QP_WR", SV_MAX_QP_WR);
    sv_cfg.max_cqe = (int)envll("SOFTVERBS_MAX_CQE", SV_MAX_CQE);
    long long mm = envll("SOFTVERBS_MAX_MSG_SZ", SV_MAX_MSG);
    sv_cfg.max_msg = mm < 1 || mm > SV_MAX_MSG ? SV_MAX_MSG : (uint32_t)mm;
    if (sv_cfg.max_qp_wr < 1 || sv_cfg.max_qp_wr > SV_MAX_QP_WR)
        sv_cfg.max_qp_wr = SV_MAX_QP_WR;
    if (sv_cfg.max_cqe < 1 || sv_cfg.max_cqe > SV_MAX_CQE)
        sv_cfg.max_cqe = SV_MAX_CQE;
    /* Faults of the dying kind hit one rank only when SOFTVERBS_FAULT_RANK
     * is set (the rank is taken from Open MPI's or PMI's environment). */
    long long fr = envll("SOFTVERBS_FAULT_RANK", -1);
    if (fr >= 0) {
        long long me = envll("OMPI_COMM_WORLD_RANK", envll("PMI_RANK", -2));
        if (me != fr)
            sv_cfg.die_writes = sv_cfg.die_bytes = -1;
    }
}

void sv_cfg_load(void)
{
    pthread_once(&cfg_once, cfg_init);
}

void sv_dbg(const char *fmt, ...)
{
    if (!sv_cfg.debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "softverbs[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* ------------------------------------------------------------ objects */

struct sv_ctx;
struct sv_qp;

struct sv_mr {
    struct ibv_mr mr;
    int access;
    struct sv_mr *next;
};

/* A type 2 memory window: remote access to [addr, addr+len) of an MR that
 * allows MW_BIND, through the one QP it is bound to (bound by a BIND_MW
 * work request; dealloc invalidates it). */
struct sv_mw {
    struct ibv_mw mw;
    struct sv_qp *qp; /* bound to, NULL: free */
    uint64_t addr, len;
    int access;
    struct sv_mw *next;
};

struct sv_cqe {
    struct ibv_wc wc;
    struct sv_qp *qp;
    int is_send;
    uint64_t idx; /* send queue index, to free the slot when polled */
    uint64_t seq;
    double visible_at;
};

struct sv_cq {
    struct ibv_cq cq;
    struct sv_cqe *ring;
    int cap, head, n;
    uint64_t next_seq, arm_seq;
    int armed;
    int overrun;
    uint32_t events_taken; /* under cq.mutex */
    struct sv_cq *next;
};

struct sv_chan {
    struct ibv_comp_channel ch;
    int wfd;
    struct sv_cq **evq;
    int evn, evcap;
    int ncq;
    struct sv_chan *next;
};

struct sv_swqe {
    uint64_t wr_id;
    enum ibv_wr_opcode opcode;
    unsigned flags;
    int nsge;
    struct ibv_sge sge[SV_MAX_SGE];
    uint32_t len;
    uint8_t inl[SV_MAX_INLINE];
    uint64_t raddr;
    uint32_t rkey;
    uint32_t imm;
    int rnr_left;
};

struct sv_rwqe {
    uint64_t wr_id;
    int nsge;
    struct ibv_sge sge[SV_MAX_SGE];
};

struct sv_conn {
    int fd;
    int out;            /* requester side (ours), else responder side */
    struct sv_qp *qp;   /* requester side: the QP it serves */
    uint32_t dst_qpn;   /* responder side, from the hello */
    uint32_t src_qpn;
    uint16_t slid;
    int hello;
    uint8_t hdr[32];
    size_t hgot;
    uint8_t *pay;
    size_t pgot, plen;
    uint8_t *ob;
    size_t olen, ooff, ocap;
    int dead;
    struct sv_conn *next;
};

struct sv_qp {
    struct ibv_qp qp;
    struct sv_ctx *c;
    int idx;
    struct ibv_qp_cap cap;
    int sq_sig_all;
    int access;
    uint8_t port;
    uint16_t pkey_index;
    struct ibv_ah_attr ah;
    enum ibv_mtu mtu;
    uint32_t dest_qpn, rq_psn, sq_psn;
    uint8_t min_rnr_timer, timeout, retry_cnt, rnr_retry, max_rd_atomic, max_dest_rd_atomic;

    struct sv_swqe *sq;
    uint64_t sq_tail, sq_tx, sq_head, sq_retired, psn_base;
    uint64_t ignore_n;
    double stall_until;
    int retry_left;
    struct sv_conn *conn;
    int conn_dead;

    struct sv_rwqe *rq;
    uint64_t rq_head, rq_tail;
    uint32_t exp_psn;
    struct sv_qp *next;
};

struct sv_async {
    struct ibv_async_event ev;
};

struct sv_ctx {
    struct verbs_context vctx; /* ibv_context last: what applications hold */
    int dev;                   /* index of its device: QPs connect only to QPs of the same index (one rail) */
    pthread_mutex_t lk;
    pthread_t thr;
    int stop;
    int lfd;
    uint16_t lport;
    int wakefd;
    int async_wfd;
    struct sv_async *aq;
    int an, acap;
    struct sv_mr *mrs;
    struct sv_mw *mws;
    struct sv_cq *cqs;
    struct sv_chan *chans;
    struct sv_qp *qps;
    struct sv_conn *conns;
    unsigned char qp_used[SV_MAX_QP + 1];
    uint32_t next_key;
    int npd;
};

static struct sv_ctx *ctx_of(struct ibv_context *ic)
{
    return (struct sv_ctx *)((char *)ic - offsetof(struct sv_ctx, vctx.context));
}

#define CTX(ic) ctx_of(ic)
#define QP(q) ((struct sv_qp *)(q))
#define CQ(q) ((struct sv_cq *)(q))

/* Process-wide registered bytes, for the memlock fault. */
static pthread_mutex_t g_lk = PTHREAD_MUTEX_INITIALIZER;
static long long g_locked;
static long long g_writes, g_bytes;
static _Atomic int g_dropped;

/* ------------------------------------------------------------ device */

static struct ibv_device g_dev[SV_MAX_DEV];
static uint64_t g_guid[SV_MAX_DEV];

static void dev_init(void)
{
    sv_cfg_load();
    memset(g_dev, 0, sizeof g_dev);
    struct in_addr a;
    inet_pton(AF_INET, sv_cfg.ip, &a);
    for (int i = 0; i < sv_cfg.ndev; i++) {
        struct ibv_device *d = &g_dev[i];
        const char *name = sv_cfg.devname[i];
        d->node_type = IBV_NODE_CA;
        d->transport_type = IBV_TRANSPORT_IB;
        snprintf(d->name, sizeof d->name, "%s", name);
        snprintf(d->dev_name, sizeof d->dev_name, "uverbs_%.50s", name);
        snprintf(d->dev_path, sizeof d->dev_path, "/nonexistent/softverbs/%s", name);
        snprintf(d->ibdev_path, sizeof d->ibdev_path, "/nonexistent/softverbs/%s", name);
        g_guid[i] = 0x02005e0000000000ull | ((uint64_t)ntohl(a.s_addr) << 8) | (uint64_t)(i + 1);
    }
}
static pthread_once_t dev_once = PTHREAD_ONCE_INIT;

/* Which of our devices d is; -1 none. */
static int dev_index(const struct ibv_device *d)
{
    for (int i = 0; i < sv_cfg.ndev; i++)
        if (d == &g_dev[i])
            return i;
    return -1;
}

SV_EXPORT struct ibv_device **ibv_get_device_list(int *num)
{
    pthread_once(&dev_once, dev_init);
    int n = sv_cfg.enabled ? sv_cfg.ndev : 0;
    struct ibv_device **l = calloc(SV_MAX_DEV + 1, sizeof *l);
    if (!l) {
        errno = ENOMEM;
        return NULL;
    }
    for (int i = 0; i < n; i++)
        l[i] = &g_dev[i];
    if (num)
        *num = n;
    return l;
}

SV_EXPORT void ibv_free_device_list(struct ibv_device **list)
{
    free(list);
}

SV_EXPORT const char *ibv_get_device_name(struct ibv_device *d)
{
    return d ? d->name : NULL;
}

SV_EXPORT __be64 ibv_get_device_guid(struct ibv_device *d)
{
    int i = dev_index(d);
    return htobe64(g_guid[i < 0 ? 0 : i]);
}

SV_EXPORT int ibv_get_device_index(struct ibv_device *d)
{
    return dev_index(d);
}

static void gid_fill(int dev, int index, union ibv_gid *g, int *type_v2)
{
    memset(g, 0, sizeof *g);
    *type_v2 = 0;
    if (!sv_cfg.roce || index < 2) {
        /* fe80::guid, the link-local GID (IB GID 0, RoCE v1/v2 0/1) */
        g->raw[0] = 0xfe;
        g->raw[1] = 0x80;
        uint64_t be = htobe64(g_guid[dev]);
        memcpy(g->raw + 8, &be, 8);
        *type_v2 = sv_cfg.roce && index == 1;
        return;
    }
    /* ::ffff:a.b.c.d (RoCE v1 at 2, v2 at 3) */
    g->raw[10] = 0xff;
    g->raw[11] = 0xff;
    inet_pton(AF_INET, sv_cfg.ip, g->raw + 12);
    *type_v2 = index == 3;
}

static int gid_tbl_len(void)
{
    return sv_cfg.roce ? 4 : 1;
}

/* ------------------------------------------------------------ small helpers */

static int set_cloexec_nb(int fd, int nb)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    if (nb) {
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -1;
    }
    return 0;
}

static void wake(struct sv_ctx *c)
{
    uint64_t one = 1;
    ssize_t r = write(c->wakefd, &one, sizeof one);
    (void)r;
}

static void async_push(struct sv_ctx *c, enum ibv_event_type t, void *elem)
{
    if (c->an == c->acap) {
        int nc = c->acap ? 2 * c->acap : 16;
        struct sv_async *n = realloc(c->aq, (size_t)nc * sizeof *n);
        if (!n)
            return;
        c->aq = n;
        c->acap = nc;
    }
    struct ibv_async_event *e = &c->aq[c->an++].ev;
    memset(e, 0, sizeof *e);
    e->event_type = t;
    switch (t) {
    case IBV_EVENT_CQ_ERR:
        e->element.cq = elem;
        break;
    case IBV_EVENT_PORT_ACTIVE:
    case IBV_EVENT_PORT_ERR:
        e->element.port_num = 1;
        break;
    case IBV_EVENT_DEVICE_FATAL:
        break;
    default:
        e->element.qp = elem;
        break;
    }
    char b = 1;
    ssize_t r = write(c->async_wfd, &b, 1);
    (void)r;
    sv_dbg("async event %d", (int)t);
}

static int mr_check(struct sv_ctx *c, struct ibv_pd *pd, uint32_t key, int remote, uint64_t addr, uint64_t len,
                    int need)
{
    for (struct sv_mr *m = c->mrs; m; m = m->next) {
        if ((remote ? m->mr.rkey : m->mr.lkey) != key)
            continue;
        if (m->mr.pd != pd || (m->access & need) != need)
            return -1;
        uint64_t b = (uintptr_t)m->mr.addr;
        if (addr < b || len > m->mr.length || addr - b > m->mr.length - len)
            return -1;
        return 0;
    }
    return -1;
}

/* Remote access through a window: bound to the responder QP q, in range. */
static int mw_check(struct sv_ctx *c, struct sv_qp *q, uint32_t rkey, uint64_t addr, uint64_t len, int need)
{
    for (struct sv_mw *w = c->mws; w; w = w->next) {
        if (w->mw.rkey != rkey)
            continue;
        if (w->qp != q || (w->access & need) != need)
            return -1;
        if (addr < w->addr || len > w->len || addr - w->addr > w->len - len)
            return -1;
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------ CQ */

static int cqe_visible(const struct sv_cqe *e, double now)
{
    return e->visible_at <= now;
}

static void chan_push(struct sv_ctx *c, struct sv_chan *ch, struct sv_cq *cq)
{
    (void)c;
    if (ch->evn == ch->evcap) {
        int nc = ch->evcap ? 2 * ch->evcap : 16;
        struct sv_cq **n = realloc(ch->evq, (size_t)nc * sizeof *n);
        if (!n)
            return;
        ch->evq = n;
        ch->evcap = nc;
    }
    ch->evq[ch->evn++] = cq;
    char b = 1;
    ssize_t r = write(ch->wfd, &b, 1);
    (void)r;
}

/* An armed CQ raises one event when a completion added after the arming
 * becomes visible. Returns the time of the next pending check, or 0. */
static double cq_signal(struct sv_ctx *c, struct sv_cq *cq, double now)
{
    double next = 0;
    if (!cq->armed || !cq->cq.channel)
        return 0;
    for (int i = 0; i < cq->n; i++) {
        struct sv_cqe *e = &cq->ring[(cq->head + i) % cq->cap];
        if (e->seq < cq->arm_seq)
            continue;
        if (!cqe_visible(e, now)) {
            next = e->visible_at;
            break;
        }
        cq->armed = 0;
        chan_push(c, (struct sv_chan *)cq->cq.channel, cq);
        break;
    }
    return next;
}

static void qp_to_error(struct sv_qp *q);

static void cq_push(struct sv_qp *q, struct sv_cq *cq, int is_send, uint64_t idx, const struct ibv_wc *wc)
{
    struct sv_ctx *c = q->c;
    if (cq->overrun)
        return;
    if (cq->n == cq->cap) {
        /* Overrun: the CQ is in error, the QP that overflowed it too. */
        cq->overrun = 1;
        sv_dbg("CQ overrun (%d entries)", cq->cap);
        async_push(c, IBV_EVENT_CQ_ERR, &cq->cq);
        if (q->qp.state != IBV_QPS_ERR) {
            async_push(c, IBV_EVENT_QP_FATAL, &q->qp);
            qp_to_error(q);
        }
        return;
    }
    struct sv_cqe *e = &cq->ring[(cq->head + cq->n) % cq->cap];
    cq->n++;
    e->wc = *wc;
    e->qp = q;
    e->is_send = is_send;
    e->idx = idx;
    e->seq = cq->next_seq++;
    double now = now_us();
    e->visible_at = now + sv_cfg.cq_delay_us;
    cq_signal(c, cq, now);
    if (sv_cfg.cq_delay_us)
        wake(c);
}

static enum ibv_wc_opcode send_wc_op(enum ibv_wr_opcode op)
{
    switch (op) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM:
        return IBV_WC_RDMA_WRITE;
    case IBV_WR_RDMA_READ:
        return IBV_WC_RDMA_READ;
    case IBV_WR_BIND_MW:
        return IBV_WC_BIND_MW;
    default:
        return IBV_WC_SEND;
    }
}

static void send_done(struct sv_qp *q, uint64_t idx, enum ibv_wc_status st)
{
    struct sv_swqe *w = &q->sq[idx % q->cap.max_send_wr];
    if (st == IBV_WC_SUCCESS && !(q->sq_sig_all || (w->flags & IBV_SEND_SIGNALED)))
        return;
    struct ibv_wc wc;
    memset(&wc, 0, sizeof wc);
    wc.wr_id = w->wr_id;
    wc.status = st;
    wc.opcode = send_wc_op(w->opcode);
    wc.qp_num = q->qp.qp_num;
    if (st != IBV_WC_SUCCESS && st != IBV_WC_WR_FLUSH_ERR)
        wc.vendor_err = 0x81;
    cq_push(q, CQ(q->qp.send_cq), 1, idx, &wc);
}

static void recv_flush_one(struct sv_qp *q)
{
    struct sv_rwqe *r = &q->rq[q->rq_head % q->cap.max_recv_wr];
    struct ibv_wc wc;
    memset(&wc, 0, sizeof wc);
    wc.wr_id = r->wr_id;
    wc.status = IBV_WC_WR_FLUSH_ERR;
    wc.opcode = IBV_WC_RECV;
    wc.qp_num = q->qp.qp_num;
    q->rq_head++;
    cq_push(q, CQ(q->qp.recv_cq), 0, 0, &wc);
}

static void conn_close(struct sv_conn *k)
{
    if (k && !k->dead) {
        k->dead = 1;
        shutdown(k->fd, SHUT_RDWR);
    }
}

/* Move to ERR: every outstanding work request completes with FLUSH_ERR. */
static void qp_to_error(struct sv_qp *q)
{
    q->qp.state = IBV_QPS_ERR;
    while (q->sq_head < q->sq_tail)
        send_done(q, q->sq_head++, IBV_WC_WR_FLUSH_ERR);
    q->sq_tx = q->sq_head;
    while (q->rq_head < q->rq_tail)
        recv_flush_one(q);
    if (q->conn) {
        conn_close(q->conn);
        q->conn->qp = NULL;
        q->conn = NULL;
    }
}

/* The request at sq_head failed with st: it completes in error, the QP
 * moves to ERR and flushes the rest. */
static void qp_fail(struct sv_qp *q, enum ibv_wc_status st)
{
    sv_dbg("qp %#x: %s", q->qp.qp_num, ibv_wc_status_str(st));
    if (q->sq_head < q->sq_tail)
        send_done(q, q->sq_head++, st);
    qp_to_error(q);
}

/* Remove the completions of a QP that goes away (or is reset). */
static void cq_clean(struct sv_cq *cq, struct sv_qp *q)
{
    if (!cq)
        return;
    int w = 0;
    for (int i = 0; i < cq->n; i++) {
        struct sv_cqe e = cq->ring[(cq->head + i) % cq->cap];
        if (e.qp == q)
            continue;
        cq->ring[(cq->head + w) % cq->cap] = e;
        w++;
    }
    cq->n = w;
}

/* ------------------------------------------------------------ context */

static void *progress(void *arg);
static int conn_write(struct sv_conn *k);
static void ops_init(struct ibv_context *ic);

static int q_port(struct ibv_context *ic, uint8_t port, struct ibv_port_attr *pa, size_t len);

SV_EXPORT struct ibv_context *ibv_open_device(struct ibv_device *dev)
{
    pthread_once(&dev_once, dev_init);
    if (dev_index(dev) < 0) {
        errno = ENODEV;
        return NULL;
    }
    struct sv_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    int ap[2] = {-1, -1};
    c->lfd = c->wakefd = -1;
    pthread_mutex_init(&c->lk, NULL);
    struct ibv_context *ic = &c->vctx.context;
    ic->device = dev;
    ic->cmd_fd = -1;
    ic->async_fd = -1;
    ic->num_comp_vectors = 1;
    pthread_mutex_init(&ic->mutex, NULL);
    ic->abi_compat = __VERBS_ABI_IS_EXTENDED;
    c->dev = dev_index(dev);
    c->vctx.sz = sizeof c->vctx;
    c->vctx.query_port = q_port;
    ops_init(ic);
    c->next_key = 0x100 + ((uint32_t)getpid() & 0xfff) * 0x1000;

    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, sv_cfg.ip, &sa.sin_addr);
    socklen_t sl = sizeof sa;
    c->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(c->lfd, 64) != 0 ||
        getsockname(c->lfd, (struct sockaddr *)&sa, &sl) != 0)
        goto fail;
    c->lport = ntohs(sa.sin_port);
    c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wakefd < 0 || pipe(ap) != 0 || set_cloexec_nb(ap[0], 0) || set_cloexec_nb(ap[1], 1))
        goto fail;
    ic->async_fd = ap[0];
    c->async_wfd = ap[1];
    if (pthread_create(&c->thr, NULL, progress, c) != 0)
        goto fail;
    sv_dbg("opened %s, listening on %s:%u", dev->name, sv_cfg.ip, c->lport);
    return ic;
fail:;
    int e = errno ? errno : EIO;
    if (c->lfd >= 0)
        close(c->lfd);
    if (c->wakefd >= 0)
        close(c->wakefd);
    if (ap[0] >= 0) {
        close(ap[0]);
        close(ap[1]);
    }
    free(c);
    errno = e;
    return NULL;
}

SV_EXPORT int ibv_close_device(struct ibv_context *ic)
{
    struct sv_ctx *c = CTX(ic);
    pthread_mutex_lock(&c->lk);
    c->stop = 1;
    pthread_mutex_unlock(&c->lk);
    wake(c);
    pthread_join(c->thr, NULL);
    /* Objects the application did not destroy go with the context. */
    while (c->qps) {
        struct sv_qp *q = c->qps;
        c->qps = q->next;
        free(q->sq);
        free(q->rq);
        free(q);
    }
    while (c->conns) {
        struct sv_conn *k = c->conns;
        c->conns = k->next;
        close(k->fd);
        free(k->ob);
        free(k->pay);
        free(k);
    }
    while (c->mrs) {
        struct sv_mr *m = c->mrs;
        c->mrs = m->next;
        pthread_mutex_lock(&g_lk);
        g_locked -= (long long)m->mr.length;
        pthread_mutex_unlock(&g_lk);
        free(m);
    }
    while (c->mws) {
        struct sv_mw *w = c->mws;
        c->mws = w->next;
        free(w);
    }
    while (c->cqs) {
        struct sv_cq *q = c->cqs;
        c->cqs = q->next;
        free(q->ring);
        free(q);
    }
    while (c->chans) {
        struct sv_chan *h = c->chans;
        c->chans = h->next;
        close(h->ch.fd);
        close(h->wfd);
        free(h->evq);
        free(h);
    }
    close(c->lfd);
    close(c->wakefd);
    close(ic->async_fd);
    close(c->async_wfd);
    free(c->aq);
    pthread_mutex_destroy(&c->lk);
    free(c);
    return 0;
}

SV_EXPORT int ibv_query_device(struct ibv_context *ic, struct ibv_device_attr *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->fw_ver, sizeof a->fw_ver, "1.0.0 (softverbs)");
    a->node_guid = htobe64(g_guid[CTX(ic)->dev]);
    a->sys_image_guid = htobe64(g_guid[CTX(ic)->dev]);
    a->max_mr_size = 1ull << 40;
    a->page_size_cap = 4096;
    a->vendor_id = 0x5356; /* "SV" */
    a->vendor_part_id = 1;
    a->hw_ver = 1;
    a->max_qp = SV_MAX_QP;
    a->max_qp_wr = sv_cfg.max_qp_wr;
    a->device_cap_flags = IBV_DEVICE_RC_RNR_NAK_GEN | IBV_DEVICE_PORT_ACTIVE_EVENT;
    if (!sv_cfg.no_mw)
        a->device_cap_flags |= IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B;
    a->max_sge = SV_MAX_SGE;
    a->max_sge_rd = SV_MAX_SGE;
    a->max_cq = 1024;
    a->max_cqe = sv_cfg.max_cqe;
    a->max_mr = 1 << 16;
    a->max_mw = sv_cfg.no_mw ? 0 : 1 << 16;
    a->max_pd = 1 << 10;
    a->max_qp_rd_atom = 16;
    a->max_qp_init_rd_atom = 16;
    a->max_res_rd_atom = 16 * SV_MAX_QP;
    a->atomic_cap = IBV_ATOMIC_NONE;
    a->max_pkeys = 1;
    a->local_ca_ack_delay = 16;
    a->phys_port_cnt = 1;
    return 0;
}

static void port_fill(int dev, struct ibv_port_attr *pa)
{
    memset(pa, 0, sizeof *pa);
    pa->state = IBV_PORT_ACTIVE;
    pa->max_mtu = IBV_MTU_4096;
    pa->active_mtu = sv_cfg.roce ? IBV_MTU_1024 : IBV_MTU_4096;
    pa->gid_tbl_len = gid_tbl_len();
    pa->port_cap_flags = sv_cfg.roce ? 0 : IBV_PORT_CM_SUP;
    pa->max_msg_sz = sv_cfg.max_msg;
    pa->pkey_tbl_len = 1;
    pa->lid = sv_cfg.roce ? 0 : sv_cfg.lid;
    pa->sm_lid = sv_cfg.roce ? 0 : 1;
    pa->max_vl_num = 1;
    pa->subnet_timeout = 18;
    pa->active_width = 2;  /* 4x */
    pa->active_speed = sv_cfg.speed[dev]; /* default 32: EDR */
    pa->phys_state = 5;    /* LinkUp */
    pa->link_layer = sv_cfg.roce ? IBV_LINK_LAYER_ETHERNET : IBV_LINK_LAYER_INFINIBAND;
}

static int q_port(struct ibv_context *ic, uint8_t port, struct ibv_port_attr *pa, size_t len)
{
    if (port != 1)
        return EINVAL;
    struct ibv_port_attr a;
    port_fill(CTX(ic)->dev, &a);
    memcpy(pa, &a, len < sizeof a ? len : sizeof a);
    return 0;
}

#undef ibv_query_port
SV_EXPORT int ibv_query_port(struct ibv_context *ic, uint8_t port, struct _compat_ibv_port_attr *pa)
{
    /* The old ABI's struct ends with link_layer. */
    return q_port(ic, port, (struct ibv_port_attr *)pa, offsetof(struct ibv_port_attr, link_layer) + 1);
}

SV_EXPORT int ibv_query_gid(struct ibv_context *ic, uint8_t port, int index, union ibv_gid *gid)
{
    int v2;
    if (port != 1 || index < 0 || index >= gid_tbl_len())
        return -1;
    gid_fill(CTX(ic)->dev, index, gid, &v2);
    return 0;
}

SV_EXPORT int _ibv_query_gid_ex(struct ibv_context *ic, uint32_t port, uint32_t index, struct ibv_gid_entry *e,
                                uint32_t flags, size_t esz)
{
    if (flags || esz < sizeof *e)
        return EINVAL;
    if (port != 1 || index >= (uint32_t)gid_tbl_len())
        return ENODATA;
    int v2;
    memset(e, 0, sizeof *e);
    gid_fill(CTX(ic)->dev, (int)index, &e->gid, &v2);
    e->gid_index = index;
    e->port_num = port;
    e->gid_type = !sv_cfg.roce ? IBV_GID_TYPE_IB : v2 ? IBV_GID_TYPE_ROCE_V2 : IBV_GID_TYPE_ROCE_V1;
    e->ndev_ifindex = sv_cfg.roce ? 1 : 0;
    return 0;
}

SV_EXPORT ssize_t _ibv_query_gid_table(struct ibv_context *ic, struct ibv_gid_entry *es, size_t max,
                                       uint32_t flags, size_t esz)
{
    if (flags || esz < sizeof *es) {
        errno = EINVAL;
        return -EINVAL;
    }
    size_t n = (size_t)gid_tbl_len();
    if (max < n) {
        errno = EINVAL;
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        _ibv_query_gid_ex(ic, 1, (uint32_t)i, (struct ibv_gid_entry *)((char *)es + i * esz), 0, esz);
    return (ssize_t)n;
}

/* rdma-core private, used by ibv_devinfo: 0 = IB/RoCE v1, 1 = RoCE v2. */
SV_EXPORT int ibv_query_gid_type(struct ibv_context *ic, uint8_t port, unsigned int index, int *type)
{
    if (port != 1 || index >= (unsigned)gid_tbl_len())
        return -1;
    union ibv_gid g;
    int v2;
    gid_fill(CTX(ic)->dev, (int)index, &g, &v2);
    *type = v2;
    return 0;
}

SV_EXPORT int ibv_query_pkey(struct ibv_context *ic, uint8_t port, int index, __be16 *pkey)
{
    (void)ic;
    if (port != 1 || index != 0)
        return -1;
    *pkey = htobe16(0xffff);
    return 0;
}

SV_EXPORT int ibv_get_pkey_index(struct ibv_context *ic, uint8_t port, __be16 pkey)
{
    (void)ic;
    return port == 1 && (be16toh(pkey) & 0x7fff) == 0x7fff ? 0 : -1;
}

/* ------------------------------------------------------------ async events */

SV_EXPORT int ibv_get_async_event(struct ibv_context *ic, struct ibv_async_event *ev)
{
    struct sv_ctx *c = CTX(ic);
    char b;
    ssize_t r;
    do
        r = read(ic->async_fd, &b, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        return -1;
    pthread_mutex_lock(&c->lk);
    if (c->an == 0) {
        pthread_mutex_unlock(&c->lk);
        errno = EAGAIN;
        return -1;
    }
    *ev = c->aq[0].ev;
    memmove(c->aq, c->aq + 1, (size_t)(c->an - 1) * sizeof *c->aq);
    c->an--;
    pthread_mutex_unlock(&c->lk);
    return 0;
}

SV_EXPORT void ibv_ack_async_event(struct ibv_async_event *ev)
{
    (void)ev;
}

/* ------------------------------------------------------------ PD, MR */

SV_EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *ic)
{
    struct ibv_pd *pd = calloc(1, sizeof *pd);
    if (!pd) {
        errno = ENOMEM;
        return NULL;
    }
    struct sv_ctx *c = CTX(ic);
    pthread_mutex_lock(&c->lk);
    pd->context = ic;
    pd->handle = (uint32_t)++c->npd;
    pthread_mutex_unlock(&c->lk);
    return pd;
}

SV_EXPORT int ibv_dealloc_pd(struct ibv_pd *pd)
{
    struct sv_ctx *c = CTX(pd->context);
    pthread_mutex_lock(&c->lk);
    for (struct sv_mr *m = c->mrs; m; m = m->next)
        if (m->mr.pd == pd) {
            pthread_mutex_unlock(&c->lk);
            return EBUSY;
        }
    for (struct sv_mw *w = c->mws; w; w = w->next)
        if (w->mw.pd == pd) {
            pthread_mutex_unlock(&c->lk);
            return EBUSY;
        }
    for (struct sv_qp *q = c->qps; q; q = q->next)
        if (q->qp.pd == pd) {
            pthread_mutex_unlock(&c->lk);
            return EBUSY;
        }
    pthread_mutex_unlock(&c->lk);
    free(pd);
    return 0;
}

static long long memlock_limit(void)
{
    if (sv_cfg.memlock >= 0)
        return sv_cfg.memlock;
    return -1;
}

SV_EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t len, uint64_t iova,
                                          unsigned int access)
{
    (void)iova;
    if (!pd || (!addr && len) ||
        ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE))) {
        errno = EINVAL;
        return NULL;
    }
    long long lim = memlock_limit();
    pthread_mutex_lock(&g_lk);
    if (lim >= 0 && g_locked + (long long)len > lim) {
        pthread_mutex_unlock(&g_lk);
        sv_dbg("reg_mr of %zu bytes refused: memlock fault limit %lld", len, lim);
        errno = ENOMEM;
        return NULL;
    }
    g_locked += (long long)len;
    pthread_mutex_unlock(&g_lk);
    struct sv_mr *m = calloc(1, sizeof *m);
    if (!m) {
        pthread_mutex_lock(&g_lk);
        g_locked -= (long long)len;
        pthread_mutex_unlock(&g_lk);
        errno = ENOMEM;
        return NULL;
    }
    struct sv_ctx *c = CTX(pd->context);
    pthread_mutex_lock(&c->lk);
    m->mr.context = pd->context;
    m->mr.pd = pd;
    m->mr.addr = addr;
    m->mr.length = len;
    m->mr.lkey = c->next_key++;
    m->mr.rkey = m->mr.lkey ^ 0x5a000000u;
    m->mr.handle = m->mr.lkey;
    m->access = (int)access;
    m->next = c->mrs;
    c->mrs = m;
    pthread_mutex_unlock(&c->lk);
    return &m->mr;
}

#undef ibv_reg_mr
SV_EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access)
{
    return ibv_reg_mr_iova2(pd, addr, len, (uintptr_t)addr, (unsigned)access);
}

#undef ibv_reg_mr_iova
SV_EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t len, uint64_t iova, int access)
{
    return ibv_reg_mr_iova2(pd, addr, len, iova, (unsigned)access);
}

SV_EXPORT int ibv_dereg_mr(struct ibv_mr *mr)
{
    struct sv_ctx *c = CTX(mr->context);
    pthread_mutex_lock(&c->lk);
    struct sv_mr **pp = &c->mrs;
    while (*pp && &(*pp)->mr != mr)
        pp = &(*pp)->next;
    if (!*pp) {
        pthread_mutex_unlock(&c->lk);
        return EINVAL;
    }
    struct sv_mr *m = *pp;
    *pp = m->next;
    pthread_mutex_unlock(&c->lk);
    pthread_mutex_lock(&g_lk);
    g_locked -= (long long)m->mr.length;
    pthread_mutex_unlock(&g_lk);
    free(m);
    return 0;
}

/* Type 2 windows only (bound per QP): keys 0xa5NNNN00, apart from MR keys;
 * the low byte is the consumer's (ibv_inc_rkey). */
static struct ibv_mw *op_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type)
{
    if (type != IBV_MW_TYPE_2 || sv_cfg.no_mw) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    struct sv_mw *w = calloc(1, sizeof *w);
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    struct sv_ctx *c = CTX(pd->context);
    pthread_mutex_lock(&c->lk);
    w->mw.context = pd->context;
    w->mw.pd = pd;
    w->mw.type = type;
    w->mw.rkey = 0xa5000000u | ((c->next_key++ & 0xffffu) << 8);
    w->mw.handle = w->mw.rkey;
    w->next = c->mws;
    c->mws = w;
    pthread_mutex_unlock(&c->lk);
    return &w->mw;
}

static int op_dealloc_mw(struct ibv_mw *mw)
{
    struct sv_ctx *c = CTX(mw->context);
    pthread_mutex_lock(&c->lk);
    struct sv_mw **pp = &c->mws;
    while (*pp && &(*pp)->mw != mw)
        pp = &(*pp)->next;
    struct sv_mw *w = *pp;
    if (w)
        *pp = w->next;
    pthread_mutex_unlock(&c->lk);
    free(w);
    return w ? 0 : EINVAL;
}

static int op_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *b)
{
    (void)qp, (void)mw, (void)b;
    return EOPNOTSUPP; /* type 1 windows */
}

/* A BIND_MW work request on q, under c->lk: checked and carried out when
 * posted (before anything posted after it can reach the peer). */
static int bind_now(struct sv_qp *q, const struct ibv_send_wr *wr)
{
    struct sv_ctx *c = q->c;
    const struct ibv_mw_bind_info *bi = &wr->bind_mw.bind_info;
    struct sv_mw *w = c->mws;
    while (w && &w->mw != wr->bind_mw.mw)
        w = w->next;
    struct sv_mr *m = c->mrs;
    while (m && &m->mr != bi->mr)
        m = m->next;
    uint64_t b = m ? (uintptr_t)m->mr.addr : 0;
    if (!w || !m || w->qp || w->mw.pd != q->qp.pd || m->mr.pd != q->qp.pd || !(m->access & IBV_ACCESS_MW_BIND) ||
        ((wr->bind_mw.rkey ^ w->mw.rkey) & ~0xffu) || bi->addr < b || bi->length > m->mr.length ||
        bi->addr - b > m->mr.length - bi->length ||
        ((bi->mw_access_flags & IBV_ACCESS_REMOTE_WRITE) && !(m->access & IBV_ACCESS_LOCAL_WRITE)))
        return EINVAL;
    w->qp = q;
    w->addr = bi->addr;
    w->len = bi->length;
    w->access = (int)bi->mw_access_flags;
    w->mw.rkey = wr->bind_mw.rkey;
    return 0;
}

/* ------------------------------------------------------------ channels, CQs */

SV_EXPORT struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *ic)
{
    struct sv_chan *h = calloc(1, sizeof *h);
    int p[2];
    if (!h || pipe(p) != 0) {
        free(h);
        return NULL;
    }
    set_cloexec_nb(p[0], 0);
    set_cloexec_nb(p[1], 1);
    h->ch.context = ic;
    h->ch.fd = p[0];
    h->wfd = p[1];
    struct sv_ctx *c = CTX(ic);
    pthread_mutex_lock(&c->lk);
    h->next = c->chans;
    c->chans = h;
    pthread_mutex_unlock(&c->lk);
    return &h->ch;
}

SV_EXPORT int ibv_destroy_comp_channel(struct ibv_comp_channel *ch)
{
    struct sv_chan *h = (struct sv_chan *)ch;
    struct sv_ctx *c = CTX(ch->context);
    pthread_mutex_lock(&c->lk);
    if (h->ncq) {
        pthread_mutex_unlock(&c->lk);
        return EBUSY;
    }
    struct sv_chan **pp = &c->chans;
    while (*pp && *pp != h)
        pp = &(*pp)->next;
    if (*pp)
        *pp = h->next;
    pthread_mutex_unlock(&c->lk);
    close(h->ch.fd);
    close(h->wfd);
    free(h->evq);
    free(h);
    return 0;
}

SV_EXPORT struct ibv_cq *ibv_create_cq(struct ibv_context *ic, int cqe, void *cq_context,
                                       struct ibv_comp_channel *ch, int comp_vector)
{
    if (cqe < 1 || cqe > sv_cfg.max_cqe || comp_vector < 0 || comp_vector >= ic->num_comp_vectors) {
        errno = EINVAL;
        return NULL;
    }
    struct sv_cq *q = calloc(1, sizeof *q);
    if (q)
        q->ring = calloc((size_t)cqe, sizeof *q->ring);
    if (!q || !q->ring) {
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    q->cap = cqe;
    q->cq.context = ic;
    q->cq.channel = ch;
    q->cq.cq_context = cq_context;
    q->cq.cqe = cqe;
    pthread_mutex_init(&q->cq.mutex, NULL);
    pthread_cond_init(&q->cq.cond, NULL);
    struct sv_ctx *c = CTX(ic);
    pthread_mutex_lock(&c->lk);
    if (ch)
        ((struct sv_chan *)ch)->ncq++;
    q->next = c->cqs;
    c->cqs = q;
    pthread_mutex_unlock(&c->lk);
    return &q->cq;
}

SV_EXPORT int ibv_destroy_cq(struct ibv_cq *cq)
{
    struct sv_cq *q = CQ(cq);
    struct sv_ctx *c = CTX(cq->context);
    pthread_mutex_lock(&c->lk);
    for (struct sv_qp *p = c->qps; p; p = p->next)
        if (p->qp.send_cq == cq || p->qp.recv_cq == cq) {
            pthread_mutex_unlock(&c->lk);
            return EBUSY;
        }
    struct sv_cq **pp = &c->cqs;
    while (*pp && *pp != q)
        pp = &(*pp)->next;
    if (*pp)
        *pp = q->next;
    if (cq->channel) {
        struct sv_chan *h = (struct sv_chan *)cq->channel;
        h->ncq--;
        /* events of this CQ not yet read stay counted as raised */
        for (int i = 0; i < h->evn; i++)
            if (h->evq[i] == q)
                h->evq[i] = NULL;
    }
    pthread_mutex_unlock(&c->lk);
    /* As the man page says: wait until every event taken was acked. */
    pthread_mutex_lock(&cq->mutex);
    while (cq->comp_events_completed != q->events_taken)
        pthread_cond_wait(&cq->cond, &cq->mutex);
    pthread_mutex_unlock(&cq->mutex);
    free(q->ring);
    free(q);
    return 0;
}

SV_EXPORT int ibv_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **cq_context)
{
    struct sv_chan *h = (struct sv_chan *)ch;
    struct sv_ctx *c = CTX(ch->context);
    for (;;) {
        char b;
        ssize_t r;
        do
            r = read(ch->fd, &b, 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
            return -1;
        pthread_mutex_lock(&c->lk);
        struct sv_cq *q = h->evn ? h->evq[0] : NULL;
        if (h->evn) {
            memmove(h->evq, h->evq + 1, (size_t)(h->evn - 1) * sizeof *h->evq);
            h->evn--;
        }
        if (q) {
            pthread_mutex_lock(&q->cq.mutex);
            q->events_taken++;
            pthread_mutex_unlock(&q->cq.mutex);
        }
        pthread_mutex_unlock(&c->lk);
        if (!q)
            continue; /* the CQ was destroyed meanwhile */
        *cq = &q->cq;
        *cq_context = q->cq.cq_context;
        return 0;
    }
}

SV_EXPORT void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int n)
{
    pthread_mutex_lock(&cq->mutex);
    cq->comp_events_completed += n;
    pthread_cond_signal(&cq->cond);
    pthread_mutex_unlock(&cq->mutex);
}

SV_EXPORT int ibv_resize_cq(struct ibv_cq *cq, int cqe)
{
    (void)cq;
    (void)cqe;
    return EOPNOTSUPP;
}

static int op_poll_cq(struct ibv_cq *cq, int num, struct ibv_wc *wc)
{
    struct sv_cq *q = CQ(cq);
    struct sv_ctx *c = CTX(cq->context);
    if (num < 0)
        return -1;
    pthread_mutex_lock(&c->lk);
    double now = now_us();
    int got = 0;
    while (got < num && q->n > 0) {
        int pick = 0;
        int vis = 0;
        while (vis < q->n && cqe_visible(&q->ring[(q->head + vis) % q->cap], now))
            vis++;
        if (vis == 0)
            break;
        if (sv_cfg.reorder && vis > 1) {
            /* Any QP's oldest completion, never one QP's out of order. */
            int r = rand() % vis;
            struct sv_cqe *re = &q->ring[(q->head + r) % q->cap];
            for (pick = 0; pick < r; pick++) {
                struct sv_cqe *e = &q->ring[(q->head + pick) % q->cap];
                if (e->qp == re->qp && e->is_send == re->is_send)
                    break;
            }
        }
        struct sv_cqe e = q->ring[(q->head + pick) % q->cap];
        for (int i = pick; i > 0; i--)
            q->ring[(q->head + i) % q->cap] = q->ring[(q->head + i - 1) % q->cap];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        wc[got++] = e.wc;
        if (e.is_send && e.qp && e.idx + 1 > e.qp->sq_retired)
            e.qp->sq_retired = e.idx + 1;
    }
    pthread_mutex_unlock(&c->lk);
    if (got)
        wake(c); /* room in the send queue may let work go */
    else
        sched_yield(); /* a busy-polling caller leaves the progress thread a core */
    return got;
}

static int op_req_notify_cq(struct ibv_cq *cq, int solicited)
{
    (void)solicited;
    struct sv_cq *q = CQ(cq);
    struct sv_ctx *c = CTX(cq->context);
    if (!cq->channel)
        return EINVAL;
    pthread_mutex_lock(&c->lk);
    q->armed = 1;
    q->arm_seq = q->next_seq;
    pthread_mutex_unlock(&c->lk);
    return 0;
}

/* ------------------------------------------------------------ QPs */

static int op_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad);
static int op_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);

static void ops_init(struct ibv_context *ic)
{
    ic->ops.poll_cq = op_poll_cq;
    ic->ops.req_notify_cq = op_req_notify_cq;
    ic->ops.post_send = op_post_send;
    ic->ops.post_recv = op_post_recv;
    ic->ops.alloc_mw = op_alloc_mw;
    ic->ops.dealloc_mw = op_dealloc_mw;
    ic->ops.bind_mw = op_bind_mw;
}

SV_EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *ia)
{
    struct ibv_context *ic = pd->context;
    struct sv_ctx *c = CTX(ic);
    if (ia->qp_type != IBV_QPT_RC || ia->srq || !ia->send_cq || !ia->recv_cq ||
        ia->send_cq->context != ic || ia->recv_cq->context != ic) {
        errno = ia->qp_type != IBV_QPT_RC || ia->srq ? EOPNOTSUPP : EINVAL;
        return NULL;
    }
    struct ibv_qp_cap *cap = &ia->cap;
    if (cap->max_send_wr > (uint32_t)sv_cfg.max_qp_wr || cap->max_recv_wr > (uint32_t)sv_cfg.max_qp_wr || cap->max_send_sge > SV_MAX_SGE ||
        cap->max_recv_sge > SV_MAX_SGE || cap->max_inline_data > SV_MAX_INLINE) {
        errno = EINVAL;
        return NULL;
    }
    struct sv_qp *q = calloc(1, sizeof *q);
    if (!q) {
        errno = ENOMEM;
        return NULL;
    }
    q->cap = *cap;
    if (q->cap.max_send_wr == 0)
        q->cap.max_send_wr = 1;
    if (q->cap.max_recv_wr == 0)
        q->cap.max_recv_wr = 1;
    q->sq = calloc(q->cap.max_send_wr, sizeof *q->sq);
    q->rq = calloc(q->cap.max_recv_wr, sizeof *q->rq);
    if (!q->sq || !q->rq) {
        free(q->sq);
        free(q->rq);
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&c->lk);
    int idx = 0;
    for (int i = 1; i <= SV_MAX_QP; i++)
        if (!c->qp_used[i]) {
            idx = i;
            break;
        }
    if (!idx) {
        pthread_mutex_unlock(&c->lk);
        free(q->sq);
        free(q->rq);
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    c->qp_used[idx] = 1;
    q->idx = idx;
    q->c = c;
    q->qp.context = ic;
    q->qp.qp_context = ia->qp_context;
    q->qp.pd = pd;
    q->qp.send_cq = ia->send_cq;
    q->qp.recv_cq = ia->recv_cq;
    q->qp.qp_num = ((uint32_t)c->lport << 8) | (uint32_t)idx;
    q->qp.handle = q->qp.qp_num;
    q->qp.state = IBV_QPS_RESET;
    q->qp.qp_type = IBV_QPT_RC;
    pthread_mutex_init(&q->qp.mutex, NULL);
    pthread_cond_init(&q->qp.cond, NULL);
    q->sq_sig_all = ia->sq_sig_all;
    q->next = c->qps;
    c->qps = q;
    *cap = q->cap; /* what was granted */
    pthread_mutex_unlock(&c->lk);
    sv_dbg("created qp %#x", q->qp.qp_num);
    return &q->qp;
}

SV_EXPORT int ibv_destroy_qp(struct ibv_qp *ibqp)
{
    struct sv_qp *q = QP(ibqp);
    struct sv_ctx *c = q->c;
    pthread_mutex_lock(&c->lk);
    struct sv_qp **pp = &c->qps;
    while (*pp && *pp != q)
        pp = &(*pp)->next;
    if (*pp)
        *pp = q->next;
    c->qp_used[q->idx] = 0;
    for (struct sv_mw *w = c->mws; w; w = w->next)
        if (w->qp == q)
            w->qp = NULL;
    if (q->conn) {
        conn_close(q->conn);
        q->conn->qp = NULL;
    }
    cq_clean(CQ(ibqp->send_cq), q);
    cq_clean(CQ(ibqp->recv_cq), q);
    pthread_mutex_unlock(&c->lk);
    wake(c);
    free(q->sq);
    free(q->rq);
    free(q);
    return 0;
}

enum { REQ_RESET_INIT = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS };
#define RTR_REQ                                                                                           \
    (IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | \
     IBV_QP_MIN_RNR_TIMER)
#define RTR_OPT (IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX)
#define RTS_REQ                                                                                           \
    (IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC)
#define RTS_OPT (IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE)

/* Which masks a transition needs and allows (IB spec, RC). */
static int trans_ok(enum ibv_qp_state cur, enum ibv_qp_state nxt, int mask)
{
    int req, opt;
    if (nxt == IBV_QPS_RESET || nxt == IBV_QPS_ERR) {
        req = IBV_QP_STATE;
        opt = 0;
    } else if (cur == IBV_QPS_RESET && nxt == IBV_QPS_INIT) {
        req = REQ_RESET_INIT;
        opt = 0;
    } else if (cur == IBV_QPS_INIT && nxt == IBV_QPS_INIT) {
        req = IBV_QP_STATE;
        opt = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    } else if (cur == IBV_QPS_INIT && nxt == IBV_QPS_RTR) {
        req = RTR_REQ;
        opt = RTR_OPT;
    } else if (cur == IBV_QPS_RTR && nxt == IBV_QPS_RTS) {
        req = RTS_REQ;
        opt = RTS_OPT;
    } else if (cur == IBV_QPS_RTS && nxt == IBV_QPS_RTS) {
        req = IBV_QP_STATE;
        opt = RTS_OPT;
    } else {
        return 0;
    }
    return (mask & req) == req && (mask & ~(req | opt)) == 0;
}

static double timeout_us(uint8_t t)
{
    double us = t ? 4.096 * (double)(1ull << (t > 31 ? 31 : t)) : 1e6;
    double cap = sv_cfg.max_timeout_ms * 1000.0;
    return us > cap ? cap : us;
}

static double rnr_us(uint8_t t)
{
    /* IB spec table: 0 = 655.36 ms, 1 = 0.01 ms ... 31 = 491.52 ms */
    static const double ms[32] = {655.36, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32,
                                  0.48,   0.64, 0.96, 1.28, 1.92, 2.56, 3.84, 5.12, 7.68, 10.24, 15.36,
                                  20.48,  30.72, 40.96, 61.44, 81.92, 122.88, 163.84, 245.76, 327.68, 491.52};
    return ms[t & 31] * 1000.0;
}

struct sv_hello {
    uint32_t magic, dst_qpn, src_qpn;
    uint16_t slid, dev; /* dev: the requester's device index; another device's fabric is not reachable */
};
#define SV_MAGIC 0x53564231u /* "SVB1" */

static void conn_add(struct sv_ctx *c, struct sv_conn *k)
{
    k->next = c->conns;
    c->conns = k;
}

/* Open the requester connection of a QP entering RTS (outside the lock). */
static struct sv_conn *conn_open(int dev, uint32_t dst_qpn, const struct ibv_ah_attr *ah, uint32_t src_qpn)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(dst_qpn >> 8))};
    const uint8_t *g = ah->grh.dgid.raw;
    static const uint8_t v4pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ah->is_global && memcmp(g, v4pfx, 12) == 0)
        memcpy(&sa.sin_addr, g + 12, 4);
    else
        inet_pton(AF_INET, sv_cfg.ip, &sa.sin_addr);
    struct sv_conn *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->out = 1;
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sv_hello h = {SV_MAGIC, dst_qpn, src_qpn, sv_cfg.lid, (uint16_t)dev};
    if (k->fd < 0 || g_dropped || connect(k->fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        write(k->fd, &h, sizeof h) != (ssize_t)sizeof h || set_cloexec_nb(k->fd, 1) != 0) {
        sv_dbg("connect to qp %#x failed: %s", dst_qpn, strerror(errno));
        k->dead = 1;
    }
    return k;
}

SV_EXPORT int ibv_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *a, int mask)
{
    struct sv_qp *q = QP(ibqp);
    struct sv_ctx *c = q->c;
    pthread_mutex_lock(&c->lk);
    enum ibv_qp_state cur = ibqp->state;
    if ((mask & IBV_QP_CUR_STATE) && a->cur_qp_state != cur) {
        pthread_mutex_unlock(&c->lk);
        return EINVAL;
    }
    enum ibv_qp_state nxt = (mask & IBV_QP_STATE) ? a->qp_state : cur;
    if (!(mask & IBV_QP_STATE) || !trans_ok(cur, nxt, mask)) {
        pthread_mutex_unlock(&c->lk);
        sv_dbg("qp %#x: invalid modify %d -> %d mask %#x", ibqp->qp_num, cur, nxt, mask);
        return EINVAL;
    }
    if (((mask & IBV_QP_PORT) && a->port_num != 1) || ((mask & IBV_QP_PKEY_INDEX) && a->pkey_index != 0) ||
        ((mask & IBV_QP_PATH_MTU) && (a->path_mtu < IBV_MTU_256 || a->path_mtu > IBV_MTU_4096)) ||
        ((mask & IBV_QP_AV) && (a->ah_attr.port_num != 1 ||
                                (!sv_cfg.roce && !a->ah_attr.is_global && a->ah_attr.dlid == 0) ||
                                (sv_cfg.roce && !a->ah_attr.is_global) ||
                                (a->ah_attr.is_global && a->ah_attr.grh.sgid_index >= gid_tbl_len()))) ||
        ((mask & IBV_QP_MIN_RNR_TIMER) && a->min_rnr_timer > 31) ||
        ((mask & IBV_QP_TIMEOUT) && a->timeout > 31) || ((mask & IBV_QP_RETRY_CNT) && a->retry_cnt > 7) ||
        ((mask & IBV_QP_RNR_RETRY) && a->rnr_retry > 7) ||
        ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && a->max_rd_atomic > 16) ||
        ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && a->max_dest_rd_atomic > 16)) {
        pthread_mutex_unlock(&c->lk);
        sv_dbg("qp %#x: invalid attribute value, mask %#x", ibqp->qp_num, mask);
        return EINVAL;
    }
    if (mask & IBV_QP_ACCESS_FLAGS)
        q->access = (int)a->qp_access_flags;
    if (mask & IBV_QP_PORT)
        q->port = a->port_num;
    if (mask & IBV_QP_PKEY_INDEX)
        q->pkey_index = a->pkey_index;
    if (mask & IBV_QP_AV)
        q->ah = a->ah_attr;
    if (mask & IBV_QP_PATH_MTU)
        q->mtu = a->path_mtu;
    if (mask & IBV_QP_DEST_QPN)
        q->dest_qpn = a->dest_qp_num;
    if (mask & IBV_QP_RQ_PSN)
        q->rq_psn = q->exp_psn = a->rq_psn & 0xffffff;
    if (mask & IBV_QP_MIN_RNR_TIMER)
        q->min_rnr_timer = a->min_rnr_timer;
    if (mask & IBV_QP_MAX_DEST_RD_ATOMIC)
        q->max_dest_rd_atomic = a->max_dest_rd_atomic;
    if (mask & IBV_QP_SQ_PSN)
        q->sq_psn = a->sq_psn & 0xffffff;
    if (mask & IBV_QP_TIMEOUT)
        q->timeout = a->timeout;
    if (mask & IBV_QP_RETRY_CNT)
        q->retry_cnt = a->retry_cnt;
    if (mask & IBV_QP_RNR_RETRY)
        q->rnr_retry = a->rnr_retry;
    if (mask & IBV_QP_MAX_QP_RD_ATOMIC)
        q->max_rd_atomic = a->max_rd_atomic;

    int open_conn = 0;
    switch (nxt) {
    case IBV_QPS_RESET:
        if (q->conn) {
            conn_close(q->conn);
            q->conn->qp = NULL;
            q->conn = NULL;
        }
        cq_clean(CQ(ibqp->send_cq), q);
        cq_clean(CQ(ibqp->recv_cq), q);
        q->sq_tail = q->sq_tx = q->sq_head = q->sq_retired = 0;
        q->rq_head = q->rq_tail = 0;
        q->conn_dead = 0;
        q->ignore_n = 0;
        ibqp->state = IBV_QPS_RESET;
        break;
    case IBV_QPS_ERR:
        qp_to_error(q);
        break;
    case IBV_QPS_RTS:
        if (cur == IBV_QPS_RTR) {
            q->psn_base = q->sq_tail;
            q->retry_left = q->retry_cnt;
            q->conn_dead = 0;
            open_conn = 1;
        }
        ibqp->state = nxt;
        break;
    default:
        ibqp->state = nxt;
        break;
    }
    uint32_t dqpn = q->dest_qpn, sqpn = ibqp->qp_num;
    struct ibv_ah_attr ah = q->ah;
    pthread_mutex_unlock(&c->lk);
    if (open_conn) {
        struct sv_conn *k = conn_open(c->dev, dqpn, &ah, sqpn);
        pthread_mutex_lock(&c->lk);
        if (!k || k->dead) {
            q->conn_dead = 1;
            if (k) {
                if (k->fd >= 0)
                    close(k->fd);
                free(k);
            }
        } else if (ibqp->state == IBV_QPS_RTS && !q->conn) {
            k->qp = q;
            q->conn = k;
            conn_add(c, k);
        } else {
            close(k->fd);
            free(k);
        }
        pthread_mutex_unlock(&c->lk);
        wake(c);
    }
    return 0;
}

SV_EXPORT int ibv_query_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *a, int mask, struct ibv_qp_init_attr *ia)
{
    (void)mask;
    struct sv_qp *q = QP(ibqp);
    pthread_mutex_lock(&q->c->lk);
    memset(a, 0, sizeof *a);
    a->qp_state = a->cur_qp_state = ibqp->state;
    a->path_mtu = q->mtu;
    a->qp_access_flags = (unsigned)q->access;
    a->pkey_index = q->pkey_index;
    a->port_num = q->port;
    a->ah_attr = q->ah;
    a->dest_qp_num = q->dest_qpn;
    a->rq_psn = q->rq_psn;
    a->sq_psn = q->sq_psn;
    a->min_rnr_timer = q->min_rnr_timer;
    a->timeout = q->timeout;
    a->retry_cnt = q->retry_cnt;
    a->rnr_retry = q->rnr_retry;
    a->max_rd_atomic = q->max_rd_atomic;
    a->max_dest_rd_atomic = q->max_dest_rd_atomic;
    a->cap = q->cap;
    memset(ia, 0, sizeof *ia);
    ia->qp_context = ibqp->qp_context;
    ia->send_cq = ibqp->send_cq;
    ia->recv_cq = ibqp->recv_cq;
    ia->cap = q->cap;
    ia->qp_type = IBV_QPT_RC;
    ia->sq_sig_all = q->sq_sig_all;
    pthread_mutex_unlock(&q->c->lk);
    return 0;
}

static int op_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
    struct sv_qp *q = QP(ibqp);
    struct sv_ctx *c = q->c;
    int rc = 0;
    pthread_mutex_lock(&c->lk);
    for (; wr; wr = wr->next) {
        if (ibqp->state != IBV_QPS_RTS && ibqp->state != IBV_QPS_ERR && ibqp->state != IBV_QPS_SQD) {
            rc = EINVAL;
            break;
        }
        if (q->sq_tail - q->sq_retired >= q->cap.max_send_wr) {
            rc = ENOMEM;
            break;
        }
        if (wr->num_sge < 0 || wr->num_sge > (int)q->cap.max_send_sge) {
            rc = EINVAL;
            break;
        }
        if (wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_SEND_WITH_IMM && wr->opcode != IBV_WR_RDMA_WRITE &&
            wr->opcode != IBV_WR_RDMA_WRITE_WITH_IMM && wr->opcode != IBV_WR_BIND_MW) {
            rc = EINVAL;
            break;
        }
        int bind = wr->opcode == IBV_WR_BIND_MW;
        if (bind && ibqp->state == IBV_QPS_RTS && (rc = bind_now(q, wr)) != 0)
            break;
        uint64_t len = 0;
        for (int i = 0; !bind && i < wr->num_sge; i++)
            len += wr->sg_list[i].length;
        if (len > sv_cfg.max_msg || ((wr->send_flags & IBV_SEND_INLINE) && len > q->cap.max_inline_data)) {
            rc = EINVAL;
            break;
        }
        struct sv_swqe *w = &q->sq[q->sq_tail % q->cap.max_send_wr];
        memset(w, 0, offsetof(struct sv_swqe, inl));
        w->wr_id = wr->wr_id;
        w->opcode = wr->opcode;
        w->flags = wr->send_flags;
        w->len = (uint32_t)len;
        w->raddr = wr->wr.rdma.remote_addr;
        w->rkey = wr->wr.rdma.rkey;
        w->imm = wr->imm_data;
        w->rnr_left = q->rnr_retry;
        if (bind) {
            w->raddr = w->rkey = 0; /* the union held the window, not a remote address */
        } else if (wr->send_flags & IBV_SEND_INLINE) {
            size_t off = 0;
            for (int i = 0; i < wr->num_sge; i++) {
                memcpy(w->inl + off, (void *)(uintptr_t)wr->sg_list[i].addr, wr->sg_list[i].length);
                off += wr->sg_list[i].length;
            }
        } else {
            w->nsge = wr->num_sge;
            memcpy(w->sge, wr->sg_list, (size_t)wr->num_sge * sizeof *w->sge);
        }
        uint64_t idx = q->sq_tail++;
        if (ibqp->state == IBV_QPS_ERR) {
            q->sq_head = q->sq_tx = q->sq_tail;
            send_done(q, idx, IBV_WC_WR_FLUSH_ERR);
        }
    }
    if (rc && bad)
        *bad = wr;
    pthread_mutex_unlock(&c->lk);
    wake(c);
    return rc;
}

static int op_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
    struct sv_qp *q = QP(ibqp);
    struct sv_ctx *c = q->c;
    int rc = 0;
    pthread_mutex_lock(&c->lk);
    for (; wr; wr = wr->next) {
        if (ibqp->state == IBV_QPS_RESET) {
            rc = EINVAL;
            break;
        }
        if (q->rq_tail - q->rq_head >= q->cap.max_recv_wr) {
            rc = ENOMEM;
            break;
        }
        if (wr->num_sge < 0 || wr->num_sge > (int)q->cap.max_recv_sge) {
            rc = EINVAL;
            break;
        }
        struct sv_rwqe *r = &q->rq[q->rq_tail % q->cap.max_recv_wr];
        r->wr_id = wr->wr_id;
        r->nsge = wr->num_sge;
        memcpy(r->sge, wr->sg_list, (size_t)wr->num_sge * sizeof *r->sge);
        q->rq_tail++;
        if (ibqp->state == IBV_QPS_ERR)
            recv_flush_one(q);
    }
    if (rc && bad)
        *bad = wr;
    pthread_mutex_unlock(&c->lk);
    return rc;
}

/* ------------------------------------------------------------ wire */

/* OP_NOP: a bind, done when posted, keeps its place (and PSN) in the queue
 * so that its completion comes in order. */
enum { OP_SEND = 1, OP_SEND_IMM, OP_WRITE, OP_WRITE_IMM, OP_NOP };
enum { R_ACK = 0, R_RNR, R_SEQ, R_NOTREADY, R_REM_ACCESS, R_REM_OP, R_REM_INV };

struct sv_req {
    uint8_t op, flags;
    uint16_t pad;
    uint32_t psn;
    uint32_t len;
    uint32_t rkey;
    uint64_t raddr;
    uint32_t imm;
    uint32_t pad2;
};
struct sv_resp {
    uint8_t status, rnr_timer;
    uint16_t pad;
    uint32_t psn;
};
_Static_assert(sizeof(struct sv_req) == 32, "request header");

static int ob_reserve(struct sv_conn *k, size_t more)
{
    if (k->ooff == k->olen)
        k->ooff = k->olen = 0;
    if (k->olen + more <= k->ocap)
        return 0;
    if (k->ooff) {
        memmove(k->ob, k->ob + k->ooff, k->olen - k->ooff);
        k->olen -= k->ooff;
        k->ooff = 0;
        if (k->olen + more <= k->ocap)
            return 0;
    }
    size_t nc = k->ocap ? k->ocap : 65536;
    while (nc < k->olen + more)
        nc *= 2;
    uint8_t *n = realloc(k->ob, nc);
    if (!n)
        return -1;
    k->ob = n;
    k->ocap = nc;
    return 0;
}

/* Would this write cross a SOFTVERBS_FAULT_KILL_AFTER_* threshold? */
static int fault_hit(uint64_t bytes)
{
    if (sv_cfg.die_writes < 0 && sv_cfg.die_bytes < 0)
        return 0;
    pthread_mutex_lock(&g_lk);
    g_writes++;
    g_bytes += (long long)bytes;
    int hit = (sv_cfg.die_writes >= 0 && g_writes > sv_cfg.die_writes) ||
              (sv_cfg.die_bytes >= 0 && g_bytes > sv_cfg.die_bytes);
    pthread_mutex_unlock(&g_lk);
    return hit;
}

/* The fault strikes: what was sent before still arrives, then the process
 * dies (or, with SOFTVERBS_FAULT_DROP, drops off the network). */
static void fault_strike(struct sv_conn *k)
{
    int fl = fcntl(k->fd, F_GETFL);
    fcntl(k->fd, F_SETFL, fl & ~O_NONBLOCK);
    conn_write(k);
    usleep(100000); /* let the responder take it */
    if (sv_cfg.drop) {
        if (!g_dropped)
            sv_dbg("fault: dropping off the network after %lld writes, %lld bytes", g_writes, g_bytes);
        g_dropped = 1;
    } else {
        sv_dbg("fault: dying after %lld writes, %lld bytes", g_writes, g_bytes);
        kill(getpid(), SIGKILL);
    }
}

/* SOFTVERBS_FAULT_PUT: does the write at q's send position fail? Only on
 * the device SOFTVERBS_FAULT_PUT_DEV names, and from the work request
 * SOFTVERBS_FAULT_PUT_AFTER on (a link that fails mid-transfer). */
static int put_fails(const struct sv_qp *q)
{
    return sv_cfg.put_status && (!sv_cfg.put_dev[0] || !strcmp(sv_cfg.put_dev, sv_cfg.devname[q->c->dev])) &&
           (long long)q->sq_tx >= sv_cfg.put_after;
}

/* Put what the send queue may send on the wire. */
static void pump(struct sv_qp *q, double now, double *next)
{
    struct sv_conn *k = q->conn;
    if (q->qp.state != IBV_QPS_RTS || q->sq_tx >= q->sq_tail)
        return;
    if (!k || k->dead || q->conn_dead) {
        /* Nobody answers: the transport retries, then gives up. */
        if (q->sq_head < q->sq_tail)
            qp_fail(q, IBV_WC_RETRY_EXC_ERR);
        return;
    }
    if (now < q->stall_until) {
        if (!*next || q->stall_until < *next)
            *next = q->stall_until;
        return;
    }
    while (q->sq_tx < q->sq_tail && q->sq_tx - q->sq_head < 64 && k->olen - k->ooff < (8u << 20)) {
        struct sv_swqe *w = &q->sq[q->sq_tx % q->cap.max_send_wr];
        /* The local gather list is checked as the HCA reads it. */
        int badl = 0;
        for (int i = 0; i < w->nsge && !badl; i++)
            badl = mr_check(q->c, q->qp.pd, w->sge[i].lkey, 0, w->sge[i].addr, w->sge[i].length, 0) != 0;
        if (badl) {
            if (q->sq_tx == q->sq_head)
                qp_fail(q, IBV_WC_LOC_PROT_ERR);
            return; /* else after the answers to the earlier ones */
        }
        int write = w->opcode == IBV_WR_RDMA_WRITE || w->opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
        if (write && put_fails(q)) {
            if (q->sq_tx == q->sq_head)
                qp_fail(q, (enum ibv_wc_status)sv_cfg.put_status);
            return; /* else after the answers to the earlier ones */
        }
        if (write && !g_dropped && fault_hit(w->len)) {
            fault_strike(k);
            return;
        }
        struct sv_req r = {0};
        r.op = w->opcode == IBV_WR_SEND            ? OP_SEND
               : w->opcode == IBV_WR_SEND_WITH_IMM ? OP_SEND_IMM
               : w->opcode == IBV_WR_RDMA_WRITE    ? OP_WRITE
               : w->opcode == IBV_WR_BIND_MW       ? OP_NOP
                                                   : OP_WRITE_IMM;
        r.psn = (uint32_t)(q->sq_psn + (q->sq_tx - q->psn_base)) & 0xffffff;
        r.len = w->len;
        r.rkey = w->rkey;
        r.raddr = w->raddr;
        r.imm = w->imm;
        if (ob_reserve(k, sizeof r + w->len) != 0) {
            qp_fail(q, IBV_WC_GENERAL_ERR);
            return;
        }
        memcpy(k->ob + k->olen, &r, sizeof r);
        k->olen += sizeof r;
        if (w->flags & IBV_SEND_INLINE) {
            memcpy(k->ob + k->olen, w->inl, w->len);
            k->olen += w->len;
        } else {
            for (int i = 0; i < w->nsge; i++) {
                memcpy(k->ob + k->olen, (void *)(uintptr_t)w->sge[i].addr, w->sge[i].length);
                k->olen += w->sge[i].length;
            }
        }
        q->sq_tx++;
    }
}

static void respond(struct sv_conn *k, uint8_t st, uint32_t psn, uint8_t rnr)
{
    struct sv_resp r = {st, rnr, 0, psn};
    if (ob_reserve(k, sizeof r) != 0) {
        conn_close(k);
        return;
    }
    memcpy(k->ob + k->olen, &r, sizeof r);
    k->olen += sizeof r;
}

static struct sv_qp *qp_find(struct sv_ctx *c, uint32_t qpn)
{
    for (struct sv_qp *q = c->qps; q; q = q->next)
        if (q->qp.qp_num == qpn)
            return q;
    return NULL;
}

static void responder_error(struct sv_qp *q, enum ibv_event_type ev)
{
    async_push(q->c, ev, &q->qp);
    qp_to_error(q);
}

/* A whole request arrived on a responder connection. */
static void handle_req(struct sv_ctx *c, struct sv_conn *k, const struct sv_req *r, const uint8_t *pay)
{
    struct sv_qp *q = qp_find(c, k->dst_qpn);
    if (!q || (q->qp.state != IBV_QPS_RTR && q->qp.state != IBV_QPS_RTS && q->qp.state != IBV_QPS_SQD)) {
        respond(k, R_NOTREADY, r->psn, 0);
        return;
    }
    if (r->psn != q->exp_psn) {
        uint32_t d = (q->exp_psn - r->psn) & 0xffffff;
        /* An old PSN is a duplicate: acknowledged again, not executed. */
        respond(k, d < 0x800000 ? R_ACK : R_SEQ, r->psn, 0);
        return;
    }
    int needs_recv = r->op != OP_WRITE && r->op != OP_NOP;
    if (needs_recv && q->rq_head == q->rq_tail) {
        respond(k, R_RNR, r->psn, q->min_rnr_timer);
        return;
    }
    if ((r->op == OP_WRITE || r->op == OP_WRITE_IMM) && r->len > 0) {
        if (!(q->access & IBV_ACCESS_REMOTE_WRITE) ||
            (mr_check(c, q->qp.pd, r->rkey, 1, r->raddr, r->len, IBV_ACCESS_REMOTE_WRITE) != 0 &&
             mw_check(c, q, r->rkey, r->raddr, r->len, IBV_ACCESS_REMOTE_WRITE) != 0)) {
            sv_dbg("qp %#x: remote access error (rkey %#x addr %#llx len %u)", q->qp.qp_num, r->rkey,
                   (unsigned long long)r->raddr, r->len);
            respond(k, R_REM_ACCESS, r->psn, 0);
            responder_error(q, IBV_EVENT_QP_ACCESS_ERR);
            return;
        }
        memcpy((void *)(uintptr_t)r->raddr, pay, r->len);
    }
    struct ibv_wc wc;
    memset(&wc, 0, sizeof wc);
    if (needs_recv) {
        struct sv_rwqe *w = &q->rq[q->rq_head % q->cap.max_recv_wr];
        wc.wr_id = w->wr_id;
        wc.qp_num = q->qp.qp_num;
        wc.src_qp = k->src_qpn;
        wc.slid = k->slid;
        wc.byte_len = r->len;
        if (r->op == OP_WRITE_IMM) {
            wc.opcode = IBV_WC_RECV_RDMA_WITH_IMM;
            wc.wc_flags = IBV_WC_WITH_IMM;
            wc.imm_data = r->imm;
        } else {
            wc.opcode = IBV_WC_RECV;
            if (r->op == OP_SEND_IMM) {
                wc.wc_flags = IBV_WC_WITH_IMM;
                wc.imm_data = r->imm;
            }
            uint64_t room = 0;
            int badl = 0;
            for (int i = 0; i < w->nsge; i++) {
                room += w->sge[i].length;
                badl |= mr_check(c, q->qp.pd, w->sge[i].lkey, 0, w->sge[i].addr, w->sge[i].length,
                                 IBV_ACCESS_LOCAL_WRITE) != 0 && w->sge[i].length;
            }
            if (badl || room < r->len) {
                q->rq_head++;
                wc.status = badl ? IBV_WC_LOC_PROT_ERR : IBV_WC_LOC_LEN_ERR;
                cq_push(q, CQ(q->qp.recv_cq), 0, 0, &wc);
                respond(k, badl ? R_REM_OP : R_REM_INV, r->psn, 0);
                qp_to_error(q);
                return;
            }
            size_t off = 0;
            for (int i = 0; i < w->nsge && off < r->len; i++) {
                size_t n = r->len - off < w->sge[i].length ? r->len - off : w->sge[i].length;
                memcpy((void *)(uintptr_t)w->sge[i].addr, pay + off, n);
                off += n;
            }
        }
        q->rq_head++;
        q->exp_psn = (q->exp_psn + 1) & 0xffffff;
        respond(k, R_ACK, r->psn, 0); /* the answer is on its way before the completion shows */
        cq_push(q, CQ(q->qp.recv_cq), 0, 0, &wc);
        return;
    }
    q->exp_psn = (q->exp_psn + 1) & 0xffffff;
    respond(k, R_ACK, r->psn, 0);
}

/* The answer to the request at sq_head arrived. */
static void handle_resp(struct sv_qp *q, const struct sv_resp *r, double now)
{
    if (q->ignore_n) {
        q->ignore_n--;
        return;
    }
    if (q->qp.state != IBV_QPS_RTS && q->qp.state != IBV_QPS_SQD)
        return;
    if (q->sq_head >= q->sq_tx)
        return; /* nothing outstanding: a stray answer */
    struct sv_swqe *w = &q->sq[q->sq_head % q->cap.max_send_wr];
    switch (r->status) {
    case R_ACK:
        q->retry_left = q->retry_cnt;
        send_done(q, q->sq_head++, IBV_WC_SUCCESS);
        break;
    case R_RNR:
        if (q->rnr_retry != 7 && w->rnr_left-- <= 0) {
            q->ignore_n = q->sq_tx - q->sq_head - 1;
            qp_fail(q, IBV_WC_RNR_RETRY_EXC_ERR);
            break;
        }
        q->ignore_n = q->sq_tx - q->sq_head - 1;
        q->sq_tx = q->sq_head;
        q->stall_until = now + rnr_us(r->rnr_timer);
        break;
    case R_SEQ:
    case R_NOTREADY:
        q->ignore_n = q->sq_tx - q->sq_head - 1;
        if (q->retry_left-- <= 0) {
            qp_fail(q, IBV_WC_RETRY_EXC_ERR);
            break;
        }
        q->sq_tx = q->sq_head;
        q->stall_until = now + timeout_us(q->timeout);
        break;
    case R_REM_ACCESS:
        q->ignore_n = q->sq_tx - q->sq_head - 1;
        qp_fail(q, IBV_WC_REM_ACCESS_ERR);
        break;
    case R_REM_OP:
        q->ignore_n = q->sq_tx - q->sq_head - 1;
        qp_fail(q, IBV_WC_REM_OP_ERR);
        break;
    default:
        q->ignore_n = q->sq_tx - q->sq_head - 1;
        qp_fail(q, IBV_WC_REM_INV_REQ_ERR);
        break;
    }
}

/* Read what a connection has; 0 on EOF or error. */
static int conn_read(struct sv_ctx *c, struct sv_conn *k, double now)
{
    for (int loops = 0; loops < 64; loops++) {
        size_t want;
        uint8_t *dst;
        if (!k->hello && !k->out) {
            want = sizeof(struct sv_hello) - k->hgot;
            dst = k->hdr + k->hgot;
        } else if (k->out) {
            want = sizeof(struct sv_resp) - k->hgot;
            dst = k->hdr + k->hgot;
        } else if (k->hgot < sizeof(struct sv_req)) {
            want = sizeof(struct sv_req) - k->hgot;
            dst = k->hdr + k->hgot;
        } else {
            want = k->plen - k->pgot;
            dst = k->pay + k->pgot;
        }
        ssize_t n = want ? read(k->fd, dst, want) : 0;
        if (n == 0 && want)
            return 0;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        if (!k->hello && !k->out) {
            k->hgot += (size_t)n;
            if (k->hgot == sizeof(struct sv_hello)) {
                struct sv_hello h;
                memcpy(&h, k->hdr, sizeof h);
                if (h.magic != SV_MAGIC || h.dev != c->dev)
                    return 0; /* not ours, or from another rail's device: never delivered */
                k->dst_qpn = h.dst_qpn;
                k->src_qpn = h.src_qpn;
                k->slid = h.slid;
                k->hello = 1;
                k->hgot = 0;
            }
        } else if (k->out) {
            k->hgot += (size_t)n;
            if (k->hgot == sizeof(struct sv_resp)) {
                struct sv_resp r;
                memcpy(&r, k->hdr, sizeof r);
                k->hgot = 0;
                if (k->qp)
                    handle_resp(k->qp, &r, now);
            }
        } else if (k->hgot < sizeof(struct sv_req)) {
            k->hgot += (size_t)n;
            if (k->hgot == sizeof(struct sv_req)) {
                struct sv_req r;
                memcpy(&r, k->hdr, sizeof r);
                if (r.len > SV_MAX_MSG)
                    return 0;
                k->plen = r.len;
                k->pgot = 0;
                free(k->pay);
                k->pay = r.len ? malloc(r.len) : NULL;
                if (r.len && !k->pay)
                    return 0;
            }
        } else {
            k->pgot += (size_t)n;
        }
        if (k->hello && !k->out && k->hgot == sizeof(struct sv_req) && k->pgot == k->plen) {
            struct sv_req r;
            memcpy(&r, k->hdr, sizeof r);
            handle_req(c, k, &r, k->pay);
            free(k->pay);
            k->pay = NULL;
            k->hgot = k->pgot = k->plen = 0;
        }
    }
    return 1;
}

static int conn_write(struct sv_conn *k)
{
    while (k->ooff < k->olen) {
        ssize_t n = send(k->fd, k->ob + k->ooff, k->olen - k->ooff, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        k->ooff += (size_t)n;
    }
    return 1;
}

static void conn_died(struct sv_conn *k)
{
    k->dead = 1;
    if (k->out && k->qp) {
        struct sv_qp *q = k->qp;
        sv_dbg("qp %#x: connection to qp %#x lost", q->qp.qp_num, q->dest_qpn);
        q->conn_dead = 1;
        if (q->qp.state == IBV_QPS_RTS && q->sq_head < q->sq_tail)
            qp_fail(q, IBV_WC_RETRY_EXC_ERR);
    }
}

static void *progress(void *arg)
{
    struct sv_ctx *c = arg;
    struct pollfd *pf = NULL;
    struct sv_conn **pk = NULL;
    size_t pcap = 0;
    pthread_mutex_lock(&c->lk);
    while (!c->stop) {
        double now = now_us(), next = 0;
        if (g_dropped)
            for (struct sv_conn *k = c->conns; k; k = k->next)
                if (!k->dead) {
                    conn_close(k);
                    conn_died(k);
                }
        for (struct sv_qp *q = c->qps; q; q = q->next)
            pump(q, now, &next);
        for (struct sv_cq *q = c->cqs; q; q = q->next) {
            double t = cq_signal(c, q, now);
            if (t && (!next || t < next))
                next = t;
        }
        /* reap dead connections that no QP points to */
        for (struct sv_conn **pp = &c->conns; *pp;) {
            struct sv_conn *k = *pp;
            if (k->dead && !(k->out && k->qp)) {
                *pp = k->next;
                close(k->fd);
                free(k->ob);
                free(k->pay);
                free(k);
            } else {
                pp = &k->next;
            }
        }
        size_t n = 2;
        for (struct sv_conn *k = c->conns; k; k = k->next)
            n++;
        if (n > pcap) {
            pcap = n * 2;
            free(pf);
            free(pk);
            pf = malloc(pcap * sizeof *pf);
            pk = malloc(pcap * sizeof *pk);
            if (!pf || !pk)
                abort();
        }
        pf[0] = (struct pollfd){.fd = c->wakefd, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = g_dropped ? -1 : c->lfd, .events = POLLIN};
        size_t i = 2;
        for (struct sv_conn *k = c->conns; k; k = k->next, i++) {
            pk[i] = k;
            pf[i] = (struct pollfd){.fd = k->dead ? -1 : k->fd,
                                    .events = (short)(POLLIN | (k->ooff < k->olen ? POLLOUT : 0))};
        }
        int tmo = -1;
        if (next) {
            double d = (next - now) / 1000.0;
            tmo = d < 0 ? 0 : (int)d + 1;
        }
        pthread_mutex_unlock(&c->lk);
        int pr = poll(pf, n, tmo);
        pthread_mutex_lock(&c->lk);
        if (pr <= 0)
            continue;
        now = now_us();
        if (pf[0].revents) {
            uint64_t v;
            ssize_t r = read(c->wakefd, &v, sizeof v);
            (void)r;
        }
        if (pf[1].revents) {
            for (;;) {
                int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                    break;
                struct sv_conn *k = calloc(1, sizeof *k);
                if (!k) {
                    close(fd);
                    break;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                k->fd = fd;
                conn_add(c, k);
            }
        }
        /* The list may have grown (new connections are at its head, not in
         * pk) but nothing was freed while the lock was dropped. */
        for (size_t j = 2; j < n; j++) {
            struct sv_conn *k = pk[j];
            if (!pf[j].revents || k->dead)
                continue;
            int alive = 1;
            if (pf[j].revents & (POLLIN | POLLHUP | POLLERR))
                alive = conn_read(c, k, now);
            if (alive && (pf[j].revents & POLLOUT))
                alive = conn_write(k);
            if (!alive)
                conn_died(k);
        }
        /* answers written at once save a round of poll */
        for (size_t j = 2; j < n; j++)
            if (!pk[j]->dead && pk[j]->ooff < pk[j]->olen && !conn_write(pk[j]))
                conn_died(pk[j]);
    }
    pthread_mutex_unlock(&c->lk);
    free(pf);
    free(pk);
    return NULL;
}
