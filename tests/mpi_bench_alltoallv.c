/* mpi_bench_alltoallv.c: moeprof's rows all-to-all (profile/exchange.c, xch_rows)
 * against a plain MPI_Alltoallv of the same bytes (MPI_BYTE counts and displacements),
 * the yardstick of docs/PERFORMANCE.md (make bench, tests/bench_moeprof.sh).
 *
 *   mpirun -np N mpi_bench_alltoallv MATRIX [--row B] [--reps R] [--sync barrier|arrival]
 *       [--evict MIB] [--layer TRACE --hidden H --ffn F --top-k K --shared S]
 *
 * MATRIX: traces/matrix.h's file for N ranks (moeprof --out writes one per call), row
 * i = bytes rank i sends to each rank; every entry whole rows of B bytes (default 1024,
 * the example's 256 fp32), B a multiple of 4 (moeprof's rows are floats).
 *
 * Loop (default): R pairs of one plain and one moeprof call on the same buffers, in
 * alternating order (plain first in even pairs), nothing else between calls: the
 * buffers stay in cache; with --evict, before each call MIB MiB elsewhere are written,
 * as a layer's GEMMs between its all-to-alls move their weights and activations.
 * Layer (--layer): the layer itself (profile/eplayer.c, CPU backend, round-robin
 * placement: expert e on rank e mod N) with its routing forced from TRACE's layer 0,
 * iteration 0 (moeprof --out's routing.trace), so its forward dispatch moves exactly
 * MATRIX's bytes (checked; exit 1 if not). R pairs of iterations (forward + backward),
 * one with every all-to-all of rows plain and one with all of them moeprof's, in
 * alternating order: both see the layer's own buffers and caches.
 * A call's time runs from the last rank's entry to the last rank's return (ranks on one
 * node share CLOCK_MONOTONIC; the bench must run on one node). --sync barrier (default):
 * a barrier of the group before each call; arrival: none, the ranks enter when they
 * come, and the time after the last arrival is what moeprof reports as the transfer
 * (records.h: the wait for the slowest peer excluded).
 *
 * Prints, per call kind: the bytes that cross ranks (diagonal excluded), the median and
 * the 10th-90th percentiles of each side, and the paired ratio plain time / moeprof
 * time (moeprof's bandwidth as a fraction of plain's): the median of the R per-pair
 * ratios with its sign-test 95 % interval. Exit 2 on bad arguments or input.
 */
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplayer.h"
#include "exchange.h"
#include "force.h"
#include "layout.h"
#include "matrix.h"
#include "moe_cpu.h"
#include "records.h"
#include "rtrace.h"
#include "tensors.h"

#define NKIND 4                      /* the layer's rows all-to-alls, in call order */
static const char *const kind_name[NKIND] = {
    "fwd.dispatch", "fwd.combine", "bwd.combine", "bwd.dispatch",
};

struct opts {
    const char *matrix, *trace;
    int row, reps, hidden, ffn, top_k, shared;
    bool barrier;
    long evict_mib;
};

/* The plain side: byte counts and displacements for a call of rows of row_bytes. */
struct plain {
    MPI_Comm comm;
    int size, row_bytes;
    int *sc, *sd, *rc, *rd;
};

/* Both sides, timed; the layer's rows hook (eplayer.h's epl_io.rows). */
struct duel {
    struct plain p;
    struct xch x;
    bool use_plain, barrier;         /* the side this iteration runs; a barrier first */
    double *t;                       /* where the next call's entry time goes */
    size_t exit_off;                 /* its return time at t[exit_off] */
    int call;                        /* calls this iteration */
};

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

