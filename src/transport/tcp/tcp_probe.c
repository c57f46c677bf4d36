/* tcp_probe.c — choosing the rails at set-up, and each node's send rate
 * for placement, in one probe: every leader lists its rails, learns its ring
 * neighbours' (leader i-1 and i+1) through the bootstrap, and where a rail's
 * device speed is unknown at either end (on every rail when placement wants
 * the send rates: a device speed says nothing of a degraded link direction
 * or a busy NIC), sends its ring successor PROBE_MS of data on that rail
 * while timing what its predecessor sends it. All rails are probed at once
 * (one NIC each), and every node sends to one node and receives from one,
 * so no two probes share a link. The root gathers what every leader knows
 * and decides (tcp_rails.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tcp_probe.h"
#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_MS 60            /* data sent per rail and round */
#define PROBE_CONNECT_S 1.5    /* to connect, greet and finish, at most */
#define PROBE_SNDBUF (128 << 10) /* in flight at most ~this: what a slow rail
                                  * drains after the window (its queue delays
                                  * the next exchange), still 20 Gbit/s at 50 us */
#define PROBE_HDR 28           /* secret, key, sender's leader index */
#define BIN_MS 5               /* arrivals are counted in bins of this width */
#define PROBE_BINS 64          /* 320 ms of bins: longer than any window */
#define PEAK_MS 40             /* the rate is the best PEAK_MS the flow had */

/* What a leader tells its ring neighbours. */
struct probe_card {
    uint16_t port;             /* probe listener, network order */
    uint16_t n;
    uint32_t ok;
    struct {
        uint64_t key;
        uint32_t addr;
        uint32_t mbit;
    } r[PB_TCP_MAX_RAILS];
};

/* One probe connection, either way. */
struct flow {
    int fd;
    int out;                   /* 1: we send */
    int rail;                  /* index into our rails */
    uint32_t hgot;             /* in: header bytes read */
    unsigned char hdr[PROBE_HDR];
    uint64_t bytes;            /* in: data after the first read */
    uint32_t bin[PROBE_BINS];  /* in: bytes read per BIN_MS after the first read */
    double first, last, until; /* in: times of first/last data; out: end */
    uint32_t hsent;            /* out: header bytes written */
};

static int card_find(const struct probe_card *c, uint64_t key)
{
    for (int i = 0; i < c->n && i < PB_TCP_MAX_RAILS; i++)
        if (c->r[i].key == key)
            return i;
    return -1;
}

static int probe_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = sa.sin_port;
    return fd;
}

