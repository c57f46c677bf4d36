/* verbs_wire.h — the pure half of the verbs transport: everything between
 * the engine and libibverbs that needs no device, so it can be unit-tested
 * on machines without RDMA. No libibverbs types appear here; the thin layer
 * in transport_verbs.c translates.
 *
 * Protocol on one RC queue pair per peer:
 *
 *   put(slot, tag, buf, len) posts two work requests back to back:
 *     1. RDMA WRITE of a 16-byte descriptor {slot, tag, len, check} into
 *        entry `slot` of the peer's descriptor table (inline when the QP
 *        allows it);
 *     2. RDMA WRITE WITH IMMEDIATE of the len data bytes from buf into
 *        peer pool + slot*slot_size, imm = slot.
 *   The 32-bit immediate cannot carry slot, a full 32-bit tag and a length
 *   at once, and wc.byte_len of a write-with-immediate is not reported
 *   reliably by every provider. RC executes a QP's requests in order, so
 *   when the receiver sees the immediate for slot S the descriptor written
 *   just before is already in its memory: no size or slot-count limits, no
 *   extra receive, one 16-byte inline write per multi-megabyte chunk. The
 *   receiver zeroes the descriptor after use, so a missing one is detected.
 *
 *   grant(slot) and notify(code) are SENDs of a 32-byte control message
 *   {type, value, a, b, mac(8), 0, check}. A credit carries in a and b the
 *   rkeys of the type 2 memory windows over that one slot and its
 *   descriptor entry, bound (BIND_MW, posted just before the first credit)
 *   to the granted peer's QP only: a peer can write nothing but the slots
 *   granted to it, while the pool is registered once for all QPs.
 *
 *   The first message on every QP is a HELLO whose mac is SipHash-2-4,
 *   keyed with the job secret, over both leaders, QP numbers and PSNs. A
 *   receiver honours nothing (no credit, notify or chunk) on a link before
 *   that link's HELLO checked, and grants nothing (so gives no rkey) before
 *   it either. PING is a keepalive (an idle link's peer must acknowledge it,
 *   so a dead peer surfaces as a failed send within about a second).
 *
 * Every integer on the wire is little-endian, whatever the hosts.
 */
#ifndef P2PBCAST_VERBS_WIRE_H
#define P2PBCAST_VERBS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#define PB_VW_MSG_SIZE 16u     /* descriptor size */
#define PB_VW_CTRL_SIZE 32u    /* control message size */
#define PB_VW_INFO_SIZE 256u   /* endpoint info */
#define PB_VW_CONN_SIZE 12u    /* {peer, qpn, psn} of one queue pair */
#define PB_VW_OFFER_SIZE (PB_VW_INFO_SIZE + PB_VW_CONN_SIZE) /* round 1, to one partner */
#define PB_VW_ECHO_SIZE (2 * PB_VW_CONN_SIZE)                /* round 2, to one partner */
#define PB_VW_REASON_MAX 176u

/* The first puts: at set-up, before any chunk, every leader writes
 * PB_VW_PROBE_SIZE bytes WITH IMMEDIATE PB_VW_PROBE_IMM into the probe
 * area each partner opened to it (offer: probe_rkey, probe_off), so that a
 * link that connects but cannot carry a put fails the set-up. The receiver
 * takes such an immediate as nothing but a used receive. */
#define PB_VW_PROBE_SIZE 32u
#define PB_VW_PROBE_IMM 0xffffffffu

enum pb_vw_msg_type { PB_VW_MSG_CREDIT = 1, PB_VW_MSG_NOTIFY = 2, PB_VW_MSG_HELLO = 3, PB_VW_MSG_PING = 4 };

/* ---- descriptors and control messages ---- */

struct pb_vw_desc {
    uint32_t slot, tag, len;
};

void pb_vw_desc_pack(uint8_t out[PB_VW_MSG_SIZE], uint32_t slot, uint32_t tag, uint32_t len);
/* Validate the descriptor found in our table for an immediate naming
 * imm_slot: well formed, same slot, len within our slot size. 0 or -1+why. */
int pb_vw_desc_unpack(const uint8_t in[PB_VW_MSG_SIZE], uint32_t imm_slot, uint32_t nslots,
                      uint64_t slot_size, struct pb_vw_desc *d, char *why, size_t whylen);

