/* mpi.h stub for the fuzz build only: options.h includes p2pbcast.h, which
 * names MPI_Comm in one prototype. The fuzz targets call no MPI function and
 * must build on machines without MPI, so an opaque handle type is enough. */
#ifndef P2PBCAST_FUZZ_STUB_MPI_H
#define P2PBCAST_FUZZ_STUB_MPI_H
typedef struct pb_fuzz_stub_comm *MPI_Comm;
#endif
