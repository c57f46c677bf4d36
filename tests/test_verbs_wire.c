/* test_verbs_wire.c — the pure half of the verbs transport, no device needed:
 * descriptor/control-message encoding, endpoint exchange blocks, chunk put
 * planning and bounds, work-request ids, send-queue accounting with
 * selective signalling, the request backlog, and completion handling
 * (arrivals, credits, notifies, sent, error completions and their flushes). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "verbs_wire.h"


static char why[256];

static void test_desc(void)
{
    uint8_t b[PB_VW_MSG_SIZE];
    struct pb_vw_desc d;
    int ok = 1;
    const uint32_t tags[] = {0, 1, 0x7fffffffu, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        pb_vw_desc_pack(b, 3, tags[i], 4096);
        ok &= pb_vw_desc_unpack(b, 3, 8, 4096, &d, why, sizeof why) == 0 && d.slot == 3 &&
              d.tag == tags[i] && d.len == 4096;
    }
    tap_ok(ok, "descriptor round-trips every 32-bit tag, len == slot size accepted");

    pb_vw_desc_pack(b, 3, 7, 4097);
    tap_ok(pb_vw_desc_unpack(b, 3, 8, 4096, &d, why, sizeof why) != 0 && strstr(why, "exceeds"),
           "descriptor with len > slot size refused");
    pb_vw_desc_pack(b, 2, 7, 10);
    tap_ok(pb_vw_desc_unpack(b, 3, 8, 4096, &d, why, sizeof why) != 0 && strstr(why, "slot 2"),
           "descriptor naming another slot than the immediate refused");
    memset(b, 0, sizeof b);
    tap_ok(pb_vw_desc_unpack(b, 3, 8, 4096, &d, why, sizeof why) != 0 && strstr(why, "missing"),
           "zeroed (consumed or never written) descriptor refused");
    pb_vw_desc_pack(b, 3, 7, 10);
    int flips = 0;
    for (int bit = 0; bit < 128; bit++) {
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        flips += pb_vw_desc_unpack(b, 3, 8, 4096, &d, why, sizeof why) != 0;
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    tap_ok(flips == 128, "every single-bit corruption of a descriptor detected");
    pb_vw_desc_pack(b, 8, 7, 10);
    tap_ok(pb_vw_desc_unpack(b, 8, 8, 4096, &d, why, sizeof why) != 0, "immediate slot >= nslots refused");
    /* little-endian on the wire, whatever the host */
    pb_vw_desc_pack(b, 0x01020304u, 0, 0);
    tap_ok(b[0] == 4 && b[1] == 3 && b[2] == 2 && b[3] == 1, "descriptor fields are little-endian on the wire");
}

static void test_msg(void)
{
    uint8_t b[PB_VW_CTRL_SIZE];
    uint32_t ty, v;
    pb_vw_msg_pack(b, PB_VW_MSG_CREDIT, 17);
    int ok = pb_vw_msg_unpack(b, PB_VW_CTRL_SIZE, &ty, &v, why, sizeof why) == 0 && ty == PB_VW_MSG_CREDIT && v == 17;
    pb_vw_msg_pack(b, PB_VW_MSG_NOTIFY, UINT32_MAX);
    ok &= pb_vw_msg_unpack(b, PB_VW_CTRL_SIZE, &ty, &v, why, sizeof why) == 0 && ty == PB_VW_MSG_NOTIFY &&
          v == UINT32_MAX;
    tap_ok(ok, "credit and notify messages round-trip");
    tap_ok(pb_vw_msg_unpack(b, 15, &ty, &v, why, sizeof why) != 0 && pb_vw_msg_unpack(b, 0, &ty, &v, why, sizeof why) != 0,
           "control message of the wrong length refused");
    b[5] ^= 0x40;
    tap_ok(pb_vw_msg_unpack(b, PB_VW_CTRL_SIZE, &ty, &v, why, sizeof why) != 0, "corrupt control message refused");
    pb_vw_msg_pack(b, 9, 1);
    tap_ok(pb_vw_msg_unpack(b, PB_VW_CTRL_SIZE, &ty, &v, why, sizeof why) != 0 && strstr(why, "unknown"),
           "unknown control message type refused");
}

