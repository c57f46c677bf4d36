/* topo.c — hwloc placement of the slot pool and the progress thread near the
 * network device. See topo.h. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "topo.h"

#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One topology per process: I/O discovery reads sysfs and costs tens of ms. */
static pthread_mutex_t topo_lock = PTHREAD_MUTEX_INITIALIZER;
static hwloc_topology_t topo;
static int topo_failed;

/* Live allocations, so pb_topo_free knows which allocator to return to and
 * the topology outlives every hwloc allocation. A handful at most. */
struct alloc_rec {
    void *p;
    size_t len;
    int by_hwloc;
    struct alloc_rec *next;
};
static struct alloc_rec *allocs;
static int hwloc_allocs;   /* live allocations that need topo to be freed */
static int release_wanted; /* pb_topo_release called while some were live */

/* Callers hold topo_lock. */
static hwloc_topology_t get_topo(void)
{
    if (topo || topo_failed)
        return topo;
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0) {
        topo_failed = 1;
        return NULL;
    }
    /* PCI devices and OS devices (mlx5_0, eth0) are filtered out by default. */
    hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        topo_failed = 1;
        return NULL;
    }
    topo = t;
    return topo;
}

/* "mlx5_0:1" -> "mlx5_0"; port -> 1 (0 when absent). */
static void split_dev(const char *dev, char *name, size_t n, unsigned *port)
{
    *port = 0;
    snprintf(name, n, "%s", dev ? dev : "");
    char *c = strrchr(name, ':');
    if (c && c[1] && strspn(c + 1, "0123456789") == strlen(c + 1)) {
        *port = (unsigned)strtoul(c + 1, NULL, 10);
        *c = '\0';
    }
}

static int port_active(hwloc_obj_t os, unsigned port)
{
    char key[32];
    for (unsigned p = port ? port : 1; p <= (port ? port : 8u); p++) {
        snprintf(key, sizeof key, "Port%uState", p);
        const char *v = hwloc_obj_get_info_by_name(os, key);
        if (v && atoi(v) == 4) /* 4 = ACTIVE in sysfs */
            return 1;
    }
    return 0;
}

/* The OS device object for dev, or for NULL the first OpenFabrics device
 * with an active port. */
static hwloc_obj_t find_osdev(hwloc_topology_t t, const char *dev)
{
    char name[64];
    unsigned port;
    split_dev(dev, name, sizeof name, &port);
    for (hwloc_obj_t os = hwloc_get_next_osdev(t, NULL); os; os = hwloc_get_next_osdev(t, os)) {
        if (!os->name)
            continue;
        if (dev && *dev) {
            if (strcmp(os->name, name) == 0)
                return os;
        } else if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS && port_active(os, 0)) {
            return os;
        }
    }
    return NULL;
}

/* Locality of dev: the nearest non-I/O ancestor. Fills why when unknown.
 * Callers hold topo_lock. */
static hwloc_obj_t locate(hwloc_topology_t t, const char *dev, char *used, size_t usedlen,
                          char *why, size_t whylen)
{
    hwloc_obj_t os = find_osdev(t, dev);
    if (!os) {
        if (dev && *dev)
            snprintf(why, whylen, "%s not found in hwloc's I/O tree (virtual interface, or no PCI locality in this container)", dev);
        else
            snprintf(why, whylen, "no active RDMA device known to hwloc");
        return NULL;
    }
    snprintf(used, usedlen, "%s", os->name);
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, os);
    if (!anc || !anc->cpuset || hwloc_bitmap_iszero(anc->cpuset)) {
        snprintf(why, whylen, "hwloc knows no CPU locality for %s", os->name);
        return NULL;
    }
    /* The root object means "anywhere": only meaningful with one NUMA node. */
    if (anc == hwloc_get_root_obj(t) && hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) > 1) {
        snprintf(why, whylen, "%s is attached to the whole machine in hwloc's view", os->name);
        return NULL;
    }
    return anc;
}

static int record(void *p, size_t len, int by_hwloc)
{
    struct alloc_rec *r = malloc(sizeof *r);
    if (!r)
        return -1;
    r->p = p;
    r->len = len;
    r->by_hwloc = by_hwloc;
    r->next = allocs;
    allocs = r;
    if (by_hwloc)
        hwloc_allocs++;
    return 0;
}

