/* test_abi_new.c — the sized interface (include/p2pbcast.h): a caller with
 * a newer, larger struct is accepted while its extra fields are zero and
 * refused, by name, when one is set; a newer, larger result keeps its later
 * fields; sizes too small are refused without a write; the run-time
 * version. Run under mpirun by tests/test_abi.sh (WORK: a scratch
 * directory). */
#include "p2pbcast.h"

#include "abi_common.h"

/* A caller built against a newer header: two more option fields, one more
 * result field, guard bytes on both sides. */
static struct {
    unsigned char before[GUARD];
    struct p2pbcast_opts o;
    uint64_t future[2];
    unsigned char after[GUARD];
} opts;
static struct {
    unsigned char before[GUARD];
    struct p2pbcast_result r;
    uint64_t later;
    unsigned char after[GUARD];
} result;

static int run(const char *name, struct p2pbcast_opts *o)
{
    char src[4096], dest[4096], pat[64];
    work_path(src, sizeof src, "src");
    snprintf(pat, sizeof pat, "%s.%%r", name);
    work_path(dest, sizeof dest, pat);
    memset(&result, CANARY, sizeof result);
    return p2pbcast_file_sized(MPI_COMM_WORLD, src, dest, o, &result.r, sizeof result.r + sizeof result.later);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &abi_rank);
    if (skip_unless_two_ranks())
        return 0;
    make_source(200000);
    check_all(!strcmp(p2pbcast_version(), P2PBCAST_VERSION), "p2pbcast_version() is the header's version");

    memset(&opts, CANARY, sizeof opts);
    int rc = p2pbcast_opts_init_sized(&opts.o, 16);
    check_all(rc == P2PBCAST_ERR_USAGE && guard_intact(opts.before) && opts.o.struct_size != 16,
              "a size smaller than the first struct is refused, nothing written");

    rc = p2pbcast_opts_init_sized(&opts.o, sizeof opts.o + sizeof opts.future);
    check_all(rc == 0 && opts.o.struct_size == sizeof opts.o + sizeof opts.future && !opts.future[0] &&
                  !opts.future[1] && opts.o.gid_index == -1 && guard_intact(opts.before) && guard_intact(opts.after),
              "a newer caller's struct: defaults set, its extra fields zeroed, nothing outside written");

    opts.o.flags = P2PBCAST_QUIET | P2PBCAST_PER_RANK;
    opts.o.transport = "tcp";
    int st = run("newer", &opts.o);
    check_all(st == P2PBCAST_OK && result.r.status == P2PBCAST_OK && same_as_source("newer"),
              "a newer caller whose extra options are zero is accepted: the copy equals SOURCE");
    check_all(result.r.struct_size == sizeof result.r && guard_intact(result.after) && guard_intact(result.before) &&
                  result.later == 0xA5A5A5A5A5A5A5A5ull && result.r.bytes == 200000,
              "a newer caller's result: struct_size says what was filled, its later field untouched");

    opts.future[1] = 7;
    st = run("refused", &opts.o);
    char want[64];
    snprintf(want, sizeof want, "byte %zu ", sizeof opts.o + sizeof opts.future[0]);
    check_all(st == P2PBCAST_ERR_USAGE && result.r.status == P2PBCAST_ERR_USAGE &&
                  strstr(result.r.message, want) && strstr(result.r.message, "newer p2pbcast.h"),
              "an option this library does not know, set: refused (usage), the byte named");
    if (abi_rank == 0)
        tap_add("# %s\n", result.r.message);

    memset(&result, CANARY, sizeof result);
    st = p2pbcast_file_sized(MPI_COMM_WORLD, "x", "y", NULL, &result.r, 8);
    check_all(st == P2PBCAST_ERR_USAGE && result.r.struct_size == 0xA5A5A5A5A5A5A5A5ull,
              "a result too small for the status is refused, nothing written");

    struct p2pbcast_opts o;
    struct p2pbcast_result r;
    p2pbcast_opts_init(&o);
    o.flags = P2PBCAST_QUIET | P2PBCAST_PER_RANK;
    o.transport = "tcp";
    char src[4096], dest[4096];
    work_path(src, sizeof src, "src");
    work_path(dest, sizeof dest, "plain.%r");
    st = p2pbcast_file(MPI_COMM_WORLD, src, dest, &o, &r);
    check_all(st == P2PBCAST_OK && o.struct_size == sizeof o && r.struct_size == sizeof r && same_as_source("plain"),
              "the header's macros: same-size structs, a verified copy");
    int fail = abi_rank == 0 ? tap_done() : 0;
    MPI_Finalize();
    return fail;
}
