/* options.c — command-line parsing for p2pbcast; see options.h. */
#include "options.h"
#include "dest_path.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pb_usage_text[] =
    "Usage: p2pbcast [OPTION]... SOURCE DEST\n"
    "  or:  p2pbcast [OPTION]... SOURCE_DIR DEST_DIR\n"
    "Copy SOURCE (read on the root rank's node) to DEST on every node of an MPI job,\n"
    "chunks passed on between the nodes in a pipelined ring or two binary trees.\n"
    "Run it under mpirun or srun, e.g.:\n"
    "  mpirun -np 64 --map-by ppr:1:node p2pbcast /lustre/model.tar /tmp/model.tar\n"
    "  srun --ntasks-per-node=1 --mpi=pmix p2pbcast $HOME/app.sif /tmp/app.sif\n"
    "\n"
    "  -r, --root=RANK         rank that reads SOURCE (default 0)\n"
    "  -c, --chunk-size=SIZE   chunk size, suffixes K, M, G (default: from file size,\n"
    "                          node count and the transport's cost per message,\n"
    "                          32K up to 4M, up to 64M on fast links; over tcp\n"
    "                          between hosts at most ~4 ms on the wire at the\n"
    "                          link's speed, 64K if the speed is unknown, divided\n"
    "                          by the tcp rails; -v says which, the alpha*B\n"
    "                          assumed, and why)\n"
    "      --slots=N           receive slots per node (default 8, 8 per tcp rail,\n"
    "                          fewer above 16M chunks: the pool within 128 MiB,\n"
    "                          at least 4 slots; memory per node is N x chunk size)\n"
    "      --schedule=NAME     auto, ring or tree (default auto: the ring up to 8\n"
    "                          nodes, two trees beyond where predicted faster with\n"
    "                          the chunk each would use; over tcp the nodes' send\n"
    "                          rates are probed first and a node below 0.6 of the\n"
    "                          median makes auto take the trees, with slow nodes\n"
    "                          where they send least)\n"
    "      --source-shared=WHEN  auto, yes or no (default auto): where every node\n"
    "                          sees SOURCE at the same path (same size, times and\n"
    "                          first and last chunk), several nodes read it: each its\n"
    "                          share with the ring (an allgather), with the trees\n"
    "                          the tops of G pairs of trees 1/2G each (G from the\n"
    "                          read and link rates, 1 to 4); auto weighs the\n"
    "                          root's measured read rate against the link; the root\n"
    "                          re-reads a random sample of the others' chunks; auto\n"
    "                          only on Lustre, GPFS, BeeGFS, CephFS, OrangeFS or one\n"
    "                          machine (not NFS); yes anywhere, failing if one cannot\n"
    "  -t, --transport=NAME    auto, tcp, mpi or verbs (default auto: verbs when every\n"
    "                          node has an active RDMA port, a usable GID and the\n"
    "                          pinned memory it needs; else tcp, with a warning\n"
    "                          naming each node that cannot and why; verbs by name\n"
    "                          fails with status 5 instead)\n"
    "      --tcp-if=IF|CIDR[,...]  interface names or address ranges for tcp\n"
    "                          data connections; several are used at once (rails)\n"
    "                          (default: loopback when all nodes are this host,\n"
    "                          else the fastest networks all nodes share, by device\n"
    "                          speed or a short probe; -v says which)\n"
    "      --rdma-dev=DEV[:PORT][,...]  RDMA devices and ports for verbs; several\n"
    "                          are striped (rails) (default: every active port of\n"
    "                          the fastest rate; -v says which)\n"
    "      --gid-index=N       RoCE GID index (default: automatic)\n"
    "      --rdma-tclass=N     RoCE traffic class, 0 to 255 (default: the device's\n"
    "                          default where the kernel shows it, else 0)\n"
    "  -f, --force             replace an existing DEST that differs from SOURCE\n"
    "      --resume            keep a failed run's partial copy (hidden, next to\n"
    "                          DEST); run again with --resume to skip the chunks\n"
    "                          every node already holds\n"
    "      --check             preflight: every step of a real run up to connecting\n"
    "                          the nodes and one message each way on every link;\n"
    "                          DEST's free space against SOURCE's size; nothing is\n"
    "                          created under DEST; the status a real run would\n"
    "                          stop with (0: it would start); --json gets a table\n"
    "      --per-rank          treat every rank as its own node (each writes DEST;\n"
    "                          use %h and %r in DEST)\n"
    "      --json=FILE         write a JSON report of the run to FILE (root node)\n"
    "      --timeout=SECONDS   give up when nothing moves for this long (default 60)\n"
    "  -q, --quiet             no progress and no summary; errors only\n"
    "  -v, --verbose           more detail (transport, addresses, chunk plan,\n"
    "                          placement, timings of the start-up)\n"
    "  -h, --help              show this help and exit\n"
    "  -V, --version           show the version and exit\n"
    "\n"
    "DEST may contain %h (host name), %r (MPI rank) and %% (a literal %).\n"
    "Data is written to a hidden temporary file in DEST's directory and renamed to\n"
    "DEST only when every node holds a complete, checksum-verified copy.\n"
    "A directory SOURCE_DIR is copied as a tree: DEST_DIR becomes a copy of its\n"
    "contents (like cp -r SRC DEST when DEST does not exist; a trailing slash on\n"
    "either makes no difference), with directories, symbolic links (never\n"
    "followed), hard links, holes, modes, mtimes and, as root, owners; sockets,\n"
    "FIFOs and devices are skipped. An existing DEST_DIR that differs (entries,\n"
    "types, sizes, mtimes, link targets) needs --force; --resume does not apply\n"
    "to directories. DEST is never SOURCE nor a directory that contains it, and\n"
    "a --force that cannot complete on every node leaves the old DEST_DIR in place.\n"
    "\n"
    "Exit status: 0 every node holds a verified copy; 1 transfer failed (peer lost,\n"
    "checksum mismatch, timeout); 2 usage error; 3 SOURCE error; 4 DEST error;\n"
    "5 transport set-up failed; 6 internal error. The same status on every rank.\n";

