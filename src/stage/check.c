/* check.c — p2pbcast --check, a preflight: every phase of a real run up to
 * connecting the partners, then one message each way on every link, and
 * nothing created under DEST: instead of opening the temporary copy, each
 * node that writes DEST compares the free space of DEST's filesystem with
 * SOURCE's size. The root prints one line per node with a problem (the
 * agreement's) or one line saying all N are ready, then a summary; --json
 * FILE gets the per-node table. The status is the one a real run would
 * stop with at the same point. */
#include "bootstrap.h"
#include "clock.h"
#include "defaults.h"
#include "phases.h"
#include "progress.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define PB_NOTIFY_CHECK 0x43484b21u /* "CHK!": the probe on every link */
#define UNKNOWN UINT64_MAX

/* One node's line of the table, gathered at the root. Fixed layout. */
struct check_row {
    char transport[16];
    char path[112];     /* tcp: interface; verbs: device:port and GID index */
    uint64_t pin_need;  /* verbs: bytes this node pins; 0 otherwise */
    uint64_t pin_limit; /* UNKNOWN: no limit applies */
    uint64_t dest_free; /* UNKNOWN: not looked at (another node writes it, or stopped before) */
    int32_t writes;
    int32_t npeers, answered;
};

/* The directory DEST goes into. */
static void dest_dir(const char *dpath, char *dir, size_t len)
{
    snprintf(dir, len, "%s", dpath);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else
        slash[slash == dir] = '\0';
}

int pb_phase_check_space(struct stage *st)
{
    struct pb_vote mine = { 0 };
    st->dest_free = UNKNOWN;
    if (st->writes) {
        char dir[PATH_MAX], msg[496], fr[32], sz[32];
        struct statvfs sv;
        dest_dir(st->dpath, dir, sizeof dir);
        if (statvfs(dir, &sv) < 0 || access(dir, W_OK) < 0) {
            snprintf(msg, sizeof msg, "DEST's directory '%.300s': %s", dir, strerror(errno));
            pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, msg);
        } else {
            st->dest_free = (uint64_t)sv.f_bavail * sv.f_frsize;
            if (st->dest_free < st->meta.size) {
                snprintf(msg, sizeof msg, "DEST '%.300s': %s free on its filesystem, SOURCE is %s", st->dpath,
                         pb_fmt_bytes(st->dest_free, fr, sizeof fr), pb_fmt_bytes(st->meta.size, sz, sizeof sz));
                pb_vote_set(&mine, P2PBCAST_ERR_DEST, 0, msg);
            }
        }
    }
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

/* Wait for the probe from every partner; an error or the timeout is this
 * node's failure, naming the partner. */
static void await_probes(struct stage *st, int npeers, unsigned char *got, struct pb_vote *mine)
{
    char msg[496];
    double until = pb_now() + st->o.timeout;
    int left = npeers;
    while (left > 0 && !mine->code) {
        struct pb_event ev[16];
        int n = st->tp->ops->poll(st->tp, ev, 16, 200);
        if (n < 0) {
            snprintf(msg, sizeof msg, "waiting for the link probes: %s", strerror(errno));
            pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0, msg);
        }
        for (int i = 0; i < n && !mine->code; i++) {
            int p = -1;
            for (int j = 0; j < npeers; j++)
                p = st->peers[j] == ev[i].peer ? j : p;
            if (ev[i].kind == PB_EV_ERROR) {
                snprintf(msg, sizeof msg, "probe of the link to %s failed: %s%s%s", p >= 0 ?
                         st->bi->names[ev[i].peer] : "the transport", ev[i].what, ev[i].err ? ": " : "",
                         ev[i].err ? strerror(ev[i].err) : "");
                pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0, msg);
            } else if (ev[i].kind == PB_EV_NOTIFY && ev[i].tag == PB_NOTIFY_CHECK && p >= 0 && !got[p]) {
                got[p] = 1;
                left--;
            }
        }
        if (left > 0 && !mine->code && (pb_now() > until || (st->o.cancel && *st->o.cancel))) {
            for (int j = 0; j < npeers; j++)
                if (!got[j]) {
                    snprintf(msg, sizeof msg, "no probe from %s within %.0f s", st->bi->names[st->peers[j]],
                             st->o.timeout);
                    pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0, msg);
                    break;
                }
        }
    }
    st->probes_answered = npeers - left;
}

