/* Whole-file reads and in-memory gunzip: the IDX and CIFAR readers parse
 * buffers, so the same parsers serve files, .gz files and the fuzzers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dataset_internal.h"

clgqa_status clgqa_path_format(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return clgqa_fail(CLGQA_ERR_IO, "path too long: %.200s...", out);
    return CLGQA_OK;
}

clgqa_status clgqa_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return clgqa_fail(CLGQA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    long length = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        length = ftell(f);
    if (length < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return clgqa_fail(CLGQA_ERR_IO, "cannot read %s: not a seekable file", path);
    }
    if ((size_t)length > max_bytes) {
        fclose(f);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %ld bytes is more than the %zu accepted", path,
                          length, max_bytes);
    }
    uint8_t *buffer = malloc(length > 0 ? (size_t)length : 1);
    if (!buffer) {
        fclose(f);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %ld bytes for %s", length,
                          path);
    }
    size_t got = fread(buffer, 1, (size_t)length, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || got != (size_t)length) {
        free(buffer);
        return clgqa_fail(CLGQA_ERR_IO, "cannot read %s", path);
    }
    *data = buffer;
    *size = got;
    return CLGQA_OK;
}

clgqa_status clgqa_gunzip_in_place(const char *name, size_t max_bytes, uint8_t **data,
                                   size_t *size) {
    if (*size < 2 || (*data)[0] != 0x1f || (*data)[1] != 0x8b)
        return CLGQA_OK;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) /* 16: expect a gzip wrapper */
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: inflateInit2 failed", name);
    size_t capacity = *size * 4 + 1024, used = 0;
    uint8_t *out = malloc(capacity);
    int rc = out ? Z_OK : Z_MEM_ERROR;
    zs.next_in = *data;
    zs.avail_in = (uInt)*size;
    while (rc == Z_OK) {
        if (used == capacity) {
            if (capacity >= max_bytes) {
                rc = Z_BUF_ERROR;
                break;
            }
            capacity = capacity * 2 < max_bytes ? capacity * 2 : max_bytes;
            uint8_t *bigger = realloc(out, capacity);
            if (!bigger) {
                rc = Z_MEM_ERROR;
                break;
            }
            out = bigger;
        }
        size_t room = capacity - used;
        zs.next_out = out + used;
        zs.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        uInt before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        used += before - zs.avail_out;
        /* No progress with input left means the stream is cut short. */
        if (rc == Z_BUF_ERROR && zs.avail_in == 0)
            break;
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    const char *zlib_message = zs.msg;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        if (rc == Z_MEM_ERROR)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: out of memory while inflating", name);
        if (rc == Z_BUF_ERROR && used >= max_bytes)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: inflates to more than %zu bytes", name,
                              max_bytes);
        if (rc == Z_BUF_ERROR)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: truncated gzip stream", name);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: corrupt gzip data (%s)", name,
                          zlib_message ? zlib_message : "inflate failed");
    }
    free(*data);
    *data = out;
    *size = used;
    return CLGQA_OK;
}