static int probe_connect(uint32_t from, uint32_t to, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int sb = PROBE_SNDBUF;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = from };
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = port, .sin_addr.s_addr = to };
    if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0 ||
        (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send: the header, then data until the window closes. 1 when done. */
static int flow_send(struct flow *f, const unsigned char *hdr, const unsigned char *junk, size_t jl, double now,
                     double secs)
{
    if (f->hsent < PROBE_HDR) {
        ssize_t w = send(f->fd, hdr + f->hsent, PROBE_HDR - f->hsent, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : 1;
        f->hsent += (uint32_t)w;
        f->until = now + secs;
        return 0;
    }
    if (now >= f->until)
        return 1;
    ssize_t w = send(f->fd, junk, jl, MSG_NOSIGNAL);
    return w < 0 && errno != EAGAIN && errno != EINTR;
}

/* Receive: a header with the job's secret from our predecessor on a rail we
 * expect, then data, timed for secs from the first read. 1 when the flow
 * ended (the window is over, EOF, error, stranger). The receiver closes at
 * the end of its window rather than at EOF: what the sender's socket buffer
 * still holds would otherwise drain at the rail's rate, a slow rail's
 * megabyte taking longer than the probe itself. */
static int flow_recv(struct flow *f, const struct pb_transport_cfg *cfg, int pred, const struct pb_tcp_rail *mine,
                     int nmine, unsigned char *buf, size_t bl, double now, double secs)
{
    if (f->hgot < PROBE_HDR) {
        ssize_t r = recv(f->fd, f->hdr + f->hgot, PROBE_HDR - f->hgot, 0);
        if (r <= 0)
            return r == 0 || (errno != EAGAIN && errno != EINTR);
        f->hgot += (uint32_t)r;
        if (f->hgot < PROBE_HDR)
            return 0;
        uint64_t key;
        uint32_t from;
        memcpy(&key, f->hdr + 16, 8);
        memcpy(&from, f->hdr + 24, 4);
        f->rail = -1;
        for (int i = 0; i < nmine; i++)
            if (mine[i].key == key)
                f->rail = i;
        return memcmp(f->hdr, cfg->secret, 16) || (int)from != pred || f->rail < 0;
    }
    ssize_t r = recv(f->fd, buf, bl, 0);
    if (r <= 0)
        return r == 0 || (errno != EAGAIN && errno != EINTR);
    if (f->first == 0) {
        f->first = now; /* the first read only starts the clock */
    } else {
        f->bytes += (uint64_t)r;
        size_t b = (size_t)((now - f->first) * 1000 / BIN_MS);
        if (b < PROBE_BINS)
            f->bin[b] += (uint32_t)r;
    }
    f->last = now;
    return now - f->first >= secs;
}

/* The flow's rate: the best PEAK_MS it had, or its average when shorter.
 * The best window rather than the average, because on a shaped or
 * virtual link a first burst overfills a queue and the loss that follows
 * stalls the flow for a retransmission timeout: the average then says a
 * fifth of the link at random (seen on the bed), the best window says what
 * the link carries. */
static uint32_t flow_kbit(const struct flow *f)
{
    double dt = f->last - f->first;
    if (f->bytes == 0 || dt <= 0)
        return 0;
    double k = (double)f->bytes * 8 / 1000 / (dt < 1e-4 ? 1e-4 : dt);
    const int w = PEAK_MS / BIN_MS;
    int nbins = (int)(dt * 1000 / BIN_MS); /* whole bins only */
    if (nbins > PROBE_BINS)
        nbins = PROBE_BINS;
    uint64_t sum = 0, best = 0;
    for (int b = 0; b < nbins; b++) {
        sum += f->bin[b];
        if (b >= w)
            sum -= f->bin[b - w];
        if (b >= w - 1 && sum > best)
            best = sum;
    }
    if (nbins >= w)
        k = (double)best * 8 / PEAK_MS;
    return k >= 1 ? (k < 4e9 ? (uint32_t)k : 4000000000u) : 1;
}

/* Whether a rail is probed between us and a neighbour: where either end's
 * device speed is unknown, or every rail (all). */
static int probed(uint32_t ours, uint32_t theirs, int all)
{
    return all || !ours || !theirs;
}

/* Run the probes: out to succ on each rail both have (its address in succ's
 * card) that is probed, in from pred on nin rails, secs of data each. kbit[]
 * gets what arrived per rail of ours. Bounded by PROBE_CONNECT_S + secs. */
static void run_probes(const struct pb_transport_cfg *cfg, int lfd, const struct pb_tcp_rail *mine, int nmine,
                       const struct probe_card *succ, int succ_leader, int pred, int nin, uint32_t *kbit,
                       double secs, int all)
{
    struct flow fl[2 * PB_TCP_MAX_RAILS + 4];
    int nf = 0, nin_left = nin;
    static unsigned char junk[64 << 10];
    unsigned char hdr[PB_TCP_MAX_RAILS][PROBE_HDR];
    uint32_t self = (uint32_t)cfg->self;
    for (int i = 0; succ && i < nmine; i++) {
        int j = card_find(succ, mine[i].key);
        if (j < 0 || !probed(mine[i].mbit, succ->r[j].mbit, all) || succ_leader < 0)
            continue;
        memcpy(hdr[i], cfg->secret, 16);
        memcpy(hdr[i] + 16, &mine[i].key, 8);
        memcpy(hdr[i] + 24, &self, 4);
        int fd = probe_connect(mine[i].addr, succ->r[j].addr, succ->port);
        if (fd >= 0)
            fl[nf++] = (struct flow){ .fd = fd, .out = 1, .rail = i, .until = 1e300 };
    }
    double deadline = pb_now() + PROBE_CONNECT_S + secs;
    unsigned char buf[64 << 10];
    for (;;) {
        int live = 0;
        for (int i = 0; i < nf; i++)
            live += fl[i].fd >= 0;
        double now = pb_now();
        if ((live == 0 && nin_left == 0) || now >= deadline)
            break;
        struct pollfd pfd[2 * PB_TCP_MAX_RAILS + 5];
        for (int i = 0; i < nf; i++)
            pfd[i] = (struct pollfd){ fl[i].fd, (short)(fl[i].out ? POLLOUT : POLLIN), 0 };
        int can_accept = nin_left > 0 && nf < (int)(sizeof fl / sizeof *fl);
        pfd[nf] = (struct pollfd){ can_accept ? lfd : -1, POLLIN, 0 };
        if (poll(pfd, (nfds_t)nf + 1, (int)((deadline - now) * 1000) + 1) < 0 && errno != EINTR)
            break;
        now = pb_now();
        for (int i = 0; i < nf; i++) {
            if (fl[i].fd < 0 || !pfd[i].revents)
                continue;
            int end = fl[i].out ? flow_send(&fl[i], hdr[fl[i].rail], junk, sizeof junk, now, secs)
                                : flow_recv(&fl[i], cfg, pred, mine, nmine, buf, sizeof buf, now, secs);
            if (end) {
                if (!fl[i].out && fl[i].hgot == PROBE_HDR && fl[i].rail >= 0 && fl[i].bytes) {
                    kbit[fl[i].rail] = flow_kbit(&fl[i]);
                    nin_left--;
                }
                close(fl[i].fd);
                fl[i].fd = -1;
            }
        }
        if (can_accept && (pfd[nf].revents & POLLIN)) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0)
                fl[nf++] = (struct flow){ .fd = fd, .out = 0, .rail = -1 };
        }
    }
    for (int i = 0; i < nf; i++) {
        /* the deadline cut an incoming flow short: what it had still counts */
        if (fl[i].fd >= 0 && !fl[i].out && fl[i].hgot == PROBE_HDR && fl[i].rail >= 0 && fl[i].bytes)
            kbit[fl[i].rail] = flow_kbit(&fl[i]);
        if (fl[i].fd >= 0)
            close(fl[i].fd);
    }
}

