/* gpu_bench_moe.c: per-kernel timings of the CUDA MoE layer (kernels/moe_cuda.h) at
 * published model shapes, against the device's peaks. Without a CUDA device it prints
 * one '#' SKIP line and exits 0.
 *
 * Each kernel: WARMUP untimed runs, then REPS runs, each after an L2 flush and between
 * two CUDA events on the ctx's stream; the median is reported. Achieved GB/s counts
 * the HBM bytes a kernel must move at least (formulas in the rows below and in
 * kernels/permute.cu); TFLOP/s counts 2 m n k per GEMM. The expert GEMM stages run
 * at balanced load (T K / E rows per expert) and are compared with one dense
 * cublasGemmEx of the same FLOPs: [T K x H] x [H x 3F] for the forward's 6 H F T K.
 * Targets (issue 4): permute and combine >= 80% of HBM peak, gate top-k >= 70%,
 * grouped expert forward >= 70% of the dense GEMM.
 *
 * Shapes: DeepSeek-V3 (arXiv:2412.19437 sec. 4.2: hidden 7168, expert ffn 2048, 256
 * routed experts, top-8, sigmoid scores normalized over the chosen, route scale 2.5;
 * sequence aux alpha 1e-4) at 4096 and 16384 tokens, and Mixtral 8x7B
 * (arXiv:2401.04088: hidden 4096, ffn 14336, 8 experts, top-2, softmax renormalized;
 * router aux coefficient 0.02) at 4096 tokens. Shared experts are left out (they are
 * dense GEMMs). Memory: DeepSeek-V3's 256 experts are 22.5 GB of bf16 weights plus
 * 45 GB for their fp32 gradients (main_grad, moe.h); a shape runs at the token counts
 * whose buffers fit in 95% of the device's memory (shape_bytes), the others are
 * skipped with a '#' line. Under a minute on an H100.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "moe_cuda.h"

#define WARMUP 2
#define REPS 15

struct shape {
    const char *name;
    struct moe_cfg c;
    int tokens[2];
    int n_tokens;
};

static const struct shape shapes[] = {
    { "dsv3", { 7168, 2048, 256, 0, 8, MOE_SCORE_SIGMOID, true, 2.5f, 1e-4f, 0 },
      { 4096, 16384 }, 2 },
    { "mixtral", { 4096, 14336, 8, 0, 2, MOE_SCORE_SOFTMAX, true, 1.0f, 0.02f, 0 }, { 4096, 0 },
      1 },
};

/* Everything one shape's runs need, device buffers from ops->alloc (gradients of
 * weights: ops->grad_alloc, fp32). */
struct run {
    const struct moe_ops *ops;
    struct moe_ctx *ctx;
    struct moe_cuda_timer *timer;
    void *flush;
    size_t flush_bytes;
    int tokens;
    void *x, *out, *dout, *dx;              /* [T x H] */
    void *wall[3], *gall[3];                /* w1, w3, w2 of all experts; gradients */
    void *gate, *dgate;
    void **ptr;                             /* 6 arrays of E pointers */
    struct moe_weights w, dw;
    void *dense_b, *dense_c;                /* [H x 3F], [T K x 3F] */
    int32_t *rows;                          /* [E] balanced group rows */
    struct moe_groups balanced;
};

typedef int (*step_fn)(struct run *r);

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of REPS timed runs of fn after WARMUP untimed ones. */
static int time_step(struct run *r, step_fn fn, double *median_s)
{
    double t[REPS];
    int rc = 0;
    for (int i = 0; i < WARMUP && rc == 0; i++)
        rc = fn(r);
    for (int i = 0; i < REPS && rc == 0; i++) {
        rc = moe_cuda_flush_l2(r->ctx, r->flush, r->flush_bytes);
        if (rc == 0)
            rc = moe_cuda_timer_record(r->timer, r->ctx, 2 * i);
        if (rc == 0)
            rc = fn(r);
        if (rc == 0)
            rc = moe_cuda_timer_record(r->timer, r->ctx, 2 * i + 1);
    }
    for (int i = 0; i < REPS && rc == 0; i++)
        rc = moe_cuda_timer_elapsed_s(r->timer, 2 * i, 2 * i + 1, &t[i]);
    if (rc < 0)
        return rc;
    qsort(t, REPS, sizeof(t[0]), cmp_double);
    *median_s = t[REPS / 2];
    return 0;
}

