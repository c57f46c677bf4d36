/* tap.h — a few lines of TAP for the C unit tests (automake's tap-driver). */
#ifndef P2PBCAST_TAP_H
#define P2PBCAST_TAP_H

#include <stdarg.h>
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

/* The same, for a fixed description; returns the condition. */
static inline int tap_ok(int cond, const char *desc)
{
    ok(cond, "%s", desc);
    return cond;
}

/* Free text, e.g. "# diagnostic\n" lines. */
static inline void tap_add(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}

#endif