int pb_phase_probe_links(struct stage *st)
{
    struct pb_vote mine = { 0 };
    int npeers = st->npeers;
    if (st->bi->is_leader && st->tp && npeers > 0) {
        unsigned char *got = calloc((size_t)npeers, 1);
        for (int j = 0; got && j < npeers && !mine.code; j++)
            if (st->tp->ops->notify(st->tp, st->peers[j], PB_NOTIFY_CHECK) < 0) {
                char msg[496];
                snprintf(msg, sizeof msg, "cannot send the probe to %s: %s", st->bi->names[st->peers[j]],
                         strerror(errno));
                pb_vote_set(&mine, P2PBCAST_ERR_TRANSPORT, 0, msg);
            }
        if (!got)
            pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, "out of memory");
        else if (!mine.code)
            await_probes(st, npeers, got, &mine);
        free(got);
    }
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

/* This leader's line. */
static void fill_row(const struct stage *st, struct check_row *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->transport, sizeof r->transport, "%s", st->meta.transport);
    r->pin_limit = UNKNOWN;
    if (!strcmp(st->meta.transport, "verbs") && st->vfit.dev[0]) {
        snprintf(r->path, sizeof r->path, "%s:%u (", st->vfit.dev, st->vfit.port);
        if (st->vfit.mbit)
            snprintf(r->path + strlen(r->path), sizeof r->path - strlen(r->path), "%g Gbit/s",
                     st->vfit.mbit / 1000.0);
        else
            snprintf(r->path + strlen(r->path), sizeof r->path - strlen(r->path), "rate unknown");
        if (st->vfit.nrails > 1)
            snprintf(r->path + strlen(r->path), sizeof r->path - strlen(r->path), ", %u rails", st->vfit.nrails);
        if (st->vfit.roce)
            snprintf(r->path + strlen(r->path), sizeof r->path - strlen(r->path), ", RoCE, GID index %d",
                     st->vfit.gid_index);
        snprintf(r->path + strlen(r->path), sizeof r->path - strlen(r->path), ")");
        r->pin_need = st->vfit.pin_need;
        r->pin_limit = st->vfit.pin_limit;
    } else if (!strcmp(st->meta.transport, "tcp")) {
        if (st->links[0]) { /* the rails the transport chose */
            snprintf(r->path, sizeof r->path, "%.*s", (int)sizeof r->path - 1, st->links);
        } else { /* it stopped before: the interface it would take */
            char ifname[32] = "";
            if (st->bi->all_local)
                snprintf(ifname, sizeof ifname, "lo");
            else
                (void)pb_tcp_link_mbit(st->o.tcp_if, ifname, sizeof ifname);
            snprintf(r->path, sizeof r->path, "%s", ifname[0] ? ifname : "?");
        }
    }
    r->dest_free = st->dest_free;
    r->writes = st->writes;
    r->npeers = st->npeers;
    r->answered = st->probes_answered;
}

/* The failure the agreement recorded for this node, if any. */
static const char *problem_of(const struct stage *st, int leader)
{
    for (int i = 0; i < st->ag.nfails; i++)
        if (st->ag.fails[i].node == st->bi->names[leader])
            return st->ag.fails[i].message;
    return NULL;
}

static void json_num(FILE *f, const char *key, uint64_t v)
{
    if (v == UNKNOWN)
        fprintf(f, ", \"%s\": null", key);
    else
        fprintf(f, ", \"%s\": %llu", key, (unsigned long long)v);
}

static void write_json(const struct stage *st, const struct check_row *rows, int status)
{
    char tmp[PATH_MAX + 16], err[512];
    FILE *f = pb_json_create(st->o.json_path, tmp, sizeof tmp, err, sizeof err);
    if (!f) {
        fprintf(stderr, "p2pbcast: warning: %s\n", err);
        return;
    }
    fprintf(f, "{\n  \"version\": \"%s\",\n  \"check\": true,\n  \"status\": %d,\n  \"status_name\": ",
            P2PBCAST_VERSION, status);
    pb_json_str(f, pb_status_name(status));
    fprintf(f, ",\n  \"source\": ");
    pb_json_str(f, st->source);
    fprintf(f, ",\n  \"dest\": ");
    pb_json_str(f, st->dest);
    fprintf(f, ",\n  \"bytes\": %llu,\n  \"transport\": ", (unsigned long long)st->meta.size);
    pb_json_str(f, st->meta.transport);
    fprintf(f, ",\n  \"transport_why\": ");
    pb_json_str(f, st->tp_why);
    fprintf(f, ",\n  \"source_read_by_all\": %s,\n  \"nodes\": [", st->shared ? "true" : "false");
    for (int i = 0; rows && i < st->bi->nleaders; i++) {
        const char *p = problem_of(st, i);
        fprintf(f, "%s\n    {\"node\": ", i ? "," : "");
        pb_json_str(f, st->bi->names[i]);
        fprintf(f, ", \"ready\": %s, \"problem\": ", p ? "false" : "true");
        if (p)
            pb_json_str(f, p);
        else
            fputs("null", f);
        fprintf(f, ", \"transport\": ");
        pb_json_str(f, rows[i].transport);
        fprintf(f, ", \"link\": ");
        pb_json_str(f, rows[i].path);
        json_num(f, "pinned_needed", rows[i].pin_need);
        json_num(f, "pinned_limit", rows[i].pin_limit);
        json_num(f, "dest_free", rows[i].dest_free);
        fprintf(f, ", \"writes_dest\": %s, \"partners\": %d, \"partners_probed\": %d}", rows[i].writes ? "true" : "false",
                rows[i].npeers, rows[i].answered);
    }
    fprintf(f, "\n  ]\n}\n");
    if (pb_json_finish(f, tmp, st->o.json_path, err, sizeof err) < 0)
        fprintf(stderr, "p2pbcast: warning: %s\n", err);
}

