/* libclgqa_counter.so: an LD_PRELOAD interposer between the process (clgqa
 * and CLBlast alike) and the real OpenCL library. It
 *   - counts the OpenCL commands, buffer creations and host waits, and
 *     records each kernel launch (name, global and local sizes, work-groups);
 *   - with CLGQA_COUNTER_POSE, makes PoCL's devices pose as another device
 *     (the table `poses`), so clgqa and CLBlast take that device's decisions:
 *     device class, attention kernel, work-group shapes, tuning files,
 *     CLBlast's database entry and kernel parameters; and checks each
 *     launch against the posed device's limits;
 *   - with CLGQA_COUNTER_MARKERS, checks each kernel launch against the
 *     device's limits, records it and enqueues a marker in its place: the
 *     process's plan (every launch and its shape) in seconds, computing
 *     nothing.
 * Every other call is passed on unchanged. `clgqa bench` re-executes itself
 * with it preloaded and reads it through the functions of
 * command_counter.h; CLGQA_COUNTER_REPORT=1 prints the totals of any command
 * at exit. */
#define _GNU_SOURCE
#include <CL/cl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "command_counter.h"

/* The next definition of the function this wrapper is named after. */
#define REAL(name)                                                           \
    static __typeof__(name) *real_;                                          \
    if (!real_)                                                              \
        *(void **)&real_ = dlsym(RTLD_NEXT, #name);                          \
    if (!real_)                                                              \
        return CL_INVALID_OPERATION

/* The real function itself, for calls of the counter's own. */
#define REAL_FUNCTION(name)                                                  \
    static __typeof__(name) *real_##name(void) {                             \
        static __typeof__(name) *f;                                          \
        if (!f)                                                              \
            *(void **)&f = dlsym(RTLD_NEXT, #name);                          \
        return f;                                                            \
    }
REAL_FUNCTION(clGetDeviceInfo)
REAL_FUNCTION(clGetPlatformInfo)
REAL_FUNCTION(clGetKernelInfo)
REAL_FUNCTION(clGetKernelWorkGroupInfo)
REAL_FUNCTION(clGetCommandQueueInfo)
REAL_FUNCTION(clEnqueueMarkerWithWaitList)

/* ================================================================ poses */

/* The devices PoCL can pose as. Figures from the vendors' public
 * specifications and what their OpenCL drivers report (clinfo); a field
 * left 0 or NULL keeps PoCL's own. The driver version stays PoCL's with
 * the pose named (it keys clgqa's binary cache, which holds PoCL's code). */
typedef struct device_pose {
    const char *key;                    /* CLGQA_COUNTER_POSE */
    const char *name, *vendor;          /* CL_DEVICE_NAME, CL_DEVICE_VENDOR */
    cl_uint vendor_id;                  /* CL_DEVICE_VENDOR_ID (PCI) */
    const char *version;                /* CL_DEVICE_VERSION */
    const char *platform_name, *platform_vendor, *platform_version;
    cl_uint compute_units, clock_mhz;   /* CL_DEVICE_MAX_{COMPUTE_UNITS,CLOCK_FREQUENCY} */
    cl_ulong local_mem, global_mem, max_alloc;
    size_t max_work_group, max_item[3]; /* CL_DEVICE_MAX_WORK_{GROUP,ITEM}_SIZE(S) */
    size_t work_group_multiple;         /* CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE */
    cl_uint base_align_bits;            /* CL_DEVICE_MEM_BASE_ADDR_ALIGN */
    const char *extension;              /* added to PoCL's CL_DEVICE_EXTENSIONS */
    cl_uint nv_major, nv_minor;         /* cl_nv_device_attribute_query: compute capability */
    const char *amd_board_name;         /* cl_amd_device_attribute_query: CL_DEVICE_BOARD_NAME_AMD */
} device_pose;

#define KIB 1024ull
#define GIB (1024ull * 1024 * 1024)
static const device_pose poses[] = {
    /* H100 SXM5 80 GB: 132 SMs at up to 1980 MHz, 48 KiB of local memory
     * per work-group without opt-in, warps of 32; NVIDIA's driver caps one
     * allocation at a quarter of memory. The platform strings are those of
     * the H100 run in tuning/nvidia-h100-xgemm.json. CLBlast reads the
     * architecture ("SM9.0") through cl_nv_device_attribute_query. */
    {"h100", "NVIDIA H100 80GB HBM3", "NVIDIA Corporation", 0x10de, "OpenCL 3.0 CUDA",
     "NVIDIA CUDA", "NVIDIA Corporation", "OpenCL 3.0 CUDA 13.0.98", 132, 1980, 48 * KIB,
     80 * GIB, 20 * GIB, 1024, {1024, 1024, 64}, 32, 4096, "cl_nv_device_attribute_query", 9, 0,
     NULL},
    /* Instinct MI210: 104 compute units at up to 1700 MHz, 64 GB HBM2e, 64 KiB
     * of LDS, wavefronts of 64; ROCm's OpenCL reports work-groups of up to
     * 256, names the device by its architecture and the board through
     * cl_amd_device_attribute_query (CLBlast's database looks it up so). */
    {"mi210", "gfx90a:sramecc+:xnack-", "Advanced Micro Devices, Inc.", 0x1002, "OpenCL 2.0 ",
     "AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.",
     "OpenCL 2.1 AMD-APP (3614.0)", 104, 1700, 64 * KIB, 64 * GIB, 0, 256, {1024, 1024, 1024}, 64,
     0, "cl_amd_device_attribute_query", 0, 0, "AMD Instinct MI210"},
    /* Arc A770 16 GB: 32 Xe-cores of 16 vector engines (the driver counts
     * the 512 engines as compute units) at up to 2400 MHz, 64 KiB of shared
     * local memory. Intel's compiler picks each kernel's SIMD width (8, 16
     * or 32); 16 here is an assumption, not a published figure. The driver
     * also offers cl_intel_subgroups, left out: CLBlast would then build
     * Intel's subgroup shuffles, which PoCL cannot compile (they change no
     * launch shape). */
    {"a770", "Intel(R) Arc(TM) A770 Graphics", "Intel(R) Corporation", 0x8086, "OpenCL 3.0 NEO ",
     "Intel(R) OpenCL Graphics", "Intel(R) Corporation", "OpenCL 3.0 ", 512, 2400, 64 * KIB,
     16 * GIB, 0, 1024, {1024, 1024, 1024}, 16, 0, NULL, 0, 0, NULL},
};
#define POSE_COUNT (sizeof poses / sizeof poses[0])
#define POSED_PLATFORM "Portable Computing Language" /* whose devices pose */

static const device_pose *pose; /* NULL: no pose */
static int markers;             /* CLGQA_COUNTER_MARKERS */
static FILE *launch_file;       /* CLGQA_COUNTER_LAUNCHES */

/* A wrong CLGQA_COUNTER_* value ends the process with one line: running on
 * as PoCL would answer a question nobody asked. */
__attribute__((constructor)) static void read_environment(void) {
    const char *key = getenv("CLGQA_COUNTER_POSE");
    if (key && *key) {
        for (size_t i = 0; i < POSE_COUNT && !pose; i++)
            if (!strcmp(key, poses[i].key))
                pose = &poses[i];
        if (!pose) {
            fprintf(stderr, "clgqa_counter: CLGQA_COUNTER_POSE=%s is none of", key);
            for (size_t i = 0; i < POSE_COUNT; i++)
                fprintf(stderr, " %s", poses[i].key);
            fprintf(stderr, "\n");
            _exit(2);
        }
    }
    const char *m = getenv("CLGQA_COUNTER_MARKERS");
    markers = m && *m && strcmp(m, "0") != 0;
    const char *path = getenv("CLGQA_COUNTER_LAUNCHES");
    if (path && *path && !(launch_file = fopen(path, "w"))) {
        fprintf(stderr, "clgqa_counter: CLGQA_COUNTER_LAUNCHES=%s: cannot write it\n", path);
        _exit(2);
    }
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Whether a platform or device is PoCL's, remembered per handle. */
enum { MAX_HANDLES = 64 };
static struct { const void *handle; int posed; } handles[MAX_HANDLES];

static int platform_is_posed(cl_platform_id platform) {
    if (!pose || !platform)
        return 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_HANDLES && handles[i].handle; i++)
        if (handles[i].handle == platform) {
            int posed = handles[i].posed;
            pthread_mutex_unlock(&lock);
            return posed;
        }
    pthread_mutex_unlock(&lock);
    char name[256] = "";
    real_clGetPlatformInfo()(platform, CL_PLATFORM_NAME, sizeof name, name, NULL);
    name[sizeof name - 1] = 0;
    int posed = !strcmp(name, POSED_PLATFORM);
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < MAX_HANDLES && handles[i].handle && handles[i].handle != platform)
        i++;
    if (i < MAX_HANDLES)
        handles[i].handle = platform, handles[i].posed = posed;
    pthread_mutex_unlock(&lock);
    return posed;
}

