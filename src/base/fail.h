/* Recording failures (the library's side of clgqa/error.h): every library
 * function that fails calls one of these and returns the status. */
#ifndef CLGQA_FAIL_H
#define CLGQA_FAIL_H

#include <stdarg.h>

#include "clgqa/error.h"

#if defined(__GNUC__)
#define CLGQA_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CLGQA_PRINTF(fmt, args)
#endif

/* Record a printf-style message and return `status` (for `return clgqa_fail(...)`). */
clgqa_status clgqa_fail(clgqa_status status, const char *fmt, ...) CLGQA_PRINTF(2, 3);
/* The same, keeping the OpenCL or CLBlast status `code` for clgqa_error_code. */
clgqa_status clgqa_fail_code(clgqa_status status, int code, const char *fmt, ...)
    CLGQA_PRINTF(3, 4);
/* Prepend context to the current message: "context: previous message" (the
 * code stays). */
clgqa_status clgqa_fail_context(clgqa_status status, const char *fmt, ...) CLGQA_PRINTF(2, 3);

/* Propagate a failing status from an expression returning clgqa_status. */
#define CLGQA_TRY(expr)                          \
    do {                                         \
        clgqa_status try_status_ = (expr);       \
        if (try_status_ != CLGQA_OK)             \
            return try_status_;                  \
    } while (0)

#endif
