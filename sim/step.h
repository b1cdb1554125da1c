/* step.h: one whole training step, simulated: the execution engine.
 *
 * Layout (config.h): GPUs = pp * dp; stage r holds GPUs [r dp, (r+1) dp), split into
 * dp/ep EP groups of ep consecutive GPUs. A lane is one EP group of one stage: its GPUs
 * meet at every all-to-all, so they move together; a lane op takes the time of its
 * slowest GPU (routed experts differ per GPU: imbalance shows up as stragglers).
 * Each lane has a compute stream and a communication stream, both in order (CUDA
 * stream semantics); pipeline sends and receives go on their own channel.
 *
 * Ops. The schedule (sched.h) orders F, B, W of (micro-batch, piece) per pipeline rank;
 * each becomes sub-ops from the model (model.h) timed by the compute model (compute.h):
 *   F: [embed] per layer: attn, then dense ffn, or gate -> dispatch a2a -> experts ->
 *      combine a2a with the shared experts beside the dispatch; [head]; send to the
 *      next piece. An inference step with attention TP (serve.h) wraps each attn in
 *      its SP all-gather and reduce-scatter, communication sub-ops.
 *   B: mirror: [head], per layer in reverse: combine-grad a2a -> experts B (+ W when the
 *      schedule does not split W) -> dispatch-grad a2a -> gate, shared, attn B; send back.
 *   W: all weight gradients of the piece as one compute op (dualpipe, dualpipev); zb1p:
 *      as chunks (head; per layer from the top: shared experts, routed experts, the
 *      rest), each after the sub-op of its own B that makes its input. zb1p's chunks
 *      also fill: while the head of the lane's compute queue waits and its
 *      communication stream runs, the oldest chunk whose inputs are done runs, and
 *      yields (the rest of it waits) as soon as that head can start.
 * Overlapped F&B pairs (dualpipe, dualpipev) interleave the two ops' sub-ops, segment by
 * segment, so one's all-to-all runs under the other's compute. With overlap off every
 * communication sub-op runs on the compute stream (nothing hides) and pairs run F then B.
 * While a communication kernel runs (a2a, DP reduce), compute runs at
 * compute_share() of its speed (comm_sms of the SMs are taken).
 *
 * All-to-alls: the routing of each MoE layer is drawn once per step (routing.h at the
 * layer, iteration 0, or replayed from a trace's MoE layer, with the configured gating,
 * capacity and placement; an eplb placement from the layer's own loads) for one stage's
 * dp GPUs; routed experts cost
 * one GEMM chain per physical slot (replica); its dispatch and combine matrices
 * (traffic.h) are run through the flow-level network (a2a.h) on a stage-sized copy of
 * the cluster, all EP groups of the stage at once, and the result is memoised by the
 * matrix's content: every micro-batch, every stage holding the layer and the backward
 * (whose gradients travel the same matrices when the bytes per element agree) reuse it.
 * Stages meet on the fabric (fabric.h): where a leaf's links are below its NICs
 * (oversubscription > 1), each lane's all-to-alls and DP reduce are also jobs on the
 * whole cluster's network; one that crosses such a link while another lane's job in
 * flight crosses it too runs with it in one network simulation, one that crosses one
 * alone takes its memoised standalone time at its own place in the cluster, and the rest
 * keep the stage's figure. Pipeline sends: every GPU of the lane to its counterpart in the
 * other stage, run once per rank pair through the network on the whole cluster (never
 * coupled).
 * DP reduce: per piece, after its last backward op, ring (or tree) all-reduce of the
 * piece's gradients: dense weights over the stage's dp GPUs, routed experts over the
 * dp/ep GPUs holding the same experts; one ring step is run through the network.
 */
#ifndef MOESIM_STEP_H
#define MOESIM_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "rtrace.h"

struct limits_progress;

enum step_stream { STEP_COMPUTE, STEP_COMM, STEP_P2P };

/* What a sub-op is (names in step_what_name). */
enum step_what {
    STEP_EMBED, STEP_ATTN, STEP_FFN, STEP_GATE, STEP_SHARED, STEP_EXPERTS, STEP_EXPERTS_W,
    STEP_HEAD, STEP_DISPATCH, STEP_COMBINE, STEP_WGRAD, STEP_SEND, STEP_DP_REDUCE,
    STEP_ATTN_GATHER, STEP_ATTN_SCATTER,  /* attention TP's SP collectives (serve.h) */
    STEP_NWHAT
};

/* One sub-op as it ran (kept for the trace when asked). */
struct step_slice {
    double t0_s, t1_s;
    int lane;
    int mb;                   /* -1 for the DP reduce */
    int piece;
    int layer;                /* -1 when not one layer's */
    uint8_t stream;           /* enum step_stream */
    uint8_t what;             /* enum step_what */
    uint8_t kind;             /* enum sched_op_kind */
};

