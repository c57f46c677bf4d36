/* test_boot_names.c — what each leader knows of the others (issue 11: no
 * exchange at start-up may cost a leader O(N) bytes).
 *
 * Run under mpirun with 6 ranks, one leader each (--per-rank), root 2:
 * the root knows every leader as "host (rank N)"; every other leader knows
 * itself and the root, and names the rest "node I" until it has met its
 * partners (a ring here, the root skipped), whom it then knows by name and
 * network identity. All six share one machine: all_local. TAP on rank 0. */
#include "bootstrap.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>

#define ROOT 2

/* names[i] is "host (rank r)" for the leader whose rank is r */
static int named(const struct pb_boot_info *bi, int i)
{
    char want[32];
    snprintf(want, sizeof want, "(rank %d)", i);
    const char *n = bi->names[i];
    return bi->leader_rank[i] == i && strlen(n) > strlen(want) && !strcmp(n + strlen(n) - strlen(want), want);
}

static int unknown(const struct pb_boot_info *bi, int i)
{
    char want[32];
    snprintf(want, sizeof want, "node %d", i);
    return bi->leader_rank[i] == -1 && !strcmp(bi->names[i], want);
}

static int partner(int n, int me, int i)
{
    return i != ROOT && me != ROOT && (i == (me + 1) % n || i == (me + n - 1) % n);
}

/* 0 when this leader's view is right; before: not met yet */
static int check_view(const struct pb_boot_info *bi, int before)
{
    int bad = 0;
    for (int i = 0; i < bi->nleaders; i++) {
        int known = bi->leader == ROOT || i == bi->leader || i == ROOT || (!before && partner(bi->nleaders, bi->leader, i));
        if (known ? !named(bi, i) || bi->netids[i] != bi->netids[bi->leader] : !unknown(bi, i)) {
            fprintf(stderr, "rank %d: leader %d is '%s' (rank %d)%s\n", bi->rank, i, bi->names[i], bi->leader_rank[i],
                    known ? ", should be known" : ", should not be known yet");
            bad = 1;
        }
    }
    return bad;
}

static void report(int rank, int bad, int num, const char *what)
{
    int any = 0;
    MPI_Reduce(&bad, &any, 1, MPI_INT, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%s %d - %s\n", any ? "not ok" : "ok", num, what);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm world = MPI_COMM_WORLD;
    int size, rank;
    MPI_Comm_size(world, &size);
    MPI_Comm_rank(world, &rank);
    if (size != 6) { /* make check runs it alone too: tests/test_boot_names.sh runs it under mpirun */
        if (rank == 0)
            printf("1..0 # SKIP needs 6 ranks (tests/test_boot_names.sh)\n");
        MPI_Finalize();
        return 0;
    }
    struct pb_boot *b;
    char err[256];
    if (pb_boot_open(&world, ROOT, 1, 10, &b, err, sizeof err) < 0) {
        fprintf(stderr, "boot: %s\n", err);
        MPI_Abort(world, 2);
    }
    const struct pb_boot_info *bi = pb_boot_info(b);
    if (rank == 0)
        printf("1..4\n");
    report(rank, bi->nleaders != 6 || bi->leader != rank || bi->root_leader != ROOT || !bi->all_local, 1,
           "six leaders in rank order, the root's index, all on one machine (all_local)");
    report(rank, check_view(bi, 1), 2, "the root knows every leader; the others only themselves and the root");
    int peers[2] = { (rank + 1) % size, (rank + size - 1) % size };
    pb_boot_set_exchange_timeout(b, 30);
    int rc = pb_boot_meet_partners(b, peers, 2);
    report(rank, rc != 0, 3, "pb_boot_meet_partners returns 0 on every leader");
    report(rank, check_view(bi, 0), 4, "after meeting, each leader knows its partners by name and network identity");
    pb_boot_close(b);
    MPI_Finalize();
    return 0;
}