/* ---- the steps ---- */

static int step_route(struct run *r)
{
    return r->ops->route(r->ctx, &r->w, r->x, r->tokens);
}

static int step_logits(struct run *r)
{
    return moe_cuda_route_piece(r->ctx, &r->w, r->x, r->tokens, MOE_CUDA_ROUTE_LOGITS);
}

static int step_topk(struct run *r)
{
    return moe_cuda_route_piece(r->ctx, &r->w, r->x, r->tokens, MOE_CUDA_ROUTE_TOPK);
}

static int step_layout(struct run *r)
{
    return moe_cuda_route_piece(r->ctx, &r->w, r->x, r->tokens, MOE_CUDA_ROUTE_LAYOUT);
}

static int step_permute(struct run *r)
{
    return r->ops->permute(r->ctx, r->x, r->ctx->xp);
}

static int step_experts_fwd(struct run *r)
{
    return r->ops->experts_fwd(r->ctx, &r->w, &r->balanced, r->ctx->xp, r->ctx->yp);
}

static int step_dense(struct run *r)
{
    const struct moe_cfg *c = &r->ctx->cfg;
    return moe_cuda_dense_gemm(r->ctx, r->tokens * c->top_k, 3 * c->ffn, c->hidden,
                               r->ctx->xp, r->dense_b, r->dense_c);
}

static int step_combine(struct run *r)
{
    return r->ops->combine(r->ctx, r->ctx->yp, r->out);
}

static int step_combine_bwd(struct run *r)
{
    return r->ops->combine_bwd(r->ctx, r->dout, r->ctx->yp, r->ctx->dyp);
}

static int step_experts_bwd(struct run *r)
{
    return r->ops->experts_bwd(r->ctx, &r->w, &r->balanced, r->ctx->xp, r->ctx->dyp,
                               r->ctx->dxp, &r->dw);
}

static int step_permute_bwd(struct run *r)
{
    return r->ops->permute_bwd(r->ctx, r->ctx->dxp, r->dx);
}

static int step_route_bwd(struct run *r)
{
    return r->ops->route_bwd(r->ctx, &r->w, r->x, r->dx, &r->dw);
}

/* ---- output ---- */

enum target { NONE, HBM80, HBM70, DENSE70 };

static void cell(char *buf, size_t n, double v, const char *fmt)
{
    if (v > 0.0 && isfinite(v))
        snprintf(buf, n, fmt, v);
    else
        snprintf(buf, n, "-");
}

/* One data row; returns the TFLOP/s (0 when flops is 0). */
static double print_row(const struct moe_cuda_device *d, const char *shape, int tokens,
                        const char *kernel, double t_s, double bytes, double flops,
                        double dense_flops_s, enum target target)
{
    char gbs[16], hbm[16], tfs[16], pk[16], dn[16], tg[24];
    double bw = bytes / t_s, fl = flops / t_s;
    double hbm_pct = d->hbm_Bps > 0 ? 100.0 * bw / d->hbm_Bps : 0.0;
    double dense_pct = dense_flops_s > 0 && flops > 0 ? 100.0 * fl / dense_flops_s : 0.0;
    cell(gbs, sizeof(gbs), bw / 1e9, "%.0f");
    cell(hbm, sizeof(hbm), bytes > 0 ? hbm_pct : 0.0, "%.1f");
    cell(tfs, sizeof(tfs), fl / 1e12, "%.1f");
    cell(pk, sizeof(pk), d->bf16_flops > 0 && flops > 0 ? 100.0 * fl / d->bf16_flops : 0.0,
         "%.1f");
    cell(dn, sizeof(dn), dense_pct, "%.1f");
    switch (target) {
    case HBM80:
        snprintf(tg, sizeof(tg), "HBM>=80:%s", hbm_pct >= 80.0 ? "ok" : "below");
        break;
    case HBM70:
        snprintf(tg, sizeof(tg), "HBM>=70:%s", hbm_pct >= 70.0 ? "ok" : "below");
        break;
    case DENSE70:
        snprintf(tg, sizeof(tg), "dense>=70:%s", dense_pct >= 70.0 ? "ok" : "below");
        break;
    default:
        snprintf(tg, sizeof(tg), "-");
    }
    printf("%-8s %6d  %-20s %10.1f %8s %6s %8s %6s %7s  %s\n", shape, tokens, kernel,
           t_s * 1e6, gbs, hbm, tfs, pk, dn, tg);
    fflush(stdout);
    return fl;
}

