/* mpi_gpu_test_eplayer.c: the expert-parallel layer on the CUDA backend with the NCCL
 * rows exchange (profile/gpu.c) against the one-process CUDA layer (kernels/moe.h) on
 * the same inputs and seed. Run under `mpirun -np N`, one rank per GPU; built where
 * nvcc and NCCL are found. Without a GPU it prints one SKIP line and exits 0, so it
 * runs in every `make test`.
 *
 * Every rank runs epl_forward / epl_backward on its T tokens with contiguous experts;
 * rank 0 gathers the outputs and dx and sums the gate gradient over the ranks, and
 * runs moe_forward / moe_backward on all N T tokens. Both are bf16 with fp32 sums
 * (moe_cuda.h): |got - ref| <= 2e-2 max|ref| per tensor (the same GEMMs on the same
 * operands, up to cuBLAS's choice of kernel for a subset of the experts).
 * Untested on more than one GPU.
 */
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplayer.h"
#include "gpu.h"
#include "layout.h"
#include "moe_cuda.h"
#include "tensors.h"

#define T_TOK 128
#define SEED 777u

static int failures_;

static void check(const char *what, const float *got, const float *ref, size_t n)
{
    double mx = 0, worst = 0;
    for (size_t i = 0; i < n; i++)
        mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    for (size_t i = 0; i < n; i++)
        worst = fabs((double)got[i] - ref[i]) > worst ? fabs((double)got[i] - ref[i]) : worst;
    bool ok = worst <= 2e-2 * mx && isfinite(worst);
    failures_ += !ok;
    printf("%s %s: %zu values, max |diff| %.3g of max |ref| %.3g\n", ok ? "ok  " : "FAIL", what,
           n, worst, mx);
}

