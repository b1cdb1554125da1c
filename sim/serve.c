/* serve.c: an inference step's shape, attention times and figures; see serve.h. */
#include "serve.h"

#include <math.h>

int64_t serve_cached_tokens(const struct config *c)
{
    if (c->schedule.kind != SCHED_PREFILL)
        return 0;
    return (int64_t)floor(c->serve.cached_fraction * (double)c->serve.prompt_len);
}

int64_t serve_new_tokens(const struct config *c)
{
    if (c->schedule.kind == SCHED_PREFILL)
        return c->serve.prompt_len - serve_cached_tokens(c);
    return 1 + (int64_t)c->serve.mtp_tokens;
}

int64_t serve_tokens_per_gpu(const struct config *c)
{
    return c->serve.batch * serve_new_tokens(c);
}

int serve_attn_tp(const struct config *c)
{
    return config_serving(c) && c->serve.attn_tp > 1 ? c->serve.attn_tp : 1;
}

/* Elements of one token's KV cache in one layer on one GPU of a TP group of n: MLA's
 * latent whole (every head reads it), GQA's KV heads split, ceil(kv_heads / n) a GPU. */
static double kv_width(const struct cfg_model *m, int n)
{
    if (m->attention == ATTN_MLA)
        return (double)m->kv_lora_rank + m->qk_rope_head_dim;
    return 2.0 * ((m->kv_heads + n - 1) / n) * m->head_dim;
}

double serve_kv_bytes_per_token_layer(const struct config *c)
{
    double w = kv_width(&c->model, serve_attn_tp(c));
    return w * config_dtype_bytes(c->serve.kv_dtype, (int)w, c->model.fp8_block);
}

/* Sequences whose KV cache one GPU holds: its TP group's, attn_tp x batch. */
static double kv_sequences(const struct config *c)
{
    return (double)serve_attn_tp(c) * (double)c->serve.batch;
}

double serve_kv_bytes_per_gpu(const struct config *c)
{
    double s = (double)(c->schedule.kind == SCHED_PREFILL ? c->serve.prompt_len
                                                           : c->serve.context_len);
    return kv_sequences(c) * s * c->model.layers * serve_kv_bytes_per_token_layer(c);
}

double serve_attn_core_flops(const struct config *c)
{
    const struct cfg_model *m = &c->model;
    double b = (double)c->serve.batch, a = m->heads, dqk, dv, pairs;
    if (c->schedule.kind == SCHED_PREFILL) {
        double n = (double)serve_new_tokens(c), C = (double)serve_cached_tokens(c);
        pairs = n * C + n * n / 2;
        dqk = m->attention == ATTN_MLA ? m->qk_nope_head_dim + m->qk_rope_head_dim : m->head_dim;
        dv = m->attention == ATTN_MLA ? m->v_head_dim : m->head_dim;
    } else {
        pairs = (double)serve_new_tokens(c) * (double)c->serve.context_len;
        dqk = m->attention == ATTN_MLA ? m->kv_lora_rank + m->qk_rope_head_dim : m->head_dim;
        dv = m->attention == ATTN_MLA ? m->kv_lora_rank : m->head_dim;
    }
    return 2 * b * pairs * a * (dqk + dv);
}

double serve_attn_kv_read_bytes(const struct config *c)
{
    double keys = (double)(c->schedule.kind == SCHED_PREFILL ? serve_cached_tokens(c)
                                                              : c->serve.context_len);
    return kv_sequences(c) * keys * serve_kv_bytes_per_token_layer(c);
}

double serve_attn_core_s(const struct compute *cm, const struct config *c)
{
    return fmax(compute_core_s(cm, serve_attn_core_flops(c)),
                compute_mem_s(cm, serve_attn_kv_read_bytes(c)));
}

int64_t serve_microbatch_tokens(const struct config *c)
{
    int64_t T = serve_tokens_per_gpu(c), M = c->serve.microbatches;
    return (T + M - 1) / M;
}

void serve_attn_parts(const struct compute *cm, const struct model *m, const struct config *c,
                      double *proj_s, double *core_s)
{
    const struct model_opdesc *d = &m->op[MODEL_ATTN];
    double Tm = (double)serve_microbatch_tokens(c), n = serve_attn_tp(c), s = 0;
    for (int i = 0; i < d->ngemm; i++)
        s += compute_gemm_s(cm, n * Tm, d->gemm[i].k, d->gemm[i].n / n);
    *proj_s = s + compute_mem_s(cm, Tm * d->mem_bytes_per_token);
    double share = c->serve.microbatches == 1 ? 1 : Tm / (double)serve_tokens_per_gpu(c);
    *core_s = serve_attn_core_s(cm, c) * share;
}

struct compute_t serve_attn(const struct compute *cm, const struct model *m,
                            const struct config *c)
{
    double proj_s, core_s;
    serve_attn_parts(cm, m, c, &proj_s, &core_s);
    return (struct compute_t){ proj_s + core_s, 0, 0 };
}

double serve_sp_chunk_bytes(const struct config *c)
{
    if (serve_attn_tp(c) < 2)
        return 0;
    return (double)serve_microbatch_tokens(c) * c->model.hidden * SERVE_SP_BYTES;
}

void serve_figures(struct serve_figures *f, const struct config *c, const struct step_result *r)
{
    double T = r->step_s, b = (double)c->serve.batch;
    *f = (struct serve_figures){ .step_s = T };
    if (c->schedule.kind == SCHED_PREFILL) {
        f->ttft_s = T;
        f->tokens_per_s_gpu = T > 0 ? b * (double)serve_new_tokens(c) / T : 0;
    } else {
        f->tokens_per_seq = 1 + c->serve.mtp_tokens * c->serve.mtp_acceptance;
        f->tpot_s = T / f->tokens_per_seq;
        f->tokens_per_s_gpu = T > 0 ? b * f->tokens_per_seq / T : 0;
    }
    f->tokens_per_s_node = f->tokens_per_s_gpu * c->cluster.gpus_per_node;
    f->kv_bytes_gpu = serve_kv_bytes_per_gpu(c);
    double wb = c->serve.gemm_dtype == DTYPE_FP8 ? 1 : 2;
    f->weight_bytes_gpu = r->param_bytes / 2 * wb;    /* step.h counts 2 B a weight */
    f->fits = f->weight_bytes_gpu + f->kv_bytes_gpu <= c->cluster.gpu_mem_bytes;
    int moe = 0;
    for (int l = 0; l < r->layers; l++)
        if (r->layer[l].moe) {
            moe++;
            f->expert_imbalance += r->layer[l].expert_load_max_over_mean;
            f->gpu_imbalance += r->layer[l].gpu_load_max_over_mean;
        }
    if (moe) {
        f->expert_imbalance /= moe;
        f->gpu_imbalance /= moe;
    }
    for (int g = 0; g < r->gpus; g++)
        f->skew_wait_s += r->gpu[g].straggler_s / r->gpus;
}
