/* test_boot_abandon.c — a vote gather given up on (a signal) must not leave
 * MPI receiving into the caller's memory after the call returned.
 *
 * Run under mpirun with 3 ranks. The root starts a gather with its cancel
 * flag already set, so the call returns "interrupted" at once; the caller's
 * buffer is then made inaccessible (as if freed). Only after that do the
 * other ranks send their votes, and the root keeps MPI busy: if a receive
 * were still posted on the caller's buffer, the root would crash writing
 * into it (issue 10, item 3). TAP on the root. */
#include "bootstrap.h"

#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define VOTE 512

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm world = MPI_COMM_WORLD;
    int size;
    MPI_Comm_size(world, &size);
    if (size < 3) { /* make check runs it alone too: tests/test_boot_abandon.sh runs it under mpirun */
        printf("1..0 # SKIP needs 3 ranks (tests/test_boot_abandon.sh)\n");
        MPI_Finalize();
        return 0;
    }
    struct pb_boot *b;
    char err[256];
    if (pb_boot_open(&world, 0, 1, 10, &b, err, sizeof err) < 0) {
        fprintf(stderr, "boot: %s\n", err);
        MPI_Abort(world, 2);
    }
    const struct pb_boot_info *bi = pb_boot_info(b);
    char mine[VOTE];
    memset(mine, 'a' + bi->rank, sizeof mine);
    int fails = 0;
    if (bi->rank == bi->root) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t size = ((size_t)bi->nleaders * VOTE + page - 1) / page * page;
        unsigned char *all = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        static volatile sig_atomic_t cancel = 1;
        pb_boot_set_cancel(b, &cancel);
        int rc = pb_boot_gather(b, mine, all, VOTE, 0, NULL);
        pb_boot_set_cancel(b, NULL);
        printf("%s 1 - an interrupted gather returns 2 (got %d)\n", rc == 2 ? "ok" : "not ok", rc);
        fails += rc != 2;
        mprotect(all, size, PROT_NONE); /* the caller's buffer is gone */
        MPI_Barrier(world);             /* now the votes are sent */
        for (int i = 0; i < 50; i++) {   /* and MPI has every chance to deliver them */
            int flag;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, world, &flag, MPI_STATUS_IGNORE);
            usleep(10000);
        }
        MPI_Barrier(world);
        printf("ok 2 - late votes did not land in the caller's freed buffer\n");
        munmap(all, size);
    } else {
        MPI_Barrier(world);
        (void)pb_boot_gather(b, mine, NULL, VOTE, 1.0, NULL); /* late: nobody may take it into freed memory */
        MPI_Barrier(world);
    }
    pb_boot_close(b);
    if (bi->rank == 0)
        printf("1..2\n");
    MPI_Finalize();
    return fails ? 1 : 0;
}
