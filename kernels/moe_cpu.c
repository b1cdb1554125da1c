/* moe_cpu.c: the fp32 host backend of moe.h: context, routing stages, permute and
 * combine, and the expert stages on top of gate_cpu (router math) and ffn_cpu
 * (SwiGLU GEMMs). Every stage checks its arguments before it writes anything.
 */
#define _DEFAULT_SOURCE                    /* MADV_HUGEPAGE (Linux) */
#include "moe_cpu.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ffn_cpu.h"
#include "gate_cpu.h"
#include "moe_sync.h"

#define ALIGN_BYTES 64
#define HUGE_BYTES ((size_t)2 << 20)

/* `bytes` of zeroed memory with every page touched, or NULL. From 2 MiB up the block
 * is 2 MiB aligned and advised as transparent huge pages where the kernel has them:
 * committing it then takes 512x fewer page faults (measured on a 2-core VM: 1 GiB
 * zeroed in 1.0-1.6 s instead of 3.4 s) and the GEMMs fewer TLB misses. */
static void *block_alloc(size_t bytes)
{
    size_t align = bytes >= HUGE_BYTES ? HUGE_BYTES : ALIGN_BYTES;
    if (bytes > SIZE_MAX - align)
        return NULL;
    bytes = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, bytes ? bytes : align);
    if (!p)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_BYTES)
        (void)madvise(p, bytes, MADV_HUGEPAGE);          /* advice; failure is harmless */
#endif
    memset(p, 0, bytes);
    return p;
}

/* Backend scratch, inside the ctx's block. */
struct cpu_priv {
    float *s1, *s2;            /* max(R F, S T Fs) floats each: h, then da / db; a group
                                  at its act_a rows, shared expert s from float s T Fs */
    float *shared_y;           /* [S][T x H]: each shared expert's output or dx */
    int32_t *cursor;           /* [E]: next free row of each group while permuting */
    int threads;               /* pthreads of the experts stages, 1 by default */
};

/* Carves aligned pieces out of one block: a first pass with base == NULL sizes it. */
struct bump {
    char *base;
    size_t used;
};

