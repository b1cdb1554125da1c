/* runpt.h: one run of a loaded config, as `moesim run` does it and each point of
 * `moesim sweep`: a training step when schedule.kind is set (step.h), else one MoE
 * layer's dispatch and combine (or a plain all-to-all, or a traffic matrix) through the
 * network model (a2a.h). The result stays in the struct for the writers of report.h
 * (struct report) and steprep.h (struct steprep), reached through runpt_ctx.
 *
 *     struct runpt r;
 *     char msg[RUNPT_MSG_MAX];
 *     int rc = runpt_run(&r, &cfg, &opts, msg, sizeof(msg));  // 0, 1 or 2
 *     if (!rc) { runpt_set_wall(&r, t); steprep_csv(f, runpt_ctx(&r)); }
 *     runpt_free(&r);                                          // in every case
 */
#ifndef MOESIM_RUNPT_H
#define MOESIM_RUNPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "a2a.h"
#include "report.h"
#include "routing.h"
#include "step.h"
#include "steprep.h"
#include "topo.h"
#include "traffic.h"

#define RUNPT_MSG_MAX 1536

enum runpt_mode { RUNPT_LAYER, RUNPT_STEP };

struct runpt_opts {
    uint64_t seed;
    bool trace;               /* record what a Chrome trace needs (timeline, step slices) */
    bool routing;             /* a step keeps its routing, for a routing trace */
    bool tty;                 /* a progress line on standard error when it is a terminal */
};

struct runpt {
    enum runpt_mode mode;
    struct report rep;        /* RUNPT_LAYER: borrows the fields below and the config */
    struct steprep srep;      /* RUNPT_STEP */
    /* owned */
    struct topo *topo;
    struct traffic m[2];
    struct a2a_result res[2];
    struct routing rt;
    struct step_result step;
};

/* The mode c runs in. */
enum runpt_mode runpt_mode_of(const struct config *c);

/* Runs c (borrowed; it must outlive r) into *r. 0; 2 bad input (what the input asks that
 * the run refuses: a routing trace or matrix file, a placement); 1 runtime failure. On 1
 * and 2, msg[len] holds the line moesim run prints ("moesim run: ..." or "file:line:
 * key: ..."). runpt_free is due in every case. wall_s starts at -1 (not measured). */
int runpt_run(struct runpt *r, const struct config *c, const struct runpt_opts *o, char *msg,
              size_t len);
void runpt_set_wall(struct runpt *r, double wall_s);   /* < 0: not measured */
/* &r->rep or &r->srep, as the writers of r->mode take it. */
const void *runpt_ctx(const struct runpt *r);
void runpt_free(struct runpt *r);                      /* zeroed or run; NULL is a no-op */

#endif
