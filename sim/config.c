/* config.c: INI files and --set overrides -> struct config; see config.h.
 *
 * Every key is one row of cfg_keys[]: its default, type, range and unit conversion
 * all come from there. inih does the INI syntax; our reader hands it one line per
 * call and counts lines, and the handler runs right after its line was read, so the
 * count is the line of the key. The first error stops loading; its message is kept.
 * The reader also refuses what inih would read silently wrong: control characters and
 * long lines (textin_getline), empty or long section names (cfg_check_line); files that
 * are not regular files are not opened (textin_open). Each key keeps where and when it
 * was last set; the rules between keys (cfgcheck.c, through cfgload.h) blame by them.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L     /* strdup, strcasecmp */
#endif
#include "cfgload.h"
#include "config.h"
#include "textin.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* inih keeps this many characters of a section name (MAX_SECTION 50 in its ini.c). */
#define CFG_SECTION_MAX 49

enum cfg_type {
    CFG_INT,      /* int, decimal */
    CFG_INT64,    /* int64_t, decimal */
    CFG_DOUBLE,   /* double, finite decimal; stored as value * mul / div */
    CFG_SIZE,     /* uint64_t bytes: digits, then K M G KB MB GB (1000^n) or KiB MiB GiB (1024^n) */
    CFG_BOOL,     /* bool: true/false, on/off, yes/no, 1/0, any case */
    CFG_ENUM,     /* enum: index of the word in words[], any case */
    CFG_NAME,     /* char[size], as written */
    CFG_PATH,     /* char[size]; a relative path is resolved against the naming file's folder */
};

/* Allowed values in file units: lo <= v <= hi, strict where the side is open. */
struct cfg_range {
    double lo, hi;
    bool lo_open, hi_open;
};

struct cfg_key {
    const char *section, *key;
    enum cfg_type type;
    const char *def;            /* default, written as in a file */
    struct cfg_range range;     /* CFG_INT, CFG_INT64, CFG_DOUBLE */
    double mul, div;            /* CFG_DOUBLE: SI = value * mul / div; one is 1, so one rounding */
    const char *const *words;   /* CFG_ENUM: NULL-terminated, in enum order */
    size_t off, size;           /* the field in struct config */
};

#define ANY      { -INFINITY, INFINITY, false, false }   /* only for non-numeric keys */
#define IN(a, b) { (a), (b), false, false }
#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const char *const route_words[] = { "rail", "pxn", "hierarchical", NULL };
static const char *const dist_words[] = { "uniform", "zipf", "affinity", "trace", NULL };
static const char *const score_words[] = { "softmax", "sigmoid", NULL };
static const char *const place_words[] = { "contiguous", "round-robin", "eplb", "eplb-global",
                                           NULL };
static const char *const pattern_words[] = { "moe", "alltoall", "matrix", NULL };
static const char *const sched_words[] = { "none", "gpipe", "1f1b", "interleaved-1f1b", "zb1p",
                                           "dualpipe", "dualpipev", "prefill", "decode", NULL };
static const char *const attn_words[] = { "gqa", "mla", NULL };
static const char *const ffn_act_words[] = { "swiglu", "geglu", "relu", "gelu", NULL };
static const char *const reduce_words[] = { "ring", "tree", NULL };
static const char *const dtype_words[] = { "bf16", "fp16", "fp8", "fp32", NULL };
static const char *const a2a_words[] = { "normal", "low_latency", NULL };
static const char *const true_words[] = { "true", "on", "yes", "1", NULL };
static const char *const false_words[] = { "false", "off", "no", "0", NULL };

/* Enum fields are written as an int holding the word's index. */
_Static_assert(ROUTE_RAIL == 0 && ROUTE_PXN == 1 && ROUTE_HIER == 2, "route_words order");
_Static_assert(DIST_UNIFORM == 0 && DIST_ZIPF == 1 && DIST_AFFINITY == 2 && DIST_TRACE == 3,
               "dist_words order");
_Static_assert(SCORE_SOFTMAX == 0 && SCORE_SIGMOID == 1, "score_words order");
_Static_assert(PLACE_CONTIGUOUS == 0 && PLACE_ROUND_ROBIN == 1 && PLACE_EPLB == 2 &&
               PLACE_EPLB_GLOBAL == 3, "place_words order");
_Static_assert(PATTERN_MOE == 0 && PATTERN_ALLTOALL == 1 && PATTERN_MATRIX == 2, "pattern_words");
_Static_assert(SCHED_NONE == 0 && SCHED_GPIPE == 1 && SCHED_1F1B == 2 &&
               SCHED_INTERLEAVED_1F1B == 3 && SCHED_ZB1P == 4 && SCHED_DUALPIPE == 5 &&
               SCHED_DUALPIPEV == 6 && SCHED_PREFILL == 7 && SCHED_DECODE == 8,
               "sched_words order");
_Static_assert(ATTN_GQA == 0 && ATTN_MLA == 1, "attn_words order");
_Static_assert(FFN_SWIGLU == 0 && FFN_GEGLU == 1 && FFN_RELU == 2 && FFN_GELU == 3,
               "ffn_act_words order");
_Static_assert(REDUCE_RING == 0 && REDUCE_TREE == 1, "reduce_words order");
_Static_assert(DTYPE_BF16 == 0 && DTYPE_FP16 == 1 && DTYPE_FP8 == 2 && DTYPE_FP32 == 3,
               "dtype_words order");
_Static_assert(A2A_NORMAL == 0 && A2A_LOW_LATENCY == 1, "a2a_words order");
_Static_assert(ULLONG_MAX == UINT64_MAX, "strtoull fills a uint64_t");
_Static_assert(sizeof(enum route_kind) == sizeof(int) && sizeof(enum dist_kind) == sizeof(int) &&
               sizeof(enum pattern_kind) == sizeof(int) && sizeof(enum sched_kind) == sizeof(int) &&
               sizeof(enum attn_kind) == sizeof(int) && sizeof(enum reduce_kind) == sizeof(int) &&
               sizeof(enum score_kind) == sizeof(int) && sizeof(enum place_kind) == sizeof(int) &&
               sizeof(enum ffn_act) == sizeof(int) && sizeof(enum dtype_kind) == sizeof(int),
               "enum fields are int-sized");

/* The schema. To add a key: add its field to struct config (config.h), then one row here:
 * section, key, type, default as written in a file, allowed range in file units, SI
 * conversion (SI = value * mul / div), enum words, FIELD(member). A new section needs
 * nothing more. Checks that involve two keys go in cfg_check() (cfgcheck.c).
 * Every numeric key has a finite range (README.md lists them), wide enough for any real
 * cluster or model and narrow enough that nothing derived from them overflows: a layer
 * moves at most CFG_ASSIGN_MAX token-expert assignments (cfg_check_volume), each of at
 * most hidden (2^24) x bytes per element (< 64) bytes, so a collective moves < 2^63 bytes
 * (the legs of a two-level dispatch: < 2^63 on each tier, < 2^64 in all);
 * bandwidths >= 1e-3 GB/s (over an oversubscription <= 1000) and FLOP rates >= 1e-3 TFLOP/s
 * at efficiencies >= 1e-3 keep every time below ~1e40 s, far from a double's 1.8e308. */
