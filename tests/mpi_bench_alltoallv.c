/* mpi_bench_alltoallv.c: a plain MPI_Alltoallv of a given byte matrix, the yardstick for
 * the all-to-alls moeprof measures (make bench; docs/PERFORMANCE.md).
 *
 *   mpirun -np N mpi_bench_alltoallv MATRIX [ITERS] [WARMUP] [ROW_BYTES]
 * MATRIX: traces/matrix.h's file for N GPUs (pairs or dense; moeprof --out writes
 * both), row i = bytes rank i sends to each rank. ROW_BYTES > 1: counts in units of a
 * contiguous datatype of that many bytes, as moeprof sends rows (every entry must be a
 * multiple); default 1, MPI_BYTE. FLUSH_MIB > 0: before each call, write that many MiB
 * elsewhere and then the send buffer, so the call starts with its send buffer freshly
 * written and the rest of the caches cold, as in a layer (default 0: all hot).
 *   mpirun -np N mpi_bench_alltoallv MATRIX [ITERS] [WARMUP] [ROW_BYTES] [FLUSH_MIB] Each timed call starts after a
 * barrier; its time is the slowest rank's. Prints the bytes that cross ranks (the
 * diagonal excluded), the median and least time, and algbw = bytes / median time.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "matrix.h"
#include "traffic.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int iters = argc > 2 ? atoi(argv[2]) : 50, warmup = argc > 3 ? atoi(argv[3]) : 5;
    int row = argc > 4 ? atoi(argv[4]) : 1;
    long flush_mib = argc > 5 ? atol(argv[5]) : 0;
    struct matrix m;
    struct matrix_err err;
    if (argc < 2 || iters < 1 || warmup < 0 || row < 1) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np N mpi_bench_alltoallv MATRIX [ITERS] [WARMUP] "
                    "[ROW_BYTES]\n");
        MPI_Finalize();
        return 2;
    }
    if (matrix_load(&m, argv[1], size, &err)) {
        if (rank == 0)
            fprintf(stderr, "mpi_bench_alltoallv: %s\n", err.msg);
        MPI_Finalize();
        return 2;
    }
    int *sc = calloc((size_t)size, sizeof(int)), *sd = calloc((size_t)size, sizeof(int));
    int *rc = calloc((size_t)size, sizeof(int)), *rd = calloc((size_t)size, sizeof(int));
    uint64_t cross = 0;
    for (size_t i = 0; i < (size_t)size * size; i++)
        if (m.bytes[i] % (uint64_t)row) {
            if (rank == 0)
                fprintf(stderr, "mpi_bench_alltoallv: %s: %llu bytes are not whole rows of %d\n",
                        argv[1], (unsigned long long)m.bytes[i], row);
            MPI_Finalize();
            return 2;
        }
    MPI_Datatype dt = MPI_BYTE;
    if (row > 1) {
        MPI_Type_contiguous(row, MPI_BYTE, &dt);
        MPI_Type_commit(&dt);
    }
    long so = 0, ro = 0;
    for (int p = 0; p < size; p++) {
        sc[p] = (int)(m.bytes[(size_t)rank * size + p] / (uint64_t)row);
        rc[p] = (int)(m.bytes[(size_t)p * size + rank] / (uint64_t)row);
        sd[p] = (int)(so / row);
        rd[p] = (int)(ro / row);
        so += (long)sc[p] * row;
        ro += (long)rc[p] * row;
        for (int q = 0; q < size; q++)
            cross += p != q ? m.bytes[(size_t)p * size + q] : 0;
    }
    char *sbuf = calloc((size_t)so + 1, 1), *rbuf = calloc((size_t)ro + 1, 1);
    double *t = calloc((size_t)iters, sizeof(double)), *tmax = calloc((size_t)iters, sizeof(double));
    if (!sc || !sd || !rc || !rd || !sbuf || !rbuf || !t || !tmax) {
        fprintf(stderr, "mpi_bench_alltoallv: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(sbuf, rank & 0xff, (size_t)so);
    size_t fl = (size_t)flush_mib << 20;
    char *flush = fl ? malloc(fl) : NULL;
    for (int i = -warmup; i < iters; i++) {
        if (flush) {                      /* evict the buffers, as a layer's compute does */
            memset(flush, i & 0xff, fl);
            memset(sbuf, rank & 0xff, (size_t)so);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        MPI_Alltoallv(sbuf, sc, sd, dt, rbuf, rc, rd, dt, MPI_COMM_WORLD);
        if (i >= 0)
            t[i] = now_s() - t0;
    }
    MPI_Reduce(t, tmax, iters, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        qsort(tmax, (size_t)iters, sizeof(double), cmp_double);
        double med = iters % 2 ? tmax[iters / 2] : 0.5 * (tmax[iters / 2 - 1] + tmax[iters / 2]);
        printf("#  ranks        bytes   time_med   time_min     algbw\n");
        printf("#                 (B)       (us)       (us)    (GB/s)\n");
        printf("  %6d %12llu %10.1f %10.1f %9.3f\n", size, (unsigned long long)cross, 1e6 * med,
               1e6 * tmax[0], (double)cross / med / 1e9);
    }
    free(sc);
    free(sd);
    free(rc);
    free(rd);
    free(sbuf);
    free(rbuf);
    free(flush);
    free(t);
    free(tmax);
    matrix_free(&m);
    if (row > 1)
        MPI_Type_free(&dt);
    MPI_Finalize();
    return 0;
}
