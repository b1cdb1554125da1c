/* test_moe_cpu.c: CUnit suite for the fp32 MoE layer (kernels/moe.c, moe_cpu.c,
 * gate_cpu.c, ffn_cpu.c).
 *
 * The oracle is ref_loss() below: the whole layer in double precision, plain loops,
 * written from the formulas in moe.h and sharing no code with the kernels. Gradients
 * are checked against central finite differences of that reference,
 *   dL/dtheta_i ~ (L(theta + h e_i) - L(theta - h e_i)) / 2h,  h = 1e-6,
 * for L = sum(out * R) + L_aux with R random: truncation O(h^2 L''') ~ 1e-12 and
 * rounding ~ 1e-16 |L| / h ~ 1e-10, far below the fp32 error of the analytic gradient,
 * so the tolerance is the fp32 one: |g - fd| <= 1e-5 (1 + max|fd| of the tensor)
 * + 1e-4 |fd| (the errors seen are about 2e-7).
 * Top-k is piecewise constant, so a difference is valid only if the selection is the
 * same at theta + h and theta - h as at theta: every coordinate is checked for that
 * (and skipped when it changes; the test asserts none was), and the data are drawn
 * (next seed until it holds) so that every token's K-th and (K+1)-th choice values
 * differ by at least 1e-3, which also makes the fp32 and double selections agree.
 * Shapes are small (T = 16, H = 8, F = 6, E = 6): the whole suite runs in about a
 * second at -O2.
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cu_run.h"
#include "gate_cpu.h"
#include "moe.h"
#include "moe_cpu.h"
#include "moe_sync.h"

#define MAX_E 16
#define MAX_K 16
#define MAX_F 64
#define MAX_H 64
#define FD_H 1e-6
#define GAP_MIN 1e-3

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

enum tensor { T_X, T_GATE, T_W1, T_W3, T_W2, T_SW1, T_SW3, T_SW2, T_COUNT };
static const char *const tensor_name[T_COUNT] = { "x", "gate", "w1", "w3", "w2",
                                                  "shared w1", "shared w3", "shared w2" };

/* The input and every parameter in one array theta (tensor i at off[i], n[i] floats),
 * so a gradient array has the same layout; dout = r. */
struct model {
    struct moe_cfg c;
    int t;
    size_t off[T_COUNT + 1];
    float *theta, *grad, *r, *bias;     /* bias: NULL or [E] */
    void *w1[MAX_E], *w3[MAX_E], *w2[MAX_E], *sw1[MAX_E], *sw3[MAX_E], *sw2[MAX_E];
    void *g1[MAX_E], *g3[MAX_E], *g2[MAX_E], *sg1[MAX_E], *sg3[MAX_E], *sg2[MAX_E];
    struct moe_weights w, dw;
};

static void model_free(struct model *m)
{
    free(m->theta);
    free(m->grad);
    free(m->r);
    free(m->bias);
}

static void point(void **p, float *base, size_t off, int n, size_t each)
{
    for (int i = 0; i < n; i++)
        p[i] = base + off + (size_t)i * each;
}

/* Weights uniform with variance 1/fan_in, gate uniform on [-gate_a, gate_a), x and r
 * on [-1, 1). with_bias: bias uniform on [-0.3, 0.3). */
static int model_init(struct model *m, const struct moe_cfg *c, int tokens, uint64_t seed,
                      float gate_a, int with_bias)
{
    memset(m, 0, sizeof(*m));
    m->c = *c;
    m->t = tokens;
    size_t h = c->hidden, f = c->ffn, e = c->experts, s = c->shared;
    size_t fs = moe_shared_ffn(c);
    size_t n[T_COUNT] = { tokens * h, h * e, e * h * f, e * h * f, e * f * h,
                          s * h * fs, s * h * fs, s * fs * h };
    m->off[0] = 0;
    for (int i = 0; i < T_COUNT; i++)
        m->off[i + 1] = m->off[i] + n[i];
    m->theta = calloc(m->off[T_COUNT], sizeof(float));
    m->grad = calloc(m->off[T_COUNT], sizeof(float));
    m->r = calloc(n[T_X], sizeof(float));
    m->bias = with_bias ? calloc(e, sizeof(float)) : NULL;
    if (!m->theta || !m->grad || !m->r || (with_bias && !m->bias)) {
        model_free(m);
        return -ENOMEM;
    }
    for (int i = 0; i < T_COUNT; i++) {
        float a = i == T_X ? 1.0f : i == T_GATE ? gate_a
                : sqrtf(3.0f / (float)(i == T_W2 ? f : i == T_SW2 ? fs : h));
        for (size_t j = m->off[i]; j < m->off[i + 1]; j++)
            m->theta[j] = unif(&seed, a);
    }
    for (size_t j = 0; j < n[T_X]; j++)
        m->r[j] = unif(&seed, 1.0f);
    for (size_t j = 0; with_bias && j < e; j++)
        m->bias[j] = unif(&seed, 0.3f);

    point(m->w1, m->theta, m->off[T_W1], c->experts, h * f);
    point(m->w3, m->theta, m->off[T_W3], c->experts, h * f);
    point(m->w2, m->theta, m->off[T_W2], c->experts, h * f);
    point(m->sw1, m->theta, m->off[T_SW1], c->shared, h * fs);
    point(m->sw3, m->theta, m->off[T_SW3], c->shared, h * fs);
    point(m->sw2, m->theta, m->off[T_SW2], c->shared, h * fs);
    point(m->g1, m->grad, m->off[T_W1], c->experts, h * f);
    point(m->g3, m->grad, m->off[T_W3], c->experts, h * f);
    point(m->g2, m->grad, m->off[T_W2], c->experts, h * f);
    point(m->sg1, m->grad, m->off[T_SW1], c->shared, h * fs);
    point(m->sg3, m->grad, m->off[T_SW3], c->shared, h * fs);
    point(m->sg2, m->grad, m->off[T_SW2], c->shared, h * fs);
    m->w = (struct moe_weights){ m->theta + m->off[T_GATE], m->bias, m->w1, m->w3, m->w2,
                                 m->sw1, m->sw3, m->sw2 };
    m->dw = (struct moe_weights){ m->grad + m->off[T_GATE], NULL, m->g1, m->g3, m->g2,
                                  m->sg1, m->sg3, m->sg2 };
    return 0;
}

/* ---- the double-precision reference ---- */

/* y += scale * (silu(x W1) * (x W3)) W2 for one token. */
static void ref_ffn(int hn, int fn, const double *x, const double *w1, const double *w3,
                    const double *w2, double scale, double *y)
{
    double hid[MAX_F];
    for (int f = 0; f < fn; f++) {
        double a = 0.0, b = 0.0;
        for (int h = 0; h < hn; h++) {
            a += x[h] * w1[h * fn + f];
            b += x[h] * w3[h * fn + f];
        }
        hid[f] = a / (1.0 + exp(-a)) * b;
    }
    for (int h = 0; h < hn; h++) {
        double acc = 0.0;
        for (int f = 0; f < fn; f++)
            acc += hid[f] * w2[f * hn + h];
        y[h] += scale * acc;
    }
}

/* The layer at th (theta in double): out [T x H] (may be NULL), sel [T x K] the chosen
 * experts of each token in ascending order (may be NULL), *gap the smallest margin
 * between a token's K-th and (K+1)-th choice value (may be NULL), *aux the aux loss.
 * Returns sum(out * r) + L_aux. */