struct pb_vw_ctrl {
    uint32_t type, value, a, b;
    uint64_t mac;
};
void pb_vw_ctrl_pack(uint8_t out[PB_VW_CTRL_SIZE], const struct pb_vw_ctrl *m);
/* len is what the receive completion says arrived. */
int pb_vw_ctrl_unpack(const uint8_t *in, uint32_t len, struct pb_vw_ctrl *m, char *why, size_t whylen);
/* Shorthands for messages without keys or mac. */
void pb_vw_msg_pack(uint8_t out[PB_VW_CTRL_SIZE], uint32_t type, uint32_t value);
int pb_vw_msg_unpack(const uint8_t *in, uint32_t len, uint32_t *type, uint32_t *value,
                     char *why, size_t whylen);

/* SipHash-2-4 of msg under a 128-bit key. */
uint64_t pb_vw_siphash(const uint8_t key[16], const uint8_t *msg, size_t len);
/* The HELLO mac `from` sends to `to` over the QP pair (from_qpn, to_qpn). */
uint64_t pb_vw_hello_mac(const uint8_t secret[16], uint32_t from, uint32_t to, uint32_t from_qpn,
                         uint32_t to_qpn, uint32_t from_psn, uint32_t to_psn);

/* ---- endpoint exchange ----
 * Set-up talks to the partners only, in three rounds, each opened by a vote
 * of every leader on whether its set-up went well so far (struct
 * pb_exchange's per_peer): a failure stops every leader at the same round.
 *   1. offer: to each partner, our endpoint info and the queue pair we made
 *      for it (PB_VW_OFFER_SIZE);
 *   2. echo: to each partner, the queue pair we offered it and the one it
 *      offered us, so both ends check that they agree (PB_VW_ECHO_SIZE);
 *   3. the vote alone: every queue pair reached RTS before anyone sends.
 * A leader's set-up costs O(partners) bytes, whatever the number of nodes. */

enum pb_vw_link_layer { PB_VW_LL_IB = 1, PB_VW_LL_ETH = 2 };

struct pb_vw_info {
    uint32_t status;               /* 0: set-up succeeded; else a failure marker */
    char reason[PB_VW_REASON_MAX]; /* why it failed (NUL terminated) */
    uint32_t npeers;               /* the sender's partner count (informative) */
    uint32_t nslots;
    uint64_t slot_size;
    uint64_t pool_addr;
    uint32_t probe_rkey;           /* the window over the probe area opened to this offer's receiver
                                    * (the slots' keys come with each credit) */
    uint64_t desc_addr;            /* descriptor table: nslots * PB_VW_MSG_SIZE */
    uint32_t probe_off;            /* that probe area, from desc_addr (PB_VW_PROBE_SIZE bytes) */
    uint32_t rq_depth;             /* receives posted per QP */
    uint16_t lid;
    uint8_t port;
    uint8_t link_layer;            /* enum pb_vw_link_layer */
    uint8_t mtu;                   /* enum ibv_mtu value (1..5) */
    uint8_t gid[16];
};

void pb_vw_info_pack(const struct pb_vw_info *in, uint8_t out[PB_VW_INFO_SIZE]);
int pb_vw_info_unpack(const uint8_t in[PB_VW_INFO_SIZE], struct pb_vw_info *out, char *why,
                      size_t whylen);
/* A marker for a leader whose device set-up failed (what it offers when the
 * vote would not have stopped the exchange). */
void pb_vw_info_error(struct pb_vw_info *out, const char *reason);

/* The queue pair `qpn`, first PSN `psn`, that its owner made for `peer`. */
struct pb_vw_conn {
    uint32_t peer, qpn, psn;
};
void pb_vw_conn_pack(const struct pb_vw_conn *c, uint8_t out[PB_VW_CONN_SIZE]);
void pb_vw_conn_unpack(const uint8_t in[PB_VW_CONN_SIZE], struct pb_vw_conn *c);

/* Round 1: info and the queue pair made for the receiver. Unpack checks the
 * info (no failure marker), that the queue pair is meant for `self` and
 * that QPN and PSN fit in 24 bits. 0 or -1+why. */
