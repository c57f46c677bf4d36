/* tcp_rails.c — the networks the tcp transport may use: --tcp-if lists, the
 * interfaces of this node, their speeds, the root's choice of rails, and the
 * split of a link's data between them (see tcp_rails.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tcp_rails.h"
#include "optlist.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_cidr(const char *s, size_t len, uint32_t *net, uint32_t *mask)
{
    char buf[64];
    const char *slash = memchr(s, '/', len);
    if (!slash || (size_t)(slash - s) >= sizeof buf || len - (size_t)(slash - s) > 3)
        return -1;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = 0;
    char bits_s[4] = { 0 };
    memcpy(bits_s, slash + 1, len - (size_t)(slash - s) - 1);
    struct in_addr a;
    char *end;
    long bits = strtol(bits_s, &end, 10);
    if (inet_pton(AF_INET, buf, &a) != 1 || *end || end == bits_s || bits < 0 || bits > 32)
        return -1;
    *mask = bits ? htonl(~0u << (32 - bits)) : 0;
    *net = a.s_addr & *mask;
    return 0;
}

static int same_spec(const struct pb_tcp_if_spec *a, const struct pb_tcp_if_spec *b)
{
    return a->cidr == b->cidr && (a->cidr ? a->net == b->net && a->mask == b->mask : !strcmp(a->name, b->name));
}

/* What pb_tcp_if_parse's elements go into. */
struct if_list {
    const char *list;
    struct pb_tcp_if_spec *out;
};

/* One element of --tcp-if: an interface name or an IPv4 CIDR. */
static int parse_if(void *ctx, const char *p, size_t len, int n, char *err, size_t errlen)
{
    struct if_list *l = ctx;
    struct pb_tcp_if_spec *s = &l->out[n];
    memset(s, 0, sizeof *s);
    if (memchr(p, '/', len)) {
        s->cidr = 1;
        if (parse_cidr(p, len, &s->net, &s->mask) < 0) {
            snprintf(err, errlen, "--tcp-if '%.*s' is not a valid IPv4 CIDR (like 10.0.0.0/8)", (int)len, p);
            return -1;
        }
    } else if (len >= sizeof s->name) {
        snprintf(err, errlen, "--tcp-if '%.*s': an interface name has at most %d characters", (int)len, p,
                 (int)sizeof s->name - 1);
        return -1;
    } else {
        memcpy(s->name, p, len);
    }
    for (int i = 0; i < n; i++)
        if (same_spec(&l->out[i], s)) {
            snprintf(err, errlen, "--tcp-if '%s': '%.*s' is named twice", l->list, (int)len, p);
            return -1;
        }
    return 0;
}

int pb_tcp_if_parse(const char *list, struct pb_tcp_if_spec *out, int max, char *err, size_t errlen)
{
    struct if_list l = {list, out};
    return pb_optlist_split(list, "--tcp-if", "NAME or CIDR", "interfaces", max, parse_if, &l, err, errlen);
}

/* The interface of the default route, from /proc/net/route; "" if none. */
static void default_route_if(char *name, size_t n)
{
    name[0] = 0;
    FILE *f = fopen("/proc/net/route", "r");
    char line[256], ifn[64];
    unsigned long dest, mask;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %lx %*x %*x %*d %*d %*d %lx", ifn, &dest, &mask) == 3 && dest == 0 && mask == 0) {
            snprintf(name, n, "%s", ifn);
            break;
        }
    if (f)
        fclose(f);
}

/* Bridges of local containers and VMs: up, addressed, and reaching no
 * other machine. */
static int virtual_bridge(const char *name)
{
    static const char *const pfx[] = { "docker", "virbr", "veth", "br-", "cni", "flannel", "lxcbr", "podman", "vnet" };
    for (size_t i = 0; i < sizeof pfx / sizeof *pfx; i++)
        if (!strncmp(name, pfx[i], strlen(pfx[i])))
            return 1;
    return 0;
}

/* How good an interface is for reaching other machines when none was
 * named: the default route's first, then any real one; 0 = not usable. */
static int rank_if(const struct ifaddrs *i, const char *def)
{
    if (i->ifa_flags & IFF_LOOPBACK)
        return 0;
    if (def[0] && !strcmp(i->ifa_name, def))
        return 3;
    return virtual_bridge(i->ifa_name) ? 1 : 2;
}

static int usable_ipv4(const struct ifaddrs *i)
{
    return i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP);
}

static uint32_t in4(const struct sockaddr *sa)
{
    return sa ? ((const struct sockaddr_in *)sa)->sin_addr.s_addr : 0;
}

