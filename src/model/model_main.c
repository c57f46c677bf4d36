/* model_main.c — the p2pbcast-model command: predict a broadcast at scale
 * with the real schedule (see model.h), compare it with the usual
 * alternatives, and sweep the chunk size. No MPI, no files. */
#include "model.h"
#include "clock.h"
#include "options.h"
#include "p2pbcast.h"
#include "plan.h"
#include "progress.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "Usage: p2pbcast-model --size SIZE --nodes N[,N...] --bandwidth RATE [OPTION]...\n"
    "Predict how long p2pbcast takes to copy SIZE bytes to N nodes (the root's\n"
    "included), by running its real schedule and flow control in a chunk-level\n"
    "simulation of links of rate RATE with a per-message cost LATENCY.\n"
    "\n"
    "  -s, --size SIZE        file size: 5G, 512M, 5000000000, 5e9 (K/M/G/T are 1024-based)\n"
    "  -n, --nodes N[,N...]   nodes including the root; a list gives one row per N\n"
    "  -b, --bandwidth RATE   per-link rate each way: 5GB/s, 4.5GiB/s, 100Gbit/s, 1e9 (bytes/s)\n"
    "  -l, --latency T        per-message cost alpha: 2us, 1.5us, 500ns, 0 (default 2us)\n"
    "                         (~1.5us verbs, 20-50us tcp on 25-50 GB/s links)\n"
    "      --cpu-rate RATE    what one thread of a node hashes and writes (and over tcp\n"
    "                         copies) per second, before passing a chunk on: 5GB/s\n"
    "                         (the default), 'measure' (XXH3 + memcpy on this machine),\n"
    "                         'measure-tcp' (one more memcpy), or 'none' (leave it out)\n"
    "  -c, --chunk-size SIZE  chunk size (default: what p2pbcast picks for SIZE, N and\n"
    "                         alpha*B)\n"
    "      --schedule NAME    ring or tree (two binary trees); default: both, side by\n"
    "                         side (--json and --sweep-chunk: the ring)\n"
    "      --slow-node RATE   one node sends at RATE (it receives at --bandwidth): the\n"
    "                         trees place it where it sends least, as p2pbcast does\n"
    "                         after its send-rate probe; the ring cannot\n"
    "      --slots N          chunk slots per node (default as p2pbcast: 8, fewer above\n"
    "                         16 MiB chunks, the pool within 128 MiB, at least 4)\n"
    "      --root-slots N     of which granted to the root (default slots/4)\n"
    "      --sweep-chunk      predict for chunk sizes 64K..64M and mark the best\n"
    "      --sweep-steps K    sizes per doubling in the sweep (default 1, up to 8)\n"
    "      --read-rate RATE   SOURCE's read rate per client (the root's; other readers\n"
    "                         read at the same rate): the root reading alone against\n"
    "                         the parallel reads of --source-shared (text only)\n"
    "      --json             machine-readable output on stdout\n"
    "  -h, --help             this text\n"
    "  -V, --version          version\n"
    "\n"
    "Prints the predicted time, efficiency (F/B)/T, which limit binds (link where\n"
    "T is within 5 % of F/B, else the largest loss: cpu, one thread slower than\n"
    "the link; alpha, chunks*alpha; tail, the pipeline's drain), the tail term (ring:\n"
    "(N-2)(alpha + c/B); trees: (2 ceil(log2(N-1)) + 1)(alpha + c/B)), and single\n"
    "sender (N-1)F/B, scatter+allgather\n"
    "2(N-1)/N F/B and binomial tree ceil(log2 N) F/B for comparison.\n";

/* One thread's hash + write (+ tcp copy) on a current server core: a few
 * GB/s (this VM: `--cpu-rate measure`). */
#define DEFAULT_CPU_RATE 5e9

enum { OPT_SLOTS = 256, OPT_ROOT_SLOTS, OPT_SWEEP, OPT_STEPS, OPT_JSON, OPT_SCHEDULE, OPT_CPU, OPT_SLOW, OPT_READ_RATE };

