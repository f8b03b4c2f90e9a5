/* Background batch loader.
 *
 * Batches are built, in order, into a ring of `depth` slots: batch b goes to
 * slot b % depth once the consumer has released the batch that used it
 * before. Worker threads take chunks of CHUNK samples of the oldest batch
 * still being handed out, so all of them work on the next batch the consumer
 * needs (the first batch of an epoch is ready `threads` times sooner than if
 * each worker built whole batches). Every sample is written at its own
 * position, so a batch's contents depend only on (seed, epoch, sample order),
 * never on which thread did what. Error messages are per thread, so a slot
 * keeps its batch's first failure with its message for the consumer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "philox.h"
#include "clock.h"
#include "dataset_internal.h"

#define MAX_THREADS 8
#define CHUNK 8

typedef enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY } slot_state;

typedef struct slot {
    slot_state state;
    size_t batch; /* batch number in the epoch */
    long epoch;
    unsigned long generation; /* the loader's generation when the batch began */
    int first;                /* the shard's first position in the whole batch */
    int size;                 /* samples in the batch (the shard) */
    int replicated;           /* the whole batch, which is smaller than the parts */
    int claimed, finished;    /* samples handed to workers, samples done */
    float *images;            /* [batch_size][sample_floats], by position */
    uint8_t *pixels;          /* the same in pixel mode (images NULL) */
    int32_t *labels;
    uint8_t *kept; /* kept[i] = 0: sample i was skipped as unreadable */
    clgqa_status status;
    int error_at; /* position of the first failure (size if none) */
    char message[1024];
} slot;

struct clgqa_loader {
    clgqa_dataset *ds;
    int batch_size;
    clgqa_order ordering; /* dataset order or shuffled */
    int part, parts; /* clgqa_loader_shard; 0 of 1 by default */
    int pixel_mode; /* clgqa_loader_use_pixels */
    size_t sample_floats, num_batches;
    size_t *order; /* this epoch's sample order */
    long epoch;
    int started;

    pthread_mutex_t lock;
    pthread_cond_t work;  /* workers wait here for samples to load */
    pthread_cond_t ready; /* the consumer waits here for a batch or idle workers */
    slot *slots;
    int depth;
    size_t next_claim;   /* the batch whose chunks are being handed out */
    size_t next_consume; /* next batch the consumer will take */
    slot *held;          /* the batch the consumer has now, released on its next call */
    int in_flight;       /* chunks being loaded */
    /* Bumped by start and destroy; workers loading an older generation stop
     * early and their work is dropped. Read without the lock between samples. */
    _Atomic unsigned long generation;
    int stopping;
    pthread_t *threads;
    int thread_count;
    double wait_seconds;
};

/* The slot of batch next_claim, begun if its slot is free; NULL when that
 * slot still holds an older batch. Called with the lock held. The batch is
 * never fully claimed here: claiming its last chunk moves next_claim on. */
static slot *claimable_slot(clgqa_loader *ld) {
    if (!ld->started || ld->next_claim >= ld->num_batches)
        return NULL;
    slot *s = &ld->slots[ld->next_claim % (size_t)ld->depth];
    if (s->state == SLOT_FILLING && s->batch == ld->next_claim)
        return s;
    if (s->state != SLOT_FREE)
        return NULL;
    size_t left = ld->ds->count - ld->next_claim * (size_t)ld->batch_size;
    int whole = left < (size_t)ld->batch_size ? (int)left : ld->batch_size;
    s->state = SLOT_FILLING;
    s->batch = ld->next_claim;
    s->epoch = ld->epoch;
    s->generation = atomic_load(&ld->generation);
    s->replicated = ld->parts > 1 && whole < ld->parts;
    s->first = s->replicated ? 0 : (int)((long)whole * ld->part / ld->parts);
    s->size = s->replicated ? whole : (int)((long)whole * (ld->part + 1) / ld->parts) - s->first;
    s->claimed = s->finished = 0;
    s->status = CLGQA_OK;
    s->error_at = s->size;
    return s;
}

/* Loads positions first..first+n-1 of s (the lock is not held). Returns the
 * first failure's position (n + first if none) with its status in *status. */
