/* verbs_rails.h — the RDMA rails a node may use: --rdma-dev lists
 * (DEV[:PORT], comma-separated) and a port's rate from what ibv_query_port
 * reports (active_speed x active_width). No libibverbs here: parsing and
 * arithmetic, unit-tested without a device (tests/test_verbs_rails.c). */
#ifndef P2PBCAST_VERBS_RAILS_H
#define P2PBCAST_VERBS_RAILS_H

#include <stddef.h>
#include <stdint.h>

#define PB_VERBS_MAX_RAILS 8

/* One element of --rdma-dev: a device, and a port (0: any active one). */
struct pb_verbs_rail_spec {
    char dev[64];
    unsigned port;
};

/* Parse "DEV[:PORT][,DEV[:PORT]...]" into out (at most max). The number of
 * rails, or -1 with err saying what is wrong (an empty element, a bad or
 * zero port, a device named twice, too many): a usage error, the same on
 * every node. */
int pb_verbs_dev_parse(const char *list, struct pb_verbs_rail_spec *out, int max, char *err, size_t errlen);

/* A port's data rate in Mbit/s from ibv_port_attr's active_speed and
 * active_width codes (the encoding of the IB spec: width 1=1x 2=4x 4=8x
 * 8=12x 16=2x; speed 1=SDR 2=DDR 4=QDR 8=FDR10 16=FDR 32=EDR 64=HDR
 * 128=NDR); 0 when a code is unknown. */
uint32_t pb_verbs_port_mbit(uint8_t active_speed, uint8_t active_width);

#endif
