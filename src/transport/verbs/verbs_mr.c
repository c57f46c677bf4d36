/* verbs_mr.c — memory registration for the verbs transport: one protection
 * domain per device, the pool, the descriptor table and the control buffers
 * registered once at set-up (every registration counts against memlock),
 * and per granted slot two type 2 memory windows bound to the grantee's
 * queue pair (they pin nothing more); why a registration failed. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* Like verbs.c, nothing here without verbs (see PB_FORCE_NO_VERBS there). */
#if defined(HAVE_VERBS) && !defined(PB_FORCE_NO_VERBS)

#include "verbs_internal.h"

/* Why a registration of len bytes failed (errno e). memlock is blamed only
 * when it can be the cause: a finite limit below what this process needs
 * pinned (what it registered so far plus this request, and at least what
 * the whole run registers, t->pin), and no CAP_IPC_LOCK. */
static void reg_error(struct vt *t, const struct vrail *R, const char *what, size_t len, int e, char *why,
                      size_t wl)
{
    size_t dlen = t->desc_len;
    size_t base = t->pin.total ? (size_t)t->pin.total : t->pool_len + dlen + t->ctrl_len;
    size_t need = t->reg_bytes + len > base ? t->reg_bytes + len : base;
    snprintf(why, wl, "cannot register %s (%s) with %s: %s; registered before: %s (pool %s, control buffers %s, "
             "descriptors %s)",
             what, pb_verbs_size_str(len).s, R->devname, strerror(e), pb_verbs_size_str(t->reg_bytes).s, pb_verbs_size_str(t->pool_len).s,
             pb_verbs_size_str(t->ctrl_len).s, pb_verbs_size_str(dlen).s);
    size_t n = strlen(why);
    if (n + 1 >= wl || (e != ENOMEM && e != EAGAIN && e != EPERM))
        return;
    why += n;
    wl -= n;
    const char *other = "the device's or the system's pinning limits";
    struct rlimit rl;
    int cap = pb_verbs_has_cap_ipc_lock();
    if (cap == 1)
        snprintf(why, wl, "; not memlock (this process has CAP_IPC_LOCK): %s", other);
    else if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        snprintf(why, wl, "; ulimit -l (memlock) must be unlimited or exceed %s, or %s", pb_verbs_size_str(need).s, other);
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(why, wl, "; not memlock (ulimit -l is unlimited): %s", other);
    else if (rl.rlim_cur >= need)
        snprintf(why, wl, "; not memlock (ulimit -l is %s, above the %s needed): %s", pb_verbs_size_str(rl.rlim_cur).s,
                 pb_verbs_size_str(need).s, other);
    else
        snprintf(why, wl,
                 "; check `ulimit -l` (memlock, now %s): it must be unlimited or exceed %s "
                 "(limits.conf, Slurm PropagateResourceLimits)",
                 pb_verbs_size_str(rl.rlim_cur).s, pb_verbs_size_str(need).s);
    n = strlen(why);
    if (t->pin.total && n + 1 < wl)
        snprintf(why + n, wl - n, "; this node pins %s in all (the slot pool once%s)", pb_verbs_size_str(t->pin.total).s,
                 t->nrails > 1 ? " per rail, shared by the rail's queue pairs" : ", shared by every queue pair");
}

/* Register len bytes at addr in rail R's PD; counts what is registered. */
static struct ibv_mr *reg(struct vt *t, struct vrail *R, void *addr, size_t len, int acc, const char *what,
                          char *why, size_t wl)
{
    struct ibv_mr *mr = ibv_reg_mr(R->pd, addr, len, acc);
    if (!mr)
        reg_error(t, R, what, len, errno, why, wl);
    else
        t->reg_bytes += len;
    return mr;
}

/* Each slot's rail: spread in proportion to the rails' rates, interleaved
 * (the slot that keeps every rail's count closest to its share), so that
 * the slots in use at any time are spread too. */
static void assign_slots(struct vt *t)
{
    uint64_t w[PB_VERBS_MAX_RAILS], sum = 0, cnt[PB_VERBS_MAX_RAILS] = {0};
    for (int r = 0; r < t->nrails; r++)
        sum += w[r] = t->rails[r].mbit ? t->rails[r].mbit : 1;
    for (uint32_t s = 0; s < t->nslots; s++) {
        int best = 0;
        int64_t bestv = INT64_MIN;
        for (int r = 0; r < t->nrails; r++) {
            int64_t v = (int64_t)((s + 1) * w[r]) - (int64_t)(cnt[r] * sum);
            if (v > bestv) {
                bestv = v;
                best = r;
            }
        }
        cnt[best]++;
        t->slot_rail[s] = (uint8_t)best;
        t->rails[best].nslots++;
    }
}

/* The descriptor table and the control message buffers; the per-slot
 * tables of windows, grants and rails. */
