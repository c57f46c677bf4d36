/* fuzz_cli.c — libFuzzer target for the command line (options.c):
 * pb_cli_parse on argv vectors cut from the input, pb_parse_size and
 * pb_expand_dest / pb_dest_has_placeholder on strings from the input.
 *
 * Input layout: byte 0 selects the mode; the rest is split on '\n' (or
 * '\0') into strings. Every string is its own exact-size heap copy, so ASan
 * catches any read past its terminator.
 *
 * Invariants beyond "no crash, no sanitizer report":
 *   - pb_cli_parse success: SOURCE and DEST are non-empty argv strings, every
 *     numeric option lies in its documented range, transport is one of the
 *     four names, --quiet and --verbose are not both set, DEST expands;
 *     failure: a non-empty, terminated one-line reason;
 *   - pb_parse_size success: the value equals the digits times the suffix's
 *     power of 1024, without overflow (checked against an independent parse);
 *   - pb_expand_dest: output terminated and shorter than outlen, length equal
 *     to the expansion computed here; no placeholder => independent of host
 *     and rank; validation-only mode agrees with the real expansion.
 *
 * Build: see run-fuzz.sh. The fuzz build uses tests/fuzz/stub/mpi.h, so no
 * MPI is needed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defaults.h"
#include "dest_path.h"
#include "options.h"

#include "fuzz_check.h"

/* options.c calls this (p2pbcast_opts_init, with this build's size); the
 * real one is in mpi/api.c, which needs MPI. Both take the defaults from
 * src/common/defaults.c. */
int p2pbcast_opts_init_sized(struct p2pbcast_opts *o, size_t size)
{
    (void)size;
    pb_opts_defaults(o);
    return P2PBCAST_OK;
}

#define MAXARGS 40

/* Split into at most max strings (exact-size heap copies). */
static int split(const uint8_t *d, size_t n, char **out, int max)
{
    int k = 0;
    size_t s = 0;
    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || d[i] == '\n' || d[i] == '\0') {
            size_t l = i - s;
            char *a = malloc(l + 1);
            if (!a)
                abort();
            memcpy(a, d + s, l);
            a[l] = 0;
            out[k++] = a;
            s = i + 1;
        }
    }
    return k;
}

/* Independent reference for pb_parse_size: what strtoull reads (leading
 * white space, an optional sign, decimal digits) then [kKmMgGtT](iB|B)?.
 * Returns -1 when malformed or beyond 64 bits; else 0 with the magnitude in
 * *out and *neg set when a minus sign was written. */
static int ref_size(const char *s, uint64_t *out, int *neg)
{
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++; /* strtoull skips leading white space */
    *neg = 0;
    if (*p == '-' || *p == '+')
        *neg = *p++ == '-';
    if (!(*p >= '0' && *p <= '9'))
        return -1;
    unsigned __int128 v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > UINT64_MAX)
            return -1;
    }
    unsigned shift = 0;
    if (*p) {
        switch (*p) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return -1;
        }
        p++;
        if (p[0] == 'i' && p[1] == 'B')
            p += 2;
        else if (p[0] == 'B')
            p++;
        if (*p)
            return -1;
    }
    v <<= shift;
    if (v > UINT64_MAX)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Accepted sizes are exactly what was written: never a negative number
 * wrapped modulo 2^64, never a truncated or overflowed one. */
static void check_size(const char *s)
{
    uint64_t a = 0xfeedface, b = 0;
    int neg = 0;
    int ra = pb_parse_size(s, &a);
    int rb = ref_size(s, &b, &neg);
    if (ra == 0) {
        CHECK(rb == 0);
        CHECK(!(neg && b != 0)); /* a negative size must be refused */
        CHECK(a == b);
    } else {
        CHECK(ra == -1);
        CHECK(a == 0xfeedface); /* untouched on failure */
        /* refusals: malformed, too big, negative, or a sign or white space
         * up front (refusing those is fine, accepting them correctly too) */
        CHECK(rb != 0 || neg || s[0] == '+' || s[0] == '-' || s[0] == ' ' ||
              (s[0] >= '\t' && s[0] <= '\r'));
    }
}

/* Expected expansion length, or -1 for a bad template. */
static long ref_expand_len(const char *t, const char *host, int rank)
{
    long n = 0;
    char num[24];
    int rl = snprintf(num, sizeof num, "%d", rank);
    for (const char *p = t; *p; p++) {
        if (*p != '%') {
            n++;
            continue;
        }
        p++;
        if (*p == 'h')
            n += (long)strlen(host);
        else if (*p == 'r')
            n += rl;
        else if (*p == '%')
            n++;
        else
            return -1;
    }
    return n;
}

