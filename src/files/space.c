/* space.c — reserve space up front; see space.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate */
#endif
#include "space.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int pb_space_reserve(int fd, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    int rc;
    do
        rc = fallocate(fd, 0, (off_t)off, (off_t)len);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return errno;
    if ((uint64_t)st.st_size < off + len && ftruncate(fd, (off_t)(off + len)) < 0)
        return errno;
    return 0;
}
