/* test_verbs_nodevice.c — the verbs transport on a machine without RDMA
 * (like this one): pb_verbs_available says no and why, and pb_verbs_open
 * fails cleanly with the "no RDMA device" message naming host and rank,
 * after voting "failed" in the first exchange round (so the other leaders
 * stop instead of hanging), and without leaking.
 *
 * Built twice: normally, and with -DPB_FORCE_NO_VERBS linked against the
 * without-verbs variant of transport_verbs.c, where both entry points must
 * say the build lacks verbs (as they must in a build without rdma-core). If a usable RDMA device is present, the
 * no-device checks are skipped (they would test nothing). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "transport.h"
#include "verbs_wire.h"


/* A stand-in for the MPI bootstrap's exchange with the partners, for one
 * leader out of several whose others are all well: the vote is this
 * leader's own, and nothing is exchanged when it says "failed". */
struct fake_xchg {
    int calls, oks[4];
    size_t lens[4];
};

static int fake_per_peer(void *ctx, int ok, const void *mine, void *out, size_t len, const int *peers, int npeers)
{
    struct fake_xchg *x = ctx;
    (void)mine;
    (void)peers;
    if (x->calls < 4) {
        x->lens[x->calls] = len;
        x->oks[x->calls] = ok;
    }
    x->calls++;
    if (!ok)
        return 1;
    memset(out, 0, len * (size_t)npeers);
    return 0;
}

int main(void)
{
    char why[256] = "", err[512] = "";
    static uint8_t pool[4 * 4096];
    const char *names[] = {"nodeA (rank 0)", "nodeB (rank 4)", "nodeC (rank 8)"};
    int peers[] = {0, 2};
    struct fake_xchg x = {0, {0}, {0}};
    struct pb_transport_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.self = 1;
    cfg.nleaders = 3;
    cfg.peers = peers;
    cfg.npeers = 2;
    cfg.pool = pool;
    cfg.slot_size = 4096;
    cfg.nslots = 4;
    cfg.names = names;
    cfg.xchg.per_peer = fake_per_peer;
    cfg.xchg.ctx = &x;
    cfg.timeout = 5;
    cfg.gid_index = -1;

    int avail = pb_verbs_available(why, sizeof why);
    tap_add("# pb_verbs_available: %d (%s)\n", avail, why);
    struct pb_transport *t = pb_verbs_open(&cfg, err, sizeof err);
    tap_add("# pb_verbs_open: %s\n", t ? "opened" : err);

#if !defined(HAVE_VERBS) || defined(PB_FORCE_NO_VERBS)
    tap_ok(avail == 0 && strstr(why, "built without RDMA verbs support") != NULL,
           "without verbs: pb_verbs_available is 0 and says the build lacks verbs");
    tap_ok(t == NULL && strstr(err, "this p2pbcast was built without RDMA verbs support") && strstr(err, "nodeB (rank 4)"),
           "without verbs: pb_verbs_open fails with the clear message naming host and rank");
    tap_ok(x.calls == 0, "without verbs: no exchange (every leader runs the same build and fails alike)");
#else
    if (avail) {
        tap_add("ok 1 - no-device checks # SKIP a usable RDMA device is present (%s)\n", why);
        tap_n++;
        if (t)
            t->ops->close(t);
        return tap_done();
    }
    tap_ok(strstr(why, "no RDMA device") != NULL || strstr(why, "no active RDMA port") != NULL,
           "pb_verbs_available is 0 and says why");
    tap_ok(t == NULL, "pb_verbs_open returns NULL without a device");
    tap_ok(strstr(err, "no RDMA device found (ibv_get_device_list returned none") != NULL &&
               strstr(err, "on nodeB (rank 4)") != NULL,
           "message: 'no RDMA device found (ibv_get_device_list returned none...) on <host> (rank N)'");
    tap_ok(x.calls == 1 && x.oks[0] == 0,
           "took part in exactly one exchange round (the one everybody joins) voting 'failed', so the other "
           "leaders stop instead of hanging; then stopped");

    /* A one-leader job: same failure, same message. */
    struct fake_xchg x1 = {0, {0}, {0}};
    cfg.self = 0;
    cfg.nleaders = 1;
    cfg.npeers = 0;
    cfg.xchg.ctx = &x1;
    t = pb_verbs_open(&cfg, err, sizeof err);
    tap_ok(t == NULL && strstr(err, "no RDMA device found") && strstr(err, "nodeA (rank 0)") && x1.calls == 1 && x1.oks[0] == 0,
           "single leader: same clean failure");

    /* Named device: still no device here, message unchanged. */
    cfg.rdma_dev = "mlx5_0:1";
    x1.calls = 0;
    t = pb_verbs_open(&cfg, err, sizeof err);
    tap_ok(t == NULL && strstr(err, "no RDMA device found") && x1.calls == 1,
           "--rdma-dev given: same clean failure, exchange joined");
#endif
    return tap_done();
}
