/* cfgcheck.c: the rules between keys of a loaded config; see cfgload.h.
 *
 * config.c checks each value on its own (type, range) as it is read; the rules here
 * relate several keys and run once everything is read, in a fixed order, the first
 * broken one failing the load. A rule names the key to blame: the one of its keys set
 * last (cfg_latest), so a --set or a later file that broke it is the one shown, at its
 * "file:line" or "--set". The parallel layout is derived here (dp, ep), so later rules
 * see it filled in.
 */
#include "cfgload.h"
#include "model.h"
#include "sched.h"
#include "serve.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- blame ---- */

/* As cfg_fail, blaming the key of names set last (cfg_latest). */
__attribute__((format(printf, 4, 5)))
static int cfg_fail_latest(struct cfg_loader *ld, const char *const *names, int n,
                           const char *fmt, ...)
{
    char what[CFG_ERR_MAX];
    int i = cfg_latest(ld, names, n);
    const char *sec = names[2 * i], *key = names[2 * i + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return cfg_fail(ld, cfg_where(ld, sec, key), sec, key, "%s", what);
}

/* As cfg_fail_latest, for a message that starts "<first key> = <value>": blaming that
 * first key, the message drops the repeat and reads as a range error does ("model.top_k:
 * 9 is more than ..."); blaming another, it names the first key's value in full. */
int cfg_fail_rule(struct cfg_loader *ld, const char *const *names, int n,
                         const char *fmt, ...)
{
    char what[CFG_ERR_MAX], first[2 * CFG_NAME_MAX];
    int i = cfg_latest(ld, names, n);
    const char *sec = names[2 * i], *key = names[2 * i + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    int len = snprintf(first, sizeof(first), "%s.%s = ", names[0], names[1]);
    const char *text = what;
    if (i == 0 && len > 0 && !strncmp(what, first, (size_t)len))
        text += len;
    return cfg_fail(ld, cfg_where(ld, sec, key), sec, key, "%s", text);
}

/* "where: section.key: what" for a value section.key lacks: where is the latest setting
 * among names (section.key itself and the keys that call for the value). */
__attribute__((format(printf, 6, 7)))
static int cfg_fail_need(struct cfg_loader *ld, const char *sec, const char *key,
                         const char *const *names, int n, const char *fmt, ...)
{
    char what[CFG_ERR_MAX];
    int i = cfg_latest(ld, names, n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return cfg_fail(ld, cfg_where(ld, names[2 * i], names[2 * i + 1]), sec, key, "%s", what);
}

/* ---- the cluster and its parallel layout ---- */

/* The keys whose product is the GPU count, and the parallel layout derived from it. */
#define CFG_GPU_KEYS "cluster", "nodes", "cluster", "gpus_per_node"

static int cfg_check_gpus(struct cfg_loader *ld)
{
    static const char *const keys[] = { CFG_GPU_KEYS };
    const struct cfg_cluster *cl = &cfg_conf(ld)->cluster;
    long long gpus = (long long)cl->nodes * cl->gpus_per_node;
    if (gpus <= CFG_GPUS_MAX)
        return 0;
    return cfg_fail_latest(ld, keys, 2, "nodes * gpus_per_node = %d * %d = %lld GPUs is more "
                           "than %d", cl->nodes, cl->gpus_per_node, gpus, CFG_GPUS_MAX);
}

/* GPUs = pp * dp (config.h): pp | gpus; dp = 0 becomes gpus / pp, any other dp must be
 * that. vpp > 1 only for interleaved-1f1b, the one schedule with virtual stages. */
static int cfg_check_parallel(struct cfg_loader *ld)
{
    static const char *const vpp_kind[] = { "parallel", "vpp", "schedule", "kind" };
    static const char *const pp_keys[] = { "parallel", "pp", CFG_GPU_KEYS };
    static const char *const dp_keys[] = { "parallel", "dp", "parallel", "pp", CFG_GPU_KEYS };
    struct config *c = cfg_conf(ld);
    struct cfg_parallel *p = &c->parallel;
    int gpus = c->cluster.nodes * c->cluster.gpus_per_node;
    if (gpus % p->pp)
        return cfg_fail_rule(ld, pp_keys, 3, "parallel.pp = %d does not divide the %d GPUs "
                             "(cluster.nodes * cluster.gpus_per_node)", p->pp, gpus);
    if (p->dp && p->dp != gpus / p->pp)
        return cfg_fail_rule(ld, dp_keys, 4, "parallel.dp = %d is not GPUs / parallel.pp = "
                             "%d / %d = %d (GPUs = pp * dp: there is no tensor parallelism)",
                             p->dp, gpus, p->pp, gpus / p->pp);
    p->dp = gpus / p->pp;
    if (p->vpp > 1 && c->schedule.kind != SCHED_INTERLEAVED_1F1B)
        return cfg_fail_latest(ld, vpp_kind, 2, "parallel.vpp = %d needs schedule.kind = "
                               "interleaved-1f1b, got %s", p->vpp,
                               config_sched_name(c->schedule.kind));
    return 0;
}

/* The experts placed in an EP group's slots: the routed ones and the shared ones served as
 * routed (config_shared_routed); *shown says so, for a message. */
static int cfg_placed_experts(const struct config *c, char *shown, size_t n)
{
    int ns = config_shared_routed(c);
    if (ns)
        snprintf(shown, n, "%d (%d + %d shared, serve.shared_as_routed)",
                 c->model.experts + ns, c->model.experts, ns);
    else
        snprintf(shown, n, "%d", c->model.experts);
    return c->model.experts + ns;
}

/* EP groups must tile each stage's dp GPUs and, when routing MoE traffic, the expert slots:
 * ep <= dp, ep | experts + redundant_experts (pattern moe only), ep | dp. Runs after
 * cfg_check_parallel. */
static int cfg_check_ep(struct cfg_loader *ld)
{
    static const char *const slots_keys[] = { "balance", "redundant_experts", "parallel", "ep",
                                               "model", "experts" };
    static const char *const dp_keys[] = { "parallel", "ep", "parallel", "dp", "parallel", "pp",
                                           CFG_GPU_KEYS };
    static const char *const experts_keys[] = { "parallel", "ep", "model", "experts",
                                                "parallel", "dp", "parallel", "pp",
                                                CFG_GPU_KEYS };
    struct config *c = cfg_conf(ld);
    int dp = c->parallel.dp;
    int ep = c->parallel.ep ? c->parallel.ep : dp;
    char shown[64], dp_is[128], placed[96];
    int E = cfg_placed_experts(c, placed, sizeof(placed));
    if (c->parallel.ep)
        snprintf(shown, sizeof(shown), "%d", ep);
    else
        snprintf(shown, sizeof(shown), "0 (dp = %d)", dp);
    snprintf(dp_is, sizeof(dp_is), "parallel.dp = %d (cluster.nodes * cluster.gpus_per_node / "
             "parallel.pp)", dp);
    /* A derived ep (0) is blamed on what it derives from, not on parallel.ep. */
    int from = c->parallel.ep ? 0 : 1;
    if (ep > dp)
        return cfg_fail_rule(ld, dp_keys, 5, "parallel.ep = %s is more than %s", shown, dp_is);
    if (c->traffic.pattern == PATTERN_MOE && !c->balance.redundant_experts && E % ep)
        return cfg_fail_rule(ld, experts_keys + 2 * from, 6 - from, "parallel.ep = %s does not "
                             "divide model.experts = %s", shown, placed);
    if (c->traffic.pattern == PATTERN_MOE && (E + c->balance.redundant_experts) % ep)
        return cfg_fail_latest(ld, slots_keys, 3, "model.experts + balance.redundant_experts = "
                               "%s + %d is not a multiple of parallel.ep = %s: every GPU of an "
                               "EP group holds as many expert slots", placed,
                               c->balance.redundant_experts, shown);
    if (dp % ep)
        return cfg_fail_rule(ld, dp_keys, 5, "parallel.ep = %s does not divide %s", shown,
                             dp_is);
    c->parallel.ep = ep;
    return 0;
}

/* What one collective moves stays countable in 64 bits (the schema comment): a MoE layer
 * routes at most CFG_ASSIGN_MAX token-expert assignments on the GPUs that route it (all
 * of them; a step's stage of dp GPUs, one micro-batch each), and a uniform all-to-all
 * moves at most 2^63 bytes in all. */
static int cfg_check_volume(struct cfg_loader *ld)
{
    static const char *const run_keys[] = { "routing", "tokens_per_gpu", "model", "top_k",
                                            CFG_GPU_KEYS };
    static const char *const step_keys[] = { "schedule", "micro_batch_tokens", "model", "top_k",
                                             "parallel", "pp", CFG_GPU_KEYS };
    static const char *const a2a_keys[] = { "traffic", "bytes_per_pair", "traffic", "pattern",
                                            CFG_GPU_KEYS };
    const struct config *c = cfg_conf(ld);
    /* Products in doubles are exact up to 2^53, far above the 2^33 they are held to. */
    double gpus = (double)c->cluster.nodes * c->cluster.gpus_per_node, k = c->model.top_k;
    double run = gpus * (double)c->routing.tokens_per_gpu * k;
    double step = c->parallel.dp * (double)c->schedule.micro_batch_tokens * k;
    uint64_t pairs = (uint64_t)gpus * (uint64_t)gpus;            /* at most 2^40 */
    if (c->traffic.pattern == PATTERN_ALLTOALL && c->traffic.bytes_per_pair > (1ull << 63) / pairs)
        return cfg_fail_rule(ld, a2a_keys, 4, "traffic.bytes_per_pair = %" PRIu64 " to each of "
                             "%.0f x %.0f GPU pairs is more than 2^63 bytes in all",
                             c->traffic.bytes_per_pair, gpus, gpus);
    if (c->traffic.pattern != PATTERN_MOE)
        return 0;
    if (run > (double)CFG_ASSIGN_MAX)
        return cfg_fail_rule(ld, run_keys, 4, "routing.tokens_per_gpu = %lld x model.top_k = %d "
                             "x %.0f GPUs = %.0f token-expert assignments in a layer, more than "
                             "2^33", (long long)c->routing.tokens_per_gpu, c->model.top_k, gpus,
                             run);
    if (c->schedule.kind != SCHED_NONE && !config_serving(c) && step > (double)CFG_ASSIGN_MAX)
        return cfg_fail_rule(ld, step_keys, 5, "schedule.micro_batch_tokens = %lld x "
                             "model.top_k = %d x parallel.dp = %d GPUs = %.0f token-expert "
                             "assignments in a micro-batch's layer, more than 2^33",
                             (long long)c->schedule.micro_batch_tokens, c->model.top_k,
                             c->parallel.dp, step);
    return 0;
}

/* ---- routing and balance ---- */

/* Over the EP groups of one stage (GPUs 0 .. dp-1): the most nodes a group spans, and the
 * fewest experts any max_nodes of a group's nodes hold together (routing.h: expert e's home
 * is GPU e * ep / E, so each GPU is home to at least per_gpu = floor(E / ep) experts). */
static void cfg_group_nodes(const struct config *c, int per_gpu, int *span_max,
                            long long *fewest)
{
    int ep = c->parallel.ep, gpn = c->cluster.gpus_per_node, m = c->routing.max_nodes;
    *span_max = 0;
    *fewest = LLONG_MAX;
    for (int g = 0; g < c->parallel.dp / ep; g++) {
        int lo = g * ep, hi = lo + ep - 1, span = hi / gpn - lo / gpn + 1;
        long long sum = 0;
        if (span > *span_max)
            *span_max = span;
        if (m < 1 || m > span)
            continue;
        /* Only the first and the last node can hold part of the group, so the m nodes
         * with the fewest of its GPUs are those two (when m allows) and then full nodes. */
        int first = (lo / gpn + 1) * gpn - lo, last = hi % gpn + 1, taken;
        if (span == 1) {
            sum = ep;
            taken = 1;
        } else {
            sum = first < last ? first : last;
            taken = 1;
            if (m > 1) {
                sum = first + last;
                taken = 2;
            }
        }
        sum += (long long)(m - taken) * gpn;
        if (sum * per_gpu < *fewest)
            *fewest = sum * per_gpu;
    }
}

/* Node-limited routing (routing.max_nodes): a token picks at most M nodes of its EP group,
 * so M must be no more than the nodes a group spans and any M of them must be home to
 * top_k experts. */
static int cfg_check_max_nodes(struct cfg_loader *ld)
{
    static const char *const span_keys[] = { "routing", "max_nodes", "parallel", "ep",
                                             "cluster", "gpus_per_node" };
    static const char *const fit_keys[] = { "routing", "max_nodes", "model", "top_k",
                                            "parallel", "ep" };
    static const char *const trace_keys[] = { "routing", "max_nodes", "routing",
                                              "distribution" };
    const struct config *c = cfg_conf(ld);
    int m = c->routing.max_nodes, span;
    long long fewest;
    if (!m)
        return 0;
    if (c->routing.distribution == DIST_TRACE)
        return cfg_fail_latest(ld, trace_keys, 2, "routing.max_nodes = %d needs each token's "
                               "choices; routing.distribution = trace replays counts only", m);
    cfg_group_nodes(c, c->model.experts / c->parallel.ep, &span, &fewest);
    if (m > span)
        return cfg_fail_latest(ld, span_keys, 3, "routing.max_nodes = %d is more than the %d "
                               "node%s an EP group of parallel.ep = %d GPUs spans "
                               "(cluster.gpus_per_node = %d)", m, span, span > 1 ? "s" : "",
                               c->parallel.ep, c->cluster.gpus_per_node);
    if (fewest < c->model.top_k)
        return cfg_fail_latest(ld, fit_keys, 3, "routing.max_nodes = %d: the %d nodes of an EP "
                               "group with the fewest experts hold %lld, fewer than model.top_k "
                               "= %d", m, m, fewest, c->model.top_k);
    return 0;
}

/* balance.expert_groups G (eplb only): DeepSeek EPLB asserts num_groups % num_nodes == 0
 * and num_logical_experts % num_groups == 0. nodes: those of an EP group. */
static int cfg_check_groups(struct cfg_loader *ld, int nodes)
{
    static const char *const kind_keys[] = { "balance", "expert_groups", "balance",
                                             "placement" };
    static const char *const node_keys[] = { "balance", "expert_groups", "parallel", "ep",
                                             "cluster", "gpus_per_node" };
    static const char *const div_keys[] = { "balance", "expert_groups", "model", "experts" };
    const struct config *c = cfg_conf(ld);
    int g = c->balance.expert_groups;
    char placed[96];
    int E = cfg_placed_experts(c, placed, sizeof(placed));
    if (!g)
        return 0;
    if (c->balance.placement != PLACE_EPLB)
        return cfg_fail_latest(ld, kind_keys, 2, "balance.expert_groups = %d needs "
                               "balance.placement = eplb, got %s", g,
                               config_place_name(c->balance.placement));
    if (g % nodes)
        return cfg_fail_latest(ld, node_keys, 3, "balance.expert_groups = %d is not a multiple "
                               "of the %d node%s of an EP group (parallel.ep / "
                               "cluster.gpus_per_node)", g, nodes, nodes > 1 ? "s" : "");
    if (E % g)
        return cfg_fail_latest(ld, div_keys, 2, "balance.expert_groups = %d does not divide "
                               "model.experts = %s", g, placed);
    return 0;
}

/* [routing] and [balance] keys that depend on others (pattern moe only): a trace for
 * distribution = trace; redundant experts only with an eplb placement; a placement other
 * than contiguous, or the hierarchical route, needs EP groups of whole nodes or inside
 * one node (placement.h, traffic.h), and
 * the hierarchical eplb gives each of the group's nodes an equal share of the experts and
 * of the redundant slots (DeepSeek EPLB, rebalance_experts_hierarchical). */
static int cfg_check_balance(struct cfg_loader *ld)
{
    static const char *const red_keys[] = { "balance", "redundant_experts", "balance",
                                            "placement" };
    static const char *const eplb_keys[] = { "balance", "placement", "parallel", "ep",
                                             "cluster", "gpus_per_node" };
    static const char *const share_keys[] = { "balance", "placement", "model", "experts",
                                              "balance", "redundant_experts", "parallel", "ep" };
    static const char *const trace_keys[] = { "routing", "trace", "routing", "distribution",
                                              "traffic", "pattern" };
    static const char *const hier_keys[] = { "cluster", "route", "parallel", "ep", "cluster",
                                             "gpus_per_node" };
    const struct config *c = cfg_conf(ld);
    const struct cfg_balance *b = &c->balance;
    int ep = c->parallel.ep, gpn = c->cluster.gpus_per_node;
    char placed[96];
    int E = cfg_placed_experts(c, placed, sizeof(placed));
    if (c->traffic.pattern != PATTERN_MOE)
        return 0;
    if (c->routing.distribution == DIST_TRACE && !c->routing.trace[0])
        return cfg_fail_need(ld, "routing", "trace", trace_keys, 3, "required when "
                             "routing.distribution = trace");
    if (b->redundant_experts && b->placement != PLACE_EPLB && b->placement != PLACE_EPLB_GLOBAL)
        return cfg_fail_latest(ld, red_keys, 2, "balance.redundant_experts = %d needs "
                               "balance.placement = eplb or eplb-global, got %s",
                               b->redundant_experts, config_place_name(b->placement));
    if (b->placement != PLACE_CONTIGUOUS && ep % gpn && gpn % ep)
        return cfg_fail_latest(ld, eplb_keys, 3, "balance.placement = %s needs parallel.ep = %d "
                               "to be a multiple or a divisor of cluster.gpus_per_node = %d",
                               config_place_name(b->placement), ep, gpn);
    int nodes = ep > gpn ? ep / gpn : 1;
    if (b->placement == PLACE_EPLB && (E % nodes || b->redundant_experts % nodes))
        return cfg_fail_latest(ld, share_keys, 4, "balance.placement = eplb shares model.experts "
                               "= %s and balance.redundant_experts = %d among the %d nodes of an "
                               "EP group (parallel.ep / cluster.gpus_per_node): both must be "
                               "multiples of %d", placed, b->redundant_experts, nodes, nodes);
    /* The two-level dispatch (traffic.h) relays a token through the GPU of its EP group
     * with the sender's local index on each node: groups of whole nodes, or in one. */
    if (c->cluster.route == ROUTE_HIER && ep % gpn && gpn % ep)
        return cfg_fail_latest(ld, hier_keys, 3, "cluster.route = hierarchical needs "
                               "parallel.ep = %d to be a multiple or a divisor of "
                               "cluster.gpus_per_node = %d (a token is relayed by the GPU of "
                               "its EP group with the sender's local index on each node)",
                               ep, gpn);
    int rc = cfg_check_groups(ld, nodes);
    return rc ? rc : cfg_check_max_nodes(ld);
}

/* ---- a training step ---- */

/* Fills in kv_heads (0: heads) and head_dim (0: hidden / heads, rounded down; a step
 * checks that heads divides hidden). */
static void cfg_fill_model(struct cfg_model *m)
{
    if (!m->kv_heads)
        m->kv_heads = m->heads;
    if (!m->head_dim)
        m->head_dim = m->hidden / m->heads;
}

/* Pieces the schedule cuts the model into (sched.h). */
static long long cfg_pieces(const struct config *c)
{
    long long pp = c->parallel.pp;
    switch (c->schedule.kind) {
    case SCHED_INTERLEAVED_1F1B: return pp * c->parallel.vpp;
    case SCHED_DUALPIPEV:        return 2 * pp;
    default:                     return pp;
    }
}

/* The attention keys of a step: GQA heads that tile hidden (when head_dim is not given)
 * and kv_heads | heads (groups of query heads share a KV head); MLA with its ranks. */
static int cfg_check_attention(struct cfg_loader *ld, bool head_dim_given)
{
    static const char *const mla_keys[] = { "kv_lora_rank", "qk_nope_head_dim", "v_head_dim" };
    static const char *const heads_keys[] = { "model", "heads", "model", "hidden", "model",
                                              "head_dim", "model", "attention" };
    static const char *const kv_keys[] = { "model", "kv_heads", "model", "heads", "model",
                                           "attention" };
    const struct cfg_model *m = &cfg_conf(ld)->model;
    if (m->attention == ATTN_GQA) {
        if (!head_dim_given && m->hidden % m->heads)
            return cfg_fail_rule(ld, heads_keys, 4, "model.heads = %d does not divide "
                                 "model.hidden = %d (model.head_dim = 0: hidden / heads)",
                                 m->heads, m->hidden);
        if (m->heads % m->kv_heads)
            return cfg_fail_rule(ld, kv_keys, 3, "model.kv_heads = %d does not divide "
                                 "model.heads = %d", m->kv_heads, m->heads);
        return 0;
    }
    const int dims[] = { m->kv_lora_rank, m->qk_nope_head_dim, m->v_head_dim };
    for (int i = 0; i < 3; i++) {
        const char *const need[] = { "model", mla_keys[i], "model", "attention", "schedule",
                                     "kind" };
        if (dims[i] < 1)
            return cfg_fail_need(ld, "model", mla_keys[i], need, 3, "required (> 0) for "
                                 "model.attention = mla in a training step");
    }
    return 0;
}

/* How a step cuts and runs the pipeline: a schedule over MoE traffic, no more pieces
 * than layers, a schedule the stages and micro-batches allow (sched_check), stages that
 * tile the nodes, and SMs left for compute. */
static int cfg_check_pipeline(struct cfg_loader *ld)
{
    static const char *const kind_pattern[] = { "schedule", "kind", "traffic", "pattern" };
    static const char *const pieces_keys[] = { "parallel", "pp", "parallel", "vpp",
                                               "model", "layers", "schedule", "kind" };
    static const char *const sched_keys[] = { "schedule", "kind", "parallel", "pp",
                                              "schedule", "microbatches" };
    static const char *const sms_keys[] = { "schedule", "comm_sms", "cluster", "sms" };
    static const char *const stage_keys[] = { "parallel", "pp", "cluster", "gpus_per_node",
                                              "parallel", "dp", "cluster", "nodes" };
    const struct config *c = cfg_conf(ld);
    const char *kind = config_sched_name(c->schedule.kind);
    if (c->traffic.pattern != PATTERN_MOE)
        return cfg_fail_latest(ld, kind_pattern, 2, "schedule.kind = %s needs traffic.pattern "
                               "= moe, got %s", kind, config_pattern_name(c->traffic.pattern));
    if (cfg_pieces(c) > c->model.layers)
        return cfg_fail_latest(ld, pieces_keys, 4, "schedule.kind = %s cuts the model into %lld "
                               "pieces (parallel.pp = %d, parallel.vpp = %d), more than "
                               "model.layers = %d", kind, cfg_pieces(c), c->parallel.pp,
                               c->parallel.vpp, c->model.layers);
    /* An inference step runs as a one-stage GPipe's forward (step.c). */
    const char *why = config_serving(c) ? NULL
                      : sched_check(c->schedule.kind, c->parallel.pp, c->schedule.microbatches,
                                    c->parallel.vpp);
    if (why)
        return cfg_fail_latest(ld, sched_keys, 3, "%s (schedule.kind = %s, parallel.pp = %d, "
                               "schedule.microbatches = %d)", why, kind, c->parallel.pp,
                               c->schedule.microbatches);
    /* The step times a stage's collectives on a copy of the cluster of dp GPUs: whole
     * nodes, or a share of one (step.c, stage_config). */
    int gpn = c->cluster.gpus_per_node, dp = c->parallel.dp;
    if (dp % gpn && gpn % dp)
        return cfg_fail_latest(ld, stage_keys, 4, "a pipeline stage of parallel.dp = %d GPUs "
                               "neither fills whole nodes of cluster.gpus_per_node = %d nor "
                               "divides one", dp, gpn);
    if (c->schedule.comm_sms >= c->cluster.sms)
        return cfg_fail_latest(ld, sms_keys, 2, "schedule.comm_sms = %d leaves no SM of "
                               "cluster.sms = %d for compute", c->schedule.comm_sms,
                               c->cluster.sms);
    return 0;
}

/* Checks of the keys only a training step reads (schedule.kind != none). A step of dense
 * layers only (first_dense_layers = layers, or moe_every > layers) is allowed: the
 * baseline without MoE traffic. Which layers are MoE: model_cfg_layer_is_moe (model.h). */
static int cfg_check_step(struct cfg_loader *ld, bool head_dim_given)
{
    static const char *const ffn_keys[] = { "model", "ffn_hidden", "model",
                                            "first_dense_layers", "model", "moe_every",
                                            "schedule", "kind" };
    static const char *const expert_ffn_keys[] = { "model", "expert_ffn_hidden", "model",
                                                   "first_dense_layers", "model", "layers",
                                                   "model", "moe_every", "schedule", "kind" };
    const struct config *c = cfg_conf(ld);
    const struct cfg_model *m = &c->model;
    int rc = cfg_check_pipeline(ld);
    if (rc)
        return rc;
    int moe = model_cfg_moe_layers(m), dense = m->layers - moe;
    if (dense && m->ffn_hidden < 1)
        return cfg_fail_need(ld, "model", "ffn_hidden", ffn_keys, 4, "required (> 0) for the "
                             "%d dense layers (model.first_dense_layers = %d, model.moe_every = "
                             "%d) of a training step", dense, m->first_dense_layers,
                             m->moe_every);
    if (moe && m->expert_ffn_hidden < 1)
        return cfg_fail_need(ld, "model", "expert_ffn_hidden", expert_ffn_keys, 5, "required "
                             "(> 0) for the MoE layers of a training step (schedule.kind = %s)",
                             config_sched_name(c->schedule.kind));
    return cfg_check_attention(ld, head_dim_given);
}

/* ---- an inference step ---- */

static bool cfg_is_set(const struct cfg_loader *ld, const char *sec, const char *key)
{
    return strcmp(cfg_where(ld, sec, key), "default") != 0;
}

/* The keys of an inference step (schedule.kind prefill | decode; serve.h): one stage;
 * the other phase's keys refused; sequences within model.seq_len; the tokens a layer
 * routes countable; what is not modelled yet refused. */
/* serve.attn_tp (serve.h): a TP group is attn_tp consecutive GPUs of one node and of one
 * EP group (a lane, step.h), and splits the heads evenly. */
static int cfg_check_attn_tp(struct cfg_loader *ld)
{
    static const char *const node_keys[] = { "serve", "attn_tp", "cluster", "gpus_per_node" };
    static const char *const ep_keys[] = { "serve", "attn_tp", "parallel", "ep" };
    static const char *const head_keys[] = { "serve", "attn_tp", "model", "heads" };
    const struct config *c = cfg_conf(ld);
    int n = c->serve.attn_tp;
    if (c->cluster.gpus_per_node % n)
        return cfg_fail_rule(ld, node_keys, 2, "serve.attn_tp = %d does not divide "
                             "cluster.gpus_per_node = %d (a TP group is GPUs of one node)", n,
                             c->cluster.gpus_per_node);
    if (c->parallel.ep % n)
        return cfg_fail_rule(ld, ep_keys, 2, "serve.attn_tp = %d does not divide parallel.ep "
                             "= %d (a TP group lies in one EP group)", n, c->parallel.ep);
    if (c->model.heads % n)
        return cfg_fail_rule(ld, head_keys, 2, "serve.attn_tp = %d does not divide "
                             "model.heads = %d", n, c->model.heads);
    return 0;
}

/* serve.shared_as_routed (serve.h): shared experts to route, every token kept (no
 * capacity), drawn routing (a trace has no column for them). */
static int cfg_check_shared_routed(struct cfg_loader *ld)
{
    static const char *const none_keys[] = { "serve", "shared_as_routed", "model",
                                             "shared_experts" };
    static const char *const cap_keys[] = { "serve", "shared_as_routed", "balance",
                                            "capacity_factor" };
    static const char *const trace_keys[] = { "serve", "shared_as_routed", "routing",
                                              "distribution" };
    const struct config *c = cfg_conf(ld);
    if (!c->serve.shared_as_routed)
        return 0;
    if (c->model.shared_experts < 1)
        return cfg_fail_rule(ld, none_keys, 2, "serve.shared_as_routed = on, but "
                             "model.shared_experts = 0: no shared expert to route");
    if (c->balance.capacity_factor > 0)
        return cfg_fail_rule(ld, cap_keys, 2, "serve.shared_as_routed = on routes dropless, "
                             "but balance.capacity_factor = %g", c->balance.capacity_factor);
    if (c->routing.distribution == DIST_TRACE)
        return cfg_fail_rule(ld, trace_keys, 2, "serve.shared_as_routed = on draws the "
                             "routing; a routing trace has no column for the shared experts");
    return 0;
}

static int cfg_check_serve(struct cfg_loader *ld)
{
    static const char *const prefill_only[] = { "prompt_len", "cached_fraction" };
    static const char *const decode_only[] = { "context_len", "mtp_tokens", "mtp_acceptance" };
    static const char *const pp_keys[] = { "parallel", "pp", "schedule", "kind" };
    static const char *const prompt_keys[] = { "serve", "prompt_len", "model", "seq_len" };
    static const char *const ctx_keys[] = { "serve", "context_len", "serve", "mtp_tokens",
                                            "model", "seq_len" };
    static const char *const vol_keys[] = { "serve", "batch", "serve", "prompt_len",
                                            "serve", "mtp_tokens", "model", "top_k",
                                            CFG_GPU_KEYS };
    const struct config *c = cfg_conf(ld);
    const struct cfg_serve *v = &c->serve;
    bool prefill = c->schedule.kind == SCHED_PREFILL;
    int rc;
    const char *kind = config_sched_name(c->schedule.kind);
    if (c->parallel.pp != 1)
        return cfg_fail_latest(ld, pp_keys, 2, "parallel.pp = %d: an inference step "
                               "(schedule.kind = %s) runs on one stage, pp = 1",
                               c->parallel.pp, kind);
    const char *const *other = prefill ? decode_only : prefill_only;
    for (int i = 0; i < (prefill ? 3 : 2); i++)
        if (cfg_is_set(ld, "serve", other[i]))
            return cfg_fail(ld, cfg_where(ld, "serve", other[i]), "serve", other[i],
                            "a %s key, but schedule.kind = %s", prefill ? "decode" : "prefill",
                            kind);
    if (prefill && v->prompt_len > c->model.seq_len)
        return cfg_fail_rule(ld, prompt_keys, 2, "serve.prompt_len = %lld is more than "
                             "model.seq_len = %d", (long long)v->prompt_len, c->model.seq_len);
    if (!prefill && v->context_len + 1 + v->mtp_tokens > c->model.seq_len)
        return cfg_fail_rule(ld, ctx_keys, 3, "serve.context_len = %lld + 1 + serve.mtp_tokens "
                             "= %d tokens is more than model.seq_len = %d",
                             (long long)v->context_len, v->mtp_tokens, c->model.seq_len);
    double T = (double)serve_tokens_per_gpu(c);
    int k = c->model.top_k + config_shared_routed(c);
    if (T > 1e9 || T * k * c->parallel.dp > (double)CFG_ASSIGN_MAX)
        return cfg_fail_latest(ld, vol_keys, 6, "%.0f tokens per GPU (serve.batch x tokens per "
                               "sequence) x model.top_k = %d x %d GPUs: more than 10^9 tokens "
                               "or 2^33 token-expert assignments in a layer", T, k,
                               c->parallel.dp);
    if (v->gemm_dtype != DTYPE_BF16 && v->gemm_dtype != DTYPE_FP8)
        return cfg_fail(ld, cfg_where(ld, "serve", "gemm_dtype"), "serve", "gemm_dtype",
                        "%s: bf16 or fp8", config_dtype_name(v->gemm_dtype));
    if (v->microbatches > T)
        return cfg_fail(ld, cfg_where(ld, "serve", "microbatches"), "serve", "microbatches",
                        "%d micro-batches of %.0f token%s per GPU (serve.batch x tokens per "
                        "sequence): one would be empty", v->microbatches, T, T == 1 ? "" : "s");
    if ((rc = cfg_check_shared_routed(ld)))
        return rc;
    if ((rc = cfg_check_attn_tp(ld)))
        return rc;
    if (v->a2a != A2A_LOW_LATENCY && cfg_is_set(ld, "serve", "ll_message_us"))
        return cfg_fail(ld, cfg_where(ld, "serve", "ll_message_us"), "serve", "ll_message_us",
                        "a low_latency key, but serve.a2a = %s", config_a2a_name(v->a2a));
    return 0;
}

/* ---- all of them ---- */

/* In order, the first broken rule failing: the cluster and the layout it derives (dp,
 * ep), the traffic's size, routing and balance, then a training step's keys. */
int cfg_check(struct cfg_loader *ld)
{
    static const char *const dense_keys[] = { "model", "first_dense_layers", "model", "layers" };
    static const char *const top_k_keys[] = { "model", "top_k", "model", "experts" };
    static const char *const matrix_keys[] = { "traffic", "matrix", "traffic", "pattern" };
    struct config *c = cfg_conf(ld);
    bool head_dim_given = c->model.head_dim != 0;
    int rc = cfg_check_gpus(ld);
    if (rc)
        return rc;
    if (c->model.first_dense_layers > c->model.layers)
        return cfg_fail_rule(ld, dense_keys, 2, "model.first_dense_layers = %d is more than "
                             "model.layers = %d", c->model.first_dense_layers, c->model.layers);
    if (c->model.top_k > c->model.experts)
        return cfg_fail_rule(ld, top_k_keys, 2, "model.top_k = %d is more than model.experts = "
                             "%d", c->model.top_k, c->model.experts);
    rc = cfg_check_parallel(ld);
    if (rc)
        return rc;
    rc = cfg_check_ep(ld);
    if (!rc)
        rc = cfg_check_volume(ld);
    if (rc)
        return rc;
    if (c->traffic.pattern == PATTERN_MATRIX && !c->traffic.matrix[0])
        return cfg_fail_need(ld, "traffic", "matrix", matrix_keys, 2, "required when "
                             "traffic.pattern = matrix");
    rc = cfg_check_balance(ld);
    if (rc)
        return rc;
    cfg_fill_model(&c->model);
    if (c->schedule.kind == SCHED_NONE)
        return 0;
    rc = cfg_check_step(ld, head_dim_given);
    if (rc)
        return rc;
    if (config_serving(c))
        return cfg_check_serve(ld);
    if (c->serve.attn_tp > 1)
        return cfg_fail(ld, cfg_where(ld, "serve", "attn_tp"), "serve", "attn_tp", "%d: "
                        "an inference key, but schedule.kind = %s (a training step has no "
                        "tensor parallelism)", c->serve.attn_tp,
                        config_sched_name(c->schedule.kind));
    if (c->serve.shared_as_routed)
        return cfg_fail(ld, cfg_where(ld, "serve", "shared_as_routed"), "serve",
                        "shared_as_routed", "on: an inference key, but schedule.kind = %s (a "
                        "training step runs the shared experts on every GPU)",
                        config_sched_name(c->schedule.kind));
    return 0;
}

void cfg_derive(struct cfg_loader *ld)
{
    struct config *c = cfg_conf(ld);
    struct cfg_parallel *p = &c->parallel;
    long long gpus = (long long)c->cluster.nodes * c->cluster.gpus_per_node;
    if (!p->dp && gpus <= CFG_GPUS_MAX && gpus % p->pp == 0)
        p->dp = (int)(gpus / p->pp);
    if (!p->ep)
        p->ep = p->dp;
    cfg_fill_model(&c->model);
}
