/* test_config.c: sim/config.c against small INI files written to a mkdtemp folder.
 * Expected values come from the schema in config.h and its brief (defaults, units:
 * GB/s * 1e9 = B/s, us / 1e6 = s, TFLOP/s * 1e12 = FLOP/s, GiB * 2^30 = bytes; size
 * suffixes 1000^n and 1024^n), from the message format "file:line: section.key: what is
 * wrong", and for a schedule's own rules from sched_check() (sched.h). */
#include "config.h"
#include "cu_run.h"
#include "gating.h"
#include "sched.h"

#include <CUnit/Basic.h>

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The suite's temporary folder: CUnit tests take no arguments, so it is file state. */
static char tmp_dir[64];

static int suite_init(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_config.XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

/* Removes dir and everything under it. */
static int remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[1024];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

static int suite_clean(void) { return remove_tree(tmp_dir); }

/* "<tmp_dir>/name" into out[CFG_PATH_MAX]; returns out. */
static char *tmp_path(char *out, const char *name)
{
    snprintf(out, CFG_PATH_MAX, "%s/%s", tmp_dir, name);
    return out;
}

/* Writes n bytes of text (NULs included) to name. */
static void write_bytes(const char *name, const char *text, size_t n)
{
    char p[CFG_PATH_MAX];
    FILE *f = fopen(tmp_path(p, name), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void write_file(const char *name, const char *text)
{
    write_bytes(name, text, strlen(text));
}

/* Writes text (unless NULL) to name and loads that one file plus sets. */
static int load1(const char *name, const char *text, const char *const *sets, int nsets,
                 struct config *c, struct cfg_err *e)
{
    char p[CFG_PATH_MAX];
    const char *files[] = { tmp_path(p, name) };
    if (text)
        write_file(name, text);
    return config_load(c, files, 1, sets, nsets, e);
}

static void expect_msg(int rc, const struct cfg_err *e, const char *want)
{
    CU_ASSERT_EQUAL(rc, -EINVAL);
    CU_ASSERT_STRING_EQUAL(e->msg, want);
    if (strcmp(e->msg, want))
        fprintf(stderr, "\n  got:  %s\n  want: %s\n", e->msg, want);
}

/* Loads text as bad.ini; expects -EINVAL and "<tmp_dir>/bad.ini" + rest. */
static void expect_file_err(const char *text, const char *const *sets, int nsets,
                            const char *rest)
{
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    snprintf(want, sizeof(want), "%s/bad.ini%s", tmp_dir, rest);
    c.cluster.nodes = 77;
    expect_msg(load1("bad.ini", text, sets, nsets, &c, &e), &e, want);
    CU_ASSERT_EQUAL(c.cluster.nodes, 77);   /* untouched on error */
}

/* As expect_file_err, for text of n bytes that may hold NULs. */
static void expect_bytes_err(const char *text, size_t n, const char *rest)
{
    write_bytes("bad.ini", text, n);
    expect_file_err(NULL, NULL, 0, rest);
}

/* Loads no file, only sets; expects -EINVAL and the message want. */
static void expect_set_err(const char *set, const char *want)
{
    struct config c;
    struct cfg_err e;
    const char *sets[] = { set };
    expect_msg(config_load(&c, NULL, 0, sets, 1, &e), &e, want);
}

/* ---- values that load ---- */

/* No files: every key at its default from the schema; ep 0 -> all 1 * 8 GPUs. */
static void test_defaults(void)
{
    struct config c;
    struct cfg_err e;
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, NULL, 0, &e), 0);
    CU_ASSERT_STRING_EQUAL(c.cluster.name, "");
    CU_ASSERT_EQUAL(c.cluster.nodes, 1);
    CU_ASSERT_EQUAL(c.cluster.gpus_per_node, 8);
    CU_ASSERT(c.cluster.nvlink_Bps == 450e9);
    CU_ASSERT(c.cluster.nic_Bps == 50e9);
    CU_ASSERT(c.cluster.nvlink_lat_s == 1e-6);
    CU_ASSERT(c.cluster.nic_lat_s == 2e-6);
    CU_ASSERT(c.cluster.switch_lat_s == 1e-6);
    CU_ASSERT(c.cluster.oversubscription == 1.0);
    CU_ASSERT_EQUAL(c.cluster.nodes_per_leaf, 0);
    CU_ASSERT_EQUAL(c.cluster.route, ROUTE_RAIL);
    CU_ASSERT_EQUAL(c.model.hidden, 4096);
    CU_ASSERT_EQUAL(c.model.experts, 8);
    CU_ASSERT_EQUAL(c.model.top_k, 2);
    CU_ASSERT_EQUAL(c.model.shared_experts, 0);
    CU_ASSERT_EQUAL(c.model.expert_ffn_hidden, 0);
    CU_ASSERT_EQUAL(c.model.layers, 1);
    CU_ASSERT_EQUAL(c.model.first_dense_layers, 0);
    CU_ASSERT(c.model.dispatch_bytes_per_elem == 2.0);
    CU_ASSERT(c.model.combine_bytes_per_elem == 2.0);
    CU_ASSERT_EQUAL(c.parallel.ep, 8);
    CU_ASSERT_EQUAL(config_gpus(&c), 8);
    CU_ASSERT_EQUAL(c.routing.tokens_per_gpu, 4096);
    CU_ASSERT_EQUAL(c.routing.distribution, DIST_UNIFORM);
    CU_ASSERT(c.routing.zipf_s == 1.0);
    CU_ASSERT(c.routing.dedup);
    CU_ASSERT_EQUAL(c.traffic.pattern, PATTERN_MOE);
    CU_ASSERT_EQUAL(c.traffic.bytes_per_pair, 1048576);
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix, "");
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix_src.where, "default");
    CU_ASSERT_STRING_EQUAL(e.msg, "");
}

/* The keys of training steps, at their defaults: one H100 SXM (989 TFLOP/s dense BF16,
 * 3350 GB/s, 132 SMs, 80 GiB), hidden 4096 in 32 heads of 4096 / 32 = 128 with kv_heads
 * 0 -> 32, one stage of dp = 8 GPUs with ep 0 -> dp = 8, no schedule. */
static void test_step_defaults(void)
{
    struct config c;
    struct cfg_err e;
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, NULL, 0, &e), 0);
    CU_ASSERT(c.cluster.gpu_flops == 989e12);
    CU_ASSERT(c.cluster.hbm_Bps == 3350e9);
    CU_ASSERT_EQUAL(c.cluster.sms, 132);
    CU_ASSERT(c.cluster.gemm_eff == 0.75);
    CU_ASSERT(c.cluster.gemm_half_rows == 64.0);
    CU_ASSERT(c.cluster.hbm_eff == 0.8);
    CU_ASSERT(c.cluster.gpu_mem_bytes == 85899345920.0);     /* 80 * 2^30 */
    CU_ASSERT_EQUAL(c.model.seq_len, 4096);
    CU_ASSERT_EQUAL(c.model.vocab, 32000);
    CU_ASSERT_EQUAL(c.model.ffn_hidden, 0);
    CU_ASSERT_EQUAL(c.model.attention, ATTN_GQA);
    CU_ASSERT_EQUAL(c.model.heads, 32);
    CU_ASSERT_EQUAL(c.model.kv_heads, 32);
    CU_ASSERT_EQUAL(c.model.head_dim, 128);
    CU_ASSERT_EQUAL(c.model.q_lora_rank, 0);
    CU_ASSERT_EQUAL(c.model.kv_lora_rank, 0);
    CU_ASSERT_EQUAL(c.model.qk_nope_head_dim, 0);
    CU_ASSERT_EQUAL(c.model.qk_rope_head_dim, 0);
    CU_ASSERT_EQUAL(c.model.v_head_dim, 0);
    CU_ASSERT_EQUAL(c.model.moe_every, 1);          /* every layer MoE, as before the key */
    CU_ASSERT_EQUAL(c.model.ffn_act, FFN_SWIGLU);
    CU_ASSERT_EQUAL(c.parallel.pp, 1);
    CU_ASSERT_EQUAL(c.parallel.dp, 8);
    CU_ASSERT_EQUAL(c.parallel.ep, 8);
    CU_ASSERT_EQUAL(c.parallel.vpp, 1);
    CU_ASSERT_EQUAL(c.schedule.kind, SCHED_NONE);
    CU_ASSERT_EQUAL(c.schedule.microbatches, 8);
    CU_ASSERT_EQUAL(c.schedule.micro_batch_tokens, 4096);
    CU_ASSERT(c.schedule.overlap);
    CU_ASSERT_EQUAL(c.schedule.comm_sms, 20);
    CU_ASSERT_EQUAL(c.schedule.dp_reduce, REDUCE_RING);
    CU_ASSERT(c.schedule.grad_bytes_per_param == 4.0);
    CU_ASSERT_STRING_EQUAL(c.calibration.expert_table, "");
    CU_ASSERT_STRING_EQUAL(c.calibration.expert_table_src.where, "default");
}

/* TFLOP/s * 1e12 and GB/s * 1e9 give integers below 2^53 here, so exact; GiB * 2^30 is
 * exact for any value with few enough mantissa bits (0.5 GiB = 2^29 B). The expert
 * table is resolved against the file's folder, and its line is kept. */
