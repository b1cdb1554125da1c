/* a2a.h: one collective (a dispatch, a combine, an all-to-all) through the network.
 *
 * Every nonzero off-diagonal entry of the byte matrix is one flow from src to dst
 * along topo_route(); it starts sharing bandwidth at t0 + the path's latency, as events
 * of the discrete-event core, and the flow-level network times it. The diagonal is local
 * and crosses no link. For a two-level (hierarchical) MoE matrix the entries are legs
 * (traffic.h): the network legs and the relays' NVLink forwards run concurrently, the
 * model of DeepEP's chunked pipeline, and per-GPU counts include what a relay forwards.
 *
 * Exact by default: the rates are re-solved at every completion (net.h). With the
 * topology's flow_quantum q > 0 (cluster.flow_quantum, an approximation for speed), the
 * completions within q x the collective's bandwidth bound (its busiest link's bytes at
 * its capacity) of the first one are taken at their own times at the rates of then, and
 * the rates re-solved once after them (net_advance_window): about 1/q re-solves at most
 * per collective instead of up to one per flow. Error and speed: docs/PERFORMANCE.md.
 */
#ifndef MOESIM_A2A_H
#define MOESIM_A2A_H

#include <stdbool.h>
#include <stdint.h>

#include "net.h"
#include "topo.h"
#include "traffic.h"

struct limits_progress;

struct a2a_flow {
    int src, dst;
    uint64_t bytes;
    double start_s;           /* when data starts to flow (t0 + latency) */
    double end_s;
};

struct a2a_sample {
    double t_s;
    double use_Bps;           /* from t_s until the next sample */
};

struct a2a_series {
    struct a2a_sample *s;
    int n, cap;
};

struct a2a_result {
    int gpus, nlinks, nflows;
    double t0_s;
    double time_s;            /* last flow's end - t0; 0 without flows */
    struct a2a_flow *flows;   /* nflows, in (src, dst) order */
    double *send_finish_s;    /* per GPU: last end of its outgoing flows - t0 (0: none) */
    double *recv_finish_s;    /* per GPU: incoming */
    uint64_t *send_bytes;     /* per GPU, to other GPUs */
    uint64_t *recv_bytes;
    uint64_t local_bytes, remote_bytes;
    uint64_t nvlink_bytes;    /* bytes over NVLink legs (a PXN flow's NVLink leg counts once) */
    uint64_t net_bytes;       /* bytes through NICs into the fabric */
    uint64_t *link_bytes;     /* per link */
    struct a2a_series *series;/* per link utilization over time; NULL unless asked */
    struct net_stats stats;
};

/* Runs m on t from time t0_s. With `series`, records every change of every link's
 * total rate. 0, -EINVAL (matrix size differs from the topology), -ENOMEM. */
int a2a_run(struct a2a_result *r, const struct topo *t, const struct traffic *m,
            double t0_s, bool series);
/* a2a_run telling p (limits.h; borrowed, may be NULL) the flows done, about every 1%. */
int a2a_run_with(struct a2a_result *r, const struct topo *t, const struct traffic *m,
                 double t0_s, bool series, const struct limits_progress *p);
void a2a_free(struct a2a_result *r);   /* zeroed struct is a no-op */

/* max/mean of per-GPU remote bytes sent (recv: received); 1 when all equal, 0 when none. */
double a2a_send_max_over_mean(const struct a2a_result *r);
double a2a_recv_max_over_mean(const struct a2a_result *r);

#endif
