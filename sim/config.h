/* config.h: the run description, read from INI files (inih) and --set overrides.
 *
 * Files are read in order; a later file or --set overrides an earlier value, but one
 * file sets a key at most once ("f.ini:7: model.experts: repeated (first at line 3)").
 * A top-level `include = path` (before any section) reads another file first,
 * relative to the including file's folder. Human units in the files (GB/s, us),
 * SI in this struct (bytes/s, s). Every key is checked: unknown sections and keys (with
 * "; did you mean section.key?" when a known one is near), non-numeric, out-of-range
 * (every number has a finite range, README.md) and inconsistent values are errors that
 * name "file:line: section.key: what is wrong" (overrides name "--set"); a rule between
 * keys names the one set last. Every key has a default, but files that set no key at
 * all and no --set are refused ("f.ini: the config sets no key ...").
 * A line holds at most CFG_LINE_MAX characters and no control character but tab (a
 * '\r' before the '\n' is fine); a --set holds none but tab either. Files and
 * includes must be regular files. Messages escape control characters (\n, \xNN).
 */
#ifndef MOESIM_CONFIG_H
#define MOESIM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_NAME_MAX 64
#define CFG_PATH_MAX 1024
#define CFG_ERR_MAX 1280
#define CFG_LINE_MAX 199          /* longest accepted INI line, bytes, without the newline */
#define CFG_INCLUDE_DEPTH 8       /* include chains deeper than this are an error */
#define CFG_GPUS_MAX (1 << 20)    /* config_load rejects clusters with more GPUs */
/* Most token-expert assignments one MoE layer routes (over the GPUs of its all-to-all);
 * at most 2^24 (hidden) x 64 bytes each, a layer's collective moves < 2^63 bytes (the legs
 * of a two-level dispatch: < 2^63 on each tier, a relayed token on both). */
#define CFG_ASSIGN_MAX (1ull << 33)

enum route_kind { ROUTE_RAIL, ROUTE_PXN, ROUTE_HIER };
/* Routing law (routing.h); trace: counts replayed from a routing trace (routing.trace). */
enum dist_kind { DIST_UNIFORM, DIST_ZIPF, DIST_AFFINITY, DIST_TRACE };
/* The router's scores: softmax or sigmoid of the token's logits (gating.h). */
enum score_kind { SCORE_SOFTMAX, SCORE_SIGMOID };
/* Expert -> GPU placement ([balance] placement; placement.h has the algorithms). */
enum place_kind { PLACE_CONTIGUOUS, PLACE_ROUND_ROBIN, PLACE_EPLB, PLACE_EPLB_GLOBAL };
enum pattern_kind { PATTERN_MOE, PATTERN_ALLTOALL, PATTERN_MATRIX };
/* SCHED_NONE: no training step, only one MoE layer's traffic ([traffic] pattern). */
/* SCHED_PREFILL, SCHED_DECODE: one inference forward step ([serve]; serve.h), run by the
 * step engine as one forward of the whole model on one stage. */
enum sched_kind { SCHED_NONE, SCHED_GPIPE, SCHED_1F1B, SCHED_INTERLEAVED_1F1B, SCHED_ZB1P,
                  SCHED_DUALPIPE, SCHED_DUALPIPEV, SCHED_PREFILL, SCHED_DECODE };
enum attn_kind { ATTN_GQA, ATTN_MLA };
/* The FFN of dense layers, shared and routed experts (model.h): gated, three matrices
 * (SwiGLU, GeGLU), or two (ReLU, GeLU). */
enum ffn_act { FFN_SWIGLU, FFN_GEGLU, FFN_RELU, FFN_GELU };
/* Number format of an all-to-all's elements ([model] *_dtype; config_dtype_bytes). */
enum dtype_kind { DTYPE_BF16, DTYPE_FP16, DTYPE_FP8, DTYPE_FP32 };
enum reduce_kind { REDUCE_RING, REDUCE_TREE };

/* Where a value came from: "file:line", or "--set", or "default". */
struct cfg_src {
    char where[CFG_PATH_MAX + 16];
};

