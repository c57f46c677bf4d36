/* verbs_wire.c — pure encoding, bounds checks and accounting for the verbs
 * transport. See verbs_wire.h for the protocol. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "verbs_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESC_MAGIC 0x50424431u /* "PBD1" */
#define MSG_MAGIC 0x50424d31u  /* "PBM1" */
#define INFO_MAGIC 0x50425631u /* "PBV1" */
#define INFO_VERSION 2u /* 2: probe_rkey, probe_off where 1 had unused pool and descriptor keys */
#define SEQ_MASK ((UINT64_C(1) << PB_VW_SEQ_BITS) - 1)

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint32_t rotl(uint32_t v, int r)
{
    return (v << r) | (v >> (32 - r));
}

/* Not a checksum of data (that is the engine's job): it catches a zeroed,
 * stale or misplaced descriptor. */
static uint32_t check4(uint32_t magic, uint32_t a, uint32_t b, uint32_t c)
{
    return magic ^ rotl(a, 5) ^ rotl(b, 13) ^ rotl(c, 23) ^ 0x9e3779b9u;
}

/* ---- descriptors and control messages ---- */

void pb_vw_desc_pack(uint8_t out[PB_VW_MSG_SIZE], uint32_t slot, uint32_t tag, uint32_t len)
{
    put32(out, slot);
    put32(out + 4, tag);
    put32(out + 8, len);
    put32(out + 12, check4(DESC_MAGIC, slot, tag, len));
}

int pb_vw_desc_unpack(const uint8_t in[PB_VW_MSG_SIZE], uint32_t imm_slot, uint32_t nslots,
                      uint64_t slot_size, struct pb_vw_desc *d, char *why, size_t whylen)
{
    uint32_t slot = get32(in), tag = get32(in + 4), len = get32(in + 8);
    if (imm_slot >= nslots) {
        snprintf(why, whylen, "peer wrote to slot %u but we have %u slots", imm_slot, nslots);
        return -1;
    }
    if (get32(in + 12) != check4(DESC_MAGIC, slot, tag, len)) {
        snprintf(why, whylen, "chunk descriptor for slot %u missing or corrupt", imm_slot);
        return -1;
    }
    if (slot != imm_slot) {
        snprintf(why, whylen, "chunk descriptor names slot %u, immediate names slot %u", slot,
                 imm_slot);
        return -1;
    }
    if (len > slot_size) {
        snprintf(why, whylen, "chunk length %u exceeds slot size %llu", len,
                 (unsigned long long)slot_size);
        return -1;
    }
    d->slot = slot;
    d->tag = tag;
    d->len = len;
    return 0;
}

static uint32_t ctrl_check(const uint8_t *p)
{
    uint32_t h = MSG_MAGIC;
    for (int i = 0; i < 7; i++)
        h = rotl(h ^ get32(p + 4 * i), 7) * 0x9e3779b1u;
    return h;
}

void pb_vw_ctrl_pack(uint8_t out[PB_VW_CTRL_SIZE], const struct pb_vw_ctrl *m)
{
    put32(out, m->type);
    put32(out + 4, m->value);
    put32(out + 8, m->a);
    put32(out + 12, m->b);
    put64(out + 16, m->mac);
    put32(out + 24, 0);
    put32(out + 28, ctrl_check(out));
}

int pb_vw_ctrl_unpack(const uint8_t *in, uint32_t len, struct pb_vw_ctrl *m, char *why, size_t whylen)
{
    if (len != PB_VW_CTRL_SIZE) {
        snprintf(why, whylen, "control message of %u bytes, expected %u", len, PB_VW_CTRL_SIZE);
        return -1;
    }
    if (get32(in + 24) != 0 || get32(in + 28) != ctrl_check(in)) {
        snprintf(why, whylen, "corrupt control message");
        return -1;
    }
    m->type = get32(in);
    m->value = get32(in + 4);
    m->a = get32(in + 8);
    m->b = get32(in + 12);
    m->mac = get64(in + 16);
    if (m->type < PB_VW_MSG_CREDIT || m->type > PB_VW_MSG_PING) {
        snprintf(why, whylen, "unknown control message type %u", m->type);
        return -1;
    }
    return 0;
}

