/* Opening a tensor file by its bytes, whatever its name says: a PyTorch
 * zip checkpoint (pth.c) or safetensors (safetensors.c). The file is
 * memory-mapped read-only for as long as its tensor set lives. */
#include "tensor_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pth.h"
#include "safetensors.h"

static int has_torch_suffix(const char *path) {
    size_t len = strlen(path);
    return (len > 4 && !strcmp(path + len - 4, ".pth")) || (len > 3 && !strcmp(path + len - 3, ".pt"));
}

clgqa_status clgqa_tensor_file_open(const char *path, clgqa_tensor_set **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return clgqa_fail(CLGQA_ERR_IO, "cannot stat '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return clgqa_fail(CLGQA_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) { /* also keeps mmap away from empty files */
        close(fd);
        if (has_torch_suffix(path))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %zu bytes, not a PyTorch checkpoint (truncated?): save the "
                              "weights with torch.save(model.state_dict(), path)", path, size);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", path, size);
    }
    void *mapping = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (mapping == MAP_FAILED)
        return clgqa_fail(CLGQA_ERR_IO, "cannot map '%s' (%zu bytes): %s", path, size, strerror(err));
    clgqa_tensor_set *file = NULL;
    clgqa_status status = clgqa_tensor_set_new(path, &file);
    if (status != CLGQA_OK) {
        munmap(mapping, size);
        return status;
    }
    if (clgqa_pth_is_zip(mapping, size)) {
        clgqa_tensor_set_close(file);
        status = clgqa_pth_parse(mapping, size, path, &file);
        if (status != CLGQA_OK) {
            munmap(mapping, size);
            return status;
        }
        clgqa_tensor_set_keep_mapping(file, mapping, size);
        *out = file;
        return CLGQA_OK;
    }
    clgqa_tensor_set_keep_mapping(file, mapping, size);
    if (clgqa_pth_is_legacy(mapping, size))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is a PyTorch file in the legacy format (torch < 1.6, or "
                            "_use_new_zipfile_serialization=False), which clgqa does not read: re-save it "
                            "with torch >= 1.6: torch.save(torch.load(path), 'new.pth')", path);
    else if ((status = clgqa_safetensors_parse_into(file, mapping, size)) == CLGQA_ERR_FORMAT && has_torch_suffix(path))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is neither a PyTorch zip checkpoint nor safetensors (corrupt, "
                            "or not a checkpoint): save the weights with torch.save(model.state_dict(), path)", path);
    if (status != CLGQA_OK) {
        clgqa_tensor_set_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
}

