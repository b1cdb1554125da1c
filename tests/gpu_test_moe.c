/* gpu_test_moe.c: CUnit suite for the CUDA backend (kernels/moe_cuda.h) against the
 * fp32 CPU backend (moe_cpu.h), the oracle. Without a CUDA device it prints one SKIP
 * line and exits 0, so `make unit` passes on machines without a GPU.
 *
 * Same inputs on both sides: every tensor is drawn in fp32, uploaded to the GPU
 * (rounded to bf16) and downloaded back; the CPU runs on those bf16-exact values.
 * The routing must then agree exactly, which holds only where no choice is a close
 * call: the GPU's logits (bf16 products summed in fp32 by tensor cores) differ from
 * OpenBLAS's by about 1e-6 relative, so every token's K + 1 best selection values
 * (s + bias) are made to differ by at least GAP_REL |v| + GAP_ABS, a thousand times
 * that error, by redrawing the x rows of the tokens that fail (the selection of a
 * token depends on its own row only).
 *
 * Tolerances. Routing arrays are fp32 on both sides: within F32_TOL = 1e-4 (logits,
 * scores, weights, aux loss). Elem tensors: the GPU stores a, b, h, y, out, dh, da,
 * db and dx in bf16 (unit roundoff u = 2^-9 = 1.95e-3), about 5 roundings deep in
 * the forward and 8 in the backward; the weight gradients are fp32 main_grads, whose
 * operands (h, da, db, dlogits) carry those bf16 roundings. Two checks (compare()): the
 * relative 2-norm error within NORM_TOL = 2e-2 (about 10 u) and every element within
 * EL_TOL = 6e-2 of (the tensor's rms, or its max for the sparse routing gradients,
 * + |ref|). Calibrated on a host emulation of this backend's numerics (the same
 * GEMMs in fp32 with C rounded to bf16 wherever the CUDA code stores bf16): over the
 * cases below the worst tensor reached 0.38 of NORM_TOL and 0.53 of EL_TOL. A wrong
 * index, weight or formula gives errors of order the tensor's rms. Gradients of one
 * expert are checked against that expert's own scale; an expert with no rows must
 * stay exactly zero.
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "gate_cpu.h"
#include "moe.h"
#include "moe_cpu.h"
#include "moe_cuda.h"

#define NORM_TOL 2e-2
#define EL_TOL 6e-2
#define F32_TOL 1e-4
#define GAP_REL 1e-3
#define GAP_ABS 1e-6
#define MARGIN_ROUNDS 200
#define SHOW 5                          /* mismatches printed per tensor */

/* ---- data ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform on [-a, a). */
static float unif(uint64_t *s, float a)
{
    return a * (float)((double)(splitmix64(s) >> 11) * 0x1.0p-52 - 1.0);
}

enum tensor { T_X, T_GATE, T_W1, T_W3, T_W2, T_SW1, T_SW3, T_SW2, T_DOUT, T_COUNT };
static const char *const tensor_name[T_COUNT] = { "x", "gate", "w1", "w3", "w2", "sw1",
                                                  "sw3", "sw2", "dout" };

/* NONE: no bias. RANDOM: uniform on [-0.3, 0.3). SKEW: expert 0 +10 (every token
 * picks it), expert 1 +0.2 (most do), the last two -100 (none does), others 0. */
enum bias_mode { BIAS_NONE, BIAS_RANDOM, BIAS_SKEW };

/* The layer's input, parameters and dout as host fp32, made bf16-exact by round_trip. */
struct layer {
    struct moe_cfg c;
    int t;
    size_t n[T_COUNT];
    float *v[T_COUNT];
    float *bias;                        /* [E] or NULL; fp32 on both sides */
    uint64_t rng;
};

static void layer_free(struct layer *l)
{
    for (int i = 0; i < T_COUNT; i++)
        free(l->v[i]);
    free(l->bias);
}

/* x and dout uniform on [-1, 1); gate on [-4.5/sqrt(H), ...) (logits with standard
 * deviation about 1.5); expert weights with variance 1 / fan_in. */
static int layer_init(struct layer *l, const struct moe_cfg *c, int tokens, uint64_t seed,
                      enum bias_mode bias)
{
    memset(l, 0, sizeof(*l));
    l->c = *c;
    l->t = tokens;
    l->rng = seed;
    size_t h = c->hidden, f = c->ffn, e = c->experts, s = c->shared, t = tokens;
    size_t fs = moe_shared_ffn(c);
    size_t n[T_COUNT] = { t * h, h * e, e * h * f, e * h * f, e * f * h,
                          s * h * fs, s * h * fs, s * fs * h, t * h };
    for (int i = 0; i < T_COUNT; i++) {
        l->n[i] = n[i];
        l->v[i] = calloc(n[i] + 1, sizeof(float));
        if (!l->v[i]) {
            layer_free(l);
            return -ENOMEM;
        }
        float a = i == T_X || i == T_DOUT ? 1.0f
                : i == T_GATE ? 4.5f / sqrtf((float)h)
                : sqrtf(3.0f / (float)(i == T_W2 ? f : i == T_SW2 ? fs : h));
        for (size_t j = 0; j < n[i]; j++)
            l->v[i][j] = unif(&l->rng, a);
    }
    if (bias != BIAS_NONE) {
        l->bias = calloc(e, sizeof(float));
        if (!l->bias) {
            layer_free(l);
            return -ENOMEM;
        }
        for (size_t j = 0; j < e; j++)
            l->bias[j] = bias == BIAS_RANDOM ? unif(&l->rng, 0.3f) : 0.0f;
        if (bias == BIAS_SKEW && e >= 4) {
            l->bias[0] = 10.0f;
            l->bias[1] = 0.2f;
            l->bias[e - 1] = l->bias[e - 2] = -100.0f;
        }
    }
    return 0;
}

/* One backend's copy of the layer: values, zeroed gradients, pointer arrays. */
struct side {
    const struct moe_ops *ops;
    bool gpu;
    void *v[T_COUNT], *g[T_COUNT];      /* g[T_X]: elem dx; weights': fp32 grads;
                                           g[T_DOUT] unused */
    float *bias;
    void **ptr;                         /* 12 arrays of max(E, S) pointers */
    struct moe_weights w, dw;
};

static void side_free(struct side *s)
{
    for (int i = 0; i < T_COUNT; i++) {
        s->ops->free(s->v[i]);
        s->ops->free(s->g[i]);
    }
    if (s->gpu)
        s->ops->free(s->bias);
    else
        free(s->bias);
    free(s->ptr);
}

static void point(void **p, void *base, int n, size_t each_bytes)
{
    for (int i = 0; i < n; i++)
        p[i] = (char *)base + (size_t)i * each_bytes;
}

