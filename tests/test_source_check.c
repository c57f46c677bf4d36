/* test_source_check.c — what makes a parallel read of SOURCE trustworthy
 * (issue 18): which filesystems `--source-shared=auto` trusts (fs_kind.c),
 * and the root's sample of the chunks other nodes read (sched_shared.c):
 * every other reader covered, nothing of the root's or skipped, all of
 * them while they fit in the budget, uniform otherwise. */
#include "fs_kind.h"
#include "plan.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

static void test_fs_kind(void)
{
    static const struct {
        unsigned long magic;
        enum pb_fs_kind kind;
        const char *name;
    } cases[] = {
        { 0x0BD00BD0, PB_FS_COHERENT, "lustre" },   { 0x47504653, PB_FS_COHERENT, "gpfs" },
        { 0x19830326, PB_FS_COHERENT, "beegfs" },   { 0x00C36400, PB_FS_COHERENT, "cephfs" },
        { 0x6969, PB_FS_CLIENT_CACHED, "nfs" },     { 0xFF534D42, PB_FS_CLIENT_CACHED, "cifs" },
        { 0x65735546, PB_FS_CLIENT_CACHED, "fuse" }, { 0x01021994, PB_FS_LOCAL, "tmpfs" },
        { 0xEF53, PB_FS_LOCAL, "ext2/3/4" },        { 0x58465342, PB_FS_LOCAL, "xfs" },
    };
    char buf[32];
    int good = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int g = pb_fs_kind(cases[i].magic) == cases[i].kind && !strcmp(pb_fs_name(cases[i].magic, buf, sizeof buf),
                                                                       cases[i].name);
        if (!g)
            tap_add("# f_type 0x%lx: kind %d, name %s\n", cases[i].magic, (int)pb_fs_kind(cases[i].magic),
                    pb_fs_name(cases[i].magic, buf, sizeof buf));
        good &= g;
    }
    ok(good, "f_type: Lustre, GPFS, BeeGFS, CephFS coherent; NFS, CIFS, FUSE client-cached; tmpfs, ext4, XFS local");
    /* statfs's f_type is a signed long on x86-64: CIFS's magic comes back negative */
    unsigned long neg = (unsigned long)(long)(int)0xFF534D42;
    ok(pb_fs_kind(neg) == PB_FS_CLIENT_CACHED, "a sign-extended f_type is still recognised (CIFS)");
    ok(pb_fs_kind(0x12345678) == PB_FS_LOCAL && !strcmp(pb_fs_name(0x12345678, buf, sizeof buf), "f_type 0x12345678"),
       "an unknown filesystem counts as local (trusted on one machine only), named by its f_type");
    struct statfs sf;
    if (statfs("/dev/shm", &sf) == 0 && (unsigned long)sf.f_type == 0x01021994)
        ok(pb_fs_kind((unsigned long)sf.f_type) == PB_FS_LOCAL, "statfs of /dev/shm: tmpfs, local");
}