static int parse_size_arg(const char *s, uint64_t *out)
{
    if (pb_parse_size(s, out) == 0)
        return 0;
    /* Also plain decimal numbers in exponent form: 5e9. */
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v >= 1.8e19 || v != (double)(uint64_t)v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static const char *fmt_rate(double b, char *buf, size_t n)
{
    if (b >= 1e9)
        snprintf(buf, n, "%.3g GB/s", b / 1e9);
    else if (b >= 1e6)
        snprintf(buf, n, "%.3g MB/s", b / 1e6);
    else
        snprintf(buf, n, "%.3g B/s", b);
    return buf;
}

static const char *fmt_time(double s, char *buf, size_t n)
{
    if (s == 0)
        snprintf(buf, n, "0 s");
    else if (s < 1e-3)
        snprintf(buf, n, "%.2f us", s * 1e6);
    else if (s < 1)
        snprintf(buf, n, "%.2f ms", s * 1e3);
    else
        snprintf(buf, n, "%.4f s", s);
    return buf;
}

static void json_result(FILE *o, const struct pb_model_cfg *c, const struct pb_model_result *r, double wall,
                        int best)
{
    fprintf(o,
            "{\"schedule\": \"%s\", \"file_size\": %llu, \"nodes\": %d, \"bandwidth\": %.6g, \"latency\": %.6g, "
            "\"chunk_size\": %llu, \"default_chunk\": %s, \"chunks\": %llu, \"slots\": %u, "
            "\"root_slots\": %u, \"ring_slots\": %u, "
            "\"time\": %.9g, \"ideal\": %.9g, \"efficiency\": %.6f, \"tail\": %.9g, "
            "\"per_message\": %.9g, \"closed_form\": %.9g, \"first_node_done\": %.9g, "
            "\"root_link_busy\": %.6f, \"single_sender\": %.9g, \"scatter_allgather\": %.9g, "
            "\"binomial_tree\": %.9g, \"cpu_rate\": %.6g, \"slow_node_rate\": %.6g, \"limit\": \"%s\", \"messages\": %llu, \"events\": %llu, "
            "\"wall_seconds\": %.3f%s}",
            pb_schedule_name(c->schedule), (unsigned long long)c->file_size, c->nodes, c->bandwidth, c->alpha,
            (unsigned long long)r->chunk_size, r->default_chunk ? "true" : "false",
            (unsigned long long)r->nchunks, r->slots, r->root_slots, r->ring_slots, r->time, r->ideal,
            r->efficiency, r->tail, r->per_message, r->estimate, r->first_done, r->root_busy,
            r->single_sender, r->scatter_allgather, r->binomial, c->cpu_rate, c->slow_rate, r->limit ? r->limit : "link",
            (unsigned long long)r->messages,
            (unsigned long long)r->events, wall, best < 0 ? "" : best ? ", \"best\": true" : ", \"best\": false");
}

static void text_result(FILE *o, const struct pb_model_cfg *c, const struct pb_model_result *r, double wall)
{
    char b1[64], b2[64], b3[64];
    fprintf(o, "%s (%llu bytes) to %d nodes (%d receivers, schedule %s), links %s each way, latency %s\n",
            pb_fmt_bytes(c->file_size, b1, sizeof b1), (unsigned long long)c->file_size, c->nodes,
            c->nodes - 1, pb_schedule_name(c->schedule), fmt_rate(c->bandwidth, b2, sizeof b2), fmt_time(c->alpha, b3, sizeof b3));
    if (c->cpu_rate > 0)
        fprintf(o, "one thread per node hashes and writes %s\n", fmt_rate(c->cpu_rate, b2, sizeof b2));
    else
        fprintf(o, "CPU left out (--cpu-rate none)\n");
    fprintf(o, c->schedule == PB_SCHED_TREE ? "chunk %s%s, %llu chunks, %u slots per node (%u tree 0, %u tree 1)\n\n"
                                            : "chunk %s%s, %llu chunks, %u slots per node (%u root, %u ring)\n\n",
            pb_fmt_bytes(r->chunk_size, b1, sizeof b1), r->default_chunk ? " (p2pbcast's default)" : "",
            (unsigned long long)r->nchunks, r->slots, r->root_slots, r->ring_slots);
    if (c->slow_rate > 0)
        fprintf(o, "one node sends at %s (%.2f of the others)%s\n", fmt_rate(c->slow_rate, b1, sizeof b1),
                c->slow_rate / c->bandwidth,
                c->schedule == PB_SCHED_TREE ? ", placed where the trees make it send least" : ", a ring receiver");
    fprintf(o, "  predicted time                 %s\n", fmt_time(r->time, b1, sizeof b1));
    fprintf(o, "  efficiency (F/B)/T             %.3f   (F/B = %s)\n", r->efficiency,
            fmt_time(r->ideal, b1, sizeof b1));
    fprintf(o, "  limit                          %s\n", r->limit ? r->limit : "link");
    fprintf(o, "  tail term %-20s %s\n", c->schedule == PB_SCHED_TREE ? "(2 log2 n+1)(a+c/B)" : "(N-2)(alpha + c/B)",
            fmt_time(r->tail, b1, sizeof b1));
    fprintf(o, "  per-message term chunks*alpha  %s\n", fmt_time(r->per_message, b1, sizeof b1));
    fprintf(o, "  closed form F/B + both terms   %s\n", fmt_time(r->estimate, b1, sizeof b1));
    if (r->time > 0) {
        fprintf(o, "  first node complete            %s\n", fmt_time(r->first_done, b1, sizeof b1));
        fprintf(o, "  root out-link busy             %.1f %%\n", 100 * r->root_busy);
    }
    fprintf(o, "\n  compared with                            time        p2pbcast is\n");
    const char *nm[] = { "single sender (N-1) F/B", "scatter+allgather 2(N-1)/N F/B",
                         "binomial tree ceil(log2 N) F/B" };
    double t[] = { r->single_sender, r->scatter_allgather, r->binomial };
    for (int i = 0; i < 3; i++) {
        if (r->time > 0)
            fprintf(o, "  %-36s %12s   %.2fx faster\n", nm[i], fmt_time(t[i], b1, sizeof b1), t[i] / r->time);
        else
            fprintf(o, "  %-36s %12s\n", nm[i], fmt_time(t[i], b1, sizeof b1));
    }
    fprintf(o, "\n  (simulated %llu messages, %llu events in %.2f s)\n", (unsigned long long)r->messages,
            (unsigned long long)r->events, wall);
}

static int run_one(const struct pb_model_cfg *c, struct pb_model_result *r, double *wall)
{
    char err[512];
    double t0 = pb_now();
    int rc = pb_model_run(c, r, err, sizeof err);
    *wall = pb_now() - t0;
    if (rc < 0) {
        fprintf(stderr, "p2pbcast-model: error: %s\n", err);
        return rc == -2 ? 3 : 2;
    }
    return 0;
}

static int parse_nodes(const char *s, int **out, int *n)
{
    int cap = 8, k = 0;
    int *v = malloc(cap * sizeof *v);
    if (!v)
        return -1;
    const char *p = s;
    for (;;) {
        errno = 0;
        char *end;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 1 || x > (1 << 26) || (*end && *end != ',')) {
            free(v);
            return -1;
        }
        if (k == cap) {
            int *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int)x;
        if (!*end)
            break;
        p = end + 1;
    }
    *out = v;
    *n = k;
    return 0;
}

