/* fuzz_wire.c — libFuzzer target for everything p2pbcast parses off a wire:
 * the tcp hello and message headers (tcp_wire.c), the chunk trailer as the
 * engine checks it (digest.c + plan.c), and the verbs transport's
 * descriptors, control messages, endpoint-exchange blocks, connection
 * tables, put planning and completion handling (verbs_wire.c).
 *
 * The first input byte picks a decoder; decoder parameters (our slot count,
 * slot size, leader index...) are taken from the next bytes, the rest is the
 * "wire". Every buffer handed to a decoder is a malloc of exactly the size
 * the decoder may read, so ASan sees any read past it. Beyond "no crash, no
 * sanitizer report", each accepted input must satisfy the invariants the
 * callers rely on (abort() otherwise):
 *   - tcp hello: addressed to us, from a leader in range and not us, right
 *     secret; re-encoding gives the same 32 bytes;
 *   - tcp header: known type; DATA slot < nslots and len <= slot_size, so
 *     slot*slot_size+len stays inside the pool; CREDIT slot < nslots;
 *     re-encoding gives the same 16 bytes;
 *   - trailer: an accepted chunk lies inside the file;
 *   - verbs: accepted descriptors/messages are in bounds and re-encode
 *     identically; an accepted endpoint block describes pools that do not
 *     wrap; a planned put lands inside the peer's advertised pool and reads
 *     inside ours; a checked connection table is symmetric; completion
 *     events never name a slot outside the pool.
 *
 * Build: see run-fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "plan.h"
#include "tcp_wire.h"
#include "verbs_wire.h"

#include "fuzz_check.h"

/* A cursor over the input: numbers are taken little-endian, missing bytes
 * read as zero so every input is usable. */
struct in {
    const uint8_t *p;
    size_t n;
};

static uint64_t take(struct in *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        if (in->n) {
            v |= (uint64_t)in->p[0] << (8 * i);
            in->p++;
            in->n--;
        }
    }
    return v;
}

/* Exactly `len` bytes of heap copied from the input (zero-padded), so a
 * decoder reading past `len` trips ASan. */
static uint8_t *take_buf(struct in *in, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        abort();
    size_t k = in->n < len ? in->n : len;
    memcpy(b, in->p, k);
    memset(b + k, 0, len - k);
    in->p += k;
    in->n -= k;
    return b;
}

/* why buffers are small and sometimes tiny: truncation must be safe. */
static size_t why_len(struct in *in)
{
    static const size_t lens[] = { 1, 7, 40, 160 };
    return lens[take(in, 1) & 3];
}

static const uint8_t job_secret[16] = { 0x9a, 0x11, 0x02, 0xfe, 0x33, 0x44, 0x55, 0x66,
                                        0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee };

static void fuzz_hello(struct in *in)
{
    uint32_t self = (uint32_t)take(in, 2);
    uint32_t nleaders = (uint32_t)take(in, 2);
    /* Let the input also supply the secret the leader holds, sometimes. */
    uint8_t secret[16];
    int own_secret = (int)(take(in, 1) & 1);
    if (own_secret) {
        uint8_t *s = take_buf(in, 16);
        memcpy(secret, s, 16);
        free(s);
    } else {
        memcpy(secret, job_secret, 16);
    }
    size_t wl = why_len(in);
    uint8_t *b = take_buf(in, PB_TCP_HELLO_SIZE);
    char *why = malloc(wl);
    struct pb_tcp_hello h;
    memset(&h, 0xa5, sizeof h);
    if (pb_tcp_hello_decode(b, self, nleaders, secret, &h, why, wl) == 0) {
        CHECK(h.to == self);
        CHECK(h.from < nleaders);
        CHECK(h.from != self);
        CHECK(memcmp(h.secret, secret, 16) == 0);
        unsigned char re[PB_TCP_HELLO_SIZE];
        pb_tcp_hello_encode(re, &h);
        CHECK(memcmp(re, b, PB_TCP_HELLO_SIZE) == 0);
    } else {
        CHECK(memchr(why, 0, wl) != NULL); /* a terminated reason */
    }
    free(why);
    free(b);
}

