/* Status codes and error messages.
 *
 * Library functions return a clgqa_status and never exit. On failure the
 * function also records a one-line message (naming the failing call and, for
 * OpenCL/CLBlast, the status name) that clgqa_error_message() returns until
 * the next failure on the same thread. */
#ifndef CLGQA_ERROR_H
#define CLGQA_ERROR_H

#include <stdarg.h>

typedef enum clgqa_status {
    CLGQA_OK = 0,
    CLGQA_ERR_INVALID_ARG,   /* a bad argument, config value or shape */
    CLGQA_ERR_NO_PLATFORM,   /* no OpenCL platform at all */
    CLGQA_ERR_NO_DEVICE,     /* the device spec matches no device */
    CLGQA_ERR_OPENCL,        /* an OpenCL call failed */
    CLGQA_ERR_CLBLAST,       /* a CLBlast call failed */
    CLGQA_ERR_BUILD,         /* a kernel program failed to build */
    CLGQA_ERR_OUT_OF_MEMORY, /* host or device allocation failed or too large */
    CLGQA_ERR_IO,            /* a file could not be opened, read or written */
    CLGQA_ERR_FORMAT,        /* a file's contents are malformed */
    CLGQA_ERR_UNSUPPORTED    /* valid input this build cannot handle */
} clgqa_status;

/* "CLGQA_ERR_..." name of a status. */
const char *clgqa_status_name(clgqa_status status);

/* The message of the last failure on this thread ("" if none). */
const char *clgqa_error_message(void);

/* Record a printf-style message and return `status` (for `return clgqa_fail(...)`). */
clgqa_status clgqa_fail(clgqa_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend context to the current message: "context: previous message". */
clgqa_status clgqa_fail_context(clgqa_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Propagate a failing status from an expression returning clgqa_status. */
#define CLGQA_TRY(expr)                          \
    do {                                         \
        clgqa_status try_status_ = (expr);       \
        if (try_status_ != CLGQA_OK)             \
            return try_status_;                  \
    } while (0)

#endif