static void test_step_units(void)
{
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    int rc = load1("step_units.ini",
                   "[cluster]\n"
                   "gpu_tflops_bf16 = 1979.5\n"
                   "hbm_GBps = 4800\n"
                   "sms = 78\n"
                   "gemm_efficiency = 1\n"
                   "gemm_half_rows = 0.5\n"
                   "hbm_efficiency = 0.25\n"
                   "gpu_mem_GiB = 0.5\n"
                   "[model]\n"
                   "attention = MLA\n"
                   "[schedule]\n"
                   "overlap = off\n"
                   "comm_sms = 0\n"
                   "dp_reduce = tree\n"
                   "grad_bytes_per_param = 2\n"
                   "micro_batch_tokens = 1000000000\n"
                   "[calibration]\n"
                   "expert_table = experts.csv\n",
                   NULL, 0, &c, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(c.cluster.gpu_flops == 1979.5e12);
    CU_ASSERT(c.cluster.hbm_Bps == 4800e9);
    CU_ASSERT_EQUAL(c.cluster.sms, 78);
    CU_ASSERT(c.cluster.gemm_eff == 1.0);
    CU_ASSERT(c.cluster.gemm_half_rows == 0.5);
    CU_ASSERT(c.cluster.hbm_eff == 0.25);
    CU_ASSERT(c.cluster.gpu_mem_bytes == 536870912.0);
    CU_ASSERT_EQUAL(c.model.attention, ATTN_MLA);
    CU_ASSERT(!c.schedule.overlap);
    CU_ASSERT_EQUAL(c.schedule.comm_sms, 0);
    CU_ASSERT_EQUAL(c.schedule.dp_reduce, REDUCE_TREE);
    CU_ASSERT(c.schedule.grad_bytes_per_param == 2.0);
    CU_ASSERT_EQUAL(c.schedule.micro_batch_tokens, 1000000000);
    snprintf(want, sizeof(want), "%s/experts.csv", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.calibration.expert_table, want);
    snprintf(want, sizeof(want), "%s/step_units.ini:18", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.calibration.expert_table_src.where, want);
}

/* GPUs = pp * dp; ep 0 -> dp. 2 nodes of 8 = 16 GPUs: pp 2 -> dp 8, ep 8; pp 4 -> dp 4,
 * ep 4, or ep 2 as given; pp 16 -> dp 1, ep 1 (1 divides the 8 experts). dp given as
 * 16 / 4 = 4 or 16 / 1 = 16 is accepted (ep 8 of dp 16: two EP groups per stage). */
static void test_parallel_layout(void)
{
    static const struct {
        const char *pp, *dp, *ep;
        int want_dp, want_ep;
    } cases[] = {
        { "parallel.pp=2", "parallel.dp=0", "parallel.ep=0", 8, 8 },
        { "parallel.pp=4", "parallel.dp=0", "parallel.ep=0", 4, 4 },
        { "parallel.pp=4", "parallel.dp=4", "parallel.ep=2", 4, 2 },
        { "parallel.pp=16", "parallel.dp=0", "parallel.ep=0", 1, 1 },
        { "parallel.pp=1", "parallel.dp=16", "parallel.ep=8", 16, 8 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        struct cfg_err e;
        const char *sets[] = { "cluster.nodes=2", cases[i].pp, cases[i].dp, cases[i].ep };
        int rc = config_load(&c, NULL, 0, sets, 4, &e);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) {
            fprintf(stderr, "\n  %s: %s\n", cases[i].pp, e.msg);
            continue;
        }
        CU_ASSERT_EQUAL(c.parallel.dp, cases[i].want_dp);
        CU_ASSERT_EQUAL(c.parallel.ep, cases[i].want_ep);
        CU_ASSERT_EQUAL(c.parallel.pp * c.parallel.dp, 16);
    }
}

/* 8 GPUs. pp 3 does not divide them; dp 8 is not 8 / 2; ep 8 is more than dp = 4; with
 * 12 GPUs and pp 2, ep 4 divides the 8 experts but not dp = 6; ep 0 -> dp = 3 does not
 * divide 8 experts. */
static void test_parallel_errors(void)
{
    expect_file_err("[parallel]\npp = 3\n", NULL, 0,
                    ":2: parallel.pp: 3 does not divide the 8 GPUs "
                    "(cluster.nodes * cluster.gpus_per_node)");
    expect_file_err("[parallel]\npp = 16\n", NULL, 0,
                    ":2: parallel.pp: 16 does not divide the 8 GPUs "
                    "(cluster.nodes * cluster.gpus_per_node)");
    expect_file_err("[parallel]\npp = 2\ndp = 8\n", NULL, 0,
                    ":3: parallel.dp: 8 is not GPUs / parallel.pp = 8 / 2 = 4 "
                    "(GPUs = pp * dp: there is no tensor parallelism)");
    expect_file_err("[parallel]\npp = 2\nep = 8\n", NULL, 0,
                    ":3: parallel.ep: 8 is more than parallel.dp = 4 "
                    "(cluster.nodes * cluster.gpus_per_node / parallel.pp)");
    expect_file_err("[cluster]\ngpus_per_node = 12\n[parallel]\npp = 2\nep = 4\n", NULL, 0,
                    ":5: parallel.ep: 4 does not divide parallel.dp = 6 "
                    "(cluster.nodes * cluster.gpus_per_node / parallel.pp)");
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    /* ep 0 is derived from dp, so the latest of what dp derives from is blamed: pp */
    snprintf(want, sizeof(want), "%s/ep0.ini:4: parallel.pp: parallel.ep = 0 (dp = 3) does "
             "not divide model.experts = 8", tmp_dir);
    expect_msg(load1("ep0.ini", "[cluster]\ngpus_per_node = 12\n[parallel]\npp = 4\n", NULL, 0,
                     &c, &e), &e, want);
}

/* GB/s * 1e9 is exact for these values (results are integers below 2^53); us / 1e6 rounds
 * once, so it equals the literal 1.5e-6 to within one ulp (~2e-22). */
static void test_units(void)
{
    struct config c;
    struct cfg_err e;
    int rc = load1("units.ini",
                   "[cluster]\n"
                   "name = H100 x2 ; inline comment\n"
                   "nvlink_GBps = 450\n"
                   "nic_GBps = 12.5\n"
                   "nvlink_latency_us = 1.5\n"
                   "nic_latency_us = 0\n"
                   "switch_latency_us = 0.25\n"
                   "route = PXN\n"
                   "[model]\n"                 /* 8 GPUs x 1e9 tokens x top_k 1 <= 2^33 */
                   "top_k = 1\n"
                   "[routing]\n"
                   "tokens_per_gpu = 1000000000\n"
                   "distribution = zipf\n"
                   "zipf_s = 1.2\n"
                   "dedup = off\n",
                   NULL, 0, &c, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(c.cluster.name, "H100 x2");
    CU_ASSERT(c.cluster.nvlink_Bps == 450e9);
    CU_ASSERT(c.cluster.nic_Bps == 12.5e9);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_lat_s, 1.5e-6, 1e-21);
    CU_ASSERT(c.cluster.nic_lat_s == 0.0);
    CU_ASSERT(c.cluster.switch_lat_s == 0.25e-6);   /* 0.25 and the quotient are exact-rounded */
    CU_ASSERT_EQUAL(c.cluster.route, ROUTE_PXN);
    CU_ASSERT_EQUAL(c.routing.tokens_per_gpu, 1000000000);     /* the schema's bound, 1e9 */
    CU_ASSERT_EQUAL(c.routing.distribution, DIST_ZIPF);
    CU_ASSERT_DOUBLE_EQUAL(c.routing.zipf_s, 1.2, 1e-15);
    CU_ASSERT(!c.routing.dedup);
}

/* A training step that loads on the default 8 GPUs: 8 layers (the first dense), pp 2 ->
 * dp 4 -> ep 4 (| 8 experts), 1f1b over 4 micro-batches; step.ini lines 1-12. */
static const char step_ini[] =
    "[model]\n"                     /* 1 */
    "layers = 8\n"                  /* 2 */
    "first_dense_layers = 1\n"      /* 3 */
    "ffn_hidden = 1024\n"           /* 4 */
    "expert_ffn_hidden = 512\n"     /* 5 */
    "[parallel]\n"                  /* 6 */
    "pp = 2\n"                      /* 7 */
    "[schedule]\n"                  /* 8 */
    "kind = 1f1b\n"                 /* 9 */
    "microbatches = 4\n"            /* 10 */
    "[traffic]\n"                   /* 11 */
    "pattern = moe\n";              /* 12 */

/* Loads step_ini as step.ini plus sets; expects -EINVAL and the message want, where a
 * leading ':' stands for "<tmp_dir>/step.ini:". */
static void expect_step_err(const char *const *sets, int nsets, const char *want)
{
    struct config c;
    struct cfg_err e;
    char full[2 * CFG_PATH_MAX];
    if (want[0] == ':')
        snprintf(full, sizeof(full), "%s/step.ini%s", tmp_dir, want);
    else
        snprintf(full, sizeof(full), "%s", want);
    expect_msg(load1("step.ini", step_ini, sets, nsets, &c, &e), &e, full);
}

static void test_step_loads(void)
{
    struct config c;
    struct cfg_err e;
    const char *heads24[] = { "model.heads=24", "model.head_dim=128" };
    CU_ASSERT_EQUAL_FATAL(load1("step.ini", step_ini, NULL, 0, &c, &e), 0);
    CU_ASSERT_EQUAL(c.schedule.kind, SCHED_1F1B);
    CU_ASSERT_EQUAL(c.parallel.pp, 2);
    CU_ASSERT_EQUAL(c.parallel.dp, 4);
    CU_ASSERT_EQUAL(c.parallel.ep, 4);
    /* 24 heads do not divide 4096, but a given head_dim needs no division */
    CU_ASSERT_EQUAL_FATAL(load1("step.ini", NULL, heads24, 2, &c, &e), 0);
    CU_ASSERT_EQUAL(c.model.heads, 24);
    CU_ASSERT_EQUAL(c.model.kv_heads, 24);
    CU_ASSERT_EQUAL(c.model.head_dim, 128);
    /* all 8 layers dense: a step without MoE layers needs no expert width */
    const char *dense[] = { "model.first_dense_layers=8", "model.expert_ffn_hidden=0" };
    CU_ASSERT_EQUAL(load1("step.ini", NULL, dense, 2, &c, &e), 0);
    /* moe_every 9 > 8 layers: no MoE layer either */
    const char *sparse[] = { "model.first_dense_layers=0", "model.moe_every=9",
                             "model.expert_ffn_hidden=0" };
    CU_ASSERT_EQUAL(load1("step.ini", NULL, sparse, 3, &c, &e), 0);
    /* the words of ffn_act */
    static const char *const acts[] = { "swiglu", "geglu", "relu", "gelu" };
    for (int i = 0; i < 4; i++) {
        char set[64];
        const char *sets[] = { set };
        snprintf(set, sizeof(set), "model.ffn_act=%s", acts[i]);
        CU_ASSERT_EQUAL_FATAL(load1("step.ini", NULL, sets, 1, &c, &e), 0);
        CU_ASSERT_EQUAL(c.model.ffn_act, (enum ffn_act)i);
    }
}

/* Without a step the step's cross-checks are not made: 24 heads with hidden 4096 load,
 * head_dim = 4096 / 24 = 170 rounded down; no ffn sizes; MLA without its ranks. */
static void test_no_step_no_step_checks(void)
{
    struct config c;
    struct cfg_err e;
    const char *sets[] = { "model.heads=24", "model.first_dense_layers=1",
                           "model.attention=mla", "schedule.comm_sms=500" };
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, sets, 4, &e), 0);
    CU_ASSERT_EQUAL(c.model.head_dim, 170);
    CU_ASSERT_EQUAL(c.model.ffn_hidden, 0);
}

/* Each rule of a step, broken once. A rule on keys of equal standing blames the one set
 * last (the --set when there is one); a value that is missing is blamed where the key
 * that needs it was set. */
