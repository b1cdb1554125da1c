/* compute.h: how long an op takes on one GPU.
 *
 * A weight GEMM of m x k by k x n in BF16 takes
 *     max(2 m n k / (peak * eff(m)), (m k + k n + m n) * 2 B / (hbm * hbm_eff))
 * with eff(m) = gemm_eff * m / (m + gemm_half_rows): a GEMM with few rows (a routed
 * expert that received few tokens) runs far below peak, a large one at peak * gemm_eff.
 * Elementwise traffic runs at hbm * hbm_eff. Backward: the input gradient repeats each
 * GEMM's FLOPs (dX = dY W^T), the weight gradient too (dW = X^T dY); the attention core's
 * backward costs twice its forward and has no weight gradient; elementwise ops cost twice
 * their forward traffic in the backward (input gradient).
 * Calibration: when [calibration] expert_table is given, one routed expert's times are
 * read from it (linear interpolation between rows, exact at them; proportional to
 * tokens beyond the last row and below the first), replacing the curve for MODEL_EXPERT.
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
 * bad table (rows must have increasing tokens > 0 and times >= 0); -ENOMEM. c borrowed. */
int compute_create(struct compute **out, const struct config *c, struct cfg_err *err);
void compute_free(struct compute *cm);               /* NULL is a no-op */

double compute_gemm_s(const struct compute *cm, double m, double k, double n);
double compute_mem_s(const struct compute *cm, double bytes);

/* Times of op for `tokens` tokens (MODEL_EXPERT: one expert receiving `tokens`; 0 tokens
 * take 0 s). */
struct compute_t compute_op(const struct compute *cm, const struct model *m, enum model_op op,
                            double tokens);

/* Fraction of full speed compute keeps while communication kernels run: (sms - comm_sms) / sms. */
double compute_share(const struct compute *cm);

double compute_peak_flops(const struct compute *cm); /* gpu_tflops_bf16, FLOP/s */

#endif
