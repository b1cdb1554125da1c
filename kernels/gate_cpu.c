/* gate_cpu.c: scores, top-k, routing weights and the aux loss, forward and backward.
 *
 * Gradients (u = selected score / Z_sel, Z_sel = sum of the K selected scores):
 *   weights  w_j = rs s_j / Z_sel  =>  dL/ds_j = rs / Z_sel (dw_j - sum_k dw_k u_k)
 *            w_j = rs s_j          =>  dL/ds_j = rs dw_j
 *   aux      L = alpha sum_e f_e P_e, dL/ds'_t,e = alpha f_e / T = g_e, s' = s / Z
 *            =>  dL/ds_t,j = (g_j - sum_e g_e s'_t,e) / Z_t
 *   scores   softmax: dl = s (ds - <s, ds>);  sigmoid: dl = ds s (1 - s)
 */
#include "gate_cpu.h"

#include <math.h>
#include <stdbool.h>

/* The larger of a and b, NaN if either is (moe.h's NaN rule: a softmax row with a
 * NaN logit is NaN throughout, by construction rather than through the sum). */
static float max_nan(float a, float b)
{
    return isnan(a) || a > b ? a : b;
}

static void scores_row(enum moe_score kind, int e_n, const float *l, float *s)
{
    if (kind == MOE_SCORE_SIGMOID) {
        for (int e = 0; e < e_n; e++)
            s[e] = 1.0f / (1.0f + expf(-l[e]));
        return;
    }
    float m = l[0];
    for (int e = 1; e < e_n; e++)
        m = max_nan(m, l[e]);
    float sum = 0.0f;
    for (int e = 0; e < e_n; e++) {
        s[e] = expf(l[e] - m);
        sum += s[e];
    }
    for (int e = 0; e < e_n; e++)
        s[e] /= sum;
}

/* The value experts are ranked by: the score plus the bias. */
static float rank_value(const float *s, const float *bias, int e)
{
    return bias ? s[e] + bias[e] : s[e];
}

/* v ranks strictly above w: NaN (of either sign) above every number, NaNs equal to
 * each other, -0 equal to +0 (moe.h's NaN rule; gate.cu's rank_key is the same order). */
static bool above(float v, float w)
{
    return isnan(v) ? !isnan(w) : v > w;
}

/* The first K experts in (value desc, index asc) order: a total order, so the picks
 * are unique. One pass in index order keeps the best so far sorted in idx[0..n); an
 * expert enters only by ranking before the K-th, and never passes an equal value (it
 * has the higher index), so ties stay with the lower index. O(E) compares plus O(K)
 * per entry: about K ln(E / K) entries when the values come in random order. */
static void topk_row(int e_n, int k_n, const float *s, const float *bias, int32_t *idx)
{
    int n = 0;

    for (int e = 0; e < e_n; e++) {
        float v = rank_value(s, bias, e);
        if (n == k_n && !above(v, rank_value(s, bias, idx[n - 1])))
            continue;                         /* ranks after the K-th */
        int i = n < k_n ? n++ : n - 1;
        for (; i > 0 && above(v, rank_value(s, bias, idx[i - 1])); i--)
            idx[i] = idx[i - 1];
        idx[i] = e;
    }
}

void gate_cpu_fwd_tokens(const struct moe_cfg *c, const float *bias, int t0, int t1,
                         const float *logits, float *scores, int32_t *topk_idx,
                         float *topk_w)
{
    const int e_n = c->experts, k_n = c->top_k;

    for (int t = t0; t < t1; t++) {
        const float *l = logits + (size_t)t * e_n;
        float *s = scores + (size_t)t * e_n;
        int32_t *idx = topk_idx + (size_t)t * k_n;
        float *w = topk_w + (size_t)t * k_n;

        scores_row(c->score, e_n, l, s);
        topk_row(e_n, k_n, s, bias, idx);
        float z = 0.0f;
        for (int k = 0; k < k_n; k++)
            z += s[idx[k]];
        for (int k = 0; k < k_n; k++)
            w[k] = c->norm_topk ? c->route_scale * (s[idx[k]] / z)
                                : c->route_scale * s[idx[k]];
    }
}