/* Root: the summary lines. */
static void print_summary(const struct stage *st, const struct check_row *rows)
{
    const struct pb_boot_info *bi = st->bi;
    char a[32], b[32];
    fprintf(stderr, "p2pbcast: check: transport %s (%s)\n", st->meta.transport, st->tp_why);
    int lowpin = -1, lowfree = -1, maxneed = -1;
    for (int i = 0; i < bi->nleaders; i++) {
        if (rows[i].pin_need && (maxneed < 0 || rows[i].pin_need > rows[maxneed].pin_need))
            maxneed = i;
        if (rows[i].pin_need && (lowpin < 0 || rows[i].pin_limit < rows[lowpin].pin_limit))
            lowpin = i;
        if (rows[i].dest_free != UNKNOWN && (lowfree < 0 || rows[i].dest_free < rows[lowfree].dest_free))
            lowfree = i;
    }
    for (int i = 0; i < bi->nleaders; i++)
        if (st->verbose || i == 0)
            fprintf(stderr, "p2pbcast: check: %s: %s %s, %d of %d partner(s) answered the probe%s\n", bi->names[i],
                    rows[i].transport, rows[i].path, rows[i].answered, rows[i].npeers,
                    i == 0 && !st->verbose && bi->nleaders > 1 ? " (-v: every node)" : "");
    if (maxneed >= 0)
        fprintf(stderr, "p2pbcast: check: pinned memory: up to %s needed (%s), lowest limit %s (%s)\n",
                pb_fmt_bytes(rows[maxneed].pin_need, a, sizeof a), bi->names[maxneed],
                rows[lowpin].pin_limit == UNKNOWN ? "none" : pb_fmt_bytes(rows[lowpin].pin_limit, b, sizeof b),
                rows[lowpin].pin_limit == UNKNOWN ? "unlimited or CAP_IPC_LOCK everywhere" : bi->names[lowpin]);
    if (lowfree >= 0)
        fprintf(stderr, "p2pbcast: check: DEST: least free space %s (%s), SOURCE is %s\n",
                pb_fmt_bytes(rows[lowfree].dest_free, a, sizeof a), bi->names[lowfree],
                pb_fmt_bytes(st->meta.size, b, sizeof b));
    fprintf(stderr, "p2pbcast: check: SOURCE %s\n",
            st->shared ? "is seen by every node: each reads its share in parallel"
                       : "is read by the root only (not seen alike by every node, or not asked: -v says why)");
}

void pb_check_report(struct stage *st, int status)
{
    const struct pb_boot_info *bi = st->bi;
    if (!bi->is_leader)
        return;
    struct check_row mine, *rows = st->root ? calloc((size_t)bi->nleaders, sizeof *rows) : NULL;
    fill_row(st, &mine);
    int rc = pb_agree_gather(&st->ag, &mine, rows, sizeof mine);
    if (!st->root)
        return;
    if (status == 0)
        fprintf(stderr, "p2pbcast: check: all %d node%s ready: a real run would start\n", bi->nleaders,
                bi->nleaders == 1 ? " is" : "s are");
    else
        fprintf(stderr, "p2pbcast: check: FAILED (%s): %d of %d node(s) not ready (above); a real run would stop "
                "with status %d\n", pb_status_name(status), st->d.nfail, bi->nleaders, status);
    if (rc == 0 && rows && st->have_plan)
        print_summary(st, rows);
    if (st->o.json_path)
        write_json(st, rc == 0 ? rows : NULL, status);
    free(rows);
}
