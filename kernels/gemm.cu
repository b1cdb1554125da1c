/* gemm.cu: row-major bf16 GEMMs through cuBLAS (column-major), one at a time or as one
 * grouped call. Plain-C twin: the cblas_sgemm calls of ffn_cpu.c.
 *
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets
 * (B, A) swapped, m and n swapped, and the same transposes and row strides. So an op
 * maps to cublasGemmEx(transa = tb, transb = ta, m = n, n = m, k, B, ldb, A, lda, C, ldc).
 *
 * Why grouped: an MoE layer's expert GEMMs are many small ones (DeepSeek-V3 at 4096
 * tokens: 256 experts x 128 rows; a 128 x 2048 x 7168 GEMM has 16 output tiles of
 * 128 x 128 for 132 SMs), so one cublasGemmEx per expert leaves most SMs idle, while
 * one cublasGemmGroupedBatchedEx (cuBLAS >= 12.5) puts all experts' tiles in one
 * launch. Its alpha/beta and shape arrays are host arrays; its A/B/C pointer arrays
 * live in device memory (cuBLAS docs, cublasGemmGroupedBatchedEx), and bf16 A/B/C
 * with CUBLAS_COMPUTE_32F and float scales is a supported combination.
 */
#include <stdlib.h>
#include <string.h>

#include "moe_cuda_priv.cuh"

/* Grouped calls in flight before the host waits: a layer's experts stages make 7
 * (forward 2, backward 5: three batches, two of them with fp32 and bf16 C). */
#define GEMM_CUDA_SLOTS 8

#if CUBLAS_VERSION >= 120500
#define GEMM_CUDA_HAVE_GROUPED 1
#else
#define GEMM_CUDA_HAVE_GROUPED 0
#endif

struct gemm_cuda {
    int cap, count;
    struct gemm_cuda_op *ops;        /* [cap] queued */
    /* cuBLAS group arrays, host, [cap] each */
    cublasOperation_t *ta, *tb;
    int *m, *n, *k, *lda, *ldb, *ldc, *size;
    float *alpha, *beta;
    const void **pin;                /* pinned [SLOTS][3 cap]: A, B, C pointers */
    const void **dev;                /* device [SLOTS][3 cap] */
    cudaEvent_t ev[GEMM_CUDA_SLOTS]; /* after the last copy from each slot */
    bool ev_made[GEMM_CUDA_SLOTS];
    unsigned next;                   /* next slot */
    bool no_grouped[2];              /* [c32]: cuBLAS refused that C type once: loop it */
};

void gemm_cuda_free(struct gemm_cuda *g)
{
    if (!g)
        return;
    for (int i = 0; i < GEMM_CUDA_SLOTS; i++)
        if (g->ev_made[i])
            (void)cudaEventDestroy(g->ev[i]);
    if (g->pin)
        (void)cudaFreeHost((void *)g->pin);
    if (g->dev)
        (void)cudaFree((void *)g->dev);
    free(g->ops);
    free(g->ta);
    free(g->tb);
    free(g->m);
    free(g->n);
    free(g->k);
    free(g->lda);
    free(g->ldb);
    free(g->ldc);
    free(g->size);
    free(g->alpha);
    free(g->beta);
    free(g);
}

static int gemm_cuda_alloc(struct gemm_cuda *g)
{
    size_t c = (size_t)g->cap;
    g->ops = (struct gemm_cuda_op *)calloc(c, sizeof(*g->ops));
    g->ta = (cublasOperation_t *)calloc(c, sizeof(*g->ta));
    g->tb = (cublasOperation_t *)calloc(c, sizeof(*g->tb));
    g->m = (int *)calloc(c, sizeof(int));
    g->n = (int *)calloc(c, sizeof(int));
    g->k = (int *)calloc(c, sizeof(int));
    g->lda = (int *)calloc(c, sizeof(int));
    g->ldb = (int *)calloc(c, sizeof(int));
    g->ldc = (int *)calloc(c, sizeof(int));
    g->size = (int *)calloc(c, sizeof(int));
    g->alpha = (float *)calloc(c, sizeof(float));
    g->beta = (float *)calloc(c, sizeof(float));
    if (!g->ops || !g->ta || !g->tb || !g->m || !g->n || !g->k || !g->lda || !g->ldb ||
        !g->ldc || !g->size || !g->alpha || !g->beta)
        return -ENOMEM;
    size_t ptr_bytes = (size_t)GEMM_CUDA_SLOTS * 3 * c * sizeof(void *);
    TRY_CUDA(cudaMallocHost((void **)&g->pin, ptr_bytes));
    TRY_CUDA(cudaMalloc((void **)&g->dev, ptr_bytes));
    for (int i = 0; i < GEMM_CUDA_SLOTS; i++) {
        TRY_CUDA(cudaEventCreateWithFlags(&g->ev[i], cudaEventDisableTiming));
        g->ev_made[i] = true;
    }
    return 0;
}

int gemm_cuda_create(struct gemm_cuda **out, int cap)
{
    if (!out || cap < 1)
        return -EINVAL;
    struct gemm_cuda *g = (struct gemm_cuda *)calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->cap = cap;
    int rc = gemm_cuda_alloc(g);
    if (rc < 0) {
        gemm_cuda_free(g);                  /* frees what was made */
        return rc;
    }
    *out = g;
    return 0;
}

int gemm_cuda_room(const struct gemm_cuda *g)
{
    return g->cap - g->count;
}

void gemm_cuda_reset(struct gemm_cuda *g)
{
    g->count = 0;
}

