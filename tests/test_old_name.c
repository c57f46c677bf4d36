/* test_old_name.c — the hidden name of an old DEST_DIR set aside while a
 * --force replaces it without RENAME_EXCHANGE (pb_dtree_old_name): never
 * the staging name it comes from, whatever its random characters (the old
 * rule, first random character replaced by 'o', gave the same name one
 * time in 62), never a name the next run removes as a stale staging
 * directory (.NAME.p2pbcast- and 6 characters), and refused when it or its
 * marker would not fit in a file name. */
#include "dirtree.h"
#include "tap.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

int main(void)
{
    const char *prefix = ".env.p2pbcast-";
    int equal = 0, stale_like = 0, failed = 0;
    for (int i = 0; i < 62; i++) {
        for (int j = 0; j < 62; j += 7) {
            char stage[64], old[NAME_MAX + 1];
            snprintf(stage, sizeof stage, "%s%c%c%c%c%c%c", prefix, abc[i], abc[j], abc[(i + j) % 62], 'o', 'x',
                     abc[61 - i]);
            if (pb_dtree_old_name(stage, old, sizeof old) < 0) {
                failed++;
                continue;
            }
            equal += !strcmp(old, stage);
            stale_like += !strncmp(old, prefix, strlen(prefix)) && strlen(old + strlen(prefix)) == 6;
        }
    }
    ok(!failed, "a name for every staging name");
    ok(!equal, "never the staging name, whatever its first random character ('o' included): %d equal", equal);
    ok(!stale_like, "never a name taken for a stale staging directory: %d", stale_like);

    char old[NAME_MAX + 1];
    ok(pb_dtree_old_name(".env.p2pbcast-oAbc12", old, sizeof old) == 0 && !strcmp(old, ".env.p2pbcast-old-oAbc12"),
       "the name: .NAME.p2pbcast-old-XXXXXX (%s)", old);

    char stage[NAME_MAX + 2];
    memset(stage, 'n', sizeof stage);
    int n = NAME_MAX - 5 - 4; /* the longest staging name whose old name and marker fit */
    memcpy(stage + n - 6, "Abc123", 6);
    stage[n] = 0;
    ok(pb_dtree_old_name(stage, old, sizeof old) == 0 && strlen(old) + 5 == NAME_MAX,
       "a staging name of %d bytes: the old name and its marker fit in NAME_MAX", n);
    stage[n] = 'x';
    memcpy(stage + n - 5, "Abc123", 6);
    stage[n + 1] = 0;
    errno = 0;
    ok(pb_dtree_old_name(stage, old, sizeof old) < 0 && errno == ENAMETOOLONG, "one byte more: ENAMETOOLONG");
    return tap_done();
}
