/* abi_common.h — shared by the ABI tests (tests/test_abi_old.c,
 * tests/test_abi_new.c): guard bytes around a caller's structs, the files
 * of a broadcast, and one TAP line per check agreed over every rank. */
#ifndef P2PBCAST_ABI_COMMON_H
#define P2PBCAST_ABI_COMMON_H

#include "tap.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64
#define CANARY 0xA5

static int abi_rank;

/* Run on its own (make check runs every check program), without the
 * script's mpirun and scratch directory: skip. */
static inline int skip_unless_two_ranks(void)
{
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 2 && getenv("WORK"))
        return 0;
    if (abi_rank == 0)
        printf("1..0 # SKIP needs 2 ranks and WORK (tests/test_abi.sh)\n");
    MPI_Finalize();
    return 1;
}

/* Every byte of g is still the canary. */
static inline int guard_intact(const unsigned char *g)
{
    for (int i = 0; i < GUARD; i++)
        if (g[i] != CANARY)
            return 0;
    return 1;
}

/* One TAP line (rank 0) for a check that holds on every rank. */
static inline int check_all(int cond, const char *desc)
{
    int all = !!cond;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (abi_rank == 0)
        tap_ok(all, desc);
    return all;
}

/* $WORK/NAME; WORK is the test's scratch directory. */
static inline void work_path(char *buf, size_t len, const char *name)
{
    const char *w = getenv("WORK");
    snprintf(buf, len, "%s/%s", w && *w ? w : "/tmp", name);
}

/* Rank 0 writes $WORK/src (len bytes of a pattern); everyone waits. */
static inline void make_source(size_t len)
{
    char path[4096];
    work_path(path, sizeof path, "src");
    if (abi_rank == 0) {
        FILE *f = fopen(path, "wb");
        for (size_t i = 0; f && i < len; i++)
            fputc((int)((i * 2654435761u) >> 13) & 0xff, f);
        if (f)
            fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* This rank's copy $WORK/NAME.RANK equals $WORK/src. */
static inline int same_as_source(const char *name)
{
    char a[4096], b[4096], tail[64];
    work_path(a, sizeof a, "src");
    snprintf(tail, sizeof tail, "%s.%d", name, abi_rank);
    work_path(b, sizeof b, tail);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

#endif