static struct pb_vw_info sample_info(void)
{
    struct pb_vw_info in;
    memset(&in, 0, sizeof in);
    in.npeers = 3;
    in.nslots = 16;
    in.slot_size = 8u << 20;
    in.pool_addr = 0x7f0000000000ull;
    in.probe_rkey = 0xdeadbeef;
    in.desc_addr = 0x7f1000000000ull;
    in.probe_off = 0x12345678;
    in.rq_depth = 64;
    in.lid = 0xbeef;
    in.port = 2;
    in.link_layer = PB_VW_LL_ETH;
    in.mtu = 5;
    for (int i = 0; i < 16; i++)
        in.gid[i] = (uint8_t)(0xf0 + i);
    return in;
}

static void test_info(void)
{
    uint8_t b[PB_VW_INFO_SIZE];
    struct pb_vw_info in = sample_info(), out;
    pb_vw_info_pack(&in, b);
    tap_ok(pb_vw_info_unpack(b, &out, why, sizeof why) == 0 && out.status == 0 && out.npeers == 3 &&
               out.nslots == 16 && out.slot_size == (8u << 20) && out.pool_addr == in.pool_addr &&
               out.probe_rkey == in.probe_rkey && out.desc_addr == in.desc_addr && out.probe_off == in.probe_off &&
               out.rq_depth == 64 && out.lid == 0xbeef && out.port == 2 && out.link_layer == PB_VW_LL_ETH &&
               out.mtu == 5 && memcmp(out.gid, in.gid, 16) == 0,
           "endpoint info round-trips every field");

    struct pb_vw_info e;
    char longr[300];
    memset(longr, 'x', sizeof longr - 1);
    longr[sizeof longr - 1] = '\0';
    pb_vw_info_error(&e, "no RDMA device found (ibv_get_device_list returned none)");
    pb_vw_info_pack(&e, b);
    tap_ok(pb_vw_info_unpack(b, &out, why, sizeof why) == 0 && out.status != 0 &&
               strcmp(out.reason, "no RDMA device found (ibv_get_device_list returned none)") == 0,
           "error marker carries the failing leader's reason");
    pb_vw_info_error(&e, longr);
    pb_vw_info_pack(&e, b);
    tap_ok(pb_vw_info_unpack(b, &out, why, sizeof why) == 0 && out.status != 0 &&
               strlen(out.reason) == PB_VW_REASON_MAX - 1,
           "over-long reason is truncated and terminated");

    pb_vw_info_pack(&in, b);
    b[0] ^= 1;
    tap_ok(pb_vw_info_unpack(b, &out, why, sizeof why) != 0 && strstr(why, "not from"), "bad magic refused");
    pb_vw_info_pack(&in, b);
    b[4] = 9;
    tap_ok(pb_vw_info_unpack(b, &out, why, sizeof why) != 0 && strstr(why, "version"),
           "other protocol version refused with a version message");
    struct pb_vw_info bad = in;
    bad.mtu = 0;
    pb_vw_info_pack(&bad, b);
    int r1 = pb_vw_info_unpack(b, &out, why, sizeof why);
    bad = in;
    bad.nslots = 0;
    pb_vw_info_pack(&bad, b);
    int r2 = pb_vw_info_unpack(b, &out, why, sizeof why);
    bad = in;
    bad.link_layer = 7;
    pb_vw_info_pack(&bad, b);
    int r3 = pb_vw_info_unpack(b, &out, why, sizeof why);
    tap_ok(r1 != 0 && r2 != 0 && r3 != 0, "malformed info (mtu 0, no slots, unknown link layer) refused");
    bad = in;
    bad.pool_addr = UINT64_MAX - 100;
    pb_vw_info_pack(&bad, b);
    r1 = pb_vw_info_unpack(b, &out, why, sizeof why);
    bad = in;
    bad.nslots = 0x10000;
    bad.slot_size = UINT64_MAX / 0x8000;
    pb_vw_info_pack(&bad, b);
    r2 = pb_vw_info_unpack(b, &out, why, sizeof why);
    tap_ok(r1 != 0 && r2 != 0, "info advertising a pool that wraps the address space refused");
}

