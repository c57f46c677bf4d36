/* verbs_internal.h — what the files of the verbs transport share: the
 * transport object (struct vt, one struct vlink per peer) and the functions
 * one file calls in another. Private to src/transport/verbs; built only
 * with HAVE_VERBS and without PB_FORCE_NO_VERBS. */
#ifndef PB_VERBS_INTERNAL_H
#define PB_VERBS_INTERNAL_H

#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "topo.h"
#include "verbs_limits.h"
#include "verbs_place.h"
#include "verbs_rails.h"
#include "verbs_wire.h"

#define PEND_MAX 64     /* events waiting for the next poll (errors mostly) */

/* One link: a peer over one rail. Its QP shares the rail's PD with the
 * rail's other QPs; the slots granted to it are opened by type 2 memory
 * windows bound to its QP, so their rkeys are useless on any other QP: a
 * peer can write only what was granted to it. */
struct vlink {
    int leader;
    struct ibv_qp *qp;
    struct ibv_mw *probe_mw;  /* our probe area for this peer, bound to qp (verbs_probe.c) */
    uint64_t probe_raddr;     /* the peer's probe area for us, and its key */
    uint32_t probe_rkey;
    uint64_t probe_seq;       /* our first put's send queue number */
    int probe_done;
    struct pb_vw_remote rem;
    uint32_t psn, peer_qpn, peer_psn;
    uint32_t rq_depth;
    uint8_t *sendbuf;  /* sq depth * PB_VW_CTRL_SIZE, indexed by seq % depth */
    uint8_t *recvbuf;  /* rq_depth * PB_VW_CTRL_SIZE */
    double last_seen;  /* ms: the last completion of this link */
    double last_ping;
};

/* One rail: a device port with its own context, protection domain,
 * completion queue and registrations (the same pool and tables, registered
 * in each rail's PD: a queue pair reaches only memory of its own PD). Link
 * li of the transport is rail li / npeers's queue pair to peer li % npeers.
 * Each of our slots belongs to one rail (slot_rail): its grants, windows
 * and the puts into it go over that rail only, so a slot's traffic stays
 * in order on one queue pair. */
struct vrail {
    char devname[64];
    uint8_t port;
    uint32_t mbit;             /* the port's rate (active_speed x active_width), 0 unknown */
    int gid_index;
    int use_grh;
    struct ibv_port_attr pattr;
    union ibv_gid gid;
    struct ibv_context *ctx;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_pd *pd;
    struct ibv_mr *pool_mr;    /* the pool: local access and window binding */
    struct ibv_mr *desc_mr;    /* the descriptor table, likewise */
    struct ibv_mr *ctrl_mr;    /* this rail's links' control buffers, local only */
    int tclass;                /* RoCE traffic class of its QPs */
    uint32_t max_inline;
    int cq_armed;
    uint32_t nslots;           /* our slots that belong to it */
    int numa;                  /* its device's NUMA node, -1 unknown */
    char place[192];           /* where its slots are, for -v (place_slots) */
    uint64_t puts, put_bytes;  /* chunks written over it, for -v */
};

struct vt {
    struct pb_transport base;
    char self[128];            /* "host (rank N)" of this leader, for messages */
    int verbose;
    struct vrail rails[PB_VERBS_MAX_RAILS];
    int nrails;
    int nlinks;                /* nrails * npeers */
    char rails_seen[256];      /* every active port open_rails could take, with its rate, for -v */
    uint8_t *slot_rail;        /* per slot of ours: the rail it belongs to */
    struct ibv_mw **slot_mw;   /* per slot: REMOTE_WRITE window bound to its grantee's QP, NULL: never granted */
    struct ibv_mw **sdesc_mw;  /* per slot: its descriptor entry, likewise */
    int *slot_owner;           /* per slot: link index of the grantee, -1 none */
    int fenced;                /* 1: windows keep each peer to its granted slots; 0: a device
                                * has no type 2 windows, pool and table are remote-writable
                                * through their own keys by every partner (check_windows) */
    uint8_t secret[16];
    size_t reg_bytes;          /* registered so far, for messages */
    struct pb_verbs_pin pin;   /* what the whole run will register (verbs_limits.h) */
    void *pool;
    size_t pool_len;
    int pool_split;            /* 1: the rails' devices on several NUMA nodes, each rail's slots moved to its own */
    uint32_t nslots;
    size_t slot_size;
    uint8_t *desc_table;       /* nslots * PB_VW_MSG_SIZE, remote writable per granted slot, then the
                                * probe areas: nlinks * PB_VW_PROBE_SIZE from probe_off */
    size_t desc_len, probe_off;
    uint8_t *ctrl;             /* all links' send and receive message buffers */
    size_t ctrl_len;

