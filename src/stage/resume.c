/* resume.c — --resume across the job: which chunks every node's kept copy
 * already holds (skipped by the transfer), and what to keep after a failure. */
#include "phases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bit(const unsigned char *map, uint64_t k)
{
    return (map[k / 8] >> (k % 8)) & 1;
}

/* Root: the chunks that every leader's map holds. */
static void intersect(unsigned char *skip, const unsigned char *all, int nleaders, size_t nb, uint64_t nchunks)
{
    memset(skip, 0xff, nb);
    for (int i = 0; i < nleaders; i++)
        for (size_t j = 0; j < nb; j++)
            skip[j] &= all[(size_t)i * nb + j];
    for (uint64_t k = nchunks; k < nb * 8; k++) /* bits past the last chunk stay clear */
        skip[k / 8] &= (unsigned char)~(1u << (k % 8));
}

/* Every leader tells the root which chunks its kept copy holds; the root
 * sends back those that all hold. 0, 2 when interrupted, -1 on failure; a
 * leader that does not answer ends the job. */
static int share_resume(struct stage *st, const unsigned char *have)
{
    const struct pb_boot_info *bi = st->bi;
    size_t nb = (size_t)(st->plan.nchunks / 8 + 1);
    st->skip = calloc(nb, 1);
    unsigned char *mine = calloc(nb, 1), *all = NULL;
    int rc = 0;
    if (!st->skip || !mine)
        rc = -1;
    if (!rc && have)
        memcpy(mine, have, nb);
    if (!rc && bi->is_leader) {
        if (st->root && !(all = malloc(nb * (size_t)bi->nleaders)))
            rc = -1;
        else
            rc = pb_agree_gather(&st->ag, mine, all, nb);
        if (st->root && rc == 0)
            intersect(st->skip, all, bi->nleaders, nb, st->plan.nchunks);
    }
    free(all);
    free(mine);
    if (!st->skip)
        return -1;
    int brc = pb_agree_bcast(&st->ag, st->skip, nb);
    if (rc == 2 || brc == 2)
        return 2;
    if (rc < 0 || brc < 0)
        return -1;
    st->nskip = 0;
    for (uint64_t k = 0; k < st->plan.nchunks; k++)
        st->nskip += bit(st->skip, k);
    return 0;
}

int pb_phase_resume(struct stage *st)
{
    if (!st->want.resume)
        return 0;
    int rc = share_resume(st, st->sink_open ? st->sink.have : NULL);
    if (rc == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    if (rc < 0) {
        st->d.code = P2PBCAST_ERR_INTERNAL;
        snprintf(st->d.msg, sizeof st->d.msg, "--resume: exchanging the kept chunks failed");
        return st->d.code;
    }
    if (st->root && st->nskip && !st->quiet)
        fprintf(stderr, "p2pbcast: resuming: %llu of %llu chunks are already on every node\n",
                (unsigned long long)st->nskip, (unsigned long long)st->plan.nchunks);
    return 0;
}

void pb_resume_keep(struct stage *st)
{
    if (!st->sink_open || !st->want.resume || !st->d.code || st->d.discard_resume || st->sink.fd < 0)
        return;
    uint64_t n = st->plan.nchunks;
    unsigned char *held = calloc((size_t)(n / 8 + 1), 1);
    for (uint64_t k = 0; held && k < n; k++)
        if (st->eng ? pb_engine_holds(st->eng, k) : st->sink.have && bit(st->sink.have, k))
            held[k / 8] |= (unsigned char)(1u << (k % 8));
    if (held && pb_sink_keep(&st->sink, held, &st->want) == 0 && st->verbose)
        fprintf(stderr, "p2pbcast: %s: kept the partial copy for --resume\n", st->bi->names[st->bi->leader]);
    free(held);
}