/* Probes run in rounds, so that no node sends and receives at once: a
 * node's acknowledgements of what it receives would otherwise queue behind
 * its own data in its uplink's queue, and its predecessor, clocked by those
 * acknowledgements, would look slow (on the bed: half the nodes measured a
 * fifth of the link, and a slow uplink made its predecessor look slow too).
 * Round c: the leaders of colour c send (l mod 2; with N odd the last
 * leader has a colour of its own, since its successor 0 is even). */
static int colour(int l, int n)
{
    return n % 2 && l == n - 1 ? 2 : l % 2;
}

/* All rounds: we send to succ (card succ_card) in our colour's round and
 * time what pred sends in its round (nin flows, into kbit[]). The exchange's
 * vote between rounds is a barrier, so every round starts together. 0, or
 * the failed exchange's code. */
static int probe_rounds(const struct pb_transport_cfg *cfg, int lfd, const struct pb_tcp_rail *mine, int nmine,
                        const struct probe_card *succ_card, int succ, int pred, int nin, uint32_t *kbit,
                        const int *peers, int npeers, double secs, int all)
{
    int n = cfg->nleaders, rc = 0;
    uint32_t ignored[PB_TCP_MAX_RAILS];
    for (int c = 0; c < (n % 2 ? 3 : 2) && rc == 0; c++) {
        unsigned char mark = 1, back[2];
        if (c > 0 && (rc = cfg->xchg.with_peers(cfg->xchg.ctx, 1, &mark, back, 1, peers, npeers)) != 0)
            break;
        int out = colour(cfg->self, n) == c, in = colour(pred, n) == c;
        run_probes(cfg, lfd, mine, nmine, out ? succ_card : NULL, out ? succ : -1, pred, in ? nin : 0,
                   in ? kbit : ignored, secs, all);
    }
    return rc;
}

static void fill_card(struct probe_card *c, const struct pb_tcp_rail *mine, int n, uint16_t port, int ok)
{
    memset(c, 0, sizeof *c);
    c->port = port;
    c->ok = (uint32_t)ok;
    c->n = (uint16_t)n;
    for (int i = 0; i < n; i++) {
        c->r[i].key = mine[i].key;
        c->r[i].addr = mine[i].addr;
        c->r[i].mbit = mine[i].mbit;
    }
}

