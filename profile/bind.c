/* bind.c: --bind for moeprof run (bind.h). */
#include "bind.h"

#include <errno.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "hwtopo.h"

int bind_ranks(enum bind_mode mode, struct bind_run *out)
{
    memset(out, 0, sizeof(*out));
    int rank, local, nlocal, len = 0;
    char host[MPI_MAX_PROCESSOR_NAME] = "?", line[BIND_LINE];
    MPI_Comm node;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &out->ranks);
    MPI_Get_processor_name(host, &len);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_free(&node);

    struct hwt *h = NULL;
    struct hwt_place w;
    int rc = hwt_create(&h);
    if (!rc) {
        out->gpus = hwt_info(h)->gpus;
        out->mode = mode != BIND_AUTO ? mode : out->gpus ? BIND_GPU : BIND_NONE;
        rc = hwt_bind(h, local, nlocal, out->mode == BIND_GPU, &w);
    }
    hwt_free(h);
    if (rank == 0)
        out->lines = calloc((size_t)out->ranks, BIND_LINE);
    int shared[3] = { out->gpus, (int)out->mode, out->lines != NULL };   /* rank 0's */
    MPI_Bcast(shared, 3, MPI_INT, 0, MPI_COMM_WORLD);
    out->gpus = shared[0];
    out->mode = (enum bind_mode)shared[1];
    if (rc)
        snprintf(line, sizeof(line), "host %s: %s", host, strerror(-rc));
    else
        snprintf(line, sizeof(line), "host %s, cpus %s, numa %s, gpu %s, nic %s", host,
                 w.cpus, w.numa, w.gpu, w.nic);
    if (!shared[2])
        return rc ? rc : -ENOMEM;
    MPI_Gather(line, BIND_LINE, MPI_CHAR, out->lines, BIND_LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
    return rc;
}

void bind_print(FILE *f, const struct bind_run *b)
{
    if (!b->lines)
        return;
    if (b->mode == BIND_GPU && b->gpus)
        fprintf(f, "# --bind gpu: each rank on CPUs local to its GPU (hwloc), with the GPU's "
                "nearest NIC\n");
    else if (b->mode == BIND_GPU)
        fprintf(f, "# --bind gpu without a GPU: each rank on its share of the node's cores, "
                "in rank order (one package and NUMA node before the next)\n");
    else
        fprintf(f, "# --bind none: the ranks run where mpirun put them\n");
    for (int k = 0; k < b->ranks; k++)
        fprintf(f, "# rank %d: %s\n", k, b->lines + (size_t)k * BIND_LINE);
}

void bind_free(struct bind_run *b)
{
    if (!b)
        return;
    free(b->lines);
    memset(b, 0, sizeof(*b));
}
