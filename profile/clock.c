/* clock.c: clock offsets against rank 0 (see clock.h). */
#include "clock.h"

#include <errno.h>
#include <math.h>

#include "timer.h"
#include "trympi.h"

#define CLK_TAG 4242

int clk_offsets(MPI_Comm comm, int rounds, double *offset_s, double *err_s)
{
    int rank, size;
    if (rounds < 1)
        return -EINVAL;
    TRY_MPI(MPI_Comm_rank(comm, &rank));
    TRY_MPI(MPI_Comm_size(comm, &size));
    if (rank == 0) {
        offset_s[0] = 0.0;
        err_s[0] = 0.0;
    }
    for (int r = 1; r < size; r++) {
        if (rank == 0) {
            double best = INFINITY;
            for (int i = 0; i < rounds; i++) {
                double t0 = tmr_now_s(), tr;
                TRY_MPI(MPI_Send(&t0, 1, MPI_DOUBLE, r, CLK_TAG, comm));
                TRY_MPI(MPI_Recv(&tr, 1, MPI_DOUBLE, r, CLK_TAG, comm, MPI_STATUS_IGNORE));
                double t1 = tmr_now_s();
                if (t1 - t0 < best) {
                    best = t1 - t0;
                    offset_s[r] = tr - 0.5 * (t0 + t1);
                    err_s[r] = 0.5 * (t1 - t0);
                }
            }
        } else if (rank == r) {
            for (int i = 0; i < rounds; i++) {
                double t0, tr;
                TRY_MPI(MPI_Recv(&t0, 1, MPI_DOUBLE, 0, CLK_TAG, comm, MPI_STATUS_IGNORE));
                tr = tmr_now_s();
                TRY_MPI(MPI_Send(&tr, 1, MPI_DOUBLE, 0, CLK_TAG, comm));
            }
        }
    }
    return 0;
}
