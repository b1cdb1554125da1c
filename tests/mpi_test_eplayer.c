/* mpi_test_eplayer.c: the expert-parallel layer (profile/eplayer.c) against the
 * one-process layer (kernels/moe.c, CPU backend) on the same inputs and seed.
 * Run under `mpirun -np N` for any N >= 1 (tests/e2e_moeprof.sh runs N = 1..4).
 *
 * Every rank runs epl_forward / epl_backward on its T tokens; rank 0 gathers the
 * outputs, dx and every gradient (an expert's summed over the ranks holding it, the
 * gate's and the shared experts' over all ranks) and runs moe_forward / moe_backward
 * on all N T tokens in one ctx. The oracle is that one-process run.
 * Cases: softmax and sigmoid scores, with and without shared experts, with a
 * selection bias (the Zipf-style skew moeprof draws), with the routing forced from
 * per-rank counts (a routing trace replayed: the oracle forces the same assignments
 * between route and permute), on a layout where ranks hold unequal numbers of experts
 * in a scrambled slot order, and on one with replicas.
 * What must be bitwise (eplayer.h): with T = 128 (the CPU gate's block) and no
 * replicas, the logits, hence the routing, and each expert's rows and GEMMs are those
 * of one process: outputs without shared experts and the experts' gradients equal bit
 * for bit. Everything else (shared experts and gate GEMMs over a rank's tokens only,
 * partial sums over ranks, replicas splitting an expert's rows) within
 *   |got - ref| <= 1e-5 |ref| + 1e-5 max|ref of the tensor|.
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
#include "layout.h"
#include "moe_cpu.h"
#include "tensors.h"

#define T_TOK 128
#define SEED 20240611u

static int rank_, size_;
static int failures_;

/* Rank 0: compares n values; bitwise demands equal bits. */
static void check(const char *cas, const char *what, const float *got, const float *ref,
                  size_t n, bool bitwise)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    size_t bad = 0, first = 0, diff_bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &ref[i], sizeof(float)))
            diff_bits++;
        double tol = 1e-5 * fabs(ref[i]) + 1e-5 * mx;
        if (!(fabs((double)got[i] - ref[i]) <= tol) || (bitwise && memcmp(&got[i], &ref[i], 4))) {
            if (!bad)
                first = i;
            bad++;
        }
    }
    if (bad) {
        failures_++;
        printf("FAIL np=%d %s %s: %zu of %zu differ%s (first [%zu]: %.9g vs %.9g)\n", size_,
               cas, what, bad, n, bitwise ? " in bits" : "", first, got[first], ref[first]);
    } else {
        printf("ok   np=%d %s %s: %zu values, %s\n", size_, cas, what, n,
               diff_bits ? "within 1e-5" : "bitwise equal");
    }
}

/* Rank 0 gets every rank's n floats, rank order; others send. */
static void gather(const float *mine, size_t n, float *all)
{
    MPI_Gather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
}