static void *take(struct bump *b, size_t count, size_t size)
{
    size_t off = (b->used + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES;
    b->used = off + count * size;
    return b->base && count ? b->base + off : NULL;
}

static void layout(struct moe_ctx *x, struct cpu_priv **priv, struct bump *b)
{
    const struct moe_cfg *c = &x->cfg;
    size_t t = (size_t)x->max_tokens, e = (size_t)c->experts, k = (size_t)c->top_k;
    size_t h = (size_t)c->hidden, f = (size_t)c->ffn, s = (size_t)c->shared;
    size_t fs = (size_t)c->shared_ffn;
    size_t scratch = (size_t)x->max_rows * f;          /* floats of s1 and s2 each */

    if (s * t * fs > scratch)
        scratch = s * t * fs;
    *priv = take(b, 1, sizeof(**priv));
    x->logits = take(b, t * e, sizeof(float));
    x->scores = take(b, t * e, sizeof(float));
    x->topk_idx = take(b, t * k, sizeof(int32_t));
    x->topk_w = take(b, t * k, sizeof(float));
    x->counts = take(b, e, sizeof(int32_t));
    x->offsets = take(b, e + 1, sizeof(int32_t));
    x->slot_pos = take(b, t * k, sizeof(int32_t));
    x->perm_slot = take(b, t * k, sizeof(int32_t));
    x->host_counts = take(b, e, sizeof(int32_t));
    x->host_offsets = take(b, e + 1, sizeof(int32_t));
    x->dtopk_w = take(b, t * k, sizeof(float));
    x->dlogits = take(b, t * e, sizeof(float));
    x->xp = take(b, t * k * h, sizeof(float));
    x->yp = take(b, t * k * h, sizeof(float));
    x->dyp = take(b, t * k * h, sizeof(float));
    x->dxp = take(b, t * k * h, sizeof(float));
    x->shared_a = take(b, s * t * fs, sizeof(float));
    x->shared_b = take(b, s * t * fs, sizeof(float));
    x->act_a = take(b, (size_t)x->max_rows * f, sizeof(float));
    x->act_b = take(b, (size_t)x->max_rows * f, sizeof(float));
    float *s1 = take(b, scratch, sizeof(float));
    float *s2 = take(b, scratch, sizeof(float));
    int32_t *cursor = take(b, e, sizeof(int32_t));
    float *shared_y = take(b, s * t * h, sizeof(float));
    if (*priv) {
        (*priv)->shared_y = shared_y;
        (*priv)->s1 = s1;
        (*priv)->s2 = s2;
        (*priv)->cursor = cursor;
        (*priv)->threads = 1;
    }
}

static int cpu_ctx_create(struct moe_ctx **out, const struct moe_cfg *c, int max_tokens,
                          int max_rows)
{
    if (!out || moe_cfg_check(c) < 0 || max_tokens < 0 || max_rows < 0 ||
        (int64_t)max_tokens * c->top_k > INT32_MAX)
        return -EINVAL;
    /* The block's size (moe_cpu.h) in double first, so that no size_t product wraps. */
    double t = max_tokens, r = max_rows, e = c->experts, k = c->top_k, h = c->hidden;
    double f = c->ffn, s = c->shared, fs = moe_shared_ffn(c);
    if (4.0 * (t * (4.0 * e + 5.0 * k + 4.0 * k * h + s * h + 2.0 * s * fs) + 2.0 * r * f +
               2.0 * (r * f > s * t * fs ? r * f : s * t * fs)) > 0x1p60)
        return -ENOMEM;
    struct moe_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->cfg = *c;
    x->cfg.shared_ffn = moe_shared_ffn(c);
    x->max_tokens = max_tokens;
    x->max_rows = max_rows;

    struct cpu_priv *priv;
    struct bump b = { NULL, 0 };
    layout(x, &priv, &b);
    b.base = block_alloc(b.used);
    if (!b.base)
        goto out_free_x;
    b.used = 0;
    layout(x, &priv, &b);
    x->priv = priv;
    *out = x;
    return 0;

out_free_x:
    free(x);
    return -ENOMEM;
}

/* The block starts with the cpu_priv (first piece taken). */
static void cpu_ctx_free(struct moe_ctx *ctx)
{
    if (!ctx)
        return;
    (void)moe_sync_bind(ctx, NULL, moe_cpu_ops());     /* unbinding cannot fail */
    free(ctx->priv);
    free(ctx);
}

static int cpu_alloc(void **out, size_t elems)
{
    if (!out || elems > SIZE_MAX / 2 / sizeof(float))
        return -EINVAL;
    *out = block_alloc(elems * sizeof(float));
    return *out ? 0 : -ENOMEM;
}

static void cpu_free(void *p)
{
    free(p);
}

static int cpu_copy(void *dst, const void *src, size_t n)
{
    if (n && (!dst || !src))
        return -EINVAL;
    if (n)
        memmove(dst, src, n * sizeof(float));
    return 0;
}

static int cpu_upload(void *dst, const float *src, size_t n)
{
    return cpu_copy(dst, src, n);
}

static int cpu_download(float *dst, const void *src, size_t n)
{
    return cpu_copy(dst, src, n);
}

/* Runs fn(args + i * size) for i < n: i = 0 on the caller, the others on pthreads; one
 * that cannot start runs on the caller after the rest (same bits, only slower). */
static void fork_join(int n, void *(*fn)(void *), void *args, size_t size)
{
    pthread_t tid[MOE_CPU_MAX_THREADS];
    bool started[MOE_CPU_MAX_THREADS] = { false };
    char *base = args;

    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, fn, base + (size_t)i * size) == 0;
    fn(base);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            fn(base + (size_t)i * size);
    }
}

/* One thread's range [lo, hi) of a stage whose items (tokens, rows) are independent. */
struct span {
    void (*fn)(const void *arg, int lo, int hi);
    const void *arg;
    int lo, hi;
};

static void *run_span(void *v)
{
    const struct span *s = v;
    s->fn(s->arg, s->lo, s->hi);
    return NULL;
}