static const struct cfg_key cfg_keys[] = {
    { "cluster", "name",              CFG_NAME,   "",     ANY,   1,   1,   NULL,
      FIELD(cluster.name) },
    { "cluster", "nodes",             CFG_INT,    "1",    IN(1, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(cluster.nodes) },
    { "cluster", "gpus_per_node",     CFG_INT,    "8",    IN(1, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(cluster.gpus_per_node) },
    { "cluster", "nvlink_GBps",       CFG_DOUBLE, "450",  IN(1e-3, 1e9), 1e9, 1,   NULL,
      FIELD(cluster.nvlink_Bps) },
    { "cluster", "nic_GBps",          CFG_DOUBLE, "50",   IN(1e-3, 1e9), 1e9, 1,   NULL,
      FIELD(cluster.nic_Bps) },
    /* Achievable fraction of the line rate (protocol overhead): topo.c builds every link
     * at line rate x efficiency. 1: the line rate, as before these keys. */
    { "cluster", "nvlink_efficiency", CFG_DOUBLE, "1",    IN(1e-3, 1), 1,   1,   NULL,
      FIELD(cluster.nvlink_eff) },
    { "cluster", "nic_efficiency",    CFG_DOUBLE, "1",    IN(1e-3, 1), 1,   1,   NULL,
      FIELD(cluster.nic_eff) },
    { "cluster", "nvlink_latency_us", CFG_DOUBLE, "1.0",  IN(0, 1e6), 1,   1e6, NULL,
      FIELD(cluster.nvlink_lat_s) },
    { "cluster", "nic_latency_us",    CFG_DOUBLE, "2.0",  IN(0, 1e6), 1,   1e6, NULL,
      FIELD(cluster.nic_lat_s) },
    { "cluster", "switch_latency_us", CFG_DOUBLE, "1.0",  IN(0, 1e6), 1,   1e6, NULL,
      FIELD(cluster.switch_lat_s) },
    { "cluster", "oversubscription",  CFG_DOUBLE, "1",    IN(1, 1000), 1,   1,   NULL,
      FIELD(cluster.oversubscription) },
    { "cluster", "nodes_per_leaf",    CFG_INT,    "0",    IN(0, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(cluster.nodes_per_leaf) },
    { "cluster", "route",             CFG_ENUM,   "rail", ANY,   1,   1,   route_words,
      FIELD(cluster.route) },
    /* The flow model's speed knob (a2a.h): 0 re-solves the rates at every completion
     * (exact); q > 0 batches the completions of each window of q x a collective's
     * bandwidth bound into one re-solve, an approximation. */
    { "cluster", "flow_quantum",      CFG_DOUBLE, "0",    IN(0, 1), 1,   1,   NULL,
      FIELD(cluster.flow_quantum) },
    /* The compute model of training steps (compute.h). Defaults: one H100 SXM, NVIDIA H100
     * Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOP/s "with sparsity", half of
     * that dense; HBM3 3.35 TB/s; 80 GB; 132 SMs (the SXM5 part). */
    { "cluster", "gpu_tflops_bf16",   CFG_DOUBLE, "989",  IN(1e-3, 1e6), 1e12, 1,  NULL,
      FIELD(cluster.gpu_flops) },
    { "cluster", "hbm_GBps",          CFG_DOUBLE, "3350", IN(1e-3, 1e6), 1e9, 1,   NULL,
      FIELD(cluster.hbm_Bps) },
    { "cluster", "sms",               CFG_INT,    "132",  IN(1, 65536), 1, 1, NULL,
      FIELD(cluster.sms) },
    /* Assumptions, to be calibrated (moeprof, [calibration] expert_table): a large BF16
     * GEMM reaches about 3/4 of the dense peak; one with 64 rows, half of a 128-row tile
     * (the M side of the usual Hopper BF16 GEMM tiles), half of that; memory-bound
     * kernels reach 80% of the HBM peak. */
    { "cluster", "gemm_efficiency",   CFG_DOUBLE, "0.75", IN(1e-3, 1), 1, 1, NULL,
      FIELD(cluster.gemm_eff) },
    { "cluster", "gemm_half_rows",    CFG_DOUBLE, "64",   { 0, 1e9, true, false }, 1,   1,   NULL,
      FIELD(cluster.gemm_half_rows) },
    { "cluster", "hbm_efficiency",    CFG_DOUBLE, "0.8",  IN(1e-3, 1), 1, 1, NULL,
      FIELD(cluster.hbm_eff) },
    { "cluster", "gpu_mem_GiB",       CFG_DOUBLE, "80",   IN(1e-3, 1e6), 1073741824, 1, NULL,
      FIELD(cluster.gpu_mem_bytes) },
    /* Dense FP8 peak, for serve.gemm_dtype = fp8: the H100 SXM datasheet's FP8 Tensor Core
     * 3,958 TFLOP/s "with sparsity", half of that dense (twice the BF16 peak). */
    { "cluster", "gpu_tflops_fp8",    CFG_DOUBLE, "1979", IN(1e-3, 1e6), 1e12, 1,  NULL,
      FIELD(cluster.gpu_flops_fp8) },
    { "model", "name",                CFG_NAME,   "",     ANY,   1,   1,   NULL,
      FIELD(model.name) },
    { "model", "hidden",              CFG_INT,    "4096", IN(1, 16777216), 1, 1, NULL,
      FIELD(model.hidden) },
    /* experts: the routing tables' limit (ROUTING_EXPERTS_MAX) */
    { "model", "experts",             CFG_INT,    "8",    IN(1, 1048576), 1, 1, NULL,
      FIELD(model.experts) },
    { "model", "top_k",               CFG_INT,    "2",    IN(1, 1048576), 1,   1,   NULL,
      FIELD(model.top_k) },
    { "model", "shared_experts",      CFG_INT,    "0",    IN(0, 1048576), 1,   1,   NULL,
      FIELD(model.shared_experts) },
    /* 0: not given */
    { "model", "expert_ffn_hidden",   CFG_INT,    "0",    IN(0, 16777216), 1,   1,   NULL,
      FIELD(model.expert_ffn_hidden) },
    { "model", "layers",              CFG_INT,    "1",    IN(1, 1048576), 1,   1,   NULL,
      FIELD(model.layers) },
    { "model", "first_dense_layers",  CFG_INT,    "0",    IN(0, 1048576), 1,   1,   NULL,
      FIELD(model.first_dense_layers) },
    /* after the first_dense_layers, layer l is MoE when (l + 1) % moe_every == 0 (model.h) */
    { "model", "moe_every",           CFG_INT,    "1",    IN(1, 1048576), 1,   1,   NULL,
      FIELD(model.moe_every) },
    { "model", "dispatch_bytes_per_elem", CFG_DOUBLE, "2", { 0, 64, true, false }, 1, 1, NULL,
      FIELD(model.dispatch_bytes_per_elem) },
    { "model", "combine_bytes_per_elem",  CFG_DOUBLE, "2", { 0, 64, true, false }, 1, 1, NULL,
      FIELD(model.combine_bytes_per_elem) },
    /* The format of each all-to-all (config.h, cfg_fill_precision): a dtype set after the
     * matching *_bytes_per_elem wins; an unset gradient dtype follows the combine.
     * fp8_block: elements per FP32 scale, 1x128 in DeepSeek-V3 (arXiv:2412.19437 sec.
     * 3.3.2); at most hidden's bound. */
    { "model", "dispatch_dtype",      CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(model.dispatch_dtype) },
    { "model", "combine_dtype",       CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(model.combine_dtype) },
    { "model", "combine_grad_dtype",  CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(model.combine_grad_dtype) },
    { "model", "dispatch_grad_dtype", CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(model.dispatch_grad_dtype) },
    { "model", "fp8_block",           CFG_INT,    "128",  IN(1, 16777216), 1, 1, NULL,
      FIELD(model.fp8_block) },
    /* Transformer structure, used by training steps (model.h). Sizes are at most 2^24, as
     * hidden: the product of two is exact in a double. The defaults go with the default
     * hidden 4096: 32 heads of 128 and a 32000-token vocabulary, as Mixtral-8x7B
     * (configs/models/mixtral-8x7b.ini), but full multi-head attention (kv_heads 0). */
    { "model", "seq_len",             CFG_INT,    "4096", IN(1, 16777216), 1, 1, NULL,
      FIELD(model.seq_len) },
    { "model", "vocab",               CFG_INT,    "32000", IN(1, 16777216), 1, 1, NULL,
      FIELD(model.vocab) },
    /* 0: not given (needed only when there are dense layers) */
    { "model", "ffn_hidden",          CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.ffn_hidden) },
    /* dense FFNs, shared and routed experts alike */
    { "model", "ffn_act",             CFG_ENUM,   "swiglu", ANY, 1,   1,   ffn_act_words,
      FIELD(model.ffn_act) },
    { "model", "attention",           CFG_ENUM,   "gqa",  ANY,   1,   1,   attn_words,
      FIELD(model.attention) },
    { "model", "heads",               CFG_INT,    "32",   IN(1, 16777216), 1, 1, NULL,
      FIELD(model.heads) },
    /* 0: heads; cfg_check_model() fills it in */
    { "model", "kv_heads",            CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.kv_heads) },
    /* 0: hidden / heads; cfg_check_model() fills it in */
    { "model", "head_dim",            CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.head_dim) },
    /* MLA (DeepSeek-V2, arXiv:2405.04434 sec. 2.1): 0 is "not given", which a step with
     * attention = mla refuses except for q_lora_rank (0: queries are not compressed) and
     * qk_rope_head_dim (0: no decoupled RoPE part). */
    { "model", "q_lora_rank",         CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.q_lora_rank) },
    { "model", "kv_lora_rank",        CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.kv_lora_rank) },
    { "model", "qk_nope_head_dim",    CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.qk_nope_head_dim) },
    { "model", "qk_rope_head_dim",    CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.qk_rope_head_dim) },
    { "model", "v_head_dim",          CFG_INT,    "0",    IN(0, 16777216), 1, 1, NULL,
      FIELD(model.v_head_dim) },
    /* 0: dp; cfg_check_ep() fills it in */
    { "parallel", "ep",               CFG_INT,    "0",    IN(0, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(parallel.ep) },
    { "parallel", "pp",               CFG_INT,    "1",    IN(1, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(parallel.pp) },
    /* 0: GPUs / pp; cfg_check_parallel() fills it in */
    { "parallel", "dp",               CFG_INT,    "0",    IN(0, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(parallel.dp) },
    { "parallel", "vpp",              CFG_INT,    "1",    IN(1, 1048576), 1,   1,   NULL,
      FIELD(parallel.vpp) },
    /* tokens, hidden and bytes per element bounded so that a pair's bytes fit 64 bits */
    { "routing", "tokens_per_gpu",    CFG_INT64,  "4096", IN(0, 1e9), 1, 1, NULL,
      FIELD(routing.tokens_per_gpu) },
    { "routing", "distribution",      CFG_ENUM,   "uniform", ANY, 1,  1,   dist_words,
      FIELD(routing.distribution) },
    /* zipf_s <= 50: the rarest of 2^20 experts keeps a normal popularity (2^-1000) */
    { "routing", "zipf_s",            CFG_DOUBLE, "1.0",  IN(0, 50), 1, 1,  NULL,
      FIELD(routing.zipf_s) },
    { "routing", "dedup",             CFG_BOOL,   "true", ANY,   1,   1,   NULL,
      FIELD(routing.dedup) },
    /* The gating model (gating.h). concentration: Dirichlet parameter per expert at uniform
     * popularity; drift: fraction of the experts whose popularity ranks are reshuffled per
     * iteration; per_layer: each layer draws its own ranking. */
    { "routing", "concentration",     CFG_DOUBLE, "1",    IN(1e-3, 1e6), 1,   1,   NULL,
      FIELD(routing.concentration) },
    { "routing", "drift",             CFG_DOUBLE, "0",    IN(0, 1), 1, 1,  NULL,
      FIELD(routing.drift) },
    { "routing", "per_layer",         CFG_BOOL,   "off",  ANY,   1,   1,   NULL,
      FIELD(routing.per_layer) },
    { "routing", "scoring",           CFG_ENUM,   "softmax", ANY, 1,  1,   score_words,
      FIELD(routing.scoring) },
    /* DeepSeek-V3 (arXiv:2412.19437) sec. 2.1.2, node-limited routing: M = 4; 0: off */
    { "routing", "max_nodes",         CFG_INT,    "0",    IN(0, CFG_GPUS_MAX), 1,   1,   NULL,
      FIELD(routing.max_nodes) },
    /* distribution = trace: a routing trace (traces/rtrace.h) */
    { "routing", "trace",             CFG_PATH,   "",     ANY,   1,   1,   NULL,
      FIELD(routing.trace) },
    /* Load balancing. capacity_factor: GShard (Lepikhin et al. 2020) / Switch (Fedus et al.
     * 2021) expert capacity, 0 = dropless; bias_gamma: DeepSeek-V3 sec. 2.1.2 bias update
     * speed (0.001 in its sec. 4.2), 0 = no bias; iterations bounded by routing's stream
     * numbering (routing.h). */
    { "balance", "capacity_factor",   CFG_DOUBLE, "0",    IN(0, 1e6), 1,   1,   NULL,
      FIELD(balance.capacity_factor) },
    { "balance", "bias_gamma",        CFG_DOUBLE, "0",    IN(0, 1), 1,   1,   NULL,
      FIELD(balance.bias_gamma) },
    { "balance", "iterations",        CFG_INT,    "1",    IN(1, 1000000), 1, 1, NULL,
      FIELD(balance.iterations) },
    { "balance", "placement",         CFG_ENUM,   "contiguous", ANY, 1, 1, place_words,
      FIELD(balance.placement) },
    { "balance", "redundant_experts", CFG_INT,    "0",    IN(0, 1048576), 1, 1, NULL,
      FIELD(balance.redundant_experts) },
    /* eplb's num_groups (DeepSeek EPLB, rebalance_experts_hierarchical): groups of
     * experts / expert_groups consecutive experts, whole groups packed onto nodes; 0 = one
     * per node. Not the router's groups: routing.max_nodes limits a token to the home
     * nodes of contiguous placement (routing.h), which eplb keeps only with one group per
     * node; with more, a group may move to another node, and a token's replicas there
     * count as extra nodes (nodes_per_token_max shows it). */
    { "balance", "expert_groups",     CFG_INT,    "0",    IN(0, 1048576), 1, 1, NULL,
      FIELD(balance.expert_groups) },
    { "traffic", "pattern",           CFG_ENUM,   "moe",  ANY,   1,   1,   pattern_words,
      FIELD(traffic.pattern) },
    { "traffic", "bytes_per_pair",    CFG_SIZE,   "1048576", ANY, 1,  1,   NULL,
      FIELD(traffic.bytes_per_pair) },
    { "traffic", "combine",           CFG_BOOL,   "true", ANY,   1,   1,   NULL,
      FIELD(traffic.combine) },
    { "traffic", "matrix",            CFG_PATH,   "",     ANY,   1,   1,   NULL,
      FIELD(traffic.matrix) },
    /* none: one MoE layer's traffic ([traffic]), as before steps existed */
    { "schedule", "kind",             CFG_ENUM,   "none", ANY,   1,   1,   sched_words,
      FIELD(schedule.kind) },
    /* a schedule holds a few ops per micro-batch and piece on each rank */
    { "schedule", "microbatches",     CFG_INT,    "8",    IN(1, 1048576), 1, 1, NULL,
      FIELD(schedule.microbatches) },
    /* bounded as routing.tokens_per_gpu */
    { "schedule", "micro_batch_tokens", CFG_INT64, "4096", IN(1, 1e9), 1, 1, NULL,
      FIELD(schedule.micro_batch_tokens) },
    { "schedule", "overlap",          CFG_BOOL,   "on",   ANY,   1,   1,   NULL,
      FIELD(schedule.overlap) },
    /* DeepSeek-V3 (arXiv:2412.19437) sec. 3.2.2: 20 SMs run the all-to-all kernels, and
     * sec. 3.5.1: 20 of the H800's 132 SMs */
    { "schedule", "comm_sms",         CFG_INT,    "20",   IN(0, 65536), 1,   1,   NULL,
      FIELD(schedule.comm_sms) },
    { "schedule", "dp_reduce",        CFG_ENUM,   "ring", ANY,   1,   1,   reduce_words,
      FIELD(schedule.dp_reduce) },
    /* 4: FP32 gradients. Megatron-LM reduces the gradients of BF16 training in FP32
     * (with --bf16 it sets accumulate_allreduce_grads_in_fp32 unless --grad-reduce-in-bf16
     * is given); 2 for BF16 gradients. */
    { "schedule", "grad_bytes_per_param", CFG_DOUBLE, "4", { 0, 8, true, false }, 1, 1, NULL,
      FIELD(schedule.grad_bytes_per_param) },
    /* One inference step (schedule.kind prefill | decode; serve.h). Token counts bounded as
     * schedule.micro_batch_tokens; their products are checked against it (cfgcheck.c).
     * mtp_acceptance: DeepSeek-V3 (arXiv:2412.19437) sec. 5.4.3, 85 to 90 % of the second
     * tokens predicted by MTP are accepted. */
    { "serve", "batch",               CFG_INT64,  "1",    IN(1, 1e9), 1, 1, NULL,
      FIELD(serve.batch) },
    { "serve", "prompt_len",          CFG_INT64,  "4096", IN(1, 16777216), 1, 1, NULL,
      FIELD(serve.prompt_len) },
    { "serve", "cached_fraction",     CFG_DOUBLE, "0",    { 0, 1, false, true }, 1, 1, NULL,
      FIELD(serve.cached_fraction) },
    { "serve", "context_len",         CFG_INT64,  "4096", IN(1, 16777216), 1, 1, NULL,
      FIELD(serve.context_len) },
    { "serve", "mtp_tokens",          CFG_INT,    "0",    IN(0, 16), 1, 1, NULL,
      FIELD(serve.mtp_tokens) },
    { "serve", "mtp_acceptance",      CFG_DOUBLE, "0.85", IN(0, 1), 1, 1, NULL,
      FIELD(serve.mtp_acceptance) },
    { "serve", "microbatches",        CFG_INT,    "1",    IN(1, 2), 1, 1, NULL,
      FIELD(serve.microbatches) },
    { "serve", "gemm_dtype",          CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(serve.gemm_dtype) },
    { "serve", "kv_dtype",            CFG_ENUM,   "bf16", ANY,   1,   1,   dtype_words,
      FIELD(serve.kv_dtype) },
    { "serve", "shared_as_routed",    CFG_BOOL,   "off",  ANY,   1,   1,   NULL,
      FIELD(serve.shared_as_routed) },
    /* attn_tp: GPUs of one node that run one attention together, heads split (serve.h);
     * DeepSeek-V3 serves with 4 (arXiv:2412.19437 sec. 3.4.1, 3.4.2). */
    { "serve", "attn_tp",             CFG_INT,    "1",    IN(1, 1048576), 1, 1, NULL,
      FIELD(serve.attn_tp) },
    /* ll_message_us: an assumption, not a measurement: one message issued every 10 ns per
     * GPU, a few times slower than a 400 Gb/s NIC's advertised message rate (ConnectX-7:
     * a few hundred million messages per second), leaving room for the GPU's own work
     * per message; calibrate against DeepEP's low-latency benchmark. */
    { "serve", "a2a",                 CFG_ENUM,   "normal", ANY, 1,   1,   a2a_words,
      FIELD(serve.a2a) },
    { "serve", "ll_message_us",       CFG_DOUBLE, "0.01", IN(0, 1e6), 1, 1e6, NULL,
      FIELD(serve.ll_message_s) },
    /* "": none; compute.h reads the file */
    { "calibration", "expert_table",  CFG_PATH,   "",     ANY,   1,   1,   NULL,
      FIELD(calibration.expert_table) },
};

#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

/* Size suffixes: SI (1000^n) and binary (1024^n). */
static const struct {
    const char *suffix;
    uint64_t mul;
} cfg_size_units[] = {
    { "", 1 },
    { "K", 1000 }, { "M", 1000000 }, { "G", 1000000000 },
    { "KB", 1000 }, { "MB", 1000000 }, { "GB", 1000000000 },
    { "KiB", 1ull << 10 }, { "MiB", 1ull << 20 }, { "GiB", 1ull << 30 },
};

/* One config_load call. */
struct cfg_loader {
    struct config c;                /* copied out only when everything checked out */
    struct cfg_src src[CFG_NKEYS];  /* where each key was last set */
    unsigned long order[CFG_NKEYS]; /* when: 0 for the default, then 1, 2, ... per set */
    unsigned long nsets;            /* sets so far */
    int rc;                         /* 0, or the first error: -EINVAL, -ENOMEM */
    struct cfg_err err;             /* the message for rc */
};

struct config *cfg_conf(struct cfg_loader *ld)
{
    return &ld->c;
}

/* One file being read; includes nest on the C stack. */
struct cfg_file {
    struct cfg_loader *ld;
    const char *path;               /* as given; borrowed */
    char shown[CFG_PATH_MAX];       /* path for messages, control characters escaped */
    char dir[CFG_PATH_MAX];         /* path up to and including its last '/', or "" */
    FILE *fp;
    char raw[CFG_LINE_MAX + 2];     /* the line as read: room for a '\r' and the NUL */
    int line;                       /* lines read so far = line of the current key */
    int fail_line;                  /* line of the first failed key or read, 0 if none */
    int depth;                      /* 0 for the files given to config_load */
    int key_line[CFG_NKEYS];        /* line that set each key in this file, 0 if none */
};

/* ---- errors: the first one wins ---- */

/* Every message goes through here, escaped: one line whatever the input held. */
__attribute__((format(printf, 3, 0)))
static int cfg_vfail(struct cfg_loader *ld, int rc, const char *fmt, va_list ap)
{
    char raw[CFG_ERR_MAX];
    if (ld->rc)
        return ld->rc;
    vsnprintf(raw, sizeof(raw), fmt, ap);
    textin_escape(ld->err.msg, sizeof(ld->err.msg), raw);
    ld->rc = rc;
    return rc;
}

/* A message without a key: "file: ..." or "file:line: ...". */
__attribute__((format(printf, 3, 4)))
static int cfg_failf(struct cfg_loader *ld, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = cfg_vfail(ld, rc, fmt, ap);
    va_end(ap);
    return rc;
}

/* "where: section.key: what", or "where: key: what" for section "". Returns -EINVAL. */
int cfg_fail(struct cfg_loader *ld, const char *where, const char *sec, const char *key,
             const char *fmt, ...)
{
    char what[CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return cfg_failf(ld, -EINVAL, "%s: %s%s%s: %s", where, sec, *sec ? "." : "", key, what);
}

/* ---- schema lookup ---- */

static const struct cfg_key *cfg_find(const char *sec, const char *key)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (!strcmp(cfg_keys[i].section, sec) && !strcmp(cfg_keys[i].key, key))
            return &cfg_keys[i];
    return NULL;
}

static bool cfg_section_known(const char *sec)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (!strcmp(cfg_keys[i].section, sec))
            return true;
    return false;
}

/* Edit distance (Levenshtein: insert, delete, substitute one character) between a and b,
 * letters compared in any case; more than CFG_NEAR_MAX + 1 is reported as that. */
#define CFG_NEAR_MAX 3
#define CFG_NEAR_LEN 96               /* longer names are not compared */
static int cfg_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    int row[CFG_NEAR_LEN + 1];
    if (na > CFG_NEAR_LEN || nb > CFG_NEAR_LEN)
        return CFG_NEAR_MAX + 1;
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            int best = diag + !same, up = row[j];
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb] < CFG_NEAR_MAX + 1 ? row[nb] : CFG_NEAR_MAX + 1;
}

