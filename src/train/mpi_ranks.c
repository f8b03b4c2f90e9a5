/* Data-parallel training over MPI (mpi_ranks.h). The MPI calls are all in
 * this file; without CLGQA_HAVE_MPI only the one-process paths remain. */
#include "mpi_ranks.h"
#include "clock.h"
#include "hash.h"
#include "runtime_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CLGQA_HAVE_MPI
#include <mpi.h>
#endif

/* ---- what one process does too ---- */

/* Item `index` (wrapping around) of a comma-joined list, into out. Returns
 * the number of items. */
static int list_item(const char *list, int index, char *out, size_t size) {
    int count = 1;
    for (const char *p = list; *p; p++)
        count += *p == ',';
    const char *p = list;
    for (int i = 0; i < index % count; i++)
        p = strchr(p, ',') + 1;
    snprintf(out, size, "%.*s", (int)strcspn(p, ","), p);
    return count;
}

static int fail_one_process(void) {
    fprintf(stderr, "clgqa: %s\n", clgqa_error_message());
    return 1;
}

static clgqa_status vrefuse(const char *fmt, va_list args) {
    char message[1024];
    vsnprintf(message, sizeof message, fmt, args);
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s", message);
}

#ifdef CLGQA_HAVE_MPI

/* A bucket of the gradient buffer: floats [first, first + count), read to
 * the host once the backward pass has finished them. */
typedef struct bucket {
    size_t first, count;
    cl_event read;
} bucket;

struct clgqa_mpi {
    int rank, ranks;
    int local_rank, local_ranks; /* within the node */
    MPI_Comm node;               /* the ranks of this node */
    char host[MPI_MAX_PROCESSOR_NAME];
    int refused; /* the last failure was a clgqa_mpi_refuse */

    clgqa_model *model;
    clgqa_runtime *rt;
    float *staged;    /* the gradient buffer on the host, param_count floats */
    bucket *buckets;  /* this backward's, in the order they became ready */
    int bucket_count, bucket_max;
    float weight;     /* this rank's share of the batch */
    int sum_norms;    /* the pass's key norms are summed over the ranks */
    float *norms;     /* [G] host staging of one layer's key norms */
    double wait_seconds;
};

/* An MPI call's failure as a clgqa status (the world communicator returns
 * errors instead of aborting, so they carry this message). */
static clgqa_status mpi_check(int code, const char *what) {
    if (code == MPI_SUCCESS)
        return CLGQA_OK;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    return clgqa_fail_code(CLGQA_ERR_MPI, code, "%s failed: %.*s", what, length, text);
}
#define MPI_TRY(call) CLGQA_TRY(mpi_check((call), #call))

int clgqa_mpi_built(void) { return 1; }

clgqa_status clgqa_mpi_init(clgqa_launch launch, clgqa_mpi **out) {
    *out = NULL;
    if (launch == CLGQA_LAUNCH_ALONE)
        return CLGQA_OK;
    clgqa_mpi *mpi = calloc(1, sizeof *mpi);
    if (!mpi)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate the MPI context");
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        free(mpi);
        return clgqa_fail(CLGQA_ERR_MPI, "MPI_Init failed");
    }
    *out = mpi;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi->ranks);
    MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mpi->rank, MPI_INFO_NULL,
                                &mpi->node));
    MPI_Comm_set_errhandler(mpi->node, MPI_ERRORS_RETURN);
    MPI_Comm_rank(mpi->node, &mpi->local_rank);
    MPI_Comm_size(mpi->node, &mpi->local_ranks);
    int length = 0;
    MPI_Get_processor_name(mpi->host, &length);
    return CLGQA_OK;
}

void clgqa_mpi_finalize(clgqa_mpi *mpi) {
    if (!mpi)
        return;
    for (int i = 0; i < mpi->bucket_count; i++)
        clReleaseEvent(mpi->buckets[i].read);
    free(mpi->buckets);
    free(mpi->staged);
    free(mpi->norms);
    if (mpi->node != MPI_COMM_NULL && mpi->node)
        MPI_Comm_free(&mpi->node);
    MPI_Finalize();
    free(mpi);
}

int clgqa_mpi_rank(const clgqa_mpi *mpi) { return mpi ? mpi->rank : 0; }
int clgqa_mpi_ranks(const clgqa_mpi *mpi) { return mpi ? mpi->ranks : 1; }

