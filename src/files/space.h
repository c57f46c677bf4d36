/* space.h — reserve a file's space before the transfer, so that a full
 * disk fails first. */
#ifndef P2PBCAST_SPACE_H
#define P2PBCAST_SPACE_H

#include <stdint.h>

/* Allocate [off, off+len) of fd with fallocate(2), which also extends the
 * file. Where the filesystem cannot (NFSv3, ramfs: EOPNOTSUPP), the file
 * is only extended to off+len with ftruncate: never posix_fallocate's
 * emulation, which writes every block before the transfer has begun.
 * 0, or an errno value. */
int pb_space_reserve(int fd, uint64_t off, uint64_t len);

#endif