/* The known key closest to sec.key, or NULL: the first in schema order at the smallest
 * edit distance of the whole "section.key", when that is at most a quarter of its length
 * (at least 1, at most CFG_NEAR_MAX); else the same key name in another section. */
static const struct cfg_key *cfg_nearest(const char *sec, const char *key)
{
    char name[2 * CFG_NEAR_LEN], known[2 * CFG_NEAR_LEN];
    const struct cfg_key *best = NULL, *moved = NULL;
    int best_d = CFG_NEAR_MAX + 1, len = snprintf(name, sizeof(name), "%s.%s", sec, key);
    int limit = len / 4 < 1 ? 1 : len / 4 > CFG_NEAR_MAX ? CFG_NEAR_MAX : len / 4;
    if (len < 0 || (size_t)len >= sizeof(name))
        return NULL;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        snprintf(known, sizeof(known), "%s.%s", cfg_keys[i].section, cfg_keys[i].key);
        int d = cfg_distance(name, known);
        if (d < best_d) {
            best_d = d;
            best = &cfg_keys[i];
        }
        if (!moved && !strcasecmp(cfg_keys[i].key, key))
            moved = &cfg_keys[i];
    }
    return best_d <= limit ? best : moved;
}

/* "unknown key" or "unknown section 'sec'", with "; did you mean s.k?" when one is near. */
static int cfg_fail_unknown(struct cfg_loader *ld, const char *where, const char *sec,
                            const char *key)
{
    const struct cfg_key *k = cfg_nearest(sec, key);
    char hint[128] = "";
    if (k)
        snprintf(hint, sizeof(hint), "; did you mean %s.%s?", k->section, k->key);
    if (!cfg_section_known(sec))
        return cfg_fail(ld, where, sec, key, "unknown section '%s'%s", sec, hint);
    return cfg_fail(ld, where, sec, key, "unknown key%s", hint);
}

