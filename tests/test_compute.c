/* test_compute.c: CUnit suite for sim/compute.c. Expected times are worked by hand from
 * the formulas in compute.h (and the byte counts in model.c for compute_op); the config
 * is filled by hand; calibration tables are written to a mkdtemp folder. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "config.h"
#include "cu_run.h"
#include "model.h"

static char tmp_dir[64];       /* holds table.csv, the table under test */

static int suite_init(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_compute.XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int suite_clean(void)
{
    char p[128];

    snprintf(p, sizeof(p), "%s/table.csv", tmp_dir);
    return (remove(p) && errno != ENOENT) || rmdir(tmp_dir) ? -1 : 0;
}

/* memset, then the compute fields: peak FLOP/s, gemm_eff, gemm_half_rows, HBM B/s,
 * hbm_eff, SMs, SMs for communication. */
static void set_gpu(struct config *c, double flops, double eff, double half, double hbm,
                    double hbm_eff, int sms, int comm_sms)
{
    memset(c, 0, sizeof(*c));
    c->cluster.gpu_flops = flops;
    c->cluster.gemm_eff = eff;
    c->cluster.gemm_half_rows = half;
    c->cluster.hbm_Bps = hbm;
    c->cluster.hbm_eff = hbm_eff;
    c->cluster.sms = sms;
    c->schedule.comm_sms = comm_sms;
}

/* An H100-like GPU with round numbers: 1 PFLOP/s peak, 80% for large GEMMs, half of that
 * at 128 rows; 3 TB/s HBM at 90% (2.7e12 B/s); 132 SMs, 20 for communication. */
static void gpu_config(struct config *c)
{
    set_gpu(c, 1e15, 0.8, 128, 3e12, 0.9, 132, 20);
}

/* A GPU where every rate is 1e12 (FLOP/s or B/s) and eff(m) = 1: times by hand are
 * FLOPs or bytes times 1e-12 s. */
static void unit_config(struct config *c)
{
    set_gpu(c, 1e12, 1, 0, 1e12, 1, 100, 0);
}

/* The tiny model of test_model.c: h 8, a 2 heads, g 1 kv head, d 4, s 16, V 10, two
 * layers, the first dense (f 12), then MoE: E 4, top 2, one shared expert, fe 6. */
static void tiny_model(struct config *c, struct model *m)
{
    c->model.attention = ATTN_GQA;
    c->model.hidden = 8;
    c->model.heads = 2;
    c->model.kv_heads = 1;
    c->model.head_dim = 4;
    c->model.seq_len = 16;
    c->model.vocab = 10;
    c->model.layers = 2;
    c->model.first_dense_layers = 1;
    c->model.moe_every = 1;
    c->model.ffn_hidden = 12;
    c->model.experts = 4;
    c->model.top_k = 2;
    c->model.shared_experts = 1;
    c->model.expert_ffn_hidden = 6;
    CU_ASSERT_EQUAL(model_init(m, c), 0);
}

static struct compute *create_ok(const struct config *c)
{
    struct compute *cm = NULL;
    struct cfg_err err = { "" };
    int rc = compute_create(&cm, c, &err);

    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        fprintf(stderr, "compute_create: %s\n", err.msg);
    return cm;
}

/* The tiny model on the GPU gpu() describes; NULL (and a failed assertion) on error. */
static struct compute *tiny_on(void (*gpu)(struct config *), struct config *c,
                               struct model *m)
{
    gpu(c);
    tiny_model(c, m);
    return create_ok(c);
}

/* eff(m) = 0.8 m / (m + 128): eff(128) = 0.4 = gemm_eff / 2; eff(384) = 0.8 * 3/4 = 0.6;
 * eff(0) = 0. */
static void test_gemm_eff(void)
{
    struct config c;
    struct compute *cm;

    gpu_config(&c);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_eff(cm, 128), 0.4, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_eff(cm, 384), 0.6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_eff(cm, 0), 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(compute_peak_flops(cm), 1e15, 0);
    compute_free(cm);
}

/* Compute-bound: m = 2^20 - 128 rows, k = n = 4096. 2 m n k / (peak eff(m)) =
 * 2 n k (m + 128) / (peak 0.8) = 2 * 2^24 * 2^20 / 8e14 = 2^45 / 8e14 = 0.04398046511104 s;
 * the traffic, (2 m 4096 + 4096^2) * 2 B / 2.7e12 B/s, is 6.4 ms, below it.
 * m = 1e12: the achieved rate 2 m n k / t is peak * 0.8 * m / (m + 128), within
 * 1.3e-10 of 8e14 (relative). */
static void test_gemm_compute_bound(void)
{
    struct config c;
    struct compute *cm;
    double m = 1e12, rate;

    gpu_config(&c);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_s(cm, 1048576 - 128, 4096, 4096), 0.04398046511104,
                           1e-15);
    rate = 2 * m * 4096 * 4096 / compute_gemm_s(cm, m, 4096, 4096);
    CU_ASSERT_DOUBLE_EQUAL(rate / 8e14, 1, 1e-6);
    compute_free(cm);
}

