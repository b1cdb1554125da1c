/* balrep.h: `moesim balance` output: policies side by side on one workload.
 * Table for people (one column per policy), CSV for machines (one row per policy), and
 * the per-iteration convergence CSV. Borrow everything; 0 or -EIO. */
#ifndef MOESIM_BALREP_H
#define MOESIM_BALREP_H

#include <stdint.h>
#include <stdio.h>

#include "balance.h"
#include "config.h"

struct balrep_col {
    const char *name;                   /* the policy's name */
    const struct config *cfg;           /* its config (base files + its overrides) */
    const struct balance_result *res;
};

struct balrep {
    int n;
    const struct balrep_col *cols;
    uint64_t seed;
    double wall_s;                      /* < 0: not measured, written as 0 */
};

void balrep_table(FILE *f, const struct balrep *r);
/* Header + one row per policy: policy,distribution,scoring,placement,redundant_experts,
 * capacity_factor,bias_gamma,max_nodes,iterations,drop_rate,expert_load_max_over_mean,
 * gpu_load_max_over_mean,node_load_max_over_mean,nodes_per_token,
 * experts_per_node_per_token,nvlink_bytes,net_bytes,dispatch_s,expert_s,combine_s,
 * layer_s,seed,wall_s, then the identifying columns of csv.h (of each policy's config) that
 * are not among these. Numbers as csv.h writes them, here and below. */
int balrep_csv(FILE *f, const struct balrep *r);
/* policy,iteration,expert_load_max_over_mean,gpu_load_max_over_mean,drop_rate */
int balrep_iter_csv(FILE *f, const struct balrep *r);
/* Per-expert load of the last iteration: policy,ep_group,expert,replicas,demand,kept,
 * dropped,drop_rate,load_over_mean (demand / the group's mean demand per expert). */
int balrep_expert_csv(FILE *f, const struct balrep *r);
/* The same loads for every iteration: policy,iteration,ep_group,expert,demand,kept,
 * load_over_mean; the last iteration's rows hold --expert-csv's numbers. */
int balrep_expert_iter_csv(FILE *f, const struct balrep *r);

#endif
