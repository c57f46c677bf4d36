/* test_space.c — space reserved before the transfer (src/files/space.c):
 * allocated where the filesystem can, and where it cannot (ramfs here, as
 * NFSv3) the file only extended, never written block by block before the
 * transfer (posix_fallocate's emulation). The ramfs part needs root (a
 * private mount namespace) and is skipped without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sink.h"
#include "space.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static int tmp_file(const char *dir)
{
    char p[256];
    snprintf(p, sizeof p, "%s/f", dir);
    unlink(p);
    return open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
}

int main(void)
{
    char dir[] = "/tmp/p2pbcast-space-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct stat st;
    int fd = tmp_file(dir);
    ok(fd >= 0 && pb_space_reserve(fd, 0, 4 * MIB) == 0 && fstat(fd, &st) == 0 && st.st_size == 4 * MIB,
       "4 MiB reserved in %s: the file has the size", dir);
    int can = fallocate(fd, 0, 0, 4096) == 0;
    if (can)
        ok((uint64_t)st.st_blocks * 512 >= 4 * MIB, "and the blocks are allocated (%lld)", (long long)st.st_blocks);
    else
        tap_add("ok %d - # SKIP %s cannot fallocate\n", ++tap_n, dir);
    ok(pb_space_reserve(fd, 8 * MIB, MIB) == 0 && fstat(fd, &st) == 0 && st.st_size == 9 * MIB,
       "a range past the end extends the file");
    close(fd);

    char ram[300];
    snprintf(ram, sizeof ram, "%s/ramfs", dir);
    mkdir(ram, 0700);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("ramfs", ram, "ramfs", 0, NULL) < 0) {
        tap_add("ok %d - # SKIP no ramfs here (needs root): %s\n", ++tap_n, strerror(errno));
    } else {
        fd = tmp_file(ram);
        errno = 0;
        ok(fd >= 0 && fallocate(fd, 0, 0, 4096) < 0 && errno == EOPNOTSUPP, "ramfs has no fallocate: %s",
           strerror(errno));
        int rc = pb_space_reserve(fd, 0, 64 * MIB);
        ok(rc == 0 && fstat(fd, &st) == 0 && st.st_size == 64 * MIB && st.st_blocks == 0,
           "without fallocate 64 MiB are reserved by the size alone, not one block written (rc %d, %lld blocks)", rc,
           (long long)st.st_blocks);
        close(fd);

        /* the sink of a file DEST does the same */
        char dest[320], err[512];
        snprintf(dest, sizeof dest, "%s/dest", ram);
        struct pb_sink k;
        struct pb_sink_want w = { .size = 64 * MIB, .mode = 0644 };
        ok(pb_sink_open(&k, dest, &w, err, sizeof err) == 0 && fstat(k.fd, &st) == 0 && st.st_size == 64 * MIB &&
               st.st_blocks == 0,
           "a DEST of 64 MiB on ramfs: its temporary file has the size and no block written before the data "
           "(%lld blocks)",
           (long long)st.st_blocks);
        pb_sink_abort(&k);
        umount(ram);
    }
    rmdir(ram);
    char p[256];
    snprintf(p, sizeof p, "%s/f", dir);
    unlink(p);
    rmdir(dir);
    return tap_done();
}