static void test_step_errors(void)
{
    const char *alltoall[] = { "traffic.pattern=alltoall" };
    const char *vpp_3[] = { "schedule.kind=interleaved-1f1b", "parallel.vpp=8" };
    const char *vpp_1f1b[] = { "parallel.vpp=2" };
    const char *kind_after_vpp[] = { "parallel.vpp=2", "schedule.kind=zb1p" };
    const char *sms[] = { "cluster.sms=20" };
    const char *heads[] = { "model.heads=24" };
    const char *kv[] = { "model.kv_heads=5" };
    const char *mla[] = { "model.attention=mla" };
    const char *mla_v[] = { "model.attention=mla", "model.kv_lora_rank=512",
                            "model.qk_nope_head_dim=128" };
    expect_step_err(alltoall, 1, "--set: traffic.pattern: schedule.kind = 1f1b needs "
                    "traffic.pattern = moe, got alltoall");
    /* interleaved-1f1b: pp * vpp = 2 * 8 = 16 pieces > 8 layers */
    expect_step_err(vpp_3, 2, "--set: parallel.vpp: schedule.kind = interleaved-1f1b cuts the "
                    "model into 16 pieces (parallel.pp = 2, parallel.vpp = 8), more than "
                    "model.layers = 8");
    expect_step_err(vpp_1f1b, 1, "--set: parallel.vpp: parallel.vpp = 2 needs schedule.kind = "
                    "interleaved-1f1b, got 1f1b");
    expect_step_err(kind_after_vpp, 2, "--set: schedule.kind: parallel.vpp = 2 needs "
                    "schedule.kind = interleaved-1f1b, got zb1p");
    expect_step_err(sms, 1, "--set: cluster.sms: schedule.comm_sms = 20 leaves no SM of "
                    "cluster.sms = 20 for compute");
    expect_step_err(heads, 1, "--set: model.heads: 24 does not divide model.hidden = 4096 "
                    "(model.head_dim = 0: hidden / heads)");
    expect_step_err(kv, 1, "--set: model.kv_heads: 5 does not divide model.heads = 32");
    expect_step_err(mla, 1, "--set: model.kv_lora_rank: required (> 0) for model.attention = "
                    "mla in a training step");
    expect_step_err(mla_v, 3, "--set: model.v_head_dim: required (> 0) for model.attention = "
                    "mla in a training step");
    /* moe_every 2 with no dense prefix: layers 0, 2, 4, 6 are dense and need ffn_hidden;
     * moe_every 9 > 8 layers with no dense prefix leaves no MoE layer, 8 dense ones */
    const char *every2[] = { "model.first_dense_layers=0", "model.ffn_hidden=0",
                             "model.moe_every=2" };
    expect_step_err(every2, 3, "--set: model.ffn_hidden: required (> 0) for the 4 dense layers "
                    "(model.first_dense_layers = 0, model.moe_every = 2) of a training step");
    const char *every2_ok[] = { "model.first_dense_layers=0", "model.moe_every=2" };
    struct config c;
    struct cfg_err e;
    CU_ASSERT_EQUAL(load1("step.ini", step_ini, every2_ok, 2, &c, &e), 0);
}

/* The same rules named at file lines. dualpipev cuts the model into 2 * pp = 4 pieces,
 * more than 3 layers; kind (line 6) was set after layers (line 2) and pp (line 4). A
 * missing ffn_hidden, expert_ffn_hidden or MLA rank is blamed on the latest of the keys
 * that call for it: kind's line, or first_dense_layers' when it comes after kind. */
static void test_step_errors_in_files(void)
{
    expect_file_err("[model]\nlayers = 3\n[parallel]\npp = 2\n[schedule]\nkind = dualpipev\n",
                    NULL, 0, ":6: schedule.kind: schedule.kind = dualpipev cuts the model into 4 "
                    "pieces (parallel.pp = 2, parallel.vpp = 1), more than model.layers = 3");
    expect_file_err("[model]\nlayers = 4\nfirst_dense_layers = 1\nexpert_ffn_hidden = 512\n"
                    "[schedule]\nkind = gpipe\n", NULL, 0,
                    ":6: model.ffn_hidden: required (> 0) for the 1 dense layers "
                    "(model.first_dense_layers = 1, model.moe_every = 1) of a training step");
    expect_file_err("[schedule]\nkind = gpipe\n[model]\nlayers = 4\nfirst_dense_layers = 1\n"
                    "expert_ffn_hidden = 512\n", NULL, 0,
                    ":5: model.ffn_hidden: required (> 0) for the 1 dense layers "
                    "(model.first_dense_layers = 1, model.moe_every = 1) of a training step");
    expect_file_err("[schedule]\n\nkind = gpipe\n", NULL, 0,
                    ":3: model.expert_ffn_hidden: required (> 0) for the MoE layers of a "
                    "training step (schedule.kind = gpipe)");
    expect_file_err("[model]\nexpert_ffn_hidden = 512\nattention = mla\nkv_lora_rank = 512\n"
                    "qk_nope_head_dim = 0\n[schedule]\nkind = gpipe\n", NULL, 0,
                    ":7: model.qk_nope_head_dim: required (> 0) for model.attention = mla in a "
                    "training step");
    expect_file_err("[model]\nexpert_ffn_hidden = 512\n[schedule]\nkind = 1f1b\n"
                    "[traffic]\npattern = matrix\nmatrix = m.txt\n", NULL, 0,
                    ":6: traffic.pattern: schedule.kind = 1f1b needs traffic.pattern = moe, "
                    "got matrix");
}

/* A schedule's own rules come from sched_check() (sched.h), quoted in the message with
 * the three values, blamed on the latest of kind, pp and microbatches. DualPipe feeds
 * micro-batches from both ends, half each (DeepSeek-V3 report sec. 3.2.1), so an odd
 * count is one it cannot split. */
static void test_step_sched_rules(void)
{
    const char *odd[] = { "schedule.kind=dualpipe", "schedule.microbatches=5" };
    const char *kind_last[] = { "schedule.microbatches=5", "schedule.kind=dualpipe" };
    const char *why = sched_check(SCHED_DUALPIPE, 2, 5, 1);
    char want[CFG_ERR_MAX];
    CU_ASSERT_PTR_NOT_NULL_FATAL(why);
    snprintf(want, sizeof(want), "--set: schedule.microbatches: %s (schedule.kind = dualpipe, "
             "parallel.pp = 2, schedule.microbatches = 5)", why);
    expect_step_err(odd, 2, want);
    snprintf(want, sizeof(want), "--set: schedule.kind: %s (schedule.kind = dualpipe, "
             "parallel.pp = 2, schedule.microbatches = 5)", why);
    expect_step_err(kind_last, 2, want);
    CU_ASSERT_PTR_NULL(sched_check(SCHED_1F1B, 2, 4, 1));       /* step_ini's own */
}

/* Each new key refuses a value outside its schema range. */
static void test_step_ranges(void)
{
    expect_set_err("cluster.gemm_efficiency=0", "--set: cluster.gemm_efficiency: must be >= "
                   "0.001 and <= 1, got 0");
    expect_set_err("cluster.gemm_efficiency=1.5", "--set: cluster.gemm_efficiency: must be >= "
                   "0.001 and <= 1, got 1.5");
    expect_set_err("cluster.hbm_efficiency=-0.1", "--set: cluster.hbm_efficiency: must be >= "
                   "0.001 and <= 1, got -0.1");
    expect_set_err("cluster.gemm_half_rows=0", "--set: cluster.gemm_half_rows: must be > 0 and "
                   "<= 1000000000, got 0");
    expect_set_err("cluster.gpu_tflops_bf16=0", "--set: cluster.gpu_tflops_bf16: must be >= "
                   "0.001 and <= 1000000, got 0");
    expect_set_err("cluster.gpu_mem_GiB=0", "--set: cluster.gpu_mem_GiB: must be >= 0.001 and "
                   "<= 1000000, got 0");
    expect_set_err("cluster.sms=0", "--set: cluster.sms: must be >= 1 and <= 65536, got 0");
    expect_set_err("parallel.pp=0", "--set: parallel.pp: must be >= 1 and <= 1048576, got 0");
    expect_set_err("parallel.dp=-1", "--set: parallel.dp: must be >= 0 and <= 1048576, got -1");
    expect_set_err("parallel.vpp=0", "--set: parallel.vpp: must be >= 1 and <= 1048576, got 0");
    expect_set_err("schedule.microbatches=0", "--set: schedule.microbatches: must be >= 1 and "
                   "<= 1048576, got 0");
    expect_set_err("schedule.micro_batch_tokens=0", "--set: schedule.micro_batch_tokens: must "
                   "be >= 1 and <= 1000000000, got 0");
    expect_set_err("schedule.comm_sms=-1", "--set: schedule.comm_sms: must be >= 0 and <= 65536, "
                   "got -1");
    expect_set_err("schedule.grad_bytes_per_param=0", "--set: schedule.grad_bytes_per_param: "
                   "must be > 0 and <= 8, got 0");
    expect_set_err("model.heads=0", "--set: model.heads: must be >= 1 and <= 16777216, got 0");
    expect_set_err("model.seq_len=0", "--set: model.seq_len: must be >= 1 and <= 16777216, "
                   "got 0");
    expect_set_err("model.vocab=16777217", "--set: model.vocab: must be >= 1 and <= 16777216, "
                   "got 16777217");
    expect_set_err("model.kv_lora_rank=-1", "--set: model.kv_lora_rank: must be >= 0 and <= "
                   "16777216, got -1");
    expect_set_err("schedule.kind=zb2", "--set: schedule.kind: 'zb2' is not one of "
                   "none|gpipe|1f1b|interleaved-1f1b|zb1p|dualpipe|dualpipev|prefill|decode");
    expect_set_err("model.attention=mha", "--set: model.attention: 'mha' is not one of gqa|mla");
    expect_set_err("model.ffn_act=swish", "--set: model.ffn_act: 'swish' is not one of "
                   "swiglu|geglu|relu|gelu");
    expect_set_err("model.moe_every=0", "--set: model.moe_every: must be >= 1 and <= 1048576, "
                   "got 0");
    expect_set_err("schedule.dp_reduce=ring2", "--set: schedule.dp_reduce: 'ring2' is not one "
                   "of ring|tree");
    expect_set_err("schedule.overlap=maybe", "--set: schedule.overlap: 'maybe' is not a boolean "
                   "(true/false, on/off, yes/no, 1/0)");
}

/* A UTF-8 BOM, CRLF line ends and indented keys read like plain lines. */
static void test_layout(void)
{
    struct config c;
    struct cfg_err e;
    int rc = load1("layout.ini", "\xef\xbb\xbf[cluster]\r\n  nodes = 2\r\n\tgpus_per_node = 4\r\n",
                   NULL, 0, &c, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c.cluster.nodes, 2);
    CU_ASSERT_EQUAL(c.cluster.gpus_per_node, 4);
}

/* a.ini sets nodes 2, gpus 4, name a, 32 experts; b.ini sets nodes 4 (16 GPUs, ep 16);
 * --set nodes 8 and name c: the last setter wins key by key -> 8 nodes * 4 GPUs = 32,
 * ep = 32, name "c". */
