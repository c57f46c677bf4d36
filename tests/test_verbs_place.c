/* test_verbs_place.c — which pages of the slot pool go to which NUMA node
 * when the verbs rails' devices sit on different nodes (verbs_place.h):
 * nothing at all on one node, page-sized and odd-sized slots, pages shared
 * by two rails' slots (most bytes wins, ties to the lower slot), rails on
 * the same node merged, rails of unknown place left alone, bad input. */
#include "tap.h"
#include "verbs_place.h"

#include <stdlib.h>
#include <string.h>

#define PG 4096u

/* The plan's runs as "first+npages:node ..." for compact checks. */
static const char *runs_str(const struct pb_vplace_plan *p)
{
    static char buf[512];
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->nruns && used < sizeof buf; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%zu+%zu:%d", i ? " " : "", p->runs[i].first,
                                 p->runs[i].npages, p->runs[i].node);
    return buf;
}

static void one_node(void)
{
    uint8_t rail[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    struct pb_vplace_plan p;
    int same[2] = {0, 0}, unknown[2] = {-1, 1}, none[2] = {-1, -1}, one[1] = {1};
    ok(pb_vplace_plan(8 * 2 * PG, PG, 2 * PG, 8, rail, same, 2, &p) == 0 && !p.split && p.nruns == 0 && !p.runs &&
           p.npages == 16,
       "two rails on one node: nothing to move, no runs");
    pb_vplace_free(&p);
    ok(pb_vplace_plan(8 * 2 * PG, PG, 2 * PG, 8, rail, unknown, 2, &p) == 0 && !p.split && p.nruns == 0,
       "one rail's node unknown, one known: nothing to move");
    pb_vplace_free(&p);
    ok(pb_vplace_plan(8 * 2 * PG, PG, 2 * PG, 8, rail, none, 2, &p) == 0 && !p.split && p.nruns == 0,
       "no node known: nothing to move");
    pb_vplace_free(&p);
    uint8_t zero[8] = {0};
    ok(pb_vplace_plan(8 * 2 * PG, PG, 2 * PG, 8, zero, one, 1, &p) == 0 && !p.split && p.nruns == 0,
       "one rail: nothing to move");
    pb_vplace_free(&p);
}

static void page_sized(void)
{
    uint8_t rail[4] = {0, 1, 0, 1};
    int node[2] = {0, 1};
    struct pb_vplace_plan p;
    ok(pb_vplace_plan(4 * 2 * PG, PG, 2 * PG, 4, rail, node, 2, &p) == 0 && p.split &&
           !strcmp(runs_str(&p), "0+2:0 2+2:1 4+2:0 6+2:1") && p.shared == 0 && p.rail_pages[0] == 4 &&
           p.rail_pages[1] == 4,
       "slots of 2 pages, rails 0 1 0 1 on nodes 0 1: each slot's pages to its rail's node (%s)", runs_str(&p));
    pb_vplace_free(&p);
    int swapped[2] = {3, 2};
    ok(pb_vplace_plan(4 * 2 * PG, PG, 2 * PG, 4, rail, swapped, 2, &p) == 0 &&
           !strcmp(runs_str(&p), "0+2:3 2+2:2 4+2:3 6+2:2"),
       "node numbers are the devices' own (3 and 2): %s", runs_str(&p));
    pb_vplace_free(&p);
}

static void shared_pages(void)
{
    /* slots of 4160 bytes (a 4 KiB chunk and a 64-byte trailer): every
     * page after the first holds the end of one slot and most of the next */
    uint8_t rail[4] = {0, 1, 0, 1};
    int node[2] = {0, 1};
    struct pb_vplace_plan p;
    ok(pb_vplace_plan(4 * 4160, PG, 4160, 4, rail, node, 2, &p) == 0 && p.npages == 4 &&
           !strcmp(runs_str(&p), "0+1:0 1+1:1 2+1:0 3+1:1") && p.shared == 3 && p.rail_pages[0] == 2 &&
           p.rail_pages[1] == 2,
       "4160-byte slots: a shared page goes to the slot with most of it; the partial last page stays (%s, %zu shared)",
       runs_str(&p), p.shared);
    pb_vplace_free(&p);

    /* slots of 1.5 pages: the middle page is half and half, the lower slot's rail takes it */
    uint8_t r2[2] = {0, 1};
    ok(pb_vplace_plan(2 * 6144, PG, 6144, 2, r2, node, 2, &p) == 0 && !strcmp(runs_str(&p), "0+2:0 2+1:1") &&
           p.shared == 1,
       "a page split evenly between two rails goes to the lower slot's (%s)", runs_str(&p));
    pb_vplace_free(&p);

    /* a node's rails merged: rails 0 and 2 on node 0, rail 1 on node 1 */
    uint8_t r3[6] = {0, 2, 1, 0, 2, 1};
    int n3[3] = {0, 1, 0};
    ok(pb_vplace_plan(6 * 4160, PG, 4160, 6, r3, n3, 3, &p) == 0 && !strcmp(runs_str(&p), "0+2:0 2+1:1 3+2:0 5+1:1") &&
           p.rail_pages[0] + p.rail_pages[2] == 4 && p.rail_pages[1] == 2 && p.shared == 3,
       "two rails on one node: their pages merge into one run, their shared page is not counted shared (%s, %zu)",
       runs_str(&p), p.shared);
    pb_vplace_free(&p);

    /* a rail of unknown place among two known: its pages are not in the plan */
    int n4[3] = {0, 1, -1};
    uint8_t r4[3] = {0, 1, 2};
    ok(pb_vplace_plan(3 * PG, PG, PG, 3, r4, n4, 3, &p) == 0 && p.split && !strcmp(runs_str(&p), "0+1:0 1+1:1"),
       "a rail whose node is unknown: its slots stay where they are (%s)", runs_str(&p));
    pb_vplace_free(&p);
}

/* The default pool: 8 slots of 1 MiB + 64 bytes, rails 0 1 0 1 ...: every
 * whole page in the plan, and each page on the node of the slot owning most
 * of it. */
static void realistic(void)
{
    size_t ss = (1u << 20) + 64, len = 8 * ss;
    uint8_t rail[8];
    int node[2] = {1, 0}, good = 1;
    for (int s = 0; s < 8; s++)
        rail[s] = (uint8_t)(s % 2);
    struct pb_vplace_plan p;
    int rc = pb_vplace_plan(len, PG, ss, 8, rail, node, 2, &p);
    size_t covered = 0;
    for (size_t i = 0; rc == 0 && i < p.nruns; i++) {
        covered += p.runs[i].npages;
        for (size_t pg = p.runs[i].first; pg < p.runs[i].first + p.runs[i].npages; pg++) {
            size_t mid = pg * PG + PG / 2; /* the slot holding a page's middle byte owns most of it */
            good &= node[rail[mid / ss]] == p.runs[i].node;
        }
    }
    ok(rc == 0 && p.nruns == 8 && covered == len / PG && good && p.shared == 7,
       "8 slots of 1 MiB + 64 over two nodes: 8 runs cover the %zu whole pages, 7 shared, each on its slot's node",
       len / PG);
    pb_vplace_free(&p);
}

static void bad_input(void)
{
    uint8_t rail[2] = {0, 2};
    int node[2] = {0, 1};
    struct pb_vplace_plan p;
    ok(pb_vplace_plan(2 * PG, PG, PG, 2, rail, node, 2, &p) == -1 && p.nruns == 0, "a slot of a rail that is not: refused");
    rail[1] = 1;
    ok(pb_vplace_plan(PG, PG, PG, 2, rail, node, 2, &p) == -1, "slots beyond the pool: refused");
    ok(pb_vplace_plan(2 * PG, PG, PG, 2, rail, node, 0, &p) == -1 &&
           pb_vplace_plan(2 * PG, PG, 0, 2, rail, node, 2, &p) == -1 && pb_vplace_plan(2 * PG, 0, PG, 2, rail, node, 2, &p) == -1,
       "no rail, zero slot or page size: refused");
}

int main(void)
{
    one_node();
    page_sized();
    shared_pages();
    realistic();
    bad_input();
    return tap_done();
}
