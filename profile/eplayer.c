/* eplayer.c: one rank of an expert-parallel MoE layer (see eplayer.h). */
#include "eplayer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "force.h"
#include "layout.h"
#include "tensors.h"

struct epl {
    const struct moe_ops *ops;
    struct moe_cfg cfg;
    const struct lay *lay;
    struct xch x;
    int rank, ranks, tokens;
    int first, nmine;            /* this rank's slots: [first, first + nmine) */
    struct moe_ctx *ctx;         /* source side: this rank's tokens (max_rows 0) */
    struct moe_ctx *ex;          /* expert side: the rows received, cap_rows of them */
    struct moe_weights w, dw;
    float *bias;                 /* [E] or NULL; backend memory (host on CPU) */
    float *zeros;                /* host, max(H E, H F) zeros, for epl_zero_grads */

    struct epl_io io;
    int32_t *h_idx, *h_pos, *h_perm;   /* [T K] host copies of topk_idx, slot_pos, perm_slot */
    int32_t *pick;               /* [T K] global slot of each (t, k) */
    int32_t *forced;             /* [T K] forced experts (epl_force), or NULL */
    bool force_on;
    struct frc_host fh;          /* host scratch of the forced routing */
    int32_t *slot_rows;          /* [nslots] rows sent to each global slot */
    int32_t *slot_cur;           /* [nslots] send cursor */
    int32_t *expert_rows;        /* [E] assignments per expert from this rank */
    int32_t *send_rows;          /* [ranks] */
    int32_t *recv_rows;          /* [ranks] */
    int32_t *cnt_send, *cnt_recv;/* [ranks * max_slots] */
    int32_t *grp_rows;           /* [nmine] rows received per own slot */
    int32_t *grp_expert;         /* [nmine] */
    int cap_rows;                /* rows the expert-side buffers hold now */
    int worst_rows;              /* ranks T K: the most a rank can receive */
    int peak_rows;               /* the most rows received by one forward so far */
    void *rx, *ex_x, *ex_y, *ex_dy, *ex_dx;   /* [cap_rows x H] */

    /* Aux loss (aux_alpha > 0), over the group's batch: */
    float *h_scores;             /* host [T x E] copy of the scores */
    double *aux_sum;             /* host [2E]: counts, then sum_t s'_t,e; summed over the group */
    int32_t *aux_h;              /* host [E] the group's counts */
    void *aux_dev;               /* backend memory, 4E bytes: the same, for ctx->aux_counts */
    float aux_loss;              /* L_aux of the group's batch, after a forward */
};

static int host_copy(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return 0;
}

static int mpi_rows(void *arg, const void *send, const int32_t *send_rows, void *recv,
                    const int32_t *recv_rows)
{
    return xch_rows(arg, send, send_rows, recv, recv_rows);
}

static int check_spec(const struct epl_spec *s, int size)
{
    if (!s || !s->lay || moe_cfg_check(&s->cfg) < 0 || s->tokens < 0 || s->lay->ranks != size || s->lay->experts != s->cfg.experts)
        return -EINVAL;
    if ((int64_t)size * s->tokens * s->cfg.top_k > INT32_MAX / 2)
        return -EINVAL;
    return 0;
}

