/* sv_internal.h — softverbs: a userspace RC verbs device for tests.
 * Shared declarations of the library's translation units. */
#ifndef SV_INTERNAL_H
#define SV_INTERNAL_H

#include <infiniband/verbs.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SV_EXPORT __attribute__((visibility("default")))

#define SV_MAX_SGE 4
#define SV_MAX_INLINE 256
#define SV_MAX_QP 255 /* per context: qp_num = listening port << 8 | index */
#define SV_MAX_QP_WR 16384
#define SV_MAX_CQE (1 << 20)
#define SV_MAX_MSG (1u << 30)
#define SV_MAX_DEV 4 /* devices listed: one "HCA" per rail */

/* Library configuration, read once from the environment. */
struct sv_cfg {
    int enabled;          /* SOFTVERBS=1: otherwise no device is listed */
    int roce;             /* SOFTVERBS_MODE=roce */
    int ndev;             /* SOFTVERBS_NDEV or the names in SOFTVERBS_DEVNAME, 1 to SV_MAX_DEV */
    char devname[SV_MAX_DEV][64]; /* SOFTVERBS_DEVNAME (comma list), each must start with "softverbs" */
    uint8_t speed[SV_MAX_DEV];    /* SOFTVERBS_ACTIVE_SPEED (comma list): each port's active_speed code */
    char ip[64];          /* SOFTVERBS_IP: listening address, in the RoCE GID */
    uint16_t lid;         /* SOFTVERBS_LID */
    unsigned cq_delay_us; /* SOFTVERBS_FAULT_CQ_DELAY_US */
    int reorder;          /* SOFTVERBS_FAULT_REORDER */
    long long memlock;    /* SOFTVERBS_FAULT_MEMLOCK: bytes, -1 none */
    long long die_writes; /* SOFTVERBS_FAULT_KILL_AFTER_WRITES */
    long long die_bytes;  /* SOFTVERBS_FAULT_KILL_AFTER_BYTES */
    int drop;             /* SOFTVERBS_FAULT_DROP: drop connections instead of dying */
    int no_mw;            /* SOFTVERBS_NO_MW: a device without memory windows (siw, qedr) */
    int put_status;       /* SOFTVERBS_FAULT_PUT: status every RDMA write completes with, 0 none */
    char put_dev[64];     /* SOFTVERBS_FAULT_PUT_DEV: only the writes posted on this device, "" all */
    long long put_after;  /* SOFTVERBS_FAULT_PUT_AFTER: only a QP's work requests from this one on, 0 all */
    unsigned max_timeout_ms; /* SOFTVERBS_MAX_TIMEOUT_MS: cap of one transport timeout */
    int debug;            /* SOFTVERBS_DEBUG */
    int max_qp_wr;        /* SOFTVERBS_MAX_QP_WR: device limit, to stress queue accounting */
    uint32_t max_msg;     /* SOFTVERBS_MAX_MSG_SZ: the port's max_msg_sz, enforced at post_send */
    int max_cqe;          /* SOFTVERBS_MAX_CQE */
};
extern struct sv_cfg sv_cfg;
void sv_cfg_load(void);
void sv_dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
