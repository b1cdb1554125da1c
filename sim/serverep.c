/* serverep.c: summary and CSVs of an inference step; see serverep.h. */
#include "serverep.h"

#include <errno.h>
#include <math.h>

#include "csv.h"
#include "report.h"
#include "serve.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static double wall(const struct steprep *r)
{
    return r->wall_s < 0 ? 0 : r->wall_s;
}

/* Communication that ran while the compute stream was busy: mean over GPUs. */
static double hidden_comm_s(const struct step_result *s)
{
    return fmax(0, s->comm_s - s->exposed_comm_s);
}

static void summary_shape(FILE *f, const struct config *c)
{
    if (c->schedule.kind == SCHED_PREFILL)
        fprintf(f, "prefill of %lld sequences of %lld tokens per GPU (%lld cached, %lld new "
                "each)", (long long)c->serve.batch, (long long)c->serve.prompt_len,
                (long long)serve_cached_tokens(c), (long long)serve_new_tokens(c));
    else
        fprintf(f, "decode of %lld sequences per GPU at %lld tokens of context, %d MTP "
                "token%s", (long long)c->serve.batch, (long long)c->serve.context_len,
                c->serve.mtp_tokens, c->serve.mtp_tokens == 1 ? "" : "s");
}

/* What the all-to-alls cost and what the micro-batches hid of them (serve.h). */
static void summary_overlap(FILE *f, const struct config *c, const struct step_result *s)
{
    int M = c->serve.microbatches;
    double hidden = hidden_comm_s(s);
    const char *how = M == 1 ? ""
                      : !c->schedule.overlap ? " (one after the other: schedule.overlap off)"
                      : c->schedule.kind == SCHED_DECODE ? " (attention in two stages)"
                      : " (one's compute beside the other's all-to-alls)";
    fprintf(f, "  overlap          %d micro-batch%s of %lld tokens per GPU%s; all-to-all %s: "
            "hidden under compute %.6f s (%.0f %% of comm), exposed %.6f s\n", M,
            M == 1 ? "" : "es", (long long)serve_microbatch_tokens(c), how,
            config_a2a_name(c->serve.a2a), hidden,
            s->comm_s > 0 ? 100 * hidden / s->comm_s : 0, s->exposed_comm_s);
}

void serverep_summary(FILE *f, const struct steprep *r)
{
    const struct config *c = r->cfg;
    const struct step_result *s = r->res;
    struct serve_figures x;
    serve_figures(&x, c, s);
    char attn[64] = "data-parallel";
    if (serve_attn_tp(c) > 1)
        snprintf(attn, sizeof(attn), "TP %d + SP, DP %d", serve_attn_tp(c),
                 s->gpus / serve_attn_tp(c));
    fprintf(f, "moesim: inference step: %s on %s (%d GPUs: attention %s, ep %d), ",
            c->model.name[0] ? c->model.name : "model",
            c->cluster.name[0] ? c->cluster.name : "cluster", s->gpus, attn, s->ep);
    summary_shape(f, c);
    fprintf(f, ", GEMMs %s, KV cache %s, seed %llu\n", config_dtype_name(c->serve.gemm_dtype),
            config_dtype_name(c->serve.kv_dtype), (unsigned long long)r->seed);
    fprintf(f, "  links            ");
    report_link_rates(f, &c->cluster);
    fprintf(f, " (line rate x efficiency = achieved, per GPU per direction)\n");
    fprintf(f, "  step time        %10.6f s\n", s->step_s);
    if (c->schedule.kind == SCHED_PREFILL)
        fprintf(f, "  TTFT             %10.6f s per sequence (its prefill step; no queueing)\n"
                "  throughput       %.0f prompt tokens/s per GPU, %.0f per node\n", x.ttft_s,
                x.tokens_per_s_gpu, x.tokens_per_s_node);
    else
        fprintf(f, "  time per output token %.6f s (%.3g token%s per sequence per step)\n"
                "  throughput       %.0f output tokens/s per GPU, %.0f per node\n", x.tpot_s,
                x.tokens_per_seq, x.tokens_per_seq == 1 ? "" : "s", x.tokens_per_s_gpu,
                x.tokens_per_s_node);
    fprintf(f, "  per GPU (mean)   compute %.6f s, comm %.6f s, exposed comm %.6f s, waiting "
            "for slower GPUs %.6f s\n", s->compute_s, s->comm_s, s->exposed_comm_s,
            x.skew_wait_s);
    summary_overlap(f, c, s);
    double mem = x.weight_bytes_gpu + x.kv_bytes_gpu, cap = c->cluster.gpu_mem_bytes;
    fprintf(f, "  memory per GPU   KV cache %.2f GiB, weights %.2f GiB (largest GPU); together "
            "%.2f GiB of %.4g GiB%s\n", x.kv_bytes_gpu / GIB, x.weight_bytes_gpu / GIB,
            mem / GIB, cap / GIB, x.fits ? " (activations not counted)"
                                         : ": DOES NOT FIT");
    fprintf(f, "  expert load      busiest expert %.3f x the mean, busiest GPU %.3f x the "
            "mean (means over MoE layers)\n", x.expert_imbalance, x.gpu_imbalance);
    fprintf(f, "  engine: %lld sub-ops, %lld events; all-to-alls simulated %d, reused %d; "
            "%.2f s wall\n", (long long)s->subops, (long long)s->events, s->a2a_simulated,
            s->a2a_reused, wall(r));
}

