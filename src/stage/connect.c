/* connect.c — phase 4: the slot pool (near the network device when we know
 * which one it is) and the connections to this node's schedule partners. */
#include "bootstrap.h"
#include "digest.h"
#include "phases.h"
#include "topo.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* File descriptors a transport may take beyond one per partner: listening
 * socket, epoll, device files, MPI's own. */
#define FD_MARGIN 32

/* Descriptors open now (MPI, the files); a guess where /proc is absent. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 16;
    int n = -1; /* the directory's own descriptor */
    for (struct dirent *de; (de = readdir(d));)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* One connection per partner must fit under RLIMIT_NOFILE: raise the soft
 * limit towards the hard one if needed, or say what to set. The ring's root
 * needs one per node; the trees at most 4. */
static void check_fd_limit(struct stage *st, int npeers, struct pb_vote *mine)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)open_fds() + (rlim_t)npeers + FD_MARGIN;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
        if (st->verbose)
            fprintf(stderr, "p2pbcast: %s: open files limit raised to %llu for %d connections\n",
                    st->bi->names[st->bi->leader], (unsigned long long)rl.rlim_cur, npeers);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "too many open files needed: %d connections (schedule %s) + %d open + %d spare = %llu, but the "
                 "limit (RLIMIT_NOFILE) is %llu, hard %llu: raise it with 'ulimit -n %llu' before starting the "
                 "job%s",
                 npeers, pb_schedule_name(st->plan.schedule), (int)(need - (rlim_t)npeers - FD_MARGIN), FD_MARGIN,
                 (unsigned long long)need, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                 (unsigned long long)need, st->plan.schedule == PB_SCHED_RING ? " or use --schedule tree" : "");
        pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0, msg);
    }
}

/* Testing only: P2PBCAST_TEST_FAIL_ALLOC_RANK=R makes the slot pool's
 * allocation fail on rank R, as if memory had run out there. */
static int pool_alloc_fails_here(const struct stage *st)
{
    const char *v = getenv("P2PBCAST_TEST_FAIL_ALLOC_RANK");
    char *end;
    long r = v && *v ? strtol(v, &end, 10) : -1;
    return v && *v && !*end && r == st->bi->rank;
}

/* The slot pool, and this thread, next to the network device when one is
 * named. Loading the topology costs ~0.15 s of CPU per process (PCI scan):
 * only when there is a device to be near. With verbs rails on several NUMA
 * nodes the transport then moves each rail's slots near its own device
 * (verbs_mr.c place_slots); the thread, which reads every slot, stays. */
static void alloc_pool(struct stage *st)
{
    const struct pb_meta *m = &st->meta;
    int verbs = !strcmp(m->transport, "verbs");
    /* one named interface only: rails may sit on different NUMA nodes */
    const char *tif = st->o.tcp_if;
    const char *dev = verbs ? (st->vfit.dev[0] ? st->vfit.dev : NULL) /* the first rail's */
                            : tif && !strchr(tif, '/') && !strchr(tif, ',') ? tif : NULL;
    struct pb_topo_place place;
    st->slot_size = pb_slot_size(m->chunk);
    st->pool_len = st->slot_size * m->slots;
    st->pool_placed = dev || verbs;
    if (pool_alloc_fails_here(st)) {
        st->pool = NULL;
        st->pool_placed = 0;
    } else if (st->pool_placed) {
        st->pool = pb_topo_alloc_near(dev, st->pool_len, &place);
        if (st->pool)
            pb_topo_place_thread(dev, &place);
    } else if (posix_memalign((void **)&st->pool, 4096, st->pool_len) == 0) {
        memset(st->pool, 0, st->pool_len); /* first touch now, not mid-transfer */
        snprintf(place.desc, sizeof place.desc, "pool not placed: no device named (--tcp-if NAME places it)");
    } else {
        st->pool = NULL;
    }
    if (st->pool && st->verbose)
        fprintf(stderr, "p2pbcast: %s: %s\n", st->bi->names[st->bi->leader], place.desc);
}