/* Where section.key was last set: "file:line", "--set" or "default". */
const char *cfg_where(const struct cfg_loader *ld, const char *sec, const char *key)
{
    const struct cfg_key *k = cfg_find(sec, key);
    return k ? ld->src[k - cfg_keys].where : "default";
}

static void *cfg_field(struct cfg_loader *ld, const struct cfg_key *k)
{
    return (char *)&ld->c + k->off;
}

/* Index of s in the NULL-terminated words (any case), or -1. */
static int cfg_word_index(const char *const *words, const char *s)
{
    for (int i = 0; words[i]; i++)
        if (!strcasecmp(words[i], s))
            return i;
    return -1;
}

/* ---- text to numbers; all return 0, -EINVAL (not a number) or -ERANGE ---- */

/* Decimal integer in [lo, hi], nothing before or after it. */
static int cfg_strtoi(const char *s, intmax_t lo, intmax_t hi, intmax_t *out)
{
    char *end;
    errno = 0;
    intmax_t v = strtoimax(s, &end, 10);
    if (end == s || *end || isspace((unsigned char)*s))
        return -EINVAL;
    if (errno == ERANGE || v < lo || v > hi)
        return -ERANGE;
    *out = v;
    return 0;
}

/* Finite decimal number (no hex, inf or nan), nothing before or after it. */
static int cfg_strtod(const char *s, double *out)
{
    char *end;
    if (!*s || s[strspn(s, "0123456789+-.eE")])
        return -EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end)
        return -EINVAL;
    if (!isfinite(v))
        return -ERANGE;
    *out = v;
    return 0;
}

