/* runpt.c: one run of a config, a training step or one layer's traffic (runpt.h). */
#include "runpt.h"
#include "balance.h"
#include "limits.h"
#include "matrix.h"
#include "placement.h"
#include "rtrace.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 4)))
static void say(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
}

/* A failure to build the traffic; out of memory says what the G x G matrices need. */
static void traffic_failed(char *msg, size_t len, const char *what, int e, int gpus)
{
    say(msg, len, "moesim run: %s failed: %s", what, strerror(-e));
    if (e == -ENOMEM)
        say(msg + strlen(msg), len - strlen(msg), " (%d GPUs: each G x G byte matrix needs "
            "%.3g GB)", gpus, limits_matrix_bytes(gpus) / 1e9);
}

/* The MoE layer's routing (layer 0, iteration 0; routing.h) into *r: the trace of
 * routing.trace when the distribution is trace, the placement of [balance]; with the
 * aux-loss-free bias, the last of balance.iterations rounds as `moesim balance` measures
 * it (balance_iterate). 0, 2 (bad input) or 1 (runtime failure), with msg said. */
static int route_layer(const struct config *c, uint64_t seed, struct routing *r, char *msg,
                       size_t len)
{
    struct rtrace tr = { 0 };
    struct placement pl = { 0 };
    struct routing_in in = { .c = c, .seed = seed };
    int g = config_gpus(c), e, rc = 1;
    if (c->routing.distribution == DIST_TRACE) {
        struct rtrace_err err;
        e = rtrace_load(&tr, c->routing.trace, g, c->model.experts, &err);
        if (e == -EINVAL) {
            say(msg, len, "%s: routing.trace: %s", c->routing.trace_src.where, err.msg);
            return 2;
        }
        if (e) {
            say(msg, len, "moesim run: %s", err.msg);
            return 1;
        }
        in.trace = &tr;
    }
    bool placed = false, iterate = balance_run_iterates(c);
    if (iterate)        /* placement and routing of every round: one call */
        e = balance_iterate(r, &in, NULL, NULL, NULL, NULL);
    else
        e = balance_place_for(&in, &pl, &placed);
    if (e == -EINVAL) {     /* a layout the placement's rules refuse: the input's */
        say(msg, len, "moesim run: balance.placement: %s cannot place %d experts (+%d "
            "redundant) on EP groups of %d GPUs", config_place_name(c->balance.placement),
            c->model.experts, c->balance.redundant_experts, c->parallel.ep);
        rc = 2;
        goto out;
    }
    if (e && !iterate) {
        say(msg, len, "moesim run: placement %s: %s", config_place_name(c->balance.placement),
            strerror(-e));
        goto out;
    }
    in.pl = placed ? &pl : NULL;
    if (!e && !iterate)
        e = routing_run(r, &in);
    if (e)
        traffic_failed(msg, len, "routing", e, g);
    rc = e ? 1 : 0;
out:
    placement_free(&pl);
    rtrace_free(&tr);
    return rc;
}

/* The collective(s) of this run: dispatch + combine, or one; a MoE layer's routing stays
 * in r->rt for the report. 0, 2 (bad input) or 1 (runtime failure), with msg said. */
static int build_traffic(struct runpt *r, const struct config *c, uint64_t seed, int *nm,
                         char *msg, size_t len)
{
    int g = config_gpus(c), e;
    if (c->traffic.pattern == PATTERN_ALLTOALL) {
        *nm = 1;
        e = traffic_alltoall(&r->m[0], g, c->traffic.bytes_per_pair);
        if (e)
            traffic_failed(msg, len, "traffic", e, g);
        return e ? 1 : 0;
    }
    if (c->traffic.pattern == PATTERN_MATRIX) {
        struct matrix_err err;
        struct matrix mm;
        *nm = 1;
        e = matrix_load(&mm, c->traffic.matrix, g, &err);
        traffic_from_matrix(&r->m[0], &mm);
        if (e == -EINVAL) {
            say(msg, len, "%s: traffic.matrix: %s", c->traffic.matrix_src.where, err.msg);
            return 2;
        }
        if (e)
            say(msg, len, "moesim run: %s: %s", c->traffic.matrix, strerror(-e));
        return e ? 1 : 0;
    }
    *nm = c->traffic.combine ? 2 : 1;
    if ((e = route_layer(c, seed, &r->rt, msg, len)))
        return e;
    e = traffic_moe(&r->m[0], &r->m[1], &r->rt, c);
    if (e)
        traffic_failed(msg, len, "traffic", e, g);
    return e ? 1 : 0;
}

