/* step.c: the execution engine of a training step; see step.h.
 *
 * One call: the engine set up from the config, the tables (steptab.c) and the graph
 * (stepgraph.c) built, the run, the result filled (stepres.c). The run is a discrete-event
 * loop (des.h) that starts a queue's head when its stream is free and its dependencies
 * are done. Cost: O(sub-ops + dependencies) events, each O(log pending).
 */
#include "step.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "compute.h"
#include "des.h"
#include "fabric.h"
#include "limits.h"
#include "model.h"
#include "rtrace.h"
#include "sched.h"
#include "serve.h"
#include "stepeng.h"
#include "topo.h"

/* ---- the run ---- */

/* The fabric collective a communication sub-op travels. stepgraph.c's emit_forward and
 * emit_backward time F's dispatch by disp_s and its combine by comb_s, B's combine
 * gradient (STEP_COMBINE) by bdisp_s and its dispatch gradient by bcomb_s. */
static int sop_coll(const struct eng *e, const struct sop *s)
{
    if (s->what == STEP_DP_REDUCE)
        return e->reduce_fab[s->piece];
    if (s->what == STEP_ATTN_GATHER || s->what == STEP_ATTN_SCATTER)
        return e->sp_fab;
    const int *f = e->moe[s->layer].fab;
    if (s->kind == SCHED_F)
        return f[s->what == STEP_DISPATCH ? 0 : 1];
    return f[s->what == STEP_COMBINE ? 2 : 3];
}

static bool comm_busy(const struct eng *e, const struct lane *ln)
{
    return ln->comm_run >= 0 || (ln->comp_run >= 0 && e->sops[ln->comp_run].queued_comm);
}

static bool comp_busy(const struct eng *e, const struct lane *ln)
{
    return ln->comp_run >= 0 && !e->sops[ln->comp_run].queued_comm;
}

/* Time since the lane's last change goes to one account. */
static void account(struct eng *e, struct lane *ln, double now)
{
    double dt = now - ln->last_s;
    bool cp = comp_busy(e, ln), cm = comm_busy(e, ln);
    if (cp)
        ln->busy_comp_s += dt;
    if (cm)
        ln->busy_comm_s += dt;
    if (cm && !cp)
        ln->exposed_s += dt;
    if (!cm && !cp)
        ln->idle_s += dt;
    ln->last_s = now;
}

static void on_done(struct des *d, void *arg);

static void schedule_end(struct eng *e, int id, double t_s, uint64_t *ev)
{
    int rc = des_at(e->des, t_s, on_done, &e->sops[id], ev);
    if (rc && !e->rc)
        e->rc = rc;
}

static void set_comp_rate(struct eng *e, struct lane *ln, double rate)
{
    if (ln->comp_run < 0 || ln->comp_rate == rate)
        return;
    double now = des_now(e->des);
    ln->comp_left_s = fmax(0.0, ln->comp_left_s - (now - ln->comp_since_s) * ln->comp_rate);
    ln->comp_since_s = now;
    ln->comp_rate = rate;
    des_cancel(e->des, ln->comp_ev);
    schedule_end(e, ln->comp_run, now + ln->comp_left_s / rate, &ln->comp_ev);
}

static void act_change(struct eng *e, struct lane *ln, const struct sop *s, int sign)
{
    const double *b = &e->act_bytes[((size_t)s->piece * e->groups + ln->group) * e->ep];
    for (int j = 0; j < e->ep; j++) {
        ln->act_cur[j] += sign * b[j];
        ln->act_peak[j] = fmax(ln->act_peak[j], ln->act_cur[j]);
    }
}

/* fill_w (zb1p): the weight-gradient chunk a lane may run while the head of its compute
 * queue waits and its communication stream runs, rather than leave the compute idle
 * under the all-to-all: the first chunk of the queue's W's not started, if its inputs
 * are done; -1 otherwise. Taking them in order keeps the started ones a prefix of the
 * queue's W's, so a W's last chunk still ends after every earlier one. */
