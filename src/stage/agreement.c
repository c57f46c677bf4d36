/* agreement.c — votes, decisions and deadlines; see agreement.h. */
#include "agreement.h"
#include "clock.h"
#include "p2pbcast.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_root(const struct pb_agreement *ag)
{
    return ag->bi->rank == ag->bi->root;
}

int pb_agreement_init(struct pb_agreement *ag, struct pb_boot *boot, double timeout,
                      const volatile sig_atomic_t *cancel, int verbose, double t0)
{
    memset(ag, 0, sizeof *ag);
    ag->boot = boot;
    ag->bi = pb_boot_info(boot);
    ag->timeout = timeout;
    ag->cancel = cancel;
    ag->verbose = verbose;
    ag->t0 = t0;
    pb_boot_set_cancel(boot, cancel);
    if (!is_root(ag))
        return 0;
    size_t n = (size_t)ag->bi->nleaders;
    ag->votes = calloc(n, sizeof *ag->votes);
    ag->fails = calloc(n, sizeof *ag->fails);
    ag->fail_msgs = calloc(n, sizeof *ag->fail_msgs);
    return ag->votes && ag->fails && ag->fail_msgs ? 0 : -1;
}

void pb_agreement_free(struct pb_agreement *ag)
{
    free(ag->votes);
    free(ag->fails);
    free(ag->fail_msgs);
    ag->votes = NULL;
    ag->fails = NULL;
    ag->fail_msgs = NULL;
}

void pb_copy_str(char *dst, size_t n, const char *src)
{
    size_t l = strnlen(src ? src : "", n - 1);
    memcpy(dst, src ? src : "", l);
    dst[l] = 0;
}

void pb_vote_set(struct pb_vote *v, int code, int secondary, const char *msg)
{
    v->code = code;
    v->secondary = secondary;
    pb_copy_str(v->msg, sizeof v->msg, msg);
}

/* How long an agreement point may wait. Leaders leave the transfer within
 * about one --timeout of each other (a node whose peers fail notices at once
 * or times out), so the root waits one timeout plus a margin for the votes,
 * and the other leaders wait twice that for the decision. Other ranks on a
 * node wait as long as the job runs. */
static double deadline(const struct pb_agreement *ag)
{
    if (!ag->bi->is_leader)
        return 0;
    return is_root(ag) ? ag->timeout + 5 : 2 * ag->timeout + 10;
}

/* An agreement point did not complete in time: a node is stalled or gone.
 * Say who, then end the whole job: waiting longer would be a hang. */
static void give_up(struct pb_agreement *ag, const unsigned char *missing, double waited)
{
    const struct pb_boot_info *bi = ag->bi;
    char who[1024] = "";
    size_t n = 0;
    int count = 0;
    for (int i = 0; missing && i < bi->nleaders; i++)
        if (missing[i]) {
            count++;
            if (n < sizeof who - 64)
                n += (size_t)snprintf(who + n, sizeof who - n, "%s%s", n ? ", " : "", bi->names[i]);
        }
    if (is_root(ag))
        /* waited, not the deadline: a node whose link a partner saw fail
         * has only a short grace (the bootstrap's SUSPECT_GRACE) */
        fprintf(stderr, "p2pbcast: error: no answer after %.0f s from %d node(s): %s%s; aborting the job\n", waited,
                count, who, n >= sizeof who - 64 ? ", ..." : "");
    else
        fprintf(stderr, "p2pbcast: error: %s: no word from the root %s within %.0f s; aborting the job\n",
                bi->names[bi->leader], bi->names[bi->root_leader], deadline(ag));
    pb_boot_abort(ag->boot, P2PBCAST_ERR_TRANSFER);
}

int pb_agree_interrupted(struct pb_agreement *ag, struct pb_decision *d)
{
    d->code = P2PBCAST_ERR_TRANSFER;
    /* names[] exists on leaders only; every rank knows its host and rank. */
    snprintf(d->msg, sizeof d->msg, "%s (rank %d): interrupted by signal %d", ag->bi->host, ag->bi->rank,
             ag->cancel ? (int)*ag->cancel : 0);
    return d->code;
}

static int boot_status(int rc)
{
    return rc == 0 ? 0 : rc == 2 ? 2 : -1;
}

/* A broadcast that did not complete in time ends the job. */
static int bcast_status(struct pb_agreement *ag, int rc)
{
    if (rc == 1)
        give_up(ag, NULL, deadline(ag));
    return boot_status(rc);
}

int pb_agree_bcast(struct pb_agreement *ag, void *buf, size_t len)
{
    return bcast_status(ag, pb_boot_bcast(ag->boot, buf, len, deadline(ag)));
}

