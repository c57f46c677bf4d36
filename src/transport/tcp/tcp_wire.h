/* tcp_wire.h — the tcp transport's wire format, kept apart so it can be
 * unit-tested and fuzzed: every byte that comes off a socket goes through
 * these decoders first. All fields little-endian. */
#ifndef P2PBCAST_TCP_WIRE_H
#define P2PBCAST_TCP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define PB_TCP_HELLO_SIZE 32
#define PB_TCP_HELLO_MAGIC 0x48504232u /* "2BPH" */
#define PB_TCP_VERSION 1
#define PB_TCP_HDR_SIZE 16

enum pb_tcp_type { PB_TCP_DATA = 1, PB_TCP_CREDIT = 2, PB_TCP_NOTIFY = 3 };

/* First message on every connection, from the connecting side. */
struct pb_tcp_hello {
    uint32_t from;           /* sender's leader index */
    uint32_t to;             /* intended receiver's leader index */
    uint8_t secret[16];      /* the job's secret */
};

struct pb_tcp_hdr {
    uint8_t type;
    uint32_t slot;           /* DATA, CREDIT: slot; NOTIFY: code */
    uint32_t tag;            /* DATA */
    uint32_t len;            /* DATA: payload bytes that follow */
};

void pb_tcp_hello_encode(unsigned char out[PB_TCP_HELLO_SIZE], const struct pb_tcp_hello *h);
/* 0 if well-formed, addressed to self, from a leader in range and carrying
 * the secret; -1 with a reason otherwise. */
int pb_tcp_hello_decode(const unsigned char in[PB_TCP_HELLO_SIZE], uint32_t self, uint32_t nleaders,
                        const uint8_t secret[16], struct pb_tcp_hello *h, char *why, size_t whylen);

void pb_tcp_hdr_encode(unsigned char out[PB_TCP_HDR_SIZE], const struct pb_tcp_hdr *h);
/* 0 if the header is acceptable for a pool of nslots slots of slot_size
 * bytes; -1 with a reason otherwise. */
int pb_tcp_hdr_decode(const unsigned char in[PB_TCP_HDR_SIZE], uint32_t nslots, size_t slot_size,
                      struct pb_tcp_hdr *h, char *why, size_t whylen);

#endif
