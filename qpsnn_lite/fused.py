r"""A fused multi-step LIF: the whole time loop, forward and backward, in one autograd node.

The performance appendix of the book; the readable LIF of chapter 01 (:func:`neurons.lif_multistep_state`) is the
specification, and ``tests/test_fused.py`` checks this module against it (outputs and gradients).

Why fuse? The readable loop builds about six autograd nodes per time step, and each allocates and writes a fresh
``[B, ...]`` tensor; its backward also turns every ``x[t]`` into a full ``[T, B, ...]`` zero tensor (``select``'s
backward), so its cost grows like T². Here one :class:`torch.autograd.Function` runs the recurrence for all T steps
and differentiates it by hand.

**Forward** (Eq. 1-3), per neuron, :math:`U[-1] = 0`:

.. math::

    \tilde U[t] = \tau U[t-1] + X[t],\qquad S[t] = \Theta(\tilde U[t] - \theta),\qquad
    U[t] = \tilde U[t]\,(1 - S[t]) \ \text{(hard)}\quad\text{or}\quad U[t] = \tilde U[t] - \theta S[t] \ \text{(soft)}

**Backward** (BPTT, the reset path *not* detached). Write :math:`g[t] = \partial L/\partial S[t]` (from the next
layer), :math:`\sigma'[t]` the surrogate at :math:`\tilde U[t]-\theta`, :math:`\delta[t] = \partial L/\partial\tilde
U[t]` (equal to :math:`\partial L/\partial X[t]`, since :math:`\partial\tilde U[t]/\partial X[t] = 1`) and
:math:`c[t] = \partial L/\partial U[t]`, the gradient carried back from step :math:`t+1`:

.. math::

    c[T-1] = 0,\qquad c[t-1] = \tau\,\delta[t],\qquad
    \delta[t] = g[t]\,\sigma'[t] + c[t]\,\frac{\partial U[t]}{\partial\tilde U[t]},

    \frac{\partial U[t]}{\partial\tilde U[t]} = (1 - S[t]) - \tilde U[t]\,\sigma'[t]\ \text{(hard)},\qquad
    \frac{\partial U[t]}{\partial\tilde U[t]} = 1 - \theta\,\sigma'[t]\ \text{(soft)}.

The term :math:`-\tilde U\sigma'` (resp. :math:`-\theta\sigma'`) is the reset path: :math:`S` carries its surrogate
gradient into the reset, as in the paper's STBP rule (Eq. 14). If the membrane output is used too (``lif_fused_state``)
its gradient is added to :math:`\delta[t]`.

Two implementations compute the same numbers:

- ``"native"``: a C kernel of about 90 lines, compiled on first use with the system C compiler (``cc``, a second or
  two) and cached in ``~/.cache/qpsnn_lite``; loaded with :mod:`ctypes`, so no PyTorch headers are needed. One pass
  over memory per direction, a block of neurons at a time over all T steps with its state in cache: the forward reads
  X and writes S (8 bytes per neuron-step in float32); the backward recomputes :math:`\tilde U` from X instead of
  storing it, so only X is saved for backward, and reads X and g and writes :math:`\delta` (12 bytes). Large tensors
  are split between ``torch.get_num_threads()`` threads. CPU, float32 and float64.
- ``"torch"``: the same recurrence with in-place PyTorch ops, used when there is no C compiler (Windows laptops),
  on GPU, for other dtypes, or with ``QPSNN_NATIVE=0``. It saves :math:`\tilde U` for the backward.

``implementation="auto"`` (the default) picks ``"native"`` when it can. :func:`native_status` says which is in use and
why. Both are exact in the forward: spikes and membrane potentials are bit-identical to the readable loop.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.autograd.function import once_differentiable

from .neurons import SURROGATES, LIFState, check_lif_args

__all__ = ["lif_fused", "lif_fused_state", "native_status", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("auto", "native", "torch")


def lif_fused(
    x: torch.Tensor,
    tau: float = 0.5,
    threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float = 1.0,
    reset: str = "hard",
    implementation: str = "auto",
) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of the LIF of Eq. 1-3, like :func:`neurons.lif_multistep`, in one fused autograd node.

    ``implementation`` is ``"auto"`` (native C kernel when available, else PyTorch ops), ``"native"`` or ``"torch"``.
    """
    _check_implementation(implementation)
    check_lif_args(x, tau, threshold, surrogate, alpha, reset)
    native = _use_native(x, implementation)
    return _FusedLIF.apply(x, float(tau), float(threshold), surrogate, float(alpha), reset, False, native)