static int sweep(const struct pb_model_cfg *base, int steps, int json, int *first_json)
{
    /* 64K .. 64M, `steps` sizes per doubling (rounded to 4 KiB). */
    uint64_t sizes[11 * 8 + 2];
    int ns = 0;
    for (int oct = 0; oct < 11; oct++) {
        uint64_t lo = (uint64_t)65536 << oct;
        for (int s = 0; s < steps && !(oct == 10 && s > 0); s++) {
            /* x = 2^(s/steps) = e^(y), by its series (no libm needed) */
            double y = (double)s / steps * 0.6931471805599453, term = 1.0, x = 1.0;
            for (int i = 1; i < 20; i++) {
                term *= y / i;
                x += term;
            }
            uint64_t c = (uint64_t)((double)lo * x);
            c = (c + 2048) / 4096 * 4096;
            sizes[ns++] = c;
        }
    }
    uint64_t def = pb_model_default_chunk(base);
    int have_def = 0;
    for (int i = 0; i < ns; i++)
        have_def |= sizes[i] == def;
    if (!have_def) {
        int i = ns++;
        while (i > 0 && sizes[i - 1] > def) {
            sizes[i] = sizes[i - 1];
            i--;
        }
        sizes[i] = def;
    }
    struct pb_model_result *res = calloc((size_t)ns, sizeof *res);
    double *wall = calloc((size_t)ns, sizeof *wall);
    if (!res || !wall) {
        free(res);
        free(wall);
        fprintf(stderr, "p2pbcast-model: out of memory\n");
        return 2;
    }
    int best = -1, rc = 0;
    for (int i = 0; i < ns && !rc; i++) {
        struct pb_model_cfg c = *base;
        c.chunk_size = sizes[i];
        rc = run_one(&c, &res[i], &wall[i]);
        res[i].default_chunk = sizes[i] == def;
        if (!rc && (best < 0 || res[i].time < res[best].time))
            best = i;
    }
    if (rc) {
        free(res);
        free(wall);
        return rc;
    }
    char b1[64], b2[64], b3[64];
    if (json) {
        for (int i = 0; i < ns; i++) {
            struct pb_model_cfg c = *base;
            c.chunk_size = sizes[i];
            printf("%s\n  ", *first_json ? "" : ",");
            *first_json = 0;
            json_result(stdout, &c, &res[i], wall[i], i == best);
        }
    } else {
        char b4[64];
        char b5[64];
        printf("%s to %d nodes, links %s, latency %s, CPU %s: F/B = %s\n",
               pb_fmt_bytes(base->file_size, b1, sizeof b1), base->nodes,
               fmt_rate(base->bandwidth, b2, sizeof b2), fmt_time(base->alpha, b3, sizeof b3),
               base->cpu_rate > 0 ? fmt_rate(base->cpu_rate, b5, sizeof b5) : "left out",
               fmt_time(res[0].ideal, b4, sizeof b4));
        printf("  %-12s %10s %6s %12s %10s %6s %12s %12s\n", "chunk", "chunks", "slots", "time", "efficiency",
               "limit", "tail", "chunks*alpha");
        for (int i = 0; i < ns; i++) {
            char t1[32], t2[32], t3[32];
            printf("  %-12s %10llu %6u %12s %10.3f %6s %12s %12s%s%s\n", pb_fmt_bytes(sizes[i], b1, sizeof b1),
                   (unsigned long long)res[i].nchunks, res[i].slots, fmt_time(res[i].time, t1, sizeof t1),
                   res[i].efficiency, res[i].limit ? res[i].limit : "link", fmt_time(res[i].tail, t2, sizeof t2),
                   fmt_time(res[i].per_message, t3, sizeof t3), i == best ? "  <- best" : "",
                   sizes[i] == def ? "  <- default" : "");
        }
        printf("\n");
    }
    free(res);
    free(wall);
    return 0;
}

