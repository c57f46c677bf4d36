/* test_rails.c — the tcp rails' pure parts: --tcp-if lists (names, CIDRs,
 * errors), the root's choice of rails from every node's report, and the
 * split of a link's bytes between rails of unequal rates. */
#include "tap.h"
#include "tcp_rails.h"

#include <arpa/inet.h>
#include <string.h>

static uint32_t ip(const char *s)
{
    struct in_addr a;
    inet_pton(AF_INET, s, &a);
    return a.s_addr;
}

static void parsing(void)
{
    struct pb_tcp_if_spec sp[PB_TCP_MAX_RAILS];
    char err[200];
    int n = pb_tcp_if_parse("eth1", sp, PB_TCP_MAX_RAILS, err, sizeof err);
    ok(n == 1 && !sp[0].cidr && !strcmp(sp[0].name, "eth1"), "one name");
    n = pb_tcp_if_parse("ib0,10.1.0.0/16,eth2", sp, PB_TCP_MAX_RAILS, err, sizeof err);
    ok(n == 3 && !strcmp(sp[0].name, "ib0") && sp[1].cidr && sp[1].net == ip("10.1.0.0") &&
           sp[1].mask == ip("255.255.0.0") && !strcmp(sp[2].name, "eth2"),
       "names and a CIDR, in order");
    n = pb_tcp_if_parse("10.1.2.3/24", sp, PB_TCP_MAX_RAILS, err, sizeof err);
    ok(n == 1 && sp[0].net == ip("10.1.2.0") && sp[0].mask == ip("255.255.255.0"), "a CIDR's host bits are masked");
    n = pb_tcp_if_parse("0.0.0.0/0", sp, PB_TCP_MAX_RAILS, err, sizeof err);
    ok(n == 1 && sp[0].mask == 0 && sp[0].net == 0, "/0 matches everything");

    static const struct {
        const char *in, *says;
    } bad[] = {
        { "", "empty" },
        { "eth1,", "empty" },
        { ",eth1", "empty" },
        { "eth1,,eth2", "empty" },
        { "10.0.0.0/33", "not a valid IPv4 CIDR" },
        { "10.0.0/8", "not a valid IPv4 CIDR" },
        { "10.0.0.0/", "not a valid IPv4 CIDR" },
        { "10.0.0.0/8x", "not a valid IPv4 CIDR" },
        { "eth1,eth1", "named twice" },
        { "10.0.0.0/8,10.1.0.0/8", "named twice" },
        { "a,b,c,d,e", "more than 4" },
        { "averyveryverylongname", "at most 15 characters" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        n = pb_tcp_if_parse(bad[i].in, sp, PB_TCP_MAX_RAILS, err, sizeof err);
        ok(n == -1 && strstr(err, bad[i].says), "'%s' refused: %s", bad[i].in, err);
    }
}

static struct pb_tcp_rail_report report(int n, const uint64_t *key, const uint32_t *kbit)
{
    struct pb_tcp_rail_report r;
    memset(&r, 0, sizeof r);
    r.n = (uint32_t)n;
    for (int i = 0; i < n; i++)
        r.key[i] = key[i], r.kbit[i] = kbit[i];
    return r;
}

static void deciding(void)
{
    struct pb_tcp_rail_choice c;
    /* a slow default route (key 1) and a fast fabric (key 2) on every node */
    struct pb_tcp_rail_report all[3] = {
        report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 20000, 150000 }),
        report(2, (uint64_t[]){ 2, 1 }, (uint32_t[]){ 140000, 21000 }),
        report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 19000, 160000 }),
    };
    pb_tcp_rails_decide(all, 3, 0, &c);
    ok(c.n == 1 && c.key[0] == 2 && c.kbit[0] == 140000, "the fast rail alone, at the slowest node's rate");
    pb_tcp_rails_decide(all, 3, 1, &c);
    ok(c.n == 2 && c.key[0] == 1 && c.key[1] == 2, "an explicit list keeps every rail, in its order");

    /* two similar rails: both, the faster first */
    all[0] = report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 100000, 150000 });
    all[1] = report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 110000, 150000 });
    all[2] = report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 120000, 145000 });
    pb_tcp_rails_decide(all, 3, 0, &c);
    ok(c.n == 2 && c.key[0] == 2 && c.key[1] == 1 && c.kbit[0] == 145000 && c.kbit[1] == 100000,
       "two rails of similar rate: both, fastest first");

    /* a rail one node lacks, or where a probe brought nothing, is not used */
    all[2] = report(1, (uint64_t[]){ 1 }, (uint32_t[]){ 120000 });
    pb_tcp_rails_decide(all, 3, 0, &c);
    ok(c.n == 1 && c.key[0] == 1, "a rail one node lacks is not used");
    all[2] = report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 120000, 0 });
    pb_tcp_rails_decide(all, 3, 0, &c);
    ok(c.n == 1 && c.key[0] == 1, "a rail where one probe brought nothing is not used");

    /* nothing in common: no rail (the transport falls back to one interface) */
    all[2] = report(1, (uint64_t[]){ 7 }, (uint32_t[]){ 120000 });
    pb_tcp_rails_decide(all, 3, 0, &c);
    ok(c.n == 0, "no network shared by all: no rail");
    pb_tcp_rails_decide(all, 1, 0, &c);
    ok(c.n == 2, "a single node keeps its own rails");
}