/* Sum of a tensor over ranks, in rank order, on rank 0 (NULL pointer: zeros). */
static void sum_over(const float *mine, size_t n, float *sum, float *scratch)
{
    const float *src = mine;
    float *zero = NULL;
    if (!src) {
        zero = calloc(n, sizeof(float));
        src = zero;
    }
    if (rank_ == 0)
        memset(sum, 0, n * sizeof(float));
    for (int r = 0; r < size_; r++) {
        if (r == 0 && rank_ == 0)
            memcpy(scratch, src, n * sizeof(float));
        else if (rank_ == r)
            MPI_Send(src, (int)n, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
        else if (rank_ == 0)
            MPI_Recv(scratch, (int)n, MPI_FLOAT, r, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rank_ == 0)
            for (size_t i = 0; i < n; i++)
                sum[i] += scratch[i];
    }
    free(zero);
}

struct tcase {
    const char *name;
    enum moe_score score;
    int shared;
    bool bias;
    bool replicas;
    bool forced;              /* routing forced from per-rank counts (force.h) */
};

/* Forced counts of rank r: these 7, summing to T_TOK K = 256 and none above T_TOK,
 * rotated by r (expert (e + r) mod 7 gets the e-th). */
static void forced_counts(int r, uint64_t *c)
{
    static const uint64_t base[7] = { 100, 60, 40, 25, 15, 10, 6 };
    for (int e = 0; e < 7; e++)
        c[(e + r) % 7] = base[e];
}

/* Unequal: expert e on rank min(e / 2, N - 1), each rank's experts in descending order
 * (so send order is not expert order). Replicas: round-robin plus, on each rank r, a
 * replica of expert (r + 1) mod E. */
static int make_layout(struct lay *l, int experts, bool replicas)
{
    int per[64] = { 0 }, ex[256], n = 0;
    for (int r = 0; r < size_; r++) {
        if (!replicas) {
            for (int e = experts - 1; e >= 0; e--)
                if ((e / 2 < size_ - 1 ? e / 2 : size_ - 1) == r)
                    ex[n++] = e, per[r]++;
        } else {
            for (int e = r; e < experts; e += size_)
                ex[n++] = e, per[r]++;
            if (size_ > 1)
                ex[n++] = (r + 1) % experts, per[r]++;
        }
    }
    return lay_create(l, size_, experts, per, ex);
}

static void run_case(const struct tcase *tc)
{
    const struct moe_ops *ops = moe_cpu_ops();
    struct moe_cfg cfg = { .hidden = 32, .ffn = 24, .experts = 7, .shared = tc->shared,
                           .top_k = 2, .score = tc->score, .norm_topk = true,
                           .route_scale = 1.0f, .aux_alpha = 0.0f };
    const size_t h = (size_t)cfg.hidden, f = (size_t)cfg.ffn, e_n = (size_t)cfg.experts;
    const size_t tn = (size_t)T_TOK * h, all_n = tn * (size_t)size_;
    float bias[16];
    for (int e = 0; e < cfg.experts; e++)
        bias[e] = 0.02f * logf((float)cfg.experts / (float)(e + 1));

    struct lay lay;
    if (make_layout(&lay, cfg.experts, tc->replicas)) {
        failures_++;
        printf("FAIL %s: layout\n", tc->name);
        return;
    }
    struct epl_spec spec = { .cfg = cfg, .lay = &lay, .comm = MPI_COMM_WORLD,
                             .tokens = T_TOK, .seed = SEED, .layer = 3,
                             .bias = tc->bias ? bias : NULL };
    struct epl *l;
    int rc = epl_create(&l, ops, &spec);
    void *x, *dout;
    float *out = calloc(tn, sizeof(float)), *dx = calloc(tn, sizeof(float));
    rc = rc ? rc : tns_tokens(&x, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_X, SEED, 3);
    rc = rc ? rc : tns_tokens(&dout, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_DOUT,
                              SEED, 3);
    int32_t idx[T_TOK * 2];
    uint64_t fc[7];
    if (tc->forced) {
        forced_counts(rank_, fc);
        rc = rc ? rc : frc_fill(idx, fc, cfg.experts, T_TOK, cfg.top_k);
        rc = rc ? rc : epl_force(l, idx);
    }
    rc = rc ? rc : epl_forward(l, x, out, NULL);
    rc = rc ? rc : epl_backward(l, x, dout, dx, NULL);
    if (rc) {
        printf("FAIL np=%d %s: rank %d error %d\n", size_, tc->name, rank_, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    /* Rank 0: the one-process oracle. */
    float *g_out = NULL, *g_dx = NULL, *r_out = NULL, *r_dx = NULL, *sum = NULL, *scr = NULL;
    struct moe_ctx *ctx = NULL;
    struct moe_weights w, dw;
    void *ax = NULL, *adout = NULL;
    const size_t big = (h * e_n > h * f ? h * e_n : h * f);
    if (rank_ == 0) {
        g_out = calloc(all_n, sizeof(float));
        g_dx = calloc(all_n, sizeof(float));
        r_out = calloc(all_n, sizeof(float));
        r_dx = calloc(all_n, sizeof(float));
        sum = calloc(big, sizeof(float));
        scr = calloc(big, sizeof(float));
        int T = T_TOK * size_;
        rc = ops->ctx_create(&ctx, &cfg, T, T * cfg.top_k);
        rc = rc ? rc : tns_weights(&w, ops, &cfg, NULL, false, SEED, 3);
        rc = rc ? rc : tns_weights(&dw, ops, &cfg, NULL, true, SEED, 3);
        w.bias = tc->bias ? bias : NULL;
        rc = rc ? rc : tns_tokens(&ax, ops, T, cfg.hidden, 0, TNS_X, SEED, 3);
        rc = rc ? rc : tns_tokens(&adout, ops, T, cfg.hidden, 0, TNS_DOUT, SEED, 3);
        if (!tc->forced) {
            rc = rc ? rc : moe_forward(ops, ctx, &w, ax, T, r_out);
        } else {                  /* moe_forward's stages, the routing forced between */
            int32_t *all_idx = calloc((size_t)T * cfg.top_k, sizeof(int32_t));
            rc = rc ? rc : all_idx ? 0 : -ENOMEM;
            for (int r = 0; r < size_ && !rc; r++) {
                uint64_t rc_counts[7];
                forced_counts(r, rc_counts);
                rc = frc_fill(all_idx + (size_t)r * T_TOK * cfg.top_k, rc_counts, cfg.experts,
                              T_TOK, cfg.top_k);
            }
            rc = rc ? rc : ops->route(ctx, &w, ax, T);
            rc = rc ? rc : frc_apply(ctx, all_idx);
            struct moe_groups g = { .n = cfg.experts, .rows = ctx->host_counts };
            rc = rc ? rc : ops->permute(ctx, ax, ctx->xp);
            rc = rc ? rc : ops->experts_fwd(ctx, &w, &g, ctx->xp, ctx->yp);
            rc = rc ? rc : ops->combine(ctx, ctx->yp, r_out);
            rc = rc ? rc : ops->shared_fwd(ctx, &w, ax, r_out);
            free(all_idx);
        }
        rc = rc ? rc : moe_backward(ops, ctx, &w, ax, adout, r_dx, &dw);
        if (rc) {
            printf("FAIL %s: oracle error %d\n", tc->name, rc);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    } else {
        sum = calloc(big, sizeof(float));
        scr = calloc(big, sizeof(float));
    }
    gather(out, tn, g_out);
    gather(dx, tn, g_dx);
    bool exact = !tc->replicas;
    char cas[96];
    snprintf(cas, sizeof(cas), "%s", tc->name);
    if (rank_ == 0) {
        check(cas, "out", g_out, r_out, all_n, exact && tc->shared == 0);
        check(cas, "dx", g_dx, r_dx, all_n, false);
    }
    const struct moe_weights *gw = epl_grads(l);
    sum_over(gw->gate, h * e_n, sum, scr);
    if (rank_ == 0)
        check(cas, "dgate", sum, dw.gate, h * e_n, false);
    for (int e = 0; e < cfg.experts; e++) {
        const char *nm[3] = { "dw1", "dw3", "dw2" };
        void *const *mine[3] = { gw->w1, gw->w3, gw->w2 };
        void *const *ref[3] = { dw.w1, dw.w3, dw.w2 };
        for (int m = 0; m < 3; m++) {
            sum_over(mine[m][e], h * f, sum, scr);
            if (rank_ == 0) {
                char what[32];
                snprintf(what, sizeof(what), "%s[%d]", nm[m], e);
                check(cas, what, sum, ref[m][e], h * f, exact);
            }
        }
    }
    for (int s = 0; s < cfg.shared; s++) {
        void *const *mine[3] = { gw->sw1, gw->sw3, gw->sw2 };
        void *const *ref[3] = { dw.sw1, dw.sw3, dw.sw2 };
        for (int m = 0; m < 3; m++) {
            sum_over(mine[m][s], h * f, sum, scr);
            if (rank_ == 0)
                check(cas, "dshared", sum, ref[m][s], h * f, false);
        }
    }
    /* Counts add up to T K on every rank; forced, they are the forced ones. */
    const int32_t *cnt = epl_expert_counts(l);
    long tot = 0;
    for (int e = 0; e < cfg.experts; e++) {
        tot += cnt[e];
        if (tc->forced && (uint64_t)cnt[e] != fc[e]) {
            failures_++;
            printf("FAIL np=%d %s: rank %d expert %d: %d assignments, forced %llu\n", size_,
                   tc->name, rank_, e, cnt[e], (unsigned long long)fc[e]);
        }
    }
    if (tot != (long)T_TOK * cfg.top_k) {
        failures_++;
        printf("FAIL np=%d %s: rank %d counts add to %ld, not %d\n", size_, tc->name, rank_,
               tot, T_TOK * cfg.top_k);
    }
    if (rank_ == 0) {
        ops->ctx_free(ctx);
        tns_weights_free(&w, ops, &cfg);
        tns_weights_free(&dw, ops, &cfg);
        ops->free(ax);
        ops->free(adout);
    }
    free(g_out);
    free(g_dx);
    free(r_out);
    free(r_dx);
    free(sum);
    free(scr);
    free(out);
    free(dx);
    ops->free(x);
    ops->free(dout);
    epl_free(l);
    lay_free(&lay);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    static const struct tcase cases[] = {
        { "softmax", MOE_SCORE_SOFTMAX, 0, false, false, false },
        { "sigmoid+shared", MOE_SCORE_SIGMOID, 1, false, false, false },
        { "softmax+shared+bias", MOE_SCORE_SOFTMAX, 2, true, false, false },
        { "sigmoid+bias+replicas", MOE_SCORE_SIGMOID, 0, true, true, false },
        { "softmax+shared+replicas", MOE_SCORE_SOFTMAX, 1, false, true, false },
        { "softmax+forced", MOE_SCORE_SOFTMAX, 0, false, false, true },
        { "sigmoid+shared+forced+replicas", MOE_SCORE_SIGMOID, 1, false, true, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
    int all = 0;
    MPI_Allreduce(&failures_, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank_ == 0)
        printf("%s: np=%d, %d failure(s)\n", all ? "FAIL" : "PASS", size_, all);
    MPI_Finalize();
    return all ? 1 : 0;
}
