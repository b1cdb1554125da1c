/* stepres.c: a finished step's result (step.h's step_result) from the engine's state:
 * the totals, each GPU's time breakdown, the stages' means, the sub-ops as slices.
 * See stepeng.h.
 */
#include "stepeng.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "fabric.h"
#include "sched.h"

/* Appends the slice of s from t0_s to t1_s (r->slices has room). */
static void put_slice(struct step_result *r, const struct sop *s, double t0_s, double t1_s)
{
    struct step_slice *x = &r->slices[r->nslices++];
    x->t0_s = t0_s;
    x->t1_s = t1_s;
    x->lane = s->lane;
    x->mb = s->mb;
    x->piece = s->piece;
    x->layer = s->layer;
    x->stream = s->queued_comm ? STEP_COMPUTE : s->stream;
    x->what = s->what;
    x->kind = s->kind;
}

/* The step's totals: layout, time, throughput, MFU, drops, the collectives' counts,
 * the longest DP reduce; takes the layers' table and the routing record from e. */
static void fill_totals(struct eng *e, struct step_result *r)
{
    double T = e->end_s;
    r->routing = e->drawn;    /* ownership moves to the result (zeroed when not kept) */
    memset(&e->drawn, 0, sizeof(e->drawn));
    r->gpus = e->gpus;
    r->pp = e->pp;
    r->dp = e->dp;
    r->ep = e->ep;
    r->vpp = e->c->parallel.vpp;
    r->lanes = e->nlanes;
    r->pieces = e->pieces;
    r->microbatches = e->M;
    r->step_s = T;
    r->tokens = (double)e->M * e->T * e->dp;
    r->tokens_per_s = T > 0 ? r->tokens / T : 0;
    r->model_flops = model_flops_per_token(&e->m) * r->tokens;
    r->mfu = T > 0 ? r->model_flops / (T * e->gpus * compute_peak_flops(e->cm)) : 0;
    r->drop_rate = e->demand > 0 ? e->dropped / e->demand : 0;
    r->layer = e->layer;      /* ownership moves to the result */
    r->layers = e->c->model.layers;
    e->layer = NULL;
    r->subops = e->nsops;
    r->events = e->events;
    coll_counts(e->memo, &r->a2a_simulated, &r->a2a_reused);
    if (e->fab) {
        struct fabric_counts k = fabric_get_counts(e->fab);
        r->fabric_shared = k.shared;
        r->fabric_alone = k.alone;
        r->fabric_simulated = k.simulated;
    }
    for (int p = 0; p < e->pieces; p++)
        for (int g = 0; g < e->groups; g++)
            r->dp_reduce_s = fmax(r->dp_reduce_s, e->reduce_s[(size_t)p * e->groups + g]);
}

/* Parameters per GPU of each rank (pp entries): the pieces the rank holds (dualpipe:
 * two model copies), dense and routed experts apart. 0 or -ENOMEM. */
static int rank_params(const struct eng *e, double *dense, double *exp)
{
    bool *held = malloc((size_t)e->pieces * sizeof(bool));
    if (!held)
        return -ENOMEM;
    for (int r0 = 0; r0 < e->pp; r0++) {
        memset(held, 0, (size_t)e->pieces * sizeof(bool));
        for (int k = 0; k < e->s->nops[r0]; k++)
            held[e->s->ops[r0][k].piece] = true;
        for (int p = 0; p < e->pieces; p++)
            if (held[p]) {
                dense[r0] += steptab_dense_params(e, p);
                exp[r0] += steptab_expert_params(e, p);
            }
    }
    free(held);
    return 0;
}

/* Each GPU's breakdown from its lane's accounts (closed at the step's end by the run),
 * less its own straggler wait, and its peak activations and weights. */
