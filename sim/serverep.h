/* serverep.h: what an inference step (schedule.kind prefill | decode; serve.h) prints
 * for people and writes for machines. steprep.h's summary, CSV and per-GPU CSV hand an
 * inference step's result to these, so `moesim run` needs no mode of its own.
 * Units: seconds, GiB (2^30 bytes), tokens/s. All borrow r; 0 or -EIO. */
#ifndef MOESIM_SERVEREP_H
#define MOESIM_SERVEREP_H

#include <stdio.h>

#include "steprep.h"

void serverep_summary(FILE *f, const struct steprep *r);
/* Header + one row (serve.h's serve_figures; means over GPUs):
 * phase,gpus,ep,batch,prompt_len,cached_fraction,context_len,mtp_tokens,gemm_dtype,
 * kv_dtype,tokens_per_gpu,seed,step_s,ttft_s,tpot_s,tokens_per_s_gpu,tokens_per_s_node,
 * compute_s,comm_s,exposed_comm_s,skew_wait_s,kv_cache_GiB,weights_GiB,gpu_mem_GiB,fits,
 * expert_imbalance,gpu_imbalance,wall_s, then the identifying columns (csv.h), then
 * a2a,microbatches,microbatch_tokens,hidden_comm_s (added since: new columns go last).
 * ttft_s is empty for decode, tpot_s for prefill; prompt_len and cached_fraction are
 * empty for decode, context_len and mtp_tokens for prefill. hidden_comm_s = comm_s -
 * exposed_comm_s: communication that ran while the GPU computed. microbatch_tokens:
 * serve_microbatch_tokens (serve.h). */
int serverep_csv(FILE *f, const struct steprep *r);
/* One row per GPU: gpu,node,ep_group,compute_s,skew_wait_s,comm_s,exposed_comm_s,idle_s
 * (compute + skew_wait + exposed_comm + idle = step_s). */
int serverep_gpu_csv(FILE *f, const struct steprep *r);

#endif