static int device_is_posed(cl_device_id device) {
    cl_platform_id platform = NULL;
    if (!pose || !device ||
        real_clGetDeviceInfo()(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) !=
            CL_SUCCESS)
        return 0;
    return platform_is_posed(platform);
}

/* Answers a query with `size` bytes at `value`, as the OpenCL API does. */
static cl_int answer(const void *value, size_t size, size_t room, void *out, size_t *size_out) {
    if (out && room < size)
        return CL_INVALID_VALUE;
    if (out)
        memcpy(out, value, size);
    if (size_out)
        *size_out = size;
    return CL_SUCCESS;
}
static cl_int answer_text(const char *text, size_t room, void *out, size_t *size_out) {
    return answer(text, strlen(text) + 1, room, out, size_out);
}

#define CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001
#define CL_DEVICE_BOARD_NAME_AMD 0x4038

/* The posed answer to a device query, or 1 when the pose keeps PoCL's. */
static cl_int posed_device_info(cl_device_id device, cl_device_info what, size_t room, void *out,
                                size_t *size_out) {
    const device_pose *p = pose;
    cl_device_type gpu = CL_DEVICE_TYPE_GPU;
    switch (what) {
    case CL_DEVICE_NAME: return answer_text(p->name, room, out, size_out);
    case CL_DEVICE_VENDOR: return answer_text(p->vendor, room, out, size_out);
    case CL_DEVICE_VENDOR_ID: return answer(&p->vendor_id, sizeof p->vendor_id, room, out, size_out);
    case CL_DEVICE_VERSION: return answer_text(p->version, room, out, size_out);
    case CL_DEVICE_TYPE: return answer(&gpu, sizeof gpu, room, out, size_out);
    case CL_DEVICE_MAX_COMPUTE_UNITS:
        return answer(&p->compute_units, sizeof p->compute_units, room, out, size_out);
    case CL_DEVICE_MAX_CLOCK_FREQUENCY:
        return answer(&p->clock_mhz, sizeof p->clock_mhz, room, out, size_out);
    case CL_DEVICE_LOCAL_MEM_SIZE:
        return answer(&p->local_mem, sizeof p->local_mem, room, out, size_out);
    case CL_DEVICE_GLOBAL_MEM_SIZE:
        return p->global_mem ? answer(&p->global_mem, sizeof p->global_mem, room, out, size_out) : 1;
    case CL_DEVICE_MAX_MEM_ALLOC_SIZE:
        return p->max_alloc ? answer(&p->max_alloc, sizeof p->max_alloc, room, out, size_out) : 1;
    case CL_DEVICE_MAX_WORK_GROUP_SIZE:
        return answer(&p->max_work_group, sizeof p->max_work_group, room, out, size_out);
    case CL_DEVICE_MAX_WORK_ITEM_SIZES:
        return answer(p->max_item, sizeof p->max_item, room, out, size_out);
    case CL_DEVICE_MEM_BASE_ADDR_ALIGN:
        return p->base_align_bits
                   ? answer(&p->base_align_bits, sizeof p->base_align_bits, room, out, size_out)
                   : 1;
    case CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV:
    case CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV:
        if (!p->nv_major)
            return CL_INVALID_VALUE;
        return answer(what == CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV ? &p->nv_major : &p->nv_minor,
                      sizeof(cl_uint), room, out, size_out);
    case CL_DEVICE_BOARD_NAME_AMD:
        return p->amd_board_name ? answer_text(p->amd_board_name, room, out, size_out)
                                 : CL_INVALID_VALUE;
    case CL_DRIVER_VERSION:
    case CL_DEVICE_EXTENSIONS: {
        char real[8192] = "", text[8400];
        real_clGetDeviceInfo()(device, what, sizeof real, real, NULL);
        real[sizeof real - 1] = 0;
        if (what == CL_DRIVER_VERSION)
            snprintf(text, sizeof text, "%s (PoCL, posing as %s)", real, p->key);
        else
            snprintf(text, sizeof text, "%s%s%s", real, p->extension ? " " : "",
                     p->extension ? p->extension : "");
        return answer_text(text, room, out, size_out);
    }
    default: return 1;
    }
}