clgqa_status clgqa_mpi_refuse(clgqa_mpi *mpi, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    clgqa_status status = vrefuse(fmt, args);
    va_end(args);
    if (mpi)
        mpi->refused = 1;
    return status;
}

int clgqa_mpi_fail(clgqa_mpi *mpi, int everywhere) {
    if (!mpi)
        return fail_one_process();
    if (everywhere || mpi->refused) {
        if (mpi->rank == 0)
            fprintf(stderr, "clgqa: %s\n", clgqa_error_message());
        clgqa_mpi_finalize(mpi);
        return 1;
    }
    fprintf(stderr, "clgqa: rank %d of %d (%s): %s\n", mpi->rank, mpi->ranks, mpi->host,
            clgqa_error_message());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

/* ---- devices ---- */

clgqa_status clgqa_mpi_device_spec(const clgqa_mpi *mpi, const char *spec, char *out,
                                   size_t size) {
    if (!spec)
        spec = "";
    char item[256];
    int items = list_item(spec, mpi ? mpi->local_rank : 0, item, sizeof item);
    if (!mpi || items > 1) {
        snprintf(out, size, "%s", item);
        return CLGQA_OK;
    }
    enum { MAX_DEVICES = 64 };
    int matches[MAX_DEVICES], count = 0;
    CLGQA_TRY(clgqa_runtime_match_devices(spec, matches, MAX_DEVICES, &count));
    if (count == 0) /* clgqa_runtime_create says which spec matched nothing */
        snprintf(out, size, "%s", spec);
    else
        snprintf(out, size, "%d", matches[mpi->local_rank % count]);
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_check_devices(clgqa_mpi *mpi, const clgqa_runtime *rt, int allow_shared) {
    if (!mpi)
        return CLGQA_OK;
    int mine[2] = {rt->device_index, mpi->rank};
    int *all = malloc(sizeof(int) * 2 * (size_t)mpi->local_ranks);
    if (!all)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate the device table");
    clgqa_status status =
        mpi_check(MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, mpi->node), "MPI_Allgather");
    for (int i = 0; status == CLGQA_OK && !allow_shared && i < mpi->local_ranks; i++)
        for (int j = i + 1; j < mpi->local_ranks; j++)
            if (all[2 * i] == all[2 * j]) {
                status = clgqa_mpi_refuse(
                    mpi,
                    "ranks %d and %d on %s would share device %d (%s): give each rank its own "
                    "device (device: [0, 1, ...] lists one per rank of a node) or set "
                    "allow_shared_device: true",
                    all[2 * i + 1], all[2 * j + 1], mpi->host, all[2 * i], rt->device_name);
                break;
            }
    free(all);
    /* A refusal must not leave some ranks behind a failed allgather. */
    int failed = status != CLGQA_OK, any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_failed && !failed)
        return clgqa_mpi_refuse(mpi, "another rank refused its device");
    return status;
}

void clgqa_mpi_describe(const clgqa_mpi *mpi, const clgqa_runtime *rt, int batch_size, FILE *log) {
    if (!mpi)
        return;
    int first = (int)((long)batch_size * mpi->rank / mpi->ranks);
    int end = (int)((long)batch_size * (mpi->rank + 1) / mpi->ranks);
    fprintf(log, "rank %d of %d on %s: device %d (%s), images %d-%d of every batch of %d\n",
            mpi->rank, mpi->ranks, mpi->host, rt->device_index, rt->device_name, first, end - 1,
            batch_size);
    fflush(log);
}

/* ---- the model's hooks ---- */

/* Sums one layer's key norms over the ranks (a blocking round trip of G
 * floats: the grouping needs them before the pass can go on). */
static clgqa_status sum_key_norms(void *ctx, int layer, clgqa_view norms, int count) {
    clgqa_mpi *mpi = ctx;
    if (!mpi->sum_norms)
        return CLGQA_OK;
    size_t offset = norms.offset * sizeof(float), bytes = (size_t)count * sizeof(float);
    CLGQA_TRY(clgqa_buffer_read(mpi->rt, norms.mem, offset, bytes, mpi->norms));
    double start = clgqa_clock_seconds();
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, mpi->norms, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    mpi->wait_seconds += clgqa_clock_seconds() - start;
    (void)layer;
    return clgqa_buffer_write(mpi->rt, norms.mem, offset, bytes, mpi->norms);
}

