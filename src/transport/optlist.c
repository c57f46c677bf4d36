/* optlist.c — comma-separated option lists (optlist.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "optlist.h"

#include <stdio.h>
#include <string.h>

int pb_optlist_split(const char *list, const char *opt, const char *form, const char *what, int max,
                     pb_optlist_fn one, void *ctx, char *err, size_t errlen)
{
    int n = 0;
    const char *p = list ? list : "";
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0) {
            snprintf(err, errlen, "%s '%s': an empty element (write %s, comma-separated)", opt, list ? list : "",
                     form);
            return -1;
        }
        if (n == max) {
            snprintf(err, errlen, "%s '%s': more than %d %s", opt, list, max, what);
            return -1;
        }
        if (one(ctx, p, len, n, err, errlen) != 0)
            return -1;
        n++;
        if (!comma)
            return n;
        p = comma + 1;
    }
}
