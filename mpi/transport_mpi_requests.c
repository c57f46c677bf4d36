/* transport_mpi_requests.c — the MPI transport's request table (requests
 * in MPI_Testsome's array, their struct op in blocks that never move) and
 * its queue of completed events, with the error events of failed MPI calls. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport_mpi_internal.h"


struct op *op_at(struct mpi_transport *t, int i)
{
    return &t->blocks[i / OPS_PER_BLOCK][i % OPS_PER_BLOCK];
}

const char *peer_name(const struct mpi_transport *t, int peer)
{
    if (t->names && peer >= 0 && peer < t->nleaders && t->names[peer])
        return t->names[peer];
    return "?";
}

void mpi_errstr(int code, char *buf, size_t len)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, s, &n) != MPI_SUCCESS || n <= 0)
        snprintf(s, sizeof s, "MPI error %d", code);
    snprintf(buf, len, "%s", s);
}

void ctrl_recv_errstr(int rc, char *buf, size_t len)
{
    if (rc > 0)
        mpi_errstr(rc, buf, len);
    else
        snprintf(buf, len, "%s", strerror(errno));
}

/* Grow the table by one block. */
static int table_grow(struct mpi_transport *t)
{
    int ncap = t->cap + OPS_PER_BLOCK;
    struct op **nb = realloc(t->blocks, (size_t)(t->nblocks + 1) * sizeof *nb);
    if (!nb)
        return -1;
    t->blocks = nb;
    struct op *blk = calloc(OPS_PER_BLOCK, sizeof *blk);
    if (!blk)
        return -1;
    MPI_Request *nr = realloc(t->reqs, (size_t)ncap * sizeof *nr);
    if (!nr) {
        free(blk);
        return -1;
    }
    t->reqs = nr;
    int *nf = realloc(t->freelist, (size_t)ncap * sizeof *nf);
    if (!nf) {
        free(blk);
        return -1;
    }
    t->freelist = nf;
    for (int i = t->cap; i < ncap; i++)
        t->reqs[i] = MPI_REQUEST_NULL;
    t->blocks[t->nblocks++] = blk;
    t->cap = ncap;
    return 0;
}

/* Reserve a table entry; the caller fills the op and posts into reqs[i]. */
int op_alloc(struct mpi_transport *t, enum op_kind kind, int peer, uint32_t slot)
{
    int i;
    if (t->nfree > 0) {
        i = t->freelist[--t->nfree];
    } else {
        if (t->hi == t->cap && table_grow(t) != 0) {
            errno = ENOMEM;
            return -1;
        }
        i = t->hi++;
    }
    struct op *o = op_at(t, i);
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->peer = peer;
    o->slot = slot;
    t->reqs[i] = MPI_REQUEST_NULL;
    return i;
}

void op_release(struct mpi_transport *t, int i)
{
    op_at(t, i)->kind = OP_FREE;
    t->reqs[i] = MPI_REQUEST_NULL;
    t->freelist[t->nfree++] = i;
}

/* Make room for n more queued events. */
int q_reserve(struct mpi_transport *t, int n)
{
    if (t->qhead > 0 && t->qhead + t->qlen + n > t->qcap) {
        memmove(t->q, t->q + t->qhead, (size_t)t->qlen * sizeof *t->q);
        t->qhead = 0;
    }
    if (t->qlen + n <= t->qcap)
        return 0;
    int ncap = t->qcap ? t->qcap : 64;
    while (ncap < t->qlen + n)
        ncap *= 2;
    struct pb_event *nq = realloc(t->q, (size_t)ncap * sizeof *nq);
    if (!nq)
        return -1;
    t->q = nq;
    t->qcap = ncap;
    return 0;
}

/* Space was reserved by q_reserve() before anything could complete. */
struct pb_event *q_push(struct mpi_transport *t, enum pb_ev_kind kind, int peer)
{
    struct pb_event *e = &t->q[t->qhead + t->qlen++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->peer = peer;
    return e;
}

void q_error(struct mpi_transport *t, int peer, int err, const char *fmt, ...)
{
    struct pb_event *e = q_push(t, PB_EV_ERROR, peer);
    e->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
    if (t->verbose)
        fprintf(stderr, "p2pbcast: mpi transport: %s: %s\n", peer_name(t, peer), e->what);
}

/* An MPI call failed inside put/grant/notify: report it as an event too, so
 * the engine sees the MPI reason, and fail the call with EIO. */
int call_failed(struct mpi_transport *t, int peer, int rc, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    mpi_errstr(rc, s, sizeof s);
    if (q_reserve(t, 1) == 0)
        q_error(t, peer, 0, "%s: %s", what, s);
    errno = EIO;
    return -1;
}