/* fn(arg, lo, hi) over [0, n) cut into up to priv->threads ranges of about n / threads
 * items, one per thread. fn must write only its own items' outputs, each in an order
 * that does not depend on the range, so every thread count gives the same bits. */
static void split_items(const struct moe_ctx *ctx, int n,
                        void (*fn)(const void *arg, int lo, int hi), const void *arg)
{
    const struct cpu_priv *p = ctx->priv;
    const int k = p->threads < n ? p->threads : n;
    struct span part[MOE_CPU_MAX_THREADS];

    if (k < 1)
        return;
    for (int i = 0; i < k; i++)
        part[i] = (struct span){ fn, arg, (int)((int64_t)n * i / k),
                                 (int)((int64_t)n * (i + 1) / k) };
    fork_join(k, run_span, part, sizeof(part[0]));
}

/* ---- source side: routing, permute, combine ---- */

/* The operands of a stage split by split_items; each stage names those it uses. */
struct items_job {
    const struct moe_ctx *ctx;
    const struct moe_weights *w;
    struct moe_weights *dw;
    const float *in, *in2;
    float *out;
};

/* Tokens per gate GEMM. The forward's gate GEMM is cut into blocks of this many tokens
 * (the last one shorter), one cblas_sgemm each, and a thread routes its blocks' tokens
 * right after their GEMM. OpenBLAS's kernels for a row may depend on where the row falls
 * in a GEMM's tiles; with blocks fixed by token index, never by thread, a token's logits
 * are the same for every thread count. 128 rows x E = 256 x H = 1024 runs at the whole
 * GEMM's rate (2048 tokens: 11.5 ms in blocks, 11.3 ms whole, one thread of a 2-core
 * VM). */
#define ROUTE_TOKENS 128

/* Blocks [b0, b1) of routing (in = x): logits, then scores, top-k and weights. */
static void route_items(const void *arg, int b0, int b1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;
    const int e_n = ctx->cfg.experts, h_n = ctx->cfg.hidden;

    for (int b = b0; b < b1; b++) {
        int t0 = b * ROUTE_TOKENS;
        int t1 = ctx->tokens - t0 < ROUTE_TOKENS ? ctx->tokens : t0 + ROUTE_TOKENS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, e_n, h_n, 1.0f,
                    j->in + (size_t)t0 * h_n, h_n, j->w->gate, e_n, 0.0f,
                    ctx->logits + (size_t)t0 * e_n, e_n);
        gate_cpu_fwd_tokens(&ctx->cfg, j->w->bias, t0, t1, ctx->logits, ctx->scores,
                            ctx->topk_idx, ctx->topk_w);
    }
}

static int cpu_route(struct moe_ctx *ctx, const struct moe_weights *w, const void *xv,
                     int tokens)
{
    if (!ctx || !w || !w->gate || (tokens > 0 && !xv) || tokens < 0 ||
        tokens > ctx->max_tokens)
        return -EINVAL;
    const struct moe_cfg *c = &ctx->cfg;
    const int e_n = c->experts, k_n = c->top_k;
    struct cpu_priv *p = ctx->priv;
    struct items_job j = { .ctx = ctx, .w = w, .in = xv };

    ctx->tokens = tokens;
    split_items(ctx, tokens / ROUTE_TOKENS + (tokens % ROUTE_TOKENS > 0), route_items, &j);
    gate_cpu_fwd_counts(c, tokens, ctx->scores, ctx->topk_idx, ctx->counts, &ctx->aux_loss);

    ctx->offsets[0] = 0;
    for (int e = 0; e < e_n; e++) {
        ctx->offsets[e + 1] = ctx->offsets[e] + ctx->counts[e];
        p->cursor[e] = ctx->offsets[e];
    }
    /* Token order inside each group: slots are visited in (t, k) order. */
    for (int32_t slot = 0; slot < tokens * k_n; slot++) {
        int32_t pos = p->cursor[ctx->topk_idx[slot]]++;
        ctx->slot_pos[slot] = pos;
        ctx->perm_slot[pos] = slot;
    }
    memcpy(ctx->host_counts, ctx->counts, (size_t)e_n * sizeof(int32_t));
    memcpy(ctx->host_offsets, ctx->offsets, (size_t)(e_n + 1) * sizeof(int32_t));
    return 0;
}