/* Memory-bound: m = 1, k = n = 4096. Bytes (m k + k n + m n) * 2 = (4096 + 16,777,216 +
 * 4096) * 2 = 33,570,816 at 2.7e12 B/s: 33570816 / 2.7e12 s. The FLOP side is
 * 2 * 4096^2 * 129 / 8e14 = 5.4 us, below 12.4 us. m = 0 and m < 0 take 0 s. */
static void test_gemm_memory_bound(void)
{
    struct config c;
    struct compute *cm;

    gpu_config(&c);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_s(cm, 1, 4096, 4096), 33570816 / 2.7e12, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_s(cm, 0, 4096, 4096), 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(compute_gemm_s(cm, -5, 4096, 4096), 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(compute_mem_s(cm, 2.7e9), 1e-3, 1e-18);
    compute_free(cm);
}

/* 132 SMs, 20 for communication: (132 - 20) / 132 = 112/132; none taken: 1. */
static void test_share(void)
{
    struct config c;
    struct compute *cm;

    gpu_config(&c);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_DOUBLE_EQUAL(compute_share(cm), 112.0 / 132.0, 1e-15);
    compute_free(cm);
    c.schedule.comm_sms = 0;
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    CU_ASSERT_DOUBLE_EQUAL(compute_share(cm), 1, 0);
    compute_free(cm);
}

/* The tiny model on unit_config (1e12 FLOP/s and B/s, eff 1), 100 tokens.
 * FFN: each GEMM 2 * 100 * 96 = 19200 FLOPs against 2 (800 + 96 + 1200) = 4192 B, so
 * 19200 ps each; traffic 152 B/token (model.c: norm 32 + SwiGLU 72 + residual 48):
 * 15200 ps. f = 57600 + 15200 = 72800 ps, b = 57600 + 2 * 15200 = 88000 ps, w = 57600 ps.
 * ATTN: q and o 12800 ps each (2 * 100 * 64 FLOPs; 3328 B), k and v 6400 ps each;
 * core 100 * 256 FLOPs = 25600 ps; traffic 128 B/token: 12800 ps.
 * f = 38400 + 25600 + 12800 = 76800 ps; b = 38400 + 51200 + 25600 = 115200 ps;
 * w = 38400 ps. EMBED: no GEMM, 4h = 32 B/token: f = 3200 ps, b = 6400 ps, w = 0.
 * 0 tokens: 0 s for every op. */
static void test_op_times(void)
{
    struct config c;
    struct compute *cm;
    struct model m;
    struct compute_t t;

    cm = tiny_on(unit_config, &c, &m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);

    t = compute_op(cm, &m, MODEL_FFN, 100);
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, 72800e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, 88000e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, 57600e-12, 1e-20);
    t = compute_op(cm, &m, MODEL_ATTN, 100);
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, 76800e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, 115200e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, 38400e-12, 1e-20);
    t = compute_op(cm, &m, MODEL_EMBED, 100);
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, 3200e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, 6400e-12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, 0, 0);
    for (int op = 0; op < MODEL_NOPS; op++) {
        t = compute_op(cm, &m, (enum model_op)op, 0);
        CU_ASSERT_DOUBLE_EQUAL(t.f_s + t.b_s + t.w_s, 0, 0);
    }
    compute_free(cm);
}

/* The expert curve: the tiny model's routed expert (h 8, fe 6) on gpu_config with 64
 * tokens. Each GEMM: 2 * 48 * (64 + 128) / 8e14 = 23.04 ps of FLOPs against (64 * 8 + 48 + 64 * 6) * 2
 * = 1888 B / 2.7e12 = 699.26 ps of traffic: memory-bound, 1888 / 2.7e12 s each, all
 * three alike (8x6, 8x6, 6x8); SwiGLU traffic 6 fe = 36 B/token: 2304 B.
 * f = (3 * 1888 + 2304) / 2.7e12, w = 3 * 1888 / 2.7e12, b = (3 * 1888 + 4608) / 2.7e12. */
static void test_expert_curve(void)
{
    struct config c;
    struct compute *cm;
    struct model m;
    struct compute_t t;

    cm = tiny_on(gpu_config, &c, &m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    t = compute_op(cm, &m, MODEL_EXPERT, 64);
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, (3 * 1888 + 2304) / 2.7e12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, 3 * 1888 / 2.7e12, 1e-20);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, (3 * 1888 + 4608) / 2.7e12, 1e-20);
    compute_free(cm);
}

