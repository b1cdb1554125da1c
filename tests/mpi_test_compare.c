/* mpi_test_compare.c: profile/compare (moeprof run --compare) on a synthetic run, no clock.
 * Run as one process (mpirun -np 1); prints "PASS: np=1, 0 failures" (tests/e2e_topo.sh).
 *
 * The run: 2 ranks on one node, one EP group, 2 experts (contiguous: expert e on rank e),
 * top-1, hidden 64, fp32 rows (256 B), 100 tokens per rank, 3 iterations of 2 layers.
 * Every iteration routes alike, each layer its own way:
 *  - layer 0: rank 0 sends 70 tokens to expert 0 and 30 to expert 1, rank 1 40 and 60.
 *    The dispatch moves 30 rows (7680 B) 0 -> 1 and 40 rows (10240 B) 1 -> 0, the
 *    combine the transpose; expert 0 (rank 0) receives 110 rows, expert 1 (rank 1) 90.
 *  - layer 1: rank 0 50 and 50, rank 1 20 and 80: 50 rows (12800 B) 0 -> 1, 20 rows
 *    (5120 B) 1 -> 0; expert 0 receives 70 rows, expert 1 130.
 * The records: every phase of both ranks starts at the same instant and lasts base x
 * (0.9, 1, 1.3) in iterations 0, 1, 2, so each rank's median is its base, and every
 * rank's median iteration is iteration 1 in every phase and layer. The all-to-all after
 * the experts (fwd.combine, bwd.dispatch) lasts its transfer plus the wait for the other
 * rank's experts where they take longer (the ranks' expert times differ): base =
 * transfer + (the longer expert time of the two) - (the rank's own), the wait moesim's
 * timeline predicts (compare.h), checked on its own.
 * The calibration, made from layer 0's all-to-all and both layers' expert times:
 *  - expert_table rows at the measured token counts: 70 -> (1800, 3800) us,
 *    90 -> (2000, 4250), 110 -> (2500, 5500), 130 -> (3000, 6400); compute.h reads a
 *    table exactly at its rows. So fwd.experts bases are 2.5 and 2 ms (ranks 0, 1) in
 *    layer 0, 1.8 and 3 ms in layer 1; bwd.experts 5.5, 4.25 and 3.8, 6.4 ms.
 *  - the intra-node tier: moesim's GPU g finishes an all-to-all at path latency +
 *    (the larger of its bytes out and in) / bandwidth (a2a.h; each flow alone on its
 *    GPU's NVLink out and the peer's in, topo.h), in layer 0 10240 B on both GPUs; the
 *    path latency is 2 x nvlink_latency_us (topo.c: out of one GPU, into the other), set
 *    to 2 x 5 us, and the bandwidth solved from layer 0's measured 1 ms:
 *    B = 10240 / (1e-3 - 1e-5). Layer 1's all-to-alls (12800 B the larger way on both
 *    GPUs) are then recorded at what that law gives: 1e-5 + 12800 / B = 1.2475 ms.
 * Then moesim's prediction equals the measurement within 1e-9 (relative) in every
 * modelled row of each layer, on the median rank and the slowest, the sums of each pass,
 * and the rows of both layers summed (the median of sums is the sum of medians, as each
 * rank's median iteration is the same one everywhere). Unmodelled phases have no
 * prediction.
 * Failures: a missing calibration file, a table with decreasing tokens (its file:line),
 * eplb without a trace, ranks not in consecutive blocks per node.
 */
#include <CUnit/Basic.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "cu_run.h"
#include "tmp_dir.h"

#define RANKS 2
#define ITERS 3
#define E 2
#define H 64
#define LAYERS 2
#define NREC (LAYERS * ITERS * 15)

static char dir[256];
static const double mult[ITERS] = { 0.9, 1.0, 1.3 };
static const double lat_s = 2 * 5e-6;
static const double comm_s[LAYERS] = { 1e-3, 1e-5 + 12800 * (1e-3 - 1e-5) / 10240 };
static const double fwd_ex_s[LAYERS][RANKS] = { { 2.5e-3, 2.0e-3 }, { 1.8e-3, 3.0e-3 } };
static const double bwd_ex_s[LAYERS][RANKS] = { { 5.5e-3, 4.25e-3 }, { 3.8e-3, 6.4e-3 } };
static const int32_t counts1[LAYERS][RANKS][E] = { { { 70, 30 }, { 40, 60 } },
                                                   { { 50, 50 }, { 20, 80 } } };

static struct tmr_rec rec[RANKS * NREC];
static size_t rec0[RANKS + 1];
static double off[RANKS], err[RANKS];
static int32_t counts[LAYERS * ITERS * RANKS * E], rows[LAYERS * ITERS * RANKS * RANKS];
static int node[RANKS];
static struct rec_run run;