/* Placement's send rates from the same probe: leader l's is what its
 * successor measured from it, summed over the chosen rails. */
static void send_rates(void)
{
    struct pb_tcp_rail_report all[3] = {
        report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 150000, 150000 }),
        report(2, (uint64_t[]){ 2, 1 }, (uint32_t[]){ 150000, 150000 }),
        report(2, (uint64_t[]){ 1, 2 }, (uint32_t[]){ 150000, 150000 }),
    };
    /* measured, per reporter: from its predecessor on rail key 1 / key 2 */
    all[0].measured[0] = 100, all[0].measured[1] = 200;  /* from leader 2 */
    all[1].measured[0] = 30, all[1].measured[1] = 10;    /* from leader 0: key 2 first */
    all[2].measured[0] = 50, all[2].measured[1] = 60;    /* from leader 1 */
    struct pb_tcp_rail_choice both = { 2, { 150000, 150000 }, { 2, 1 } }, one = { 1, { 150000 }, { 2 } },
                              none = { 0, { 0 }, { 0 } };
    uint32_t k[3];
    pb_tcp_rails_send_rates(all, 3, &both, k);
    ok(k[0] == 40 && k[1] == 110 && k[2] == 300, "send rates: the successor's measure, summed over both rails");
    pb_tcp_rails_send_rates(all, 3, &one, k);
    ok(k[0] == 30 && k[1] == 60 && k[2] == 200, "send rates: only the chosen rail counts");
    pb_tcp_rails_send_rates(all, 3, &none, k);
    ok(k[0] == 30 && k[1] == 50 && k[2] == 100, "send rates: no rail chosen: each report's first (the default route's)");
}

/* Send count chunks of len bytes over rails of the given rates; count how
 * many each rail took. */
static void split(const uint32_t *rate, int n, int count, uint64_t len, int *took)
{
    uint64_t sent[PB_TCP_MAX_RAILS] = { 0 };
    for (int i = 0; i < n; i++)
        took[i] = 0;
    for (int k = 0; k < count; k++) {
        int r = pb_tcp_rail_pick(sent, rate, n, len);
        sent[r] += len;
        took[r]++;
    }
}

