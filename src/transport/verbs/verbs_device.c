/* verbs_device.c — which RDMA device, port and GID the verbs transport
 * uses (--rdma-dev, --gid-index, RoCE or InfiniBand), and whether any is
 * usable at all (pb_verbs_available, for --transport auto and --check). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

static void nodev_reason(struct ibv_device **list, int e, char *why, size_t wl)
{
    snprintf(why, wl, "no RDMA device found (ibv_get_device_list returned none%s%s%s)",
             !list && e ? ": " : "", !list && e ? strerror(e) : "",
             !list && e == ENOSYS ? ", the kernel offers no RDMA" : "");
}

/* Append to a fixed buffer, stopping quietly when it is full. */
static void appendf(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    if (*used >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (w > 0)
        *used = *used + (size_t)w >= size ? size : *used + (size_t)w;
}

static int port_ok(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *pa)
{
    memset(pa, 0, sizeof *pa); /* state reads as NOP when the query fails */
    return ibv_query_port(ctx, port, pa) == 0 && pa->state == IBV_PORT_ACTIVE;
}

/* What open_device looks for and what it saw, for the messages. */
struct dev_scan {
    struct pb_verbs_rail_spec want[PB_VERBS_MAX_RAILS]; /* --rdma-dev, nwant 0: any */
    int nwant;
    int found[PB_VERBS_MAX_RAILS]; /* per element: its device is on this host */
    int pool_numa;
    uint32_t best_mbit; /* the kept port's rate */
    int best_near;      /* -1: nothing usable yet; 1: the kept port is on the pool's NUMA node */
    char seen[192];     /* ports seen and why they were not taken */
    size_t seenlen;
    char names[128];    /* every device on this host */
    size_t nameslen;
};

/* The port rate for messages: "100 Gbit/s", or "rate unknown". */
static const char *rate_str(uint32_t mbit, char *buf, size_t n)
{
    if (mbit)
        snprintf(buf, n, "%g Gbit/s", mbit / 1000.0);
    else
        snprintf(buf, n, "rate unknown");
    return buf;
}

/* Does --rdma-dev name device name (every device when it is not given)?
 * Marks the elements that name it as found. */
static int named(struct dev_scan *s, const char *name)
{
    int take = s->nwant == 0;
    for (int i = 0; i < s->nwant; i++)
        if (!strcmp(s->want[i].dev, name))
            take = s->found[i] = 1;
    return take;
}

/* Does --rdma-dev take port p of device name (any port when none is named)? */
static int wanted(const struct dev_scan *s, const char *name, unsigned p)
{
    int take = s->nwant == 0;
    for (int i = 0; i < s->nwant; i++)
        take |= !strcmp(s->want[i].dev, name) && (s->want[i].port == 0 || s->want[i].port == p);
    return take;
}

/* A named port beyond the device's: a usage error of this node. */
static int check_named_ports(const struct dev_scan *s, const char *name, unsigned nports, char *why, size_t wl)
{
    for (int i = 0; i < s->nwant; i++)
        if (!strcmp(s->want[i].dev, name) && s->want[i].port > nports) {
            snprintf(why, wl, "RDMA device %s has no port %u (it has %u)", name, s->want[i].port, nports);
            return -1;
        }
    return 0;
}

/* Look at the active ports of an open device; keep it in t when one of them
 * beats what we have: a faster port (active_speed x active_width), then one
 * on the pool's NUMA node. Returns 1 when kept, 0 when not, -1 on a hard
 * error. Every active port taken is listed in t->rails_seen for -v. */
static int scan_ports(struct vt *t, struct ibv_context *ctx, const char *name, struct dev_scan *s, char *why,
                      size_t wl)
{
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0)
        return 0;
    if (check_named_ports(s, name, da.phys_port_cnt, why, wl) != 0)
        return -1;
    int keep = 0;
    for (unsigned p = 1; p <= da.phys_port_cnt; p++) {
        struct ibv_port_attr pa;
        if (!wanted(s, name, p))
            continue;
        if (!port_ok(ctx, (uint8_t)p, &pa)) {
            appendf(s->seen, sizeof s->seen, &s->seenlen, "%s%s:%u %s", s->seenlen ? ", " : "", name, p,
                    ibv_port_state_str(pa.state));
            continue;
        }
        uint32_t mbit = pb_verbs_port_mbit(pa.active_speed, pa.active_width);
        int near = s->pool_numa >= 0 && pb_topo_dev_numa(name) == s->pool_numa;
        char rate[32];
        size_t used = strlen(t->rails_seen);
        appendf(t->rails_seen, sizeof t->rails_seen, &used, "%s%s:%u %s", used ? ", " : "", name, p,
                rate_str(mbit, rate, sizeof rate));
        if (s->best_near >= 0 && (mbit < s->best_mbit || (mbit == s->best_mbit && near <= s->best_near)))
            continue;
        if (t->ctx && t->ctx != ctx)
            ibv_close_device(t->ctx);
        t->ctx = ctx;
        keep = 1;
        s->best_mbit = mbit;
        s->best_near = near;
        t->port = (uint8_t)p;
        t->pattr = pa;
        t->mbit = mbit;
        snprintf(t->devname, sizeof t->devname, "%s", name);
    }
    return keep;
}

