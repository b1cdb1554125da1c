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
 * Cases: the gate's own routing; a forced routing (force.h: per-rank counts, the
 * oracle forcing the same assignments on its ctx through frc_apply_copy); the phases
 * timed with CUDA events (gpu.h: gpu_ev_*), whose 15 records must lie in order,
 * without overlap, between the iteration's anchor and the host's end.
 * Never run here (no GPU was lent); untested on more than one GPU.
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplayer.h"
#include "force.h"
#include "gpu.h"
#include "layout.h"
#include "moe_cuda.h"
#include "tensors.h"

#define T_TOK 128
#define SEED 777u

static int rank_, size_;

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

/* Forced counts of rank r: these 8 sum to T_TOK K = 256, none above T_TOK, rotated by
 * r (expert (e + r) mod 8 gets the e-th). */
static void forced_counts(int r, uint64_t *c)
{
    static const uint64_t base[8] = { 90, 60, 40, 25, 15, 12, 8, 6 };
    for (int e = 0; e < 8; e++)
        c[(e + r) % 8] = base[e];
}

/* The records [first, t->n) of one timed iteration: in order on the device, no
 * overlap (each phase's start event is recorded after the previous end event), all
 * within [anchor, host end]. */
static void check_events(const struct tmr *t, size_t first, double t_end_s)
{
    size_t bad = 0, n = t->n - first;
    double prev_end = 0.0;
    for (size_t i = first; i < t->n; i++) {
        const struct tmr_rec *r = &t->rec[i];
        bool ok = isfinite(r->t0_s) && r->dur_s >= 0.0 && r->t0_s + r->dur_s <= t_end_s + 1e-3 &&
                  (i == first || r->t0_s >= prev_end - 1e-6);
        bad += !ok;
        prev_end = r->t0_s + r->dur_s;
    }
    bool ok = bad == 0 && n == TMR_NPHASES - 1;
    failures_ += !ok;
    printf("%s rank %d: event timing: %zu phases (want %d), %zu out of order or outside the "
           "iteration\n", ok ? "ok  " : "FAIL", rank_, n, TMR_NPHASES - 1, bad);
}

/* The one-process CUDA layer on all N T tokens (rank 0), forced like the ranks when
 * forced: route, the forced arrays (frc_apply_copy), the stages. */
static int oracle(const struct moe_ops *ops, const struct moe_cfg *cfg, bool forced,
                  float *r_out, float *r_dx, float *r_dg)
{
    const int T = T_TOK * size_;
    const size_t tn = (size_t)T * cfg->hidden, ge = (size_t)cfg->hidden * cfg->experts;
    struct moe_ctx *ctx = NULL;
    struct moe_weights w, dw;
    struct frc_host fh = { 0 };
    void *ax = NULL, *adout = NULL, *rout = NULL, *rdx = NULL;
    int32_t *idx = calloc((size_t)T * cfg->top_k, sizeof(int32_t));
    int rc = idx ? 0 : -ENOMEM;
    rc = rc ? rc : ops->ctx_create(&ctx, cfg, T, T * cfg->top_k);
    rc = rc ? rc : tns_weights(&w, ops, cfg, NULL, false, SEED, 0);
    rc = rc ? rc : tns_weights(&dw, ops, cfg, NULL, true, SEED, 0);
    rc = rc ? rc : tns_tokens(&ax, ops, T, cfg->hidden, 0, TNS_X, SEED, 0);
    rc = rc ? rc : tns_tokens(&adout, ops, T, cfg->hidden, 0, TNS_DOUT, SEED, 0);
    rc = rc ? rc : ops->alloc(&rout, tn);
    rc = rc ? rc : ops->alloc(&rdx, tn);
    if (!rc && !forced) {
        rc = moe_forward(ops, ctx, &w, ax, T, rout);
    } else if (!rc) {
        for (int r = 0; r < size_ && !rc; r++) {
            uint64_t c[8];
            forced_counts(r, c);
            rc = frc_fill(idx + (size_t)r * T_TOK * cfg->top_k, c, cfg->experts, T_TOK,
                          cfg->top_k);
        }
        rc = rc ? rc : frc_host_create(&fh, T, cfg->top_k, cfg->experts);
        rc = rc ? rc : ops->route(ctx, &w, ax, T);
        rc = rc ? rc : frc_apply_copy(ctx, idx, moe_cuda_copy, &fh);
        struct moe_groups g = { .n = cfg->experts, .rows = ctx ? ctx->host_counts : NULL };
        rc = rc ? rc : ops->permute(ctx, ax, ctx->xp);
        rc = rc ? rc : ops->experts_fwd(ctx, &w, &g, ctx->xp, ctx->yp);
        rc = rc ? rc : ops->combine(ctx, ctx->yp, rout);
        rc = rc ? rc : ops->shared_fwd(ctx, &w, ax, rout);
    }
    rc = rc ? rc : moe_backward(ops, ctx, &w, ax, adout, rdx, &dw);
    rc = rc ? rc : ops->download(r_out, rout, tn);
    rc = rc ? rc : ops->download(r_dx, rdx, tn);
    rc = rc ? rc : ops->grad_download(r_dg, dw.gate, ge);
    ops->ctx_free(ctx);
    tns_weights_free(&w, ops, cfg);
    tns_weights_free(&dw, ops, cfg);
    ops->free(ax);
    ops->free(adout);
    ops->free(rout);
    ops->free(rdx);
    frc_host_free(&fh);
    free(idx);
    return rc;
}

