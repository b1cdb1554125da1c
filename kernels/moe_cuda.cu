/* moe_cuda.cu: the CUDA backend's ops table, contexts, device memory and the
 * fp32 <-> bf16 conversions of upload and download. Plain-C twin: moe_cpu.c.
 *
 * A ctx is one device allocation, carved like moe_cpu.c's block (a first layout pass
 * sizes it), plus a stream, a cuBLAS handle, a GEMM batch with its pinned pointer
 * ring, and a pinned copy of the routing summary. Its size in bytes is about
 *   T (14 E + 28 K + 8 K H + 4 S Fs + 4) + 4 R F + 4 max(R F, T Fs) + 32 MiB
 * (T = max_tokens, R = max_rows, Fs = moe_shared_ffn; max(R F, T Fs) is R F when
 * S = 0), plus CUB's radix-sort
 * scratch and 8 E bytes of aux partials for each of MOE_CUDA_AUX_CHUNKS token chunks.
 */
#include <cub/device/device_radix_sort.cuh>
#include <stdlib.h>
#include <string.h>

#include "moe_cuda_priv.cuh"

#define CUDA_ALIGN 256                     /* bytes; cudaMalloc's own alignment */
#define CONVERT_CHUNK ((size_t)1 << 20)    /* elements per staged upload/download */

/* ---- probing ---- */

int moe_cuda_probe(char *why, size_t why_bytes)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();           /* clear it: the runtime stays usable */
        if (why && why_bytes)
            snprintf(why, why_bytes, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0 && why && why_bytes)
        snprintf(why, why_bytes, "cudaGetDeviceCount: 0 devices");
    return n;
}

int moe_cuda_device_count(void)
{
    return moe_cuda_probe(NULL, 0);
}

/* ---- memory ---- */

int moe_cuda_malloc(void **out, size_t bytes)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    void *p = NULL;
    TRY_CUDA(cudaMalloc(&p, bytes ? bytes : CUDA_ALIGN));
    cudaError_t e = cudaMemset(p, 0, bytes ? bytes : CUDA_ALIGN);
    if (e != cudaSuccess) {
        (void)cudaFree(p);
        return cuda_fail(e, "cudaMemset", __FILE__, __LINE__);
    }
    *out = p;
    return 0;
}

int moe_cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes && (!dst || !src))
        return -EINVAL;
    if (bytes) {
        TRY_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
        TRY_CUDA(cudaStreamSynchronize(0));  /* device to device returns early otherwise */
    }
    return 0;
}

int moe_cuda_zero(void *dst, size_t bytes)
{
    if (bytes && !dst)
        return -EINVAL;
    if (bytes) {
        TRY_CUDA(cudaMemset(dst, 0, bytes));
        TRY_CUDA(cudaDeviceSynchronize());
    }
    return 0;
}

int moe_cuda_sync(const struct moe_ctx *ctx)
{
    if (!cuda_ctx_ok(ctx))
        return -EINVAL;
    TRY_CUDA(cudaStreamSynchronize(cuda_priv(ctx)->stream));
    return 0;
}

int moe_cuda_set_gemm(struct moe_ctx *ctx, enum moe_cuda_gemm mode)
{
    if (!cuda_ctx_ok(ctx) || (mode != MOE_CUDA_GEMM_GROUPED && mode != MOE_CUDA_GEMM_LOOP))
        return -EINVAL;
    cuda_priv(ctx)->gemm_mode = mode;
    return 0;
}

static int cuda_alloc(void **out, size_t elems)
{
    if (!out || elems > SIZE_MAX / 2 / sizeof(bf16))
        return -EINVAL;
    return moe_cuda_malloc(out, elems * sizeof(bf16));
}

static void cuda_free(void *p)
{
    if (p)
        (void)cudaFree(p);
}

/* fp32 on the host <-> bf16 on the device, through a host bf16 chunk: to the device
 * (up) rounds to nearest even, from it is exact. */
