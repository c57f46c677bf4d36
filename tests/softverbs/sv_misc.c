/* sv_misc.c — softverbs: the string helpers and small utilities of the
 * libibverbs API (texts written after the man pages' wording). */
#include "sv_internal.h"

#include <errno.h>
#include <stddef.h>

SV_EXPORT const char *ibv_node_type_str(enum ibv_node_type t)
{
    static const char *const s[] = {"CA", "switch", "router", "iWARP NIC", "usNIC", "usNIC UDP", "unspecified"};
    return t >= IBV_NODE_CA && t <= IBV_NODE_UNSPECIFIED ? s[t - IBV_NODE_CA] : "unknown";
}

SV_EXPORT const char *ibv_port_state_str(enum ibv_port_state s)
{
    static const char *const n[] = {"PORT_NOP", "PORT_DOWN", "PORT_INIT", "PORT_ARMED", "PORT_ACTIVE",
                                    "PORT_ACTIVE_DEFER"};
    return s <= IBV_PORT_ACTIVE_DEFER ? n[s] : "unknown";
}

SV_EXPORT const char *ibv_event_type_str(enum ibv_event_type e)
{
    static const char *const n[] = {
        "CQ error",          "local work queue catastrophic error",
        "invalid request local work queue error", "local access violation work queue error",
        "communication established", "send queue drained",
        "path migrated",     "path migration request error",
        "local catastrophic error", "port active",
        "port error",        "LID change",
        "P_Key change",      "SM change",
        "SRQ catastrophic error", "SRQ limit reached",
        "last WQE reached",  "client reregistration",
        "GID table change",  "WQ fatal",
    };
    return (unsigned)e < sizeof n / sizeof n[0] ? n[e] : "unknown";
}

SV_EXPORT const char *ibv_wc_status_str(enum ibv_wc_status st)
{
    static const char *const n[] = {
        "success",
        "local length error",
        "local QP operation error",
        "local EE context operation error",
        "local protection error",
        "Work Request Flushed Error",
        "memory management operation error",
        "bad response error",
        "local access error",
        "remote invalid request error",
        "remote access error",
        "remote operation error",
        "transport retry counter exceeded",
        "RNR retry counter exceeded",
        "local RDD violation error",
        "remote invalid RD request",
        "aborted error",
        "invalid EE context number",
        "invalid EE context state",
        "fatal error",
        "response timeout error",
        "general error",
        "TM error",
        "TM software rendezvous",
    };
    return (unsigned)st < sizeof n / sizeof n[0] ? n[st] : "unknown";
}

SV_EXPORT int ibv_rate_to_mult(enum ibv_rate r)
{
    switch (r) {
    case IBV_RATE_2_5_GBPS: return 1;
    case IBV_RATE_5_GBPS: return 2;
    case IBV_RATE_10_GBPS: return 4;
    case IBV_RATE_20_GBPS: return 8;
    case IBV_RATE_30_GBPS: return 12;
    case IBV_RATE_40_GBPS: return 16;
    case IBV_RATE_60_GBPS: return 24;
    case IBV_RATE_80_GBPS: return 32;
    case IBV_RATE_120_GBPS: return 48;
    default: return -1;
    }
}

SV_EXPORT enum ibv_rate mult_to_ibv_rate(int m)
{
    switch (m) {
    case 1: return IBV_RATE_2_5_GBPS;
    case 2: return IBV_RATE_5_GBPS;
    case 4: return IBV_RATE_10_GBPS;
    case 8: return IBV_RATE_20_GBPS;
    case 12: return IBV_RATE_30_GBPS;
    case 16: return IBV_RATE_40_GBPS;
    case 24: return IBV_RATE_60_GBPS;
    case 32: return IBV_RATE_80_GBPS;
    case 48: return IBV_RATE_120_GBPS;
    default: return IBV_RATE_MAX;
    }
}

SV_EXPORT int ibv_rate_to_mbps(enum ibv_rate r)
{
    int m = ibv_rate_to_mult(r);
    return m > 0 ? m * 2500 : -1;
}

SV_EXPORT enum ibv_rate mbps_to_ibv_rate(int mbps)
{
    return mbps % 2500 == 0 ? mult_to_ibv_rate(mbps / 2500) : IBV_RATE_MAX;
}

SV_EXPORT int ibv_fork_init(void)
{
    return 0;
}

SV_EXPORT enum ibv_fork_status ibv_is_fork_initialized(void)
{
    return IBV_FORK_DISABLED;
}

SV_EXPORT int ibv_dontfork_range(void *base, size_t size)
{
    (void)base;
    (void)size;
    return 0;
}

SV_EXPORT int ibv_dofork_range(void *base, size_t size)
{
    (void)base;
    (void)size;
    return 0;
}

SV_EXPORT const char *ibv_get_sysfs_path(void)
{
    return "/nonexistent/softverbs/sys";
}

SV_EXPORT int ibv_read_sysfs_file(const char *dir, const char *file, char *buf, size_t size)
{
    (void)dir;
    (void)file;
    (void)buf;
    (void)size;
    errno = ENOENT;
    return -1;
}

SV_EXPORT struct ibv_qp_ex *ibv_qp_to_qp_ex(struct ibv_qp *qp)
{
    (void)qp;
    errno = EOPNOTSUPP;
    return NULL;
}

SV_EXPORT int ibv_query_qp_data_in_order(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags)
{
    (void)qp;
    (void)op;
    (void)flags;
    return 0; /* data is not guaranteed to be written in order */
}