void pb_vw_msg_pack(uint8_t out[PB_VW_CTRL_SIZE], uint32_t type, uint32_t value)
{
    pb_vw_ctrl_pack(out, &(struct pb_vw_ctrl){.type = type, .value = value});
}

int pb_vw_msg_unpack(const uint8_t *in, uint32_t len, uint32_t *type, uint32_t *value, char *why,
                     size_t whylen)
{
    struct pb_vw_ctrl m;
    if (pb_vw_ctrl_unpack(in, len, &m, why, whylen) != 0)
        return -1;
    *type = m.type;
    *value = m.value;
    return 0;
}

/* ---- the job secret: SipHash-2-4 (Aumasson, Bernstein) ---- */

static uint64_t rotl64(uint64_t v, int r)
{
    return (v << r) | (v >> (64 - r));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);                             \
        v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                                                   \
        v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                                                   \
        v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);                             \
    } while (0)

uint64_t pb_vw_siphash(const uint8_t key[16], const uint8_t *msg, size_t len)
{
    uint64_t k0 = get64(key), k1 = get64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = get64(msg + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)msg[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t pb_vw_hello_mac(const uint8_t secret[16], uint32_t from, uint32_t to, uint32_t from_qpn,
                         uint32_t to_qpn, uint32_t from_psn, uint32_t to_psn)
{
    uint8_t m[28];
    put32(m, 0x50424848u); /* "PBHH": this use of the secret and no other */
    put32(m + 4, from);
    put32(m + 8, to);
    put32(m + 12, from_qpn);
    put32(m + 16, to_qpn);
    put32(m + 20, from_psn);
    put32(m + 24, to_psn);
    return pb_vw_siphash(secret, m, sizeof m);
}

/* ---- endpoint exchange ---- */

/* Layout of the info block (offsets in bytes). */
enum {
    I_MAGIC = 0, I_VERSION = 4, I_STATUS = 8, I_REASON = 12,
    I_NPEERS = I_REASON + PB_VW_REASON_MAX, I_NSLOTS = I_NPEERS + 4, I_SLOTSZ = I_NSLOTS + 4,
    I_POOL = I_SLOTSZ + 8, I_PROBEKEY = I_POOL + 8, I_DESC = I_PROBEKEY + 4, I_PROBEOFF = I_DESC + 8,
    I_RQ = I_PROBEOFF + 4, I_LID = I_RQ + 4, I_PORT = I_LID + 2, I_LL = I_PORT + 1, I_MTU = I_LL + 1,
    I_GID = I_MTU + 1, I_END = I_GID + 16
};
_Static_assert(I_END <= PB_VW_INFO_SIZE, "info block overflows its size");

void pb_vw_info_pack(const struct pb_vw_info *in, uint8_t out[PB_VW_INFO_SIZE])
{
    memset(out, 0, PB_VW_INFO_SIZE);
    put32(out + I_MAGIC, INFO_MAGIC);
    put32(out + I_VERSION, INFO_VERSION);
    put32(out + I_STATUS, in->status);
    size_t rl = strnlen(in->reason, PB_VW_REASON_MAX - 1);
    memcpy(out + I_REASON, in->reason, rl);
    put32(out + I_NPEERS, in->npeers);
    put32(out + I_NSLOTS, in->nslots);
    put64(out + I_SLOTSZ, in->slot_size);
    put64(out + I_POOL, in->pool_addr);
    put32(out + I_PROBEKEY, in->probe_rkey);
    put64(out + I_DESC, in->desc_addr);
    put32(out + I_PROBEOFF, in->probe_off);
    put32(out + I_RQ, in->rq_depth);
    out[I_LID] = (uint8_t)in->lid;
    out[I_LID + 1] = (uint8_t)(in->lid >> 8);
    out[I_PORT] = in->port;
    out[I_LL] = in->link_layer;
    out[I_MTU] = in->mtu;
    memcpy(out + I_GID, in->gid, 16);
}

int pb_vw_info_unpack(const uint8_t in[PB_VW_INFO_SIZE], struct pb_vw_info *out, char *why,
                      size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (get32(in + I_MAGIC) != INFO_MAGIC) {
        snprintf(why, whylen, "endpoint info is not from a p2pbcast verbs transport");
        return -1;
    }
    if (get32(in + I_VERSION) != INFO_VERSION) {
        snprintf(why, whylen, "endpoint info version %u, this build speaks %u (mixed p2pbcast versions?)",
                 get32(in + I_VERSION), INFO_VERSION);
        return -1;
    }
    out->status = get32(in + I_STATUS);
    memcpy(out->reason, in + I_REASON, PB_VW_REASON_MAX - 1);
    out->reason[PB_VW_REASON_MAX - 1] = '\0';
    out->npeers = get32(in + I_NPEERS);
    out->nslots = get32(in + I_NSLOTS);
    out->slot_size = get64(in + I_SLOTSZ);
    out->pool_addr = get64(in + I_POOL);
    out->probe_rkey = get32(in + I_PROBEKEY);
    out->desc_addr = get64(in + I_DESC);
    out->probe_off = get32(in + I_PROBEOFF);
    out->rq_depth = get32(in + I_RQ);
    out->lid = (uint16_t)(in[I_LID] | (in[I_LID + 1] << 8));
    out->port = in[I_PORT];
    out->link_layer = in[I_LL];
    out->mtu = in[I_MTU];
    memcpy(out->gid, in + I_GID, 16);
    if (out->status != 0)
        return 0; /* a failed leader's other fields mean nothing */
    if (out->npeers >= PB_VW_MAX_PEERS || out->nslots == 0 || out->slot_size == 0 ||
        (out->link_layer != PB_VW_LL_IB && out->link_layer != PB_VW_LL_ETH) || out->mtu < 1 ||
        out->mtu > 5 || out->rq_depth == 0) {
        snprintf(why, whylen, "malformed endpoint info");
        return -1;
    }
    /* Both tables must fit in the address space they claim. */
    if (out->slot_size > UINT64_MAX / out->nslots ||
        out->pool_addr > UINT64_MAX - out->slot_size * out->nslots ||
        out->desc_addr > UINT64_MAX - (uint64_t)PB_VW_MSG_SIZE * out->nslots) {
        snprintf(why, whylen, "endpoint info advertises a pool beyond the address space");
        return -1;
    }
    return 0;
}

void pb_vw_info_error(struct pb_vw_info *out, const char *reason)
{
    memset(out, 0, sizeof *out);
    out->status = 1;
    snprintf(out->reason, sizeof out->reason, "%s", reason && *reason ? reason : "set-up failed");
}

void pb_vw_conn_pack(const struct pb_vw_conn *c, uint8_t out[PB_VW_CONN_SIZE])
{
    put32(out, c->peer);
    put32(out + 4, c->qpn);
    put32(out + 8, c->psn);
}

void pb_vw_conn_unpack(const uint8_t in[PB_VW_CONN_SIZE], struct pb_vw_conn *c)
{
    c->peer = get32(in);
    c->qpn = get32(in + 4);
    c->psn = get32(in + 8);
}

void pb_vw_offer_pack(const struct pb_vw_info *in, const struct pb_vw_conn *c, uint8_t out[PB_VW_OFFER_SIZE])
{
    pb_vw_info_pack(in, out);
    pb_vw_conn_pack(c, out + PB_VW_INFO_SIZE);
}

int pb_vw_offer_unpack(const uint8_t in[PB_VW_OFFER_SIZE], uint32_t self, struct pb_vw_info *info,
                       struct pb_vw_conn *c, char *why, size_t whylen)
{
    pb_vw_conn_unpack(in + PB_VW_INFO_SIZE, c);
    if (pb_vw_info_unpack(in, info, why, whylen) != 0)
        return -1;
    if (info->status != 0) {
        snprintf(why, whylen, "it sent a failure marker: %s", info->reason);
        return -1;
    }
    if (c->peer != self) {
        snprintf(why, whylen, "its queue pair is meant for leader %u, not for us (leader %u)", c->peer, self);
        return -1;
    }
    if ((c->qpn & 0xff000000u) != 0 || (c->psn & 0xff000000u) != 0) {
        snprintf(why, whylen, "it advertises an invalid QP number or PSN (0x%x, 0x%x)", c->qpn, c->psn);
        return -1;
    }
    return 0;
}

void pb_vw_echo_pack(const struct pb_vw_conn *sent, const struct pb_vw_conn *got, uint8_t out[PB_VW_ECHO_SIZE])
{
    pb_vw_conn_pack(sent, out);
    pb_vw_conn_pack(got, out + PB_VW_CONN_SIZE);
}

static int conn_eq(const struct pb_vw_conn *a, const struct pb_vw_conn *b)
{
    return a->peer == b->peer && a->qpn == b->qpn && a->psn == b->psn;
}

int pb_vw_echo_check(const uint8_t in[PB_VW_ECHO_SIZE], const struct pb_vw_conn *sent,
                     const struct pb_vw_conn *got, char *why, size_t whylen)
{
    struct pb_vw_conn theirs, seen;
    pb_vw_conn_unpack(in, &theirs);                  /* what it sent us, by its account */
    pb_vw_conn_unpack(in + PB_VW_CONN_SIZE, &seen);  /* what it got from us */
    if (conn_eq(&theirs, got) && conn_eq(&seen, sent))
        return 0;
    snprintf(why, whylen,
             "queue pair numbers disagree: we sent QP 0x%x PSN 0x%x for leader %u and it got QP 0x%x PSN 0x%x "
             "for leader %u; we got QP 0x%x PSN 0x%x and it says it sent QP 0x%x PSN 0x%x",
             sent->qpn, sent->psn, sent->peer, seen.qpn, seen.psn, seen.peer, got->qpn, got->psn, theirs.qpn,
             theirs.psn);
    return -1;
}

/* ---- a chunk put ---- */

int pb_vw_plan_put(const struct pb_vw_local *l, const struct pb_vw_remote *r, uint32_t slot,
                   uint32_t tag, const void *buf, uint32_t len, struct pb_vw_put_plan *out,
                   char *why, size_t whylen)
{
    uintptr_t b = (uintptr_t)buf;
    if (slot >= r->nslots) {
        snprintf(why, whylen, "put into slot %u, but the peer has %u slots", slot, r->nslots);
        return -1;
    }
    if (len > r->slot_size) {
        snprintf(why, whylen, "put of %u bytes exceeds the peer's slot size %llu", len,
                 (unsigned long long)r->slot_size);
        return -1;
    }
    /* The source must lie in our registered pool (the lkey covers only it). */
    if (b < l->pool || (uint64_t)(b - l->pool) > l->pool_len ||
        (uint64_t)len > l->pool_len - (uint64_t)(b - l->pool)) {
        snprintf(why, whylen, "put source %p+%u lies outside the registered pool", buf, len);
        return -1;
    }
    /* unpack already refused pools that wrap; keep the arithmetic checked anyway. */
    uint64_t off = (uint64_t)slot * r->slot_size;
    if (r->slot_size != 0 && off / r->slot_size != slot) {
        snprintf(why, whylen, "slot offset overflows");
        return -1;
    }
    if (off > UINT64_MAX - r->pool_addr) {
        snprintf(why, whylen, "slot address overflows");
        return -1;
    }
    out->data_laddr = (uint64_t)b;
    out->data_raddr = r->pool_addr + off;
    out->data_rkey = r->pool_rkey;
    out->len = len;
    out->imm = slot;
    out->desc_raddr = r->desc_addr + (uint64_t)slot * PB_VW_MSG_SIZE;
    out->desc_rkey = r->desc_rkey;
    pb_vw_desc_pack(out->desc, slot, tag, len);
    return 0;
}

/* ---- work request ids ---- */

uint64_t pb_vw_wrid(enum pb_vw_kind kind, int peer, uint64_t seq)
{
    return ((uint64_t)kind << 60) | ((uint64_t)(uint32_t)peer & 0xffffffu) << PB_VW_SEQ_BITS |
           (seq & SEQ_MASK);
}

void pb_vw_wrid_split(uint64_t wrid, enum pb_vw_kind *kind, int *peer, uint64_t *seq_low)
{
    *kind = (enum pb_vw_kind)(wrid >> 60);
    *peer = (int)((wrid >> PB_VW_SEQ_BITS) & 0xffffffu);
    *seq_low = wrid & SEQ_MASK;
}

uint64_t pb_vw_seq_full(uint64_t done, uint64_t seq_low)
{
    return done + ((seq_low - done) & SEQ_MASK);
}

/* ---- send-queue accounting ---- */

void pb_vw_sq_init(struct pb_vw_sq *sq, uint32_t depth)
{
    memset(sq, 0, sizeof *sq);
    sq->depth = depth ? depth : 1;
    sq->signal_every = sq->depth > 2 ? sq->depth / 2 : 1;
}

uint32_t pb_vw_sq_room(const struct pb_vw_sq *sq)
{
    uint64_t used = sq->posted - sq->done;
    return used >= sq->depth ? 0 : (uint32_t)(sq->depth - used);
}

uint64_t pb_vw_sq_take(struct pb_vw_sq *sq, int want_signal, int *signal)
{
    int s = want_signal || sq->unsignaled + 1 >= sq->signal_every;
    sq->unsignaled = s ? 0 : sq->unsignaled + 1;
    *signal = s;
    return sq->posted++;
}

void pb_vw_sq_untake(struct pb_vw_sq *sq, uint64_t seq, int signal)
{
    /* Only the most recent take can be undone (posts fail before later ones). */
    if (seq + 1 != sq->posted)
        return;
    sq->posted--;
    if (!signal && sq->unsignaled > 0)
        sq->unsignaled--;
    /* An undone signalled WR leaves the run count at 0: at worst one more
     * signal than needed, never one fewer. */
}

void pb_vw_sq_complete(struct pb_vw_sq *sq, uint64_t seq)
{
    if (seq >= sq->done && seq < sq->posted)
        sq->done = seq + 1;
}

/* ---- per-peer link ---- */

int pb_vw_link_init(struct pb_vw_link *lk, uint32_t sq_depth)
{
    memset(lk, 0, sizeof *lk);
    pb_vw_sq_init(&lk->sq, sq_depth);
    lk->cookies = calloc(lk->sq.depth, sizeof *lk->cookies);
    if (!lk->cookies) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

int pb_vw_link_peer_slots(struct pb_vw_link *lk, uint32_t nslots)
{
    free(lk->rkey_data);
    free(lk->rkey_desc);
    lk->rkey_data = calloc(nslots ? nslots : 1, sizeof *lk->rkey_data);
    lk->rkey_desc = calloc(nslots ? nslots : 1, sizeof *lk->rkey_desc);
    lk->peer_nslots = lk->rkey_data && lk->rkey_desc ? nslots : 0;
    if (!lk->peer_nslots && nslots) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void pb_vw_link_fini(struct pb_vw_link *lk)
{
    free(lk->rkey_data);
    free(lk->rkey_desc);
    free(lk->cookies);
    free(lk->q);
    memset(lk, 0, sizeof *lk);
}

uint32_t pb_vw_req_wrs(enum pb_vw_req_kind k)
{
    return k == PB_VW_REQ_PUT || k == PB_VW_REQ_BIND ? 2u : 1u; /* the others are one SEND */
}

int pb_vw_link_push(struct pb_vw_link *lk, const struct pb_vw_req *r)
{
    if (lk->qlen == lk->qcap) {
        uint32_t ncap = lk->qcap ? lk->qcap * 2 : 16;
        if (ncap <= lk->qcap) {
            errno = ENOMEM;
            return -1;
        }
        struct pb_vw_req *nq = malloc((size_t)ncap * sizeof *nq);
        if (!nq) {
            errno = ENOMEM;
            return -1;
        }
        for (uint32_t i = 0; i < lk->qlen; i++)
            nq[i] = lk->q[(lk->qhead + i) % lk->qcap];
        free(lk->q);
        lk->q = nq;
        lk->qcap = ncap;
        lk->qhead = 0;
    }
    lk->q[(lk->qhead + lk->qlen) % lk->qcap] = *r;
    lk->qlen++;
    return 0;
}

const struct pb_vw_req *pb_vw_link_peek(const struct pb_vw_link *lk)
{
    return lk->qlen ? &lk->q[lk->qhead] : NULL;
}

void pb_vw_link_pop(struct pb_vw_link *lk)
{
    if (!lk->qlen)
        return;
    lk->qhead = (lk->qhead + 1) % lk->qcap;
    lk->qlen--;
}

/* ---- completions ---- */

static int link_error(struct pb_vw_state *st, int li, struct pb_event *ev, int err,
                      const char *fmt_what)
{
    struct pb_vw_link *lk = &st->links[li];
    if (lk->dead)
        return 0; /* the first error said it; the flushes that follow add nothing */
    lk->dead = 1;
    memset(ev, 0, sizeof *ev);
    ev->kind = PB_EV_ERROR;
    ev->peer = st->peer_leader[li];
    ev->err = err;
    snprintf(ev->what, sizeof ev->what, "%s", fmt_what);
    return 1;
}

/* Send side: retire this work request and every earlier one; a chunk that
 * left becomes PB_EV_SENT. */
static int send_done(struct pb_vw_state *st, const struct pb_vw_cqe *c, struct pb_event *ev, enum pb_vw_kind kind,
                     int li, uint64_t low)
{
    struct pb_vw_link *lk = &st->links[li];
    char what[160];
    uint64_t seq = pb_vw_seq_full(lk->sq.done, low);
    pb_vw_sq_complete(&lk->sq, seq);
    if (!c->ok) {
        const char *op = kind == PB_VW_K_DATA   ? "RDMA write of a chunk"
                         : kind == PB_VW_K_DESC ? "RDMA write of a chunk descriptor"
                                                : "send of a control message (credit, notify, hello or keepalive)";
        snprintf(what, sizeof what, "%s failed: %s (vendor error 0x%x)", op,
                 c->status_str ? c->status_str : "unknown status", c->vendor_err);
        return link_error(st, li, ev, EIO, what);
    }
    if (kind != PB_VW_K_DATA || lk->dead)
        return 0;
    memset(ev, 0, sizeof *ev);
    ev->kind = PB_EV_SENT;
    ev->peer = st->peer_leader[li];
    ev->cookie = lk->cookies[seq % lk->sq.depth];
    return 1;
}

/* A chunk written into our slot: its descriptor, written before the
 * immediate, says what arrived. */
static int chunk_in(struct pb_vw_state *st, const struct pb_vw_cqe *c, struct pb_event *ev, int li, int *repost)
{
    struct pb_vw_link *lk = &st->links[li];
    char what[160];
    if (c->imm == PB_VW_PROBE_IMM) {
        *repost = 1; /* a first put of the set-up: it only had to arrive */
        return 0;
    }
    if (lk->hello_wait) {
        snprintf(what, sizeof what, "peer wrote a chunk before proving the job secret (no hello): refused");
        return link_error(st, li, ev, EACCES, what);
    }
    struct pb_vw_desc d;
    uint32_t slot = c->imm;
    if (slot >= st->nslots) {
        snprintf(what, sizeof what, "peer wrote to slot %u but we have %u slots", slot, st->nslots);
        return link_error(st, li, ev, EPROTO, what);
    }
    uint8_t *dp = st->desc_table + (size_t)slot * PB_VW_MSG_SIZE;
    if (pb_vw_desc_unpack(dp, slot, st->nslots, st->slot_size, &d, what, sizeof what) != 0)
        return link_error(st, li, ev, EPROTO, what);
    memset(dp, 0, PB_VW_MSG_SIZE); /* the next use must bring its own */
    ev->kind = PB_EV_ARRIVED;
    ev->slot = d.slot;
    ev->tag = d.tag;
    ev->len = d.len;
    *repost = 1;
    return 1;
}

/* The first message on a link must prove the job secret. */
static int hello_in(struct pb_vw_state *st, const struct pb_vw_ctrl *m, struct pb_event *ev, int li)
{
    struct pb_vw_link *lk = &st->links[li];
    char what[160];
    if (!lk->hello_wait || m->mac != lk->hello_mac) {
        snprintf(what, sizeof what, "%s: refused",
                 lk->hello_wait ? "peer's hello does not carry this job's secret (another job's process?)"
                                : "unexpected second hello");
        return link_error(st, li, ev, EACCES, what);
    }
    lk->hello_wait = 0;
    return 0;
}

/* A control message: hello, keepalive, credit (with the slot's keys) or
 * notify. The receive is reposted unless the link failed. */
static int ctrl_in(struct pb_vw_state *st, const struct pb_vw_cqe *c, struct pb_event *ev, int li, uint64_t low,
                   int *repost)
{
    struct pb_vw_link *lk = &st->links[li];
    char what[160];
    struct pb_vw_ctrl m;
    const uint8_t *b = st->recv_buf(st->ctx, li, low);
    if (pb_vw_ctrl_unpack(b, c->byte_len, &m, what, sizeof what) != 0)
        return link_error(st, li, ev, EPROTO, what);
    if (m.type == PB_VW_MSG_HELLO) {
        int rc = hello_in(st, &m, ev, li);
        *repost = rc == 0;
        return rc;
    }
    if (lk->hello_wait) {
        snprintf(what, sizeof what, "peer sent a control message before proving the job secret (no hello): refused");
        return link_error(st, li, ev, EACCES, what);
    }
    if (m.type == PB_VW_MSG_PING) {
        *repost = 1;
        return 0;
    }
    if (m.type == PB_VW_MSG_CREDIT && m.value >= st->peer_nslots[li]) {
        snprintf(what, sizeof what, "credit for slot %u, but the peer has %u slots", m.value, st->peer_nslots[li]);
        return link_error(st, li, ev, EPROTO, what);
    }
    *repost = 1;
    if (m.type == PB_VW_MSG_CREDIT) {
        if (m.value < lk->peer_nslots) {
            lk->rkey_data[m.value] = m.a;
            lk->rkey_desc[m.value] = m.b;
        }
        ev->kind = PB_EV_CREDIT;
        ev->slot = m.value;
    } else {
        ev->kind = PB_EV_NOTIFY;
        ev->tag = m.value;
    }
    return 1;
}

int pb_vw_handle_cqe(struct pb_vw_state *st, const struct pb_vw_cqe *c, struct pb_event *ev,
                     int *repost_link, int64_t *repost_idx)
{
    enum pb_vw_kind kind;
    int li;
    uint64_t low;
    char what[160];

    *repost_link = -1;
    *repost_idx = -1;
    pb_vw_wrid_split(c->wr_id, &kind, &li, &low);
    if (li < 0 || li >= st->npeers || kind < PB_VW_K_RECV || kind > PB_VW_K_CTRL) {
        memset(ev, 0, sizeof *ev);
        ev->kind = PB_EV_ERROR;
        ev->peer = -1;
        ev->err = EPROTO;
        snprintf(ev->what, sizeof ev->what, "completion with unknown work request id 0x%llx",
                 (unsigned long long)c->wr_id);
        return 1;
    }
    if (kind != PB_VW_K_RECV)
        return send_done(st, c, ev, kind, li, low);
    if (!c->ok) {
        snprintf(what, sizeof what, "receive failed: %s (vendor error 0x%x)",
                 c->status_str ? c->status_str : "unknown status", c->vendor_err);
        return link_error(st, li, ev, EIO, what);
    }
    if (st->links[li].dead)
        return 0;
    memset(ev, 0, sizeof *ev);
    ev->peer = st->peer_leader[li];
    int repost = 0, rc;
    if (c->op == PB_VW_OP_RECV_IMM) {
        rc = chunk_in(st, c, ev, li, &repost);
    } else if (c->op == PB_VW_OP_RECV) {
        rc = ctrl_in(st, c, ev, li, low, &repost);
    } else {
        snprintf(what, sizeof what, "unexpected completion opcode");
        return link_error(st, li, ev, EPROTO, what);
    }
    if (repost) {
        *repost_link = li;
        *repost_idx = (int64_t)low;
    }
    return rc;
}