/* Tokens [t0, t1): in = x, out = xp. */
static void permute_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const size_t h = (size_t)j->ctx->cfg.hidden;
    const int k_n = j->ctx->cfg.top_k;

    for (int t = t0; t < t1; t++)
        for (int k = 0; k < k_n; k++)
            memcpy(j->out + (size_t)j->ctx->slot_pos[t * k_n + k] * h, j->in + (size_t)t * h,
                   h * sizeof(float));
}

static int cpu_permute(const struct moe_ctx *ctx, const void *xv, void *xpv)
{
    if (!ctx || (ctx->tokens > 0 && (!xv || !xpv)))
        return -EINVAL;
    struct items_job j = { .ctx = ctx, .in = xv, .out = xpv };
    split_items(ctx, ctx->tokens, permute_items, &j);
    return 0;
}

/* Elements per block of the loops below: a loop of constant trip count over restrict
 * operands is one that the compiler vectorizes at -O2; the tail runs one by one. The
 * operations on each element, and their order, are those of the plain loop. */
#define VEC_FLOATS 16

/* o[i] = w y[i] for i < n. */
static void scale_row(size_t n, float w, const float *restrict y, float *restrict o)
{
    size_t i = 0;
    for (; i + VEC_FLOATS <= n; i += VEC_FLOATS)
        for (size_t v = 0; v < VEC_FLOATS; v++)
            o[i + v] = w * y[i + v];
    for (; i < n; i++)
        o[i] = w * y[i];
}

/* o[i] += w y[i] for i < n. */
static void add_scaled_row(size_t n, float w, const float *restrict y, float *restrict o)
{
    size_t i = 0;
    for (; i + VEC_FLOATS <= n; i += VEC_FLOATS)
        for (size_t v = 0; v < VEC_FLOATS; v++)
            o[i + v] += w * y[i + v];
    for (; i < n; i++)
        o[i] += w * y[i];
}

/* Tokens [t0, t1): in = yp, out = out. */
static void combine_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;
    const size_t h_n = (size_t)ctx->cfg.hidden;
    const int k_n = ctx->cfg.top_k;

    for (int t = t0; t < t1; t++) {
        float *o = j->out + (size_t)t * h_n;
        for (int k = 0; k < k_n; k++) {
            float w = ctx->topk_w[t * k_n + k];
            const float *y = j->in + (size_t)ctx->slot_pos[t * k_n + k] * h_n;
            if (k == 0)
                scale_row(h_n, w, y, o);
            else
                add_scaled_row(h_n, w, y, o);
        }
    }
}

static int cpu_combine(const struct moe_ctx *ctx, const void *ypv, void *outv)
{
    if (!ctx || (ctx->tokens > 0 && (!ypv || !outv)))
        return -EINVAL;
    struct items_job j = { .ctx = ctx, .in = ypv, .out = outv };
    split_items(ctx, ctx->tokens, combine_items, &j);
    return 0;
}

/* Tokens [t0, t1): in = dout, in2 = yp, out = dyp; also their dtopk_w. */
static void combine_bwd_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;
    const size_t h_n = (size_t)ctx->cfg.hidden;
    const int k_n = ctx->cfg.top_k;

    for (int t = t0; t < t1; t++) {
        const float *d = j->in + (size_t)t * h_n;
        for (int k = 0; k < k_n; k++) {
            size_t pos = (size_t)ctx->slot_pos[t * k_n + k];
            float w = ctx->topk_w[t * k_n + k];
            const float *y = j->in2 + pos * h_n;
            float *dy = j->out + pos * h_n;
            double dot = 0.0;
            for (size_t h = 0; h < h_n; h++) {
                dy[h] = w * d[h];
                dot += (double)d[h] * y[h];
            }
            ctx->dtopk_w[t * k_n + k] = (float)dot;
        }
    }
}

