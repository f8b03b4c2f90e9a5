/* Thread-local error messages behind clgqa_status codes. */
#include "clgqa/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];

const char *clgqa_status_name(clgqa_status status) {
    switch (status) {
    case CLGQA_OK: return "CLGQA_OK";
    case CLGQA_ERR_INVALID_ARG: return "CLGQA_ERR_INVALID_ARG";
    case CLGQA_ERR_NO_PLATFORM: return "CLGQA_ERR_NO_PLATFORM";
    case CLGQA_ERR_NO_DEVICE: return "CLGQA_ERR_NO_DEVICE";
    case CLGQA_ERR_OPENCL: return "CLGQA_ERR_OPENCL";
    case CLGQA_ERR_CLBLAST: return "CLGQA_ERR_CLBLAST";
    case CLGQA_ERR_BUILD: return "CLGQA_ERR_BUILD";
    case CLGQA_ERR_OUT_OF_MEMORY: return "CLGQA_ERR_OUT_OF_MEMORY";
    case CLGQA_ERR_IO: return "CLGQA_ERR_IO";
    case CLGQA_ERR_FORMAT: return "CLGQA_ERR_FORMAT";
    case CLGQA_ERR_UNSUPPORTED: return "CLGQA_ERR_UNSUPPORTED";
    }
    return "CLGQA_ERR_UNKNOWN";
}

const char *clgqa_error_message(void) { return last_message; }

clgqa_status clgqa_fail(clgqa_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
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
