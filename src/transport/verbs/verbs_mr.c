/* verbs_mr.c — memory registration for the verbs transport: the control
 * buffers and the descriptor table at set-up, the pool per peer PD when a
 * slot is granted or the first put goes out, and why a registration failed
 * (memlock, device limits), probed before the transfer starts. */
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
static void reg_error(struct vt *t, const char *what, size_t len, int e, char *why, size_t wl)
{
    size_t dlen = (size_t)t->nslots * PB_VW_MSG_SIZE;
    size_t base = t->pin.total ? (size_t)t->pin.total : t->pool_len + dlen + t->ctrl_len;
    size_t need = t->reg_bytes + len > base ? t->reg_bytes + len : base;
    snprintf(why, wl, "cannot register %s (%s) with %s: %s; registered before: %s (pool %s, control buffers %s, "
             "descriptors %s)",
             what, pb_verbs_size_str(len).s, t->devname, strerror(e), pb_verbs_size_str(t->reg_bytes).s, pb_verbs_size_str(t->pool_len).s,
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
        snprintf(why + n, wl - n, "; this node pins %s in all (the slot pool %d times: once for the slots it "
                 "grants, once per partner it sends to)", pb_verbs_size_str(t->pin.total).s, 1 + t->pin.nsend);
}

/* Register len bytes at addr in pd; counts what is registered. */
struct ibv_mr *reg(struct vt *t, struct ibv_pd *pd, void *addr, size_t len, int acc, const char *what,
                   char *why, size_t wl)
{
    struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, acc);
    if (!mr)
        reg_error(t, what, len, errno, why, wl);
    else
        t->reg_bytes += len;
    return mr;
}

/* The descriptor table and the control message buffers; the per-slot
 * tables of grants. The pool itself is registered per peer: the slots
 * granted to it when granted, all of it (local only) at its first put. */
int alloc_memory(struct vt *t, uint32_t sq, uint32_t rq, char *why, size_t wl)
{
    size_t dlen = (size_t)t->nslots * PB_VW_MSG_SIZE;
    t->ctrl_len = (size_t)t->npeers * (sq + rq) * PB_VW_CTRL_SIZE;
    t->slot_mr = calloc(t->nslots, sizeof *t->slot_mr);
    t->sdesc_mr = calloc(t->nslots, sizeof *t->sdesc_mr);
    t->slot_owner = malloc(t->nslots * sizeof *t->slot_owner);
    if (posix_memalign((void **)&t->desc_table, 4096, dlen) != 0)
        t->desc_table = NULL;
    if (t->ctrl_len && posix_memalign((void **)&t->ctrl, 4096, t->ctrl_len) != 0)
        t->ctrl = NULL;
    if (!t->slot_mr || !t->sdesc_mr || !t->slot_owner || !t->desc_table || (t->ctrl_len && !t->ctrl)) {
        snprintf(why, wl, "out of memory for the descriptor table and control buffers");
        return -1;
    }
    memset(t->desc_table, 0, dlen);
    if (t->ctrl)
        memset(t->ctrl, 0, t->ctrl_len);
    for (uint32_t s = 0; s < t->nslots; s++)
        t->slot_owner[s] = -1;
    return 0;
}

/* The pool and the descriptor table are registered per peer later (at a
 * grant, at the first put to each partner we send to), where a failure
 * reaches the user only as a short event mid-transfer. Pin now what the
 * run will pin (t->pin: the pool once for the slots and once per partner
 * we send to, every registration counts), then let go: what cannot be
 * pinned (a low memlock limit, a device limit) fails the set-up here, on
 * every leader, with the whole reason (reg_error). */
