/* LayerNorm over the last dimension, forward and backward.
 *
 * The forwards run one work-group per row, the backward one per chunk of
 * rows (get_local_size(0) a power of two); each work-item strides over a
 * row and partial results are combined by a fixed tree in local memory, so
 * results never depend on scheduling. GPUs take a backward variant that
 * works on several rows of the chunk at once (layernorm_backward_teams, at
 * the end), with a fixed order as well. */

/* Rows are read as float4 where every row starts 16-byte aligned (the
 * launcher passes quads = cols / 4 then, 0 otherwise): work-item k takes
 * quads k, k + size, ... and then the scalar elements from 4 * quads on.
 * Sums add a quad's lanes one by one in a fixed order, so they stay
 * deterministic; they use scalar arithmetic on the loaded lanes because
 * Oclgrind 21.10 crashes on reductions of vector arithmetic. */
static float quad_sum(const float4 v) { return (v.x + v.y) + (v.z + v.w); }
static float squared_deviation(const float x, const float mean) {
    const float d = x - mean;
    return d * d;
}

/* A row's LayerNorm once the sum of its elements is known: out = (in -
 * mean) * rstd * weight + bias, with the variance from a second pass over
 * (in - mean)^2 (no cancellation as with E[x^2] - mean^2); work-item lid
 * reads the elements it read for the sum. `y` may alias `x` (in float
 * storage): every read of the row happens before the barriers in
 * group_sum, except the last pass's own element. y, the output, is an
 * activation (ACT: half under -DCLGQA_HALF, src/ops/storage.h); x, the
 * residual stream, and the statistics are float. */
static void layernorm_row(__global const float *x, __global ACT *y, __global const float *w,
                          __global const float *b, const uint cols, const uint quads,
                          const float eps, const float sum, __local float *scratch,
                          __global float *mean, __global float *rstd) {
    const uint lid = get_local_id(0), size = get_local_size(0);
    __global const float4 *x4 = (__global const float4 *)x, *w4 = (__global const float4 *)w,
                          *b4 = (__global const float4 *)b;
    const float row_mean = group_sum(scratch, sum) / cols;

    float squares = 0.0f;
    for (uint q = lid; q < quads; q += size) {
        const float4 v = x4[q];
        squares += (squared_deviation(v.x, row_mean) + squared_deviation(v.y, row_mean)) +
                   (squared_deviation(v.z, row_mean) + squared_deviation(v.w, row_mean));
    }
    for (uint c = 4 * quads + lid; c < cols; c += size)
        squares += squared_deviation(x[c], row_mean);
    const float row_rstd = rsqrt(group_sum(scratch, squares) / cols + eps);

    for (uint q = lid; q < quads; q += size)
        act_store4((x4[q] - row_mean) * row_rstd * w4[q] + b4[q], y, q);
    for (uint c = 4 * quads + lid; c < cols; c += size)
        act_store((x[c] - row_mean) * row_rstd * w[c] + b[c], y, c);
    if (lid == 0) {
        *mean = row_mean;
        *rstd = row_rstd;
    }
}

__kernel void layernorm_forward(__global const float *in, const uint in_off, __global ACT *out,
                                const uint out_off, __global float *mean, const uint mean_off,
                                __global float *rstd, const uint rstd_off,
                                __global const float *weight, const uint weight_off,
                                __global const float *bias, const uint bias_off, const uint cols,
                                const uint quads, const float eps, __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *x = in + in_off + row * cols;
    __global const float4 *x4 = (__global const float4 *)x;
    float sum = 0.0f;
    for (uint q = lid; q < quads; q += size)
        sum += quad_sum(x4[q]);
    for (uint c = 4 * quads + lid; c < cols; c += size)
        sum += x[c];
    layernorm_row(x, out + out_off + row * cols, weight + weight_off, bias + bias_off, cols, quads,
                  eps, sum, scratch, mean + mean_off + row, rstd + rstd_off + row);
}

