/* expert.cu: SwiGLU experts on the GPU, routed groups and shared experts, forward and
 * backward. Plain-C twin: ffn_cpu.c (same formulas and GEMM order) and the experts
 * and shared stages of moe_cpu.c.
 *   a = x W1, b = x W3, h = silu(a) b, y = h W2           silu(a) = a / (1 + e^-a)
 *   dW2 += h^T dy, dh = dy W2^T, da = dh b sg (1 + a (1 - sg)), db = dh silu(a),
 *   dW1 += x^T da, dW3 += x^T db, dx = da W1^T + db W3^T      (sg = sigmoid(a))
 * GEMMs are bf16 with fp32 compute (gemm.cu); a, b (saved in act_a / act_b), h, dh,
 * da, db, y and dx are stored bf16; the weight gradients dW1, dW3, dW2 are fp32
 * main_grads (moe.h), accumulated by the GEMMs with fp32 C; the SwiGLU kernels compute
 * in fp32, 8 elements a thread.
 *
 * Routed groups, forward: one batch of 2 GEMMs per group (x W1, x W3), one SwiGLU
 * over all rows, one batch of y = h W2. Backward: SwiGLU again (h), a batch of dW2
 * and dh, SwiGLU backward over all rows, a batch of dW1, dW3, dx = da W1^T, and a
 * batch of dx += db W3^T. A batch is one grouped cuBLAS call (or a loop, by mode); it
 * is cut early where it would overflow or where an expert would appear twice (its dW
 * would be accumulated by two problems of one call). Shared experts (width Fs =
 * cfg.shared_ffn, its own) are dense GEMMs over all T tokens, one cublasGemmEx each,
 * expert by expert; their outputs and dx
 * are accumulated by the GEMMs themselves (beta = 1), in expert order.
 */
#include "moe_cuda_priv.cuh"

#define SWIGLU_THREADS 256
#define SWIGLU_MAX_BLOCKS 65536u

static __device__ __forceinline__ float sigmoid_f(float a)
{
    return 1.0f / (1.0f + expf(-a));
}

/* h = silu(a) b over n8 vectors of 8. */
static __global__ void swiglu_kernel(size_t n8, const bf16 *a, const bf16 *b, bf16 *h)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        float x[8], y[8], o[8];
        load8(a + i * 8, x);
        load8(b + i * 8, y);
#pragma unroll
        for (int j = 0; j < 8; j++)
            o[j] = x[j] * sigmoid_f(x[j]) * y[j];
        store8(h + i * 8, o);
    }
}

/* s2 = dh on entry; on return s1 = da, s2 = db (ffn_cpu.c's swiglu_bwd). */
static __global__ void swiglu_bwd_kernel(size_t n8, const bf16 *a, const bf16 *b, bf16 *s1,
                                         bf16 *s2)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        float x[8], y[8], dh[8], da[8], db[8];
        load8(a + i * 8, x);
        load8(b + i * 8, y);
        load8(s2 + i * 8, dh);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float sg = sigmoid_f(x[j]);
            da[j] = dh[j] * y[j] * sg * (1.0f + x[j] * (1.0f - sg));
            db[j] = dh[j] * x[j] * sg;
        }
        store8(s1 + i * 8, da);
        store8(s2 + i * 8, db);
    }
}