static double ref_loss(const struct model *m, const double *th, double *out, int *sel,
                       double *gap, double *aux)
{
    const struct moe_cfg *c = &m->c;
    const int hn = c->hidden, fn = c->ffn, en = c->experts, kn = c->top_k;
    const int sfn = moe_shared_ffn(c);
    const size_t hf = (size_t)hn * fn, hsf = (size_t)hn * sfn;
    const double *x = th + m->off[T_X], *g = th + m->off[T_GATE];
    double count[MAX_E] = { 0 }, psum[MAX_E] = { 0 }, loss = 0.0, min_gap = INFINITY;

    for (int t = 0; t < m->t; t++) {
        const double *xt = x + (size_t)t * hn;
        double s[MAX_E] = { 0 }, v[MAX_E] = { 0 }, y[MAX_H] = { 0 }, z = 0.0, zsel = 0.0;
        int chosen[MAX_E] = { 0 }, pick[MAX_K] = { 0 };

        for (int e = 0; e < en; e++) {
            double l = 0.0;
            for (int h = 0; h < hn; h++)
                l += xt[h] * g[h * en + e];
            s[e] = l;
        }
        if (c->score == MOE_SCORE_SOFTMAX) {
            double mx = s[0], sum = 0.0;
            for (int e = 1; e < en; e++)
                mx = fmax(mx, s[e]);
            for (int e = 0; e < en; e++)
                sum += exp(s[e] - mx);
            for (int e = 0; e < en; e++)
                s[e] = exp(s[e] - mx) / sum;
        } else {
            for (int e = 0; e < en; e++)
                s[e] = 1.0 / (1.0 + exp(-s[e]));
        }
        for (int e = 0; e < en; e++) {
            v[e] = s[e] + (m->bias ? m->bias[e] : 0.0);
            z += s[e];
        }
        for (int k = 0; k < kn; k++) {          /* largest first, lower index on ties */
            int best = -1;
            for (int e = 0; e < en; e++)
                if (!chosen[e] && (best < 0 || v[e] > v[best]))
                    best = e;
            chosen[best] = 1;
            pick[k] = best;
            zsel += s[best];
        }
        double next = -INFINITY;
        for (int e = 0; e < en; e++)
            if (!chosen[e])
                next = fmax(next, v[e]);
        min_gap = fmin(min_gap, v[pick[kn - 1]] - next);

        for (int k = 0; k < kn; k++) {
            int e = pick[k];
            double w = c->route_scale * (c->norm_topk ? s[e] / zsel : s[e]);
            ref_ffn(hn, fn, xt, th + m->off[T_W1] + e * hf, th + m->off[T_W3] + e * hf,
                    th + m->off[T_W2] + e * hf, w, y);
            count[e] += 1.0;
        }
        for (int j = 0; j < c->shared; j++)
            ref_ffn(hn, sfn, xt, th + m->off[T_SW1] + j * hsf, th + m->off[T_SW3] + j * hsf,
                    th + m->off[T_SW2] + j * hsf, 1.0, y);
        for (int e = 0; e < en; e++)
            psum[e] += s[e] / z;
        for (int h = 0; h < hn; h++) {
            loss += y[h] * m->r[(size_t)t * hn + h];
            if (out)
                out[(size_t)t * hn + h] = y[h];
        }
        if (sel) {                               /* ascending set */
            int n = 0;
            for (int e = 0; e < en; e++)
                if (chosen[e])
                    sel[t * kn + n++] = e;
        }
    }
    /* L_aux = alpha sum_e f_e P_e, f_e = E count_e / (K T), P_e = psum_e / T. */
    double l_aux = 0.0;
    for (int e = 0; e < en; e++)
        l_aux += (double)en * count[e] / ((double)kn * m->t) * (psum[e] / m->t);
    l_aux *= c->aux_alpha;
    if (gap)
        *gap = min_gap;
    if (aux)
        *aux = l_aux;
    return loss + l_aux;
}

static double *theta_double(const struct model *m)
{
    double *th = malloc(m->off[T_COUNT] * sizeof(double));
    for (size_t i = 0; th && i < m->off[T_COUNT]; i++)
        th[i] = m->theta[i];
    return th;
}

/* A model whose selection margin is at least GAP_MIN (the next seed until it is). */
static int model_init_margin(struct model *m, const struct moe_cfg *c, int tokens,
                             uint64_t seed, float gate_a, int with_bias)
{
    for (int tries = 0; tries < 100; tries++, seed++) {
        if (model_init(m, c, tokens, seed, gate_a, with_bias) < 0)
            return -ENOMEM;
        double *th = theta_double(m), gap;
        if (!th) {
            model_free(m);
            return -ENOMEM;
        }
        ref_loss(m, th, NULL, NULL, &gap, NULL);
        free(th);
        if (gap >= GAP_MIN)
            return 0;
        model_free(m);
    }
    return -EAGAIN;
}

/* ---- helpers ---- */

static const struct moe_ops *cpu(void)
{
    return moe_cpu_ops();
}

/* Forward and backward of the fp32 layer on `threads` pthreads: out [T x H],
 * m->grad = dL/dtheta. */
static int run_layer_threads(struct model *m, float *out, float *aux, int threads)
{
    const struct moe_ops *ops = cpu();
    struct moe_ctx *ctx;
    int rc = ops->ctx_create(&ctx, &m->c, m->t, m->t * m->c.top_k);
    if (rc < 0)
        return rc;
    rc = moe_cpu_set_threads(ctx, threads);
    memset(m->grad, 0, m->off[T_COUNT] * sizeof(float));
    const float *x = m->theta + m->off[T_X];
    if (rc == 0)
        rc = moe_forward(ops, ctx, &m->w, x, m->t, out);
    if (rc == 0)
        rc = moe_backward(ops, ctx, &m->w, x, m->r, m->grad + m->off[T_X], &m->dw);
    if (aux)
        *aux = ctx->aux_loss;
    ops->ctx_free(ctx);
    return rc;
}

static int run_layer(struct model *m, float *out, float *aux)
{
    return run_layer_threads(m, out, aux, 1);
}

static int same_set(const int *a, const int *b, int n)
{
    return memcmp(a, b, (size_t)n * sizeof(int)) == 0;
}

/* The fp32 forward against the reference, then every gradient against finite
 * differences. Returns the number of failed coordinates. */
static int check_gradients(struct model *m, const char *label)
{
    const int tk = m->t * m->c.top_k;
    size_t tn = (size_t)m->t * m->c.hidden;
    float *out = malloc(tn * sizeof(float)), aux32 = 0.0f;
    double *outd = malloc(tn * sizeof(double)), *th = theta_double(m), auxd;
    int *sel0 = malloc((size_t)tk * sizeof(int)), *sel = malloc((size_t)tk * sizeof(int));
    int bad = 0, skipped = 0;

    CU_ASSERT_FATAL(out && outd && th && sel0 && sel);
    CU_ASSERT_EQUAL_FATAL(run_layer(m, out, &aux32), 0);
    ref_loss(m, th, outd, sel0, NULL, &auxd);

    double out_err = 0.0;
    for (size_t i = 0; i < tn; i++)
        out_err = fmax(out_err, fabs(out[i] - outd[i]) / (2e-6 + 2e-5 * fabs(outd[i])));
    if (out_err > 1.0) {
        printf("\n  %s: forward off the double reference (%.2f x tolerance)", label, out_err);
        bad++;
    }
    if (fabs(aux32 - auxd) > 1e-7 + 1e-5 * auxd) {
        printf("\n  %s: aux %.9g, reference %.9g", label, aux32, auxd);
        bad++;
    }

    for (int ten = 0; ten < T_COUNT; ten++) {
        size_t lo = m->off[ten], hi = m->off[ten + 1];
        double *fd = malloc((hi - lo + 1) * sizeof(double)), scale = 0.0;
        CU_ASSERT_FATAL(fd != NULL);
        for (size_t i = lo; i < hi; i++) {
            double keep = th[i], lp, lm;
            int same = 1;
            th[i] = keep + FD_H;
            lp = ref_loss(m, th, NULL, sel, NULL, NULL);
            same &= same_set(sel, sel0, tk);
            th[i] = keep - FD_H;
            lm = ref_loss(m, th, NULL, sel, NULL, NULL);
            same &= same_set(sel, sel0, tk);
            th[i] = keep;
            fd[i - lo] = same ? (lp - lm) / (2.0 * FD_H) : NAN;
            skipped += !same;
            if (same)
                scale = fmax(scale, fabs(fd[i - lo]));
        }
        for (size_t i = lo; i < hi; i++) {
            double f = fd[i - lo], g = m->grad[i];
            if (isnan(f) || fabs(g - f) <= 1e-5 * (1.0 + scale) + 1e-4 * fabs(f))
                continue;
            if (bad++ < 5)
                printf("\n  %s: d/d%s[%zu] = %.8g, finite difference %.8g", label,
                       tensor_name[ten], i - lo, g, f);
        }
        free(fd);
    }
    if (skipped)
        printf("\n  %s: %d coordinates changed the selection", label, skipped);
    CU_ASSERT_EQUAL(skipped, 0);
    free(out);
    free(outd);
    free(th);
    free(sel0);
    free(sel);
    return bad;
}

/* ---- tests ---- */

/* Every combination of scoring, normalization, top_k in {1, 2, 4} of E = 6 and aux
 * loss off/on; a selection bias and route_scale 2.5 on every other case; one shared
 * expert, of its own width (shared_ffn 10, routed ffn 6) on every other case. */
static void test_gradients_fd(void)
{
    int case_no = 0;
    for (int score = 0; score < 2; score++)
        for (int norm = 0; norm < 2; norm++)
            for (int ki = 0; ki < 3; ki++)
                for (int aux = 0; aux < 2; aux++, case_no++) {
                    static const int ks[] = { 1, 2, 4 };
                    struct moe_cfg c = {
                        .hidden = 8, .ffn = 6, .experts = 6, .shared = 1, .top_k = ks[ki],
                        .score = score ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX,
                        .norm_topk = norm, .route_scale = case_no % 2 ? 2.5f : 1.0f,
                        .aux_alpha = aux ? 0.1f : 0.0f,
                        .shared_ffn = case_no / 2 % 2 ? 10 : 0,
                    };
                    struct model m;
                    char label[96];
                    snprintf(label, sizeof(label), "%s norm=%d k=%d aux=%d bias=%d Fs=%d",
                             score ? "sigmoid" : "softmax", norm, ks[ki], aux, case_no % 2,
                             moe_shared_ffn(&c));
                    CU_ASSERT_EQUAL_FATAL(
                        model_init_margin(&m, &c, 16, 1000 + 100 * case_no, 1.5f, case_no % 2),
                        0);
                    CU_ASSERT_EQUAL(check_gradients(&m, label), 0);
                    model_free(&m);
                }
}

/* No shared expert, K = E (every expert chosen, no selection to flip). */
static void test_gradients_fd_all_experts(void)
{
    struct moe_cfg c = { .hidden = 6, .ffn = 5, .experts = 4, .shared = 0, .top_k = 4,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = false,
                         .route_scale = 1.0f, .aux_alpha = 0.05f };
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init_margin(&m, &c, 12, 7, 1.0f, 0), 0);
    CU_ASSERT_EQUAL(check_gradients(&m, "k=E"), 0);
    model_free(&m);
}

