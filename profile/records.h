/* records.h: what a measured run writes, from the records rank 0 gathered: phases.csv,
 * the merged Chrome trace, the summary table, the routing trace and the byte matrices.
 * Times are put on rank 0's clock (clock.h) and counted from the run's first record.
 * Every writer borrows f and the run, writes in a fixed order (same records, same
 * bytes) and returns 0, -EIO (a write failed), -EINVAL or -ENOMEM.
 */
#ifndef MOEPROF_RECORDS_H
#define MOEPROF_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "timer.h"

struct rec_run {
    int ranks, ep, layers, iters, experts, hidden;
    size_t elem_bytes;                /* bytes of one element sent */
    const struct tmr_rec *rec;        /* every rank's records, rank after rank */
    const size_t *rec0;               /* [ranks + 1]: rank r's are rec[rec0[r] .. rec0[r+1]) */
    const double *offset_s, *err_s;   /* [ranks], clock.h */
    /* [((layer * iters + iter) * ranks + rank) * experts + e]: assignments of rank's tokens */
    const int32_t *counts;
    /* [((layer * iters + iter) * ranks + rank) * ep + d]: rows rank sent to rank d of its group */
    const int32_t *send_rows;
    /* [ranks]: the node of each rank (ranks that share memory, MPI_COMM_TYPE_SHARED,
     * share a node id); NULL: every rank on one node. */
    const int *node;
};

/* Tiers of an all-to-all's traffic: peers on the rank's node, peers on other nodes. */
enum rec_tier { REC_INTRA = 0, REC_INTER = 1, REC_NTIERS };

/* Wait (skew) of every record, wait_s[i] for r->rec[i]: for an all-to-all phase
 * (counts, dispatch, combine), the time from its rank's arrival at the collective
 * (the record's start) to the last arrival in its EP group at the same (iteration,
 * layer, phase), on rank 0's clock, clipped to [0, dur]; 0 for compute. The rest of
 * the record, dur - wait = end - last arrival, is its transfer. The estimate assumes
 * no rank can finish before its slowest peer has arrived (each rank receives from
 * every peer); it carries the clock offsets' error (clock.h). 0, -ENOMEM. */
int rec_waits(const struct rec_run *r, double *wait_s);

/* One all-to-all phase over every rank, iteration and layer. */
struct rec_a2a {
    size_t calls;
    double wait_med_s, wait_max_s, xfer_med_s;
    /* Per tier: bytes sent, and the transfer time of the calls that sent bytes on it;
     * bytes / xfer_s is the rate the tier achieved while the calls ran (both tiers
     * move at once, so each is given the whole transfer time). */
    double bytes[REC_NTIERS], xfer_s[REC_NTIERS];
};

/* The stats of phase (an all-to-all phase id, timer.h) from rec_waits' wait_s.
 * 0; -EINVAL (phase not an all-to-all), -ENOMEM. A phase without records: calls 0. */
int rec_a2a_stats(const struct rec_run *r, const double *wait_s, int phase,
                  struct rec_a2a *out);

/* Instrumentation overhead from n pairs of iteration times (slowest rank), one timed
 * and one untimed each: the median of the pairs' ratios timed / untimed - 1 (a load
 * that slows a whole pair scales both, so it cancels), and a distribution-free 95 %
 * confidence interval for it from the order statistics of the ratios (ranks n/2 -+
 * 0.98 sqrt(n); W. J. Conover, "Practical Nonparametric Statistics", 3rd ed., sec.
 * 3.2). n < 6: lo = -inf, hi = +inf. */
struct rec_overhead {
    double timed_med_s, plain_med_s;
    double frac, lo_frac, hi_frac;   /* timed / untimed - 1, per pair */
};
int rec_overhead(const double *timed_s, const double *plain_s, int n, struct rec_overhead *o);

/* Sign-test inversion: the largest j with P(Binomial(n, 1/2) <= j - 1) <= 0.025, so the
 * median of n values lies in [v_(j), v_(n+1-j)] (1-based, sorted) with at least 95 %
 * confidence; 0 when n < 6 (no interval). */
int rec_sign_rank(int n);

/* The earliest record's start on rank 0's clock: time zero of the outputs. */
double rec_t_zero(const struct rec_run *r);

/* rank,iteration,layer,phase,start_s,dur_s,bytes,wait_s: one line per record;
 * wait_s as rec_waits. */
int rec_phases_csv(FILE *f, const struct rec_run *r);

/* Chrome trace: process r = "rank r", threads "compute" (0) and "comm" (1); slices
 * named as moesim's ("F gate", "B dispatch", ...) with category "F" or "B". */
int rec_chrome(FILE *f, const struct rec_run *r);
/* rec_chrome, then more(ch, r, arg) adds its events to the same trace before it closes
 * (--compare's predicted processes); more NULL: rec_chrome. */
struct chrome;
int rec_chrome_with(FILE *f, const struct rec_run *r,
                    int (*more)(struct chrome *, const struct rec_run *, const void *),
                    const void *arg);

/* The tables: per phase, min / median / max of its duration over ranks, iterations and
 * layers, imbalance (max over ranks of the rank's mean / mean over ranks), bytes sent
 * per call and bandwidth (bytes / time summed); per all-to-all phase, the wait and
 * transfer split (rec_waits) and the bandwidth per tier; then the clock offsets. */
int rec_summary(FILE *f, const struct rec_run *r);

/* traces/ routing trace: layers x iterations x ranks x experts. */
int rec_routing_trace(FILE *f, const struct rec_run *r);

/* The dispatch (combine: its transpose) bytes of (layer, iter), GPU ids = world ranks:
 * dense false, moesim's `src dst bytes` format (traces/matrix.h); dense true, the
 * square matrix of nccl-tests' alltoallv_perf (row i column j = bytes i sends to j,
 * each rounded up to a multiple of 16 bytes). */
int rec_matrix(FILE *f, const struct rec_run *r, int layer, int iter, int combine, int dense);

#endif
