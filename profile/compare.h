/* compare.h: `moeprof run --compare`: moesim's prediction of each layer just measured,
 * phase by phase, from the same config, calibration, placement and routing.
 *
 * The prediction is moesim's one-layer run (sim/runpt.h) on a config made of the run's
 * CONFIG files, then the --calibration files, then its --set options, then these, which
 * make moesim's layer the one the ranks ran: cluster.nodes and gpus_per_node = the
 * nodes and ranks per node mpirun started (GPU g = world rank g), parallel.pp = 1,
 * routing.distribution = trace on the run's own routing trace (written to a temporary
 * file beside DIR/compare-routing.trace, removed after), routing.dedup = false and
 * balance.capacity_factor = 0 (moeprof sends one row per (token, expert), drops none),
 * traffic.pattern = moe with its combine, schedule.kind = none, and the four
 * all-to-all dtypes of the backend's element (fp32 for cpu, bf16 for cuda).
 *
 * Phases (measured -> moesim):
 *   fwd.dispatch  -> the dispatch all-to-all: GPU g's time is the later of its last
 *                    send's and its last receive's end (a2a.h), as MPI_Alltoallv
 *                    returns when both are done
 *   fwd.combine   -> the combine all-to-all, the same way
 *   bwd.combine   -> (dy rows to the experts: the dispatch's way) the dispatch's
 *                    matrix at combine_grad_dtype = the same dtype: its time
 *   bwd.dispatch  -> (dx rows back: the combine's way) the combine's time
 *   fwd.experts   -> the routed experts of GPU g (sim/compute.h, compute_routed_experts):
 *                    f_s, from [calibration] expert_table where given
 *   bwd.experts   -> b_s + w_s of the same
 *   route, permute, counts, unpermute, shared (fwd and bwd): measured only.
 * fwd.modelled / bwd.modelled: per rank and iteration, the sum of the three modelled
 * phases of the pass, against the sum of their predictions.
 *
 * Ranks depend on each other: moesim's layer has every GPU start together, but an
 * all-to-all completes on no rank before its last peer arrives. So each pass is a
 * timeline per rank: the all-to-all before the experts (fwd.dispatch, bwd.combine) from
 * 0, all ranks together (route and permute, which would make them arrive apart, are
 * measured only), then the rank's experts (from its own token count), then the
 * all-to-all after them (fwd.combine, bwd.dispatch), predicted as a wait, (the latest
 * end of the experts over the ranks of its EP group, world ranks k / ep) - (its own),
 * plus its transfer. That wait sits beside the measured one (wait_pred_s), the
 * predicted pass of a rank ends at its timeline's end, and a sum row's slowest rank
 * (measured) is compared with the slowest predicted rank's sum, as the layer takes as
 * long as its slowest rank.
 *
 * Layers: each layer l of the run is predicted on its own recorded routing (moesim's
 * one-layer run replays a trace holding layer l alone) and compared with layer l's
 * records; with several layers, a last group of rows compares their sum: per rank and
 * iteration, a phase's durations over the layers added, against the predictions added.
 * Measured: the records of layer l in the iterations whose routing of layer l (every
 * rank's per-expert counts) equals its iteration 0's, the one moesim replays (for the
 * sum: the iterations where that holds for every layer); a phase's duration includes its
 * wait for the slowest peer (records.h). Each rank's measured value is its median over
 * those iterations (a sum row: the median of the per-iteration sums). Per row: the
 * median over the ranks of their values against the median of the ranks' predictions
 * (so a model exact on every rank is exact here too); the slowest rank (the highest
 * value; ties: the lowest rank) against its own prediction (in the sum rows: against
 * the highest prediction over the ranks). wait: the median over ranks
 * and iterations (of the sum over layers, in the sum's rows).
 * error % = 100 (predicted - measured) / measured: positive, the model is slower than
 * the machine.
 */
#ifndef MOEPROF_COMPARE_H
#define MOEPROF_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "records.h"
#include "timer.h"

struct chrome;

#define CMP_MSG_MAX 2048
#define CMP_FWD_SUM TMR_NPHASES           /* row ids past the phases: the sums */
#define CMP_BWD_SUM (TMR_NPHASES + 1)
#define CMP_ROWS (TMR_NPHASES + 2)