static int load_chunk(clgqa_loader *ld, slot *s, int first, int n, clgqa_status *status) {
    clgqa_dataset *ds = ld->ds;
    int skip = (ds->opt.flags & CLGQA_DATASET_SKIP_UNREADABLE) && ds->paths;
    *status = CLGQA_OK;
    for (int i = first; i < first + n; i++) {
        if (atomic_load(&ld->generation) != s->generation)
            return first + n; /* abandoned: the result will be dropped */
        size_t sample = ld->order[s->batch * (size_t)ld->batch_size + (size_t)(s->first + i)];
        s->kept[i] = 0;
        if (skip && atomic_load(&ds->unreadable[sample]))
            continue;
        clgqa_status st =
            ld->pixel_mode
                ? clgqa_dataset_get_pixels(ds, sample, s->epoch,
                                           s->pixels + (size_t)i * ld->sample_floats,
                                           s->labels + i)
                : clgqa_dataset_get(ds, sample, s->epoch, s->images + (size_t)i * ld->sample_floats,
                                    s->labels + i);
        if (st == CLGQA_OK) {
            s->kept[i] = 1;
        } else if (skip && (st == CLGQA_ERR_IO || st == CLGQA_ERR_FORMAT)) {
            if (!atomic_exchange(&ds->unreadable[sample], 1))
                atomic_fetch_add(&ds->skipped, 1);
        } else {
            *status = st;
            return i;
        }
    }
    return first + n;
}

static void *worker_main(void *arg) {
    clgqa_loader *ld = arg;
    pthread_mutex_lock(&ld->lock);
    for (;;) {
        slot *s = NULL;
        while (!ld->stopping && !(s = claimable_slot(ld)))
            pthread_cond_wait(&ld->work, &ld->lock);
        if (ld->stopping)
            break;
        int first = s->claimed;
        int n = s->size - first < CHUNK ? s->size - first : CHUNK;
        s->claimed += n;
        if (s->claimed == s->size)
            ld->next_claim++;
        ld->in_flight++;
        pthread_mutex_unlock(&ld->lock);

        clgqa_status status;
        int failed_at = load_chunk(ld, s, first, n, &status);

        pthread_mutex_lock(&ld->lock);
        ld->in_flight--;
        if (s->generation == atomic_load(&ld->generation)) {
            if (status != CLGQA_OK && failed_at < s->error_at) {
                s->status = status;
                s->error_at = failed_at;
                snprintf(s->message, sizeof s->message, "%s", clgqa_error_message());
            }
            s->finished += n;
            if (s->finished == s->size)
                s->state = SLOT_READY;
        }
        pthread_cond_broadcast(&ld->ready);
    }
    pthread_mutex_unlock(&ld->lock);
    return NULL;
}

clgqa_status clgqa_loader_create(clgqa_dataset *ds, int batch_size, clgqa_order order, int threads,
                                 clgqa_loader **out) {
    *out = NULL;
    if (batch_size < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "batch_size must be positive, not %d",
                          batch_size);
    if (threads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online < 1 ? 1 : online > MAX_THREADS ? MAX_THREADS : (int)online;
    }
    clgqa_loader *ld = calloc(1, sizeof *ld);
    if (!ld)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a loader");
    pthread_mutex_init(&ld->lock, NULL);
    pthread_cond_init(&ld->work, NULL);
    pthread_cond_init(&ld->ready, NULL);
    atomic_init(&ld->generation, 0);
    ld->ds = ds;
    ld->batch_size = batch_size;
    ld->ordering = order;
    ld->parts = 1;
    ld->sample_floats = (size_t)ds->opt.in_chans * (size_t)ds->opt.img_size *
                        (size_t)ds->opt.img_size;
    ld->num_batches = (ds->count + (size_t)batch_size - 1) / (size_t)batch_size;
    /* The batch being loaded, two ready ahead, and the one the consumer holds. */
    ld->depth = 4;
    ld->order = malloc(sizeof(size_t) * ds->count);
    ld->slots = calloc((size_t)ld->depth, sizeof *ld->slots);
    ld->threads = calloc((size_t)threads, sizeof *ld->threads);
    int ok = ld->order && ld->slots && ld->threads;
    for (int i = 0; ok && i < ld->depth; i++) {
        ld->slots[i].images = malloc(sizeof(float) * ld->sample_floats * (size_t)batch_size);
        ld->slots[i].labels = malloc(sizeof(int32_t) * (size_t)batch_size);
        ld->slots[i].kept = malloc((size_t)batch_size);
        ok = ld->slots[i].images && ld->slots[i].labels && ld->slots[i].kept;
    }
    if (!ok) {
        clgqa_loader_destroy(ld);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate 4 batches of %d samples",
                          batch_size);
    }
    for (int i = 0; i < threads; i++) {
        int err = pthread_create(&ld->threads[i], NULL, worker_main, ld);
        if (err != 0) {
            clgqa_loader_destroy(ld);
            /* EAGAIN: no memory for the thread's stack (e.g. under ulimit -v)
             * or the process's thread limit. */
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot start loader thread %d: %s (no "
                              "memory for its stack, or too many threads: see ulimit -v and "
                              "ulimit -u)", i, strerror(err));
        }
        ld->thread_count++;
    }
    *out = ld;
    return CLGQA_OK;
}

