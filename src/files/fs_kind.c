/* fs_kind.c — statfs f_type to what a filesystem promises other nodes; see
 * fs_kind.h. The magic numbers of Lustre, GPFS and BeeGFS are not in
 * <linux/magic.h> (out-of-tree modules); they are the ones their clients
 * report in f_type. */
#include "fs_kind.h"

#include <stdio.h>

struct fs_entry {
    unsigned long magic;
    enum pb_fs_kind kind;
    const char *name;
};

static const struct fs_entry known[] = {
    { 0x0BD00BD0UL, PB_FS_COHERENT, "lustre" },
    { 0x47504653UL, PB_FS_COHERENT, "gpfs" },
    { 0x19830326UL, PB_FS_COHERENT, "beegfs" },
    { 0x00C36400UL, PB_FS_COHERENT, "cephfs" },
    { 0x20030528UL, PB_FS_COHERENT, "orangefs" },
    { 0x6969UL, PB_FS_CLIENT_CACHED, "nfs" },
    { 0x517BUL, PB_FS_CLIENT_CACHED, "smb" },
    { 0xFF534D42UL, PB_FS_CLIENT_CACHED, "cifs" },
    { 0xFE534D42UL, PB_FS_CLIENT_CACHED, "smb2" },
    { 0x5346414FUL, PB_FS_CLIENT_CACHED, "afs" },
    { 0x6B414653UL, PB_FS_CLIENT_CACHED, "afs" },
    { 0x01021997UL, PB_FS_CLIENT_CACHED, "9p" },
    { 0x65735546UL, PB_FS_CLIENT_CACHED, "fuse" },
    { 0x01021994UL, PB_FS_LOCAL, "tmpfs" },
    { 0xEF53UL, PB_FS_LOCAL, "ext2/3/4" },
    { 0x58465342UL, PB_FS_LOCAL, "xfs" },
    { 0x9123683EUL, PB_FS_LOCAL, "btrfs" },
    { 0x794C7630UL, PB_FS_LOCAL, "overlayfs" },
};

static const struct fs_entry *find(unsigned long f_type)
{
    /* f_type is a signed word on some ABIs: compare the low 32 bits */
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].magic == (f_type & 0xFFFFFFFFUL))
            return &known[i];
    return NULL;
}

enum pb_fs_kind pb_fs_kind(unsigned long f_type)
{
    const struct fs_entry *e = find(f_type);
    return e ? e->kind : PB_FS_LOCAL;
}

const char *pb_fs_name(unsigned long f_type, char *buf, unsigned long buflen)
{
    const struct fs_entry *e = find(f_type);
    if (e)
        return e->name;
    snprintf(buf, buflen, "f_type 0x%lx", f_type & 0xFFFFFFFFUL);
    return buf;
}
