/* tcp_data.c — the data path of the tcp transport: puts (header + payload
 * queued per connection and written with writev), grants and notices, the
 * rail each goes to, reading headers and payloads straight into the granted
 * slot, the event queue, poll (epoll_wait) and close. Set-up: tcp.c. */
#include "tcp_internal.h"

#include <linux/sockios.h> /* SIOCOUTQ */
#include <sys/ioctl.h>

static int push_event(struct tcp *t, const struct pb_event *ev)
{
    if (t->evlen == t->evcap) {
        uint32_t ncap = t->evcap ? t->evcap * 2 : 256;
        struct pb_event *n = malloc(ncap * sizeof *n);
        if (!n) {
            t->lost = 1; /* reported by the next poll: a lost event would stall */
            return -1;
        }
        for (uint32_t i = 0; i < t->evlen; i++)
            n[i] = t->evq[(t->evhead + i) % t->evcap];
        free(t->evq);
        t->evq = n;
        t->evcap = ncap;
        t->evhead = 0;
    }
    t->evq[(t->evhead + t->evlen++) % t->evcap] = *ev;
    return 0;
}

static void conn_fail(struct tcp *t, struct conn *c, int err, const char *what)
{
    if (c->dead)
        return;
    /* one error per peer: its other rails' connections fail with it */
    int told = 0;
    for (int r = 0; r < t->nrails; r++) {
        int k = t->conn_of[(size_t)c->peer * t->nrails + r];
        told |= k >= 0 && t->conns[k].dead;
    }
    c->dead = 1;
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (told)
        return;
    struct pb_event ev = { .kind = PB_EV_ERROR, .peer = c->peer, .err = err };
    if (t->nrails > 1) { /* name the network: one rail may fail alone */
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &t->rails[c->rail].addr, a, sizeof a);
        snprintf(ev.what, sizeof ev.what, "%s (rail %d: %s %s)", what, c->rail, t->rails[c->rail].ifname, a);
    } else {
        snprintf(ev.what, sizeof ev.what, "%s", what);
    }
    (void)push_event(t, &ev);
}

static void arm_out(struct tcp *t, struct conn *c, int on)
{
    if (c->want_out == on || c->dead)
        return;
    struct epoll_event ee = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - t->conns) };
    if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ee) == 0)
        c->want_out = on;
}

/* Write queued messages until the socket is full. */
static void flush_conn(struct tcp *t, struct conn *c)
{
    while (!c->dead && c->qlen) {
        struct outmsg *m = &c->q[c->qhead];
        struct iovec iov[2];
        int n = 0;
        if (m->off < PB_TCP_HDR_SIZE) {
            iov[n].iov_base = m->hdr + m->off;
            iov[n++].iov_len = PB_TCP_HDR_SIZE - m->off;
            if (m->len) {
                iov[n].iov_base = (void *)m->buf;
                iov[n++].iov_len = m->len;
            }
        } else {
            uint32_t po = m->off - PB_TCP_HDR_SIZE;
            iov[n].iov_base = (void *)(m->buf + po);
            iov[n++].iov_len = m->len - po;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm_out(t, c, 1);
                return;
            }
            conn_fail(t, c, errno, "send failed");
            return;
        }
        m->off += (uint32_t)w;
        c->qbytes -= (uint64_t)w;
        if (m->off == PB_TCP_HDR_SIZE + m->len) {
            if (m->data) {
                struct pb_event ev = { .kind = PB_EV_SENT, .peer = c->peer, .cookie = m->cookie };
                (void)push_event(t, &ev);
            }
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
        }
    }
    arm_out(t, c, 0);
}

/* What a connection still has to put on the wire: queued here plus what
 * the kernel holds unsent or unacknowledged. */
static uint64_t conn_backlog(const struct conn *c)
{
    int inq = 0;
    if (c->dead || ioctl(c->fd, SIOCOUTQ, &inq) < 0 || inq < 0)
        inq = 0;
    return c->qbytes + (uint64_t)inq;
}