/* ---- one shape ---- */

static void run_free(struct run *r)
{
    const struct moe_ops *o = r->ops;
    o->free(r->x);
    o->free(r->out);
    o->free(r->dout);
    o->free(r->dx);
    for (int i = 0; i < 3; i++) {
        o->free(r->wall[i]);
        o->free(r->gall[i]);
    }
    o->free(r->gate);
    o->free(r->dgate);
    o->free(r->dense_b);
    o->free(r->dense_c);
    o->free(r->flush);
    o->ctx_free(r->ctx);
    moe_cuda_timer_free(r->timer);
    free(r->ptr);
    free(r->rows);
}

/* Buffers for up to max_t tokens, random values (fixed seeds), zero gradients. */
static int run_init(struct run *r, const struct moe_cfg *c, int max_t, size_t flush_bytes)
{
    const struct moe_ops *o = moe_cuda_ops();
    const size_t h = c->hidden, f = c->ffn, e = c->experts, th = (size_t)max_t * h;
    const size_t tk = (size_t)max_t * c->top_k, hf = h * f;
    int rc;

    memset(r, 0, sizeof(*r));
    r->ops = o;
    r->flush_bytes = flush_bytes;
    rc = o->ctx_create(&r->ctx, c, max_t, (int)tk);
    if (rc == 0)
        rc = moe_cuda_timer_create(&r->timer, REPS);
    if (rc == 0)
        rc = moe_cuda_malloc(&r->flush, flush_bytes);
    void **bufs[] = { &r->x, &r->out, &r->dout, &r->dx, &r->gate, &r->dgate, &r->dense_b,
                      &r->dense_c, &r->wall[0], &r->wall[1], &r->wall[2], &r->gall[0],
                      &r->gall[1], &r->gall[2] };
    const size_t sizes[] = { th, th, th, th, h * e, h * e, h * 3 * f, tk * 3 * f,
                             e * hf, e * hf, e * hf, e * hf, e * hf, e * hf };
    const bool grad[] = { false, false, false, false, false, true, false, false,
                          false, false, false, true, true, true };  /* dgate, gall */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++)
        rc = grad[i] ? o->grad_alloc(bufs[i], sizes[i]) : o->alloc(bufs[i], sizes[i]);
    r->ptr = calloc(6 * e, sizeof(void *));
    r->rows = calloc(e, sizeof(int32_t));
    if (rc == 0 && (!r->ptr || !r->rows))
        rc = -ENOMEM;
    if (rc < 0)
        return rc;

    const float ah = sqrtf(3.0f / (float)h), af = sqrtf(3.0f / (float)f);
    const struct {
        void *p;
        size_t n;
        float scale;
    } fills[] = {
        { r->x, th, 1.0f }, { r->dout, th, 1.0f }, { r->gate, h * e, 4.5f / sqrtf((float)h) },
        { r->wall[0], e * hf, ah }, { r->wall[1], e * hf, ah }, { r->wall[2], e * hf, af },
        { r->dense_b, h * 3 * f, ah },
    };
    for (size_t i = 0; i < sizeof(fills) / sizeof(fills[0]) && rc == 0; i++)
        rc = moe_cuda_fill_random(r->ctx, fills[i].p, fills[i].n, 1000 + i, fills[i].scale);
    if (rc == 0)
        rc = moe_cuda_sync(r->ctx);
    for (size_t i = 0; i < 6 * e; i++) {
        size_t m = i / e, ex = i % e;
        void *base = m < 3 ? r->wall[m] : r->gall[m - 3];
        r->ptr[i] = (char *)base + ex * hf * (m < 3 ? 2 : 4);     /* bf16, fp32 grads */
    }
    r->w = (struct moe_weights){ r->gate, NULL, r->ptr, r->ptr + e, r->ptr + 2 * e,
                                 NULL, NULL, NULL };
    r->dw = (struct moe_weights){ r->dgate, NULL, r->ptr + 3 * e, r->ptr + 4 * e,
                                  r->ptr + 5 * e, NULL, NULL, NULL };
    return rc;
}

