/* exprep.h: per-expert load of every MoE layer of a run (`moesim run --expert-csv`), the
 * data of `moesim plot`'s expert-load heatmap.
 *
 * One row per MoE layer and expert: layer,moe_layer,expert,demand,share,load_over_mean,
 * then the identifying columns of csv.h. demand: token-expert assignments routed to the
 * expert (before capacity drops), over the GPUs the routing covers (a layer run: all of
 * them; a step: one stage's, as every stage holding a layer routes it alike; step.h);
 * share: demand / the layer's total; load_over_mean: demand / the layer's mean demand
 * per expert, as `moesim balance --expert-csv` (1 is even). layer is the model layer
 * (0 in a layer run), moe_layer its index among the MoE layers (rtrace.h).
 * Borrows everything; 0, -EIO, or -EINVAL when the run kept no routing (a plain
 * all-to-all, a matrix; a step run without STEP_KEEP_ROUTING).
 */
#ifndef MOESIM_EXPREP_H
#define MOESIM_EXPREP_H

#include <stdio.h>

#include "report.h"
#include "steprep.h"

int exprep_layer_csv(FILE *f, const struct report *r);
int exprep_step_csv(FILE *f, const struct steprep *r);

#endif
