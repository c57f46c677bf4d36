/* rates.c — phase 1d: the tcp rails, the nodes' send rates and their
 * places in the schedule (placement.h), before anyone knows its partners.
 *
 * Over tcp between machines the leaders choose the rails here, in one
 * collective with the send-rate probe (pb_tcp_rails_agree), and hand them
 * to the transport: one probe and one decision instead of two (the rails'
 * probe at connect cost 0.2 s more at 8 hosts). When placement is worth it
 * every leader sends its successor in leader order about 60 ms of data on
 * every rail and times its predecessor's, in two or three rounds so that no
 * node sends and receives at once; the root learns each node's send rate
 * (the sum over the chosen rails). A node below PB_SLOW_FRACTION of the
 * median rate is slow: --schedule auto then takes the trees, and placement
 * puts the slow nodes where they send least. With several rails the chunk
 * is cut (pb_plan_rail_chunk) and every rail keeps a full window of slots
 * (pb_plan_rail_slots). The root tells every rank the schedule, the chunk,
 * the slots and the order.
 *
 * Placement is worth it: tcp, not all on one machine, at least 3 nodes, a
 * schedule placement can change (auto or tree, not the ring or the
 * allgather), and a transfer that takes at least PLACE_MIN_SECONDS at the
 * root's link rate (1 Gbit/s where the device does not say, as on virtual
 * NICs): the probe costs about 0.2-0.4 s (bench/README.md), at most 1.6 s a
 * round. Otherwise the rails alone: a probe only on networks of unknown
 * speed, nothing where one interface is named. verbs and mpi: nothing here,
 * the default order. P2PBCAST_TEST_PLACEMENT=0 turns placement off, =1 on
 * whatever the size (tests and bench/). */
#include "phases.h"
#include "placement.h"
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLACE_MIN_SECONDS 1.0
#define PLACE_UNKNOWN_MBIT 1000

/* What the phase does, the root's call for every rank. */
enum { NOTHING, RAILS, RATES };

/* Root: is the send-rate probe worth its time? */
static int worth_probing(const struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    const char *s = st->o.schedule;
    long hook = pb_test_hook(st, "P2PBCAST_TEST_PLACEMENT", -1);
    if (hook == 0 || (st->o.flags & P2PBCAST_CHECK) || bi->nleaders < 3 ||
        pb_sched_of(st->plan.schedule)->every_node_reads || (s && strcmp(s, "auto") && strcmp(s, "tree")))
        return 0;
    if (hook == 1)
        return 1;
    uint64_t mbit = pb_tcp_link_mbit(st->o.tcp_if, NULL, 0);
    double seconds = (double)st->meta.size * 8 / 1e6 / (double)(mbit ? mbit : PLACE_UNKNOWN_MBIT);
    return seconds >= PLACE_MIN_SECONDS;
}

/* Root: the rails and the send rates, the rails alone, or nothing (not
 * tcp between machines: loopback or another transport). */
static int32_t what_to_probe(const struct stage *st)
{
    const char *tif = st->o.tcp_if;
    if (strcmp(st->meta.transport, "tcp") || st->bi->all_local)
        return NOTHING;
    if (worth_probing(st))
        return RATES;
    return tif && !strchr(tif, ',') ? NOTHING : RAILS; /* one interface named: nothing to choose */
}

/* Leaders: the rails, and with RATES every node's send rate on the root
 * (send_kbit); with what the transport's set-up would be given. A failure
 * here is the transport's to report (connect.c): every leader votes there. */
static void probe(struct stage *st, int32_t what, uint32_t *send_kbit)
{
    struct pb_transport_cfg tc;
    pb_stage_transport_cfg(st, &tc);
    (void)pb_tcp_rails_agree(&tc, what == RATES, send_kbit, &st->rails);
    st->have_rails = 1;
}

/* The root's decision, to every rank; order[] follows (nleaders - 1). */
struct place_decision {
    int32_t schedule;
    int32_t placed; /* slow receivers moved; 0: the default order */
    int32_t hang;
    uint32_t slots;
    uint64_t chunk;
};

