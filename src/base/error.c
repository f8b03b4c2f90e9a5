/* Thread-local error messages and codes behind clgqa_status (error.h, fail.h). */
#include "fail.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];
static _Thread_local int last_code;

/* In clgqa_status order. */
static const char *const status_names[] = {
    "CLGQA_OK",          "CLGQA_ERR_INVALID_ARG",  "CLGQA_ERR_NO_PLATFORM",
    "CLGQA_ERR_NO_DEVICE", "CLGQA_ERR_OPENCL",     "CLGQA_ERR_CLBLAST",
    "CLGQA_ERR_BUILD",   "CLGQA_ERR_OUT_OF_MEMORY", "CLGQA_ERR_IO",
    "CLGQA_ERR_FORMAT",  "CLGQA_ERR_UNSUPPORTED",  "CLGQA_ERR_DIVERGED",
    "CLGQA_ERR_NO_DATA", "CLGQA_ERR_DEVICE_FEATURE", "CLGQA_ERR_MPI",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == CLGQA_ERR_MPI + 1,
               "a name for every status");

const char *clgqa_status_name(clgqa_status status) {
    return (unsigned)status <= CLGQA_ERR_MPI ? status_names[status] : "CLGQA_ERR_UNKNOWN";
}

const char *clgqa_error_message(void) { return last_message; }

int clgqa_error_code(void) { return last_code; }

static void record(int code, const char *fmt, va_list ap) {
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    last_code = code;
}

clgqa_status clgqa_fail(clgqa_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record(0, fmt, ap);
    va_end(ap);
    return status;
}

clgqa_status clgqa_fail_code(clgqa_status status, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record(code, fmt, ap);
    va_end(ap);
    return status;
}

clgqa_status clgqa_fail_context(clgqa_status status, const char *fmt, ...) {
    char previous[sizeof last_message];
    memcpy(previous, last_message, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof last_message && previous[0])
        snprintf(last_message + n, sizeof last_message - (size_t)n, ": %s", previous);
    return status;
}

/* CLGQA_VERSION comes from the build (project(clgqa VERSION ...)). */
const char *clgqa_version(void) { return CLGQA_VERSION; }