/* A Linear's bias and the residual add after its GEMM, in PyTorch's order
 * (x = residual + (linear + linear_bias) * scale), stored to x, then the
 * LayerNorm that reads x (out, mean, rstd as layernorm_forward), in one pass
 * over the row: the sum for the mean is taken as x is written, and
 * work-item lid reads back only what it wrote. x may alias linear; out
 * aliases neither. scale is the row's sample's drop-path scale,
 * branch_scales[row / rows_per_scale], when use_scales, else 1 (a product
 * by 1 is exact, so the unscaled sum is PyTorch's). */
__kernel void residual_layernorm_forward(__global float *x, const uint x_off,
                                         __global const float *residual, const uint residual_off,
                                         __global const float *linear, const uint linear_off,
                                         __global const float *linear_bias,
                                         const uint linear_bias_off,
                                         __global const float *branch_scales,
                                         const uint branch_scales_off, const uint use_scales,
                                         const uint rows_per_scale, __global ACT *out,
                                         const uint out_off, __global float *mean,
                                         const uint mean_off, __global float *rstd,
                                         const uint rstd_off, __global const float *weight,
                                         const uint weight_off, __global const float *bias,
                                         const uint bias_off, const uint cols, const uint quads,
                                         const float eps, __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global float *xr = x + x_off + row * cols;
    __global const float *r = residual + residual_off + row * cols;
    __global const float *l = linear + linear_off + row * cols, *lb = linear_bias + linear_bias_off;
    __global const float4 *r4 = (__global const float4 *)r, *l4 = (__global const float4 *)l,
                          *lb4 = (__global const float4 *)lb;
    const float s = use_scales ? branch_scales[branch_scales_off + row / rows_per_scale] : 1.0f;
    float sum = 0.0f;
    for (uint q = lid; q < quads; q += size) {
        /* Lane by lane, in scalar arithmetic (see the top of the file). */
        const float4 rq = r4[q], lq = l4[q], lbq = lb4[q];
        const float v0 = rq.x + (lq.x + lbq.x) * s, v1 = rq.y + (lq.y + lbq.y) * s;
        const float v2 = rq.z + (lq.z + lbq.z) * s, v3 = rq.w + (lq.w + lbq.w) * s;
        xr[4 * q] = v0;
        xr[4 * q + 1] = v1;
        xr[4 * q + 2] = v2;
        xr[4 * q + 3] = v3;
        sum += (v0 + v1) + (v2 + v3);
    }
    for (uint c = 4 * quads + lid; c < cols; c += size) {
        const float v = r[c] + (l[c] + lb[c]) * s;
        xr[c] = v;
        sum += v;
    }
    layernorm_row(xr, out + out_off + row * cols, weight + weight_off, bias + bias_off, cols,
                  quads, eps, sum, scratch, mean + mean_off + row, rstd + rstd_off + row);
}

/* Two sums over the group at once (one tree, half the barriers of two
 * group_sum calls); `scratch` holds 2 * get_local_size(0) floats. */