/* Where receiver r now sends from, in words. */
static const char *where(const struct pb_plan *p, int r)
{
    int load = pb_place_load(p, r);
    if (load == 0)
        return p->tree_hang ? "hung below a leaf of both trees: it passes nothing on"
                            : "a leaf in both trees: it passes nothing on";
    if (load == 1)
        return "one child in one tree, a leaf in the other: it passes on half the file";
    return "no lighter place left: it passes on the whole file";
}

/* Root: one line naming each slow node, its rate and its place, for -v and
 * the summary. */
static void describe(struct stage *st, const uint64_t *kbit, const int *slow, int nslow, uint64_t median)
{
    const struct pb_boot_info *bi = st->bi;
    size_t l = 0, n = sizeof st->placement;
    for (int i = 0; i < nslow && l < n; i++) {
        int who = slow[i], r = pb_plan_receiver_of(&st->plan, bi->root_leader, bi->nleaders, who);
        l += (size_t)snprintf(st->placement + l, n - l, "%s%s sent at %.0f Mbit/s, %.2f of the median %.0f; %s",
                              i ? "; " : "", bi->names[who], kbit[who] / 1000.0,
                              (double)kbit[who] / (double)median, median / 1000.0,
                              r < 0 ? "the root sends the whole file under every schedule"
                              : st->plan.schedule != PB_SCHED_TREE ? "not placed (the ring: every node forwards alike)"
                                                                   : where(&st->plan, r));
    }
}

/* Root: the send rates (kbit/s, per leader), the schedule and the order. */
static void decide(struct stage *st, const uint32_t *measured, struct place_decision *d, int32_t *order)
{
    const struct pb_boot_info *bi = st->bi;
    int N = bi->nleaders;
    uint64_t *kbit = calloc((size_t)N, sizeof *kbit);
    int *slow = calloc((size_t)N, sizeof *slow);
    int *ord = calloc((size_t)N, sizeof *ord);
    if (!kbit || !slow || !ord)
        goto out;
    for (int l = 0; l < N; l++)
        kbit[l] = measured[l];
    uint64_t median = pb_place_median(kbit, N);
    int nslow = pb_place_slow(kbit, N, slow), slow_receivers = 0;
    for (int i = 0; i < nslow; i++)
        slow_receivers += slow[i] != bi->root_leader;
    if (st->verbose) {
        fprintf(stderr, "p2pbcast: send rates (tcp probe, median %.0f Mbit/s)%s", median / 1000.0,
                N <= 64 ? ":" : "");
        for (int l = 0; l < N && N <= 64; l++)
            fprintf(stderr, "%s %s %.0f", l ? "," : "", bi->names[l], kbit[l] / 1000.0);
        fputc('\n', stderr);
    }
    const char *s = st->o.schedule;
    if (slow_receivers && (!s || !strcmp(s, "auto")) && st->plan.schedule != PB_SCHED_TREE) {
        d->schedule = PB_SCHED_TREE;
        if (st->verbose)
            fprintf(stderr, "p2pbcast: schedule auto: tree: %d slow sender(s), placed where the trees let them "
                            "send least (the ring moves every chunk through every node)\n", slow_receivers);
        d->chunk = pb_meta_choose_chunk(st, st->meta.size, st->meta.transport, PB_SCHED_TREE);
    }
    struct pb_plan p = st->plan;
    p.schedule = d->schedule;
    int hang = 0;
    d->placed = pb_place(&p, bi->root_leader, N, kbit, ord, &hang);
    d->hang = hang;
    for (int r = 0; r < N - 1; r++)
        order[r] = ord[r];
    st->plan.schedule = d->schedule;
    st->plan.order = d->placed ? ord : NULL;
    st->plan.tree_hang = hang;
    if (nslow)
        describe(st, kbit, slow, nslow, median);
    st->plan.order = NULL; /* set again, for every rank alike, from the decision */
    if (nslow && st->verbose)
        fprintf(stderr, "p2pbcast: %s: %s\n", d->placed ? "placement" : "slow sender", st->placement);
out:
    free(kbit);
    free(slow);
    free(ord);
}

