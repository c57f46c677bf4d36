/* source.h — read SOURCE on the root: open, check, read chunks, notice change. */
#ifndef P2PBCAST_SOURCE_H
#define P2PBCAST_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct pb_source {
    int fd;
    const char *path;
    struct stat st; /* as opened: size, mode, mtime, dev/ino */
};

/* 0 ok; -1 with err ("SOURCE 'path': reason"). Refuses non-regular files. */
int pb_source_open(struct pb_source *s, const char *path, char *err, size_t errlen);
/* Read exactly len bytes at off. 0 ok; -1 with err (short file = changed). */
int pb_source_read(struct pb_source *s, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
/* After a read: has SOURCE changed size, mtime or ctime since open? 0 no. */
int pb_source_check_unchanged(struct pb_source *s, char *err, size_t errlen);
/* statfs f_type of the filesystem SOURCE is on (fs_kind.h). 0 ok; -1 with err. */
int pb_source_fs_type(struct pb_source *s, unsigned long *f_type, char *err, size_t errlen);
void pb_source_close(struct pb_source *s);

#endif
