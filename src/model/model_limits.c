/* model_limits.c — what the model adds around the simulation: p2pbcast's
 * default chunk at the modelled alpha*B, which limit binds a run, and a
 * measurement of one thread's hash + write rate on this machine. */
#include "model.h"
#include "clock.h"
#include "digest.h"
#include "plan.h"
#include "schedule.h"

#include <stdlib.h>
#include <string.h>

uint64_t pb_model_default_chunk(const struct pb_model_cfg *cfg)
{
    struct pb_link_cost lc = { .alpha = cfg->alpha, .rate = cfg->bandwidth };
    return pb_sched_of(cfg->schedule)->default_chunk(cfg->file_size, cfg->nodes - 1, pb_plan_alpha_b(&lc));
}

const char *pb_model_limit(const struct pb_model_cfg *cfg, const struct pb_model_result *res)
{
    double FB = res->ideal;
    double cpu = cfg->cpu_rate > 0 && cfg->cpu_rate < cfg->bandwidth
                     ? (double)cfg->file_size / cfg->cpu_rate - FB : 0; /* what one thread adds */
    double loss[3] = { cpu, res->per_message, res->tail };
    const char *name[3] = { "cpu", "alpha", "tail" };
    int worst = 0;
    for (int i = 1; i < 3; i++)
        if (loss[i] > loss[worst])
            worst = i;
    return res->time >= 1.05 * FB && loss[worst] > 0 ? name[worst] : "link";
}

double pb_model_measure_cpu(int copies)
{
    /* 4 MiB chunks, as p2pbcast's: one hash and 1 + copies memcpy per
     * chunk (the write to DEST's page cache, tcp's copy out of the socket),
     * on this thread, the best of a few passes of ~30 ms. */
    const size_t len = 4u << 20;
    unsigned char *a = malloc(len), *b = malloc(len);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        a[i] = (unsigned char)(i * 2654435761u >> 13);
    memcpy(b, a, len); /* first touch */
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = pb_now(), t;
        uint64_t bytes = 0;
        do {
            sink ^= pb_chunk_hash(a, len);
            for (int c = 0; c <= copies; c++)
                memcpy(c & 1 ? a : b, c & 1 ? b : a, len);
            bytes += len;
        } while ((t = pb_now() - t0) < 0.03);
        if (bytes / t > best)
            best = (double)bytes / t;
    }
    (void)sink;
    free(a);
    free(b);
    return best;
}
