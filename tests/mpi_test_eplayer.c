/* mpi_test_eplayer.c: the expert-parallel layer (profile/eplayer.c) against the
 * one-process layer (kernels/moe.c, CPU backend) on the same inputs and seed.
 * Run under `mpirun -np N` for any N >= 1 (tests/e2e_moeprof.sh runs N = 1..4).
 *
 * Every rank runs epl_forward / epl_backward on its T tokens; rank 0 gathers the
 * outputs, dx and every gradient (an expert's summed over the ranks holding it, the
 * gate's and the shared experts' over all ranks) and runs moe_forward / moe_backward
 * on all N T tokens in one ctx. The oracle is that one-process run.
 * The layers run as a stack (profile/stack.h: h_{l+1} = h_l + moe_l(h_l), the backward
 * from the last layer down, each layer's dx the output gradient of the one below); the
 * oracle chains moe_forward / moe_backward the same way on the host, one ctx per layer.
 * Cases: softmax and sigmoid scores, with and without shared experts, with a
 * selection bias (the Zipf-style skew moeprof draws), with the routing forced from
 * per-rank counts (a routing trace replayed: the oracle forces the same assignments
 * between route and permute), on a layout where ranks hold unequal numbers of experts
 * in a scrambled slot order, and on one with replicas; one layer and stacks of 2 and 3;
 * with the aux loss (aux_alpha > 0: its counts and mean scores over the whole group,
 * eplayer.h), whose value and gradients (dgate, dx) must equal the one-process ones.
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
#include "stack.h"
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
    int layers;               /* a stack (stack.h): h_{l+1} = h_l + moe_l(h_l) */
    float aux;                /* aux_alpha: the aux loss over the group's batch */
};

/* Forced counts of rank r in layer l: these 7, summing to T_TOK K = 256 and none above
 * T_TOK, rotated by r + l (expert (e + r + l) mod 7 gets the e-th). */