/* Unsigned decimal with an optional size suffix (spaces allowed before it). */
static int cfg_strtosize(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    while (*end == ' ' || *end == '\t')
        end++;
    for (size_t i = 0; i < sizeof(cfg_size_units) / sizeof(cfg_size_units[0]); i++) {
        if (strcmp(end, cfg_size_units[i].suffix))
            continue;
        if (v > UINT64_MAX / cfg_size_units[i].mul)
            return -ERANGE;
        *out = (uint64_t)v * cfg_size_units[i].mul;
        return 0;
    }
    return -EINVAL;
}

/* ---- one value into its field ---- */

/* "must be >= lo and <= hi, got text" (a side at infinity left out). */
static int cfg_check_range(struct cfg_loader *ld, const struct cfg_key *k, const char *where,
                           double v, const char *text)
{
    const struct cfg_range *r = &k->range;
    char lo[48] = "", hi[48] = "";
    if (!(v < r->lo || (r->lo_open && v == r->lo) || v > r->hi || (r->hi_open && v == r->hi)))
        return 0;
    if (isfinite(r->lo))
        snprintf(lo, sizeof(lo), "%s %.15g", r->lo_open ? ">" : ">=", r->lo);
    if (isfinite(r->hi))
        snprintf(hi, sizeof(hi), "%s%s %.15g", *lo ? " and " : "", r->hi_open ? "<" : "<=",
                 r->hi);
    return cfg_fail(ld, where, k->section, k->key, "must be %s%s, got %s", lo, hi, text);
}

static int cfg_put_int(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                       const char *where)
{
    bool is_int = k->type == CFG_INT;
    intmax_t v;
    int rc = cfg_strtoi(s, is_int ? INT_MIN : INT64_MIN, is_int ? INT_MAX : INT64_MAX, &v);
    if (rc == -EINVAL)
        return cfg_fail(ld, where, k->section, k->key, "'%s' is not an integer", s);
    if (rc)
        return cfg_fail(ld, where, k->section, k->key, "'%s' is out of range", s);
    rc = cfg_check_range(ld, k, where, (double)v, s);
    if (rc)
        return rc;
    if (is_int)
        *(int *)cfg_field(ld, k) = (int)v;
    else
        *(int64_t *)cfg_field(ld, k) = (int64_t)v;
    return 0;
}

static int cfg_put_double(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                          const char *where)
{
    double v;
    int rc = cfg_strtod(s, &v);
    if (rc == -EINVAL)
        return cfg_fail(ld, where, k->section, k->key, "'%s' is not a number", s);
    if (rc)
        return cfg_fail(ld, where, k->section, k->key, "'%s' is out of range", s);
    rc = cfg_check_range(ld, k, where, v, s);
    if (rc)
        return rc;
    double si = v * k->mul / k->div;
    if (!isfinite(si))
        return cfg_fail(ld, where, k->section, k->key, "'%s' is out of range", s);
    *(double *)cfg_field(ld, k) = si;
    return 0;
}