static int convert_copy(void *dev, float *host_out, const float *host_in, size_t n, bool up)
{
    if (n && (!dev || !(up ? (const void *)host_in : (const void *)host_out)))
        return -EINVAL;
    if (!n)
        return 0;
    size_t chunk = n < CONVERT_CHUNK ? n : CONVERT_CHUNK;
    bf16 *tmp = (bf16 *)malloc(chunk * sizeof(bf16));
    if (!tmp)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        bf16 *d = (bf16 *)dev + i;
        if (up)
            for (size_t j = 0; j < m; j++)
                tmp[j] = __float2bfloat16_rn(host_in[i + j]);
        cudaError_t e = up ? cudaMemcpy(d, tmp, m * sizeof(bf16), cudaMemcpyHostToDevice)
                           : cudaMemcpy(tmp, d, m * sizeof(bf16), cudaMemcpyDeviceToHost);
        if (e != cudaSuccess)
            rc = cuda_fail(e, "cudaMemcpy", __FILE__, __LINE__);
        else if (!up)
            for (size_t j = 0; j < m; j++)
                host_out[i + j] = __bfloat162float(tmp[j]);
    }
    free(tmp);
    return rc;
}

/* Weight gradients (moe.h): fp32 device buffers, copied as they are. */
static int cuda_grad_alloc(void **out, size_t n)
{
    if (!out || n > SIZE_MAX / 2 / sizeof(float))
        return -EINVAL;
    return moe_cuda_malloc(out, n * sizeof(float));
}

static int cuda_grad_upload(void *dst, const float *src, size_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return -EINVAL;
    return moe_cuda_copy(dst, src, n * sizeof(float));
}

static int cuda_grad_download(float *dst, const void *src, size_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return -EINVAL;
    return moe_cuda_copy(dst, src, n * sizeof(float));
}

static int cuda_upload(void *dst, const float *src, size_t n)
{
    return convert_copy(dst, NULL, src, n, true);
}

static int cuda_download(float *dst, const void *src, size_t n)
{
    return convert_copy((void *)src, dst, NULL, n, false);
}

/* ---- context ---- */

/* Carves aligned pieces out of one block: a first pass with base == NULL sizes it. */
struct bump {
    char *base;
    size_t used;
};

static void *take(struct bump *b, size_t count, size_t size)
{
    size_t off = (b->used + CUDA_ALIGN - 1) / CUDA_ALIGN * CUDA_ALIGN;
    b->used = off + count * size;
    return b->base && count ? b->base + off : NULL;
}

static void layout(struct moe_ctx *x, struct moe_cuda_priv *p, struct bump *b)
{
    const struct moe_cfg *c = &x->cfg;
    size_t t = (size_t)x->max_tokens, e = (size_t)c->experts, k = (size_t)c->top_k;
    size_t h = (size_t)c->hidden, f = (size_t)c->ffn, s = (size_t)c->shared;
    size_t fs = (size_t)c->shared_ffn, r = (size_t)x->max_rows, scratch = r * f;

    if (s > 0 && t * fs > scratch)
        scratch = t * fs;                   /* shared experts run one at a time */
    x->logits = (float *)take(b, t * e, sizeof(float));
    x->scores = (float *)take(b, t * e, sizeof(float));
    x->dlogits = (float *)take(b, t * e, sizeof(float));
    x->topk_idx = (int32_t *)take(b, t * k, sizeof(int32_t));
    x->topk_w = (float *)take(b, t * k, sizeof(float));
    x->slot_pos = (int32_t *)take(b, t * k, sizeof(int32_t));
    x->perm_slot = (int32_t *)take(b, t * k, sizeof(int32_t));
    x->dtopk_w = (float *)take(b, t * k, sizeof(float));
    p->route_out = (int32_t *)take(b, 2 * e + 3, sizeof(int32_t));
    x->counts = p->route_out;
    x->offsets = p->route_out ? p->route_out + e + 1 : NULL;
    x->xp = take(b, t * k * h, sizeof(bf16));
    x->yp = take(b, t * k * h, sizeof(bf16));
    x->dyp = take(b, t * k * h, sizeof(bf16));
    x->dxp = take(b, t * k * h, sizeof(bf16));
    x->shared_a = take(b, s * t * fs, sizeof(bf16));
    x->shared_b = take(b, s * t * fs, sizeof(bf16));
    x->act_a = take(b, r * f, sizeof(bf16));
    x->act_b = take(b, r * f, sizeof(bf16));
    p->s1 = (bf16 *)take(b, scratch, sizeof(bf16));
    p->s2 = (bf16 *)take(b, scratch, sizeof(bf16));
    p->ztok = (float *)take(b, t, sizeof(float));
    p->aux_part = (double *)take(b, (size_t)MOE_CUDA_AUX_CHUNKS * e, sizeof(double));
    p->dl16 = (bf16 *)take(b, t * e, sizeof(bf16));
    p->sort_keys = (uint32_t *)take(b, t * k, sizeof(uint32_t));
    p->iota = (int32_t *)take(b, t * k, sizeof(int32_t));
    p->sort_tmp = take(b, p->sort_tmp_bytes, 1);
    p->blas_ws = take(b, MOE_CUDA_BLAS_WS, 1);
}