/* Enqueues copies between flat floats [first, first + count) of the
 * gradient buffer and the same floats of the host staging, device to host
 * (to_host) or back, chunk by chunk (a model too large for one allocation
 * keeps its flat buffers in chunks, clgqa_model_chunk). *done (when not
 * NULL) gets the last copy's event: the queue is in order. */
static clgqa_status copy_gradients(clgqa_mpi *mpi, int to_host, size_t first, size_t count,
                                   cl_event *done) {
    size_t end = first + count;
    for (int c = 0; c < clgqa_model_chunk_count(mpi->model); c++) {
        size_t chunk_first, chunk_floats;
        clgqa_view chunk = clgqa_model_chunk(mpi->model, CLGQA_GRADS, c, &chunk_first, &chunk_floats);
        size_t lo = first > chunk_first ? first : chunk_first;
        size_t hi = end < chunk_first + chunk_floats ? end : chunk_first + chunk_floats;
        if (lo >= hi)
            continue;
        size_t offset = (chunk.offset + lo - chunk_first) * sizeof(float);
        size_t bytes = (hi - lo) * sizeof(float);
        if (done && *done) {
            clReleaseEvent(*done);
            *done = NULL;
        }
        if (to_host)
            CLGQA_CL(clEnqueueReadBuffer(mpi->rt->queue, chunk.mem, CL_FALSE, offset, bytes,
                                         mpi->staged + lo, 0, NULL, done));
        else
            CLGQA_CL(clEnqueueWriteBuffer(mpi->rt->queue, chunk.mem, CL_FALSE, offset, bytes,
                                          mpi->staged + lo, 0, NULL, done));
    }
    return CLGQA_OK;
}

/* Starts reading a finished bucket to the host; the sum waits for
 * clgqa_mpi_reduce_gradients, while the device goes on with the backward. */
static clgqa_status stage_bucket(void *ctx, size_t first, size_t count) {
    clgqa_mpi *mpi = ctx;
    if (mpi->bucket_count == mpi->bucket_max)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "more than %d gradient buckets", mpi->bucket_max);
    bucket *b = &mpi->buckets[mpi->bucket_count];
    b->read = NULL;
    CLGQA_TRY(copy_gradients(mpi, 1, first, count, &b->read));
    CLGQA_CL(clFlush(mpi->rt->queue));
    b->first = first;
    b->count = count;
    mpi->bucket_count++;
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_attach(clgqa_mpi *mpi, clgqa_runtime *rt, clgqa_model *model) {
    if (!mpi)
        return CLGQA_OK;
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    mpi->model = model;
    mpi->rt = rt;
    mpi->bucket_max = dims->num_layers + 2;
    mpi->staged = malloc(clgqa_model_param_count(model) * sizeof(float));
    mpi->buckets = calloc((size_t)mpi->bucket_max, sizeof *mpi->buckets);
    mpi->norms = malloc((size_t)dims->kv_heads * sizeof(float));
    if (!mpi->staged || !mpi->buckets || !mpi->norms)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of gradient staging",
                          clgqa_model_param_count(model) * sizeof(float));
    clgqa_model_hooks hooks = {mpi, sum_key_norms, stage_bucket};
    clgqa_model_set_hooks(model, &hooks);
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_begin_pass(clgqa_mpi *mpi, const clgqa_batch *batch, clgqa_pass_mode mode) {
    if (!mpi)
        return CLGQA_OK;
    mpi->sum_norms = !batch->replicated;
    if (mode != CLGQA_PASS_TRAIN)
        return CLGQA_OK;
    if (batch->replicated) {
        mpi->weight = mpi->rank == 0 ? 1.0f : 0.0f;
        return CLGQA_OK;
    }
    long total = batch->count;
    double start = clgqa_clock_seconds();
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD));
    mpi->wait_seconds += clgqa_clock_seconds() - start;
    mpi->weight = (float)((double)batch->count / (double)total);
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_reduce_gradients(clgqa_mpi *mpi) {
    if (!mpi)
        return CLGQA_OK;
    if (mpi->bucket_count == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_mpi_reduce_gradients before a backward pass");
    /* Waiting starts when the device has finished the backward: from then on
     * every moment in MPI_Allreduce is time the sums were not hidden. */
    cl_event last = mpi->buckets[mpi->bucket_count - 1].read;
    double idle_since = 0;
    clgqa_status status = CLGQA_OK;
    for (int i = 0; i < mpi->bucket_count && status == CLGQA_OK; i++) {
        bucket *b = &mpi->buckets[i];
        status = clWaitForEvents(1, &b->read) == CL_SUCCESS
                     ? CLGQA_OK
                     : clgqa_fail(CLGQA_ERR_OPENCL, "reading gradient bucket %d failed", i);
        if (status != CLGQA_OK)
            break;
        float *g = mpi->staged + b->first;
        if (mpi->weight != 1.0f)
            for (size_t j = 0; j < b->count; j++)
                g[j] *= mpi->weight;
        cl_int state = CL_QUEUED;
        clGetEventInfo(last, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL);
        if (!idle_since && state == CL_COMPLETE)
            idle_since = clgqa_clock_seconds();
        /* Buckets hold at most one block (7M floats for ViT-L), under
         * MPI's int count. */
        status = mpi_check(MPI_Allreduce(MPI_IN_PLACE, g, (int)b->count, MPI_FLOAT, MPI_SUM,
                                         MPI_COMM_WORLD),
                           "MPI_Allreduce of the gradients");
    }
    if (idle_since)
        mpi->wait_seconds += clgqa_clock_seconds() - idle_since;
    for (int i = 0; i < mpi->bucket_count; i++)
        clReleaseEvent(mpi->buckets[i].read);
    mpi->bucket_count = 0;
    CLGQA_TRY(status);
    return copy_gradients(mpi, 0, 0, clgqa_model_param_count(mpi->model), NULL);
}

clgqa_status clgqa_mpi_sum_metrics(clgqa_mpi *mpi, clgqa_metrics *metrics) {
    if (!mpi)
        return CLGQA_OK;
    double sums[3] = {metrics->sum_loss, metrics->sum_correct, (double)metrics->samples};
    double start = clgqa_clock_seconds();
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    mpi->wait_seconds += clgqa_clock_seconds() - start;
    metrics->sum_loss = sums[0];
    metrics->sum_correct = sums[1];
    metrics->samples = (long)sums[2];
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_sum_longs(clgqa_mpi *mpi, long *values, int count) {
    if (!mpi)
        return CLGQA_OK;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_LONG, MPI_SUM, MPI_COMM_WORLD));
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_max_long(clgqa_mpi *mpi, long *value) {
    if (!mpi)
        return CLGQA_OK;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, value, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD));
    return CLGQA_OK;
}