void gate_cpu_fwd(const struct moe_cfg *c, const float *bias, int tokens, const float *logits,
                  float *scores, int32_t *topk_idx, float *topk_w, int32_t *counts,
                  float *aux)
{
    gate_cpu_fwd_tokens(c, bias, 0, tokens, logits, scores, topk_idx, topk_w);
    gate_cpu_fwd_counts(c, tokens, scores, topk_idx, counts, aux);
}

void gate_cpu_fwd_counts(const struct moe_cfg *c, int tokens, const float *scores,
                         const int32_t *topk_idx, int32_t *counts, float *aux)
{
    const int e_n = c->experts, k_n = c->top_k;

    for (int e = 0; e < e_n; e++)
        counts[e] = 0;
    for (size_t i = 0; i < (size_t)tokens * k_n; i++)
        counts[topk_idx[i]]++;

    *aux = 0.0f;
    if (c->aux_alpha <= 0.0f || tokens == 0)
        return;
    /* L_aux = alpha E / (K T^2) sum_t (sum_e count_e s_t,e) / Z_t; the sums in double. */
    double l_aux = 0.0;
    for (int t = 0; t < tokens; t++) {
        const float *s = scores + (size_t)t * e_n;
        double z = 0.0, cs = 0.0;
        for (int e = 0; e < e_n; e++) {
            z += s[e];
            cs += (double)counts[e] * s[e];
        }
        l_aux += cs / z;
    }
    *aux = (float)(c->aux_alpha * (double)e_n / ((double)k_n * tokens * tokens) * l_aux);
}

void gate_cpu_bwd(const struct moe_cfg *c, int tokens, const float *scores,
                  const int32_t *topk_idx, const int32_t *counts, const float *dtopk_w,
                  float *dlogits)
{
    gate_cpu_bwd_tokens(c, tokens, 0, tokens, scores, topk_idx, counts, dtopk_w, dlogits);
}

void gate_cpu_bwd_tokens(const struct moe_cfg *c, int tokens, int t0, int t1,
                         const float *scores, const int32_t *topk_idx, const int32_t *counts,
                         const float *dtopk_w, float *dlogits)
{
    const int e_n = c->experts, k_n = c->top_k;
    const float rs = c->route_scale;
    /* g_e = alpha f_e / T = aux_scale * count_e */
    const float aux_scale = c->aux_alpha > 0.0f && tokens > 0
        ? (float)(c->aux_alpha * (double)e_n / ((double)k_n * tokens * tokens)) : 0.0f;

    for (int t = t0; t < t1; t++) {
        const float *s = scores + (size_t)t * e_n;
        const int32_t *idx = topk_idx + (size_t)t * k_n;
        const float *dw = dtopk_w + (size_t)t * k_n;
        float *ds = dlogits + (size_t)t * e_n;

        for (int e = 0; e < e_n; e++)
            ds[e] = 0.0f;
        if (c->norm_topk) {
            float z = 0.0f, dot = 0.0f;
            for (int k = 0; k < k_n; k++)
                z += s[idx[k]];
            for (int k = 0; k < k_n; k++)
                dot += dw[k] * (s[idx[k]] / z);
            for (int k = 0; k < k_n; k++)
                ds[idx[k]] = rs * (dw[k] - dot) / z;
        } else {
            for (int k = 0; k < k_n; k++)
                ds[idx[k]] = rs * dw[k];
        }
        if (aux_scale > 0.0f) {
            float z = 0.0f, dot = 0.0f;
            for (int e = 0; e < e_n; e++)
                z += s[e];
            for (int e = 0; e < e_n; e++)
                dot += aux_scale * (float)counts[e] * (s[e] / z);
            for (int e = 0; e < e_n; e++)
                ds[e] += (aux_scale * (float)counts[e] - dot) / z;
        }
        if (c->score == MOE_SCORE_SOFTMAX) {
            float dot = 0.0f;
            for (int e = 0; e < e_n; e++)
                dot += s[e] * ds[e];
            for (int e = 0; e < e_n; e++)
                ds[e] = s[e] * (ds[e] - dot);
        } else {
            for (int e = 0; e < e_n; e++)
                ds[e] = ds[e] * s[e] * (1.0f - s[e]);
        }
    }
}
