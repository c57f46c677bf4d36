/* tcp.c — the transport over TCP sockets.
 *
 * One connection per pair of neighbours in the schedule (not N^2): the lower
 * leader index connects, the higher accepts. Every connection opens with a
 * HELLO carrying the per-job secret; anything else is logged and dropped,
 * and the listening socket is closed once every expected peer is in, so no
 * stranger can join afterwards. Data moves with non-blocking sockets and one
 * epoll set: payloads are received straight into the granted slot and sent
 * straight from pool memory (writev of header + payload), and poll blocks
 * in epoll_wait when nothing is ready.
 *
 * With several rails (tcp_rails.h) a pair of neighbours has one connection
 * per rail; each put goes to the rail whose share of the bytes stays lowest
 * against its rate, credits and notices to the least busy one. A slot is
 * still granted to one peer and written once per grant, so striping keeps
 * the credit rules; only the order of puts between rails is free. */
#include "tcp_internal.h"

static const struct pb_transport_ops tcp_ops = {
    .name = "tcp",
    .put = tcp_put,
    .grant = tcp_grant,
    .notify = tcp_notify,
    .poll = tcp_poll,
    .close = tcp_close,
};

/* ---- set-up ------------------------------------------------------------ */

#define MAX_PENDING 64   /* greetings read at once during set-up */
#define HELLO_SECONDS 2.0 /* a silent connection may be dropped after this when room is short */

struct endpoint {
    uint32_t addr;   /* IPv4 on rail 0, network order */
    uint16_t port;   /* network order, the same on every rail */
    uint16_t ok;     /* 0: this leader failed to set up; everyone gives up */
    uint32_t more[PB_TCP_MAX_RAILS - 1]; /* IPv4 on rails 1.. */
};

static uint32_t ep_addr(const struct endpoint *e, int rail)
{
    return rail ? e->more[rail - 1] : e->addr;
}

/* Every leader in this machine and network namespace (a test, or
 * --per-rank on one machine): loopback reaches them all. Hostnames do not
 * tell: containers on different machines often share one. */
static int all_here(const struct pb_transport_cfg *cfg)
{
    return cfg->all_local;
}

/* One rail on an interface named alone (or loopback, or the fallback). */
static int one_rail(struct tcp *t, const char *want, char *err, size_t errlen)
{
    struct pb_tcp_rail *r = &t->rails[0];
    memset(r, 0, sizeof *r);
    r->kbit = 1;
    t->nrails = 1;
    if (!want && all_here(&t->cfg)) {
        r->addr = htonl(INADDR_LOOPBACK);
        snprintf(r->ifname, sizeof r->ifname, "lo");
        return 0;
    }
    return pb_tcp_pick_if(want, &r->addr, r->ifname, sizeof r->ifname, err, errlen);
}

/* The rails: loopback on one machine; the interface named alone; else, with
 * the other leaders (collective, so every leader comes here the same way:
 * all_local and the options are the same everywhere), the fastest networks
 * every node shares, or where there is none the single default choice. */
static int choose_rails(struct tcp *t, char *err, size_t errlen)
{
    const char *want = t->cfg.tcp_if;
    const struct pb_tcp_rail_set *set = t->cfg.tcp_rails;
    struct pb_tcp_if_spec specs[PB_TCP_MAX_RAILS];
    int nspecs = 0;
    if (set && set->n < 0) {
        snprintf(err, errlen, "%s", set->err);
        return -1;
    }
    if (set && set->n > 0) { /* chosen with the send-rate probe: no second probe */
        memcpy(t->rails, set->r, sizeof t->rails);
        t->nrails = set->n;
        return 0;
    }
    if (set || (!want && all_here(&t->cfg)))
        return one_rail(t, NULL, err, errlen);
    if (want) {
        nspecs = pb_tcp_if_parse(want, specs, PB_TCP_MAX_RAILS, err, errlen);
        if (nspecs < 0)
            return -1;
        if (nspecs == 1)
            return one_rail(t, want, err, errlen);
    }
    int n = pb_tcp_rails_choose(&t->cfg, specs, nspecs, 0, NULL, t->rails, err, errlen);
    if (n < 0)
        return -1;
    if (n == 0)
        return one_rail(t, NULL, err, errlen);
    t->nrails = n;
    return 0;
}