static void test_override_order(void)
{
    struct config c;
    struct cfg_err e;
    char pa[CFG_PATH_MAX], pb[CFG_PATH_MAX];
    const char *files[] = { tmp_path(pa, "a.ini"), tmp_path(pb, "b.ini") };
    const char *sets[] = { "cluster.nodes=8", " cluster.name = c " };
    write_file("a.ini", "[cluster]\nnodes = 2\ngpus_per_node = 4\nname = a\n[model]\nexperts = 32\n");
    write_file("b.ini", "[cluster]\nnodes = 4\n");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 2, NULL, 0, &e), 0);
    CU_ASSERT_EQUAL(c.cluster.nodes, 4);
    CU_ASSERT_EQUAL(c.parallel.ep, 16);
    CU_ASSERT_STRING_EQUAL(c.cluster.name, "a");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 2, sets, 2, &e), 0);
    CU_ASSERT_EQUAL(c.cluster.nodes, 8);
    CU_ASSERT_EQUAL(c.cluster.gpus_per_node, 4);
    CU_ASSERT_STRING_EQUAL(c.cluster.name, "c");
    CU_ASSERT_EQUAL(c.parallel.ep, 32);
    CU_ASSERT_EQUAL(config_gpus(&c), 32);
}

/* A cross-check blames where the key was last set: b.ini line 3, then --set. */
static void test_blame_last_setter(void)
{
    struct config c;
    struct cfg_err e;
    char pa[CFG_PATH_MAX], pb[CFG_PATH_MAX], want[2 * CFG_PATH_MAX];
    const char *files[] = { tmp_path(pa, "a.ini"), tmp_path(pb, "b.ini") };
    const char *sets[] = { "model.top_k=10" };
    write_file("a.ini", "[model]\nexperts = 8\ntop_k = 2\n");
    write_file("b.ini", "[model]\n\ntop_k = 9\n");
    snprintf(want, sizeof(want), "%s:3: model.top_k: 9 is more than model.experts = 8", pb);
    expect_msg(config_load(&c, files, 2, NULL, 0, &e), &e, want);
    expect_msg(config_load(&c, files, 2, sets, 1, &e), &e,
               "--set: model.top_k: 10 is more than model.experts = 8");
}

/* top.ini includes sub/base.ini, which includes more.ini from its own folder (sub/).
 * Reading order: more (hidden 7168, experts 4), base (experts 16, top_k 8, matrix m.csv
 * on line 6), top (top_k 4) -> hidden 7168, experts 16, top_k 4, matrix <tmp>/sub/m.csv. */
static void test_include(void)
{
    struct config c;
    struct cfg_err e;
    char p[CFG_PATH_MAX], want[2 * CFG_PATH_MAX];
    CU_ASSERT_EQUAL_FATAL(mkdir(tmp_path(p, "sub"), 0700), 0);
    write_file("sub/more.ini", "[model]\nhidden = 7168\nexperts = 4\n");
    write_file("sub/base.ini", "include = more.ini\n[model]\nexperts = 16\ntop_k = 8\n"
                               "[traffic]\nmatrix = m.csv\n");
    CU_ASSERT_EQUAL_FATAL(load1("top.ini", "include = sub/base.ini\n[model]\ntop_k = 4\n",
                                NULL, 0, &c, &e), 0);
    CU_ASSERT_EQUAL(c.model.hidden, 7168);
    CU_ASSERT_EQUAL(c.model.experts, 16);
    CU_ASSERT_EQUAL(c.model.top_k, 4);
    snprintf(want, sizeof(want), "%s/sub/m.csv", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix, want);
    snprintf(want, sizeof(want), "%s/sub/base.ini:6", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix_src.where, want);

    /* --set paths are taken as written. */
    const char *sets[] = { "traffic.matrix=x/y.csv" };
    CU_ASSERT_EQUAL_FATAL(load1("top.ini", NULL, sets, 1, &c, &e), 0);
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix, "x/y.csv");
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix_src.where, "--set");
}

/* Eight nested includes are allowed: d0 -> d1 -> ... -> d8, and d8 sets hidden = 123. */
static void test_include_depth_8(void)
{
    struct config c;
    struct cfg_err e;
    for (int i = 0; i < 8; i++) {
        char name[32], text[48];
        snprintf(name, sizeof(name), "d%d.ini", i);
        snprintf(text, sizeof(text), "include = d%d.ini\n", i + 1);
        write_file(name, text);
    }
    write_file("d8.ini", "[model]\nhidden = 123\n");
    CU_ASSERT_EQUAL_FATAL(load1("d0.ini", NULL, NULL, 0, &c, &e), 0);
    CU_ASSERT_EQUAL(c.model.hidden, 123);
}

/* K M G KB MB GB are powers of 1000, KiB MiB GiB powers of 1024. */
static void test_sizes(void)
{
    static const struct {
        const char *set;
        uint64_t bytes;
    } cases[] = {
        { "traffic.bytes_per_pair=1MiB", 1048576 },
        { "traffic.bytes_per_pair=2KB", 2000 },
        { "traffic.bytes_per_pair=5K", 5000 },
        { "traffic.bytes_per_pair=4MB", 4000000 },
        { "traffic.bytes_per_pair=1G", 1000000000 },
        { "traffic.bytes_per_pair=8KiB", 8192 },
        { "traffic.bytes_per_pair=3 GiB", 3221225472ull },
        { "traffic.bytes_per_pair=7", 7 },
        { "traffic.bytes_per_pair=0", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        struct cfg_err e;
        CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, &cases[i].set, 1, &e), 0);
        CU_ASSERT_EQUAL(c.traffic.bytes_per_pair, cases[i].bytes);
    }
    expect_set_err("traffic.bytes_per_pair=-1", "--set: traffic.bytes_per_pair: '-1' is negative");
    expect_set_err("traffic.bytes_per_pair=1.5MiB", "--set: traffic.bytes_per_pair: '1.5MiB' is "
                   "not a size (bytes, optional K M G KB MB GB KiB MiB GiB)");
    /* 2e10 * 2^30 = 2.1e19 > 2^64 - 1 = 1.8e19 */
    expect_set_err("traffic.bytes_per_pair=20000000000GiB",
                   "--set: traffic.bytes_per_pair: '20000000000GiB' is more than 2^64-1 bytes");
}

/* true/on/yes/1 and false/off/no/0, any case. */
static void test_bools(void)
{
    static const struct {
        const char *set;
        bool v;
    } cases[] = {
        { "routing.dedup=TRUE", true }, { "routing.dedup=on", true }, { "routing.dedup=Yes", true },
        { "routing.dedup=1", true }, { "routing.dedup=false", false }, { "routing.dedup=OFF", false },
        { "routing.dedup=no", false }, { "routing.dedup=0", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        struct cfg_err e;
        CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, &cases[i].set, 1, &e), 0);
        CU_ASSERT_EQUAL(c.routing.dedup, cases[i].v);
    }
}

/* The names are the words of the files. */
static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(config_route_name(ROUTE_RAIL), "rail");
    CU_ASSERT_STRING_EQUAL(config_route_name(ROUTE_PXN), "pxn");
    CU_ASSERT_STRING_EQUAL(config_route_name(ROUTE_HIER), "hierarchical");
    CU_ASSERT_STRING_EQUAL(config_route_name((enum route_kind)7), "?");
    CU_ASSERT_STRING_EQUAL(config_dist_name(DIST_UNIFORM), "uniform");
    CU_ASSERT_STRING_EQUAL(config_dist_name(DIST_ZIPF), "zipf");
    CU_ASSERT_STRING_EQUAL(config_pattern_name(PATTERN_MOE), "moe");
    CU_ASSERT_STRING_EQUAL(config_pattern_name(PATTERN_ALLTOALL), "alltoall");
    CU_ASSERT_STRING_EQUAL(config_pattern_name(PATTERN_MATRIX), "matrix");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_NONE), "none");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_GPIPE), "gpipe");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_1F1B), "1f1b");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_INTERLEAVED_1F1B), "interleaved-1f1b");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_ZB1P), "zb1p");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_DUALPIPE), "dualpipe");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_DUALPIPEV), "dualpipev");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_PREFILL), "prefill");
    CU_ASSERT_STRING_EQUAL(config_sched_name(SCHED_DECODE), "decode");
    CU_ASSERT_STRING_EQUAL(config_sched_name((enum sched_kind)9), "?");
    CU_ASSERT_STRING_EQUAL(config_attn_name(ATTN_GQA), "gqa");
    CU_ASSERT_STRING_EQUAL(config_attn_name(ATTN_MLA), "mla");
    CU_ASSERT_STRING_EQUAL(config_attn_name((enum attn_kind)2), "?");
    CU_ASSERT_STRING_EQUAL(config_reduce_name(REDUCE_RING), "ring");
    CU_ASSERT_STRING_EQUAL(config_reduce_name(REDUCE_TREE), "tree");
    CU_ASSERT_STRING_EQUAL(config_reduce_name((enum reduce_kind)2), "?");
}

/* ---- bad input: each is -EINVAL with one exact line ---- */

/* fopen fails with ENOENT: "path: cannot open: <strerror(ENOENT)>"; an include names its line. */
static void test_missing_file(void)
{
    struct config c;
    struct cfg_err e;
    char p[CFG_PATH_MAX], want[2 * CFG_PATH_MAX];
    snprintf(want, sizeof(want), "%s/nope.ini: cannot open: No such file or directory", tmp_dir);
    expect_msg(load1("nope.ini", NULL, NULL, 0, &c, &e), &e, want);
    snprintf(want, sizeof(want), ":1: include: %s: cannot open: No such file or directory",
             tmp_path(p, "gone.ini"));
    expect_file_err("include = gone.ini\n", NULL, 0, want);
}

/* [bogus] on line 4, its key on line 5. */
static void test_unknown_section(void)
{
    expect_file_err("[cluster]\nnodes = 2\n\n[bogus]\nkey = 1\n", NULL, 0,
                    ":5: bogus.key: unknown section 'bogus'");
    expect_set_err("bogus.key=1", "--set: bogus.key: unknown section 'bogus'");
}

/* Comment lines count: colour is on line 4. Before any section only include is allowed. */
static void test_unknown_key(void)
{
    expect_file_err("[cluster]\n; a comment\n# another\ncolour = red\n", NULL, 0,
                    ":4: cluster.colour: unknown key");
    expect_file_err("nodes = 2\n", NULL, 0,
                    ":1: nodes: only 'include = path' may come before a [section]");
}

static void test_not_a_number(void)
{
    const char *sets[] = { "cluster.nodes=abc" };
    expect_file_err("[cluster]\nnodes = abc\n", NULL, 0, ":2: cluster.nodes: 'abc' is not an integer");
    expect_file_err("[cluster]\nnodes =\n", NULL, 0, ":2: cluster.nodes: empty value");
    expect_file_err("[cluster]\nnic_GBps = fast\n", NULL, 0,
                    ":2: cluster.nic_GBps: 'fast' is not a number");
    struct config c;
    struct cfg_err e;
    expect_set_err(sets[0], "--set: cluster.nodes: 'abc' is not an integer");
    /* the file is fine; the --set after it is not */
    expect_msg(load1("ok.ini", "[cluster]\nnodes = 2\n", sets, 1, &c, &e), &e,
               "--set: cluster.nodes: 'abc' is not an integer");
}

