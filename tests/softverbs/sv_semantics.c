/* sv_semantics.c — checks that softverbs behaves as the verbs man pages say
 * and hardware enforces. Run under softverbs-run; prints TAP.
 *
 *   sv_semantics            the basic checks
 *   sv_semantics memlock    with SOFTVERBS_FAULT_MEMLOCK=65536
 *   sv_semantics delay      with SOFTVERBS_FAULT_CQ_DELAY_US=200000
 *   sv_semantics reorder    with SOFTVERBS_FAULT_REORDER=1
 *   sv_semantics kill       with SOFTVERBS_FAULT_KILL_AFTER_WRITES=3
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int tn, tfail;
static void ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tn);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!cond)
        tfail++;
}

static void die(const char *what)
{
    printf("Bail out! %s: %s\n", what, strerror(errno));
    exit(2);
}

struct end {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    char *buf;
    uint16_t lid;
    union ibv_gid gid;
    int roce;
};

#define BUFSZ 65536

static void end_open(struct end *e, int cqe, int sq, int rq, int mr_access)
{
    int n;
    struct ibv_device **l = ibv_get_device_list(&n);
    if (!l || n < 1)
        die("no device");
    e->ctx = ibv_open_device(l[0]);
    ibv_free_device_list(l);
    if (!e->ctx)
        die("open_device");
    struct ibv_port_attr pa;
    if (ibv_query_port(e->ctx, 1, &pa))
        die("query_port");
    e->lid = pa.lid;
    e->roce = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
    ibv_query_gid(e->ctx, 1, e->roce ? 3 : 0, &e->gid);
    e->pd = ibv_alloc_pd(e->ctx);
    e->ch = ibv_create_comp_channel(e->ctx);
    e->cq = ibv_create_cq(e->ctx, cqe, e, e->ch, 0);
    e->buf = calloc(1, BUFSZ);
    e->mr = ibv_reg_mr(e->pd, e->buf, BUFSZ, mr_access);
    struct ibv_qp_init_attr ia = {.send_cq = e->cq, .recv_cq = e->cq, .qp_type = IBV_QPT_RC,
                                  .cap = {.max_send_wr = (uint32_t)sq, .max_recv_wr = (uint32_t)rq,
                                          .max_send_sge = 1, .max_recv_sge = 1, .max_inline_data = 64}};
    e->qp = ibv_create_qp(e->pd, &ia);
    if (!e->pd || !e->ch || !e->cq || !e->mr || !e->qp)
        die("setting up an end");
}

static void end_close(struct end *e)
{
    ibv_destroy_qp(e->qp);
    ibv_dereg_mr(e->mr);
    ibv_destroy_cq(e->cq);
    ibv_destroy_comp_channel(e->ch);
    ibv_dealloc_pd(e->pd);
    ibv_close_device(e->ctx);
    free(e->buf);
}

static int to_init(struct ibv_qp *qp, int access)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = (unsigned)access};
    return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int to_rtr(struct end *e, uint32_t dqpn, uint16_t dlid, const union ibv_gid *dgid, uint32_t psn)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = dqpn,
                            .rq_psn = psn, .max_dest_rd_atomic = 1, .min_rnr_timer = 1,
                            .ah_attr = {.dlid = dlid, .port_num = 1}};
    if (e->roce) {
        a.ah_attr.is_global = 1;
        a.ah_attr.grh.dgid = *dgid;
        a.ah_attr.grh.sgid_index = 3;
        a.ah_attr.grh.hop_limit = 1;
    }
    return ibv_modify_qp(e->qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

static int to_rts(struct ibv_qp *qp, uint32_t psn, int rnr_retry)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTS, .sq_psn = psn, .timeout = 10, .retry_cnt = 2,
                            .rnr_retry = (uint8_t)rnr_retry, .max_rd_atomic = 1};
    return ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                             IBV_QP_MAX_QP_RD_ATOMIC);
}

/* Connect a (requester) and b both ways. */
static int connect_pair(struct end *a, struct end *b, int access_b, int rnr_retry)
{
    return to_init(a->qp, IBV_ACCESS_REMOTE_WRITE) || to_init(b->qp, access_b) ||
           to_rtr(a, b->qp->qp_num, b->lid, &b->gid, 0x111) || to_rtr(b, a->qp->qp_num, a->lid, &a->gid, 0x222) ||
           to_rts(a->qp, 0x222, rnr_retry) || to_rts(b->qp, 0x111, rnr_retry);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Poll until n completions or the deadline. */
static int poll_n(struct ibv_cq *cq, struct ibv_wc *wc, int n, double secs)
{
    int got = 0;
    double end = now_s() + secs;
    while (got < n && now_s() < end) {
        int r = ibv_poll_cq(cq, n - got, wc + got);
        if (r < 0)
            return -1;
        got += r;
        if (!r)
            usleep(200);
    }
    return got;
}

static int post_write(struct end *e, enum ibv_wr_opcode op, uint64_t id, void *laddr, uint32_t len, uint64_t raddr,
                      uint32_t rkey, uint32_t imm, int signaled)
{
    struct ibv_sge sge = {.addr = (uintptr_t)laddr, .length = len, .lkey = e->mr->lkey};
    struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = len ? 1 : 0, .opcode = op,
                             .send_flags = signaled ? IBV_SEND_SIGNALED : 0, .imm_data = imm},
                       *bad = NULL;
    wr.wr.rdma.remote_addr = raddr;
    wr.wr.rdma.rkey = rkey;
    return ibv_post_send(e->qp, &wr, &bad);
}

