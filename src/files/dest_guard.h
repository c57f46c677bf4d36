/* dest_guard.h — nothing the user had is lost: a DEST (file) or DEST_DIR is
 * refused where replacing it could destroy SOURCE as this node sees it. */
#ifndef P2PBCAST_DEST_GUARD_H
#define P2PBCAST_DEST_GUARD_H

#include <stddef.h>

/* dest, source: paths as given on this node (trailing slashes ignored).
 * Refused: DEST is SOURCE; DEST is a directory that contains SOURCE (an
 * ancestor of it: --force would remove it); and for a directory SOURCE,
 * DEST inside it. Compared by device and inode, walking each one's chain of
 * parents up to "/", so links, bind mounts and other spellings of a path do
 * not hide it. A SOURCE this node cannot see is no conflict. 0 ok; -1 with
 * err (DEST, SOURCE and the reason). */
int pb_dest_guard(const char *dest, const char *source, char *err, size_t errlen);

/* Root, before the walk: does the path DEST (last component not followed)
 * name SOURCE or a directory above it? By real paths; 1 yes, 0 no. */
int pb_dest_above_source(const char *dest, const char *source);

#endif
