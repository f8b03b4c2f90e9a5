/* What each attention scheme does, one row per scheme (scheme.c): the
 * model, checkpoints, the config and the trainer ask these instead of
 * naming schemes. */
#ifndef CLGQA_SCHEME_H
#define CLGQA_SCHEME_H

#include "clgqa/model.h"
#include "fail.h"

typedef struct clgqa_scheme_traits {
    const char *name;     /* the config's att_scheme */
    int kv_per_head;      /* G = H whatever num_kv_heads says (mhsa) */
    int dynamic;          /* the grouping follows the key norms (kdgqa, dgqa_*) */
    int windowed;         /* training regroups every window_size steps only (dgqa_*) */
    int has_cache;        /* a DGQA cache and split per layer, in checkpoints (dgqa_*) */
    int perturbs;         /* noise on the attention output (pgqa) */
} clgqa_scheme_traits;

/* The row of `scheme` (a row named "unknown" outside the enum). */
const clgqa_scheme_traits *clgqa_scheme_traits_of(clgqa_scheme scheme);
/* "mhsa, gqa, ... or pgqa", for messages. */
const char *clgqa_scheme_list(void);

#endif
