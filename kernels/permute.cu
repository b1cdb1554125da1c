/* permute.cu: the permuted layout and the moves in and out of it, on the GPU, with
 * no host round trip. Plain-C twin: cpu_route's cursor loop, cpu_permute,
 * cpu_combine, cpu_combine_bwd, cpu_permute_bwd (moe_cpu.c).
 *
 * Layout (moe.h): offsets = exclusive prefix sum of counts (one block, CUB BlockScan);
 * perm_slot = the slots 0..TK-1 stably sorted by expert (CUB's LSD radix sort on
 * ceil(log2 E) bits is stable, so inside a group slots, hence tokens, keep their
 * order); slot_pos = its inverse. All integer: deterministic.
 *
 * Row kernels: one block of ROW_THREADS per token, rows moved as 16-byte vectors of
 * 8 bf16 (H % 8 == 0, 16-byte aligned rows), sums in fp32 in slot order k = 0..K-1.
 * HBM bytes per call (T tokens, TK = T K rows of H):
 *   permute      (1 + K) T H 2        read x once, write K copies
 *   combine      (K + 1) T H 2 + 8 TK
 *   combine_bwd  (2 K + 1) T H 2 + 12 TK
 *   permute_bwd  (K + 2) T H 2 + 4 TK
 */
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "moe_cuda_priv.cuh"

#define ROW_THREADS 128
#define SCAN_THREADS 1024

int permute_cuda_key_bits(int experts)
{
    int b = 1;
    while (b < 31 && (1 << b) < experts)
        b++;
    return b;
}

/* offsets[e] = sum of counts[0..e-1], offsets[E] = the total. One block. */
static __global__ void __launch_bounds__(SCAN_THREADS)
offsets_kernel(int experts, const int32_t *counts, int32_t *offsets)
{
    typedef cub::BlockScan<int32_t, SCAN_THREADS> scan_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ int32_t carry;
    if (threadIdx.x == 0)
        carry = 0;
    __syncthreads();
    for (int base = 0; base < experts; base += SCAN_THREADS) {
        const int e = base + threadIdx.x;
        int32_t v = e < experts ? counts[e] : 0, ex, total;
        scan_t(tmp).ExclusiveSum(v, ex, total);
        if (e < experts)
            offsets[e] = carry + ex;
        __syncthreads();                    /* carry read by all, tmp free again */
        if (threadIdx.x == 0)
            carry += total;
        __syncthreads();
    }
    if (threadIdx.x == 0)
        offsets[experts] = carry;
}

static __global__ void slot_pos_kernel(int rows, const int32_t *perm_slot, int32_t *slot_pos)
{
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < rows;
         p += (int64_t)gridDim.x * blockDim.x)
        slot_pos[perm_slot[p]] = (int32_t)p;
}

int permute_cuda_layout(struct moe_ctx *ctx, int tokens)
{
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const int e_n = ctx->cfg.experts, tk = tokens * ctx->cfg.top_k;
    const int bits = permute_cuda_key_bits(e_n);
    const cudaStream_t s = p->stream;

    offsets_kernel<<<1, SCAN_THREADS, 0, s>>>(e_n, ctx->counts, ctx->offsets);
    TRY_CUDA(cudaGetLastError());
    if (tk == 0)
        return 0;
    size_t need = 0;
    TRY_CUDA(cub::DeviceRadixSort::SortPairs(NULL, need, (const uint32_t *)ctx->topk_idx,
                                             p->sort_keys, (const int32_t *)p->iota,
                                             ctx->perm_slot, tk, 0, bits, s));
    if (need > p->sort_tmp_bytes)
        return -ENOMEM;                     /* sized at create for max_tokens: not seen */
    size_t have = p->sort_tmp_bytes;
    TRY_CUDA(cub::DeviceRadixSort::SortPairs(p->sort_tmp, have,
                                             (const uint32_t *)ctx->topk_idx, p->sort_keys,
                                             (const int32_t *)p->iota, ctx->perm_slot, tk, 0,
                                             bits, s));
    unsigned nb = blocks_for((size_t)tk, 256);
    slot_pos_kernel<<<nb < 4096 ? nb : 4096, 256, 0, s>>>(tk, ctx->perm_slot, ctx->slot_pos);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

/* Block t: x[t] to rows slot_pos[t K + k] of xp, k < K. h8 = H / 8. */
static __global__ void __launch_bounds__(ROW_THREADS)
permute_kernel(int h8, int k_n, const int32_t *slot_pos, const uint4 *x, uint4 *xp)
{
    const size_t t = blockIdx.x;
    const int32_t *pos = slot_pos + t * k_n;
    for (int v = threadIdx.x; v < h8; v += ROW_THREADS) {
        const uint4 val = x[t * h8 + v];
        for (int k = 0; k < k_n; k++)
            xp[(size_t)pos[k] * h8 + v] = val;
    }
}

/* Block t: out[t] = sum_k w[t, k] yp[slot_pos[t K + k]], k in order. */
static __global__ void __launch_bounds__(ROW_THREADS)
combine_kernel(int h8, int k_n, const int32_t *slot_pos, const float *topk_w, const bf16 *yp,
               bf16 *out)
{
    const size_t t = blockIdx.x;
    const int32_t *pos = slot_pos + t * k_n;
    const float *w = topk_w + t * k_n;
    for (int v = threadIdx.x; v < h8; v += ROW_THREADS) {
        float acc[8] = { 0.0f }, y[8];
        for (int k = 0; k < k_n; k++) {
            const float wk = w[k];
            load8(yp + ((size_t)pos[k] * h8 + v) * 8, y);
#pragma unroll
            for (int i = 0; i < 8; i++)
                acc[i] = k == 0 ? wk * y[i] : acc[i] + wk * y[i];
        }
        store8(out + (t * h8 + v) * 8, acc);
    }
}

/* Block t, for each k in order: dyp[pos] = w dout[t] and dtopk_w[t, k] = <dout[t],
 * yp[pos]>, the dot a fixed tree (each thread's vectors in order, warp butterfly, warps
 * in order). */
static __global__ void __launch_bounds__(ROW_THREADS)
combine_bwd_kernel(int h8, int k_n, const int32_t *slot_pos, const float *topk_w,
                   const bf16 *dout, const bf16 *yp, bf16 *dyp, float *dtopk_w)
{
    __shared__ float red[ROW_THREADS / 32];
    const size_t t = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int k = 0; k < k_n; k++) {
        const size_t pos = (size_t)slot_pos[t * k_n + k];
        const float wk = topk_w[t * k_n + k];
        float dot = 0.0f;
        for (int v = threadIdx.x; v < h8; v += ROW_THREADS) {
            float d[8], y[8], g[8];
            load8(dout + (t * h8 + v) * 8, d);
            load8(yp + (pos * h8 + v) * 8, y);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                g[i] = wk * d[i];
                dot += d[i] * y[i];
            }
            store8(dyp + (pos * h8 + v) * 8, g);
        }
        dot = warp_sum(dot);
        if (lane == 0)
            red[warp] = dot;
        __syncthreads();
        if (threadIdx.x == 0) {
            float sum = red[0];
            for (int i = 1; i < ROW_THREADS / 32; i++)
                sum += red[i];
            dtopk_w[t * k_n + k] = sum;
        }
        __syncthreads();                    /* red free for the next k */
    }
}

