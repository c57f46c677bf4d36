/* test_sink.c — DEST handling on one node: nothing under DEST's name until
 * commit, nothing at all after abort, refusals with the path and reason. */
#include "shared_dest.h"
#include "sink.h"
#include "tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/p2pbcast-sink-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char dest[256], err[512];
    snprintf(dest, sizeof dest, "%s/out.bin", dir);
    struct pb_sink k;
    struct pb_sink_want w = { .size = 10000, .mode = 0640, .mtime = { 1700000000, 123 } };

    ok(pb_sink_open(&k, dest, &w, err, sizeof err) == 0, "open: %s", err);
    ok(access(dest, F_OK) != 0, "nothing under DEST while writing");
    char buf[10000];
    memset(buf, 'a', sizeof buf);
    ok(pb_sink_write(&k, 5000, buf, 5000, err, sizeof err) == 0 && pb_sink_write(&k, 0, buf, 5000, err, sizeof err) == 0,
       "out-of-order writes");
    ok(pb_sink_flush(&k, &w, err, sizeof err) == 0, "flush");
    ok(pb_sink_commit(&k, err, sizeof err) == 0, "commit: %s", err);
    struct stat st;
    ok(stat(dest, &st) == 0 && st.st_size == 10000 && (st.st_mode & 07777) == 0640 &&
           st.st_mtim.tv_sec == 1700000000 && st.st_mtim.tv_nsec == 123,
       "DEST has size, mode and mtime of SOURCE");
    pb_sink_abort(&k);
    ok(entries(dir) == 1, "no temporary file left after commit (%d entries)", entries(dir));

    /* Same size and mtime: treated as the same file, replaced atomically. */
    ok(pb_sink_open(&k, dest, &w, err, sizeof err) == 0, "existing identical DEST accepted");
    pb_sink_abort(&k);
    ok(entries(dir) == 1 && stat(dest, &st) == 0, "abort leaves DEST as it was and no temporary file");

    struct pb_sink_want w2 = w;
    w2.size = 9999;
    ok(pb_sink_open(&k, dest, &w2, err, sizeof err) < 0 && strstr(err, "--force") && strstr(err, dest),
       "differing DEST refused: %s", err);
    w2.force = 1;
    ok(pb_sink_open(&k, dest, &w2, err, sizeof err) == 0, "--force accepts it");
    pb_sink_abort(&k);
    ok(stat(dest, &st) == 0 && st.st_size == 10000, "an aborted forced run keeps the old DEST intact");

    /* DEST equal to SOURCE on the root node. */
    struct stat self;
    stat(dest, &self);
    w2.source = &self;
    ok(pb_sink_open(&k, dest, &w2, err, sizeof err) < 0 && strstr(err, "SOURCE itself"), "DEST == SOURCE: %s", err);
    w2.source = NULL;

    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/x", dir);
    ok(pb_sink_open(&k, bad, &w, err, sizeof err) < 0 && strstr(err, "No such file"), "missing directory: %s", err);
    ok(pb_sink_open(&k, dir, &w, err, sizeof err) < 0 && strstr(err, "is a directory"), "DEST is a directory: %s",
       err);
    snprintf(bad, sizeof bad, "%s/", dir);
    ok(pb_sink_open(&k, bad, &w, err, sizeof err) < 0 && strstr(err, "directory"), "DEST ends in '/': %s", err);
    snprintf(bad, sizeof bad, "%s/ro", dir);
    mkdir(bad, 0500);
    char robad[320];
    snprintf(robad, sizeof robad, "%s/x", bad);
    if (geteuid() == 0) {
        ok(1, "# SKIP unwritable directory: root ignores permissions (covered by the integration tests)");
    } else {
        ok(pb_sink_open(&k, robad, &w, err, sizeof err) < 0 && strstr(err, "Permission"), "unwritable dir: %s", err);
    }
    rmdir(bad);

    struct pb_sink_want huge = w;
    huge.size = (uint64_t)1 << 60;
    huge.force = 1;
    ok(pb_sink_open(&k, dest, &huge, err, sizeof err) < 0 && strstr(err, "reserve"),
       "space reserved up front; too large fails early: %s", err);
    ok(entries(dir) == 1, "failed reservation leaves nothing behind");

    /* Shared DEST: probes of leaders 5 and 3 for one path, 2 for another. */
    uint8_t nonce[8] = { 1, 2, 3 };
    char p5[4096], p3[4096], p2[4096], p1[4096], other[300];
    snprintf(other, sizeof other, "%s/other", dir);
    ok(pb_probe_create(dest, nonce, 5, 55, p5, sizeof p5) == 0 && pb_probe_create(dest, nonce, 3, 33, p3, sizeof p3) == 0 &&
           pb_probe_create(other, nonce, 2, 22, p2, sizeof p2) == 0,
       "probe files created");
    struct pb_probe_view v[6];
    for (int i = 0; i < 6; i++)
        v[i] = (struct pb_probe_view){ i, 1, (uint64_t)i };
    pb_probe_scan(dest, nonce, 5, 6, &v[5]);
    pb_probe_scan(dest, nonce, 3, 6, &v[3]);
    pb_probe_scan(other, nonce, 2, 6, &v[2]);
    ok(v[5].writer == 3 && v[5].sharers == 2, "leader 5 sees leader 3 share its DEST");
    ok(v[3].writer == 3 && v[3].set_hash == v[5].set_hash, "leader 3 writes, and sees the same group");
    ok(v[2].writer == 2 && v[2].sharers == 1, "another path is not shared");
    int who = -1;
    ok(pb_probe_views_agree(v, 6, &who), "mutual views agree");
    uint8_t nonce2[8] = { 9 };
    struct pb_probe_view o;
    pb_probe_scan(dest, nonce2, 4, 6, &o);
    ok(o.writer == 4 && o.sharers == 1, "another job's probes do not count");

    /* A local user plants a probe of leader 1 (who writes elsewhere) next to
     * leader 5's DEST: leader 5 would skip writing. The token it cannot
     * know makes leader 1's own view differ: the root refuses the sharing. */
    char fake[4096];
    snprintf(fake, sizeof fake, "%s", p5);
    fake[strlen(fake) - 1] = '1';
    int ffd = open(fake, O_CREAT | O_WRONLY, 0600);
    uint64_t guess = 11;
    ok(ffd >= 0 && write(ffd, &guess, sizeof guess) == (ssize_t)sizeof guess, "a probe planted as leader 1");
    close(ffd);
    ok(pb_probe_create(other, nonce, 1, 1111, p1, sizeof p1) == 0, "leader 1's real probe, elsewhere");
    pb_probe_scan(dest, nonce, 5, 6, &v[5]);
    pb_probe_scan(dest, nonce, 3, 6, &v[3]);
    pb_probe_scan(other, nonce, 1, 6, &v[1]);
    pb_probe_scan(other, nonce, 2, 6, &v[2]);
    ok(v[5].writer == 1, "leader 5 alone would take the planted probe for a sharer");
    who = -1;
    ok(!pb_probe_views_agree(v, 6, &who) && who >= 0, "the root finds the views not mutual (leader %d)", who);
    unlink(fake);
    pb_probe_remove(p5);
    pb_probe_remove(p3);
    pb_probe_remove(p2);
    pb_probe_remove(p1);
    ok(entries(dir) == 1 && p5[0] == 0, "probes removed");

    /* Planted symlinks next to DEST are never followed (a group-writable
     * directory: another user plants links under the names we use). */
    char victim[300], link1[300], link2[300];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(link1, sizeof link1, "%s/.out.bin.p2pbcast-resume", dir);
    snprintf(link2, sizeof link2, "%s/.out.bin.p2pbcast-resume.map", dir);
    FILE *vf = fopen(victim, "w");
    fputs("precious", vf);
    fclose(vf);
    struct pb_sink_want wr = w;
    wr.resume = 1;
    wr.chunk_size = 4096;
    wr.force = 1;
    ok(symlink(victim, link1) == 0 && pb_sink_open(&k, dest, &wr, err, sizeof err) < 0,
       "--resume: a planted link at the resume name is refused: %s", err);
    ok(stat(victim, &st) == 0 && st.st_size == 8, "... and its target is untouched");
    unlink(link1);
    ok(symlink(victim, link2) == 0 && pb_sink_open(&k, dest, &wr, err, sizeof err) == 0, "--resume open: %s", err);
    unsigned char held[2] = { 1, 0 };
    pb_sink_keep(&k, held, &wr);
    pb_sink_abort(&k);
    ok(stat(victim, &st) == 0 && st.st_size == 8 && lstat(link2, &st) == 0 && S_ISREG(st.st_mode),
       "--resume: the map replaces a planted link instead of writing through it");

    /* Two runs of one DEST never share the resume copy. */
    struct pb_sink k2;
    ok(pb_sink_open(&k, dest, &wr, err, sizeof err) == 0, "first run holds the resume copy");
    ok(pb_sink_open(&k2, dest, &wr, err, sizeof err) < 0 && strstr(err, "another p2pbcast run"),
       "a second run of the same DEST is refused: %s", err);
    ok(access(link1, F_OK) == 0, "the refused run did not remove the first run's copy");
    pb_sink_abort(&k);
    unlink(link1);
    unlink(link2);
    unlink(victim);

    /* A stale hidden copy of a killed run is removed; a live one is not. */
    char stale[300], live[300];
    snprintf(stale, sizeof stale, "%s/.out.bin.p2pbcast-Stale1", dir);
    snprintf(live, sizeof live, "%s/.out.bin.p2pbcast-Live22", dir);
    int sfd = open(stale, O_CREAT | O_WRONLY, 0600), lfd = open(live, O_CREAT | O_WRONLY, 0600);
    close(sfd);
    flock(lfd, LOCK_EX);
    ok(pb_sink_open(&k, dest, &w2, err, sizeof err) == 0, "open with leftovers around: %s", err);
    pb_sink_abort(&k);
    ok(access(stale, F_OK) != 0 && access(live, F_OK) == 0, "stale copy removed, a live run's copy kept");
    close(lfd);
    unlink(live);

    /* setuid/setgid bits are not copied. */
    struct pb_sink_want ws = w;
    ws.mode = 06755;
    ws.force = 1;
    ok(pb_sink_open(&k, dest, &ws, err, sizeof err) == 0 && pb_sink_flush(&k, &ws, err, sizeof err) == 0 &&
           pb_sink_commit(&k, err, sizeof err) == 0,
       "commit with mode 06755: %s", err);
    pb_sink_abort(&k);
    ok(stat(dest, &st) == 0 && (st.st_mode & 07777) == 0755, "setuid and setgid dropped (mode %o)",
       st.st_mode & 07777);
    ok(entries(dir) == 1, "nothing else left (%d entries)", entries(dir));

    unlink(dest);
    rmdir(dir);
    return tap_done();
}