static int next_filler(struct eng *e, struct lane *ln)
{
    while (ln->wh < ln->wq.n && !isnan(e->sops[ln->wq.v[ln->wh]].t0_s))
        ln->wh++;
    if (ln->wh < ln->wq.n && e->sops[ln->wq.v[ln->wh]].nwait == 0)
        return ln->wq.v[ln->wh];
    return -1;
}

/* A filler yields the compute stream to the queue's head, which is ready: the part of
 * its work done is logged for the trace and the rest waits as a chunk not started.
 * False (it keeps running) when it is about to end anyway or the log cannot grow. */
static bool yield_filler(struct eng *e, struct lane *ln, double now)
{
    int id = ln->comp_run;
    struct sop *s = &e->sops[id];
    double left = ln->comp_left_s - (now - ln->comp_since_s) * ln->comp_rate;
    if (left <= 1e-9 * s->work_s)
        return false;
    if (now > s->t0_s && e->nsegs == e->capsegs) {
        int64_t cap = e->capsegs ? 2 * e->capsegs : 64;
        struct seg *v = realloc(e->segs, (size_t)cap * sizeof(*v));
        if (!v) {
            e->rc = -ENOMEM;
            return false;
        }
        e->segs = v;
        e->capsegs = cap;
    }
    if (now > s->t0_s)                 /* it started at this instant: nothing to log */
        e->segs[e->nsegs++] = (struct seg){ id, s->t0_s, now };
    account(e, ln, now);
    des_cancel(e->des, ln->comp_ev);
    ln->comp_run = -1;
    s->work_s = left;
    s->t0_s = NAN;
    s->filling = 0;
    return true;
}

/* The compute sub-op to start now, -1 for none: the queue's head when its inputs are
 * done (a running filler yields to it), else, while the communication stream runs and
 * the compute stream is free, a filler (*fill set). */
static int next_compute(struct eng *e, struct lane *ln, double now, bool *fill)
{
    if (ln->comp_run >= 0 && !e->sops[ln->comp_run].filling)
        return -1;
    /* Past what started early as a filler: done, or running and from here on in its own
     * place (it no longer yields). */
    while (ln->ch < ln->cq.n && !isnan(e->sops[ln->cq.v[ln->ch]].t0_s))
        e->sops[ln->cq.v[ln->ch++]].filling = 0;
    bool ready = ln->ch < ln->cq.n && e->sops[ln->cq.v[ln->ch]].nwait == 0;
    if (ln->comp_run >= 0 &&
        (!e->sops[ln->comp_run].filling || !ready || !yield_filler(e, ln, now)))
        return -1;
    if (ready)
        return ln->cq.v[ln->ch++];
    *fill = true;
    return ln->comm_run >= 0 ? next_filler(e, ln) : -1;
}

/* The end of communication sub-op id, starting now, where there is a fabric: the fabric
 * schedules it (after work_s where its collective crosses no coupling link). False
 * without a fabric: the caller schedules it. */
static bool fabric_end(struct eng *e, int id)
{
    if (!e->fab)
        return false;
    struct sop *s = &e->sops[id];
    const struct lane *ln = &e->lanes[s->lane];
    int rc = fabric_start(e->fab, e->des, sop_coll(e, s), ln->rank, ln->group, s->work_s,
                          on_done, s);
    if (rc && !e->rc)
        e->rc = rc;
    return true;
}