static int side_init(struct side *s, const struct moe_ops *ops, bool gpu,
                     const struct layer *l)
{
    const struct moe_cfg *c = &l->c;
    const size_t e = c->experts, m = c->experts > c->shared ? c->experts : c->shared;
    const size_t each = (size_t)c->hidden * c->ffn * ops->elem_bytes;
    const size_t each_s = (size_t)c->hidden * moe_shared_ffn(c) * ops->elem_bytes;
    const size_t grad_each = (size_t)c->hidden * c->ffn * sizeof(float);
    const size_t grad_each_s = (size_t)c->hidden * moe_shared_ffn(c) * sizeof(float);
    int rc = 0;

    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->gpu = gpu;
    for (int i = 0; i < T_COUNT && rc == 0; i++) {
        rc = ops->alloc(&s->v[i], l->n[i]);
        if (rc == 0)
            rc = ops->upload(s->v[i], l->v[i], l->n[i]);
        if (rc == 0 && i == T_X)
            rc = ops->alloc(&s->g[i], l->n[i]);
        else if (rc == 0 && i != T_DOUT)
            rc = ops->grad_alloc(&s->g[i], l->n[i]);
    }
    if (rc == 0 && l->bias) {
        if (gpu) {
            rc = moe_cuda_malloc((void **)&s->bias, e * sizeof(float));
            if (rc == 0)
                rc = moe_cuda_copy(s->bias, l->bias, e * sizeof(float));
        } else {
            s->bias = malloc(e * sizeof(float));
            rc = s->bias ? 0 : -ENOMEM;
            if (rc == 0)
                memcpy(s->bias, l->bias, e * sizeof(float));
        }
    }
    s->ptr = rc == 0 ? calloc(12 * m, sizeof(void *)) : NULL;
    if (rc < 0 || !s->ptr) {
        side_free(s);
        return rc < 0 ? rc : -ENOMEM;
    }
    void **p[12];
    for (int i = 0; i < 12; i++)
        p[i] = s->ptr + (size_t)i * m;
    for (int i = 0; i < 3; i++) {
        point(p[i], s->v[T_W1 + i], c->experts, each);
        point(p[3 + i], s->g[T_W1 + i], c->experts, grad_each);
        point(p[6 + i], s->v[T_SW1 + i], c->shared, each_s);
        point(p[9 + i], s->g[T_SW1 + i], c->shared, grad_each_s);
    }
    bool sh = c->shared > 0;
    s->w = (struct moe_weights){ s->v[T_GATE], s->bias, p[0], p[1], p[2],
                                 sh ? p[6] : NULL, sh ? p[7] : NULL, sh ? p[8] : NULL };
    s->dw = (struct moe_weights){ s->g[T_GATE], NULL, p[3], p[4], p[5],
                                  sh ? p[9] : NULL, sh ? p[10] : NULL, sh ? p[11] : NULL };
    return 0;
}