static int cpu_combine_bwd(struct moe_ctx *ctx, const void *doutv, const void *ypv,
                           void *dypv)
{
    if (!ctx || (ctx->tokens > 0 && (!doutv || !ypv || !dypv)))
        return -EINVAL;
    struct items_job j = { .ctx = ctx, .in = doutv, .in2 = ypv, .out = dypv };
    split_items(ctx, ctx->tokens, combine_bwd_items, &j);
    return 0;
}

/* Tokens [t0, t1): in = dxp, out = dx (added to). */
static void permute_bwd_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;
    const size_t h_n = (size_t)ctx->cfg.hidden;
    const int k_n = ctx->cfg.top_k;
    const float *dxp = j->in;

    for (int t = t0; t < t1; t++) {
        const int32_t *pos = ctx->slot_pos + (size_t)t * k_n;
        float *d = j->out + (size_t)t * h_n;
        for (size_t h = 0; h < h_n; h++) {
            float s = dxp[(size_t)pos[0] * h_n + h];
            for (int k = 1; k < k_n; k++)
                s += dxp[(size_t)pos[k] * h_n + h];
            d[h] += s;
        }
    }
}

static int cpu_permute_bwd(const struct moe_ctx *ctx, const void *dxpv, void *dxv)
{
    if (!ctx || (ctx->tokens > 0 && (!dxpv || !dxv)))
        return -EINVAL;
    struct items_job j = { .ctx = ctx, .in = dxpv, .out = dxv };
    split_items(ctx, ctx->tokens, permute_bwd_items, &j);
    return 0;
}

/* Tokens [t0, t1): their dlogits rows. */
static void route_bwd_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;

    gate_cpu_bwd_tokens(&ctx->cfg, ctx->aux_tokens > 0 ? ctx->aux_tokens : ctx->tokens, t0,
                        t1, ctx->scores, ctx->topk_idx,
                        ctx->aux_counts ? ctx->aux_counts : ctx->counts, ctx->dtopk_w,
                        ctx->dlogits);
}

/* GEMMs [g0, g1) of {0: dW_gate += x^T dlogits, 1: dx += dlogits W_gate^T}, each
 * whole (see route_items); in = x, out = dx, w = weights, dw = gradients. */
static void gate_gemm_items(const void *arg, int g0, int g1)
{
    const struct items_job *j = arg;
    const struct moe_ctx *ctx = j->ctx;
    const int t_n = ctx->tokens, e_n = ctx->cfg.experts, h_n = ctx->cfg.hidden;

    for (int i = g0; i < g1; i++)
        if (i == 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h_n, e_n, t_n, 1.0f, j->in,
                        h_n, ctx->dlogits, e_n, 1.0f, j->dw->gate, e_n);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t_n, h_n, e_n, 1.0f,
                        ctx->dlogits, e_n, j->w->gate, e_n, 1.0f, j->out, h_n);
}

static int cpu_route_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *xv,
                         void *dxv, struct moe_weights *dw)
{
    if (!ctx || !w || !w->gate || !dw || !dw->gate || (ctx->tokens > 0 && (!xv || !dxv)))
        return -EINVAL;
    struct items_job j = { .ctx = ctx, .w = w, .dw = dw, .in = xv, .out = dxv };
    split_items(ctx, ctx->tokens, route_bwd_items, &j);
    if (ctx->tokens > 0)
        split_items(ctx, 2, gate_gemm_items, &j);
    return 0;
}

/* ---- expert side ---- */

/* The groups fit the ctx, name real experts, and those with rows have weights
 * (and gradients, when dw is given). */