static void try_start(struct eng *e, struct lane *ln)
{
    double now = des_now(e->des);
    if (ln->comm_run < 0 && ln->mh < ln->mq.n && e->sops[ln->mq.v[ln->mh]].nwait == 0) {
        int id = ln->mq.v[ln->mh++];
        account(e, ln, now);
        ln->comm_run = id;
        e->sops[id].t0_s = now;
        if (!fabric_end(e, id))
            schedule_end(e, id, now + e->sops[id].work_s, NULL);
        set_comp_rate(e, ln, e->share);
    }
    bool fill = false;
    int id = next_compute(e, ln, now, &fill);
    if (id >= 0) {
        struct sop *s = &e->sops[id];
        s->filling = fill;
        account(e, ln, now);
        ln->comp_run = id;
        s->t0_s = now;
        if (s->act == ACT_ADD)
            act_change(e, ln, s, +1);
        ln->comp_left_s = s->work_s;
        ln->comp_since_s = now;
        ln->comp_rate = ln->comm_run >= 0 && !s->queued_comm ? e->share : 1.0;
        if (s->queued_comm && fabric_end(e, id))
            ln->comp_ev = 0;
        else
            schedule_end(e, id, now + s->work_s / ln->comp_rate, &ln->comp_ev);
    }
}

static void start_p2p(struct eng *e, int id)
{
    double now = des_now(e->des);
    e->sops[id].t0_s = now;
    schedule_end(e, id, now + e->sops[id].work_s, NULL);
}

static void on_done(struct des *d, void *arg)
{
    struct sop *s = arg;
    struct eng *e = s->eng;
    double now = des_now(d);
    struct lane *ln = &e->lanes[s->lane];
    int id = (int)(s - e->sops);
    e->events++;
    if (e->prog && e->events % e->every == 0)
        limits_tick(e->prog, 0.9 + 0.1 * (double)e->events / e->nsops, "event", e->events,
                    e->nsops);
    s->t1_s = now;
    if (s->stream != STEP_P2P) {
        account(e, ln, now);
        if (ln->comp_run == id) {
            ln->comp_run = -1;
        } else {
            ln->comm_run = -1;
            set_comp_rate(e, ln, 1.0);
        }
        if (s->act == ACT_SUB)
            act_change(e, ln, s, -1);
    }
    for (int i = 0; i < s->nsucc; i++) {
        int t = e->succ[s->succ0 + i];
        if (--e->sops[t].nwait)
            continue;
        if (e->sops[t].stream == STEP_P2P)
            start_p2p(e, t);
        else
            try_start(e, &e->lanes[e->sops[t].lane]);
    }
    if (s->stream != STEP_P2P)
        try_start(e, ln);
    if (e->rc)
        des_stop(d);
}

static int run_events(struct eng *e)
{
    int rc = des_create(&e->des);
    if (rc)
        return rc;
    e->every = e->nsops / 100 > 1 ? e->nsops / 100 : 1;
    for (int64_t i = 0; i < e->nsops; i++)
        if (e->sops[i].nwait == 0 && e->sops[i].stream == STEP_P2P)
            start_p2p(e, (int)i);
    for (int l = 0; l < e->nlanes; l++)
        try_start(e, &e->lanes[l]);
    if (e->rc)
        return e->rc;
    int64_t n = des_run(e->des, INFINITY);
    if (n < 0)
        return (int)n;
    if (!e->rc && e->fab)
        e->rc = fabric_error(e->fab);
    if (e->rc)
        return e->rc;
    for (int64_t i = 0; i < e->nsops; i++)
        if (isnan(e->sops[i].t1_s))
            return -EDEADLK;   /* a schedule order the streams cannot run */
    /* The step ends with its last sub-op; every lane's accounts run to there. */
    e->end_s = 0;
    for (int64_t i = 0; i < e->nsops; i++)
        e->end_s = fmax(e->end_s, e->sops[i].t1_s);
    for (int l = 0; l < e->nlanes; l++)
        account(e, &e->lanes[l], e->end_s);
    return 0;
}

/* ---- the engine: set up, freed ---- */

static void moe_tab_free(struct moe_tab *t)
{
    free(t->f_s);
    free(t->b_s);
    free(t->w_s);
    free(t->pairs);
    free(t->disp_s);
}