/* Zeroes every gradient. */
static int side_zero_grads(struct side *s, const struct layer *l)
{
    for (int i = 0; i < T_DOUT; i++) {
        size_t bytes = l->n[i] * (i == T_X ? s->ops->elem_bytes : sizeof(float));
        int rc = s->gpu ? moe_cuda_zero(s->g[i], bytes) : (memset(s->g[i], 0, bytes), 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Tensor i of the layer through the GPU and back: bf16-exact on the host and equal on
 * both. */
static int round_trip(struct layer *l, struct side *gpu, int i)
{
    int rc = gpu->ops->upload(gpu->v[i], l->v[i], l->n[i]);
    return rc < 0 ? rc : gpu->ops->download(l->v[i], gpu->v[i], l->n[i]);
}

/* ---- selection margins ---- */

/* The best expert ranking after (pv, pe) in gate_cpu.c's order, its value in *v. */
static int next_best(int en, const float *s, const float *bias, float pv, int pe, float *v)
{
    int be = -1;
    float bv = -INFINITY;
    for (int e = 0; e < en; e++) {
        float x = bias ? s[e] + bias[e] : s[e];
        bool after = pv > x || (pv == x && pe < e);
        if (after && (be < 0 || x > bv || (x == bv && e < be))) {
            bv = x;
            be = e;
        }
    }
    *v = bv;
    return be;
}

/* Marks the tokens whose K + 1 best values are not GAP apart; returns their count. */
static int close_calls(const struct layer *l, const float *scores, char *bad)
{
    const int en = l->c.experts, kn = l->c.top_k, ranks = kn < en ? kn + 1 : kn;
    int n = 0;
    for (int t = 0; t < l->t; t++) {
        float pv = INFINITY, v, prev = 0.0f;
        int pe = -1;
        bad[t] = 0;
        for (int r = 0; r < ranks; r++) {
            pe = next_best(en, scores + (size_t)t * en, l->bias, pv, pe, &v);
            pv = v;
            if (r > 0 && !(prev - v >= GAP_REL * fmax(fabs(prev), fabs(v)) + GAP_ABS))
                bad[t] = 1;
            prev = v;
        }
        n += bad[t];
    }
    return n;
}

/* Redraws the x rows of close calls (round-tripped through the GPU) until none is
 * left; 0 or -EAGAIN after MARGIN_ROUNDS. */
static int make_margins(struct layer *l, struct side *gpu)
{
    const struct moe_ops *cpu = moe_cpu_ops();
    struct moe_ctx *ctx;
    char *bad = calloc((size_t)l->t + 1, 1);
    int rc = bad ? cpu->ctx_create(&ctx, &l->c, l->t, 0) : -ENOMEM;
    if (rc < 0) {
        free(bad);
        return rc;
    }
    struct moe_weights w = { l->v[T_GATE], l->bias, NULL, NULL, NULL, NULL, NULL, NULL };
    int left = 1;
    for (int round = 0; round < MARGIN_ROUNDS && left && rc == 0; round++) {
        rc = cpu->route(ctx, &w, l->v[T_X], l->t);
        left = rc == 0 ? close_calls(l, ctx->scores, bad) : 0;
        for (int t = 0; t < l->t && left; t++)
            for (int h = 0; bad[t] && h < l->c.hidden; h++)
                l->v[T_X][(size_t)t * l->c.hidden + h] = unif(&l->rng, 1.0f);
        if (rc == 0 && left)
            rc = round_trip(l, gpu, T_X);
    }
    cpu->ctx_free(ctx);
    free(bad);
    return rc < 0 ? rc : left ? -EAGAIN : 0;
}

/* ---- comparisons ---- */

static float *fetch_elems(const struct side *s, const void *p, size_t n)
{
    float *h = malloc((n + 1) * sizeof(float));
    if (h && s->ops->download(h, p, n) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* Gradient i of a side: dx (elem) or a weight's fp32 grad buffer. */
static float *fetch_grad(const struct side *s, int i, size_t n)
{
    if (i == T_X)
        return fetch_elems(s, s->g[i], n);
    float *h = malloc((n + 1) * sizeof(float));
    if (h && s->ops->grad_download(h, s->g[i], n) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

static void *fetch_raw(const void *dev, size_t bytes)
{
    void *h = malloc(bytes + 1);
    if (h && moe_cuda_copy(h, dev, bytes) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* How an elementwise tolerance scales: with the tensor's rms, or with its largest
 * |value| for the routing gradients, whose rms their few large entries (K of E per
 * token) do not represent. */
enum scale { SCALE_RMS, SCALE_MAX };

/* Two checks, both required. Norm: ||g - r|| <= norm_tol ||r|| (2-norms), where
 * independent rounding errors average out. Elements: |g - r| <= el_tol (scale(r) +
 * |r|), which finds a wrong element the norm would dilute. Prints the first SHOW
 * elements outside; returns the number of failures. */
static int compare(const char *label, const char *what, const float *g, const float *r,
                   size_t n, double norm_tol, double el_tol, enum scale scale)
{
    if (!g || !r) {
        printf("\n  %s: %s: could not fetch", label, what);
        return 1;
    }
    double rr = 0.0, dd = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)g[i] - r[i];
        rr += (double)r[i] * r[i];
        dd += d * d;
        mx = fmax(mx, fabs(r[i]));
    }
    const double sc = scale == SCALE_MAX ? mx : n ? sqrt(rr / (double)n) : 0.0;
    int bad = 0;
    if (!(sqrt(dd) <= norm_tol * sqrt(rr))) {
        printf("\n  %s: %s: relative 2-norm error %.3g > %.3g", label, what,
               rr > 0.0 ? sqrt(dd / rr) : INFINITY, norm_tol);
        bad++;
    }
    int el = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - r[i]), tol = el_tol * (sc + fabs(r[i]));
        if (d <= tol)
            continue;
        if (el++ < SHOW)
            printf("\n  %s: %s[%zu]: gpu %.7g, cpu %.7g, |diff| %.3g > tol %.3g", label, what,
                   i, g[i], r[i], d, tol);
    }
    if (el > SHOW)
        printf("\n  %s: %s: %d of %zu elements outside tolerance", label, what, el, n);
    return bad + el;
}

static int same_ints(const char *label, const char *what, const int32_t *g, const int32_t *r,
                     size_t n)
{
    if (!g || !r) {
        printf("\n  %s: %s: could not fetch", label, what);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (g[i] != r[i] && bad++ < SHOW)
            printf("\n  %s: %s[%zu]: gpu %d, cpu %d", label, what, i, (int)g[i], (int)r[i]);
    return bad;
}

/* Routing first: indices, counts, offsets and the layout exactly; logits, scores,
 * weights and the aux loss within fp32 rounding. */
static int compare_routing(const char *label, const struct moe_ctx *g,
                           const struct moe_ctx *r)
{
    const size_t t = g->tokens, e = g->cfg.experts, k = g->cfg.top_k;
    int32_t *idx = fetch_raw(g->topk_idx, t * k * 4), *cnt = fetch_raw(g->counts, e * 4);
    int32_t *off = fetch_raw(g->offsets, (e + 1) * 4);
    int32_t *pos = fetch_raw(g->slot_pos, t * k * 4);
    int32_t *perm = fetch_raw(g->perm_slot, t * k * 4);
    float *lg = fetch_raw(g->logits, t * e * 4), *sc = fetch_raw(g->scores, t * e * 4);
    float *tw = fetch_raw(g->topk_w, t * k * 4);
    int bad = 0;

    if (g->tokens != r->tokens) {
        printf("\n  %s: tokens %d, cpu %d", label, g->tokens, r->tokens);
        bad++;
    }
    bad += same_ints(label, "topk_idx", idx, r->topk_idx, t * k);
    bad += same_ints(label, "counts", cnt, r->counts, e);
    bad += same_ints(label, "host_counts", g->host_counts, r->host_counts, e);
    bad += same_ints(label, "offsets", off, r->offsets, e + 1);
    bad += same_ints(label, "host_offsets", g->host_offsets, r->host_offsets, e + 1);
    bad += same_ints(label, "slot_pos", pos, r->slot_pos, t * k);
    bad += same_ints(label, "perm_slot", perm, r->perm_slot, t * k);
    bad += compare(label, "logits", lg, r->logits, t * e, F32_TOL, F32_TOL, SCALE_RMS);
    bad += compare(label, "scores", sc, r->scores, t * e, F32_TOL, F32_TOL, SCALE_RMS);
    bad += compare(label, "topk_w", tw, r->topk_w, t * k, F32_TOL, F32_TOL, SCALE_RMS);
    if (!(fabs(g->aux_loss - r->aux_loss) <= 1e-4 * fabs(r->aux_loss) + 1e-9)) {
        printf("\n  %s: aux loss %.8g, cpu %.8g", label, g->aux_loss, r->aux_loss);
        bad++;
    }
    free(idx);
    free(cnt);
    free(off);
    free(pos);
    free(perm);
    free(lg);
    free(sc);
    free(tw);
    return bad;
}

/* Every gradient of the two sides; expert and shared weights one expert at a time. */
static int compare_grads(const char *label, const struct layer *l, const struct side *gs,
                         const struct side *cs)
{
    int bad = 0;
    for (int i = 0; i < T_DOUT; i++) {
        const size_t hf = (size_t)l->c.hidden * (i >= T_SW1 ? moe_shared_ffn(&l->c)
                                                             : l->c.ffn);
        float *g = fetch_grad(gs, i, l->n[i]);
        const float *r = cs->g[i];
        char what[48];
        if (i == T_X || i == T_GATE) {
            snprintf(what, sizeof(what), "d%s", tensor_name[i]);
            bad += compare(label, what, g, r, l->n[i], NORM_TOL, EL_TOL, SCALE_RMS);
        } else {
            for (size_t j = 0; hf && j < l->n[i] / hf; j++) {
                snprintf(what, sizeof(what), "d%s[%zu]", tensor_name[i], j);
                bad += compare(label, what, g ? g + j * hf : NULL, r + j * hf, hf, NORM_TOL,
                               EL_TOL, SCALE_RMS);
            }
        }
        free(g);
    }
    return bad;
}

/* ---- GPU against CPU ---- */

struct tcase {
    const char *name;
    struct moe_cfg c;
    int tokens;
    enum bias_mode bias;
    uint64_t seed;
};

#define SOFTMAX MOE_SCORE_SOFTMAX
#define SIGMOID MOE_SCORE_SIGMOID
static const struct tcase cases[] = {
    { "softmax E16 K4 S1 Fs80 aux", { 64, 48, 16, 1, 4, SOFTMAX, false, 1.0f, 0.01f, 80 }, 96,
      BIAS_NONE, 11 },
    { "sigmoid E8 K2 norm, skewed, 2 empty", { 32, 40, 8, 0, 2, SIGMOID, true, 2.5f, 0.01f, 0 },
      150, BIAS_SKEW, 12 },
    { "softmax E64 K6 S2 norm, skewed", { 128, 64, 64, 2, 6, SOFTMAX, true, 1.0f, 0.001f, 0 },
      200, BIAS_SKEW, 13 },
    { "sigmoid E32 K1, random bias", { 64, 32, 32, 0, 1, SIGMOID, false, 1.0f, 0.0f, 0 }, 64,
      BIAS_RANDOM, 14 },
    { "softmax E300 K8 norm", { 64, 32, 300, 0, 8, SOFTMAX, true, 1.0f, 0.001f, 0 }, 64,
      BIAS_NONE, 15 },
    { "sigmoid E1100 K3 (generic top-k) S1 Fs24, mostly empty",
      { 32, 16, 1100, 1, 3, SIGMOID, true, 1.0f, 0.01f, 24 }, 40, BIAS_NONE, 16 },
    { "softmax K = E = 4", { 16, 16, 4, 1, 4, SOFTMAX, false, 1.0f, 0.05f, 0 }, 32, BIAS_NONE,
      17 },
};

/* The layer of a case on both sides (GPU values round-tripped, margins made). */
static int make_sides(const struct tcase *tc, struct layer *l, struct side *gs,
                      struct side *cs)
{
    int rc = layer_init(l, &tc->c, tc->tokens, tc->seed, tc->bias);
    if (rc < 0)
        return rc;
    rc = side_init(gs, moe_cuda_ops(), true, l);
    for (int i = 0; i < T_COUNT && rc == 0; i++)
        rc = round_trip(l, gs, i);
    if (rc == 0)
        rc = make_margins(l, gs);
    if (rc == 0)
        rc = side_init(cs, moe_cpu_ops(), false, l);
    else
        side_free(gs);
    if (rc < 0)
        layer_free(l);
    return rc;
}

static const char *mode_name(enum moe_cuda_gemm mode)
{
    return mode == MOE_CUDA_GEMM_GROUPED ? "grouped" : "loop";
}

static void check_case(const struct tcase *tc, enum moe_cuda_gemm mode)
{
    const struct moe_ops *gpu = moe_cuda_ops(), *cpu = moe_cpu_ops();
    const int t = tc->tokens, rows = t * tc->c.top_k;
    const size_t on = (size_t)t * tc->c.hidden;
    char label[160];
    struct layer l;
    struct side gs, cs;
    struct moe_ctx *gc, *cc;
    void *gout, *cout;

    snprintf(label, sizeof(label), "%s [%s]", tc->name, mode_name(mode));
    CU_ASSERT_EQUAL_FATAL(make_sides(tc, &l, &gs, &cs), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&gc, &tc->c, t, rows), 0);
    CU_ASSERT_EQUAL_FATAL(cpu->ctx_create(&cc, &tc->c, t, rows), 0);
    CU_ASSERT_EQUAL_FATAL(moe_cuda_set_gemm(gc, mode), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&gout, on), 0);
    CU_ASSERT_EQUAL_FATAL(cpu->alloc(&cout, on), 0);

    int bad = 0;
    CU_ASSERT_EQUAL_FATAL(moe_forward(cpu, cc, &cs.w, cs.v[T_X], t, cout), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(gpu, gc, &gs.w, gs.v[T_X], t, gout), 0);
    bad += compare_routing(label, gc, cc);
    float *o = fetch_elems(&gs, gout, on);
    bad += compare(label, "out", o, cout, on, NORM_TOL, EL_TOL, SCALE_RMS);
    free(o);

    CU_ASSERT_EQUAL_FATAL(moe_backward(cpu, cc, &cs.w, cs.v[T_X], cs.v[T_DOUT], cs.g[T_X],
                                       &cs.dw), 0);
    CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, gc, &gs.w, gs.v[T_X], gs.v[T_DOUT], gs.g[T_X],
                                       &gs.dw), 0);
    const size_t tk = (size_t)rows, te = (size_t)t * tc->c.experts;
    float *dtw = fetch_raw(gc->dtopk_w, tk * 4), *dl = fetch_raw(gc->dlogits, te * 4);
    bad += compare(label, "dtopk_w", dtw, cc->dtopk_w, tk, NORM_TOL, EL_TOL, SCALE_MAX);
    bad += compare(label, "dlogits", dl, cc->dlogits, te, NORM_TOL, EL_TOL, SCALE_MAX);
    free(dtw);
    free(dl);
    bad += compare_grads(label, &l, &gs, &cs);
    CU_ASSERT_EQUAL(bad, 0);

    gpu->free(gout);
    cpu->free(cout);
    gpu->ctx_free(gc);
    cpu->ctx_free(cc);
    side_free(&gs);
    side_free(&cs);
    layer_free(&l);
}

static void test_against_cpu(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i], MOE_CUDA_GEMM_GROUPED);
        check_case(&cases[i], MOE_CUDA_GEMM_LOOP);
    }
}