static int check_groups(const struct moe_ctx *ctx, const struct moe_weights *w,
                        const struct moe_groups *g, const struct moe_weights *dw,
                        int64_t *rows)
{
    if (!ctx || !w || !g || g->n < 0 || (g->n > 0 && !g->rows))
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

/* One thread's share of an experts stage. The threads claim groups in order from one
 * shared counter, so a thread that runs faster takes more of them (two fixed halves of
 * 256 groups of 64 rows took 0.101 s and 0.115 s on the 2-core VM). A group's scratch
 * rows are its act_a rows, so groups never share scratch, and its results depend only
 * on its own rows and weights: which thread runs it does not change a bit. */
struct share {
    struct moe_ctx *ctx;
    const struct moe_weights *w;
    const struct moe_groups *g;
    const float *x, *dy;
    float *y, *dx;                 /* y: forward; dy, dx: backward */
    struct moe_weights *dw;        /* NULL: forward */
    atomic_int *next;              /* the next group nobody has claimed */
};

static void *run_share(void *arg)
{
    const struct share *j = arg;
    const struct moe_cfg *c = &j->ctx->cfg;
    const size_t h = (size_t)c->hidden, f = (size_t)c->ffn;
    float *a = j->ctx->act_a, *b = j->ctx->act_b;
    const struct cpu_priv *p = j->ctx->priv;
    size_t r = 0;                  /* first row of group `seen` */
    int seen = 0;

    for (;;) {
        int i = atomic_fetch_add(j->next, 1);
        if (i >= j->g->n)
            break;
        for (; seen < i; seen++)
            r += (size_t)j->g->rows[seen];
        int e = j->g->expert ? j->g->expert[i] : j->g->first + i, n = j->g->rows[i];
        if (n == 0)
            continue;
        struct ffn_cpu_w fw = { j->w->w1[e], j->w->w3[e], j->w->w2[e] };
        if (!j->dw)
            ffn_cpu_fwd(n, c->hidden, c->ffn, &fw, j->x + r * h, 0.0f, j->y + r * h,
                        a + r * f, b + r * f, p->s1 + r * f);
        else
            ffn_cpu_bwd(n, c->hidden, c->ffn, &fw, j->x + r * h, a + r * f, b + r * f,
                        j->dy + r * h, 0.0f, j->dx + r * h, j->dw->w1[e], j->dw->w3[e],
                        j->dw->w2[e], p->s1 + r * f, p->s2 + r * f);
    }
    return NULL;
}

/* Some expert is named by two groups with rows (their gradients would race). */
static bool repeats(const struct moe_ctx *ctx, const struct moe_groups *g)
{
    int32_t *seen = ((struct cpu_priv *)ctx->priv)->cursor;
    if (!g->expert)
        return false;
    memset(seen, 0, (size_t)ctx->cfg.experts * sizeof(*seen));
    for (int i = 0; i < g->n; i++)
        if (g->rows[i] > 0 && seen[g->expert[i]]++)
            return true;
    return false;
}

/* The groups on up to priv->threads threads, claimed one at a time (run_share). */
static void run_groups(struct share *all)
{
    const struct cpu_priv *p = all->ctx->priv;
    int n = p->threads < all->g->n ? p->threads : all->g->n;
    if (n < 1 || (all->dw && repeats(all->ctx, all->g)))
        n = 1;
    atomic_int next;
    atomic_init(&next, 0);
    all->next = &next;
    struct share part[MOE_CPU_MAX_THREADS];
    for (int t = 0; t < n; t++)
        part[t] = *all;
    fork_join(n, run_share, part, sizeof(part[0]));
}

static int cpu_experts_fwd(struct moe_ctx *ctx, const struct moe_weights *w,
                           const struct moe_groups *g, const void *xv, void *yv)
{
    int64_t rows;
    int rc = check_groups(ctx, w, g, NULL, &rows);
    if (rc < 0 || (rows > 0 && (!xv || !yv)))
        return rc < 0 ? rc : -EINVAL;
    struct share all = { .ctx = ctx, .w = w, .g = g, .x = xv, .y = yv };
    run_groups(&all);
    return 0;
}

static int cpu_experts_bwd(struct moe_ctx *ctx, const struct moe_weights *w,
                           const struct moe_groups *g, const void *xv, const void *dyv,
                           void *dxv, struct moe_weights *dw)
{
    int64_t rows;
    int rc = dw ? check_groups(ctx, w, g, dw, &rows) : -EINVAL;
    if (rc < 0 || (rows > 0 && (!xv || !dyv || !dxv)))
        return rc < 0 ? rc : -EINVAL;
    struct share all = { .ctx = ctx, .w = w, .g = g, .x = xv, .dy = dyv, .dx = dxv, .dw = dw };
    run_groups(&all);
    return 0;
}

/* The shared experts have weights (and gradients, when dw is given). */
static int check_shared(const struct moe_ctx *ctx, const struct moe_weights *w,
                        const struct moe_weights *dw)
{
    if (!ctx || !w)
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

/* One thread's shared experts: s = s0, s0 + step, ...; expert s writes its output
 * (forward y, backward dx) to priv->shared_y slab s and uses T Fs floats of s1 and s2
 * from float s T Fs. */
struct shared_share {
    struct moe_ctx *ctx;
    const struct moe_weights *w;
    const float *x, *dout;         /* dout: backward only */
    struct moe_weights *dw;        /* NULL: forward */
    int s0, step;
};

static void *run_shared(void *arg)
{
    const struct shared_share *j = arg;
    const struct moe_cfg *c = &j->ctx->cfg;
    const struct cpu_priv *p = j->ctx->priv;
    const int t_n = j->ctx->tokens, fs = c->shared_ffn;
    const size_t slab = (size_t)j->ctx->max_tokens * fs;
    const size_t rows = (size_t)t_n * fs, out = (size_t)t_n * c->hidden;
    float *a = j->ctx->shared_a, *b = j->ctx->shared_b;

    for (int s = j->s0; s < c->shared; s += j->step) {
        struct ffn_cpu_w fw = { j->w->sw1[s], j->w->sw3[s], j->w->sw2[s] };
        if (!j->dw)
            ffn_cpu_fwd(t_n, c->hidden, fs, &fw, j->x, 0.0f, p->shared_y + s * out,
                        a + s * slab, b + s * slab, p->s1 + s * rows);
        else
            ffn_cpu_bwd(t_n, c->hidden, fs, &fw, j->x, a + s * slab, b + s * slab,
                        j->dout, 0.0f, p->shared_y + s * out, j->dw->sw1[s], j->dw->sw3[s],
                        j->dw->sw2[s], p->s1 + s * rows, p->s2 + s * rows);
    }
    return NULL;
}

/* Tokens [t0, t1): out rows += each shared expert's rows of in = shared_y, in order
 * s = 0..S-1. */
static void shared_add_items(const void *arg, int t0, int t1)
{
    const struct items_job *j = arg;
    const size_t h_n = (size_t)j->ctx->cfg.hidden;
    const size_t slab = (size_t)j->ctx->tokens * h_n;
    float *acc = j->out + (size_t)t0 * h_n;

    for (int s = 0; s < j->ctx->cfg.shared; s++) {
        const float *y = j->in + s * slab + (size_t)t0 * h_n;
        for (size_t i = 0; i < (size_t)(t1 - t0) * h_n; i++)
            acc[i] += y[i];
    }
}

/* Shared experts on up to priv->threads threads, then acc += their outputs in order
 * s = 0..S-1: the same bits for every thread count. */
static void shared_stage(struct moe_ctx *ctx, const struct moe_weights *w, const float *x,
                         const float *dout, struct moe_weights *dw, float *acc)
{
    const struct cpu_priv *p = ctx->priv;
    const int s_n = ctx->cfg.shared, n = p->threads < s_n ? p->threads : s_n;
    struct shared_share part[MOE_CPU_MAX_THREADS];

    for (int t = 0; t < n; t++)
        part[t] = (struct shared_share){ ctx, w, x, dout, dw, t, n };
    fork_join(n, run_shared, part, sizeof(part[0]));
    struct items_job j = { .ctx = ctx, .in = p->shared_y, .out = acc };
    split_items(ctx, ctx->tokens, shared_add_items, &j);
}

static int cpu_shared_fwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *xv,
                          void *outv)
{
    int rc = check_shared(ctx, w, NULL);
    if (rc < 0)
        return rc;
    if (ctx->cfg.shared == 0 || ctx->tokens == 0)
        return 0;
    if (!xv || !outv)
        return -EINVAL;
    shared_stage(ctx, w, xv, NULL, NULL, outv);
    return 0;
}

static int cpu_shared_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *xv,
                          const void *doutv, void *dxv, struct moe_weights *dw)
{
    int rc = dw ? check_shared(ctx, w, dw) : -EINVAL;
    if (rc < 0)
        return rc;
    if (ctx->cfg.shared == 0 || ctx->tokens == 0)
        return 0;
    if (!xv || !doutv || !dxv)
        return -EINVAL;
    shared_stage(ctx, w, xv, doutv, dw, dxv);
    return 0;
}

