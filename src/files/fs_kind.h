/* fs_kind.h — what SOURCE's filesystem promises about what other nodes see
 * (statfs f_type), for --source-shared=auto. Pure functions. */
#ifndef P2PBCAST_FS_KIND_H
#define P2PBCAST_FS_KIND_H

enum pb_fs_kind {
    /* Every client sees every completed write (Lustre, GPFS, BeeGFS,
     * CephFS, OrangeFS: locks or leases keep client caches coherent). */
    PB_FS_COHERENT,
    /* Network filesystems whose clients cache on their own (NFS with
     * actimeo/nocto, SMB, AFS, 9P, FUSE): two nodes may read different
     * bytes at the same path and moment. */
    PB_FS_CLIENT_CACHED,
    /* Everything else: a local filesystem (ext4, XFS, tmpfs, ...), shared
     * only by the processes of one machine. */
    PB_FS_LOCAL,
};

enum pb_fs_kind pb_fs_kind(unsigned long f_type);
/* "lustre", "nfs", "tmpfs", ... or "f_type 0x..." (buf, for unknown ones). */
const char *pb_fs_name(unsigned long f_type, char *buf, unsigned long buflen);

#endif