/* Layout of the routing on 37 tokens, E = 7, K = 3: counts sum to T K, offsets are
 * their exclusive prefix sum, slot_pos and perm_slot are inverse permutations, groups
 * hold their expert's slots in token order, the permuted rows are the tokens' rows.
 * With x on the grid k/64 (|x| <= 1), sums of up to K copies are exact, so a combine
 * with unit weights and the permute backward both give exactly K x. */
static void test_permute_layout(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 8, .ffn = 4, .experts = 7, .shared = 0, .top_k = 3,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                         .route_scale = 1.0f, .aux_alpha = 0.0f };
    const int tn = 37, kn = 3, hn = 8, en = 7;
    struct model m;
    struct moe_ctx *ctx;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 11, 2.0f, 0), 0);
    float *x = m.theta + m.off[T_X];
    for (int i = 0; i < tn * hn; i++)
        x[i] = (float)((int)(x[i] * 64.0f)) / 64.0f;
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, tn, tn * kn), 0);
    CU_ASSERT_EQUAL_FATAL(ops->route(ctx, &m.w, x, tn), 0);
    CU_ASSERT_EQUAL(ctx->tokens, tn);

    int sum = 0;
    CU_ASSERT_EQUAL(ctx->offsets[0], 0);
    for (int e = 0; e < en; e++) {
        sum += ctx->counts[e];
        CU_ASSERT_EQUAL(ctx->offsets[e + 1], ctx->offsets[e] + ctx->counts[e]);
        CU_ASSERT_EQUAL(ctx->host_counts[e], ctx->counts[e]);
        CU_ASSERT_EQUAL(ctx->host_offsets[e], ctx->offsets[e]);
    }
    CU_ASSERT_EQUAL(sum, tn * kn);
    CU_ASSERT_EQUAL(ctx->host_offsets[en], tn * kn);
    for (int t = 0; t < tn; t++)
        for (int k = 0; k < kn; k++) {
            int slot = t * kn + k, pos = ctx->slot_pos[slot], e = ctx->topk_idx[slot];
            CU_ASSERT_TRUE(pos >= 0 && pos < tn * kn);
            CU_ASSERT_EQUAL(ctx->perm_slot[pos], slot);
            CU_ASSERT_TRUE(pos >= ctx->offsets[e] && pos < ctx->offsets[e + 1]);
            for (int j = 0; j < k; j++)
                CU_ASSERT_NOT_EQUAL(ctx->topk_idx[t * kn + j], e);
        }
    for (int e = 0; e < en; e++)
        for (int p = ctx->offsets[e] + 1; p < ctx->offsets[e + 1]; p++)
            CU_ASSERT_TRUE(ctx->perm_slot[p] / kn > ctx->perm_slot[p - 1] / kn);

    CU_ASSERT_EQUAL(ops->permute(ctx, x, ctx->xp), 0);
    float *xp = ctx->xp, *out = calloc((size_t)tn * hn, sizeof(float));
    float *dx = calloc((size_t)tn * hn, sizeof(float));
    CU_ASSERT_FATAL(out && dx);
    for (int p = 0; p < tn * kn; p++)
        CU_ASSERT_EQUAL(memcmp(xp + p * hn, x + ctx->perm_slot[p] / kn * hn,
                               hn * sizeof(float)), 0);
    for (int i = 0; i < tn * kn; i++)
        ctx->topk_w[i] = 1.0f;
    CU_ASSERT_EQUAL(ops->combine(ctx, xp, out), 0);
    CU_ASSERT_EQUAL(ops->permute_bwd(ctx, xp, dx), 0);
    int exact = 1;
    for (int i = 0; i < tn * hn; i++)
        exact &= out[i] == kn * x[i] && dx[i] == kn * x[i];
    CU_ASSERT_TRUE(exact);
    free(out);
    free(dx);
    ops->ctx_free(ctx);
    model_free(&m);
}

/* A zero gate makes every score equal (softmax 1/E, sigmoid 1/2), so the choice is all
 * tie-breaks: experts 0..K-1 in that order for every token. */
static void test_tie_break(void)
{
    const struct moe_ops *ops = cpu();
    for (int score = 0; score < 2; score++) {
        struct moe_cfg c = { .hidden = 4, .ffn = 4, .experts = 9, .shared = 0, .top_k = 4,
                             .score = score, .norm_topk = false, .route_scale = 1.0f };
        struct model m;
        struct moe_ctx *ctx;
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, 5, 3, 0.0f, 0), 0);
        CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, 5, 20), 0);
        CU_ASSERT_EQUAL(ops->route(ctx, &m.w, m.theta, 5), 0);
        for (int t = 0; t < 5; t++)
            for (int k = 0; k < 4; k++)
                CU_ASSERT_EQUAL(ctx->topk_idx[t * 4 + k], k);
        ops->ctx_free(ctx);
        model_free(&m);
    }
}

/* moe.h's NaN rule: a NaN value ranks above every number, +inf included, whatever its
 * sign; NaNs tie, so the lower index first. Sigmoid scores, K = 4 of 9 (s(x) = the
 * sigmoid):
 *   row 0, logits {NaN, 1, -NaN, 2, 0, 0, NaN, -inf, 3}: scores {NaN, s(1), NaN, s(2),
 *          1/2, 1/2, NaN, 0, s(3)}: the NaNs 0, 2, 6, then the best number, 8;
 *   row 1, all NaN: 0, 1, 2, 3;
 *   row 2, {0 x 8, NaN}: 8, then the ties 0, 1, 2.
 * With bias {0, 0, 0, +inf, 0, NaN, 0, 0, -1}: row 0 has NaNs at 0, 2, 5, 6; row 1 is
 * unchanged; row 2: the NaNs 5 and 8, then +inf (3), then 0.
 * Weights (no normalization, scale 1) are the chosen scores: NaN exactly where the
 * chosen score is. A softmax row with one NaN logit is NaN throughout, so its choice is
 * the tie order 0..3 and every weight is NaN. */
static void test_topk_nan(void)
{
    const struct moe_cfg c = { .hidden = 1, .ffn = 1, .experts = 9, .shared = 0,
                               .top_k = 4, .score = MOE_SCORE_SIGMOID, .norm_topk = false,
                               .route_scale = 1.0f, .aux_alpha = 0.0f };
    const float logits[3][9] = { { NAN, 1.0f, -NAN, 2.0f, 0.0f, 0.0f, NAN, -INFINITY, 3.0f },
                                 { NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN },
                                 { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, NAN } };
    const float bias[9] = { 0.0f, 0.0f, 0.0f, INFINITY, 0.0f, NAN, 0.0f, 0.0f, -1.0f };
    const int32_t want[2][3][4] = { { { 0, 2, 6, 8 }, { 0, 1, 2, 3 }, { 8, 0, 1, 2 } },
                                    { { 0, 2, 5, 6 }, { 0, 1, 2, 3 }, { 5, 8, 3, 0 } } };
    float scores[27], w[12], aux;
    int32_t idx[12], counts[9];

    for (int b = 0; b < 2; b++) {
        gate_cpu_fwd(&c, b ? bias : NULL, 3, &logits[0][0], scores, idx, w, counts, &aux);
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 4; k++) {
                CU_ASSERT_EQUAL(idx[t * 4 + k], want[b][t][k]);
                CU_ASSERT_EQUAL(isnan(w[t * 4 + k]) != 0,
                                isnan(scores[t * 9 + idx[t * 4 + k]]) != 0);
            }
        if (b == 0)                                   /* row 0's 4th pick: s(3) */
            CU_ASSERT_TRUE(!isnan(w[3]) && w[3] == scores[8]);
    }

    struct moe_cfg sm = c;
    sm.score = MOE_SCORE_SOFTMAX;
    const float row[9] = { 1.0f, 2.0f, 0.5f, -1.0f, NAN, 0.0f, 3.0f, 1.0f, 0.0f };
    gate_cpu_fwd(&sm, NULL, 1, row, scores, idx, w, counts, &aux);
    for (int e = 0; e < 9; e++)
        CU_ASSERT_TRUE(isnan(scores[e]));
    for (int k = 0; k < 4; k++) {
        CU_ASSERT_EQUAL(idx[k], k);
        CU_ASSERT_TRUE(isnan(w[k]));
    }
}

/* The NaN rule through the whole layer: one NaN in the gate matrix (W_g[0][2]) makes
 * logit 2 NaN for every token. Sigmoid: every token's first choice is expert 2, its
 * weight NaN, and every output row NaN (ranked as -inf, expert 2 would never be chosen
 * and every output would be finite). Softmax: every score is NaN, the choice is 0, 1,
 * and again every output row is NaN. The backward runs and its gate gradient is NaN
 * (never silently finite). */