static void test_conn(void)
{
    /* Leader 1 offers leader 2 its QP 0x201; leader 2 offers 1 its QP 0x300. */
    struct pb_vw_info in = sample_info(), out;
    struct pb_vw_conn to2 = {2, 0x201, 23}, to1 = {1, 0x300, 33}, c;
    uint8_t o[PB_VW_OFFER_SIZE];
    pb_vw_offer_pack(&in, &to2, o);
    tap_ok(pb_vw_offer_unpack(o, 2, &out, &c, why, sizeof why) == 0 && c.peer == 2 && c.qpn == 0x201 &&
               c.psn == 23 && out.nslots == in.nslots && out.pool_addr == in.pool_addr,
           "offer round-trips: the endpoint and the queue pair made for the receiver");
    tap_ok(pb_vw_offer_unpack(o, 3, &out, &c, why, sizeof why) != 0 && strstr(why, "meant for leader 2"),
           "an offer meant for another leader refused");
    struct pb_vw_conn big = {2, 0x1000000, 23}, bigpsn = {2, 0x201, 0x1000000};
    pb_vw_offer_pack(&in, &big, o);
    int s1 = pb_vw_offer_unpack(o, 2, &out, &c, why, sizeof why);
    pb_vw_offer_pack(&in, &bigpsn, o);
    int s2 = pb_vw_offer_unpack(o, 2, &out, &c, why, sizeof why);
    struct pb_vw_info e;
    pb_vw_info_error(&e, "no RDMA device");
    pb_vw_offer_pack(&e, &to2, o);
    int s3 = pb_vw_offer_unpack(o, 2, &out, &c, why, sizeof why);
    tap_ok(s1 != 0 && s2 != 0 && s3 != 0 && strstr(why, "no RDMA device"),
           "QPN or PSN over 24 bits, a failure marker refused");
    pb_vw_offer_pack(&in, &to2, o);
    o[0] ^= 1;
    tap_ok(pb_vw_offer_unpack(o, 2, &out, &c, why, sizeof why) != 0 && strstr(why, "not from"),
           "an offer with a bad info block refused");

    /* Echoes: 1 says (sent to2, got to1); 2 checks against (sent to1, got to2). */
    uint8_t e1[PB_VW_ECHO_SIZE];
    pb_vw_echo_pack(&to2, &to1, e1);
    tap_ok(pb_vw_echo_check(e1, &to1, &to2, why, sizeof why) == 0, "mirror-image echoes agree");
    struct pb_vw_conn wrong = {1, 0x301, 33};
    int m1 = pb_vw_echo_check(e1, &wrong, &to2, why, sizeof why);
    struct pb_vw_conn wrong2 = {2, 0x201, 24};
    int m2 = pb_vw_echo_check(e1, &to1, &wrong2, why, sizeof why);
    tap_ok(m1 != 0 && m2 != 0 && strstr(why, "disagree"),
           "a partner that got another QP than we sent, or says it sent another than we got: refused");
}