/* Every kernel at one token count. */
static int bench_tokens(struct run *r, const struct moe_cuda_device *d, const char *name,
                        int tokens)
{
    const struct moe_cfg *c = &r->ctx->cfg;
    const double t = tokens, h = c->hidden, f = c->ffn, e = c->experts, k = c->top_k;
    const double tk = t * k, row = h * 2.0;   /* bytes of one bf16 row */
    double s, dense = 0.0;
    int rc;

    r->tokens = tokens;
    for (int i = 0; i < c->experts; i++)      /* balanced: T K / E each, rest to the last */
        r->rows[i] = (int32_t)(tokens * c->top_k / c->experts);
    r->rows[c->experts - 1] += (int32_t)(tokens * c->top_k % c->experts);
    r->balanced = (struct moe_groups){ c->experts, 0, NULL, r->rows };

#define TIME(fn)                                                                         \
    do {                                                                                 \
        rc = time_step(r, fn, &s);                                                       \
        if (rc < 0) {                                                                    \
            fprintf(stderr, "%s %d: %s: error %d\n", name, tokens, #fn, rc);             \
            return rc;                                                                   \
        }                                                                                \
    } while (0)

    TIME(step_route);       /* the ctx now holds a route of these tokens */
    print_row(d, name, tokens, "route (all, sync)", s, 0.0, 0.0, 0.0, NONE);
    TIME(step_logits);
    print_row(d, name, tokens, "gate_gemm", s, t * row + h * e * 2.0 + t * e * 4.0,
              2.0 * t * h * e, 0.0, NONE);
    TIME(step_topk);        /* logits in, scores out; topk idx + w; aux re-reads scores */
    print_row(d, name, tokens, "gate_topk", s,
              t * e * 8.0 + tk * 8.0 + (c->aux_alpha > 0 ? t * e * 4.0 : 0.0), 0.0, 0.0,
              HBM70);
    TIME(step_layout);
    print_row(d, name, tokens, "route_layout", s, 0.0, 0.0, 0.0, NONE);
    TIME(step_permute);
    print_row(d, name, tokens, "permute", s, (1.0 + k) * t * row + tk * 4.0, 0.0, 0.0, HBM80);

    TIME(step_dense);
    dense = print_row(d, name, tokens, "dense_gemm(same FLOPs)", s, 0.0, 6.0 * h * f * tk,
                      0.0, NONE);
    for (int m = 0; m < 2; m++) {
        rc = moe_cuda_set_gemm(r->ctx, m ? MOE_CUDA_GEMM_LOOP : MOE_CUDA_GEMM_GROUPED);
        if (rc < 0)
            return rc;
        TIME(step_experts_fwd);
        print_row(d, name, tokens, m ? "experts_fwd loop" : "experts_fwd grouped", s, 0.0,
                  moe_expert_flops(c, tk, false), dense, m ? NONE : DENSE70);
    }
    TIME(step_combine);
    print_row(d, name, tokens, "combine", s, (k + 1.0) * t * row + tk * 8.0, 0.0, 0.0, HBM80);
    TIME(step_combine_bwd);
    print_row(d, name, tokens, "combine_bwd", s, (2.0 * k + 1.0) * t * row + tk * 12.0, 0.0,
              0.0, HBM80);
    for (int m = 0; m < 2; m++) {
        rc = moe_cuda_set_gemm(r->ctx, m ? MOE_CUDA_GEMM_LOOP : MOE_CUDA_GEMM_GROUPED);
        if (rc < 0)
            return rc;
        TIME(step_experts_bwd);
        print_row(d, name, tokens, m ? "experts_bwd loop" : "experts_bwd grouped", s, 0.0,
                  moe_expert_flops(c, tk, true), dense, NONE);
    }
    rc = moe_cuda_set_gemm(r->ctx, MOE_CUDA_GEMM_GROUPED);
    if (rc < 0)
        return rc;
    TIME(step_permute_bwd);
    print_row(d, name, tokens, "permute_bwd", s, (k + 2.0) * t * row + tk * 4.0, 0.0, 0.0,
              HBM80);
    TIME(step_route_bwd);
    print_row(d, name, tokens, "route_bwd", s, 0.0, 4.0 * t * h * e, 0.0, NONE);
#undef TIME
    return 0;
}

/* Bytes a shape needs, roughly (moe_cuda.cu's ctx size plus the buffers here): bf16
 * weights and fp32 gradients of the experts are 6 + 12 bytes per H F per expert. */
static double shape_bytes(const struct moe_cfg *c, int max_t, double flush)
{
    double t = max_t, h = c->hidden, f = c->ffn, e = c->experts, k = c->top_k;
    return 18.0 * e * h * f + 6.0 * h * e + t * (14.0 * e + 28.0 * k + 8.0 * k * h) +
           8.0 * t * k * f + 8.0 * t * h + 6.0 * h * f + 6.0 * t * k * f + flush +
           (64 << 20);
}

int main(void)
{
    char why[256] = "unknown";
    struct moe_cuda_device d;
    if (moe_cuda_probe(why, sizeof(why)) == 0) {
        printf("# SKIP gpu_bench_moe: no CUDA device (%s)\n", why);
        return 0;
    }
    if (moe_cuda_device_info(&d) < 0) {
        fprintf(stderr, "gpu_bench_moe: cannot read the device's properties\n");
        return 1;
    }
    const size_t flush = d.l2_bytes ? 2 * d.l2_bytes : (size_t)128 << 20;
    printf("# moe CUDA kernels: median of %d runs after %d warm-ups, L2 flushed before "
           "each\n", REPS, WARMUP);
    printf("# device: %s, cc %d.%d, %d SMs, %.0f GiB, L2 %.0f MiB\n", d.name, d.cc_major,
           d.cc_minor, d.sms, d.mem_bytes / 1073741824.0, d.l2_bytes / 1048576.0);
    printf("# peak HBM %.0f GB/s (%s); peak dense bf16 %.0f TFLOP/s (%s)\n", d.hbm_Bps / 1e9,
           d.hbm_src, d.bf16_flops / 1e12, d.flops_src);
    printf("# expert GEMMs at balanced load (T K / E rows each); %%dense = TFLOP/s over the "
           "dense_gemm row's\n");
    printf("# shape   tokens  kernel                     time     GB/s   %%HBM  TFLOP/s "
           "%%bf16  %%dense  target\n");
    printf("#                                            (us)   (GB/s)    (%%)  (TFLOP/s) "
           "(%%)     (%%)\n");
    int failed = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const struct shape *sh = &shapes[i];
        int n = sh->n_tokens;               /* token counts ascending: keep those that fit */
        while (n > 0 && shape_bytes(&sh->c, sh->tokens[n - 1], (double)flush) >
                            0.95 * (double)d.mem_bytes) {
            printf("# skip %s at %d tokens: needs about %.1f GiB of device memory\n",
                   sh->name, sh->tokens[n - 1],
                   shape_bytes(&sh->c, sh->tokens[n - 1], (double)flush) / 1073741824.0);
            n--;
        }
        if (n == 0)
            continue;
        struct run r;
        int rc = run_init(&r, &sh->c, sh->tokens[n - 1], flush);
        for (int j = 0; j < n && rc == 0; j++)
            rc = bench_tokens(&r, &d, sh->name, sh->tokens[j]);
        if (rc < 0) {
            printf("# %s: failed (error %d)\n", sh->name, rc);
            failed = 1;
        }
        run_free(&r);
    }
    return failed;
}