static void test_nan_layer(void)
{
    const struct moe_ops *ops = cpu();
    for (int score = 0; score < 2; score++) {
        struct moe_cfg c = { .hidden = 8, .ffn = 8, .experts = 6, .shared = 1, .top_k = 2,
                             .score = score ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX,
                             .norm_topk = false, .route_scale = 1.0f, .aux_alpha = 0.0f };
        const int tn = 10, hn = 8, kn = 2;
        struct model m;
        struct moe_ctx *ctx;
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 41, 1.0f, 0), 0);
        m.theta[m.off[T_GATE] + 2] = NAN;
        float *out = malloc((size_t)tn * hn * sizeof(float));
        CU_ASSERT_FATAL(out != NULL);
        CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, tn, tn * kn), 0);
        CU_ASSERT_EQUAL_FATAL(moe_forward(ops, ctx, &m.w, m.theta, tn, out), 0);
        int ok = 1;
        for (int t = 0; t < tn; t++) {
            ok &= ctx->topk_idx[t * kn] == (score ? 2 : 0);
            ok &= score || ctx->topk_idx[t * kn + 1] == 1;
            ok &= isnan(ctx->topk_w[t * kn]) != 0;
            for (int h = 0; h < hn; h++)
                ok &= isnan(out[t * hn + h]) != 0;
        }
        CU_ASSERT_TRUE(ok);
        CU_ASSERT_EQUAL(moe_backward(ops, ctx, &m.w, m.theta, m.r, m.grad, &m.dw), 0);
        int gate_nan = 0;
        for (size_t i = m.off[T_GATE]; i < m.off[T_GATE + 1]; i++)
            gate_nan |= isnan(m.grad[i]) != 0;
        CU_ASSERT_TRUE(gate_nan);
        ops->ctx_free(ctx);
        free(out);
        model_free(&m);
    }
}

/* top_k = E with equal weights is a dense mixture. A zero gate gives s = 1/E
 * (softmax, unnormalized) or s = 1/2 normalized to 1/E (sigmoid); either way out =
 * (1/E) sum_e FFN_e(x) + shared, computed here directly with ref_ffn. */
static void test_dense_mixture(void)
{
    for (int score = 0; score < 2; score++) {
        struct moe_cfg c = { .hidden = 10, .ffn = 7, .experts = 5, .shared = 1, .top_k = 5,
                             .score = score, .norm_topk = score == MOE_SCORE_SIGMOID,
                             .route_scale = 1.0f, .aux_alpha = 0.0f };
        const int tn = 9, hn = 10, en = 5;
        const size_t hf = 70;
        struct model m;
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 21 + score, 0.0f, 0), 0);
        float *out = malloc((size_t)tn * hn * sizeof(float));
        double *th = theta_double(&m);
        CU_ASSERT_FATAL(out && th);
        CU_ASSERT_EQUAL_FATAL(run_layer(&m, out, NULL), 0);
        int ok = 1;
        for (int t = 0; t < tn; t++) {
            double y[MAX_H] = { 0 };
            const double *xt = th + m.off[T_X] + t * hn;
            for (int e = 0; e < en; e++)
                ref_ffn(hn, 7, xt, th + m.off[T_W1] + e * hf, th + m.off[T_W3] + e * hf,
                        th + m.off[T_W2] + e * hf, 1.0 / en, y);
            ref_ffn(hn, 7, xt, th + m.off[T_SW1], th + m.off[T_SW3], th + m.off[T_SW2], 1.0, y);
            for (int h = 0; h < hn; h++)
                ok &= fabs(out[t * hn + h] - y[h]) <= 1e-5 + 1e-4 * fabs(y[h]);
        }
        CU_ASSERT_TRUE(ok);
        free(out);
        free(th);
        model_free(&m);
    }
}

/* top_k = 1 with normalization: the weight is s/s = 1 exactly, so each token's output
 * is its expert's FFN. */
static void test_single_expert(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 12, .ffn = 9, .experts = 6, .shared = 0, .top_k = 1,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                         .route_scale = 1.0f, .aux_alpha = 0.0f };
    const int tn = 20, hn = 12;
    const size_t hf = 108;
    struct model m;
    struct moe_ctx *ctx;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 5, 2.0f, 0), 0);
    float *out = malloc((size_t)tn * hn * sizeof(float));
    double *th = theta_double(&m);
    CU_ASSERT_FATAL(out && th);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, tn, tn), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(ops, ctx, &m.w, m.theta, tn, out), 0);
    int ok = 1;
    for (int t = 0; t < tn; t++) {
        int e = ctx->topk_idx[t];
        double y[MAX_H] = { 0 };
        CU_ASSERT_EQUAL(ctx->topk_w[t], 1.0f);
        ref_ffn(hn, 9, th + t * hn, th + m.off[T_W1] + e * hf, th + m.off[T_W3] + e * hf,
                th + m.off[T_W2] + e * hf, 1.0, y);
        for (int h = 0; h < hn; h++)
            ok &= fabs(out[t * hn + h] - y[h]) <= 1e-5 + 1e-4 * fabs(y[h]);
    }
    CU_ASSERT_TRUE(ok);
    ops->ctx_free(ctx);
    free(out);
    free(th);
    model_free(&m);
}

/* A bias of +10 on expert 3 and -10 on expert 0 (scores are in (0, 1)): every token
 * chooses 3 and none chooses 0, the scores are those without bias (bitwise), and each
 * weight is still rs s_e / sum of the chosen s (DeepSeek-V3 sec. 2.1.2). */
static void test_bias_selects_not_weights(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 8, .ffn = 4, .experts = 6, .shared = 0, .top_k = 2,
                         .score = MOE_SCORE_SIGMOID, .norm_topk = true,
                         .route_scale = 2.5f, .aux_alpha = 0.0f };
    const int tn = 30, kn = 2, en = 6;
    struct model m;
    struct moe_ctx *a, *b;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 9, 1.0f, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&a, &c, tn, tn * kn), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&b, &c, tn, tn * kn), 0);
    struct moe_weights nobias = m.w;
    nobias.bias = NULL;
    for (int e = 0; e < en; e++)
        m.bias[e] = 0.0f;
    m.bias[3] = 10.0f;
    m.bias[0] = -10.0f;
    CU_ASSERT_EQUAL(ops->route(a, &nobias, m.theta, tn), 0);
    CU_ASSERT_EQUAL(ops->route(b, &m.w, m.theta, tn), 0);
    CU_ASSERT_TRUE(a->counts[0] > 0 && a->counts[3] < tn);
    CU_ASSERT_EQUAL(b->counts[0], 0);
    CU_ASSERT_EQUAL(b->counts[3], tn);
    CU_ASSERT_EQUAL(memcmp(a->scores, b->scores, (size_t)tn * en * sizeof(float)), 0);
    for (int t = 0; t < tn; t++) {
        const float *s = b->scores + t * en;
        double z = 0.0;
        for (int k = 0; k < kn; k++)
            z += s[b->topk_idx[t * kn + k]];
        for (int k = 0; k < kn; k++)
            CU_ASSERT_DOUBLE_EQUAL(b->topk_w[t * kn + k], 2.5 * s[b->topk_idx[t * kn + k]] / z,
                                   1e-6);
    }
    ops->ctx_free(a);
    ops->ctx_free(b);
    model_free(&m);
}

static int bits_equal(const void *a, const void *b, size_t floats)
{
    return memcmp(a, b, floats * sizeof(float)) == 0;
}

/* Expert parallelism by hand: 8 experts on 3 ranks ({0,1,2}, {3,4,5}, {6,7}); expert 4
 * gets no tokens (bias -100). The source routes and permutes; each rank copies its
 * slice of the permuted buffer (dispatch), runs its experts in its own ctx with only
 * its weights and its own gradient buffers, and its result is copied back (combine).
 * Forward output, aux loss and every gradient must equal the one-process run bit for
 * bit: each GEMM sees the same operands. */