/* ---- properties of the GPU alone ---- */

/* All of a side's gradients and an output, downloaded (bf16 values are exact in fp32,
 * so equal floats mean equal bits). */
struct snapshot {
    float *out, *g[T_DOUT];
};

static void snapshot_free(struct snapshot *s)
{
    free(s->out);
    for (int i = 0; i < T_DOUT; i++)
        free(s->g[i]);
}

static int take_snapshot(struct snapshot *s, const struct side *gs, const struct layer *l,
                         const void *out)
{
    s->out = fetch_elems(gs, out, (size_t)l->t * l->c.hidden);
    int ok = s->out != NULL;
    for (int i = 0; i < T_DOUT; i++) {
        s->g[i] = fetch_grad(gs, i, l->n[i]);
        ok &= s->g[i] != NULL;
    }
    return ok ? 0 : -EIO;
}

/* Mismatching tensors; exact: bitwise, else within the bf16 tolerance. bitwise is
 * set when every tensor is bitwise equal. */
static int compare_snapshots(const char *label, const struct snapshot *a,
                             const struct snapshot *b, const struct layer *l, bool exact,
                             bool *bitwise)
{
    int bad = 0;
    *bitwise = true;
    for (int i = -1; i < T_DOUT; i++) {
        const float *x = i < 0 ? a->out : a->g[i], *y = i < 0 ? b->out : b->g[i];
        size_t n = i < 0 ? (size_t)l->t * l->c.hidden : l->n[i];
        bool same = memcmp(x, y, n * sizeof(float)) == 0;
        char what[32];
        snprintf(what, sizeof(what), "%s%s", i < 0 ? "out" : "d",
                 i < 0 ? "" : tensor_name[i]);
        *bitwise &= same;
        if (exact && !same) {
            printf("\n  %s: %s differs from the one-process run", label, what);
            bad++;
        } else if (!exact) {
            bad += compare(label, what, x, y, n, NORM_TOL, EL_TOL, SCALE_RMS) > 0;
        }
    }
    return bad;
}

/* Forward and backward of one process on a fresh ctx into zeroed gradients. */
static int run_full(const struct layer *l, struct side *gs, enum moe_cuda_gemm mode,
                    struct snapshot *snap)
{
    const struct moe_ops *gpu = moe_cuda_ops();
    struct moe_ctx *ctx;
    void *out;
    int rc = side_zero_grads(gs, l);
    if (rc == 0)
        rc = gpu->alloc(&out, (size_t)l->t * l->c.hidden);
    if (rc < 0)
        return rc;
    rc = gpu->ctx_create(&ctx, &l->c, l->t, l->t * l->c.top_k);
    if (rc == 0) {
        rc = moe_cuda_set_gemm(ctx, mode);
        if (rc == 0)
            rc = moe_forward(gpu, ctx, &gs->w, gs->v[T_X], l->t, out);
        if (rc == 0)
            rc = moe_backward(gpu, ctx, &gs->w, gs->v[T_X], gs->v[T_DOUT], gs->g[T_X],
                              &gs->dw);
        if (rc == 0)
            rc = take_snapshot(snap, gs, l, out);
        gpu->ctx_free(ctx);
    }
    gpu->free(out);
    return rc;
}

/* Same inputs, same bits: two fresh contexts, both GEMM modes. */
static void test_deterministic(void)
{
    const struct tcase *tc = &cases[2];
    for (int mode = 0; mode < 2; mode++) {
        struct layer l;
        struct side gs;
        struct snapshot a = { 0 }, b = { 0 };
        bool bitwise;
        char label[64];
        snprintf(label, sizeof(label), "determinism [%s]", mode_name(mode));
        CU_ASSERT_EQUAL_FATAL(layer_init(&l, &tc->c, tc->tokens, tc->seed, tc->bias), 0);
        CU_ASSERT_EQUAL_FATAL(side_init(&gs, moe_cuda_ops(), true, &l), 0);
        CU_ASSERT_EQUAL(run_full(&l, &gs, mode, &a), 0);
        CU_ASSERT_EQUAL(run_full(&l, &gs, mode, &b), 0);
        if (a.out && b.out)
            CU_ASSERT_EQUAL(compare_snapshots(label, &a, &b, &l, true, &bitwise), 0);
        snapshot_free(&a);
        snapshot_free(&b);
        side_free(&gs);
        layer_free(&l);
    }
}