/* ---- gradient ordering (moe.h): a bound ctx's accumulating stages hold the sync's
 * mutex from start to end, so two host threads' stages into one dw take turns ---- */

static int cpu_sync_create(struct moe_grad_sync **out)
{
    if (!out)
        return -EINVAL;
    struct moe_grad_sync *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (moe_sync_init(s, moe_cpu_ops()) < 0) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

static void cpu_sync_free(struct moe_grad_sync *s)
{
    if (!s)
        return;
    if (moe_sync_destroy(s) < 0) {
        fprintf(stderr, "moe_cpu: sync_free: ctxs are still bound to the sync; "
                "kept (unbind them first)\n");
        return;
    }
    free(s);
}

static int cpu_sync_bind(struct moe_ctx *ctx, struct moe_grad_sync *s)
{
    if (!ctx || !ctx->priv)
        return -EINVAL;
    return moe_sync_bind(ctx, s, moe_cpu_ops());
}

static int cpu_experts_bwd_ordered(struct moe_ctx *ctx, const struct moe_weights *w,
                                   const struct moe_groups *g, const void *xv,
                                   const void *dyv, void *dxv, struct moe_weights *dw)
{
    moe_sync_enter(ctx);
    int rc = cpu_experts_bwd(ctx, w, g, xv, dyv, dxv, dw);
    moe_sync_leave(ctx);
    return rc;
}

static int cpu_route_bwd_ordered(struct moe_ctx *ctx, const struct moe_weights *w,
                                 const void *xv, void *dxv, struct moe_weights *dw)
{
    moe_sync_enter(ctx);
    int rc = cpu_route_bwd(ctx, w, xv, dxv, dw);
    moe_sync_leave(ctx);
    return rc;
}

static int cpu_shared_bwd_ordered(struct moe_ctx *ctx, const struct moe_weights *w,
                                  const void *xv, const void *doutv, void *dxv,
                                  struct moe_weights *dw)
{
    moe_sync_enter(ctx);
    int rc = cpu_shared_bwd(ctx, w, xv, doutv, dxv, dw);
    moe_sync_leave(ctx);
    return rc;
}

int moe_cpu_set_threads(struct moe_ctx *ctx, int threads)
{
    if (!ctx || !ctx->priv || threads < 1 || threads > MOE_CPU_MAX_THREADS)
        return -EINVAL;
    ((struct cpu_priv *)ctx->priv)->threads = threads;
    return 0;
}

/* Add an entry here for every stage added to struct moe_ops. */
static const struct moe_ops cpu_ops = {
    .name = "cpu",
    .elem_bytes = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .grad_alloc = cpu_alloc,                /* elem is fp32: grads are elem buffers */
    .grad_upload = cpu_upload,
    .grad_download = cpu_download,
    .ctx_create = cpu_ctx_create,
    .ctx_free = cpu_ctx_free,
    .route = cpu_route,
    .permute = cpu_permute,
    .experts_fwd = cpu_experts_fwd,
    .combine = cpu_combine,
    .shared_fwd = cpu_shared_fwd,
    .combine_bwd = cpu_combine_bwd,
    .experts_bwd = cpu_experts_bwd_ordered,
    .permute_bwd = cpu_permute_bwd,
    .route_bwd = cpu_route_bwd_ordered,
    .shared_bwd = cpu_shared_bwd_ordered,
    .sync_create = cpu_sync_create,
    .sync_free = cpu_sync_free,
    .sync_bind = cpu_sync_bind,
};

const struct moe_ops *moe_cpu_ops(void)
{
    return &cpu_ops;
}