struct cmp_spec {
    const char *const *files;             /* the run's CONFIG files, borrowed */
    int nfiles;
    const char *const *calib;             /* --calibration files, after them */
    int ncalib;
    const char *const *sets;              /* --set, after both */
    int nsets;
    const char *dir;                      /* --out DIR */
    const char *dtype;                    /* the backend's element: "fp32", "bf16" */
    unsigned long long seed;
};

struct cmp_row {
    int layer;                            /* -1: the sum over the layers */
    int id;                               /* phase id (timer.h) or CMP_FWD_SUM / CMP_BWD_SUM */
    bool modelled;
    size_t n;                             /* measured values (ranks x iterations) */
    double meas_s, pred_s;                /* medians; pred_s NAN where not modelled */
    int slow;                             /* the slowest rank */
    double slow_meas_s, slow_pred_s;
    double wait_s;                        /* median wait (all-to-alls); NAN for compute */
    double wait_pred_s;                   /* the median over ranks of the predicted wait
                                           * (all-to-alls); NAN for compute and sums */
};

struct cmp_result {
    int ranks, nodes, layers, iters;
    int iters_used;                       /* those every layer routed like its iteration 0 */
    int nrows;
    struct cmp_row *row;                  /* each layer's rows, then (layers > 1) the sum's */
    double *pred_s;                       /* [(layer * ranks + rank) * TMR_NPHASES + phase];
                                           * NAN: not modelled */
    double *wait_pred_s;                  /* the same index: the part of pred_s that is the
                                           * wait for the group's last experts (0 but in
                                           * fwd.combine and bwd.dispatch); NAN: not modelled */
    bool *used;                           /* [(layer * iters + iter)], then [layers * iters
                                           * + iter] for the sum: iterations compared */
    char where[CMP_MSG_MAX];              /* the calibration files, for the header line */
    struct config cfg;                    /* the config moesim ran */
};

/* Before the run: the config with the calibration files loads, its expert table reads
 * (sim/compute.h), and the placement is one moesim makes alike from a trace
 * (contiguous, round-robin; eplb only when the run itself replays a trace). 0, or
 * -EINVAL with msg (one line: "file:line: what", or "moeprof run: --calibration F: what"),
 * -ENOMEM. */
int cmp_check(const struct cmp_spec *s, char *msg, size_t n);

/* After the run, on rank 0: the prediction against r's records. 0; 2 bad input (msg: the
 * ranks are not in equal, consecutive blocks per node; or what moesim refused); 1
 * runtime failure (msg). cmp_free in every case. */
int cmp_run(struct cmp_result *out, const struct cmp_spec *s, const struct rec_run *r,
            char *msg, size_t n);
void cmp_free(struct cmp_result *c);      /* zeroed is a no-op */

/* The table for people (lines not data start with '#'). 0 or -EIO. */
int cmp_print(FILE *f, const struct cmp_result *c);

/* compare.csv: phase,modelled,measured_median_s,predicted_s,error_pct,slowest_rank,
 * slowest_measured_s,slowest_predicted_s,slowest_error_pct,wait_median_s,samples,layer
 * (the layer, or "all" for the sum's rows), then moesim's identifying columns (sim/csv.h)
 * of the config it ran, then wait_predicted_s; empty fields where a value does not exist. 0 or -EIO. */
int cmp_csv(FILE *f, const struct cmp_result *c);

/* The predicted timeline into an open trace (records.h, rec_chrome_with): processes
 * ranks + k named "predicted rank k", threads compute and comm; each modelled phase of
 * each layer's first compared iteration as a slice of its predicted length, starting
 * where the measured one started on rank k (so each sits beside its measurement), args
 * measured_s, predicted_s and layer. arg: the cmp_result. 0 or the writer's error. */
int cmp_chrome(struct chrome *ch, const struct rec_run *r, const void *arg);

/* DIR/trace.json (the measured trace and, beside it, the predicted one) and
 * DIR/compare.csv, each through sim/ofile (replaced only when complete). 0 or the
 * writers' negative errno. */
int cmp_write(const char *dir, const struct rec_run *r, const struct cmp_result *c);

#endif