/* Per GPU; seconds over the step. compute + exposed_comm + bubble = step time. */
struct step_gpu {
    double compute_s;         /* its compute stream busy (without waiting for stragglers) */
    double straggler_s;       /* waiting for slower GPUs of its lane at expert ops */
    double comm_s;            /* its lane's a2a and DP-reduce kernels running */
    double exposed_comm_s;    /* communication running while compute is idle */
    double bubble_s;          /* neither: waiting on the pipeline */
    double peak_act_bytes;
    double param_bytes;       /* BF16 weights it holds */
};

struct step_stage {           /* per pipeline rank: means over its GPUs */
    double compute_s, comm_s, exposed_comm_s, bubble_s, bubble_frac;
    double peak_act_bytes, param_bytes;   /* max over its GPUs */
};

/* Per model layer (routing drawn once per step, one micro-batch's worth). */
struct step_layer {
    int moe;                  /* 0: dense layer (the rest is 0) */
    double drop_rate;         /* assignments dropped by expert capacity */
    double expert_load_max_over_mean, gpu_load_max_over_mean;
    double dispatch_s, combine_s;   /* forward all-to-alls, slowest EP group */
    double experts_fwd_s;     /* slowest GPU's routed-expert forward */
};

/* The bytes behind a step's communication sub-ops (utilrep.h's link rows): n matrices of
 * dp x dp bytes, a stage's GPUs numbered 0 .. dp-1 (row: the source GPU), each all that
 * one collective sends (a ring's steps summed). a2a[4 l + k] is MoE layer l's k-th
 * all-to-all (0 the dispatch, 1 the combine, 2 the combine's gradient, 3 the dispatch's
 * gradient), -1 for a dense layer; reduce[p] is piece p's DP reduce. A lane's sub-op
 * sends its own GPUs' rows, on the stage that runs it. Memory: what the collectives'
 * memo holds, one matrix per collective. */
struct step_comm {
    double **m;               /* n, owned */
    int n, cap;
    int *a2a;                 /* 4 x layers, owned */
    int *reduce;              /* pieces, owned */
    int sp;                   /* attention TP (serve.h): one SP all-gather or reduce-scatter
                               * of a layer (the two send alike), -1 without */
};

struct step_result {
    int gpus, pp, dp, ep, vpp, lanes, pieces, microbatches;
    double step_s;
    double tokens;            /* per step: microbatches * micro_batch_tokens * dp */
    double tokens_per_s;
    double mfu;               /* model FLOPs / (step_s * gpus * peak) */
    double model_flops;       /* per step */
    /* means over GPUs */
    double compute_s, comm_s, exposed_comm_s, bubble_s, bubble_frac;
    double peak_act_bytes, param_bytes;   /* max over GPUs */
    double dp_reduce_s;       /* longest single DP reduce op */
    double drop_rate;         /* assignments dropped by expert capacity, over all MoE layers */
    struct step_gpu *gpu;     /* gpus, owned */
    struct step_stage *stage; /* pp, owned */
    struct step_layer *layer; /* model.layers, owned */
    int layers;
    struct step_slice *slices;/* nslices, owned; only when asked */
    int64_t nslices;
    int64_t subops, events;
    int a2a_simulated, a2a_reused;
    /* Where leaves are oversubscribed (fabric.h): collectives that ran in the shared
     * network (they met another lane's on a leaf link), that crossed such a link alone
     * (memoised time), and the standalone simulations behind those; 0 elsewhere. */
    int fabric_shared, fabric_alone, fabric_simulated;
    /* With STEP_KEEP_ROUTING, the routing drawn as a routing trace (rtrace.h): layer i is
     * the model's i-th MoE layer (model_moe_index, model.h), one iteration, the
     * dp GPUs of one stage (every stage holding a layer routes it alike), each source
     * GPU's demand per expert, before capacity drops. Run again with it as routing.trace,
     * the step routes the same demand. Owned; zeroed without the flag. */
    struct rtrace routing;
    struct step_comm comm;    /* with STEP_KEEP_SLICES; zeroed without */
};

#define STEP_KEEP_SLICES 1u       /* step_run's keep: r->slices and r->comm */
#define STEP_KEEP_ROUTING 2u      /* step_run's keep: r->routing */

/* Runs the step of c (schedule.kind != SCHED_NONE). Borrows c. 0; -EINVAL with err->msg
 * set (a layout or calibration the step cannot use, a model without MoE layers whose
 * routing is to be kept: one line naming what); -ENOMEM. On error *r is zeroed. keep is
 * 0 or STEP_KEEP_* flags or'ed: with STEP_KEEP_SLICES r->slices holds every sub-op, with
 * STEP_KEEP_ROUTING r->routing the routing drawn. */
int step_run(struct step_result *r, const struct config *c, uint64_t seed, unsigned keep,
             struct cfg_err *err);
/* step_run telling p (limits.h; borrowed, may be NULL) its progress: the layers' tables
 * (routing and collectives, most of the time) as the first 90%, then the events. */
int step_run_with(struct step_result *r, const struct config *c, uint64_t seed,
                  unsigned keep, struct cfg_err *err, const struct limits_progress *p);
void step_free(struct step_result *r);    /* zeroed *r is a no-op */
void step_comm_free(struct step_comm *c); /* zeroed *c is a no-op */

const char *step_what_name(enum step_what w);

#endif