static void fuzz_hdr(struct in *in)
{
    uint32_t nslots = (uint32_t)take(in, 4);
    size_t slot_size = (size_t)take(in, 8);
    if (take(in, 1) & 1) { /* realistic pools most of the time */
        nslots &= 0xfff;
        slot_size &= 0x7fffffff;
    }
    size_t wl = why_len(in);
    char *why = malloc(wl);
    /* Several headers back to back, like a stream. */
    for (int i = 0; i < 8 && in->n; i++) {
        uint8_t *b = take_buf(in, PB_TCP_HDR_SIZE);
        struct pb_tcp_hdr h;
        if (pb_tcp_hdr_decode(b, nslots, slot_size, &h, why, wl) == 0) {
            CHECK(h.type == PB_TCP_DATA || h.type == PB_TCP_CREDIT || h.type == PB_TCP_NOTIFY);
            if (h.type == PB_TCP_DATA) {
                CHECK(h.slot < nslots);
                CHECK(h.len <= slot_size);
                /* where read_conn will receive the payload: inside the pool */
                unsigned __int128 end = (unsigned __int128)h.slot * slot_size + h.len;
                CHECK(end <= (unsigned __int128)nslots * slot_size);
            } else if (h.type == PB_TCP_CREDIT) {
                CHECK(h.slot < nslots);
                CHECK(h.tag == 0 && h.len == 0);
            } else {
                CHECK(h.tag == 0 && h.len == 0);
            }
            unsigned char re[PB_TCP_HDR_SIZE];
            pb_tcp_hdr_encode(re, &h);
            CHECK(memcmp(re, b, PB_TCP_HDR_SIZE) == 0);
        } else {
            CHECK(memchr(why, 0, wl) != NULL);
        }
        free(b);
    }
    free(why);
}

/* The trailer as engine.c on_arrived() checks it, with a plan from the input. */
static void fuzz_trailer(struct in *in)
{
    uint64_t file_size = take(in, 8);
    uint64_t chunk = take(in, 4);
    int nrecv = (int)(take(in, 2) & 0x3fff);
    uint32_t tag = (uint32_t)take(in, 4);
    uint32_t evlen = (uint32_t)take(in, 4);
    uint32_t slot_size = (uint32_t)(take(in, 3) & 0xffffff);
    struct pb_plan p;
    char err[128];
    if (pb_plan_init(&p, file_size, chunk, nrecv, err, sizeof err) != 0)
        return;
    CHECK(p.nchunks <= UINT32_MAX);
    if (evlen < PB_TRAILER_SIZE || evlen > slot_size)
        return;
    uint8_t *slot = take_buf(in, slot_size);
    uint32_t plen = evlen - PB_TRAILER_SIZE;
    struct pb_trailer t;
    pb_trailer_get(slot + plen, &t);
    uint8_t re[PB_TRAILER_SIZE];
    pb_trailer_put(re, &t);
    CHECK(memcmp(re, slot + plen, PB_TRAILER_SIZE) == 0);
    uint64_t k = t.chunk;
    if (t.magic == PB_TRAILER_MAGIC && t.chunk == tag && k < p.nchunks && t.len == plen &&
        plen == pb_plan_chunk_len(&p, k)) {
        /* accepted: the write at offset(k) of plen bytes lies inside the file */
        uint64_t off = pb_plan_chunk_offset(&p, k);
        CHECK(off < p.file_size || (plen == 0 && off <= p.file_size));
        CHECK(plen <= p.file_size - off);
        CHECK(plen <= p.chunk_size);
        if (p.nrecv > 0) {
            int r = (int)(k % (uint64_t)p.nrecv);
            int s = pb_plan_sender(&p, r, k);
            CHECK(s == PB_FROM_ROOT);
            int succ = pb_plan_successor(&p, r);
            CHECK(succ >= 0 && succ < p.nrecv);
            int h = pb_plan_hops(&p, succ, k);
            CHECK(h >= 0 && h < p.nrecv);
        }
        (void)pb_chunk_hash(slot, plen);
    }
    free(slot);
}