static void test_trailing_junk(void)
{
    expect_file_err("[cluster]\nnodes = 4x\n", NULL, 0, ":2: cluster.nodes: '4x' is not an integer");
    expect_file_err("[cluster]\nnodes = 1.5\n", NULL, 0, ":2: cluster.nodes: '1.5' is not an integer");
    expect_file_err("[cluster]\nnvlink_GBps = 450GB\n", NULL, 0,
                    ":2: cluster.nvlink_GBps: '450GB' is not a number");
    expect_file_err("[cluster]\nnvlink_GBps = inf\n", NULL, 0,
                    ":2: cluster.nvlink_GBps: 'inf' is not a number");
    /* 99999999999 > INT_MAX = 2147483647; 1e999 > DBL_MAX */
    expect_file_err("[cluster]\nnodes = 99999999999\n", NULL, 0,
                    ":2: cluster.nodes: '99999999999' is out of range");
    expect_file_err("[cluster]\nnvlink_GBps = 1e999\n", NULL, 0,
                    ":2: cluster.nvlink_GBps: '1e999' is out of range");
}

static void test_negative(void)
{
    expect_file_err("[cluster]\nnodes = -1\n", NULL, 0, ":2: cluster.nodes: must be >= 1 and "
                    "<= 1048576, got -1");
    expect_file_err("[cluster]\nnic_latency_us = -2\n", NULL, 0,
                    ":2: cluster.nic_latency_us: must be >= 0 and <= 1000000, got -2");
    expect_set_err("routing.tokens_per_gpu=-5", "--set: routing.tokens_per_gpu: must be >= 0 "
                   "and <= 1000000000, got -5");
    /* 2^33 parses as int64 but is over the schema's bound of 1e9 tokens */
    expect_set_err("routing.tokens_per_gpu=8589934592", "--set: routing.tokens_per_gpu: must be "
                   ">= 0 and <= 1000000000, got 8589934592");
    expect_set_err("cluster.oversubscription=0.5",
                   "--set: cluster.oversubscription: must be >= 1 and <= 1000, got 0.5");
}

/* Bandwidths must be at least 1e-3 GB/s; the message quotes the value as written. */
static void test_zero_bandwidth(void)
{
    expect_file_err("[cluster]\nnvlink_GBps = 0\n", NULL, 0,
                    ":2: cluster.nvlink_GBps: must be >= 0.001 and <= 1000000000, got 0");
    expect_file_err("[cluster]\n\nnic_GBps = 0.0\n", NULL, 0,
                    ":3: cluster.nic_GBps: must be >= 0.001 and <= 1000000000, got 0.0");
}

/* Link efficiencies: default 1 (the line rate, as before the keys); a file's value is
 * stored as written (a fraction, no unit); outside [0.001, 1] and non-numbers are refused
 * naming the key. */
static void test_link_efficiency(void)
{
    struct config c;
    struct cfg_err e;
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, NULL, 0, &e), 0);
    CU_ASSERT(c.cluster.nvlink_eff == 1.0);
    CU_ASSERT(c.cluster.nic_eff == 1.0);
    CU_ASSERT_EQUAL_FATAL(load1("eff.ini", "[cluster]\nnvlink_efficiency = 0.836\n"
                                "nic_efficiency = 0.98\n", NULL, 0, &c, &e), 0);
    CU_ASSERT(c.cluster.nvlink_eff == 0.836);
    CU_ASSERT(c.cluster.nic_eff == 0.98);
    expect_set_err("cluster.nvlink_efficiency=0", "--set: cluster.nvlink_efficiency: must be "
                   ">= 0.001 and <= 1, got 0");
    expect_set_err("cluster.nic_efficiency=1.01", "--set: cluster.nic_efficiency: must be "
                   ">= 0.001 and <= 1, got 1.01");
    expect_set_err("cluster.nic_efficiency=nan", "--set: cluster.nic_efficiency: 'nan' is not "
                   "a number");
    expect_file_err("[cluster]\nnvlink_efficiency = -0.5\n", NULL, 0,
                    ":2: cluster.nvlink_efficiency: must be >= 0.001 and <= 1, got -0.5");
}

static void test_top_k_gt_experts(void)
{
    expect_file_err("[model]\nexperts = 8\ntop_k = 9\n", NULL, 0,
                    ":3: model.top_k: 9 is more than model.experts = 8");
}

/* 6 GPUs, ep 3 divides 6 but not 8 experts. With ep unset it is dp = all 16 GPUs (pp 1,
 * --set), 8 % 16 != 0: blamed on what dp derives from, set last by the --set. */
static void test_ep_not_dividing_experts(void)
{
    const char *sets[] = { "cluster.gpus_per_node=16" };
    expect_file_err("[cluster]\ngpus_per_node = 6\n[model]\nexperts = 8\n[parallel]\nep = 3\n",
                    NULL, 0, ":6: parallel.ep: 3 does not divide model.experts = 8");
    expect_set_err(sets[0], "--set: cluster.gpus_per_node: parallel.ep = 0 (dp = 16) does not "
                   "divide model.experts = 8");
}

/* 6 GPUs at pp 1 = dp 6: ep 4 divides 8 experts but not 6; ep 16 > dp = 8. */
static void test_ep_not_dividing_gpus(void)
{
    expect_file_err("[cluster]\ngpus_per_node = 6\n[parallel]\nep = 4\n", NULL, 0,
                    ":4: parallel.ep: 4 does not divide parallel.dp = 6 "
                    "(cluster.nodes * cluster.gpus_per_node / parallel.pp)");
    expect_file_err("[model]\nexperts = 16\n[parallel]\nep = 16\n", NULL, 0,
                    ":4: parallel.ep: 16 is more than parallel.dp = 8 "
                    "(cluster.nodes * cluster.gpus_per_node / parallel.pp)");
}

static void test_bad_enum(void)
{
    expect_file_err("[cluster]\nroute = ring\n", NULL, 0,
                    ":2: cluster.route: 'ring' is not one of rail|pxn|hierarchical");
    expect_set_err("traffic.pattern=ring", "--set: traffic.pattern: 'ring' is not one of "
                   "moe|alltoall|matrix");
}

static void test_bad_bool(void)
{
    expect_file_err("[routing]\ndedup = maybe\n", NULL, 0,
                    ":2: routing.dedup: 'maybe' is not a boolean (true/false, on/off, yes/no, 1/0)");
}

/* No '=', no '.', or an empty section or key before the '='. */
static void test_malformed_set(void)
{
    expect_set_err("xyz", "--set: 'xyz': expected section.key=value");
    expect_set_err("cluster.nodes", "--set: 'cluster.nodes': expected section.key=value");
    expect_set_err("nodes=1", "--set: 'nodes=1': expected section.key=value");
    expect_set_err(".nodes=1", "--set: '.nodes=1': expected section.key=value");
    expect_set_err("cluster.=1", "--set: 'cluster.=1': expected section.key=value");
    expect_set_err("=5", "--set: '=5': expected section.key=value");
}

/* A 199-byte line loads; a 200-byte line on line 2 is an error. */
static void test_overlong_line(void)
{
    struct config c;
    struct cfg_err e;
    char text[512];
    snprintf(text, sizeof(text), "[cluster]\nnodes = 1\n; %0197d\n", 0);   /* "; " + 197 */
    CU_ASSERT_EQUAL(load1("long.ini", text, NULL, 0, &c, &e), 0);
    snprintf(text, sizeof(text), "[cluster]\nname = %0193d\n", 0);  /* "name = " + 193 */
    expect_file_err(text, NULL, 0, ":2: line longer than 199 characters");
}

/* self.ini includes itself: depth 1..8 are read, the 9th include fails on line 1. */
static void test_include_too_deep(void)
{
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    snprintf(want, sizeof(want), "%s/self.ini:1: include: nested more than 8 deep", tmp_dir);
    expect_msg(load1("self.ini", "include = self.ini\n", NULL, 0, &c, &e), &e, want);
}

/* pattern = matrix on line 2 and no matrix anywhere: blame the pattern's line. */
static void test_matrix_without_path(void)
{
    expect_file_err("[traffic]\npattern = matrix\n", NULL, 0,
                    ":2: traffic.matrix: required when traffic.pattern = matrix");
}

/* inih's own errors: no ']' (line 1), no '=' (line 2); the first error wins. */
static void test_syntax_error(void)
{
    expect_file_err("[cluster\nnodes = 2\n", NULL, 0, ":1: syntax error");
    expect_file_err("[cluster]\nnodes 2\n", NULL, 0, ":2: syntax error");
    expect_file_err("[cluster]\nfoo\nnodes = abc\n", NULL, 0, ":2: syntax error");
}

static void test_other_checks(void)
{
    expect_file_err("[model]\nlayers = 4\nfirst_dense_layers = 5\n", NULL, 0,
                    ":3: model.first_dense_layers: 5 is more than model.layers = 4");
    /* 2000 * 1000 = 2e6 GPUs > 2^20 = 1048576: blamed on the one set last */
    expect_file_err("[cluster]\nnodes = 2000\ngpus_per_node = 1000\n", NULL, 0,
                    ":3: cluster.gpus_per_node: nodes * gpus_per_node = 2000 * 1000 = 2000000 "
                    "GPUs is more than 1048576");
    expect_file_err("[cluster]\ngpus_per_node = 1000\nnodes = 2000\n", NULL, 0,
                    ":3: cluster.nodes: nodes * gpus_per_node = 2000 * 1000 = 2000000 GPUs "
                    "is more than 1048576");
    /* 64 characters do not fit in name[64] with its NUL */
    expect_set_err("model.name=" "0123456789012345678901234567890123456789012345678901234567890123",
                   "--set: model.name: '0123456789012345678901234567890123456789012345678901234567890123'"
                   " is longer than 63 characters");
}

/* ---- [routing] gating keys and [balance] ---- */

/* The schema's defaults keep the routing of before these keys: no affinity, no drift, one
 * ranking for all layers, softmax, no node limit, no trace; dropless, no bias, one
 * iteration, contiguous placement, no redundant experts. */
static void test_balance_defaults(void)
{
    struct config c;
    struct cfg_err e;
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, NULL, 0, &e), 0);
    CU_ASSERT(c.routing.concentration == 1.0);
    CU_ASSERT(c.routing.drift == 0.0);
    CU_ASSERT_FALSE(c.routing.per_layer);
    CU_ASSERT_EQUAL(c.routing.scoring, SCORE_SOFTMAX);
    CU_ASSERT_EQUAL(c.routing.max_nodes, 0);
    CU_ASSERT_STRING_EQUAL(c.routing.trace, "");
    CU_ASSERT_STRING_EQUAL(c.routing.trace_src.where, "default");
    CU_ASSERT(c.balance.capacity_factor == 0.0);
    CU_ASSERT(c.balance.bias_gamma == 0.0);
    CU_ASSERT_EQUAL(c.balance.iterations, 1);
    CU_ASSERT_EQUAL(c.balance.placement, PLACE_CONTIGUOUS);
    CU_ASSERT_EQUAL(c.balance.redundant_experts, 0);
    CU_ASSERT_EQUAL(c.balance.expert_groups, 0);
    CU_ASSERT_STRING_EQUAL(config_dist_name(DIST_AFFINITY), "affinity");
    CU_ASSERT_STRING_EQUAL(config_dist_name(DIST_TRACE), "trace");
    CU_ASSERT_STRING_EQUAL(config_score_name(SCORE_SIGMOID), "sigmoid");
    CU_ASSERT_STRING_EQUAL(config_place_name(PLACE_ROUND_ROBIN), "round-robin");
    CU_ASSERT_STRING_EQUAL(config_place_name(PLACE_EPLB_GLOBAL), "eplb-global");
    CU_ASSERT_STRING_EQUAL(config_place_name((enum place_kind)9), "?");
}

