/* moe.c: the backend-neutral part of the MoE layer: configuration checks, FLOP
 * counts, and the one-process forward and backward as a chain of a backend's stages. */
#include "moe.h"

#include <errno.h>
#include <math.h>

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