enum {
    OPT_SLOTS = 256,
    OPT_TCP_IF,
    OPT_RDMA_DEV,
    OPT_GID_INDEX,
    OPT_PER_RANK,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_RESUME,
    OPT_SCHEDULE,
    OPT_SOURCE_SHARED,
    OPT_RDMA_TCLASS,
    OPT_CHECK
};

static const struct option long_opts[] = {
    { "root", required_argument, 0, 'r' },
    { "chunk-size", required_argument, 0, 'c' },
    { "slots", required_argument, 0, OPT_SLOTS },
    { "transport", required_argument, 0, 't' },
    { "schedule", required_argument, 0, OPT_SCHEDULE },
    { "source-shared", required_argument, 0, OPT_SOURCE_SHARED },
    { "tcp-if", required_argument, 0, OPT_TCP_IF },
    { "rdma-dev", required_argument, 0, OPT_RDMA_DEV },
    { "gid-index", required_argument, 0, OPT_GID_INDEX },
    { "rdma-tclass", required_argument, 0, OPT_RDMA_TCLASS },
    { "force", no_argument, 0, 'f' },
    { "per-rank", no_argument, 0, OPT_PER_RANK },
    { "json", required_argument, 0, OPT_JSON },
    { "timeout", required_argument, 0, OPT_TIMEOUT },
    { "resume", no_argument, 0, OPT_RESUME },
    { "check", no_argument, 0, OPT_CHECK },
    { "quiet", no_argument, 0, 'q' },
    { "verbose", no_argument, 0, 'v' },
    { "help", no_argument, 0, 'h' },
    { "version", no_argument, 0, 'V' },
    { 0, 0, 0, 0 }
};

int pb_parse_size(const char *s, uint64_t *out)
{
    /* Digits first: strtoull would skip blanks and accept a sign. */
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return -1;
        }
        end++;
        /* Accept K, KB, KiB (all binary: sizes of memory and chunks). */
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* An integer option's value in [lo, hi]; -1 with err naming the option. */
static int int_opt(const char *name, const char *arg, long lo, long hi, long *out, char *err, size_t errlen)
{
    if (parse_int(arg, lo, hi, out) == 0)
        return 0;
    snprintf(err, errlen, "invalid --%s '%s': expected %ld to %ld", name, arg, lo, hi);
    return -1;
}

/* One option that takes a value or sets a flag of the library's options.
 * 0 ok, 1 not such an option, -1 bad value (err set). */