static int post_recv(struct end *e, uint64_t id, void *addr, uint32_t len)
{
    struct ibv_sge sge = {.addr = (uintptr_t)addr, .length = len, .lkey = e->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(e->qp, &wr, &bad);
}

static enum ibv_qp_state qp_state(struct ibv_qp *qp)
{
    struct ibv_qp_attr a;
    struct ibv_qp_init_attr ia;
    ibv_query_qp(qp, &a, IBV_QP_STATE, &ia);
    return a.qp_state;
}

#define ACC_RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)

static void t_device(void)
{
    int n;
    struct ibv_device **l = ibv_get_device_list(&n);
    ok(l && n == 1 && strncmp(ibv_get_device_name(l[0]), "softverbs", 9) == 0, "one device named softverbs*");
    struct ibv_context *c = l && n ? ibv_open_device(l[0]) : NULL;
    struct ibv_port_attr pa;
    ok(c && ibv_query_port(c, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE, "port 1 is ACTIVE");
    struct ibv_gid_entry ge;
    ok(c && ibv_query_gid_ex(c, 1, 0, &ge, 0) == 0 && ibv_query_gid_ex(c, 1, 99, &ge, 0) != 0,
       "query_gid_ex: index 0 valid, 99 not");
    if (c)
        ibv_close_device(c);
    ibv_free_device_list(l);
}

static void t_transitions(void)
{
    struct end a;
    end_open(&a, 16, 4, 4, ACC_RW);
    struct ibv_qp_attr at = {.qp_state = IBV_QPS_RTR};
    ok(ibv_modify_qp(a.qp, &at, IBV_QP_STATE) == EINVAL, "RESET->RTR is EINVAL");
    at = (struct ibv_qp_attr){.qp_state = IBV_QPS_INIT, .port_num = 1};
    ok(ibv_modify_qp(a.qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT) == EINVAL,
       "RESET->INIT without ACCESS_FLAGS is EINVAL");
    ok(ibv_modify_qp(a.qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS |
                                    IBV_QP_SQ_PSN) == EINVAL,
       "RESET->INIT with an attribute it does not take (SQ_PSN) is EINVAL");
    char x = 0;
    ok(post_recv(&a, 1, a.buf, 1) == EINVAL, "post_recv in RESET is EINVAL");
    ok(to_init(a.qp, 0) == 0 && qp_state(a.qp) == IBV_QPS_INIT, "RESET->INIT");
    ok(post_write(&a, IBV_WR_SEND, 1, &x, 0, 0, 0, 0, 1) == EINVAL, "post_send in INIT is EINVAL");
    ok(to_rts(a.qp, 1, 7) == EINVAL, "INIT->RTS is EINVAL");
    at = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = 5};
    ok(ibv_modify_qp(a.qp, &at, IBV_QP_STATE | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN) == EINVAL,
       "INIT->RTR without AV, RQ_PSN, ... is EINVAL");
    at = (struct ibv_qp_attr){.qp_state = IBV_QPS_RESET};
    ok(ibv_modify_qp(a.qp, &at, IBV_QP_STATE) == 0 && qp_state(a.qp) == IBV_QPS_RESET, "any -> RESET");
    end_close(&a);
}

static void t_send_write_imm(void)
{
    struct end a, b;
    end_open(&a, 64, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, ACC_RW);
    ok(connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7) == 0, "connect a pair INIT->RTR->RTS");
    struct ibv_wc wc[8];
    strcpy(a.buf, "hello");
    post_recv(&b, 77, b.buf + 100, 64);
    ok(post_write(&a, IBV_WR_SEND, 1, a.buf, 6, 0, 0, 0, 1) == 0, "post SEND");
    int n = poll_n(a.cq, wc, 1, 5) + poll_n(b.cq, wc + 1, 1, 5);
    ok(n == 2 && wc[0].status == IBV_WC_SUCCESS && wc[0].opcode == IBV_WC_SEND && wc[1].wr_id == 77 &&
           wc[1].opcode == IBV_WC_RECV && wc[1].byte_len == 6 && strcmp(b.buf + 100, "hello") == 0,
       "SEND/RECV delivers the bytes, RECV completion with byte_len");
    /* WRITE then WRITE_WITH_IMM: both visible when the imm completes. */
    memset(a.buf, 'A', 4096);
    memset(a.buf + 4096, 'B', 4096);
    post_recv(&b, 78, b.buf, 0);
    ok(post_write(&a, IBV_WR_RDMA_WRITE, 2, a.buf, 4096, (uintptr_t)b.buf + 8192, b.mr->rkey, 0, 0) == 0 &&
           post_write(&a, IBV_WR_RDMA_WRITE_WITH_IMM, 3, a.buf + 4096, 4096, (uintptr_t)b.buf + 12288, b.mr->rkey,
                      htonl(0xdeadbeef), 1) == 0,
       "post RDMA_WRITE (unsignalled) + RDMA_WRITE_WITH_IMM");
    n = poll_n(b.cq, wc, 1, 5);
    int data_ok = n == 1 && b.buf[8192] == 'A' && b.buf[12287] == 'A' && b.buf[12288] == 'B' && b.buf[16383] == 'B';
    ok(n == 1 && wc[0].opcode == IBV_WC_RECV_RDMA_WITH_IMM && (wc[0].wc_flags & IBV_WC_WITH_IMM) &&
           ntohl(wc[0].imm_data) == 0xdeadbeef && wc[0].wr_id == 78 && wc[0].byte_len == 4096,
       "WRITE_WITH_IMM consumes a receive: RECV_RDMA_WITH_IMM, imm in network order");
    ok(data_ok, "data of both writes visible when the immediate completes");
    n = poll_n(a.cq, wc, 2, 1);
    ok(n == 1 && wc[0].wr_id == 3 && wc[0].opcode == IBV_WC_RDMA_WRITE,
       "unsignalled write gives no completion, signalled one does");
    end_close(&a);
    end_close(&b);
}

