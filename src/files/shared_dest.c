/* shared_dest.c — DEST on a shared filesystem; see shared_dest.h. */
#include "shared_dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* ".p2pbcast-probe-<nonce hex>-<path hash hex>-" */
static void prefix(const char *dest, const uint8_t nonce[8], char *out, size_t n)
{
    uint64_t s = 0;
    memcpy(&s, nonce, sizeof s);
    snprintf(out, n, ".p2pbcast-probe-%016llx-%016llx-", (unsigned long long)s,
             (unsigned long long)XXH3_64bits(dest, strlen(dest)));
}

static void dir_of(const char *dest, char *out, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dest);
    snprintf(out, n, "%s", dirname(tmp));
}

int pb_probe_create(const char *dest, const uint8_t nonce[8], int leader, uint64_t token, char *probe, size_t n)
{
    char dir[PATH_MAX], pre[80];
    dir_of(dest, dir, sizeof dir);
    prefix(dest, nonce, pre, sizeof pre);
    probe[0] = 0;
    int w = snprintf(probe, n, "%s/%s%d", dir, pre, leader);
    if (w < 0 || (size_t)w >= n) {
        probe[0] = 0;
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(probe, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        probe[0] = 0;
        return -1;
    }
    /* The token only this job knows, in a file only this user can read:
     * a planted probe cannot carry it. */
    int rc = write(fd, &token, sizeof token) == (ssize_t)sizeof token ? 0 : -1;
    if (close(fd) < 0 || rc < 0) {
        (void)unlink(probe);
        probe[0] = 0;
        return -1;
    }
    return 0;
}

struct seen_probe {
    int64_t leader;
    uint64_t token;
};

static int by_leader(const void *a, const void *b)
{
    int64_t x = ((const struct seen_probe *)a)->leader, y = ((const struct seen_probe *)b)->leader;
    return (x > y) - (x < y);
}

void pb_probe_scan(const char *dest, const uint8_t nonce[8], int leader, int nleaders, struct pb_probe_view *v)
{
    char dir[PATH_MAX], pre[80];
    dir_of(dest, dir, sizeof dir);
    prefix(dest, nonce, pre, sizeof pre);
    size_t pl = strlen(pre);
    struct seen_probe *seen = NULL;
    int n = 0, cap = 0, self = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, pre, pl))
            continue;
        char *end;
        long idx = strtol(e->d_name + pl, &end, 10);
        if (*end || end == e->d_name + pl || idx < 0 || idx >= nleaders)
            continue;
        uint64_t token;
        int fd = d ? openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
        ssize_t got = fd >= 0 ? read(fd, &token, sizeof token) : -1;
        if (fd >= 0)
            close(fd);
        if (got != (ssize_t)sizeof token)
            continue; /* unreadable: not one of this job's */
        if (n == cap) {
            struct seen_probe *m = realloc(seen, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *seen);
            if (!m)
                break;
            seen = m;
        }
        seen[n++] = (struct seen_probe){ (int64_t)idx, token };
        self |= idx == leader;
    }
    if (d)
        closedir(d);
    if (!self || !seen) {
        /* Our own probe is not visible (or no memory): share with nobody. */
        v->writer = leader;
        v->sharers = 1;
        v->set_hash = XXH3_64bits(&leader, sizeof leader);
        free(seen);
        return;
    }
    qsort(seen, (size_t)n, sizeof *seen, by_leader);
    v->writer = (int32_t)seen[0].leader;
    v->sharers = n;
    v->set_hash = XXH3_64bits(seen, (size_t)n * sizeof *seen);
    free(seen);
}

int pb_probe_views_agree(const struct pb_probe_view *views, int nleaders, int *bad)
{
    /* Members per (writer, set): each must be as many as the set holds. */
    int32_t *members = calloc((size_t)nleaders, sizeof *members);
    int ok = members != NULL;
    for (int i = 0; ok && i < nleaders; i++) {
        int w = views[i].writer;
        ok = w >= 0 && w < nleaders && views[w].writer == w && views[w].set_hash == views[i].set_hash &&
             views[w].sharers == views[i].sharers;
        if (ok)
            members[w]++;
        else if (bad)
            *bad = i;
    }
    for (int i = 0; ok && i < nleaders; i++) {
        if (views[i].writer == i && members[i] != views[i].sharers) {
            ok = 0;
            if (bad)
                *bad = i;
        }
    }
    free(members);
    return ok;
}

void pb_probe_remove(char *probe)
{
    if (probe[0])
        (void)unlink(probe);
    probe[0] = 0;
}