cl_int clGetDeviceInfo(cl_device_id device, cl_device_info what, size_t room, void *out,
                       size_t *size_out) {
    REAL(clGetDeviceInfo);
    if (device_is_posed(device)) {
        cl_int err = posed_device_info(device, what, room, out, size_out);
        if (err != 1)
            return err;
    }
    return real_(device, what, room, out, size_out);
}

cl_int clGetPlatformInfo(cl_platform_id platform, cl_platform_info what, size_t room, void *out,
                         size_t *size_out) {
    REAL(clGetPlatformInfo);
    if (platform_is_posed(platform)) {
        if (what == CL_PLATFORM_NAME)
            return answer_text(pose->platform_name, room, out, size_out);
        if (what == CL_PLATFORM_VENDOR)
            return answer_text(pose->platform_vendor, room, out, size_out);
        if (what == CL_PLATFORM_VERSION)
            return answer_text(pose->platform_version, room, out, size_out);
    }
    return real_(platform, what, room, out, size_out);
}

/* A GPU-only or CPU-only device list sees the posed devices as GPUs. */
cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type type, cl_uint room,
                      cl_device_id *out, cl_uint *count_out) {
    REAL(clGetDeviceIDs);
    if (!platform_is_posed(platform) || type == CL_DEVICE_TYPE_ALL ||
        type == CL_DEVICE_TYPE_DEFAULT)
        return real_(platform, type, room, out, count_out);
    if ((!out && !count_out) || (out && room == 0))
        return CL_INVALID_VALUE;
    cl_uint n = 0;
    cl_int err = real_(platform, CL_DEVICE_TYPE_ALL, 0, NULL, &n);
    if (err != CL_SUCCESS)
        return err;
    cl_device_id all[MAX_HANDLES];
    if (n > MAX_HANDLES)
        n = MAX_HANDLES;
    if ((err = real_(platform, CL_DEVICE_TYPE_ALL, n, all, NULL)) != CL_SUCCESS)
        return err;
    cl_uint matched = (type & CL_DEVICE_TYPE_GPU) ? n : 0; /* every device poses as a GPU */
    for (cl_uint i = 0; out && i < matched && i < room; i++)
        out[i] = all[i];
    if (count_out)
        *count_out = matched;
    return matched ? CL_SUCCESS : CL_DEVICE_NOT_FOUND;
}