static void t_rem_access(int outside)
{
    struct end a, b;
    end_open(&a, 64, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, outside ? ACC_RW : IBV_ACCESS_LOCAL_WRITE);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    uint64_t raddr = (uintptr_t)b.buf + (outside ? BUFSZ - 8 : 0);
    post_write(&a, IBV_WR_RDMA_WRITE, 1, a.buf, 64, raddr, b.mr->rkey, 0, 1);
    post_write(&a, IBV_WR_RDMA_WRITE, 2, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    struct ibv_wc wc[4];
    int n = poll_n(a.cq, wc, 2, 5);
    ok(n == 2 && wc[0].wr_id == 1 && wc[0].status == IBV_WC_REM_ACCESS_ERR && wc[1].status == IBV_WC_WR_FLUSH_ERR,
       "write %s: REM_ACCESS_ERR, then FLUSH_ERR", outside ? "past the end of the region" : "to a region without REMOTE_WRITE");
    ok(qp_state(a.qp) == IBV_QPS_ERR, "the requester QP is in ERR");
    struct ibv_async_event ev;
    int fl = fcntl(b.ctx->async_fd, F_GETFL);
    fcntl(b.ctx->async_fd, F_SETFL, fl | O_NONBLOCK);
    ok(ibv_get_async_event(b.ctx, &ev) == 0 && ev.event_type == IBV_EVENT_QP_ACCESS_ERR && ev.element.qp == b.qp,
       "the responder gets IBV_EVENT_QP_ACCESS_ERR");
    ibv_ack_async_event(&ev);
    end_close(&a);
    end_close(&b);
}

static void t_rnr(void)
{
    struct end a, b;
    end_open(&a, 64, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 2);
    post_write(&a, IBV_WR_SEND, 1, a.buf, 8, 0, 0, 0, 1);
    struct ibv_wc wc[2];
    int n = poll_n(a.cq, wc, 1, 5);
    ok(n == 1 && wc[0].status == IBV_WC_RNR_RETRY_EXC_ERR, "SEND without a posted receive: RNR_RETRY_EXC_ERR (rnr_retry 2)");
    end_close(&a);
    end_close(&b);

    /* rnr_retry 7 waits for the receive */
    end_open(&a, 64, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    post_write(&a, IBV_WR_RDMA_WRITE_WITH_IMM, 1, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    usleep(50000);
    n = ibv_poll_cq(a.cq, 1, wc);
    post_recv(&b, 9, b.buf, 0);
    int m = poll_n(a.cq, wc, 1, 5);
    ok(n == 0 && m == 1 && wc[0].status == IBV_WC_SUCCESS, "rnr_retry 7: the write waits for a receive, then completes");
    end_close(&a);
    end_close(&b);
}

static void t_sq_overrun(void)
{
    struct end a, b;
    end_open(&a, 64, 4, 4, ACC_RW);
    end_open(&b, 64, 4, 4, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    int rc = 0;
    for (int i = 0; i < 4; i++)
        rc |= post_write(&a, IBV_WR_RDMA_WRITE, (uint64_t)i, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 0);
    usleep(20000);
    int r5 = post_write(&a, IBV_WR_RDMA_WRITE, 5, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 0);
    ok(rc == 0 && r5 == ENOMEM, "SQ of 4: a fifth WR is ENOMEM while the unsignalled ones are not retired");
    end_close(&a);
    end_close(&b);
}

static void t_channel_and_cq_overrun(void)
{
    struct end a, b;
    end_open(&a, 2, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    int fl = fcntl(a.ch->fd, F_GETFL);
    fcntl(a.ch->fd, F_SETFL, fl | O_NONBLOCK);
    struct ibv_cq *ecq;
    void *ectx;
    ok(ibv_req_notify_cq(a.cq, 0) == 0, "arm the CQ");
    struct pollfd pf = {.fd = a.ch->fd, .events = POLLIN};
    ok(poll(&pf, 1, 50) == 0 && ibv_get_cq_event(a.ch, &ecq, &ectx) == -1 && errno == EAGAIN,
       "channel fd not readable before a completion; get_cq_event EAGAIN with O_NONBLOCK");
    post_write(&a, IBV_WR_RDMA_WRITE, 1, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    ok(poll(&pf, 1, 5000) == 1 && ibv_get_cq_event(a.ch, &ecq, &ectx) == 0 && ecq == a.cq && ectx == &a,
       "channel fd becomes readable (poll), get_cq_event returns the CQ and its context");
    ibv_ack_cq_events(ecq, 1);
    /* CQ of 2 entries, not polled: the third completion overruns it. */
    post_write(&a, IBV_WR_RDMA_WRITE, 2, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    post_write(&a, IBV_WR_RDMA_WRITE, 3, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    struct ibv_async_event ev;
    int got_cq_err = 0;
    struct pollfd ap = {.fd = a.ctx->async_fd, .events = POLLIN};
    while (poll(&ap, 1, 3000) == 1 && ibv_get_async_event(a.ctx, &ev) == 0) {
        got_cq_err |= ev.event_type == IBV_EVENT_CQ_ERR && ev.element.cq == a.cq;
        ibv_ack_async_event(&ev);
        if (got_cq_err)
            break;
    }
    ok(got_cq_err, "CQ overrun raises IBV_EVENT_CQ_ERR");
    ok(qp_state(a.qp) == IBV_QPS_ERR, "and moves the QP to ERR");
    end_close(&a);
    end_close(&b);
}

/* A child process holds the other end; it is killed, or dies by a fault. */
static void t_peer_death(int by_fault)
{
    int p2c[2], c2p[2];
    if (pipe(p2c) || pipe(c2p))
        die("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct end b;
        end_open(&b, 64, 16, 16, ACC_RW);
        uint32_t info[3] = {b.qp->qp_num, b.lid, (uint32_t)(uintptr_t)0};
        uint64_t mr[2] = {(uintptr_t)b.buf, b.mr->rkey};
        if (write(c2p[1], info, sizeof info) != sizeof info || write(c2p[1], &b.gid, 16) != 16 ||
            write(c2p[1], mr, sizeof mr) != sizeof mr)
            _exit(3);
        uint32_t pinfo[2];
        union ibv_gid pg;
        uint64_t pmr[2];
        if (read(p2c[0], pinfo, sizeof pinfo) != sizeof pinfo || read(p2c[0], &pg, 16) != 16 ||
            read(p2c[0], pmr, sizeof pmr) != sizeof pmr)
            _exit(3);
        to_init(b.qp, IBV_ACCESS_REMOTE_WRITE);
        to_rtr(&b, pinfo[0], (uint16_t)pinfo[1], &pg, 0x111);
        to_rts(b.qp, 0x222, 7);
        for (int i = 0; i < 8; i++)
            post_recv(&b, (uint64_t)i, b.buf, 0);
        char ready = 1;
        if (write(c2p[1], &ready, 1) != 1)
            _exit(3);
        if (by_fault) /* the fault kills us after 3 writes */
            for (int i = 0; i < 10; i++)
                post_write(&b, IBV_WR_RDMA_WRITE_WITH_IMM, (uint64_t)i, b.buf, 100, pmr[0], (uint32_t)pmr[1],
                           (uint32_t)i, 1);
        pause();
        _exit(0);
    }
    struct end a;
    end_open(&a, 64, 16, 16, ACC_RW);
    uint32_t info[3];
    union ibv_gid bg;
    uint64_t bmr[2];
    if (read(c2p[0], info, sizeof info) != sizeof info || read(c2p[0], &bg, 16) != 16 ||
        read(c2p[0], bmr, sizeof bmr) != sizeof bmr)
        die("child info");
    uint32_t mine[2] = {a.qp->qp_num, a.lid};
    uint64_t mmr[2] = {(uintptr_t)a.buf, a.mr->rkey};
    if (write(p2c[1], mine, sizeof mine) != sizeof mine || write(p2c[1], &a.gid, 16) != 16 ||
        write(p2c[1], mmr, sizeof mmr) != sizeof mmr)
        die("to child");
    to_init(a.qp, IBV_ACCESS_REMOTE_WRITE);
    for (int i = 0; i < 16; i++)
        post_recv(&a, 100 + (uint64_t)i, a.buf, 0);
    to_rtr(&a, info[0], (uint16_t)info[1], &bg, 0x222);
    to_rts(a.qp, 0x111, 7);
    char ready;
    if (read(c2p[0], &ready, 1) != 1)
        die("child not ready");
    struct ibv_wc wc[16];
    int st;
    if (by_fault) {
        /* the three may take long on a loaded machine: wait for them, not
         * for a fixed time; then, the peer dead, nothing more may come */
        int n = poll_n(a.cq, wc, 3, 60);
        waitpid(pid, &st, 0);
        if (n == 3)
            n += poll_n(a.cq, wc + 3, 7, 0.5);
        ok(n == 3 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
           "SOFTVERBS_FAULT_KILL_AFTER_WRITES=3: the peer delivered 3 writes, then died (got %d)", n);
    } else {
        post_write(&a, IBV_WR_RDMA_WRITE, 1, a.buf, 8, bmr[0], (uint32_t)bmr[1], 0, 1);
        int n = poll_n(a.cq, wc, 1, 5);
        ok(n == 1 && wc[0].status == IBV_WC_SUCCESS, "write to the peer process works");
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        usleep(100000);
    }
    post_write(&a, IBV_WR_RDMA_WRITE, 2, a.buf, 8, bmr[0], (uint32_t)bmr[1], 0, 1);
    post_write(&a, IBV_WR_RDMA_WRITE, 3, a.buf, 8, bmr[0], (uint32_t)bmr[1], 0, 0);
    struct ibv_wc all[32], snd[32];
    int n = poll_n(a.cq, all, by_fault ? 15 : 18, 3), ns = 0; /* the receives are flushed too */
    for (int i = 0; i < n; i++)
        if (all[i].wr_id < 100)
            snd[ns++] = all[i];
    ok(ns == 2 && snd[0].wr_id == 2 && snd[0].status == IBV_WC_RETRY_EXC_ERR && snd[1].wr_id == 3 &&
           snd[1].status == IBV_WC_WR_FLUSH_ERR,
       "peer died: RETRY_EXC_ERR on the outstanding request, FLUSH_ERR after (even unsignalled)");
    end_close(&a);
    close(p2c[0]);
    close(p2c[1]);
    close(c2p[0]);
    close(c2p[1]);
}

static void t_memlock(void)
{
    struct end a;
    end_open(&a, 16, 4, 4, ACC_RW); /* registers BUFSZ = the limit */
    char *big = malloc(1 << 20);
    errno = 0;
    struct ibv_mr *mr = ibv_reg_mr(a.pd, big, 1 << 20, ACC_RW);
    ok(!mr && errno == ENOMEM, "SOFTVERBS_FAULT_MEMLOCK: a registration over the limit fails with ENOMEM");
    if (mr)
        ibv_dereg_mr(mr);
    free(big);
    end_close(&a);
}

static void t_delay(void)
{
    struct end a, b;
    end_open(&a, 64, 16, 16, ACC_RW);
    end_open(&b, 64, 16, 16, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    ibv_req_notify_cq(a.cq, 0);
    double t0 = now_s();
    post_write(&a, IBV_WR_RDMA_WRITE, 1, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
    struct ibv_wc wc;
    usleep(50000);
    int early = ibv_poll_cq(a.cq, 1, &wc);
    struct pollfd pf = {.fd = a.ch->fd, .events = POLLIN};
    int pr = poll(&pf, 1, 5000);
    double dt = now_s() - t0;
    struct ibv_cq *ecq;
    void *ectx;
    if (pr == 1 && ibv_get_cq_event(a.ch, &ecq, &ectx) == 0)
        ibv_ack_cq_events(ecq, 1);
    int n = poll_n(a.cq, &wc, 1, 1);
    ok(early == 0 && pr == 1 && dt >= 0.19 && n == 1, "SOFTVERBS_FAULT_CQ_DELAY_US=200000: completion (and its event) after %.3f s", dt);
    end_close(&a);
    end_close(&b);
}

static void t_reorder(void)
{
    /* Two QPs on one CQ: completions interleave differently from posting
     * order across QPs, never within one QP. */
    struct end a, b, a2, b2;
    end_open(&a, 256, 64, 64, ACC_RW);
    end_open(&b, 64, 64, 64, ACC_RW);
    connect_pair(&a, &b, IBV_ACCESS_REMOTE_WRITE, 7);
    /* second QP in a's context on a's CQ */
    a2 = a;
    struct ibv_qp_init_attr ia = {.send_cq = a.cq, .recv_cq = a.cq, .qp_type = IBV_QPT_RC,
                                  .cap = {.max_send_wr = 64, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1}};
    a2.qp = ibv_create_qp(a.pd, &ia);
    end_open(&b2, 64, 64, 64, ACC_RW);
    connect_pair(&a2, &b2, IBV_ACCESS_REMOTE_WRITE, 7);
    for (int i = 0; i < 40; i++) {
        post_write(&a, IBV_WR_RDMA_WRITE, (uint64_t)i, a.buf, 8, (uintptr_t)b.buf, b.mr->rkey, 0, 1);
        post_write(&a2, IBV_WR_RDMA_WRITE, 1000 + (uint64_t)i, a.buf, 8, (uintptr_t)b2.buf, b2.mr->rkey, 0, 1);
    }
    usleep(300000);
    struct ibv_wc wc[80];
    int n = poll_n(a.cq, wc, 80, 5);
    int inorder = 1, alternating = 1;
    uint64_t last1 = 0, last2 = 1000;
    for (int i = 0; i < n; i++) {
        uint64_t id = wc[i].wr_id;
        if (id >= 1000) {
            inorder &= id >= last2;
            last2 = id;
        } else {
            inorder &= id >= last1;
            last1 = id;
        }
        if (i > 0)
            alternating &= (wc[i].wr_id >= 1000) != (wc[i - 1].wr_id >= 1000);
    }
    ok(n == 80 && inorder, "SOFTVERBS_FAULT_REORDER: per-QP order kept");
    ok(n == 80 && !alternating, "SOFTVERBS_FAULT_REORDER: order across QPs differs from posting order");
    ibv_destroy_qp(a2.qp);
    end_close(&b2);
    end_close(&a);
    end_close(&b);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0) {
        t_device();
        t_transitions();
        t_send_write_imm();
        t_rem_access(0);
        t_rem_access(1);
        t_rnr();
        t_sq_overrun();
        t_channel_and_cq_overrun();
        t_peer_death(0);
    } else if (strcmp(mode, "memlock") == 0) {
        t_memlock();
    } else if (strcmp(mode, "delay") == 0) {
        t_delay();
    } else if (strcmp(mode, "reorder") == 0) {
        t_reorder();
    } else if (strcmp(mode, "kill") == 0) {
        t_peer_death(1);
    } else {
        fprintf(stderr, "usage: sv_semantics [basic|memlock|delay|reorder|kill]\n");
        return 2;
    }
    printf("1..%d\n", tn);
    return tfail ? 1 : 0;
}
