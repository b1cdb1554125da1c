/* cuda_bench.cu: what the GPU benchmark needs from the device side: the device's
 * peaks, event timers on a ctx's stream, random fills, an L2 flush and the dense GEMM
 * reference. Plain-C twin: none (timing and peaks have no CPU analogue here; the
 * CPU benchmark, tests/bench_moe_cpu.c, measures its own sgemm reference).
 */
#include <stdlib.h>
#include <string.h>

#include "moe_cuda_priv.cuh"

/* Peaks by device name, first match wins (so the specific names come first). Vendor
 * datasheets: H100 SXM5 989.4 TFLOP/s dense bf16 and 3.35 TB/s; H100 PCIe 756 and
 * 2.0; H100 NVL 835 and 3.9; H200 SXM 989 and 4.8; H200 NVL 835 and 4.8; H800 SXM
 * as H100 SXM. To add a device, add a row above any row whose name it contains. */
static const struct {
    const char *name;                   /* substring of cudaDeviceProp.name */
    double bf16_flops, hbm_Bps;
} peak_table[] = {
    { "H100 PCIe", 756e12, 2.0e12 },
    { "H100 NVL", 835e12, 3.9e12 },
    { "H100", 989.4e12, 3.35e12 },
    { "H200 NVL", 835e12, 4.8e12 },
    { "H200", 989.4e12, 4.8e12 },
    { "H800", 989.4e12, 3.35e12 },
};

extern "C" int moe_cuda_device_info(struct moe_cuda_device *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    int dev, mem_khz = 0, bus_bits = 0, clk_khz = 0;
    cudaDeviceProp prop;
    TRY_CUDA(cudaGetDevice(&dev));
    TRY_CUDA(cudaGetDeviceProperties(&prop, dev));
    TRY_CUDA(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev));
    TRY_CUDA(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
    TRY_CUDA(cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev));
    snprintf(out->name, sizeof(out->name), "%s", prop.name);
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    out->sms = prop.multiProcessorCount;
    out->l2_bytes = (size_t)prop.l2CacheSize;
    out->mem_bytes = prop.totalGlobalMem;

    int row = -1;
    for (size_t i = 0; i < sizeof(peak_table) / sizeof(peak_table[0]) && row < 0; i++)
        if (strstr(prop.name, peak_table[i].name))
            row = (int)i;
    if (mem_khz > 0 && bus_bits > 0) {
        out->hbm_Bps = 2.0 * mem_khz * 1e3 * bus_bits / 8.0;   /* double data rate */
        out->hbm_src = "2 x memoryClockRate x busWidth";
    } else if (row >= 0) {
        out->hbm_Bps = peak_table[row].hbm_Bps;
        out->hbm_src = "datasheet table";
    } else {
        out->hbm_src = "unknown";
    }
    if (row >= 0) {
        out->bf16_flops = peak_table[row].bf16_flops;
        out->flops_src = "datasheet table";
    } else if (prop.major == 9 && clk_khz > 0) {
        out->bf16_flops = (double)out->sms * clk_khz * 1e3 * 4096.0;
        out->flops_src = "estimate: SMs x clock x 4096 flop/clk (Hopper dense bf16)";
    } else {
        out->flops_src = "unknown";
    }
    return 0;
}

/* ---- timers ---- */

struct moe_cuda_timer {
    int n;                              /* events: 2 n */
    cudaEvent_t *ev;
};

extern "C" void moe_cuda_timer_free(struct moe_cuda_timer *t)
{
    if (!t)
        return;
    for (int i = 0; i < 2 * t->n; i++)
        if (t->ev[i])
            (void)cudaEventDestroy(t->ev[i]);
    free(t->ev);
    free(t);
}

extern "C" int moe_cuda_timer_create(struct moe_cuda_timer **out, int n)
{
    if (!out || n < 1 || n > (1 << 20))
        return -EINVAL;
    struct moe_cuda_timer *t = (struct moe_cuda_timer *)calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->n = n;
    t->ev = (cudaEvent_t *)calloc(2 * (size_t)n, sizeof(cudaEvent_t));
    if (!t->ev) {
        free(t);
        return -ENOMEM;
    }
    for (int i = 0; i < 2 * n; i++) {
        cudaError_t e = cudaEventCreate(&t->ev[i]);
        if (e != cudaSuccess) {
            t->ev[i] = NULL;
            moe_cuda_timer_free(t);
            return cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
        }
    }
    *out = t;
    return 0;
}

extern "C" int moe_cuda_timer_record(struct moe_cuda_timer *t, const struct moe_ctx *ctx,
                                     int i)
{
    if (!t || !cuda_ctx_ok(ctx) || i < 0 || i >= 2 * t->n)
        return -EINVAL;
    TRY_CUDA(cudaEventRecord(t->ev[i], cuda_priv(ctx)->stream));
    return 0;
}

extern "C" int moe_cuda_timer_elapsed_s(struct moe_cuda_timer *t, int a, int b, double *s)
{
    if (!t || !s || a < 0 || b < 0 || a >= 2 * t->n || b >= 2 * t->n)
        return -EINVAL;
    float ms = 0.0f;
    TRY_CUDA(cudaEventSynchronize(t->ev[b]));
    TRY_CUDA(cudaEventElapsedTime(&ms, t->ev[a], t->ev[b]));
    *s = ms * 1e-3;
    return 0;
}

/* ---- fills, flush, dense reference ---- */

/* SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
 * OOPSLA 2014) of seed + i: independent of the launch shape. */
static __global__ void fill_kernel(bf16 *p, size_t n, uint64_t seed, float scale)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * 0x1.0p-24f;       /* [0, 1) */
        p[i] = __float2bfloat16_rn(scale * (2.0f * u - 1.0f));
    }
}

extern "C" int moe_cuda_fill_random(const struct moe_ctx *ctx, void *elems, size_t n,
                                    uint64_t seed, float scale)
{
    if (!cuda_ctx_ok(ctx) || (n && !elems))
        return -EINVAL;
    if (n == 0)
        return 0;
    unsigned nb = blocks_for(n, 256);
    fill_kernel<<<nb < 65536u ? nb : 65536u, 256, 0, cuda_priv(ctx)->stream>>>(
        (bf16 *)elems, n, seed, scale);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

extern "C" int moe_cuda_flush_l2(const struct moe_ctx *ctx, void *scratch, size_t bytes)
{
    if (!cuda_ctx_ok(ctx) || (bytes && !scratch))
        return -EINVAL;
    if (bytes)
        TRY_CUDA(cudaMemsetAsync(scratch, 0x5a, bytes, cuda_priv(ctx)->stream));
    return 0;
}

extern "C" int moe_cuda_dense_gemm(struct moe_ctx *ctx, int m, int n, int k, const void *a,
                                   const void *b, void *c)
{
    if (!cuda_ctx_ok(ctx) || m < 1 || n < 1 || k < 1 || !a || !b || !c)
        return -EINVAL;
    struct gemm_cuda_op op = { false, false, m, n, k, a, k, b, n, c, n, 0.0f, false };
    return gemm_cuda_one(cuda_priv(ctx)->blas, &op);
}