def lif_fused_state(
    x: torch.Tensor,
    tau: float = 0.5,
    threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float = 1.0,
    reset: str = "hard",
    implementation: str = "auto",
) -> LIFState:
    """Like :func:`neurons.lif_multistep_state`: spikes and pre-reset membrane potentials, both differentiable."""
    _check_implementation(implementation)
    check_lif_args(x, tau, threshold, surrogate, alpha, reset)
    native = _use_native(x, implementation)
    spikes, membrane = _FusedLIF.apply(x, float(tau), float(threshold), surrogate, float(alpha), reset, True, native)
    return LIFState(spikes, membrane)


def native_status() -> str:
    """Which implementation ``"auto"`` uses on CPU, and why: ``"native: <path>"`` or ``"torch: <reason>"``."""
    lib, reason = _native_library()
    return f"native: {reason}" if lib is not None else f"torch: {reason}"


# --------------------------------------------------------------------------------------------------------------------
# The autograd node
# --------------------------------------------------------------------------------------------------------------------
class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tau, threshold, surrogate, alpha, reset, keep_membrane, native):  # type: ignore[override]
        x = x.contiguous()
        ctx.set_materialize_grads(False)  # an unused output gets grad None, not a [T, B, ...] tensor of zeros
        ctx.params = (tau, threshold, surrogate, alpha, reset, native)
        if native:
            spikes, membrane = _native_forward(x, tau, threshold, reset, keep_membrane)
            ctx.save_for_backward(x)  # the backward recomputes U~ from X: nothing else is stored
        else:
            spikes, membrane = _torch_forward(x, tau, threshold, reset)
            ctx.save_for_backward(membrane, spikes)  # the spikes are alive anyway (the next layer saves them)
        return (spikes, membrane) if keep_membrane else spikes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, grad_membrane=None):  # type: ignore[override]
        tau, threshold, surrogate, alpha, reset, native = ctx.params
        saved = ctx.saved_tensors
        if grad_spikes is None and grad_membrane is None:
            return (None,) * 8
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(saved[0])
        grad_spikes = grad_spikes.contiguous()
        grad_membrane = None if grad_membrane is None else grad_membrane.contiguous()
        if native:
            grad_x = _native_backward(*saved, grad_spikes, grad_membrane, tau, threshold, surrogate, alpha, reset)
        else:
            grad_x = _torch_backward(*saved, grad_spikes, grad_membrane, tau, threshold, surrogate, alpha, reset)
        return grad_x, None, None, None, None, None, None, None


# --------------------------------------------------------------------------------------------------------------------
# PyTorch implementation (any device, any floating dtype)
# --------------------------------------------------------------------------------------------------------------------
def _torch_forward(x, tau, threshold, reset):
    """Returns (spikes, U~), each [T, ...]. In-place ops on preallocated outputs; exact (see the notes inline)."""
    steps = x.shape[0]
    membrane = _new_output(x)
    membrane[0] = x[0]  # U[-1] = 0
    if reset == "hard":
        keep = torch.empty(x.shape[1:], dtype=torch.bool, device=x.device)  # 1 - S[t]
        for t in range(steps - 1):
            torch.lt(membrane[t], threshold, out=keep)
            # X[t+1] + tau * U~[t] * (1 - S[t]): rounds like the readable `tau * u + x` (no fused multiply-add)
            torch.addcmul(x[t + 1], membrane[t], keep, value=tau, out=membrane[t + 1])
        spikes = torch.ge(membrane, threshold, out=_new_output(x))  # one vectorised pass over all T
    else:
        spikes = _new_output(x)
        potential = torch.empty_like(x[0])  # U[t]
        one = torch.ones((), dtype=x.dtype, device=x.device)
        for t in range(steps):
            torch.ge(membrane[t], threshold, out=spikes[t])
            if t + 1 < steps:
                torch.sub(membrane[t], spikes[t], alpha=threshold, out=potential)  # U~ - theta * S, exact
                torch.addcmul(x[t + 1], potential, one, value=tau, out=membrane[t + 1])
    return spikes, membrane