static void test_rank_split_exact(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 16, .ffn = 12, .experts = 8, .shared = 1, .top_k = 3,
                         .score = MOE_SCORE_SIGMOID, .norm_topk = true,
                         .route_scale = 2.5f, .aux_alpha = 0.01f, .shared_ffn = 20 };
    const int tn = 40, hn = 16, en = 8, kn = 3, ranks = 3, first[] = { 0, 3, 6, 8 };
    const size_t th_n = (size_t)tn * hn;
    struct model m;
    struct moe_ctx *full, *src, *rk[3];
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 77, 1.0f, 1), 0);
    m.bias[4] = -100.0f;
    const float *x = m.theta + m.off[T_X];

    /* One process. */
    float *out_full = malloc(th_n * sizeof(float)), *out = malloc(th_n * sizeof(float));
    CU_ASSERT_FATAL(out_full && out);
    CU_ASSERT_EQUAL_FATAL(run_layer(&m, out_full, NULL), 0);
    float *grad_full = malloc(m.off[T_COUNT] * sizeof(float));
    CU_ASSERT_FATAL(grad_full != NULL);
    memcpy(grad_full, m.grad, m.off[T_COUNT] * sizeof(float));
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&full, &c, tn, tn * kn), 0);
    CU_ASSERT_EQUAL(moe_forward(ops, full, &m.w, x, tn, out), 0);

    /* Split: the source ctx has no expert side, the ranks no source side. */
    memset(m.grad, 0, m.off[T_COUNT] * sizeof(float));
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&src, &c, tn, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ops->route(src, &m.w, x, tn), 0);
    CU_ASSERT_EQUAL(src->counts[4], 0);
    CU_ASSERT_EQUAL(src->aux_loss, full->aux_loss);
    CU_ASSERT_EQUAL(ops->permute(src, x, src->xp), 0);
    float *recv[3], *send[3];
    void *w1[3][8] = { { 0 } }, *w3[3][8] = { { 0 } }, *w2[3][8] = { { 0 } };
    void *d1[3][8] = { { 0 } }, *d3[3][8] = { { 0 } }, *d2[3][8] = { { 0 } };
    struct moe_groups g[3];
    struct moe_weights wr[3];
    for (int r = 0; r < ranks; r++) {
        int lo = src->offsets[first[r]], n = src->offsets[first[r + 1]] - lo;
        CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&rk[r], &c, 0, n), 0);
        recv[r] = malloc(((size_t)n * hn + 1) * sizeof(float));
        send[r] = malloc(((size_t)n * hn + 1) * sizeof(float));
        CU_ASSERT_FATAL(recv[r] && send[r]);
        memcpy(recv[r], (float *)src->xp + (size_t)lo * hn, (size_t)n * hn * sizeof(float));
        g[r] = (struct moe_groups){ first[r + 1] - first[r], first[r], NULL,
                                    src->host_counts + first[r] };
        /* Only this rank's experts: the rest of the pointer arrays are NULL. */
        for (int e = first[r]; e < first[r + 1]; e++) {
            w1[r][e] = m.w1[e];
            w3[r][e] = m.w3[e];
            w2[r][e] = m.w2[e];
        }
        wr[r] = (struct moe_weights){ m.w.gate, NULL, w1[r], w3[r], w2[r], NULL, NULL, NULL };
        CU_ASSERT_EQUAL(ops->experts_fwd(rk[r], &wr[r], &g[r], recv[r], send[r]), 0);
        memcpy((float *)src->yp + (size_t)lo * hn, send[r], (size_t)n * hn * sizeof(float));
    }
    CU_ASSERT_EQUAL(ops->combine(src, src->yp, out), 0);
    CU_ASSERT_EQUAL(ops->shared_fwd(src, &m.w, x, out), 0);
    CU_ASSERT_TRUE(bits_equal(out, out_full, th_n));
    CU_ASSERT_TRUE(bits_equal(src->yp, full->yp, (size_t)tn * kn * hn));

    /* Backward, split the same way; each rank accumulates into its own buffers, which
     * here are the slices of m.grad for its experts. */
    float *dx = m.grad + m.off[T_X];
    CU_ASSERT_EQUAL(ops->combine_bwd(src, m.r, src->yp, src->dyp), 0);
    for (int r = 0; r < ranks; r++) {
        int lo = src->offsets[first[r]], n = src->offsets[first[r + 1]] - lo;
        float *dy = malloc(((size_t)n * hn + 1) * sizeof(float));
        float *dxr = malloc(((size_t)n * hn + 1) * sizeof(float));
        CU_ASSERT_FATAL(dy && dxr);
        memcpy(dy, (float *)src->dyp + (size_t)lo * hn, (size_t)n * hn * sizeof(float));
        for (int e = first[r]; e < first[r + 1]; e++) {
            d1[r][e] = m.g1[e];
            d3[r][e] = m.g3[e];
            d2[r][e] = m.g2[e];
        }
        struct moe_weights dwr = { NULL, NULL, d1[r], d3[r], d2[r], NULL, NULL, NULL };
        CU_ASSERT_EQUAL(ops->experts_bwd(rk[r], &wr[r], &g[r], recv[r], dy, dxr, &dwr), 0);
        memcpy((float *)src->dxp + (size_t)lo * hn, dxr, (size_t)n * hn * sizeof(float));
        free(dy);
        free(dxr);
    }
    CU_ASSERT_EQUAL(ops->permute_bwd(src, src->dxp, dx), 0);
    CU_ASSERT_EQUAL(ops->route_bwd(src, &m.w, x, dx, &m.dw), 0);
    CU_ASSERT_EQUAL(ops->shared_bwd(src, &m.w, x, m.r, dx, &m.dw), 0);
    for (int ten = 0; ten < T_COUNT; ten++) {
        size_t lo = m.off[ten], n = m.off[ten + 1] - lo;
        int same = bits_equal(m.grad + lo, grad_full + lo, n);
        if (!same)
            printf("\n  d%s differs from the one-process run", tensor_name[ten]);
        CU_ASSERT_TRUE(same);
    }
    /* Expert 4 had no rows: its gradients stay zero. */
    int zero = 1;
    for (size_t i = 0; i < (size_t)hn * 12; i++)
        zero &= ((float *)m.g1[4])[i] == 0.0f && ((float *)m.g2[4])[i] == 0.0f;
    CU_ASSERT_TRUE(zero);
    (void)en;

    for (int r = 0; r < ranks; r++) {
        free(recv[r]);
        free(send[r]);
        ops->ctx_free(rk[r]);
    }
    ops->ctx_free(src);
    ops->ctx_free(full);
    free(grad_full);
    free(out_full);
    free(out);
    model_free(&m);
}

/* Fs of its own, and what moe.h says it maps to: S = 2 shared experts of width Fs = 5
 * are one of width 10 whose W1 and W3 are theirs side by side (columns 0-4, 5-9) and
 * whose W2 is theirs stacked (rows 0-4, 5-9), since sum_s silu(x W1_s) (x W3_s) W2_s
 * is the same sum over the concatenated inner dimension. Routed experts (F = 6) and
 * the gate are the same on both sides. Output, dx and the shared gradients (split
 * back) agree within fp32 rounding of sums of ~10 terms of size ~1: 1e-5 (1 + |ref|);
 * the routed and gate gradients, which the shared experts do not reach, are bitwise
 * equal. */