static void eng_free(struct eng *e)
{
    if (e->moe)
        for (int l = 0; l < e->c->model.layers; l++)
            moe_tab_free(&e->moe[l]);
    free(e->moe);
    if (e->lanes)
        for (int l = 0; l < e->nlanes; l++) {
            free(e->lanes[l].cq.v);
            free(e->lanes[l].mq.v);
            free(e->lanes[l].wq.v);
            free(e->lanes[l].act_cur);
            free(e->lanes[l].act_peak);
        }
    free(e->lanes);
    free(e->layer);
    free(e->piece_lo);
    free(e->piece_hi);
    free(e->send_s);
    free(e->act_bytes);
    free(e->reduce_s);
    free(e->sp_s);
    free(e->straggler);
    free(e->sops);
    free(e->from.v);
    free(e->to.v);
    free(e->succ);
    free(e->entry);
    free(e->exitp);
    free(e->lastc);
    free(e->pair_f.v);
    free(e->pair_b.v);
    free(e->segs);
    fabric_free(e->fab);      /* before the queue its events are on */
    free(e->reduce_fab);
    des_free(e->des);
    coll_memo_free(e->memo);
    if (e->have_trace)
        rtrace_free(&e->trace);
    rtrace_free(&e->drawn);
    step_comm_free(&e->comm);
    topo_free(e->stage_topo);
    topo_free(e->full_topo);
    compute_free(e->cm);
    sched_free((struct sched *)e->s);
}

/* One lane per (rank, EP group), rank-major, both streams idle; the GPUs' straggler
 * accounts. */
static int lanes_alloc(struct eng *e)
{
    e->nlanes = e->pp * e->groups;
    e->lanes = calloc((size_t)e->nlanes, sizeof(*e->lanes));
    e->straggler = calloc((size_t)e->gpus, sizeof(double));
    if (!e->lanes || !e->straggler)
        return -ENOMEM;
    for (int l = 0; l < e->nlanes; l++) {
        struct lane *ln = &e->lanes[l];
        ln->rank = l / e->groups;
        ln->group = l % e->groups;
        ln->comp_run = ln->comm_run = -1;
        ln->act_cur = calloc((size_t)e->ep, sizeof(double));
        ln->act_peak = calloc((size_t)e->ep, sizeof(double));
        if (!ln->act_cur || !ln->act_peak)
            return -ENOMEM;
    }
    return 0;
}