/* What the command line asked for. */
struct args {
    struct pb_model_cfg cfg;
    int have_size, do_sweep, json, steps, nn;
    int both; /* no --schedule: the ring and the trees side by side */
    int *nodes;
    double read_rate; /* --read-rate, bytes/s; 0: not given */
};

/* The integer options: --slots, --root-slots, --sweep-steps. */
static const char *parse_count(int o, const char *arg, struct args *a)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < (o == OPT_SLOTS ? 4 : 1) || v > (o == OPT_STEPS ? 8 : 4096))
        return o == OPT_SLOTS ? "invalid --slots (4 to 4096)"
               : o == OPT_STEPS ? "invalid --sweep-steps (1 to 8)"
                                : "invalid --root-slots";
    if (o == OPT_SLOTS)
        a->cfg.slots = (uint32_t)v;
    else if (o == OPT_ROOT_SLOTS)
        a->cfg.root_slots = (uint32_t)v;
    else
        a->steps = (int)v;
    return NULL;
}

/* --cpu-rate: a rate, measure[-tcp] (this machine, one thread), none. */
static const char *parse_cpu(const char *arg, double *out)
{
    if (!strcmp(arg, "none") || !strcmp(arg, "0")) {
        *out = 0;
        return NULL;
    }
    if (!strcmp(arg, "measure") || !strcmp(arg, "measure-tcp")) {
        *out = pb_model_measure_cpu(!strcmp(arg, "measure-tcp"));
        return *out > 0 ? NULL : "--cpu-rate measure: out of memory";
    }
    return pb_model_parse_bandwidth(arg, out) ? "invalid --cpu-rate (e.g. 5GB/s, measure, none)" : NULL;
}