/* The first interface that is up with an IPv4 address and matches spec. */
static const struct ifaddrs *find_spec(const struct ifaddrs *ifs, const struct pb_tcp_if_spec *s)
{
    for (const struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (usable_ipv4(i) && (s->cidr ? (in4(i->ifa_addr) & s->mask) == s->net : !strcmp(i->ifa_name, s->name)))
            return i;
    return NULL;
}

int pb_tcp_pick_if(const char *want, uint32_t *addr, char *ifname, size_t ifnlen, char *err, size_t errlen)
{
    struct pb_tcp_if_spec spec;
    if (want && pb_tcp_if_parse(want, &spec, 1, err, errlen) < 0)
        return -1;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0) {
        snprintf(err, errlen, "cannot list network interfaces: %s", strerror(errno));
        return -1;
    }
    const struct ifaddrs *got = NULL;
    if (want) {
        got = find_spec(ifs, &spec);
    } else {
        char def[64];
        default_route_if(def, sizeof def);
        int best = 0;
        for (const struct ifaddrs *i = ifs; i; i = i->ifa_next)
            if (usable_ipv4(i) && rank_if(i, def) > best)
                best = rank_if(i, def), got = i;
    }
    if (got) {
        *addr = in4(got->ifa_addr);
        if (ifname)
            snprintf(ifname, ifnlen, "%s", got->ifa_name);
    } else if (want) {
        snprintf(err, errlen, "--tcp-if '%s' matches no interface that is up with an IPv4 address", want);
    } else {
        snprintf(err, errlen, "no network interface is up with an IPv4 address (use --tcp-if)");
    }
    freeifaddrs(ifs);
    return got ? 0 : -1;
}

uint32_t pb_tcp_if_mbit(const char *ifname)
{
    char path[96];
    /* Only a device's speed means something: veth, bridges, tun, VLANs and
     * bonds have no device and report a made-up speed or none. */
    snprintf(path, sizeof path, "/sys/class/net/%s/device", ifname);
    if (access(path, F_OK) != 0)
        return 0;
    snprintf(path, sizeof path, "/sys/class/net/%s/speed", ifname);
    FILE *f = fopen(path, "r");
    long mbit = -1;
    if (f) {
        if (fscanf(f, "%ld", &mbit) != 1)
            mbit = -1;
        fclose(f);
    }
    return mbit > 0 && mbit < UINT32_MAX ? (uint32_t)mbit : 0;
}

/* The rails choose the fastest network every node shares (tcp_probe.c):
 * the chunk rule and the probes' decisions must not take the default
 * route's speed (often a slow management network) for the link's. So:
 * the fastest speed sysfs reports among this node's rails (the --tcp-if
 * list's, or every real interface's); the first rail's (the default
 * route's) name when none reports one. */
uint64_t pb_tcp_link_mbit(const char *tcp_if, char *ifname, size_t ifnlen)
{
    struct pb_tcp_if_spec specs[PB_TCP_MAX_RAILS];
    struct pb_tcp_rail rails[PB_TCP_MAX_RAILS];
    char err[200];
    int nspecs = 0;
    if (ifnlen)
        ifname[0] = 0;
    if (tcp_if && (nspecs = pb_tcp_if_parse(tcp_if, specs, PB_TCP_MAX_RAILS, err, sizeof err)) < 0)
        return 0;
    int n = pb_tcp_rails_local(specs, nspecs, rails, PB_TCP_MAX_RAILS, err, sizeof err);
    if (n <= 0)
        return 0;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (rails[i].mbit > rails[best].mbit)
            best = i;
    if (ifnlen)
        snprintf(ifname, ifnlen, "%s", rails[best].ifname);
    return rails[best].mbit;
}

static void add_rail(struct pb_tcp_rail *r, uint64_t key, const struct ifaddrs *i)
{
    r->key = key;
    r->addr = in4(i->ifa_addr);
    snprintf(r->ifname, sizeof r->ifname, "%s", i->ifa_name);
    r->mbit = pb_tcp_if_mbit(r->ifname);
}

/* Every subnet of a real interface that is up, the default route's first. */
static int auto_rails(const struct ifaddrs *ifs, struct pb_tcp_rail *out, int max)
{
    char def[64];
    default_route_if(def, sizeof def);
    int n = 0;
    for (int want = 3; want >= 2; want--)
        for (const struct ifaddrs *i = ifs; i && n < max; i = i->ifa_next) {
            if (!usable_ipv4(i) || rank_if(i, def) != want)
                continue;
            uint32_t mask = in4(i->ifa_netmask);
            uint64_t key = (uint64_t)mask << 32 | (in4(i->ifa_addr) & mask);
            int seen = 0;
            for (int k = 0; k < n; k++)
                seen |= out[k].key == key;
            if (!seen)
                add_rail(&out[n++], key, i);
        }
    return n;
}