static void fuzz_vw_desc(struct in *in)
{
    uint32_t imm = (uint32_t)take(in, 4);
    uint32_t nslots = (uint32_t)take(in, 4);
    uint64_t slot_size = take(in, 8);
    size_t wl = why_len(in);
    char *why = malloc(wl);
    uint8_t *b = take_buf(in, PB_VW_MSG_SIZE);
    struct pb_vw_desc d;
    if (pb_vw_desc_unpack(b, imm, nslots, slot_size, &d, why, wl) == 0) {
        CHECK(d.slot == imm && d.slot < nslots && d.len <= slot_size);
        uint8_t re[PB_VW_MSG_SIZE];
        pb_vw_desc_pack(re, d.slot, d.tag, d.len);
        CHECK(memcmp(re, b, PB_VW_MSG_SIZE) == 0);
    } else {
        CHECK(memchr(why, 0, wl) != NULL);
    }
    free(b);
    free(why);
}

static void fuzz_vw_msg(struct in *in)
{
    uint32_t len = (uint32_t)take(in, 1);
    if (take(in, 1) & 1)
        len = PB_VW_CTRL_SIZE;
    size_t wl = why_len(in);
    char *why = malloc(wl);
    /* the receive buffer is always PB_VW_CTRL_SIZE; len is what the CQE says */
    uint8_t *b = take_buf(in, PB_VW_CTRL_SIZE);
    uint8_t how = (uint8_t)take(in, 1);
    if (how & 1) {
        /* a well-checksummed message of any type/value (the checksum is out
         * of a mutator's reach), then maybe one corrupted byte */
        uint32_t t = (how & 2) ? (uint32_t)take(in, 4) : (uint32_t)(how >> 2 & 7);
        struct pb_vw_ctrl m = { t, (uint32_t)take(in, 4), (uint32_t)take(in, 4), (uint32_t)take(in, 4), take(in, 8) };
        pb_vw_ctrl_pack(b, &m);
        if (how & 0x80)
            b[take(in, 1) % PB_VW_CTRL_SIZE] ^= (uint8_t)(take(in, 1) | 1);
    }
    struct pb_vw_ctrl m;
    if (pb_vw_ctrl_unpack(b, len, &m, why, wl) == 0) {
        CHECK(len == PB_VW_CTRL_SIZE);
        CHECK(m.type >= PB_VW_MSG_CREDIT && m.type <= PB_VW_MSG_PING);
        uint8_t re[PB_VW_CTRL_SIZE];
        pb_vw_ctrl_pack(re, &m);
        CHECK(memcmp(re, b, PB_VW_CTRL_SIZE) == 0);
        uint32_t type = 0xdead, value = 0xbeef;
        CHECK(pb_vw_msg_unpack(b, len, &type, &value, why, wl) == 0 && type == m.type && value == m.value);
    } else {
        CHECK(memchr(why, 0, wl) != NULL);
    }
    free(b);
    free(why);
}

