/* sweepmpi.c: MPI for moesim sweep (sweepmpi.h); stubs without MOESIM_MPI. */
#include "sweepmpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MOESIM_MPI
#include <mpi.h>

bool swmpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL;
}

int swmpi_init(int *rank, int *size)
{
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS || MPI_Comm_rank(MPI_COMM_WORLD, rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, size) != MPI_SUCCESS)
        return -EIO;
    return 0;
}

void swmpi_finalize(void)
{
    MPI_Finalize();
}

int swmpi_bcast(int *v, int n)
{
    return MPI_Bcast(v, n, MPI_INT, 0, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -EIO;
}

int swmpi_send_row(int p, const char *row)
{
    size_t n = strlen(row) + 16;
    char *msg = malloc(n);
    if (!msg)
        return -ENOMEM;
    int len = snprintf(msg, n, "%d %s", p, row);
    int rc = MPI_Send(msg, len, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
    free(msg);
    return rc == MPI_SUCCESS ? 0 : -EIO;
}

int swmpi_recv_row(int *p, char **row, bool wait)
{
    MPI_Status st;
    int flag = 1, n;
    char *msg, *end;
    if (wait ? MPI_Probe(MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &st)
             : MPI_Iprobe(MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &flag, &st))
        return -EIO;
    if (!flag)
        return 1;
    if (MPI_Get_count(&st, MPI_CHAR, &n) != MPI_SUCCESS)
        return -EIO;
    if (!(msg = malloc((size_t)n + 1)))
        return -ENOMEM;
    if (MPI_Recv(msg, n, MPI_CHAR, st.MPI_SOURCE, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS) {
        free(msg);
        return -EIO;
    }
    msg[n] = '\0';
    *p = (int)strtol(msg, &end, 10);
    if (*end != ' ' || !(*row = strdup(end + 1))) {
        free(msg);
        return *end != ' ' ? -EIO : -ENOMEM;
    }
    free(msg);
    return 0;
}

void swmpi_abort(int rc)
{
    MPI_Abort(MPI_COMM_WORLD, rc);
}

#else

bool swmpi_launched(void) { return false; }
int swmpi_init(int *rank, int *size) { *rank = 0; *size = 1; return -ENOSYS; }
void swmpi_finalize(void) {}
int swmpi_bcast(int *v, int n) { (void)v; (void)n; return -ENOSYS; }
int swmpi_send_row(int p, const char *row) { (void)p; (void)row; return -ENOSYS; }
int swmpi_recv_row(int *p, char **row, bool wait)
{
    (void)p; (void)row; (void)wait;
    return -ENOSYS;
}
void swmpi_abort(int rc) { exit(rc); }

#endif
