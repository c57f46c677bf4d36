/* tcp_copy - the plain sender/receiver pair behind the naive single-sender
 * baseline and the single-stream bandwidth measurement of the netbed.
 *
 *   tcp_copy recv [--no-io] ADDR PORT DEST
 *       listen on ADDR:PORT, accept one connection, write the stream to DEST
 *       (%h = hostname), fsync, acknowledge, exit.
 *   tcp_copy send [--no-io --size BYTES] SOURCE HOST:PORT [HOST:PORT...]
 *       send SOURCE to each receiver in turn, one after another, each time
 *       waiting for its acknowledgement (its data is on disk); prints
 *       RESULT method=tcp_send receivers=K bytes=F seconds=T mbit=...
 *
 * Wire format: 8-byte big-endian length, the bytes, then a 1-byte ack from
 * the receiver ('K' ok, 'E' error).  One reused 4 MiB buffer on each side.
 * --no-io: the sender sends BYTES from memory (SOURCE is "-"), the receiver
 * discards them; measures the link and TCP alone.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (4u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *what, const char *arg)
{
    fprintf(stderr, "tcp_copy: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    exit(1);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EPIPE;
            return -1;
        }
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    if (*end == 'K' || *end == 'k') v <<= 10, end++;
    else if (*end == 'M' || *end == 'm') v <<= 20, end++;
    else if (*end == 'G' || *end == 'g') v <<= 30, end++;
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int do_recv(int no_io, const char *addr, const char *port, const char *dest_t)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai;
    char host[256] = "localhost", dest[4096];
    int one = 1, rc;

    gethostname(host, sizeof host - 1);
    size_t o = 0;
    for (const char *p = dest_t; *p && o + 260 < sizeof dest; p++) {
        if (p[0] == '%' && p[1] == 'h') {
            o += (size_t)snprintf(dest + o, sizeof dest - o, "%s", host);
            p++;
        } else {
            dest[o++] = *p;
        }
    }
    dest[o] = '\0';

    if ((rc = getaddrinfo(addr, port, &hints, &ai)) != 0) {
        fprintf(stderr, "tcp_copy: %s:%s: %s\n", addr, port, gai_strerror(rc));
        return 1;
    }
    int ls = socket(ai->ai_family, SOCK_STREAM, 0);
    if (ls < 0)
        fail("socket", NULL);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, ai->ai_addr, ai->ai_addrlen) != 0 || listen(ls, 1) != 0)
        fail("bind/listen", addr);
    freeaddrinfo(ai);
    /* Tell a waiting script that the port is open. */
    printf("LISTENING %s:%s\n", addr, port);
    fflush(stdout);

    int s = accept(ls, NULL, NULL);
    if (s < 0)
        fail("accept", addr);
    close(ls);
    int fd = -1;
    if (!no_io && (fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
        int e = errno;
        write_all(s, "E", 1);
        errno = e;
        fail("create", dest);
    }
    unsigned char hdr[8];
    if (read_all(s, hdr, 8) != 0)
        fail("read header from", addr);
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        total = total << 8 | hdr[i];
    char *buf = malloc(BUFSZ);
    if (!buf)
        fail("malloc", NULL);
    double t0 = now();
    for (uint64_t got = 0; got < total;) {
        size_t want = total - got < BUFSZ ? (size_t)(total - got) : BUFSZ;
        ssize_t r = read(s, buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EPIPE;
            fail("receive", addr);
        }
        if (fd >= 0 && write_all(fd, buf, (size_t)r) != 0) {
            write_all(s, "E", 1);
            fail("write", dest);
        }
        got += (uint64_t)r;
    }
    if (fd >= 0 && (fsync(fd) != 0 || close(fd) != 0)) {
        write_all(s, "E", 1);
        fail("fsync", dest);
    }
    if (write_all(s, "K", 1) != 0)
        fail("ack", addr);
    double dt = now() - t0;
    printf("RESULT method=tcp_recv host=%s bytes=%" PRIu64 " seconds=%.6f\n", host, total, dt);
    close(s);
    free(buf);
    return 0;
}

static int connect_retry(const char *hp)
{
    char h[256];
    const char *colon = strrchr(hp, ':');
    if (!colon || (size_t)(colon - hp) >= sizeof h) {
        fprintf(stderr, "tcp_copy: bad HOST:PORT %s\n", hp);
        exit(2);
    }
    memcpy(h, hp, (size_t)(colon - hp));
    h[colon - hp] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(h, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "tcp_copy: %s: %s\n", hp, gai_strerror(rc));
        exit(1);
    }
    /* The receiver may still be starting: retry for about 10 s. */
    for (int i = 0; i < 200; i++) {
        int s = socket(ai->ai_family, SOCK_STREAM, 0);
        if (s < 0)
            fail("socket", NULL);
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(ai);
            return s;
        }
        close(s);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail("connect", hp);
    return -1;
}

static int do_send(int no_io, uint64_t size, const char *src, int nrecv, char **recv)
{
    char *buf = malloc(BUFSZ);
    if (!buf)
        fail("malloc", NULL);
    memset(buf, 0x5a, BUFSZ); /* first touch outside the timing */
    uint64_t total = size;
    if (!no_io) {
        struct stat st;
        if (stat(src, &st) != 0)
            fail("stat", src);
        total = (uint64_t)st.st_size;
    }
    double t0 = now();
    for (int k = 0; k < nrecv; k++) {
        int fd = -1;
        if (!no_io && (fd = open(src, O_RDONLY)) < 0)
            fail("open", src);
        int s = connect_retry(recv[k]);
        unsigned char hdr[8];
        for (int i = 0; i < 8; i++)
            hdr[i] = (unsigned char)(total >> (56 - 8 * i));
        if (write_all(s, hdr, 8) != 0)
            fail("send header to", recv[k]);
        for (uint64_t off = 0; off < total;) {
            size_t n = total - off < BUFSZ ? (size_t)(total - off) : BUFSZ;
            if (fd >= 0 && read_all(fd, buf, n) != 0)
                fail("read", src);
            if (write_all(s, buf, n) != 0)
                fail("send to", recv[k]);
            off += n;
        }
        char ack = 0;
        if (read_all(s, &ack, 1) != 0 || ack != 'K') {
            fprintf(stderr, "tcp_copy: receiver %s failed (%s)\n", recv[k],
                    ack == 'E' ? "its write failed" : "no acknowledgement");
            return 1;
        }
        close(s);
        if (fd >= 0)
            close(fd);
    }
    double dt = now() - t0;
    printf("RESULT method=tcp_send receivers=%d bytes=%" PRIu64 " seconds=%.6f mbit=%.2f\n", nrecv, total, dt,
           dt > 0 ? (double)total * nrecv * 8 / dt / 1e6 : 0.0);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int no_io = 0, i = 2;
    uint64_t size = 0;

    if (argc < 2)
        goto usage;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--no-io"))
            no_io = 1;
        else if (!strcmp(argv[i], "--size") && i + 1 < argc && !parse_size(argv[i + 1], &size))
            i++;
        else
            goto usage;
    }
    if (!strcmp(argv[1], "recv") && argc - i == 3)
        return do_recv(no_io, argv[i], argv[i + 1], argv[i + 2]);
    if (!strcmp(argv[1], "send") && argc - i >= 2 && (!no_io || size > 0))
        return do_send(no_io, size, argv[i], argc - i - 1, argv + i + 1);
usage:
    fputs("usage: tcp_copy recv [--no-io] ADDR PORT DEST\n"
          "       tcp_copy send [--no-io --size BYTES] SOURCE|- HOST:PORT...\n", stderr);
    return 2;
}
