/* force.c: forced routing (see force.h). */
#include "force.h"

#include <errno.h>
#include <stdlib.h>
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

int frc_route(const struct moe_cfg *c, int tokens, const int32_t *idx, const float *scores,
              const struct frc_out *o)
{
    const int t_n = tokens, k_n = c->top_k, e_n = c->experts;
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
    memcpy(o->topk_idx, idx, (size_t)t_n * k_n * sizeof(int32_t));
    memset(o->counts, 0, (size_t)e_n * sizeof(int32_t));
    for (int t = 0; t < t_n; t++) {
        const float *s = scores + (size_t)t * e_n;
        const int32_t *ix = idx + (size_t)t * k_n;
        float *w = o->topk_w + (size_t)t * k_n;
        float z = 0.0f;
        for (int k = 0; k < k_n; k++) {
            z += s[ix[k]];
            o->counts[ix[k]]++;
        }
        for (int k = 0; k < k_n; k++)
            w[k] = c->norm_topk ? c->route_scale * (s[ix[k]] / z) : c->route_scale * s[ix[k]];
    }
    o->offsets[0] = 0;
    for (int e = 0; e < e_n; e++) {
        o->offsets[e + 1] = o->offsets[e] + o->counts[e];
        o->cursor[e] = o->offsets[e];
    }
    /* slots in (t, k) order: token order inside each expert's group */
    for (int32_t slot = 0; slot < t_n * k_n; slot++) {
        int32_t pos = o->cursor[idx[slot]]++;
        o->slot_pos[slot] = pos;
        o->perm_slot[pos] = slot;
    }
    return 0;
}

int frc_apply(struct moe_ctx *ctx, const int32_t *idx)
{
    /* host_counts as the cursor; then both host arrays get their values */
    struct frc_out o = { ctx->topk_idx, ctx->topk_w, ctx->counts, ctx->offsets, ctx->slot_pos,
                         ctx->perm_slot, ctx->host_counts };
    int rc = frc_route(&ctx->cfg, ctx->tokens, idx, ctx->scores, &o);
    if (rc)
        return rc;
    memcpy(ctx->host_offsets, ctx->offsets, (size_t)(ctx->cfg.experts + 1) * sizeof(int32_t));
    memcpy(ctx->host_counts, ctx->counts, (size_t)ctx->cfg.experts * sizeof(int32_t));
    ctx->aux_loss = 0.0f;
    return 0;
}

int frc_host_create(struct frc_host *h, int max_tokens, int top_k, int experts)
{
    const size_t tk = (size_t)max_tokens * top_k, e = (size_t)experts;
    const size_t te = (size_t)max_tokens * e, i4 = sizeof(int32_t);
    memset(h, 0, sizeof(*h));
    h->scores = malloc((te ? te : 1) * sizeof(float));
    h->o.topk_idx = malloc((tk ? tk : 1) * i4);
    h->o.topk_w = malloc((tk ? tk : 1) * sizeof(float));
    h->o.counts = malloc(e * i4);
    h->o.offsets = malloc((e + 1) * i4);
    h->o.slot_pos = malloc((tk ? tk : 1) * i4);
    h->o.perm_slot = malloc((tk ? tk : 1) * i4);
    h->o.cursor = malloc(e * i4);
    if (!h->scores || !h->o.topk_idx || !h->o.topk_w || !h->o.counts || !h->o.offsets ||
        !h->o.slot_pos || !h->o.perm_slot || !h->o.cursor) {
        frc_host_free(h);
        return -ENOMEM;
    }
    return 0;
}

void frc_host_free(struct frc_host *h)
{
    if (!h)
        return;
    free(h->scores);
    free(h->o.topk_idx);
    free(h->o.topk_w);
    free(h->o.counts);
    free(h->o.offsets);
    free(h->o.slot_pos);
    free(h->o.perm_slot);
    free(h->o.cursor);
    memset(h, 0, sizeof(*h));
}

int frc_apply_copy(struct moe_ctx *ctx, const int32_t *idx,
                   int (*copy)(void *dst, const void *src, size_t bytes),
                   const struct frc_host *h)
{
    const size_t tk = (size_t)ctx->tokens * ctx->cfg.top_k, e = (size_t)ctx->cfg.experts;
    const size_t i4 = sizeof(int32_t);
    const struct frc_out *o = &h->o;
    int rc = copy(h->scores, ctx->scores, (size_t)ctx->tokens * e * sizeof(float));
    rc = rc ? rc : frc_route(&ctx->cfg, ctx->tokens, idx, h->scores, o);
    rc = rc ? rc : copy(ctx->topk_idx, o->topk_idx, tk * i4);
    rc = rc ? rc : copy(ctx->topk_w, o->topk_w, tk * sizeof(float));
    rc = rc ? rc : copy(ctx->counts, o->counts, e * i4);
    rc = rc ? rc : copy(ctx->offsets, o->offsets, (e + 1) * i4);
    rc = rc ? rc : copy(ctx->slot_pos, o->slot_pos, tk * i4);
    rc = rc ? rc : copy(ctx->perm_slot, o->perm_slot, tk * i4);
    if (rc)
        return rc;
    memcpy(ctx->host_counts, o->counts, e * i4);
    memcpy(ctx->host_offsets, o->offsets, (e + 1) * i4);
    ctx->aux_loss = 0.0f;
    return 0;
}