int pb_agree_bcast_leaders(struct pb_agreement *ag, void *buf, size_t len)
{
    return bcast_status(ag, pb_boot_bcast_leaders(ag->boot, buf, len, deadline(ag)));
}

int pb_agree_gather(struct pb_agreement *ag, const void *mine, void *all, size_t len)
{
    const struct pb_boot_info *bi = ag->bi;
    unsigned char *missing = NULL;
    if (is_root(ag) && !(missing = calloc((size_t)bi->nleaders, 1)))
        return -1;
    double t = pb_now();
    int rc = pb_boot_gather(ag->boot, mine, all, len, deadline(ag), missing);
    if (rc == 1 && is_root(ag))
        give_up(ag, missing, pb_now() - t);
    free(missing);
    /* A leader whose vote found no taker goes on to wait for the decision:
     * the root has either given up on the job or will still answer. */
    return rc == 1 ? 0 : boot_status(rc);
}

void pb_agree_record(struct pb_agreement *ag, int leader, int code, const char *msg)
{
    if (!ag->fails || ag->nfails >= ag->bi->nleaders)
        return;
    char *m = ag->fail_msgs[ag->nfails];
    pb_copy_str(m, sizeof ag->fail_msgs[0], msg);
    ag->fails[ag->nfails++] = (struct pb_failure){ ag->bi->names[leader], code, m };
}

/* Root: a node whose digest differs from the root's holds a bad copy. */
static void check_manifests(struct pb_agreement *ag, const struct pb_vote *root_vote)
{
    for (int i = 0; i < ag->bi->nleaders; i++) {
        struct pb_vote *v = &ag->votes[i];
        if (!v->code && v->manifest != root_vote->manifest) {
            ag->mismatch = 1;
            v->code = P2PBCAST_ERR_TRANSFER;
            snprintf(v->msg, sizeof v->msg, "copy does not match SOURCE (manifest digest %016llx, root %016llx)",
                     (unsigned long long)v->manifest, (unsigned long long)root_vote->manifest);
        }
    }
}

/* Root: the first failure that is not merely a consequence of another
 * decides the status; every failure is printed, primary causes first, then
 * the nodes that stopped because of them. The root's own failure was
 * printed the moment it happened. */
static void decide(struct pb_agreement *ag, struct pb_decision *d)
{
    const struct pb_boot_info *bi = ag->bi;
    int first = -1, first_any = -1;
    for (int i = 0; i < bi->nleaders; i++) {
        struct pb_vote *v = &ag->votes[i];
        if (!v->code)
            continue;
        d->nfail++;
        if (first_any < 0)
            first_any = i;
        if (first < 0 && !v->secondary)
            first = i;
        v->msg[sizeof v->msg - 1] = 0;
        pb_agree_record(ag, i, v->code, v->msg);
    }
    for (int pass = 0; pass < 2 && d->nfail; pass++)
        for (int i = 0; i < bi->nleaders; i++)
            if (ag->votes[i].code && ag->votes[i].secondary == pass && !(i == bi->root_leader && ag->printed_self))
                fprintf(stderr, "p2pbcast: error: %s: %s\n", bi->names[i], ag->votes[i].msg);
    if (first < 0)
        first = first_any;
    d->discard_resume = ag->mismatch;
    if (first >= 0) {
        d->code = ag->votes[first].code;
        snprintf(d->msg, sizeof d->msg, "%s: %s", bi->names[first], ag->votes[first].msg);
    }
}

int pb_agree(struct pb_agreement *ag, struct pb_vote *mine, struct pb_decision *d, int compare_manifests)
{
    const struct pb_boot_info *bi = ag->bi;
    if (ag->verbose && is_root(ag))
        fprintf(stderr, "p2pbcast: [%.3f s] agreement %d\n", pb_now() - ag->t0, ++ag->rounds);
    memset(d, 0, sizeof *d);
    if (bi->is_leader) {
        int rc = pb_agree_gather(ag, mine, ag->votes, sizeof *mine);
        if (rc == 2)
            return pb_agree_interrupted(ag, d);
        if (rc < 0) {
            d->code = P2PBCAST_ERR_INTERNAL;
            snprintf(d->msg, sizeof d->msg, "MPI gather of the nodes' status failed");
        }
    }
    if (is_root(ag) && !d->code) {
        if (compare_manifests)
            check_manifests(ag, mine);
        decide(ag, d);
    }
    int rc = pb_agree_bcast(ag, d, sizeof *d);
    if (rc == 2)
        return pb_agree_interrupted(ag, d);
    if (rc < 0 && !d->code) {
        d->code = P2PBCAST_ERR_INTERNAL;
        snprintf(d->msg, sizeof d->msg, "MPI broadcast of the decision failed");
    }
    return d->code;
}
