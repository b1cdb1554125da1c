/* timer.c: phase records on CLOCK_MONOTONIC (see timer.h). */
#include "timer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double tmr_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tmr_create(struct tmr *t, size_t cap)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0)
        return -EINVAL;
    t->rec = calloc(cap, sizeof(*t->rec));
    if (!t->rec)
        return -ENOMEM;
    t->cap = cap;
    return 0;
}

void tmr_free(struct tmr *t)
{
    if (!t)
        return;
    free(t->rec);
    memset(t, 0, sizeof(*t));
}

int tmr_stop(struct tmr *t, enum tmr_pass p, enum tmr_step s, double t0_s, uint64_t bytes)
{
    if (!t)
        return 0;
    double now = tmr_now_s();
    if (t->n == t->cap)
        return -ENOSPC;
    t->rec[t->n++] = (struct tmr_rec){ .iter = t->iter, .layer = t->layer,
                                       .phase = tmr_phase(p, s), .t0_s = t0_s,
                                       .dur_s = now - t0_s, .bytes = bytes };
    return 0;
}

/* In enum tmr_step order. */
static const char *const slice_names[TMR_NSTEPS] = {
    "gate", "permute", "counts", "dispatch", "experts", "combine", "unpermute", "shared",
};
static const char *const phase_names[TMR_NPHASES] = {
    "fwd.route", "fwd.permute", "fwd.counts", "fwd.dispatch", "fwd.experts", "fwd.combine",
    "fwd.unpermute", "fwd.shared",
    "bwd.route", "bwd.permute", "bwd.counts", "bwd.dispatch", "bwd.experts", "bwd.combine",
    "bwd.unpermute", "bwd.shared",
};

const char *tmr_phase_name(int phase)
{
    return phase >= 0 && phase < TMR_NPHASES ? phase_names[phase] : "?";
}

const char *tmr_step_slice(enum tmr_step s)
{
    return (unsigned)s < TMR_NSTEPS ? slice_names[s] : "?";
}

int tmr_step_is_comm(enum tmr_step s)
{
    return s == TMR_COUNTS || s == TMR_DISPATCH || s == TMR_COMBINE;
}