struct cfg_cluster {
    char name[CFG_NAME_MAX];
    int nodes;
    int gpus_per_node;
    double nvlink_Bps;        /* per GPU, per direction */
    double nic_Bps;           /* per GPU (one NIC per GPU), per direction */
    double nvlink_eff;        /* nvlink_efficiency: fraction of nvlink_Bps a transfer reaches */
    double nic_eff;           /* nic_efficiency: fraction of nic_Bps a transfer reaches */
    double nvlink_lat_s;      /* per NVLink hop */
    double nic_lat_s;         /* per NIC crossed */
    double switch_lat_s;      /* per fabric switch crossed */
    double oversubscription;  /* leaf down:up ratio, >= 1 */
    int nodes_per_leaf;       /* 0: one non-blocking fabric switch for all nodes */
    enum route_kind route;
    double flow_quantum;      /* 0: exact flow model; > 0: batched re-solves (a2a.h) */
    /* compute model (used by training steps) */
    double gpu_flops;         /* gpu_tflops_bf16: dense BF16 peak, FLOP/s */
    double hbm_Bps;           /* hbm_GBps */
    int sms;                  /* streaming multiprocessors per GPU */
    double gemm_eff;          /* gemm_efficiency: fraction of peak a large GEMM reaches */
    double gemm_half_rows;    /* gemm_half_rows: GEMM rows (tokens) at which it reaches half of that */
    double hbm_eff;           /* hbm_efficiency: fraction of hbm_Bps a memory-bound op reaches */
    double gpu_mem_bytes;     /* gpu_mem_GiB */
    double gpu_flops_fp8;     /* gpu_tflops_fp8: dense FP8 peak, FLOP/s (serve.gemm_dtype fp8) */
};

struct cfg_model {
    char name[CFG_NAME_MAX];
    int hidden;
    int experts;              /* routed experts */
    int top_k;
    int shared_experts;
    int expert_ffn_hidden;
    int layers;
    int first_dense_layers;
    int moe_every;            /* after those, every moe_every-th layer is MoE (model.h) */
    /* Bytes per element of the four all-to-alls of a MoE layer: the forward dispatch and
     * combine, and the backward's: the combine's gradient (it travels the dispatch's
     * way, from each token's GPU to its experts) and the dispatch's gradient (the
     * combine's way). Each comes from its *_dtype key (config_dtype_bytes) or, for the
     * forward two, from the *_bytes_per_elem key, whichever was set last; a gradient
     * whose dtype is not set takes the combine's (today's BF16 gradients). */
    double dispatch_bytes_per_elem;
    double combine_bytes_per_elem;
    double combine_grad_bytes_per_elem;   /* filled in by config_load */
    double dispatch_grad_bytes_per_elem;  /* filled in by config_load */
    enum dtype_kind dispatch_dtype, combine_dtype, combine_grad_dtype, dispatch_grad_dtype;
    int fp8_block;            /* FP8: one FP32 scale per this many elements of a token */
    /* transformer structure (used by training steps) */
    int seq_len;
    int vocab;
    int ffn_hidden;           /* dense FFN intermediate size; 0: none given */
    enum ffn_act ffn_act;     /* every FFN's activation */
    enum attn_kind attention;
    int heads;
    int kv_heads;             /* GQA; 0 in the input comes back as heads */
    int head_dim;             /* GQA; 0 in the input comes back as hidden / heads (rounded
                               * down; a step requires heads | hidden) */
    int q_lora_rank;          /* MLA; 0: queries are not low-rank */
    int kv_lora_rank;         /* MLA */
    int qk_nope_head_dim;     /* MLA */
    int qk_rope_head_dim;     /* MLA */
    int v_head_dim;           /* MLA */
};

/* GPUs = pp * dp (no tensor parallelism). Stage s holds GPUs [s * dp, (s + 1) * dp);
 * inside a stage, EP groups of ep consecutive GPUs (ep divides dp). */
struct cfg_parallel {
    int ep;                   /* expert-parallel degree; 0 in the input comes back as dp */
    int pp;                   /* pipeline stages */
    int dp;                   /* data-parallel degree; 0 in the input comes back as gpus / pp */
    int vpp;                  /* virtual stages per GPU (interleaved-1f1b) */
};

struct cfg_routing {
    int64_t tokens_per_gpu;
    enum dist_kind distribution;
    double zipf_s;
    bool dedup;               /* a token goes once to each destination GPU */
    double concentration;     /* affinity: Dirichlet concentration per expert (gating.h) */
    double drift;             /* fraction of the experts re-ranked per iteration, 0..1 (gating.h) */
    bool per_layer;           /* each layer its own popularity ranking */
    enum score_kind scoring;
    int max_nodes;            /* node-limited routing: at most this many nodes per token; 0: off */
    char trace[CFG_PATH_MAX]; /* trace: path resolved against the naming file's folder */
    struct cfg_src trace_src;
};

/* Load balancing (routing.h, placement.h). */
struct cfg_balance {
    double capacity_factor;   /* expert capacity = floor(factor * assignments / experts); 0: dropless */
    double bias_gamma;        /* aux-loss-free bias update speed per iteration; 0: no bias */
    int iterations;           /* routing iterations (balance runs); >= 1 */
    enum place_kind placement;
    int redundant_experts;    /* extra expert replicas per EP group (eplb placements) */
    int expert_groups;        /* eplb: expert groups packed onto nodes; 0: one per node */
};