/* splitmix64: a deterministic stand-in for getrandom */
static uint64_t splitmix(void *ctx)
{
    uint64_t *s = ctx, z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int is_set(const unsigned char *skip, uint64_t k)
{
    return skip && ((skip[k / 8] >> (k % 8)) & 1);
}

/* One draw checked against the rule of plan.h; 0 with why on failure. */
static int check_draw(const struct pb_plan *p, int root, const unsigned char *skip, uint64_t budget, uint64_t *seed,
                      char *why, size_t n)
{
    int N = pb_shared_members(p);
    uint64_t *out = malloc((p->nchunks + 1) * sizeof *out), others = 0, bytes = 0;
    uint64_t *got = calloc((size_t)N, sizeof *got), *have = calloc((size_t)N, sizeof *have);
    for (uint64_t k = 0; k < p->nchunks; k++)
        if (pb_shared_reader(p, k) != root && !is_set(skip, k)) {
            have[pb_shared_reader(p, k)]++;
            others += pb_plan_chunk_len(p, k);
        }
    uint64_t cnt = pb_shared_sample(p, root, skip, budget, splitmix, seed, out);
    int good = 1;
    for (uint64_t i = 0; i < cnt && good; i++) {
        uint64_t k = out[i];
        if (k >= p->nchunks || (i && k <= out[i - 1]) || pb_shared_reader(p, k) == root || is_set(skip, k)) {
            snprintf(why, n, "entry %llu: chunk %llu (out of order, the root's, or skipped)", (unsigned long long)i,
                     (unsigned long long)k);
            good = 0;
        } else {
            got[pb_shared_reader(p, k)]++;
            bytes += pb_plan_chunk_len(p, k);
        }
    }
    uint64_t per = others <= budget ? UINT64_MAX : budget / (p->chunk_size * (uint64_t)(N - 1));
    per = per ? per : 1;
    for (int m = 0; m < N && good; m++) {
        uint64_t want = have[m] < per ? have[m] : per;
        if (got[m] != want) {
            snprintf(why, n, "reader %d: %llu of its %llu chunks drawn, want %llu", m, (unsigned long long)got[m],
                     (unsigned long long)have[m], (unsigned long long)want);
            good = 0;
        }
    }
    if (good && per > 1 && per != UINT64_MAX && bytes > budget) {
        snprintf(why, n, "%llu bytes drawn, budget %llu", (unsigned long long)bytes, (unsigned long long)budget);
        good = 0;
    }
    free(out);
    free(got);
    free(have);
    return good;
}

static void test_sample(void)
{
    ok(pb_shared_sample_budget(1) == 64ull << 20 && pb_shared_sample_budget(2ull << 30) == 64ull << 20 &&
           pb_shared_sample_budget(4ull << 30) == 128ull << 20 && pb_shared_sample_budget(1ull << 40) == 1ull << 30,
       "budget: 64 MiB up to 2 GiB, F/32 beyond, 1 GiB from 32 GiB on");

    uint64_t seed = 1;
    char why[200] = "";
    int good = 1;
    /* small files: every chunk another node read, with and without skips */
    unsigned char skip[64];
    for (int N = 2; N <= 9 && good; N++)
        for (int root = 0; root < N && good; root++)
            for (int withskip = 0; withskip < 2 && good; withskip++) {
                struct pb_plan p;
                char err[128];
                if (pb_plan_init(&p, 300 * 65536 + 17, 65536, N - 1, err, sizeof err))
                    break;
                p.schedule = PB_SCHED_SHARED; /* the allgather: member k mod N reads chunk k */
                for (size_t i = 0; i < sizeof skip; i++)
                    skip[i] = (unsigned char)(withskip ? 0x5a ^ i : 0);
                good = check_draw(&p, root, withskip ? skip : NULL, 64ull << 20, &seed, why, sizeof why);
            }
    ok(good, "within the budget: exactly the chunks the other readers read, none skipped, in order%s%s",
       good ? "" : ": ", why);

    /* large files: the budget split evenly, at least one chunk per reader */
    static const struct { uint64_t size, chunk, budget; int N; } big[] = {
        { 5ull << 30, 2u << 20, 160ull << 20, 16 }, /* 5 chunks from each of 15 readers */
        { 5ull << 30, 65536, 160ull << 20, 1000 },  /* 2 per reader */
        { 1ull << 30, 65536, 1ull << 20, 64 },      /* budget below one chunk each: one each */
        { 10ull << 30, 4u << 20, 320ull << 20, 2 }, /* one other reader: 80 chunks */
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0] && good; i++) {
        struct pb_plan p;
        char err[128];
        good = !pb_plan_init(&p, big[i].size, big[i].chunk, big[i].N - 1, err, sizeof err);
        p.schedule = PB_SCHED_SHARED;
        good = good && check_draw(&p, big[i].N / 3, NULL, big[i].budget, &seed, why, sizeof why);
    }
    ok(good, "over the budget: min(m, max(1, budget / (c (N-1)))) chunks of every other reader%s%s",
       good ? "" : ": ", why);

    /* uniform: one chunk of 10 per reader, each about as often */
    struct pb_plan p;
    char err[128];
    pb_plan_init(&p, 30 * 65536, 65536, 2, err, sizeof err); /* 3 readers, 10 chunks each */
    p.schedule = PB_SCHED_SHARED;
    int hits[30] = { 0 };
    uint64_t out[30];
    for (int t = 0; t < 20000; t++) {
        uint64_t n = pb_shared_sample(&p, 0, NULL, 2 * 65536, splitmix, &seed, out);
        for (uint64_t i = 0; i < n; i++)
            hits[out[i]]++;
    }
    int even = 1;
    for (int k = 0; k < 30; k++)
        even &= k % 3 == 0 ? hits[k] == 0 : hits[k] > 1700 && hits[k] < 2300;
    ok(even, "the draw is uniform: each of a reader's 10 chunks drawn 1700..2300 times in 20000 (chunk 1: %d)",
       hits[1]);
}

int main(void)
{
    test_fs_kind();
    test_sample();
    return tap_done();
}
