/* test_tcp_hostile.c — the real tcp transport (transport_tcp.c) against
 * strangers and a hostile peer, in one process, no MPI.
 *
 * Part 1: three leaders in threads call pb_tcp_open with an in-process
 * allgather. Right after the endpoint exchange, before any legitimate
 * connection is made, strangers connect to the leaders' listening ports and
 * send garbage, an HTTP request, a hello with a wrong secret, hellos with
 * the right secret but a wrong leader index, or nothing at all. Each must be
 * logged on stderr and dropped; set-up must still succeed, the listening
 * sockets must be gone afterwards, and a chain transfer 0 -> 1 -> 2 of more
 * chunks than slots (put/grant/ARRIVED/SENT, plus a notify) must deliver
 * every byte.
 *
 * Part 2: leader 0 is an impostor that knows the secret: it takes part in
 * the exchange and says hello by hand (tcp_wire.h encoders), then, after a
 * legitimate exchange in both directions, sends one malformed message: data
 * for a slot not granted or already consumed, an out-of-range slot, a length
 * beyond the slot, an unknown type, a bad version, a bad credit or notice, a
 * connection cut inside a header or a payload. The real leader must report
 * PB_EV_ERROR for that peer (no crash, no ARRIVED), and no byte of its pool
 * outside the granted slot, nor the guard zones around it, may change.
 *
 * TAP on stdout; the transport's log lines are captured from stderr (and
 * echoed there). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tap.h"
#include "tcp_wire.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NSLOTS 4u
#define SLOT_SIZE 4096u
#define GUARD 512u
#define GUARD_BYTE 0xa5
#define FILL_BYTE 0x3c

static const uint8_t SECRET[16] = { 's', 'e', 'c', 'r', 'e', 't', '-', 'o', 'f', '-', 't', 'h', 'e', 'j', 'o', 'b' };
static const char *const NAMES[] = { "leader0 (rank 0)", "leader1 (rank 1)", "leader2 (rank 2)" };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- in-process allgather: shared buffer + barrier -------------------- */

struct xg {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, arrived;
    unsigned gen;
    unsigned char buf[3 * 256];
    size_t len;
    int ok[3];  /* each member's set-up verdict (xg_with_peers) */
    /* run by the last member to arrive, after everything is gathered and
     * before anyone is released: the strangers' moment */
    void (*hook)(void *arg, const unsigned char *all, size_t len, int n);
    void *hook_arg;
};

struct member {
    struct xg *g;
    int idx;
};

static void xg_init(struct xg *g, int n)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->n = n;
    for (int i = 0; i < 3; i++)
        g->ok[i] = 1;
}

static void xg_fini(struct xg *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* With g->mu held. */
static void xg_barrier(struct xg *g, int run_hook)
{
    unsigned gen = g->gen;
    if (++g->arrived == g->n) {
        if (run_hook && g->hook)
            g->hook(g->hook_arg, g->buf, g->len, g->n);
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&g->cv);
    } else {
        while (gen == g->gen)
            pthread_cond_wait(&g->cv, &g->mu);
    }
}

static int xg_allgather(void *ctx, const void *mine, void *all, size_t len)
{
    struct member *m = ctx;
    struct xg *g = m->g;
    if (len == 0 || len * (size_t)g->n > sizeof g->buf)
        return -1;
    pthread_mutex_lock(&g->mu);
    g->len = len;
    memcpy(g->buf + (size_t)m->idx * len, mine, len);
    xg_barrier(g, 1);
    memcpy(all, g->buf, len * (size_t)g->n);
    xg_barrier(g, 0); /* nobody reuses buf before everyone has copied it */
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* The bootstrap's exchange with the partners, on the allgather: everyone's
 * verdict, then the partners' records. */
static int xg_with_peers(void *ctx, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers)
{
    struct member *m = ctx;
    struct xg *g = m->g;
    unsigned char all[sizeof g->buf];
    pthread_mutex_lock(&g->mu);
    g->ok[m->idx] = ok;
    pthread_mutex_unlock(&g->mu);
    if (xg_allgather(ctx, mine, all, len) != 0)
        return -1;
    int all_ok = 1;
    for (int i = 0; i < g->n; i++)
        all_ok &= g->ok[i] != 0;
    if (!all_ok)
        return 1;
    for (int i = 0; i < npeers; i++)
        memcpy((unsigned char *)out + (size_t)i * len, all + (size_t)peers[i] * len, len);
    return 0;
}

/* The tcp transport's endpoint record (tcp.c, struct endpoint): IPv4
 * address and port in network order, then an ok flag, then the addresses on
 * further rails (none here: one machine, loopback). */
struct ep {
    uint32_t addr;
    uint16_t port;
    uint16_t ok;
    uint32_t more[3];
};

static int ep_of(const unsigned char *all, size_t len, int i, struct ep *e)
{
    if (len != sizeof *e)
        return -1;
    memcpy(e, all + (size_t)i * len, sizeof *e);
    return 0;
}

/* ---- sockets ------------------------------------------------------------ */

static int connect_ep(const struct ep *e)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = e->port, .sin_addr.s_addr = e->addr };
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int er = errno;
        close(fd);
        errno = er;
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *b, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, (const char *)b + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