    int nleaders;
    int self_leader;
    int npeers;
    struct vlink *links;       /* nlinks */
    struct pb_vw_link *lks;    /* per link queue state, the array verbs_wire works on */
    int *leader_link;          /* leader index -> peer index (its link on rail 0), -1 when not a peer */
    int *peer_leader;          /* link index -> leader index */
    uint32_t *peer_nslots;     /* per link */
    struct pb_vw_state st;

    struct pb_event pend[PEND_MAX];
    int npend;
};

static inline struct vrail *rail_of(struct vt *t, int li)
{
    return &t->rails[li / (t->npeers > 0 ? t->npeers : 1)];
}

/* verbs.c */
void pend_error(struct vt *t, int peer, int err, const char *what);
void link_error(struct vt *t, int li, int err, const char *what);
void name_rail(struct vt *t, int li, char *what, size_t n);
int peer_already_lost(const struct vt *t, int li);
double now_ms(void);

/* verbs_device.c */
/* Open want (NULL: 0, every port of the fastest kind) rails among the
 * active ports named by devs (--rdma-dev, NULL: every device); *nfast: how
 * many it could have opened (of the fastest kind, or every named port). */
int open_rails(struct vt *t, const char *devs, int want, int *nfast, char *why, size_t wl);
int choose_gid(struct vrail *R, int want, char *why, size_t wl);
int query_device(const struct vrail *R, struct ibv_device_attr *da, char *why, size_t wl); /* -1 + why */

/* verbs_mr.c */
int alloc_memory(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl);
/* Fences (type 2 windows) where the device has them; 0 either way unless
 * the device cannot be queried. */
int check_windows(struct vt *t, char *why, size_t wl);
/* Each rail's slots near its device when the rails sit on different NUMA
 * nodes; before register_memory (pinned pages cannot move). Never fails:
 * what it could not do goes to R->place. */
void place_slots(struct vt *t);
int register_memory(struct vt *t, char *why, size_t wl);
/* What this node pins: the pool and the table once per rail, the control
 * buffers (ctrl_bytes) once. */
void rails_pin(const struct vt *t, uint64_t ctrl_bytes, struct pb_verbs_pin *pin);
int check_limits(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl);
int grant_windows(struct vt *t, int li, uint32_t slot, struct pb_vw_req *bind, char *why, size_t wl);
void free_windows(struct vt *t);

/* verbs_connect.c */
int size_queues(struct vt *t, uint32_t *sq, uint32_t *rq, char *why, size_t wl);
const char *leader_name(const struct pb_transport_cfg *cfg, int leader);
int setup_local(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl);
void fill_info(const struct vt *t, const struct vrail *R, struct pb_vw_info *in);
int connect_link(struct vt *t, int li, const struct pb_vw_info *pi,
                 const struct pb_vw_conn *pc, const char *peername, char *why, size_t wl);

/* verbs_data.c */
struct window { /* a type 2 window to bind: over len bytes at addr of mr */
    struct ibv_mw *mw;
    struct ibv_mr *mr;
    void *addr;
    size_t len;
    const char *what;
};
int bind_windows(struct vt *t, int li, const struct window *w, int n, char *why, size_t wl);
void drain_backlog(struct vt *t, int li);
int submit(struct vt *t, int li, const struct pb_vw_req *r);
int v_put(struct pb_transport *bt, int peer, uint32_t slot, uint32_t tag, const void *buf,
          uint32_t len, uint64_t cookie);
int v_grant(struct pb_transport *bt, int peer, uint32_t slot);
int v_notify(struct pb_transport *bt, int peer, uint32_t code);

/* verbs_probe.c */
int open_probe(struct vt *t, int li, char *why, size_t wl);
int bind_probe(struct vt *t, int li, const struct pb_vw_info *pi, char *why, size_t wl);
int first_puts(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl);
void free_probes(struct vt *t);

/* verbs_poll.c */
int take_wc(struct vt *t, const struct ibv_wc *wc, double now, struct pb_event *ev);
const uint8_t *recv_buf(void *ctx, int li, uint64_t idx);
int v_poll(struct pb_transport *bt, struct pb_event *ev, int max, int timeout_ms);

#endif /* PB_VERBS_INTERNAL_H */