/* Expert parallelism by hand, as test_moe_cpu.c's rank split: 8 experts on 3 ranks
 * ({0,1,2}, {3,4,5}, {6,7}); expert 4 gets no token (bias -100). The source routes and
 * permutes; each rank copies its slice of the permuted buffer into its own buffer,
 * runs its experts in its own ctx (max_tokens 0) with only its weights, and its
 * result is copied back. LOOP mode: output and every gradient equal the one-process
 * run bit for bit (each GEMM is the same cublasGemmEx on the same operands, at
 * 16-byte aligned addresses either way). GROUPED mode: within the bf16 tolerance (a
 * grouped call's kernel is chosen from all its problems); bitwise equality is
 * reported, not required. */
static int split_run(const struct layer *l, struct side *gs, enum moe_cuda_gemm mode,
                     struct snapshot *snap)
{
    static const int first[] = { 0, 3, 6, 8 };
    const struct moe_ops *gpu = moe_cuda_ops();
    const size_t hb = (size_t)l->c.hidden * gpu->elem_bytes;
    const int t = l->t, ranks = 3;
    struct moe_ctx *src = NULL, *rk[3] = { NULL, NULL, NULL };
    void *recv[3] = { NULL }, *send[3] = { NULL }, *dy = NULL, *dxr = NULL, *out = NULL;
    void *w1[3][8] = { { 0 } }, *w3[3][8] = { { 0 } }, *w2[3][8] = { { 0 } };
    void *d1[3][8] = { { 0 } }, *d3[3][8] = { { 0 } }, *d2[3][8] = { { 0 } };
    struct moe_groups g[3];
    struct moe_weights wr[3], dwr[3];
    int rc = side_zero_grads(gs, l);

    if (rc == 0)
        rc = gpu->alloc(&out, (size_t)t * l->c.hidden);
    if (rc == 0)
        rc = gpu->ctx_create(&src, &l->c, t, 0);
    if (rc == 0)
        rc = gpu->route(src, &gs->w, gs->v[T_X], t);
    if (rc == 0)
        rc = gpu->permute(src, gs->v[T_X], src->xp);
    for (int r = 0; r < ranks && rc == 0; r++) {
        const int lo = src->host_offsets[first[r]], n = src->host_offsets[first[r + 1]] - lo;
        g[r] = (struct moe_groups){ first[r + 1] - first[r], first[r], NULL,
                                    src->host_counts + first[r] };
        for (int e = first[r]; e < first[r + 1]; e++) {
            w1[r][e] = gs->w.w1[e];
            w3[r][e] = gs->w.w3[e];
            w2[r][e] = gs->w.w2[e];
            d1[r][e] = gs->dw.w1[e];
            d3[r][e] = gs->dw.w3[e];
            d2[r][e] = gs->dw.w2[e];
        }
        wr[r] = (struct moe_weights){ gs->w.gate, NULL, w1[r], w3[r], w2[r],
                                      NULL, NULL, NULL };
        dwr[r] = (struct moe_weights){ NULL, NULL, d1[r], d3[r], d2[r], NULL, NULL, NULL };
        rc = gpu->ctx_create(&rk[r], &l->c, 0, n);
        if (rc == 0)
            rc = moe_cuda_set_gemm(rk[r], mode);
        if (rc == 0)
            rc = moe_cuda_malloc(&recv[r], (size_t)n * hb);
        if (rc == 0)
            rc = moe_cuda_malloc(&send[r], (size_t)n * hb);
        if (rc == 0)
            rc = moe_cuda_copy(recv[r], (char *)src->xp + (size_t)lo * hb, (size_t)n * hb);
        if (rc == 0)
            rc = gpu->experts_fwd(rk[r], &wr[r], &g[r], recv[r], send[r]);
        if (rc == 0)
            rc = moe_cuda_copy((char *)src->yp + (size_t)lo * hb, send[r], (size_t)n * hb);
    }
    if (rc == 0)
        rc = gpu->combine(src, src->yp, out);
    if (rc == 0)
        rc = gpu->shared_fwd(src, &gs->w, gs->v[T_X], out);

    if (rc == 0)
        rc = gpu->combine_bwd(src, gs->v[T_DOUT], src->yp, src->dyp);
    for (int r = 0; r < ranks && rc == 0; r++) {
        const int lo = src->host_offsets[first[r]], n = src->host_offsets[first[r + 1]] - lo;
        rc = moe_cuda_malloc(&dy, (size_t)n * hb);
        if (rc == 0)
            rc = moe_cuda_malloc(&dxr, (size_t)n * hb);
        if (rc == 0)
            rc = moe_cuda_copy(dy, (char *)src->dyp + (size_t)lo * hb, (size_t)n * hb);
        if (rc == 0)
            rc = gpu->experts_bwd(rk[r], &wr[r], &g[r], recv[r], dy, dxr, &dwr[r]);
        if (rc == 0)
            rc = moe_cuda_copy((char *)src->dxp + (size_t)lo * hb, dxr, (size_t)n * hb);
        gpu->free(dy);
        gpu->free(dxr);
        dy = dxr = NULL;
    }
    if (rc == 0)
        rc = gpu->permute_bwd(src, src->dxp, gs->g[T_X]);
    if (rc == 0)
        rc = gpu->route_bwd(src, &gs->w, gs->v[T_X], gs->g[T_X], &gs->dw);
    if (rc == 0)
        rc = gpu->shared_bwd(src, &gs->w, gs->v[T_X], gs->v[T_DOUT], gs->g[T_X], &gs->dw);
    if (rc == 0)
        rc = take_snapshot(snap, gs, l, out);
    if (rc == 0 && src->host_counts[4] != 0)
        rc = -EDOM;                         /* the bias did not empty expert 4 */

    for (int r = 0; r < ranks; r++) {
        gpu->free(recv[r]);
        gpu->free(send[r]);
        gpu->ctx_free(rk[r]);
    }
    gpu->ctx_free(src);
    gpu->free(out);
    return rc;
}

static void test_rank_split(void)
{
    const struct moe_cfg c = { 32, 24, 8, 1, 3, SIGMOID, true, 2.5f, 0.01f, 40 };
    for (int mode = 0; mode < 2; mode++) {
        struct layer l;
        struct side gs;
        struct snapshot full = { 0 }, split = { 0 };
        bool bitwise = false;
        char label[64];
        snprintf(label, sizeof(label), "rank split [%s]", mode_name(mode));
        CU_ASSERT_EQUAL_FATAL(layer_init(&l, &c, 40, 77, BIAS_RANDOM), 0);
        l.bias[4] = -100.0f;
        CU_ASSERT_EQUAL_FATAL(side_init(&gs, moe_cuda_ops(), true, &l), 0);
        CU_ASSERT_EQUAL(run_full(&l, &gs, mode, &full), 0);
        CU_ASSERT_EQUAL(split_run(&l, &gs, mode, &split), 0);
        if (full.out && split.out) {
            bool exact = mode == MOE_CUDA_GEMM_LOOP;
            CU_ASSERT_EQUAL(compare_snapshots(label, &split, &full, &l, exact, &bitwise), 0);
            if (!exact)
                printf("\n  %s: %s", label, bitwise ? "bitwise equal" : "equal within bf16 "
                       "tolerance, not bitwise (cuBLAS grouped kernel choice)");
            /* Expert 4 had no rows: its gradients stay zero. */
            const size_t hf = (size_t)l.c.hidden * l.c.ffn;
            bool zero = true;
            for (size_t i = 0; i < hf; i++)
                zero &= split.g[T_W1][4 * hf + i] == 0.0f &&
                        split.g[T_W2][4 * hf + i] == 0.0f;
            CU_ASSERT_TRUE(zero);
        }
        snapshot_free(&full);
        snapshot_free(&split);
        side_free(&gs);
        layer_free(&l);
    }
}