def _torch_backward(membrane, spikes, grad_spikes, grad_membrane, tau, threshold, surrogate, alpha, reset):
    """BPTT of the module docstring: vectorised over T except the one-op-per-step carry, in place where possible
    (one [T, ...] work tensor besides the output)."""
    work = _surrogate_in_place(membrane - threshold, surrogate, alpha)  # sigma'[t], all t at once
    grad_x = grad_spikes * work  # g[t] sigma'[t]
    if grad_membrane is not None:
        grad_x += grad_membrane
    if reset == "hard":  # work = dU[t]/dU~[t]
        work.mul_(membrane).neg_().sub_(spikes).add_(1.0)  # (1 - S) - U~ sigma'
    else:
        work.mul_(-threshold).add_(1.0)  # 1 - theta sigma'
    for t in range(membrane.shape[0] - 2, -1, -1):
        grad_x[t].addcmul_(work[t], grad_x[t + 1], value=tau)  # + c[t] dU/dU~, with c[t] = tau delta[t+1]
    return grad_x


def _surrogate_in_place(x, surrogate, alpha):
    """``neurons.surrogate_derivative(x, surrogate, alpha)`` written over ``x``, same operations in the same order."""
    if surrogate == "triangle":
        x.abs_().neg_().add_(alpha).clamp_(min=0).div_(alpha * alpha)
    elif surrogate == "sigmoid":
        x.mul_(alpha).sigmoid_()
        one_minus = 1 - x
        x.mul_(alpha).mul_(one_minus)
    else:
        x.mul_(math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)
    return x


# --------------------------------------------------------------------------------------------------------------------
# Native implementation: a C kernel compiled on first use, loaded with ctypes
# --------------------------------------------------------------------------------------------------------------------
# Templates instantiated for every dtype x reset x surrogate (x whether the membrane is an output), so that the
# compiler sees constants and the inner loops have no branches left: they vectorise. Neurons are processed in blocks of
# adjacent ones, each block over all T steps, so its state stays in cache (see _block_width). -ffp-contract=off keeps
# `tau * u + x` rounded as PyTorch rounds it (no fused multiply-add): the spikes are bit-identical to the readable loop.
_C_HEADER = r"""
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
"""
_C_SURROGATE = r"""
static inline SCALAR surrogate_SUFFIX(SCALAR v, const int kind, SCALAR alpha, SCALAR inv_alpha2)
{
    if (kind == 0) { const SCALAR a = alpha - FABS(v); return (a > 0 ? a : (SCALAR)0) * inv_alpha2; }  /* triangle */
    if (kind == 1) {                                                                                  /* sigmoid */
        const SCALAR sig = (SCALAR)1 / ((SCALAR)1 + EXP(-alpha * v));
        return alpha * sig * ((SCALAR)1 - sig);
    }
    const SCALAR z = (SCALAR)1.5707963267948966 * alpha * v;                                          /* arctan */
    return alpha / (SCALAR)2 / ((SCALAR)1 + z * z);
}
"""
_C_FORWARD = r"""
int lif_forward_NAME(const SCALAR *x, SCALAR *spikes, SCALAR *membrane, int64_t T, int64_t N,
                     int64_t start, int64_t end, int64_t block, double tau_, double threshold_)
{
    const SCALAR tau = (SCALAR)tau_, threshold = (SCALAR)threshold_;
    SCALAR *restrict u = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)block);            /* U[t-1] of one block */
    if (!u) return 1;
    for (int64_t i = start; i < end; i += block) {
        const int64_t w = end - i < block ? end - i : block;
        for (int64_t j = 0; j < w; j++) u[j] = 0;
        for (int64_t t = 0; t < T; t++) {
            const SCALAR *restrict xt = x + t * N + i;
            SCALAR *restrict st = spikes + t * N + i;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR m = tau * u[j] + xt[j];                     /* U~[t], Eq. 1 */
                const SCALAR s = (SCALAR)(m >= threshold);               /* S[t], Eq. 2 */
                st[j] = s;
                if (MEMBRANE) membrane[t * N + i + j] = m;
                u[j] = HARD ? m * ((SCALAR)1 - s) : m - threshold * s;   /* U[t], Eq. 3 */
            }
        }
    }
    free(u);
    return 0;
}
"""
_C_BACKWARD = r"""
int lif_backward_NAME(const SCALAR *x, const SCALAR *grad_spikes, const SCALAR *grad_membrane, SCALAR *grad_x,
                      int64_t T, int64_t N, int64_t start, int64_t end, int64_t block,
                      double tau_, double threshold_, double alpha_)
{
    const SCALAR tau = (SCALAR)tau_, threshold = (SCALAR)threshold_, alpha = (SCALAR)alpha_;
    const SCALAR inv_alpha2 = (SCALAR)1 / (alpha * alpha);
    SCALAR *scratch = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)block * (size_t)(T + 2));
    if (!scratch) return 1;
    SCALAR *restrict u = scratch, *restrict carry = scratch + block;  /* U[t-1]; c[t] = dL/dU[t] */
    SCALAR *restrict m = scratch + 2 * block;                          /* U~[t] of one block, all T steps */
    for (int64_t i = start; i < end; i += block) {
        const int64_t w = end - i < block ? end - i : block;
        for (int64_t j = 0; j < w; j++) { u[j] = 0; carry[j] = 0; }
        for (int64_t t = 0; t < T; t++) {                                /* recompute U~[t] from X */
            const SCALAR *restrict xt = x + t * N + i;
            SCALAR *restrict mt = m + t * block;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR mm = tau * u[j] + xt[j];
                const SCALAR s = (SCALAR)(mm >= threshold);
                mt[j] = mm;
                u[j] = HARD ? mm * ((SCALAR)1 - s) : mm - threshold * s;
            }
        }
        for (int64_t t = T - 1; t >= 0; t--) {                           /* BPTT, t = T-1 ... 0 */
            const SCALAR *restrict gt = grad_spikes + t * N + i;
            SCALAR *restrict dt = grad_x + t * N + i;
            const SCALAR *restrict mt = m + t * block;
            for (int64_t j = 0; j < w; j++) {
                const SCALAR mm = mt[j];
                const SCALAR sg = surrogate_SUFFIX(mm - threshold, KIND, alpha, inv_alpha2);
                const SCALAR keep = (SCALAR)1 - (SCALAR)(mm >= threshold);            /* 1 - S[t] */
                const SCALAR through_reset = HARD ? keep - mm * sg : (SCALAR)1 - threshold * sg;  /* dU/dU~ */
                SCALAR d = gt[j] * sg + carry[j] * through_reset;                       /* delta[t] */
                if (GRAD_MEMBRANE) d += grad_membrane[t * N + i + j];
                dt[j] = d;
                carry[j] = tau * d;                                                      /* c[t-1] */
            }
        }
    }
    free(scratch);
    return 0;
}
"""
_DTYPES = {torch.float32: ("float", "f32", "expf", "fabsf"), torch.float64: ("double", "f64", "exp", "fabs")}


