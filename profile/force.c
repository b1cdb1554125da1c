/* force.c: forced routing (see force.h). */
#include "force.h"

#include <errno.h>
#include <string.h>

int frc_fill(int32_t *idx, const uint64_t *counts, int experts, int tokens, int top_k)
{
    uint64_t sum = 0;
    for (int e = 0; e < experts; e++) {
        if (counts[e] > (uint64_t)tokens)
            return -EINVAL;
        sum += counts[e];
    }
    if (sum != (uint64_t)tokens * (uint64_t)top_k)
        return -EINVAL;
    int64_t i = 0;                       /* entry number, 0 .. T K - 1 */
    for (int e = 0; e < experts; e++)
        for (uint64_t c = 0; c < counts[e]; c++, i++)
            idx[(i % tokens) * top_k + i / tokens] = e;
    return 0;
}

int frc_apply(struct moe_ctx *ctx, const int32_t *idx)
{
    const struct moe_cfg *c = &ctx->cfg;
    const int t_n = ctx->tokens, k_n = c->top_k, e_n = c->experts;
    if (c->aux_alpha != 0.0f)
        return -EINVAL;
    for (int t = 0; t < t_n; t++)
        for (int k = 0; k < k_n; k++) {
            int32_t e = idx[t * k_n + k];
            if (e < 0 || e >= e_n)
                return -EINVAL;
            for (int j = 0; j < k; j++)
                if (idx[t * k_n + j] == e)
                    return -EINVAL;
        }
    memcpy(ctx->topk_idx, idx, (size_t)t_n * k_n * sizeof(int32_t));
    memset(ctx->counts, 0, (size_t)e_n * sizeof(int32_t));
    for (int t = 0; t < t_n; t++) {
        const float *s = ctx->scores + (size_t)t * e_n;
        const int32_t *ix = idx + (size_t)t * k_n;
        float *w = ctx->topk_w + (size_t)t * k_n;
        float z = 0.0f;
        for (int k = 0; k < k_n; k++) {
            z += s[ix[k]];
            ctx->counts[ix[k]]++;
        }
        for (int k = 0; k < k_n; k++)
            w[k] = c->norm_topk ? c->route_scale * (s[ix[k]] / z) : c->route_scale * s[ix[k]];
    }
    ctx->offsets[0] = 0;
    for (int e = 0; e < e_n; e++)
        ctx->offsets[e + 1] = ctx->offsets[e] + ctx->counts[e];
    /* host_offsets as the cursor, then restored: slots in (t, k) order, token order
     * inside each expert's group. */
    memcpy(ctx->host_offsets, ctx->offsets, (size_t)(e_n + 1) * sizeof(int32_t));
    for (int32_t slot = 0; slot < t_n * k_n; slot++) {
        int32_t pos = ctx->host_offsets[idx[slot]]++;
        ctx->slot_pos[slot] = pos;
        ctx->perm_slot[pos] = slot;
    }
    memcpy(ctx->host_offsets, ctx->offsets, (size_t)(e_n + 1) * sizeof(int32_t));
    memcpy(ctx->host_counts, ctx->counts, (size_t)e_n * sizeof(int32_t));
    ctx->aux_loss = 0.0f;
    return 0;
}