/* A rank with no tokens: counts and offsets 0, aux loss 0, forward and backward
 * succeed and leave every gradient zero. */
static void test_zero_tokens(void)
{
    const struct moe_ops *gpu = moe_cuda_ops();
    const struct moe_cfg c = { 16, 8, 5, 1, 2, SOFTMAX, true, 1.0f, 0.1f, 0 };
    struct layer l;
    struct side gs;
    struct moe_ctx *ctx;
    struct snapshot s = { 0 };
    void *out;
    CU_ASSERT_EQUAL_FATAL(layer_init(&l, &c, 4, 2, BIAS_NONE), 0);
    CU_ASSERT_EQUAL_FATAL(side_init(&gs, gpu, true, &l), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&out, 4 * 16), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&ctx, &c, 4, 8), 0);
    CU_ASSERT_EQUAL(moe_forward(gpu, ctx, &gs.w, gs.v[T_X], 0, out), 0);
    CU_ASSERT_EQUAL(ctx->tokens, 0);
    CU_ASSERT_EQUAL(ctx->aux_loss, 0.0f);
    for (int e = 0; e < 5; e++)
        CU_ASSERT_EQUAL(ctx->host_counts[e], 0);
    CU_ASSERT_EQUAL(ctx->host_offsets[5], 0);
    CU_ASSERT_EQUAL(moe_backward(gpu, ctx, &gs.w, gs.v[T_X], gs.v[T_DOUT], gs.g[T_X], &gs.dw),
                    0);
    CU_ASSERT_EQUAL_FATAL(take_snapshot(&s, &gs, &l, out), 0);
    bool zero = true;
    for (int i = 0; i < T_DOUT; i++)
        for (size_t j = 0; j < l.n[i]; j++)
            zero &= s.g[i][j] == 0.0f;
    CU_ASSERT_TRUE(zero);
    snapshot_free(&s);
    gpu->ctx_free(ctx);
    gpu->free(out);
    side_free(&gs);
    layer_free(&l);
}

/* fp32 -> the nearest bf16 (ties to even), as a bf16 store rounds a finite value. */
static float bf16_round(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&v, &u, sizeof(v));
    return v;
}

/* Every weight gradient of a side, concatenated (gate, w1, w3, w2, sw1, sw3, sw2). */
static float *fetch_weight_grads(const struct side *s, const struct layer *l, size_t *n)
{
    *n = 0;
    for (int i = T_GATE; i < T_DOUT; i++)
        *n += l->n[i];
    float *all = malloc((*n + 1) * sizeof(float));
    size_t at = 0;
    for (int i = T_GATE; i < T_DOUT && all; i++) {
        float *g = fetch_grad(s, i, l->n[i]);
        if (g)
            memcpy(all + at, g, l->n[i] * sizeof(float));
        else {
            free(all);
            all = NULL;
        }
        free(g);
        at += l->n[i];
    }
    return all;
}

/* Sets every weight gradient of a side to v. */
static int set_weight_grads(const struct side *s, const struct layer *l, float v)
{
    int rc = 0;
    for (int i = T_GATE; i < T_DOUT && rc == 0; i++) {
        float *h = malloc((l->n[i] + 1) * sizeof(float));
        if (!h)
            return -ENOMEM;
        for (size_t j = 0; j < l->n[i]; j++)
            h[j] = v;
        rc = s->ops->grad_upload(s->g[i], h, l->n[i]);
        free(h);
    }
    return rc;
}

/* test_moe_cpu.c's main_grad test on the GPU: weight gradients are fp32 main_grads
 * that the weight-gradient GEMMs add to (fp32 C). One backward from zero gives each
 * element's update d; dout is scaled by a power of two (exact in bf16 and in every
 * rounding after it, so d scales exactly) that brings the largest |d| within a
 * factor sqrt(2) of 1e-4. From 1.0, 1000 backwards reach 1 + 1000 d, each add
 * rounding by at most one ulp of fp32 in [0.5, 2) (an fp32 epilogue; split-K's
 * partial sums at most twice half an ulp): |G - (1 + 1000 d)| <= 1000 * 2^-23 =
 * 1.2e-4, while bf16 accumulation (emulated on the host) stays at exactly 1.0. */
static void test_main_grad(void)
{
    const struct moe_ops *gpu = moe_cuda_ops();
    const struct moe_cfg c = { 16, 16, 2, 1, 1, SOFTMAX, false, 1.0f, 0.0f, 32 };
    const int t = 4, reps = 1000;
    struct layer l;
    struct side gs;
    struct moe_ctx *ctx;
    void *out;
    size_t n, top = 0;
    CU_ASSERT_EQUAL_FATAL(layer_init(&l, &c, t, 71, BIAS_NONE), 0);
    CU_ASSERT_EQUAL_FATAL(side_init(&gs, gpu, true, &l), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&out, (size_t)t * 16), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&ctx, &c, t, t), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(gpu, ctx, &gs.w, gs.v[T_X], t, out), 0);
    CU_ASSERT_EQUAL_FATAL(set_weight_grads(&gs, &l, 0.0f), 0);
    CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, ctx, &gs.w, gs.v[T_X], gs.v[T_DOUT], gs.g[T_X],
                                       &gs.dw), 0);
    float *d = fetch_weight_grads(&gs, &l, &n);
    CU_ASSERT_FATAL(d != NULL);
    for (size_t i = 1; i < n; i++)
        top = fabsf(d[i]) > fabsf(d[top]) ? i : top;
    CU_ASSERT_FATAL(d[top] != 0.0f);
    const float scale = ldexpf(1.0f, (int)lrint(log2(1e-4 / fabs(d[top]))));
    for (size_t i = 0; i < l.n[T_DOUT]; i++)
        l.v[T_DOUT][i] *= scale;
    CU_ASSERT_EQUAL_FATAL(gpu->upload(gs.v[T_DOUT], l.v[T_DOUT], l.n[T_DOUT]), 0);
    free(d);

    CU_ASSERT_EQUAL_FATAL(set_weight_grads(&gs, &l, 0.0f), 0);
    CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, ctx, &gs.w, gs.v[T_X], gs.v[T_DOUT], gs.g[T_X],
                                       &gs.dw), 0);
    d = fetch_weight_grads(&gs, &l, &n);
    CU_ASSERT_FATAL(d != NULL);
    CU_ASSERT_TRUE(fabs(d[top]) >= 0.7e-4 && fabs(d[top]) <= 1.5e-4);

    CU_ASSERT_EQUAL_FATAL(set_weight_grads(&gs, &l, 1.0f), 0);
    for (int r = 0; r < reps; r++)
        CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, ctx, &gs.w, gs.v[T_X], gs.v[T_DOUT],
                                           gs.g[T_X], &gs.dw), 0);
    float *g = fetch_weight_grads(&gs, &l, &n);
    CU_ASSERT_FATAL(g != NULL);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double want = 1.0 + reps * (double)d[i];
        if (!(fabs(g[i] - want) <= reps * 0x1p-23) && bad++ < SHOW)
            printf("\n  main_grad[%zu]: %.8g after %d updates of %.4g, want %.8g", i, g[i],
                   reps, d[i], want);
    }
    CU_ASSERT_EQUAL(bad, 0);
    float acc = 1.0f;                         /* the same updates, added in bf16 */
    for (int r = 0; r < reps; r++)
        acc = bf16_round(acc + d[top]);
    CU_ASSERT_EQUAL(acc, 1.0f);
    free(d);
    free(g);
    gpu->ctx_free(ctx);
    gpu->free(out);
    side_free(&gs);
    layer_free(&l);
}

