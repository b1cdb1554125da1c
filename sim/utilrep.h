/* utilrep.h: utilization over time of one run, binned (`moesim run --util-csv`), and a
 * training step's sub-ops as a table (`--ops-csv`): the data behind `moesim plot`'s
 * heatmaps and Gantt chart.
 *
 * The run's span [0, T] (T: the step time, or the collectives' times end to end) is cut
 * into `bins` equal bins, bin k = [T k / bins, T (k+1) / bins). Every value is a mean over
 * its bin, so value x bin width integrates, over the bins, to the run's total:
 *   gpu rows (one per GPU and bin):
 *     compute  fraction of the bin its compute stream ran its own kernels; a step only
 *              (step_gpu.compute_s: its lane's compute time less its own wait for
 *              stragglers, which is taken out of the lane's routed-expert and weight-
 *              gradient sub-ops in proportion to their length); 0 in a layer run
 *     comm     fraction of the bin communication ran: a step's all-to-all and DP-reduce
 *              kernels (step_gpu.comm_s); in a layer run, from each collective's start to
 *              the GPU's last byte sent or received (--gpu-csv's finish times)
 *     nvlink   mean utilization of its two NVLink links (egress and ingress), 0..1
 *     nic      the same for its NIC's two links
 *   link rows (one per link and bin):
 *     util     mean utilization, the link's rate / capacity (timeline.h's counters
 *              divided by the capacity), 0..1
 *     GBps     mean rate in GB/s (1e9 bytes), what the counters show
 * A step's collectives are memoised network runs without per-link series; its link
 * rates come from the bytes instead (step.h's step_comm): each all-to-all or DP-reduce
 * sub-op of a lane sends its lane's rows of its collective's matrix, routed on the
 * cluster (topo_route), at a constant rate over the sub-op, so a link's rate
 * integrates to the bytes it carried over the step. The per-link bytes of a (collective,
 * stage, lane) are routed once; memory: links x bins. Pipeline sends are not counted
 * (as in comm). Within 1: a GPU's own links when one EP group per stage (its lane's
 * collectives run one at a time, each link's bytes within the sub-op's time), and a
 * leaf link at least as fast as its NICs together. Not bounded: a GPU's ingress that
 * another EP group's expert DP-reduce ring reaches, or an oversubscribed leaf link,
 * in a bin where the step overlaps two lanes' collectives (timed apart, or by the
 * fabric's shared run, while the bytes are spread evenly over each sub-op).
 * All functions borrow their arguments and return 0, -EIO or -ENOMEM.
 */
#ifndef MOESIM_UTILREP_H
#define MOESIM_UTILREP_H

#include <stdio.h>

#include "report.h"
#include "steprep.h"

#define UTILREP_BINS_DEFAULT 200
#define UTILREP_BINS_MAX 100000

/* Header: kind,id,name,tier,bin,t0_s,t1_s,compute,comm,nvlink,nic,util,GBps, then the
 * identifying columns of csv.h. kind is gpu or link; name "gpu3" or topo_link_name's
 * ("gpu3.nvl_tx", "leaf0.up"); tier nvlink or net on link rows, empty on gpu rows;
 * fields a row does not have are empty. gpu rows first (GPU, then bin), then link rows
 * (link id, then bin). -EINVAL when a phase ran without series (a2a.h). */
int utilrep_layer_csv(FILE *f, const struct report *r, int bins);
/* A step (run with STEP_KEEP_SLICES; -EINVAL without). */
int utilrep_step_csv(FILE *f, const struct steprep *r, int bins);

/* A step's sub-ops that took time, in the order of step_result.slices:
 * lane,stage,ep_group,first_gpu,stream,op,what,mb,piece,layer,t0_s,t1_s then the
 * identifying columns; stream compute, comm or p2p (a communication sub-op that ran on
 * the compute stream, overlap off, says comm), op F, B or W (empty for the DP reduce),
 * what as step_what_name. Needs STEP_KEEP_SLICES (-EINVAL without). */
int utilrep_ops_csv(FILE *f, const struct steprep *r);

#endif