void pb_vw_offer_pack(const struct pb_vw_info *in, const struct pb_vw_conn *c, uint8_t out[PB_VW_OFFER_SIZE]);
int pb_vw_offer_unpack(const uint8_t in[PB_VW_OFFER_SIZE], uint32_t self, struct pb_vw_info *info,
                       struct pb_vw_conn *c, char *why, size_t whylen);

/* Round 2: what we sent the partner (peer = it) and what we got from it
 * (peer = us). The partner's echo must be the mirror image: what it says it
 * sent is what we got, what it says it got is what we sent. 0 or -1+why. */
void pb_vw_echo_pack(const struct pb_vw_conn *sent, const struct pb_vw_conn *got, uint8_t out[PB_VW_ECHO_SIZE]);
int pb_vw_echo_check(const uint8_t in[PB_VW_ECHO_SIZE], const struct pb_vw_conn *sent,
                     const struct pb_vw_conn *got, char *why, size_t whylen);

/* ---- a chunk put ---- */

struct pb_vw_local {
    uintptr_t pool;
    uint64_t pool_len;
};

struct pb_vw_remote {
    uint64_t pool_addr;
    uint32_t pool_rkey;
    uint64_t desc_addr;
    uint32_t desc_rkey;
    uint32_t nslots;
    uint64_t slot_size;
};

struct pb_vw_put_plan {
    uint64_t data_laddr;   /* local source, inside the registered pool */
    uint64_t data_raddr;   /* peer pool + slot*slot_size */
    uint32_t data_rkey;
    uint32_t len;
    uint32_t imm;          /* host order; the thin layer applies htonl */
    uint64_t desc_raddr;   /* peer desc table + slot*PB_VW_MSG_SIZE */
    uint32_t desc_rkey;
    uint8_t desc[PB_VW_MSG_SIZE];
};

/* Bounds-check slot and len against what the peer advertised and buf
 * against our pool, without overflow; fill the plan. 0 or -1+why. */
int pb_vw_plan_put(const struct pb_vw_local *l, const struct pb_vw_remote *r, uint32_t slot,
                   uint32_t tag, const void *buf, uint32_t len, struct pb_vw_put_plan *out,
                   char *why, size_t whylen);

/* ---- work request ids ---- */

enum pb_vw_kind { PB_VW_K_RECV = 1, PB_VW_K_DESC = 2, PB_VW_K_DATA = 3, PB_VW_K_CTRL = 4, PB_VW_K_PROBE = 5 };
#define PB_VW_SEQ_BITS 36
#define PB_VW_MAX_PEERS (1 << 24)

uint64_t pb_vw_wrid(enum pb_vw_kind kind, int peer, uint64_t seq);
void pb_vw_wrid_split(uint64_t wrid, enum pb_vw_kind *kind, int *peer, uint64_t *seq_low);
/* Full sequence number from its low bits, given that it lies in
 * [done, done + 2^SEQ_BITS). */
uint64_t pb_vw_seq_full(uint64_t done, uint64_t seq_low);

/* ---- send-queue accounting and selective signalling ----
 * At most `depth` WRs are outstanding on a QP. Control WRs (descriptors,
 * credits, notifies) go unsignalled; a signalled completion retires every
 * earlier WR of the QP, since a send queue completes in order. Data writes
 * are always signalled (the engine needs each buffer back promptly), and
 * no run of unsignalled WRs exceeds signal_every < depth, so queue space is
 * always reclaimed. */
struct pb_vw_sq {
    uint32_t depth;
    uint32_t signal_every;
    uint64_t posted;      /* sequence number of the next WR */
    uint64_t done;        /* WRs known complete */
    uint32_t unsignaled;  /* unsignalled WRs since the last signalled one */
};

void pb_vw_sq_init(struct pb_vw_sq *sq, uint32_t depth);
uint32_t pb_vw_sq_room(const struct pb_vw_sq *sq);
/* Take the next WR: returns its sequence number; *signal says whether it
 * must be signalled (forced when want_signal or the run is long). */
uint64_t pb_vw_sq_take(struct pb_vw_sq *sq, int want_signal, int *signal);
/* A WR was not posted after all (ibv_post_send failed): give it back. */
void pb_vw_sq_untake(struct pb_vw_sq *sq, uint64_t seq, int signal);
/* The signalled WR with sequence seq completed (or failed). */
void pb_vw_sq_complete(struct pb_vw_sq *sq, uint64_t seq);