static int cfg_put_size(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                        const char *where)
{
    uint64_t v;
    int rc = cfg_strtosize(s, &v);
    if (rc && *s == '-')
        return cfg_fail(ld, where, k->section, k->key, "'%s' is negative", s);
    if (rc == -EINVAL)
        return cfg_fail(ld, where, k->section, k->key,
                        "'%s' is not a size (bytes, optional K M G KB MB GB KiB MiB GiB)", s);
    if (rc)
        return cfg_fail(ld, where, k->section, k->key, "'%s' is more than 2^64-1 bytes", s);
    *(uint64_t *)cfg_field(ld, k) = v;
    return 0;
}

/* Writes "a|b|c" into buf. */
static void cfg_word_list(char *buf, size_t size, const char *const *words)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; words[i] && n < size; i++) {
        int w = snprintf(buf + n, size - n, "%s%s", i ? "|" : "", words[i]);
        if (w < 0)
            return;
        n += (size_t)w;
    }
}

static int cfg_put_word(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                        const char *where)
{
    if (k->type == CFG_BOOL) {
        int t = cfg_word_index(true_words, s);
        if (t < 0 && cfg_word_index(false_words, s) < 0)
            return cfg_fail(ld, where, k->section, k->key,
                            "'%s' is not a boolean (true/false, on/off, yes/no, 1/0)", s);
        *(bool *)cfg_field(ld, k) = t >= 0;
        return 0;
    }
    int i = cfg_word_index(k->words, s);
    if (i < 0) {
        char list[256];
        cfg_word_list(list, sizeof(list), k->words);
        return cfg_fail(ld, where, k->section, k->key, "'%s' is not one of %s", s, list);
    }
    memcpy(cfg_field(ld, k), &i, sizeof(i));
    return 0;
}

/* Names are copied; paths are joined to dir unless absolute (dir "" for --set). */
static int cfg_put_text(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                        const char *where, const char *dir)
{
    const char *pre = (k->type == CFG_PATH && *s && *s != '/') ? dir : "";
    size_t np = strlen(pre), ns = strlen(s);
    if (np + ns >= k->size)
        return cfg_fail(ld, where, k->section, k->key, "'%s%s' is longer than %zu characters",
                        pre, s, k->size - 1);
    char *dst = cfg_field(ld, k);
    memcpy(dst, pre, np);
    memcpy(dst + np, s, ns + 1);
    return 0;
}

static int cfg_put(struct cfg_loader *ld, const struct cfg_key *k, const char *s,
                   const char *where, const char *dir)
{
    if (!*s && k->type != CFG_NAME && k->type != CFG_PATH)
        return cfg_fail(ld, where, k->section, k->key, "empty value");
    switch (k->type) {
    case CFG_INT:
    case CFG_INT64:  return cfg_put_int(ld, k, s, where);
    case CFG_DOUBLE: return cfg_put_double(ld, k, s, where);
    case CFG_SIZE:   return cfg_put_size(ld, k, s, where);
    case CFG_BOOL:
    case CFG_ENUM:   return cfg_put_word(ld, k, s, where);
    case CFG_NAME:
    case CFG_PATH:   return cfg_put_text(ld, k, s, where, dir);
    }
    return cfg_fail(ld, where, k->section, k->key, "bad schema type %d", (int)k->type);
}

/* Sets section.key from text; where is "file:line" or "--set"; dir resolves paths. */
static int cfg_set(struct cfg_loader *ld, const char *sec, const char *key, const char *value,
                   const char *where, const char *dir)
{
    const struct cfg_key *k = cfg_find(sec, key);
    if (!k)
        return cfg_fail_unknown(ld, where, sec, key);
    int rc = cfg_put(ld, k, value, where, dir);
    if (rc)
        return rc;
    snprintf(ld->src[k - cfg_keys].where, sizeof(ld->src[0].where), "%s", where);
    ld->order[k - cfg_keys] = ++ld->nsets;
    return 0;
}

static int cfg_defaults(struct cfg_loader *ld)
{
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        snprintf(ld->src[i].where, sizeof(ld->src[i].where), "default");
        int rc = cfg_put(ld, &cfg_keys[i], cfg_keys[i].def, "default", "");
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- files ---- */

static int cfg_read_file(struct cfg_loader *ld, const char *path, int depth, const char *from);

/* A "[name]" line, found as inih finds it (the first ']' not hidden by a " ;" comment):
 * an empty name would read as before any section, and inih cuts a long one. */
static int cfg_check_section(struct cfg_file *f, const char *s)
{
    bool was_space = false;
    size_t n = 1;
    if (*s != '[')
        return 0;
    for (; s[n] && s[n] != ']' && !(was_space && s[n] == ';'); n++)
        was_space = isspace((unsigned char)s[n]);
    if (s[n] != ']')
        return 0;                       /* no ']': inih's syntax error */
    if (n == 1)
        return cfg_failf(f->ld, -EINVAL, "%s:%d: empty section name", f->shown, f->line);
    if (n - 1 > CFG_SECTION_MAX)
        return cfg_failf(f->ld, -EINVAL, "%s:%d: section name longer than %d characters",
                         f->shown, f->line, CFG_SECTION_MAX);
    return 0;
}

/* f->raw, free of control bytes (textin_getline): a sound section name if it is one. */
static int cfg_check_line(struct cfg_file *f)
{
    const char *s = f->raw;
    if (f->line == 1 && !strncmp(s, "\xef\xbb\xbf", 3))
        s += 3;                         /* a UTF-8 BOM, which inih skips */
    return cfg_check_section(f, s + strspn(s, " \t"));
}

/* inih reader: one line per call into str (num bytes); NULL at the end or on error.
 * Leading blanks go, so an indented key is a key, not inih's multi-line continuation
 * (tab and space are the only blanks textin_getline lets through). */
static char *cfg_read_line(char *str, int num, void *stream)
{
    struct cfg_file *f = stream;
    size_t max = num > 0 && (size_t)num - 1 < CFG_LINE_MAX ? (size_t)num - 1 : CFG_LINE_MAX;
    size_t len = 0;
    if (f->ld->rc || num < 1)
        return NULL;
    int rc = textin_getline(f->fp, f->raw, max, &len);
    if (rc == 0)
        return NULL;
    f->line++;
    if (rc == -E2BIG)
        cfg_failf(f->ld, -EINVAL, "%s:%d: line longer than %zu characters", f->shown, f->line,
                  max);
    else if (rc == -EILSEQ)
        cfg_failf(f->ld, -EINVAL, "%s:%d: control character 0x%02x in line", f->shown, f->line,
                  (unsigned char)f->raw[textin_clean_len(f->raw, len)]);
    else if (rc < 0)
        cfg_failf(f->ld, -EINVAL, "%s:%d: cannot read: %s", f->shown, f->line, strerror(-rc));
    if (rc < 0 || cfg_check_line(f)) {
        f->fail_line = f->line;
        return NULL;
    }
    size_t skip = strspn(f->raw, " \t");
    memcpy(str, f->raw + skip, len - skip + 1);
    return str;
}

/* "include = path" before any section: reads path, relative to this file's folder. */
static int cfg_include(struct cfg_file *f, const char *name, const char *value, const char *where)
{
    struct cfg_loader *ld = f->ld;
    char path[CFG_PATH_MAX];
    if (strcmp(name, "include"))
        return cfg_fail(ld, where, "", name, "only 'include = path' may come before a [section]");
    if (!*value)
        return cfg_fail(ld, where, "", name, "empty path");
    if (f->depth >= CFG_INCLUDE_DEPTH)
        return cfg_fail(ld, where, "", name, "nested more than %d deep", CFG_INCLUDE_DEPTH);
    const char *dir = *value == '/' ? "" : f->dir;
    if (strlen(dir) + strlen(value) >= sizeof(path))
        return cfg_fail(ld, where, "", name, "'%s%s' is longer than %zu characters", dir, value,
                        sizeof(path) - 1);
    strcpy(path, dir);
    strcat(path, value);
    return cfg_read_file(ld, path, f->depth + 1, where);
}

/* inih handler: nonzero to go on. */
static int cfg_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_file *f = user;
    char where[sizeof(((struct cfg_src *)0)->where)];
    if (f->ld->rc)
        return 0;
    snprintf(where, sizeof(where), "%s:%d", f->shown, f->line);
    /* Within one file a key is set once; a later file or --set overrides (config.h). */
    const struct cfg_key *k = *section ? cfg_find(section, name) : NULL;
    int rc = 0;
    if (!strcmp(section, CFG_SWEEP_SECTION))
        return 1;                   /* moesim sweep's (config.h) */
    if (k && f->key_line[k - cfg_keys])
        rc = cfg_fail(f->ld, where, section, name, "repeated (first at line %d)",
                      f->key_line[k - cfg_keys]);
    else if (*section)
        rc = cfg_set(f->ld, section, name, value, where, f->dir);
    else
        rc = cfg_include(f, name, value, where);
    if (!rc && k)
        f->key_line[k - cfg_keys] = f->line;
    if (rc) {
        f->fail_line = f->line;
        return 0;
    }
    return 1;
}

