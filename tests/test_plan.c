/* test_plan.c — the schedule: every receiver gets every chunk exactly once,
 * nobody sends to itself, no chunk loops, for R = 1..64 and awkward sizes. */
#include "plan.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* Walk every chunk's path the way the engine does and check it. */
static int check_plan(uint64_t size, uint64_t chunk, int R, char *why, size_t n)
{
    struct pb_plan p;
    char err[128];
    if (pb_plan_init(&p, size, chunk, R, err, sizeof err)) {
        snprintf(why, n, "init: %s", err);
        return 0;
    }
    uint64_t expect_chunks = size / chunk + (size % chunk != 0);
    if (p.nchunks != expect_chunks) {
        snprintf(why, n, "nchunks %llu", (unsigned long long)p.nchunks);
        return 0;
    }
    uint64_t total = 0;
    for (uint64_t k = 0; k < p.nchunks; k++) {
        uint64_t len = pb_plan_chunk_len(&p, k);
        if (len == 0 || len > chunk || pb_plan_chunk_offset(&p, k) != total) {
            snprintf(why, n, "chunk %llu len %llu", (unsigned long long)k, (unsigned long long)len);
            return 0;
        }
        total += len;
        if (R == 0)
            continue;
        int *got = calloc((size_t)R, sizeof *got);
        int s = pb_plan_scatter_target(&p, k);
        if (s < 0 || s >= R) {
            free(got);
            snprintf(why, n, "scatter target %d", s);
            return 0;
        }
        /* The root delivers to s; then each holder forwards while the plan says so. */
        int at = s, steps = 0;
        got[at]++;
        if (pb_plan_sender(&p, at, k) != PB_FROM_ROOT) {
            free(got);
            snprintf(why, n, "scatter target does not expect the root");
            return 0;
        }
        while (pb_plan_forwards(&p, at, k)) {
            int nx = pb_plan_successor(&p, at);
            if (nx == at || pb_plan_sender(&p, nx, k) != at || ++steps > R) {
                free(got);
                snprintf(why, n, "bad hop %d -> %d for chunk %llu", at, nx, (unsigned long long)k);
                return 0;
            }
            at = nx;
            got[at]++;
        }
        for (int r = 0; r < R; r++)
            if (got[r] != 1) {
                snprintf(why, n, "receiver %d got chunk %llu %d times", r, (unsigned long long)k, got[r]);
                free(got);
                return 0;
            }
        free(got);
    }
    if (total != size) {
        snprintf(why, n, "covered %llu of %llu bytes", (unsigned long long)total, (unsigned long long)size);
        return 0;
    }
    return 1;
}

int main(void)
{
    const uint64_t c = 4096;
    const uint64_t sizes[] = { 0, 1, c - 1, c, c + 1, 7 * c, 63 * c + 5, 200 * c };
    char why[160];
    for (int R = 0; R <= 64; R++) {
        int all = 1;
        why[0] = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes && all; i++)
            if (!check_plan(sizes[i], c, R, why, sizeof why))
                all = 0;
        ok(all, "R=%d: every receiver gets every chunk once, no self-sends, no loops %s", R, why);
    }

    struct pb_plan p;
    char err[128];
    ok(pb_plan_init(&p, 100, 0, 3, err, sizeof err) < 0, "chunk size 0 refused: %s", err);
    ok(pb_plan_init(&p, 100, 1, 3, err, sizeof err) < 0, "chunk size 1 refused");
    ok(pb_plan_init(&p, 100, (uint64_t)PB_MAX_CHUNK + 1, 3, err, sizeof err) < 0, "chunk size > 1 GiB refused");
    ok(pb_plan_init(&p, (uint64_t)1 << 50, 4096, 3, err, sizeof err) < 0, "more than 2^32 chunks refused: %s", err);
    ok(pb_plan_init(&p, 5ull << 30, 1 << 20, 3, err, sizeof err) == 0 && p.nchunks == 5120 &&
           pb_plan_chunk_offset(&p, 5119) == (5ull << 30) - (1 << 20),
       "5 GiB file: offsets beyond 4 GiB are exact");

    /* Receivers with no scattered chunk (fewer chunks than receivers). */
    ok(pb_plan_init(&p, 3 * c, c, 10, err, sizeof err) == 0 && pb_plan_scatter_target(&p, 2) == 2 &&
           pb_plan_forwards(&p, 2, 2) && !pb_plan_forwards(&p, 1, 2),
       "3 chunks over 10 receivers: chunk 2 goes round to receiver 1 and stops");

    /* Default chunk size: the values p2pbcast-model finds best (README). */
    uint64_t a = pb_plan_default_chunk(5ull * 1000 * 1000 * 1000, 999);
    uint64_t a2 = pb_plan_default_chunk(5ull * 1000 * 1000 * 1000, 9999);
    uint64_t b = pb_plan_default_chunk(1ull << 30, 3);
    ok(a == 256 * 1024, "default chunk for 5 GB x 1,000 nodes = 256 KiB (%llu)", (unsigned long long)a);
    ok(a2 == 64 * 1024, "default chunk for 5 GB x 10,000 nodes = 64 KiB (%llu)", (unsigned long long)a2);
    ok(b == 4u << 20, "default chunk for 1 GiB x 3 receivers = 4 MiB (%llu)", (unsigned long long)b);
    ok(pb_plan_default_chunk(0, 0) == 32 * 1024, "empty file: minimum chunk");
    ok(pb_plan_default_chunk(1ull << 50, 1) == 4u << 20, "huge file: capped at 4 MiB");
    int pow2 = 1;
    for (uint64_t f = 1; f < (1ull << 44) && pow2; f = f * 3 + 7)
        for (int r = 0; r < 20000 && pow2; r = r * 2 + 1) {
            uint64_t c = pb_plan_default_chunk(f, r);
            pow2 = (c & (c - 1)) == 0 && c >= 32 * 1024 && c <= 4u << 20;
        }
    ok(pow2, "default chunk is always a power of two in [32 KiB, 4 MiB]");
    uint64_t prev = pb_plan_default_chunk(5ull << 30, 2);
    int shrinks = 1;
    for (int r = 3; r < 10000; r = r * 3 / 2 + 1) {
        uint64_t c = pb_plan_default_chunk(5ull << 30, r);
        shrinks &= c <= prev;
        prev = c;
    }
    ok(shrinks, "default chunk never grows as nodes are added");

    /* Leader <-> receiver mapping skips the root and is a bijection. */
    int bij = 1;
    for (int L = 1; L <= 9 && bij; L++)
        for (int root = 0; root < L && bij; root++)
            for (int r = 0; r < L - 1 && bij; r++) {
                int l = pb_plan_leader_of(root, L, r);
                bij = l != root && pb_plan_receiver_of(root, L, l) == r;
            }
    ok(bij, "leader/receiver numbering is a bijection that skips the root");
    ok(pb_plan_receiver_of(2, 5, 2) == -1, "the root is no receiver");
    return tap_done();
}
