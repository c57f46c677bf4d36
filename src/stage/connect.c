/* connect.c — phase 4: the slot pool (near the network device when we know
 * which one it is) and the connections to this node's schedule partners. */
#include "bootstrap.h"
#include "digest.h"
#include "phases.h"
#include "topo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The peers a leader talks to: the root talks to every receiver; a
 * receiver to the root and its ring neighbours. */
static int ring_peers(const struct pb_plan *p, const struct pb_boot_info *bi, int *peers)
{
    int n = 0;
    int self = bi->leader, root = bi->root_leader, L = bi->nleaders;
    int r = pb_plan_receiver_of(root, L, self);
    if (r < 0) {
        for (int i = 0; i < p->nrecv; i++)
            peers[n++] = pb_plan_leader_of(root, L, i);
        return n;
    }
    peers[n++] = root;
    if (p->nrecv > 1) {
        int pred = pb_plan_leader_of(root, L, pb_plan_predecessor(p, r));
        int succ = pb_plan_leader_of(root, L, pb_plan_successor(p, r));
        peers[n++] = pred;
        if (succ != pred)
            peers[n++] = succ;
    }
    return n;
}

/* The slot pool, and this thread, next to the network device when one is
 * named. Loading the topology costs ~0.15 s of CPU per process (PCI scan):
 * only when there is a device to be near. */
static void alloc_pool(struct stage *st)
{
    const struct pb_meta *m = &st->meta;
    int verbs = !strcmp(m->transport, "verbs");
    const char *dev = verbs ? st->o.rdma_dev : st->o.tcp_if && !strchr(st->o.tcp_if, '/') ? st->o.tcp_if : NULL;
    struct pb_topo_place place;
    st->slot_size = (size_t)((m->chunk + PB_TRAILER_SIZE + 63) / 64 * 64);
    st->pool_len = st->slot_size * m->slots;
    st->pool_placed = dev || verbs;
    if (st->pool_placed) {
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

/* Every leader joins the transport's collective set-up, even one that
 * already failed, so that the others do not wait for it. */
static void connect_peers(struct stage *st, struct pb_vote *mine)
{
    const struct pb_boot_info *bi = st->bi;
    struct pb_transport_cfg tc = {
        .self = bi->leader,
        .nleaders = bi->nleaders,
        .peers = st->peers,
        .npeers = st->peers ? ring_peers(&st->plan, bi, st->peers) : 0,
        .pool = st->pool,
        .slot_size = st->slot_size,
        .nslots = st->meta.slots,
        .names = bi->names,
        .hosts = bi->hosts,
        .netids = bi->netids,
        .xchg = { pb_boot_allgather, st->boot },
        .timeout = st->o.timeout,
        .verbose = st->verbose,
        .tcp_if = st->o.tcp_if,
        .rdma_dev = st->o.rdma_dev,
        .gid_index = st->o.gid_index,
        .mpi_comm = pb_boot_leader_comm(st->boot),
    };
    memcpy(tc.secret, st->meta.secret, sizeof tc.secret);
    pb_boot_set_exchange_timeout(st->boot, st->o.timeout);
    char err[512];
    st->tp = open_transport(st->meta.transport, &tc, err, sizeof err);
    if (!st->tp && !mine->code)
        pb_vote_set(mine, P2PBCAST_ERR_TRANSPORT, 0, err);
    if (mine->code)
        pb_connect_close(st);
}

int pb_phase_connect(struct stage *st)
{
    struct pb_vote mine = { 0 };
    if (st->bi->is_leader) {
        st->peers = malloc((size_t)st->bi->nleaders * sizeof *st->peers);
        alloc_pool(st);
        if (!st->peers || !st->pool)
            pb_vote_set(&mine, P2PBCAST_ERR_INTERNAL, 0, "out of memory for the slot pool");
        connect_peers(st, &mine);
    }
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