/* One option; returns NULL or what is wrong with its argument. */
static const char *parse_opt(int o, const char *arg, struct args *a)
{
    switch (o) {
    case 's':
        a->have_size = 1;
        return parse_size_arg(arg, &a->cfg.file_size) ? "invalid --size" : NULL;
    case 'n':
        free(a->nodes);
        a->nodes = NULL;
        return parse_nodes(arg, &a->nodes, &a->nn) ? "invalid --nodes (1 to 67108864, comma-separated)" : NULL;
    case 'b':
        return pb_model_parse_bandwidth(arg, &a->cfg.bandwidth) ? "invalid --bandwidth (e.g. 5GB/s, 100Gbit/s)"
                                                                 : NULL;
    case 'l':
        return pb_model_parse_duration(arg, &a->cfg.alpha) ? "invalid --latency (e.g. 2us, 500ns)" : NULL;
    case 'c':
        return pb_parse_size(arg, &a->cfg.chunk_size) || a->cfg.chunk_size < PB_MIN_CHUNK ||
                       a->cfg.chunk_size > PB_MAX_CHUNK
                   ? "invalid --chunk-size (4K to 1G)"
                   : NULL;
    case OPT_SLOTS:
    case OPT_ROOT_SLOTS:
    case OPT_STEPS:
        return parse_count(o, arg, a);
    case OPT_SCHEDULE:
        a->cfg.schedule = pb_schedule_parse(arg);
        a->both = 0;
        return a->cfg.schedule < 0 ? "invalid --schedule (ring or tree)" : NULL;
    case OPT_CPU:
        return parse_cpu(arg, &a->cfg.cpu_rate);
    case OPT_SLOW:
        return pb_model_parse_bandwidth(arg, &a->cfg.slow_rate) || a->cfg.slow_rate <= 0
                   ? "invalid --slow-node (a rate, e.g. 1.25GB/s)" : NULL;
    case OPT_READ_RATE:
        return pb_model_parse_bandwidth(arg, &a->read_rate) || a->read_rate <= 0
                   ? "invalid --read-rate (e.g. 1GB/s)"
                   : NULL;
    case OPT_SWEEP: a->do_sweep = 1; return NULL;
    case OPT_JSON: a->json = 1; return NULL;
    default: return "unknown option or missing argument";
    }
}

/* 0 go on, 1 done (help or version printed), 2 usage error (printed). */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option lo[] = {
        { "size", required_argument, NULL, 's' },
        { "nodes", required_argument, NULL, 'n' },
        { "bandwidth", required_argument, NULL, 'b' },
        { "latency", required_argument, NULL, 'l' },
        { "chunk-size", required_argument, NULL, 'c' },
        { "slots", required_argument, NULL, OPT_SLOTS },
        { "schedule", required_argument, NULL, OPT_SCHEDULE },
        { "slow-node", required_argument, NULL, OPT_SLOW },
        { "root-slots", required_argument, NULL, OPT_ROOT_SLOTS },
        { "sweep-chunk", no_argument, NULL, OPT_SWEEP },
        { "cpu-rate", required_argument, NULL, OPT_CPU },
        { "sweep-steps", required_argument, NULL, OPT_STEPS },
        { "json", no_argument, NULL, OPT_JSON },
        { "read-rate", required_argument, NULL, OPT_READ_RATE },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *bad = NULL, *badarg = NULL;
    int o;
    opterr = 0;
    while (!bad && (o = getopt_long(argc, argv, "s:n:b:l:c:hV", lo, NULL)) != -1) {
        if (o == 'h' || o == 'V') {
            if (o == 'h')
                fputs(usage, stdout);
            else
                printf("p2pbcast-model %s\n", P2PBCAST_VERSION);
            return 1;
        }
        if ((bad = parse_opt(o, optarg, a)))
            badarg = o == '?' || o == ':' ? argv[optind - 1] : optarg;
    }
    if (!bad && optind < argc)
        bad = "unexpected argument", badarg = argv[optind];
    if (!bad && (!a->have_size || !a->nn || a->cfg.bandwidth <= 0))
        bad = "--size, --nodes and --bandwidth are required";
    if (!bad && a->read_rate > 0 && (a->json || a->do_sweep))
        bad = "--read-rate prints a text table: not with --json or --sweep-chunk";
    if (!bad)
        return 0;
    fprintf(stderr, "p2pbcast-model: error: %s%s%s%s\nTry 'p2pbcast-model --help' for more information.\n", bad,
            badarg ? " '" : "", badarg ? badarg : "", badarg ? "'" : "");
    return 2;
}