static void fuzz_vw_info(struct in *in)
{
    size_t wl = why_len(in);
    char *why = malloc(wl);
    uint8_t *b = take_buf(in, PB_VW_INFO_SIZE);
    struct pb_vw_info info;
    if (pb_vw_info_unpack(b, &info, why, wl) == 0) {
        CHECK(strnlen(info.reason, PB_VW_REASON_MAX) < PB_VW_REASON_MAX);
        if (info.status == 0) {
            CHECK(info.nslots > 0 && info.slot_size > 0 && info.rq_depth > 0);
            CHECK(info.npeers < PB_VW_MAX_PEERS);
            CHECK(info.mtu >= 1 && info.mtu <= 5);
            CHECK(info.link_layer == PB_VW_LL_IB || info.link_layer == PB_VW_LL_ETH);
            unsigned __int128 pool_end =
                (unsigned __int128)info.pool_addr + (unsigned __int128)info.slot_size * info.nslots;
            unsigned __int128 desc_end =
                (unsigned __int128)info.desc_addr + (unsigned __int128)PB_VW_MSG_SIZE * info.nslots;
            CHECK(pool_end <= UINT64_MAX);
            CHECK(desc_end <= UINT64_MAX);
            /* re-pack and unpack: the same fields */
            uint8_t *re = malloc(PB_VW_INFO_SIZE);
            struct pb_vw_info again;
            pb_vw_info_pack(&info, re);
            CHECK(pb_vw_info_unpack(re, &again, why, wl) == 0);
            CHECK(again.nslots == info.nslots && again.slot_size == info.slot_size &&
                  again.pool_addr == info.pool_addr && again.desc_addr == info.desc_addr &&
                  again.probe_rkey == info.probe_rkey && again.probe_off == info.probe_off &&
                  again.lid == info.lid && again.port == info.port && again.mtu == info.mtu &&
                  again.rq_depth == info.rq_depth && again.npeers == info.npeers &&
                  memcmp(again.gid, info.gid, 16) == 0 && strcmp(again.reason, info.reason) == 0);
            free(re);

            /* Plan puts against this peer from a local pool (the slots' keys come
             * with each credit: any key will do here). */
            struct pb_vw_remote r = { info.pool_addr, info.probe_rkey, info.desc_addr, info.probe_rkey,
                                      info.nslots, info.slot_size };
            size_t lpool = (size_t)(take(in, 2) & 0x3fff) + 1;
            uint8_t *pool = malloc(lpool);
            struct pb_vw_local l = { (uintptr_t)pool, lpool };
            for (int i = 0; i < 4; i++) {
                uint32_t slot = (uint32_t)take(in, 4);
                uint32_t tag = (uint32_t)take(in, 4);
                uint32_t len = (uint32_t)take(in, 4);
                int64_t boff = (int64_t)(int32_t)take(in, 4) % (int64_t)(2 * lpool + 2);
                const uint8_t *buf = (const uint8_t *)((uintptr_t)pool + (uintptr_t)boff);
                struct pb_vw_put_plan pl;
                if (pb_vw_plan_put(&l, &r, slot, tag, buf, len, &pl, why, wl) == 0) {
                    CHECK(slot < r.nslots && len <= r.slot_size);
                    CHECK(pl.data_laddr >= l.pool && pl.data_laddr - l.pool <= l.pool_len &&
                          len <= l.pool_len - (pl.data_laddr - l.pool));
                    unsigned __int128 rend = (unsigned __int128)pl.data_raddr + len;
                    CHECK(pl.data_raddr >= r.pool_addr);
                    CHECK(rend <= (unsigned __int128)r.pool_addr +
                                      (unsigned __int128)r.slot_size * r.nslots);
                    CHECK(pl.desc_raddr >= r.desc_addr &&
                          (unsigned __int128)pl.desc_raddr + PB_VW_MSG_SIZE <=
                              (unsigned __int128)r.desc_addr + (unsigned __int128)PB_VW_MSG_SIZE * r.nslots);
                    CHECK(pl.imm == slot && pl.len == len);
                    struct pb_vw_desc d;
                    CHECK(pb_vw_desc_unpack(pl.desc, slot, r.nslots, r.slot_size, &d, why, wl) == 0 &&
                          d.tag == tag && d.len == len);
                }
            }
            free(pool);
        }
    } else {
        CHECK(memchr(why, 0, wl) != NULL);
    }
    free(b);
    free(why);
}

static int how_is_null(struct in *in)
{
    return (int)(take(in, 1) & 1);
}

/* Round 1 of the set-up: an offer from a partner, and the failure marker. */
static void fuzz_vw_offer(struct in *in)
{
    size_t wl = why_len(in);
    char *why = malloc(wl);
    uint32_t self = (uint32_t)take(in, 1);
    uint8_t *b = take_buf(in, PB_VW_OFFER_SIZE);
    struct pb_vw_info info;
    struct pb_vw_conn c;
    if (pb_vw_offer_unpack(b, self, &info, &c, why, wl) == 0) {
        CHECK(info.status == 0 && c.peer == self && c.qpn < (1u << 24) && c.psn < (1u << 24));
        uint8_t *re = malloc(PB_VW_OFFER_SIZE);
        struct pb_vw_info again;
        struct pb_vw_conn c2;
        pb_vw_offer_pack(&info, &c, re);
        CHECK(pb_vw_offer_unpack(re, self, &again, &c2, why, wl) == 0);
        CHECK(c2.peer == c.peer && c2.qpn == c.qpn && c2.psn == c.psn && again.nslots == info.nslots &&
              again.pool_addr == info.pool_addr && memcmp(again.gid, info.gid, 16) == 0);
        free(re);
    } else {
        CHECK(memchr(why, 0, wl) != NULL);
    }
    /* the failure marker: any reason (the input's rest), refused as an offer */
    size_t rl = in->n < 300 ? in->n : 300;
    char *r = malloc(rl + 1);
    memcpy(r, in->p, rl);
    r[rl] = 0;
    struct pb_vw_info ie;
    pb_vw_info_error(&ie, how_is_null(in) ? NULL : r);
    CHECK(ie.status != 0 && strnlen(ie.reason, PB_VW_REASON_MAX) < PB_VW_REASON_MAX);
    uint8_t *ib = malloc(PB_VW_OFFER_SIZE);
    struct pb_vw_info ie2;
    char w[64];
    pb_vw_offer_pack(&ie, &c, ib);
    CHECK(pb_vw_info_unpack(ib, &ie2, w, sizeof w) == 0 && ie2.status != 0 && strcmp(ie2.reason, ie.reason) == 0);
    CHECK(pb_vw_offer_unpack(ib, c.peer, &ie2, &c, w, sizeof w) != 0);
    free(ib);
    free(r);
    free(b);
    free(why);
}