static void forced_counts(int r, int l, uint64_t *c)
{
    static const uint64_t base[7] = { 100, 60, 40, 25, 15, 10, 6 };
    for (int e = 0; e < 7; e++)
        c[(e + r + l) % 7] = base[e];
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

#define LAYERS_MAX 4
#define LAYER0 3                  /* the stack's layer l draws its weights as layer 3 + l */

/* Rank 0's one-process oracle of the stack: layer l on all N T tokens in one ctx, the
 * residual added on the host: h_{l+1} = h_l + out_l; backward from the last layer,
 * dh_l = dh_{l+1} + moe_backward's dx. */
struct oracle {
    struct moe_ctx *ctx[LAYERS_MAX];
    struct moe_weights w[LAYERS_MAX], dw[LAYERS_MAX];
    float *h[LAYERS_MAX + 1];     /* h[0] = x */
    float *dh;                    /* dh_0 when done */
};

static int oracle_forward(struct oracle *o, const struct tcase *tc, const struct moe_cfg *cfg,
                          const float *bias, int l, float *out)
{
    const struct moe_ops *ops = moe_cpu_ops();
    const int T = T_TOK * size_;
    struct moe_weights *w = &o->w[l];
    int rc = ops->ctx_create(&o->ctx[l], cfg, T, T * cfg->top_k);
    rc = rc ? rc : tns_weights(w, ops, cfg, NULL, false, SEED, LAYER0 + l);
    rc = rc ? rc : tns_weights(&o->dw[l], ops, cfg, NULL, true, SEED, LAYER0 + l);
    if (rc)
        return rc;
    struct moe_ctx *ctx = o->ctx[l];
    w->bias = tc->bias ? bias : NULL;
    if (!tc->forced)
        return moe_forward(ops, ctx, w, o->h[l], T, out);
    /* moe_forward's stages, the routing forced between */
    int32_t *all_idx = calloc((size_t)T * cfg->top_k, sizeof(int32_t));
    rc = all_idx ? 0 : -ENOMEM;
    for (int r = 0; r < size_ && !rc; r++) {
        uint64_t rc_counts[7];
        forced_counts(r, l, rc_counts);
        rc = frc_fill(all_idx + (size_t)r * T_TOK * cfg->top_k, rc_counts, cfg->experts, T_TOK,
                      cfg->top_k);
    }
    rc = rc ? rc : ops->route(ctx, w, o->h[l], T);
    rc = rc ? rc : frc_apply(ctx, all_idx);
    struct moe_groups g = { .n = cfg->experts, .rows = ctx->host_counts };
    rc = rc ? rc : ops->permute(ctx, o->h[l], ctx->xp);
    rc = rc ? rc : ops->experts_fwd(ctx, w, &g, ctx->xp, ctx->yp);
    rc = rc ? rc : ops->combine(ctx, ctx->yp, out);
    rc = rc ? rc : ops->shared_fwd(ctx, w, o->h[l], out);
    free(all_idx);
    return rc;
}

static int oracle_run(struct oracle *o, const struct tcase *tc, const struct moe_cfg *cfg,
                      const float *bias)
{
    const struct moe_ops *ops = moe_cpu_ops();
    const int T = T_TOK * size_, L = tc->layers;
    const size_t n = (size_t)T * cfg->hidden;
    float *dnext = calloc(n, sizeof(float));
    void *ax = NULL, *adout = NULL;
    int rc = dnext ? 0 : -ENOMEM;
    for (int l = 0; l <= L && !rc; l++)
        rc = (o->h[l] = calloc(n, sizeof(float))) ? 0 : -ENOMEM;
    rc = rc ? rc : (o->dh = calloc(n, sizeof(float))) ? 0 : -ENOMEM;
    rc = rc ? rc : tns_tokens(&ax, ops, T, cfg->hidden, 0, TNS_X, SEED, LAYER0);
    rc = rc ? rc : tns_tokens(&adout, ops, T, cfg->hidden, 0, TNS_DOUT, SEED, LAYER0);
    if (!rc) {
        memcpy(o->h[0], ax, n * sizeof(float));
        memcpy(dnext, adout, n * sizeof(float));
    }
    for (int l = 0; l < L && !rc; l++) {
        rc = oracle_forward(o, tc, cfg, bias, l, o->h[l + 1]);
        for (size_t i = 0; i < n && !rc; i++)
            o->h[l + 1][i] += o->h[l][i];
    }
    for (int l = L - 1; l >= 0 && !rc; l--) {
        memcpy(o->dh, dnext, n * sizeof(float));
        rc = moe_backward(ops, o->ctx[l], &o->w[l], o->h[l], dnext, o->dh, &o->dw[l]);
        memcpy(dnext, o->dh, n * sizeof(float));
    }
    ops->free(ax);
    ops->free(adout);
    free(dnext);
    return rc;
}

static void oracle_free(struct oracle *o, const struct moe_cfg *cfg)
{
    const struct moe_ops *ops = moe_cpu_ops();
    for (int l = 0; l < LAYERS_MAX; l++) {
        ops->ctx_free(o->ctx[l]);
        if (o->w[l].gate)
            tns_weights_free(&o->w[l], ops, cfg);
        if (o->dw[l].gate)
            tns_weights_free(&o->dw[l], ops, cfg);
    }
    for (int l = 0; l <= LAYERS_MAX; l++)
        free(o->h[l]);
    free(o->dh);
}

/* Layer l's gradients: each summed over the ranks (zeros where a rank lacks it), checked
 * on rank 0 against the oracle's. */
static void check_grads(const char *cas, const struct moe_cfg *cfg, struct epl *l,
                        const struct moe_weights *ref, bool exact, float *sum, float *scr)
{
    const size_t h = (size_t)cfg->hidden, f = (size_t)cfg->ffn, e_n = (size_t)cfg->experts;
    const struct moe_weights *gw = epl_grads(l);
    sum_over(gw->gate, h * e_n, sum, scr);
    if (rank_ == 0)
        check(cas, "dgate", sum, ref->gate, h * e_n, false);
    for (int e = 0; e < cfg->experts; e++) {
        const char *nm[3] = { "dw1", "dw3", "dw2" };
        void *const *mine[3] = { gw->w1, gw->w3, gw->w2 };
        void *const *want[3] = { ref->w1, ref->w3, ref->w2 };
        for (int m = 0; m < 3; m++) {
            sum_over(mine[m][e], h * f, sum, scr);
            if (rank_ == 0) {
                char what[32];
                snprintf(what, sizeof(what), "%s[%d]", nm[m], e);
                check(cas, what, sum, want[m][e], h * f, exact);
            }
        }
    }
    for (int s = 0; s < cfg->shared; s++) {
        void *const *mine[3] = { gw->sw1, gw->sw3, gw->sw2 };
        void *const *want[3] = { ref->sw1, ref->sw3, ref->sw2 };
        for (int m = 0; m < 3; m++) {
            sum_over(mine[m][s], h * f, sum, scr);
            if (rank_ == 0)
                check(cas, "dshared", sum, want[m][s], h * f, false);
        }
    }
}

/* Counts add up to T K on every rank; forced, they are the forced ones. */
static void check_counts(const struct tcase *tc, const struct moe_cfg *cfg, struct epl *l,
                         int layer)
{
    const int32_t *cnt = epl_expert_counts(l);
    uint64_t fc[7];
    long tot = 0;
    forced_counts(rank_, layer, fc);
    for (int e = 0; e < cfg->experts; e++) {
        tot += cnt[e];
        if (tc->forced && (uint64_t)cnt[e] != fc[e]) {
            failures_++;
            printf("FAIL np=%d %s: rank %d layer %d expert %d: %d assignments, forced %llu\n",
                   size_, tc->name, rank_, layer, e, cnt[e], (unsigned long long)fc[e]);
        }
    }
    if (tot != (long)T_TOK * cfg->top_k) {
        failures_++;
        printf("FAIL np=%d %s: rank %d layer %d counts add to %ld, not %d\n", size_, tc->name,
               rank_, layer, tot, T_TOK * cfg->top_k);
    }
}

/* The expert side's buffers (eplayer.h) after one forward: the rows this rank received,
 * counted from every rank's per-expert counts and the layout (with replicas, from the
 * rows each rank sent it), are the peak; the capacity is where the buffers start,
 * min(T K + T K / 8, N T K), when they fit, else min(peak + peak / 8, N T K) (the growth
 * rule); the peaks add up to N T K; a skewed
 * (forced) routing on N >= 2 ranks has a rank whose peak passes the average T K. */
static void check_rows(const struct tcase *tc, const struct moe_cfg *cfg, const struct lay *lay,
                       struct epl *l, int layer)
{
    const int tk = T_TOK * cfg->top_k, E = cfg->experts;
    int32_t *cnt = calloc((size_t)size_ * E, sizeof(int32_t));
    int32_t *sent = calloc((size_t)size_ * size_, sizeof(int32_t));
    MPI_Allgather(epl_expert_counts(l), E, MPI_INT32_T, cnt, E, MPI_INT32_T, MPI_COMM_WORLD);
    MPI_Allgather(epl_send_rows(l), size_, MPI_INT32_T, sent, size_, MPI_INT32_T,
                  MPI_COMM_WORLD);
    long rows = 0;
    for (int src = 0; src < size_; src++) {
        if (tc->replicas)
            rows += sent[src * size_ + rank_];
        else
            for (int g = lay->rank0[rank_]; g < lay->rank0[rank_ + 1]; g++)
                rows += cnt[src * E + lay->slot_expert[g]];
    }
    struct epl_rows r = epl_rows(l);
    const long worst = (long)size_ * tk, start = tk + tk / 8 < worst ? tk + tk / 8 : worst;
    long want_cap = rows <= start ? start : rows + rows / 8 < worst ? rows + rows / 8 : worst;
    int peak_sum = 0, peak_max = 0;
    MPI_Allreduce(&r.peak, &peak_sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&r.peak, &peak_max, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    bool skew_ok = !(tc->forced && size_ >= 2) || peak_max > tk;
    if (r.peak != rows || r.cap != want_cap || r.worst != size_ * tk ||
        peak_sum != size_ * tk || !skew_ok) {
        failures_++;
        printf("FAIL np=%d %s: rank %d layer %d rows: peak %d (counts: %ld), cap %d (want %ld), "
               "worst %d, peaks add to %d (want %d), most %d (T K = %d)\n", size_, tc->name,
               rank_, layer, r.peak, rows, r.cap, want_cap, r.worst, peak_sum, size_ * tk,
               peak_max, tk);
    } else if (rank_ == 0) {
        printf("ok   np=%d %s layer %d: rows received = counts on every rank; most %d, "
               "average %d, buffers for %d rows\n", size_, tc->name, layer, peak_max, tk,
               r.cap);
    }
    free(cnt);
    free(sent);
}

/* The aux loss every rank reports for the group's batch equals the one-process loss
 * on all N T tokens (rank 0's ref) within 1e-5 relative, the same on every rank. */
static void check_aux(const char *cas, struct epl *l, float ref)
{
    float mine = epl_aux_loss(l), lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    if (rank_ != 0)
        return;
    if (lo != hi || !(fabs((double)mine - ref) <= 1e-5 * fabs(ref))) {
        failures_++;
        printf("FAIL np=%d %s aux loss: %.9g (ranks %.9g .. %.9g) vs %.9g\n", size_, cas, mine,
               lo, hi, ref);
    } else {
        printf("ok   np=%d %s aux loss: %.9g vs %.9g\n", size_, cas, mine, ref);
    }
}

static void run_case(const struct tcase *tc)
{
    const struct moe_ops *ops = moe_cpu_ops();
    struct moe_cfg cfg = { .hidden = 32, .ffn = 24, .experts = 7, .shared = tc->shared,
                           .top_k = 2, .score = tc->score, .norm_topk = true,
                           .route_scale = 1.0f, .aux_alpha = tc->aux };
    const int L = tc->layers;
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
    struct epl *l[LAYERS_MAX] = { NULL };
    struct stk st = { 0 };
    void *x = NULL, *dout = NULL;
    int rc = 0;
    for (int i = 0; i < L && !rc; i++) {
        struct epl_spec spec = { .cfg = cfg, .lay = &lay, .comm = MPI_COMM_WORLD,
                                 .tokens = T_TOK, .seed = SEED, .layer = LAYER0 + i,
                                 .bias = tc->bias ? bias : NULL };
        rc = epl_create(&l[i], ops, &spec);
        if (!rc && tc->forced) {
            int32_t idx[T_TOK * 2];
            uint64_t fc[7];
            forced_counts(rank_, i, fc);
            rc = frc_fill(idx, fc, cfg.experts, T_TOK, cfg.top_k);
            rc = rc ? rc : epl_force(l[i], idx);
        }
    }
    rc = rc ? rc : tns_tokens(&x, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_X, SEED,
                              LAYER0);
    rc = rc ? rc : tns_tokens(&dout, ops, T_TOK, cfg.hidden, (int64_t)rank_ * T_TOK, TNS_DOUT,
                              SEED, LAYER0);
    rc = rc ? rc : stk_create(&st, ops, NULL, l, L, T_TOK, cfg.hidden);
    rc = rc ? rc : stk_forward(&st, x, NULL);
    rc = rc ? rc : stk_backward(&st, dout, NULL);
    if (rc) {
        printf("FAIL np=%d %s: rank %d error %d\n", size_, tc->name, rank_, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    struct oracle o = { 0 };
    float *g_out = NULL, *g_dx = NULL;
    const size_t big = (h * e_n > h * f ? h * e_n : h * f);
    float *sum = calloc(big, sizeof(float)), *scr = calloc(big, sizeof(float));
    if (rank_ == 0) {
        g_out = calloc(all_n, sizeof(float));
        g_dx = calloc(all_n, sizeof(float));
        rc = oracle_run(&o, tc, &cfg, bias);
        if (rc) {
            printf("FAIL %s: oracle error %d\n", tc->name, rc);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    gather(stk_out(&st), tn, g_out);
    gather(stk_dx(&st), tn, g_dx);
    /* In a stack, the shared experts' rows (per-rank GEMMs) reach the next layer's
     * input: bitwise only without them. */
    bool exact = !tc->replicas && (L == 1 || tc->shared == 0);
    if (rank_ == 0) {
        check(tc->name, "out", g_out, o.h[L], all_n, exact && tc->shared == 0);
        check(tc->name, "dx", g_dx, o.dh, all_n, false);
    }
    for (int i = 0; i < L; i++) {
        char cas[96];
        snprintf(cas, sizeof(cas), L > 1 ? "%s layer %d" : "%s", tc->name, i);
        check_grads(cas, &cfg, l[i], &o.dw[i], exact, sum, scr);
        check_counts(tc, &cfg, l[i], i);
        check_rows(tc, &cfg, &lay, l[i], i);
        check_aux(cas, l[i], rank_ == 0 ? o.ctx[i]->aux_loss : 0.0f);
    }
    if (rank_ == 0)
        oracle_free(&o, &cfg);
    free(g_out);
    free(g_dx);
    free(sum);
    free(scr);
    stk_free(&st);
    ops->free(x);
    ops->free(dout);
    for (int i = 0; i < L; i++)
        epl_free(l[i]);
    lay_free(&lay);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    static const struct tcase cases[] = {
        { "softmax", MOE_SCORE_SOFTMAX, 0, false, false, false, 1, 0.0f },
        { "sigmoid+shared", MOE_SCORE_SIGMOID, 1, false, false, false, 1, 0.0f },
        { "softmax+shared+bias", MOE_SCORE_SOFTMAX, 2, true, false, false, 1, 0.0f },
        { "sigmoid+bias+replicas", MOE_SCORE_SIGMOID, 0, true, true, false, 1, 0.0f },
        { "softmax+shared+replicas", MOE_SCORE_SOFTMAX, 1, false, true, false, 1, 0.0f },
        { "softmax+forced", MOE_SCORE_SOFTMAX, 0, false, false, true, 1, 0.0f },
        { "sigmoid+shared+forced+replicas", MOE_SCORE_SIGMOID, 1, false, true, true, 1, 0.0f },
        { "3 layers softmax", MOE_SCORE_SOFTMAX, 0, false, false, false, 3, 0.0f },
        { "3 layers sigmoid+shared+bias+replicas", MOE_SCORE_SIGMOID, 1, true, true, false, 3, 0.0f },
        { "2 layers softmax+forced", MOE_SCORE_SOFTMAX, 0, false, false, true, 2, 0.0f },
        { "softmax+aux", MOE_SCORE_SOFTMAX, 0, false, false, false, 1, 0.5f },
        { "sigmoid+shared+bias+replicas+aux", MOE_SCORE_SIGMOID, 1, true, true, false, 1, 0.5f },
        { "2 layers softmax+shared+aux", MOE_SCORE_SOFTMAX, 1, false, false, false, 2, 0.5f },
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
