/* verbs_rails.c — --rdma-dev lists and port rates (verbs_rails.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "verbs_rails.h"
#include "optlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One "DEV[:PORT]" of len bytes at p into s. */
static int parse_one(const char *p, size_t len, struct pb_verbs_rail_spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    const char *colon = memchr(p, ':', len);
    size_t dlen = colon ? (size_t)(colon - p) : len;
    if (dlen == 0 || dlen >= sizeof s->dev) {
        snprintf(err, errlen, "--rdma-dev '%.*s': a device name has 1 to %d characters", (int)len, p,
                 (int)sizeof s->dev - 1);
        return -1;
    }
    memcpy(s->dev, p, dlen);
    s->dev[dlen] = '\0';
    if (!colon)
        return 0;
    char num[8];
    size_t nlen = len - dlen - 1;
    char *end = num;
    unsigned long port = 0;
    if (nlen > 0 && nlen < sizeof num) {
        memcpy(num, colon + 1, nlen);
        num[nlen] = '\0';
        port = strtoul(num, &end, 10);
    }
    if (nlen == 0 || nlen >= sizeof num || *end || num[0] == '-' || num[0] == '+' || port == 0 || port > 255) {
        snprintf(err, errlen, "--rdma-dev '%.*s': expected DEVICE or DEVICE:PORT (port 1 to 255), e.g. mlx5_0:1",
                 (int)len, p);
        return -1;
    }
    s->port = (unsigned)port;
    return 0;
}

/* What pb_verbs_dev_parse's elements go into. */
struct dev_list {
    const char *list;
    struct pb_verbs_rail_spec *out;
};

/* One element, not named before (a device without a port names them all). */
static int parse_dev(void *ctx, const char *p, size_t len, int n, char *err, size_t errlen)
{
    struct dev_list *l = ctx;
    struct pb_verbs_rail_spec *s = &l->out[n];
    if (parse_one(p, len, s, err, errlen) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(l->out[i].dev, s->dev) && (l->out[i].port == s->port || !l->out[i].port || !s->port)) {
            snprintf(err, errlen, "--rdma-dev '%s': '%.*s' is named twice", l->list, (int)len, p);
            return -1;
        }
    return 0;
}

int pb_verbs_dev_parse(const char *list, struct pb_verbs_rail_spec *out, int max, char *err, size_t errlen)
{
    struct dev_list l = {list, out};
    return pb_optlist_split(list, "--rdma-dev", "DEVICE[:PORT]", "rails", max, parse_dev, &l, err, errlen);
}

uint32_t pb_verbs_port_mbit(uint8_t active_speed, uint8_t active_width)
{
    uint32_t lane; /* Mbit/s of data per lane */
    switch (active_speed) {
    case 1: lane = 2000; break;    /* SDR: 2.5 Gbaud, 8b/10b */
    case 2: lane = 4000; break;    /* DDR */
    case 4: lane = 8000; break;    /* QDR */
    case 8: lane = 10000; break;   /* FDR10: 64b/66b */
    case 16: lane = 13640; break;  /* FDR */
    case 32: lane = 25000; break;  /* EDR */
    case 64: lane = 50000; break;  /* HDR */
    case 128: lane = 100000; break; /* NDR */
    default: return 0;
    }
    unsigned lanes;
    switch (active_width) {
    case 1: lanes = 1; break;
    case 2: lanes = 4; break;
    case 4: lanes = 8; break;
    case 8: lanes = 12; break;
    case 16: lanes = 2; break;
    default: return 0;
    }
    return lane * lanes;
}