static __global__ void iota_kernel(int32_t *a, int n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        a[i] = (int32_t)i;
}

static void cuda_ctx_free(struct moe_ctx *ctx)
{
    if (!ctx)
        return;
    (void)moe_sync_bind(ctx, NULL, moe_cuda_ops());    /* unbinding cannot fail */
    struct moe_cuda_priv *p = cuda_priv(ctx);
    if (p) {
        if (p->stream)
            (void)cudaStreamSynchronize(p->stream);
        if (p->blas)
            (void)cublasDestroy(p->blas);
        if (p->stream)
            (void)cudaStreamDestroy(p->stream);
        gemm_cuda_free(p->gemm);
        if (p->block)
            (void)cudaFree(p->block);
        if (p->route_host)
            (void)cudaFreeHost(p->route_host);
        free(p->seen);
        free(p);
    }
    free(ctx->host_counts);
    free(ctx->host_offsets);
    free(ctx);
}

/* Everything of a ctx whose cfg, max_tokens, max_rows and priv are set. */
static int ctx_build(struct moe_ctx *x)
{
    struct moe_cuda_priv *p = cuda_priv(x);
    const int e = x->cfg.experts;
    const int tk = x->max_tokens * x->cfg.top_k;

    x->host_counts = (int32_t *)calloc((size_t)e, sizeof(int32_t));
    x->host_offsets = (int32_t *)calloc((size_t)e + 1, sizeof(int32_t));
    p->seen = (int *)calloc((size_t)e, sizeof(int));
    if (!x->host_counts || !x->host_offsets || !p->seen)
        return -ENOMEM;
    p->stamp = 1;
    int rc = gemm_cuda_create(&p->gemm, 3 * e);
    if (rc < 0)
        return rc;
    TRY_CUDA(cudaMallocHost((void **)&p->route_host, (2 * (size_t)e + 3) * sizeof(int32_t)));
    TRY_CUDA(cudaStreamCreate(&p->stream));
    if (tk > 0)
        TRY_CUDA(cub::DeviceRadixSort::SortPairs(
            NULL, p->sort_tmp_bytes, (const uint32_t *)NULL, (uint32_t *)NULL,
            (const int32_t *)NULL, (int32_t *)NULL, tk, 0, permute_cuda_key_bits(e),
            p->stream));

    struct bump b = { NULL, 0 };
    layout(x, p, &b);
    p->block_bytes = b.used;
    TRY_CUDA(cudaMalloc(&p->block, b.used));
    TRY_CUDA(cudaMemsetAsync(p->block, 0, b.used, p->stream));
    b.base = (char *)p->block;
    b.used = 0;
    layout(x, p, &b);
    if (tk > 0) {
        unsigned nb = blocks_for((size_t)tk, 256);
        iota_kernel<<<nb < 1024 ? nb : 1024, 256, 0, p->stream>>>(p->iota, tk);
        TRY_CUDA(cudaGetLastError());
    }

    TRY_CUBLAS(cublasCreate(&p->blas));
    TRY_CUBLAS(cublasSetStream(p->blas, p->stream));
    TRY_CUBLAS(cublasSetWorkspace(p->blas, p->blas_ws, MOE_CUDA_BLAS_WS));
    TRY_CUBLAS(cublasSetMathMode(p->blas, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                 CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    TRY_CUDA(cudaStreamSynchronize(p->stream));
    return 0;
}

static int cuda_ctx_create(struct moe_ctx **out, const struct moe_cfg *c, int max_tokens,
                           int max_rows)
{
    if (!out || moe_cfg_check(c) < 0 || max_tokens < 0 || max_rows < 0 ||
        (int64_t)max_tokens * c->top_k > INT32_MAX || c->hidden % 8 || c->ffn % 8 ||
        moe_shared_ffn(c) % 8 || c->experts > MOE_CUDA_MAX_EXPERTS)
        return -EINVAL;
    /* The size (top of file) in double first, so that no size_t product wraps. */
    double t = max_tokens, r = max_rows, e = c->experts, k = c->top_k, h = c->hidden;
    double f = c->ffn, s = c->shared, fs = moe_shared_ffn(c);
    if (t * (14.0 * e + 28.0 * k + 8.0 * k * h + 4.0 * s * fs + 4.0) + 4.0 * r * f +
            4.0 * (r * f > t * fs ? r * f : t * fs) > 0x1p56)
        return -ENOMEM;
    struct moe_ctx *x = (struct moe_ctx *)calloc(1, sizeof(*x));
    struct moe_cuda_priv *p = (struct moe_cuda_priv *)calloc(1, sizeof(*p));
    if (!x || !p) {
        free(x);
        free(p);
        return -ENOMEM;
    }
    x->cfg = *c;
    x->cfg.shared_ffn = moe_shared_ffn(c);
    x->max_tokens = max_tokens;
    x->max_rows = max_rows;
    x->priv = p;
    p->magic = MOE_CUDA_MAGIC;
    p->gemm_mode = MOE_CUDA_GEMM_GROUPED;
    int rc = ctx_build(x);
    if (rc < 0) {
        cuda_ctx_free(x);                   /* frees what was made */
        return rc;
    }
    *out = x;
    return 0;
}

/* ---- gradient ordering (moe.h) ----
 * Why: each ctx has its own stream (ctx_build), and the weight-gradient GEMMs add with
 * beta = 1 (gate.cu, expert.cu): two ctxs' backwards into one dw, queued on two
 * streams, read and write the same fp32 buffer at once and lose updates. A sync holds
 * one event. A bound ctx's accumulating stage, under the sync's mutex, makes its
 * stream wait for the event (recorded by the previous such stage, on whichever
 * stream), queues its work, and records the event after it: the stages form one chain
 * on the device in the order the host queued them. cudaStreamWaitEvent on an event
 * never recorded returns at once; neither call waits on the host. */

static int cuda_sync_create(struct moe_grad_sync **out)
{
    if (!out)
        return -EINVAL;
    struct moe_grad_sync *s = (struct moe_grad_sync *)calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (moe_sync_init(s, moe_cuda_ops()) < 0) {
        free(s);
        return -ENOMEM;
    }
    cudaEvent_t ev;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        (void)moe_sync_destroy(s);          /* nothing bound yet */
        free(s);
        return cuda_fail(e, "cudaEventCreateWithFlags", __FILE__, __LINE__);
    }
    s->dev = ev;
    *out = s;
    return 0;
}

static void cuda_sync_free(struct moe_grad_sync *s)
{
    if (!s)
        return;
    void *ev = s->dev;
    if (moe_sync_destroy(s) < 0) {
        fprintf(stderr, "moe_cuda: sync_free: ctxs are still bound to the sync; "
                "kept (unbind them first)\n");
        return;
    }
    if (ev)
        (void)cudaEventDestroy((cudaEvent_t)ev);
    free(s);
}

static int cuda_sync_bind(struct moe_ctx *ctx, struct moe_grad_sync *s)
{
    if (!cuda_ctx_ok(ctx))
        return -EINVAL;
    return moe_sync_bind(ctx, s, moe_cuda_ops());
}

/* Before an accumulating stage of a bound ctx: take the sync, wait (on the device)
 * for the last accumulating stage queued under it. */
static int order_begin(const struct moe_ctx *ctx)
{
    if (!cuda_ctx_ok(ctx) || !ctx->grad_sync)
        return 0;                           /* unbound (or the stage's -EINVAL to come) */
    moe_sync_enter(ctx);
    cudaError_t e = cudaStreamWaitEvent(cuda_priv(ctx)->stream,
                                        (cudaEvent_t)ctx->grad_sync->dev, 0);
    if (e != cudaSuccess) {
        moe_sync_leave(ctx);
        return cuda_fail(e, "cudaStreamWaitEvent", __FILE__, __LINE__);
    }
    return 0;
}

/* After it (whatever rc, since part of it may be queued): record, release. */
static int order_end(const struct moe_ctx *ctx, int rc)
{
    if (!cuda_ctx_ok(ctx) || !ctx->grad_sync)
        return rc;
    cudaError_t e = cudaEventRecord((cudaEvent_t)ctx->grad_sync->dev, cuda_priv(ctx)->stream);
    moe_sync_leave(ctx);
    if (e != cudaSuccess && rc == 0)
        rc = cuda_fail(e, "cudaEventRecord", __FILE__, __LINE__);
    return rc;
}

static int cuda_experts_bwd(struct moe_ctx *ctx, const struct moe_weights *w,
                            const struct moe_groups *g, const void *x, const void *dy,
                            void *dx, struct moe_weights *dw)
{
    int rc = order_begin(ctx);
    return rc < 0 ? rc : order_end(ctx, expert_cuda_bwd(ctx, w, g, x, dy, dx, dw));
}

static int cuda_route_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                          void *dx, struct moe_weights *dw)
{
    int rc = order_begin(ctx);
    return rc < 0 ? rc : order_end(ctx, gate_cuda_route_bwd(ctx, w, x, dx, dw));
}

