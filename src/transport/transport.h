/* transport.h — the one interface between the engine and the wire.
 *
 * A transport moves opaque byte ranges between node leaders. It knows nothing
 * of files, chunks or schedules: the engine gives it a memory pool cut into
 * equal slots, and asks it to
 *   put    — copy len bytes from local pool memory into slot `slot` of peer's
 *            pool, with a 32-bit tag the peer sees on arrival (RDMA WRITE WITH
 *            IMMEDIATE in verbs terms). Only into slots the peer granted.
 *   grant  — tell a peer that it may now put into one of our slots (a credit).
 *   notify — send a small code to a peer (e.g. "done").
 *   poll   — report what happened: arrived, sent, credit, notify, error.
 * put/grant/notify never block; completions come back through poll.
 * Peers are leader indices 0..nleaders-1; names[] is for error messages only.
 */
#ifndef P2PBCAST_TRANSPORT_H
#define P2PBCAST_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

enum pb_ev_kind {
    PB_EV_ARRIVED = 1, /* peer put len bytes into our slot `slot`, tag `tag` */
    PB_EV_SENT,        /* our put with `cookie` has left local memory: buffer reusable */
    PB_EV_CREDIT,      /* peer granted us its slot `slot` */
    PB_EV_NOTIFY,      /* peer sent code `tag` */
    PB_EV_ERROR        /* the link to `peer` (or -1: the transport) failed; see err/what */
};

struct pb_event {
    enum pb_ev_kind kind;
    int peer;
    uint32_t slot;
    uint32_t tag;
    uint32_t len;
    uint64_t cookie;
    int err;           /* errno value for PB_EV_ERROR, 0 when none applies */
    char what[160];    /* PB_EV_ERROR: what failed, without the peer's name */
};

/* Collective exchange the transport may use during set-up (endpoint
 * addresses, keys). Provided by the MPI bootstrap. Returns 0 on success. */
struct pb_exchange {
    /* Every leader says whether its own set-up went well
     * (all learn whether every one did: 1 if one did not, and then nothing
     * is exchanged, so a leader that failed may pass no buffers), then
     * exchanges len bytes with its partners only (out[i] from peers[i]).
     * Partners must be mutual. O(log N) per leader. 0, 1, 2 canceled, -1. */
    int (*with_peers)(void *ctx, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers);
    /* As with_peers, but a message of its own for each partner: mine holds
     * npeers*len bytes, mine + i*len goes to peers[i] (verbs: the queue pair
     * made for that partner). npeers 0: the vote alone. */
    int (*per_peer)(void *ctx, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers);
    /* mpi: wait for n requests (MPI_Request[n]) of a collective over the
     * leaders' communicator, with the liveness rules and deadline of the
     * exchanges above. 0, 1 timeout (the job is then ended), 2 canceled,
     * -1 MPI failure; on 1 and 2 the requests may still complete later. */
    int (*wait)(void *ctx, void *reqs, int n);
    /* Every leader's len bytes go to the root, which turns them (in leader
     * order) into dlen bytes with decide(all, nleaders, out, arg); every
     * leader receives those. Returns 0, or nonzero on every leader when the
     * root did not hear from all (bounded by the exchange timeout). */
    int (*root_decides)(void *ctx, const void *mine, size_t len, void *out, size_t dlen,
                        void (*decide)(const void *all, int n, void *out, void *arg), void *arg);
    void *ctx;
};

/* What every transport needs to open. */
struct pb_transport_cfg {
    int self;                 /* our leader index */
    int nleaders;
    const int *peers;         /* leaders we exchange data or credits with */
    int npeers;
    void *pool;               /* slot pool: nslots * slot_size bytes */
    size_t slot_size;
    uint32_t nslots;
    const char *const *names; /* "host (rank N)" per leader, for messages (others
                               * than ourselves and our partners may be "node I") */
    const uint64_t *netids;   /* per leader (partners at least): equal ids share a
                               * machine and network namespace */
    int all_local;            /* every leader shares our machine and network namespace */
    struct pb_exchange xchg;
    uint8_t secret[16];       /* per-job secret handed out by the bootstrap */
    double timeout;           /* seconds to wait for connections at set-up */
    int verbose;
    /* transport-specific knobs */
    const char *tcp_if;       /* tcp: interface names or CIDRs, comma-separated */
    const struct pb_tcp_rail_set *tcp_rails; /* tcp: chosen already (pb_tcp_rails_agree), NULL: at open */
    const char *rdma_dev;     /* verbs: device[:port][,...] */
    int rdma_rails;           /* verbs: how many rails every node opens (agreed), 0: all of the fastest kind */
    int gid_index;            /* verbs: RoCE GID index, -1 automatic */
    int rdma_tclass;          /* verbs: RoCE traffic class, -1 the device's default */
    void *mpi_comm;           /* mpi: pointer to the leaders' MPI_Comm */
    /* Out, optional: set to 1 when open failed only because another
     * leader's set-up did (its own message names it and the reason). */
    int *failed_elsewhere;
    /* Out, optional: what this node's data runs on, for --check (tcp: the
     * rails, each with its rate and where the rate came from). */
    char *links;
    size_t links_len;
};