static int conn_same(const struct pb_vw_conn *a, const struct pb_vw_conn *b)
{
    return a->peer == b->peer && a->qpn == b->qpn && a->psn == b->psn;
}

/* Round 2: a partner's echo against what we sent and got. */
static void fuzz_vw_echo(struct in *in)
{
    size_t wl = why_len(in);
    char *why = malloc(wl);
    uint8_t *b = take_buf(in, PB_VW_ECHO_SIZE);
    /* Low entropy, so that matching echoes are reachable. */
    struct pb_vw_conn sent = { (uint32_t)take(in, 1), (uint32_t)take(in, 1), (uint32_t)take(in, 1) };
    struct pb_vw_conn got = { (uint32_t)take(in, 1), (uint32_t)take(in, 1), (uint32_t)take(in, 1) };
    struct pb_vw_conn theirs, seen;
    pb_vw_conn_unpack(b, &theirs);
    pb_vw_conn_unpack(b + PB_VW_CONN_SIZE, &seen);
    int rc = pb_vw_echo_check(b, &sent, &got, why, wl);
    CHECK((rc == 0) == (conn_same(&theirs, &got) && conn_same(&seen, &sent)));
    if (rc != 0)
        CHECK(memchr(why, 0, wl) != NULL);
    /* what a partner packs from its side always agrees with ours */
    uint8_t *e = malloc(PB_VW_ECHO_SIZE);
    pb_vw_echo_pack(&got, &sent, e);
    CHECK(pb_vw_echo_check(e, &sent, &got, why, wl) == 0);
    free(e);
    free(b);
    free(why);
}

/* Completion handling with peer-controlled data: the immediate, our
 * descriptor table (written remotely) and receive buffers. */
struct cqe_ctx {
    uint8_t **bufs; /* npeers * depth receive buffers */
    int depth;
};

static const uint8_t *cqe_recv_buf(void *ctx, int li, uint64_t idx)
{
    static const uint8_t zero[PB_VW_CTRL_SIZE];
    struct cqe_ctx *c = ctx;
    if (idx >= (uint64_t)c->depth)
        return zero; /* as transport_verbs.c does */
    return c->bufs[(size_t)li * c->depth + idx];
}

