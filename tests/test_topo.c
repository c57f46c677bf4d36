/* test_topo.c — hwloc placement on this machine's real topology: the pool
 * allocation near a device (membind when hwloc can place it, an ordinary
 * aligned allocation otherwise), freeing either kind, thread binding near a
 * device, and the -v description. What hwloc sees here is printed as TAP
 * diagnostics, so a log shows which paths were exercised. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <hwloc.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include <unistd.h>

#include "topo.h"


static int page_aligned(const void *p)
{
    return ((uintptr_t)p % (uintptr_t)sysconf(_SC_PAGESIZE)) == 0;
}

static int zeroed_and_writable(unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i += 4096)
        if (p[i] != 0)
            return 0;
    if (len && p[len - 1] != 0)
        return 0;
    memset(p, 0xa5, len);
    return len == 0 || p[len - 1] == 0xa5;
}

/* An OS device hwloc places under a NUMA-local ancestor (a disk, a NIC),
 * to drive the membind path on this machine if it has one. */
static int find_local_osdev(char *name, size_t n, char *net, size_t nn)
{
    hwloc_topology_t t;
    int found = 0;
    net[0] = '\0';
    if (hwloc_topology_init(&t) != 0)
        return 0;
    hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return 0;
    }
    tap_add("# hwloc: %d NUMA node(s), %d PU(s)\n", hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE),
            hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU));
    for (hwloc_obj_t os = hwloc_get_next_osdev(t, NULL); os; os = hwloc_get_next_osdev(t, os)) {
        hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, os);
        tap_add("# hwloc osdev %s (type %d)\n", os->name ? os->name : "?", (int)os->attr->osdev.type);
        if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && !net[0] && os->name)
            snprintf(net, nn, "%s", os->name);
        if (!found && os->name && anc && anc->nodeset && !hwloc_bitmap_iszero(anc->nodeset)) {
            snprintf(name, n, "%s", os->name);
            found = 1;
        }
    }
    hwloc_topology_destroy(t);
    return found;
}

/* An existing range moved to NUMA node 0 (every Linux machine has one),
 * read back; a node hwloc does not know refused with the reason. */
static void bind_area(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), len = 4 * pg;
    unsigned char *p = pb_topo_alloc_near("nosuchdev", len, NULL);
    char why[200] = "";
    memset(p, 0x5a, len); /* touched: binding must move, not merely set a policy */
    int rc = pb_topo_bind_area(p + pg, 2 * pg, 0, why, sizeof why);
    int m = pb_topo_mem_numa(p + pg, 2 * pg);
    tap_add("# bind 2 pages to node 0: %d (%s), found on node %d\n", rc, rc ? why : "bound", m);
    tap_ok(p && ((rc == 0 && (m == 0 || m == -1)) || (rc == -1 && strstr(why, "NUMA node 0"))) && p[pg] == 0x5a &&
               p[3 * pg - 1] == 0x5a,
           "a touched range bound to NUMA node 0: found there (or the refusal says why), contents kept");
    why[0] = '\0';
    rc = pb_topo_bind_area(p, pg, 4095, why, sizeof why);
    tap_ok(rc == -1 && strstr(why, "no NUMA node 4095"), "a NUMA node hwloc does not know: refused, and said");
    pb_topo_free(p, len);
}

/* tests/topo-2numa.xml: two packages, each with a NUMA node and an
 * OpenFabrics device (softverbs0 on node 0, softverbs1 on node 1), loaded
 * as this system's topology (HWLOC_XMLFILE, HWLOC_THISSYSTEM=1). Where the
 * kernel has no node 1, binding there fails and says so. */
static void two_nodes_from_xml(void)
{
    const char *dir = getenv("TESTS_SRCDIR");
    char xml[1024];
    snprintf(xml, sizeof xml, "%s/topo-2numa.xml", dir && *dir ? dir : "tests");
    if (access(xml, R_OK) != 0) {
        tap_add("ok %d - two-node XML topology # SKIP %s not found\n", ++tap_n, xml);
        return;
    }
    /* HWLOC_COMPONENTS (the sanitizer run's -pci) would make hwloc ignore
     * HWLOC_XMLFILE; an XML topology loads no PCI plugin anyway */
    const char *comp = getenv("HWLOC_COMPONENTS");
    char saved[256] = "";
    if (comp)
        snprintf(saved, sizeof saved, "%s", comp);
    unsetenv("HWLOC_COMPONENTS");
    setenv("HWLOC_XMLFILE", xml, 1);
    setenv("HWLOC_THISSYSTEM", "1", 1);
    pb_topo_release();
    int n0 = pb_topo_dev_numa("softverbs0:1"), n1 = pb_topo_dev_numa("softverbs1");
    tap_ok(n0 == 0 && n1 == 1, "XML topology: softverbs0 on NUMA node 0, softverbs1 on node 1");
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *p = pb_topo_alloc_near("nosuchdev", 2 * pg, NULL);
    char why[200] = "";
    int rc0 = pb_topo_bind_area(p, pg, n0, why, sizeof why);
    tap_add("# node 0: %s\n", rc0 ? why : "bound");
    why[0] = '\0';
    int rc1 = pb_topo_bind_area(p + pg, pg, n1, why, sizeof why);
    tap_add("# node 1: %s\n", rc1 ? why : "bound");
    tap_ok(rc0 == 0 && (rc1 == 0 || strstr(why, "binding to NUMA node 1 failed: ")),
           "XML topology: binding to node 0 works, to node 1 works or says why (the kernel's nodes)");
    pb_topo_free(p, 2 * pg);
    unsetenv("HWLOC_XMLFILE");
    unsetenv("HWLOC_THISSYSTEM");
    if (comp)
        setenv("HWLOC_COMPONENTS", saved, 1);
    pb_topo_release();
}