int pb_tcp_rails_local(const struct pb_tcp_if_spec *specs, int n, struct pb_tcp_rail *out, int max, char *err,
                       size_t errlen)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0) {
        snprintf(err, errlen, "cannot list network interfaces: %s", strerror(errno));
        return -1;
    }
    int got = 0;
    if (n == 0)
        got = auto_rails(ifs, out, max);
    for (int k = 0; k < n && k < max; k++) {
        const struct ifaddrs *i = find_spec(ifs, &specs[k]);
        if (!i) {
            char a[INET_ADDRSTRLEN] = "", label[64];
            inet_ntop(AF_INET, &specs[k].net, a, sizeof a);
            if (specs[k].cidr)
                snprintf(label, sizeof label, "%s/%d", a, __builtin_popcount(specs[k].mask));
            else
                snprintf(label, sizeof label, "%s", specs[k].name);
            snprintf(err, errlen, "--tcp-if: '%s' matches no interface that is up with an IPv4 address", label);
            freeifaddrs(ifs);
            return -1;
        }
        add_rail(&out[got++], (uint64_t)k + 1, i);
    }
    freeifaddrs(ifs);
    if (got == 0)
        snprintf(err, errlen, "no network interface is up with an IPv4 address (use --tcp-if)");
    return got ? got : -1;
}

/* The rate one report gives for key, or -1 when it lacks the rail. */
static int64_t report_kbit(const struct pb_tcp_rail_report *r, uint64_t key)
{
    for (uint32_t i = 0; i < r->n && i < PB_TCP_MAX_RAILS; i++)
        if (r->key[i] == key)
            return r->kbit[i];
    return -1;
}

void pb_tcp_rails_decide(const struct pb_tcp_rail_report *all, int n, int keep_all, struct pb_tcp_rail_choice *c)
{
    memset(c, 0, sizeof *c);
    if (n <= 0)
        return;
    /* The rails of the first node that every other node has too, each at
     * the slowest node's rate. */
    uint32_t best = 0;
    struct pb_tcp_rail_choice common = { 0 };
    for (uint32_t i = 0; i < all[0].n && i < PB_TCP_MAX_RAILS; i++) {
        uint64_t key = all[0].key[i];
        int64_t rate = all[0].kbit[i];
        for (int k = 1; k < n && rate >= 0; k++) {
            int64_t r = report_kbit(&all[k], key);
            rate = r < rate ? r : rate;
        }
        if (rate < 0)
            continue;
        common.key[common.n] = key;
        common.kbit[common.n++] = (uint32_t)rate;
        best = (uint32_t)rate > best ? (uint32_t)rate : best;
    }
    /* Fastest first; a stable insertion sort keeps the reports' order
     * (the default route's first) among equals. */
    for (uint32_t i = 0; i < common.n; i++) {
        if (!keep_all && (best == 0 || (uint64_t)common.kbit[i] * RAIL_KEEP_FACTOR < best))
            continue;
        uint32_t j = c->n++;
        while (!keep_all && j > 0 && c->kbit[j - 1] < common.kbit[i]) {
            c->kbit[j] = c->kbit[j - 1];
            c->key[j] = c->key[j - 1];
            j--;
        }
        c->kbit[j] = common.kbit[i];
        c->key[j] = common.key[i];
    }
}

void pb_tcp_rails_send_rates(const struct pb_tcp_rail_report *all, int n, const struct pb_tcp_rail_choice *c,
                             uint32_t *send_kbit)
{
    for (int l = 0; l < n; l++) {
        const struct pb_tcp_rail_report *r = &all[(l + 1) % n];
        uint64_t sum = 0;
        for (uint32_t i = 0; i < r->n && i < PB_TCP_MAX_RAILS; i++) {
            int chosen = c->n == 0 && i == 0;
            for (uint32_t k = 0; k < c->n; k++)
                chosen |= c->key[k] == r->key[i];
            sum += chosen ? r->measured[i] : 0;
        }
        send_kbit[l] = sum < UINT32_MAX ? (uint32_t)sum : UINT32_MAX;
    }
}

int pb_tcp_rail_pick(const uint64_t *backlog, const uint32_t *rate, int n, uint64_t len)
{
    int best = 0;
    double best_done = 0;
    for (int i = 0; i < n; i++) {
        double done = (double)(backlog[i] + len) / (double)(rate[i] ? rate[i] : 1);
        if (i == 0 || done < best_done)
            best = i, best_done = done;
    }
    return best;
}