/* What we know of each rail's rate: the lower device speed of us and our
 * predecessor, else what its probe brought (0 if none came, or if it has our
 * address there). */
static void fill_report(struct pb_tcp_rail_report *rep, const struct pb_tcp_rail *mine, int n,
                        const struct probe_card *pred, const uint32_t *measured)
{
    memset(rep, 0, sizeof *rep);
    rep->n = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        int j = pred ? card_find(pred, mine[i].key) : -1;
        uint32_t theirs = j >= 0 ? pred->r[j].mbit : mine[i].mbit;
        rep->key[i] = mine[i].key;
        rep->measured[i] = measured[i];
        if (j >= 0 && pred->r[j].addr == mine[i].addr)
            rep->kbit[i] = 0; /* one address on two nodes (local bridges, NAT): not a network between them */
        else if (mine[i].mbit && theirs)
            rep->kbit[i] = (mine[i].mbit < theirs ? mine[i].mbit : theirs) * 1000u;
        else
            rep->kbit[i] = measured[i];
    }
}

struct decide_arg {
    const struct pb_transport_cfg *cfg;
    const struct pb_tcp_rail *mine;
    int nmine;
    int keep_all;
    uint32_t *send_kbit;       /* the root's, or NULL */
};

static void say_rails(const struct decide_arg *a, const struct pb_tcp_rail_report *all, int n,
                      const struct pb_tcp_rail_choice *c)
{
    struct pb_tcp_rail_choice every;
    pb_tcp_rails_decide(all, n, 1, &every);
    char line[800];
    size_t l = 0;
    for (uint32_t i = 0; i < every.n && l < sizeof line; i++) {
        const struct pb_tcp_rail *r = NULL;
        for (int k = 0; k < a->nmine; k++)
            if (a->mine[k].key == every.key[i])
                r = &a->mine[k];
        int used = 0;
        for (uint32_t k = 0; k < c->n; k++)
            used |= c->key[k] == every.key[i];
        char addr[INET_ADDRSTRLEN] = "?";
        if (r)
            inet_ntop(AF_INET, &r->addr, addr, sizeof addr);
        l += (size_t)snprintf(line + l, sizeof line - l, "%s %s %s (root %s) %.1f Mbit/s %s%s", i ? ";" : "",
                              used ? "chosen" : "not chosen", r ? r->ifname : "?", addr, every.kbit[i] / 1000.0,
                              r && r->mbit ? "device speed" : "measured",
                              used ? "" : every.kbit[i] ? " (below a third of the best)" : " (nothing arrived)");
    }
    fprintf(stderr, "p2pbcast: tcp rails (the slowest node's rate on each network all %d node(s) share):%s\n", n,
            every.n ? line : " none: one interface, as without rails");
}

static void decide(const void *allv, int n, void *choice, void *argv)
{
    const struct decide_arg *a = argv;
    pb_tcp_rails_decide(allv, n, a->keep_all, choice);
    if (a->send_kbit)
        pb_tcp_rails_send_rates(allv, n, choice, a->send_kbit);
    if (a->cfg->verbose)
        say_rails(a, allv, n, choice);
}

