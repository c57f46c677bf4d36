/* mpi_hello - smallest check that ranks run on distinct netbed hosts and can
 * talk: every rank prints "rank R of S on HOST tmp=ID", then a broadcast and
 * an allreduce across all hosts are checked.  Exit 0 only if both agree. */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rank, size, ok = 1, all_ok = 0;
    char host[256] = "?";
    struct stat st;
    unsigned char buf[1 << 20];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host - 1);
    /* The inode of /tmp tells whether hosts really have private /tmp. */
    if (stat("/tmp", &st) != 0)
        st.st_ino = 0;
    printf("rank %d of %d on %s tmp=%lu\n", rank, size, host, (unsigned long)st.st_ino);
    fflush(stdout);

    if (rank == 0)
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(i * 7 + 3);
    MPI_Bcast(buf, (int)sizeof buf, MPI_BYTE, 0, MPI_COMM_WORLD);
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != (unsigned char)(i * 7 + 3)) {
            ok = 0;
            break;
        }
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (rank == 0)
        printf("hello: %s\n", all_ok ? "ok" : "FAILED");
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
