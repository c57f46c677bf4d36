/* plan_tree.c — the two-tree schedule (Sanders, Speck, Träff 2009: "Two-tree
 * algorithms for full bandwidth broadcast, reduction and scan"); see plan.h.
 *
 * Both trees have the same shape: an in-order binary tree over positions
 * 1..n (n = receivers) where the root of a range [lo, hi] is the position in
 * it with the most trailing zero bits, and its children are the roots of
 * [lo, p-1] and [p+1, hi]. Odd positions are always leaves: an odd p can be
 * the root of a range only if neither neighbour (both even, with more
 * trailing zeros) is in it. Even positions are always interior: the range
 * an even p roots starts below p (the range [1, n] starts at 1, and any
 * other range starts just above an ancestor q < p with more trailing zeros
 * than every position between, so p-1, odd, is in it).
 *
 * Tree 0 puts receiver i at position i+1; tree 1 at ((i+1) mod n)+1, a
 * cyclic shift by one. A receiver interior in tree 1 sits at an even
 * position q, so it is receiver q-2, which tree 0 puts at the odd position
 * q-1: a leaf. So no receiver is interior in both trees, and every node
 * passes on at most its half of the chunks, twice: F bytes in all.
 *
 * The root of [1, n] is the largest power of two 2^b <= n, and each
 * subrange's root has fewer trailing zeros than its parent, so the height is
 * at most b+1 = floor(log2 n)+1 levels: a chunk makes at most
 * ceil(log2 n)+1 hops from the root (tests/test_plan.c checks it).
 *
 * Lookups walk down from [1, n]: O(log^2 n) each, pure. The engine and the
 * model look up their neighbours once. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

/* The position in [lo, hi] (1 <= lo <= hi) with the most trailing zeros:
 * unique, since between two multiples of 2^b lies a multiple of 2^(b+1). */
static int range_root(int lo, int hi)
{
    for (int b = 30; b > 0; b--) {
        int m = (hi >> b) << b;
        if (m >= lo)
            return m;
    }
    return hi;
}

/* Walk from [1, n] down to pos: its parent position (0 for the tree's root)
 * and the range pos roots. */
static int find_pos(int n, int pos, int *lo_out, int *hi_out)
{
    int lo = 1, hi = n, parent = 0;
    for (;;) {
        int m = range_root(lo, hi);
        if (m == pos)
            break;
        parent = m;
        if (pos < m)
            hi = m - 1;
        else
            lo = m + 1;
    }
    *lo_out = lo;
    *hi_out = hi;
    return parent;
}

static int position_of(int n, int t, int r)
{
    return t == 0 ? r + 1 : (r + 1) % n + 1;
}

static int receiver_at(int n, int t, int pos)
{
    return t == 0 ? pos - 1 : (pos - 2 + n) % n;
}

int pb_tree_root(int nrecv, int t)
{
    return nrecv > 0 ? receiver_at(nrecv, t, range_root(1, nrecv)) : -1;
}

int pb_tree_parent(int nrecv, int t, int r)
{
    int lo, hi;
    int up = find_pos(nrecv, position_of(nrecv, t, r), &lo, &hi);
    return up ? receiver_at(nrecv, t, up) : PB_FROM_ROOT;
}

int pb_tree_children(int nrecv, int t, int r, int out[2])
{
    if (nrecv <= 0)
        return 0;
    if (r == PB_FROM_ROOT) {
        out[0] = pb_tree_root(nrecv, t);
        return 1;
    }
    int lo, hi, pos = position_of(nrecv, t, r), n = 0;
    find_pos(nrecv, pos, &lo, &hi);
    if (lo < pos)
        out[n++] = receiver_at(nrecv, t, range_root(lo, pos - 1));
    if (pos < hi)
        out[n++] = receiver_at(nrecv, t, range_root(pos + 1, hi));
    return n;
}

