/* sweepmpi.h: what `mpirun -np N moesim sweep` needs of MPI, behind plain C calls, so
 * that only this file includes <mpi.h>. The Makefile compiles it twice: with mpicc and
 * MOESIM_MPI defined for the moesim binary, and without MPI into the library, where
 * swmpi_launched is always false and the rest are never reached (they return -ENOSYS).
 * Rows travel to rank 0 as one message each, "POINT ROW" without the NUL.
 */
#ifndef MOESIM_SWEEPMPI_H
#define MOESIM_SWEEPMPI_H

#include <stdbool.h>

/* Started by OpenMPI's mpirun (OMPI_COMM_WORLD_SIZE in the environment), in a build
 * with MPI. Nothing is initialised until swmpi_init. */
bool swmpi_launched(void);

/* MPI_Init; this process's rank and the number of ranks. 0 or -EIO. */
int swmpi_init(int *rank, int *size);
void swmpi_finalize(void);
/* Everybody's v[0..n) from rank 0's. 0 or -EIO. */
int swmpi_bcast(int *v, int n);
/* Sends point p's row to rank 0. 0 or -EIO. */
int swmpi_send_row(int p, const char *row);
/* Rank 0: the next row from any rank into *row (malloc'd, NUL-terminated) and its point
 * into *p; when wait is false and none has come, 1 and nothing. 0, 1, -EIO, -ENOMEM. */
int swmpi_recv_row(int *p, char **row, bool wait);
/* Ends every rank of the job with status rc (a rank that cannot go on). */
void swmpi_abort(int rc);

#endif
