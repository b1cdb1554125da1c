/* skew.c: a configured routing skew made real in the gate's top-k (see skew.h). */
#include "skew.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gating.h"
#include "rng.h"

int skw_target(double *share, const struct config *c, const double *p, int draws,
               uint64_t seed)
{
    const int E = c->model.experts, K = c->model.top_k;
    struct gating_spec s = { .experts = E, .top_k = K, .distribution = DIST_ZIPF,
                             .popularity = p, .concentration = 1.0,
                             .scoring = c->routing.scoring };
    struct gating *g;
    if (draws < 1)
        return -EINVAL;
    int rc = gating_create(&g, &s);
    if (rc)
        return rc;
    int *chosen = malloc((size_t)K * sizeof(int));
    uint64_t *n = calloc((size_t)E, sizeof(uint64_t));
    if (!chosen || !n) {
        rc = -ENOMEM;
        goto out;
    }
    struct rng r;
    rng_seed(&r, seed);
    for (int t = 0; t < draws; t++) {
        gating_pick(g, &r, chosen, NULL);
        for (int k = 0; k < K; k++)
            n[chosen[k]]++;
    }
    for (int e = 0; e < E; e++)
        share[e] = (double)n[e] / ((double)draws * K);
out:
    free(chosen);
    free(n);
    gating_free(g);
    return rc;
}

/* Shares f[E] of the top-k of scores [T x E] by s + bias (ties: lower expert, as the
 * kernels). */
static void shares(const float *scores, int T, int E, int K, const float *bias, int *top,
                   double *f)
{
    memset(f, 0, (size_t)E * sizeof(double));
    for (int t = 0; t < T; t++) {
        const float *s = scores + (size_t)t * E;
        int n = 0;
        for (int e = 0; e < E; e++) {
            float v = s[e] + bias[e];
            int i;
            if (n < K)
                i = n++;
            else if (v > s[top[K - 1]] + bias[top[K - 1]])
                i = K - 1;
            else
                continue;
            for (; i > 0 && v > s[top[i - 1]] + bias[top[i - 1]]; i--)
                top[i] = top[i - 1];
            top[i] = e;
        }
        for (int k = 0; k < K; k++)
            f[top[k]] += 1.0;
    }
    for (int e = 0; e < E; e++)
        f[e] /= (double)T * K;
}

int skw_calibrate(float *bias, struct skw_fit *fit, const struct moe_ops *ops,
                  int (*copy)(void *dst, const void *src, size_t bytes),
                  const struct moe_cfg *cfg, const struct moe_weights *w, const void *x,
                  int tokens, const double *share, int rounds, double tol)
{
    const int E = cfg->experts, K = cfg->top_k;
    struct moe_weights w0 = *w;
    struct moe_ctx *ctx = NULL;
    memset(fit, 0, sizeof(*fit));
    if (tokens < 1 || rounds < 1)
        return -EINVAL;
    w0.bias = NULL;
    int rc = ops->ctx_create(&ctx, cfg, tokens, 0);
    rc = rc ? rc : ops->route(ctx, &w0, x, tokens);
    float *b = calloc((size_t)E, sizeof(float));
    double *f = calloc((size_t)E, sizeof(double));
    int *top = calloc((size_t)K, sizeof(int));
    float *sc = copy ? malloc((size_t)tokens * E * sizeof(float)) : NULL;
    if (!rc && (!b || !f || !top || (copy && !sc)))
        rc = -ENOMEM;
    if (!rc && copy)
        rc = copy(sc, ctx->scores, (size_t)tokens * E * sizeof(float));
    if (rc)
        goto out;
    const float *scores = copy ? sc : ctx->scores;
    /* The step, in score units: the scores' standard deviation, so that a share error of
     * 1/E moves a bias by about one spread of the scores at first. */
    double m = 0, v = 0, n = (double)tokens * E;
    for (size_t i = 0; i < (size_t)tokens * E; i++)
        m += scores[i];
    m /= n;
    for (size_t i = 0; i < (size_t)tokens * E; i++)
        v += (scores[i] - m) * (scores[i] - m);
    const double sd = sqrt(v / n);
    fit->err = INFINITY;
    for (int r = 0; r < rounds; r++) {
        shares(scores, tokens, E, K, b, top, f);
        double err = 0;
        for (int e = 0; e < E; e++)
            err = fabs(share[e] - f[e]) > err ? fabs(share[e] - f[e]) : err;
        fit->rounds = r + 1;
        if (err < fit->err) {
            fit->err = err;
            memcpy(bias, b, (size_t)E * sizeof(float));
        }
        if (err <= tol)
            break;
        double step = sd * E / (1.0 + r / 25.0);
        for (int e = 0; e < E; e++)
            b[e] += (float)(step * (share[e] - f[e]));
    }
out:
    free(sc);
    free(b);
    free(f);
    free(top);
    ops->ctx_free(ctx);
    return rc;
}