/* Every rank: take the root's decision. */
static int apply(struct stage *st, const struct place_decision *d, const int32_t *order)
{
    int R = st->bi->nleaders - 1;
    if ((uint64_t)d->chunk != st->meta.chunk) {
        char err[256];
        st->meta.chunk = d->chunk;
        int sched = st->plan.schedule;
        if (pb_plan_init(&st->plan, st->meta.size, st->meta.chunk, R, err, sizeof err) < 0) {
            st->d.code = P2PBCAST_ERR_USAGE;
            pb_copy_str(st->d.msg, sizeof st->d.msg, err);
            return st->d.code;
        }
        st->plan.schedule = sched;
    }
    st->meta.schedule = d->schedule;
    st->meta.slots = d->slots;
    st->plan.schedule = d->schedule;
    if (d->placed) {
        st->order = malloc((size_t)(R > 0 ? R : 1) * sizeof *st->order);
        if (!st->order) {
            st->d.code = P2PBCAST_ERR_INTERNAL;
            snprintf(st->d.msg, sizeof st->d.msg, "out of memory for the placement of %d nodes", R);
            return st->d.code;
        }
        for (int r = 0; r < R; r++)
            st->order[r] = order[r];
        st->plan.order = st->order;
        st->plan.tree_hang = d->hang;
    }
    return 0;
}

/* Root: the chunk over several rails (pb_plan_rail_chunk), unless
 * --chunk-size says; the ring and the trees only (the schedules that read
 * SOURCE on many nodes have cut their shares already). */
static uint64_t rails_chunk(const struct stage *st, uint64_t chunk, int schedule)
{
    uint64_t c = chunk;
    if (!st->o.chunk_size && (schedule == PB_SCHED_RING || schedule == PB_SCHED_TREE))
        c = pb_plan_rail_chunk(chunk, st->rails.n);
    if (st->verbose && c != chunk)
        fprintf(stderr, "p2pbcast: chunk: %llu KiB over %d rails (each chunk goes whole to one rail: the split is "
                        "as fine as a chunk)\n", (unsigned long long)(c >> 10), st->rails.n);
    return c;
}

/* Root: the slots, once the rails and the chunk are known: a full window
 * on every rail unless --slots says. */
static uint32_t slots_for(const struct stage *st, uint64_t chunk)
{
    int rails = st->rails.n;
    uint32_t n = st->o.slots ? st->meta.slots : pb_plan_rail_slots(st->meta.slots, rails, chunk);
    if (st->verbose && n != st->meta.slots)
        fprintf(stderr, "p2pbcast: %u slots per node: %u for each of %d rails (the pool within %llu MiB)\n", n,
                n / (uint32_t)rails, rails, (unsigned long long)(PB_POOL_BUDGET >> 20));
    return n;
}

int pb_phase_rates(struct stage *st)
{
    const struct pb_boot_info *bi = st->bi;
    uint32_t *all = st->root ? calloc((size_t)bi->nleaders, sizeof *all) : NULL;
    int32_t what = st->root && all ? what_to_probe(st) : NOTHING;
    int rc = pb_agree_bcast(&st->ag, &what, sizeof what);
    if (rc == 0 && what == NOTHING) {
        free(all);
        return 0;
    }
    if (rc == 0 && bi->is_leader)
        probe(st, what, st->root ? all : NULL);
    size_t len = sizeof(struct place_decision) + (size_t)bi->nleaders * sizeof(int32_t);
    unsigned char *buf = calloc(1, len);
    struct place_decision d = { .schedule = st->plan.schedule, .chunk = st->meta.chunk, .slots = st->meta.slots };
    if (st->root && rc == 0 && buf) {
        if (what == RATES)
            decide(st, all, &d, (int32_t *)(buf + sizeof d));
        d.chunk = rails_chunk(st, d.chunk, d.schedule);
        d.slots = slots_for(st, d.chunk);
    }
    free(all);
    if (buf)
        memcpy(buf, &d, sizeof d);
    if (rc != 2 && buf)
        rc = pb_agree_bcast(&st->ag, buf, len);
    if (rc == 2)
        rc = pb_agree_interrupted(&st->ag, &st->d);
    else if (rc != 0 || !buf) {
        st->d.code = P2PBCAST_ERR_INTERNAL;
        snprintf(st->d.msg, sizeof st->d.msg, buf ? "MPI exchange of the send rates failed"
                                                  : "out of memory for the placement");
        rc = st->d.code;
    } else {
        memcpy(&d, buf, sizeof d);
        rc = apply(st, &d, (const int32_t *)(buf + sizeof d));
    }
    free(buf);
    return rc;
}