static void group_sum2(__local float *scratch, float *a, float *b) {
    const uint lid = get_local_id(0), size = get_local_size(0);
    scratch[lid] = *a;
    scratch[size + lid] = *b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint stride = size / 2; stride > 0; stride /= 2) {
        if (lid < stride) {
            scratch[lid] += scratch[lid + stride];
            scratch[size + lid] += scratch[size + lid + stride];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *a = scratch[0];
    *b = scratch[size];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next row */
}

/* Pass 1 of one element: g = dout * weight and g * xhat, xhat = (in -
 * mean) * rstd, added to the row's two sums; dout * xhat and dout to
 * column c's parameter gradients. */
static void backward_terms(const float dy, const float w, const float x, const float mean,
                           const float rstd, float *g_sum, float *g_xhat_sum,
                           __local float *sums, const uint cols, const uint c) {
    const float xhat = (x - mean) * rstd, g = dy * w;
    *g_sum += g;
    *g_xhat_sum += g * xhat;
    sums[c] += dy * xhat;
    sums[cols + c] += dy;
}

/* Pass 2 of one element: din + rstd * (g - mean(g) - xhat * mean(g xhat)),
 * added to the column's residual sum. */
static float backward_din(const float din, const float dy, const float w, const float x,
                          const float mean, const float rstd, const float g_mean,
                          const float g_xhat_mean, __local float *sums, const uint cols,
                          const uint c) {
    const float xhat = (x - mean) * rstd;
    const float updated = din + rstd * (dy * w - g_mean - xhat * g_xhat_mean);
    sums[2 * cols + c] += updated;
    return updated;
}

/* LayerNorm backward, one pass per row chunk: work-group k owns the rows
 * [k * chunk_rows, (k + 1) * chunk_rows) and every column. For each row
 *     din += rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * weight,
 * with the row's two means from group_sum2, float4 as the forward. The
 * chunk's column sums of dout * xhat (dweight), dout (dbias) and, when
 * `residual_sums`, of the updated din are stored as partials [chunks, cols]:
 * dweight's at params, dbias's at params + chunks * cols, din's at
 * residual. din is the gradient of the residual stream, so its column sums
 * are the bias gradient of the Linear whose output was added into it. The
 * chunk's sums sit in local memory as `sums` [3, cols] (dweight, dbias,
 * din); each column belongs to one work-item for the whole chunk, so no
 * barrier guards them. */
__kernel void layernorm_backward(__global float *din, const uint din_off,
                                 __global float *params, const uint params_off,
                                 __global float *residual, const uint residual_off,
                                 const uint residual_sums, __global const float *dout,
                                 const uint dout_off, __global const float *in, const uint in_off,
                                 __global const float *mean, const uint mean_off,
                                 __global const float *rstd, const uint rstd_off,
                                 __global const float *weight, const uint weight_off,
                                 const uint rows, const uint cols, const uint quads,
                                 const uint chunk_rows, __local float *scratch,
                                 __local float *sums) {
    const uint chunk = get_group_id(0), chunks = get_num_groups(0);
    const uint lid = get_local_id(0), size = get_local_size(0);
    __global const float *w = weight + weight_off;
    __global const float4 *w4 = (__global const float4 *)w;
    /* Work-item lid owns the columns of quads lid, lid + size, ... and the
     * scalar columns 4 * quads + lid, ... (the row loops' split). */
    for (uint q = lid; q < quads; q += size)
        for (uint c = 4 * q; c < 4 * q + 4; c++)
            sums[c] = sums[cols + c] = sums[2 * cols + c] = 0.0f;
    for (uint c = 4 * quads + lid; c < cols; c += size)
        sums[c] = sums[cols + c] = sums[2 * cols + c] = 0.0f;

    const uint first = min(rows, chunk * chunk_rows), last = min(rows, first + chunk_rows);
    for (uint row = first; row < last; row++) {
        __global const float *dy = dout + dout_off + row * cols, *x = in + in_off + row * cols;
        __global float *dx = din + din_off + row * cols;
        __global const float4 *dy4 = (__global const float4 *)dy, *x4 = (__global const float4 *)x;
        __global const float4 *dx4 = (__global const float4 *)dx;
        const float row_mean = mean[mean_off + row], row_rstd = rstd[rstd_off + row];

        float g_sum = 0.0f, g_xhat_sum = 0.0f;
        for (uint q = lid; q < quads; q += size) {
            const float4 dyq = dy4[q], wq = w4[q], xq = x4[q];
            backward_terms(dyq.x, wq.x, xq.x, row_mean, row_rstd, &g_sum, &g_xhat_sum, sums, cols,
                           4 * q);
            backward_terms(dyq.y, wq.y, xq.y, row_mean, row_rstd, &g_sum, &g_xhat_sum, sums, cols,
                           4 * q + 1);
            backward_terms(dyq.z, wq.z, xq.z, row_mean, row_rstd, &g_sum, &g_xhat_sum, sums, cols,
                           4 * q + 2);
            backward_terms(dyq.w, wq.w, xq.w, row_mean, row_rstd, &g_sum, &g_xhat_sum, sums, cols,
                           4 * q + 3);
        }
        for (uint c = 4 * quads + lid; c < cols; c += size)
            backward_terms(dy[c], w[c], x[c], row_mean, row_rstd, &g_sum, &g_xhat_sum, sums, cols,
                           c);
        group_sum2(scratch, &g_sum, &g_xhat_sum);
        const float g_mean = g_sum / cols, g_xhat_mean = g_xhat_sum / cols;

        for (uint q = lid; q < quads; q += size) {
            /* Stored lane by lane: Oclgrind 21.10 reports a float4 built
             * from these lanes as uninitialised. */
            const float4 dyq = dy4[q], wq = w4[q], xq = x4[q], dxq = dx4[q];
            dx[4 * q] = backward_din(dxq.x, dyq.x, wq.x, xq.x, row_mean, row_rstd, g_mean,
                                     g_xhat_mean, sums, cols, 4 * q);
            dx[4 * q + 1] = backward_din(dxq.y, dyq.y, wq.y, xq.y, row_mean, row_rstd, g_mean,
                                         g_xhat_mean, sums, cols, 4 * q + 1);
            dx[4 * q + 2] = backward_din(dxq.z, dyq.z, wq.z, xq.z, row_mean, row_rstd, g_mean,
                                         g_xhat_mean, sums, cols, 4 * q + 2);
            dx[4 * q + 3] = backward_din(dxq.w, dyq.w, wq.w, xq.w, row_mean, row_rstd, g_mean,
                                         g_xhat_mean, sums, cols, 4 * q + 3);
        }
        for (uint c = 4 * quads + lid; c < cols; c += size)
            dx[c] = backward_din(dx[c], dy[c], w[c], x[c], row_mean, row_rstd, g_mean, g_xhat_mean,
                                 sums, cols, c);
    }

    __global float *dweight = params + params_off + chunk * cols;
    __global float *dbias = params + params_off + (chunks + chunk) * cols;
    __global float *dres = residual + residual_off + chunk * cols;
    for (uint q = lid; q < quads; q += size)
        for (uint c = 4 * q; c < 4 * q + 4; c++) {
            dweight[c] = sums[c];
            dbias[c] = sums[cols + c];
            if (residual_sums)
                dres[c] = sums[2 * cols + c];
        }
    for (uint c = 4 * quads + lid; c < cols; c += size) {
        dweight[c] = sums[c];
        dbias[c] = sums[cols + c];
        if (residual_sums)
            dres[c] = sums[2 * cols + c];
    }
}

/* ---- LayerNorm backward on GPUs: a row per team of work-items ----
 * layernorm_backward crosses a tree of log2(size) + 2 barriers on every
 * row: 9 for ViT-S's 384 columns in the groups of a float4 per work-item
 * (128) that GPUs would want, a GPU waiting at each. This variant computes
 * the same thing with a work-group of several teams of `team` work-items (a
 * power of two, at least 4); each team takes its own row of the chunk, so a
 * group works on get_local_size(0) / team rows at once, and the row's two
 * sums need one barrier: each work-item stores its partial sums and then
 * reads its team's `team` partials in order, as float4, instead of climbing
 * a tree. The partials alternate between two halves of `scratch` from round
 * to round, so the next round's stores need no second barrier.
 *
 * Work-item lt of a team owns up to LN_TEAM_SLOTS columns (slot j: quad
 * lt + (j / 4) * team, lane j % 4, on the float4 path; column lt + j *
 * team otherwise) and keeps their weights and the chunk's three column
 * sums in private memory (64 floats); at the end of the chunk the teams'
 * sums are added in team order through `sums` [teams, cols]. */
#define LN_TEAM_QUADS 4
#define LN_TEAM_SLOTS (4 * LN_TEAM_QUADS)

/* The column of slot j of work-item lt (above); cols or more: none. */
static uint team_column(const uint quads, const uint team, const uint lt, const uint j) {
    return quads ? 4 * (lt + (j / 4) * team) + j % 4 : lt + j * team;
}

/* Pass 1 of one element, as backward_terms with the column sums private. */
static void team_terms(const float dy, const float w, const float x, const float mean,
                       const float rstd, float *g_sum, float *g_xhat_sum, float *dweight,
                       float *dbias) {
    const float xhat = (x - mean) * rstd, g = dy * w;
    *g_sum += g;
    *g_xhat_sum += g * xhat;
    *dweight += dy * xhat;
    *dbias += dy;
}

/* Pass 2 of one element, as backward_din with the column sum private. */
static float team_din(const float din, const float dy, const float w, const float x,
                      const float mean, const float rstd, const float g_mean,
                      const float g_xhat_mean, float *dres) {
    const float xhat = (x - mean) * rstd;
    const float updated = din + rstd * (dy * w - g_mean - xhat * g_xhat_mean);
    *dres += updated;
    return updated;
}

/* The sum of a team's `team` partials (16-byte aligned) in order. */
static float team_sum(__local const float *partials, const uint team) {
    __local const float4 *p4 = (__local const float4 *)partials;
    float sum = 0.0f;
    for (uint i = 0; i < team / 4; i++) {
        const float4 v = p4[i];
        sum = (((sum + v.x) + v.y) + v.z) + v.w;
    }
    return sum;
}

/* out[c] = the teams' private column sums `mine`, added in team order
 * through `sums` (stored only when `store`). Every work-item calls it. */
static void store_team_sums(__local float *sums, const float *mine, __global float *out,
                            const uint cols, const uint quads, const uint team,
                            const uint store) {
    const uint lid = get_local_id(0), size = get_local_size(0);
    const uint t = lid / team, lt = lid & (team - 1), teams = size / team;
    for (uint j = 0; j < LN_TEAM_SLOTS; j++) {
        const uint c = team_column(quads, team, lt, j);
        if (c < cols)
            sums[t * cols + c] = mine[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (store)
        for (uint c = lid; c < cols; c += size) {
            float sum = 0.0f;
            for (uint u = 0; u < teams; u++)
                sum += sums[u * cols + c];
            out[c] = sum;
        }
    barrier(CLK_LOCAL_MEM_FENCE); /* sums is reused by the next call */
}

/* Arguments and results as layernorm_backward; `team` as above, cols <=
 * LN_TEAM_SLOTS * team; scratch holds 4 * get_local_size(0) floats, sums
 * teams * cols. */
__kernel void layernorm_backward_teams(__global float *din, const uint din_off,
                                       __global float *params, const uint params_off,
                                       __global float *residual, const uint residual_off,
                                       const uint residual_sums, __global const float *dout,
                                       const uint dout_off, __global const float *in,
                                       const uint in_off, __global const float *mean,
                                       const uint mean_off, __global const float *rstd,
                                       const uint rstd_off, __global const float *weight,
                                       const uint weight_off, const uint rows, const uint cols,
                                       const uint quads, const uint chunk_rows, const uint team,
                                       __local float4 *scratch, __local float *sums) {
    const uint chunk = get_group_id(0), chunks = get_num_groups(0);
    const uint lid = get_local_id(0), size = get_local_size(0);
    const uint t = lid / team, lt = lid & (team - 1), teams = size / team;
    __global const float *w = weight + weight_off;
    float w_slot[LN_TEAM_SLOTS], dweight[LN_TEAM_SLOTS], dbias[LN_TEAM_SLOTS],
        dres[LN_TEAM_SLOTS];
    for (uint j = 0; j < LN_TEAM_SLOTS; j++) {
        const uint c = team_column(quads, team, lt, j);
        w_slot[j] = c < cols ? w[c] : 0.0f;
        dweight[j] = dbias[j] = dres[j] = 0.0f;
    }

    const uint first = min(rows, chunk * chunk_rows), last = min(rows, first + chunk_rows);
    for (uint base = first, round = 0; base < last; base += teams, round++) {
        const uint row = base + t;
        const int active = row < last; /* the chunk's last round may not fill every team */
        __global const float *dy = dout + dout_off + row * cols, *x = in + in_off + row * cols;
        __global float *dx = din + din_off + row * cols;
        __global const float4 *dy4 = (__global const float4 *)dy, *x4 = (__global const float4 *)x;
        __global const float4 *dx4 = (__global const float4 *)dx;
        const float row_mean = active ? mean[mean_off + row] : 0.0f;
        const float row_rstd = active ? rstd[rstd_off + row] : 0.0f;

        float g_sum = 0.0f, g_xhat_sum = 0.0f;
        if (active && quads)
            for (uint i = 0; i < LN_TEAM_QUADS; i++) {
                const uint q = lt + i * team, j = 4 * i;
                if (q < quads) {
                    const float4 dyq = dy4[q], xq = x4[q];
                    team_terms(dyq.x, w_slot[j], xq.x, row_mean, row_rstd, &g_sum, &g_xhat_sum,
                               &dweight[j], &dbias[j]);
                    team_terms(dyq.y, w_slot[j + 1], xq.y, row_mean, row_rstd, &g_sum,
                               &g_xhat_sum, &dweight[j + 1], &dbias[j + 1]);
                    team_terms(dyq.z, w_slot[j + 2], xq.z, row_mean, row_rstd, &g_sum,
                               &g_xhat_sum, &dweight[j + 2], &dbias[j + 2]);
                    team_terms(dyq.w, w_slot[j + 3], xq.w, row_mean, row_rstd, &g_sum,
                               &g_xhat_sum, &dweight[j + 3], &dbias[j + 3]);
                }
            }
        else if (active)
            for (uint j = 0; j < LN_TEAM_SLOTS; j++) {
                const uint c = lt + j * team;
                if (c < cols)
                    team_terms(dy[c], w_slot[j], x[c], row_mean, row_rstd, &g_sum, &g_xhat_sum,
                               &dweight[j], &dbias[j]);
            }

        /* The team's two sums: partials [2, size] in this round's half. */
        __local float *partials = (__local float *)scratch + (round % 2) * 2 * size;
        partials[lid] = g_sum;
        partials[size + lid] = g_xhat_sum;
        barrier(CLK_LOCAL_MEM_FENCE);
        const float g_mean = team_sum(partials + t * team, team) / cols;
        const float g_xhat_mean = team_sum(partials + size + t * team, team) / cols;

        if (active && quads)
            for (uint i = 0; i < LN_TEAM_QUADS; i++) {
                const uint q = lt + i * team, j = 4 * i;
                if (q < quads) {
                    /* Stored lane by lane, as layernorm_backward. */
                    const float4 dyq = dy4[q], xq = x4[q], dxq = dx4[q];
                    dx[4 * q] = team_din(dxq.x, dyq.x, w_slot[j], xq.x, row_mean, row_rstd,
                                         g_mean, g_xhat_mean, &dres[j]);
                    dx[4 * q + 1] = team_din(dxq.y, dyq.y, w_slot[j + 1], xq.y, row_mean,
                                             row_rstd, g_mean, g_xhat_mean, &dres[j + 1]);
                    dx[4 * q + 2] = team_din(dxq.z, dyq.z, w_slot[j + 2], xq.z, row_mean,
                                             row_rstd, g_mean, g_xhat_mean, &dres[j + 2]);
                    dx[4 * q + 3] = team_din(dxq.w, dyq.w, w_slot[j + 3], xq.w, row_mean,
                                             row_rstd, g_mean, g_xhat_mean, &dres[j + 3]);
                }
            }
        else if (active)
            for (uint j = 0; j < LN_TEAM_SLOTS; j++) {
                const uint c = lt + j * team;
                if (c < cols)
                    dx[c] = team_din(dx[c], dy[c], w_slot[j], x[c], row_mean, row_rstd, g_mean,
                                     g_xhat_mean, &dres[j]);
            }
    }

    store_team_sums(sums, dweight, params + params_off + chunk * cols, cols, quads, team, 1);
    store_team_sums(sums, dbias, params + params_off + (chunks + chunk) * cols, cols, quads,
                    team, 1);
    store_team_sums(sums, dres, residual + residual_off + chunk * cols, cols, quads, team,
                    residual_sums);
}