/* Reads one file; from is the including "file:line", NULL for a top-level file. */
static int cfg_read_file(struct cfg_loader *ld, const char *path, int depth, const char *from)
{
    struct cfg_file f = { .ld = ld, .path = path, .depth = depth };
    char why[128];
    size_t n = strlen(path);
    textin_escape(f.shown, sizeof(f.shown), path);
    if (n >= sizeof(f.dir))
        return cfg_failf(ld, -EINVAL, "%s: path longer than %zu characters", f.shown,
                         sizeof(f.dir) - 1);
    const char *slash = strrchr(path, '/');
    size_t ndir = slash ? (size_t)(slash - path) + 1 : 0;
    memcpy(f.dir, path, ndir);
    f.dir[ndir] = '\0';
    if (textin_open(&f.fp, path, why, sizeof(why))) {
        if (from)
            return cfg_failf(ld, -EINVAL, "%s: include: %s: %s", from, f.shown, why);
        return cfg_failf(ld, -EINVAL, "%s: %s", f.shown, why);
    }
    int r = ini_parse_stream(cfg_read_line, &f, cfg_on_key, &f);
    fclose(f.fp);
    /* inih reports the first bad line of this file; one before ours is a syntax error. */
    if (r > 0 && (f.fail_line == 0 || r < f.fail_line)) {
        ld->rc = 0;
        return cfg_failf(ld, -EINVAL, "%s:%d: syntax error", f.shown, r);
    }
    if (r < 0)
        return cfg_failf(ld, -ENOMEM, "%s: out of memory", f.shown);
    return ld->rc;
}

/* ---- --set ---- */

static char *cfg_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* "section.key=value"; the value goes in as written (paths are not resolved). */
static int cfg_apply_set(struct cfg_loader *ld, const char *arg)
{
    size_t n = strlen(arg);
    if (textin_clean_len(arg, n) < n)               /* as on a line of a file */
        return cfg_failf(ld, -EINVAL, "--set: '%s': control character in argument", arg);
    char *s = strdup(arg);
    if (!s)
        return cfg_failf(ld, -ENOMEM, "--set: out of memory");
    char *eq = strchr(s, '=');
    char *dot = eq ? memchr(s, '.', (size_t)(eq - s)) : NULL;
    int rc = -EINVAL;
    if (dot) {
        *eq = '\0';
        *dot = '\0';
        char *sec = cfg_trim(s), *key = cfg_trim(dot + 1), *value = cfg_trim(eq + 1);
        if (*sec && *key)
            rc = cfg_set(ld, sec, key, value, "--set", "");
    }
    if (rc == -EINVAL && !ld->rc)
        cfg_failf(ld, -EINVAL, "--set: '%s': expected section.key=value", arg);
    free(s);
    return rc;
}

/* ---- sources: where and when each key was set ---- */

int cfg_latest(const struct cfg_loader *ld, const char *const *names, int n)
{
    const struct cfg_key *best = NULL;
    int at = 0;
    for (int i = 0; i < n; i++) {
        const struct cfg_key *k = cfg_find(names[2 * i], names[2 * i + 1]);
        if (k && (!best || ld->order[k - cfg_keys] > ld->order[best - cfg_keys])) {
            best = k;
            at = i;
        }
    }
    return at;
}

/* When the key was set: 0 for its default, then 1, 2, ... in the order of setting. */
static unsigned long cfg_order(const struct cfg_loader *ld, const char *sec, const char *key)
{
    const struct cfg_key *k = cfg_find(sec, key);
    return k ? ld->order[k - cfg_keys] : 0;
}

/* The bytes per element of the four all-to-alls (config.h): the forward two from their
 * dtype when it was set after their *_bytes_per_elem (a later file or --set overrides an
 * earlier one, whichever of the two it names); each gradient from its dtype when set,
 * else the combine's. Both at their defaults: 2 bytes, BF16. */
static void cfg_fill_precision(struct cfg_loader *ld)
{
    struct cfg_model *m = &ld->c.model;
    int h = m->hidden, blk = m->fp8_block;
    if (cfg_order(ld, "model", "dispatch_dtype") >
        cfg_order(ld, "model", "dispatch_bytes_per_elem"))
        m->dispatch_bytes_per_elem = config_dtype_bytes(m->dispatch_dtype, h, blk);
    if (cfg_order(ld, "model", "combine_dtype") > cfg_order(ld, "model", "combine_bytes_per_elem"))
        m->combine_bytes_per_elem = config_dtype_bytes(m->combine_dtype, h, blk);
    m->combine_grad_bytes_per_elem = m->combine_bytes_per_elem;
    m->dispatch_grad_bytes_per_elem = m->combine_bytes_per_elem;
    if (cfg_order(ld, "model", "combine_grad_dtype"))
        m->combine_grad_bytes_per_elem = config_dtype_bytes(m->combine_grad_dtype, h, blk);
    if (cfg_order(ld, "model", "dispatch_grad_dtype"))
        m->dispatch_grad_bytes_per_elem = config_dtype_bytes(m->dispatch_grad_dtype, h, blk);
}

/* The files a run reads later (trace, matrix, expert table) keep where they were named,
 * for their own messages. */
static void cfg_fill_sources(struct cfg_loader *ld)
{
    struct config *c = &ld->c;
    snprintf(c->traffic.matrix_src.where, sizeof(c->traffic.matrix_src.where), "%s",
             cfg_where(ld, "traffic", "matrix"));
    snprintf(c->routing.trace_src.where, sizeof(c->routing.trace_src.where), "%s",
             cfg_where(ld, "routing", "trace"));
    snprintf(c->calibration.expert_table_src.where,
             sizeof(c->calibration.expert_table_src.where), "%s",
             cfg_where(ld, "calibration", "expert_table"));
}

/* Every key has a default, so no key is required; but files that set nothing at all
 * (empty, comments only) and no --set are a mistake, such as the wrong file given. */
static int cfg_check_sets_something(struct cfg_loader *ld, const char *const *files,
                                    int nfiles)
{
    char shown[CFG_PATH_MAX];
    if (!nfiles || ld->nsets)
        return 0;
    textin_escape(shown, sizeof(shown), files[0]);
    if (nfiles == 1)
        return cfg_failf(ld, -EINVAL, "%s: the config sets no key (the file is empty or only "
                         "comments, and no --set)", shown);
    return cfg_failf(ld, -EINVAL, "%s: the config sets no key (the %d files given are empty "
                     "or only comments, and no --set)", shown, nfiles);
}