static void *plain_alloc(size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    void *p = NULL;
    int rc = posix_memalign(&p, pg > 0 ? (size_t)pg : 4096, len ? len : 1);
    if (rc != 0) {
        errno = rc;
        return NULL;
    }
    memset(p, 0, len);
    return p;
}

void *pb_topo_alloc_near(const char *dev, size_t len, struct pb_topo_place *out)
{
    struct pb_topo_place tmp;
    struct pb_topo_place *pl = out ? out : &tmp;
    memset(pl, 0, sizeof *pl);
    pl->numa = -1;

    char why[192] = "";
    void *p = NULL;
    pthread_mutex_lock(&topo_lock);
    hwloc_topology_t t = get_topo();
    hwloc_obj_t anc = NULL;
    if (!t)
        snprintf(why, sizeof why, "hwloc could not load the topology");
    else
        anc = locate(t, dev, pl->dev, sizeof pl->dev, why, sizeof why);

    if (anc && anc->nodeset && !hwloc_bitmap_iszero(anc->nodeset)) {
        pl->numa = hwloc_bitmap_first(anc->nodeset);
        /* STRICT: we want to know whether the binding happened, not a
         * silent best effort. */
        p = hwloc_alloc_membind(t, len ? len : 1, anc->nodeset, HWLOC_MEMBIND_BIND,
                                HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT);
        if (p && record(p, len ? len : 1, 1) != 0) {
            hwloc_free(t, p, len ? len : 1); /* untracked hwloc memory could not be freed right */
            p = NULL;
            errno = ENOMEM;
        }
        if (p) {
            memset(p, 0, len); /* first touch: pages land on the bound node now, not mid-transfer */
            pl->membound = 1;
            char nodes[64];
            hwloc_bitmap_list_snprintf(nodes, sizeof nodes, anc->nodeset);
            snprintf(pl->desc, sizeof pl->desc, "pool on NUMA node %s near %s", nodes, pl->dev);
        } else {
            snprintf(why, sizeof why, "binding memory to NUMA node %d failed: %s", pl->numa,
                     strerror(errno));
        }
    }
    if (!p) {
        p = plain_alloc(len);
        if (!p) {
            pthread_mutex_unlock(&topo_lock);
            snprintf(pl->desc, sizeof pl->desc, "cannot allocate %zu bytes for the pool", len);
            errno = ENOMEM;
            return NULL;
        }
        (void)record(p, len ? len : 1, 0); /* untracked plain memory is still freed with free() */
        if (t && hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) == 1)
            snprintf(pl->desc, sizeof pl->desc, "pool in ordinary memory (single NUMA node, nothing to place; %s)", why);
        else
            snprintf(pl->desc, sizeof pl->desc, "pool not placed (%s)", why);
    }
    pthread_mutex_unlock(&topo_lock);
    return p;
}

void pb_topo_free(void *p, size_t len)
{
    if (!p)
        return;
    pthread_mutex_lock(&topo_lock);
    struct alloc_rec **pp = &allocs, *r = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->p == p) {
            r = *pp;
            *pp = r->next;
            break;
        }
    if (r && r->by_hwloc) {
        hwloc_free(topo, p, r->len);
        if (--hwloc_allocs == 0 && release_wanted) {
            hwloc_topology_destroy(topo);
            topo = NULL;
            release_wanted = 0;
        }
    } else {
        (void)len;
        free(p);
    }
    free(r);
    pthread_mutex_unlock(&topo_lock);
}

