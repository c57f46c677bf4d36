/* mpi_bcast_copy - the file broadcast a user would write with MPI_Bcast.
 *
 *   mpirun -np N mpi_bcast_copy [options] SOURCE DEST
 *
 * Rank 0 reads SOURCE in pieces into one reused buffer, MPI_Bcast()s each
 * piece, and every rank (rank 0 included) writes it to its DEST, then fsyncs.
 * Memory stays at one buffer whatever the file size.  DEST may contain %r
 * (rank) and %h (hostname) so ranks sharing a machine write different files.
 * Rank 0 prints one machine-readable line:
 *
 *   RESULT method=mpi_bcast ranks=N bytes=F bufsize=C io=1 seconds=T
 *
 * T runs from a barrier before opening any file to a barrier after every rank
 * has fsynced and closed DEST (mpirun start-up is not included).
 *
 * Options:
 *   -b, --buffer-size BYTES  piece size (K/M/G suffixes; default 64M)
 *   -n, --no-io              memory only: no read, no write; the size comes
 *                            from SOURCE (stat) or --size, DEST is ignored
 *   -s, --size BYTES         with --no-io: bytes to broadcast (no SOURCE needed)
 *   -c, --check              every rank checksums what it received; a
 *                            mismatch with rank 0 fails the run
 *   -h, --help
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_rank;

static void die(const char *fmt, ...)
{
    char host[256] = "?";
    va_list ap;

    gethostname(host, sizeof host - 1);
    fprintf(stderr, "mpi_bcast_copy: rank %d on %s: ", g_rank, host);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    uint64_t mult = 1;

    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1ULL << 10; end++; break;
    case 'm': case 'M': mult = 1ULL << 20; end++; break;
    case 'g': case 'G': mult = 1ULL << 30; end++; break;
    default: break;
    }
    if (*end == 'i' && *(end + 1) == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end != '\0' || (v != 0 && mult > UINT64_MAX / v))
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

/* Expand %r (rank), %h (hostname) and %% in a DEST template. */
static void expand_dest(const char *tmpl, int rank, char *out, size_t outsz)
{
    char host[256] = "localhost";
    size_t o = 0;

    gethostname(host, sizeof host - 1);
    for (const char *p = tmpl; *p; p++) {
        char piece[300];
        const char *add = piece;
        if (*p == '%' && p[1] == 'r') {
            snprintf(piece, sizeof piece, "%d", rank);
            p++;
        } else if (*p == '%' && p[1] == 'h') {
            add = host;
            p++;
        } else if (*p == '%' && p[1] == '%') {
            piece[0] = '%', piece[1] = '\0';
            p++;
        } else {
            piece[0] = *p, piece[1] = '\0';
        }
        size_t len = strlen(add);
        if (o + len + 1 > outsz)
            die("DEST path too long: %s", tmpl);
        memcpy(out + o, add, len);
        o += len;
    }
    out[o] = '\0';
}

/* FNV-1a over 8-byte words: cheap, and enough to catch a wrong broadcast. */
static uint64_t mix(uint64_t h, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void usage(FILE *f)
{
    fputs("usage: mpirun -np N mpi_bcast_copy [-b BYTES] [--no-io [--size BYTES]] [--check] SOURCE DEST\n"
          "  DEST may contain %r (rank) and %h (hostname)\n", f);
}

int main(int argc, char **argv)
{
    uint64_t bufsize = 64ULL << 20, total = 0, no_io_size = 0;
    int no_io = 0, check = 0, nranks, have_size = 0;
    const char *src = NULL, *dst = NULL;
    char dest[4096];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-b") || !strcmp(a, "--buffer-size")) {
            if (++i >= argc || parse_size(argv[i], &bufsize) || bufsize == 0 || bufsize > (1ULL << 30))
                die("--buffer-size needs 1..1G bytes");
        } else if (!strcmp(a, "-s") || !strcmp(a, "--size")) {
            if (++i >= argc || parse_size(argv[i], &no_io_size))
                die("--size needs a byte count");
            have_size = 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--no-io")) {
            no_io = 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--check")) {
            check = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_rank == 0)
                usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            if (g_rank == 0)
                usage(stderr);
            die("unknown option %s", a);
        } else if (!src) {
            src = a;
        } else if (!dst) {
            dst = a;
        } else {
            die("too many arguments");
        }
    }
    if (!(no_io && have_size) && !src)
        die("missing SOURCE (see --help)");
    if (!no_io && !dst)
        die("missing DEST (see --help)");

    /* Buffer allocated and touched before timing: first touch is slow on
     * some VMs and is not what is measured. */
    unsigned char *buf = malloc((size_t)bufsize);
    if (!buf)
        die("cannot allocate %" PRIu64 " bytes", bufsize);
    memset(buf, 0x5a, (size_t)bufsize);

    int in_fd = -1, out_fd = -1;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();

    if (g_rank == 0) {
        if (no_io && have_size) {
            total = no_io_size;
        } else {
            struct stat st;
            in_fd = open(src, O_RDONLY);
            if (in_fd < 0 || fstat(in_fd, &st) != 0)
                die("cannot open SOURCE %s: %s", src, strerror(errno));
            total = (uint64_t)st.st_size;
            if (no_io) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    MPI_Bcast(&total, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (!no_io) {
        expand_dest(dst, g_rank, dest, sizeof dest);
        out_fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out_fd < 0)
            die("cannot create DEST %s: %s", dest, strerror(errno));
    }

    uint64_t sum = 0xcbf29ce484222325ULL;
    for (uint64_t off = 0; off < total;) {
        size_t n = (size_t)(total - off < bufsize ? total - off : bufsize);
        if (g_rank == 0 && !no_io) {
            for (size_t got = 0; got < n;) {
                ssize_t r = read(in_fd, buf + got, n - got);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    die("read %s: %s", src, r < 0 ? strerror(errno) : "file shrank");
                got += (size_t)r;
            }
        }
        MPI_Bcast(buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (check)
            sum = mix(sum, buf, n);
        if (!no_io) {
            for (size_t put = 0; put < n;) {
                ssize_t w = write(out_fd, buf + put, n - put);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0)
                    die("write %s: %s", dest, strerror(errno));
                put += (size_t)w;
            }
        }
        off += n;
    }
    if (!no_io) {
        if (fsync(out_fd) != 0)
            die("fsync %s: %s", dest, strerror(errno));
        if (close(out_fd) != 0)
            die("close %s: %s", dest, strerror(errno));
    }
    if (in_fd >= 0)
        close(in_fd);
    MPI_Barrier(MPI_COMM_WORLD);
    double secs = MPI_Wtime() - t0;

    int bad = 0;
    if (check) {
        uint64_t root_sum = sum;
        MPI_Bcast(&root_sum, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
        int mine = root_sum != sum;
        MPI_Allreduce(&mine, &bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
        if (mine)
            fprintf(stderr, "mpi_bcast_copy: rank %d: checksum differs from rank 0\n", g_rank);
    }
    if (g_rank == 0) {
        printf("RESULT method=mpi_bcast ranks=%d bytes=%" PRIu64 " bufsize=%" PRIu64
               " io=%d seconds=%.6f%s\n",
               nranks, total, bufsize, !no_io, secs, check ? (bad ? " check=FAILED" : " check=ok") : "");
        fflush(stdout);
    }
    free(buf);
    MPI_Finalize();
    return bad ? 1 : 0;
}
