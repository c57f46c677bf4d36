/* p2pbcast — broadcast a file to every node of an MPI job at network speed.
 *
 * Public C API. Every rank of the communicator calls p2pbcast_file() with the
 * same arguments (collective); the root reads SOURCE and every node (or every
 * rank, with P2PBCAST_PER_RANK) ends up with a verified copy at DEST.
 *
 * ABI: both structs carry the size the CALLER was compiled with, stamped by
 * the macros below (sizeof in the caller's own translation unit), so fields
 * can be appended later without breaking programs built against an older or
 * a newer header. The library reads and writes only the bytes both sides
 * know; options it does not know must be zero (fields appended later have 0
 * as their default), else p2pbcast_file() refuses them (P2PBCAST_ERR_USAGE,
 * naming them). Symbols are versioned (P2PBCAST_0.1 is the first interface,
 * P2PBCAST_0.2 the sized one); programs built before the sizes existed keep
 * working with the first (0.1.0) layouts, and the options appended since
 * (cancel, schedule, source_shared) are ignored for them until rebuilt. */
#ifndef P2PBCAST_H
#define P2PBCAST_H

#include <mpi.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define P2PBCAST_VERSION "0.3.0"

/* Exit / return codes, also the command's exit status (see p2pbcast(1)). */
enum p2pbcast_status {
    P2PBCAST_OK = 0,
    P2PBCAST_ERR_TRANSFER = 1,  /* peer lost, checksum mismatch, timeout */
    P2PBCAST_ERR_USAGE = 2,     /* invalid options */
    P2PBCAST_ERR_SOURCE = 3,    /* SOURCE missing, unreadable, not a file, changed */
    P2PBCAST_ERR_DEST = 4,      /* DEST unwritable, exists and differs, disk full */
    P2PBCAST_ERR_TRANSPORT = 5, /* transport could not be set up (no device, bind) */
    P2PBCAST_ERR_INTERNAL = 6   /* out of memory, MPI failure, bug */
};

enum p2pbcast_flags {
    P2PBCAST_FORCE = 1u << 0,    /* replace an existing DEST that differs */
    P2PBCAST_PER_RANK = 1u << 1, /* every rank is its own node (own DEST copy) */
    P2PBCAST_QUIET = 1u << 2,    /* no progress, no summary */
    P2PBCAST_VERBOSE = 1u << 3,  /* extra detail on stderr */
    P2PBCAST_PROGRESS = 1u << 4, /* root prints progress (bar on a tty, lines otherwise) */
    P2PBCAST_RESUME = 1u << 5,   /* keep a failed run's copy; a repeated run skips what all nodes hold */
    P2PBCAST_CHECK = 1u << 6     /* preflight: every phase up to connecting and probing the links, no copy */
};

struct p2pbcast_opts {
    size_t struct_size;      /* the caller's sizeof(struct p2pbcast_opts), set by _init */
    int root;                /* rank that reads SOURCE (default 0) */
    uint64_t chunk_size;     /* bytes; 0 = chosen from file size and node count */
    uint32_t slots;          /* receive slots per node; 0 = default */
    const char *transport;   /* "auto", "tcp", "mpi", "verbs"; NULL = auto */
    const char *tcp_if;      /* interface name or CIDR for data connections */
    const char *rdma_dev;    /* verbs device[:port]; NULL = automatic */
    int gid_index;           /* RoCE GID index; -1 = automatic */
    double timeout;          /* seconds without progress before giving up */
    const char *json_path;   /* write a JSON report here (root only); NULL = none */
    unsigned flags;          /* enum p2pbcast_flags */
    /* When *cancel becomes nonzero (e.g. from a signal handler), stop as soon
     * as possible: leave no DEST, return P2PBCAST_ERR_TRANSFER. NULL: never. */
    const volatile sig_atomic_t *cancel;
    /* "auto", "ring", "tree" (two binary trees: log-depth, at most 4
     * partners per node); NULL = auto. */
    const char *schedule;
    /* "auto", "yes", "no": every node reads its share of SOURCE where all
     * see the same file at the same path (checked); NULL = auto. */
    const char *source_shared;
    /* RoCE traffic class of the verbs queue pairs (0 to 255); -1 = the
     * device's default where the kernel exposes it, else 0. */
    int rdma_tclass;
};

struct p2pbcast_result {
    size_t struct_size;      /* set by the library: the bytes of this struct it filled */
    int status;              /* enum p2pbcast_status, the same on every rank */
    uint64_t bytes;          /* file size */
    double seconds;          /* wall time of the transfer, set-up included */
    int nodes;               /* nodes (or ranks with PER_RANK) that hold a copy */
    int failed_nodes;        /* nodes that reported an error */
    uint64_t chunk_size;
    uint64_t chunks;
    char transport[16];
    char message[512];       /* first error, with host, rank, path and reason */
    uint64_t chunks_skipped; /* --resume: chunks every node already held */
};

/* Fill opts with defaults; size is the caller's sizeof(struct p2pbcast_opts)
 * (the macro passes it). Returns 0, or P2PBCAST_ERR_USAGE when size is
 * smaller than the first published struct. */
int p2pbcast_opts_init_sized(struct p2pbcast_opts *opts, size_t size);
#define p2pbcast_opts_init(opts) ((void)p2pbcast_opts_init_sized((opts), sizeof(struct p2pbcast_opts)))

/* Collective over comm. Returns the status, identical on every rank. DEST may
 * contain %h (host name) and %r (rank) placeholders; %% is a literal %.
 * opts NULL: the defaults; result may be NULL. result_size is the caller's
 * sizeof(struct p2pbcast_result) (the macro passes it). */
int p2pbcast_file_sized(MPI_Comm comm, const char *source, const char *dest, const struct p2pbcast_opts *opts,
                        struct p2pbcast_result *result, size_t result_size);
#define p2pbcast_file(comm, source, dest, opts, result) \
    p2pbcast_file_sized((comm), (source), (dest), (opts), (result), sizeof(struct p2pbcast_result))

/* The library's version ("0.3.0"): compare with P2PBCAST_VERSION, the
 * header's, for a run-time check. */
const char *p2pbcast_version(void);

/* Human-readable name of a status code. */
const char *p2pbcast_strstatus(int status);

#ifdef __cplusplus
}
#endif
#endif
