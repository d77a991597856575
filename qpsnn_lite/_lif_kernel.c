/*
 * The native kernels of qpsnn_lite.fused: the fused multi-step LIF, forward and backward (BPTT), on CPU.
 *
 * The recurrence and its derivative are written out in fused.py's module docstring; the kernels below are that
 * derivation, one neuron block at a time. fused.py compiles this file on first use with the system C compiler
 *
 *     cc -O3 -ffp-contract=off -fno-trapping-math -shared -fPIC _lif_kernel.c -o lif_kernel_<hash>.so -lm
 *
 * and calls the exported functions through ctypes (no Python or PyTorch headers are needed).
 *
 * Exported functions, one per configuration so that every branch on the configuration is resolved at compile time and
 * the inner loops vectorise (the generic bodies in _lif_kernel_body.h take the configuration as constant arguments
 * and are always inlined):
 *
 *     int lif_forward_<dtype>_<reset>[_membrane](x, spikes, membrane, T, N, start, end, block, tau, threshold)
 *     int lif_backward_<dtype>_<reset>_<surrogate>[_membrane](x, grad_spikes, grad_membrane, grad_x,
 *                                                            T, N, start, end, block, tau, threshold, alpha)
 *
 * with <dtype> f32 or f64, <reset> hard or soft, <surrogate> triangle, sigmoid or arctan. The arrays are contiguous
 * [T, N] (N neurons per time step); a call processes the neurons [start, end), in blocks of `block` neurons, all T
 * steps of a block before the next, so that a block's state stays in cache. "_membrane" variants also write the
 * pre-reset membrane potentials (forward) or add their upstream gradient (backward). Each returns 0, or 1 if its
 * scratch buffer could not be allocated.
 *
 * Exactness: -ffp-contract=off forbids fused multiply-adds, so `tau * u + x` is rounded twice, as PyTorch rounds it,
 * and the spikes and membrane potentials are bit-identical to the readable loop of neurons.py. -fno-trapping-math
 * lets the compiler vectorise the selects; it changes no value. No -march=native: the library runs on any CPU of the
 * same architecture.
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>

/* Names: the type-generic functions are forward_<SUFFIX> and backward_<SUFFIX>, the exported ones are built by
 * LIF_NAME2..4, e.g. LIF_NAME3(lif_backward, hard, triangle) -> lif_backward_f32_hard_triangle when SUFFIX is f32. */
#define LIF_PASTE_(a, b) a##_##b
#define LIF_PASTE(a, b) LIF_PASTE_(a, b)
#define LIF_FN(name) LIF_PASTE(name, SUFFIX)
#define LIF_NAME2(a, b) LIF_PASTE(LIF_FN(a), b)
#define LIF_NAME3(a, b, c) LIF_PASTE(LIF_NAME2(a, b), c)
#define LIF_NAME4(a, b, c, d) LIF_PASTE(LIF_NAME3(a, b, c), d)

/* The generic bodies take the configuration as constant arguments; always inlined, each exported function is compiled
 * with its constants and no branch on them is left in the inner loops. */
#define LIF_INLINE static inline __attribute__((always_inline))

enum { LIF_TRIANGLE = 0, LIF_SIGMOID = 1, LIF_ARCTAN = 2 };  /* the order of qpsnn_lite.neurons.SURROGATES */

/* One exported function: fixes the configuration of a generic body. */
#define LIF_EXPORT_FORWARD(NAME, HARD, KEEP_MEMBRANE)                                                          \
    int NAME(const SCALAR *x, SCALAR *spikes, SCALAR *membrane, int64_t T, int64_t N, int64_t start, int64_t end, \
             int64_t block, double tau, double threshold)                                                      \
    {                                                                                                          \
        return LIF_FN(forward)(x, spikes, membrane, T, N, start, end, block, tau, threshold, HARD, KEEP_MEMBRANE); \
    }
#define LIF_EXPORT_BACKWARD(NAME, HARD, KIND, WITH_GRAD_MEMBRANE)                                              \
    int NAME(const SCALAR *x, const SCALAR *grad_spikes, const SCALAR *grad_membrane, SCALAR *grad_x,          \
             int64_t T, int64_t N, int64_t start, int64_t end, int64_t block, double tau, double threshold,    \
             double alpha)                                                                                     \
    {                                                                                                          \
        return LIF_FN(backward)(x, grad_spikes, grad_membrane, grad_x, T, N, start, end, block, tau, threshold, \
                                alpha, HARD, KIND, WITH_GRAD_MEMBRANE);                                        \
    }

/* float32 instantiation */
#define SCALAR float
#define SUFFIX f32
#define FABS fabsf
#define EXP expf
#include "_lif_kernel_body.h"
#undef SCALAR
#undef SUFFIX
#undef FABS
#undef EXP

/* float64 instantiation */
#define SCALAR double
#define SUFFIX f64
#define FABS fabs
#define EXP exp
#include "_lif_kernel_body.h"
#undef SCALAR
#undef SUFFIX
#undef FABS
#undef EXP