/* The q-quantile of sorted v[n] (nearest rank). */
static double quantile(const double *v, int n, double q)
{
    int i = (int)floor(q * (n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int plain_rows(struct plain *p, const void *send, const int32_t *send_rows, void *recv,
                      const int32_t *recv_rows)
{
    int64_t so = 0, ro = 0;
    for (int r = 0; r < p->size; r++) {
        int64_t sb = (int64_t)send_rows[r] * p->row_bytes, rb = (int64_t)recv_rows[r] * p->row_bytes;
        if (so + sb > INT_MAX || ro + rb > INT_MAX)
            return -1;                   /* byte counts are int: not this bench's sizes */
        p->sc[r] = (int)sb;
        p->sd[r] = (int)so;
        p->rc[r] = (int)rb;
        p->rd[r] = (int)ro;
        so += sb;
        ro += rb;
    }
    return MPI_Alltoallv(send, p->sc, p->sd, MPI_BYTE, recv, p->rc, p->rd, MPI_BYTE, p->comm)
               == MPI_SUCCESS ? 0 : -1;
}

/* One timed call of the side the duel runs now (after a barrier with --sync barrier). */
static int duel_call(struct duel *d, const void *send, const int32_t *send_rows, void *recv,
                     const int32_t *recv_rows)
{
    if (d->barrier)
        MPI_Barrier(d->p.comm);
    double t0 = now_s();
    int rc = d->use_plain ? plain_rows(&d->p, send, send_rows, recv, recv_rows)
                          : xch_rows(&d->x, send, send_rows, recv, recv_rows);
    double t1 = now_s();
    if (d->call < NKIND && d->t) {
        d->t[d->call] = t0;
        d->t[d->exit_off + d->call] = t1;
    }
    d->call++;
    return rc;
}

static int host_copy(void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return 0;
}

static int layer_rows(void *arg, const void *send, const int32_t *send_rows, void *recv,
                      const int32_t *recv_rows)
{
    return duel_call(arg, send, send_rows, recv, recv_rows);
}

static int usage(int rank, const char *why)
{
    if (rank == 0)
        fprintf(stderr, "mpi_bench_alltoallv: %s\nusage: mpirun -np N mpi_bench_alltoallv "
                "MATRIX [--row B] [--reps R] [--sync barrier|arrival] [--evict MIB] [--layer TRACE --hidden H --ffn F "
                "--top-k K --shared S]\n", why);
    return 2;
}

static int parse(struct opts *o, int argc, char **argv, int rank)
{
    *o = (struct opts){ .row = 1024, .reps = 100, .shared = 0, .barrier = true };
    if (argc < 2)
        return usage(rank, "no MATRIX");
    o->matrix = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = v ? strtol(v, NULL, 10) : -1;
        if (!v)
            return usage(rank, "an option without its value");
        i++;
        if (!strcmp(k, "--layer"))
            o->trace = v;
        else if (!strcmp(k, "--sync") && (!strcmp(v, "barrier") || !strcmp(v, "arrival")))
            o->barrier = !strcmp(v, "barrier");
        else if (!strcmp(k, "--evict") && n >= 0 && n < 4096)
            o->evict_mib = n;
        else if (n < 1 || n > INT_MAX)
            return usage(rank, "a count below 1 or not a number");
        else if (!strcmp(k, "--row"))
            o->row = (int)n;
        else if (!strcmp(k, "--reps"))
            o->reps = (int)n;
        else if (!strcmp(k, "--hidden"))
            o->hidden = (int)n;
        else if (!strcmp(k, "--ffn"))
            o->ffn = (int)n;
        else if (!strcmp(k, "--top-k"))
            o->top_k = (int)n;
        else if (!strcmp(k, "--shared"))
            o->shared = (int)n;
        else
            return usage(rank, "unknown option");
    }
    if (o->row % 4)
        return usage(rank, "--row must be whole floats");
    if (o->trace && (o->hidden * 4 != o->row || o->ffn < 1 || o->top_k < 1))
        return usage(rank, "--layer needs --hidden (row / 4), --ffn and --top-k");
    return 0;
}

/* Rank 0: one table line of a call kind from the slowest rank's times t[2 rep + side]
 * (side 0 plain, 1 moeprof), strided by `stride` between kinds. */
static void report(const char *kind, uint64_t cross, const double *t, int reps, int stride)
{
    double *pl = malloc((size_t)reps * sizeof(double)), *mp = malloc((size_t)reps * sizeof(double));
    double *ra = malloc((size_t)reps * sizeof(double));
    if (!pl || !mp || !ra) {
        free(pl);
        free(mp);
        free(ra);
        return;
    }
    for (int i = 0; i < reps; i++) {
        pl[i] = t[(size_t)(2 * i) * stride];
        mp[i] = t[(size_t)(2 * i + 1) * stride];
        ra[i] = pl[i] / mp[i];
    }
    qsort(pl, (size_t)reps, sizeof(double), cmp_double);
    qsort(mp, (size_t)reps, sizeof(double), cmp_double);
    qsort(ra, (size_t)reps, sizeof(double), cmp_double);
    int j = rec_sign_rank(reps);
    double pm = quantile(pl, reps, 0.5), mm = quantile(mp, reps, 0.5);
    printf("  %-13s %10llu %7.1f %6.1f..%-7.1f %7.1f %6.1f..%-7.1f %7.3f %7.3f  %5.3f  %5.3f..%-5.3f\n",
           kind, (unsigned long long)cross, 1e6 * pm, 1e6 * quantile(pl, reps, 0.1),
           1e6 * quantile(pl, reps, 0.9), 1e6 * mm, 1e6 * quantile(mp, reps, 0.1),
           1e6 * quantile(mp, reps, 0.9), (double)cross / pm / 1e9, (double)cross / mm / 1e9,
           quantile(ra, reps, 0.5), j ? ra[j - 1] : NAN, j ? ra[reps - j] : NAN);
    free(pl);
    free(mp);
    free(ra);
}

/* The loop: reps pairs on buffers sized by the matrix. t[2 rep + side]. */
static int run_loop(struct duel *d, const struct opts *o, const struct matrix *m, int rank,
                    double *t)
{
    const int n = d->p.size;
    int32_t *srows = calloc((size_t)n, sizeof(int32_t)), *rrows = calloc((size_t)n, sizeof(int32_t));
    uint64_t so = 0, ro = 0;
    for (int p = 0; srows && rrows && p < n; p++) {
        srows[p] = (int32_t)(m->bytes[(size_t)rank * n + p] / (uint64_t)o->row);
        rrows[p] = (int32_t)(m->bytes[(size_t)p * n + rank] / (uint64_t)o->row);
        so += m->bytes[(size_t)rank * n + p];
        ro += m->bytes[(size_t)p * n + rank];
    }
    char *sbuf = calloc(so + 1, 1), *rbuf = calloc(ro + 1, 1);
    const size_t ev = (size_t)o->evict_mib << 20;
    char *evict = ev ? malloc(ev) : NULL;
    int rc = !srows || !rrows || !sbuf || !rbuf || (ev && !evict) ? -1 : 0;
    if (!rc)
        memset(sbuf, rank & 0xff, so);
    for (int i = -5; i < o->reps && !rc; i++) {          /* 5 pairs of warm-up */
        for (int k = 0; k < 2 && !rc; k++) {
            int side = (i & 1) ? 1 - k : k;              /* 0 plain, 1 moeprof */
            if (evict)
                memset(evict, (i + k) & 0xff, ev);
            d->use_plain = side == 0;
            d->call = 0;
            d->t = i >= 0 ? &t[2 * i + side] : NULL;
            rc = duel_call(d, sbuf, srows, rbuf, rrows);
        }
    }
    free(srows);
    free(rrows);
    free(sbuf);
    free(rbuf);
    free(evict);
    return rc;
}

/* The layer: reps pairs of iterations. t[(2 rep + side) NKIND + kind]. */
static int run_layer(struct duel *d, const struct opts *o, const struct matrix *m, int rank,
                     double *t)
{
    const int n = d->p.size;
    struct rtrace tr = { 0 };
    struct rtrace_err terr;
    if (rtrace_load(&tr, o->trace, n, -1, &terr)) {
        if (rank == 0)
            fprintf(stderr, "mpi_bench_alltoallv: %s\n", terr.msg);
        return 2;
    }
    const int E = tr.experts, K = o->top_k;
    const uint64_t *cnt = rtrace_at(&tr, 0, 0, rank);
    uint64_t tk = 0;
    for (int e = 0; e < E; e++)
        tk += cnt[e];
    const int T = (int)(tk / (uint64_t)K);
    struct moe_cfg cfg = { .hidden = o->hidden, .ffn = o->ffn, .shared_ffn = o->ffn,
                           .experts = E, .shared = o->shared, .top_k = K,
                           .score = MOE_SCORE_SOFTMAX, .norm_topk = true, .route_scale = 1.0f };
    int *per = calloc((size_t)n, sizeof(int)), *ex = calloc((size_t)E, sizeof(int));
    int32_t *idx = calloc((size_t)tk + 1, sizeof(int32_t));
    struct lay lay = { 0 };
    struct epl *l = NULL;
    void *x = NULL, *dout = NULL, *out = NULL, *dx = NULL;
    const struct moe_ops *ops = moe_cpu_ops();
    int rc = !per || !ex || !idx ? -1 : 0, k = 0;
    for (int r = 0; !rc && r < n; r++)              /* round-robin: e on rank e mod n */
        for (int e = r; e < E; e += n, k++) {
            per[r]++;
            ex[k] = e;
        }
    rc = rc ? rc : lay_create(&lay, n, E, per, ex);
    struct epl_io io = { .copy = host_copy, .rows = layer_rows, .rows_arg = d };
    struct epl_spec s = { .cfg = cfg, .lay = &lay, .comm = d->p.comm, .tokens = T, .seed = 1,
                          .layer = 0, .io = &io };
    rc = rc ? rc : frc_fill(idx, cnt, E, T, K);
    rc = rc ? rc : epl_create(&l, ops, &s);
    rc = rc ? rc : epl_force(l, idx);
    rc = rc ? rc : tns_tokens(&x, ops, T, cfg.hidden, (int64_t)rank * T, TNS_X, 1, 0);
    rc = rc ? rc : tns_tokens(&dout, ops, T, cfg.hidden, (int64_t)rank * T, TNS_DOUT, 1, 0);
    rc = rc ? rc : ops->alloc(&out, (size_t)T * cfg.hidden);
    rc = rc ? rc : ops->alloc(&dx, (size_t)T * cfg.hidden);
    for (int i = -3; i < o->reps && !rc; i++) {          /* 3 pairs of warm-up */
        for (int k2 = 0; k2 < 2 && !rc; k2++) {
            int side = (i & 1) ? 1 - k2 : k2;
            d->use_plain = side == 0;
            d->call = 0;
            d->t = i >= 0 ? &t[(size_t)(2 * i + side) * NKIND] : NULL;
            rc = epl_forward(l, x, out, NULL);
            rc = rc ? rc : epl_backward(l, x, dout, dx, NULL);
        }
    }
    /* Same bytes: the forward dispatch's matrix against MATRIX, row by row. */
    int same = 1;
    for (int p = 0; !rc && p < n; p++)
        same &= (uint64_t)epl_send_rows(l)[p] * (uint64_t)o->row == m->bytes[(size_t)rank * n + p];
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, d->p.comm);
    if (!rc && !same) {
        if (rank == 0)
            fprintf(stderr, "mpi_bench_alltoallv: %s: the layer's dispatch is not %s's bytes "
                    "(placement or --top-k differ?)\n", o->trace, o->matrix);
        rc = 1;
    }
    epl_free(l);
    ops->free(x);
    ops->free(dout);
    ops->free(out);
    ops->free(dx);
    lay_free(&lay);
    rtrace_free(&tr);
    free(per);
    free(ex);
    free(idx);
    return rc;
}

int main(int argc, char **argv)
{
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    struct opts o;
    struct matrix m = { 0 };
    struct matrix_err err;
    int rc = parse(&o, argc, argv, rank);
    if (!rc && matrix_load(&m, o.matrix, size, &err)) {
        if (rank == 0)
            fprintf(stderr, "mpi_bench_alltoallv: %s\n", err.msg);
        rc = 2;
    }
    /* One node: the ranks' clocks are one clock (CLOCK_MONOTONIC), no offsets. */
    MPI_Comm node;
    int node_size = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    if (!rc && node_size != size) {
        if (rank == 0)
            fprintf(stderr, "mpi_bench_alltoallv: the ranks span more than one node (%d of %d "
                    "share rank 0's memory); run it on one node\n", node_size, size);
        rc = 2;
    }
    uint64_t cross = 0;
    for (int i = 0; !rc && i < size * size; i++) {
        if (m.bytes[i] % (uint64_t)o.row) {
            if (rank == 0)
                fprintf(stderr, "mpi_bench_alltoallv: %s: %llu bytes are not whole rows of %d\n",
                        o.matrix, (unsigned long long)m.bytes[i], o.row);
            rc = 2;
        }
        cross += i / size != i % size ? m.bytes[i] : 0;
    }
    if (rc) {
        matrix_free(&m);
        MPI_Finalize();
        return rc;
    }
    const int per_rep = o.trace ? NKIND : 1;
    const size_t nt = 2 * (size_t)o.reps * per_rep;
    struct duel d = { .p = { .comm = MPI_COMM_WORLD, .size = size, .row_bytes = o.row },
                      .barrier = o.barrier, .exit_off = nt };
    d.p.sc = calloc((size_t)size, sizeof(int));
    d.p.sd = calloc((size_t)size, sizeof(int));
    d.p.rc = calloc((size_t)size, sizeof(int));
    d.p.rd = calloc((size_t)size, sizeof(int));
    double *t = calloc(2 * nt, sizeof(double)), *tmax = calloc(2 * nt, sizeof(double));
    if (!d.p.sc || !d.p.sd || !d.p.rc || !d.p.rd || !t || !tmax ||
        xch_create(&d.x, MPI_COMM_WORLD, o.row / 4)) {
        fprintf(stderr, "mpi_bench_alltoallv: setup failed\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rc = o.trace ? run_layer(&d, &o, &m, rank, t) : run_loop(&d, &o, &m, rank, t);
    if (rc < 0) {
        fprintf(stderr, "mpi_bench_alltoallv: rank %d: run failed (%d)\n", rank, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* The last entry and the last return of each call. */
    MPI_Reduce(t, tmax, (int)(2 * nt), MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    for (size_t i = 0; i < nt; i++)
        tmax[i] = tmax[nt + i] - tmax[i];
    if (rank == 0 && !rc) {
        printf("# %s, %d rank(s), %s, %s, %d pairs: plain MPI_Alltoallv (MPI_BYTE) vs "
               "moeprof's xch_rows, same bytes and buffers, alternating order\n", o.matrix,
               size, o.trace ? "inside the layer" : o.evict_mib ? "loop, caches evicted" : "hot loop",
               o.barrier ? "barrier before each call" : "from the last arrival", o.reps);
        printf("# call               bytes  plain (us)             moeprof (us)          "
               "plain   moeprof  ratio  ratio\n");
        printf("#                      (B)  median p10..p90        median p10..p90       "
               "(GB/s)  (GB/s)   median 95%% CI\n");
        if (o.trace)
            for (int k = 0; k < NKIND; k++)
                report(kind_name[k], cross, tmax + k, o.reps, NKIND);
        else
            report("alltoallv", cross, tmax, o.reps, 1);
    }
    xch_free(&d.x);
    free(d.p.sc);
    free(d.p.sd);
    free(d.p.rc);
    free(d.p.rd);
    free(t);
    free(tmax);
    matrix_free(&m);
    MPI_Finalize();
    return rc;
}
