/* tensors.c: seeded weights and tokens (see tensors.h). */
#include "tensors.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Stream of (layer, kind, index): 2^20 layers, 16 kinds, 2^38 indices apart. */
static uint64_t stream_of(int layer, enum tns_kind kind, int64_t index)
{
    return ((uint64_t)layer << 42) ^ ((uint64_t)kind << 38) ^ (uint64_t)index;
}

void tns_draw(float *p, size_t n, float a, uint64_t seed, int layer, enum tns_kind kind,
              int64_t index)
{
    struct rng r;
    rng_seed_stream(&r, seed, stream_of(layer, kind, index));
    for (size_t i = 0; i < n; i++)
        p[i] = a * (float)(2.0 * rng_double(&r) - 1.0);
}

/* A backend buffer of n elems: drawn, or zeroed for a gradient. */
static int one(void **out, const struct moe_ops *ops, size_t n, bool grad, float a,
               uint64_t seed, int layer, enum tns_kind kind, int64_t index)
{
    int rc = ops->alloc(out, n);
    if (rc < 0 || grad)
        return rc;
    float *h = malloc(n * sizeof(float));
    if (!h)
        return -ENOMEM;
    tns_draw(h, n, a, seed, layer, kind, index);
    rc = ops->upload(*out, h, n);
    free(h);
    return rc;
}

int tns_weights(struct moe_weights *w, const struct moe_ops *ops, const struct moe_cfg *c,
                const bool *held, bool grads, uint64_t seed, int layer)
{
    const size_t h = (size_t)c->hidden, f = (size_t)c->ffn, e_n = (size_t)c->experts;
    const size_t s_n = (size_t)c->shared;
    const float ah = 1.0f / sqrtf((float)c->hidden), af = 1.0f / sqrtf((float)c->ffn);
    memset(w, 0, sizeof(*w));
    w->w1 = calloc(e_n, sizeof(void *));
    w->w3 = calloc(e_n, sizeof(void *));
    w->w2 = calloc(e_n, sizeof(void *));
    if (s_n) {
        w->sw1 = calloc(s_n, sizeof(void *));
        w->sw3 = calloc(s_n, sizeof(void *));
        w->sw2 = calloc(s_n, sizeof(void *));
    }
    int rc = 0;
    if (!w->w1 || !w->w3 || !w->w2 || (s_n && (!w->sw1 || !w->sw3 || !w->sw2)))
        rc = -ENOMEM;
    if (!rc)
        rc = one(&w->gate, ops, h * e_n, grads, ah, seed, layer, TNS_GATE, 0);
    for (size_t e = 0; e < e_n && !rc; e++) {
        if (held && !held[e])
            continue;
        rc = one(&w->w1[e], ops, h * f, grads, ah, seed, layer, TNS_W1, (int64_t)e);
        if (!rc)
            rc = one(&w->w3[e], ops, h * f, grads, ah, seed, layer, TNS_W3, (int64_t)e);
        if (!rc)
            rc = one(&w->w2[e], ops, f * h, grads, af, seed, layer, TNS_W2, (int64_t)e);
    }
    for (size_t s = 0; s < s_n && !rc; s++) {
        rc = one(&w->sw1[s], ops, h * f, grads, ah, seed, layer, TNS_SW1, (int64_t)s);
        if (!rc)
            rc = one(&w->sw3[s], ops, h * f, grads, ah, seed, layer, TNS_SW3, (int64_t)s);
        if (!rc)
            rc = one(&w->sw2[s], ops, f * h, grads, af, seed, layer, TNS_SW2, (int64_t)s);
    }
    if (rc)
        tns_weights_free(w, ops, c);
    return rc;
}

void tns_weights_free(struct moe_weights *w, const struct moe_ops *ops, const struct moe_cfg *c)
{
    if (!w)
        return;
    ops->free(w->gate);
    for (int e = 0; e < c->experts; e++) {
        ops->free(w->w1 ? w->w1[e] : NULL);
        ops->free(w->w3 ? w->w3[e] : NULL);
        ops->free(w->w2 ? w->w2[e] : NULL);
    }
    for (int s = 0; s < c->shared; s++) {
        ops->free(w->sw1 ? w->sw1[s] : NULL);
        ops->free(w->sw3 ? w->sw3[s] : NULL);
        ops->free(w->sw2 ? w->sw2[s] : NULL);
    }
    free(w->w1);
    free(w->w3);
    free(w->w2);
    free(w->sw1);
    free(w->sw3);
    free(w->sw2);
    memset(w, 0, sizeof(*w));
}

int tns_tokens(void **out, const struct moe_ops *ops, int rows, int hidden, int64_t first,
               enum tns_kind kind, uint64_t seed, int layer)
{
    size_t n = (size_t)rows * (size_t)hidden;
    int rc = ops->alloc(out, n ? n : 1);
    if (rc < 0)
        return rc;
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) {
        ops->free(*out);
        *out = NULL;
        return -ENOMEM;
    }
    /* One stream per token, so any split of the tokens draws the same values. */
    for (int t = 0; t < rows; t++)
        tns_draw(h + (size_t)t * hidden, (size_t)hidden, 1.0f, seed, layer, kind, first + t);
    rc = ops->upload(*out, h, n);
    free(h);
    if (rc < 0) {
        ops->free(*out);
        *out = NULL;
    }
    return rc;
}