/* Fisher-Yates with the CLGQA_RNG_SHUFFLE stream of the epoch: draw i is a
 * 64-bit number from elements 2i and 2i+1 (modulo bias below n / 2^64). */
static void make_order(clgqa_loader *ld) {
    size_t n = ld->ds->count;
    for (size_t i = 0; i < n; i++)
        ld->order[i] = i;
    if (ld->ordering == CLGQA_ORDER_DATASET)
        return;
    uint64_t seed = ld->ds->opt.seed;
    uint64_t stream = clgqa_stream_id(CLGQA_RNG_SHUFFLE, 0, (uint64_t)ld->epoch);
    for (size_t i = n - 1; i > 0; i--) {
        uint64_t r = (uint64_t)clgqa_host_random_bits(seed, stream, 2 * (uint64_t)i) << 32 |
                     clgqa_host_random_bits(seed, stream, 2 * (uint64_t)i + 1);
        size_t j = (size_t)(r % (i + 1));
        size_t t = ld->order[i];
        ld->order[i] = ld->order[j];
        ld->order[j] = t;
    }
}

clgqa_status clgqa_loader_shard(clgqa_loader *ld, int part, int parts) {
    if (parts < 1 || part < 0 || part >= parts)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "loader shard %d of %d is out of range", part,
                          parts);
    if (ld->started)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_loader_shard after clgqa_loader_start");
    ld->part = part;
    ld->parts = parts;
    return CLGQA_OK;
}

clgqa_status clgqa_loader_use_pixels(clgqa_loader *ld) {
    if (ld->started)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_loader_use_pixels after clgqa_loader_start");
    for (int i = 0; i < ld->depth && !ld->pixel_mode; i++) {
        uint8_t *pixels = malloc(ld->sample_floats * (size_t)ld->batch_size);
        if (!pixels)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate 4 batches of %d samples",
                              ld->batch_size);
        free(ld->slots[i].images);
        ld->slots[i].images = NULL;
        ld->slots[i].pixels = pixels;
    }
    ld->pixel_mode = 1;
    return CLGQA_OK;
}

clgqa_status clgqa_loader_start(clgqa_loader *ld, long epoch) {
    return clgqa_loader_start_at(ld, epoch, 0);
}

clgqa_status clgqa_loader_start_at(clgqa_loader *ld, long epoch, size_t first_batch) {
    if (epoch < 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "epoch must not be negative, not %ld", epoch);
    if (first_batch > ld->num_batches)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "batch %zu is past the epoch's %zu batches",
                          first_batch, ld->num_batches);
    pthread_mutex_lock(&ld->lock);
    atomic_fetch_add(&ld->generation, 1);
    while (ld->in_flight > 0) /* the order must not change under a worker */
        pthread_cond_wait(&ld->ready, &ld->lock);
    for (int i = 0; i < ld->depth; i++)
        ld->slots[i].state = SLOT_FREE;
    ld->held = NULL;
    ld->epoch = epoch;
    make_order(ld);
    ld->next_claim = ld->next_consume = first_batch;
    ld->started = 1;
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->lock);
    return CLGQA_OK;
}