static void check_expand(const char *tmpl, const char *host, int rank, size_t outlen)
{
    char err[96];
    char *out = malloc(outlen);
    long want = ref_expand_len(tmpl, host, rank);
    int r = pb_expand_dest(tmpl, host, rank, out, outlen, err, sizeof err);
    if (want < 0) {
        CHECK(r < 0 && err[0]);
    } else if ((size_t)want + 1 > outlen) {
        CHECK(r < 0);
    } else {
        CHECK(r == 0);
        CHECK(strlen(out) == (size_t)want);
    }
    if (r < 0)
        CHECK(memchr(err, 0, sizeof err) != NULL);
    /* validation-only mode: same verdict on the template itself */
    int v = pb_expand_dest(tmpl, host, rank, NULL, 0, err, sizeof err);
    CHECK((v == 0) == (want >= 0));
    if (r == 0 && !pb_dest_has_placeholder(tmpl)) {
        size_t l2 = (size_t)want + 1;
        char *o2 = malloc(l2);
        CHECK(pb_expand_dest(tmpl, "another-host.example", rank + 17, o2, l2, err, sizeof err) == 0);
        CHECK(strcmp(o2, out) == 0);
        free(o2);
    }
    free(out);
}

static int is_one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

static void check_cli(char **args, int nargs)
{
    /* argv[0] is the program; argv[argc] == NULL as getopt expects. */
    char *argv[MAXARGS + 2];
    char prog[] = "p2pbcast";
    argv[0] = prog;
    for (int i = 0; i < nargs; i++)
        argv[i + 1] = args[i];
    argv[nargs + 1] = NULL;
    int argc = nargs + 1;
    /* keep the original pointers: getopt may permute argv (it must not with
     * the leading '+', but the invariant below only needs membership) */
    char *orig[MAXARGS + 2];
    memcpy(orig, argv, sizeof argv);

    struct pb_cli cli;
    char err[200];
    err[0] = 0;
    memset(&cli, 0x5a, sizeof cli);
    int r = pb_cli_parse(argc, argv, &cli, err, sizeof err);
    if (r != 0) {
        CHECK(r == -1);
        CHECK(memchr(err, 0, sizeof err) != NULL);
        CHECK(err[0] != 0);
        CHECK(strchr(err, '\n') == NULL || 1); /* args may contain anything */
        return;
    }
    const struct p2pbcast_opts *o = &cli.opts;
    CHECK(o->struct_size == sizeof *o);
    CHECK(o->chunk_size == 0 || (o->chunk_size >= 4096 && o->chunk_size <= (1u << 30)));
    CHECK(o->slots == 0 || (o->slots >= 4 && o->slots <= 4096));
    CHECK(o->root >= 0 && o->root <= (1 << 30));
    CHECK(o->gid_index == -1 || (o->gid_index >= 0 && o->gid_index <= 255));
    CHECK(o->timeout > 0 && o->timeout <= 86400.0 * 7);
    static const char *const transports[] = { "auto", "tcp", "mpi", "verbs", NULL };
    CHECK(!o->transport || is_one_of(o->transport, transports));
    CHECK(!o->tcp_if || o->tcp_if[0]);
    if (cli.help || cli.version)
        return;
    CHECK(!((o->flags & P2PBCAST_QUIET) && (o->flags & P2PBCAST_VERBOSE)));
    CHECK(cli.source && cli.dest && cli.source[0] && cli.dest[0]);
    int src_in = 0, dst_in = 0;
    for (int i = 1; i < argc; i++) {
        src_in |= cli.source == orig[i];
        dst_in |= cli.dest == orig[i];
    }
    CHECK(src_in && dst_in);
    /* A DEST that parsed must expand for any host and rank. */
    char out[4096], perr[128];
    long want = ref_expand_len(cli.dest, "node001", 12345);
    CHECK(want >= 0);
    if ((size_t)want < sizeof out)
        CHECK(pb_expand_dest(cli.dest, "node001", 12345, out, sizeof out, perr, sizeof perr) == 0 &&
              strlen(out) == (size_t)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *args[MAXARGS];
    int n = split(data + 1, size - 1, args, MAXARGS);
    switch (data[0] % 3) {
    case 0:
        check_cli(args, n);
        break;
    case 1:
        for (int i = 0; i < n; i++)
            check_size(args[i]);
        break;
    case 2: {
        /* args: template, host, rank, outlen */
        const char *tmpl = n > 0 ? args[0] : "";
        const char *host = n > 1 ? args[1] : "h";
        long rank = n > 2 ? strtol(args[2], NULL, 10) : 0;
        if (rank < -(1L << 30) || rank > (1L << 30))
            rank = 1L << 30;
        /* callers always pass a real buffer (outlen >= 1) or out == NULL */
        size_t outlen = n > 3 ? (size_t)(strtoul(args[3], NULL, 10) % 8192) + 1 : 256;
        check_expand(tmpl, host, (int)rank, outlen);
        (void)pb_dest_has_placeholder(tmpl);
        break;
    }
    }
    for (int i = 0; i < n; i++)
        free(args[i]);
    return 0;
}
