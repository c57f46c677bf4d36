/* Harness check for the test cluster: every rank prints its hostname and
 * proves that its /tmp and /dev/shm are its node's own.  Each rank drops a
 * marker file into both; after a barrier it counts the markers of this run
 * that it can see.  On a correct multi-node layout with one rank per node,
 * every rank sees exactly one marker in each (its own).
 *
 *   mpi_hello TAG      prints: hello rank=R size=S host=H tmp_markers=T shm_markers=M
 */
#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int count_markers(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static int drop_marker(const char *dir, const char *prefix, int rank)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s%d", dir, prefix, rank);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", rank);
    return fclose(f);
}

int main(int argc, char **argv)
{
    char host[256] = "?", prefix[300];
    int rank, size, tmp, shm;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host - 1);
    snprintf(prefix, sizeof prefix, "hello-%s-", argc > 1 ? argv[1] : "x");

    if (drop_marker("/tmp", prefix, rank) != 0 || drop_marker("/dev/shm", prefix, rank) != 0)
        perror("mpi_hello: marker");
    MPI_Barrier(MPI_COMM_WORLD);
    tmp = count_markers("/tmp", prefix);
    shm = count_markers("/dev/shm", prefix);
    printf("hello rank=%d size=%d host=%s tmp_markers=%d shm_markers=%d\n", rank, size, host,
           tmp, shm);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