static void run_case(const char *name, struct gpu_nccl *nccl, bool forced, bool timed)
{
    const struct moe_ops *ops = moe_cuda_ops();
    struct moe_cfg cfg = { .hidden = 64, .ffn = 32, .experts = 8, .shared = 1, .top_k = 2,
                           .score = MOE_SCORE_SOFTMAX, .norm_topk = true,
                           .route_scale = 1.0f, .aux_alpha = 0.0f };
    const size_t h = (size_t)cfg.hidden, tn = (size_t)T_TOK * h, ge = h * cfg.experts;
    struct lay lay;
    struct epl *l = NULL;
    struct gpu_ev *ev = NULL;
    struct tmr tm = { 0 };
    void *x = NULL, *dout = NULL, *out = NULL, *dx = NULL;
    int rc = lay_contiguous(&lay, size_, cfg.experts);
    struct epl_io io = gpu_io(nccl);
    if (timed) {
        rc = rc ? rc : gpu_ev_create(&ev, TMR_NPHASES);
        rc = rc ? rc : tmr_create(&tm, TMR_NPHASES);
        io.mark = gpu_ev_mark;
        io.mark_arg = ev;
    }
    struct epl_spec spec = { .cfg = cfg, .lay = &lay, .comm = MPI_COMM_WORLD, .tokens = T_TOK,
                             .seed = SEED, .layer = 0, .io = &io };
    rc = rc ? rc : epl_create(&l, ops, &spec);
    if (!rc && forced) {
        int32_t idx[T_TOK * 2];
        uint64_t c[8];
        forced_counts(rank_, c);
        rc = frc_fill(idx, c, cfg.experts, T_TOK, cfg.top_k);
        rc = rc ? rc : epl_force(l, idx);
    }
    rc = rc ? rc : tns_tokens(&x, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_X, SEED, 0);
    rc = rc ? rc : tns_tokens(&dout, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_DOUT,
                              SEED, 0);
    rc = rc ? rc : ops->alloc(&out, tn);
    rc = rc ? rc : ops->alloc(&dx, tn);
    rc = rc ? rc : timed ? gpu_ev_anchor(ev) : 0;
    rc = rc ? rc : epl_forward(l, x, out, timed ? &tm : NULL);
    rc = rc ? rc : epl_backward(l, x, dout, dx, timed ? &tm : NULL);
    rc = rc ? rc : timed ? gpu_ev_resolve(ev, &tm, 0) : 0;
    double t_end_s = tmr_now_s();
    float *h_out = calloc(tn, sizeof(float)), *h_dx = calloc(tn, sizeof(float));
    float *h_dg = calloc(ge, sizeof(float)), *g_dg = calloc(ge, sizeof(float));
    float *g_out = calloc(tn * size_, sizeof(float)), *g_dx = calloc(tn * size_, sizeof(float));
    rc = rc ? rc : ops->download(h_out, out, tn);
    rc = rc ? rc : ops->download(h_dx, dx, tn);
    rc = rc ? rc : ops->grad_download(h_dg, epl_grads(l)->gate, ge);
    if (rc) {
        fprintf(stderr, "mpi_gpu_test_eplayer: %s: rank %d: error %d\n", name, rank_, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (timed)
        check_events(&tm, 0, t_end_s);
    MPI_Gather(h_out, (int)tn, MPI_FLOAT, g_out, (int)tn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Gather(h_dx, (int)tn, MPI_FLOAT, g_dx, (int)tn, MPI_FLOAT, 0, MPI_COMM_WORLD);
    MPI_Reduce(h_dg, g_dg, (int)ge, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank_ == 0) {
        float *r_out = calloc(tn * size_, sizeof(float)), *r_dx = calloc(tn * size_, sizeof(float));
        float *r_dg = calloc(ge, sizeof(float));
        if ((rc = oracle(ops, &cfg, forced, r_out, r_dx, r_dg))) {
            fprintf(stderr, "mpi_gpu_test_eplayer: %s: oracle error %d\n", name, rc);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        char what[96];
        snprintf(what, sizeof(what), "%s out", name);
        check(what, g_out, r_out, tn * size_);
        snprintf(what, sizeof(what), "%s dx", name);
        check(what, g_dx, r_dx, tn * size_);
        snprintf(what, sizeof(what), "%s dgate (summed over ranks)", name);
        check(what, g_dg, r_dg, ge);
        free(r_out);
        free(r_dx);
        free(r_dg);
    }
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
    gpu_ev_free(ev);
    tmr_free(&tm);
    lay_free(&lay);
}

int main(int argc, char **argv)
{
    char why[256] = "", msg[512] = "";
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    int devs = moe_cuda_probe(why, sizeof(why)), none = devs < 1, any_none = 0;
    MPI_Allreduce(&none, &any_none, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_none) {
        if (rank_ == 0)
            printf("SKIP: mpi_gpu_test_eplayer: no GPU on some rank (%s)\n",
                   none ? why : "another rank");
        MPI_Finalize();
        return 0;
    }
    struct gpu_nccl *nccl = NULL;
    int rc = gpu_select(MPI_COMM_WORLD, msg, sizeof(msg));
    if (rc || 8 % size_) {
        fprintf(stderr, "mpi_gpu_test_eplayer: %s\n", rc ? msg : "ranks must divide 8 experts");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rc = gpu_nccl_create(&nccl, MPI_COMM_WORLD, 64 * moe_cuda_ops()->elem_bytes);
    if (rc) {
        fprintf(stderr, "mpi_gpu_test_eplayer: NCCL: error %d\n", rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    run_case("gate", nccl, false, false);
    run_case("forced", nccl, true, false);
    run_case("events", nccl, false, true);
    int all = 0;
    MPI_Allreduce(&failures_, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ == 0)
        printf("%s: np=%d, %d failure(s)\n", all ? "FAIL" : "PASS", size_, all);
    gpu_nccl_free(nccl);
    MPI_Finalize();
    return all ? 1 : 0;
}
