/* exchange.c: MPI all-to-alls of counts and rows (see exchange.h). */
#include "exchange.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trympi.h"

int xch_create(struct xch *x, MPI_Comm comm, int row_elems)
{
    memset(x, 0, sizeof(*x));
    x->row = MPI_DATATYPE_NULL;
    if (row_elems < 1)
        return -EINVAL;
    x->comm = comm;
    TRY_MPI(MPI_Comm_rank(comm, &x->rank));
    TRY_MPI(MPI_Comm_size(comm, &x->size));
    size_t n = (size_t)x->size;
    x->scount = calloc(n, sizeof(int));
    x->sdispl = calloc(n, sizeof(int));
    x->rcount = calloc(n, sizeof(int));
    x->rdispl = calloc(n, sizeof(int));
    if (!x->scount || !x->sdispl || !x->rcount || !x->rdispl) {
        xch_free(x);
        return -ENOMEM;
    }
    TRY_MPI(MPI_Type_contiguous(row_elems, MPI_FLOAT, &x->row));
    TRY_MPI(MPI_Type_commit(&x->row));
    return 0;
}

void xch_free(struct xch *x)
{
    if (!x)
        return;
    if (x->row != MPI_DATATYPE_NULL && x->row != 0)
        MPI_Type_free(&x->row);
    free(x->scount);
    free(x->sdispl);
    free(x->rcount);
    free(x->rdispl);
    memset(x, 0, sizeof(*x));
    x->row = MPI_DATATYPE_NULL;
}

int xch_counts(struct xch *x, const int32_t *send, int32_t *recv, int width)
{
    TRY_MPI(MPI_Alltoall(send, width, MPI_INT32_T, recv, width, MPI_INT32_T, x->comm));
    return 0;
}

int xch_rows(struct xch *x, const void *send, const int32_t *send_rows, void *recv,
             const int32_t *recv_rows)
{
    int so = 0, ro = 0;
    for (int r = 0; r < x->size; r++) {
        x->scount[r] = send_rows[r];
        x->sdispl[r] = so;
        x->rcount[r] = recv_rows[r];
        x->rdispl[r] = ro;
        so += send_rows[r];
        ro += recv_rows[r];
    }
    TRY_MPI(MPI_Alltoallv(send, x->scount, x->sdispl, x->row, recv, x->rcount, x->rdispl,
                          x->row, x->comm));
    return 0;
}