/* For --check: "eth1 (150 Mbit/s device speed) + eth2 (...)". */
static void describe_rails(const struct tcp *t)
{
    char *d = t->cfg.links;
    size_t l = 0, cap = t->cfg.links_len;
    if (!d || !cap)
        return;
    d[0] = 0;
    for (int i = 0; i < t->nrails && l < cap; i++) {
        const struct pb_tcp_rail *r = &t->rails[i];
        l += (size_t)snprintf(d + l, cap - l, "%s%s", i ? " + " : "", r->ifname);
        if (r->mbit || r->kbit > 1) /* one_rail's kbit 1: nothing measured */
            l += l < cap ? (size_t)snprintf(d + l, cap - l, r->mbit ? " (%.0f Mbit/s, device speed)"
                                                                    : " (%.0f Mbit/s measured)",
                                            r->mbit ? (double)r->mbit : r->kbit / 1000.0)
                         : 0;
    }
}

static int io_full(int fd, void *buf, size_t len, int writing, double deadline)
{
    size_t done = 0;
    while (done < len) {
        int left = (int)((deadline - pb_now()) * 1000);
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = { fd, writing ? POLLOUT : POLLIN, 0 };
        int r = poll(&p, 1, left);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        ssize_t n = writing ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
                            : recv(fd, (char *)buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Start connecting from our own announced address (the acceptor checks
 * it). All connections are started first and finished after, so their
 * handshakes overlap: the root of a large job has many. */
static int connect_start(const struct endpoint *ep, int rail, uint32_t self_addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = self_addr };
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = ep->port, .sin_addr.s_addr = ep_addr(ep, rail) };
    if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0 ||
        (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Wait until a started connection is up; 0, or -1 with errno. */
static int connect_finish(int fd, double deadline)
{
    struct pollfd p = { fd, POLLOUT, 0 };
    int left = (int)((deadline - pb_now()) * 1000);
    int r = poll(&p, 1, left > 0 ? left : 0);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        errno = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
        return -1;
    }
    return 0;
}

static int add_conn(struct tcp *t, int fd, int peer, int rail, char *err, size_t errlen)
{
    struct conn *c = &t->conns[t->nconns];
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->peer = peer;
    c->rail = rail;
    c->qcap = 64;
    c->q = malloc(c->qcap * sizeof *c->q);
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (t->nrails > 1) {
        /* A rail that goes down loses no socket: its data just stays
         * unacknowledged. Fail the connection, naming the rail, well before
         * the engine's --timeout would name only the peer. */
        unsigned ms = (unsigned)(t->cfg.timeout * 1000 / 2);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    }
    int fl = fcntl(fd, F_GETFL);
    struct epoll_event ee = { .events = EPOLLIN, .data.u32 = (uint32_t)t->nconns };
    if (!c->q || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
        snprintf(err, errlen, "cannot set up the connection to %s (rail %d, %s): %s", peer_name(t, peer), rail,
                 t->rails[rail].ifname, strerror(errno));
        free(c->q);
        c->q = NULL;
        close(fd);
        return -1;
    }
    t->conn_of[(size_t)peer * t->nrails + rail] = t->nconns++;
    return 0;
}

/* Set-up state, gone once the connections are up. */
struct setup {
    int lfd;               /* listening socket */
    struct endpoint mine;
    struct endpoint *eps;  /* every leader's, after the exchange */
    char why[320];         /* a local failure, told after the exchange */
};

/* A connection accepted but not yet greeted. */
struct pending {
    int fd;
    int rail;     /* the rail whose address it reached, -1 none */
    uint32_t got;
    double since; /* accepted at */
    struct sockaddr_in from;
    unsigned char hb[PB_TCP_HELLO_SIZE];
};

static int alloc_state(struct tcp *t, char *why, size_t wl)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    size_t nr = (size_t)t->nrails;
    t->conns = calloc((size_t)cfg->npeers * nr + 1, sizeof *t->conns);
    t->conn_of = malloc((size_t)cfg->nleaders * nr * sizeof *t->conn_of);
    t->owner = malloc((size_t)cfg->nslots * sizeof *t->owner);
    if (!t->conns || !t->conn_of || !t->owner) {
        snprintf(why, wl, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < (size_t)cfg->nleaders * nr; i++)
        t->conn_of[i] = -1;
    for (uint32_t i = 0; i < cfg->nslots; i++)
        t->owner[i] = -1;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0) {
        snprintf(why, wl, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* One socket for every rail: bound to the rail's address when there is one,
 * else to all (the greeting's secret and address checks keep others out). */
static int start_listening(struct tcp *t, struct setup *s)
{
    uint32_t addr = t->nrails == 1 ? t->rails[0].addr : htonl(INADDR_ANY);
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, a, sizeof a);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr };
    socklen_t sl = sizeof sa;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s->lfd, SOMAXCONN) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0) {
        snprintf(s->why, sizeof s->why, "cannot listen on %s: %s", a, strerror(errno));
        return -1;
    }
    s->mine = (struct endpoint){ .addr = t->rails[0].addr, .port = sa.sin_port, .ok = 1 };
    for (int r = 1; r < t->nrails; r++)
        s->mine.more[r - 1] = t->rails[r].addr;
    if (t->cfg.verbose)
        fprintf(stderr, "p2pbcast: %s: tcp listening on %s:%u\n", self_name(t), a, ntohs(s->mine.port));
    return 0;
}

/* Two leaders that announce one address cannot both be reached at it
 * (containers with the same private address behind NAT, say). Only our
 * partners matter: each is checked against every leader, O(N) each. */
static int check_unique(struct tcp *t, const struct endpoint *eps, char *err, size_t errlen)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    for (int k = 0; k < cfg->npeers; k++) {
        int p = cfg->peers[k];
        for (int i = 0; i < cfg->nleaders; i++) {
            /* Leaders of one machine share its address, on other ports. */
            int other_host = cfg->netids && cfg->netids[i] != cfg->netids[p];
            if (i == p || eps[i].addr != eps[p].addr || (!other_host && eps[i].port != eps[p].port))
                continue;
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &eps[p].addr, a, sizeof a);
            snprintf(err, errlen,
                     "tcp set-up: %s and %s both announce the address %s (containers or NAT?): name the "
                     "interface that reaches the other nodes with --tcp-if NAME or CIDR",
                     peer_name(t, p), peer_name(t, i), a);
            return -1;
        }
    }
    return 0;
}

