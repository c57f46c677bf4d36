/* test_rmtree.c — removing a tree (pb_rmtree_at, src/files/dirtree_fs.c)
 * never acts through a link: not when the tree holds links, and not when
 * another process renames entries of a world-writable directory inside the
 * tree while it is being removed, swapping a directory for a link to a file
 * outside (which must keep its mode 0600 and its contents). */
#include "dirtree.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUNDS 4000 /* trees built and removed under the swapper */

static char base[64];
static atomic_int stop;

static void path(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", base, rel);
}

/* Swap t/w/d for a link to the victim (made once, renamed in and out) and
 * back, as fast as it goes. */
static void *swapper(void *arg)
{
    (void)arg;
    char victim[128], d[128], aside[128], link[128];
    path(victim, sizeof victim, "victim");
    path(d, sizeof d, "t/w/d");
    path(aside, sizeof aside, "t/w/aside");
    path(link, sizeof link, "t/w/link");
    while (!atomic_load(&stop)) {
        if (rename(d, aside) < 0)
            continue;
        if (rename(link, d) < 0 && symlink(victim, d) < 0) {
            (void)rename(aside, d);
            continue;
        }
        (void)rename(d, link);
        (void)rename(aside, d);
    }
    return NULL;
}

/* t, t/w (mode 0777), in it a read-only directory d holding a file (made
 * under another name and renamed in: the swapper may be at work). */
static int build(void)
{
    char p[160], q[160];
    path(p, sizeof p, "t");
    if (mkdir(p, 0700) < 0)
        return -1;
    path(p, sizeof p, "t/w");
    if (mkdir(p, 0777) < 0 || chmod(p, 0777) < 0)
        return -1;
    path(p, sizeof p, "t/w/new");
    if (mkdir(p, 0700) < 0)
        return -1;
    path(q, sizeof q, "t/w/new/f");
    int fd = open(q, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || close(fd) < 0)
        return -1;
    path(q, sizeof q, "t/w/d");
    return chmod(p, 0500) < 0 ? -1 : rename(p, q); /* 0500: made writable by the removal, ours */
}

static mode_t mode_of(const char *rel)
{
    char p[128];
    struct stat st;
    path(p, sizeof p, rel);
    return lstat(p, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/p2pbcast-rmtree-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    int bfd = open(base, O_RDONLY | O_DIRECTORY);
    char p[160], q[160];
    path(p, sizeof p, "victim");
    int vfd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ok(vfd >= 0 && write(vfd, "keep", 4) == 4 && close(vfd) == 0, "a file outside the tree, mode 0600");
    path(p, sizeof p, "outdir");
    ok(mkdir(p, 0700) == 0, "a directory outside the tree");
    path(q, sizeof q, "outdir/keep");
    close(open(q, O_WRONLY | O_CREAT, 0600));

    /* A plain tree with read-only directories and links out of it. */
    ok(build() == 0, "a tree with read-only directories");
    path(p, sizeof p, "victim");
    path(q, sizeof q, "t/w/d/link-to-file");
    chmod(base, 0700);
    char d0[160];
    path(d0, sizeof d0, "t/w/d");
    chmod(d0, 0700);
    ok(symlink(p, q) == 0, "a link to the file outside");
    path(p, sizeof p, "outdir");
    path(q, sizeof q, "t/w/link-to-dir");
    ok(symlink(p, q) == 0, "a link to the directory outside");
    chmod(d0, 0500);
    ok(pb_rmtree_at(bfd, "t", NULL) == 0, "the tree is removed: %s", strerror(errno));
    path(p, sizeof p, "t");
    path(q, sizeof q, "outdir/keep");
    ok(access(p, F_OK) != 0 && access(q, F_OK) == 0 && mode_of("victim") == 0600 && mode_of("outdir") == 0700,
       "nothing outside it changed (links removed, not followed)");
    ok(pb_rmtree_at(bfd, "t", NULL) == 0, "removing what is not there is not an error");

    /* The race: the directory swapped for a link while the tree goes. */
    pthread_t th;
    int changed = 0, built = 0, failed_build = pthread_create(&th, NULL, swapper, NULL) != 0;
    path(p, sizeof p, "t");
    for (int r = 0; r < ROUNDS && !changed && !failed_build; r++) {
        /* A tree the swapper kept busy through every pass below lingers
         * into the next round (seen on a loaded machine): removed then. */
        /* A build can lose to the swapper too (a link it made in the old
         * tree's place lands in the new one): that round is only counted out. */
        if (access(p, F_OK) != 0)
            built += build() == 0;
        /* may take more than one pass: entries come and go */
        for (int i = 0; i < 1000 && access(p, F_OK) == 0; i++)
            (void)pb_rmtree_at(bfd, "t", NULL);
        changed = mode_of("victim") != 0600;
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    int left = pb_rmtree_at(bfd, "t", NULL) < 0 || access(p, F_OK) == 0;
    ok(!failed_build && built >= ROUNDS / 10 && !left,
       "the trees were built (%d in %d rounds) and, once the swapper stopped, none is left", built, ROUNDS);
    ok(!changed, "%d rounds of swapping directories for links during removal: the file outside keeps mode 0600 "
                 "(now %o)", ROUNDS, (unsigned)mode_of("victim"));
    path(p, sizeof p, "victim");
    char buf[8] = "";
    int fd = open(p, O_RDONLY);
    ok(fd >= 0 && read(fd, buf, sizeof buf) == 4 && !memcmp(buf, "keep", 4), "and its contents");
    if (fd >= 0)
        close(fd);

    chmod(p, 0600);
    pb_rmtree_at(AT_FDCWD, base, NULL);
    close(bfd);
    return tap_done();
}