/* One row of the table printed for several node counts. */
static void table_row(const struct pb_model_cfg *c, const struct pb_model_result *r)
{
    char b1[32], t1[32], t2[32], t3[32], t4[32], t5[32];
    printf("%-10d %-10s %10llu %12s %10.3f %12s %14s %12s %12s\n", c->nodes,
           pb_fmt_bytes(r->chunk_size, b1, sizeof b1), (unsigned long long)r->nchunks,
           fmt_time(r->time, t1, sizeof t1), r->efficiency, fmt_time(r->tail, t2, sizeof t2),
           fmt_time(r->single_sender, t3, sizeof t3), fmt_time(r->scatter_allgather, t4, sizeof t4),
           fmt_time(r->binomial, t5, sizeof t5));
}

/* One row per N with both schedules side by side, and what auto takes. */
static int run_both(const struct args *a)
{
    printf("%-8s %-10s %10s %6s %-5s   %-10s %10s %6s %-5s   %s\n", "nodes", "ring chunk", "time", "eff", "limit",
           "tree chunk", "time", "eff", "limit", "auto");
    for (int i = 0; i < a->nn; i++) {
        struct pb_model_result r[2];
        struct pb_model_cfg c = a->cfg;
        c.nodes = a->nodes[i];
        double wall;
        for (int s = 0; s < 2; s++) {
            c.schedule = s;
            int rc = run_one(&c, &r[s], &wall);
            if (rc)
                return rc;
        }
        char b1[32], b2[32], t1[32], t2[32];
        struct pb_link_cost lc = { .alpha = c.alpha, .rate = c.bandwidth };
        printf("%-8d %-10s %10s %6.3f %-5s   %-10s %10s %6.3f %-5s   %s\n", c.nodes,
               pb_fmt_bytes(r[0].chunk_size, b1, sizeof b1), fmt_time(r[0].time, t1, sizeof t1), r[0].efficiency,
               r[0].limit, pb_fmt_bytes(r[1].chunk_size, b2, sizeof b2), fmt_time(r[1].time, t2, sizeof t2),
               r[1].efficiency, r[1].limit, pb_schedule_name(pb_schedule_auto(c.file_size, c.nodes, &lc, NULL, 0)));
    }
    return 0;
}

/* --read-rate: the root reading SOURCE alone at rho against the parallel
 * reads of --source-shared, per N. Each moves at the slower of its reads
 * and its network (reads pipelined with sends); the network times of the
 * root's schedule and of the trees come from the simulation, the
 * allgather's from its closed form (its ring's N-1 hops; on the bed it fell
 * below the trees at 16 hosts, beyond what this form says). The reader-fed
 * trees take the G pairs the plan would (pb_readtree_choose_pairs): 2G
 * readers each read F/2G; their network is the simulated two trees' (every
 * node still receives F and sends at most F, the trees as deep; the G
 * pairs' own pipelines, each with its own slots, are not simulated). A
 * parallel mode adds the root's re-read of the sample V
 * (pb_shared_sample_budget) at rho, after the transfer; the reader-fed
 * trees read it during the transfer where the root (leader 0) tops none
 * of their trees (source_verify.c): max(reads, network, V/rho) then.
 * auto: pb_shared_choose. */