/* One layer's traffic (or a plain all-to-all, or a matrix) through the network model. */
static int run_layer(struct runpt *r, const struct config *c, const struct runpt_opts *o,
                     char *msg, size_t len)
{
    static const char *const moe[] = { "dispatch", "combine" };
    int nm = 0, rc;
    int e = topo_create(&r->topo, &c->cluster);
    if (e) {
        say(msg, len, "moesim run: topology: %s", strerror(-e));
        return 1;
    }
    if ((rc = build_traffic(r, c, o->seed, &nm, msg, len)))
        return rc;
    double t0 = 0;
    struct limits_tty tty;
    char pre[64];
    limits_tty_init(&tty, "moesim run:");
    struct limits_progress pg = o->tty ? limits_tty_hook(&tty) : (struct limits_progress){ 0 };
    for (int p = 0; p < nm; p++) {
        snprintf(pre, sizeof(pre), "moesim run: %s", c->traffic.pattern == PATTERN_MOE ? moe[p]
                 : config_pattern_name(c->traffic.pattern));
        limits_tty_prefix(&tty, pre);
        e = a2a_run_with(&r->res[p], r->topo, &r->m[p], t0, o->trace, &pg);
        limits_tty_clear(&tty);
        if (e) {
            say(msg, len, "moesim run: simulation failed: %s", strerror(-e));
            return 1;
        }
        t0 += r->res[p].time_s;
    }
    r->rep = (struct report){ .cfg = c, .topo = r->topo, .seed = o->seed, .nphases = nm,
                              .routing = r->rt.pair_tokens ? &r->rt : NULL, .wall_s = -1 };
    for (int p = 0; p < nm; p++) {
        r->rep.phase_name[p] = c->traffic.pattern == PATTERN_MOE
                                   ? moe[p] : config_pattern_name(c->traffic.pattern);
        r->rep.phase[p] = &r->res[p];
    }
    return 0;
}

/* One training step. */
static int run_step(struct runpt *r, const struct config *c, const struct runpt_opts *o,
                    char *msg, size_t len)
{
    struct cfg_err err = { .msg = "" };
    unsigned keep = (o->trace ? STEP_KEEP_SLICES : 0) | (o->routing ? STEP_KEEP_ROUTING : 0);
    struct limits_tty tty;
    limits_tty_init(&tty, "moesim run: step");
    struct limits_progress pg = o->tty ? limits_tty_hook(&tty) : (struct limits_progress){ 0 };
    int e = step_run_with(&r->step, c, o->seed, keep, &err, &pg);
    limits_tty_clear(&tty);
    if (e == -EINVAL && err.msg[0]) {
        say(msg, len, "moesim run: %s", err.msg);
        return 2;
    }
    if (e) {          /* -EINVAL without a message: a check inside the engine, not the input */
        say(msg, len, "moesim run: step simulation failed: %s",
            e == -EINVAL ? "an internal consistency check failed" : strerror(-e));
        return 1;
    }
    r->srep = (struct steprep){ .cfg = c, .seed = o->seed, .res = &r->step, .wall_s = -1 };
    return 0;
}

enum runpt_mode runpt_mode_of(const struct config *c)
{
    return c->schedule.kind != SCHED_NONE ? RUNPT_STEP : RUNPT_LAYER;
}

int runpt_run(struct runpt *r, const struct config *c, const struct runpt_opts *o, char *msg,
              size_t len)
{
    memset(r, 0, sizeof(*r));
    msg[0] = '\0';
    r->mode = runpt_mode_of(c);
    return r->mode == RUNPT_STEP ? run_step(r, c, o, msg, len) : run_layer(r, c, o, msg, len);
}

void runpt_set_wall(struct runpt *r, double wall_s)
{
    r->rep.wall_s = wall_s;
    r->srep.wall_s = wall_s;
}

const void *runpt_ctx(const struct runpt *r)
{
    return r->mode == RUNPT_STEP ? (const void *)&r->srep : (const void *)&r->rep;
}

void runpt_free(struct runpt *r)
{
    if (!r)
        return;
    for (int p = 0; p < 2; p++) {
        a2a_free(&r->res[p]);
        traffic_free(&r->m[p]);
    }
    routing_free(&r->rt);
    topo_free(r->topo);
    step_free(&r->step);
    memset(r, 0, sizeof(*r));
}
