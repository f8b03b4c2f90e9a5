/* The schemes' table (scheme.h), their names, and the check of a model
 * description against the semantics page's shape rules. */
#include "scheme.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* In clgqa_scheme order. */
static const clgqa_scheme_traits schemes[] = {
    /* name         kv_per_head dynamic windowed has_cache perturbs */
    {"mhsa", 1, 0, 0, 0, 0},
    {"gqa", 0, 0, 0, 0, 0},
    {"kdgqa", 0, 1, 0, 0, 0},
    {"dgqa_diff", 0, 1, 1, 1, 0},
    {"dgqa_ema", 0, 1, 1, 1, 0},
    {"pgqa", 0, 0, 0, 0, 1},
};
#define SCHEME_COUNT (sizeof schemes / sizeof schemes[0])

const clgqa_scheme_traits *clgqa_scheme_traits_of(clgqa_scheme scheme) {
    static const clgqa_scheme_traits unknown = {"unknown", 0, 0, 0, 0, 0};
    return (unsigned)scheme < SCHEME_COUNT ? &schemes[scheme] : &unknown;
}

static char scheme_list[128];
static void write_scheme_list(void) {
    for (size_t i = 0; i < SCHEME_COUNT; i++)
        snprintf(scheme_list + strlen(scheme_list), sizeof scheme_list - strlen(scheme_list),
                 "%s%s", i == 0 ? "" : i + 1 == SCHEME_COUNT ? " or " : ", ", schemes[i].name);
}

const char *clgqa_scheme_list(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* any thread may ask first */
    pthread_once(&once, write_scheme_list);
    return scheme_list;
}

const char *clgqa_scheme_name(clgqa_scheme scheme) {
    if ((unsigned)scheme < SCHEME_COUNT)
        return schemes[scheme].name;
    return "unknown";
}

clgqa_status clgqa_scheme_parse(const char *name, clgqa_scheme *out) {
    for (size_t i = 0; i < SCHEME_COUNT; i++) {
        if (strcmp(name, schemes[i].name) == 0) {
            *out = (clgqa_scheme)i;
            return CLGQA_OK;
        }
    }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "unknown attention scheme '%s' (expected %s)", name,
                      clgqa_scheme_list());
}

clgqa_status clgqa_model_desc_check(const clgqa_model_desc *desc) {
    const clgqa_scheme_traits *traits = clgqa_scheme_traits_of(desc->scheme);
    const int kv_heads = traits->kv_per_head ? desc->num_heads : desc->num_kv_heads;
    if (desc->embed_dim < 1 || desc->num_layers < 1 || desc->num_heads < 1 || kv_heads < 1 ||
        desc->img_size < 1 || desc->patch_size < 1 || desc->in_chans < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "sizes must be positive: embed_dim %d, num_layers %d, num_heads %d, num_kv_heads %d, "
                          "img_size %d, patch_size %d, in_chans %d",
                          desc->embed_dim, desc->num_layers, desc->num_heads, kv_heads, desc->img_size,
                          desc->patch_size, desc->in_chans);
    /* Static schemes need G | H; the dynamic ones fall back to the static
     * split H / G (all-equal norms), so they need it too. */
    if (desc->num_heads % kv_heads != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "att_scheme %s: num_heads %d is not a multiple of num_kv_heads %d (query heads are "
                          "split into num_kv_heads equal groups)",
                          clgqa_scheme_name(desc->scheme), desc->num_heads, kv_heads);
    if (desc->embed_dim % desc->num_heads != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "embed_dim %d is not a multiple of num_heads %d", desc->embed_dim,
                          desc->num_heads);
    if (desc->img_size % desc->patch_size != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "img_size %d is not a multiple of patch_size %d", desc->img_size,
                          desc->patch_size);
    /* Beyond these, the model's int sizes (4 * embed_dim, tokens) would
     * overflow; the memory check refuses far smaller models anyway. */
    if (desc->embed_dim > (1 << 20) || desc->img_size / desc->patch_size > 4096)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "embed_dim %d or a patch grid of %d x %d is beyond "
                          "any device (at most %d and 4096)", desc->embed_dim,
                          desc->img_size / desc->patch_size, desc->img_size / desc->patch_size, 1 << 20);
    if (traits->windowed && desc->window_size < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "att_scheme %s: window_size must be >= 1, got %d",
                          traits->name, desc->window_size);
    return CLGQA_OK;
}
