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

/* An active port open_rails could take. */
struct cand {
    struct ibv_device *dev;
    char name[64];
    unsigned port;
    uint32_t mbit;
    int near;  /* on the pool's NUMA node */
    int order; /* as found: the tie-break, the same on alike nodes */
    struct ibv_port_attr pa;
};

#define MAX_CANDS 16

/* What open_rails looks for and what it saw, for the messages. */
struct dev_scan {
    struct pb_verbs_rail_spec want[PB_VERBS_MAX_RAILS]; /* --rdma-dev, nwant 0: any */
    int nwant;
    int found[PB_VERBS_MAX_RAILS]; /* per element: its device is on this host */
    int pool_numa;
    struct cand c[MAX_CANDS];
    int nc;
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

/* The active ports of an open device that --rdma-dev takes, as candidates;
 * -1 on a hard error. Every one is listed in t->rails_seen for -v. */
static int scan_ports(struct vt *t, struct ibv_device *dev, struct ibv_context *ctx, struct dev_scan *s,
                      char *why, size_t wl)
{
    const char *name = ibv_get_device_name(dev);
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0)
        return 0;
    if (check_named_ports(s, name, da.phys_port_cnt, why, wl) != 0)
        return -1;
    for (unsigned p = 1; p <= da.phys_port_cnt && s->nc < MAX_CANDS; p++) {
        struct ibv_port_attr pa;
        if (!wanted(s, name, p))
            continue;
        if (!port_ok(ctx, (uint8_t)p, &pa)) {
            appendf(s->seen, sizeof s->seen, &s->seenlen, "%s%s:%u %s", s->seenlen ? ", " : "", name, p,
                    ibv_port_state_str(pa.state));
            continue;
        }
        struct cand *c = &s->c[s->nc];
        *c = (struct cand){.dev = dev, .port = p, .pa = pa, .order = s->nc,
                           .mbit = pb_verbs_port_mbit(pa.active_speed, pa.active_width),
                           .near = s->pool_numa >= 0 && pb_topo_dev_numa(name) == s->pool_numa};
        snprintf(c->name, sizeof c->name, "%s", name);
        s->nc++;
        char rate[32];
        size_t used = strlen(t->rails_seen);
        appendf(t->rails_seen, sizeof t->rails_seen, &used, "%s%s:%u %s", used ? ", " : "", name, p,
                rate_str(c->mbit, rate, sizeof rate));
    }
    return 0;
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
    int rc = scan_ports(t, dev, ctx, s, why, wl);
    ibv_close_device(ctx);
    return rc;
}

/* Faster first, then as found: the same order on alike nodes, as rail k
 * of one node talks to rail k of the others. */
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->mbit != y->mbit)
        return x->mbit > y->mbit ? -1 : 1;
    return x->order - y->order;
}

/* One rail only: of the fastest ports, the first on the pool's NUMA node. */
static void prefer_near(struct dev_scan *s)
{
    for (int i = 1; i < s->nc && s->c[i].mbit == s->c[0].mbit; i++)
        if (s->c[i].near && !s->c[0].near) {
            struct cand c = s->c[i];
            memmove(&s->c[1], &s->c[0], (size_t)i * sizeof c);
            s->c[0] = c;
            return;
        }
}

/* Nothing found: say what there was. A device named but absent is no use
 * either. */
static int check_found(const struct dev_scan *s, char *why, size_t wl)
{
    for (int i = 0; i < s->nwant; i++)
        if (!s->found[i]) {
            snprintf(why, wl, "RDMA device %s not found (this host has: %s)", s->want[i].dev, s->names);
            return -1;
        }
    if (s->nc == 0) {
        snprintf(why, wl, "no active RDMA port (%s): check cables, the subnet manager and `ibstat`", s->seen);
        return -1;
    }
    return 0;
}

/* Open candidate c as rail R; a port without a LID is no use. */
static int open_rail(struct vrail *R, const struct cand *c, char *why, size_t wl)
{
    snprintf(R->devname, sizeof R->devname, "%s", c->name);
    R->port = (uint8_t)c->port;
    R->pattr = c->pa;
    R->mbit = c->mbit;
    if (R->pattr.link_layer != IBV_LINK_LAYER_ETHERNET && R->pattr.lid == 0) {
        snprintf(why, wl, "RDMA device %s port %u has no LID: is a subnet manager running?", R->devname, R->port);
        return -1;
    }
    R->ctx = ibv_open_device(c->dev);
    if (!R->ctx) {
        snprintf(why, wl, "cannot open RDMA device %s: %s", R->devname, strerror(errno));
        return -1;
    }
    return 0;
}