static int write_table(const char *text)
{
    char p[128];
    FILE *f;

    snprintf(p, sizeof(p), "%s/table.csv", tmp_dir);
    f = fopen(p, "w");
    if (!f)
        return -1;
    if (fputs(text, f) < 0) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

/* A model whose routed expert the table replaces (its curve is not reached). */
static void table_config(struct config *c, struct model *m)
{
    gpu_config(c);
    tiny_model(c, m);
    snprintf(c->calibration.expert_table, sizeof(c->calibration.expert_table),
             "%s/table.csv", tmp_dir);
}

static void expect_times(struct compute_t t, double f_us, double b_us, double w_us)
{
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, f_us * 1e-6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, b_us * 1e-6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, w_us * 1e-6, 1e-15);
}

/* Rows (tokens, fwd_us, bwd_us): (100, 10, 25), (200, 30, 50), (400, 50, 110); b = w =
 * bwd / 2. At the rows: exact. Between: 150 is halfway from 100 to 200: fwd 20, bwd 37.5;
 * 300 halfway from 200 to 400: fwd 40, bwd 80. Below the first row, proportional to it:
 * 50 tokens: fwd 10 * 50/100 = 5, bwd 12.5. Beyond the last: 800 tokens: fwd 50 * 2 =
 * 100, bwd 220. 0 tokens: 0. Comments, blank lines and blanks around fields pass. */
static void test_table_interpolation(void)
{
    struct config c;
    struct model m;
    struct compute *cm;

    CU_ASSERT_EQUAL_FATAL(write_table("# illustrative numbers, not measured\n"
                                      "tokens,fwd_us,bwd_us\n"
                                      "100,10,25\n"
                                      "\n"
                                      "  # another comment\n"
                                      "200, 30 ,50\r\n"
                                      "400,5e1,110.0\n"), 0);
    table_config(&c, &m);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 100), 10, 12.5, 12.5);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 200), 30, 25, 25);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 400), 50, 55, 55);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 150), 20, 18.75, 18.75);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 300), 40, 40, 40);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 50), 5, 6.25, 6.25);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 800), 100, 110, 110);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 0), 0, 0, 0);
    /* exact at the rows, to the bit */
    CU_ASSERT_EQUAL(compute_op(cm, &m, MODEL_EXPERT, 200).f_s, 30 * 1e-6);
    compute_free(cm);
}

/* Without bwd_us the backward is 2 x fwd, half each: one row (64, 8): 64 tokens f = b =
 * w = 8 us; 32 tokens 4 us each (proportional); 128 tokens 16 us each. */
static void test_table_fwd_only(void)
{
    struct config c;
    struct model m;
    struct compute *cm;

    CU_ASSERT_EQUAL_FATAL(write_table("tokens,fwd_us\n64,8\n"), 0);
    table_config(&c, &m);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 64), 8, 8, 8);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 32), 4, 4, 4);
    expect_times(compute_op(cm, &m, MODEL_EXPERT, 128), 16, 16, 16);
    compute_free(cm);
}

/* The longest time a row may hold, 1e9 us (compute.h), loads: 1000 s forward, 2000 s
 * backward split half and half, at 10 tokens. */