static double base(int layer, int rank, int phase)
{
    int s = phase % TMR_NSTEPS;
    const double *ex = phase < TMR_NSTEPS ? fwd_ex_s[layer] : bwd_ex_s[layer];
    if (phase == TMR_COMBINE || phase == TMR_NSTEPS + TMR_DISPATCH)
        return comm_s[layer] + (fmax(ex[0], ex[1]) - ex[rank]);
    if (s == TMR_DISPATCH || s == TMR_COMBINE || s == TMR_COUNTS)
        return comm_s[layer];
    if (s == TMR_EXPERTS)
        return phase < TMR_NSTEPS ? fwd_ex_s[layer][rank] : bwd_ex_s[layer][rank];
    return 1e-4;
}

static void put(const char *name, const char *text)
{
    char p[300];
    FILE *f = fopen(tmp_dir_path(p, sizeof(p), dir, name), "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int init(void)
{
    if (tmp_dir_make(dir, sizeof(dir), "test_compare"))
        return -1;
    size_t n = 0;
    for (int k = 0; k < RANKS; k++) {
        rec0[k] = n;
        for (int it = 0; it < ITERS; it++)
            for (int l = 0; l < LAYERS; l++)
                for (int ph = 0; ph < TMR_NPHASES; ph++) {
                    if (ph == TMR_NSTEPS + TMR_COUNTS)    /* counts has no backward */
                        continue;
                    int s = ph % TMR_NSTEPS, peer_rows = counts1[l][k][1 - k];
                    bool a2a = s == TMR_DISPATCH || s == TMR_COMBINE;
                    rec[n++] = (struct tmr_rec){ .iter = it, .layer = l, .phase = ph,
                                                 .t0_s = it + 0.5 * l + 0.02 * ph,
                                                 .dur_s = base(l, k, ph) * mult[it],
                                                 .bytes = a2a ? (uint64_t)peer_rows * H * 4 : 0 };
                }
    }
    rec0[RANKS] = n;
    for (int l = 0; l < LAYERS; l++)
        for (int it = 0; it < ITERS; it++)
            for (int k = 0; k < RANKS; k++)
                for (int e = 0; e < E; e++) {
                    size_t i = ((size_t)l * ITERS + it) * RANKS + k;
                    counts[i * E + e] = counts1[l][k][e];
                    rows[i * RANKS + e] = counts1[l][k][e];        /* expert e on rank e */
                }
    run = (struct rec_run){ .ranks = RANKS, .ep = RANKS, .layers = LAYERS, .iters = ITERS,
                            .experts = E, .hidden = H, .elem_bytes = 4, .rec = rec,
                            .rec0 = rec0, .offset_s = off, .err_s = err, .counts = counts,
                            .send_rows = rows, .node = node };

    put("run.ini", "[cluster]\nnodes = 1\ngpus_per_node = 8\n"
          "[model]\nhidden = 64\nexperts = 2\ntop_k = 1\nshared_experts = 0\n"
          "expert_ffn_hidden = 128\n[parallel]\nep = 2\n[routing]\ntokens_per_gpu = 100\n"
          "distribution = zipf\n[balance]\nplacement = contiguous\n");
    put("table.csv", "tokens,fwd_us,bwd_us\n70,1800,3800\n90,2000,4250\n110,2500,5500\n"
          "130,3000,6400\n");
    put("bad.csv", "tokens,fwd_us,bwd_us\n110,2500,5500\n90,2000,4250\n");
    char cal[512];
    const double bytes = 40.0 * H * 4;
    snprintf(cal, sizeof(cal), "[cluster]\nnvlink_latency_us = 5\nnvlink_efficiency = 1\n"
             "nvlink_GBps = %.17g\n[calibration]\nexpert_table = table.csv\n",
             bytes / (comm_s[0] - lat_s) / 1e9);
    put("cal.ini", cal);
    put("badcal.ini", "[calibration]\nexpert_table = bad.csv\n");
    return 0;
}

static int clean(void)
{
    static const char *const names[] = { "run.ini", "table.csv", "bad.csv", "cal.ini",
                                         "badcal.ini", "compare.csv", "trace.json" };
    return tmp_dir_remove(dir, names, sizeof(names) / sizeof(names[0]));
}

static char runini[300], calini[300], badcal[300], missing[300];

static struct cmp_spec spec(const char *const *cal, int ncal, const char *const *sets, int ns)
{
    static const char *files[1];
    tmp_dir_path(runini, sizeof(runini), dir, "run.ini");
    files[0] = runini;
    return (struct cmp_spec){ .files = files, .nfiles = 1, .calib = cal, .ncalib = ncal,
                              .sets = sets, .nsets = ns, .dir = dir, .dtype = "fp32",
                              .seed = 1 };
}

static void near(double got, double want)
{
    CU_ASSERT(fabs(got - want) <= 1e-9 * fabs(want));
    if (!(fabs(got - want) <= 1e-9 * fabs(want)))
        printf("\n  got %.17g, want %.17g\n", got, want);
}

static void test_exact(void)
{
    const char *cal[] = { tmp_dir_path(calini, sizeof(calini), dir, "cal.ini") };
    struct cmp_spec s = spec(cal, 1, NULL, 0);
    char msg[CMP_MSG_MAX];
    struct cmp_result c;
    CU_ASSERT_EQUAL_FATAL(cmp_check(&s, msg, sizeof(msg)), 0);
    int rc = cmp_run(&c, &s, &run, msg, sizeof(msg));
    if (rc)
        printf("\n  cmp_run: %s\n", msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c.iters_used, ITERS);
    CU_ASSERT_EQUAL(c.layers, LAYERS);
    /* Per layer and for their sum: every phase but bwd.counts, and the two sums. */
    CU_ASSERT_EQUAL(c.nrows, (LAYERS + 1) * (TMR_NPHASES - 1 + 2));
    int modelled = 0, per[LAYERS + 1] = { 0 };
    for (int i = 0; i < c.nrows; i++) {
        const struct cmp_row *w = &c.row[i];
        int s = w->id % TMR_NSTEPS;
        bool want = w->id >= TMR_NPHASES || s == TMR_DISPATCH || s == TMR_EXPERTS ||
                    s == TMR_COMBINE;
        CU_ASSERT(w->layer >= -1 && w->layer < LAYERS);
        per[w->layer < 0 ? LAYERS : w->layer]++;
        CU_ASSERT_EQUAL(w->modelled, want);
        CU_ASSERT_EQUAL(w->n, RANKS * ITERS);
        if (!want) {
            CU_ASSERT(isnan(w->pred_s) && isnan(w->slow_pred_s));
            continue;
        }
        modelled++;
        near(w->pred_s, w->meas_s);
        near(w->slow_pred_s, w->slow_meas_s);
    }
    CU_ASSERT_EQUAL(modelled, 8 * (LAYERS + 1));
    for (int l = 0; l <= LAYERS; l++)
        CU_ASSERT_EQUAL(per[l], TMR_NPHASES + 1);
    /* By hand: layer 0's fwd.experts median rank (2.5 + 2) / 2 ms, the slowest rank 0;
     * layer 1's (1.8 + 3) / 2 ms, rank 1. fwd.modelled of both layers summed: either
     * rank 1 + 2.5 + 1 + 2 x 1.2475 + 3 = 9.995 ms (each layer lasts as long as its
     * slower rank's experts), measured and predicted on the slowest. */
    for (int i = 0; i < c.nrows; i++) {
        const struct cmp_row *w = &c.row[i];
        if (w->id == TMR_EXPERTS && w->layer >= 0) {
            near(w->meas_s, w->layer ? 2.4e-3 : 2.25e-3);
            CU_ASSERT_EQUAL(w->slow, w->layer);
        } else if (w->id == CMP_FWD_SUM && w->layer == 0) {
            near(w->slow_meas_s, comm_s[0] + 2.5e-3 + comm_s[0]);
        } else if (w->id == CMP_FWD_SUM && w->layer < 0) {
            near(w->slow_meas_s, 2 * comm_s[0] + 2.5e-3 + 2 * comm_s[1] + 3e-3);
            near(w->slow_meas_s, 9.995e-3);
            near(w->slow_pred_s, 9.995e-3);
        } else if (w->id == TMR_COMBINE && w->layer == 0) {
            near(w->wait_pred_s, 0.5 * 0.5e-3);   /* the median of 0 and 0.5 ms */
        } else if (w->id == TMR_DISPATCH) {
            CU_ASSERT_EQUAL(w->wait_pred_s, 0);   /* all ranks start together */
        } else if (w->id >= TMR_NPHASES) {
            CU_ASSERT(isnan(w->wait_pred_s));
        }
    }
    /* The predicted wait of the all-to-all after the experts, per rank: exactly the
     * slower rank's expert time less its own (0 on the slower rank). */
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < RANKS; k++) {
            const double *p = c.wait_pred_s + ((size_t)l * RANKS + k) * TMR_NPHASES;
            double fw = fmax(fwd_ex_s[l][0], fwd_ex_s[l][1]) - fwd_ex_s[l][k];
            double bw = fmax(bwd_ex_s[l][0], bwd_ex_s[l][1]) - bwd_ex_s[l][k];
            CU_ASSERT(fabs(p[TMR_COMBINE] - fw) <= 1e-9 * fmax(fw, 1e-3));
            CU_ASSERT(fabs(p[TMR_NSTEPS + TMR_DISPATCH] - bw) <= 1e-9 * fmax(bw, 1e-3));
            CU_ASSERT((k == (l == 0 ? 1 : 0)) == (fw > 0 && bw > 0));
            CU_ASSERT(p[TMR_DISPATCH] == 0 && p[TMR_NSTEPS + TMR_COMBINE] == 0);
            CU_ASSERT(isnan(p[TMR_ROUTE]));
        }
    /* The files: compare.csv has its columns first and a row per table row; trace.json
     * names a predicted process per rank. */
    CU_ASSERT_EQUAL(cmp_write(dir, &run, &c), 0);
    char p[300], line[4096];
    FILE *f = fopen(tmp_dir_path(p, sizeof(p), dir, "compare.csv"), "r");
    CU_ASSERT_FATAL(f != NULL);
    int lines = 0;
    if (fgets(line, sizeof(line), f))
        CU_ASSERT_EQUAL(strncmp(line, "phase,modelled,measured_median_s,predicted_s,error_pct,"
                                "slowest_rank,slowest_measured_s,slowest_predicted_s,"
                                "slowest_error_pct,wait_median_s,samples,layer,", 145) ||
                        !strstr(line, ",wait_predicted_s\n"), 0);
    int in_layer[LAYERS + 1] = { 0 };     /* rows per value of the layer column */
    while (fgets(line, sizeof(line), f)) {
        const char *q = line;
        for (int comma = 0; comma < 11 && q; comma++)
            q = strchr(q, ',') ? strchr(q, ',') + 1 : NULL;
        if (q && !strncmp(q, "all,", 4))
            in_layer[LAYERS]++;
        else if (q && q[0] >= '0' && q[0] < '0' + LAYERS && q[1] == ',')
            in_layer[q[0] - '0']++;
        lines++;
    }
    fclose(f);
    CU_ASSERT_EQUAL(lines, c.nrows);
    for (int l = 0; l <= LAYERS; l++)
        CU_ASSERT_EQUAL(in_layer[l], TMR_NPHASES + 1);
    f = fopen(tmp_dir_path(p, sizeof(p), dir, "trace.json"), "r");
    CU_ASSERT_FATAL(f != NULL);
    char *buf = calloc(1, 1 << 20);
    size_t got = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    CU_ASSERT(got > 0 && strstr(buf, "\"predicted rank 0\"") && strstr(buf, "\"predicted rank 1\"")
              && strstr(buf, "\"rank 1\""));
    free(buf);
    cmp_free(&c);
}

static void expect_bad(const struct cmp_spec *s, const char *part)
{
    char msg[CMP_MSG_MAX] = "";
    CU_ASSERT_EQUAL(cmp_check(s, msg, sizeof(msg)), -EINVAL);
    CU_ASSERT(strstr(msg, part) != NULL && !strchr(msg, '\n'));
    if (!strstr(msg, part))
        printf("\n  message '%s' lacks '%s'\n", msg, part);
}

static void test_bad(void)
{
    const char *cal[] = { tmp_dir_path(missing, sizeof(missing), dir, "nope.ini") };
    struct cmp_spec s = spec(cal, 1, NULL, 0);
    expect_bad(&s, "nope.ini");
    const char *bad[] = { tmp_dir_path(badcal, sizeof(badcal), dir, "badcal.ini") };
    s = spec(bad, 1, NULL, 0);
    expect_bad(&s, "bad.csv:3");
    const char *eplb[] = { "balance.placement=eplb" };
    s = spec(NULL, 0, eplb, 1);
    expect_bad(&s, "balance.placement = eplb");

    /* 4 ranks, nodes alternating: not consecutive blocks. */
    static const int alt[4] = { 0, 1, 0, 1 };
    size_t r0[5] = { 0, 0, 0, 0, 0 };
    struct rec_run r = run;
    r.ranks = 4;
    r.node = alt;
    r.rec0 = r0;
    struct cmp_result c;
    char msg[CMP_MSG_MAX];
    s = spec(NULL, 0, NULL, 0);
    CU_ASSERT_EQUAL(cmp_run(&c, &s, &r, msg, sizeof(msg)), 2);
    CU_ASSERT(strstr(msg, "consecutive") != NULL);
    cmp_free(&c);
}

int main(int argc, char **argv)
{
    static const struct cu_test tests[] = {
        { "prediction = measurement, calibrated from it", test_exact },
        { "bad calibration and layouts", test_bad },
    };
    MPI_Init(&argc, &argv);
    int bad = cu_run("compare", init, clean, tests, sizeof(tests) / sizeof(tests[0]));
    printf("%s: np=1, %d failures\n", bad ? "FAIL" : "PASS", bad);
    MPI_Finalize();
    return bad;
}