/* Gradient ordering on the GPU (moe.h). Refusals: a CPU sync for a CUDA ctx and a
 * CUDA sync for a CPU ctx are -EINVAL, a second sync -EBUSY. Ordering: ctxs a and b
 * hold forwards of the same input on their own streams, both bound to one sync, and
 * the host queues backwards a, b, a, b, ... (SYNC_REPS each) into the same fp32
 * gradients; the result must be that of ctx a running 2 SYNC_REPS backwards alone
 * (same GEMMs on the same operands: equal but for cuBLAS choosing differently per
 * handle, so within 1e-6 of each tensor's largest value; one lost update would be off
 * by 1 / (2 SYNC_REPS) = 2.5% of it). */
#define SYNC_REPS 20

static void test_grad_sync(void)
{
    const struct moe_ops *gpu = moe_cuda_ops(), *cpu = moe_cpu_ops();
    const struct moe_cfg c = { 64, 64, 8, 1, 2, SIGMOID, true, 1.0f, 0.01f, 32 };
    const int t = 256;
    struct layer l;
    struct side gs;
    struct moe_grad_sync *s, *s2, *cs;
    struct moe_ctx *a, *b, *cc;
    void *out, *outb, *dxb;
    size_t n;

    CU_ASSERT_EQUAL_FATAL(gpu->sync_create(&s), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->sync_create(&s2), 0);
    CU_ASSERT_EQUAL_FATAL(cpu->sync_create(&cs), 0);
    CU_ASSERT_EQUAL_FATAL(layer_init(&l, &c, t, 91, BIAS_NONE), 0);
    CU_ASSERT_EQUAL_FATAL(side_init(&gs, gpu, true, &l), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&out, (size_t)t * 64), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&outb, (size_t)t * 64), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&dxb, (size_t)t * 64), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&a, &c, t, t * 2), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&b, &c, t, t * 2), 0);
    CU_ASSERT_EQUAL_FATAL(cpu->ctx_create(&cc, &c, t, t * 2), 0);
    CU_ASSERT_EQUAL(gpu->sync_bind(a, cs), -EINVAL);
    CU_ASSERT_EQUAL(cpu->sync_bind(cc, s), -EINVAL);
    CU_ASSERT_EQUAL(gpu->sync_bind(a, s2), 0);
    CU_ASSERT_EQUAL(gpu->sync_bind(a, s), -EBUSY);
    CU_ASSERT_EQUAL(gpu->sync_bind(a, NULL), 0);

    CU_ASSERT_EQUAL_FATAL(moe_forward(gpu, a, &gs.w, gs.v[T_X], t, out), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(gpu, b, &gs.w, gs.v[T_X], t, outb), 0);
    CU_ASSERT_EQUAL_FATAL(set_weight_grads(&gs, &l, 0.0f), 0);
    for (int r = 0; r < 2 * SYNC_REPS; r++)
        CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, a, &gs.w, gs.v[T_X], gs.v[T_DOUT],
                                           gs.g[T_X], &gs.dw), 0);
    float *seq = fetch_weight_grads(&gs, &l, &n);

    CU_ASSERT_EQUAL_FATAL(gpu->sync_bind(a, s), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->sync_bind(b, s), 0);
    CU_ASSERT_EQUAL_FATAL(set_weight_grads(&gs, &l, 0.0f), 0);
    for (int r = 0; r < SYNC_REPS; r++) {
        CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, a, &gs.w, gs.v[T_X], gs.v[T_DOUT],
                                           gs.g[T_X], &gs.dw), 0);
        CU_ASSERT_EQUAL_FATAL(moe_backward(gpu, b, &gs.w, gs.v[T_X], gs.v[T_DOUT], dxb,
                                           &gs.dw), 0);
    }
    float *two = fetch_weight_grads(&gs, &l, &n);
    CU_ASSERT_FATAL(seq && two);
    size_t at = 0;
    int bad = 0;
    bool bitwise = true;
    for (int i = T_GATE; i < T_DOUT; i++) {
        double mx = 0.0;
        for (size_t j = 0; j < l.n[i]; j++)
            mx = fmax(mx, fabs(seq[at + j]));
        for (size_t j = 0; j < l.n[i]; j++, at++) {
            bitwise &= seq[at] == two[at];
            if (!(fabs(two[at] - seq[at]) <= 1e-6 * mx) && bad++ < SHOW)
                printf("\n  grad sync: d%s[%zu]: two ctxs %.8g, one ctx %.8g", tensor_name[i],
                       j, two[at], seq[at]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    printf("\n  grad sync: two ctxs %s one", bitwise ? "bitwise equal to" : "within 1e-6 of");
    free(seq);
    free(two);
    gpu->ctx_free(a);                         /* bound: unbinds */
    gpu->ctx_free(b);
    cpu->ctx_free(cc);
    gpu->sync_free(s);
    gpu->sync_free(s2);
    cpu->sync_free(cs);
    gpu->free(out);
    gpu->free(outb);
    gpu->free(dxb);
    side_free(&gs);
    layer_free(&l);
}

/* moe.h's NaN rule on the GPU, against gate_cpu_fwd on the same logits (the rows of
 * test_moe_cpu.c's test_topk_nan): the top-k kernel alone, logits copied into the ctx,
 * sigmoid without and with a bias holding +inf and NaN, then a softmax row with one
 * NaN logit. Choices equal exactly; scores and weights NaN at the same places and
 * within F32_TOL elsewhere. Then the whole layer with W_g[0][2] = NaN (sigmoid): every
 * token's first choice is expert 2 and every output element is NaN. */
static int nan_case(const struct moe_cfg *c, const float *logits, int tokens,
                    const float *bias)
{
    const struct moe_ops *gpu = moe_cuda_ops();
    const size_t te = (size_t)tokens * c->experts, tk = (size_t)tokens * c->top_k;
    float cs[64], cw[64], aux;
    int32_t ci[64], cn[16];
    struct moe_ctx *ctx = NULL;
    void *x = NULL, *gate = NULL, *db = NULL;
    int bad = 0;

    gate_cpu_fwd(c, bias, tokens, logits, cs, ci, cw, cn, &aux);
    int rc = gpu->ctx_create(&ctx, c, tokens, (int)tk);
    if (rc == 0)
        rc = gpu->alloc(&x, (size_t)tokens * c->hidden);
    if (rc == 0)
        rc = gpu->alloc(&gate, (size_t)c->hidden * c->experts);
    if (rc == 0 && bias)
        rc = moe_cuda_malloc(&db, (size_t)c->experts * sizeof(float));
    if (rc == 0 && bias)
        rc = moe_cuda_copy(db, bias, (size_t)c->experts * sizeof(float));
    if (rc == 0)
        rc = moe_cuda_copy(ctx->logits, logits, te * sizeof(float));
    struct moe_weights w = { gate, db, NULL, NULL, NULL, NULL, NULL, NULL };
    if (rc == 0)
        rc = moe_cuda_route_piece(ctx, &w, x, tokens, MOE_CUDA_ROUTE_TOPK);
    if (rc == 0)
        rc = moe_cuda_sync(ctx);
    int32_t *gi = rc == 0 ? fetch_raw(ctx->topk_idx, tk * 4) : NULL;
    float *gs = rc == 0 ? fetch_raw(ctx->scores, te * 4) : NULL;
    float *gw = rc == 0 ? fetch_raw(ctx->topk_w, tk * 4) : NULL;
    if (rc < 0 || !gi || !gs || !gw) {
        printf("\n  NaN rule: GPU run failed (%d)", rc);
        bad++;
    } else {
        bad += same_ints("NaN rule", "topk_idx", gi, ci, tk);
        for (size_t i = 0; i < te + tk; i++) {
            float g = i < te ? gs[i] : gw[i - te], r = i < te ? cs[i] : cw[i - te];
            bool ok = isnan(g) ? isnan(r) != 0 : !isnan(r) && fabs(g - r) <= F32_TOL;
            if (!ok && bad++ < SHOW)
                printf("\n  NaN rule: %s[%zu]: gpu %g, cpu %g", i < te ? "scores" : "topk_w",
                       i < te ? i : i - te, g, r);
        }
    }
    free(gi);
    free(gs);
    free(gw);
    gpu->free(db);
    gpu->free(gate);
    gpu->free(x);
    gpu->ctx_free(ctx);
    return bad;
}

static void test_nan_rule(void)
{
    const struct moe_cfg c = { 8, 8, 9, 0, 4, SIGMOID, false, 1.0f, 0.0f, 0 };
    const float logits[3][9] = { { NAN, 1.0f, -NAN, 2.0f, 0.0f, 0.0f, NAN, -INFINITY, 3.0f },
                                 { NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN },
                                 { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, NAN } };
    const float bias[9] = { 0.0f, 0.0f, 0.0f, INFINITY, 0.0f, NAN, 0.0f, 0.0f, -1.0f };
    const float row[9] = { 1.0f, 2.0f, 0.5f, -1.0f, NAN, 0.0f, 3.0f, 1.0f, 0.0f };
    struct moe_cfg sm = c;
    sm.score = SOFTMAX;
    CU_ASSERT_EQUAL(nan_case(&c, &logits[0][0], 3, NULL), 0);
    CU_ASSERT_EQUAL(nan_case(&c, &logits[0][0], 3, bias), 0);
    CU_ASSERT_EQUAL(nan_case(&sm, row, 1, NULL), 0);

    const struct moe_ops *gpu = moe_cuda_ops();
    const struct moe_cfg lc = { 16, 16, 6, 1, 2, SIGMOID, false, 1.0f, 0.0f, 0 };
    const int t = 12;
    struct layer l;
    struct side gs;
    struct moe_ctx *ctx;
    void *out;
    CU_ASSERT_EQUAL_FATAL(layer_init(&l, &lc, t, 43, BIAS_NONE), 0);
    l.v[T_GATE][2] = NAN;
    CU_ASSERT_EQUAL_FATAL(side_init(&gs, gpu, true, &l), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->alloc(&out, (size_t)t * 16), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&ctx, &lc, t, t * 2), 0);
    CU_ASSERT_EQUAL(moe_forward(gpu, ctx, &gs.w, gs.v[T_X], t, out), 0);
    int32_t *idx = fetch_raw(ctx->topk_idx, (size_t)t * 2 * 4);
    float *o = fetch_elems(&gs, out, (size_t)t * 16);
    CU_ASSERT_FATAL(idx && o);
    bool ok = true;
    for (int i = 0; i < t; i++)
        ok &= idx[i * 2] == 2;
    for (int i = 0; i < t * 16; i++)
        ok &= isnan(o[i]) != 0;
    CU_ASSERT_TRUE(ok);
    free(idx);
    free(o);
    gpu->ctx_free(ctx);
    gpu->free(out);
    side_free(&gs);
    layer_free(&l);
}

/* What the backend refuses, with -EINVAL and nothing written. */
static void test_bad_arguments(void)
{
    const struct moe_ops *gpu = moe_cuda_ops();
    const struct moe_cfg good = { 16, 8, 4, 0, 2, SOFTMAX, false, 1.0f, 0.0f, 0 };
    struct moe_cfg c = good;
    struct moe_ctx *ctx;
    struct layer l;
    struct side gs;

    c.hidden = 12;                                          /* not a multiple of 8 */
    CU_ASSERT_EQUAL(gpu->ctx_create(&ctx, &c, 4, 8), -EINVAL);
    c = good;
    c.ffn = 20;
    CU_ASSERT_EQUAL(gpu->ctx_create(&ctx, &c, 4, 8), -EINVAL);
    c = good;
    c.experts = MOE_CUDA_MAX_EXPERTS + 1;
    CU_ASSERT_EQUAL(gpu->ctx_create(&ctx, &c, 4, 8), -EINVAL);
    CU_ASSERT_EQUAL(gpu->ctx_create(&ctx, &good, -1, 8), -EINVAL);
    CU_ASSERT_EQUAL(moe_cuda_set_gemm(NULL, MOE_CUDA_GEMM_LOOP), -EINVAL);

    CU_ASSERT_EQUAL_FATAL(layer_init(&l, &good, 4, 1, BIAS_NONE), 0);
    CU_ASSERT_EQUAL_FATAL(side_init(&gs, gpu, true, &l), 0);
    CU_ASSERT_EQUAL_FATAL(gpu->ctx_create(&ctx, &good, 4, 6), 0);
    CU_ASSERT_EQUAL(gpu->route(ctx, &gs.w, gs.v[T_X], 5), -EINVAL);     /* > max_tokens */
    CU_ASSERT_EQUAL(gpu->route(ctx, &gs.w, (char *)gs.v[T_X] + 2, 4), -EINVAL); /* align */
    CU_ASSERT_EQUAL(gpu->route(ctx, &gs.w, gs.v[T_X], 4), 0);
    CU_ASSERT_EQUAL(moe_forward(gpu, ctx, &gs.w, gs.v[T_X], 4, gs.g[T_X]), -EINVAL); /* 8>6 */
    int32_t rows[2] = { 4, 3 }, bad_e[2] = { 0, 4 };
    struct moe_groups g = { 2, 0, NULL, rows };
    CU_ASSERT_EQUAL(gpu->experts_fwd(ctx, &gs.w, &g, ctx->xp, ctx->yp), -EINVAL);  /* 7 > 6 */
    rows[0] = 3;
    g.expert = bad_e;
    CU_ASSERT_EQUAL(gpu->experts_fwd(ctx, &gs.w, &g, ctx->xp, ctx->yp), -EINVAL);  /* e = 4 */
    g.expert = NULL;
    CU_ASSERT_EQUAL(gpu->experts_fwd(ctx, &gs.w, &g, (char *)ctx->xp + 8, ctx->yp), -EINVAL);
    CU_ASSERT_EQUAL(gpu->experts_fwd(ctx, &gs.w, &g, ctx->xp, ctx->yp), 0);
    gpu->ctx_free(ctx);
    gpu->ctx_free(NULL);
    gpu->free(NULL);
    side_free(&gs);
    layer_free(&l);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "GPU vs CPU oracle, forward and backward", test_against_cpu },
        { "deterministic", test_deterministic },
        { "rank split", test_rank_split },
        { "no tokens", test_zero_tokens },
        { "NaN ranked as on the CPU", test_nan_rule },
        { "1000 small updates add up in the fp32 main_grad", test_main_grad },
        { "two ctxs bound to one sync take turns", test_grad_sync },
        { "bad arguments", test_bad_arguments },
    };
    char why[256] = "unknown";
    if (moe_cuda_probe(why, sizeof(why)) == 0) {
        printf("SKIP gpu_test_moe: no CUDA device (%s)\n", why);
        return 0;
    }
    return cu_run("moe_cuda", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