/* With partners only: whether everyone's set-up went well, then the
 * partners' endpoints (O(log N) per leader; eps[] holds partners only). */
static int exchange_with_peers(struct tcp *t, struct setup *s, char *err, size_t errlen)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    struct endpoint *got = calloc((size_t)cfg->npeers + 1, sizeof *got);
    if ((!got || !s->eps) && s->mine.ok) { /* still vote, so that nobody waits for us */
        s->mine.ok = 0;
        snprintf(s->why, sizeof s->why, "out of memory for the endpoints");
    }
    int rc = cfg->xchg.with_peers(cfg->xchg.ctx, s->mine.ok, &s->mine, got, sizeof *got, cfg->peers, cfg->npeers);
    if (rc == 0)
        for (int i = 0; i < cfg->npeers; i++)
            s->eps[cfg->peers[i]] = got[i];
    free(got);
    if (rc < 0 || rc == 2) {
        snprintf(err, errlen, "tcp set-up: endpoint exchange failed%s%s", s->why[0] ? ": " : "", s->why);
        return -1;
    }
    if (!s->mine.ok) {
        snprintf(err, errlen, "tcp set-up: %s", s->why);
        return -1;
    }
    if (rc == 1) {
        if (cfg->failed_elsewhere)
            *cfg->failed_elsewhere = 1;
        snprintf(err, errlen, "tcp set-up failed on another node (see its message)");
        return -1;
    }
    return 0;
}

/* Everyone takes part in the exchange, even after a local failure, so that
 * nobody waits for a leader that has given up. */