cl_int clGetKernelWorkGroupInfo(cl_kernel kernel, cl_device_id device,
                                cl_kernel_work_group_info what, size_t room, void *out,
                                size_t *size_out) {
    REAL(clGetKernelWorkGroupInfo);
    if (device_is_posed(device)) {
        if (what == CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE)
            return answer(&pose->work_group_multiple, sizeof(size_t), room, out, size_out);
        if (what == CL_KERNEL_WORK_GROUP_SIZE) {
            size_t size = 0;
            cl_int err = real_(kernel, device, what, sizeof size, &size, NULL);
            if (err != CL_SUCCESS)
                return err;
            if (size > pose->max_work_group)
                size = pose->max_work_group;
            return answer(&size, sizeof size, room, out, size_out);
        }
    }
    return real_(kernel, device, what, room, out, size_out);
}

/* ================================================================ counts */

static clgqa_command_counts counts;

/* Whether a wait leaves the device work: each queue remembers the event of
 * its last command (NULL when that command gave none). A wait on an event
 * that is not its queue's last has later work queued behind it; a wait on
 * the last one lets the queue run dry. */
enum { MAX_QUEUES = 16 };
static struct { cl_command_queue queue; cl_event last; } queues[MAX_QUEUES];
static pthread_mutex_t queues_lock = PTHREAD_MUTEX_INITIALIZER;

