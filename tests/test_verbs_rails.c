/* test_verbs_rails.c — the verbs rails' pure parts: --rdma-dev lists
 * (DEV[:PORT], comma-separated; errors) and a port's rate from its
 * active_speed and active_width codes. */
#include "tap.h"
#include "verbs_rails.h"

#include <string.h>

static void parsing(void)
{
    struct pb_verbs_rail_spec sp[PB_VERBS_MAX_RAILS];
    char err[200];
    int n = pb_verbs_dev_parse("mlx5_0", sp, PB_VERBS_MAX_RAILS, err, sizeof err);
    ok(n == 1 && !strcmp(sp[0].dev, "mlx5_0") && sp[0].port == 0, "one device, any port");
    n = pb_verbs_dev_parse("mlx5_0:1", sp, PB_VERBS_MAX_RAILS, err, sizeof err);
    ok(n == 1 && !strcmp(sp[0].dev, "mlx5_0") && sp[0].port == 1, "one device and port");
    n = pb_verbs_dev_parse("mlx5_0,mlx5_1:2", sp, PB_VERBS_MAX_RAILS, err, sizeof err);
    ok(n == 2 && !strcmp(sp[0].dev, "mlx5_0") && sp[0].port == 0 && !strcmp(sp[1].dev, "mlx5_1") && sp[1].port == 2,
       "a list, in order");
    n = pb_verbs_dev_parse("mlx5_0:1,mlx5_0:2", sp, PB_VERBS_MAX_RAILS, err, sizeof err);
    ok(n == 2 && sp[0].port == 1 && sp[1].port == 2, "two ports of one device are two rails");

    static const struct {
        const char *in, *says;
    } bad[] = {
        { "", "empty" },
        { "mlx5_0,", "empty" },
        { ",mlx5_0", "empty" },
        { "a,,b", "empty" },
        { ":1", "1 to 63 characters" },
        { "mlx5_0:", "DEVICE:PORT" },
        { "mlx5_0:0", "DEVICE:PORT" },
        { "mlx5_0:256", "DEVICE:PORT" },
        { "mlx5_0:1x", "DEVICE:PORT" },
        { "mlx5_0:-1", "DEVICE:PORT" },
        { "mlx5_0:1:2", "DEVICE:PORT" },
        { "mlx5_0,mlx5_0", "named twice" },
        { "mlx5_0:1,mlx5_0:1", "named twice" },
        { "mlx5_0,mlx5_0:1", "named twice" },
        { "a,b,c,d,e,f,g,h,i", "more than 8" },
        { "a234567890123456789012345678901234567890123456789012345678901234", "1 to 63 characters" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        n = pb_verbs_dev_parse(bad[i].in, sp, PB_VERBS_MAX_RAILS, err, sizeof err);
        ok(n == -1 && strstr(err, bad[i].says), "'%s' refused: %s", bad[i].in, err);
    }
}

static void rates(void)
{
    ok(pb_verbs_port_mbit(32, 2) == 100000, "EDR 4x: 100 Gbit/s");
    ok(pb_verbs_port_mbit(64, 2) == 200000, "HDR 4x: 200 Gbit/s");
    ok(pb_verbs_port_mbit(128, 2) == 400000, "NDR 4x: 400 Gbit/s");
    ok(pb_verbs_port_mbit(64, 16) == 100000, "HDR 2x: 100 Gbit/s");
    ok(pb_verbs_port_mbit(4, 1) == 8000, "QDR 1x: 8 Gbit/s");
    ok(pb_verbs_port_mbit(32, 8) == 300000, "EDR 12x: 300 Gbit/s");
    ok(pb_verbs_port_mbit(3, 2) == 0 && pb_verbs_port_mbit(32, 3) == 0, "unknown codes: 0");
}

int main(void)
{
    parsing();
    rates();
    return tap_done();
}