static void test_plan(void)
{
    static uint8_t pool[4 * 1000];
    struct pb_vw_local l = {(uintptr_t)pool, sizeof pool};
    struct pb_vw_remote r = {0x10000000ull, 0xaaaa, 0x20000000ull, 0xbbbb, 6, 1 << 20};
    struct pb_vw_put_plan p;
    struct pb_vw_desc d;
    int rc = pb_vw_plan_put(&l, &r, 5, 0xcafef00d, pool + 1000, 1000, &p, why, sizeof why);
    tap_ok(rc == 0 && p.data_raddr == 0x10000000ull + 5ull * (1 << 20) && p.data_rkey == 0xaaaa &&
               p.data_laddr == (uintptr_t)(pool + 1000) && p.len == 1000 && p.imm == 5 &&
               p.desc_raddr == 0x20000000ull + 5 * PB_VW_MSG_SIZE && p.desc_rkey == 0xbbbb,
           "put plan: remote = base + slot*slot_size, imm = slot, desc entry, keys");
    tap_ok(pb_vw_desc_unpack(p.desc, 5, 6, 1 << 20, &d, why, sizeof why) == 0 && d.tag == 0xcafef00d && d.len == 1000,
           "put plan carries a descriptor the receiver accepts");
    tap_ok(pb_vw_plan_put(&l, &r, 6, 0, pool, 10, &p, why, sizeof why) != 0 && strstr(why, "slot 6"),
           "put into slot == peer nslots refused");
    struct pb_vw_remote small = r;
    small.slot_size = 999;
    tap_ok(pb_vw_plan_put(&l, &small, 0, 0, pool, 1000, &p, why, sizeof why) != 0 && strstr(why, "exceeds"),
           "put larger than the peer's slot refused");
    int o1 = pb_vw_plan_put(&l, &r, 0, 0, pool + 3001, 1000, &p, why, sizeof why);
    int o2 = pb_vw_plan_put(&l, &r, 0, 0, (const void *)((uintptr_t)pool - 1), 2, &p, why, sizeof why);
    int o3 = pb_vw_plan_put(&l, &r, 0, 0, pool + sizeof pool, 1, &p, why, sizeof why);
    int o4 = pb_vw_plan_put(&l, &r, 0, 0, pool + 3000, 1000, &p, why, sizeof why);
    int o5 = pb_vw_plan_put(&l, &r, 0, 0, pool + sizeof pool, 0, &p, why, sizeof why);
    tap_ok(o1 != 0 && o2 != 0 && o3 != 0 && o4 == 0 && o5 == 0,
           "source outside the registered pool refused, last byte and empty put at the end accepted");
    struct pb_vw_remote big = {UINT64_MAX - (1u << 20), 1, 0, 1, UINT32_MAX, 1u << 20};
    tap_ok(pb_vw_plan_put(&l, &big, 2, 0, pool, 1, &p, why, sizeof why) != 0,
           "slot address overflowing 64 bits refused");
}

static void test_wrid(void)
{
    enum pb_vw_kind k;
    int peer;
    uint64_t low;
    uint64_t w = pb_vw_wrid(PB_VW_K_DATA, PB_VW_MAX_PEERS - 1, (UINT64_C(1) << 40) + 12345);
    pb_vw_wrid_split(w, &k, &peer, &low);
    int ok = k == PB_VW_K_DATA && peer == PB_VW_MAX_PEERS - 1 && low == 12345;
    w = pb_vw_wrid(PB_VW_K_RECV, 0, 0);
    pb_vw_wrid_split(w, &k, &peer, &low);
    ok &= k == PB_VW_K_RECV && peer == 0 && low == 0;
    tap_ok(ok, "work request id keeps kind, peer (24 bits) and sequence");
    uint64_t m = UINT64_C(1) << PB_VW_SEQ_BITS;
    tap_ok(pb_vw_seq_full(m - 2, 1) == m + 1 && pb_vw_seq_full(m - 2, m - 2) == m - 2 &&
               pb_vw_seq_full(5 * m + 3, 7) == 5 * m + 7,
           "full sequence number recovered across the low-bits wrap");
}