static void test_table_longest(void)
{
    struct config c;
    struct model m;
    struct compute *cm;

    CU_ASSERT_EQUAL_FATAL(write_table("tokens,fwd_us\n10,1e9\n"), 0);
    table_config(&c, &m);
    cm = create_ok(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cm);
    struct compute_t t = compute_op(cm, &m, MODEL_EXPERT, 10);
    CU_ASSERT_DOUBLE_EQUAL(t.f_s, 1000, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(t.b_s, 1000, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(t.w_s, 1000, 1e-9);
    compute_free(cm);
}

/* text is refused with -EINVAL and err.msg "<path>:<line>: ...". */
static void expect_bad_table(const char *text, int line, const char *what)
{
    struct config c;
    struct model m;
    struct compute *cm = (struct compute *)&m;   /* not NULL: compute_create must clear it */
    struct cfg_err err = { "" };
    char want[CFG_PATH_MAX + 32];

    CU_ASSERT_EQUAL_FATAL(write_table(text), 0);
    table_config(&c, &m);
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NULL(cm);
    snprintf(want, sizeof(want), "%s:%d: ", c.calibration.expert_table, line);
    CU_ASSERT_EQUAL(strncmp(err.msg, want, strlen(want)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what));
    CU_ASSERT_PTR_NULL(strchr(err.msg, '\n'));
    if (strncmp(err.msg, want, strlen(want)) || !strstr(err.msg, what))
        fprintf(stderr, "\n  got '%s', want '%s...%s'\n", err.msg, want, what);
}

/* Each bad table and the line its message must name (lines count from 1, comments and
 * blank lines included; an empty file or one without rows names the line after its
 * last). */
static void test_table_bad(void)
{
    expect_bad_table("tokens,fwd_us\n100,4\n100,5\n", 3, "is not above the row before");
    expect_bad_table("tokens,fwd_us\n100,4\n50,5\n", 3, "is not above the row before");
    expect_bad_table("tokens,fwd_us\n# c\n100,-4\n", 3, "fwd_us '-4'");
    expect_bad_table("tokens,fwd_us,bwd_us\n100,4,-1e-3\n", 2, "bwd_us '-1e-3'");
    expect_bad_table("tokens,fwd_us\nabc,1\n", 2, "tokens 'abc'");
    expect_bad_table("tokens,fwd_us\n0,1\n", 2, "tokens '0'");
    expect_bad_table("tokens,fwd_us\n1.5,1\n", 2, "tokens '1.5'");
    expect_bad_table("tokens,fwd_us\n10,nan\n", 2, "fwd_us 'nan'");
    expect_bad_table("tokens,fwd_us\n10,inf\n", 2, "fwd_us 'inf'");
    expect_bad_table("tokens,fwd_us\n10,1e999\n", 2, "fwd_us '1e999'");
    expect_bad_table("tokens,fwd_us\n10,0x10\n", 2, "fwd_us '0x10'");
    /* compute.h: times are at most 1e9 us, so sums of them stay finite */
    expect_bad_table("tokens,fwd_us\n10,1e308\n", 2, "fwd_us '1e308' is not a number from 0 "
                     "to 1000000000 us");
    expect_bad_table("tokens,fwd_us,bwd_us\n10,1,1000000001\n", 2, "bwd_us '1000000001'");
    expect_bad_table("tokens,fwd_us\n10,\n", 2, "fwd_us ''");
    expect_bad_table("tokens,fwd_us\n10,1,2\n", 2, "extra field '2'");
    expect_bad_table("tokens,fwd_us,bwd_us\n10,1\n", 2, "2 fields, the header names 3");
    expect_bad_table("# no header\n100,10\n", 2, "expected the header");
    expect_bad_table("tokens,bwd_us\n100,10\n", 1, "expected the header");
    expect_bad_table("", 1, "expected the header");
    expect_bad_table("# only a comment\n", 2, "found the end of the file");
    expect_bad_table("tokens,fwd_us\n", 2, "expected a row after the header");
    expect_bad_table("tokens,fwd_us\n10,1\x01\n", 2, "control character 0x01");
}

/* A missing file and a folder are refused, naming the path without a line. */
static void test_table_unreadable(void)
{
    struct config c;
    struct model m;
    struct compute *cm;
    struct cfg_err err = { "" };
    char want[CFG_PATH_MAX + 32];

    table_config(&c, &m);
    snprintf(c.calibration.expert_table, sizeof(c.calibration.expert_table), "%s/none.csv",
             tmp_dir);
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    snprintf(want, sizeof(want), "%s: cannot open: ", c.calibration.expert_table);
    CU_ASSERT_EQUAL(strncmp(err.msg, want, strlen(want)), 0);
    snprintf(c.calibration.expert_table, sizeof(c.calibration.expert_table), "%s", tmp_dir);
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    snprintf(want, sizeof(want), "%s: not a regular file", tmp_dir);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
}

/* Cluster figures the formulas cannot use: -EINVAL naming the key. */
static void test_bad_cluster(void)
{
    struct config c;
    struct compute *cm;
    struct cfg_err err = { "" };

    gpu_config(&c);
    c.cluster.gemm_eff = 0;
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cluster.gemm_efficiency"));
    gpu_config(&c);
    c.cluster.hbm_Bps = 0;
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cluster.hbm_GBps"));
    gpu_config(&c);
    c.schedule.comm_sms = 132;
    CU_ASSERT_EQUAL(compute_create(&cm, &c, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "schedule.comm_sms"));
    compute_free(NULL);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "eff(m): half at gemm_half_rows", test_gemm_eff },
        { "GEMM compute-bound: peak * gemm_eff", test_gemm_compute_bound },
        { "GEMM memory-bound: bytes / (hbm * eff)", test_gemm_memory_bound },
        { "compute_share", test_share },
        { "op times: GEMMs, core, traffic; f, b, w", test_op_times },
        { "routed expert on the curve", test_expert_curve },
        { "calibration: exact, linear, proportional", test_table_interpolation },
        { "calibration without bwd_us", test_table_fwd_only },
        { "calibration: the longest time loads", test_table_longest },
        { "calibration: bad tables name their line", test_table_bad },
        { "calibration: missing file, folder", test_table_unreadable },
        { "cluster figures the formulas cannot use", test_bad_cluster },
    };
    return cu_run("compute", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