struct cfg_traffic {
    enum pattern_kind pattern;
    uint64_t bytes_per_pair;  /* alltoall */
    bool combine;             /* moe: simulate the combine after the dispatch */
    char matrix[CFG_PATH_MAX];/* matrix: path resolved against the naming file's folder */
    struct cfg_src matrix_src;
};

struct cfg_schedule {
    enum sched_kind kind;
    int microbatches;         /* per pipeline, per step */
    int64_t micro_batch_tokens; /* tokens of one micro-batch on one DP rank */
    bool overlap;             /* communication overlaps compute where dependencies allow */
    int comm_sms;             /* SMs communication kernels take while they run */
    enum reduce_kind dp_reduce;
    double grad_bytes_per_param; /* bytes per gradient element in the DP reduce */
};

/* An inference step's dispatch and combine (serve.h): DeepEP's normal kernels (the
 * configured cluster.route) or its low-latency ones (every token straight to each target
 * GPU, no relay, no SMs taken). */
enum a2a_kind { A2A_NORMAL, A2A_LOW_LATENCY };

/* One inference step (schedule.kind prefill or decode; serve.h). batch is per GPU: each
 * GPU runs attention for its own batch sequences (attention data-parallel), or with
 * attn_tp > 1 each TP group of attn_tp GPUs for its attn_tp x batch sequences. */
struct cfg_serve {
    int64_t batch;            /* sequences per GPU */
    int64_t prompt_len;       /* prefill: tokens of each prompt */
    double cached_fraction;   /* prefill: share of the prompt already in the KV cache, 0..1) */
    int64_t context_len;      /* decode: tokens in each sequence's KV cache */
    int mtp_tokens;           /* decode: speculative (MTP) tokens per sequence per step */
    double mtp_acceptance;    /* decode: chance each speculative token is accepted */
    int microbatches;         /* 1 or 2 (overlapped: serve.h) */
    enum dtype_kind gemm_dtype;   /* bf16 or fp8: the weight GEMMs' peak and weight bytes */
    enum dtype_kind kv_dtype;     /* bf16 or fp8: KV-cache elements */
    bool shared_as_routed;    /* the shared experts as routed ones every token picks */
    int attn_tp;              /* GPUs of a node per attention TP group (1: data-parallel) */
    enum a2a_kind a2a;        /* normal or low_latency */
    double ll_message_s;      /* ll_message_us: low_latency's cost per (token, GPU) message */
};

/* Measured expert times: a CSV of tokens,fwd_us[,bwd_us] rows; "" when absent. */
struct cfg_calibration {
    char expert_table[CFG_PATH_MAX];
    struct cfg_src expert_table_src;
};

struct config {
    struct cfg_cluster cluster;
    struct cfg_model model;
    struct cfg_parallel parallel;
    struct cfg_routing routing;
    struct cfg_balance balance;
    struct cfg_traffic traffic;
    struct cfg_schedule schedule;
    struct cfg_calibration calibration;
    struct cfg_serve serve;
};

/* Whether c runs an inference step (schedule.kind prefill or decode). */
static inline bool config_serving(const struct config *c)
{
    return c->schedule.kind == SCHED_PREFILL || c->schedule.kind == SCHED_DECODE;
}

/* The shared experts served as routed ones (serve.shared_as_routed in an inference step,
 * serve.h): each is one more expert column that every token selects, placed and
 * replicated with the routed experts. Their number, 0 otherwise. */
static inline int config_shared_routed(const struct config *c)
{
    return config_serving(c) && c->serve.shared_as_routed ? c->model.shared_experts : 0;
}

/* Whether c's MoE all-to-alls are DeepEP's low-latency kernels (an inference step with
 * serve.a2a = low_latency). */
static inline bool config_low_latency(const struct config *c)
{
    return config_serving(c) && c->serve.a2a == A2A_LOW_LATENCY;
}

/* The route a MoE layer's all-to-alls take: the low-latency kernels send each pair's
 * tokens directly (rail: NVLink within a node, NIC to NIC between nodes), whatever
 * cluster.route says; otherwise cluster.route. */
static inline enum route_kind config_a2a_route(const struct config *c)
{
    return config_low_latency(c) ? ROUTE_RAIL : c->cluster.route;
}

struct cfg_err {
    char msg[CFG_ERR_MAX];    /* one line, no trailing newline */
};

