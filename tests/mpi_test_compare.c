/* mpi_test_compare.c: profile/compare (moeprof run --compare) on a synthetic run, no clock.
 * Run as one process (mpirun -np 1); prints "PASS: np=1, 0 failures" (tests/e2e_topo.sh).
 *
 * The run: 2 ranks on one node, one EP group, 2 experts (contiguous: expert e on rank e),
 * top-1, hidden 64, fp32 rows (256 B), 100 tokens per rank, 3 iterations of one layer.
 * Every iteration routes alike: rank 0 sends 70 tokens to expert 0 and 30 to expert 1,
 * rank 1 40 and 60. So the dispatch moves 30 rows (7680 B) 0 -> 1 and 40 rows (10240 B)
 * 1 -> 0, the combine the transpose; expert 0 (rank 0) receives 110 rows, expert 1
 * (rank 1) 90.
 * The records: every phase of both ranks starts at the same instant (so no rank waits)
 * and lasts base x (0.9, 1, 1.3) in iterations 0, 1, 2, so each rank's median is its
 * base; bases: every all-to-all 1 ms on both ranks, fwd.experts 2.5 ms (rank 0) and
 * 2 ms (rank 1), bwd.experts 5.5 and 4.25 ms, the unmodelled phases 0.1 ms.
 * The calibration, made from those measurements:
 *  - expert_table rows at the measured token counts: 90 -> (2000, 4250) us,
 *    110 -> (2500, 5500) us; compute.h reads a table exactly at its rows.
 *  - the intra-node tier: moesim's GPU g finishes an all-to-all at path latency +
 *    (the larger of its bytes out and in) / bandwidth (a2a.h; each flow alone on its
 *    GPU's NVLink out and the peer's in, topo.h), here 10240 B on both GPUs; the path
 *    latency is 2 x nvlink_latency_us (topo.c: out of one GPU, into the other), set
 *    to 2 x 5 us, and the bandwidth solved from the measured 1 ms: 10240 / (1e-3 - 1e-5).
 * Then moesim's prediction equals the measurement within 1e-9 (relative) in every
 * modelled row, on the median rank and the slowest, and the sums of each pass too
 * (every rank's median iteration is iteration 1 in every phase, so the median of sums is
 * the sum of medians). Unmodelled phases have no prediction.
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
#define NREC (ITERS * 15)

static char dir[256];
static const double mult[ITERS] = { 0.9, 1.0, 1.3 };
static const double comm_s = 1e-3;
static const double fwd_ex_s[RANKS] = { 2.5e-3, 2.0e-3 }, bwd_ex_s[RANKS] = { 5.5e-3, 4.25e-3 };
static const int32_t counts1[RANKS][E] = { { 70, 30 }, { 40, 60 } };

static struct tmr_rec rec[RANKS * NREC];
static size_t rec0[RANKS + 1];
static double off[RANKS], err[RANKS];
static int32_t counts[ITERS * RANKS * E], rows[ITERS * RANKS * RANKS];
static int node[RANKS];
static struct rec_run run;

static double base(int rank, int phase)
{
    int s = phase % TMR_NSTEPS;
    if (s == TMR_DISPATCH || s == TMR_COMBINE || s == TMR_COUNTS)
        return comm_s;
    if (s == TMR_EXPERTS)
        return phase < TMR_NSTEPS ? fwd_ex_s[rank] : bwd_ex_s[rank];
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
            for (int ph = 0; ph < TMR_NPHASES; ph++) {
                if (ph == TMR_NSTEPS + TMR_COUNTS)        /* counts has no backward */
                    continue;
                int s = ph % TMR_NSTEPS, peer_rows = counts1[k][1 - k];
                bool a2a = s == TMR_DISPATCH || s == TMR_COMBINE;
                rec[n++] = (struct tmr_rec){ .iter = it, .layer = 0, .phase = ph,
                                             .t0_s = it + 0.05 * ph,
                                             .dur_s = base(k, ph) * mult[it],
                                             .bytes = a2a ? (uint64_t)peer_rows * H * 4 : 0 };
            }
    }
    rec0[RANKS] = n;
    for (int it = 0; it < ITERS; it++)
        for (int k = 0; k < RANKS; k++)
            for (int e = 0; e < E; e++) {
                counts[(it * RANKS + k) * E + e] = counts1[k][e];
                rows[(it * RANKS + k) * RANKS + e] = counts1[k][e];   /* expert e on rank e */
            }
    run = (struct rec_run){ .ranks = RANKS, .ep = RANKS, .layers = 1, .iters = ITERS,
                            .experts = E, .hidden = H, .elem_bytes = 4, .rec = rec,
                            .rec0 = rec0, .offset_s = off, .err_s = err, .counts = counts,
                            .send_rows = rows, .node = node };

    put("run.ini", "[cluster]\nnodes = 1\ngpus_per_node = 8\n"
          "[model]\nhidden = 64\nexperts = 2\ntop_k = 1\nshared_experts = 0\n"
          "expert_ffn_hidden = 128\n[parallel]\nep = 2\n[routing]\ntokens_per_gpu = 100\n"
          "distribution = zipf\n[balance]\nplacement = contiguous\n");
    put("table.csv", "tokens,fwd_us,bwd_us\n90,2000,4250\n110,2500,5500\n");
    put("bad.csv", "tokens,fwd_us,bwd_us\n110,2500,5500\n90,2000,4250\n");
    char cal[512];
    const double lat_s = 2 * 5e-6, bytes = 40.0 * H * 4;
    snprintf(cal, sizeof(cal), "[cluster]\nnvlink_latency_us = 5\nnvlink_efficiency = 1\n"
             "nvlink_GBps = %.17g\n[calibration]\nexpert_table = table.csv\n",
             bytes / (comm_s - lat_s) / 1e9);
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
    CU_ASSERT_EQUAL(c.nrows, TMR_NPHASES - 1 + 2);            /* no bwd.counts */
    int modelled = 0;
    for (int i = 0; i < c.nrows; i++) {
        const struct cmp_row *w = &c.row[i];
        int s = w->id % TMR_NSTEPS;
        bool want = w->id >= TMR_NPHASES || s == TMR_DISPATCH || s == TMR_EXPERTS ||
                    s == TMR_COMBINE;
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
    CU_ASSERT_EQUAL(modelled, 8);
    /* By hand: the median rank's fwd.experts is (2.5 + 2) / 2 ms, the slowest rank 0. */
    for (int i = 0; i < c.nrows; i++)
        if (c.row[i].id == TMR_EXPERTS) {
            near(c.row[i].meas_s, 2.25e-3);
            CU_ASSERT_EQUAL(c.row[i].slow, 0);
        } else if (c.row[i].id == CMP_FWD_SUM) {
            near(c.row[i].slow_meas_s, comm_s + 2.5e-3 + comm_s);
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
                                "slowest_error_pct,wait_median_s,samples,", 139), 0);
    while (fgets(line, sizeof(line), f))
        lines++;
    fclose(f);
    CU_ASSERT_EQUAL(lines, c.nrows);
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