static void splitting(void)
{
    int took[PB_TCP_MAX_RAILS];
    split((uint32_t[]){ 100 }, 1, 50, 65536, took);
    ok(took[0] == 50, "one rail takes everything");
    split((uint32_t[]){ 150000, 150000 }, 2, 1000, 65536, took);
    ok(took[0] == 500 && took[1] == 500, "equal rates: half each (%d, %d)", took[0], took[1]);
    split((uint32_t[]){ 50000, 150000 }, 2, 400, 65536, took);
    ok(took[0] >= 99 && took[0] <= 101 && took[1] == 400 - took[0], "rates 1:3: a quarter and three quarters (%d, %d)",
       took[0], took[1]);
    split((uint32_t[]){ 10, 20, 30, 40 }, 4, 1000, 4096, took);
    ok(took[0] >= 99 && took[0] <= 101 && took[1] >= 199 && took[1] <= 201 && took[2] >= 299 && took[2] <= 301 &&
           took[3] >= 399 && took[3] <= 401,
       "four rails 1:2:3:4 (%d, %d, %d, %d)", took[0], took[1], took[2], took[3]);
    /* the split holds at every point, not only at the end */
    uint64_t sent[2] = { 0, 0 };
    int worst = 0;
    for (int k = 0; k < 300; k++) {
        int r = pb_tcp_rail_pick(sent, (uint32_t[]){ 1, 2 }, 2, 1000);
        sent[r] += 1000;
        long d = (long)(sent[1] - 2 * sent[0]);
        d = d < 0 ? -d : d;
        worst = d > worst ? (int)d : worst;
    }
    ok(worst <= 2000, "1:2 stays within a chunk or two of its share throughout (worst %d bytes)", worst);
    /* a rate of 0 (unknown) counts as the lowest, never as a divide by zero */
    split((uint32_t[]){ 0, 1000 }, 2, 100, 1, took);
    ok(took[0] <= 1 && took[1] >= 99, "rate 0 is the slowest rail (%d, %d)", took[0], took[1]);
    /* chunks of unequal length: bytes, not chunks, follow the rates */
    sent[0] = sent[1] = 0;
    for (int k = 0; k < 1000; k++) {
        uint64_t len = k % 3 == 0 ? 65536 : 1000;
        int r = pb_tcp_rail_pick(sent, (uint32_t[]){ 1, 1 }, 2, len);
        sent[r] += len;
    }
    long diff = (long)sent[0] - (long)sent[1];
    ok(diff <= 65536 && diff >= -65536, "bytes, not chunks, are balanced (%llu vs %llu)", (unsigned long long)sent[0],
       (unsigned long long)sent[1]);
}

/* The data path picks by backlog (queued + unacknowledged bytes), so the
 * split follows the rates the rails really drain at, not the probe's
 * estimate. Simulated: rails draining at true[] bytes per tick, the picker
 * told est[]; at most window bytes in flight, as the slots allow. Returns
 * the ticks taken; took[] the bytes each rail carried. */
static int drain(const uint32_t *truth, const uint32_t *est, int n, int count, uint64_t len, uint64_t window,
                 uint64_t *took)
{
    uint64_t backlog[PB_TCP_MAX_RAILS] = { 0 };
    int ticks = 0, put = 0;
    for (int i = 0; i < n; i++)
        took[i] = 0;
    for (;;) {
        uint64_t inflight = 0;
        for (int i = 0; i < n; i++)
            inflight += backlog[i];
        while (put < count && inflight + len <= window) {
            int r = pb_tcp_rail_pick(backlog, est, n, len);
            backlog[r] += len;
            took[r] += len;
            inflight += len;
            put++;
        }
        if (put == count && inflight == 0)
            return ticks;
        for (int i = 0; i < n; i++)
            backlog[i] -= backlog[i] < truth[i] ? backlog[i] : truth[i];
        ticks++;
    }
}

static void draining(void)
{
    uint64_t took[PB_TCP_MAX_RAILS];
    /* two equal rails, the probe said 61 and 42 (seen on veth rails) */
    int t = drain((uint32_t[]){ 1000, 1000 }, (uint32_t[]){ 61, 42 }, 2, 2000, 65536, 8 * 65536, took);
    double share = (double)took[0] / (double)(took[0] + took[1]);
    ok(share > 0.48 && share < 0.52, "equal rails misjudged 61:42: the bytes still split evenly (%.3f)", share);
    double ideal = 2000.0 * 65536 / 2000;
    ok(t < ideal * 1.03, "and the transfer takes the time of both rails together (%d ticks, ideal %.0f)", t, ideal);
    /* rails at 1:3 that the probe could not tell apart */
    t = drain((uint32_t[]){ 500, 1500 }, (uint32_t[]){ 1, 1 }, 2, 2000, 65536, 8 * 65536, took);
    share = (double)took[1] / (double)(took[0] + took[1]);
    ok(share > 0.72 && share < 0.78, "rails 1:3 judged equal: the fast one carries three quarters (%.3f)", share);
}

int main(void)
{
    parsing();
    deciding();
    send_rates();
    splitting();
    draining();
    return tap_done();
}
