/* ffn_cpu.h: one SwiGLU expert on a block of rows in fp32, forward and backward, its
 * GEMMs through CBLAS (OpenBLAS threads inside each GEMM):
 *   a = x W1, b = x W3, h = silu(a) * b, y = h W2        silu(a) = a / (1 + e^-a)
 * x [rows x H], W1 and W3 [H x F], W2 [F x H], a, b, h [rows x F], y [rows x H]; all
 * row-major and dense. Cost: forward 3 GEMMs (6 rows H F flops), backward 6
 * (12 rows H F). Same inputs, same bits (for a fixed OpenBLAS and thread count).
 * rows == 0 does nothing. Nothing here allocates or fails.
 */
#ifndef MOESIM_FFN_CPU_H
#define MOESIM_FFN_CPU_H

struct ffn_cpu_w {
    const float *w1, *w3, *w2;
};

/* y = beta y + FFN(x); saves a and b for the backward; h is scratch [rows x F]. */
void ffn_cpu_fwd(int rows, int hidden, int ffn, const struct ffn_cpu_w *w, const float *x,
                 float beta, float *y, float *a, float *b, float *h);

/* From the a, b that ffn_cpu_fwd saved for this x: dx = beta dx + dL/dx,
 * dw1 += x^T da, dw3 += x^T db, dw2 += h^T dy. s1, s2: scratch [rows x F]. */
void ffn_cpu_bwd(int rows, int hidden, int ffn, const struct ffn_cpu_w *w, const float *x,
                 const float *a, const float *b, const float *dy, float beta, float *dx,
                 float *dw1, float *dw3, float *dw2, float *s1, float *s2);

#endif