/* One device of the list: skip, or open and scan its ports. */
static int try_device(struct vt *t, struct ibv_device *dev, struct dev_scan *s, char *why, size_t wl)
{
    const char *name = ibv_get_device_name(dev);
    appendf(s->names, sizeof s->names, &s->nameslen, "%s%s", s->nameslen ? ", " : "", name);
    if (!named(s, name))
        return 0;
    if (!s->nwant && strncmp(name, "softverbs", 9) == 0 && !getenv("SOFTVERBS"))
        return 0; /* the test double of tests/softverbs: only under its wrapper */
    struct ibv_context *ctx = ibv_open_device(dev);
    if (!ctx) {
        appendf(s->seen, sizeof s->seen, &s->seenlen, "%s%s (cannot open: %s)", s->seenlen ? ", " : "", name,
                strerror(errno));
        return 0;
    }
    int kept = scan_ports(t, ctx, name, s, why, wl);
    if (kept <= 0 && t->ctx != ctx)
        ibv_close_device(ctx);
    return kept < 0 ? -1 : 0;
}

/* Nothing found: say what there was. A device named but absent, or a port
 * without a LID, is no use either. */
static int check_chosen(const struct vt *t, const struct dev_scan *s, char *why, size_t wl)
{
    for (int i = 0; i < s->nwant; i++)
        if (!s->found[i]) {
            snprintf(why, wl, "RDMA device %s not found (this host has: %s)", s->want[i].dev, s->names);
            return -1;
        }
    if (!t->ctx) {
        snprintf(why, wl, "no active RDMA port (%s): check cables, the subnet manager and `ibstat`", s->seen);
        return -1;
    }
    if (t->pattr.link_layer != IBV_LINK_LAYER_ETHERNET && t->pattr.lid == 0) {
        snprintf(why, wl, "RDMA device %s port %u has no LID: is a subnet manager running?", t->devname,
                 t->port);
        return -1;
    }
    return 0;
}

/* Open the device and port to use: among the active ports (of the devices
 * and ports named in want, "DEV[:PORT][,...]", or of every device) the
 * fastest, and among those one on the pool's NUMA node, else the first. */
int open_device(struct vt *t, const char *want, char *why, size_t wl)
{
    struct dev_scan s = {.pool_numa = pb_topo_mem_numa(t->pool, t->pool_len), .best_near = -1};
    if (want && *want && (s.nwant = pb_verbs_dev_parse(want, s.want, PB_VERBS_MAX_RAILS, why, wl)) < 0)
        return -1;
    int n = 0;
    errno = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) {
        nodev_reason(list, errno, why, wl);
        if (list)
            ibv_free_device_list(list);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = try_device(t, list[i], &s, why, wl);
    ibv_free_device_list(list);
    return rc != 0 ? -1 : check_chosen(t, &s, why, wl);
}

