/* trympi.h: TRY_MPI, the one macro of profile/ that changes control flow (STYLE.md):
 * on an MPI error it logs "host:rank file:line: the error's text" to stderr and
 * returns -EIO from the calling function. */
#ifndef MOEPROF_TRYMPI_H
#define MOEPROF_TRYMPI_H

#include <errno.h>
#include <mpi.h>

void trympi_log(int code, const char *file, int line);

#define TRY_MPI(call)                                \
    do {                                             \
        int try_mpi_rc_ = (call);                    \
        if (try_mpi_rc_ != MPI_SUCCESS) {            \
            trympi_log(try_mpi_rc_, __FILE__, __LINE__); \
            return -EIO;                             \
        }                                            \
    } while (0)

#endif