def _kernel_name(direction, dtype, reset, surrogate=None, with_membrane=False):
    """The C function for one configuration, e.g. ``lif_backward_f32_hard_triangle``."""
    parts = [f"lif_{direction}", _DTYPES[dtype][1], reset] + ([surrogate] if surrogate else [])
    return "_".join(parts) + ("_membrane" if with_membrane else "")


def _c_source():
    parts = [_C_HEADER]
    for dtype, (scalar, suffix, exp, fabs) in _DTYPES.items():
        typed = {"SCALAR": scalar, "SUFFIX": suffix, "FABS": fabs, "EXP": exp}
        parts.append(_substitute(_C_SURROGATE, typed))
        for reset in ("hard", "soft"):
            for with_membrane in (False, True):
                constants = {"HARD": str(int(reset == "hard")), "MEMBRANE": str(int(with_membrane))}
                name = _kernel_name("forward", dtype, reset, with_membrane=with_membrane)
                parts.append(_substitute(_C_FORWARD, {**typed, **constants, "NAME": name[len("lif_forward_"):]}))
                for kind, surrogate in enumerate(SURROGATES):
                    constants = {"HARD": str(int(reset == "hard")), "KIND": str(kind),
                                 "GRAD_MEMBRANE": str(int(with_membrane))}
                    name = _kernel_name("backward", dtype, reset, surrogate, with_membrane)
                    parts.append(_substitute(_C_BACKWARD, {**typed, **constants, "NAME": name[len("lif_backward_"):]}))
    return "".join(parts)


def _substitute(template, values):
    for key in sorted(values, key=len, reverse=True):  # longest first: GRAD_MEMBRANE before MEMBRANE
        template = template.replace(key, values[key])
    return template