static int alloc_host(struct epl *l)
{
    const struct lay *y = l->lay;
    size_t tk = (size_t)l->tokens * l->cfg.top_k, r = (size_t)l->ranks;
    size_t zn = (size_t)l->cfg.hidden * (l->cfg.experts > l->cfg.ffn ? l->cfg.experts
                                                                         : l->cfg.ffn);
    l->pick = calloc(tk ? tk : 1, sizeof(int32_t));
    l->h_idx = calloc(tk ? tk : 1, sizeof(int32_t));
    l->h_pos = calloc(tk ? tk : 1, sizeof(int32_t));
    l->h_perm = calloc(tk ? tk : 1, sizeof(int32_t));
    l->slot_rows = calloc((size_t)y->nslots, sizeof(int32_t));
    l->slot_cur = calloc((size_t)y->nslots, sizeof(int32_t));
    l->expert_rows = calloc((size_t)l->cfg.experts, sizeof(int32_t));
    l->send_rows = calloc(r, sizeof(int32_t));
    l->recv_rows = calloc(r, sizeof(int32_t));
    l->cnt_send = calloc(r * (size_t)(y->max_slots ? y->max_slots : 1), sizeof(int32_t));
    l->cnt_recv = calloc(r * (size_t)(y->max_slots ? y->max_slots : 1), sizeof(int32_t));
    l->grp_rows = calloc((size_t)(l->nmine ? l->nmine : 1), sizeof(int32_t));
    l->grp_expert = calloc((size_t)(l->nmine ? l->nmine : 1), sizeof(int32_t));
    l->zeros = calloc(zn, sizeof(float));
    if (!l->pick || !l->h_idx || !l->h_pos || !l->h_perm || !l->slot_rows || !l->slot_cur || !l->expert_rows || !l->send_rows ||
        !l->recv_rows || !l->cnt_send || !l->cnt_recv || !l->grp_rows || !l->grp_expert ||
        !l->zeros)
        return -ENOMEM;
    for (int i = 0; i < l->nmine; i++)
        l->grp_expert[i] = y->slot_expert[l->first + i];
    return 0;
}

/* The expert side's buffers (the 5 row buffers, the experts ctx and its activations)
 * for at least `rows` rows: kept when they hold them, else made anew for
 * min(rows + rows / 8, worst) rows: each growth adds at least an eighth, so a load
 * that creeps up reallocates O(log(worst / start)) times. The old contents are
 * dropped: call before the dispatch writes them. 0, -ENOMEM, or the backend's error
 * (the layer is then unusable). */
static int grow_rows(struct epl *l, int rows)
{
    if (l->ex && rows <= l->cap_rows)
        return 0;
    int cap = rows + rows / 8 < l->worst_rows ? rows + rows / 8 : l->worst_rows;
    cap = cap > rows ? cap : rows;
    void **bufs[] = { &l->rx, &l->ex_x, &l->ex_y, &l->ex_dy, &l->ex_dx };
    const size_t n = (size_t)(cap ? cap : 1) * l->cfg.hidden;
    l->ops->ctx_free(l->ex);
    l->ex = NULL;
    l->cap_rows = 0;
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        l->ops->free(*bufs[i]);
        *bufs[i] = NULL;
    }
    int rc = l->ops->ctx_create(&l->ex, &l->cfg, 0, cap);
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]) && !rc; i++)
        rc = l->ops->alloc(bufs[i], n);
    if (!rc)
        l->cap_rows = cap;
    return rc;
}