/* RoCE needs a GID (and a GRH on every packet); pick RoCE v2 with an IPv4
 * address first, as that is what routed Ethernet fabrics use. */
int choose_gid(struct vt *t, int want, char *why, size_t wl)
{
    int eth = t->pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
    t->use_grh = eth || want >= 0;
    if (want >= 0) {
        if (want >= t->pattr.gid_tbl_len || ibv_query_gid(t->ctx, t->port, want, &t->gid) != 0) {
            snprintf(why, wl, "GID index %d is not valid on %s port %u (table has %d entries; see `show_gids`)",
                     want, t->devname, t->port, t->pattr.gid_tbl_len);
            return -1;
        }
        t->gid_index = want;
        return 0;
    }
    if (!eth) {
        t->gid_index = 0;
        if (ibv_query_gid(t->ctx, t->port, 0, &t->gid) != 0)
            memset(&t->gid, 0, sizeof t->gid);
        return 0;
    }
    int best = -1, bestscore = 0;
    for (int i = 0; i < t->pattr.gid_tbl_len; i++) {
        struct ibv_gid_entry ge;
        if (ibv_query_gid_ex(t->ctx, t->port, (uint32_t)i, &ge, 0) != 0)
            continue;
        static const uint8_t zero[16];
        if (memcmp(ge.gid.raw, zero, 16) == 0)
            continue;
        int v4 = memcmp(ge.gid.raw, zero, 10) == 0 && ge.gid.raw[10] == 0xff && ge.gid.raw[11] == 0xff;
        int score = ge.gid_type == IBV_GID_TYPE_ROCE_V2 ? (v4 ? 3 : 2) : 1;
        if (score > bestscore) {
            bestscore = score;
            best = i;
            t->gid = ge.gid;
        }
    }
    if (best < 0) {
        snprintf(why, wl, "RoCE port %s:%u has no usable GID (no IP address on its netdev?); pass --gid-index",
                 t->devname, t->port);
        return -1;
    }
    t->gid_index = best;
    return 0;
}

int pb_verbs_available(char *why, size_t whylen)
{
    int n = 0;
    errno = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0) {
        int e = errno;
        nodev_reason(list, e, why, whylen);
        if (list)
            ibv_free_device_list(list);
        return 0;
    }
    int found = 0;
    size_t used = 0;
    why[0] = '\0';
    for (int i = 0; i < n && !found; i++) {
        if (strncmp(ibv_get_device_name(list[i]), "softverbs", 9) == 0 && !getenv("SOFTVERBS"))
            continue; /* never chosen automatically outside tests/softverbs/softverbs-run */
        struct ibv_context *ctx = ibv_open_device(list[i]);
        struct ibv_device_attr da;
        if (!ctx)
            continue;
        if (ibv_query_device(ctx, &da) == 0)
            for (uint8_t p = 1; p <= da.phys_port_cnt && !found; p++) {
                struct ibv_port_attr pa;
                if (port_ok(ctx, p, &pa)) {
                    snprintf(why, whylen, "%s:%u active (%s)", ibv_get_device_name(list[i]), p,
                             pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand");
                    found = 1;
                } else {
                    appendf(why, whylen, &used, "%s%s:%u %s", used ? ", " : "no active RDMA port: ",
                            ibv_get_device_name(list[i]), p, ibv_port_state_str(pa.state));
                }
            }
        ibv_close_device(ctx);
    }
    if (!found && !why[0])
        snprintf(why, whylen, "RDMA devices present but none could be opened");
    ibv_free_device_list(list);
    return found;
}

#endif /* HAVE_VERBS */