/* The rails: with --rdma-dev every active port it names, else every active
 * port of the fastest rate; faster first, then as found (one rail alone:
 * one on the pool's NUMA node if any). want > 0: exactly that many (what
 * every node agreed on), the first ones. */
int open_rails(struct vt *t, const char *devs, int want, int *nfast, char *why, size_t wl)
{
    struct dev_scan s = {.pool_numa = pb_topo_mem_numa(t->pool, t->pool_len)};
    if (devs && *devs && (s.nwant = pb_verbs_dev_parse(devs, s.want, PB_VERBS_MAX_RAILS, why, wl)) < 0)
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
    if (rc == 0)
        rc = check_found(&s, why, wl);
    if (rc == 0) {
        qsort(s.c, (size_t)s.nc, sizeof s.c[0], cand_cmp);
        int nf = 0;
        while (nf < s.nc && nf < PB_VERBS_MAX_RAILS && (s.nwant || s.c[nf].mbit == s.c[0].mbit))
            nf++;
        *nfast = nf;
        t->nrails = want > 0 ? want : nf;
        if (t->nrails > nf) {
            snprintf(why, wl, "%d RDMA rails agreed, but only %d here (%s)", t->nrails, nf, t->rails_seen);
            t->nrails = 0;
            rc = -1;
        }
    }
    if (rc == 0 && t->nrails == 1)
        prefer_near(&s);
    for (int i = 0; rc == 0 && i < t->nrails; i++)
        rc = open_rail(&t->rails[i], &s.c[i], why, wl);
    ibv_free_device_list(list);
    return rc;
}

int query_device(const struct vrail *R, struct ibv_device_attr *da, char *why, size_t wl)
{
    if (ibv_query_device(R->ctx, da) == 0)
        return 0;
    snprintf(why, wl, "cannot query RDMA device %s: %s", R->devname, strerror(errno));
    return -1;
}

/* RoCE needs a GID (and a GRH on every packet); pick RoCE v2 with an IPv4
 * address first, as that is what routed Ethernet fabrics use. */
int choose_gid(struct vrail *R, int want, char *why, size_t wl)
{
    int eth = R->pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
    R->use_grh = eth || want >= 0;
    if (want >= 0) {
        if (want >= R->pattr.gid_tbl_len || ibv_query_gid(R->ctx, R->port, want, &R->gid) != 0) {
            snprintf(why, wl, "GID index %d is not valid on %s port %u (table has %d entries; see `show_gids`)",
                     want, R->devname, R->port, R->pattr.gid_tbl_len);
            return -1;
        }
        R->gid_index = want;
        return 0;
    }
    if (!eth) {
        R->gid_index = 0;
        if (ibv_query_gid(R->ctx, R->port, 0, &R->gid) != 0)
            memset(&R->gid, 0, sizeof R->gid);
        return 0;
    }
    int best = -1, bestscore = 0;
    for (int i = 0; i < R->pattr.gid_tbl_len; i++) {
        struct ibv_gid_entry ge;
        if (ibv_query_gid_ex(R->ctx, R->port, (uint32_t)i, &ge, 0) != 0)
            continue;
        static const uint8_t zero[16];
        if (memcmp(ge.gid.raw, zero, 16) == 0)
            continue;
        int v4 = memcmp(ge.gid.raw, zero, 10) == 0 && ge.gid.raw[10] == 0xff && ge.gid.raw[11] == 0xff;
        int score = ge.gid_type == IBV_GID_TYPE_ROCE_V2 ? (v4 ? 3 : 2) : 1;
        if (score > bestscore) {
            bestscore = score;
            best = i;
            R->gid = ge.gid;
        }
    }
    if (best < 0) {
        snprintf(why, wl, "RoCE port %s:%u has no usable GID (no IP address on its netdev?); pass --gid-index",
                 R->devname, R->port);
        return -1;
    }
    R->gid_index = best;
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
