/* exchange.h: the all-to-alls of an expert-parallel layer over MPI: a fixed-width
 * all-to-all of per-slot counts (MPI_Alltoall) and a variable one of rows
 * (MPI_Alltoallv, one row = `row_elems` floats as one MPI datatype, so counts are rows
 * and a layer may move more than 2^31 floats; against a plain MPI_Alltoallv of the same
 * bytes in MPI_BYTE counts it costs nothing measurable: tests/mpi_bench_alltoallv.c,
 * docs/PERFORMANCE.md). Blocking; the buffers are host memory, sent in place (the
 * layer lays them out by destination before the call).
 * Errors: MPI's handler stays MPI_ERRORS_ARE_FATAL, so a dead peer aborts the job
 * (OpenMPI tears every rank down); a call that returns an error anyway gives -EIO
 * after TRY_MPI logs "host:rank file:line: MPI error text".
 */
#ifndef MOEPROF_EXCHANGE_H
#define MOEPROF_EXCHANGE_H

#include <mpi.h>
#include <stdint.h>

struct xch {
    MPI_Comm comm;            /* borrowed */
    int rank, size;
    MPI_Datatype row;         /* row_elems contiguous floats; owned */
    int *scount, *sdispl, *rcount, *rdispl;   /* [size] scratch, owned */
};

/* 0, -EINVAL (row_elems < 1), -ENOMEM, -EIO. */
int xch_create(struct xch *x, MPI_Comm comm, int row_elems);
void xch_free(struct xch *x);                 /* zeroed *x is a no-op */

/* recv[s * width + i] = what rank s put in send[rank * width + i]. */
int xch_counts(struct xch *x, const int32_t *send, int32_t *recv, int width);

/* Rows: send holds send_rows[d] rows for each rank d in rank order, recv gets
 * recv_rows[s] rows from each rank s in rank order; both sides must agree. */
int xch_rows(struct xch *x, const void *send, const int32_t *send_rows, void *recv,
             const int32_t *recv_rows);

#endif
