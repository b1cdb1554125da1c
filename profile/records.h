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
};

/* The earliest record's start on rank 0's clock: time zero of the outputs. */
double rec_t_zero(const struct rec_run *r);

/* rank,iteration,layer,phase,start_s,dur_s,bytes: one line per record. */
int rec_phases_csv(FILE *f, const struct rec_run *r);

/* Chrome trace: process r = "rank r", threads "compute" (0) and "comm" (1); slices
 * named as moesim's ("F gate", "B dispatch", ...) with category "F" or "B". */
int rec_chrome(FILE *f, const struct rec_run *r);

/* The table: per phase, min / median / max of its duration over ranks, iterations and
 * layers, imbalance (max over ranks of the rank's mean / mean over ranks), bytes sent
 * per call and bandwidth (bytes / time summed); then the clock offsets. */
int rec_summary(FILE *f, const struct rec_run *r);

/* traces/ routing trace: layers x iterations x ranks x experts. */
int rec_routing_trace(FILE *f, const struct rec_run *r);

/* The dispatch (combine: its transpose) bytes of (layer, iter), GPU ids = world ranks:
 * dense false, moesim's `src dst bytes` format (traces/matrix.h); dense true, the
 * square matrix of nccl-tests' alltoallv_perf (row i column j = bytes i sends to j,
 * each rounded up to a multiple of 16 bytes). */
int rec_matrix(FILE *f, const struct rec_run *r, int layer, int iter, int combine, int dense);

#endif
