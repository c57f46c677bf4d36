/* optlist.h — comma-separated option lists (--tcp-if, --rdma-dev): the
 * split, the empty-element and too-many errors, alike for every option. */
#ifndef P2PBCAST_OPTLIST_H
#define P2PBCAST_OPTLIST_H

#include <stddef.h>

/* One element: len bytes at p (not NUL-terminated), the n-th; 0, or -1
 * with err. */
typedef int (*pb_optlist_fn)(void *ctx, const char *p, size_t len, int n, char *err, size_t errlen);

/* Call one for each element of list, in order. The number of elements, or
 * -1 with err: "OPT 'LIST': an empty element (write FORM, comma-separated)",
 * "OPT 'LIST': more than MAX WHAT", or what one said. */
int pb_optlist_split(const char *list, const char *opt, const char *form, const char *what, int max,
                     pb_optlist_fn one, void *ctx, char *err, size_t errlen);

#endif