static int parse_opt(int c, const char *arg, struct p2pbcast_opts *o, char *err, size_t errlen)
{
    long v;
    switch (c) {
    case 'r':
        if (parse_int(arg, 0, 1L << 30, &v)) {
            snprintf(err, errlen, "invalid --root '%s': expected a rank number", arg);
            return -1;
        }
        o->root = (int)v;
        break;
    case 'c':
        if (pb_parse_size(arg, &o->chunk_size)) {
            snprintf(err, errlen, "invalid --chunk-size '%s': expected a size like 1M or 512K", arg);
            return -1;
        }
        if (o->chunk_size < 4096 || o->chunk_size > (1u << 30)) {
            snprintf(err, errlen, "--chunk-size %s out of range: use 4K to 1G", arg);
            return -1;
        }
        break;
    case OPT_SLOTS:
        if (int_opt("slots", arg, 4, 4096, &v, err, errlen))
            return -1;
        o->slots = (uint32_t)v;
        break;
    case 't':
        if (strcmp(arg, "auto") && strcmp(arg, "tcp") && strcmp(arg, "mpi") &&
            strcmp(arg, "verbs")) {
            snprintf(err, errlen, "unknown transport '%s': choose auto, tcp, mpi or verbs", arg);
            return -1;
        }
        o->transport = arg;
        break;
    case OPT_SCHEDULE:
        if (strcmp(arg, "auto") && strcmp(arg, "ring") && strcmp(arg, "tree")) {
            snprintf(err, errlen, "unknown schedule '%s': choose auto, ring or tree", arg);
            return -1;
        }
        o->schedule = arg;
        break;
    case OPT_SOURCE_SHARED:
        if (strcmp(arg, "auto") && strcmp(arg, "yes") && strcmp(arg, "no")) {
            snprintf(err, errlen, "unknown --source-shared '%s': choose auto, yes or no", arg);
            return -1;
        }
        o->source_shared = arg;
        break;
    case OPT_TCP_IF:
        if (!*arg) {
            snprintf(err, errlen, "--tcp-if needs an interface name or CIDR");
            return -1;
        }
        o->tcp_if = arg;
        break;
    case OPT_RDMA_DEV:
        o->rdma_dev = arg;
        break;
    case OPT_GID_INDEX:
        if (int_opt("gid-index", arg, 0, 255, &v, err, errlen))
            return -1;
        o->gid_index = (int)v;
        break;
    case OPT_RDMA_TCLASS:
        if (int_opt("rdma-tclass", arg, 0, 255, &v, err, errlen))
            return -1;
        o->rdma_tclass = (int)v;
        break;
    case 'f':
        o->flags |= P2PBCAST_FORCE;
        break;
    case OPT_PER_RANK:
        o->flags |= P2PBCAST_PER_RANK;
        break;
    case OPT_RESUME:
        o->flags |= P2PBCAST_RESUME;
        break;
    case OPT_CHECK:
        o->flags |= P2PBCAST_CHECK;
        break;
    case OPT_JSON:
        o->json_path = arg;
        break;
    case OPT_TIMEOUT: {
        char *end;
        errno = 0;
        double t = strtod(arg, &end);
        if (errno || end == arg || *end || !(t > 0) || t > 86400 * 7) {
            snprintf(err, errlen, "invalid --timeout '%s': expected seconds > 0", arg);
            return -1;
        }
        o->timeout = t;
        break;
    }
    default:
        return 1;
    }
    return 0;
}

/* Options that contradict each other, and the flags -q/-v become. */
static int check_opts(struct p2pbcast_opts *o, int quiet, int verbose, char *err, size_t errlen)
{
    if (quiet && verbose) {
        snprintf(err, errlen, "--quiet and --verbose contradict each other");
        return -1;
    }
    o->flags |= quiet ? P2PBCAST_QUIET : P2PBCAST_PROGRESS;
    if (verbose)
        o->flags |= P2PBCAST_VERBOSE;
    if (o->tcp_if && o->transport && strcmp(o->transport, "tcp") && strcmp(o->transport, "auto")) {
        snprintf(err, errlen, "--tcp-if applies to the tcp transport, not '%s'", o->transport);
        return -1;
    }
    if ((o->rdma_dev || o->gid_index >= 0 || o->rdma_tclass >= 0) && o->transport && strcmp(o->transport, "verbs") &&
        strcmp(o->transport, "auto")) {
        snprintf(err, errlen, "--rdma-dev/--gid-index/--rdma-tclass apply to the verbs transport, not '%s'", o->transport);
        return -1;
    }
    return 0;
}

static int take_operands(int argc, char **argv, struct pb_cli *cli, char *err, size_t errlen)
{
    int npos = argc - optind;
    if (npos != 2) {
        snprintf(err, errlen, npos < 2 ? "missing SOURCE and/or DEST" : "too many arguments: expected SOURCE DEST");
        return -1;
    }
    cli->source = argv[optind];
    cli->dest = argv[optind + 1];
    if (!*cli->source || !*cli->dest) {
        snprintf(err, errlen, "SOURCE and DEST must not be empty");
        return -1;
    }
    /* Catch bad placeholders now, on every rank alike, rather than mid-run. */
    char perr[128];
    if (pb_expand_dest(cli->dest, "h", 0, NULL, 0, perr, sizeof perr) < 0 && perr[0]) {
        snprintf(err, errlen, "DEST '%s': %s", cli->dest, perr);
        return -1;
    }
    return 0;
}

int pb_cli_parse(int argc, char **argv, struct pb_cli *cli, char *err, size_t errlen)
{
    memset(cli, 0, sizeof *cli);
    p2pbcast_opts_init(&cli->opts);
    int quiet = 0, verbose = 0;
    optind = 0; /* full re-initialisation (GNU): parse may be called again */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "r:c:t:fqvhV", long_opts, NULL)) != -1) {
        int rc = c == '?' ? 1 : parse_opt(c, optarg, &cli->opts, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        switch (c) {
        case 'q': quiet = 1; break;
        case 'v': verbose = 1; break;
        case 'h': cli->help = 1; break;
        case 'V': cli->version = 1; break;
        default:
            if (optopt && optopt < 256 && optopt != '?')
                snprintf(err, errlen, "unknown option or missing argument: -%c", optopt);
            else
                snprintf(err, errlen, "unknown option or missing argument: %s", argv[optind - 1]);
            return -1;
        }
    }
    if (cli->help || cli->version)
        return 0;
    if (check_opts(&cli->opts, quiet, verbose, err, errlen) < 0)
        return -1;
    return take_operands(argc, argv, cli, err, errlen);
}
