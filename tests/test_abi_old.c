/* test_abi_old.c — a program built against the header of commit e0857a3
 * (tests/abi/e0857a3/p2pbcast.h: before the structs carried the caller's
 * size, and before fields were appended to both), run against this
 * library: nothing around its structs may change, and its broadcast works.
 * Built with only that header on the include path; run under mpirun by
 * tests/test_abi.sh (WORK: a scratch directory). */
#include <p2pbcast.h>

#include "abi_common.h"

/* The caller's structs, with guard bytes on both sides. */
static struct {
    unsigned char before[GUARD];
    struct p2pbcast_opts o;
    unsigned char after[GUARD];
} opts;
static struct {
    unsigned char before[GUARD];
    struct p2pbcast_result r;
    unsigned char after[GUARD];
} result;

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &abi_rank);
    if (skip_unless_two_ranks())
        return 0;
    make_source(300000);
    memset(&opts, CANARY, sizeof opts);
    memset(&result, CANARY, sizeof result);

    p2pbcast_opts_init(&opts.o);
    check_all(guard_intact(opts.before) && guard_intact(opts.after),
              "old header: p2pbcast_opts_init writes nothing outside the caller's struct");
    check_all(opts.o.struct_size <= sizeof opts.o && opts.o.gid_index == -1 && opts.o.timeout > 0,
              "old header: defaults set, struct_size within the caller's struct");

    static volatile sig_atomic_t never;
    opts.o.cancel = &never;
    opts.o.flags = P2PBCAST_QUIET | P2PBCAST_PER_RANK;
    opts.o.chunk_size = 65536;
    opts.o.transport = "tcp";
    char src[4096], dest[4096];
    work_path(src, sizeof src, "src");
    work_path(dest, sizeof dest, "old.%r");
    int st = p2pbcast_file(MPI_COMM_WORLD, src, dest, &opts.o, &result.r);
    check_all(st == P2PBCAST_OK && result.r.status == P2PBCAST_OK,
              "old header: p2pbcast_file succeeds, status in the old-layout result");
    check_all(guard_intact(result.before) && guard_intact(result.after),
              "old header: p2pbcast_file writes nothing outside the caller's old-layout result");
    check_all(result.r.bytes == 300000 && result.r.chunk_size == 65536 && !strcmp(result.r.transport, "tcp"),
              "old header: size, chunk size and transport in their old places");
    check_all(same_as_source("old"), "old header: every rank's copy equals SOURCE");
    check_all(guard_intact(opts.before) && guard_intact(opts.after), "old header: the options' guards still intact");
    int fail = abi_rank == 0 ? tap_done() : 0;
    MPI_Finalize();
    return fail;
}