static int exchange_endpoints(struct tcp *t, struct setup *s, char *err, size_t errlen)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    s->eps = calloc((size_t)cfg->nleaders, sizeof *s->eps);
    if (exchange_with_peers(t, s, err, errlen) < 0)
        return -1;
    return check_unique(t, s->eps, err, errlen);
}

static void close_all(int *fds, int n)
{
    for (int k = 0; k < n; k++)
        if (fds[k] >= 0)
            close(fds[k]);
}

/* Errors a busy or not-yet-ready peer gives: try again until the set-up
 * deadline (a listen backlog overflowing at scale, a lost SYN). */
static int transient(int e)
{
    return e == ECONNREFUSED || e == ECONNRESET || e == EAGAIN || e == EHOSTUNREACH || e == ENETUNREACH ||
           e == ECONNABORTED || e == EINTR;
}

/* Finish a started connection to peer p and greet it; on a transient error
 * start again, with back-off (10 ms doubling to 1 s), until the deadline.
 * Returns the connected fd, or -1 with errno. */
static int connect_peer(struct tcp *t, const struct setup *s, int p, int rail, int fd, double deadline)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    unsigned char hb[PB_TCP_HELLO_SIZE];
    struct pb_tcp_hello h = { (uint32_t)cfg->self, (uint32_t)p, { 0 } };
    memcpy(h.secret, cfg->secret, 16);
    pb_tcp_hello_encode(hb, &h);
    const char *delay = getenv("P2PBCAST_TEST_HELLO_DELAY_MS"); /* testing: a late greeting */
    long backoff_ms = 10;
    for (;;) {
        if (fd >= 0 && connect_finish(fd, deadline) == 0) {
            if (delay && *delay)
                usleep((useconds_t)strtol(delay, NULL, 10) * 1000);
            if (io_full(fd, hb, sizeof hb, 1, deadline) == 0)
                return fd;
        }
        int e = errno ? errno : EIO;
        if (fd >= 0)
            close(fd);
        if (!transient(e) || pb_now() + (double)backoff_ms / 1000 >= deadline) {
            errno = e;
            return -1;
        }
        usleep((useconds_t)backoff_ms * 1000);
        backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
        fd = connect_start(&s->eps[p], rail, ep_addr(&s->mine, rail));
    }
}

/* Connect to the higher-numbered partners and greet them. All connections
 * are started before any is finished, so their handshakes overlap. */
static int connect_out(struct tcp *t, struct setup *s, double deadline, char *err, size_t errlen)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    int nr = t->nrails, n = cfg->npeers * nr; /* one connection per partner and rail */
    int *out = malloc((size_t)n * sizeof *out + 1);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        out[i] = cfg->peers[i / nr] < cfg->self ? -1
                                                : connect_start(&s->eps[cfg->peers[i / nr]], i % nr, ep_addr(&s->mine, i % nr));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int p = cfg->peers[i / nr], r = i % nr;
        if (p < cfg->self)
            continue;
        int fd = connect_peer(t, s, p, r, out[i], deadline);
        out[i] = -1;
        if (fd < 0) {
            char a[INET_ADDRSTRLEN];
            uint32_t pa = ep_addr(&s->eps[p], r);
            inet_ntop(AF_INET, &pa, a, sizeof a);
            snprintf(err, errlen, "tcp: cannot connect to %s at %s:%u (from %s) within %.0f s: %s", peer_name(t, p),
                     a, ntohs(s->eps[p].port), t->rails[r].ifname, cfg->timeout, strerror(errno));
            rc = -1;
        } else if (add_conn(t, fd, p, r, err, errlen) < 0) {
            rc = -1;
        }
    }
    close_all(out, n);
    free(out);
    return rc;
}

/* Is this greeting one of the lower-numbered partners we wait for? NULL if
 * so; otherwise why not (also logged: a stranger, or a peer gone wrong). */