int alloc_memory(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl)
{
    t->probe_off = (size_t)t->nslots * PB_VW_MSG_SIZE;
    t->desc_len = t->probe_off + (size_t)t->nlinks * PB_VW_PROBE_SIZE;
    size_t dlen = t->desc_len;
    t->ctrl_len = (size_t)t->nlinks * (sq + rq) * PB_VW_CTRL_SIZE;
    t->slot_mw = calloc(t->nslots, sizeof *t->slot_mw);
    t->sdesc_mw = calloc(t->nslots, sizeof *t->sdesc_mw);
    t->slot_owner = malloc(t->nslots * sizeof *t->slot_owner);
    t->slot_rail = calloc(t->nslots, 1);
    if (posix_memalign((void **)&t->desc_table, 4096, dlen) != 0)
        t->desc_table = NULL;
    if (t->ctrl_len && posix_memalign((void **)&t->ctrl, 4096, t->ctrl_len) != 0)
        t->ctrl = NULL;
    if (!t->slot_mw || !t->sdesc_mw || !t->slot_owner || !t->slot_rail || !t->desc_table ||
        (t->ctrl_len && !t->ctrl)) {
        snprintf(why, wl, "out of memory for the descriptor table and control buffers");
        return -1;
    }
    memset(t->desc_table, 0, dlen);
    if (t->ctrl)
        memset(t->ctrl, 0, t->ctrl_len);
    for (uint32_t s = 0; s < t->nslots; s++)
        t->slot_owner[s] = -1;
    assign_slots(t);
    return 0;
}

/* Windows are what keeps a peer to the slots granted to it, on one shared
 * registration: the device must bind them per queue pair (type 2), and
 * have two per slot (and one per link's probe area). Where it cannot
 * (siw, qedr, some iWARP devices), the pool and the table are registered
 * remote-writable and every partner gets their keys: the copy is still
 * checked chunk by chunk, only a misbehaving partner is no longer stopped
 * by the device. Refusing verbs there would cost such clusters the
 * fabric's rate for a fence against our own peers. */
int check_windows(struct vt *t, char *why, size_t wl)
{
    t->fenced = 1;
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        struct ibv_device_attr da;
        if (query_device(R, &da, why, wl) != 0)
            return -1;
        t->fenced &= (da.device_cap_flags & (IBV_DEVICE_MEM_WINDOW_TYPE_2A | IBV_DEVICE_MEM_WINDOW_TYPE_2B)) &&
                     (uint64_t)da.max_mw >= 2ull * t->nslots + (uint64_t)t->npeers;
    }
    return 0;
}

/* Bind plan's runs of pages, each to its node; a rail whose node refused
 * keeps the first reason in its place text (empty: all moved). */
static void apply_plan(struct vt *t, const struct pb_vplace_plan *plan, size_t page)
{
    for (size_t i = 0; i < plan->nruns; i++) {
        const struct pb_vplace_run *run = &plan->runs[i];
        char why[160];
        if (pb_topo_bind_area((uint8_t *)t->pool + run->first * page, run->npages * page, run->node, why,
                              sizeof why) == 0)
            continue;
        for (int r = 0; r < t->nrails; r++)
            if (t->rails[r].numa == run->node && !t->rails[r].place[0])
                snprintf(t->rails[r].place, sizeof t->rails[r].place, "%s", why);
    }
}

/* Where each rail's slots are, for -v: after ", 4 of 8 slots". */
static void describe_place(struct vt *t, const struct pb_vplace_plan *plan)
{
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        char why[sizeof R->place];
        snprintf(why, sizeof why, "%s", R->place);
        if (!plan->split)
            snprintf(R->place, sizeof R->place, ", device on NUMA node %d", R->numa);
        else if (R->numa < 0)
            snprintf(R->place, sizeof R->place, ", device's NUMA node unknown: its slots left where they are");
        else if (why[0])
            snprintf(R->place, sizeof R->place, ", device on NUMA node %d: slots not moved there (%.120s)", R->numa,
                     why);
        else
            snprintf(R->place, sizeof R->place, " on NUMA node %d near its device (%zu pages)", R->numa,
                     plan->rail_pages[r]);
    }
}

/* The pool is one block, placed by the stage near the first rail's device.
 * When the rails' devices sit on different NUMA nodes, each rail's slots
 * (what the device writes into and what is granted over it) move to its
 * device's node; a page holding two rails' slots goes to the one with most
 * of it (verbs_place.h). Where every rail shares one node (the common case)
 * this costs one hwloc look-up per rail and no system call. */
void place_slots(struct vt *t)
{
    int node[PB_VERBS_MAX_RAILS];
    for (int r = 0; r < t->nrails; r++) {
        node[r] = t->rails[r].numa = pb_topo_dev_numa(t->rails[r].devname);
        t->rails[r].place[0] = '\0';
    }
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    struct pb_vplace_plan plan;
    if (pb_vplace_plan(t->pool_len, page, t->slot_size, t->nslots, t->slot_rail, node, t->nrails, &plan) != 0) {
        for (int r = 0; r < t->nrails; r++)
            snprintf(t->rails[r].place, sizeof t->rails[r].place, ", slots not placed: out of memory for the plan");
        return;
    }
    t->pool_split = plan.split;
    apply_plan(t, &plan, page);
    describe_place(t, &plan);
    pb_vplace_free(&plan);
}