static void test_sq(void)
{
    struct pb_vw_sq sq;
    pb_vw_sq_init(&sq, 8);
    int sig, maxrun = 0, run = 0;
    for (int i = 0; i < 100; i++) {
        pb_vw_sq_take(&sq, 0, &sig);
        run = sig ? 0 : run + 1;
        maxrun = run > maxrun ? run : maxrun;
        sq.done = sq.posted; /* pretend all complete */
    }
    tap_ok(maxrun < (int)sq.signal_every && sq.signal_every < sq.depth,
           "unsignalled runs stay shorter than signal_every < depth");
    pb_vw_sq_init(&sq, 8);
    uint64_t s0 = pb_vw_sq_take(&sq, 0, &sig);
    int sig0 = sig;
    uint64_t s1 = pb_vw_sq_take(&sq, 1, &sig);
    tap_ok(!sig0 && sig && s1 == s0 + 1 && pb_vw_sq_room(&sq) == 6, "want_signal forces a signal; room shrinks");
    pb_vw_sq_complete(&sq, s1);
    tap_ok(pb_vw_sq_room(&sq) == 8 && sq.done == 2, "a signalled completion retires every earlier WR");
    pb_vw_sq_complete(&sq, 100);
    tap_ok(sq.done == 2, "completion for a sequence never posted is ignored");
    uint64_t s2 = pb_vw_sq_take(&sq, 0, &sig);
    pb_vw_sq_untake(&sq, s2, sig);
    tap_ok(sq.posted == 2 && pb_vw_sq_room(&sq) == 8, "a WR not posted after all is given back");

    /* Model the transport: control WRs and puts (2 WRs, data signalled)
     * posted whenever there is room, completions only for signalled WRs,
     * delivered in order. The queue must never wedge. */
    srand(7);
    for (uint32_t depth = 4; depth <= 64; depth *= 2) {
        pb_vw_sq_init(&sq, depth);
        uint64_t sigq[256];
        int nsig = 0, wedged = 0, over = 0;
        for (int step = 0; step < 20000 && !wedged; step++) {
            int put = rand() % 3 == 0;
            uint32_t need = put ? 2 : 1;
            if (pb_vw_sq_room(&sq) >= need) {
                uint64_t s = pb_vw_sq_take(&sq, 0, &sig);
                if (sig)
                    sigq[nsig++ % 256] = s;
                if (put) {
                    s = pb_vw_sq_take(&sq, 1, &sig);
                    sigq[nsig++ % 256] = s;
                }
                if (sq.posted - sq.done > sq.depth)
                    over = 1;
            } else if (nsig > 0) {
                /* deliver the oldest signalled completion */
                pb_vw_sq_complete(&sq, sigq[0]);
                memmove(sigq, sigq + 1, (size_t)(nsig - 1) * sizeof sigq[0]);
                nsig--;
            } else {
                wedged = 1;
            }
            if (rand() % 4 == 0 && nsig > 0) {
                pb_vw_sq_complete(&sq, sigq[0]);
                memmove(sigq, sigq + 1, (size_t)(nsig - 1) * sizeof sigq[0]);
                nsig--;
            }
        }
        char d[128];
        snprintf(d, sizeof d, "depth %u: never more than depth outstanding, never wedged", depth);
        tap_ok(!wedged && !over, d);
    }
}