int epl_create(struct epl **out, const struct moe_ops *ops, const struct epl_spec *s)
{
    int size = 0, rank = 0;
    if (!out || !ops || !s)
        return -EINVAL;
    if (MPI_Comm_size(s->comm, &size) != MPI_SUCCESS ||
        MPI_Comm_rank(s->comm, &rank) != MPI_SUCCESS)
        return -EIO;
    if (check_spec(s, size) < 0)
        return -EINVAL;
    struct epl *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->ops = ops;
    l->cfg = s->cfg;
    l->lay = s->lay;
    l->rank = rank;
    l->ranks = size;
    l->tokens = s->tokens;
    l->first = s->lay->rank0[rank];
    l->nmine = s->lay->rank0[rank + 1] - l->first;
    l->worst_rows = size * s->tokens * s->cfg.top_k;

    int rc = alloc_host(l);
    bool *held = calloc((size_t)s->cfg.experts, sizeof(bool));
    if (!rc && !held)
        rc = -ENOMEM;
    for (int i = 0; !rc && i < l->nmine; i++)
        held[l->grp_expert[i]] = true;
    if (!rc)
        rc = tns_weights(&l->w, ops, &s->cfg, held, false, s->seed, s->layer);
    if (!rc)
        rc = tns_weights(&l->dw, ops, &s->cfg, held, true, s->seed, s->layer);
    free(held);
    if (!rc)
        rc = ops->ctx_create(&l->ctx, &s->cfg, s->tokens, 0);
    if (!rc)                     /* a balanced layer's rows: T K */
        rc = grow_rows(l, s->tokens * s->cfg.top_k);
    if (!rc && s->bias)
        rc = epl_set_bias(l, s->bias);
    if (!rc && s->cfg.aux_alpha > 0.0f) {
        const size_t te = (size_t)s->tokens * s->cfg.experts, e = (size_t)s->cfg.experts;
        l->h_scores = malloc((te ? te : 1) * sizeof(float));
        l->aux_sum = malloc(2 * e * sizeof(double));
        l->aux_h = malloc(e * sizeof(int32_t));
        rc = l->h_scores && l->aux_sum && l->aux_h ? 0 : -ENOMEM;
        /* 4-byte elements on every backend (moe.h): room for E int32 */
        rc = rc ? rc : ops->grad_alloc(&l->aux_dev, e);
    }
    if (!rc)
        rc = xch_create(&l->x, s->comm, s->cfg.hidden);
    if (s->io)
        l->io = *s->io;
    else
        l->io = (struct epl_io){ .copy = host_copy, .rows = mpi_rows, .rows_arg = &l->x };
    if (rc) {
        epl_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void epl_free(struct epl *l)
{
    if (!l)
        return;
    xch_free(&l->x);
    if (l->ops) {
        l->ops->ctx_free(l->ctx);
        l->ops->ctx_free(l->ex);
        tns_weights_free(&l->w, l->ops, &l->cfg);
        tns_weights_free(&l->dw, l->ops, &l->cfg);
        l->ops->free(l->bias);
        l->ops->free(l->rx);
        l->ops->free(l->ex_x);
        l->ops->free(l->ex_y);
        l->ops->free(l->ex_dy);
        l->ops->free(l->ex_dx);
        l->ops->free(l->aux_dev);
    }
    free(l->h_scores);
    frc_host_free(&l->fh);
    free(l->aux_sum);
    free(l->aux_h);
    free(l->pick);
    free(l->h_idx);
    free(l->h_pos);
    free(l->h_perm);
    free(l->forced);
    free(l->slot_rows);
    free(l->slot_cur);
    free(l->expert_rows);
    free(l->send_rows);
    free(l->recv_rows);
    free(l->cnt_send);
    free(l->cnt_recv);
    free(l->grp_rows);
    free(l->grp_expert);
    free(l->zeros);
    free(l);
}

/* After route: each (t, k) to a slot (layout.h's replica rule), slot_pos rewritten into
 * send order (global slot order = destination rank, then its slots; token order
 * inside a slot), and the per-slot and per-rank row counts. */
static int assign(struct epl *l)
{
    struct moe_ctx *c = l->ctx;
    const struct lay *y = l->lay;
    const int tk = c->tokens * l->cfg.top_k;
    const size_t tk_bytes = (size_t)tk * sizeof(int32_t);

    int rc = l->io.copy(l->h_idx, c->topk_idx, tk_bytes);
    if (rc)
        return rc;
    memset(l->expert_rows, 0, (size_t)l->cfg.experts * sizeof(int32_t));
    memset(l->slot_rows, 0, (size_t)y->nslots * sizeof(int32_t));
    for (int i = 0; i < tk; i++) {
        int e = l->h_idx[i];
        int g = lay_pick(y, l->rank, e, l->expert_rows[e]++);
        l->pick[i] = g;
        l->slot_rows[g]++;
    }
    int32_t off = 0;
    for (int g = 0; g < y->nslots; g++) {
        l->slot_cur[g] = off;
        off += l->slot_rows[g];
    }
    for (int i = 0; i < tk; i++) {
        int32_t pos = l->slot_cur[l->pick[i]]++;
        l->h_pos[i] = pos;
        l->h_perm[pos] = i;
    }
    for (int d = 0; d < l->ranks; d++) {
        l->send_rows[d] = 0;
        for (int g = y->rank0[d]; g < y->rank0[d + 1]; g++)
            l->send_rows[d] += l->slot_rows[g];
    }
    rc = l->io.copy(c->slot_pos, l->h_pos, tk_bytes);
    return rc ? rc : l->io.copy(c->perm_slot, l->h_perm, tk_bytes);
}

/* Received rows (source-major: source s, then own slot i) to slot-major (slot i, then
 * source s) or back (to_slots false). */
static int regroup(const struct epl *l, const void *in, void *out, bool to_slots)
{
    const size_t rb = (size_t)l->cfg.hidden * l->ops->elem_bytes;   /* bytes of a row */
    const int ms = l->lay->max_slots;
    size_t src_off = 0;                       /* row where (s, i) starts, source-major */
    int rc = 0;
    for (int s = 0; s < l->ranks; s++) {
        for (int i = 0; i < l->nmine && !rc; i++) {
            size_t slot_off = 0;              /* row where (i, s) starts, slot-major */
            for (int j = 0; j < i; j++)
                slot_off += (size_t)l->grp_rows[j];
            for (int q = 0; q < s; q++)
                slot_off += (size_t)l->cnt_recv[q * ms + i];
            size_t n = (size_t)l->cnt_recv[s * ms + i] * rb;
            if (n && to_slots)
                rc = l->io.copy((char *)out + slot_off * rb, (const char *)in + src_off * rb, n);
            else if (n)
                rc = l->io.copy((char *)out + src_off * rb, (const char *)in + slot_off * rb, n);
            src_off += (size_t)l->cnt_recv[s * ms + i];
        }
    }
    return rc;
}

/* The aux loss over the EP group's batch (moe.h: L_aux = alpha sum_e f_e P_e with f and
 * P over every rank's tokens): the group's counts and sums of s'_t,e = s_t,e / sum_j
 * s_t,j (this rank's in double, MPI_Allreduce'd), the loss from them, and the counts
 * and batch size handed to route_bwd (ctx->aux_counts, aux_tokens). One allreduce of
 * 2E doubles and a T x E copy of the scores per forward. */
static int aux_global(struct epl *l)
{
    const struct moe_cfg *c = &l->cfg;
    const int E = c->experts, T = l->tokens;
    int rc = T ? l->io.copy(l->h_scores, l->ctx->scores, (size_t)T * E * sizeof(float)) : 0;
    if (rc)
        return rc;
    for (int e = 0; e < E; e++) {
        l->aux_sum[e] = l->expert_rows[e];
        l->aux_sum[E + e] = 0.0;
    }
    for (int t = 0; t < T; t++) {
        const float *st = l->h_scores + (size_t)t * E;
        double z = 0.0;
        for (int e = 0; e < E; e++)
            z += st[e];
        for (int e = 0; e < E; e++)
            l->aux_sum[E + e] += st[e] / z;
    }
    if (MPI_Allreduce(MPI_IN_PLACE, l->aux_sum, 2 * E, MPI_DOUBLE, MPI_SUM, l->x.comm) !=
        MPI_SUCCESS)
        return -EIO;
    const double tg = (double)T * l->ranks;
    double sum = 0.0;
    for (int e = 0; e < E; e++) {
        l->aux_h[e] = (int32_t)l->aux_sum[e];
        sum += l->aux_sum[e] * l->aux_sum[E + e];
    }
    l->aux_loss = tg > 0 ? (float)(c->aux_alpha * (double)E / ((double)c->top_k * tg * tg) * sum)
                         : 0.0f;
    rc = l->io.copy(l->aux_dev, l->aux_h, (size_t)E * sizeof(int32_t));
    l->ctx->aux_counts = l->aux_dev;
    l->ctx->aux_tokens = T * l->ranks;
    return rc;
}

/* A timed phase starts: the host clock, and with device timing its start event. */
static double begin(const struct epl *l, struct tmr *t)
{
    if (t && l->io.mark)
        (void)l->io.mark(l->io.mark_arg, 2 * t->n);   /* a failure shows at resolve */
    return tmr_start(t);
}

/* Records phase (pass, step) from t0; with a timer and an asynchronous backend, after
 * waiting for its queued work, or, with device timing, after its end event (the
 * record's times are rewritten from the events later). */
static int stop(const struct epl *l, struct tmr *t, enum tmr_pass p, enum tmr_step s,
                double t0, uint64_t bytes)
{
    int rc = 0;
    if (t && l->io.mark)
        rc = l->io.mark(l->io.mark_arg, 2 * t->n + 1);
    else if (t && l->io.sync)
        rc = l->io.sync();
    tmr_stop(t, p, s, t0, bytes);
    return rc;
}

/* Bytes sent to other ranks by an exchange of rows[d] rows to each rank d. */
static uint64_t remote_bytes(const struct epl *l, const int32_t *rows)
{
    uint64_t b = 0;
    for (int d = 0; d < l->ranks; d++)
        if (d != l->rank)
            b += (uint64_t)rows[d] * (uint64_t)l->cfg.hidden * l->ops->elem_bytes;
    return b;
}

static struct moe_groups groups(const struct epl *l)
{
    struct moe_groups g = { .n = l->nmine, .first = 0, .expert = l->grp_expert,
                            .rows = l->grp_rows };
    return g;
}

int epl_forward(struct epl *l, const void *x, void *out, struct tmr *t)
{
    const struct moe_ops *ops = l->ops;
    const int ms = l->lay->max_slots;
    double t0 = begin(l, t);
    int rc = ops->route(l->ctx, &l->w, x, l->tokens);
    if (!rc && l->force_on)
        rc = frc_apply_copy(l->ctx, l->forced, l->io.copy, &l->fh);
    rc = rc ? rc : assign(l);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_ROUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = ops->permute(l->ctx, x, l->ctx->xp);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_PERMUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    memset(l->cnt_send, 0, (size_t)l->ranks * ms * sizeof(int32_t));
    for (int d = 0; d < l->ranks; d++)
        for (int g = l->lay->rank0[d]; g < l->lay->rank0[d + 1]; g++)
            l->cnt_send[d * ms + (g - l->lay->rank0[d])] = l->slot_rows[g];
    rc = xch_counts(&l->x, l->cnt_send, l->cnt_recv, ms);
    if (!rc && l->cfg.aux_alpha > 0.0f)
        rc = aux_global(l);
    if (rc)
        return rc;
    for (int i = 0; i < l->nmine; i++)
        l->grp_rows[i] = 0;
    int rows = 0;
    for (int s = 0; s < l->ranks; s++) {
        l->recv_rows[s] = 0;
        for (int i = 0; i < l->nmine; i++) {
            l->recv_rows[s] += l->cnt_recv[s * ms + i];
            l->grp_rows[i] += l->cnt_recv[s * ms + i];
        }
        rows += l->recv_rows[s];
    }
    l->peak_rows = rows > l->peak_rows ? rows : l->peak_rows;
    if ((rc = grow_rows(l, rows)))
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_COUNTS, t0, (uint64_t)(l->ranks - 1) * ms * sizeof(int32_t))))
        return rc;

    t0 = begin(l, t);
    rc = l->io.rows(l->io.rows_arg, l->ctx->xp, l->send_rows, l->rx, l->recv_rows);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_DISPATCH, t0, remote_bytes(l, l->send_rows))))
        return rc;

    t0 = begin(l, t);
    struct moe_groups g = groups(l);
    rc = regroup(l, l->rx, l->ex_x, true);
    rc = rc ? rc : ops->experts_fwd(l->ex, &l->w, &g, l->ex_x, l->ex_y);
    rc = rc ? rc : regroup(l, l->ex_y, l->rx, false);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_EXPERTS, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = l->io.rows(l->io.rows_arg, l->rx, l->recv_rows, l->ctx->yp, l->send_rows);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_COMBINE, t0, remote_bytes(l, l->recv_rows))))
        return rc;

    t0 = begin(l, t);
    rc = ops->combine(l->ctx, l->ctx->yp, out);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_UNPERMUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = ops->shared_fwd(l->ctx, &l->w, x, out);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_F, TMR_SHARED, t0, 0)))
        return rc;
    return 0;
}

