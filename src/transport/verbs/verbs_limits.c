/* verbs_limits.c — the pinned memory a verbs set-up needs and the limit on
 * it, the RoCE traffic class; see verbs_limits.h. */
#include "verbs_limits.h"

#include "verbs_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

void pb_verbs_pin_need(uint64_t slot_size, uint32_t nslots, int npeers, uint64_t ctrl_bytes,
                       struct pb_verbs_pin *out)
{
    memset(out, 0, sizeof *out);
    out->slots = slot_size * nslots;
    out->descs = (uint64_t)nslots * PB_VW_MSG_SIZE + (uint64_t)(npeers > 0 ? npeers : 0) * PB_VW_PROBE_SIZE;
    out->ctrl = ctrl_bytes;
    out->total = out->slots + out->descs + out->ctrl;
}

int pb_verbs_has_cap_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    int r = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long eff;
        if (sscanf(line, "CapEff: %llx", &eff) == 1) {
            r = (eff >> 14) & 1; /* CAP_IPC_LOCK */
            break;
        }
    }
    fclose(f);
    return r;
}

uint64_t pb_verbs_pin_limit(void)
{
    struct rlimit rl;
    if (pb_verbs_has_cap_ipc_lock() == 1 || getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    return (uint64_t)rl.rlim_cur;
}

struct pb_vsz pb_verbs_size_str(unsigned long long n)
{
    struct pb_vsz r;
    if (n < 1024)
        snprintf(r.s, sizeof r.s, "%llu B", n);
    else if (n < 1048576)
        snprintf(r.s, sizeof r.s, "%.1f KiB", n / 1024.0);
    else if (n < 1073741824ull)
        snprintf(r.s, sizeof r.s, "%.2f MiB", n / 1048576.0);
    else
        snprintf(r.s, sizeof r.s, "%.2f GiB", n / 1073741824.0);
    return r;
}

int pb_verbs_check_pin(const struct pb_verbs_pin *need, const char *dev, char *why, size_t wl)
{
    uint64_t limit = pb_verbs_pin_limit();
    if (need->total <= limit)
        return 0;
    snprintf(why, wl,
             "verbs on %s needs %s of pinned memory (slot pool %s, registered once for every queue pair; "
             "control buffers %s, descriptors %s), but `ulimit -l` (RLIMIT_MEMLOCK) is %s: raise it to "
             "unlimited (/etc/security/limits.conf memlock; under Slurm also PropagateResourceLimits and the "
             "slurmd's own limit)",
             dev, pb_verbs_size_str(need->total).s, pb_verbs_size_str(need->slots).s,
             pb_verbs_size_str(need->ctrl).s, pb_verbs_size_str(need->descs).s, pb_verbs_size_str(limit).s);
    return -1;
}

int pb_verbs_tclass(const char *dev, unsigned port, int want)
{
    if (want >= 0)
        return want;
    char path[256], buf[128];
    snprintf(path, sizeof path, "/sys/class/infiniband/%s/tc/%u/traffic_class", dev, port);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* mlx5 writes "Global tclass=106"; take a bare number too */
    const char *p = strstr(buf, "tclass=");
    long v = strtol(p ? p + 7 : buf, NULL, 10);
    return v >= 0 && v <= 255 ? (int)v : 0;
}