int pb_tree_depth(int nrecv, int t, int r)
{
    int lo = 1, hi = nrecv, pos = position_of(nrecv, t, r), hops = 1;
    for (int m = range_root(lo, hi); m != pos; m = range_root(lo, hi), hops++) {
        if (pos < m)
            hi = m - 1;
        else
            lo = m + 1;
    }
    return hops;
}

int pb_ceil_log2(uint64_t n)
{
    int l = 0;
    while (l < 63 && ((uint64_t)1 << l) < n)
        l++;
    return l;
}

uint64_t pb_plan_default_chunk_tree(uint64_t file_size, int nrecv)
{
    /* A chunk crosses ceil(log2 R) levels and every interior node sends it
     * twice: the pipeline fills in about 2*ceil(log2 R)*c/B, against the
     * per-message cost (F/c)*alpha; their sum is smallest at
     * c = sqrt(F * alpha*B / (2 ceil(log2 R))). alpha*B = 16 KiB as in
     * pb_plan_default_chunk; the same range and rounding. */
    const double alpha_b = 16384.0;
    const uint64_t lo = 32u * 1024u, hi = 4u * 1024u * 1024u;
    int levels = pb_ceil_log2(nrecv > 1 ? (uint64_t)nrecv : 2);
    double target = (double)file_size * alpha_b / (2.0 * levels); /* c squared */
    uint64_t c = lo;
    while (c < hi && (double)(2 * c) * (double)(2 * c) <= target)
        c *= 2;
    if (c < hi && target >= 2.0 * (double)c * (double)c)
        c *= 2;
    return c;
}

const char *pb_schedule_name(int schedule)
{
    return schedule == PB_SCHED_TREE ? "tree" : schedule == PB_SCHED_SHARED ? "allgather" : "ring";
}

int pb_schedule_parse(const char *s)
{
    if (!s || !strcmp(s, "auto"))
        return -2;
    if (!strcmp(s, "ring"))
        return PB_SCHED_RING;
    if (!strcmp(s, "tree"))
        return PB_SCHED_TREE;
    return -1;
}

int pb_schedule_auto(uint64_t file_size, int nleaders, char *why, size_t whylen)
{
    /* Closed forms in bytes' worth of time (times B), alpha*B = 16 KiB:
     *   ring  F + (R-1) c + (F/c) alpha*B          (tail R-1 hops of c)
     *   trees F + (2 ceil(log2 R) + 1) c + (F/c) alpha*B
     * each with its own default chunk. Up to 8 nodes the ring stays: the
     * closed forms and p2pbcast-model give the trees nothing there (tail
     * 6c against 7c at 8 nodes; equal times at 16 in the model), the ring
     * is what the 8-host bed measured (bench/README.md), and on the bed
     * at 64 KiB chunks the two measure alike (0.885 vs 0.88 of F/B at 4
     * hosts, 0.907 vs 0.91 at 8; bench/results/chunk-sweep.txt). Beyond 8, the trees win as soon as
     * the ring's tail outgrows theirs, and spare the root a connection to
     * every node. */
    int R = nleaders - 1;
    const double ab = 16384.0, F = (double)file_size;
    double cr = (double)pb_plan_default_chunk(file_size, R), ct = (double)pb_plan_default_chunk_tree(file_size, R);
    double ring = F + (R > 1 ? R - 1 : 0) * cr + F / cr * ab;
    double tree = F + (2.0 * pb_ceil_log2(R > 1 ? (uint64_t)R : 1) + 1) * ct + F / ct * ab;
    int pick = nleaders > 8 && tree < ring ? PB_SCHED_TREE : PB_SCHED_RING;
    if (why)
        snprintf(why, whylen, "%s: %d nodes%s, predicted %.3g s (ring) vs %.3g s (tree) at 1 GB/s",
                 pb_schedule_name(pick), nleaders, nleaders <= 8 ? " (the ring up to 8)" : "", ring / 1e9,
                 tree / 1e9);
    return pick;
}
