/* plan_shared.c — the ring allgather for a SOURCE every node sees; see
 * plan.h. Pure functions. */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>

int pb_shared_reader(const struct pb_plan *p, uint64_t k)
{
    return (int)(k % (uint64_t)pb_shared_members(p));
}

int pb_shared_successor(const struct pb_plan *p, int m)
{
    return (m + 1) % pb_shared_members(p);
}

int pb_shared_predecessor(const struct pb_plan *p, int m)
{
    int n = pb_shared_members(p);
    return (m + n - 1) % n;
}

int pb_shared_hops(const struct pb_plan *p, int m, uint64_t k)
{
    int n = pb_shared_members(p);
    return (m - pb_shared_reader(p, k) + n) % n;
}

bool pb_shared_forwards(const struct pb_plan *p, int m, uint64_t k)
{
    /* Every member holds the chunk once it has made N-1 hops. */
    return pb_shared_hops(p, m, k) < pb_shared_members(p) - 1;
}

int pb_shared_sender(const struct pb_plan *p, int m, uint64_t k)
{
    return pb_shared_hops(p, m, k) == 0 ? PB_SELF_READ : pb_shared_predecessor(p, m);
}

uint64_t pb_shared_read_bytes(const struct pb_plan *p, int m, const unsigned char *skip)
{
    uint64_t sum = 0;
    for (uint64_t k = (uint64_t)m; k < p->nchunks; k += (uint64_t)pb_shared_members(p))
        if (!skip || !((skip[k / 8] >> (k % 8)) & 1))
            sum += pb_plan_chunk_len(p, k);
    return sum;
}

int pb_shared_beats_tree(uint64_t file_size, int nleaders, uint64_t c_ring, uint64_t c_tree, char *why,
                         size_t whylen)
{
    /* In bytes' worth of time (times B):
     *   allgather  (N-1)/N F + (N-1) c_ring + (F/c_ring) alpha*B
     *   trees      F + (2 ceil(log2 R) + 1) c_tree + (F/c_tree) alpha*B
     * The allgather's ring carries (N-1)/N F into every node; its last
     * chunk makes N-1 hops. The trees' root sends F, their tail is short. */
    const double ab = 16384.0, F = (double)file_size;
    int N = nleaders, R = N - 1;
    double ring = F * (N - 1) / (N > 0 ? N : 1) + (N > 1 ? N - 1 : 0) * (double)c_ring + F / (double)c_ring * ab;
    double tree = F + (2.0 * pb_ceil_log2(R > 1 ? (uint64_t)R : 1) + 1) * (double)c_tree + F / (double)c_tree * ab;
    int pick = ring <= tree;
    if (why)
        snprintf(why, whylen, "%s: %d nodes, predicted %.3g s (allgather, every node reads 1/%d) vs %.3g s "
                 "(trees from the root) at 1 GB/s", pick ? "allgather" : "tree", N, ring / 1e9, N, tree / 1e9);
    return pick;
}

uint64_t pb_shared_sample_budget(uint64_t file_size)
{
    uint64_t b = file_size / 32;
    return b < PB_SAMPLE_MIN_BYTES ? PB_SAMPLE_MIN_BYTES : b > PB_SAMPLE_MAX_BYTES ? PB_SAMPLE_MAX_BYTES : b;
}

static bool skipped(const unsigned char *skip, uint64_t k)
{
    return skip && ((skip[k / 8] >> (k % 8)) & 1);
}

/* Chunks of member m not in skip. */
static uint64_t share_count(const struct pb_plan *p, int m, const unsigned char *skip)
{
    uint64_t n = 0;
    for (uint64_t k = (uint64_t)m; k < p->nchunks; k += (uint64_t)pb_shared_members(p))
        n += !skipped(skip, k);
    return n;
}

uint64_t pb_shared_sample(const struct pb_plan *p, int root, const unsigned char *skip, uint64_t budget,
                          uint64_t (*rnd)(void *ctx), void *ctx, uint64_t *out)
{
    int N = pb_shared_members(p);
    uint64_t others = 0;
    for (int m = 0; m < N; m++)
        if (m != root)
            others += pb_shared_read_bytes(p, m, skip);
    uint64_t per = others <= budget ? UINT64_MAX
                   : N > 1 && p->chunk_size ? budget / (p->chunk_size * (uint64_t)(N - 1)) : 1;
    if (per < 1)
        per = 1;
    /* Out in increasing order: walk the chunks once, each reader's
     * selection sampling (Knuth's algorithm S) interleaved with the others'. */
    uint64_t n = 0, *left = calloc((size_t)N, sizeof *left), *want = calloc((size_t)N, sizeof *want);
    if (!left || !want) { /* no memory for the draw: check every chunk */
        per = UINT64_MAX;
        free(left);
        free(want);
        left = want = NULL;
    }
    for (int m = 0; left && m < N; m++) {
        left[m] = m == root ? 0 : share_count(p, m, skip);
        want[m] = left[m] < per ? left[m] : per;
    }
    for (uint64_t k = 0; k < p->nchunks; k++) {
        int m = pb_shared_reader(p, k);
        if (m == root || skipped(skip, k))
            continue;
        if (!left) {
            out[n++] = k;
            continue;
        }
        if (want[m] && (want[m] == left[m] || rnd(ctx) % left[m] < want[m])) {
            out[n++] = k;
            want[m]--;
        }
        left[m]--;
    }
    free(left);
    free(want);
    return n;
}
