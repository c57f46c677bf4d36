/* test_options.c — command-line parsing, size suffixes, DEST placeholders. */
#include "dest_path.h"
#include "options.h"
#include "tap.h"

#include <string.h>

static int parse(struct pb_cli *cli, char *err, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"p2pbcast";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    err[0] = 0;
    return pb_cli_parse(argc, argv, cli, err, 256);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

int main(void)
{
    struct pb_cli c;
    char err[256];
    uint64_t v;

    ok(pb_parse_size("4M", &v) == 0 && v == 4u << 20, "4M");
    ok(pb_parse_size("512k", &v) == 0 && v == 512u << 10, "512k");
    ok(pb_parse_size("1GiB", &v) == 0 && v == 1u << 30, "1GiB");
    ok(pb_parse_size("2KB", &v) == 0 && v == 2048, "2KB");
    ok(pb_parse_size("65536", &v) == 0 && v == 65536, "plain bytes");
    ok(pb_parse_size("", &v) < 0, "empty refused");
    ok(pb_parse_size("-1M", &v) < 0, "negative refused");
    ok(pb_parse_size("4X", &v) < 0, "unknown suffix refused");
    ok(pb_parse_size("4MiBx", &v) < 0, "trailing junk refused");
    ok(pb_parse_size("99999999999999999999", &v) < 0, "overflow refused");
    ok(pb_parse_size("17179869184G", &v) < 0, "overflow through suffix refused");

    ok(parse(&c, err, ARGS("a", "b")) == 0 && !strcmp(c.source, "a") && !strcmp(c.dest, "b") &&
           c.opts.root == 0 && c.opts.chunk_size == 0 && (c.opts.flags & P2PBCAST_PROGRESS),
       "defaults");
    ok(parse(&c, err, ARGS("--root", "3", "-c", "1M", "--force", "--per-rank", "-t", "tcp", "--tcp-if",
                           "10.0.0.0/8", "--json", "r.json", "--timeout", "2.5", "-v", "s", "d")) == 0 &&
           c.opts.root == 3 && c.opts.chunk_size == 1u << 20 && (c.opts.flags & P2PBCAST_FORCE) &&
           (c.opts.flags & P2PBCAST_PER_RANK) && (c.opts.flags & P2PBCAST_VERBOSE) &&
           !strcmp(c.opts.tcp_if, "10.0.0.0/8") && !strcmp(c.opts.json_path, "r.json") && c.opts.timeout == 2.5,
       "all options");
    ok(parse(&c, err, ARGS("--chunk-size=64K", "--slots=16", "s", "d")) == 0 && c.opts.chunk_size == 65536 &&
           c.opts.slots == 16,
       "--opt=value form");
    ok(parse(&c, err, ARGS("-q", "s", "d")) == 0 && (c.opts.flags & P2PBCAST_QUIET) &&
           !(c.opts.flags & P2PBCAST_PROGRESS),
       "-q turns progress off");
    ok(parse(&c, err, ARGS("s", "d")) == 0 && c.opts.rdma_tclass == -1 && !(c.opts.flags & P2PBCAST_CHECK),
       "no --rdma-tclass: the device's default (-1); no --check");
    ok(parse(&c, err, ARGS("--rdma-tclass", "106", "--check", "s", "d")) == 0 && c.opts.rdma_tclass == 106 &&
           (c.opts.flags & P2PBCAST_CHECK),
       "--rdma-tclass 106 --check");
    ok(parse(&c, err, ARGS("--rdma-tclass", "256", "s", "d")) < 0 && strstr(err, "--rdma-tclass"),
       "--rdma-tclass 256 refused: %s", err);
    ok(parse(&c, err, ARGS("-t", "tcp", "--rdma-tclass", "3", "s", "d")) < 0 && strstr(err, "verbs transport"),
       "--rdma-tclass with -t tcp refused: %s", err);
    ok(parse(&c, err, ARGS("--help")) == 0 && c.help, "--help");
    ok(parse(&c, err, ARGS("-V")) == 0 && c.version, "-V");
    ok(parse(&c, err, ARGS("--bogus", "s", "d")) < 0 && strstr(err, "unknown option"), "unknown option: %s", err);
    ok(parse(&c, err, ARGS("-x", "s", "d")) < 0 && strstr(err, "-x"), "unknown short option: %s", err);
    ok(parse(&c, err, ARGS("s")) < 0 && strstr(err, "missing"), "one operand: %s", err);
    ok(parse(&c, err, ARGS("s", "d", "e")) < 0 && strstr(err, "too many"), "three operands: %s", err);
    ok(parse(&c, err, ARGS("-c", "0", "s", "d")) < 0 && strstr(err, "range"), "chunk 0: %s", err);
    ok(parse(&c, err, ARGS("-c", "2G", "s", "d")) < 0 && strstr(err, "range"), "chunk 2G: %s", err);
    ok(parse(&c, err, ARGS("-c", "lots", "s", "d")) < 0 && strstr(err, "chunk-size"), "chunk 'lots': %s", err);
    ok(parse(&c, err, ARGS("-t", "carrier-pigeon", "s", "d")) < 0 && strstr(err, "unknown transport"),
       "unknown transport: %s", err);
    ok(parse(&c, err, ARGS("--root", "-1", "s", "d")) < 0, "negative root: %s", err);
    ok(parse(&c, err, ARGS("-q", "-v", "s", "d")) < 0 && strstr(err, "contradict"), "-q with -v: %s", err);
    ok(parse(&c, err, ARGS("-t", "mpi", "--tcp-if", "eth0", "s", "d")) < 0, "--tcp-if with mpi: %s", err);
    ok(parse(&c, err, ARGS("--timeout", "0", "s", "d")) < 0, "timeout 0: %s", err);
    ok(parse(&c, err, ARGS("--slots", "2", "s", "d")) < 0, "2 slots: %s", err);
    ok(parse(&c, err, ARGS("s", "/tmp/x.%q")) < 0 && strstr(err, "placeholder"), "unknown placeholder: %s", err);
    ok(parse(&c, err, ARGS("s", "/tmp/x%")) < 0, "trailing %%: %s", err);
    ok(parse(&c, err, ARGS("", "d")) < 0, "empty SOURCE: %s", err);

    char out[64];
    ok(pb_expand_dest("/tmp/%h/x.%r", "node7", 12, out, sizeof out, err, sizeof err) == 0 &&
           !strcmp(out, "/tmp/node7/x.12"),
       "%%h and %%r: %s", out);
    ok(pb_expand_dest("/tmp/100%%", "h", 0, out, sizeof out, err, sizeof err) == 0 && !strcmp(out, "/tmp/100%"),
       "%%%% is a literal %%");
    ok(pb_expand_dest("/tmp/%h%h%h%h%h%h%h%h", "aaaaaaaaaa", 0, out, sizeof out, err, sizeof err) < 0,
       "expansion past the buffer refused: %s", err);
    ok(pb_dest_has_placeholder("/a/%r") && pb_dest_has_placeholder("%h") && !pb_dest_has_placeholder("/a/%%r"),
       "placeholder detection");
    return tap_done();
}
