/* dest_path.h — DEST placeholders: %h (host), %r (rank) and %% expand to
 * each node's own path, so ranks that share a filesystem can still each have
 * a copy (tests, containers with a private /tmp). Pure; unit-tested. */
#ifndef P2PBCAST_DEST_PATH_H
#define P2PBCAST_DEST_PATH_H

#include <stddef.h>

/* Expand %h (host), %r (rank) and %% in tmpl. 0 ok, -1 with reason. */
int pb_expand_dest(const char *tmpl, const char *host, int rank, char *out, size_t outlen,
                   char *err, size_t errlen);

/* Does tmpl contain a placeholder that differs between ranks or hosts? */
int pb_dest_has_placeholder(const char *tmpl);

#endif