/* Every key as written: DeepSeek-V3's layout on 4 nodes of 8 (ep 32, 256 experts + 32
 * redundant = 9 slots per GPU, 4 nodes sharing 64 experts and 8 redundant each), M = 4
 * (any 4 nodes hold 4 * 8 * 9 = 288 slots >= top_k 8). The trace path is resolved against
 * the file's folder and remembers its line. */
static void test_balance_loads(void)
{
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    CU_ASSERT_EQUAL_FATAL(load1("bal.ini", "[cluster]\nnodes = 4\n[model]\nexperts = 256\n"
                                "top_k = 8\n[routing]\ndistribution = trace\n"
                                "trace = t/routes.txt\nconcentration = 0.25\ndrift = 0.1\n"
                                "per_layer = on\nscoring = SIGMOID\nmax_nodes = 4\n"
                                "[balance]\ncapacity_factor = 1.25\nbias_gamma = 0.001\n"
                                "iterations = 100\nplacement = eplb\nredundant_experts = 32\n",
                                NULL, 0, &c, &e), -EINVAL);
    /* max_nodes with a trace is refused (below); the same without the node limit loads */
    const char *sets[] = { "routing.max_nodes=0" };
    CU_ASSERT_EQUAL_FATAL(load1("bal.ini", NULL, sets, 1, &c, &e), 0);
    CU_ASSERT_EQUAL(c.routing.distribution, DIST_TRACE);
    snprintf(want, sizeof(want), "%s/t/routes.txt", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.routing.trace, want);
    snprintf(want, sizeof(want), "%s/bal.ini:8", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.routing.trace_src.where, want);
    CU_ASSERT(c.routing.concentration == 0.25);
    CU_ASSERT(c.routing.drift == 0.1);
    CU_ASSERT_TRUE(c.routing.per_layer);
    CU_ASSERT_EQUAL(c.routing.scoring, SCORE_SIGMOID);
    CU_ASSERT_EQUAL(c.routing.max_nodes, 0);
    CU_ASSERT(c.balance.capacity_factor == 1.25);
    CU_ASSERT(c.balance.bias_gamma == 0.001);
    CU_ASSERT_EQUAL(c.balance.iterations, 100);
    CU_ASSERT_EQUAL(c.balance.placement, PLACE_EPLB);
    CU_ASSERT_EQUAL(c.balance.redundant_experts, 32);
    const char *zipf[] = { "routing.distribution=zipf" };
    CU_ASSERT_EQUAL_FATAL(load1("bal.ini", NULL, zipf, 1, &c, &e), 0);
    CU_ASSERT_EQUAL(c.routing.max_nodes, 4);
}

/* The ranges of the schema rows, in file units. */
static void test_balance_ranges(void)
{
    expect_set_err("routing.concentration=0", "--set: routing.concentration: must be >= 0.001 "
                   "and <= 1000000, got 0");
    expect_set_err("routing.drift=1.5", "--set: routing.drift: must be >= 0 and <= 1, got 1.5");
    expect_set_err("routing.max_nodes=-1", "--set: routing.max_nodes: must be >= 0 and <= "
                   "1048576, got -1");
    expect_set_err("routing.scoring=relu", "--set: routing.scoring: 'relu' is not one of "
                   "softmax|sigmoid");
    expect_set_err("routing.distribution=normal", "--set: routing.distribution: 'normal' is "
                   "not one of uniform|zipf|affinity|trace");
    expect_set_err("balance.capacity_factor=-0.5", "--set: balance.capacity_factor: must be "
                   ">= 0 and <= 1000000, got -0.5");
    expect_set_err("balance.bias_gamma=-1", "--set: balance.bias_gamma: must be >= 0 and <= 1, "
                   "got -1");
    expect_set_err("balance.iterations=0", "--set: balance.iterations: must be >= 1 and <= "
                   "1000000, got 0");
    expect_set_err("balance.placement=random", "--set: balance.placement: 'random' is not one "
                   "of contiguous|round-robin|eplb|eplb-global");
    expect_set_err("balance.redundant_experts=-2", "--set: balance.redundant_experts: must be "
                   ">= 0 and <= 1048576, got -2");
    expect_set_err("balance.expert_groups=-2", "--set: balance.expert_groups: must be >= 0 "
                   "and <= 1048576, got -2");
}

/* Cross-checks of cfg_check_balance and cfg_check_max_nodes, each blaming the key set last
 * (or, for a missing trace, the distribution's line). Hand figures:
 *  - 8 experts + 4 redundant = 12 slots over ep 8 GPUs: not a whole number per GPU;
 *  - 3 nodes of 8, ep 12: the first group is GPUs 0-11 (nodes 0, 1), so groups span 2
 *    nodes and 12 is neither a multiple nor a divisor of 8;
 *  - 2 nodes of 4, ep 8: eplb shares 7 experts and 9 redundant among 2 nodes;
 *  - 1 node of 8: a group spans 1 node, max_nodes 2 is too many;
 *  - 4 nodes of 2, ep 8, 8 experts: 1 per GPU, 2 per node; 2 nodes hold 4 < top_k 8. */
static void test_balance_errors(void)
{
    expect_file_err("[routing]\ndistribution = trace\n", NULL, 0,
                    ":2: routing.trace: required when routing.distribution = trace");
    expect_file_err("[routing]\ndistribution = trace\ntrace = x.txt\nmax_nodes = 1\n", NULL, 0,
                    ":4: routing.max_nodes: routing.max_nodes = 1 needs each token's choices; "
                    "routing.distribution = trace replays counts only");
    expect_file_err("[balance]\nredundant_experts = 8\n", NULL, 0,
                    ":2: balance.redundant_experts: balance.redundant_experts = 8 needs "
                    "balance.placement = eplb or eplb-global, got contiguous");
    expect_file_err("[balance]\nplacement = eplb\nredundant_experts = 4\n", NULL, 0,
                    ":3: balance.redundant_experts: model.experts + balance.redundant_experts = "
                    "8 + 4 is not a multiple of parallel.ep = 0 (dp = 8): every GPU of an EP group holds "
                    "as many expert slots");
    expect_file_err("[cluster]\nnodes = 3\n[model]\nexperts = 24\n[parallel]\nep = 12\n"
                    "[balance]\nplacement = round-robin\n", NULL, 0,
                    ":8: balance.placement: balance.placement = round-robin needs parallel.ep = 12 "
                    "to be a multiple or a divisor of cluster.gpus_per_node = 8");
    expect_file_err("[cluster]\nnodes = 2\ngpus_per_node = 4\n[model]\nexperts = 7\n"
                    "[balance]\nplacement = eplb\nredundant_experts = 9\n", NULL, 0,
                    ":8: balance.redundant_experts: balance.placement = eplb shares model.experts "
                    "= 7 and balance.redundant_experts = 9 among the 2 nodes of an EP group "
                    "(parallel.ep / cluster.gpus_per_node): both must be multiples of 2");
    /* expert_groups: eplb only; a multiple of the 2 nodes (of 4 GPUs) dividing 12 experts */
    expect_file_err("[balance]\nexpert_groups = 4\n", NULL, 0,
                    ":2: balance.expert_groups: balance.expert_groups = 4 needs "
                    "balance.placement = eplb, got contiguous");
    expect_file_err("[cluster]\nnodes = 2\ngpus_per_node = 4\n[model]\nexperts = 12\n"
                    "[balance]\nplacement = eplb\nredundant_experts = 4\nexpert_groups = 3\n",
                    NULL, 0, ":9: balance.expert_groups: balance.expert_groups = 3 is not a "
                    "multiple of the 2 nodes of an EP group (parallel.ep / "
                    "cluster.gpus_per_node)");
    expect_file_err("[cluster]\nnodes = 2\ngpus_per_node = 4\n[model]\nexperts = 12\n"
                    "[balance]\nplacement = eplb\nredundant_experts = 4\nexpert_groups = 8\n",
                    NULL, 0, ":9: balance.expert_groups: balance.expert_groups = 8 does not "
                    "divide model.experts = 12");
    expect_file_err("[routing]\nmax_nodes = 2\n", NULL, 0,
                    ":2: routing.max_nodes: routing.max_nodes = 2 is more than the 1 node an EP "
                    "group of parallel.ep = 8 GPUs spans (cluster.gpus_per_node = 8)");
    expect_file_err("[cluster]\nnodes = 4\ngpus_per_node = 2\n[model]\ntop_k = 8\n"
                    "[routing]\nmax_nodes = 2\n", NULL, 0,
                    ":7: routing.max_nodes: routing.max_nodes = 2: the 2 nodes of an EP group "
                    "with the fewest experts hold 4, fewer than model.top_k = 8");
    /* straddling groups (3 nodes of 8, ep 12) span 2 nodes; contiguous needs nothing more */
    struct config c;
    struct cfg_err e;
    const char *sets[] = { "cluster.nodes=3", "model.experts=24", "parallel.ep=12",
                           "routing.max_nodes=2" };
    CU_ASSERT_EQUAL(config_load(&c, NULL, 0, sets, 4, &e), 0);
    const char *three[] = { "cluster.nodes=3", "model.experts=24", "parallel.ep=12",
                            "routing.max_nodes=3" };
    expect_msg(config_load(&c, NULL, 0, three, 4, &e), &e, "--set: routing.max_nodes: "
               "routing.max_nodes = 3 is more than the 2 nodes an EP group of parallel.ep = 12 "
               "GPUs spans (cluster.gpus_per_node = 8)");
    /* not a MoE layer: the routing keys are not checked */
    const char *a2a[] = { "traffic.pattern=alltoall", "routing.distribution=trace" };
    CU_ASSERT_EQUAL(config_load(&c, NULL, 0, a2a, 2, &e), 0);
}

/* ---- fuzzer findings (tests/fuzz/README.md): one test per bug ---- */

/* Bug 1: a --set with a control character is refused whole, shown escaped, on one line:
 * "cluster.nodes=8<LF>9" gave "--set: cluster.nodes: '8<LF>9' is not an integer" over two
 * lines. Tab is allowed, as on a line of a file, and escaped when it is echoed. */
