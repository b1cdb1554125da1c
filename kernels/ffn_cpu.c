/* ffn_cpu.c: SwiGLU expert, forward and backward (formulas in ffn_cpu.h).
 * Backward, with sg = sigmoid(a):
 *   dW2 = h^T dy, dh = dy W2^T,
 *   da = dh b sg (1 + a (1 - sg))   (silu'(a) = sg + a sg (1 - sg)),  db = dh silu(a),
 *   dW1 = x^T da, dW3 = x^T db, dx = da W1^T + db W3^T.
 */
#include "ffn_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>

static float sigmoidf(float a)
{
    return 1.0f / (1.0f + expf(-a));
}

/* C = alpha op(A) op(B) + beta C, row-major, C [m x n], k the inner size. */
static void gemm(bool ta, bool tb, int m, int n, int k, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

static void swiglu(size_t n, const float *a, const float *b, float *h)
{
    for (size_t i = 0; i < n; i++)
        h[i] = a[i] * sigmoidf(a[i]) * b[i];
}

void ffn_cpu_fwd(int rows, int hidden, int ffn, const struct ffn_cpu_w *w, const float *x,
                 float beta, float *y, float *a, float *b, float *h)
{
    if (rows == 0)
        return;
    gemm(false, false, rows, ffn, hidden, x, hidden, w->w1, ffn, 0.0f, a, ffn);
    gemm(false, false, rows, ffn, hidden, x, hidden, w->w3, ffn, 0.0f, b, ffn);
    swiglu((size_t)rows * ffn, a, b, h);
    gemm(false, false, rows, hidden, ffn, h, ffn, w->w2, hidden, beta, y, hidden);
}

/* s1 = h on entry; on return s1 = da, s2 = db (s2 = dh on entry). */
static void swiglu_bwd(size_t n, const float *a, const float *b, float *s1, float *s2)
{
    for (size_t i = 0; i < n; i++) {
        float sg = sigmoidf(a[i]), dh = s2[i];
        s1[i] = dh * b[i] * sg * (1.0f + a[i] * (1.0f - sg));
        s2[i] = dh * a[i] * sg;
    }
}

void ffn_cpu_bwd(int rows, int hidden, int ffn, const struct ffn_cpu_w *w, const float *x,
                 const float *a, const float *b, const float *dy, float beta, float *dx,
                 float *dw1, float *dw3, float *dw2, float *s1, float *s2)
{
    if (rows == 0)
        return;
    size_t n = (size_t)rows * ffn;
    swiglu(n, a, b, s1);
    gemm(true, false, ffn, hidden, rows, s1, ffn, dy, hidden, 1.0f, dw2, hidden);
    gemm(false, true, rows, ffn, hidden, dy, hidden, w->w2, hidden, 0.0f, s2, ffn);
    swiglu_bwd(n, a, b, s1, s2);
    gemm(true, false, hidden, ffn, rows, x, hidden, s1, ffn, 1.0f, dw1, ffn);
    gemm(true, false, hidden, ffn, rows, x, hidden, s2, ffn, 1.0f, dw3, ffn);
    gemm(false, true, rows, hidden, ffn, s1, ffn, w->w1, ffn, beta, dx, hidden);
    gemm(false, true, rows, hidden, ffn, s2, ffn, w->w3, ffn, 1.0f, dx, hidden);
}