static void test_backlog(void)
{
    struct pb_vw_link lk;
    int ok = pb_vw_link_init(&lk, 8) == 0;
    for (uint32_t i = 0; i < 10; i++) {
        struct pb_vw_req r = {PB_VW_REQ_PUT, i, i * 10, 1, NULL, i};
        ok &= pb_vw_link_push(&lk, &r) == 0;
    }
    for (uint32_t i = 0; i < 5; i++) {
        ok &= pb_vw_link_peek(&lk)->slot == i;
        pb_vw_link_pop(&lk);
    }
    for (uint32_t i = 10; i < 60; i++) { /* wraps and grows */
        struct pb_vw_req r = {PB_VW_REQ_CREDIT, i, 0, 0, NULL, 0};
        ok &= pb_vw_link_push(&lk, &r) == 0;
    }
    for (uint32_t i = 5; i < 60; i++) {
        const struct pb_vw_req *r = pb_vw_link_peek(&lk);
        ok &= r && r->slot == i && r->kind == (i < 10 ? PB_VW_REQ_PUT : PB_VW_REQ_CREDIT);
        pb_vw_link_pop(&lk);
    }
    ok &= pb_vw_link_peek(&lk) == NULL;
    pb_vw_link_pop(&lk); /* harmless on empty */
    tap_ok(ok && pb_vw_req_wrs(PB_VW_REQ_PUT) == 2 && pb_vw_req_wrs(PB_VW_REQ_NOTIFY) == 1 &&
               pb_vw_req_wrs(PB_VW_REQ_BIND) == 2 && pb_vw_req_wrs(PB_VW_REQ_CREDIT) == 1,
           "backlog keeps request order across wrap-around and growth; a bind takes 2 WRs (slot, descriptor)");
    pb_vw_link_fini(&lk);
}

/* ---- completion handling ---- */

static uint8_t recvbufs[2][4][PB_VW_CTRL_SIZE];

static const uint8_t *get_recv(void *ctx, int link, uint64_t idx)
{
    (void)ctx;
    return recvbufs[link][idx % 4];
}