int gemm_cuda_add(struct gemm_cuda *g, const struct gemm_cuda_op *op)
{
    if (op->m < 0 || op->n < 0 || op->k < 0)
        return -EINVAL;
    if (op->m == 0 || op->n == 0 || (op->k == 0 && op->beta == 1.0f))
        return 0;
    if (op->k == 0)
        return -EINVAL;
    if (g->count == g->cap)
        return -ENOSPC;
    g->ops[g->count++] = *op;
    return 0;
}

static cudaDataType_t c_type(const struct gemm_cuda_op *op)
{
    return op->c32 ? CUDA_R_32F : CUDA_R_16BF;
}

int gemm_cuda_one(cublasHandle_t h, const struct gemm_cuda_op *op)
{
    const float alpha = 1.0f, beta = op->beta;
    TRY_CUBLAS(cublasGemmEx(h, op->tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            op->ta ? CUBLAS_OP_T : CUBLAS_OP_N, op->n, op->m, op->k, &alpha,
                            op->b, CUDA_R_16BF, op->ldb, op->a, CUDA_R_16BF, op->lda, &beta,
                            op->c, c_type(op), op->ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    return 0;
}

static bool same_shape(const struct gemm_cuda_op *a, const struct gemm_cuda_op *b)
{
    return a->ta == b->ta && a->tb == b->tb && a->m == b->m && a->n == b->n &&
           a->k == b->k && a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc &&
           a->beta == b->beta && a->c32 == b->c32;
}

#if GEMM_CUDA_HAVE_GROUPED
/* The queued ops whose C is fp32 (c32) or bf16 as one grouped call (cuBLAS's
 * column-major view, see the top): 0, 1 when cuBLAS refuses the call (nothing ran),
 * or a negative errno. Whether cuBLAS groups bf16 A/B with fp32 C is not in its
 * table of grouped types for every version; a refusal (NOT_SUPPORTED, or
 * INVALID_VALUE for that type only) sends that type to cublasGemmEx, which takes it. */
static int run_grouped(struct gemm_cuda *g, cublasHandle_t h, cudaStream_t s, bool c32)
{
    int count = 0;
    for (int i = 0; i < g->count; i++)
        count += g->ops[i].c32 == c32;
    if (count == 0)
        return 0;
    const unsigned slot = g->next++ % GEMM_CUDA_SLOTS;
    const void **pin = g->pin + (size_t)slot * 3 * g->cap;
    const void **dev = g->dev + (size_t)slot * 3 * g->cap;

    /* The slot's previous copy has left the pinned buffer: the host waits for the
     * device to reach the grouped call GEMM_CUDA_SLOTS calls back. */
    TRY_CUDA(cudaEventSynchronize(g->ev[slot]));
    int groups = 0, j = 0;
    const struct gemm_cuda_op *prev = NULL;
    for (int i = 0; i < g->count; i++) {
        const struct gemm_cuda_op *op = &g->ops[i];
        if (op->c32 != c32)
            continue;
        pin[j] = op->b;                     /* cuBLAS's A */
        pin[count + j] = op->a;             /* cuBLAS's B */
        pin[2 * count + j] = op->c;
        j++;
        bool same = prev && same_shape(op, prev);
        prev = op;
        if (same) {
            g->size[groups - 1]++;
            continue;
        }
        g->ta[groups] = op->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        g->tb[groups] = op->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
        g->m[groups] = op->n;
        g->n[groups] = op->m;
        g->k[groups] = op->k;
        g->lda[groups] = op->ldb;
        g->ldb[groups] = op->lda;
        g->ldc[groups] = op->ldc;
        g->alpha[groups] = 1.0f;
        g->beta[groups] = op->beta;
        g->size[groups] = 1;
        groups++;
    }
    const size_t bytes = 3 * (size_t)count * sizeof(void *);
    TRY_CUDA(cudaMemcpyAsync((void *)dev, (const void *)pin, bytes, cudaMemcpyHostToDevice,
                             s));
    TRY_CUDA(cudaEventRecord(g->ev[slot], s));
    const cudaDataType_t ct = c32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasStatus_t st = cublasGemmGroupedBatchedEx(
        h, g->ta, g->tb, g->m, g->n, g->k, g->alpha, dev, CUDA_R_16BF, g->lda, dev + count,
        CUDA_R_16BF, g->ldb, g->beta, (void *const *)(dev + 2 * count), ct, g->ldc,
        groups, g->size, CUBLAS_COMPUTE_32F);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (c32 && st == CUBLAS_STATUS_INVALID_VALUE)) {
        fprintf(stderr, "%s:%d: cublasGemmGroupedBatchedEx (bf16 A/B, %s C): %s; one "
                "cublasGemmEx per such problem from now on\n", __FILE__, __LINE__,
                c32 ? "fp32" : "bf16", cublasGetStatusString(st));
        g->no_grouped[c32] = true;
        return 1;                           /* not run: the caller loops */
    }
    TRY_CUBLAS(st);
    return 0;
}
#endif

int gemm_cuda_run(struct gemm_cuda *g, cublasHandle_t h, cudaStream_t s,
                  enum moe_cuda_gemm mode)
{
    int rc = 0;
    /* bf16 C (activations), then fp32 C (main_grad): the ops of a batch are
     * independent, so their order does not matter. */
    for (int c32 = 0; c32 < 2 && rc == 0; c32++) {
#if GEMM_CUDA_HAVE_GROUPED
        if (mode == MOE_CUDA_GEMM_GROUPED && !g->no_grouped[c32]) {
            rc = run_grouped(g, h, s, c32 != 0);
            if (rc != 1)
                continue;
            rc = 0;
        }
#else
        (void)mode;
#endif
        (void)s;                            /* h is bound to s by its owner */
        for (int i = 0; i < g->count && rc == 0; i++)
            if (g->ops[i].c32 == (c32 != 0))
                rc = gemm_cuda_one(h, &g->ops[i]);
    }
    g->count = 0;
    return rc;
}
