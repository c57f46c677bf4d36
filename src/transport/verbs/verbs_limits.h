/* verbs_limits.h — what a node's verbs set-up asks of the system before it
 * moves a byte: the pinned memory its registrations add up to and the
 * limit on it, the largest message the port takes, the RoCE traffic
 * class. No libibverbs here: plain arithmetic, rlimits and sysfs. */
#ifndef P2PBCAST_VERBS_LIMITS_H
#define P2PBCAST_VERBS_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* The registrations of one leader, in bytes. Every registration counts
 * against RLIMIT_MEMLOCK, even of pages registered before, so each is made
 * once, in the one protection domain all queue pairs share: the slot pool,
 * the descriptor table and the control buffers of every link. What a peer
 * may write is opened by memory windows, which pin nothing more. */
struct pb_verbs_pin {
    uint64_t slots, descs, ctrl; /* descs: the descriptor table and a probe area per partner */
    uint64_t total;
};
void pb_verbs_pin_need(uint64_t slot_size, uint32_t nslots, int npeers, uint64_t ctrl_bytes,
                       struct pb_verbs_pin *out);

/* Whether this process has CAP_IPC_LOCK in its effective set: then
 * RLIMIT_MEMLOCK does not limit what it may pin. -1: unknown. */
int pb_verbs_has_cap_ipc_lock(void);

/* The limit that applies to what this process pins: UINT64_MAX when none
 * does (CAP_IPC_LOCK, or RLIMIT_MEMLOCK unlimited or unreadable). */
uint64_t pb_verbs_pin_limit(void);

/* 0 when need fits under the limit; else -1 and why says how much is
 * needed, of what, and which limit to raise (ulimit -l, limits.conf,
 * Slurm's PropagateResourceLimits). */
int pb_verbs_check_pin(const struct pb_verbs_pin *need, const char *dev, char *why, size_t wl);

/* The RoCE traffic class for dev's port: want when >= 0, else the
 * device's default where the kernel exposes it
 * (/sys/class/infiniband/DEV/tc/PORT/traffic_class), else 0. */
int pb_verbs_tclass(const char *dev, unsigned port, int want);

/* n bytes for a message: "512 B", "12.0 KiB", "4.00 MiB", "1.50 GiB". */
struct pb_vsz {
    char s[24];
};
struct pb_vsz pb_verbs_size_str(unsigned long long n);

#endif
