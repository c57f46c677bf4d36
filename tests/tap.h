/* tap.h — a few lines of TAP for the C unit tests (automake's tap-driver). */
#ifndef P2PBCAST_TAP_H
#define P2PBCAST_TAP_H

#include <stdio.h>

static int tap_n, tap_fail;

#define ok(cond, ...)                                                      \
    do {                                                                   \
        int ok_c_ = !!(cond);                                              \
        printf("%sok %d - ", ok_c_ ? "" : "not ", ++tap_n);                \
        printf(__VA_ARGS__);                                               \
        printf("\n");                                                      \
        if (!ok_c_) {                                                      \
            tap_fail++;                                                    \
            printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}

#endif