static void fuzz_vw_cqe(struct in *in)
{
    int npeers = (int)(take(in, 1) % 4) + 1;
    uint32_t nslots = (uint32_t)(take(in, 1) % 8) + 1;
    uint64_t slot_size = take(in, 4) + 1;
    int depth = (int)(take(in, 1) % 8) + 1;
    int *leader = malloc(sizeof(int) * (size_t)npeers);
    uint32_t *pns = malloc(sizeof(uint32_t) * (size_t)npeers);
    struct pb_vw_link *links = malloc(sizeof *links * (size_t)npeers);
    for (int i = 0; i < npeers; i++) {
        leader[i] = i + 1;
        pns[i] = (uint32_t)(take(in, 1) % 9);
        if (pb_vw_link_init(&links[i], (uint32_t)depth) != 0)
            abort();
    }
    uint8_t *desc = take_buf(in, (size_t)nslots * PB_VW_MSG_SIZE);
    struct cqe_ctx cc = { malloc(sizeof(uint8_t *) * (size_t)npeers * (size_t)depth), depth };
    for (int i = 0; i < npeers * depth; i++)
        cc.bufs[i] = take_buf(in, PB_VW_CTRL_SIZE);
    struct pb_vw_state st = { npeers, leader, links, pns, desc, nslots, slot_size, cqe_recv_buf, &cc };
    /* Pretend some sends are outstanding so SEND_DONE completions have work. */
    for (int i = 0; i < npeers; i++) {
        int sig;
        uint32_t k = (uint32_t)(take(in, 1) % (unsigned)(depth + 1));
        for (uint32_t j = 0; j < k && pb_vw_sq_room(&links[i].sq); j++)
            (void)pb_vw_sq_take(&links[i].sq, 1, &sig);
    }
    while (in->n >= 8) {
        struct pb_vw_cqe c;
        memset(&c, 0, sizeof c);
        uint8_t sel = (uint8_t)take(in, 1);
        if (sel & 0x80) {
            c.wr_id = take(in, 8); /* anything at all */
        } else {
            enum pb_vw_kind k = (enum pb_vw_kind)((sel & 3) + 1);
            int li = (int)((sel >> 2) % (unsigned)npeers);
            c.wr_id = pb_vw_wrid(k, li, take(in, 2));
        }
        c.ok = (sel & 0x40) == 0;
        c.status_str = (sel & 0x20) ? NULL : "fuzz status";
        c.vendor_err = (uint32_t)take(in, 2);
        c.op = (enum pb_vw_cqe_op)(take(in, 1) % 4);
        c.imm = (uint32_t)take(in, 4);
        if (c.imm & 0x80000000u)
            c.imm &= 7; /* often a plausible slot */
        c.byte_len = (take(in, 1) & 1) ? PB_VW_CTRL_SIZE : (uint32_t)take(in, 1);
        uint8_t extras = (uint8_t)take(in, 1);
        if (extras & 1) { /* a fresh descriptor written by the "peer" */
            uint32_t s = c.imm % nslots;
            pb_vw_desc_pack(desc + (size_t)s * PB_VW_MSG_SIZE, c.imm, (uint32_t)take(in, 4),
                            (uint32_t)take(in, 4));
        }
        if (extras & 2) { /* a fresh control message sent by the "peer" */
            int li = (int)(take(in, 1) % (unsigned)npeers);
            int bi = (int)(take(in, 1) % (unsigned)depth);
            uint32_t t = (uint32_t)(take(in, 1) % 6);
            pb_vw_msg_pack(cc.bufs[(size_t)li * depth + bi], t, (uint32_t)take(in, 4) % 16);
        }
        struct pb_event ev;
        int rl;
        int64_t ri;
        int r = pb_vw_handle_cqe(&st, &c, &ev, &rl, &ri);
        CHECK(r == 0 || r == 1);
        CHECK(rl >= -1 && rl < npeers);
        if (rl >= 0)
            CHECK(ri >= 0);
        if (r == 1) {
            switch (ev.kind) {
            case PB_EV_ARRIVED:
                CHECK(ev.slot < nslots && ev.len <= slot_size && ev.peer >= 1 && ev.peer <= npeers);
                CHECK(ev.slot == c.imm);
                /* consumed descriptor is zeroed */
                for (int i = 0; i < (int)PB_VW_MSG_SIZE; i++)
                    CHECK(desc[(size_t)ev.slot * PB_VW_MSG_SIZE + i] == 0);
                break;
            case PB_EV_CREDIT:
                CHECK(ev.peer >= 1 && ev.peer <= npeers && ev.slot < pns[ev.peer - 1]);
                break;
            case PB_EV_NOTIFY:
            case PB_EV_SENT:
                CHECK(ev.peer >= 1 && ev.peer <= npeers);
                break;
            case PB_EV_ERROR:
                CHECK(ev.peer == -1 || (ev.peer >= 1 && ev.peer <= npeers));
                CHECK(memchr(ev.what, 0, sizeof ev.what) != NULL);
                break;
            default:
                CHECK(!"unknown event kind");
            }
        }
        for (int i = 0; i < npeers; i++)
            CHECK(links[i].sq.done <= links[i].sq.posted && pb_vw_sq_room(&links[i].sq) <= links[i].sq.depth);
    }
    for (int i = 0; i < npeers * depth; i++)
        free(cc.bufs[i]);
    free(cc.bufs);
    for (int i = 0; i < npeers; i++)
        pb_vw_link_fini(&links[i]);
    free(links);
    free(desc);
    free(pns);
    free(leader);
}