static void test_shared_ffn_concat(void)
{
    struct moe_cfg ca = { .hidden = 8, .ffn = 6, .experts = 4, .shared = 2, .top_k = 2,
                          .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                          .route_scale = 1.0f, .aux_alpha = 0.01f, .shared_ffn = 5 };
    struct moe_cfg cb = ca;
    cb.shared = 1;
    cb.shared_ffn = 10;
    const int tn = 12, hn = 8, fs = 5;
    struct model a, b;
    CU_ASSERT_EQUAL_FATAL(model_init(&a, &ca, tn, 61, 1.0f, 0), 0);
    CU_ASSERT_EQUAL_FATAL(model_init(&b, &cb, tn, 62, 1.0f, 0), 0);
    memcpy(b.theta, a.theta, a.off[T_SW1] * sizeof(float));       /* x, gate, routed */
    memcpy(b.r, a.r, (size_t)tn * hn * sizeof(float));
    for (int e = 0; e < 2; e++)
        for (int h = 0; h < hn; h++)
            for (int f = 0; f < fs; f++) {
                float *w1 = a.sw1[e], *w3 = a.sw3[e], *w2 = a.sw2[e];
                ((float *)b.sw1[0])[h * 10 + e * fs + f] = w1[h * fs + f];
                ((float *)b.sw3[0])[h * 10 + e * fs + f] = w3[h * fs + f];
                ((float *)b.sw2[0])[(e * fs + f) * hn + h] = w2[f * hn + h];
            }
    const size_t on = (size_t)tn * hn;
    float *oa = malloc(on * sizeof(float)), *ob = malloc(on * sizeof(float));
    CU_ASSERT_FATAL(oa && ob);
    CU_ASSERT_EQUAL_FATAL(run_layer(&a, oa, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run_layer(&b, ob, NULL), 0);
    int ok = 1;
    for (size_t i = 0; i < on; i++)
        ok &= fabsf(oa[i] - ob[i]) <= 1e-5f * (1.0f + fabsf(oa[i]));
    for (size_t i = 0; i < on; i++)                                /* dx */
        ok &= fabsf(a.grad[i] - b.grad[i]) <= 1e-5f * (1.0f + fabsf(a.grad[i]));
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_TRUE(bits_equal(a.grad + a.off[T_GATE], b.grad + b.off[T_GATE],
                              a.off[T_SW1] - a.off[T_GATE]));
    ok = 1;
    for (int e = 0; e < 2; e++)
        for (int h = 0; h < hn; h++)
            for (int f = 0; f < fs; f++) {
                float g1 = ((float *)a.sg1[e])[h * fs + f];
                float g3 = ((float *)a.sg3[e])[h * fs + f];
                float g2 = ((float *)a.sg2[e])[f * hn + h];
                ok &= fabsf(g1 - ((float *)b.sg1[0])[h * 10 + e * fs + f]) <=
                      1e-5f * (1.0f + fabsf(g1));
                ok &= fabsf(g3 - ((float *)b.sg3[0])[h * 10 + e * fs + f]) <=
                      1e-5f * (1.0f + fabsf(g3));
                ok &= fabsf(g2 - ((float *)b.sg2[0])[(e * fs + f) * hn + h]) <=
                      1e-5f * (1.0f + fabsf(g2));
            }
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_EQUAL(moe_shared_ffn(&ca), 5);
    ca.shared_ffn = 0;
    CU_ASSERT_EQUAL(moe_shared_ffn(&ca), 6);                         /* 0: F */
    ca.shared_ffn = -1;
    CU_ASSERT_EQUAL(moe_cfg_check(&ca), -EINVAL);
    free(oa);
    free(ob);
    model_free(&a);
    model_free(&b);
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

/* Weight gradients are fp32 main_grads (moe.h), through the grad_* API. One backward
 * from zero gives each element's update d; dout is scaled so that the largest |d| is
 * 1e-4 (the gradients are linear in dout without the aux loss). From 1.0, REPS = 1000
 * backwards must reach 1 + 1000 d, each fp32 add rounding by at most half an ulp
 * (2^-24 for values in [0.5, 2)): |G - (1 + 1000 d)| <= 1000 * 2^-23, so the largest
 * reaches 1.1 within 1.2e-4. Accumulated in bf16 (ulp 2^-7 at 1), every update would
 * round away: the host emulation of that stays at exactly 1.0. */
static void test_main_grad(void)
{
    const struct moe_ops *ops = cpu();
    const struct moe_cfg c = { .hidden = 8, .ffn = 8, .experts = 2, .shared = 1,
                               .top_k = 1, .score = MOE_SCORE_SOFTMAX, .norm_topk = false,
                               .route_scale = 1.0f, .aux_alpha = 0.0f, .shared_ffn = 16 };
    const int tn = 4, hn = 8, reps = 1000;
    const size_t hf = 8 * 8, hs = 8 * 16, th = (size_t)tn * hn;
    struct model m;
    struct moe_ctx *ctx;
    void *gbuf, *dx, *out, *dout;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 71, 1.0f, 0), 0);
    const size_t lo = m.off[T_GATE], n = m.off[T_COUNT] - lo;     /* every weight grad */
    CU_ASSERT_EQUAL_FATAL(ops->grad_alloc(&gbuf, n), 0);
    CU_ASSERT_EQUAL_FATAL(ops->alloc(&dx, th), 0);
    CU_ASSERT_EQUAL_FATAL(ops->alloc(&out, th), 0);
    CU_ASSERT_EQUAL_FATAL(ops->alloc(&dout, th), 0);
    float *g0 = gbuf, *d = malloc(n * sizeof(float)), *big = malloc(n * sizeof(float));
    float *host = malloc(th * sizeof(float));
    CU_ASSERT_FATAL(d && big && host);
    void *p1[2], *p3[2], *p2[2], *q1[1], *q3[1], *q2[1];
    point(p1, g0, m.off[T_W1] - lo, 2, hf);
    point(p3, g0, m.off[T_W3] - lo, 2, hf);
    point(p2, g0, m.off[T_W2] - lo, 2, hf);
    point(q1, g0, m.off[T_SW1] - lo, 1, hs);
    point(q3, g0, m.off[T_SW3] - lo, 1, hs);
    point(q2, g0, m.off[T_SW2] - lo, 1, hs);
    struct moe_weights dw = { g0, NULL, p1, p3, p2, q1, q3, q2 };
    const float *x = m.theta + m.off[T_X];

    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, tn, tn), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(ops, ctx, &m.w, x, tn, out), 0);
    CU_ASSERT_EQUAL_FATAL(ops->upload(dout, m.r, th), 0);
    CU_ASSERT_EQUAL_FATAL(moe_backward(ops, ctx, &m.w, x, dout, dx, &dw), 0);
    CU_ASSERT_EQUAL_FATAL(ops->grad_download(d, gbuf, n), 0);
    size_t top = 0;
    for (size_t i = 1; i < n; i++)
        top = fabsf(d[i]) > fabsf(d[top]) ? i : top;
    CU_ASSERT_FATAL(d[top] != 0.0f);
    const float scale = 1e-4f / d[top];
    for (size_t i = 0; i < th; i++)
        host[i] = m.r[i] * scale;
    CU_ASSERT_EQUAL_FATAL(ops->upload(dout, host, th), 0);

    for (size_t i = 0; i < n; i++)
        big[i] = 0.0f;                        /* one backward from zero: d */
    CU_ASSERT_EQUAL_FATAL(ops->grad_upload(gbuf, big, n), 0);
    CU_ASSERT_EQUAL_FATAL(moe_backward(ops, ctx, &m.w, x, dout, dx, &dw), 0);
    CU_ASSERT_EQUAL_FATAL(ops->grad_download(d, gbuf, n), 0);
    CU_ASSERT_DOUBLE_EQUAL(d[top], 1e-4, 1e-9);

    for (size_t i = 0; i < n; i++)
        big[i] = 1.0f;
    CU_ASSERT_EQUAL_FATAL(ops->grad_upload(gbuf, big, n), 0);
    for (int r = 0; r < reps; r++)
        CU_ASSERT_EQUAL_FATAL(moe_backward(ops, ctx, &m.w, x, dout, dx, &dw), 0);
    CU_ASSERT_EQUAL_FATAL(ops->grad_download(big, gbuf, n), 0);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= fabs(big[i] - (1.0 + reps * (double)d[i])) <= reps * 0x1p-23;
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_DOUBLE_EQUAL(big[top], 1.1, 1.2e-4);
    float acc = 1.0f;                         /* the same updates, added in bf16 */
    for (int r = 0; r < reps; r++)
        acc = bf16_round(acc + d[top]);
    CU_ASSERT_EQUAL(acc, 1.0f);

    ops->ctx_free(ctx);
    ops->free(gbuf);
    ops->free(dx);
    ops->free(out);
    ops->free(dout);
    free(d);
    free(big);
    free(host);
    model_free(&m);
}

/* Binding refusals (moe.h): a ctx is in one order at a time (-EBUSY for a second
 * sync, until unbound), another backend's sync (one made for another ops table) and a
 * NULL ctx are -EINVAL, binding twice is a no-op, a sync with ctxs bound is not freed,
 * and ctx_free unbinds (under ASan, a sync freed too early shows as a use after
 * free). */
static void test_grad_sync_bind(void)
{
    const struct moe_ops *ops = cpu();
    const struct moe_cfg c = { .hidden = 4, .ffn = 4, .experts = 4, .shared = 0,
                               .top_k = 2, .score = MOE_SCORE_SOFTMAX,
                               .route_scale = 1.0f };
    struct moe_grad_sync *s1, *s2, foreign;
    struct moe_ctx *a, *b;
    const struct moe_ops other = *ops;        /* another table: another backend's sync */

    CU_ASSERT_EQUAL(ops->sync_create(NULL), -EINVAL);
    CU_ASSERT_EQUAL_FATAL(ops->sync_create(&s1), 0);
    CU_ASSERT_EQUAL_FATAL(ops->sync_create(&s2), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&a, &c, 4, 8), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&b, &c, 4, 8), 0);
    CU_ASSERT_PTR_NULL(a->grad_sync);
    CU_ASSERT_EQUAL(ops->sync_bind(a, s1), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(a, s1), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(a, s2), -EBUSY);
    CU_ASSERT_PTR_EQUAL(a->grad_sync, s1);
    CU_ASSERT_EQUAL(ops->sync_bind(a, NULL), 0);
    CU_ASSERT_PTR_NULL(a->grad_sync);
    CU_ASSERT_EQUAL(ops->sync_bind(a, NULL), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(a, s2), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(b, s2), 0);
    CU_ASSERT_EQUAL_FATAL(moe_sync_init(&foreign, &other), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(b, &foreign), -EINVAL);
    CU_ASSERT_EQUAL(ops->sync_bind(b, NULL), 0);
    CU_ASSERT_EQUAL(ops->sync_bind(b, &foreign), -EINVAL);         /* unbound, still */
    moe_sync_destroy(&foreign);
    CU_ASSERT_EQUAL(ops->sync_bind(b, s2), 0);
    CU_ASSERT_PTR_EQUAL(b->grad_sync, s2);
    CU_ASSERT_EQUAL(ops->sync_bind(NULL, s1), -EINVAL);
    ops->sync_free(s2);                       /* a and b bound: kept, one stderr line */
    CU_ASSERT_EQUAL(ops->sync_bind(b, NULL), 0);  /* uses s2: ASan sees a wrong free */
    ops->ctx_free(a);                         /* bound: unbinds */
    ops->ctx_free(b);
    ops->sync_free(s1);
    ops->sync_free(s2);
    ops->sync_free(NULL);
}

/* Two host threads, each with its own ctx on the same layer and input, both bound to
 * one sync, run SYNC_REPS backwards each into the same gradients. Each backward adds
 * the same values by the same operations, so with the accumulating stages taking
 * turns the result is, bit for bit, that of one ctx running 2 SYNC_REPS backwards; a
 * lost update would leave a gradient short. (Unbound, this OpenBLAS build happens to
 * pass too: it serializes concurrent GEMM calls, each dW update being one GEMM; the
 * next test checks the turn-taking itself.) */
#define SYNC_REPS 40

struct sync_job {
    const struct moe_ops *ops;
    struct moe_ctx *ctx;
    struct model *m;
    struct moe_weights *dw;
    float *dx;
    int rc;
};

static void *sync_worker(void *v)
{
    struct sync_job *j = v;
    const float *x = j->m->theta + j->m->off[T_X];
    for (int r = 0; r < SYNC_REPS && j->rc == 0; r++)
        j->rc = moe_backward(j->ops, j->ctx, &j->m->w, x, j->m->r, j->dx, j->dw);
    return NULL;
}