static int eng_setup(struct eng *e, const struct config *c, struct cfg_err *err)
{
    const char *why;
    e->c = c;
    e->pp = c->parallel.pp;
    e->dp = c->parallel.dp;
    e->ep = c->parallel.ep;
    e->gpus = e->pp * e->dp;
    e->groups = e->dp / e->ep;
    e->serve = config_serving(c);
    /* An inference step is the forward of its micro-batches through one stage: the F ops
     * of a one-stage GPipe (stepgraph.c lays out no other); two run as one overlapped
     * pair, the way a training schedule's F&B pairs do (serve.h). */
    enum sched_kind kind = e->serve ? SCHED_GPIPE : c->schedule.kind;
    e->M = e->serve ? c->serve.microbatches : c->schedule.microbatches;
    e->T = (double)(e->serve ? serve_microbatch_tokens(c) : c->schedule.micro_batch_tokens);
    e->overlap = c->schedule.overlap;
    e->serve_pair = e->serve && e->M == 2 && e->overlap;
    e->lead = e->serve_pair && c->schedule.kind == SCHED_DECODE ? 2 : 0;
    e->fill_w = c->schedule.kind == SCHED_ZB1P;
    if (c->schedule.kind == SCHED_NONE) {
        snprintf(err->msg, sizeof(err->msg), "schedule.kind: none: no training step to run");
        return -EINVAL;
    }
    if (e->serve && e->pp != 1) {
        snprintf(err->msg, sizeof(err->msg), "parallel.pp: %d: an inference step runs on one "
                 "stage (pp = 1)", e->pp);
        return -EINVAL;
    }
    why = sched_check(kind, e->pp, e->M, c->parallel.vpp);
    if (why) {
        snprintf(err->msg, sizeof(err->msg), "schedule.kind: %s", why);
        return -EINVAL;
    }
    int rc = model_init(&e->m, c);
    if (rc) {
        snprintf(err->msg, sizeof(err->msg), "model: these [model] values cannot describe a "
                 "training step (dense layers need ffn_hidden, MoE layers expert_ffn_hidden; "
                 "hidden, layers, seq_len, vocab, heads and the attention sizes >= 1)");
        return rc;
    }
    if ((rc = compute_create(&e->cm, c, err)))
        return rc;
    /* The low-latency all-to-all takes no SMs (DeepEP: its sends are posted by the NIC). */
    e->share = e->overlap && !config_low_latency(c) ? compute_share(e->cm) : 1.0;
    struct sched *s;
    if ((rc = sched_create(&s, kind, e->pp, e->M, c->parallel.vpp)))
        return rc;
    e->s = s;
    e->pieces = s->pieces;
    if (c->model.layers < e->pieces) {
        snprintf(err->msg, sizeof(err->msg), "model.layers: %d layers cannot fill %d pipeline "
                 "pieces", c->model.layers, e->pieces);
        return -EINVAL;
    }
    if ((rc = coll_memo_create(&e->memo)))
        return rc;
    return lanes_alloc(e);
}

/* ---- the API ---- */

int step_run(struct step_result *r, const struct config *c, uint64_t seed, unsigned keep,
             struct cfg_err *err)
{
    return step_run_with(r, c, seed, keep, err, NULL);
}

int step_run_with(struct step_result *r, const struct config *c, uint64_t seed,
                  unsigned keep, struct cfg_err *err, const struct limits_progress *p)
{
    struct eng e;
    bool keep_slices = keep & STEP_KEEP_SLICES;
    memset(r, 0, sizeof(*r));
    memset(&e, 0, sizeof(e));
    e.prog = p && p->fn ? p : NULL;
    e.keep_comm = keep_slices;
    int rc = eng_setup(&e, c, err);
    if (!rc && (keep & STEP_KEEP_ROUTING))
        rc = steptab_keep_routing(&e, err);
    if (!rc)
        rc = steptab_build(&e, seed, err);
    if (!rc)
        rc = steptab_sends(&e);
    if (!rc)
        rc = stepgraph_build(&e);
    if (!rc)
        rc = run_events(&e);
    if (!rc)
        rc = stepres_fill(&e, r, keep_slices);
    eng_free(&e);
    if (rc) {
        step_free(r);
        if (rc == -EDEADLK)
            snprintf(err->msg, sizeof(err->msg), "schedule.kind: the %s order deadlocks on "
                     "in-order streams", config_sched_name(c->schedule.kind));
        if (rc == -EDEADLK)
            rc = -EINVAL;
    }
    return rc;
}

void step_free(struct step_result *r)
{
    rtrace_free(&r->routing);
    free(r->layer);
    free(r->gpu);
    free(r->stage);
    free(r->slices);
    step_comm_free(&r->comm);
    memset(r, 0, sizeof(*r));
}

void step_comm_free(struct step_comm *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->m[i]);
    free(c->m);
    free(c->a2a);
    free(c->reduce);
    memset(c, 0, sizeof(*c));
}

const char *step_what_name(enum step_what w)
{
    /* In enum step_what order. */
    static const char *const names[STEP_NWHAT] = {
        "embed", "attn", "ffn", "gate", "shared", "experts", "experts_w",
        "head", "dispatch", "combine", "wgrad", "send", "dp_reduce",
        "attn_gather", "attn_scatter",
    };
    return (unsigned)w < STEP_NWHAT ? names[w] : "?";
}