/* Send-queue accounting and the request backlog under arbitrary call
 * sequences (driven by local events, but a wrong count means a wedged or
 * overflowed queue). */
static void fuzz_vw_link(struct in *in)
{
    struct pb_vw_link lk;
    uint32_t depth = (uint32_t)(take(in, 1) % 64);
    if (pb_vw_link_init(&lk, depth) != 0)
        abort();
    uint64_t taken[256];
    int nt = 0;
    uint32_t pushed = 0, popped = 0;
    while (in->n) {
        uint8_t op = (uint8_t)take(in, 1);
        switch (op % 8) {
        case 0:
            if (pb_vw_sq_room(&lk.sq) && nt < 256) {
                int sig;
                uint64_t s = pb_vw_sq_take(&lk.sq, op & 0x10, &sig);
                CHECK(s + 1 == lk.sq.posted);
                if (op & 0x10)
                    CHECK(sig);
                CHECK(lk.sq.unsignaled < lk.sq.signal_every);
                taken[nt++] = s;
            }
            break;
        case 1:
            if (nt) {
                uint64_t s = taken[(op >> 3) % nt];
                pb_vw_sq_complete(&lk.sq, s);
            }
            break;
        case 2: {
            uint64_t low = take(in, 5);
            uint64_t full = pb_vw_seq_full(lk.sq.done, low);
            CHECK(full >= lk.sq.done && (full & ((UINT64_C(1) << PB_VW_SEQ_BITS) - 1)) ==
                                            (low & ((UINT64_C(1) << PB_VW_SEQ_BITS) - 1)));
            break;
        }
        case 3: {
            struct pb_vw_req r = { (enum pb_vw_req_kind)(op % 3 + 1), op, op, op, NULL, pushed };
            if (pushed - popped < 4096 && pb_vw_link_push(&lk, &r) == 0)
                pushed++;
            break;
        }
        case 4: {
            const struct pb_vw_req *r = pb_vw_link_peek(&lk);
            if (pushed == popped) {
                CHECK(r == NULL);
            } else {
                CHECK(r && r->cookie == popped); /* FIFO order */
                pb_vw_link_pop(&lk);
                popped++;
            }
            break;
        }
        case 5: {
            enum pb_vw_kind k;
            int peer;
            uint64_t seq;
            uint64_t w = take(in, 8);
            pb_vw_wrid_split(w, &k, &peer, &seq);
            CHECK(peer >= 0 && peer < PB_VW_MAX_PEERS);
            if ((w >> 60) != 0 && ((w >> PB_VW_SEQ_BITS) & 0xffffff) == (uint64_t)peer)
                CHECK(pb_vw_wrid(k, peer, seq) == w);
            break;
        }
        case 6:
            /* undo the most recent take (a failed post) */
            if (nt && taken[nt - 1] + 1 == lk.sq.posted && lk.sq.posted > lk.sq.done) {
                uint64_t before = lk.sq.posted;
                pb_vw_sq_untake(&lk.sq, taken[nt - 1], op & 0x10);
                CHECK(lk.sq.posted == before - 1);
                nt--;
            }
            break;
        case 7: {
            enum pb_vw_req_kind k = (enum pb_vw_req_kind)(op % 3 + 1);
            uint32_t w = pb_vw_req_wrs(k);
            CHECK(w == (k == PB_VW_REQ_PUT ? 2u : 1u));
            break;
        }
        }
        CHECK(lk.sq.done <= lk.sq.posted);
        CHECK(lk.sq.posted - lk.sq.done <= lk.sq.depth);
        CHECK(lk.qlen == pushed - popped);
    }
    pb_vw_link_fini(&lk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct in in = { data + 1, size - 1 };
    switch (data[0] % 10) {
    case 0: fuzz_hello(&in); break;
    case 1: fuzz_hdr(&in); break;
    case 2: fuzz_trailer(&in); break;
    case 3: fuzz_vw_desc(&in); break;
    case 4: fuzz_vw_msg(&in); break;
    case 5: fuzz_vw_info(&in); break;
    case 6: fuzz_vw_offer(&in); break;
    case 7: fuzz_vw_echo(&in); break;
    case 8: fuzz_vw_cqe(&in); break;
    case 9: fuzz_vw_link(&in); break;
    }
    return 0;
}