/* ---- per-peer link: backlog of requests waiting for queue space and the
 * cookies of puts in flight ---- */

enum pb_vw_req_kind {
    PB_VW_REQ_PUT = 1,
    PB_VW_REQ_CREDIT,
    PB_VW_REQ_NOTIFY,
    PB_VW_REQ_HELLO,
    PB_VW_REQ_PING,
    PB_VW_REQ_BIND, /* binds a slot's two memory windows to this QP: 2 WRs, before its first credit */
};

struct pb_vw_req {
    enum pb_vw_req_kind kind;
    uint32_t slot;     /* PUT: peer slot; CREDIT, BIND: our slot */
    uint32_t tag;      /* PUT: tag; NOTIFY: code; CREDIT: rkey of the slot's window */
    uint32_t len;      /* PUT: length; CREDIT: rkey of its descriptor entry's window */
    const void *buf;
    uint64_t cookie;
};

struct pb_vw_link {
    struct pb_vw_sq sq;
    uint64_t *cookies;        /* depth entries, indexed by data WR seq % depth */
    struct pb_vw_req *q;      /* FIFO ring of requests not yet posted */
    uint32_t qcap, qhead, qlen;
    int dead;                 /* an error was reported: no more events for it */
    int hello_wait;           /* 1: nothing is honoured before a HELLO with hello_mac */
    uint64_t hello_mac;       /* what the peer's HELLO must carry */
    uint32_t peer_nslots;     /* size of the two arrays below (0: none) */
    uint32_t *rkey_data;      /* per peer slot: rkeys from its latest credit, 0: never granted */
    uint32_t *rkey_desc;
};

int pb_vw_link_init(struct pb_vw_link *lk, uint32_t sq_depth);
/* The peer's slot count, for the per-slot rkeys its credits bring. */
int pb_vw_link_peer_slots(struct pb_vw_link *lk, uint32_t nslots); /* -1: ENOMEM */
void pb_vw_link_fini(struct pb_vw_link *lk);
/* Requests are posted in order: a new one goes to the backlog whenever the
 * backlog is non-empty or the queue lacks room (PUT needs 2 WRs). */
uint32_t pb_vw_req_wrs(enum pb_vw_req_kind k);
int pb_vw_link_push(struct pb_vw_link *lk, const struct pb_vw_req *r); /* -1: ENOMEM */
const struct pb_vw_req *pb_vw_link_peek(const struct pb_vw_link *lk);
void pb_vw_link_pop(struct pb_vw_link *lk);

/* ---- completions ---- */

enum pb_vw_cqe_op { PB_VW_OP_SEND_DONE = 1, PB_VW_OP_RECV, PB_VW_OP_RECV_IMM };

/* What the thin layer extracts from an ibv_wc. */
struct pb_vw_cqe {
    uint64_t wr_id;
    int ok;                  /* status == IBV_WC_SUCCESS */
    const char *status_str;  /* ibv_wc_status_str(status) */
    uint32_t vendor_err;
    enum pb_vw_cqe_op op;    /* meaningful only when ok */
    uint32_t imm;            /* host order */
    uint32_t byte_len;
};

/* Everything the completion handler reads or updates. */
struct pb_vw_state {
    int npeers;
    const int *peer_leader;      /* link index -> leader index */
    struct pb_vw_link *links;    /* npeers */
    const uint32_t *peer_nslots; /* per link: the peer's slot count */
    uint8_t *desc_table;         /* our nslots * PB_VW_MSG_SIZE */
    uint32_t nslots;
    uint64_t slot_size;
    const uint8_t *(*recv_buf)(void *ctx, int link, uint64_t idx); /* control receive buffer */
    void *ctx;
};

/* Turn one completion into at most one event. Returns 1 when *ev was
 * filled, 0 when the completion only updated state. *repost_link/idx are
 * set (else -1) when a receive buffer must be posted again. Errors mark the
 * link dead; later completions of a dead link (flushes) produce nothing. */
int pb_vw_handle_cqe(struct pb_vw_state *st, const struct pb_vw_cqe *c, struct pb_event *ev,
                     int *repost_link, int64_t *repost_idx);

#endif