int probe_pinning(struct vt *t, char *why, size_t wl)
{
    if (t->npeers == 0 || t->pool_len == 0)
        return 0;
    struct ibv_pd *pd = t->links[0].pd;
    int npool = 1 + t->nsend, n = 0, ok = 1;
    struct ibv_mr **mr = calloc((size_t)npool + 1, sizeof *mr);
    if (!mr) {
        snprintf(why, wl, "out of memory");
        return -1;
    }
    for (; ok && n < npool; n++)
        ok = (mr[n] = reg(t, pd, t->pool, t->pool_len, IBV_ACCESS_LOCAL_WRITE, "the slot pool", why, wl)) != NULL;
    if (ok)
        ok = (mr[n++] = reg(t, pd, t->desc_table, (size_t)t->nslots * PB_VW_MSG_SIZE, IBV_ACCESS_LOCAL_WRITE,
                            "the descriptor table", why, wl)) != NULL;
    for (int i = 0; i < n; i++)
        if (mr[i]) {
            t->reg_bytes -= mr[i]->length;
            ibv_dereg_mr(mr[i]);
        }
    free(mr);
    return ok ? 0 : -1;
}

/* What the run will pin, and whether one put (a slot) fits in one message
 * of this port: both must hold before a byte moves. */
int check_limits(struct vt *t, const struct pb_transport_cfg *cfg, char *why, size_t wl)
{
    t->nsend = cfg->nsend < t->npeers ? cfg->nsend : t->npeers;
    pb_verbs_pin_need(t->slot_size, t->nslots, t->ctrl_len, t->nsend, &t->pin);
    t->tclass = pb_verbs_tclass(t->devname, t->port, cfg->rdma_tclass);
    if (t->pattr.max_msg_sz && t->slot_size > t->pattr.max_msg_sz) {
        snprintf(why, wl,
                 "a slot of %zu bytes (chunk and trailer) exceeds the largest message of %s port %u (max_msg_sz "
                 "%u bytes): use a smaller --chunk-size",
                 t->slot_size, t->devname, t->port, t->pattr.max_msg_sz);
        return -1;
    }
    return pb_verbs_check_pin(&t->pin, t->devname, why, wl);
}

/* The whole pool, local access only, in this peer's PD: the lkey of the
 * sources of our puts to it. Registered at the first put, so a node that
 * never sends to a peer (most links of the root's receivers) pins nothing
 * more for it. */
int ensure_send_mr(struct vt *t, int li, char *why, size_t wl)
{
    struct vlink *L = &t->links[li];
    if (!L->send_mr)
        L->send_mr = reg(t, L->pd, t->pool, t->pool_len, IBV_ACCESS_LOCAL_WRITE, "the slot pool for sending", why,
                         wl);
    return L->send_mr ? 0 : -1;
}

/* The slot and its descriptor entry writable by link li's QP only: the
 * first grant of a slot registers both in that peer's PD; a grant to
 * another peer later (another schedule) moves them. */
int grant_slot_mr(struct vt *t, int li, uint32_t slot, char *why, size_t wl)
{
    if (t->slot_owner[slot] == li)
        return 0;
    if (t->slot_mr[slot]) {
        ibv_dereg_mr(t->slot_mr[slot]);
        t->reg_bytes -= t->slot_size;
    }
    if (t->sdesc_mr[slot]) {
        ibv_dereg_mr(t->sdesc_mr[slot]);
        t->reg_bytes -= PB_VW_MSG_SIZE;
    }
    t->slot_mr[slot] = t->sdesc_mr[slot] = NULL;
    t->slot_owner[slot] = -1;
    int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    struct ibv_pd *pd = t->links[li].pd;
    t->slot_mr[slot] = reg(t, pd, (uint8_t *)t->pool + (size_t)slot * t->slot_size, t->slot_size, acc,
                           "a slot of the pool", why, wl);
    t->sdesc_mr[slot] = t->slot_mr[slot] ? reg(t, pd, t->desc_table + (size_t)slot * PB_VW_MSG_SIZE,
                                               PB_VW_MSG_SIZE, acc, "a descriptor entry", why, wl)
                                         : NULL;
    if (!t->sdesc_mr[slot])
        return -1;
    t->slot_owner[slot] = li;
    return 0;
}

#endif /* HAVE_VERBS */
