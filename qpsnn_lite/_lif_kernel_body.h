/*
 * The LIF kernels for one floating-point type, included once per type by _lif_kernel.c, which defines
 *
 *     SCALAR  the C type (float or double)          SUFFIX  its name in the exported symbols (f32 or f64)
 *     FABS    its absolute value (fabsf or fabs)    EXP     its exponential (expf or exp)
 *
 * and the helpers LIF_FN, LIF_NAME2..4, LIF_INLINE, LIF_EXPORT_*. No include guard: it is included once per type.
 */

/* The surrogate dS/dU~ at v = U~ - threshold; neurons.surrogate_derivative is the specification. */
LIF_INLINE SCALAR LIF_FN(surrogate)(SCALAR v, const int kind, SCALAR alpha, SCALAR inv_alpha2)
{
    if (kind == LIF_TRIANGLE) {
        const SCALAR a = alpha - FABS(v);
        return (a > 0 ? a : (SCALAR)0) * inv_alpha2;
    }
    if (kind == LIF_SIGMOID) {
        const SCALAR sig = (SCALAR)1 / ((SCALAR)1 + EXP(-alpha * v));
        return alpha * sig * ((SCALAR)1 - sig);
    }
    const SCALAR z = (SCALAR)1.5707963267948966 * alpha * v;                    /* arctan: (pi / 2) alpha v */
    return alpha / (SCALAR)2 / ((SCALAR)1 + z * z);
}

/* Forward, Eq. 1-3: reads X, writes S (and U~ if keep_membrane). */
LIF_INLINE int LIF_FN(forward)(const SCALAR *x, SCALAR *spikes, SCALAR *membrane, int64_t T, int64_t N,
                                   int64_t start, int64_t end, int64_t block, double tau_, double threshold_,
                                   const int hard, const int keep_membrane)
{
    const SCALAR tau = (SCALAR)tau_, threshold = (SCALAR)threshold_;
    SCALAR *restrict u = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)block);    /* U[t-1] of one block */
    if (!u) return 1;
    for (int64_t i = start; i < end; i += block) {
        const int64_t w = end - i < block ? end - i : block;
        for (int64_t j = 0; j < w; j++) u[j] = 0;                                /* U[-1] = 0 */
        for (int64_t t = 0; t < T; t++) {
            const SCALAR *restrict xt = x + t * N + i;
            SCALAR *restrict st = spikes + t * N + i;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR m = tau * u[j] + xt[j];                             /* U~[t], Eq. 1 */
                const SCALAR s = (SCALAR)(m >= threshold);                       /* S[t], Eq. 2 */
                st[j] = s;
                if (keep_membrane) membrane[t * N + i + j] = m;
                u[j] = hard ? m * ((SCALAR)1 - s) : m - threshold * s;           /* U[t], Eq. 3 */
            }
        }
    }
    free(u);
    return 0;
}

/* Backward: recomputes U~ of a block from X (so the forward saves only X), then runs BPTT from t = T-1 down to 0.
 * Reads X and g = dL/dS (and dL/dU~ if with_grad_membrane), writes delta = dL/dX. */
LIF_INLINE int LIF_FN(backward)(const SCALAR *x, const SCALAR *grad_spikes, const SCALAR *grad_membrane,
                                    SCALAR *grad_x, int64_t T, int64_t N, int64_t start, int64_t end, int64_t block,
                                    double tau_, double threshold_, double alpha_,
                                    const int hard, const int kind, const int with_grad_membrane)
{
    const SCALAR tau = (SCALAR)tau_, threshold = (SCALAR)threshold_, alpha = (SCALAR)alpha_;
    const SCALAR inv_alpha2 = (SCALAR)1 / (alpha * alpha);
    SCALAR *scratch = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)block * (size_t)(T + 2));
    if (!scratch) return 1;
    SCALAR *restrict u = scratch, *restrict carry = scratch + block;            /* U[t-1]; c[t] = dL/dU[t] */
    SCALAR *restrict m = scratch + 2 * block;                                    /* U~[t] of one block, all T */
    for (int64_t i = start; i < end; i += block) {
        const int64_t w = end - i < block ? end - i : block;
        for (int64_t j = 0; j < w; j++) { u[j] = 0; carry[j] = 0; }
        for (int64_t t = 0; t < T; t++) {                                        /* recompute U~[t] from X */
            const SCALAR *restrict xt = x + t * N + i;
            SCALAR *restrict mt = m + t * block;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR mm = tau * u[j] + xt[j];
                const SCALAR s = (SCALAR)(mm >= threshold);
                mt[j] = mm;
                u[j] = hard ? mm * ((SCALAR)1 - s) : mm - threshold * s;
            }
        }
        for (int64_t t = T - 1; t >= 0; t--) {                                   /* BPTT, t = T-1 ... 0 */
            const SCALAR *restrict gt = grad_spikes + t * N + i;
            SCALAR *restrict dt = grad_x + t * N + i;
            const SCALAR *restrict mt = m + t * block;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR mm = mt[j];
                const SCALAR sg = LIF_FN(surrogate)(mm - threshold, kind, alpha, inv_alpha2);    /* sigma'[t] */
                const SCALAR keep = (SCALAR)1 - (SCALAR)(mm >= threshold);                        /* 1 - S[t] */
                const SCALAR through_reset = hard ? keep - mm * sg : (SCALAR)1 - threshold * sg;  /* dU/dU~ */
                SCALAR d = gt[j] * sg + carry[j] * through_reset;                                 /* delta[t] */
                if (with_grad_membrane) d += grad_membrane[t * N + i + j];
                dt[j] = d;
                carry[j] = tau * d;                                                                /* c[t-1] */
            }
        }
    }
    free(scratch);
    return 0;
}

/* The exported functions, e.g. lif_backward_f32_hard_triangle_membrane. */
LIF_EXPORT_FORWARD(LIF_NAME2(lif_forward, hard), 1, 0)
LIF_EXPORT_FORWARD(LIF_NAME3(lif_forward, hard, membrane), 1, 1)
LIF_EXPORT_FORWARD(LIF_NAME2(lif_forward, soft), 0, 0)
LIF_EXPORT_FORWARD(LIF_NAME3(lif_forward, soft, membrane), 0, 1)

LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, hard, triangle), 1, LIF_TRIANGLE, 0)
LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, hard, sigmoid), 1, LIF_SIGMOID, 0)
LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, hard, arctan), 1, LIF_ARCTAN, 0)
LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, soft, triangle), 0, LIF_TRIANGLE, 0)
LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, soft, sigmoid), 0, LIF_SIGMOID, 0)
LIF_EXPORT_BACKWARD(LIF_NAME3(lif_backward, soft, arctan), 0, LIF_ARCTAN, 0)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, hard, triangle, membrane), 1, LIF_TRIANGLE, 1)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, hard, sigmoid, membrane), 1, LIF_SIGMOID, 1)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, hard, arctan, membrane), 1, LIF_ARCTAN, 1)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, soft, triangle, membrane), 0, LIF_TRIANGLE, 1)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, soft, sigmoid, membrane), 0, LIF_SIGMOID, 1)
LIF_EXPORT_BACKWARD(LIF_NAME4(lif_backward, soft, arctan, membrane), 0, LIF_ARCTAN, 1)
