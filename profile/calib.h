/* calib.h: the timings `moeprof calibrate` takes (collective over the world, every rank
 * calls each function in the same order).
 *
 * Expert FFN: every rank runs one routed expert (its own seeded weights, tensors.h)
 * forward then backward on `tokens` rows, all ranks at once (a barrier before each
 * stage), as an expert-parallel layer runs them. One warm-up pass per count; then
 * `reps` repetitions, each over the whole ladder, of one sample per count: the medians
 * of `inner` passes (inner from the warm-up, so that a sample lasts about
 * CAL_SAMPLE_S, from CAL_EXPERT_INNER_MIN to CAL_EXPERT_INNER_MAX). On the CPU the host's monotonic clock
 * times each stage; on the CUDA backend a pair of CUDA events on the legacy default
 * stream (which orders the ctx's stream), so only the device's work is timed.
 *
 * Messages: a size ladder of `nsizes` byte counts; two untimed operations per size,
 * then `reps` repetitions over the ladder of one sample per size, each the median of
 * `inner` operations timed one by one (inner from the untimed ones so that a sample
 * lasts about CAL_SAMPLE_S, at most CAL_INNER_MAX), an operation's time being the
 * slowest rank's:
 *   ping-pong  two ranks, a message there and back; half the round trip
 *   all-to-all every rank of comm sends `bytes` to each of its tier's peers
 *              (MPI_Alltoallv, zero counts to the others) and receives as much
 * The median of many short operations keeps a rank descheduled in a few of them (a
 * shared machine) out of the sample; the samples' range is the noise left.
 * Cold (the layer's case on CPUs: its buffers come out of the expert GEMMs): before
 * each operation, untimed, every rank of it writes CAL_FLUSH_BYTES elsewhere, then its
 * send buffer, and meets the others; a sample is then the median of CAL_COLD_INNER.
 * Hot: the operations run back to back on buffers in cache.
 * The tiers: ranks of one node (MPI_Comm_split_type SHARED): the ping-pong between the
 * node's first two ranks (every node at once), the all-to-all inside each node;
 * across nodes: the ping-pong between world rank 0 and the first rank of the next node,
 * the all-to-all from every rank to every rank of other nodes.
 * Buffers are host memory: the network figures are MPI's, whatever the backend.
 */
#ifndef MOEPROF_CALIB_H
#define MOEPROF_CALIB_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define CAL_SAMPLE_S 2e-3     /* a message sample lasts about this long */
#define CAL_INNER_MAX 1000    /* operations per sample at most */
#define CAL_COLD_INNER 5      /* cold operations per sample */
/* Written before each cold operation: twice the 32 MiB L3 of the machine the figures
 * of docs/PERFORMANCE.md come from; a larger last-level cache needs more. */
#define CAL_FLUSH_BYTES ((size_t)64 << 20)
#define CAL_EXPERT_INNER_MIN 3 /* expert passes per sample at least (one descheduled
                                  pass is then out of the sample's median) */
#define CAL_EXPERT_INNER_MAX 32 /* expert passes per sample at most */

/* Expert times. fwd_s and bwd_s: [n][reps x ranks] on rank 0 (sample k of rank r at
 * r * reps + k), NULL elsewhere. cuda: time with CUDA events (the CUDA backend). 0,
 * -ENOMEM, -EIO, or the backend's error. */
int cal_expert(const struct moe_ops *ops, const struct moe_cfg *c, bool cuda,
               const int *tokens, int n, int reps, uint64_t seed, double *fwd_s,
               double *bwd_s);

/* Where a tier's ranks are, from the world's layout. */
struct cal_tiers {
    MPI_Comm node;            /* this rank's node (owned; cal_tiers_free) */
    int node_rank, node_size; /* within it */
    int *node_of;             /* [world size]: the lowest world rank of each rank's node */
    int intra_peers;          /* node size - 1 of rank 0's node (0: no intra tier) */
    int inter_peer;           /* first world rank off rank 0's node (-1: one node) */
    int inter_peers;          /* ranks on other nodes than a rank's (the most of any rank) */
};
int cal_tiers_create(struct cal_tiers *t);     /* 0, -ENOMEM, -EIO */
void cal_tiers_free(struct cal_tiers *t);

/* Ping-pong of the tier (inter: world rank 0 and inter_peer; intra: each node's local
 * ranks 0 and 1). t_s [nsizes x reps] on rank 0, one-way seconds. */
int cal_pingpong(const struct cal_tiers *t, bool inter, bool cold, const size_t *bytes,
                 int nsizes, int reps, double *t_s);

/* All-to-all of the tier. t_s [nsizes x reps] on rank 0, the slowest rank's seconds. */
int cal_alltoall(const struct cal_tiers *t, bool inter, bool cold, const size_t *bytes,
                 int nsizes, int reps, double *t_s);

#endif
