/* test_wire.c — everything parsed off the wire: tcp hello and headers, the
 * chunk trailer; malformed input must be refused, never trusted. */
#include "digest.h"
#include "plan.h"
#include "tap.h"
#include "tcp_wire.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    uint8_t secret[16];
    for (int i = 0; i < 16; i++)
        secret[i] = (uint8_t)(i * 7 + 1);
    unsigned char b[PB_TCP_HELLO_SIZE];
    char why[160];
    struct pb_tcp_hello h = { 2, 5, { 0 } }, out;
    memcpy(h.secret, secret, 16);
    pb_tcp_hello_encode(b, &h);
    ok(pb_tcp_hello_decode(b, 5, 8, secret, &out, why, sizeof why) == 0 && out.from == 2 && out.to == 5,
       "hello round trip");
    ok(pb_tcp_hello_decode(b, 4, 8, secret, &out, why, sizeof why) < 0, "hello for another leader: %s", why);
    ok(pb_tcp_hello_decode(b, 5, 2, secret, &out, why, sizeof why) < 0, "hello from out of range: %s", why);
    unsigned char bad[PB_TCP_HELLO_SIZE];
    memcpy(bad, b, sizeof bad);
    bad[20] ^= 1;
    ok(pb_tcp_hello_decode(bad, 5, 8, secret, &out, why, sizeof why) < 0 && strstr(why, "secret"),
       "wrong secret: %s", why);
    memcpy(bad, b, sizeof bad);
    bad[0] = 'G';
    ok(pb_tcp_hello_decode(bad, 5, 8, secret, &out, why, sizeof why) < 0 && strstr(why, "magic"),
       "garbage (an HTTP request): %s", why);
    memcpy(bad, b, sizeof bad);
    bad[4] = 9;
    ok(pb_tcp_hello_decode(bad, 5, 8, secret, &out, why, sizeof why) < 0, "wrong version: %s", why);
    h.from = 5;
    pb_tcp_hello_encode(b, &h);
    ok(pb_tcp_hello_decode(b, 5, 8, secret, &out, why, sizeof why) < 0, "hello from itself refused");

    unsigned char hb[PB_TCP_HDR_SIZE];
    struct pb_tcp_hdr hd = { PB_TCP_DATA, 3, 99, 4096 }, ho;
    pb_tcp_hdr_encode(hb, &hd);
    ok(pb_tcp_hdr_decode(hb, 8, 4096, &ho, why, sizeof why) == 0 && ho.slot == 3 && ho.tag == 99 && ho.len == 4096,
       "data header round trip");
    ok(pb_tcp_hdr_decode(hb, 3, 4096, &ho, why, sizeof why) < 0, "slot out of range: %s", why);
    ok(pb_tcp_hdr_decode(hb, 8, 4095, &ho, why, sizeof why) < 0, "length beyond the slot: %s", why);
    hd = (struct pb_tcp_hdr){ PB_TCP_CREDIT, 7, 0, 0 };
    pb_tcp_hdr_encode(hb, &hd);
    ok(pb_tcp_hdr_decode(hb, 8, 4096, &ho, why, sizeof why) == 0, "credit ok");
    ok(pb_tcp_hdr_decode(hb, 7, 4096, &ho, why, sizeof why) < 0, "credit out of range");
    hd = (struct pb_tcp_hdr){ PB_TCP_CREDIT, 1, 0, 5 };
    pb_tcp_hdr_encode(hb, &hd);
    ok(pb_tcp_hdr_decode(hb, 8, 4096, &ho, why, sizeof why) < 0, "credit with a length refused");
    hd = (struct pb_tcp_hdr){ 77, 1, 0, 0 };
    pb_tcp_hdr_encode(hb, &hd);
    ok(pb_tcp_hdr_decode(hb, 8, 4096, &ho, why, sizeof why) < 0 && strstr(why, "unknown"), "unknown type: %s", why);

    /* Random headers: whatever is accepted must be within bounds. */
    srand(12345);
    int sound = 1, accepted = 0;
    for (int i = 0; i < 200000 && sound; i++) {
        for (int j = 0; j < PB_TCP_HDR_SIZE; j++)
            hb[j] = (unsigned char)(rand() & (j < 4 ? 0x03 : 0xff));
        if (pb_tcp_hdr_decode(hb, 8, 4096, &ho, why, sizeof why) == 0) {
            accepted++;
            sound = ho.type >= 1 && ho.type <= 3 && (ho.type == PB_TCP_NOTIFY || ho.slot < 8) && ho.len <= 4096;
        }
    }
    ok(sound, "200000 random headers: every accepted one is in bounds (%d accepted)", accepted);

    struct pb_trailer t = { 0x1122334455667788ull, 42, 4096, PB_TRAILER_MAGIC, 0 }, t2;
    unsigned char tb[PB_TRAILER_SIZE];
    pb_trailer_put(tb, &t);
    pb_trailer_get(tb, &t2);
    ok(!memcmp(&t, &t2, sizeof t) && tb[0] == 0x88, "trailer round trip, little-endian");

    unsigned char data[1000];
    memset(data, 'x', sizeof data);
    uint64_t h1 = pb_chunk_hash(data, sizeof data);
    data[500] ^= 1;
    ok(pb_chunk_hash(data, sizeof data) != h1, "one flipped bit changes the chunk hash");

    struct pb_manifest m1, m2, m3;
    pb_manifest_init(&m1);
    pb_manifest_init(&m2);
    pb_manifest_init(&m3);
    for (uint64_t k = 0; k < 10; k++)
        pb_manifest_add(&m1, k, k * 31);
    for (uint64_t k = 10; k-- > 0;)
        pb_manifest_add(&m2, k, k * 31);
    for (uint64_t k = 0; k < 10; k++)
        pb_manifest_add(&m3, k == 3 ? 4 : k == 4 ? 3 : k, k * 31);
    ok(pb_manifest_final(&m1, 10) == pb_manifest_final(&m2, 10), "manifest does not depend on arrival order");
    ok(pb_manifest_final(&m1, 10) != pb_manifest_final(&m3, 10), "manifest notices two swapped chunks");
    ok(pb_manifest_final(&m1, 10) != pb_manifest_final(&m1, 11), "manifest includes the file size");
    return tap_done();
}