clgqa_status clgqa_mpi_check_weights(clgqa_mpi *mpi, clgqa_model *model, uint64_t *hash) {
    *hash = 0;
    if (!mpi)
        return CLGQA_OK;
    size_t count = clgqa_model_param_count(model);
    float *params = malloc(count * sizeof(float));
    if (!params)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to hash the weights",
                          count * sizeof(float));
    clgqa_status status = clgqa_model_read_buffer(model, CLGQA_PARAMS, params);
    uint64_t h = status == CLGQA_OK ? clgqa_fnv1a(CLGQA_FNV1A_START, params, count * sizeof(float)) : 0;
    free(params);
    CLGQA_TRY(status);
    *hash = h;
    uint64_t low = h, high = h;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD));
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
    if (low != high)
        return clgqa_mpi_refuse(mpi, "the ranks disagree on the weights (hashes %016llx to %016llx)",
                                (unsigned long long)low, (unsigned long long)high);
    return CLGQA_OK;
}

double clgqa_mpi_wait_seconds(const clgqa_mpi *mpi) { return mpi ? mpi->wait_seconds : 0; }

clgqa_status clgqa_mpi_time_allreduce(clgqa_mpi *mpi, const size_t *bucket_floats, int buckets,
                                      int repeats, double *seconds) {
    *seconds = 0;
    if (!mpi)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "timing the all-reduce needs mpirun -np 2 or more");
    size_t total = 0;
    for (int i = 0; i < buckets; i++)
        total += bucket_floats[i];
    float *data = malloc(total * sizeof(float));
    if (!data)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes", total * sizeof(float));
    for (size_t i = 0; i < total; i++) /* small values: repeated sums stay finite */
        data[i] = (float)(i % 1000) * 1e-6f;
    clgqa_status status = CLGQA_OK;
    double best = 0;
    for (int r = 0; r < repeats && status == CLGQA_OK; r++) {
        status = mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
        double start = clgqa_clock_seconds();
        float *bucket_data = data;
        for (int i = 0; i < buckets && status == CLGQA_OK; i++) {
            status = mpi_check(MPI_Allreduce(MPI_IN_PLACE, bucket_data, (int)bucket_floats[i],
                                             MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                               "MPI_Allreduce");
            bucket_data += bucket_floats[i];
        }
        double round = clgqa_clock_seconds() - start;
        if (status == CLGQA_OK)
            status = mpi_check(MPI_Allreduce(MPI_IN_PLACE, &round, 1, MPI_DOUBLE, MPI_MAX,
                                             MPI_COMM_WORLD), "MPI_Allreduce");
        if (r == 0 || round < best)
            best = round;
    }
    free(data);
    *seconds = best;
    return status;
}