int pb_topo_bind_thread_near(const char *dev, char *desc, size_t n)
{
    char why[192] = "", used[64] = "";
    int ok = 0;
    pthread_mutex_lock(&topo_lock);
    hwloc_topology_t t = get_topo();
    hwloc_obj_t anc = t ? locate(t, dev, used, sizeof used, why, sizeof why) : NULL;
    if (!t)
        snprintf(why, sizeof why, "hwloc could not load the topology");
    if (anc) {
        char cpus[96];
        hwloc_bitmap_list_snprintf(cpus, sizeof cpus, anc->cpuset);
        if (hwloc_set_cpubind(t, anc->cpuset, HWLOC_CPUBIND_THREAD) == 0) {
            snprintf(desc, n, "thread bound to CPUs %s", cpus);
            ok = 1;
        } else {
            snprintf(desc, n, "thread not bound (binding to CPUs %s near %s failed: %s)", cpus, used,
                     strerror(errno));
        }
    } else {
        snprintf(desc, n, "thread not bound (%s)", why);
    }
    pthread_mutex_unlock(&topo_lock);
    return ok;
}

int pb_topo_place_thread(const char *dev, struct pb_topo_place *place)
{
    char d[256];
    int ok = pb_topo_bind_thread_near(dev, d, sizeof d);
    if (place) {
        size_t used = strlen(place->desc);
        snprintf(place->desc + used, sizeof place->desc - used, "%s%s", used ? ", " : "", d);
        place->thread_bound = ok;
    }
    return ok;
}

int pb_topo_dev_numa(const char *dev)
{
    char why[192], used[64];
    int numa = -1;
    pthread_mutex_lock(&topo_lock);
    hwloc_topology_t t = get_topo();
    hwloc_obj_t anc = t ? locate(t, dev, used, sizeof used, why, sizeof why) : NULL;
    if (anc && anc->nodeset && !hwloc_bitmap_iszero(anc->nodeset))
        numa = hwloc_bitmap_first(anc->nodeset);
    pthread_mutex_unlock(&topo_lock);
    return numa;
}

int pb_topo_bind_area(void *p, size_t len, int numa, char *why, size_t n)
{
    int rc = -1;
    pthread_mutex_lock(&topo_lock);
    hwloc_topology_t t = get_topo();
    hwloc_bitmap_t set = t ? hwloc_bitmap_alloc() : NULL;
    if (!t)
        snprintf(why, n, "hwloc could not load the topology");
    else if (!set)
        snprintf(why, n, "out of memory");
    else if (numa < 0 || !hwloc_get_numanode_obj_by_os_index(t, (unsigned)numa))
        snprintf(why, n, "hwloc knows no NUMA node %d", numa);
    else {
        hwloc_bitmap_only(set, (unsigned)numa);
        /* STRICT with MIGRATE: fail when a page could not be moved, rather
         * than leave it behind without a word. */
        rc = hwloc_set_area_membind(t, p, len, set, HWLOC_MEMBIND_BIND,
                                    HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE | HWLOC_MEMBIND_STRICT);
        if (rc != 0)
            snprintf(why, n, "binding to NUMA node %d failed: %s", numa,
                     errno == ENOSYS ? "not supported here (hwloc's topology is not this system's?)" : strerror(errno));
    }
    hwloc_bitmap_free(set);
    pthread_mutex_unlock(&topo_lock);
    return rc == 0 ? 0 : -1;
}

int pb_topo_mem_numa(const void *p, size_t len)
{
    int numa = -1;
    long pg = sysconf(_SC_PAGESIZE);
    if (!p)
        return -1;
    pthread_mutex_lock(&topo_lock);
    hwloc_topology_t t = get_topo();
    hwloc_bitmap_t set = t ? hwloc_bitmap_alloc() : NULL;
    if (set) {
        size_t l = len < (size_t)(pg > 0 ? pg : 4096) ? len : (size_t)(pg > 0 ? pg : 4096);
        if (hwloc_get_area_memlocation(t, p, l ? l : 1, set, HWLOC_MEMBIND_BYNODESET) == 0 &&
            !hwloc_bitmap_iszero(set))
            numa = hwloc_bitmap_first(set);
        hwloc_bitmap_free(set);
    }
    pthread_mutex_unlock(&topo_lock);
    return numa;
}

void pb_topo_release(void)
{
    pthread_mutex_lock(&topo_lock);
    if (topo && hwloc_allocs > 0) {
        release_wanted = 1;
    } else if (topo) {
        hwloc_topology_destroy(topo);
        topo = NULL;
    }
    topo_failed = 0;
    pthread_mutex_unlock(&topo_lock);
}
