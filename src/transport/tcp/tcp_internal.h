/* tcp_internal.h — what the files of the tcp transport share: the
 * transport object (struct tcp), its connections and their send queues, and
 * the functions one file calls in another. Private to src/transport/tcp. */
#ifndef PB_TCP_INTERNAL_H
#define PB_TCP_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tcp_wire.h"
#include "tcp_probe.h"
#include "clock.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct outmsg {
    unsigned char hdr[PB_TCP_HDR_SIZE];
    const unsigned char *buf;
    uint32_t len;
    uint32_t off;      /* bytes of header + payload already written */
    int data;          /* report PB_EV_SENT with cookie when done */
    uint64_t cookie;
};

struct conn {
    int fd;
    int peer;
    int rail;
    int dead;
    int want_out;      /* EPOLLOUT armed */
    struct outmsg *q;  /* ring of queued messages */
    uint32_t qcap, qhead, qlen;
    uint64_t qbytes;   /* queued here, not yet written to the socket */
    unsigned char hdr[PB_TCP_HDR_SIZE];
    uint32_t hgot;
    struct pb_tcp_hdr cur;
    int in_payload;
    uint32_t pgot;
};

struct tcp {
    struct pb_transport base;
    struct pb_transport_cfg cfg;
    int epfd;
    struct conn *conns;
    int nconns;
    int *conn_of;      /* leader index * nrails + rail -> conns index, -1 */
    int nrails;
    struct pb_tcp_rail rails[PB_TCP_MAX_RAILS];
    int *owner;        /* our slot -> leader it is granted to, -1 */
    struct pb_event *evq;
    uint32_t evcap, evhead, evlen;
    int lost;          /* an event could not be queued (out of memory) */
};

/* Names for messages, used on both sides: inline, so that these short
 * names stay private to the tcp files. */
static inline const char *peer_name(const struct tcp *t, int leader)
{
    return leader >= 0 && t->cfg.names ? t->cfg.names[leader] : "?";
}

static inline const char *self_name(const struct tcp *t)
{
    return peer_name(t, t->cfg.self);
}

/* tcp_data.c */
int tcp_put(struct pb_transport *tp, int peer, uint32_t slot, uint32_t tag, const void *buf,
            uint32_t len, uint64_t cookie);
int tcp_grant(struct pb_transport *tp, int peer, uint32_t slot);
int tcp_notify(struct pb_transport *tp, int peer, uint32_t code);
int tcp_poll(struct pb_transport *tp, struct pb_event *out, int max, int timeout_ms);
int tcp_close(struct pb_transport *tp);

#endif /* PB_TCP_INTERNAL_H */