/* The rail for the next message to peer: data to the rail that would
 * finish its backlog first at its rate, control to the shortest queue.
 * By backlog rather than by bytes sent so far, the split follows what each
 * rail really drains: a probe that misjudged a rail (veth, a busy NIC)
 * only sets the first few choices. */
static int pick_rail(struct tcp *t, int peer, const struct pb_tcp_hdr *h)
{
    int n = t->nrails, best = 0;
    if (n == 1)
        return 0;
    const int *co = &t->conn_of[(size_t)peer * n];
    if (h->type == PB_TCP_DATA) {
        uint32_t rate[PB_TCP_MAX_RAILS];
        uint64_t backlog[PB_TCP_MAX_RAILS];
        for (int r = 0; r < n; r++) {
            rate[r] = t->rails[r].kbit;
            backlog[r] = conn_backlog(&t->conns[co[r]]);
        }
        return pb_tcp_rail_pick(backlog, rate, n, h->len);
    }
    for (int r = 1; r < n; r++)
        if (t->conns[co[r]].qlen < t->conns[co[best]].qlen)
            best = r;
    return best;
}

static int enqueue(struct tcp *t, int peer, const struct pb_tcp_hdr *h, const void *buf, int data,
                   uint64_t cookie)
{
    if (peer < 0 || peer >= t->cfg.nleaders || t->conn_of[(size_t)peer * t->nrails] < 0) {
        errno = EINVAL;
        return -1;
    }
    struct conn *c = &t->conns[t->conn_of[(size_t)peer * t->nrails + pick_rail(t, peer, h)]];
    if (c->dead) {
        errno = ECONNRESET;
        return -1;
    }
    if (c->qlen == c->qcap) {
        uint32_t ncap = c->qcap * 2;
        struct outmsg *n = malloc(ncap * sizeof *n);
        if (!n) {
            errno = ENOMEM;
            return -1;
        }
        for (uint32_t i = 0; i < c->qlen; i++)
            n[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = n;
        c->qcap = ncap;
        c->qhead = 0;
    }
    struct outmsg *m = &c->q[(c->qhead + c->qlen++) % c->qcap];
    memset(m, 0, sizeof *m);
    pb_tcp_hdr_encode(m->hdr, h);
    m->buf = buf;
    m->len = h->type == PB_TCP_DATA ? h->len : 0;
    m->data = data;
    m->cookie = cookie;
    c->qbytes += PB_TCP_HDR_SIZE + (uint64_t)m->len;
    if (c->qlen == 1)
        flush_conn(t, c);
    return 0;
}

int tcp_put(struct pb_transport *tp, int peer, uint32_t slot, uint32_t tag, const void *buf,
            uint32_t len, uint64_t cookie)
{
    struct tcp *t = (struct tcp *)tp;
    struct pb_tcp_hdr h = { PB_TCP_DATA, slot, tag, len };
    return enqueue(t, peer, &h, buf, 1, cookie);
}

int tcp_grant(struct pb_transport *tp, int peer, uint32_t slot)
{
    struct tcp *t = (struct tcp *)tp;
    if (slot >= t->cfg.nslots) {
        errno = EINVAL;
        return -1;
    }
    t->owner[slot] = peer; /* only this peer may write into the slot now */
    struct pb_tcp_hdr h = { PB_TCP_CREDIT, slot, 0, 0 };
    return enqueue(t, peer, &h, NULL, 0, 0);
}

int tcp_notify(struct pb_transport *tp, int peer, uint32_t code)
{
    struct pb_tcp_hdr h = { PB_TCP_NOTIFY, code, 0, 0 };
    return enqueue((struct tcp *)tp, peer, &h, NULL, 0, 0);
}

/* Events one poll may legitimately queue: per peer at most a slot pool's
 * worth of arrivals, credits and sends, plus notices. */
static uint32_t event_cap(const struct tcp *t)
{
    return (uint32_t)(t->cfg.npeers + 1) * (3 * t->cfg.nslots + 8) + 64;
}

/* Read what the socket has, straight into slots; at most `budget` bytes so
 * one busy link cannot starve the others. */
static void read_conn(struct tcp *t, struct conn *c, size_t budget)
{
    size_t done = 0;
    while (!c->dead && done < budget) {
        ssize_t r;
        if (!c->in_payload) {
            r = recv(c->fd, c->hdr + c->hgot, PB_TCP_HDR_SIZE - c->hgot, 0);
        } else {
            unsigned char *dst = (unsigned char *)t->cfg.pool + (size_t)c->cur.slot * t->cfg.slot_size;
            r = recv(c->fd, dst + c->pgot, c->cur.len - c->pgot, 0);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_fail(t, c, errno, "receive failed");
            return;
        }
        if (r == 0) {
            conn_fail(t, c, 0, "connection closed by the peer (process ended or failed)");
            return;
        }
        done += (size_t)r;
        if (!c->in_payload) {
            c->hgot += (uint32_t)r;
            if (c->hgot < PB_TCP_HDR_SIZE)
                continue;
            c->hgot = 0;
            char why[160];
            if (pb_tcp_hdr_decode(c->hdr, t->cfg.nslots, t->cfg.slot_size, &c->cur, why, sizeof why) < 0) {
                conn_fail(t, c, 0, why);
                return;
            }
            struct pb_event ev = { .peer = c->peer };
            if (c->cur.type == PB_TCP_DATA) {
                if (t->owner[c->cur.slot] != c->peer) {
                    snprintf(why, sizeof why, "protocol error: data for slot %u, which was not granted to it",
                             c->cur.slot);
                    conn_fail(t, c, 0, why);
                    return;
                }
                if (c->cur.len) {
                    c->in_payload = 1;
                    c->pgot = 0;
                    continue;
                }
                ev.kind = PB_EV_ARRIVED;
                ev.slot = c->cur.slot;
                ev.tag = c->cur.tag;
                t->owner[c->cur.slot] = -1;
            } else if (t->evlen >= event_cap(t)) {
                /* A peer of this job never has more credits or notices
                 * outstanding than there are slots: this one is flooding. */
                conn_fail(t, c, 0, "protocol error: flood of control messages");
                return;
            } else if (c->cur.type == PB_TCP_CREDIT) {
                ev.kind = PB_EV_CREDIT;
                ev.slot = c->cur.slot;
            } else {
                ev.kind = PB_EV_NOTIFY;
                ev.tag = c->cur.slot;
            }
            (void)push_event(t, &ev);
        } else {
            c->pgot += (uint32_t)r;
            if (c->pgot < c->cur.len)
                continue;
            c->in_payload = 0;
            t->owner[c->cur.slot] = -1; /* consumed until granted again */
            struct pb_event ev = { .kind = PB_EV_ARRIVED, .peer = c->peer, .slot = c->cur.slot,
                                   .tag = c->cur.tag, .len = c->cur.len };
            (void)push_event(t, &ev);
        }
    }
}

int tcp_poll(struct pb_transport *tp, struct pb_event *out, int max, int timeout_ms)
{
    struct tcp *t = (struct tcp *)tp;
    struct epoll_event ee[64];
    if (t->lost) {
        errno = ENOMEM;
        return -1;
    }
    /* Already have events: still move data, but do not wait. */
    int n = epoll_wait(t->epfd, ee, 64, t->evlen ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR)
        return -1;
    for (int i = 0; i < n; i++) {
        struct conn *c = &t->conns[ee[i].data.u32];
        if (c->dead)
            continue;
        if (ee[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            read_conn(t, c, 16u << 20);
        if (!c->dead && (ee[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            flush_conn(t, c);
    }
    int k = 0;
    while (k < max && t->evlen) {
        out[k++] = t->evq[t->evhead];
        t->evhead = (t->evhead + 1) % t->evcap;
        t->evlen--;
    }
    return k;
}

int tcp_close(struct pb_transport *tp)
{
    struct tcp *t = (struct tcp *)tp;
    if (!t)
        return 0;
    for (int i = 0; i < t->nconns; i++) {
        if (t->conns[i].fd >= 0)
            close(t->conns[i].fd);
        free(t->conns[i].q);
    }
    if (t->epfd >= 0)
        close(t->epfd);
    free(t->conns);
    free(t->conn_of);
    free(t->owner);
    free(t->evq);
    free(t);
    return 0;
}
