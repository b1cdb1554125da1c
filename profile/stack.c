/* stack.c: expert-parallel MoE layers stacked with a residual stream (see stack.h). */
#include "stack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int host_copy(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return 0;
}

int stk_create(struct stk *s, const struct moe_ops *ops,
               int (*copy)(void *dst, const void *src, size_t bytes), struct epl **l, int n,
               int tokens, int hidden)
{
    memset(s, 0, sizeof(*s));
    if (!ops || !l || n < 1 || tokens < 0 || hidden < 1)
        return -EINVAL;
    const size_t tn = (size_t)tokens * hidden, one = tn ? tn : 1;
    s->ops = ops;
    s->copy = copy ? copy : host_copy;
    s->layers = n;
    s->tokens = tokens;
    s->hidden = hidden;
    s->l = l;
    s->h = calloc((size_t)n + 1, sizeof(void *));
    s->dh = calloc((size_t)n + 1, sizeof(void *));
    s->ha = malloc(one * sizeof(float));
    s->hb = malloc(one * sizeof(float));
    int rc = s->h && s->dh && s->ha && s->hb ? 0 : -ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        rc = ops->alloc(&s->h[i + 1], one);
        rc = rc ? rc : ops->alloc(&s->dh[i], one);
    }
    if (rc)
        stk_free(s);
    return rc;
}

void stk_free(struct stk *s)
{
    if (!s)
        return;
    for (int i = 0; s->ops && i < s->layers; i++) {
        if (s->h)
            s->ops->free(s->h[i + 1]);
        if (s->dh)
            s->ops->free(s->dh[i]);
    }
    free(s->h);
    free(s->dh);
    free(s->ha);
    free(s->hb);
    memset(s, 0, sizeof(*s));
}

/* y += x, T x H elems, through host floats. */
static int add_into(const struct stk *s, void *y, const void *x)
{
    const size_t n = (size_t)s->tokens * s->hidden;
    int rc = s->ops->download(s->ha, y, n);
    rc = rc ? rc : s->ops->download(s->hb, x, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        s->ha[i] += s->hb[i];
    return s->ops->upload(y, s->ha, n);
}

int stk_forward(struct stk *s, const void *x, struct tmr *t)
{
    s->h[0] = (void *)x;                     /* read only: the blocks take const inputs */
    int rc = 0;
    for (int l = 0; l < s->layers && !rc; l++) {
        if (t)
            t->layer = l;
        rc = epl_forward(s->l[l], s->h[l], s->h[l + 1], t);
        rc = rc ? rc : add_into(s, s->h[l + 1], s->h[l]);
    }
    return rc;
}

int stk_backward(struct stk *s, const void *dout, struct tmr *t)
{
    const size_t bytes = (size_t)s->tokens * s->hidden * s->ops->elem_bytes;
    s->dh[s->layers] = (void *)dout;
    int rc = 0;
    for (int l = s->layers - 1; l >= 0 && !rc; l--) {
        if (t)
            t->layer = l;
        rc = bytes ? s->copy(s->dh[l], s->dh[l + 1], bytes) : 0;   /* the residual path */
        rc = rc ? rc : epl_backward(s->l[l], s->h[l], s->dh[l + 1], s->dh[l], t);
    }
    return rc;
}
