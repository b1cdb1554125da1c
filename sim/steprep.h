/* steprep.h: what a training-step run prints for people and writes for machines (an
 * inference step's summary, CSV and per-GPU CSV: serverep.h, which these call).
 * Units as in the files people read: seconds, GiB (2^30 bytes), fractions 0..1 in the
 * CSV and percent in the summary. All functions borrow r and return 0 or -EIO (-ENOMEM
 * for the trace). */
#ifndef MOESIM_STEPREP_H
#define MOESIM_STEPREP_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "step.h"

struct steprep {
    const struct config *cfg;
    uint64_t seed;
    const struct step_result *res;
    double wall_s;            /* < 0: not measured, written as 0 */
    int util_bins;            /* utilrep.h's bins; 0: its default */
};

void steprep_summary(FILE *f, const struct steprep *r);
/* Header + one row: schedule,pp,dp,ep,vpp,microbatches,micro_batch_tokens,gpus,seed,
 * step_s,bubble_frac,mfu,exposed_comm_s,compute_s,comm_s,peak_activation_GiB,param_GiB,
 * tokens_per_s,straggler_s,dp_reduce_s,overlap,drop_rate,wall_s (per-GPU figures are means over
 * GPUs; memory is the largest GPU's). Every CSV here writes numbers as csv.h says and
 * ends each row with the identifying columns of csv.h that it does not hold. */
int steprep_csv(FILE *f, const struct steprep *r);
void steprep_csv_header(FILE *f);      /* steprep_csv's header line alone */
/* One row per GPU: gpu,stage,ep_group,compute_s,straggler_s,comm_s,exposed_comm_s,
 * bubble_s,peak_activation_GiB,param_GiB. */
int steprep_gpu_csv(FILE *f, const struct steprep *r);
/* One row per model layer: layer,moe,drop_rate,expert_load_max_over_mean,
 * gpu_load_max_over_mean,dispatch_s,combine_s,experts_fwd_s (one micro-batch; dense
 * layers have moe 0 and zeros). */
int steprep_layer_csv(FILE *f, const struct steprep *r);
/* The routing drawn, as a routing trace (traces/FORMAT.md; step.h's step_result.routing):
 * one layer per MoE layer, one iteration, the GPUs of one stage. Needs the step run with
 * STEP_KEEP_ROUTING (-EINVAL without). */
int steprep_routing_trace(FILE *f, const struct steprep *r);
/* Chrome trace: one process per lane ("stage r, EP group g"), threads compute, comm and
 * p2p; one slice per sub-op named "<F|B|W> <what>" with args mb, piece, layer. Needs the
 * step run with keep_slices. */
int steprep_trace(FILE *f, const struct steprep *r);

#endif
