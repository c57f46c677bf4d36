/* sv_verbs_guard.c — the verbs transport's access control over softverbs,
 * 3 MPI ranks = 3 leaders, all peers of each other. Built and run by
 * tests/test_verbs_guard.sh. Includes the transport's source to reach its
 * queue pairs and keys (a misbehaving peer is not polite enough to use the
 * API).
 *   guard:    0 grants slot 0 to 1 and slot 1 to 2; 2 puts 'C' into slot 1;
 *             then 1 writes slot 1 with 2's rkey (raw RDMA WRITE): it must
 *             fail with IBV_WC_REM_ACCESS_ERR and 0's slot 1 stay all 'C'.
 *   stranger: 2 has another job secret: 0 must report the link to 2 failed
 *             (EACCES, names the secret) and never give 2 a credit; 1 (right
 *             secret) gets its credit.
 * Prints "guard: ..." lines; exits 0 when the checks of this rank passed. */
#include "../../src/transport/verbs/verbs.c"

#include <mpi.h>

#define NSL 4
#define SLOT 4096

/* The bootstrap's exchange with the partners, plainly: the vote, then a
 * message of its own to and from each partner. */
static int per_peer(void *ctx, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers)
{
    (void)ctx;
    int all = ok ? 1 : 0;
    if (MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
        return -1;
    if (!all)
        return 1;
    MPI_Request r[8];
    for (int i = 0; i < npeers && i < 4; i++) {
        MPI_Irecv((char *)out + (size_t)i * len, (int)len, MPI_BYTE, peers[i], 77, MPI_COMM_WORLD, &r[2 * i]);
        MPI_Isend((const char *)mine + (size_t)i * len, (int)len, MPI_BYTE, peers[i], 77, MPI_COMM_WORLD,
                  &r[2 * i + 1]);
    }
    return MPI_Waitall(2 * npeers, r, MPI_STATUSES_IGNORE) == MPI_SUCCESS ? 0 : -1;
}

/* Poll until an event of kind (from peer, -1 any) or ms pass. */
static int wait_ev(struct pb_transport *t, enum pb_ev_kind kind, int peer, int ms, struct pb_event *out)
{
    double end = now_ms() + ms;
    struct pb_event ev[16];
    while (now_ms() < end) {
        int n = t->ops->poll(t, ev, 16, 50);
        for (int i = 0; i < n; i++) {
            if (ev[i].kind == PB_EV_ERROR)
                printf("guard: rank event: error from %d: %s (%s)\n", ev[i].peer, ev[i].what, strerror(ev[i].err));
            if (ev[i].kind == kind && (peer < 0 || ev[i].peer == peer)) {
                if (out)
                    *out = ev[i];
                return 1;
            }
        }
    }
    return 0;
}

/* A barrier that keeps the transport making progress while it waits: a
 * credit deferred until the peer's hello arrives goes out only from poll. */
static void barrier_polling(struct pb_transport *t)
{
    MPI_Request r;
    int done = 0;
    struct pb_event ev[16];
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    while (!done) {
        (void)t->ops->poll(t, ev, 16, 10);
        MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    }
}

/* Rank 1's misdeed: RDMA WRITE into rank 0's slot 1 with another's rkey. */
static int raw_write(struct vt *t, uint32_t rkey, uint64_t raddr)
{
    struct vlink *L = &t->links[t->leader_link[0]];
    memset(L->sendbuf, 'X', 16);
    struct ibv_sge sge = {.addr = (uintptr_t)L->sendbuf, .length = 16, .lkey = t->rails[0].ctrl_mr->lkey};
    struct ibv_send_wr wr = {.wr_id = 0xbadbad, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
                             .send_flags = IBV_SEND_SIGNALED},
                       *bad;
    wr.wr.rdma.remote_addr = raddr;
    wr.wr.rdma.rkey = rkey;
    if (ibv_post_send(L->qp, &wr, &bad) != 0)
        return -1;
    double end = now_ms() + 10000;
    while (now_ms() < end) {
        struct ibv_wc wc;
        if (ibv_poll_cq(t->rails[0].cq, 1, &wc) == 1 && wc.wr_id == 0xbadbad) {
            printf("guard: rank 1: foreign-key write completed with %s\n", ibv_wc_status_str(wc.status));
            return wc.status;
        }
        usleep(1000);
    }
    return -1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int me, np;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    int stranger = argc > 1 && !strcmp(argv[1], "stranger");
    static const char *names[3] = {"n0 (rank 0)", "n1 (rank 1)", "n2 (rank 2)"};
    int peers[2] = {me == 0 ? 1 : 0, me == 2 ? 1 : 2};
    static uint8_t pool[NSL * SLOT] __attribute__((aligned(4096)));
    struct pb_transport_cfg cfg = {.self = me, .nleaders = 3, .peers = peers, .npeers = 2, .pool = pool,
                                   .slot_size = SLOT, .nslots = NSL, .names = names, .xchg = {.per_peer = per_peer},
                                   .timeout = 10, .gid_index = -1};
    memset(cfg.secret, 0x5e, 16);
    if (stranger && me == 2)
        cfg.secret[3] ^= 1;
    char err[512];
    if (np != 3) {
        printf("guard: needs 3 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    struct pb_transport *t = pb_verbs_open(&cfg, err, sizeof err);
    if (!t) {
        printf("guard: rank %d: open failed: %s\n", me, err);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    struct vt *v = (struct vt *)t;
    int ok = 1;
    struct pb_event ev;
    if (!stranger) {
        if (me == 0) {
            t->ops->grant(t, 1, 0);
            t->ops->grant(t, 2, 1);
            ok = wait_ev(t, PB_EV_ARRIVED, 2, 10000, &ev) && ev.slot == 1;
            printf("guard: rank 0: legit chunk from rank 2 in slot 1: %s\n", ok ? "yes" : "NO");
        } else {
            ok = wait_ev(t, PB_EV_CREDIT, 0, 10000, &ev);
            if (me == 2) {
                memset(pool, 'C', SLOT);
                ok = ok && t->ops->put(t, 0, 1, 7, pool, SLOT, 1) == 0 && wait_ev(t, PB_EV_SENT, 0, 10000, NULL);
            }
        }
        /* 2 hands its key for 0's slot 1 to 1 */
        struct pb_vw_link *lk2 = &v->lks[v->leader_link[0]];
        uint32_t key = me == 2 ? lk2->rkey_data[1] : 0;
        uint64_t addr = me == 2 ? v->links[v->leader_link[0]].rem.pool_addr + SLOT : 0;
        MPI_Bcast(&key, 1, MPI_UINT32_T, 2, MPI_COMM_WORLD);
        MPI_Bcast(&addr, 1, MPI_UINT64_T, 2, MPI_COMM_WORLD);
        if (me == 1) {
            int st = raw_write(v, key, addr);
            ok = ok && key != 0 && st == IBV_WC_REM_ACCESS_ERR;
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (me == 0) {
            int intact = 1;
            for (int i = 0; i < SLOT; i++)
                intact &= pool[SLOT + i] == 'C';
            printf("guard: rank 0: slot 1 intact after the foreign write: %s\n", intact ? "yes" : "NO");
            ok = ok && intact;
        }
    } else {
        if (me == 0) {
            t->ops->grant(t, 1, 0);
            t->ops->grant(t, 2, 1);
            ok = wait_ev(t, PB_EV_ERROR, 2, 10000, &ev) && ev.err == EACCES && strstr(ev.what, "secret");
            printf("guard: rank 0: link to the stranger refused: %s (%s)\n", ok ? "yes" : "NO", ok ? ev.what : "");
        } else if (me == 1) {
            ok = wait_ev(t, PB_EV_CREDIT, 0, 10000, &ev) && ev.slot == 0;
            printf("guard: rank 1: credit from rank 0: %s\n", ok ? "yes" : "NO");
        } else {
            int got = wait_ev(t, PB_EV_CREDIT, 0, 3000, &ev);
            ok = !got && v->lks[v->leader_link[0]].rkey_data[1] == 0;
            printf("guard: rank 2 (stranger): got a credit from rank 0: %s\n", got ? "YES" : "no");
        }
        barrier_polling(t); /* rank 0 must keep serving rank 1's link until 1 has its credit */
    }
    printf("guard: rank %d: %s\n", me, ok ? "pass" : "FAIL");
    t->ops->close(t);
    MPI_Finalize();
    return ok ? 0 : 1;
}
