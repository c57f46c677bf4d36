/* tcp_wire.c — encode and bounds-check the tcp transport's messages. */
#include "tcp_wire.h"

#include <stdio.h>
#include <string.h>

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void pb_tcp_hello_encode(unsigned char out[PB_TCP_HELLO_SIZE], const struct pb_tcp_hello *h)
{
    put32(out, PB_TCP_HELLO_MAGIC);
    put32(out + 4, PB_TCP_VERSION);
    put32(out + 8, h->from);
    put32(out + 12, h->to);
    memcpy(out + 16, h->secret, 16);
}

int pb_tcp_hello_decode(const unsigned char in[PB_TCP_HELLO_SIZE], uint32_t self, uint32_t nleaders,
                        const uint8_t secret[16], struct pb_tcp_hello *h, char *why, size_t whylen)
{
    if (get32(in) != PB_TCP_HELLO_MAGIC) {
        snprintf(why, whylen, "not a p2pbcast connection (bad magic)");
        return -1;
    }
    if (get32(in + 4) != PB_TCP_VERSION) {
        snprintf(why, whylen, "protocol version %u, expected %u", get32(in + 4), PB_TCP_VERSION);
        return -1;
    }
    /* Compare the secret in constant time: no early exit on a mismatch. */
    unsigned diff = 0;
    for (int i = 0; i < 16; i++)
        diff |= (unsigned)(in[16 + i] ^ secret[i]);
    if (diff) {
        snprintf(why, whylen, "wrong job secret (not a peer of this job)");
        return -1;
    }
    h->from = get32(in + 8);
    h->to = get32(in + 12);
    memcpy(h->secret, in + 16, 16);
    if (h->to != self || h->from >= nleaders || h->from == self) {
        snprintf(why, whylen, "addressed from %u to %u, this is %u of %u", h->from, h->to, self, nleaders);
        return -1;
    }
    return 0;
}

void pb_tcp_hdr_encode(unsigned char out[PB_TCP_HDR_SIZE], const struct pb_tcp_hdr *h)
{
    out[0] = h->type;
    out[1] = PB_TCP_VERSION;
    out[2] = out[3] = 0;
    put32(out + 4, h->slot);
    put32(out + 8, h->tag);
    put32(out + 12, h->len);
}

int pb_tcp_hdr_decode(const unsigned char in[PB_TCP_HDR_SIZE], uint32_t nslots, size_t slot_size,
                      struct pb_tcp_hdr *h, char *why, size_t whylen)
{
    h->type = in[0];
    h->slot = get32(in + 4);
    h->tag = get32(in + 8);
    h->len = get32(in + 12);
    if (in[1] != PB_TCP_VERSION || in[2] || in[3]) {
        snprintf(why, whylen, "malformed header (version %u)", in[1]);
        return -1;
    }
    switch (h->type) {
    case PB_TCP_DATA:
        if (h->slot >= nslots || h->len > slot_size) {
            snprintf(why, whylen, "data for slot %u, %u bytes: out of range (%u slots of %zu bytes)", h->slot,
                     h->len, nslots, slot_size);
            return -1;
        }
        return 0;
    case PB_TCP_CREDIT:
        if (h->slot >= nslots || h->tag || h->len) {
            snprintf(why, whylen, "credit for slot %u out of range or malformed", h->slot);
            return -1;
        }
        return 0;
    case PB_TCP_NOTIFY:
        if (h->tag || h->len) {
            snprintf(why, whylen, "malformed notice");
            return -1;
        }
        return 0;
    default:
        snprintf(why, whylen, "unknown message type %u", h->type);
        return -1;
    }
}