/* ---- API ---- */

static const char *cfg_word(const char *const *words, int i)
{
    for (int j = 0; words[j]; j++)
        if (j == i)
            return words[j];
    return "?";
}


/* config_load_keys, and with rules false config_read (config.h). */
static int cfg_load(struct config *c, struct cfg_loader **keys, const char *const *files,
                    int nfiles, const char *const *sets, int nsets, struct cfg_err *err,
                    bool rules)
{
    if (keys)
        *keys = NULL;
    if (!c || !err || nfiles < 0 || nsets < 0 || (nfiles && !files) || (nsets && !sets)) {
        if (err)
            snprintf(err->msg, sizeof(err->msg), "config_load: bad arguments");
        return -EINVAL;
    }
    struct cfg_loader *ld = calloc(1, sizeof(*ld));
    if (!ld) {
        snprintf(err->msg, sizeof(err->msg), "config: out of memory");
        return -ENOMEM;
    }
    int rc = cfg_defaults(ld);
    for (int i = 0; !rc && i < nfiles; i++)
        rc = cfg_read_file(ld, files[i], 0, NULL);
    for (int i = 0; !rc && i < nsets; i++)
        rc = cfg_apply_set(ld, sets[i]);
    if (!rc && rules)
        rc = cfg_check_sets_something(ld, files, nfiles);
    if (!rc)
        rc = rules ? cfg_check(ld) : (cfg_derive(ld), 0);
    if (!rc) {
        cfg_fill_precision(ld);
        cfg_fill_sources(ld);
    }
    if (rc) {
        *err = ld->err;
    } else {
        *c = ld->c;
        err->msg[0] = '\0';
    }
    if (!rc && keys)
        *keys = ld;
    else
        free(ld);
    return rc;
}

int config_load_keys(struct config *c, struct cfg_loader **keys, const char *const *files,
                     int nfiles, const char *const *sets, int nsets, struct cfg_err *err)
{
    return cfg_load(c, keys, files, nfiles, sets, nsets, err, true);
}

void config_keys_free(struct cfg_loader *keys)
{
    free(keys);
}

const char *config_key_where(const struct cfg_loader *keys, const char *sec, const char *key)
{
    return cfg_where(keys, sec, key);
}

int config_rule_fail(struct cfg_loader *keys, const char *const *names, int n,
                     struct cfg_err *err, const char *fmt, ...)
{
    char what[CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    keys->rc = 0;                   /* the load itself succeeded: this is the first error */
    int rc = cfg_fail_rule(keys, names, n, "%s", what);
    *err = keys->err;
    return rc;
}

int config_load(struct config *c, const char *const *files, int nfiles,
                const char *const *sets, int nsets, struct cfg_err *err)
{
    return cfg_load(c, NULL, files, nfiles, sets, nsets, err, true);
}

int config_read(struct config *c, const char *const *files, int nfiles,
                const char *const *sets, int nsets, struct cfg_err *err)
{
    return cfg_load(c, NULL, files, nfiles, sets, nsets, err, false);
}

/* "section.key" split at its first '.' into sec[sn] and key[kn]; false when there is no
 * '.', or either part is empty or too long. */
static bool cfg_split_name(const char *name, char *sec, size_t sn, char *key, size_t kn)
{
    const char *dot = strchr(name, '.');
    size_t ns = dot ? (size_t)(dot - name) : 0;
    if (!dot || !ns || ns >= sn || !dot[1] || strlen(dot + 1) >= kn)
        return false;
    memcpy(sec, name, ns);
    sec[ns] = '\0';
    strcpy(key, dot + 1);
    return true;
}

int config_check_value(const char *name, const char *value, const char *where,
                       struct cfg_err *err)
{
    char sec[CFG_NAME_MAX], key[CFG_NAME_MAX];
    struct cfg_loader *ld = calloc(1, sizeof(*ld));
    if (!ld) {
        snprintf(err->msg, sizeof(err->msg), "config: out of memory");
        return -ENOMEM;
    }
    int rc;
    if (!cfg_split_name(name, sec, sizeof(sec), key, sizeof(key)))
        rc = cfg_failf(ld, -EINVAL, "%s: %s: not a section.key", where, name);
    else
        rc = cfg_set(ld, sec, key, value, where, "");
    *err = ld->err;
    if (!rc)
        err->msg[0] = '\0';
    free(ld);
    return rc;
}

int config_value(const struct config *c, const char *name, double *num, char *text, size_t len)
{
    char sec[CFG_NAME_MAX], key[CFG_NAME_MAX];
    const struct cfg_key *k = cfg_split_name(name, sec, sizeof(sec), key, sizeof(key))
                                  ? cfg_find(sec, key) : NULL;
    if (!k)
        return -ENOENT;
    const void *p = (const char *)c + k->off;
    *num = NAN;
    snprintf(text, len, "%s", "");
    switch (k->type) {
    case CFG_INT: *num = *(const int *)p; break;
    case CFG_INT64: *num = (double)*(const int64_t *)p; break;
    case CFG_DOUBLE: *num = *(const double *)p * k->div / k->mul; break;
    case CFG_SIZE: *num = (double)*(const uint64_t *)p; break;
    case CFG_BOOL:
        *num = *(const bool *)p;
        snprintf(text, len, "%s", *(const bool *)p ? "true" : "false");
        break;
    case CFG_ENUM: snprintf(text, len, "%s", cfg_word(k->words, *(const int *)p)); break;
    case CFG_NAME:
    case CFG_PATH: snprintf(text, len, "%s", (const char *)p); break;
    }
    return 0;
}

const char *config_key_name(int i, char *buf, size_t len)
{
    if (i < 0 || (size_t)i >= CFG_NKEYS)
        return NULL;
    snprintf(buf, len, "%s.%s", cfg_keys[i].section, cfg_keys[i].key);
    return buf;
}

int config_gpus(const struct config *c)
{
    long long g = (long long)c->cluster.nodes * c->cluster.gpus_per_node;
    if (c->cluster.nodes < 1 || c->cluster.gpus_per_node < 1 || g > CFG_GPUS_MAX)
        return -ERANGE;
    return (int)g;
}

const char *config_route_name(enum route_kind r) { return cfg_word(route_words, (int)r); }
const char *config_a2a_name(enum a2a_kind a) { return cfg_word(a2a_words, (int)a); }
const char *config_dist_name(enum dist_kind d) { return cfg_word(dist_words, (int)d); }
const char *config_score_name(enum score_kind s) { return cfg_word(score_words, (int)s); }
const char *config_place_name(enum place_kind p) { return cfg_word(place_words, (int)p); }
const char *config_pattern_name(enum pattern_kind p) { return cfg_word(pattern_words, (int)p); }
const char *config_sched_name(enum sched_kind k) { return cfg_word(sched_words, (int)k); }
const char *config_attn_name(enum attn_kind a) { return cfg_word(attn_words, (int)a); }
const char *config_reduce_name(enum reduce_kind r) { return cfg_word(reduce_words, (int)r); }
const char *config_dtype_name(enum dtype_kind d) { return cfg_word(dtype_words, (int)d); }

double config_dtype_bytes(enum dtype_kind d, int hidden, int fp8_block)
{
    if (hidden < 1 || fp8_block < 1)
        return NAN;
    switch (d) {
    case DTYPE_BF16:
    case DTYPE_FP16:
        return 2;
    case DTYPE_FP32:
        return 4;
    case DTYPE_FP8: {
        double scales = ceil((double)hidden / fp8_block);
        return ((double)hidden + 4 * scales) / hidden;
    }
    }
    return NAN;
}