int main(void)
{
    struct pb_topo_place pl;
    char d[512];
    cpu_set_t orig;
    sched_getaffinity(0, sizeof orig, &orig);

    /* NULL: the first active RDMA device, none on this machine. */
    size_t len = 3u << 20;
    unsigned char *p = pb_topo_alloc_near(NULL, len, &pl);
    tap_add("# NULL device: %s\n", pl.desc);
    tap_ok(p && page_aligned(p) && zeroed_and_writable(p, len) && pl.desc[0],
           "automatic placement returns zeroed, page-aligned, writable memory and a description");
    tap_ok(pl.membound == (pl.numa >= 0 && strstr(pl.desc, "NUMA node") != NULL) || !pl.membound,
           "description agrees with the placement result");
    pb_topo_free(p, len);

    /* A device that does not exist: must fall back and say why. */
    p = pb_topo_alloc_near("nosuchdev0:1", 4096, &pl);
    tap_add("# nosuchdev0:1: %s\n", pl.desc);
    tap_ok(p && !pl.membound && pl.numa == -1 && strstr(pl.desc, "nosuchdev0") && zeroed_and_writable(p, 4096),
           "unknown device: ordinary allocation, reason names the device (port suffix stripped)");
    pb_topo_free(p, 4096);
    tap_ok(pb_topo_dev_numa("nosuchdev0") == -1, "NUMA node of an unknown device is -1");

    /* The machine's network interface (eth0 here), whatever hwloc makes of it. */
    char osdev[64] = "", net[64] = "";
    int have_local = find_local_osdev(osdev, sizeof osdev, net, sizeof net);
    const char *nic = net[0] ? net : "eth0";
    p = pb_topo_alloc_near(nic, 1u << 20, &pl);
    tap_add("# %s: %s\n", nic, pl.desc);
    int numa_ok = 1;
    if (pl.membound) {
        int m = pb_topo_mem_numa(p, 1u << 20);
        tap_add("# %s pool memory found on NUMA node %d\n", nic, m);
        numa_ok = m < 0 || m == pl.numa; /* -1: kernel does not say (get_mempolicy filtered) */
    }
    tap_ok(p && numa_ok && zeroed_and_writable(p, 1u << 20), "allocation near the NIC: placed where it says, or fell back");
    int bound = pb_topo_place_thread(nic, &pl);
    tap_add("# %s: %s\n", nic, pl.desc);
    cpu_set_t now;
    sched_getaffinity(0, sizeof now, &now);
    tap_ok(pl.thread_bound == bound && strstr(pl.desc, "thread ") && (!bound || CPU_COUNT(&now) >= 1),
           "thread placement near the NIC reported in the description");
    pb_topo_free(p, 1u << 20);
    sched_setaffinity(0, sizeof orig, &orig);

    /* The membind path itself, with any OS device that has NUMA locality. */
    if (have_local) {
        p = pb_topo_alloc_near(osdev, 2u << 20, &pl);
        tap_add("# %s: %s\n", osdev, pl.desc);
        int ok = p && zeroed_and_writable(p, 2u << 20) && pl.numa >= 0 && pb_topo_dev_numa(osdev) == pl.numa;
        if (pl.membound) {
            int m = pb_topo_mem_numa(p, 2u << 20);
            ok &= (m < 0 || m == pl.numa) && strstr(pl.desc, "pool on NUMA node") != NULL;
        } else {
            ok &= strstr(pl.desc, "failed") != NULL || strstr(pl.desc, "not placed") != NULL ||
                  strstr(pl.desc, "single NUMA") != NULL;
        }
        snprintf(d, sizeof d, "device %s with locality: %s", osdev,
                 pl.membound ? "pool bound with hwloc_alloc_membind" : "binding refused, reported, fell back");
        tap_ok(ok, d);
        /* release the topology while hwloc memory is live: free must still work */
        pb_topo_release();
        pb_topo_free(p, 2u << 20);
        tap_ok(1, "topology released with a live hwloc allocation, then freed");
        char desc[256];
        int b = pb_topo_bind_thread_near(osdev, desc, sizeof desc);
        tap_add("# bind near %s: %s\n", osdev, desc);
        sched_getaffinity(0, sizeof now, &now);
        tap_ok((b && strncmp(desc, "thread bound to CPUs ", 21) == 0) || (!b && strncmp(desc, "thread not bound", 16) == 0),
               "thread binding near a local device: bound to its CPUs, or says why not");
        sched_setaffinity(0, sizeof orig, &orig);
    } else {
        tap_add("# no OS device with NUMA locality visible to hwloc here\n");
        tap_add("ok %d - membind path # SKIP no device with locality on this machine\n", ++tap_n);
    }

    /* Zero-length and many allocations: all freed through the right path (ASan checks). */
    void *z = pb_topo_alloc_near(NULL, 0, NULL);
    void *many[8];
    int all = z != NULL;
    for (int i = 0; i < 8; i++)
        all &= (many[i] = pb_topo_alloc_near(i % 2 ? osdev : "nosuchdev", 8192 * (size_t)(i + 1), NULL)) != NULL;
    for (int i = 7; i >= 0; i--)
        pb_topo_free(many[i], 8192 * (size_t)(i + 1));
    pb_topo_free(z, 0);
    pb_topo_free(NULL, 0);
    tap_ok(all, "zero-length and mixed allocations freed by the right allocator");
    pb_topo_release();

    bind_area();
    two_nodes_from_xml();
    return tap_done();
}