/* The queue's entry (added when new); NULL when the table is full. */
static cl_event *last_event_of(cl_command_queue q) {
    int i = 0;
    while (i < MAX_QUEUES && queues[i].queue && queues[i].queue != q)
        i++;
    if (i == MAX_QUEUES)
        return NULL;
    queues[i].queue = q;
    return &queues[i].last;
}

/* A command was enqueued on `q` (`event`: where its event went, if asked). */
static void note_command(cl_command_queue q, const cl_event *event, cl_int err) {
    if (err != CL_SUCCESS)
        return;
    pthread_mutex_lock(&queues_lock);
    cl_event *last = last_event_of(q);
    if (last)
        *last = event ? *event : NULL;
    pthread_mutex_unlock(&queues_lock);
}

/* Whether every one of the events has a later command queued behind it. */
static int behind_queued_work(cl_uint n, const cl_event *list) {
    static __typeof__(clGetEventInfo) *info;
    if (!info)
        *(void **)&info = dlsym(RTLD_NEXT, "clGetEventInfo");
    int behind = n > 0 && info;
    for (cl_uint k = 0; k < n && behind; k++) {
        cl_command_queue q = NULL; /* NULL for user events: counted as host waits */
        info(list[k], CL_EVENT_COMMAND_QUEUE, sizeof q, &q, NULL);
        pthread_mutex_lock(&queues_lock);
        cl_event *last = q ? last_event_of(q) : NULL;
        behind = last && *last != list[k];
        pthread_mutex_unlock(&queues_lock);
    }
    return behind;
}

/* CLGQA_COUNTER_REPORT: the totals on stderr at exit. */
__attribute__((destructor)) static void report_at_exit(void) {
    if (launch_file)
        fclose(launch_file);
    launch_file = NULL;
    if (!getenv("CLGQA_COUNTER_REPORT"))
        return;
    fprintf(stderr,
            "clgqa_counter: kernels %ld transfers %ld other_commands %ld buffers_created %ld "
            "host_waits %ld queued_waits %ld%s%s%s\n",
            counts.kernels, counts.transfers, counts.other_commands, counts.buffers_created,
            counts.host_waits, counts.queued_waits, pose ? " posing_as " : "",
            pose ? pose->key : "", markers ? " (kernels replaced by markers)" : "");
}

__attribute__((visibility("default"))) void clgqa_command_counts_read(clgqa_command_counts *out) {
    __atomic_load(&counts.kernels, &out->kernels, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.transfers, &out->transfers, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.other_commands, &out->other_commands, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.buffers_created, &out->buffers_created, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.host_waits, &out->host_waits, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.queued_waits, &out->queued_waits, __ATOMIC_SEQ_CST);
}

__attribute__((visibility("default"))) void clgqa_counter_mode_read(clgqa_counter_mode *out) {
    out->pose = pose ? pose->key : "";
    out->posed_name = pose ? pose->name : "";
    out->markers = markers;
}