int epl_backward(struct epl *l, const void *x, const void *dout, void *dx, struct tmr *t)
{
    const struct moe_ops *ops = l->ops;
    double t0 = begin(l, t);
    int rc = ops->combine_bwd(l->ctx, dout, l->ctx->yp, l->ctx->dyp);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_UNPERMUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = l->io.rows(l->io.rows_arg, l->ctx->dyp, l->send_rows, l->rx, l->recv_rows);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_COMBINE, t0, remote_bytes(l, l->send_rows))))
        return rc;

    t0 = begin(l, t);
    struct moe_groups g = groups(l);
    rc = regroup(l, l->rx, l->ex_dy, true);
    rc = rc ? rc : ops->experts_bwd(l->ex, &l->w, &g, l->ex_x, l->ex_dy, l->ex_dx, &l->dw);
    rc = rc ? rc : regroup(l, l->ex_dx, l->rx, false);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_EXPERTS, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = l->io.rows(l->io.rows_arg, l->rx, l->recv_rows, l->ctx->dxp, l->send_rows);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_DISPATCH, t0, remote_bytes(l, l->recv_rows))))
        return rc;

    t0 = begin(l, t);
    rc = ops->permute_bwd(l->ctx, l->ctx->dxp, dx);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_PERMUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = ops->route_bwd(l->ctx, &l->w, x, dx, &l->dw);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_ROUTE, t0, 0)))
        return rc;

    t0 = begin(l, t);
    rc = ops->shared_bwd(l->ctx, &l->w, x, dout, dx, &l->dw);
    if (rc)
        return rc;
    if ((rc = stop(l, t, TMR_B, TMR_SHARED, t0, 0)))
        return rc;
    return 0;
}