_C_SOURCE = _c_source()
# Portable flags: no -march=native, so a cache shared between machines is safe. -fno-trapping-math lets the compiler
# vectorise the selects (it changes no value); -ffp-contract=off forbids fused multiply-adds (see above).
_C_FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC"]
_PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, one thread: handing work to a pool costs more than it saves
_HUGE_PAGE_MIN_BYTES = 4 << 20

_lock = threading.Lock()
_native: tuple | None = None  # (library or None, path or reason), built once per process
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (process id, pool)


def _native_library():
    global _native
    if _native is None:
        with _lock:
            if _native is None:
                _native = _build_native()
    return _native


def _build_native():
    if os.environ.get("QPSNN_NATIVE", "1") == "0":
        return None, "disabled by QPSNN_NATIVE=0"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None, "no C compiler found (install gcc or clang, or set CC)"
    key = "\n".join([_C_SOURCE, " ".join(_C_FLAGS), os.path.realpath(compiler), sys.platform, platform.machine()])
    name = f"lif_kernel_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    try:
        path = _cached_build(compiler, name)
        lib = ctypes.CDLL(path)
        pointer, i64, f64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
        for dtype in _DTYPES:
            for reset in ("hard", "soft"):
                for with_membrane in (False, True):
                    forward = getattr(lib, _kernel_name("forward", dtype, reset, with_membrane=with_membrane))
                    forward.argtypes = [pointer, pointer, pointer, i64, i64, i64, i64, i64, f64, f64]
                    forward.restype = c_int
                    for surrogate in SURROGATES:
                        backward = getattr(lib, _kernel_name("backward", dtype, reset, surrogate, with_membrane))
                        backward.argtypes = [pointer, pointer, pointer, pointer, i64, i64, i64, i64, i64, f64, f64,
                                             f64]
                        backward.restype = c_int
        _self_test(lib)
    except Exception as error:  # any failure (compiler, loader, self-test) means: use the PyTorch implementation
        return None, f"native kernel unavailable ({type(error).__name__}: {str(error)[:200]})"
    return lib, path


def _cached_build(compiler, name):
    for directory in _cache_directories():
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
        try:
            os.makedirs(directory, exist_ok=True)
            build = tempfile.mkdtemp(dir=directory)
        except OSError:
            continue  # read-only or unusable directory: try the next one
        try:
            source, target = os.path.join(build, "lif_kernel.c"), os.path.join(build, name)
            with open(source, "w") as handle:
                handle.write(_C_SOURCE)
            result = subprocess.run([compiler, *_C_FLAGS, source, "-o", target, "-lm"], capture_output=True,
                                    text=True, timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-300:]}")
            os.replace(target, path)  # atomic: a concurrent process sees no library or the whole library
        finally:
            shutil.rmtree(build, ignore_errors=True)
        return path
    raise OSError("no writable cache directory for the compiled kernel (set QPSNN_CACHE_DIR)")


def _cache_directories():
    if os.environ.get("QPSNN_CACHE_DIR"):
        yield os.environ["QPSNN_CACHE_DIR"]
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    yield os.path.join(cache_home, "qpsnn_lite")
    yield os.path.join(tempfile.gettempdir(), f"qpsnn_lite_{os.getuid() if hasattr(os, 'getuid') else 'user'}")


def _self_test(lib):
    """The freshly loaded kernel must agree with the PyTorch implementation on a small case, else it is not used."""
    generator = torch.Generator().manual_seed(0)
    for dtype in _DTYPES:
        x = torch.randn(5, 3, 37, generator=generator, dtype=dtype) + 0.6
        grad = torch.randn(x.shape, generator=generator, dtype=dtype)
        for reset in ("hard", "soft"):
            spikes, membrane = _native_forward(x, 0.7, 1.0, reset, True, lib)
            expected_spikes, expected_membrane = _torch_forward(x, 0.7, 1.0, reset)
            grad_x = _native_backward(x, grad, None, 0.7, 1.0, "triangle", 1.0, reset, lib)
            expected_grad = _torch_backward(expected_membrane, expected_spikes, grad, None, 0.7, 1.0, "triangle", 1.0,
                                            reset)
            if not (torch.equal(spikes, expected_spikes) and torch.equal(membrane, expected_membrane)
                    and torch.allclose(grad_x, expected_grad, rtol=1e-4, atol=1e-5)):
                raise RuntimeError("self-test failed: the compiled kernel disagrees with the PyTorch implementation")