static int run_reads(const struct args *a)
{
    const double rho = a->read_rate, B = a->cfg.bandwidth, al = a->cfg.alpha, F = (double)a->cfg.file_size;
    char r1[32], r2[32];
    printf("SOURCE read at %s per client, links %s: time and efficiency (F/B)/T\n",
           fmt_rate(rho, r1, sizeof r1), fmt_rate(B, r2, sizeof r2));
    printf("%-8s %-22s %6s   %-22s %6s   %-22s %6s   %s\n", "nodes", "root reads", "eff", "readtree (G pairs)",
           "eff", "allgather (N readers)", "eff", "auto");
    for (int i = 0; i < a->nn; i++) {
        struct pb_model_cfg c = a->cfg;
        struct pb_model_result root_net, tree_net;
        double wall;
        int N = c.nodes = a->nodes[i], rc;
        struct pb_link_cost lc = { .alpha = c.alpha, .rate = c.bandwidth };
        int root_sched = pb_schedule_auto(c.file_size, N, &lc, NULL, 0);
        c.schedule = root_sched;
        if ((rc = run_one(&c, &root_net, &wall)))
            return rc;
        c.schedule = PB_SCHED_TREE;
        if ((rc = run_one(&c, &tree_net, &wall)))
            return rc;
        uint64_t budget = pb_shared_sample_budget(c.file_size);
        double V = F < (double)budget ? F : (double)budget;
        double cr = (double)(c.chunk_size ? c.chunk_size : pb_plan_default_chunk(c.file_size, N - 1, pb_plan_alpha_b(&lc)));
        double root = root_net.time > F / rho ? root_net.time : F / rho;
        int G = pb_readtree_choose_pairs(N, rho, B, NULL, 0);
        double rtree = tree_net.time > F / (2 * G * rho) ? tree_net.time : F / (2 * G * rho);
        if (pb_readtree_root_reads(N, G, 0))
            rtree += V / rho;
        else if (rtree < V / rho)
            rtree = V / rho;
        double ag_net = F * (N - 1) / N / B + (N - 1) * (al + cr / B) + F / cr * al;
        double ag = (ag_net > F / (N * rho) ? ag_net : F / (N * rho)) + V * (N - 1) / N / rho;
        int pick = N > 1 ? pb_shared_choose(c.file_size, N, 0, tree_net.chunk_size, rho, B,
                                            root_net.time > 0 && root_sched == PB_SCHED_TREE ? PB_SCHED_TREE
                                                                                             : PB_SCHED_RING,
                                            0, NULL, NULL, 0)
                         : -1;
        char t1[32], t2[32], t3[32], n1[40], n2[40];
        snprintf(n1, sizeof n1, "%s (%s)", fmt_time(root, t1, sizeof t1),
                 pb_schedule_name(root_sched));
        snprintf(n2, sizeof n2, "%s (G %d)", fmt_time(rtree, t2, sizeof t2), G);
        double ideal = F / B;
        printf("%-8d %-22s %6.3f   %-22s %6.3f   %-22s %6.3f   %s\n", N, n1, ideal / root, n2, ideal / rtree,
               fmt_time(ag, t3, sizeof t3), ideal / ag, pick < 0 ? "root reads" : pb_schedule_name(pick));
    }
    return 0;
}

static int run_all(const struct args *a)
{
    if (a->read_rate > 0)
        return run_reads(a);
    if (a->both && !a->json && !a->do_sweep && a->nn > 1)
        return run_both(a);
    int rc = 0, first = 1;
    int list = a->nn > 1 || a->do_sweep;
    if (a->json && list)
        printf("[");
    if (!a->do_sweep && a->nn > 1 && !a->json)
        printf("%-10s %-10s %10s %12s %10s %12s %14s %12s %12s\n", "nodes", "chunk", "chunks", "time",
               "efficiency", "tail", "single sender", "scat+allg", "binomial");
    for (int i = 0; i < a->nn && !rc; i++) {
        struct pb_model_cfg c = a->cfg;
        c.nodes = a->nodes[i];
        if (a->do_sweep) {
            rc = sweep(&c, a->steps, a->json, &first);
            continue;
        }
        struct pb_model_result r;
        double wall;
        if ((rc = run_one(&c, &r, &wall)))
            break;
        if (a->json) {
            printf("%s", list ? (first ? "\n  " : ",\n  ") : "");
            first = 0;
            json_result(stdout, &c, &r, wall, -1);
            if (!list)
                printf("\n");
        } else if (a->nn > 1) {
            table_row(&c, &r);
        } else {
            text_result(stdout, &c, &r, wall);
            if (a->both) {
                /* and the trees below */
                c.schedule = PB_SCHED_TREE;
                if ((rc = run_one(&c, &r, &wall)))
                    break;
                printf("\n");
                text_result(stdout, &c, &r, wall);
            }
        }
    }
    if (a->json && list && !rc)
        printf("\n]\n");
    return rc;
}

int main(int argc, char **argv)
{
    struct args a = { .cfg = { .alpha = 2e-6, .cpu_rate = DEFAULT_CPU_RATE }, .steps = 1, .both = 1 };
    int rc = parse_args(argc, argv, &a);
    if (rc == 0)
        rc = run_all(&a);
    else if (rc == 1)
        rc = 0;
    free(a.nodes);
    return rc;
}