/* Block t: dx[t] += sum_k dxp[slot_pos[t K + k]], the sum in k order, then added. */
static __global__ void __launch_bounds__(ROW_THREADS)
permute_bwd_kernel(int h8, int k_n, const int32_t *slot_pos, const bf16 *dxp, bf16 *dx)
{
    const size_t t = blockIdx.x;
    const int32_t *pos = slot_pos + t * k_n;
    for (int v = threadIdx.x; v < h8; v += ROW_THREADS) {
        float s[8], d[8];
        load8(dxp + ((size_t)pos[0] * h8 + v) * 8, s);
        for (int k = 1; k < k_n; k++) {
            load8(dxp + ((size_t)pos[k] * h8 + v) * 8, d);
#pragma unroll
            for (int i = 0; i < 8; i++)
                s[i] += d[i];
        }
        load8(dx + (t * h8 + v) * 8, d);
#pragma unroll
        for (int i = 0; i < 8; i++)
            d[i] += s[i];
        store8(dx + (t * h8 + v) * 8, d);
    }
}

/* The ctx is ours and, when it holds tokens, the n buffers are there and aligned. */
static bool rows_ok(const struct moe_ctx *ctx, const void *a, const void *b,
                    const void *c = NULL, int n = 2)
{
    if (!cuda_ctx_ok(ctx))
        return false;
    if (ctx->tokens == 0)
        return true;
    return a && b && aligned16(a) && aligned16(b) && (n < 3 || (c && aligned16(c)));
}

int permute_cuda_fwd(const struct moe_ctx *ctx, const void *x, void *xp)
{
    if (!rows_ok(ctx, x, xp))
        return -EINVAL;
    if (ctx->tokens == 0)
        return 0;
    permute_kernel<<<ctx->tokens, ROW_THREADS, 0, cuda_priv(ctx)->stream>>>(
        ctx->cfg.hidden / 8, ctx->cfg.top_k, ctx->slot_pos, (const uint4 *)x, (uint4 *)xp);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

int permute_cuda_combine(const struct moe_ctx *ctx, const void *yp, void *out)
{
    if (!rows_ok(ctx, yp, out))
        return -EINVAL;
    if (ctx->tokens == 0)
        return 0;
    combine_kernel<<<ctx->tokens, ROW_THREADS, 0, cuda_priv(ctx)->stream>>>(
        ctx->cfg.hidden / 8, ctx->cfg.top_k, ctx->slot_pos, ctx->topk_w, (const bf16 *)yp,
        (bf16 *)out);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

int permute_cuda_combine_bwd(struct moe_ctx *ctx, const void *dout, const void *yp, void *dyp)
{
    if (!rows_ok(ctx, dout, yp, dyp, 3))
        return -EINVAL;
    if (ctx->tokens == 0)
        return 0;
    combine_bwd_kernel<<<ctx->tokens, ROW_THREADS, 0, cuda_priv(ctx)->stream>>>(
        ctx->cfg.hidden / 8, ctx->cfg.top_k, ctx->slot_pos, ctx->topk_w, (const bf16 *)dout,
        (const bf16 *)yp, (bf16 *)dyp, ctx->dtopk_w);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

int permute_cuda_bwd(const struct moe_ctx *ctx, const void *dxp, void *dx)
{
    if (!rows_ok(ctx, dxp, dx))
        return -EINVAL;
    if (ctx->tokens == 0)
        return 0;
    permute_bwd_kernel<<<ctx->tokens, ROW_THREADS, 0, cuda_priv(ctx)->stream>>>(
        ctx->cfg.hidden / 8, ctx->cfg.top_k, ctx->slot_pos, (const bf16 *)dxp, (bf16 *)dx);
    TRY_CUDA(cudaGetLastError());
    return 0;
}
