/* clock.h: every rank's monotonic clock against rank 0's.
 *
 * Rank 0 exchanges `rounds` ping-pongs with each rank r in turn: it reads its clock
 * (t0), sends, r replies with its clock (tr), rank 0 reads t1. With a symmetric path,
 * tr was read at rank 0's time (t0 + t1) / 2, so offset_r = tr - (t0 + t1) / 2, and
 * whatever the asymmetry, the error is at most (t1 - t0) / 2; the round of least
 * t1 - t0 is kept (Cristian's algorithm, F. Cristian, "Probabilistic clock
 * synchronization", Distributed Computing 3(3), 1989). A time t of rank r is
 * t - offset_r on rank 0's clock. Cost: 2 rounds x ranks messages, serialised on rank 0.
 */
#ifndef MOEPROF_CLOCK_H
#define MOEPROF_CLOCK_H

#include <mpi.h>

/* Collective over comm. On rank 0, offset_s and err_s [size] are filled (rank 0's
 * own: 0, 0); other ranks may pass NULL. 0, -EINVAL (rounds < 1), -EIO. */
int clk_offsets(MPI_Comm comm, int rounds, double *offset_s, double *err_s);

#endif