static struct pb_transport *open_transport(const char *name, const struct pb_transport_cfg *cfg, char *err,
                                           size_t errlen)
{
    if (!strcmp(name, "tcp"))
        return pb_tcp_open(cfg, err, errlen);
    if (!strcmp(name, "verbs"))
        return pb_verbs_open(cfg, err, errlen);
    if (!strcmp(name, "mpi"))
        return pb_mpi_transport_open(cfg, err, errlen);
    snprintf(err, errlen, "transport '%s' is not built into this p2pbcast", name);
    return NULL;
}

void pb_stage_transport_cfg(struct stage *st, struct pb_transport_cfg *tc)
{
    const struct pb_boot_info *bi = st->bi;
    *tc = (struct pb_transport_cfg){
        .self = bi->leader,
        .nleaders = bi->nleaders,
        .names = bi->names,
        .netids = bi->netids,
        .all_local = bi->all_local,
        .xchg = { .with_peers = pb_boot_peer_exchange, .per_peer = pb_boot_peer_exchange_each,
                  .wait = pb_boot_wait_setup, .root_decides = pb_boot_root_decides, .ctx = st->boot },
        .timeout = st->o.timeout,
        .verbose = st->verbose,
        .tcp_if = st->o.tcp_if,
        .tcp_rails = st->have_rails && !strcmp(st->meta.transport, "tcp") ? &st->rails : NULL,
        .rdma_dev = st->o.rdma_dev,
        .rdma_rails = (int)st->vfit.nrails,
        .gid_index = st->o.gid_index,
        .rdma_tclass = st->o.rdma_tclass,
    };
    memcpy(tc->secret, st->meta.secret, sizeof tc->secret);
    pb_boot_set_exchange_timeout(st->boot, st->o.timeout);
}

/* Every leader joins the transport's collective set-up, even one that
 * already failed, so that the others do not wait for it. */
static void connect_peers(struct stage *st, int npeers, struct pb_vote *mine)
{
    int elsewhere = 0;
    struct pb_transport_cfg tc;
    pb_stage_transport_cfg(st, &tc);
    tc.peers = st->peers;
    tc.npeers = npeers;
    tc.pool = st->pool;
    tc.slot_size = st->slot_size;
    tc.nslots = st->meta.slots;
    tc.mpi_comm = pb_boot_leader_comm(st->boot);
    tc.failed_elsewhere = &elsewhere;
    tc.links = st->links;
    tc.links_len = sizeof st->links;
    char err[512];
    /* the partners' names and machines, for the transport's choices and
     * messages (the transport still runs after a failure, see above) */
    int rc = pb_boot_meet_partners(st->boot, st->peers, npeers);
    if (rc != 0 && !mine->code)
        pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0,
                    rc == 2 ? "interrupted while meeting the partners" : "MPI exchange with the partners failed");
    st->tp = open_transport(st->meta.transport, &tc, err, sizeof err);
    if (!st->tp && !mine->code) /* only a consequence when another node's set-up failed */
        pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, elsewhere, err);
    if (mine->code)
        pb_connect_close(st);
}

/* One leader's outcome of the verbs set-up, gathered at the root. */
struct setup_answer {
    int32_t code;
    int32_t here; /* this leader's own set-up failed (not only another's) */
    char why[400];
};

/* Root: fall back when only the verbs set-up failed, with one warning line
 * naming each node whose own set-up failed and why. */
static int32_t root_wants_tcp(const struct stage *st, const struct setup_answer *a)
{
    const struct pb_boot_info *bi = st->bi;
    int failed = 0;
    for (int i = 0; i < bi->nleaders; i++) {
        if (a[i].code && a[i].code != P2PBCAST_ERR_TRANSPORT)
            return 0;
        failed += a[i].code != 0;
    }
    if (!failed)
        return 0;
    fprintf(stderr, "p2pbcast: warning: transport auto: verbs set-up failed, tcp for all %d nodes instead:",
            bi->nleaders);
    for (int i = 0, sep = 0; i < bi->nleaders; i++)
        if (a[i].here)
            fprintf(stderr, "%s %s: %s", sep++ ? ";" : "", bi->names[i], a[i].why);
    fputc('\n', stderr);
    return 1;
}