int main(int argc, char **argv)
{
    int rank, size;
    char why[256] = "", msg[512] = "";
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int devs = moe_cuda_probe(why, sizeof(why)), none = devs < 1, any_none = 0;
    MPI_Allreduce(&none, &any_none, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_none) {
        if (rank == 0)
            printf("SKIP: mpi_gpu_test_eplayer: no GPU on some rank (%s)\n",
                   none ? why : "another rank");
        MPI_Finalize();
        return 0;
    }
    const struct moe_ops *ops = moe_cuda_ops();
    struct moe_cfg cfg = { .hidden = 64, .ffn = 32, .experts = 8, .shared = 1, .top_k = 2,
                           .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                           .route_scale = 1.0f, .aux_alpha = 0.0f };
    const size_t h = (size_t)cfg.hidden, tn = (size_t)T_TOK * h, ge = h * cfg.experts;
    struct gpu_nccl *nccl = NULL;
    struct lay lay;
    struct epl *l = NULL;
    void *x = NULL, *dout = NULL, *out = NULL, *dx = NULL;
    int rc = gpu_select(MPI_COMM_WORLD, msg, sizeof(msg));
    if (rc || cfg.experts % size) {
        fprintf(stderr, "mpi_gpu_test_eplayer: %s\n", rc ? msg : "ranks must divide 8 experts");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rc = gpu_nccl_create(&nccl, MPI_COMM_WORLD, h * ops->elem_bytes);
    rc = rc ? rc : lay_contiguous(&lay, size, cfg.experts);
    struct epl_io io = gpu_io(nccl);
    struct epl_spec spec = { .cfg = cfg, .lay = &lay, .comm = MPI_COMM_WORLD, .tokens = T_TOK,
                             .seed = SEED, .layer = 0, .io = &io };
    rc = rc ? rc : epl_create(&l, ops, &spec);
    rc = rc ? rc : tns_tokens(&x, ops, T_TOK, cfg.hidden, (int64_t)rank * T_TOK, TNS_X, SEED, 0);
    rc = rc ? rc : tns_tokens(&dout, ops, T_TOK, cfg.hidden, (int64_t)rank * T_TOK, TNS_DOUT,
                              SEED, 0);
    rc = rc ? rc : ops->alloc(&out, tn);
    rc = rc ? rc : ops->alloc(&dx, tn);
    rc = rc ? rc : epl_forward(l, x, out, NULL);
    rc = rc ? rc : epl_backward(l, x, dout, dx, NULL);
    float *h_out = calloc(tn, sizeof(float)), *h_dx = calloc(tn, sizeof(float));
    float *h_dg = calloc(ge, sizeof(float)), *g_dg = calloc(ge, sizeof(float));
    float *g_out = calloc(tn * size, sizeof(float)), *g_dx = calloc(tn * size, sizeof(float));
    rc = rc ? rc : ops->download(h_out, out, tn);
    rc = rc ? rc : ops->download(h_dx, dx, tn);
    rc = rc ? rc : ops->download(h_dg, epl_grads(l)->gate, ge);
    if (rc) {
        fprintf(stderr, "mpi_gpu_test_eplayer: rank %d: error %d\n", rank, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Gather(h_out, (int)tn, MPI_FLOAT, g_out, (int)tn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Gather(h_dx, (int)tn, MPI_FLOAT, g_dx, (int)tn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Reduce(h_dg, g_dg, (int)ge, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        const int T = T_TOK * size;
        struct moe_ctx *ctx = NULL;
        struct moe_weights w, dw;
        void *ax = NULL, *adout = NULL, *rout = NULL, *rdx = NULL;
        float *r_out = calloc(tn * size, sizeof(float)), *r_dx = calloc(tn * size, sizeof(float));
        float *r_dg = calloc(ge, sizeof(float));
        rc = ops->ctx_create(&ctx, &cfg, T, T * cfg.top_k);
        rc = rc ? rc : tns_weights(&w, ops, &cfg, NULL, false, SEED, 0);
        rc = rc ? rc : tns_weights(&dw, ops, &cfg, NULL, true, SEED, 0);
        rc = rc ? rc : tns_tokens(&ax, ops, T, cfg.hidden, 0, TNS_X, SEED, 0);
        rc = rc ? rc : tns_tokens(&adout, ops, T, cfg.hidden, 0, TNS_DOUT, SEED, 0);
        rc = rc ? rc : ops->alloc(&rout, tn * size);
        rc = rc ? rc : ops->alloc(&rdx, tn * size);
        rc = rc ? rc : moe_forward(ops, ctx, &w, ax, T, rout);
        rc = rc ? rc : moe_backward(ops, ctx, &w, ax, adout, rdx, &dw);
        rc = rc ? rc : ops->download(r_out, rout, tn * size);
        rc = rc ? rc : ops->download(r_dx, rdx, tn * size);
        rc = rc ? rc : ops->download(r_dg, dw.gate, ge);
        if (rc) {
            fprintf(stderr, "mpi_gpu_test_eplayer: oracle error %d\n", rc);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        check("out", g_out, r_out, tn * size);
        check("dx", g_dx, r_dx, tn * size);
        check("dgate (summed over ranks)", g_dg, r_dg, ge);
        ops->ctx_free(ctx);
        tns_weights_free(&w, ops, &cfg);
        tns_weights_free(&dw, ops, &cfg);
        ops->free(ax);
        ops->free(adout);
        ops->free(rout);
        ops->free(rdx);
        free(r_out);
        free(r_dx);
        free(r_dg);
        printf("%s: np=%d, %d failure(s)\n", failures_ ? "FAIL" : "PASS", size, failures_);
    }
    MPI_Bcast(&failures_, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(h_out);
    free(h_dx);
    free(h_dg);
    free(g_dg);
    free(g_out);
    free(g_dx);
    ops->free(x);
    ops->free(dout);
    ops->free(out);
    ops->free(dx);
    epl_free(l);
    lay_free(&lay);
    gpu_nccl_free(nccl);
    MPI_Finalize();
    return failures_ ? 1 : 0;
}
