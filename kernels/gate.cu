/* gate.cu: the router on the GPU: logits through cuBLAS, then one fused kernel for
 * scores, bias-aware top-k, routing weights and the per-expert histogram, then the
 * aux loss's column sums; and the backward to dlogits, dW_gate and dx. Plain-C twin:
 * gate_cpu.c (same formulas, same selection order), cpu_route / cpu_route_bwd.
 *
 * Top-k: one warp per token. A candidate (v = s + bias, e) becomes the 64-bit key
 * (order-preserving bits of v) << 32 | ~e, so "larger v, then lower e" (gate_cpu.c's
 * order: NaN of either sign above +inf, NaNs tied, -0 equal to +0) is plain unsigned
 * order; pick k is
 * the warp maximum of the keys below pick k - 1. O(K E / 32 + 10 K) per token; with
 * E <= 1024 each lane keeps its ceil(E/32) keys in registers, above that it re-reads
 * its own scores (which only it wrote) from global memory.
 */
#include <math.h>
#include <string.h>

#include "moe_cuda_priv.cuh"

#define TOPK_WARPS 8                    /* tokens per block of the top-k kernel */
#define GATE_BWD_WARPS 8                /* tokens per block of the backward kernel */
#define AUX_ROWS 8                      /* token lanes of the aux column-sum block */
#define AUX_FINAL_THREADS 256

/* High word of a NaN's key: one above +inf's (0x7f800000 | 0x80000000), which no number
 * reaches; below 0xffffffff, so no key equals pick_topk's start value ~0. */
#define NAN_RANK 0xff800001u