static const char *check_greeting(struct tcp *t, const struct setup *s, struct pending *p, struct pb_tcp_hello *h,
                                  char *why, size_t wl)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &p->from.sin_addr, a, sizeof a);
    if (pb_tcp_hello_decode(p->hb, (uint32_t)cfg->self, (uint32_t)cfg->nleaders, cfg->secret, h, why, wl) < 0) {
        fprintf(stderr, "p2pbcast: %s: rejected a data connection from %s:%u: %s\n", self_name(t), a,
                ntohs(p->from.sin_port), why);
        return why;
    }
    int expected = 0;
    for (int k = 0; k < cfg->npeers; k++)
        expected |= cfg->peers[k] == (int)h->from;
    const char *drop = NULL;
    if (p->rail < 0)
        drop = "arrived on no rail of ours";
    else if (!expected || (int)h->from > cfg->self || t->conn_of[(size_t)h->from * t->nrails + p->rail] >= 0)
        drop = "not expected";
    else if (p->from.sin_addr.s_addr != ep_addr(&s->eps[h->from], p->rail))
        drop = "wrong address"; /* peers connect from the address they announced */
    if (drop)
        fprintf(stderr, "p2pbcast: %s: rejected a data connection from %s:%u claiming to be %s: %s\n",
                self_name(t), a, ntohs(p->from.sin_port), peer_name(t, (int)h->from), drop);
    return drop;
}

/* Read what a pending connection has sent. Returns 0 while its greeting is
 * incomplete, 1 when it was accepted as a peer, 2 when it was dropped, -1
 * on a local failure (err set). */
static int read_greeting(struct tcp *t, const struct setup *s, struct pending *p, short revents, char *err,
                         size_t errlen)
{
    const char *drop = NULL;
    int e = 0;
    if (revents) {
        ssize_t n = recv(p->fd, p->hb + p->got, sizeof p->hb - p->got, 0);
        if (n > 0)
            p->got += (uint32_t)n;
        else if (n == 0)
            drop = "no greeting", e = ECONNRESET;
        else if (errno != EAGAIN && errno != EINTR)
            drop = "no greeting", e = errno;
    }
    if (!drop && p->got < sizeof p->hb)
        return 0;
    struct pb_tcp_hello h;
    char why[320];
    if (drop) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &p->from.sin_addr, a, sizeof a);
        fprintf(stderr, "p2pbcast: %s: dropped a data connection from %s:%u: %s (%s)\n", self_name(t), a,
                ntohs(p->from.sin_port), drop, strerror(e));
    } else {
        drop = check_greeting(t, s, p, &h, why, sizeof why);
    }
    int fd = p->fd;
    p->fd = -1; /* done with this one */
    if (drop) {
        close(fd);
        return 2;
    }
    return add_conn(t, fd, (int)h.from, p->rail, err, errlen) < 0 ? -1 : 1;
}

static void log_silent(struct tcp *t, const struct pending *p, const char *why)
{
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &p->from.sin_addr, a, sizeof a);
    fprintf(stderr, "p2pbcast: %s: dropped a data connection from %s:%u: no greeting (%s)\n", self_name(t), a,
            ntohs(p->from.sin_port), why);
}

/* The table of pending connections is full: drop the oldest one that has
 * been silent for HELLO_SECONDS, if any; 1 when room was made. */
static int evict_silent(struct tcp *t, struct pending *pend, int *npend, double now)
{
    int old = -1;
    for (int i = 0; i < *npend; i++)
        if (!pend[i].got && now - pend[i].since >= HELLO_SECONDS && (old < 0 || pend[i].since < pend[old].since))
            old = i;
    if (old < 0)
        return 0;
    log_silent(t, &pend[old], "room needed for other connections");
    close(pend[old].fd);
    pend[old] = pend[--*npend];
    return 1;
}

/* Which of our rails an accepted connection reached (by its local
 * address); -1 when none. */
static int rail_of(const struct tcp *t, int fd)
{
    if (t->nrails == 1)
        return 0;
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
        return -1;
    for (int r = 0; r < t->nrails; r++)
        if (t->rails[r].addr == me.sin_addr.s_addr)
            return r;
    return -1;
}

