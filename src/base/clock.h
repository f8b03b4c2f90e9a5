/* The one clock of the library, the command and the tests: monotonic
 * seconds, for throughput, ETAs and waits (never for anything a result
 * depends on). */
#ifndef CLGQA_CLOCK_H
#define CLGQA_CLOCK_H

#include <time.h>

static inline double clgqa_clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