static const char csv_cols[] =
    "phase,gpus,ep,batch,prompt_len,cached_fraction,context_len,mtp_tokens,gemm_dtype,"
    "kv_dtype,tokens_per_gpu,seed,step_s,ttft_s,tpot_s,tokens_per_s_gpu,tokens_per_s_node,"
    "compute_s,comm_s,exposed_comm_s,skew_wait_s,kv_cache_GiB,weights_GiB,gpu_mem_GiB,fits,"
    "expert_imbalance,gpu_imbalance,wall_s";
/* Added since, after the identifying columns (csv.h): never reordered. */
static const char csv_then[] = "a2a,microbatches,microbatch_tokens,hidden_comm_s,attn_tp,"
                                "shared_as_routed";

int serverep_csv(FILE *f, const struct steprep *r)
{
    const struct config *c = r->cfg;
    const struct step_result *s = r->res;
    bool prefill = c->schedule.kind == SCHED_PREFILL;
    struct serve_figures x;
    struct csv w;
    serve_figures(&x, c, s);
    csv_header_then(f, csv_cols, csv_then);
    csv_begin(&w, f);
    csv_str(&w, config_sched_name(c->schedule.kind));
    csv_int(&w, s->gpus);
    csv_int(&w, s->ep);
    csv_int(&w, c->serve.batch);
    csv_num(&w, prefill ? (double)c->serve.prompt_len : NAN);
    csv_num(&w, prefill ? c->serve.cached_fraction : NAN);
    csv_num(&w, prefill ? NAN : (double)c->serve.context_len);
    csv_num(&w, prefill ? NAN : c->serve.mtp_tokens);
    csv_str(&w, config_dtype_name(c->serve.gemm_dtype));
    csv_str(&w, config_dtype_name(c->serve.kv_dtype));
    csv_int(&w, serve_tokens_per_gpu(c));
    csv_u64(&w, r->seed);
    const double nums[] = { x.step_s, prefill ? x.ttft_s : NAN, prefill ? NAN : x.tpot_s,
                            x.tokens_per_s_gpu, x.tokens_per_s_node, s->compute_s, s->comm_s,
                            s->exposed_comm_s, x.skew_wait_s, x.kv_bytes_gpu / GIB,
                            x.weight_bytes_gpu / GIB, c->cluster.gpu_mem_bytes / GIB };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        csv_num(&w, nums[i]);
    csv_int(&w, x.fits);
    csv_num(&w, x.expert_imbalance);
    csv_num(&w, x.gpu_imbalance);
    csv_num(&w, wall(r));
    csv_ident(&w, csv_cols, c);
    csv_str(&w, config_a2a_name(c->serve.a2a));
    csv_int(&w, c->serve.microbatches);
    csv_int(&w, serve_microbatch_tokens(c));
    csv_num(&w, hidden_comm_s(s));
    csv_int(&w, serve_attn_tp(c));
    csv_int(&w, config_shared_routed(c));
    return csv_end(&w);
}

static const char gpu_cols[] = "gpu,node,ep_group,compute_s,skew_wait_s,comm_s,exposed_comm_s,"
                               "idle_s";

int serverep_gpu_csv(FILE *f, const struct steprep *r)
{
    const struct step_result *s = r->res;
    struct csv w;
    csv_header(f, gpu_cols);
    csv_begin(&w, f);
    for (int g = 0; g < s->gpus; g++) {
        const struct step_gpu *x = &s->gpu[g];
        csv_int(&w, g);
        csv_int(&w, g / r->cfg->cluster.gpus_per_node);
        csv_int(&w, g / s->ep);
        const double nums[] = { x->compute_s, x->straggler_s, x->comm_s, x->exposed_comm_s,
                                x->bubble_s };
        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
            csv_num(&w, nums[i]);
        csv_ident(&w, gpu_cols, r->cfg);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}
