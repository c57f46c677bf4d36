/* main.c — the p2pbcast command: options in, one library call, status out. */
#include "config.h"
#include "p2pbcast.h"

#include "../mpi/bootstrap.h"
#include "options.h"
#include "stage.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* The launcher ends a failed job with SIGTERM and, a moment later, SIGKILL:
 * catch the first so the root can still say which node failed, and every
 * rank removes its temporary file. */
static volatile sig_atomic_t stop_signal;

/* The first signal asks every layer to stop cleanly; a second one (Ctrl-C
 * again, while an fsync of a huge DEST is stuck, say) ends the process at
 * once with the usual status of that signal. */
static void on_signal(int sig)
{
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A peer that closes its socket is an error on that link, reported by
     * the transport; it must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
}

static void print_version(void)
{
    char lib[256];
    printf("p2pbcast %s\n", P2PBCAST_VERSION);
    printf("built with %s\n", pb_mpi_library_version(lib, sizeof lib));
#ifdef HAVE_VERBS
    printf("transports: tcp mpi verbs\n");
#else
    printf("transports: tcp mpi (verbs not built: rdma-core was missing at configure time)\n");
#endif
}

int main(int argc, char **argv)
{
    struct pb_cli cli;
    char err[512];
    int bad = pb_cli_parse(argc, argv, &cli, err, sizeof err);
    /* --help and --version need no MPI: they work outside mpirun too. */
    if (!bad && (cli.help || cli.version)) {
        if (cli.help)
            fputs(pb_usage_text, stdout);
        else
            print_version();
        return 0;
    }
    if (pb_mpi_init(&argc, &argv, err, sizeof err) < 0 && !bad) {
        fprintf(stderr, "p2pbcast: error: %s\n", err);
        return P2PBCAST_ERR_INTERNAL;
    }
    int rank = pb_mpi_world_rank();
    if (bad) {
        /* Every rank parsed the same words: one message is enough. */
        if (rank == 0)
            fprintf(stderr, "p2pbcast: error: %s\nTry 'p2pbcast --help' for more information.\n", err);
        pb_mpi_finalize();
        return P2PBCAST_ERR_USAGE;
    }
    catch_signals();
    cli.opts.cancel = &stop_signal;
    struct p2pbcast_result res;
    int st = pb_stage_file(pb_mpi_world(), cli.source, cli.dest, &cli.opts, &res);
    /* Options the library refused before a job was formed: no summary
     * speaks for them, every rank has the same reason: say it once. */
    if (st == P2PBCAST_ERR_USAGE && !res.nodes && rank == 0)
        fprintf(stderr, "p2pbcast: error: %s\n", res.message[0] ? res.message : p2pbcast_strstatus(st));
    pb_mpi_finalize();
    return st;
}
