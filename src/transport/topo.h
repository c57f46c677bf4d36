/* topo.h — where the NIC/HCA sits, and placing the slot pool and the
 * progress thread next to it (hwloc).
 *
 * Placement is an optimisation, never a requirement: every function reports
 * what it could not do in its description and carries on with an ordinary
 * allocation or an unbound thread (containers often forbid mbind or hide the
 * PCI tree).
 */
#ifndef P2PBCAST_TOPO_H
#define P2PBCAST_TOPO_H

#include <stddef.h>

struct pb_topo_place {
    int numa;          /* NUMA node of the device (first one if several), -1 unknown */
    int membound;      /* 1 when the pool memory is bound to that node */
    int thread_bound;  /* 1 when the calling thread was bound near the device */
    char dev[64];      /* device the placement was made for ("" when none) */
    char desc[256];    /* one line for -v, e.g. "pool on NUMA node 0 near mlx5_0, thread bound to CPUs 0-1" */
};

/* Allocate len bytes (page aligned, zeroed) on the NUMA node of dev.
 * dev: an RDMA device "mlx5_0" or "mlx5_0:1", a netdev "eth0", or NULL to
 * use the first RDMA device whose port hwloc reports active (if any).
 * Falls back to an ordinary page-aligned allocation when the device or its
 * locality is unknown or binding fails; out (may be NULL) says which.
 * Returns NULL only when memory itself is exhausted (errno ENOMEM). */
void *pb_topo_alloc_near(const char *dev, size_t len, struct pb_topo_place *out);

/* Release memory from pb_topo_alloc_near, whichever way it was allocated. */
void pb_topo_free(void *p, size_t len);

/* Bind the calling thread to the CPUs nearest dev (same rules for dev as
 * above). Returns 1 when bound, 0 when not (desc says why). desc gets a
 * fragment like "thread bound to CPUs 0-1" or "thread not bound: ...".
 * When place is given, its thread_bound and desc are updated too. */
int pb_topo_bind_thread_near(const char *dev, char *desc, size_t n);
int pb_topo_place_thread(const char *dev, struct pb_topo_place *place);

/* NUMA node of a device (as above), -1 when unknown. */
int pb_topo_dev_numa(const char *dev);

/* Bind the pages of [p, p + len) (page aligned) to NUMA node numa (an OS
 * index, as pb_topo_dev_numa gives), moving those already touched. For
 * set-up, before the memory is registered: pinned pages cannot move.
 * 0 when bound, -1 with why ("binding to NUMA node 1 failed: ...") when
 * hwloc, the kernel or the container refuses: placement is never a
 * requirement, the memory stays usable where it is. */
int pb_topo_bind_area(void *p, size_t len, int numa, char *why, size_t n);

/* NUMA node holding the first page of p (touches nothing), -1 unknown. */
int pb_topo_mem_numa(const void *p, size_t len);

/* Drop the cached topology (tidy shutdown; later calls reload it).
 * Memory still allocated keeps what it needs to be freed. */
void pb_topo_release(void);

#endif
