/* moe.c: the backend-neutral part of the MoE layer: configuration checks, FLOP
 * counts, the one-process forward and backward as a chain of a backend's stages, and
 * the binding and locking of gradient syncs (moe_sync.h). */
#include "moe.h"

#include <errno.h>
#include <math.h>

#include "moe_sync.h"

int moe_cfg_check(const struct moe_cfg *c)
{
    if (!c || c->hidden < 1 || c->ffn < 1 || c->experts < 1 || c->shared < 0 ||
        c->shared_ffn < 0)
        return -EINVAL;
    if (c->top_k < 1 || c->top_k > c->experts)
        return -EINVAL;
    if (c->score != MOE_SCORE_SOFTMAX && c->score != MOE_SCORE_SIGMOID)
        return -EINVAL;
    if (!isfinite(c->route_scale) || !isfinite(c->aux_alpha) || c->aux_alpha < 0.0f)
        return -EINVAL;
    return 0;
}

int moe_shared_ffn(const struct moe_cfg *c)
{
    return c->shared_ffn > 0 ? c->shared_ffn : c->ffn;
}

double moe_expert_flops(const struct moe_cfg *c, double rows, bool backward)
{
    return (backward ? 12.0 : 6.0) * (double)c->hidden * (double)c->ffn * rows;
}

/* Every routed expert, in expert order, over the whole permuted buffer. */
static struct moe_groups all_experts(const struct moe_ctx *ctx)
{
    struct moe_groups g = { .n = ctx->cfg.experts, .first = 0, .expert = NULL,
                            .rows = ctx->host_counts };
    return g;
}

int moe_forward(const struct moe_ops *ops, struct moe_ctx *ctx, const struct moe_weights *w,
                const void *x, int tokens, void *out)
{
    if (!ops || !ctx || (int64_t)tokens * ctx->cfg.top_k > ctx->max_rows)
        return -EINVAL;
    int rc = ops->route(ctx, w, x, tokens);
    if (rc == 0)
        rc = ops->permute(ctx, x, ctx->xp);
    struct moe_groups g = all_experts(ctx);
    if (rc == 0)
        rc = ops->experts_fwd(ctx, w, &g, ctx->xp, ctx->yp);
    if (rc == 0)
        rc = ops->combine(ctx, ctx->yp, out);
    if (rc == 0)
        rc = ops->shared_fwd(ctx, w, x, out);
    return rc;
}

int moe_backward(const struct moe_ops *ops, struct moe_ctx *ctx, const struct moe_weights *w,
                 const void *x, const void *dout, void *dx, struct moe_weights *dw)
{
    if (!ops || !ctx)
        return -EINVAL;
    struct moe_groups g = all_experts(ctx);
    int rc = ops->combine_bwd(ctx, dout, ctx->yp, ctx->dyp);
    if (rc == 0)
        rc = ops->experts_bwd(ctx, w, &g, ctx->xp, ctx->dyp, ctx->dxp, dw);
    if (rc == 0)
        rc = ops->permute_bwd(ctx, ctx->dxp, dx);
    if (rc == 0)
        rc = ops->route_bwd(ctx, w, x, dx, dw);
    if (rc == 0)
        rc = ops->shared_bwd(ctx, w, x, dout, dx, dw);
    return rc;
}

/* ---- gradient syncs (moe_sync.h) ---- */

int moe_sync_init(struct moe_grad_sync *s, const struct moe_ops *ops)
{
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        return -ENOMEM;
    s->ops = ops;
    s->bound = 0;
    s->dev = NULL;
    s->magic = MOE_SYNC_MAGIC;
    return 0;
}

int moe_sync_destroy(struct moe_grad_sync *s)
{
    pthread_mutex_lock(&s->lock);
    int bound = s->bound;
    pthread_mutex_unlock(&s->lock);
    if (bound > 0)
        return -EBUSY;
    s->magic = 0;
    pthread_mutex_destroy(&s->lock);
    return 0;
}

int moe_sync_bind(struct moe_ctx *ctx, struct moe_grad_sync *s, const struct moe_ops *ops)
{
    if (!ctx || (s && (s->magic != MOE_SYNC_MAGIC || s->ops != ops)))
        return -EINVAL;
    struct moe_grad_sync *old = ctx->grad_sync;
    if (old == s)
        return 0;
    if (old && s)
        return -EBUSY;                  /* one order at a time: unbind first */
    struct moe_grad_sync *t = old ? old : s;
    pthread_mutex_lock(&t->lock);
    t->bound += old ? -1 : 1;
    pthread_mutex_unlock(&t->lock);
    ctx->grad_sync = s;
    return 0;
}

void moe_sync_enter(const struct moe_ctx *ctx)
{
    if (ctx && ctx->grad_sync)
        pthread_mutex_lock(&ctx->grad_sync->lock);
}

void moe_sync_leave(const struct moe_ctx *ctx)
{
    if (ctx && ctx->grad_sync)
        pthread_mutex_unlock(&ctx->grad_sync->lock);
}