static void add(long *counter, int yes) {
    if (yes)
        __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

/* ======================================================= launch record */

/* Kernel names, each kept once (the record points into this table). */
enum { MAX_NAMES = 1024, NAME_LENGTH = 128 };
static char names[MAX_NAMES][NAME_LENGTH];
static int name_count;
static clgqa_kernel_launch record[CLGQA_LAUNCH_RECORD_SIZE];
static long launches; /* made so far; launch i sits at record[i % size] */

/* The kept copy of a kernel's name (lock held). */
static const char *kept_name(cl_kernel kernel) {
    char name[NAME_LENGTH] = "?";
    real_clGetKernelInfo()(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    name[NAME_LENGTH - 1] = 0;
    for (int i = 0; i < name_count; i++)
        if (!strcmp(names[i], name))
            return names[i];
    if (name_count == MAX_NAMES)
        return "(more kernel names than the counter keeps)";
    memcpy(names[name_count], name, NAME_LENGTH);
    return names[name_count++];
}

static void record_launch(cl_kernel kernel, cl_uint dims, const size_t *global,
                          const size_t *local) {
    clgqa_kernel_launch l = {NULL, dims, {1, 1, 1}, {0, 0, 0}, local ? 1 : 0};
    for (cl_uint d = 0; d < 3; d++) {
        l.global[d] = d < dims ? global[d] : 1;
        if (local) {
            l.local[d] = d < dims ? local[d] : 1;
            l.work_groups *= l.local[d] ? (long)((l.global[d] + l.local[d] - 1) / l.local[d]) : 0;
        }
    }
    pthread_mutex_lock(&lock);
    l.kernel = kept_name(kernel);
    record[launches % CLGQA_LAUNCH_RECORD_SIZE] = l;
    launches++;
    if (launch_file)
        fprintf(launch_file, "%s global %zu %zu %zu local %zu %zu %zu work-groups %ld\n",
                l.kernel, l.global[0], l.global[1], l.global[2], l.local[0], l.local[1],
                l.local[2], l.work_groups);
    pthread_mutex_unlock(&lock);
}

__attribute__((visibility("default"))) long clgqa_kernel_launches_read(long first,
                                                                       clgqa_kernel_launch *out,
                                                                       long max) {
    pthread_mutex_lock(&lock);
    long made = launches, oldest = made > CLGQA_LAUNCH_RECORD_SIZE
                                       ? made - CLGQA_LAUNCH_RECORD_SIZE : 0;
    for (long i = first < oldest ? oldest : first, n = 0; i < made && n < max; i++, n++)
        out[n] = record[i % CLGQA_LAUNCH_RECORD_SIZE];
    pthread_mutex_unlock(&lock);
    return made;
}

/* What the device would say to this launch's shape: the limits of the
 * posed device (PoCL's own are wider), or with CLGQA_COUNTER_MARKERS, where
 * the kernel never reaches the driver, the real one's. One line on stderr
 * for each refusal. */
static cl_int check_launch(cl_command_queue q, cl_kernel kernel, cl_uint dims,
                           const size_t *global, const size_t *local) {
    cl_device_id device = NULL;
    real_clGetCommandQueueInfo()(q, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
    if (!markers && !device_is_posed(device))
        return CL_SUCCESS; /* the driver checks */
    size_t max_group = 0, kernel_max = 0, items[3] = {0, 0, 0};
    cl_ulong local_mem = 0, kernel_local = 0;
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items, NULL);
    clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, NULL);
    clGetKernelWorkGroupInfo(kernel, device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                             &kernel_max, NULL);
    real_clGetKernelWorkGroupInfo()(kernel, device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kernel_local,
                                    &kernel_local, NULL);
    char name[NAME_LENGTH] = "?";
    real_clGetKernelInfo()(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    name[NAME_LENGTH - 1] = 0;
    if (dims < 1 || dims > 3) {
        fprintf(stderr, "clgqa_counter: %s: %u dimensions\n", name, dims);
        return CL_INVALID_WORK_DIMENSION;
    }
    size_t group = 1;
    for (cl_uint d = 0; d < dims; d++) {
        if (global[d] == 0) {
            fprintf(stderr, "clgqa_counter: %s: global size 0 in dimension %u\n", name, d);
            return CL_INVALID_GLOBAL_WORK_SIZE;
        }
        if (!local)
            continue;
        if (local[d] == 0 || global[d] % local[d] || local[d] > items[d]) {
            fprintf(stderr,
                    "clgqa_counter: %s: local size %zu in dimension %u does not divide the "
                    "global %zu or exceeds the device's %zu\n",
                    name, local[d], d, global[d], items[d]);
            return CL_INVALID_WORK_GROUP_SIZE;
        }
        group *= local[d];
    }
    if (group > max_group || (kernel_max && group > kernel_max)) {
        fprintf(stderr, "clgqa_counter: %s: work-groups of %zu exceed the device's %zu "
                        "(the kernel's %zu)\n", name, group, max_group, kernel_max);
        return CL_INVALID_WORK_GROUP_SIZE;
    }
    if (kernel_local > local_mem) {
        fprintf(stderr, "clgqa_counter: %s: %llu bytes of local memory exceed the device's %llu\n",
                name, (unsigned long long)kernel_local, (unsigned long long)local_mem);
        return CL_OUT_OF_RESOURCES;
    }
    return CL_SUCCESS;
}

/* =========================================================== wrappers */

cl_int clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dims, const size_t *offset,
                              const size_t *global, const size_t *local, cl_uint n,
                              const cl_event *wait, cl_event *event) {
    REAL(clEnqueueNDRangeKernel);
    /* The launch as the device would take it; with markers, then a marker
     * that completes when the commands it waits for do, as the kernel would
     * have, the data left as it was. */
    cl_int err = pose || markers ? check_launch(q, k, dims, global, local) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = markers ? real_clEnqueueMarkerWithWaitList()(q, n, wait, event)
                      : real_(q, k, dims, offset, global, local, n, wait, event);
    if (err == CL_SUCCESS) {
        add(&counts.kernels, 1);
        record_launch(k, dims, global, local);
    }
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueReadBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                           size_t size, void *ptr, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueReadBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    cl_int err = real_(q, mem, blocking, offset, size, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueWriteBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                            size_t size, const void *ptr, cl_uint n, const cl_event *wait,
                            cl_event *event) {
    REAL(clEnqueueWriteBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    cl_int err = real_(q, mem, blocking, offset, size, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueCopyBuffer(cl_command_queue q, cl_mem src, cl_mem dst, size_t src_offset,
                           size_t dst_offset, size_t size, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueCopyBuffer);
    add(&counts.transfers, 1);
    cl_int err = real_(q, src, dst, src_offset, dst_offset, size, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueFillBuffer(cl_command_queue q, cl_mem mem, const void *pattern,
                           size_t pattern_size, size_t offset, size_t size, cl_uint n,
                           const cl_event *wait, cl_event *event) {
    REAL(clEnqueueFillBuffer);
    add(&counts.transfers, 1);
    cl_int err = real_(q, mem, pattern, pattern_size, offset, size, n, wait, event);
    note_command(q, event, err);
    return err;
}

void *clEnqueueMapBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, cl_map_flags flags,
                         size_t offset, size_t size, cl_uint n, const cl_event *wait,
                         cl_event *event, cl_int *err) {
    static __typeof__(clEnqueueMapBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clEnqueueMapBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    void *mapped = real_(q, mem, blocking, flags, offset, size, n, wait, event, err);
    note_command(q, event, mapped ? CL_SUCCESS : CL_INVALID_OPERATION);
    return mapped;
}

cl_int clEnqueueUnmapMemObject(cl_command_queue q, cl_mem mem, void *ptr, cl_uint n,
                               const cl_event *wait, cl_event *event) {
    REAL(clEnqueueUnmapMemObject);
    add(&counts.transfers, 1);
    cl_int err = real_(q, mem, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                   cl_event *event) {
    REAL(clEnqueueMarkerWithWaitList);
    add(&counts.other_commands, 1);
    cl_int err = real_(q, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueBarrierWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                    cl_event *event) {
    REAL(clEnqueueBarrierWithWaitList);
    add(&counts.other_commands, 1);
    cl_int err = real_(q, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size, void *host,
                      cl_int *err) {
    static __typeof__(clCreateBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clCreateBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.buffers_created, 1);
    return real_(context, flags, size, host, err);
}

cl_mem clCreateSubBuffer(cl_mem buffer, cl_mem_flags flags, cl_buffer_create_type type,
                         const void *info, cl_int *err) {
    static __typeof__(clCreateSubBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clCreateSubBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.buffers_created, 1);
    return real_(buffer, flags, type, info, err);
}

cl_int clFinish(cl_command_queue q) {
    REAL(clFinish);
    add(&counts.host_waits, 1);
    return real_(q);
}

cl_int clWaitForEvents(cl_uint n, const cl_event *events) {
    REAL(clWaitForEvents);
    int behind = behind_queued_work(n, events);
    add(&counts.queued_waits, behind);
    add(&counts.host_waits, !behind);
    return real_(n, events);
}