static void test_cqe(void)
{
    enum { NS = 4, SS = 1000 };
    static uint8_t table[NS * PB_VW_MSG_SIZE];
    struct pb_vw_link links[2];
    int leaders[2] = {7, 9};
    uint32_t pns[2] = {3, 5};
    pb_vw_link_init(&links[0], 8);
    pb_vw_link_init(&links[1], 8);
    struct pb_vw_state st = {2, leaders, links, pns, table, NS, SS, get_recv, NULL};
    struct pb_event ev;
    int rl;
    int64_t ri;

    /* A chunk arrives in slot 2 from link 1. */
    pb_vw_desc_pack(table + 2 * PB_VW_MSG_SIZE, 2, 0xabcdef01u, 777);
    struct pb_vw_cqe c = {pb_vw_wrid(PB_VW_K_RECV, 1, 3), 1, "success", 0, PB_VW_OP_RECV_IMM, 2, 0};
    int n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    static const uint8_t zero[PB_VW_MSG_SIZE];
    tap_ok(n == 1 && ev.kind == PB_EV_ARRIVED && ev.peer == 9 && ev.slot == 2 && ev.tag == 0xabcdef01u &&
               ev.len == 777 && rl == 1 && ri == 3,
           "write-with-immediate arrival -> ARRIVED with slot, tag, len from the descriptor; receive reposted");
    tap_ok(memcmp(table + 2 * PB_VW_MSG_SIZE, zero, PB_VW_MSG_SIZE) == 0, "descriptor zeroed after use");

    /* credit and notify from link 0 */
    pb_vw_msg_pack(recvbufs[0][1], PB_VW_MSG_CREDIT, 2);
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 1), 1, "success", 0, PB_VW_OP_RECV, 0, PB_VW_CTRL_SIZE};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_CREDIT && ev.peer == 7 && ev.slot == 2 && rl == 0 && ri == 1,
           "credit message -> CREDIT for the peer's slot");
    pb_vw_msg_pack(recvbufs[0][2], PB_VW_MSG_NOTIFY, 0xd0e);
    c.wr_id = pb_vw_wrid(PB_VW_K_RECV, 0, 2);
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_NOTIFY && ev.peer == 7 && ev.tag == 0xd0e, "notify message -> NOTIFY with code");

    /* a put on link 0: desc (unsignalled) + data (signalled) */
    int sig;
    uint64_t s0 = pb_vw_sq_take(&links[0].sq, 0, &sig);
    uint64_t s1 = pb_vw_sq_take(&links[0].sq, 1, &sig);
    links[0].cookies[s1 % links[0].sq.depth] = 0x1122334455667788ull;
    (void)s0;
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_DATA, 0, s1), 1, "success", 0, PB_VW_OP_SEND_DONE, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_SENT && ev.peer == 7 && ev.cookie == 0x1122334455667788ull && rl == -1 &&
               pb_vw_sq_room(&links[0].sq) == 8,
           "data write completion -> SENT with the put's cookie; queue space retired");
    s0 = pb_vw_sq_take(&links[0].sq, 1, &sig);
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_CTRL, 0, s0), 1, "success", 0, PB_VW_OP_SEND_DONE, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && pb_vw_sq_room(&links[0].sq) == 8, "signalled control send completion: no event, space retired");

    /* bad credit slot from link 1 (peer has 5 slots) */
    pb_vw_msg_pack(recvbufs[1][0], PB_VW_MSG_CREDIT, 5);
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 1, 0), 1, "success", 0, PB_VW_OP_RECV, 0, PB_VW_CTRL_SIZE};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.peer == 9 && ev.err == EPROTO && strstr(ev.what, "slot 5") &&
               rl == -1 && links[1].dead,
           "credit for a slot the peer does not have -> ERROR (EPROTO), link dead, no repost");
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 1, 1), 0, "Work Request Flushed Error", 0, 0, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && rl == -1, "flush after the link died adds no second error");

    /* error completion of a data write on link 0 */
    pb_vw_desc_pack(table, 0, 1, 1);
    s1 = pb_vw_sq_take(&links[0].sq, 1, &sig);
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_DATA, 0, s1), 0, "transport retry counter exceeded", 0x81, 0, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.peer == 7 && ev.err == EIO &&
               strstr(ev.what, "RDMA write of a chunk failed: transport retry counter exceeded") &&
               strstr(ev.what, "0x81"),
           "error completion -> ERROR naming the operation, ibv_wc_status_str text and vendor error");
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 0), 1, "success", 0, PB_VW_OP_RECV_IMM, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && rl == -1, "successful completions of a dead link are dropped");

    /* missing descriptor: new state with fresh links */
    pb_vw_link_fini(&links[0]);
    pb_vw_link_fini(&links[1]);
    pb_vw_link_init(&links[0], 8);
    pb_vw_link_init(&links[1], 8);
    memset(table, 0, sizeof table);
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 0), 1, "success", 0, PB_VW_OP_RECV_IMM, 1, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.err == EPROTO && strstr(ev.what, "missing"),
           "arrival without its descriptor -> ERROR, not a silent chunk");
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 1, 0), 1, "success", 0, PB_VW_OP_RECV_IMM, NS, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.peer == 9 && strstr(ev.what, "slot 4"),
           "immediate naming a slot beyond our pool -> ERROR");
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_CTRL, 2, 0), 1, "success", 0, PB_VW_OP_SEND_DONE, 0, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    int n2 = pb_vw_handle_cqe(&st, &(struct pb_vw_cqe){UINT64_C(0xf) << 60, 1, "success", 0, 0, 0, 0}, &ev, &rl, &ri);
    tap_ok(n == 1 && n2 == 1 && ev.kind == PB_EV_ERROR && ev.peer == -1, "unknown work request id -> transport ERROR");
    pb_vw_link_fini(&links[0]);
    pb_vw_link_fini(&links[1]);
}