static void test_grad_sync_order(void)
{
    const struct moe_ops *ops = cpu();
    const struct moe_cfg c = { .hidden = 16, .ffn = 16, .experts = 4, .shared = 1,
                               .top_k = 2, .score = MOE_SCORE_SIGMOID, .norm_topk = true,
                               .route_scale = 1.0f, .aux_alpha = 0.01f, .shared_ffn = 8 };
    const int tn = 32;
    const size_t th = (size_t)tn * 16;
    struct model m;
    struct moe_grad_sync *s;
    struct moe_ctx *ctx[2];
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 83, 1.0f, 0), 0);
    const size_t lo = m.off[T_GATE], n = m.off[T_COUNT] - lo;
    const float *x = m.theta + m.off[T_X];
    float *out = malloc(th * sizeof(float)), *dx[2] = { malloc(th * sizeof(float)),
                                                         malloc(th * sizeof(float)) };
    float *seq = malloc(n * sizeof(float));
    CU_ASSERT_FATAL(out && dx[0] && dx[1] && seq);
    CU_ASSERT_EQUAL_FATAL(ops->sync_create(&s), 0);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx[i], &c, tn, tn * 2), 0);
        CU_ASSERT_EQUAL_FATAL(moe_forward(ops, ctx[i], &m.w, x, tn, out), 0);
        CU_ASSERT_EQUAL_FATAL(ops->sync_bind(ctx[i], s), 0);
    }

    memset(m.grad, 0, m.off[T_COUNT] * sizeof(float));      /* one ctx, in sequence */
    for (int r = 0; r < 2 * SYNC_REPS; r++)
        CU_ASSERT_EQUAL_FATAL(moe_backward(ops, ctx[0], &m.w, x, m.r, dx[0], &m.dw), 0);
    memcpy(seq, m.grad + lo, n * sizeof(float));

    memset(m.grad, 0, m.off[T_COUNT] * sizeof(float));      /* two threads, one sync */
    struct sync_job job[2];
    pthread_t tid;
    for (int i = 0; i < 2; i++)
        job[i] = (struct sync_job){ ops, ctx[i], &m, &m.dw, dx[i], 0 };
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, sync_worker, &job[1]), 0);
    sync_worker(&job[0]);
    pthread_join(tid, NULL);
    CU_ASSERT_EQUAL(job[0].rc, 0);
    CU_ASSERT_EQUAL(job[1].rc, 0);
    CU_ASSERT_TRUE(bits_equal(m.grad + lo, seq, n));

    for (int i = 0; i < 2; i++)
        ops->ctx_free(ctx[i]);
    ops->sync_free(s);
    free(out);
    free(dx[0]);
    free(dx[1]);
    free(seq);
    model_free(&m);
}

/* The turn-taking itself: while the sync is held (here by the test, through
 * moe_sync_enter on a bound ctx, as a running stage would hold it), an accumulating
 * stage of another ctx bound to it waits, and runs once the sync is let go; a stage of
 * an unbound ctx does not wait. The waiting stage is given 100 ms to (wrongly) finish;
 * the others 10 s to finish. */
struct stage_job {
    const struct moe_ops *ops;
    struct moe_ctx *ctx;
    struct model *m;
    float *dx;
    atomic_int done;
};

static void *stage_worker(void *v)
{
    struct stage_job *j = v;
    int rc = j->ops->route_bwd(j->ctx, &j->m->w, j->m->theta + j->m->off[T_X], j->dx,
                               &j->m->dw);
    atomic_store(&j->done, rc == 0 ? 1 : -1);
    return NULL;
}

static int wait_done(struct stage_job *j, int ms)
{
    const struct timespec step = { 0, 1000000 };
    for (int i = 0; i < ms && atomic_load(&j->done) == 0; i++)
        nanosleep(&step, NULL);
    return atomic_load(&j->done);
}

static void test_grad_sync_blocks(void)
{
    const struct moe_ops *ops = cpu();
    const struct moe_cfg c = { .hidden = 8, .ffn = 8, .experts = 4, .shared = 0,
                               .top_k = 2, .score = MOE_SCORE_SOFTMAX,
                               .route_scale = 1.0f };
    const int tn = 8;
    struct model m;
    struct moe_grad_sync *s;
    struct moe_ctx *held, *bound, *free_ctx;
    float *out = malloc(tn * 8 * sizeof(float)), *dx = calloc(tn * 8, sizeof(float));
    CU_ASSERT_FATAL(out && dx);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 5, 1.0f, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ops->sync_create(&s), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&held, &c, tn, tn * 2), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&bound, &c, tn, tn * 2), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&free_ctx, &c, tn, tn * 2), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(ops, bound, &m.w, m.theta, tn, out), 0);
    CU_ASSERT_EQUAL_FATAL(moe_forward(ops, free_ctx, &m.w, m.theta, tn, out), 0);
    CU_ASSERT_EQUAL_FATAL(ops->sync_bind(held, s), 0);
    CU_ASSERT_EQUAL_FATAL(ops->sync_bind(bound, s), 0);

    struct stage_job jb = { ops, bound, &m, dx, 0 }, jf = { ops, free_ctx, &m, dx, 0 };
    pthread_t tb, tf;
    moe_sync_enter(held);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, stage_worker, &jb), 0);
    CU_ASSERT_EQUAL(wait_done(&jb, 100), 0);          /* waits for its turn */
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tf, NULL, stage_worker, &jf), 0);
    CU_ASSERT_EQUAL(wait_done(&jf, 10000), 1);        /* unbound: no turn to wait for */
    pthread_join(tf, NULL);
    moe_sync_leave(held);
    CU_ASSERT_EQUAL(wait_done(&jb, 10000), 1);        /* its turn came */
    pthread_join(tb, NULL);

    ops->ctx_free(held);
    ops->ctx_free(bound);
    ops->ctx_free(free_ctx);
    ops->sync_free(s);
    free(out);
    free(dx);
    model_free(&m);
}

/* Same inputs, same bits: two fresh runs of forward and backward. */
static void test_deterministic(void)
{
    struct moe_cfg c = { .hidden = 32, .ffn = 24, .experts = 8, .shared = 2, .top_k = 3,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = false,
                         .route_scale = 1.0f, .aux_alpha = 0.01f };
    const int tn = 64;
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 123, 1.0f, 0), 0);
    size_t on = (size_t)tn * 32;
    float *o1 = malloc(on * sizeof(float)), *o2 = malloc(on * sizeof(float));
    float *g1 = malloc(m.off[T_COUNT] * sizeof(float));
    CU_ASSERT_FATAL(o1 && o2 && g1);
    CU_ASSERT_EQUAL(run_layer(&m, o1, NULL), 0);
    memcpy(g1, m.grad, m.off[T_COUNT] * sizeof(float));
    CU_ASSERT_EQUAL(run_layer(&m, o2, NULL), 0);
    CU_ASSERT_TRUE(bits_equal(o1, o2, on));
    CU_ASSERT_TRUE(bits_equal(g1, m.grad, m.off[T_COUNT]));
    free(o1);
    free(o2);
    free(g1);
    model_free(&m);
}

/* Experts and shared experts on 2, 3 and 5 pthreads give the bits of 1 (each GEMM
 * sees the same operands; shared outputs are added in expert order). A backward
 * whose groups name expert 0 twice falls back to the caller and also matches. */
static void test_threads_same_bits(void)
{
    struct moe_cfg c = { .hidden = 24, .ffn = 16, .experts = 8, .shared = 3, .top_k = 3,
                         .score = MOE_SCORE_SIGMOID, .norm_topk = true,
                         .route_scale = 2.5f, .aux_alpha = 0.01f, .shared_ffn = 40 };
    const int tn = 48;
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, tn, 99, 1.0f, 1), 0);
    const size_t on = (size_t)tn * 24, gn = m.off[T_COUNT];
    float *o1 = malloc(on * sizeof(float)), *o = malloc(on * sizeof(float));
    float *g1 = malloc(gn * sizeof(float));
    CU_ASSERT_FATAL(o1 && o && g1);
    CU_ASSERT_EQUAL_FATAL(run_layer_threads(&m, o1, NULL, 1), 0);
    memcpy(g1, m.grad, gn * sizeof(float));
    static const int threads[] = { 2, 3, 5 };
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL_FATAL(run_layer_threads(&m, o, NULL, threads[i]), 0);
        CU_ASSERT_TRUE(bits_equal(o, o1, on));
        CU_ASSERT_TRUE(bits_equal(m.grad, g1, gn));
    }

    /* Groups {0: 5 rows, 1: 4 rows, 0: 6 rows} of arbitrary rows. */
    const struct moe_ops *ops = cpu();
    int32_t ex[3] = { 0, 1, 0 }, rows[3] = { 5, 4, 6 };
    struct moe_groups g = { 3, 0, ex, rows };
    struct moe_ctx *ctx;
    float *dx1 = malloc(15 * 24 * sizeof(float)), *dx = malloc(15 * 24 * sizeof(float));
    float *y = malloc(15 * 24 * sizeof(float));
    CU_ASSERT_FATAL(dx1 && dx && y);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, 0, 15), 0);
    for (int pass = 0; pass < 2; pass++) {
        memset(m.grad, 0, gn * sizeof(float));
        CU_ASSERT_EQUAL(moe_cpu_set_threads(ctx, pass ? 3 : 1), 0);
        CU_ASSERT_EQUAL(ops->experts_fwd(ctx, &m.w, &g, m.theta, y), 0);
        CU_ASSERT_EQUAL(ops->experts_bwd(ctx, &m.w, &g, m.theta, m.r, pass ? dx : dx1, &m.dw),
                        0);
        if (pass == 0)
            memcpy(g1, m.grad, gn * sizeof(float));
    }
    CU_ASSERT_TRUE(bits_equal(dx, dx1, 15 * 24));
    CU_ASSERT_TRUE(bits_equal(m.grad, g1, gn));
    CU_ASSERT_EQUAL(moe_cpu_set_threads(ctx, 0), -EINVAL);
    CU_ASSERT_EQUAL(moe_cpu_set_threads(ctx, MOE_CPU_MAX_THREADS + 1), -EINVAL);
    ops->ctx_free(ctx);
    free(dx1);
    free(dx);
    free(y);
    free(o1);
    free(o);
    free(g1);
    model_free(&m);
}

