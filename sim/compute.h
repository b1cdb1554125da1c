/* compute.h: how long an op takes on one GPU.
 *
 * A weight GEMM of m x k by k x n in BF16 takes
 *     max(2 m n k / (peak * eff(m)), (m k + k n + m n) * 2 B / (hbm * hbm_eff))
 * with eff(m) = gemm_eff * m / (m + gemm_half_rows): a GEMM with few rows (a routed
 * expert that received few tokens) runs far below peak, a large one at peak * gemm_eff;
 * m <= 0 rows take 0 s. The attention core's FLOPs run at peak * gemm_eff whatever the
 * token count (seq_len sets its size, not the rows). Elementwise traffic runs at
 * hbm * hbm_eff. An op's forward is the sum of its GEMMs, core and traffic. Backward:
 * the input gradient repeats each GEMM's time (dX = dY W^T), the weight gradient too
 * (dW = X^T dY); the attention core's backward costs twice its forward and has no
 * weight gradient; elementwise ops cost twice their forward traffic in the backward
 * (input gradient). 0 tokens (or fewer) take 0 s in every op.
 * Calibration: when [calibration] expert_table is given, one routed expert's times are
 * read from it (linear interpolation between rows, exact at them; proportional to
 * tokens beyond the last row and below the first: t(n) = t(row) * n / row.tokens),
 * replacing the curve for MODEL_EXPERT. The table is CSV: '#' comment lines and blank
 * lines anywhere, the header `tokens,fwd_us` or `tokens,fwd_us,bwd_us`, then rows of
 * whole tokens (strictly increasing, 1..2^53) and times in us (0 to 1e9). bwd_us is
 * the input and weight gradient together, split half to b_s, half to w_s; without it
 * the backward is 2 x fwd_us (b_s = w_s = f_s), as the two backward GEMMs of each
 * forward one repeat its FLOPs.
 * FP8 GEMMs (an inference step with serve.gemm_dtype = fp8): the weight GEMMs run at
 * gpu_tflops_fp8 and move 1 B an operand element; the attention core stays at the BF16
 * peak.
 * Communication kernels take comm_sms of the sms; compute that runs while they do runs
 * at (sms - comm_sms) / sms of its speed (compute_share).
 */
#ifndef MOESIM_COMPUTE_H
#define MOESIM_COMPUTE_H

#include "config.h"
#include "model.h"

struct compute;                                      /* opaque */

struct compute_t {
    double f_s;                                      /* forward */
    double b_s;                                      /* input gradient */
    double w_s;                                      /* weight gradient */
};

/* Reads the calibration table if any. 0; -EINVAL with err->msg "file:line: what" for a
 * bad table (rows must have increasing tokens > 0 and times from 0 to 1e9 us; "file:
 * what" when it cannot be opened or is not a regular file), or "section.key: what" for a cluster
 * figure the formulas cannot use (peak or hbm not > 0, an efficiency outside (0, 1],
 * gemm_half_rows < 0, sms < 1, comm_sms outside 0..sms-1); -EIO on a read error;
 * -ENOMEM. c borrowed; *out is NULL on failure. */
int compute_create(struct compute **out, const struct config *c, struct cfg_err *err);
void compute_free(struct compute *cm);               /* NULL is a no-op */

double compute_gemm_eff(const struct compute *cm, double m);  /* eff(m); 0 for m <= 0 */
double compute_gemm_s(const struct compute *cm, double m, double k, double n);
double compute_mem_s(const struct compute *cm, double bytes);
/* FLOPs outside weight GEMMs (the attention core): flops / (peak * gemm_eff), the BF16
 * peak whatever the GEMMs' format. */
double compute_core_s(const struct compute *cm, double flops);

/* Times of op for `tokens` tokens (MODEL_EXPERT: one expert receiving `tokens`; 0 tokens
 * take 0 s). */
struct compute_t compute_op(const struct compute *cm, const struct model *m, enum model_op op,
                            double tokens);

/* Routed-expert times of every GPU of the routing r: one GEMM chain per physical slot
 * (slot x of EP group g is on GPU g * ep + x / (nslots / ep)), summed per GPU into
 * per_gpu[r->gpus] (overwritten). */
struct routing;
void compute_routed_experts(const struct compute *cm, const struct model *m,
                            const struct routing *r, struct compute_t *per_gpu);

/* Fraction of full speed compute keeps while communication kernels run: (sms - comm_sms) / sms. */
double compute_share(const struct compute *cm);

double compute_peak_flops(const struct compute *cm); /* gpu_tflops_bf16, FLOP/s */

#endif