/* The job secret on the first message and per-slot keys in credits. */
static void test_hello(void)
{
    /* SipHash-2-4 reference vector: key 00..0f, message 00..0e (15 bytes) */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    tap_ok(pb_vw_siphash(key, msg, 15) == UINT64_C(0xa129ca6149be45e5), "SipHash-2-4 matches the reference vector");
    uint8_t other[16];
    memcpy(other, key, 16);
    other[15] ^= 1;
    uint64_t m = pb_vw_hello_mac(key, 1, 2, 0x100, 0x200, 5, 6);
    tap_ok(m != pb_vw_hello_mac(other, 1, 2, 0x100, 0x200, 5, 6) && m != pb_vw_hello_mac(key, 2, 1, 0x200, 0x100, 6, 5),
           "hello mac depends on the secret and the direction");

    enum { NS = 4 };
    static uint8_t table[NS * PB_VW_MSG_SIZE];
    struct pb_vw_link links[1];
    int leaders[1] = {3};
    uint32_t pns[1] = {4};
    pb_vw_link_init(&links[0], 8);
    pb_vw_link_peer_slots(&links[0], 4);
    links[0].hello_wait = 1;
    links[0].hello_mac = m;
    struct pb_vw_state st = {1, leaders, links, pns, table, NS, 1000, get_recv, NULL};
    struct pb_event ev;
    int rl;
    int64_t ri;
    pb_vw_ctrl_pack(recvbufs[0][0], &(struct pb_vw_ctrl){PB_VW_MSG_CREDIT, 1, 0xaaa, 0xbbb, 0});
    struct pb_vw_cqe c = {pb_vw_wrid(PB_VW_K_RECV, 0, 0), 1, "success", 0, PB_VW_OP_RECV, 0, PB_VW_CTRL_SIZE};
    int n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.err == EACCES && strstr(ev.what, "secret") && links[0].dead,
           "credit before the hello -> ERROR (EACCES), link dead");

    links[0].dead = 0;
    pb_vw_ctrl_pack(recvbufs[0][1], &(struct pb_vw_ctrl){PB_VW_MSG_HELLO, 0, 0, 0, m ^ 1});
    c.wr_id = pb_vw_wrid(PB_VW_K_RECV, 0, 1);
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.err == EACCES && strstr(ev.what, "secret") && links[0].hello_wait,
           "hello with a wrong mac -> ERROR (EACCES)");
    links[0].dead = 0;
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 1), 1, "success", 0, PB_VW_OP_RECV_IMM, 1, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_ERROR && ev.err == EACCES, "chunk before the hello -> ERROR (EACCES)");
    links[0].dead = 0;
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 5), 1, "success", 0, PB_VW_OP_RECV_IMM, PB_VW_PROBE_IMM, 0};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && rl == 0 && ri == 5 && !links[0].dead && links[0].hello_wait,
           "a set-up probe write (before the hello): no event, receive reposted");
    links[0].dead = 0;
    pb_vw_ctrl_pack(recvbufs[0][2], &(struct pb_vw_ctrl){PB_VW_MSG_HELLO, 0, 0, 0, m});
    c = (struct pb_vw_cqe){pb_vw_wrid(PB_VW_K_RECV, 0, 2), 1, "success", 0, PB_VW_OP_RECV, 0, PB_VW_CTRL_SIZE};
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && !links[0].hello_wait && rl == 0 && ri == 2, "right hello: accepted silently, receive reposted");
    pb_vw_ctrl_pack(recvbufs[0][3], &(struct pb_vw_ctrl){PB_VW_MSG_CREDIT, 1, 0xaaa, 0xbbb, 0});
    c.wr_id = pb_vw_wrid(PB_VW_K_RECV, 0, 3);
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 1 && ev.kind == PB_EV_CREDIT && ev.slot == 1 && links[0].rkey_data[1] == 0xaaa &&
               links[0].rkey_desc[1] == 0xbbb && links[0].rkey_data[0] == 0,
           "credit after the hello -> CREDIT, its slot's keys kept");
    pb_vw_msg_pack(recvbufs[0][0], PB_VW_MSG_PING, 0);
    c.wr_id = pb_vw_wrid(PB_VW_K_RECV, 0, 0);
    n = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
    tap_ok(n == 0 && rl == 0 && !links[0].dead, "keepalive ping: no event, receive reposted");
    pb_vw_link_fini(&links[0]);
}

int main(void)
{
    test_desc();
    test_msg();
    test_info();
    test_conn();
    test_plan();
    test_wrid();
    test_sq();
    test_backlog();
    test_cqe();
    test_hello();
    return tap_done();
}