/* With --transport auto, a verbs set-up that failed after the nodes said
 * they could (queue pairs that do not reach RTR or RTS, memory that cannot
 * be pinned) is tried once more over tcp on every node, before a byte of
 * DEST is written: the root decides from every leader's outcome and tells
 * every rank. Any other failure goes to the phase's vote as it is. */
static int fall_back_to_tcp(struct stage *st, int npeers, struct pb_vote *mine)
{
    const struct pb_boot_info *bi = st->bi;
    struct setup_answer me = { .code = mine->code }, *all = NULL;
    if (bi->is_leader && mine->code) {
        me.here = !mine->secondary; /* the transport said it failed only because another node did */
        pb_copy_str(me.why, sizeof me.why, mine->msg);
    }
    if (st->root)
        all = calloc((size_t)bi->nleaders, sizeof *all);
    int rc = bi->is_leader ? pb_agree_gather(&st->ag, &me, all, sizeof me) : 0;
    int32_t tcp = st->root && all && rc == 0 ? root_wants_tcp(st, all) : 0;
    free(all);
    if (rc == 2 || (rc = pb_agree_bcast(&st->ag, &tcp, sizeof tcp)) == 2)
        return pb_agree_interrupted(&st->ag, &st->d);
    if (rc != 0 || !tcp)
        return 0; /* the phase's vote says what failed */
    snprintf(st->meta.transport, sizeof st->meta.transport, "tcp");
    if (bi->is_leader) {
        memset(mine, 0, sizeof *mine);
        pb_connect_close(st);
        connect_peers(st, npeers, mine);
    }
    return 0;
}

int pb_phase_connect(struct stage *st)
{
    struct pb_vote mine = { 0 };
    const struct pb_boot_info *bi = st->bi;
    int npeers = 0;
    if (bi->is_leader) {
        /* The plan's partners: every node (ring root), at most 4 (trees). */
        st->peers = malloc(((size_t)bi->nleaders + 4) * sizeof *st->peers);
        if (st->peers) {
            npeers = pb_plan_partners(&st->plan, bi->root_leader, bi->nleaders, bi->leader, st->peers);
            st->npeers = npeers;
            check_fd_limit(st, npeers, &mine);
        }
    }
    /* Agree on the descriptors first: a node that cannot connect to all its
     * partners would leave them waiting for its connections until the
     * timeout. */
    int rc = pb_agree(&st->ag, &mine, &st->d, 0);
    if (rc)
        return rc;
    if (bi->is_leader) {
        alloc_pool(st);
        if (!st->peers || !st->pool) {
            char msg[160];
            snprintf(msg, sizeof msg, "out of memory for the slot pool (%zu bytes): %s", st->pool_len,
                     strerror(ENOMEM));
            pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, msg);
        }
        connect_peers(st, npeers, &mine);
    }
    if (st->meta.negotiate && !strcmp(st->meta.transport, "verbs") && (rc = fall_back_to_tcp(st, npeers, &mine)))
        return rc;
    return pb_agree(&st->ag, &mine, &st->d, 0);
}

void pb_connect_close(struct stage *st)
{
    if (st->tp)
        st->pool_in_use |= st->tp->ops->close(st->tp);
    st->tp = NULL;
}

void pb_connect_release(struct stage *st)
{
    pb_connect_close(st);
    if (st->pool_in_use) {
        /* MPI may still write into it: keep it rather than free it under
         * MPI's feet (the process is about to end anyway). */
        if (st->verbose)
            fprintf(stderr, "p2pbcast: %s: slot pool kept: the transport left requests into it\n",
                    st->bi->names[st->bi->leader]);
    } else if (st->pool && st->pool_placed)
        pb_topo_free(st->pool, st->pool_len);
    else
        free(st->pool);
    if (st->pool_placed)
        pb_topo_release();
    st->pool = NULL;
    st->pool_placed = 0;
    free(st->peers);
    st->peers = NULL;
}