/* Load files[0..nfiles) then apply sets[0..nsets) ("section.key=value").
 * Returns 0, or -EINVAL with err->msg set (bad input), or -ENOMEM.
 * Zeros that mean "derive it" come back filled in: parallel.dp = 0 as config_gpus(c) /
 * parallel.pp, parallel.ep = 0 as parallel.dp (all GPUs when pp = 1), model.kv_heads = 0
 * as model.heads, model.head_dim = 0 as model.hidden / model.heads (rounded down; a
 * training step requires heads | hidden). Keys only a training step reads are checked
 * against each other only when schedule.kind != none. *c is written only on success. */
int config_load(struct config *c, const char *const *files, int nfiles,
                const char *const *sets, int nsets, struct cfg_err *err);

/* Where and when each key of a loaded config was set, kept for the rules a caller
 * checks after the load (moeprof: the ranks mpirun started, the placement it lays out),
 * so that their messages name a key the way config_load's own rules do. Opaque. */
struct cfg_loader;

/* config_load that, on success, also hands the keys' origins to *keys (the caller owns
 * them: config_keys_free); *keys is NULL on failure. */
int config_load_keys(struct config *c, struct cfg_loader **keys, const char *const *files,
                     int nfiles, const char *const *sets, int nsets, struct cfg_err *err);
void config_keys_free(struct cfg_loader *keys);     /* NULL is a no-op */

/* Where section.key was last set: "file:line", "--set" or "default". Borrowed. */
const char *config_key_where(const struct cfg_loader *keys, const char *sec, const char *key);

/* A rule between keys broken after the load, worded as config_load's own: err->msg =
 * "where: section.key: what", blaming the key of names (n "section", "key" pairs) set
 * last; a message that starts "<first key> = <value>" drops that repeat when blaming the
 * first key. Returns -EINVAL. */
__attribute__((format(printf, 5, 6)))
int config_rule_fail(struct cfg_loader *keys, const char *const *names, int n,
                     struct cfg_err *err, const char *fmt, ...);

/* The section a sweep file (sweep.h) keeps its axes in: config_load passes over it, so
 * a sweep file is also the config of its base point. */
#define CFG_SWEEP_SECTION "sweep"

/* As config_load, but without the rules between keys (and without refusing files that
 * set nothing): each value is checked on its own, and the derived zeros are filled in as
 * far as the values allow (parallel.dp when parallel.pp divides the GPUs, parallel.ep as
 * dp, model.kv_heads, model.head_dim). What a sweep's filters read, for a point the
 * rules may still refuse. */
int config_read(struct config *c, const char *const *files, int nfiles,
                const char *const *sets, int nsets, struct cfg_err *err);

/* Checks name ("section.key") = value as a line of a file at where would set it: the key
 * exists (else "unknown key; did you mean ...", as config_load says), the value has its
 * type and range. 0, or -EINVAL with err->msg "where: section.key: what", or -ENOMEM. */
int config_check_value(const char *name, const char *value, const char *where,
                       struct cfg_err *err);

/* The value of name ("section.key") in c, in the units of the files: a number in *num
 * (text ""), a word (enum, name, path) in text[len] (*num NAN), a boolean both ways (1,
 * "true"; 0, "false"). 0, or -ENOENT when there is no such key. */
int config_value(const struct config *c, const char *name, double *num, char *text, size_t len);

/* "section.key" of the schema's key i into buf[len]; NULL when i is past the last. */
const char *config_key_name(int i, char *buf, size_t len);

/* config_gpus: -ERANGE when a field is < 1 or the product exceeds CFG_GPUS_MAX.
 * The *_name functions return the word used in the files, "?" for a bad value. */
int config_gpus(const struct config *c);  /* nodes * gpus_per_node */

const char *config_route_name(enum route_kind r);
const char *config_dist_name(enum dist_kind d);
const char *config_score_name(enum score_kind s);
const char *config_place_name(enum place_kind p);
const char *config_pattern_name(enum pattern_kind p);
const char *config_sched_name(enum sched_kind k);
const char *config_attn_name(enum attn_kind a);
const char *config_reduce_name(enum reduce_kind r);
const char *config_dtype_name(enum dtype_kind d);
const char *config_a2a_name(enum a2a_kind a);

/* Bytes per element of a token's vector of `hidden` elements in format d: 2 (bf16, fp16),
 * 4 (fp32), or for fp8 1 plus one 4-byte FP32 scale per fp8_block elements, a partial
 * last block included: (hidden + 4 * ceil(hidden / fp8_block)) / hidden, which is
 * 1 + 4 / fp8_block exactly when fp8_block divides hidden (DeepSeek-V3's 1x128 tiles,
 * arXiv:2412.19437 sec. 3.3.2). NAN for a bad value or hidden, fp8_block < 1. */
double config_dtype_bytes(enum dtype_kind d, int hidden, int fp8_block);

#endif