/* Per rail one PD for its queue pairs, and what they use, registered once
 * in it: the pool and the descriptor table (local access, windows bind to
 * them: their own rkeys open nothing; unfenced: remote write through their
 * own keys) and the control buffers of its links. A low memlock or device
 * limit fails the set-up here, on every leader, with the whole reason
 * (reg_error). */
static int register_rail(struct vt *t, int r, char *why, size_t wl)
{
    struct vrail *R = &t->rails[r];
    R->pd = ibv_alloc_pd(R->ctx);
    if (!R->pd) {
        snprintf(why, wl, "cannot allocate a protection domain on %s: %s", R->devname, strerror(errno));
        return -1;
    }
    size_t per_rail = t->ctrl_len / (size_t)t->nrails;
    if (per_rail && !(R->ctrl_mr = reg(t, R, t->ctrl + (size_t)r * per_rail, per_rail, IBV_ACCESS_LOCAL_WRITE,
                                       "the control buffers", why, wl)))
        return -1;
    int bindable = IBV_ACCESS_LOCAL_WRITE | (t->fenced ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_WRITE);
    R->pool_mr = reg(t, R, t->pool, t->pool_len, bindable, "the slot pool", why, wl);
    if (!R->pool_mr)
        return -1;
    R->desc_mr = reg(t, R, t->desc_table, t->desc_len, bindable, "the descriptor table", why, wl);
    return R->desc_mr ? 0 : -1;
}

int register_memory(struct vt *t, char *why, size_t wl)
{
    for (int r = 0; r < t->nrails; r++)
        if (register_rail(t, r, why, wl) != 0)
            return -1;
    return 0;
}

/* What the run will pin, and whether one put (a slot) fits in one message
 * of this port: both must hold before a byte moves. */
void rails_pin(const struct vt *t, uint64_t ctrl_bytes, struct pb_verbs_pin *pin)
{
    pb_verbs_pin_need(t->slot_size, t->nslots, t->nlinks, ctrl_bytes, pin);
    pin->slots *= (uint64_t)t->nrails; /* the same pool and table, registered in each rail's PD */
    pin->descs *= (uint64_t)t->nrails;
    pin->total = pin->slots + pin->descs + pin->ctrl;
}

int check_limits(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl)
{
    rails_pin(t, t->ctrl_len, &t->pin);
    for (int r = 0; r < t->nrails; r++) {
        struct vrail *R = &t->rails[r];
        R->tclass = pb_verbs_tclass(R->devname, R->port, cfg->rdma_tclass);
        if (R->pattr.max_msg_sz && t->slot_size > R->pattr.max_msg_sz) {
            snprintf(why, wl,
                     "a slot of %zu bytes (chunk and trailer) exceeds the largest message of %s port %u (max_msg_sz "
                     "%u bytes): use a smaller --chunk-size",
                     t->slot_size, R->devname, R->port, R->pattr.max_msg_sz);
            return -1;
        }
    }
    return pb_verbs_check_pin(&t->pin, t->rails[0].devname, why, wl);
}

static void free_window(struct ibv_mw **mw)
{
    if (*mw)
        ibv_dealloc_mw(*mw); /* invalidates it: the former grantee's key opens nothing */
    *mw = NULL;
}

void free_windows(struct vt *t)
{
    for (uint32_t s = 0; t->slot_mw && s < t->nslots; s++) {
        free_window(&t->slot_mw[s]);
        free_window(&t->sdesc_mw[s]);
    }
}

/* The slot and its descriptor entry writable by link li's QP only. The
 * first grant of a slot to a peer allocates its two windows and fills *bind
 * with the request that binds them on that QP (before the credit that
 * hands out their keys; bind->kind 0: bound already); a grant to another
 * peer later (another schedule) moves them. */
int grant_windows(struct vt *t, int li, uint32_t slot, struct pb_vw_req *bind, char *why, size_t wl)
{
    memset(bind, 0, sizeof *bind);
    if (!t->fenced || t->slot_owner[slot] == li)
        return 0;
    free_window(&t->slot_mw[slot]);
    free_window(&t->sdesc_mw[slot]);
    t->slot_owner[slot] = -1;
    struct vrail *R = rail_of(t, li);
    t->slot_mw[slot] = ibv_alloc_mw(R->pd, IBV_MW_TYPE_2);
    t->sdesc_mw[slot] = t->slot_mw[slot] ? ibv_alloc_mw(R->pd, IBV_MW_TYPE_2) : NULL;
    if (!t->sdesc_mw[slot]) {
        snprintf(why, wl, "cannot allocate a memory window for slot %u on %s: %s", slot, R->devname,
                 strerror(errno));
        return -1;
    }
    t->slot_owner[slot] = li;
    /* type 2: the consumer picks the key the bind gives the window */
    t->slot_mw[slot]->rkey = ibv_inc_rkey(t->slot_mw[slot]->rkey);
    t->sdesc_mw[slot]->rkey = ibv_inc_rkey(t->sdesc_mw[slot]->rkey);
    *bind = (struct pb_vw_req){PB_VW_REQ_BIND, slot, 0, 0, NULL, 0};
    return 0;
}

#endif /* HAVE_VERBS */