/* 300 tokens: the forward gate GEMM runs in blocks of 128, 128 and 44 rows. Every
 * logit is x W_g (in double) within fp32 rounding: H = 8 products below 1 in size, so
 * |err| < 8 * 8 * 2^-24 = 4e-6, checked at 1e-5. The output is the double reference's
 * (selection margin >= GAP_MIN), and 1, 2 and 3 pthreads give the same bits, forward
 * and backward. */
static void test_route_blocks(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 8, .ffn = 6, .experts = 6, .shared = 1, .top_k = 2,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                         .route_scale = 1.0f, .aux_alpha = 0.01f };
    const int tn = 300, hn = 8, en = 6;
    const size_t on = (size_t)tn * hn;
    struct model m;
    struct moe_ctx *ctx;
    CU_ASSERT_EQUAL_FATAL(model_init_margin(&m, &c, tn, 31, 1.0f, 0), 0);
    const float *x = m.theta + m.off[T_X], *g = m.theta + m.off[T_GATE];
    float *o1 = malloc(on * sizeof(float)), *o = malloc(on * sizeof(float));
    float *g1 = malloc(m.off[T_COUNT] * sizeof(float));
    double *th = theta_double(&m), *ref = malloc(on * sizeof(double));
    CU_ASSERT_FATAL(o1 && o && g1 && th && ref);

    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, tn, tn * 2), 0);
    CU_ASSERT_EQUAL_FATAL(moe_cpu_set_threads(ctx, 2), 0);
    CU_ASSERT_EQUAL(ops->route(ctx, &m.w, x, tn), 0);
    int logits_ok = 1;
    for (int t = 0; t < tn; t++)
        for (int e = 0; e < en; e++) {
            double l = 0.0;
            for (int h = 0; h < hn; h++)
                l += (double)x[t * hn + h] * g[h * en + e];
            logits_ok &= fabs(ctx->logits[t * en + e] - l) <= 1e-5;
        }
    CU_ASSERT_TRUE(logits_ok);
    ops->ctx_free(ctx);

    ref_loss(&m, th, ref, NULL, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(run_layer_threads(&m, o1, NULL, 1), 0);
    memcpy(g1, m.grad, m.off[T_COUNT] * sizeof(float));
    int out_ok = 1;
    for (size_t i = 0; i < on; i++)
        out_ok &= fabs(o1[i] - ref[i]) <= 1e-5 + 1e-4 * fabs(ref[i]);
    CU_ASSERT_TRUE(out_ok);
    for (int n = 2; n <= 3; n++) {
        CU_ASSERT_EQUAL_FATAL(run_layer_threads(&m, o, NULL, n), 0);
        CU_ASSERT_TRUE(bits_equal(o, o1, on));
        CU_ASSERT_TRUE(bits_equal(m.grad, g1, m.off[T_COUNT]));
    }
    free(o1);
    free(o);
    free(g1);
    free(th);
    free(ref);
    model_free(&m);
}

/* A rank with no tokens: every count is 0, the aux loss is 0, and forward and
 * backward succeed without touching a gradient. */
static void test_zero_tokens(void)
{
    const struct moe_ops *ops = cpu();
    struct moe_cfg c = { .hidden = 4, .ffn = 3, .experts = 5, .shared = 1, .top_k = 2,
                         .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                         .route_scale = 1.0f, .aux_alpha = 0.1f };
    struct model m;
    struct moe_ctx *ctx;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c, 4, 2, 1.0f, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &c, 4, 8), 0);
    CU_ASSERT_EQUAL(moe_forward(ops, ctx, &m.w, m.theta, 0, m.r), 0);
    CU_ASSERT_EQUAL(ctx->tokens, 0);
    CU_ASSERT_EQUAL(ctx->aux_loss, 0.0f);
    for (int e = 0; e < 5; e++)
        CU_ASSERT_EQUAL(ctx->host_counts[e], 0);
    CU_ASSERT_EQUAL(ctx->host_offsets[5], 0);
    CU_ASSERT_EQUAL(moe_backward(ops, ctx, &m.w, m.theta, m.r, m.grad, &m.dw), 0);
    int zero = 1;
    for (size_t i = 0; i < m.off[T_COUNT]; i++)
        zero &= m.grad[i] == 0.0f;
    CU_ASSERT_TRUE(zero);
    ops->ctx_free(ctx);
    model_free(&m);
}

/* Bad configurations and arguments are -EINVAL, and nothing is written. */
static void test_bad_arguments(void)
{
    const struct moe_ops *ops = cpu();
    const struct moe_cfg good = { .hidden = 4, .ffn = 4, .experts = 4, .shared = 0,
                                  .top_k = 2, .score = MOE_SCORE_SOFTMAX,
                                  .norm_topk = false, .route_scale = 1.0f };
    struct moe_cfg c = good;
    struct moe_ctx *ctx;

    CU_ASSERT_EQUAL(moe_cfg_check(&good), 0);
    c.top_k = 5;
    CU_ASSERT_EQUAL(moe_cfg_check(&c), -EINVAL);
    c = good;
    c.top_k = 0;
    CU_ASSERT_EQUAL(moe_cfg_check(&c), -EINVAL);
    c = good;
    c.aux_alpha = -1.0f;
    CU_ASSERT_EQUAL(moe_cfg_check(&c), -EINVAL);
    c = good;
    c.route_scale = NAN;
    CU_ASSERT_EQUAL(moe_cfg_check(&c), -EINVAL);
    c = good;
    c.score = 7;
    CU_ASSERT_EQUAL(ops->ctx_create(&ctx, &c, 4, 8), -EINVAL);
    CU_ASSERT_EQUAL(ops->ctx_create(&ctx, &good, -1, 8), -EINVAL);

    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &good, 4, 1, 1.0f, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ops->ctx_create(&ctx, &good, 4, 6), 0);
    CU_ASSERT_EQUAL(ops->route(ctx, &m.w, m.theta, 5), -EINVAL);   /* > max_tokens */
    CU_ASSERT_EQUAL(ops->route(ctx, &m.w, m.theta, 4), 0);
    CU_ASSERT_EQUAL(moe_forward(ops, ctx, &m.w, m.theta, 4, m.r), -EINVAL);  /* 8 rows > 6 */
    int32_t rows[2] = { 4, 3 }, bad_e[2] = { 0, 4 };
    struct moe_groups g = { 2, 0, NULL, rows };
    float y[7 * 4];
    CU_ASSERT_EQUAL(ops->experts_fwd(ctx, &m.w, &g, m.theta, y), -EINVAL);  /* 7 > 6 */
    rows[0] = 3;
    g.expert = bad_e;
    CU_ASSERT_EQUAL(ops->experts_fwd(ctx, &m.w, &g, m.theta, y), -EINVAL);  /* expert 4 */
    g.expert = NULL;
    void *held[4] = { m.w1[0], NULL, m.w1[2], m.w1[3] };
    struct moe_weights w = m.w;
    w.w1 = held;
    CU_ASSERT_EQUAL(ops->experts_fwd(ctx, &w, &g, m.theta, y), -EINVAL);   /* w1[1] NULL */
    rows[1] = 0;
    CU_ASSERT_EQUAL(ops->experts_fwd(ctx, &w, &g, m.theta, y), 0);         /* not needed */
    ops->ctx_free(ctx);
    ops->ctx_free(NULL);
    model_free(&m);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "gradients vs finite differences", test_gradients_fd },
        { "gradients, top_k = experts", test_gradients_fd_all_experts },
        { "permute layout and identity", test_permute_layout },
        { "ties go to the lower index", test_tie_break },
        { "NaN ranks first", test_topk_nan },
        { "a NaN logit reaches the output", test_nan_layer },
        { "top_k = E is a dense mixture", test_dense_mixture },
        { "one expert per token is its FFN", test_single_expert },
        { "bias selects, weights unbiased", test_bias_selects_not_weights },
        { "rank split is bitwise exact", test_rank_split_exact },
        { "shared_ffn: S experts are one of width S Fs", test_shared_ffn_concat },
        { "1000 updates of 1e-4 add up in fp32", test_main_grad },
        { "gradient sync: binding and refusals", test_grad_sync_bind },
        { "gradient sync: two threads take turns", test_grad_sync_order },
        { "gradient sync: a bound stage waits its turn", test_grad_sync_blocks },
        { "deterministic", test_deterministic },
        { "pthreads give the same bits", test_threads_same_bits },
        { "gate GEMM in token blocks", test_route_blocks },
        { "no tokens", test_zero_tokens },
        { "bad arguments", test_bad_arguments },
    };
    return cu_run("moe_cpu", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