static int cuda_shared_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                           const void *dout, void *dx, struct moe_weights *dw)
{
    int rc = order_begin(ctx);
    return rc < 0 ? rc : order_end(ctx, expert_cuda_shared_bwd(ctx, w, x, dout, dx, dw));
}

/* Add an entry here for every stage added to struct moe_ops. */
static const struct moe_ops cuda_ops = {
    .name = "cuda",
    .elem_bytes = sizeof(bf16),
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .grad_alloc = cuda_grad_alloc,
    .grad_upload = cuda_grad_upload,
    .grad_download = cuda_grad_download,
    .ctx_create = cuda_ctx_create,
    .ctx_free = cuda_ctx_free,
    .route = gate_cuda_route,
    .permute = permute_cuda_fwd,
    .experts_fwd = expert_cuda_fwd,
    .combine = permute_cuda_combine,
    .shared_fwd = expert_cuda_shared_fwd,
    .combine_bwd = permute_cuda_combine_bwd,
    .experts_bwd = cuda_experts_bwd,
    .permute_bwd = permute_cuda_bwd,
    .route_bwd = cuda_route_bwd,
    .shared_bwd = cuda_shared_bwd,
    .sync_create = cuda_sync_create,
    .sync_free = cuda_sync_free,
    .sync_bind = cuda_sync_bind,
};

const struct moe_ops *moe_cuda_ops(void)
{
    return &cuda_ops;
}