int epl_set_bias(struct epl *l, const float *bias)
{
    int rc = 0;
    l->w.bias = NULL;
    if (!bias)
        return 0;
    if (!l->bias)
        rc = l->ops->alloc((void **)&l->bias, (size_t)l->cfg.experts);
    rc = rc ? rc : l->ops->upload(l->bias, bias, (size_t)l->cfg.experts);
    if (!rc)
        l->w.bias = l->bias;
    return rc;
}

int epl_force(struct epl *l, const int32_t *idx)
{
    const size_t n = (size_t)l->tokens * l->cfg.top_k;
    l->force_on = false;
    if (!idx)
        return 0;
    if (!l->forced) {
        if (frc_host_create(&l->fh, l->tokens, l->cfg.top_k, l->cfg.experts))
            return -ENOMEM;
        if (!(l->forced = malloc((n ? n : 1) * sizeof(int32_t))))
            return -ENOMEM;      /* fh is freed with the layer */
    }
    memcpy(l->forced, idx, n * sizeof(int32_t));
    l->force_on = true;
    return 0;
}

const struct moe_weights *epl_weights(const struct epl *l)
{
    return &l->w;
}

struct moe_weights *epl_grads(struct epl *l)
{
    return &l->dw;
}

void epl_zero_grads(struct epl *l)
{
    const struct moe_cfg *c = &l->cfg;
    const size_t h = (size_t)c->hidden, f = (size_t)c->ffn;
    l->ops->upload(l->dw.gate, l->zeros, h * (size_t)c->experts);
    for (int e = 0; e < c->experts; e++) {
        if (!l->dw.w1[e])
            continue;
        l->ops->upload(l->dw.w1[e], l->zeros, h * f);
        l->ops->upload(l->dw.w3[e], l->zeros, h * f);
        l->ops->upload(l->dw.w2[e], l->zeros, h * f);
    }
    for (int s = 0; s < c->shared; s++) {
        l->ops->upload(l->dw.sw1[s], l->zeros, h * f);
        l->ops->upload(l->dw.sw3[s], l->zeros, h * f);
        l->ops->upload(l->dw.sw2[s], l->zeros, h * f);
    }
}

const int32_t *epl_expert_counts(const struct epl *l)
{
    return l->expert_rows;
}

const int32_t *epl_send_rows(const struct epl *l)
{
    return l->send_rows;
}

float epl_aux_loss(const struct epl *l)
{
    return l->aux_loss;
}

struct epl_rows epl_rows(const struct epl *l)
{
    const double elem = (double)l->ops->elem_bytes;
    return (struct epl_rows){ .peak = l->peak_rows, .cap = l->cap_rows,
                              .worst = l->worst_rows,
                              .cap_bytes = (double)l->cap_rows *
                                           (5.0 * l->cfg.hidden + 2.0 * l->cfg.ffn) * elem };
}
