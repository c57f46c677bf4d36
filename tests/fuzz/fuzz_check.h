/* fuzz_check.h — an invariant that, when broken, is a crash libFuzzer keeps. */
#ifndef P2PBCAST_FUZZ_CHECK_H
#define P2PBCAST_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                              \
    do {                                                                                      \
        if (!(c)) {                                                                           \
            fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