static void test_set_control_character(void)
{
    struct config c;
    struct cfg_err e;
    const char *tab[] = { "cluster.name=a\tb" };
    expect_set_err("cluster.nodes=8\n9",
                   "--set: 'cluster.nodes=8\\n9': control character in argument");
    expect_set_err("cluster.name=a\rb",
                   "--set: 'cluster.name=a\\rb': control character in argument");
    expect_set_err("model.name=\x1b[31m\x7f",
                   "--set: 'model.name=\\x1b[31m\\x7f': control character in argument");
    expect_set_err("cluster.nodes=8\t9", "--set: cluster.nodes: '8\\t9' is not an integer");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, tab, 1, &e), 0);
    CU_ASSERT_STRING_EQUAL(c.cluster.name, "a\tb");
}

/* Bug 1, file names: a path with a newline is shown escaped, in messages and in the
 * "file:line" kept for traffic.matrix (sim/main.c prints it). */
static void test_path_control_character(void)
{
    struct config c;
    struct cfg_err e;
    char want[2 * CFG_PATH_MAX];
    write_file("new\nline.ini", "[traffic]\nmatrix = m.txt\n[model]\ntop_k = 99\n");
    snprintf(want, sizeof(want), "%s/new\\nline.ini:4: model.top_k: 99 is more than "
             "model.experts = 8", tmp_dir);
    expect_msg(load1("new\nline.ini", NULL, NULL, 0, &c, &e), &e, want);
    const char *sets[] = { "model.top_k=2" };
    CU_ASSERT_EQUAL_FATAL(load1("new\nline.ini", NULL, sets, 1, &c, &e), 0);
    snprintf(want, sizeof(want), "%s/new\\nline.ini:2", tmp_dir);
    CU_ASSERT_STRING_EQUAL(c.traffic.matrix_src.where, want);
}

/* Bug 2: inih reads a line led by \v, \f or \r as a continuation of the previous key, so
 * "nodes = 8" then "<VT>2" loaded nodes = 2. Now the byte is an error at its line, 3. */
static void test_line_led_by_control_character(void)
{
    expect_file_err("[cluster]\nnodes = 8\n\v2\n", NULL, 0, ":3: control character 0x0b in line");
    expect_file_err("[cluster]\nnodes = 8\n\f2\n", NULL, 0, ":3: control character 0x0c in line");
    expect_file_err("[cluster]\nnodes = 8\n\r2\n", NULL, 0, ":3: control character 0x0d in line");
}

/* Bug 3: a NUL ended the line inside inih, so "nodes = 2<NUL>junk" loaded nodes = 2. Any
 * control byte but tab is an error, and a '\r' only ends a line right before its '\n'
 * (test_layout: CRLF loads); bug 5: a '\r' inside a value is one of them. */
static void test_nul_in_line(void)
{
    static const char nul[] = "[cluster]\nnodes = 2\0junk\n";
    expect_bytes_err(nul, sizeof(nul) - 1, ":2: control character 0x00 in line");
    expect_file_err("[cluster]\nname = a\rb\n", NULL, 0, ":2: control character 0x0d in line");
    expect_file_err("[cluster]\nnodes = 2\r\r\n", NULL, 0, ":2: control character 0x0d in line");
    expect_file_err("[cluster]\n; \x01 in a comment\n", NULL, 0,
                    ":2: control character 0x01 in line");
    expect_file_err("[cluster]\nname = x\x7f\n", NULL, 0, ":2: control character 0x7f in line");
}

/* Bug 4: the reader held a whole line before checking its length, so a 1 MB line took
 * 1 MB (and /dev/zero all memory). It stops at CFG_LINE_MAX + 2 bytes: line 2 is too long. */
static void test_huge_line(void)
{
    size_t n = 1 << 20, head;
    char *text = malloc(n + 32);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    head = strlen(strcpy(text, "[cluster]\nname = "));
    memset(text + head, 'x', n);
    text[head + n] = '\0';
    expect_file_err(text, NULL, 0, ":2: line longer than 199 characters");
    free(text);
}

/* Bug 4: only regular files are read: /dev/zero is one endless line, a FIFO with no
 * writer would block in open, a folder has no lines. Each fails at once, unread. */
static void test_not_regular_file(void)
{
    struct config c;
    struct cfg_err e;
    char p[CFG_PATH_MAX], want[2 * CFG_PATH_MAX];
    const char *zero[] = { "/dev/zero" };
    expect_msg(config_load(&c, zero, 1, NULL, 0, &e), &e, "/dev/zero: not a regular file");
    expect_file_err("include = /dev/zero\n", NULL, 0, ":1: include: /dev/zero: not a regular file");
    CU_ASSERT_EQUAL_FATAL(mkfifo(tmp_path(p, "fifo"), 0600), 0);
    snprintf(want, sizeof(want), ":1: include: %s: not a regular file", p);
    expect_file_err("include = fifo\n", NULL, 0, want);
    CU_ASSERT_EQUAL_FATAL(mkdir(tmp_path(p, "folder"), 0700), 0);
    snprintf(want, sizeof(want), "%s: not a regular file", p);
    expect_msg(load1("folder", NULL, NULL, 0, &c, &e), &e, want);
}

/* Bug 5: "[]" made later lines read as before any section (where include is allowed), and
 * inih cuts a section name to 49 characters, so the message quoted a name not in the file.
 * 49 characters are kept whole: an unknown section, named in full, on its key's line. */
static void test_section_name(void)
{
    char text[256], want[256];
    const char *n49 = "s123456789012345678901234567890123456789012345678";
    expect_file_err("[]\ninclude = x.ini\n", NULL, 0, ":1: empty section name");
    expect_file_err("\xef\xbb\xbf  [] ; BOM, blanks\n", NULL, 0, ":1: empty section name");
    snprintf(text, sizeof(text), "[cluster]\n[%sX]\nkey = 1\n", n49);
    expect_file_err(text, NULL, 0, ":2: section name longer than 49 characters");
    snprintf(text, sizeof(text), "[%s]\nkey = 1\n", n49);
    snprintf(want, sizeof(want), ":2: %s.key: unknown section '%s'", n49, n49);
    expect_file_err(text, NULL, 0, want);
}

/* ---- numeric sanity (README.md "Ranges") ---- */

/* Absurd values that parse as finite numbers are refused with the key and its range;
 * the ends of the ranges load, converted to SI (GB/s x 1e9, us x 1e-6, TFLOP/s x 1e12). */
static void test_absurd_values(void)
{
    struct config c;
    struct cfg_err e;
    expect_set_err("cluster.nvlink_GBps=1e-308", "--set: cluster.nvlink_GBps: must be >= 0.001 "
                   "and <= 1000000000, got 1e-308");
    expect_set_err("cluster.nic_GBps=1e300", "--set: cluster.nic_GBps: must be >= 0.001 and <= "
                   "1000000000, got 1e300");
    expect_set_err("cluster.nvlink_latency_us=1e308", "--set: cluster.nvlink_latency_us: must be "
                   ">= 0 and <= 1000000, got 1e308");
    expect_set_err("cluster.switch_latency_us=1000000.5", "--set: cluster.switch_latency_us: "
                   "must be >= 0 and <= 1000000, got 1000000.5");
    expect_set_err("cluster.gpu_tflops_bf16=1e-300", "--set: cluster.gpu_tflops_bf16: must be "
                   ">= 0.001 and <= 1000000, got 1e-300");
    expect_set_err("cluster.hbm_GBps=4.9e-324", "--set: cluster.hbm_GBps: must be >= 0.001 and "
                   "<= 1000000, got 4.9e-324");
    expect_set_err("cluster.gemm_efficiency=1e-300", "--set: cluster.gemm_efficiency: must be "
                   ">= 0.001 and <= 1, got 1e-300");
    expect_set_err("cluster.gemm_half_rows=1e308", "--set: cluster.gemm_half_rows: must be > 0 "
                   "and <= 1000000000, got 1e308");
    expect_set_err("cluster.oversubscription=1e9", "--set: cluster.oversubscription: must be "
                   ">= 1 and <= 1000, got 1e9");
    expect_set_err("cluster.gpus_per_node=1000000000", "--set: cluster.gpus_per_node: must be "
                   ">= 1 and <= 1048576, got 1000000000");
    expect_set_err("model.layers=2147483647", "--set: model.layers: must be >= 1 and <= "
                   "1048576, got 2147483647");
    expect_set_err("routing.zipf_s=1e308", "--set: routing.zipf_s: must be >= 0 and <= 50, got "
                   "1e308");
    expect_set_err("balance.capacity_factor=1e308", "--set: balance.capacity_factor: must be "
                   ">= 0 and <= 1000000, got 1e308");
    expect_set_err("balance.bias_gamma=2", "--set: balance.bias_gamma: must be >= 0 and <= 1, "
                   "got 2");
    const char *ends[] = { "cluster.nvlink_GBps=1e-3", "cluster.nic_GBps=1e9",
                           "cluster.nvlink_latency_us=1e6", "cluster.gpu_tflops_bf16=1e6",
                           "cluster.hbm_GBps=0.001", "cluster.gemm_efficiency=0.001",
                           "cluster.oversubscription=1000" };
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, ends, 7, &e), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_Bps, 1e6, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nic_Bps, 1e18, 1e3);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.nvlink_lat_s, 1.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.gpu_flops, 1e18, 1e3);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.hbm_Bps, 1e6, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.gemm_eff, 1e-3, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(c.cluster.oversubscription, 1000, 0);
}

/* A layer routes at most 2^33 = 8589934592 token-expert assignments: 8 GPUs x 1e9 tokens
 * x top_k 1 = 8e9 loads (test_units), x top_k 2 = 1.6e10 does not, blamed on the key set
 * last. A step: dp 4 (step_ini) x 1e9 tokens x top_k 2 = 8e9 loads, x top_k 3 = 1.2e10
 * does not. A uniform all-to-all moves at most 2^63 bytes: 8 x 8 pairs x 2^57 loads, one
 * byte more per pair does not. */