#else /* one process only */

int clgqa_mpi_built(void) { return 0; }

clgqa_status clgqa_mpi_init(clgqa_launch launch, clgqa_mpi **out) {
    *out = NULL;
    if (launch == CLGQA_LAUNCH_MPI)
        return clgqa_fail(CLGQA_ERR_UNSUPPORTED,
                          "this clgqa was built without MPI (cmake found none, or -DCLGQA_MPI=OFF): "
                          "run it without mpirun, or install libopenmpi-dev and rebuild");
    return CLGQA_OK;
}
/* Without MPI every context is NULL: one process, nothing to agree on. The
 * arguments are those of the MPI build, unused here. */
void clgqa_mpi_finalize(clgqa_mpi *mpi) { (void)mpi; }
int clgqa_mpi_rank(const clgqa_mpi *mpi) { (void)mpi; return 0; }
int clgqa_mpi_ranks(const clgqa_mpi *mpi) { (void)mpi; return 1; }
clgqa_status clgqa_mpi_refuse(clgqa_mpi *mpi, const char *fmt, ...) {
    (void)mpi;
    va_list args;
    va_start(args, fmt);
    clgqa_status status = vrefuse(fmt, args);
    va_end(args);
    return status;
}
int clgqa_mpi_fail(clgqa_mpi *mpi, int everywhere) {
    (void)mpi, (void)everywhere;
    return fail_one_process();
}
clgqa_status clgqa_mpi_device_spec(const clgqa_mpi *mpi, const char *spec, char *out,
                                   size_t size) {
    (void)mpi;
    list_item(spec ? spec : "", 0, out, size);
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_check_devices(clgqa_mpi *mpi, const clgqa_runtime *rt, int allow_shared) {
    (void)mpi, (void)rt, (void)allow_shared;
    return CLGQA_OK;
}
void clgqa_mpi_describe(const clgqa_mpi *mpi, const clgqa_runtime *rt, int batch_size, FILE *log) {
    (void)mpi, (void)rt, (void)batch_size, (void)log;
}
clgqa_status clgqa_mpi_attach(clgqa_mpi *mpi, clgqa_runtime *rt, clgqa_model *model) {
    (void)mpi, (void)rt, (void)model;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_begin_pass(clgqa_mpi *mpi, const clgqa_batch *batch, clgqa_pass_mode mode) {
    (void)mpi, (void)batch, (void)mode;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_reduce_gradients(clgqa_mpi *mpi) {
    (void)mpi;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_sum_metrics(clgqa_mpi *mpi, clgqa_metrics *metrics) {
    (void)mpi, (void)metrics;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_sum_longs(clgqa_mpi *mpi, long *values, int count) {
    (void)mpi, (void)values, (void)count;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_max_long(clgqa_mpi *mpi, long *value) {
    (void)mpi, (void)value;
    return CLGQA_OK;
}
clgqa_status clgqa_mpi_check_weights(clgqa_mpi *mpi, clgqa_model *model, uint64_t *hash) {
    (void)mpi, (void)model;
    *hash = 0;
    return CLGQA_OK;
}
double clgqa_mpi_wait_seconds(const clgqa_mpi *mpi) {
    (void)mpi;
    return 0;
}
clgqa_status clgqa_mpi_time_allreduce(clgqa_mpi *mpi, const size_t *bucket_floats, int buckets,
                                      int repeats, double *seconds) {
    (void)mpi, (void)bucket_floats, (void)buckets, (void)repeats;
    *seconds = 0;
    return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "this clgqa was built without MPI");
}

#endif