/* Accept the lower-numbered partners; drop anything that is not one. Up to
 * MAX_PENDING greetings are read side by side. A late greeting is accepted
 * until the set-up deadline (a peer that finishes its connects one by one,
 * or a retransmitted SYN, is late at scale); only when the table is full
 * does a connection silent for HELLO_SECONDS make room, so silent strangers
 * cannot hold up the real peers. */
static int accept_in(struct tcp *t, struct setup *s, double deadline, char *err, size_t errlen)
{
    const struct pb_transport_cfg *cfg = &t->cfg;
    int expect_in = 0;
    for (int i = 0; i < cfg->npeers; i++)
        expect_in += (cfg->peers[i] < cfg->self) * t->nrails;
    struct pending pend[MAX_PENDING];
    int npend = 0, rc = 0;
    while (expect_in > 0 && rc == 0) {
        double now = pb_now();
        if (now >= deadline) {
            snprintf(err, errlen, "tcp: timed out after %.0f s waiting for %d peer connection(s)", cfg->timeout,
                     expect_in);
            rc = -1;
            break;
        }
        int room = npend < MAX_PENDING || evict_silent(t, pend, &npend, now);
        double wake = deadline;
        for (int i = 0; !room && i < npend; i++)
            if (!pend[i].got && pend[i].since + HELLO_SECONDS < wake)
                wake = pend[i].since + HELLO_SECONDS;
        struct pollfd pfs[1 + MAX_PENDING];
        pfs[0] = (struct pollfd){ s->lfd, room ? POLLIN : 0, 0 };
        for (int i = 0; i < npend; i++)
            pfs[1 + i] = (struct pollfd){ pend[i].fd, POLLIN, 0 };
        if (poll(pfs, (nfds_t)(1 + npend), (int)((wake - now) * 1000) + 1) < 0 && errno != EINTR) {
            snprintf(err, errlen, "tcp: poll while accepting peers: %s", strerror(errno));
            rc = -1;
            break;
        }
        now = pb_now();
        for (int i = 0; i < npend && rc == 0; i++) {
            int r = read_greeting(t, s, &pend[i], pfs[1 + i].revents, err, errlen);
            if (r < 0)
                rc = -1;
            expect_in -= r == 1;
        }
        int keep = 0;
        for (int i = 0; i < npend; i++)
            if (pend[i].fd >= 0)
                pend[keep++] = pend[i];
        npend = keep;
        if (rc == 0 && (pfs[0].revents & POLLIN) && npend < MAX_PENDING) {
            struct pending *p = &pend[npend];
            socklen_t fl = sizeof p->from;
            p->fd = accept4(s->lfd, (struct sockaddr *)&p->from, &fl, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (p->fd >= 0) {
                p->rail = rail_of(t, p->fd);
                p->got = 0;
                p->since = now;
                npend++;
            }
        }
    }
    for (int i = 0; i < npend; i++) {
        log_silent(t, &pend[i], "every peer was in before it spoke");
        close(pend[i].fd);
    }
    return rc;
}

/* The set-up, as one story: the rails, our state and listening socket, everyone's
 * endpoints, then connections out to the higher-numbered partners and in
 * from the lower-numbered ones. The listening socket is closed at the end,
 * so nobody else may join. */
struct pb_transport *pb_tcp_open(const struct pb_transport_cfg *cfg, char *err, size_t errlen)
{
    struct tcp *t = calloc(1, sizeof *t);
    struct setup s = { .lfd = -1 };
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->base.ops = &tcp_ops;
    t->cfg = *cfg;
    t->epfd = -1;
    if (choose_rails(t, s.why, sizeof s.why) == 0 && alloc_state(t, s.why, sizeof s.why) == 0) {
        describe_rails(t);
        (void)start_listening(t, &s);
    }
    int rc = exchange_endpoints(t, &s, err, errlen);
    double deadline = pb_now() + cfg->timeout;
    if (rc == 0)
        rc = connect_out(t, &s, deadline, err, errlen);
    if (rc == 0)
        rc = accept_in(t, &s, deadline, err, errlen);
    if (s.lfd >= 0)
        close(s.lfd);
    free(s.eps);
    if (rc < 0) {
        tcp_close(&t->base);
        return NULL;
    }
    return &t->base;
}