static int fill_gpus(const struct eng *e, struct step_result *r)
{
    double *rank_dense = calloc((size_t)e->pp, sizeof(double));
    double *rank_exp = calloc((size_t)e->pp, sizeof(double));
    int rc = rank_dense && rank_exp ? rank_params(e, rank_dense, rank_exp) : -ENOMEM;
    for (int l = 0; !rc && l < e->nlanes; l++) {
        const struct lane *ln = &e->lanes[l];
        for (int j = 0; j < e->ep; j++) {
            int gi = ln->rank * e->dp + ln->group * e->ep + j;
            struct step_gpu *g = &r->gpu[gi];
            g->straggler_s = e->straggler[gi];
            g->compute_s = ln->busy_comp_s - g->straggler_s;
            g->comm_s = ln->busy_comm_s;
            g->exposed_comm_s = ln->exposed_s;
            g->bubble_s = ln->idle_s;
            g->peak_act_bytes = ln->act_peak[j];
            g->param_bytes = (rank_dense[ln->rank] + rank_exp[ln->rank]) * BF16_BYTES;
        }
    }
    free(rank_dense);
    free(rank_exp);
    return rc;
}

/* Means over each stage's GPUs and over all GPUs (maxima for memory). */
static void fill_means(const struct eng *e, struct step_result *r)
{
    double T = e->end_s;
    for (int gi = 0; gi < e->gpus; gi++) {
        const struct step_gpu *g = &r->gpu[gi];
        struct step_stage *st = &r->stage[gi / e->dp];
        st->compute_s += g->compute_s / e->dp;
        st->comm_s += g->comm_s / e->dp;
        st->exposed_comm_s += g->exposed_comm_s / e->dp;
        st->bubble_s += g->bubble_s / e->dp;
        st->peak_act_bytes = fmax(st->peak_act_bytes, g->peak_act_bytes);
        st->param_bytes = fmax(st->param_bytes, g->param_bytes);
        r->compute_s += g->compute_s / e->gpus;
        r->comm_s += g->comm_s / e->gpus;
        r->exposed_comm_s += g->exposed_comm_s / e->gpus;
        r->bubble_s += g->bubble_s / e->gpus;
        r->peak_act_bytes = fmax(r->peak_act_bytes, g->peak_act_bytes);
        r->param_bytes = fmax(r->param_bytes, g->param_bytes);
    }
    for (int k = 0; k < e->pp; k++)
        r->stage[k].bubble_frac = T > 0 ? r->stage[k].bubble_s / T : 0;
    r->bubble_frac = T > 0 ? r->bubble_s / T : 0;
}

/* Every sub-op that took time, then the yielded parts of fillers (fill_w). */
static int fill_slices(const struct eng *e, struct step_result *r)
{
    r->slices = malloc((size_t)(e->nsops + e->nsegs + 1) * sizeof(*r->slices));
    if (!r->slices)
        return -ENOMEM;
    for (int64_t i = 0; i < e->nsops; i++)
        if (e->sops[i].work_s > 0)
            put_slice(r, &e->sops[i], e->sops[i].t0_s, e->sops[i].t1_s);
    for (int64_t i = 0; i < e->nsegs; i++)
        put_slice(r, &e->sops[e->segs[i].id], e->segs[i].t0_s, e->segs[i].t1_s);
    return 0;
}

int stepres_comm_add(struct eng *e, const struct traffic *m, double times, int *slot)
{
    struct step_comm *c = &e->comm;
    if (!e->keep_comm)
        return 0;
    if (m->gpus != e->dp)
        return -EINVAL;
    size_t n2 = (size_t)e->dp * e->dp;
    if (*slot < 0) {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 16;
            double **v = realloc(c->m, (size_t)cap * sizeof(*v));
            if (!v)
                return -ENOMEM;
            c->m = v;
            c->cap = cap;
        }
        if (!(c->m[c->n] = calloc(n2, sizeof(double))))
            return -ENOMEM;
        *slot = c->n++;
    }
    double *x = c->m[*slot];
    for (size_t i = 0; i < n2; i++)
        x[i] += times * (double)m->bytes[i];
    return 0;
}

int stepres_fill(struct eng *e, struct step_result *r, bool keep_slices)
{
    fill_totals(e, r);
    r->comm = e->comm;        /* ownership moves to the result */
    memset(&e->comm, 0, sizeof(e->comm));
    r->gpu = calloc((size_t)e->gpus, sizeof(*r->gpu));
    r->stage = calloc((size_t)e->pp, sizeof(*r->stage));
    if (!r->gpu || !r->stage)
        return -ENOMEM;
    int rc = fill_gpus(e, r);
    if (rc)
        return rc;
    fill_means(e, r);
    return keep_slices ? fill_slices(e, r) : 0;
}
