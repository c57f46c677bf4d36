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

/* ".p2pbcast-probe-<secret 8 bytes hex>-<path hash hex>-" */
static void prefix(const char *dest, const uint8_t secret[16], char *out, size_t n)
{
    uint64_t s = 0;
    memcpy(&s, secret, sizeof s);
    snprintf(out, n, ".p2pbcast-probe-%016llx-%016llx-", (unsigned long long)s,
             (unsigned long long)XXH3_64bits(dest, strlen(dest)));
}

static void dir_of(const char *dest, char *out, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dest);
    snprintf(out, n, "%s", dirname(tmp));
}

int pb_probe_create(const char *dest, const uint8_t secret[16], int leader, char *probe, size_t n)
{
    char dir[PATH_MAX], pre[80];
    dir_of(dest, dir, sizeof dir);
    prefix(dest, secret, pre, sizeof pre);
    probe[0] = 0;
    int w = snprintf(probe, n, "%s/%s%d", dir, pre, leader);
    if (w < 0 || (size_t)w >= n) {
        probe[0] = 0;
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(probe, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        probe[0] = 0;
        return -1;
    }
    close(fd);
    return 0;
}

int pb_probe_writer(const char *dest, const uint8_t secret[16], int leader, int *sharers)
{
    char dir[PATH_MAX], pre[80];
    dir_of(dest, dir, sizeof dir);
    prefix(dest, secret, pre, sizeof pre);
    size_t pl = strlen(pre);
    int best = leader, count = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, pre, pl))
            continue;
        char *end;
        long idx = strtol(e->d_name + pl, &end, 10);
        if (*end || end == e->d_name + pl || idx < 0 || idx > INT_MAX)
            continue;
        count++;
        if (idx < best)
            best = (int)idx;
    }
    if (d)
        closedir(d);
    if (sharers)
        *sharers = count ? count : 1;
    return best;
}

void pb_probe_remove(char *probe)
{
    if (probe[0])
        (void)unlink(probe);
    probe[0] = 0;
}
