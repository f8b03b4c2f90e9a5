/* Status codes and error messages.
 *
 * Library functions return a clgqa_status and never exit. On failure the
 * function also records a one-line message (naming the failing call and, for
 * OpenCL/CLBlast, the status name) that clgqa_error_message() returns until
 * the next failure on the same thread; for an OpenCL or CLBlast failure,
 * clgqa_error_code() gives that library's own status code. */
#ifndef CLGQA_ERROR_H
#define CLGQA_ERROR_H

typedef enum clgqa_status {
    CLGQA_OK = 0,
    CLGQA_ERR_INVALID_ARG,    /* a bad argument, config value or shape */
    CLGQA_ERR_NO_PLATFORM,    /* no OpenCL platform at all */
    CLGQA_ERR_NO_DEVICE,      /* the device spec matches no device */
    CLGQA_ERR_OPENCL,         /* an OpenCL call failed (clgqa_error_code: its cl_int) */
    CLGQA_ERR_CLBLAST,        /* a CLBlast call failed (clgqa_error_code: its status) */
    CLGQA_ERR_BUILD,          /* a kernel program failed to build */
    CLGQA_ERR_OUT_OF_MEMORY,  /* host or device allocation failed or too large */
    CLGQA_ERR_IO,             /* a file could not be opened, read or written */
    CLGQA_ERR_FORMAT,         /* a file's contents are malformed */
    CLGQA_ERR_UNSUPPORTED,    /* valid input this build cannot handle */
    CLGQA_ERR_DIVERGED,       /* training stopped: the loss became NaN or infinite */
    CLGQA_ERR_NO_DATA,        /* an epoch or an evaluation got no samples */
    CLGQA_ERR_DEVICE_FEATURE, /* the device lacks what was asked of it (local memory, an extension) */
    CLGQA_ERR_MPI             /* an MPI call failed (clgqa_error_code: its error code) */
} clgqa_status;

/* "CLGQA_ERR_..." name of a status. */
const char *clgqa_status_name(clgqa_status status);

/* The message of the last failure on this thread ("" if none). */
const char *clgqa_error_message(void);

/* The underlying library's status code of the last failure on this thread:
 * the OpenCL cl_int (CL_OUT_OF_RESOURCES is -5) after CLGQA_ERR_OPENCL, the
 * CLBlast status after CLGQA_ERR_CLBLAST, the MPI error code after
 * CLGQA_ERR_MPI when an MPI call returned one; 0 after any other failure. */
int clgqa_error_code(void);

/* The library's version, "major.minor.patch". */
const char *clgqa_version(void);

#endif