/* 0: got n bytes; -1: error/EOF/timeout. */
static int recv_all(int fd, void *b, size_t n, int timeout_ms)
{
    size_t done = 0;
    double end = now_s() + timeout_ms / 1000.0;
    while (done < n) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            return -1;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, (char *)b + done, n - done, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

/* Has the other side closed (EOF or reset) within timeout_ms? Any data that
 * still arrives is read and discarded. */
static int closed_by_peer(int fd, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1000.0;
    char b[256];
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            return 0;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}

/* ---- stderr capture ----------------------------------------------------- */

static struct {
    int saved, pipe_r;
    pthread_t th;
    char buf[16384];
    size_t len;
} cap;

static void *cap_reader(void *arg)
{
    (void)arg;
    char b[512];
    ssize_t r;
    while ((r = read(cap.pipe_r, b, sizeof b)) > 0) {
        size_t k = (size_t)r < sizeof cap.buf - 1 - cap.len ? (size_t)r : sizeof cap.buf - 1 - cap.len;
        memcpy(cap.buf + cap.len, b, k);
        cap.len += k;
        cap.buf[cap.len] = 0;
        (void)!write(cap.saved, b, (size_t)r); /* still visible in the test log */
    }
    return NULL;
}

static void cap_start(void)
{
    int p[2];
    fflush(stderr);
    if (pipe(p) < 0) {
        perror("pipe");
        exit(1);
    }
    cap.saved = dup(2);
    cap.pipe_r = p[0];
    cap.len = 0;
    cap.buf[0] = 0;
    dup2(p[1], 2);
    close(p[1]);
    pthread_create(&cap.th, NULL, cap_reader, NULL);
}

static void cap_stop(void)
{
    fflush(stderr);
    dup2(cap.saved, 2); /* closes the pipe's last write end: the reader sees EOF */
    pthread_join(cap.th, NULL);
    close(cap.saved);
    close(cap.pipe_r);
}

static int count_lines(const char *needle)
{
    int n = 0;
    for (const char *p = cap.buf; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- pools with guard zones -------------------------------------------- */

struct pool {
    unsigned char *base; /* GUARD | NSLOTS * SLOT_SIZE | GUARD */
    unsigned char *mem;
};

static void pool_init(struct pool *p)
{
    p->base = malloc(2 * GUARD + (size_t)NSLOTS * SLOT_SIZE);
    if (!p->base)
        exit(1);
    memset(p->base, GUARD_BYTE, GUARD);
    memset(p->base + GUARD + (size_t)NSLOTS * SLOT_SIZE, GUARD_BYTE, GUARD);
    p->mem = p->base + GUARD;
    memset(p->mem, FILL_BYTE, (size_t)NSLOTS * SLOT_SIZE);
}

static int guards_intact(const struct pool *p)
{
    const unsigned char *hi = p->mem + (size_t)NSLOTS * SLOT_SIZE;
    for (unsigned i = 0; i < GUARD; i++)
        if (p->base[i] != GUARD_BYTE || hi[i] != GUARD_BYTE)
            return 0;
    return 1;
}

static int slot_untouched(const struct pool *p, uint32_t s)
{
    const unsigned char *m = p->mem + (size_t)s * SLOT_SIZE;
    for (unsigned i = 0; i < SLOT_SIZE; i++)
        if (m[i] != FILL_BYTE)
            return 0;
    return 1;
}

/* ---- opening leaders in threads ---------------------------------------- */

struct leader {
    int idx;
    int peers[2];
    int npeers;
    struct member m;
    struct pool pool;
    struct pb_transport *t;
    char err[400];
    pthread_t th;
};

static void *open_thread(void *arg)
{
    struct leader *l = arg;
    struct pb_transport_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.self = l->idx;
    cfg.nleaders = l->m.g->n;
    cfg.peers = l->peers;
    cfg.npeers = l->npeers;
    cfg.pool = l->pool.mem;
    cfg.slot_size = SLOT_SIZE;
    cfg.nslots = NSLOTS;
    cfg.names = NAMES;
    cfg.all_local = 1; /* one machine: loopback */
    cfg.xchg.with_peers = xg_with_peers;
    cfg.xchg.ctx = &l->m;
    memcpy(cfg.secret, SECRET, 16);
    cfg.timeout = 10;
    cfg.gid_index = -1;
    l->err[0] = 0;
    l->t = pb_tcp_open(&cfg, l->err, sizeof l->err);
    return NULL;
}

/* ---- part 1: strangers during set-up ------------------------------------ */

struct stranger {
    const char *desc;
    int target;     /* leader whose port it hits */
    int fd;
    int stays;      /* keeps the connection open after sending */
};

enum { S_GARBAGE, S_HTTP, S_HTTP1, S_SECRET, S_NOTPEER, S_RANGE, S_TOWHOM, S_VERSION, S_SILENT, S_COUNT };
static struct stranger strangers[S_COUNT] = {
    [S_GARBAGE] = { "64 bytes of garbage", 2, -1, 1 },
    [S_HTTP] = { "an HTTP request", 2, -1, 1 },
    [S_HTTP1] = { "an HTTP request to leader 1", 1, -1, 1 },
    [S_SECRET] = { "a valid-looking hello with a wrong secret", 2, -1, 1 },
    [S_NOTPEER] = { "a hello with the right secret from leader 0, which is not 2's peer", 2, -1, 1 },
    [S_RANGE] = { "a hello with the right secret from leader 99 (out of range)", 2, -1, 1 },
    [S_TOWHOM] = { "a hello with the right secret addressed to leader 1, sent to leader 2", 2, -1, 1 },
    [S_VERSION] = { "a hello of protocol version 7", 2, -1, 1 },
    [S_SILENT] = { "a connection closed without a word", 2, -1, 0 },
};
static int strangers_ready;
static uint16_t ports[3];

static void hello_bytes(unsigned char out[PB_TCP_HELLO_SIZE], uint32_t from, uint32_t to, const uint8_t *secret)
{
    struct pb_tcp_hello h = { from, to, { 0 } };
    memcpy(h.secret, secret, 16);
    pb_tcp_hello_encode(out, &h);
}

static void strangers_hook(void *arg, const unsigned char *all, size_t len, int n)
{
    (void)arg;
    struct ep e[3];
    for (int i = 0; i < n; i++)
        if (ep_of(all, len, i, &e[i]) < 0 || !e[i].ok)
            return; /* strangers_ready stays 0: reported as a failure */
    for (int i = 0; i < n; i++)
        ports[i] = e[i].port;
    for (int s = 0; s < S_COUNT; s++) {
        struct stranger *st = &strangers[s];
        st->fd = connect_ep(&e[st->target]);
        if (st->fd < 0)
            return;
        unsigned char b[256];
        size_t bl = 0;
        uint8_t wrong[16];
        switch (s) {
        case S_GARBAGE:
            for (bl = 0; bl < 64; bl++)
                b[bl] = (unsigned char)(bl * 37 + 11);
            break;
        case S_HTTP:
        case S_HTTP1:
            bl = (size_t)snprintf((char *)b, sizeof b,
                                  "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n",
                                  ntohs(e[st->target].port));
            break;
        case S_SECRET:
            memcpy(wrong, SECRET, 16);
            wrong[15] ^= 0x01;
            hello_bytes(b, 1, 2, wrong);
            bl = PB_TCP_HELLO_SIZE;
            break;
        case S_NOTPEER:
            hello_bytes(b, 0, 2, SECRET);
            bl = PB_TCP_HELLO_SIZE;
            break;
        case S_RANGE:
            hello_bytes(b, 99, 2, SECRET);
            bl = PB_TCP_HELLO_SIZE;
            break;
        case S_TOWHOM:
            hello_bytes(b, 0, 1, SECRET);
            bl = PB_TCP_HELLO_SIZE;
            break;
        case S_VERSION:
            hello_bytes(b, 1, 2, SECRET);
            b[4] = 7;
            bl = PB_TCP_HELLO_SIZE;
            break;
        case S_SILENT:
            bl = 0;
            break;
        }
        if (bl && send_all(st->fd, b, bl) < 0)
            return;
        if (!st->stays) {
            close(st->fd);
            st->fd = -1;
        }
    }
    strangers_ready = 1;
}

/* Drive a chain transfer 0 -> 1 -> 2 of NCHUNK chunks through 4-slot pools. */
#define NCHUNK 11
#define CHUNK_LEN(k) ((k) == NCHUNK - 1 ? 1000u : SLOT_SIZE)

static unsigned char chunk_byte(uint32_t k, uint32_t i)
{
    return (unsigned char)(k * 31 + i * 7 + (i >> 8));
}

struct xfer {
    int errors;
    char first_error[300];
    int arrived1, arrived2, sent0, sent1, bad_content, notified, notify_sent;
    uint32_t next0;           /* next chunk leader 0 puts */
    uint32_t cred0[64], ncred0; /* credits leader 0 holds from 1 */
    uint32_t cred1[64], ncred1; /* credits leader 1 holds from 2 */
    uint32_t wait1[64], nwait1; /* leader 1 slots arrived, waiting for a credit from 2 */
    unsigned char src[NCHUNK][SLOT_SIZE];
};

static void note_error(struct xfer *x, int who, const struct pb_event *ev)
{
    if (!x->errors++)
        snprintf(x->first_error, sizeof x->first_error, "leader %d: error from peer %d: %s", who, ev->peer,
                 ev->what);
}

static int content_ok(const unsigned char *m, uint32_t k, uint32_t len)
{
    if (k >= NCHUNK || len != CHUNK_LEN(k))
        return 0;
    for (uint32_t i = 0; i < len; i++)
        if (m[i] != chunk_byte(k, i))
            return 0;
    return 1;
}

static void run_chain(struct leader *L, struct xfer *x)
{
    for (uint32_t k = 0; k < NCHUNK; k++)
        for (uint32_t i = 0; i < SLOT_SIZE; i++)
            x->src[k][i] = chunk_byte(k, i);
    for (uint32_t s = 0; s < NSLOTS; s++) {
        if (L[1].t->ops->grant(L[1].t, 0, s) < 0 || L[2].t->ops->grant(L[2].t, 1, s) < 0)
            x->errors++;
    }
    double end = now_s() + 8;
    struct pb_event ev[32];
    while (now_s() < end && !x->errors && (x->arrived2 < NCHUNK || x->sent0 < NCHUNK || x->sent1 < NCHUNK || !x->notified)) {
        /* leader 0: put while it holds credits */
        while (x->ncred0 && x->next0 < NCHUNK) {
            uint32_t s = x->cred0[--x->ncred0], k = x->next0++;
            if (L[0].t->ops->put(L[0].t, 1, s, k, x->src[k], CHUNK_LEN(k), k) < 0)
                x->errors++;
        }
        for (int who = 0; who < 3; who++) {
            int n = L[who].t->ops->poll(L[who].t, ev, 32, who == 2 ? 20 : 0);
            for (int i = 0; i < n; i++) {
                const struct pb_event *e = &ev[i];
                switch (e->kind) {
                case PB_EV_ERROR:
                    note_error(x, who, e);
                    break;
                case PB_EV_CREDIT:
                    if (who == 0 && e->peer == 1 && x->ncred0 < 64)
                        x->cred0[x->ncred0++] = e->slot;
                    else if (who == 1 && e->peer == 2 && x->ncred1 < 64)
                        x->cred1[x->ncred1++] = e->slot;
                    else
                        x->errors++;
                    break;
                case PB_EV_ARRIVED: {
                    const unsigned char *m = L[who].pool.mem + (size_t)e->slot * SLOT_SIZE;
                    if (e->slot >= NSLOTS || !content_ok(m, e->tag, e->len)) {
                        x->bad_content++;
                        break;
                    }
                    if (who == 1 && e->peer == 0) {
                        x->arrived1++;
                        /* forward now if a credit is there, else the slot waits */
                        if (x->ncred1) {
                            uint32_t d = x->cred1[--x->ncred1];
                            if (L[1].t->ops->put(L[1].t, 2, d, e->tag, m, e->len, e->slot) < 0)
                                x->errors++;
                        } else {
                            /* keep the tag with the slot: encode as slot | tag << 8 */
                            x->wait1[x->nwait1++] = e->slot | e->tag << 8;
                        }
                    } else if (who == 2 && e->peer == 1) {
                        x->arrived2++;
                        if (L[2].t->ops->grant(L[2].t, 1, e->slot) < 0)
                            x->errors++;
                    } else {
                        x->errors++;
                    }
                    break;
                }
                case PB_EV_SENT:
                    if (who == 0)
                        x->sent0++;
                    else if (who == 1) {
                        x->sent1++;
                        /* the forwarded slot is free again: give it back to 0 */
                        if (L[1].t->ops->grant(L[1].t, 0, (uint32_t)e->cookie) < 0)
                            x->errors++;
                    } else
                        x->errors++;
                    break;
                case PB_EV_NOTIFY:
                    if (who == 1 && e->peer == 2 && e->tag == 0xabcdu)
                        x->notified++;
                    else
                        x->errors++;
                    break;
                }
            }
        }
        /* leader 1: forward waiting slots (slot | tag << 8) */
        while (x->nwait1 && x->ncred1) {
            uint32_t w = x->wait1[0], d = x->cred1[--x->ncred1];
            memmove(x->wait1, x->wait1 + 1, --x->nwait1 * sizeof x->wait1[0]);
            uint32_t s = w & 0xff, tag = w >> 8;
            const unsigned char *m = L[1].pool.mem + (size_t)s * SLOT_SIZE;
            if (L[1].t->ops->put(L[1].t, 2, d, tag, m, CHUNK_LEN(tag), s) < 0)
                x->errors++;
        }
        if (x->arrived2 == NCHUNK && x->sent1 == NCHUNK && !x->notify_sent) {
            if (L[2].t->ops->notify(L[2].t, 1, 0xabcdu) < 0)
                x->errors++;
            x->notify_sent = 1;
        }
    }
}

static void part1(void)
{
    struct xg g;
    struct leader L[3];
    xg_init(&g, 3);
    g.hook = strangers_hook;
    memset(L, 0, sizeof L);
    /* a chain: 0 - 1 - 2 */
    L[0].npeers = 1;
    L[0].peers[0] = 1;
    L[1].npeers = 2;
    L[1].peers[0] = 0;
    L[1].peers[1] = 2;
    L[2].npeers = 1;
    L[2].peers[0] = 1;

    cap_start();
    double t0 = now_s();
    for (int i = 0; i < 3; i++) {
        L[i].idx = i;
        L[i].m.g = &g;
        L[i].m.idx = i;
        pool_init(&L[i].pool);
        pthread_create(&L[i].th, NULL, open_thread, &L[i]);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(L[i].th, NULL);
    double setup = now_s() - t0;
    /* Strangers still connected must have been dropped. */
    int dropped[S_COUNT];
    for (int s = 0; s < S_COUNT; s++)
        dropped[s] = strangers[s].fd < 0 ? 1 : closed_by_peer(strangers[s].fd, 3000);
    cap_stop();

    ok(strangers_ready, "strangers connected to leaders 1 and 2 between the endpoint exchange and set-up");
    int all_open = L[0].t && L[1].t && L[2].t;
    ok(all_open, "set-up succeeded on all three leaders despite %d strangers (%.2f s)%s%s", S_COUNT, setup,
       all_open ? "" : ": ", all_open ? "" : (L[0].t ? (L[1].t ? L[2].err : L[1].err) : L[0].err));
    ok(setup < 4, "strangers did not stall set-up (%.2f s)", setup);
    for (int s = 0; s < S_COUNT; s++)
        ok(dropped[s], "stranger dropped: %s", strangers[s].desc);

    int rej = count_lines("rejected a data connection"), drop = count_lines("dropped a data connection");
    ok(rej + drop == S_COUNT, "one log line per stranger on stderr (%d rejected + %d dropped, want %d)", rej, drop,
       S_COUNT);
    ok(count_lines("bad magic") == 3, "garbage and HTTP requests logged as not p2pbcast connections (bad magic)");
    ok(count_lines("wrong job secret") == 1, "wrong secret logged as such");
    ok(count_lines("claiming to be leader0 (rank 0): not expected") == 1,
       "a right secret from a leader that is not a peer logged as not expected");
    ok(count_lines("addressed from 99 to 2") == 1, "a leader index out of range logged");
    ok(count_lines("addressed from 0 to 1, this is 2") == 1, "a hello addressed to another leader logged");
    ok(count_lines("protocol version 7") == 1, "a wrong protocol version logged");
    ok(count_lines("no greeting") == 1, "a connection without a greeting logged");
    ok(count_lines("leader2 (rank 2): rejected") + count_lines("leader2 (rank 2): dropped") == S_COUNT - 1 &&
           count_lines("leader1 (rank 1): rejected") == 1,
       "each log line names the leader that was attacked");

    if (all_open) {
        /* the listening sockets are closed once set-up is complete */
        int refused = 0;
        for (int i = 1; i < 3; i++) {
            struct ep e = { htonl(INADDR_LOOPBACK), ports[i], 1, { 0 } };
            int fd = connect_ep(&e);
            refused += fd < 0 && errno == ECONNREFUSED;
            if (fd >= 0)
                close(fd);
        }
        ok(refused == 2, "after set-up, connecting to the data ports is refused (listeners closed)");

        struct xfer *x = calloc(1, sizeof *x);
        run_chain(L, x);
        ok(x->errors == 0, "chain transfer: no transport error%s%s", x->errors ? ": " : "", x->first_error);
        ok(x->arrived1 == NCHUNK && x->arrived2 == NCHUNK && !x->bad_content,
           "chain 0 -> 1 -> 2: all %d chunks arrived intact at 1 (%d) and 2 (%d), %d bad", NCHUNK, x->arrived1,
           x->arrived2, x->bad_content);
        ok(x->sent0 == NCHUNK && x->sent1 == NCHUNK, "every put completed with PB_EV_SENT (%d, %d)", x->sent0,
           x->sent1);
        ok(x->notified == 1, "a notify from 2 reached 1");
        int guards = 1;
        for (int i = 0; i < 3; i++)
            guards &= guards_intact(&L[i].pool);
        ok(guards, "no byte written outside any pool");
        free(x);
    } else {
        for (int i = 0; i < 6; i++)
            ok(0, "skipped: set-up failed");
    }
    for (int i = 0; i < 3; i++) {
        if (L[i].t)
            L[i].t->ops->close(L[i].t);
        free(L[i].pool.base);
    }
    for (int s = 0; s < S_COUNT; s++)
        if (strangers[s].fd >= 0)
            close(strangers[s].fd);
    xg_fini(&g);
}

/* ---- part 2: a hostile peer that knows the secret ----------------------- */

struct session {
    struct xg g;
    struct leader real;   /* leader 1 */
    struct member imp_m;  /* the impostor, leader 0 */
    int fd;               /* impostor's connection to leader 1 */
};

/* Open leader 1 for real and connect the impostor by hand. 0 on success. */
static int session_open(struct session *S, char *why, size_t wl)
{
    memset(S, 0, sizeof *S);
    S->fd = -1;
    xg_init(&S->g, 2);
    S->real.idx = 1;
    S->real.npeers = 1;
    S->real.peers[0] = 0;
    S->real.m.g = &S->g;
    S->real.m.idx = 1;
    pool_init(&S->real.pool);
    pthread_create(&S->real.th, NULL, open_thread, &S->real);

    S->imp_m.g = &S->g;
    S->imp_m.idx = 0;
    struct ep mine = { htonl(INADDR_LOOPBACK), htons(9), 1, { 0 } }, all[2];
    int rc = xg_allgather(&S->imp_m, &mine, all, sizeof mine);
    if (rc == 0) {
        S->fd = connect_ep(&all[1]);
        unsigned char hb[PB_TCP_HELLO_SIZE];
        hello_bytes(hb, 0, 1, SECRET);
        if (S->fd < 0 || send_all(S->fd, hb, sizeof hb) < 0)
            rc = -1;
    }
    pthread_join(S->real.th, NULL);
    if (rc < 0 || !S->real.t) {
        snprintf(why, wl, "%s", S->real.t ? "impostor could not connect" : S->real.err);
        return -1;
    }
    return 0;
}

static void session_close(struct session *S)
{
    if (S->real.t)
        S->real.t->ops->close(S->real.t);
    if (S->fd >= 0)
        close(S->fd);
    free(S->real.pool.base);
    xg_fini(&S->g);
}

static int imp_send_hdr(struct session *S, uint8_t type, uint32_t slot, uint32_t tag, uint32_t len)
{
    unsigned char b[PB_TCP_HDR_SIZE];
    struct pb_tcp_hdr h = { type, slot, tag, len };
    pb_tcp_hdr_encode(b, &h);
    return send_all(S->fd, b, sizeof b);
}

/* Read one message from leader 1 as the impostor (header, payload into buf). */
static int imp_recv(struct session *S, struct pb_tcp_hdr *h, unsigned char *buf, size_t cap)
{
    unsigned char b[PB_TCP_HDR_SIZE];
    char why[160];
    if (recv_all(S->fd, b, sizeof b, 3000) < 0 ||
        pb_tcp_hdr_decode(b, NSLOTS, SLOT_SIZE, h, why, sizeof why) < 0)
        return -1;
    if (h->type == PB_TCP_DATA && (h->len > cap || recv_all(S->fd, buf, h->len, 3000) < 0))
        return -1;
    return 0;
}

/* Poll leader 1 until an event of `kind` (or an error) shows up. */
static int real_wait(struct session *S, enum pb_ev_kind kind, struct pb_event *out, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1000.0;
    struct pb_event ev[8];
    while (now_s() < end) {
        int n = S->real.t->ops->poll(S->real.t, ev, 8, 50);
        for (int i = 0; i < n; i++) {
            if (ev[i].kind == kind || ev[i].kind == PB_EV_ERROR) {
                *out = ev[i];
                return ev[i].kind == kind ? 0 : -1;
            }
        }
    }
    memset(out, 0, sizeof *out);
    snprintf(out->what, sizeof out->what, "timed out");
    return -1;
}

/* A legitimate exchange both ways: 1 grants slot 0 and 0 fills it; 0 grants
 * its slot 1 and 1 puts into it. Leaves slot 0 of leader 1 consumed. */
static int legit_exchange(struct session *S, char *why, size_t wl)
{
    struct pb_tcp_hdr h;
    struct pb_event ev;
    unsigned char payload[200], got[SLOT_SIZE];
    for (int i = 0; i < 200; i++)
        payload[i] = (unsigned char)(i ^ 0x5c);
    if (S->real.t->ops->grant(S->real.t, 0, 0) < 0 || imp_recv(S, &h, got, sizeof got) < 0 ||
        h.type != PB_TCP_CREDIT || h.slot != 0) {
        snprintf(why, wl, "no credit for slot 0 reached the impostor");
        return -1;
    }
    if (imp_send_hdr(S, PB_TCP_DATA, 0, 77, 100) < 0 || send_all(S->fd, payload, 100) < 0 ||
        real_wait(S, PB_EV_ARRIVED, &ev, 3000) < 0 || ev.peer != 0 || ev.slot != 0 || ev.tag != 77 ||
        ev.len != 100 || memcmp(S->real.pool.mem, payload, 100) != 0) {
        snprintf(why, wl, "legitimate data did not arrive: %s", ev.what);
        return -1;
    }
    if (imp_send_hdr(S, PB_TCP_CREDIT, 1, 0, 0) < 0 || real_wait(S, PB_EV_CREDIT, &ev, 3000) < 0 ||
        ev.peer != 0 || ev.slot != 1) {
        snprintf(why, wl, "the impostor's credit did not arrive: %s", ev.what);
        return -1;
    }
    if (S->real.t->ops->put(S->real.t, 0, 1, 5, payload, 200, 4242) < 0 ||
        real_wait(S, PB_EV_SENT, &ev, 3000) < 0 || ev.cookie != 4242 || imp_recv(S, &h, got, sizeof got) < 0 ||
        h.type != PB_TCP_DATA || h.slot != 1 || h.tag != 5 || h.len != 200 || memcmp(got, payload, 200) != 0) {
        snprintf(why, wl, "a put to the impostor did not arrive intact: %s", ev.what);
        return -1;
    }
    /* restore slot 0 to the fill pattern so later checks see only new writes */
    memset(S->real.pool.mem, FILL_BYTE, 100);
    return 0;
}

enum bad {
    B_NOT_GRANTED, B_CONSUMED, B_SLOT_RANGE, B_SLOT_HUGE, B_LEN_BEYOND, B_LEN_HUGE, B_TYPE, B_VERSION,
    B_CREDIT_RANGE, B_CREDIT_LEN, B_NOTIFY_LEN, B_CUT_HEADER, B_CUT_PAYLOAD, B_COUNT
};
static const struct {
    const char *desc;
    const char *expect; /* in ev.what */
} bads[B_COUNT] = {
    [B_NOT_GRANTED] = { "DATA for slot 2, never granted", "not granted" },
    [B_CONSUMED] = { "DATA for slot 0 again, already consumed", "not granted" },
    [B_SLOT_RANGE] = { "DATA for slot 4 of 4 (out of range)", "out of range" },
    [B_SLOT_HUGE] = { "DATA for slot 0xffffffff", "out of range" },
    [B_LEN_BEYOND] = { "DATA of slot size + 1 bytes into a granted slot", "out of range" },
    [B_LEN_HUGE] = { "DATA of 0xffffffff bytes into a granted slot", "out of range" },
    [B_TYPE] = { "a message of unknown type 9", "unknown message type" },
    [B_VERSION] = { "a header with version byte 2", "malformed header" },
    [B_CREDIT_RANGE] = { "a CREDIT for slot 4 of 4", "credit" },
    [B_CREDIT_LEN] = { "a CREDIT carrying a length", "credit" },
    [B_NOTIFY_LEN] = { "a NOTIFY carrying a length", "notice" },
    [B_CUT_HEADER] = { "a connection cut inside a header", "closed" },
    [B_CUT_PAYLOAD] = { "a connection cut inside a payload", "closed" },
};

static void part2_case(int b)
{
    struct session S;
    char why[400];
    if (session_open(&S, why, sizeof why) < 0) {
        ok(0, "hostile peer, %s: set-up failed: %s", bads[b].desc, why);
        session_close(&S);
        return;
    }
    if (legit_exchange(&S, why, sizeof why) < 0) {
        ok(0, "hostile peer, %s: legitimate exchange first: %s", bads[b].desc, why);
        session_close(&S);
        return;
    }
    struct pb_tcp_hdr h;
    unsigned char junk[8192], got[SLOT_SIZE];
    memset(junk, 0xee, sizeof junk);
    /* slot 3 is granted to the impostor for the cases that need a granted slot */
    if (S.real.t->ops->grant(S.real.t, 0, 3) < 0 || imp_recv(&S, &h, got, sizeof got) < 0 || h.slot != 3) {
        ok(0, "hostile peer, %s: second credit did not arrive", bads[b].desc);
        session_close(&S);
        return;
    }
    unsigned char raw[PB_TCP_HDR_SIZE];
    int sent = 0;
    switch (b) {
    case B_NOT_GRANTED:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, 2, 1, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_CONSUMED:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, 0, 1, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_SLOT_RANGE:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, NSLOTS, 1, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_SLOT_HUGE:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, UINT32_MAX, 1, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_LEN_BEYOND:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, 3, 1, SLOT_SIZE + 1) && !send_all(S.fd, junk, SLOT_SIZE + 1);
        break;
    case B_LEN_HUGE:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, 3, 1, UINT32_MAX) && !send_all(S.fd, junk, sizeof junk);
        break;
    case B_TYPE:
        sent = !imp_send_hdr(&S, 9, 0, 0, 0);
        break;
    case B_VERSION: {
        struct pb_tcp_hdr hh = { PB_TCP_CREDIT, 0, 0, 0 };
        pb_tcp_hdr_encode(raw, &hh);
        raw[1] = 2;
        sent = !send_all(S.fd, raw, sizeof raw);
        break;
    }
    case B_CREDIT_RANGE:
        sent = !imp_send_hdr(&S, PB_TCP_CREDIT, NSLOTS, 0, 0);
        break;
    case B_CREDIT_LEN:
        sent = !imp_send_hdr(&S, PB_TCP_CREDIT, 1, 0, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_NOTIFY_LEN:
        sent = !imp_send_hdr(&S, PB_TCP_NOTIFY, 1, 0, 64) && !send_all(S.fd, junk, 64);
        break;
    case B_CUT_HEADER: {
        struct pb_tcp_hdr hh = { PB_TCP_DATA, 3, 1, 100 };
        pb_tcp_hdr_encode(raw, &hh);
        sent = !send_all(S.fd, raw, 7);
        shutdown(S.fd, SHUT_WR);
        break;
    }
    case B_CUT_PAYLOAD:
        sent = !imp_send_hdr(&S, PB_TCP_DATA, 3, 1, 1000) && !send_all(S.fd, junk, 10);
        shutdown(S.fd, SHUT_WR);
        break;
    }
    /* Collect what leader 1 reports: exactly one error for peer 0, nothing else. */
    struct pb_event ev[8], err = { 0 };
    int nerr = 0, nother = 0;
    double end = now_s() + 3;
    while (now_s() < end && !nerr) {
        int n = S.real.t->ops->poll(S.real.t, ev, 8, 50);
        for (int i = 0; i < n; i++) {
            if (ev[i].kind == PB_EV_ERROR) {
                if (!nerr++)
                    err = ev[i];
            } else {
                nother++;
            }
        }
    }
    /* a little longer: no second error, no late arrival */
    for (int k = 0; k < 3; k++) {
        int n = S.real.t->ops->poll(S.real.t, ev, 8, 20);
        for (int i = 0; i < n; i++)
            ev[i].kind == PB_EV_ERROR ? nerr++ : nother++;
    }
    int untouched = guards_intact(&S.real.pool);
    for (uint32_t s = 0; s < NSLOTS; s++)
        if (s != 3 || b != B_CUT_PAYLOAD) /* only a granted slot may hold a partial payload */
            untouched &= slot_untouched(&S.real.pool, s);
    int put_refused = S.real.t->ops->put(S.real.t, 0, 1, 0, junk, 10, 1) < 0;
    int imp_dropped = closed_by_peer(S.fd, 2000);
    ok(sent && nerr == 1 && nother == 0 && err.peer == 0 && strstr(err.what, bads[b].expect) && untouched &&
           put_refused && imp_dropped,
       "hostile peer, %s: PB_EV_ERROR for peer %d (\"%s\"), %d other events, pool %s, link %s", bads[b].desc,
       err.peer, err.what, nother, untouched ? "untouched" : "WRITTEN OUTSIDE THE GRANT",
       put_refused && imp_dropped ? "closed" : "still open");
    session_close(&S);
}

static void part2(void)
{
    struct session S;
    char why[400];
    int okopen = session_open(&S, why, sizeof why) == 0;
    ok(okopen, "hostile peer: set-up with a hand-made hello%s%s", okopen ? "" : ": ", okopen ? "" : why);
    if (okopen) {
        int r = legit_exchange(&S, why, sizeof why);
        ok(r == 0, "hostile peer: a legitimate exchange both ways works%s%s", r ? ": " : "", r ? why : "");
    }
    session_close(&S);
    for (int b = 0; b < B_COUNT; b++)
        part2_case(b);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    part1();
    part2();
    return tap_done();
}
