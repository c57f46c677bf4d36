/* dest_path.c — DEST as the user wrote it, made concrete for one node. */
#include "dest_path.h"

#include <stdio.h>
#include <string.h>

/* With out == NULL only validates (returns 0 or -1 with perr set). */
int pb_expand_dest(const char *tmpl, const char *host, int rank, char *out, size_t outlen,
                   char *err, size_t errlen)
{
    size_t n = 0;
    char num[24];
    if (err && errlen)
        err[0] = 0;
    for (const char *p = tmpl; *p; p++) {
        const char *add;
        char one[2] = { *p, 0 };
        if (*p != '%') {
            add = one;
        } else {
            p++;
            if (*p == 'h') {
                add = host;
            } else if (*p == 'r') {
                snprintf(num, sizeof num, "%d", rank);
                add = num;
            } else if (*p == '%') {
                add = "%";
            } else {
                snprintf(err, errlen, *p ? "unknown placeholder '%%%c' (use %%h, %%r or %%%%)"
                                         : "'%%' at the end (use %%%% for a literal %%)", *p);
                return -1;
            }
        }
        size_t l = strlen(add);
        if (out) {
            if (n + l + 1 > outlen) {
                snprintf(err, errlen, "expanded path longer than %zu bytes", outlen - 1);
                return -1;
            }
            memcpy(out + n, add, l);
        }
        n += l;
    }
    if (out)
        out[n] = 0;
    return 0;
}

int pb_dest_has_placeholder(const char *tmpl)
{
    for (const char *p = tmpl; *p; p++) {
        if (*p == '%') {
            if (p[1] == 'h' || p[1] == 'r')
                return 1;
            if (p[1])
                p++;
        }
    }
    return 0;
}
