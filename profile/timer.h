/* timer.h: per-phase timing of one rank's MoE layers on a monotonic clock.
 *
 * A phase is a (pass, step) pair: pass F (forward) or B (backward), step one of the
 * layer's stages below. Each timed phase becomes one record: start and duration in
 * seconds of CLOCK_MONOTONIC on this rank (clock.h maps them onto rank 0's clock) and
 * the bytes it sent to other ranks (0 for compute). Records go to a table sized at
 * create; nothing allocates while timing. A NULL timer times nothing, so the same code
 * runs timed and untimed (the instrumentation overhead is the difference).
 * Cost: two clock_gettime calls per phase (~20-50 ns each on Linux's vDSO).
 */
#ifndef MOEPROF_TIMER_H
#define MOEPROF_TIMER_H

#include <stddef.h>
#include <stdint.h>

/* The layer's steps, in forward order. Add a step here and in timer.c's tables. */
enum tmr_step {
    TMR_ROUTE,        /* gate GEMM, scores, top-k, counts; replica choice */
    TMR_PERMUTE,      /* tokens into send order (F); gradients back to tokens (B) */
    TMR_COUNTS,       /* per-slot counts all-to-all (F only) */
    TMR_DISPATCH,     /* token rows to the experts' ranks (B: dx rows back) */
    TMR_EXPERTS,      /* regroup rows by slot, expert FFNs, regroup back */
    TMR_COMBINE,      /* expert outputs back to the tokens' ranks (B: dy to experts) */
    TMR_UNPERMUTE,    /* weighted sum of each token's K outputs (B: its backward) */
    TMR_SHARED,       /* shared experts */
    TMR_NSTEPS
};
enum tmr_pass { TMR_F = 0, TMR_B = 1 };
#define TMR_NPHASES (2 * TMR_NSTEPS)

/* Phase id = pass * TMR_NSTEPS + step. */
static inline int tmr_phase(enum tmr_pass p, enum tmr_step s) { return (int)p * TMR_NSTEPS + (int)s; }

struct tmr_rec {
    int32_t iter, layer, phase, pad;
    double t0_s, dur_s;       /* this rank's monotonic clock */
    uint64_t bytes;           /* sent to other ranks */
};

struct tmr {
    struct tmr_rec *rec;      /* cap, owned */
    size_t n, cap;
    int iter, layer;          /* stamped on the next records */
};

double tmr_now_s(void);       /* CLOCK_MONOTONIC in seconds */

int tmr_create(struct tmr *t, size_t cap);      /* 0, -EINVAL (cap 0), -ENOMEM */
void tmr_free(struct tmr *t);                   /* zeroed *t is a no-op */

/* The start of a phase: now, or 0 with a NULL timer. */
static inline double tmr_start(const struct tmr *t) { return t ? tmr_now_s() : 0.0; }

/* Records phase (pass, step) from t0_s until now; a full table drops the record and
 * returns -ENOSPC; a NULL timer does nothing. */
int tmr_stop(struct tmr *t, enum tmr_pass p, enum tmr_step s, double t0_s, uint64_t bytes);

/* "fwd.route", "bwd.dispatch", ...: the phase column of phases.csv; "?" out of range. */
const char *tmr_phase_name(int phase);
/* moesim's slice name for the step ("gate", "dispatch", "experts", ...: sim/step.c's
 * names where moesim has the step) and whether it runs on the comm stream. */
const char *tmr_step_slice(enum tmr_step s);
int tmr_step_is_comm(enum tmr_step s);

#endif