def _use_native(x, implementation):
    if implementation == "torch":
        return False
    eligible = x.device.type == "cpu" and x.dtype in _DTYPES
    if implementation == "native":
        if not eligible:
            raise ValueError(f"implementation='native' needs a CPU float32/float64 tensor, got {x.dtype} on "
                             f"{x.device}; use implementation='auto'")
        lib, reason = _native_library()
        if lib is None:
            raise RuntimeError(f"implementation='native' is not available: {reason}")
        return True
    return eligible and _native_library()[0] is not None


def _new_output(like: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(like)``; on Linux, a large CPU tensor is first marked for 2 MiB pages (``madvise``).

    A fresh multi-megabyte tensor is mapped by the OS 4 KiB at a time when first written: on the machines we measured,
    those page faults cost several times the LIF kernel itself. Asking for huge pages is what PyTorch does process-wide
    with ``THP_MEM_ALLOC_ENABLE=1``; here only this module's own outputs get it. A no-op elsewhere.
    """
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    if out.device.type == "cpu" and out.nbytes >= _HUGE_PAGE_MIN_BYTES and _madvise is not None:
        page = 1 << 21
        start = (out.data_ptr() + page - 1) & ~(page - 1)
        end = (out.data_ptr() + out.nbytes) & ~(page - 1)
        if end > start:
            _madvise(start, end - start, 14)  # MADV_HUGEPAGE; an error (THP disabled) only means 4 KiB pages
    return out


def _libc_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_madvise = _libc_madvise()


def _run_chunked(function, arguments_before, arguments_after, steps, neurons):
    """Call ``function(*before, start, end, *after)`` on column ranges of the [T, N] arrays, in parallel threads
    (ctypes releases the GIL) when the tensor is large enough."""
    global _pool
    workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    if workers == 1 or steps * neurons < _PARALLEL_MIN_ELEMENTS:
        return [function(*arguments_before, 0, neurons, *arguments_after)]
    step = -(-neurons // workers)
    step = -(-step // 64) * 64  # whole cache lines per thread
    if _pool is None or _pool[0] != os.getpid() or _pool[1]._max_workers < workers:  # new after a fork: no threads
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qpsnn-lif"))
    futures = [_pool[1].submit(function, *arguments_before, start, min(start + step, neurons), *arguments_after)
               for start in range(0, neurons, step)]
    return [future.result() for future in futures]


def _block_width(steps, backward):
    """Neurons per block of the C kernels. A block's T rows are T (forward: 2T, backward: 3T) memory streams, 1 MiB or
    more apart; narrow blocks keep the state in registers, which wins for short sequences, wide ones give the hardware
    prefetcher long runs, which wins for long ones (measured on 2-core AMD EPYC, T in 2..16; see benchmarks/README)."""
    if backward:
        return 128 if steps <= 4 else 2048
    return 64 if steps <= 8 else 2048


def _native_forward(x, tau, threshold, reset, keep_membrane, lib=None):
    lib = lib or _native_library()[0]
    steps, neurons = x.shape[0], x[0].numel()
    spikes = _new_output(x)
    membrane = _new_output(x) if keep_membrane else None
    function = getattr(lib, _kernel_name("forward", x.dtype, reset, with_membrane=keep_membrane))
    before = (x.data_ptr(), spikes.data_ptr(), None if membrane is None else membrane.data_ptr(), steps, neurons)
    after = (_block_width(steps, backward=False), tau, threshold)
    if any(_run_chunked(function, before, after, steps, neurons)):
        raise MemoryError("the native LIF forward could not allocate its scratch buffer")
    return spikes, membrane


def _native_backward(x, grad_spikes, grad_membrane, tau, threshold, surrogate, alpha, reset, lib=None):
    lib = lib or _native_library()[0]
    steps, neurons = x.shape[0], x[0].numel()
    grad_x = _new_output(x)
    function = getattr(lib, _kernel_name("backward", x.dtype, reset, surrogate, grad_membrane is not None))
    before = (x.data_ptr(), grad_spikes.data_ptr(), None if grad_membrane is None else grad_membrane.data_ptr(),
              grad_x.data_ptr(), steps, neurons)
    after = (_block_width(steps, backward=True), tau, threshold, alpha)
    if any(_run_chunked(function, before, after, steps, neurons)):
        raise MemoryError(f"the native LIF backward could not allocate its {steps}-step scratch buffer")
    return grad_x


def _check_implementation(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
