/* agreement.h — the points where every rank of the job agrees on how far the
 * broadcast got.
 *
 * At each point every node leader sends its vote (ok, or a failure with a
 * message) to the root; the root decides, prints every failure with the
 * node's host and rank (primary causes first, then the nodes that stopped
 * because of them), and broadcasts the decision to every rank. A leader
 * that does not answer in time is named and the job is aborted: waiting
 * longer would be a hang. A signal ends every wait at once. */
#ifndef P2PBCAST_AGREEMENT_H
#define P2PBCAST_AGREEMENT_H

#include "bootstrap.h"
#include "progress.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* A leader's vote at one agreement point. */
struct pb_vote {
    int32_t code;      /* enum p2pbcast_status; 0 = ok */
    int32_t secondary; /* failed because a peer failed */
    uint64_t manifest; /* at the end of the transfer: digest of the chunks held */
    char msg[496];
};

/* The root's decision, broadcast to every rank. */
struct pb_decision {
    int32_t code;
    int32_t nfail;
    int32_t discard_resume; /* a kept copy proved wrong: do not keep it */
    char msg[500];
};

struct pb_agreement {
    struct pb_boot *boot;
    const struct pb_boot_info *bi;
    double timeout;                     /* --timeout */
    const volatile sig_atomic_t *cancel;
    int verbose;
    double t0;                          /* start, for -v timings */
    int rounds;
    /* root only: the votes of one point and the failures to report */
    struct pb_vote *votes;
    struct pb_failure *fails;
    char (*fail_msgs)[496];
    int nfails;
    int printed_self; /* the root already printed its own failure */
    int mismatch;     /* a node's digest differed from the root's */
};

/* 0, or -1 when the root is out of memory (then the first agreement
 * point fails on the root). */
int pb_agreement_init(struct pb_agreement *ag, struct pb_boot *boot, double timeout,
                      const volatile sig_atomic_t *cancel, int verbose, double t0);
void pb_agreement_free(struct pb_agreement *ag);

/* Bounded copy: messages are cut, never overflow, whatever their source. */
void pb_copy_str(char *dst, size_t n, const char *src);
void pb_vote_set(struct pb_vote *v, int code, int secondary, const char *msg);

/* One agreement point: returns the decision's code (0: carry on). With
 * compare_manifests the root also fails every node whose digest differs
 * from its own. */
int pb_agree(struct pb_agreement *ag, struct pb_vote *mine, struct pb_decision *d, int compare_manifests);

/* The root's data to every rank / every leader's bytes to the root, with the
 * agreement's deadline (a silent node ends the job). 0 ok, 2 interrupted,
 * -1 MPI failure. */
int pb_agree_bcast(struct pb_agreement *ag, void *buf, size_t len);
/* Leaders only: the root's data to every leader. */
int pb_agree_bcast_leaders(struct pb_agreement *ag, void *buf, size_t len);
int pb_agree_gather(struct pb_agreement *ag, const void *mine, void *all, size_t len);

/* A signal asked us to stop: fill d and return its code. */
int pb_agree_interrupted(struct pb_agreement *ag, struct pb_decision *d);

/* Root: count a failure the root found itself (printed already). */
void pb_agree_record(struct pb_agreement *ag, int leader, int code, const char *msg);

#endif