struct pb_transport;

struct pb_transport_ops {
    const char *name;
    int (*put)(struct pb_transport *t, int peer, uint32_t slot, uint32_t tag,
               const void *buf, uint32_t len, uint64_t cookie);
    int (*grant)(struct pb_transport *t, int peer, uint32_t slot);
    int (*notify)(struct pb_transport *t, int peer, uint32_t code);
    /* Wait up to timeout_ms (-1: forever, 0: no wait) for events; fill at
     * most max of them. Returns the count, or -1 with errno set. Must block in
     * the kernel (or sleep), never spin, when nothing is ready; only the mpi
     * transport keeps calling MPI while a chunk is in flight, because many
     * MPI libraries move its bytes only inside their calls. */
    int (*poll)(struct pb_transport *t, struct pb_event *ev, int max, int timeout_ms);
    /* Release everything. Returns 0 when nothing will touch the pool any
     * more; 1 when a request into the pool could not be ended (MPI cannot
     * always cancel a send): the caller must then keep the pool allocated. */
    int (*close)(struct pb_transport *t);
};

struct pb_transport {
    const struct pb_transport_ops *ops;
};


/* Openers. Each returns NULL and fills err (naming the peer, address or
 * device and the reason; the caller prefixes this leader's host and rank) on
 * failure. Collective over the leaders: all must call the same. */
struct pb_transport *pb_tcp_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen);
struct pb_transport *pb_verbs_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen);
struct pb_transport *pb_mpi_transport_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen);

/* The rails and, for placement, the nodes' send rates, in one probe at
 * set-up (src/stage/rates.c; tcp_probe.c): every leader sends its successor
 * in leader order (self + 1) about 60 ms of data on each network it shares
 * with it (every one when probe_all, else those of unknown device speed)
 * and times what its predecessor (self - 1) sends it, in two or three
 * rounds (no node sends and receives at once), each bounded by about 1.6 s;
 * the root decides. Collective over the leaders (cfg: self, nleaders, xchg,
 * secret, tcp_if, names, verbose). set gets the rails (cfg.tcp_rails hands
 * them to pb_tcp_open); on the root send_kbit (nleaders entries, or NULL)
 * gets each leader's send rate in kbit/s, summed over the chosen rails, 0
 * when unknown. Returns 0, or -1 with set->err (set->n -1). */
struct pb_tcp_rail_set;
int pb_tcp_rails_agree(const struct pb_transport_cfg *cfg, int probe_all, uint32_t *send_kbit,
                       struct pb_tcp_rail_set *set);

/* The link speed in Mbit/s the tcp transport would run at for tcp_if (a
 * name, a CIDR, a list of them, or NULL: every real interface that is
 * up): the fastest sysfs speed among those rails (the rails choose the
 * fastest network, not the default route's); 0 when none reports one
 * (virtual NICs: veth, bridge, VLAN, bond, a VM's NIC). ifname gets that
 * interface's name (the first rail's when none reports; "" if none). */
uint64_t pb_tcp_link_mbit(const char *tcp_if, char *ifname, size_t ifnlen);

/* What a node's verbs set-up would need, asked before choosing verbs. */
struct pb_verbs_want {
    const char *rdma_dev;     /* device[:port][,...], NULL automatic */
    int gid_index;            /* -1 automatic */
    uint64_t slot_size;
    uint32_t nslots;
    int npeers;               /* partners */
};

/* What it found: the device, port and GID pb_verbs_open would take, the
 * port's largest message, the pinned memory needed and allowed. Fixed
 * layout (gathered at the root). */
struct pb_verbs_fit {
    int32_t ok;
    int32_t roce;
    int32_t gid_index;
    uint32_t port;
    uint32_t mbit;            /* the port's rate, 0 unknown */
    uint32_t nrails;          /* the ports it could stripe over: of the fastest kind, or every one named */
    uint64_t max_msg;         /* the port's max_msg_sz, 0 unknown */
    uint64_t pin_need;
    uint64_t pin_limit;       /* UINT64_MAX: no limit applies */
    char dev[64];
    char rails[256];          /* every active port it could take, with its rate */
    char why[384];            /* ok == 0: why verbs cannot be used here */
};

/* Look at this node as pb_verbs_open would, without creating queue pairs or
 * pinning: the device and an active port, the GID for RoCE, the pinned
 * memory the run needs against RLIMIT_MEMLOCK. 1 when verbs can be used
 * (as far as can be told before connecting), 0 with f->why. */
int pb_verbs_probe(const struct pb_verbs_want *w, struct pb_verbs_fit *f);

/* Is a usable RDMA device present? (false when built without verbs) */
int pb_verbs_available(char *why, size_t whylen);

#endif