static void test_volume(void)
{
    struct config c;
    struct cfg_err e;
    const char *run[] = { "model.top_k=2", "routing.tokens_per_gpu=1000000000" };
    const char *run_k[] = { "routing.tokens_per_gpu=1000000000", "model.top_k=2" };
    const char *step_ok[] = { "schedule.micro_batch_tokens=1000000000" };
    const char *step[] = { "schedule.micro_batch_tokens=1000000000", "model.top_k=3" };
    const char *a2a_ok[] = { "traffic.pattern=alltoall", "traffic.bytes_per_pair=144115188075855872" };
    const char *a2a[] = { "traffic.pattern=alltoall", "traffic.bytes_per_pair=144115188075855873" };
    expect_msg(config_load(&c, NULL, 0, run, 2, &e), &e, "--set: routing.tokens_per_gpu: "
               "1000000000 x model.top_k = 2 x 8 GPUs = 16000000000 token-expert assignments "
               "in a layer, more than 2^33");
    expect_msg(config_load(&c, NULL, 0, run_k, 2, &e), &e, "--set: model.top_k: "
               "routing.tokens_per_gpu = 1000000000 x model.top_k = 2 x 8 GPUs = 16000000000 "
               "token-expert assignments in a layer, more than 2^33");
    CU_ASSERT_EQUAL(load1("step.ini", step_ini, step_ok, 1, &c, &e), 0);
    /* tokens_per_gpu keeps its default 4096: 8 x 4096 x 3 is far below 2^33 */
    expect_step_err(step, 2, "--set: model.top_k: schedule.micro_batch_tokens = 1000000000 x "
                    "model.top_k = 3 x parallel.dp = 4 GPUs = 12000000000 token-expert "
                    "assignments in a micro-batch's layer, more than 2^33");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, a2a_ok, 2, &e), 0);
    CU_ASSERT_EQUAL(c.traffic.bytes_per_pair, 1ull << 57);
    expect_msg(config_load(&c, NULL, 0, a2a, 2, &e), &e, "--set: traffic.bytes_per_pair: "
               "144115188075855873 to each of 8 x 8 GPU pairs is more than 2^63 bytes in all");
}

/* ---- config hygiene ---- */

/* A key set twice in one file names both lines, even in two [model] sections; across
 * files, includes and --set the later one wins (test_override_order). */
static void test_repeated_key(void)
{
    struct config c;
    struct cfg_err e;
    const char *twice[] = { "model.experts=16", "model.experts=32" };
    expect_file_err("[model]\nexperts = 8\ntop_k = 2\n; again\nexperts = 16\n", NULL, 0,
                    ":5: model.experts: repeated (first at line 2)");
    expect_file_err("[model]\nexperts = 8\n[cluster]\nnodes = 2\n[model]\nexperts = 8\n", NULL,
                    0, ":6: model.experts: repeated (first at line 2)");
    write_file("inc.ini", "[model]\nexperts = 8\n");
    CU_ASSERT_EQUAL_FATAL(load1("top.ini", "include = inc.ini\n[model]\nexperts = 16\n", NULL, 0,
                                &c, &e), 0);
    CU_ASSERT_EQUAL(c.model.experts, 16);
    CU_ASSERT_EQUAL_FATAL(load1("top.ini", NULL, twice, 2, &c, &e), 0);
    CU_ASSERT_EQUAL(c.model.experts, 32);
}

/* An unknown key names the nearest known one when it is close (edit distance at most a
 * quarter of "section.key", up to 3; case does not count), or the same key in another
 * section; else nothing. In a file and in --set. */
static void test_did_you_mean(void)
{
    expect_set_err("schedule.microbatch=3", "--set: schedule.microbatch: unknown key; did you "
                   "mean schedule.microbatches?");
    expect_file_err("[model]\nexpert = 8\n", NULL, 0,
                    ":2: model.expert: unknown key; did you mean model.experts?");
    expect_file_err("[cluster]\nNodes = 2\n", NULL, 0,
                    ":2: cluster.Nodes: unknown key; did you mean cluster.nodes?");
    expect_set_err("model.nodes=2", "--set: model.nodes: unknown key; did you mean "
                   "cluster.nodes?");
    expect_set_err("clustr.nodes=2", "--set: clustr.nodes: unknown section 'clustr'; did you "
                   "mean cluster.nodes?");
    expect_set_err("model.zzzzzzz=2", "--set: model.zzzzzzz: unknown key");
    expect_set_err("nosuch.thing=2", "--set: nosuch.thing: unknown section 'nosuch'");
}

/* A --set is blamed for what it breaks, alone or with other keys: the rule names the key
 * set last. The file sets nodes = 2 on line 2; --set gpus_per_node = 2^20 makes 2^21
 * GPUs; --set experts = 1 makes the file's top_k = 2 too many. */
static void test_set_blame(void)
{
    struct config c;
    struct cfg_err e;
    const char *gpn[] = { "cluster.gpus_per_node=1048576" };
    const char *experts[] = { "model.experts=1" };
    const char *two[] = { "model.experts=4", "model.top_k=8" };
    write_file("blame.ini", "[cluster]\nnodes = 2\n[model]\ntop_k = 2\n");
    expect_msg(load1("blame.ini", NULL, gpn, 1, &c, &e), &e, "--set: cluster.gpus_per_node: "
               "nodes * gpus_per_node = 2 * 1048576 = 2097152 GPUs is more than 1048576");
    expect_msg(load1("blame.ini", NULL, experts, 1, &c, &e), &e, "--set: model.experts: "
               "model.top_k = 2 is more than model.experts = 1");
    expect_msg(load1("blame.ini", NULL, two, 2, &c, &e), &e, "--set: model.top_k: 8 is more "
               "than model.experts = 4");
}

/* Every key has a default, so a config that sets none (empty, comments only, an include
 * of such a file) is refused, naming the first file; with a --set, or another file that
 * sets a key, it loads. config_load with no file at all is the defaults (test_defaults). */
static void test_empty_config(void)
{
    struct config c;
    struct cfg_err e;
    char pa[CFG_PATH_MAX], pb[CFG_PATH_MAX], want[2 * CFG_PATH_MAX];
    const char *files[] = { tmp_path(pa, "empty.ini"), tmp_path(pb, "com.ini") };
    const char *gpn[] = { "cluster.gpus_per_node=4" };
    write_file("empty.ini", "");
    write_file("com.ini", "; nothing\n# at all\n\n[cluster]\n");
    snprintf(want, sizeof(want), "%s: the config sets no key (the file is empty or only "
             "comments, and no --set)", pa);
    expect_msg(config_load(&c, files, 1, NULL, 0, &e), &e, want);
    snprintf(want, sizeof(want), "%s: the config sets no key (the 2 files given are empty or "
             "only comments, and no --set)", pa);
    expect_msg(config_load(&c, files, 2, NULL, 0, &e), &e, want);
    snprintf(want, sizeof(want), "%s: the config sets no key (the file is empty or only "
             "comments, and no --set)", pb);
    expect_msg(config_load(&c, files + 1, 1, NULL, 0, &e), &e, want);
    CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 2, gpn, 1, &e), 0);
    CU_ASSERT_EQUAL(c.cluster.gpus_per_node, 4);
    write_file("com.ini", "include = empty.ini\n");
    snprintf(want, sizeof(want), "%s: the config sets no key (the file is empty or only "
             "comments, and no --set)", pb);
    expect_msg(config_load(&c, files + 1, 1, NULL, 0, &e), &e, want);
    write_file("com.ini", "[model]\ntop_k = 1\n");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 2, NULL, 0, &e), 0);
    CU_ASSERT_EQUAL(c.model.top_k, 1);
}

/* Bug 6 (fuzz_cli): `routing.zipf_s = 476` loaded, and then routing failed ("routing
 * failed: Invalid argument", exit 1; a training step printed "moesim run: " alone): the
 * rarest of E experts has popularity E^-s / H, which underflows to 0 once s log2 E passes
 * about 1074, and gating refuses a popularity of 0. Now zipf_s is at most 50, so that
 * even 2^20 experts keep 2^-1000 > DBL_MIN for the rarest: all > 0, summing to 1. */
static void test_zipf_s_underflow(void)
{
    struct config c;
    struct cfg_err e;
    char experts[64];
    snprintf(experts, sizeof(experts), "model.experts=%d", GATING_EXPERTS_MAX);
    const char *sets[] = { "routing.distribution=zipf", "routing.zipf_s=50", experts };
    expect_set_err("routing.zipf_s=50.5", "--set: routing.zipf_s: must be >= 0 and <= 50, "
                   "got 50.5");
    expect_set_err("routing.zipf_s=476", "--set: routing.zipf_s: must be >= 0 and <= 50, "
                   "got 476");
    CU_ASSERT_EQUAL_FATAL(config_load(&c, NULL, 0, sets, 3, &e), 0);
    double *p = malloc(GATING_EXPERTS_MAX * sizeof(*p)), sum = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL_FATAL(gating_popularity(p, &c, 0, 0, 1), 0);
    int positive = 0;
    for (int i = 0; i < GATING_EXPERTS_MAX; i++) {
        positive += p[i] >= DBL_MIN;
        sum += p[i];
    }
    CU_ASSERT_EQUAL(positive, GATING_EXPERTS_MAX);
    CU_ASSERT_DOUBLE_EQUAL(sum, 1.0, 1e-12);
    free(p);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "defaults", test_defaults },
        { "units", test_units },
        { "step defaults", test_step_defaults },
        { "step units", test_step_units },
        { "parallel layout (pp, dp, ep)", test_parallel_layout },
        { "parallel errors", test_parallel_errors },
        { "step loads", test_step_loads },
        { "no step, no step checks", test_no_step_no_step_checks },
        { "step errors", test_step_errors },
        { "step errors in files", test_step_errors_in_files },
        { "schedule rules (sched_check)", test_step_sched_rules },
        { "step key ranges", test_step_ranges },
        { "layout", test_layout },
        { "override order", test_override_order },
        { "blame last setter", test_blame_last_setter },
        { "include", test_include },
        { "include depth 8", test_include_depth_8 },
        { "sizes", test_sizes },
        { "bools", test_bools },
        { "names", test_names },
        { "missing file", test_missing_file },
        { "unknown section", test_unknown_section },
        { "unknown key", test_unknown_key },
        { "not a number", test_not_a_number },
        { "trailing junk", test_trailing_junk },
        { "negative", test_negative },
        { "zero bandwidth", test_zero_bandwidth },
        { "link efficiency", test_link_efficiency },
        { "top_k > experts", test_top_k_gt_experts },
        { "ep does not divide experts", test_ep_not_dividing_experts },
        { "ep does not divide gpus", test_ep_not_dividing_gpus },
        { "bad enum", test_bad_enum },
        { "bad bool", test_bad_bool },
        { "malformed --set", test_malformed_set },
        { "overlong line", test_overlong_line },
        { "include too deep", test_include_too_deep },
        { "matrix without path", test_matrix_without_path },
        { "syntax error", test_syntax_error },
        { "other checks", test_other_checks },
        { "balance and gating defaults", test_balance_defaults },
        { "balance and gating keys load", test_balance_loads },
        { "balance and gating ranges", test_balance_ranges },
        { "balance and gating cross-checks", test_balance_errors },
        { "--set control character", test_set_control_character },
        { "path control character", test_path_control_character },
        { "line led by VT, FF or CR", test_line_led_by_control_character },
        { "NUL in line", test_nul_in_line },
        { "huge line", test_huge_line },
        { "not a regular file", test_not_regular_file },
        { "section name", test_section_name },
        { "absurd values", test_absurd_values },
        { "collective volume", test_volume },
        { "key repeated in a file", test_repeated_key },
        { "did you mean", test_did_you_mean },
        { "--set blame", test_set_blame },
        { "empty config", test_empty_config },

        { "zipf_s underflow", test_zipf_s_underflow },
    };
    return cu_run("config", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
