/* test_caltab.c: CUnit suite for profile/caltab.c: what `moeprof calibrate` writes is
 * what moesim reads. The expert table goes through moesim's config loader and compute
 * model (sim/compute.h), which must give back each row's times exactly at its token
 * count; the fragment goes through config_load beside a base cluster file and
 * sim/topo.h, whose links and paths must carry the measured rate and latency. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caltab.h"
#include "compute.h"
#include "config.h"
#include "cu_run.h"
#include "model.h"
#include "tmp_dir.h"
#include "topo.h"

static char dir[64];
static const char *const names[] = { "base.ini", "calib.ini", "calib.csv" };

static int suite_init(void)
{
    return tmp_dir_make(dir, sizeof(dir), "test_caltab");
}

static int suite_clean(void)
{
    return tmp_dir_remove(dir, names, sizeof(names) / sizeof(names[0]));
}

/* A base: 2 nodes x 2 GPUs, line rates and latencies the fragment may override. */
static void write_base(void)
{
    char p[256];
    FILE *f = fopen(tmp_dir_path(p, sizeof(p), dir, "base.ini"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "[cluster]\nnodes = 2\ngpus_per_node = 2\nnvlink_GBps = 450\n"
               "nvlink_latency_us = 1\nnic_GBps = 50\nnic_latency_us = 2\n"
               "switch_latency_us = 1\n[model]\nhidden = 256\nexperts = 8\ntop_k = 2\n"
               "expert_ffn_hidden = 512\n");
    CU_ASSERT_EQUAL(fclose(f), 0);
}

static void write_outputs(const struct ctab_row *rows, int n, const struct ctab_tier *intra,
                          const struct ctab_tier *inter)
{
    char p[256];
    FILE *f = fopen(tmp_dir_path(p, sizeof(p), dir, "calib.csv"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(ctab_table(f, rows, n, "test"), 0);
    CU_ASSERT_EQUAL(fclose(f), 0);
    f = fopen(tmp_dir_path(p, sizeof(p), dir, "calib.ini"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(ctab_fragment(f, intra, inter, "calib.csv", "test"), 0);
    CU_ASSERT_EQUAL(fclose(f), 0);
}

static int load(struct config *c)
{
    char base[256], frag[256];
    const char *files[2] = { tmp_dir_path(base, sizeof(base), dir, "base.ini"),
                             tmp_dir_path(frag, sizeof(frag), dir, "calib.ini") };
    struct cfg_err err;
    int rc = config_load(c, files, 2, NULL, 0, &err);
    if (rc)
        fprintf(stderr, "config_load: %s\n", err.msg);
    return rc;
}

static struct ctab_tier tier(double pp_lat, double pp_bw, double aa_lat, double aa_bw, int peers)
{
    struct ctab_tier t = { .peers = peers };
    t.p2p = (struct fit_line){ pp_lat, pp_bw, 0.01 };
    t.a2a = (struct fit_line){ aa_lat, aa_bw, 0.02 };
    t.p2p_lat_s = (struct fit_stats){ pp_lat, pp_lat, pp_lat };
    t.p2p_bw_Bps = (struct fit_stats){ pp_bw, pp_bw, pp_bw };
    t.a2a_lat_s = (struct fit_stats){ aa_lat, aa_lat, aa_lat };
    t.a2a_bw_Bps = (struct fit_stats){ aa_bw, aa_bw, aa_bw };
    return t;
}

/* Rows 1, 2, 4, ... 1024 with times that are not round in us: moesim's compute model
 * reads each back at its token count as exactly the number written (the table's us,
 * times 1e-6; compute.h: exact at the rows), the backward split half and half. */
static void test_table_read_back(void)
{
    struct ctab_row rows[11];
    for (int i = 0; i < 11; i++) {
        double f = 3.14159e-6 * pow(1 << i, 0.93) + 41.7e-6, b = 2.2 * f + 1.1e-7 * i;
        rows[i] = (struct ctab_row){ .tokens = 1 << i, .fwd_s = { f, f * 0.9, f * 1.2 },
                                     .bwd_s = { b, b * 0.95, b * 1.3 } };
    }
    struct ctab_tier none = { .peers = 0 };
    write_base();
    write_outputs(rows, 11, &none, &none);
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c), 0);
    char want[256];
    CU_ASSERT_STRING_EQUAL(c.calibration.expert_table,
                           tmp_dir_path(want, sizeof(want), dir, "calib.csv"));
    struct model m;
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
    for (int i = 0; i < 11; i++) {
        char fs[64], bs[64];
        snprintf(fs, sizeof(fs), "%.3f", rows[i].fwd_s.median * 1e6);
        snprintf(bs, sizeof(bs), "%.3f", rows[i].bwd_s.median * 1e6);
        struct compute_t t = compute_op(cm, &m, MODEL_EXPERT, rows[i].tokens);
        CU_ASSERT_EQUAL(t.f_s, strtod(fs, NULL) * 1e-6);
        CU_ASSERT_EQUAL(t.b_s, strtod(bs, NULL) * 1e-6 / 2);
        CU_ASSERT_EQUAL(t.w_s, strtod(bs, NULL) * 1e-6 / 2);
        /* and to the written precision, the median itself */
        CU_ASSERT(fabs(t.f_s - rows[i].fwd_s.median) <= 0.5e-9 + 1e-15);
    }
    compute_free(cm);
}

/* Both tiers measured: every link's capacity (line rate x efficiency, topo.h) is the
 * all-to-all's rate, each path's latency its intercept (inside a node 2 NVLink hops;
 * across, NIC + switch + NIC with the switch at 0), to the 9 digits written. */
static void test_fragment_keys(void)
{
    const double in_lat = 0.688e-6, in_bw = 6.564e9, x_lat = 4.9e-6, x_bw = 1.37e9;
    struct ctab_tier intra = tier(0.571e-6, 7.282e9, in_lat, in_bw, 1);
    struct ctab_tier inter = tier(3.1e-6, 1.6e9, x_lat, x_bw, 2);
    struct ctab_row row = { .tokens = 4, .fwd_s = { 1e-5, 1e-5, 1e-5 },
                            .bwd_s = { 2e-5, 2e-5, 2e-5 } };
    write_base();
    write_outputs(&row, 1, &intra, &inter);
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_Bps, 7.282e9, 1e-8 * 7.282e9);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nic_Bps, 1.6e9, 1e-8 * 1.6e9);
    CU_ASSERT_EQUAL(c.cluster.switch_lat_s, 0.0);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    int links[TOPO_MAX_HOPS], n;
    double lat;
    n = topo_route(t, 0, 1, links, &lat);                  /* same node */
    CU_ASSERT_DOUBLE_EQUAL(lat, in_lat, 1e-8 * in_lat);
    for (int i = 0; i < n; i++)
        CU_ASSERT_DOUBLE_EQUAL(t->links[links[i]].cap_Bps, in_bw, 1e-8 * in_bw);
    n = topo_route(t, 0, 2, links, &lat);                  /* node 0 to node 1, one rail */
    CU_ASSERT_DOUBLE_EQUAL(lat, x_lat, 1e-8 * x_lat);
    for (int i = 0; i < n; i++)
        CU_ASSERT_DOUBLE_EQUAL(t->links[links[i]].cap_Bps, x_bw, 1e-8 * x_bw);
    topo_free(t);
}

/* One node: the nic keys are the base's (50 GB/s, 2 us, switch 1 us). An all-to-all faster
 * than the ping-pong: its rate is the line rate, efficiency 1. A rate far below the
 * line: the efficiency clipped at the key's floor, 1e-3. */
static void test_fragment_partial(void)
{
    struct ctab_tier intra = tier(1e-6, 5e9, 2e-6, 6e9, 3), none = { .peers = 0 };
    struct ctab_row row = { .tokens = 1, .fwd_s = { 1e-5, 1e-5, 1e-5 },
                            .bwd_s = { 2e-5, 2e-5, 2e-5 } };
    write_base();
    write_outputs(&row, 1, &intra, &none);
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_Bps, 6e9, 1e-8 * 6e9);
    CU_ASSERT_EQUAL(c.cluster.nvlink_eff, 1.0);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_lat_s, 1e-6, 1e-8 * 1e-6);
    CU_ASSERT_EQUAL(c.cluster.nic_Bps, 50e9);
    CU_ASSERT_EQUAL(c.cluster.nic_lat_s, 2e-6);
    CU_ASSERT_EQUAL(c.cluster.switch_lat_s, 1e-6);

    struct ctab_keys k;
    struct ctab_tier slow = tier(1e-6, 5e9, 2e-6, 1e6, 1);
    ctab_keys(&slow, &k);
    CU_ASSERT_EQUAL(k.efficiency, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(k.GBps, 5.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(k.latency_us, 1.0, 1e-12);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "expert table read back by moesim exactly at its rows", test_table_read_back },
        { "fragment: links carry the measured rate and latency", test_fragment_keys },
        { "fragment: one node, fast all-to-all, clipped efficiency", test_fragment_partial },
    };
    return cu_run("caltab", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