static __device__ __forceinline__ uint64_t rank_key(float v, int e)
{
    uint32_t u = NAN_RANK;
    if (!isnan(v)) {
        v += 0.0f;                      /* -0 -> +0: gate_cpu.c's > makes them a tie */
        u = __float_as_uint(v);
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    return ((uint64_t)u << 32) | (uint64_t)(~(uint32_t)e);
}

/* Every valid key is > 0 (its low word ~e >= 2^31), so 0 means "none". */
static __device__ __forceinline__ int key_expert(uint64_t key)
{
    return (int)~(uint32_t)key;
}

static __device__ __forceinline__ uint64_t warp_max_key(uint64_t v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        uint64_t w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

struct topk_args {
    int tokens, experts, top_k;
    bool sigmoid, norm;
    float route_scale;
    const float *logits, *bias;         /* bias: [E] or NULL */
    float *scores, *topk_w, *ztok;
    int32_t *topk_idx, *counts;
};

/* Pick K experts for token t from its lane's candidates; keys(j)/score(j) give the
 * j-th candidate of this lane (expert lane + 32 j, key 0 when absent); V > 0: V of
 * them (unrolled, registers), V = 0: per_lane. Writes topk_idx, topk_w and the block
 * histogram hist. */
template <int V, typename Keys, typename Score>
static __device__ void pick_topk(const topk_args &a, int32_t *hist, int t, int lane,
                                 int per_lane, Keys keys, Score score)
{
    const int n = V > 0 ? V : per_lane;
    const int K = a.top_k;
    int32_t *idx = a.topk_idx + (size_t)t * K;
    float *w = a.topk_w + (size_t)t * K;
    uint64_t prev = ~0ull;
    float zsel = 0.0f;

    for (int k = 0; k < K; k++) {
        uint64_t best = 0;
        float best_s = 0.0f;
#pragma unroll
        for (int j = 0; j < n; j++) {
            uint64_t key = keys(j);
            if (key < prev && key > best) {
                best = key;
                best_s = score(j);
            }
        }
        /* K <= E: some expert ranks below the last pick, so top > 0 */
        uint64_t top = warp_max_key(best);
        int e = key_expert(top);
        float s = __shfl_sync(0xffffffffu, best_s, e & 31);   /* the owner's best is top */
        if (lane == 0) {
            idx[k] = e;
            w[k] = s;                       /* raw score; weighted below */
            atomicAdd(&hist[e], 1);
        }
        zsel += s;                          /* k order, as gate_cpu.c */
        prev = top;
    }
    __syncwarp();                           /* lane 0's writes seen by the warp */
    for (int k = lane; k < K; k += 32)
        w[k] = a.norm ? a.route_scale * (w[k] / zsel) : a.route_scale * w[k];
}

/* Token t with V scores per lane in registers (E <= 32 V). */
template <int V>
static __device__ void token_regs(const topk_args &a, int32_t *hist, int t, int lane)
{
    const int E = a.experts;
    const float *l = a.logits + (size_t)t * E;
    float *so = a.scores + (size_t)t * E;
    float s[V];
    uint64_t key[V];

    if (a.sigmoid) {
#pragma unroll
        for (int j = 0; j < V; j++) {
            int e = lane + 32 * j;
            s[j] = e < E ? 1.0f / (1.0f + expf(-l[e])) : 0.0f;
        }
    } else {
        float m = -INFINITY, sum = 0.0f;
#pragma unroll
        for (int j = 0; j < V; j++) {
            int e = lane + 32 * j;
            s[j] = e < E ? l[e] : -INFINITY;
            m = max_nan(m, s[j]);
        }
        m = warp_max(m);
#pragma unroll
        for (int j = 0; j < V; j++) {
            int e = lane + 32 * j;
            s[j] = e < E ? expf(s[j] - m) : 0.0f;
            sum += s[j];
        }
        sum = warp_sum(sum);
#pragma unroll
        for (int j = 0; j < V; j++)
            s[j] = s[j] / sum;
    }
    float z = 0.0f;
#pragma unroll
    for (int j = 0; j < V; j++) {
        int e = lane + 32 * j;
        if (e < E) {
            so[e] = s[j];
            z += s[j];
            key[j] = rank_key(a.bias ? s[j] + a.bias[e] : s[j], e);
        } else {
            key[j] = 0;
        }
    }
    z = warp_sum(z);
    if (lane == 0)
        a.ztok[t] = z;
    pick_topk<V>(a, hist, t, lane, V, [&](int j) { return key[j]; },
                 [&](int j) { return s[j]; });
}

/* Token t for any E: scores go to global memory and are re-read by the lane that
 * wrote them. */
static __device__ void token_any(const topk_args &a, int32_t *hist, int t, int lane)
{
    const int E = a.experts;
    const float *l = a.logits + (size_t)t * E;
    float *so = a.scores + (size_t)t * E;

    if (a.sigmoid) {
        for (int e = lane; e < E; e += 32)
            so[e] = 1.0f / (1.0f + expf(-l[e]));
    } else {
        float m = -INFINITY, sum = 0.0f;
        for (int e = lane; e < E; e += 32)
            m = max_nan(m, l[e]);
        m = warp_max(m);
        for (int e = lane; e < E; e += 32) {
            so[e] = expf(l[e] - m);
            sum += so[e];
        }
        sum = warp_sum(sum);
        for (int e = lane; e < E; e += 32)
            so[e] = so[e] / sum;
    }
    float z = 0.0f;
    for (int e = lane; e < E; e += 32)
        z += so[e];
    z = warp_sum(z);
    if (lane == 0)
        a.ztok[t] = z;
    const int per_lane = (E + 31) / 32;
    auto key = [&](int j) {
        int e = lane + 32 * j;
        return e < E ? rank_key(a.bias ? so[e] + a.bias[e] : so[e], e) : (uint64_t)0;
    };
    auto score = [&](int j) { return so[lane + 32 * j]; };
    pick_topk<0>(a, hist, t, lane, per_lane, key, score);
}

/* Block: TOPK_WARPS tokens, one warp each; dynamic shared memory: E ints. */
template <int V>
static __global__ void __launch_bounds__(TOPK_WARPS * 32) topk_kernel(topk_args a)
{
    extern __shared__ int32_t hist[];
    const int lane = threadIdx.x & 31;
    const int t = blockIdx.x * TOPK_WARPS + (threadIdx.x >> 5);

    for (int e = threadIdx.x; e < a.experts; e += blockDim.x)
        hist[e] = 0;
    __syncthreads();
    if (t < a.tokens) {                     /* whole warps */
        if constexpr (V > 0)
            token_regs<V>(a, hist, t, lane);
        else
            token_any(a, hist, t, lane);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < a.experts; e += blockDim.x)
        if (hist[e])
            atomicAdd(&a.counts[e], hist[e]);   /* integers: any order, same sum */
}

/* part[c][e] = sum over the tokens t of chunk c of s_t,e / Z_t, in double, in a fixed
 * order. Block (32, AUX_ROWS): 32 experts x one chunk of `per` tokens. */
static __global__ void aux_colsum_kernel(int tokens, int experts, int per,
                                         const float *scores, const float *ztok, double *part)
{
    __shared__ double acc[AUX_ROWS][32];
    const int e = blockIdx.x * 32 + threadIdx.x;
    const int t0 = blockIdx.y * per;
    const int t1 = min(tokens, t0 + per);
    double sum = 0.0;
    if (e < experts)
        for (int t = t0 + threadIdx.y; t < t1; t += AUX_ROWS)
            sum += (double)scores[(size_t)t * experts + e] / (double)ztok[t];
    acc[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && e < experts) {
        for (int y = 1; y < AUX_ROWS; y++)
            sum += acc[y][threadIdx.x];
        part[(size_t)blockIdx.y * experts + e] = sum;
    }
}

/* L_aux = scale sum_e count_e sum_c part[c][e] (moe.h: sum_e f_e P_e rewritten), a
 * fixed tree; stored as float bits at *out. One block of AUX_FINAL_THREADS. */
static __global__ void aux_final_kernel(int experts, int chunks, double scale,
                                        const int32_t *counts, const double *part,
                                        int32_t *out)
{
    __shared__ double red[AUX_FINAL_THREADS];
    double sum = 0.0;
    for (int e = threadIdx.x; e < experts; e += AUX_FINAL_THREADS) {
        double p = 0.0;
        for (int c = 0; c < chunks; c++)
            p += part[(size_t)c * experts + e];
        sum += (double)counts[e] * p;
    }
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int o = AUX_FINAL_THREADS / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o)
            red[threadIdx.x] += red[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[0] = __float_as_int((float)(scale * red[0]));
}

/* ---- route ---- */

static bool route_args_ok(const struct moe_ctx *ctx, const struct moe_weights *w,
                          const void *x, int tokens)
{
    return cuda_ctx_ok(ctx) && w && w->gate && tokens >= 0 && tokens <= ctx->max_tokens &&
           (tokens == 0 || (x && aligned16(x)));
}

/* logits [T x E] fp32 = x [T x H] W_g [H x E] (bf16 in, fp32 out and compute). */
static int route_logits(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                        int tokens)
{
    const int e = ctx->cfg.experts, h = ctx->cfg.hidden;
    struct gemm_cuda_op op = { false, false, tokens, e, h, x, h, w->gate, e, ctx->logits, e,
                               0.0f, true };
    return gemm_cuda_one(cuda_priv(ctx)->blas, &op);
}

/* Scores, top-k, weights and counts (added to: zero them first), then the aux loss's
 * float bits into route_out[2E + 2] when aux_alpha > 0. */
static int route_topk(struct moe_ctx *ctx, const struct moe_weights *w, int tokens)
{
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const struct moe_cfg *c = &ctx->cfg;
    const int e_n = c->experts;
    topk_args a = { tokens, e_n, c->top_k, c->score == MOE_SCORE_SIGMOID, c->norm_topk,
                    c->route_scale, ctx->logits, w->bias, ctx->scores, ctx->topk_w, p->ztok,
                    ctx->topk_idx, ctx->counts };
    const unsigned grid = blocks_for((size_t)tokens, TOPK_WARPS), block = TOPK_WARPS * 32;
    const size_t smem = (size_t)e_n * sizeof(int32_t);
    const cudaStream_t s = p->stream;

    if (e_n <= 32)
        topk_kernel<1><<<grid, block, smem, s>>>(a);
    else if (e_n <= 64)
        topk_kernel<2><<<grid, block, smem, s>>>(a);
    else if (e_n <= 128)
        topk_kernel<4><<<grid, block, smem, s>>>(a);
    else if (e_n <= 256)
        topk_kernel<8><<<grid, block, smem, s>>>(a);
    else if (e_n <= 512)
        topk_kernel<16><<<grid, block, smem, s>>>(a);
    else if (e_n <= 1024)
        topk_kernel<32><<<grid, block, smem, s>>>(a);
    else
        topk_kernel<0><<<grid, block, smem, s>>>(a);
    TRY_CUDA(cudaGetLastError());

    if (c->aux_alpha <= 0.0f)
        return 0;
    const int chunks0 = tokens < MOE_CUDA_AUX_CHUNKS ? tokens : MOE_CUDA_AUX_CHUNKS;
    const int per = (tokens + chunks0 - 1) / chunks0;
    const int chunks = (tokens + per - 1) / per;
    const dim3 cgrid(blocks_for((size_t)e_n, 32), chunks), cblock(32, AUX_ROWS);
    aux_colsum_kernel<<<cgrid, cblock, 0, s>>>(tokens, e_n, per, ctx->scores, p->ztok,
                                               p->aux_part);
    TRY_CUDA(cudaGetLastError());
    const double scale = (double)c->aux_alpha * e_n / ((double)c->top_k * tokens * tokens);
    aux_final_kernel<<<1, AUX_FINAL_THREADS, 0, s>>>(e_n, chunks, scale, ctx->counts,
                                                     p->aux_part, p->route_out + 2 * e_n + 2);
    TRY_CUDA(cudaGetLastError());
    return 0;
}

/* The one device-to-host copy of a route: counts, offsets, aux loss. */
static int route_finish(struct moe_ctx *ctx)
{
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const size_t e = (size_t)ctx->cfg.experts;
    float aux;
    TRY_CUDA(cudaMemcpyAsync(p->route_host, p->route_out, (2 * e + 3) * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, p->stream));
    TRY_CUDA(cudaStreamSynchronize(p->stream));
    memcpy(ctx->host_counts, p->route_host, e * sizeof(int32_t));
    memcpy(ctx->host_offsets, p->route_host + e + 1, (e + 1) * sizeof(int32_t));
    memcpy(&aux, p->route_host + 2 * e + 2, sizeof(aux));
    ctx->aux_loss = aux;
    return 0;
}

int gate_cuda_route(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                    int tokens)
{
    if (!route_args_ok(ctx, w, x, tokens))
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const size_t e = (size_t)ctx->cfg.experts;
    int rc = 0;

    TRY_CUDA(cudaMemsetAsync(p->route_out, 0, (2 * e + 3) * sizeof(int32_t), p->stream));
    if (tokens > 0) {
        rc = route_logits(ctx, w, x, tokens);
        if (rc == 0)
            rc = route_topk(ctx, w, tokens);
        if (rc == 0)
            rc = permute_cuda_layout(ctx, tokens);
    }
    if (rc == 0)
        rc = route_finish(ctx);
    if (rc == 0)
        ctx->tokens = tokens;
    return rc;
}

extern "C" int moe_cuda_route_piece(struct moe_ctx *ctx, const struct moe_weights *w,
                                    const void *x, int tokens,
                                    enum moe_cuda_route_piece piece)
{
    if (!route_args_ok(ctx, w, x, tokens) || tokens == 0)
        return -EINVAL;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    switch (piece) {
    case MOE_CUDA_ROUTE_LOGITS:
        return route_logits(ctx, w, x, tokens);
    case MOE_CUDA_ROUTE_TOPK:
        TRY_CUDA(cudaMemsetAsync(ctx->counts, 0, (size_t)ctx->cfg.experts * sizeof(int32_t),
                                 p->stream));
        return route_topk(ctx, w, tokens);
    case MOE_CUDA_ROUTE_LAYOUT:
        return permute_cuda_layout(ctx, tokens);
    }
    return -EINVAL;
}

/* ---- backward ---- */

struct gate_bwd_args {
    int tokens, experts, top_k;
    bool sigmoid, norm;
    float route_scale, aux_scale;
    const float *scores, *dtopk_w;
    const int32_t *topk_idx, *counts;
    float *dlogits;
    bf16 *dl16;
};

/* dtopk_w -> dlogits (gate_cpu_bwd's formulas), also as bf16 for the GEMMs. One warp
 * per token; lane l owns experts e = l (mod 32) of the token's rows, so every ds[e]
 * is read and written by one lane only. */
static __global__ void __launch_bounds__(GATE_BWD_WARPS * 32)
gate_bwd_kernel(gate_bwd_args a)
{
    const int lane = threadIdx.x & 31;
    const int t = blockIdx.x * GATE_BWD_WARPS + (threadIdx.x >> 5);
    if (t >= a.tokens)
        return;                             /* whole warps; no block barrier below */
    const int E = a.experts, K = a.top_k;
    const float *s = a.scores + (size_t)t * E;
    const int32_t *idx = a.topk_idx + (size_t)t * K;
    const float *dw = a.dtopk_w + (size_t)t * K;
    float *ds = a.dlogits + (size_t)t * E;
    bf16 *d16 = a.dl16 + (size_t)t * E;

    for (int e = lane; e < E; e += 32)
        ds[e] = 0.0f;
    if (a.norm) {
        float z = 0.0f, dot = 0.0f;
        for (int k = 0; k < K; k++)
            z += s[idx[k]];
        for (int k = 0; k < K; k++)
            dot += dw[k] * (s[idx[k]] / z);
        for (int k = 0; k < K; k++)
            if ((idx[k] & 31) == lane)
                ds[idx[k]] = a.route_scale * (dw[k] - dot) / z;
    } else {
        for (int k = 0; k < K; k++)
            if ((idx[k] & 31) == lane)
                ds[idx[k]] = a.route_scale * dw[k];
    }
    if (a.aux_scale > 0.0f) {
        float z = 0.0f, dot = 0.0f;
        for (int e = lane; e < E; e += 32)
            z += s[e];
        z = warp_sum(z);
        for (int e = lane; e < E; e += 32)
            dot += a.aux_scale * (float)a.counts[e] * (s[e] / z);
        dot = warp_sum(dot);
        for (int e = lane; e < E; e += 32)
            ds[e] += (a.aux_scale * (float)a.counts[e] - dot) / z;
    }
    if (a.sigmoid) {
        for (int e = lane; e < E; e += 32) {
            float g = ds[e] * s[e] * (1.0f - s[e]);
            ds[e] = g;
            d16[e] = __float2bfloat16_rn(g);
        }
    } else {
        float dot = 0.0f;
        for (int e = lane; e < E; e += 32)
            dot += s[e] * ds[e];
        dot = warp_sum(dot);
        for (int e = lane; e < E; e += 32) {
            float g = s[e] * (ds[e] - dot);
            ds[e] = g;
            d16[e] = __float2bfloat16_rn(g);
        }
    }
}

int gate_cuda_route_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                        void *dx, struct moe_weights *dw)
{
    if (!cuda_ctx_ok(ctx) || !w || !w->gate || !dw || !dw->gate ||
        (ctx->tokens > 0 && (!x || !dx || !aligned16(x) || !aligned16(dx))))
        return -EINVAL;
    const struct moe_cfg *c = &ctx->cfg;
    struct moe_cuda_priv *p = cuda_priv(ctx);
    const int t_n = ctx->tokens, e_n = c->experts, h_n = c->hidden;
    if (t_n == 0)
        return 0;
    /* g_e = alpha f_e / T = aux_scale count_e, as gate_cpu_bwd; over the batch of
     * aux_counts / aux_tokens when the caller set them (moe.h) */
    const double t_aux = ctx->aux_tokens > 0 ? ctx->aux_tokens : t_n;
    const float aux_scale = c->aux_alpha > 0.0f
        ? (float)(c->aux_alpha * (double)e_n / ((double)c->top_k * t_aux * t_aux)) : 0.0f;
    gate_bwd_args a = { t_n, e_n, c->top_k, c->score == MOE_SCORE_SIGMOID, c->norm_topk,
                        c->route_scale, aux_scale, ctx->scores, ctx->dtopk_w, ctx->topk_idx,
                        ctx->aux_counts ? ctx->aux_counts : ctx->counts, ctx->dlogits,
                        p->dl16 };
    gate_bwd_kernel<<<blocks_for((size_t)t_n, GATE_BWD_WARPS), GATE_BWD_WARPS * 32, 0,
                      p->stream>>>(a);
    TRY_CUDA(cudaGetLastError());

    /* dW_g [H x E] += x^T dlogits (fp32 main_grad);  dx [T x H] += dlogits W_g^T */
    struct gemm_cuda_op dgate = { true, false, h_n, e_n, t_n, x, h_n, p->dl16, e_n, dw->gate,
                                  e_n, 1.0f, true };
    struct gemm_cuda_op dxg = { false, true, t_n, h_n, e_n, p->dl16, e_n, w->gate, e_n, dx,
                                h_n, 1.0f, false };
    int rc = gemm_cuda_one(p->blas, &dgate);
    return rc < 0 ? rc : gemm_cuda_one(p->blas, &dxg);
}
