/* bench_moe_cpu.c: the fp32 MoE layer (kernels/moe_cpu.c) against one dense sgemm.
 *
 * For each shape: forward and forward+backward time of moe_forward / moe_backward,
 * and, in the same run on the same threads, one dense cblas_sgemm with the forward's
 * expert FLOPs (M x N x K = T(K+S) x 3F x H). GFLOP/s count the expert GEMMs only,
 * 2 m n k each: forward 3 per expert group (6 H F rows), backward 6 (12 H F rows),
 * rows = T (K + S); the gate GEMM and the memory-bound stages are in the time but not
 * in the count. The ratios are layer GFLOP/s / dense GFLOP/s (target >= 0.70), the
 * dense time being the mean of one sgemm just before and one just after the layer.
 * Data: x and weights uniform, so routing is near balanced; imbal = largest expert
 * load / mean load. One untimed warm-up, then the median of as many reps (1 to 5) as
 * fit argv[1] seconds per shape (default 15: about a minute in all on 2 idle cores);
 * argv[2] runs one shape only (-1: all). Wall time by CLOCK_MONOTONIC.
 * Threads (argv[3], default OpenBLAS's count n): the layer runs its expert groups on
 * n pthreads (moe_cpu_set_threads) with OpenBLAS set to 1 thread, the dense sgemm on
 * OpenBLAS's n; 0 runs the layer with OpenBLAS's n threads inside each GEMM instead.
 * Both use the same cores; on small groups (256 experts x 64 rows) the first is about
 * 1.5x faster, since a 64-row GEMM split across threads synchronizes more than it
 * computes.
 * Exit status: 0, or 1 when an allocation or a stage fails.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moe.h"
#include "moe_cpu.h"

#define MAX_REPS 5

struct shape {
    int tokens, hidden, ffn, experts, top_k, shared;
};

/* The shapes of docs/PERFORMANCE.md; add a row to bench another. */
static const struct shape shapes[] = {
    { 4096, 1024, 2816, 8, 2, 0 },
    { 4096, 2048, 1408, 64, 6, 2 },
    { 2048, 1024, 512, 256, 8, 0 },
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process, all threads. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Returns once the process has used under a tenth of a core over a 20 ms step (at most
 * 50 steps). After a threaded call OpenBLAS's worker threads spin for 2^28 TSC cycles
 * (its THREAD_TIMEOUT; 0.13 s of CPU measured on the 2-core VM) before they sleep,
 * and would share the cores with whatever is timed next. */
static void wait_idle(void)
{
    const struct timespec step = { 0, 20000000 };

    for (int i = 0; i < 50; i++) {
        double c0 = cpu_s(), t0 = now_s();
        nanosleep(&step, NULL);
        if (cpu_s() - c0 < 0.1 * (now_s() - t0))
            return;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Uniform on [-a, a) from a 64-bit LCG (Knuth's MMIX constants): fast, and good
 * enough for data whose values do not matter to the timing. */
static void fill(float *p, size_t n, uint64_t seed, float a)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = a * ((float)(seed >> 40) * 0x1.0p-23f - 1.0f);
    }
}

/* An array of n pointers to fresh zeroed buffers of `each` floats, filled when a > 0. */
static void **alloc_set(const struct moe_ops *ops, int n, size_t each, uint64_t seed, float a)
{
    void **v = calloc((size_t)n + 1, sizeof(*v));
    for (int i = 0; v && i < n; i++) {
        if (ops->alloc(&v[i], each) < 0)
            return v;                          /* v[i] NULL: the caller sees the failure */
        if (a > 0.0f)
            fill(v[i], each, seed + (uint64_t)i, a);
    }
    return v;
}

static int set_ok(void **v, int n)
{
    for (int i = 0; v && i < n; i++)
        if (!v[i])
            return 0;
    return v != NULL;
}

static void free_set(const struct moe_ops *ops, void **v, int n)
{
    for (int i = 0; v && i < n; i++)
        ops->free(v[i]);
    free(v);
}

/* A dense M x N x K sgemm's operands (touched before timing); its timing is
 * interleaved with the layer's. */
struct dense {
    int m, n, k;
    void *a, *b, *c;
};

static int dense_init(const struct moe_ops *ops, struct dense *d, int m, int n, int k)
{
    d->m = m;
    d->n = n;
    d->k = k;
    if (ops->alloc(&d->a, (size_t)m * k) < 0 || ops->alloc(&d->b, (size_t)k * n) < 0 ||
        ops->alloc(&d->c, (size_t)m * n) < 0)
        return -1;
    fill(d->a, (size_t)m * k, 1, 1.0f);
    fill(d->b, (size_t)k * n, 2, 0.03f);
    return 0;
}

/* Seconds of one sgemm over the first `m` rows. */
static double dense_run(const struct dense *d, int m)
{
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d->n, d->k, 1.0f, d->a, d->k,
                d->b, d->n, 0.0f, d->c, d->n);
    return now_s() - t0;
}

static void dense_free(const struct moe_ops *ops, struct dense *d)
{
    ops->free(d->a);
    ops->free(d->b);
    ops->free(d->c);
}

static int bench(const struct shape *s, double budget_s, int threads)
{
    const struct moe_ops *ops = moe_cpu_ops();
    struct moe_cfg c = { .hidden = s->hidden, .ffn = s->ffn, .experts = s->experts,
                         .shared = s->shared, .top_k = s->top_k, .score = MOE_SCORE_SOFTMAX,
                         .norm_topk = true, .route_scale = 1.0f, .aux_alpha = 0.01f };
    const size_t h = (size_t)s->hidden, f = (size_t)s->ffn, t_n = (size_t)s->tokens;
    const int e_n = s->experts, sh = s->shared;
    float wa = 1.0f / (float)h, wb = 1.0f / (float)f;
    const int blas_threads = openblas_get_num_threads();
    int rc = 1;
    struct moe_ctx *ctx = NULL;
    struct dense dn = { 0 };
    void *x = NULL, *out = NULL, *dout = NULL, *dx = NULL, *gate = NULL, *dgate = NULL;
    void **w1 = alloc_set(ops, e_n, h * f, 10, wa), **w3 = alloc_set(ops, e_n, h * f, 20, wa);
    void **w2 = alloc_set(ops, e_n, h * f, 30, wb), **d1 = alloc_set(ops, e_n, h * f, 0, 0);
    void **d3 = alloc_set(ops, e_n, h * f, 0, 0), **d2 = alloc_set(ops, e_n, h * f, 0, 0);
    void **s1 = alloc_set(ops, sh, h * f, 40, wa), **s3 = alloc_set(ops, sh, h * f, 50, wa);
    void **s2 = alloc_set(ops, sh, h * f, 60, wb), **g1 = alloc_set(ops, sh, h * f, 0, 0);
    void **g3 = alloc_set(ops, sh, h * f, 0, 0), **g2 = alloc_set(ops, sh, h * f, 0, 0);

    if (!set_ok(w1, e_n) || !set_ok(w3, e_n) || !set_ok(w2, e_n) || !set_ok(d1, e_n) ||
        !set_ok(d3, e_n) || !set_ok(d2, e_n) || !set_ok(s1, sh) || !set_ok(s3, sh) ||
        !set_ok(s2, sh) || !set_ok(g1, sh) || !set_ok(g3, sh) || !set_ok(g2, sh))
        goto out_free;
    if (ops->alloc(&x, t_n * h) < 0 || ops->alloc(&out, t_n * h) < 0 ||
        ops->alloc(&dout, t_n * h) < 0 || ops->alloc(&dx, t_n * h) < 0 ||
        ops->alloc(&gate, h * e_n) < 0 || ops->alloc(&dgate, h * e_n) < 0)
        goto out_free;
    fill(x, t_n * h, 1, 1.0f);
    fill(dout, t_n * h, 2, 1.0f);
    fill(gate, h * e_n, 3, 1.0f / (float)h);
    if (ops->ctx_create(&ctx, &c, s->tokens, s->tokens * s->top_k) < 0 ||
        (threads > 0 && moe_cpu_set_threads(ctx, threads) < 0))
        goto out_free;
    struct moe_weights w = { gate, NULL, w1, w3, w2, s1, s3, s2 };
    struct moe_weights dw = { dgate, NULL, d1, d3, d2, g1, g3, g2 };

    double rows = (double)t_n * (s->top_k + sh);
    if (dense_init(ops, &dn, (int)rows, 3 * s->ffn, s->hidden) < 0)
        goto out_free;

    /* Rep -1 is the warm-up, on T/8 tokens and M/8 rows (threads started; every page
     * was touched by alloc and ctx_create); 8 x its time estimates a rep, and sets how
     * many reps fit budget_s. Each rep runs the dense sgemm, the layer's forward and
     * backward, and the dense sgemm again, and takes the mean of the two dense times:
     * on a machine whose clock or neighbours drift, the layer and its reference then
     * see the same conditions. The layer starts once the first sgemm's OpenBLAS
     * threads have stopped spinning (wait_idle), as the sgemm starts with no thread of
     * the layer left. Ratios are per rep, then the median. */
    double tf[MAX_REPS], tfb[MAX_REPS], td[MAX_REPS], rf[MAX_REPS], rfb[MAX_REPS];
    int reps = 1;
    for (int i = -1; i < reps; i++) {
        int tokens = i < 0 ? s->tokens / 8 : s->tokens, m = i < 0 ? dn.m / 8 : dn.m;
        double d0 = dense_run(&dn, m);
        if (threads > 0)
            openblas_set_num_threads(1);
        wait_idle();
        double t0 = now_s();
        if (moe_forward(ops, ctx, &w, x, tokens, out) < 0)
            goto out_free;
        double t1 = now_s();
        if (moe_backward(ops, ctx, &w, x, dout, dx, &dw) < 0)
            goto out_free;
        double t2 = now_s();
        if (threads > 0)
            openblas_set_num_threads(blas_threads);
        double d = 0.5 * (d0 + dense_run(&dn, m));
        if (i < 0) {
            reps = (int)(budget_s / (8.0 * (t2 - t0 + 2.0 * d)));
            reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps;
            continue;
        }
        tf[i] = t1 - t0;
        tfb[i] = t2 - t0;
        td[i] = d;
        rf[i] = d / tf[i];                              /* same FLOPs */
        rfb[i] = 3.0 * d / tfb[i];                      /* forward + backward = 3x */
    }
    int32_t most = 0;
    for (int e = 0; e < e_n; e++)
        most = ctx->host_counts[e] > most ? ctx->host_counts[e] : most;
    double fl_f = moe_expert_flops(&c, rows, false), fl_b = moe_expert_flops(&c, rows, true);
    double f_s = median(tf, reps), fb_s = median(tfb, reps);
    double d_s = median(td, reps);
    double gf = fl_f / f_s * 1e-9, gfb = (fl_f + fl_b) / fb_s * 1e-9, gd = fl_f / d_s * 1e-9;
    printf("%6d %6d %5d %7d %5d %6d %4d %5.2f %7.3f %7.1f %7.3f %7.1f %7.3f %7.1f %6.2f %6.2f\n",
           s->tokens, s->hidden, s->ffn, s->experts, s->top_k, s->shared, reps,
           most / (rows - (double)t_n * sh) * e_n, f_s, gf, fb_s, gfb, d_s, gd,
           median(rf, reps), median(rfb, reps));
    fflush(stdout);
    rc = 0;

out_free:
    dense_free(ops, &dn);
    ops->ctx_free(ctx);
    ops->free(x);
    ops->free(out);
    ops->free(dout);
    ops->free(dx);
    ops->free(gate);
    ops->free(dgate);
    free_set(ops, w1, e_n);
    free_set(ops, w3, e_n);
    free_set(ops, w2, e_n);
    free_set(ops, d1, e_n);
    free_set(ops, d3, e_n);
    free_set(ops, d2, e_n);
    free_set(ops, s1, sh);
    free_set(ops, s3, sh);
    free_set(ops, s2, sh);
    free_set(ops, g1, sh);
    free_set(ops, g3, sh);
    free_set(ops, g2, sh);
    if (rc)
        fprintf(stderr, "bench_moe_cpu: tokens %d experts %d: out of memory or a stage failed\n",
                s->tokens, s->experts);
    return rc;
}

int main(int argc, char **argv)
{
    const int blas_threads = openblas_get_num_threads();
    double budget_s = argc > 1 ? atof(argv[1]) : 15.0;
    int only = argc > 2 ? atoi(argv[2]) : -1;
    int threads = argc > 3 ? atoi(argv[3]) : blas_threads;
    int n_shapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
    if (!(budget_s > 0.0) || only < -1 || only >= n_shapes || threads < 0 ||
        threads > MOE_CPU_MAX_THREADS) {
        fprintf(stderr, "usage: %s [budget_s per shape (15) [shape 0..%d or -1 [threads]]]\n",
                argv[0], n_shapes - 1);
        return 2;
    }
    printf("# moe_cpu: fp32 MoE layer, softmax top-k normalized, aux loss on; median of reps "
           "(as many as fit %.0f s, 1..%d) after 1 warm-up\n", budget_s, MAX_REPS);
    if (threads > 0)
        printf("# layer: experts on %d pthreads, OpenBLAS 1 thread each; dense: OpenBLAS %d "
               "threads\n", threads, blas_threads);
    else
        printf("# layer and dense: OpenBLAS %d threads inside each GEMM\n", blas_threads);
    printf("# GFLOP/s: expert GEMMs only (fwd 6HF rows, bwd 12HF rows, rows = T(K+S)); "
           "dense: one sgemm T(K+S) x 3F x H\n");
    printf("# tokens hidden   ffn experts top_k shared reps imbal   fwd_s fwd_GFs    fb_s "
           " fb_GFs dense_s dns_GFs fwd/dn  fb/dn\n");
    printf("#    (-)    (-)   (-)     (-)   (-)    (-)  (-)   (-)     (s)  (GF/s)     (s) "
           " (GF/s)     (s)  (GF/s)    (-)    (-)\n");
    for (int i = 0; i < n_shapes; i++)
        if ((only < 0 || only == i) && bench(&shapes[i], budget_s, threads) != 0)
            return 1;
    return 0;
}
