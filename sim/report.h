/* report.h: what a run prints for people (summary) and writes for machines (CSV).
 * Bandwidths in GB/s with GB = 1e9 bytes, as nccl-tests:
 *   size  = mean bytes per GPU, its local share included
 *   algbw = size / time
 *   busbw = mean bytes per GPU sent to other GPUs / time; for a uniform all-to-all of n
 *           GPUs this is algbw * (n-1)/n, nccl-tests' alltoall bus bandwidth
 *   nvl_GBps, net_GBps = bytes over NVLink legs, through NICs, per GPU / time
 * A MoE layer adds its routing's load-balance metrics (routing.h): drop_rate,
 * expert_load_max_over_mean, gpu_load_max_over_mean, node_load_max_over_mean,
 * nodes_per_token, experts_per_node_per_token; empty in the CSV for other patterns (and
 * the token metrics of a replayed trace). CSV fields as csv.h says, identifying columns
 * of the run at the end of every row. */
#ifndef MOESIM_REPORT_H
#define MOESIM_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "a2a.h"
#include "config.h"
#include "routing.h"
#include "topo.h"

#define REPORT_MAX_PHASES 2

struct report {
    const struct config *cfg;                    /* borrowed, like everything here */
    const struct topo *topo;
    uint64_t seed;
    int nphases;                                 /* 2: dispatch, combine; 1: alltoall, matrix */
    const char *phase_name[REPORT_MAX_PHASES];
    const struct a2a_result *phase[REPORT_MAX_PHASES];
    const struct routing *routing;               /* the MoE layer's; NULL for other patterns */
    double wall_s;                               /* < 0: not measured, written as 0 */
    int util_bins;                               /* utilrep.h's bins; 0: its default */
};

struct report_bw {
    double size_B, algbw_GBps, busbw_GBps, nvl_GBps, net_GBps;
};

struct report_bw report_bandwidth(const struct a2a_result *a);
/* "NVLink 450 GB/s x 0.836 = 376.2 GB/s, NIC 50 GB/s x 0.98 = 49 GB/s": per tier, the
 * line rate, its efficiency and the achieved rate the links are built with (topo.h);
 * per GPU, per direction. No newline. */
void report_link_rates(FILE *f, const struct cfg_cluster *k);
/* With balance.bias_gamma > 0, one line after `lead`: how the run applied the
 * aux-loss-free bias (balance.h); nothing without it. */
void report_bias_line(FILE *f, const struct config *c, const char *lead);
void report_summary(FILE *f, const struct report *r);
int report_csv(FILE *f, const struct report *r);      /* header + one row; 0 or -EIO */
void report_csv_header(FILE *f);                      /* report_csv's header line alone */
int report_gpu_csv(FILE *f, const struct report *r);  /* one row per GPU; 0 or -EIO */
/* One row per phase and link that carried bytes: capacity, bytes, busy time
 * (bytes / capacity) and utilization (busy time / phase time). 0 or -EIO. */
int report_link_csv(FILE *f, const struct report *r);
/* The MoE layer's routing as a routing trace (traces/FORMAT.md): layer 0, iteration 0,
 * every GPU's demand per expert before capacity drops. 0, -EIO, or -EINVAL when the run
 * has no routing (a plain all-to-all, a traffic matrix). */
int report_routing_trace(FILE *f, const struct report *r);

#endif