int pb_tcp_rails_choose(const struct pb_transport_cfg *cfg, const struct pb_tcp_if_spec *specs, int nspecs,
                        int probe_all, uint32_t *send_kbit, struct pb_tcp_rail *rails, char *err, size_t errlen)
{
    struct pb_tcp_rail mine[PB_TCP_MAX_RAILS];
    char why[320] = "";
    int n = pb_tcp_rails_local(specs, nspecs, mine, PB_TCP_MAX_RAILS, why, sizeof why);
    uint16_t port = 0;
    int lfd = n > 0 ? probe_listen(&port) : -1;
    if (n > 0 && lfd < 0)
        snprintf(why, sizeof why, "cannot listen for the rate probe: %s", strerror(errno));
    int ok = n > 0 && lfd >= 0;
    /* ring neighbours; with two leaders one partner, both ways */
    int succ = (cfg->self + 1) % cfg->nleaders, pred = (cfg->self + cfg->nleaders - 1) % cfg->nleaders;
    int peers[2] = { succ, pred }, npeers = cfg->nleaders == 1 ? 0 : cfg->nleaders == 2 ? 1 : 2;
    struct probe_card card, got[2];
    fill_card(&card, mine, ok ? n : 0, port, ok);
    memset(got, 0, sizeof got);
    int rc = cfg->xchg.with_peers(cfg->xchg.ctx, ok, &card, got, sizeof card, peers, npeers);
    uint32_t measured[PB_TCP_MAX_RAILS] = { 0 };
    const struct probe_card *pc = npeers == 2 ? &got[1] : npeers == 1 ? &got[0] : NULL;
    if (rc == 0) {
        int nin = 0;
        for (int i = 0; pc && i < n; i++) {
            int j = card_find(pc, mine[i].key);
            nin += j >= 0 && probed(mine[i].mbit, pc->r[j].mbit, probe_all);
        }
        rc = probe_rounds(cfg, lfd, mine, n, npeers ? &got[0] : NULL, npeers ? succ : -1, pred, nin, measured,
                          peers, npeers, PROBE_MS / 1000.0, probe_all);
    }
    if (lfd >= 0)
        close(lfd);
    /* Everybody joins the decision, so that nobody waits for a node that
     * failed; the choice then says so. */
    struct pb_tcp_rail_report rep;
    fill_report(&rep, mine, rc == 0 ? n : 0, pc, measured);
    struct decide_arg da = { cfg, mine, n > 0 ? n : 0, nspecs > 0, send_kbit };
    struct pb_tcp_rail_choice ch;
    memset(&ch, 0, sizeof ch);
    int drc = cfg->xchg.root_decides(cfg->xchg.ctx, &rep, sizeof rep, &ch, sizeof ch, decide, &da);
    if (!ok) {
        snprintf(err, errlen, "%s", why); /* the caller says "tcp set-up: " */
        return -1;
    }
    if (rc != 0 || drc != 0 ) {
        snprintf(err, errlen, rc == 1 ? "the choice of networks failed on another node (see its message)"
                                      : "the choice of networks failed (bootstrap)");
        return -1;
    }
    int k = 0;
    for (uint32_t i = 0; i < ch.n && i < PB_TCP_MAX_RAILS; i++)
        for (int j = 0; j < n; j++)
            if (mine[j].key == ch.key[i]) {
                rails[k] = mine[j];
                rails[k++].kbit = ch.kbit[i] ? ch.kbit[i] : 1;
            }
    if (cfg->verbose && k) {
        char line[400];
        size_t l = 0;
        for (int i = 0; i < k && l < sizeof line; i++) {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &rails[i].addr, a, sizeof a);
            l += (size_t)snprintf(line + l, sizeof line - l, " %s %s (%.1f Mbit/s)", rails[i].ifname, a,
                                  rails[i].kbit / 1000.0);
        }
        fprintf(stderr, "p2pbcast: %s: tcp rail(s):%s\n", cfg->names ? cfg->names[cfg->self] : "?", line);
    }
    return k;
}

int pb_tcp_rails_agree(const struct pb_transport_cfg *cfg, int probe_all, uint32_t *send_kbit,
                       struct pb_tcp_rail_set *set)
{
    struct pb_tcp_if_spec specs[PB_TCP_MAX_RAILS];
    char scratch[sizeof set->err];
    memset(set, 0, sizeof *set);
    /* The options were checked at start: a list that fails here still
     * joins the collective (as every network), so that nobody waits for us,
     * and fails the transport's set-up, where every leader votes. */
    int nspecs = cfg->tcp_if ? pb_tcp_if_parse(cfg->tcp_if, specs, PB_TCP_MAX_RAILS, set->err, sizeof set->err) : 0;
    int n = pb_tcp_rails_choose(cfg, specs, nspecs > 0 ? nspecs : 0, probe_all, send_kbit, set->r,
                                nspecs < 0 ? scratch : set->err, nspecs < 0 ? sizeof scratch : sizeof set->err);
    set->n = nspecs < 0 ? -1 : n;
    return set->n < 0 ? -1 : 0;
}