/* n elements (a multiple of 8: F % 8 == 0). */
static int swiglu(const struct moe_cuda_priv *p, size_t n, const bf16 *a, const bf16 *b,
                  bf16 *h)
{
    unsigned nb = blocks_for(n / 8, SWIGLU_THREADS);
    swiglu_kernel<<<nb < SWIGLU_MAX_BLOCKS ? nb : SWIGLU_MAX_BLOCKS, SWIGLU_THREADS, 0,
                    p->stream>>>(n / 8, a, b, h);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

static int swiglu_bwd(const struct moe_cuda_priv *p, size_t n, const bf16 *a, const bf16 *b,
                      bf16 *s1, bf16 *s2)
{
    unsigned nb = blocks_for(n / 8, SWIGLU_THREADS);
    swiglu_bwd_kernel<<<nb < SWIGLU_MAX_BLOCKS ? nb : SWIGLU_MAX_BLOCKS, SWIGLU_THREADS, 0,
                        p->stream>>>(n / 8, a, b, s1, s2);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

/* ---- batches ---- */

static int flush(struct moe_cuda_priv *p)
{
    int rc = gemm_cuda_run(p->gemm, p->blas, p->stream, p->gemm_mode);
    p->stamp++;
    return rc;
}

/* The last batch of a stage: run it, or drop it after an error. */
static int finish(struct moe_cuda_priv *p, int rc)
{
    if (rc == 0)
        return flush(p);
    gemm_cuda_reset(p->gemm);
    return rc;
}

/* Room for `need` more ops of expert e: runs the batch first when they would not fit
 * or when e already has ops in it. */
static int room_for(struct moe_cuda_priv *p, int e, int need)
{
    if (gemm_cuda_room(p->gemm) < need || p->seen[e] == p->stamp) {
        int rc = flush(p);
        if (rc < 0)
            return rc;
    }
    p->seen[e] = p->stamp;
    return 0;
}

/* Queues C = op(A) op(B) + beta C, C bf16. */
static int add(struct moe_cuda_priv *p, bool ta, bool tb, int m, int n, int k, const void *a,
               int lda, const void *b, int ldb, void *c, int ldc, float beta)
{
    struct gemm_cuda_op op = { ta, tb, m, n, k, a, lda, b, ldb, c, ldc, beta, false };
    return gemm_cuda_add(p->gemm, &op);
}

/* Queues G += op(A) op(B), G an fp32 main_grad (moe.h). */
static int add_grad(struct moe_cuda_priv *p, bool ta, bool tb, int m, int n, int k,
                    const void *a, int lda, const void *b, int ldb, void *g, int ldg)
{
    struct gemm_cuda_op op = { ta, tb, m, n, k, a, lda, b, ldb, g, ldg, 1.0f, true };
    return gemm_cuda_add(p->gemm, &op);
}

/* ---- routed groups ---- */

static int group_expert(const struct moe_groups *g, int i)
{
    return g->expert ? g->expert[i] : g->first + i;
}

/* The groups fit the ctx, name real experts, and those with rows have weights (and
 * gradients, when dw is given); as moe_cpu.c. */
static int check_groups(const struct moe_ctx *ctx, const struct moe_weights *w,
                        const struct moe_groups *g, const struct moe_weights *dw,
                        int64_t *rows)
{
    if (!cuda_ctx_ok(ctx) || !w || !g || g->n < 0 || (g->n > 0 && !g->rows))
        return -EINVAL;
    int64_t total = 0;
    for (int i = 0; i < g->n; i++) {
        int64_t e = g->expert ? g->expert[i] : (int64_t)g->first + i;
        if (g->rows[i] < 0 || e < 0 || e >= ctx->cfg.experts)
            return -EINVAL;
        total += g->rows[i];
        if (g->rows[i] == 0)
            continue;
        if (!w->w1 || !w->w3 || !w->w2 || !w->w1[e] || !w->w3[e] || !w->w2[e])
            return -EINVAL;
        if (dw && (!dw->w1 || !dw->w3 || !dw->w2 || !dw->w1[e] || !dw->w3[e] || !dw->w2[e]))
            return -EINVAL;
    }
    *rows = total;
    return total <= ctx->max_rows ? 0 : -EINVAL;
}

int expert_cuda_fwd(struct moe_ctx *ctx, const struct moe_weights *w,
                    const struct moe_groups *g, const void *x, void *y)
{
    int64_t rows;
    int rc = check_groups(ctx, w, g, NULL, &rows);
    if (rc < 0)
        return rc;
    if (rows == 0)
        return 0;
    if (!x || !y || !aligned16(x) || !aligned16(y))
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const int h = ctx->cfg.hidden, f = ctx->cfg.ffn;
    const bf16 *xb = (const bf16 *)x;
    bf16 *yb = (bf16 *)y, *a = (bf16 *)ctx->act_a, *b = (bf16 *)ctx->act_b;
    size_t r = 0;

    for (int i = 0; i < g->n && rc == 0; i++) {        /* a = x W1, b = x W3 */
        const int e = group_expert(g, i), n = g->rows[i];
        if (n == 0)
            continue;
        const bf16 *xr = xb + r * h;
        rc = room_for(p, e, 2);
        if (rc == 0)
            rc = add(p, false, false, n, f, h, xr, h, w->w1[e], f, a + r * f, f, 0.0f);
        if (rc == 0)
            rc = add(p, false, false, n, f, h, xr, h, w->w3[e], f, b + r * f, f, 0.0f);
        r += (size_t)n;
    }
    if (rc == 0)
        rc = flush(p);
    if (rc == 0)
        rc = swiglu(p, (size_t)rows * f, a, b, p->s1);
    r = 0;
    for (int i = 0; i < g->n && rc == 0; i++) {        /* y = h W2 */
        const int e = group_expert(g, i), n = g->rows[i];
        if (n == 0)
            continue;
        rc = room_for(p, e, 1);
        if (rc == 0)
            rc = add(p, false, false, n, h, f, p->s1 + r * f, f, w->w2[e], h, yb + r * h, h,
                     0.0f);
        r += (size_t)n;
    }
    return finish(p, rc);
}

int expert_cuda_bwd(struct moe_ctx *ctx, const struct moe_weights *w,
                    const struct moe_groups *g, const void *x, const void *dy, void *dx,
                    struct moe_weights *dw)
{
    int64_t rows;
    int rc = dw ? check_groups(ctx, w, g, dw, &rows) : -EINVAL;
    if (rc < 0)
        return rc;
    if (rows == 0)
        return 0;
    if (!x || !dy || !dx || !aligned16(x) || !aligned16(dy) || !aligned16(dx))
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const int h = ctx->cfg.hidden, f = ctx->cfg.ffn;
    const bf16 *xb = (const bf16 *)x, *dyb = (const bf16 *)dy;
    const bf16 *a = (const bf16 *)ctx->act_a, *b = (const bf16 *)ctx->act_b;
    bf16 *dxb = (bf16 *)dx, *s1 = p->s1, *s2 = p->s2;
    const size_t n_all = (size_t)rows * f;
    size_t r;

    rc = swiglu(p, n_all, a, b, s1);                   /* s1 = h */
    r = 0;
    for (int i = 0; i < g->n && rc == 0; i++) {        /* dW2 += h^T dy; s2 = dh = dy W2^T */
        const int e = group_expert(g, i), n = g->rows[i];
        if (n == 0)
            continue;
        const bf16 *dyr = dyb + r * h;
        rc = room_for(p, e, 2);
        if (rc == 0)
            rc = add_grad(p, true, false, f, h, n, s1 + r * f, f, dyr, h, dw->w2[e], h);
        if (rc == 0)
            rc = add(p, false, true, n, f, h, dyr, h, w->w2[e], h, s2 + r * f, f, 0.0f);
        r += (size_t)n;
    }
    if (rc == 0)
        rc = flush(p);
    if (rc == 0)
        rc = swiglu_bwd(p, n_all, a, b, s1, s2);        /* s1 = da, s2 = db */
    r = 0;
    for (int i = 0; i < g->n && rc == 0; i++) {        /* dW1, dW3; dx = da W1^T */
        const int e = group_expert(g, i), n = g->rows[i];
        if (n == 0)
            continue;
        const bf16 *xr = xb + r * h, *da = s1 + r * f, *db = s2 + r * f;
        rc = room_for(p, e, 3);
        if (rc == 0)
            rc = add_grad(p, true, false, h, f, n, xr, h, da, f, dw->w1[e], f);
        if (rc == 0)
            rc = add_grad(p, true, false, h, f, n, xr, h, db, f, dw->w3[e], f);
        if (rc == 0)
            rc = add(p, false, true, n, h, f, da, f, w->w1[e], f, dxb + r * h, h, 0.0f);
        r += (size_t)n;
    }
    if (rc == 0)
        rc = flush(p);
    r = 0;
    for (int i = 0; i < g->n && rc == 0; i++) {        /* dx += db W3^T */
        const int e = group_expert(g, i), n = g->rows[i];
        if (n == 0)
            continue;
        rc = room_for(p, e, 1);
        if (rc == 0)
            rc = add(p, false, true, n, h, f, s2 + r * f, f, w->w3[e], f, dxb + r * h, h,
                     1.0f);
        r += (size_t)n;
    }
    return finish(p, rc);
}

/* ---- shared experts ---- */

/* The shared experts have weights (and gradients, when dw is given). */
static int check_shared(const struct moe_ctx *ctx, const struct moe_weights *w,
                        const struct moe_weights *dw)
{
    if (!cuda_ctx_ok(ctx) || !w)
        return -EINVAL;
    for (int s = 0; s < ctx->cfg.shared; s++) {
        if (!w->sw1 || !w->sw3 || !w->sw2 || !w->sw1[s] || !w->sw3[s] || !w->sw2[s])
            return -EINVAL;
        if (dw && (!dw->sw1 || !dw->sw3 || !dw->sw2 || !dw->sw1[s] || !dw->sw3[s] ||
                   !dw->sw2[s]))
            return -EINVAL;
    }
    return 0;
}

/* C = op(A) op(B) + beta C now, C bf16. */
static int gemm(const struct moe_cuda_priv *p, bool ta, bool tb, int m, int n, int k,
                const void *a, int lda, const void *b, int ldb, void *c, int ldc, float beta)
{
    struct gemm_cuda_op op = { ta, tb, m, n, k, a, lda, b, ldb, c, ldc, beta, false };
    return gemm_cuda_one(p->blas, &op);
}

/* G += op(A) op(B) now, G an fp32 main_grad. */
static int gemm_grad(const struct moe_cuda_priv *p, bool ta, bool tb, int m, int n, int k,
                     const void *a, int lda, const void *b, int ldb, void *g, int ldg)
{
    struct gemm_cuda_op op = { ta, tb, m, n, k, a, lda, b, ldb, g, ldg, 1.0f, true };
    return gemm_cuda_one(p->blas, &op);
}

int expert_cuda_shared_fwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                           void *out)
{
    int rc = check_shared(ctx, w, NULL);
    if (rc < 0)
        return rc;
    const int t = ctx->tokens, h = ctx->cfg.hidden, f = ctx->cfg.shared_ffn;
    if (ctx->cfg.shared == 0 || t == 0)
        return 0;
    if (!x || !out || !aligned16(x) || !aligned16(out))
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const size_t slab = (size_t)ctx->max_tokens * f;
    for (int s = 0; s < ctx->cfg.shared && rc == 0; s++) {
        bf16 *a = (bf16 *)ctx->shared_a + s * slab, *b = (bf16 *)ctx->shared_b + s * slab;
        rc = gemm(p, false, false, t, f, h, x, h, w->sw1[s], f, a, f, 0.0f);
        if (rc == 0)
            rc = gemm(p, false, false, t, f, h, x, h, w->sw3[s], f, b, f, 0.0f);
        if (rc == 0)
            rc = swiglu(p, (size_t)t * f, a, b, p->s1);
        if (rc == 0)                                    /* out += h W2 */
            rc = gemm(p, false, false, t, h, f, p->s1, f, w->sw2[s], h, out, h, 1.0f);
    }
    return rc;
}

int expert_cuda_shared_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                           const void *dout, void *dx, struct moe_weights *dw)
{
    int rc = dw ? check_shared(ctx, w, dw) : -EINVAL;
    if (rc < 0)
        return rc;
    const int t = ctx->tokens, h = ctx->cfg.hidden, f = ctx->cfg.shared_ffn;
    if (ctx->cfg.shared == 0 || t == 0)
        return 0;
    if (!x || !dout || !dx || !aligned16(x) || !aligned16(dout) || !aligned16(dx))
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const size_t slab = (size_t)ctx->max_tokens * f, n = (size_t)t * f;
    bf16 *s1 = p->s1, *s2 = p->s2;
    for (int s = 0; s < ctx->cfg.shared && rc == 0; s++) {
        const bf16 *a = (const bf16 *)ctx->shared_a + s * slab;
        const bf16 *b = (const bf16 *)ctx->shared_b + s * slab;
        rc = swiglu(p, n, a, b, s1);                                    /* h */
        if (rc == 0)                                                    /* dW2 += h^T dout */
            rc = gemm_grad(p, true, false, f, h, t, s1, f, dout, h, dw->sw2[s], h);
        if (rc == 0)                                                    /* dh = dout W2^T */
            rc = gemm(p, false, true, t, f, h, dout, h, w->sw2[s], h, s2, f, 0.0f);
        if (rc == 0)
            rc = swiglu_bwd(p, n, a, b, s1, s2);                        /* da, db */
        if (rc == 0)                                                    /* dW1 += x^T da */
            rc = gemm_grad(p, true, false, h, f, t, x, h, s1, f, dw->sw1[s], f);
        if (rc == 0)                                                    /* dW3 += x^T db */
            rc = gemm_grad(p, true, false, h, f, t, x, h, s2, f, dw->sw3[s], f);
        if (rc == 0)                                                    /* dx += da W1^T */
            rc = gemm(p, false, true, t, h, f, s1, f, w->sw1[s], f, dx, h, 1.0f);
        if (rc == 0)                                                    /* dx += db W3^T */
            rc = gemm(p, false, true, t, h, f, s2, f, w->sw3[s], f, dx, h, 1.0f);
    }
    return rc;
}