size_t clgqa_loader_num_batches(const clgqa_loader *ld) { return ld->num_batches; }

/* Closes the gaps left by skipped samples; returns the samples kept. */
static int compact(const clgqa_loader *ld, slot *s) {
    int count = 0;
    for (int i = 0; i < s->size; i++) {
        if (!s->kept[i])
            continue;
        if (count != i) {
            if (ld->pixel_mode)
                memmove(s->pixels + (size_t)count * ld->sample_floats,
                        s->pixels + (size_t)i * ld->sample_floats, ld->sample_floats);
            else
                memmove(s->images + (size_t)count * ld->sample_floats,
                        s->images + (size_t)i * ld->sample_floats,
                        sizeof(float) * ld->sample_floats);
            s->labels[count] = s->labels[i];
        }
        count++;
    }
    return count;
}

clgqa_status clgqa_loader_next(clgqa_loader *ld, clgqa_batch *batch) {
    memset(batch, 0, sizeof *batch);
    pthread_mutex_lock(&ld->lock);
    if (!ld->started) {
        pthread_mutex_unlock(&ld->lock);
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_loader_next before clgqa_loader_start");
    }
    if (ld->held) {
        ld->held->state = SLOT_FREE;
        ld->held = NULL;
        pthread_cond_broadcast(&ld->work);
    }
    while (ld->next_consume < ld->num_batches) {
        slot *s = &ld->slots[ld->next_consume % (size_t)ld->depth];
        if (!(s->state == SLOT_READY && s->batch == ld->next_consume)) {
            double start = clgqa_clock_seconds();
            while (!(s->state == SLOT_READY && s->batch == ld->next_consume))
                pthread_cond_wait(&ld->ready, &ld->lock);
            ld->wait_seconds += clgqa_clock_seconds() - start;
        }
        ld->next_consume++;
        if (s->status != CLGQA_OK) {
            /* Re-raise the worker's failure on this thread, before the slot
             * can be reused. */
            clgqa_status status = clgqa_fail(s->status, "%s", s->message);
            s->state = SLOT_FREE;
            pthread_cond_broadcast(&ld->work);
            pthread_mutex_unlock(&ld->lock);
            return status;
        }
        int count = compact(ld, s);
        if (count == 0) { /* every image of the batch was skipped */
            s->state = SLOT_FREE;
            pthread_cond_broadcast(&ld->work);
            continue;
        }
        ld->held = s;
        batch->images = s->images;
        batch->pixels = s->pixels;
        batch->labels = s->labels;
        batch->count = count;
        batch->index = (long)s->batch;
        batch->replicated = s->replicated;
        batch->first = s->first;
        break;
    }
    pthread_mutex_unlock(&ld->lock);
    return CLGQA_OK;
}

double clgqa_loader_wait_seconds(const clgqa_loader *ld) { return ld->wait_seconds; }

int clgqa_loader_depth(const clgqa_loader *ld) { return ld->depth; }

int clgqa_loader_batches_ready(clgqa_loader *ld) {
    pthread_mutex_lock(&ld->lock);
    int ready = 0;
    for (int i = 0; i < ld->depth; i++) {
        const slot *s = &ld->slots[i];
        ready += s != ld->held && s->state == SLOT_READY && s->batch >= ld->next_consume;
    }
    pthread_mutex_unlock(&ld->lock);
    return ready;
}

void clgqa_loader_destroy(clgqa_loader *ld) {
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
    ld->stopping = 1;
    atomic_fetch_add(&ld->generation, 1);
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->lock);
    for (int i = 0; i < ld->thread_count; i++)
        pthread_join(ld->threads[i], NULL);
    if (ld->slots)
        for (int i = 0; i < ld->depth; i++) {
            free(ld->slots[i].images);
            free(ld->slots[i].pixels);
            free(ld->slots[i].labels);
            free(ld->slots[i].kept);
        }
    pthread_mutex_destroy(&ld->lock);
    pthread_cond_destroy(&ld->work);
    pthread_cond_destroy(&ld->ready);
    free(ld->slots);
    free(ld->threads);
    free(ld->order);
    free(ld);
}
