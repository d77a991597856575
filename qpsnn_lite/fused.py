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

- ``"native"``: the C kernel ``_lif_kernel.c`` (with its type-generic body ``_lif_kernel_body.h``), shipped next to this
  file, compiled on first use with the system C compiler (``cc``, or ``$CC``; a second or two) and loaded with
  :mod:`ctypes`, so no PyTorch headers are needed. One pass over memory per direction, a block of neurons at a time
  over all T steps with its state in cache: the forward reads X and writes S (8 bytes per neuron-step in float32); the
  backward recomputes :math:`\tilde U` from X instead of storing it, so only X is saved for backward, and reads X and g
  and writes :math:`\delta` (12 bytes). Large tensors are split between ``torch.get_num_threads()`` threads. CPU,
  float32 and float64.
- ``"torch"``: the same recurrence with in-place PyTorch ops, used when there is no C compiler (Windows laptops),
  on GPU, for other dtypes, or with ``QPSNN_NATIVE=0``. It saves :math:`\tilde U` for the backward.

``implementation="auto"`` (the default) picks ``"native"`` when it can. :func:`native_status` says which is in use and
why. Both are exact in the forward: spikes and membrane potentials are bit-identical to the readable loop.

**The compiled library** is cached per user, keyed by a hash of the C source, the compiler, its flags and the
platform: ``$QPSNN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/qpsnn_lite``, else ``~/.cache/qpsnn_lite`` (created with
mode 0o700; a folder named after the user id in the system's temporary folder if none can be created). Loading a
library runs its code, so on POSIX systems the cache directory and the cached library must be owned by the current
user and not writable by group or others; otherwise the native kernel is refused and :func:`native_status` says why.
A new library is compiled in a private temporary folder inside the cache directory, loaded and self-tested there, and
only then moved into place with :func:`os.replace`, so that concurrent processes never see half a file. A cached
library that does not load or fails the self-test is rebuilt.

Environment variables: ``QPSNN_NATIVE=0`` disables the native kernel (everything runs on PyTorch ops, as on a GPU);
``QPSNN_CACHE_DIR`` chooses the cache directory; ``CC`` the C compiler.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.autograd.function import once_differentiable

from ._lif_common import RESETS, SURROGATES, LIFState, check_lif_args

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
# Native implementation: _lif_kernel.c compiled on first use, cached per user, loaded with ctypes
# --------------------------------------------------------------------------------------------------------------------
_KERNEL_SOURCES = ("_lif_kernel.c", "_lif_kernel_body.h")  # package data, next to this file
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}  # the dtypes of the C kernels and their symbol suffixes
# Portable flags: no -march=native, so a library built on one machine runs on any CPU of the same architecture.
# -ffp-contract=off forbids fused multiply-adds (exactness); -fno-trapping-math lets the selects vectorise.
_C_FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC"]
_PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, one thread: handing work to a pool costs more than it saves
_HUGE_PAGE_MIN_BYTES = 4 << 20

_lock = threading.Lock()
_native: tuple | None = None  # (library or None, path or reason), built once per process
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (process id, pool)


def _kernel_name(direction, dtype, reset, surrogate=None, with_membrane=False):
    """The C function for one configuration, e.g. ``lif_backward_f32_hard_triangle``."""
    parts = [f"lif_{direction}", _DTYPES[dtype], reset] + ([surrogate] if surrogate else [])
    return "_".join(parts) + ("_membrane" if with_membrane else "")


def _native_library():
    global _native
    if _native is None:
        with _lock:
            if _native is None:
                _native = _build_native()
    return _native


class _Refused(Exception):
    """The cache directory or a cached library is not safe to use; the message says why."""


def _build_native():
    """``(library, path)``, or ``(None, reason)`` when the PyTorch implementation must be used instead."""
    if os.environ.get("QPSNN_NATIVE", "1") == "0":
        return None, "disabled by QPSNN_NATIVE=0"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None, "no C compiler found (install gcc or clang, or set CC)"
    try:
        sources = _read_sources()
        directory = _cache_directory()
        path = os.path.join(directory, _library_name(sources, compiler))
        lib = None
        if os.path.exists(path):
            _check_private(path, directory=False)
            try:
                lib = _load(path)
            except Exception:  # a truncated or stale file of ours: rebuilt below, replacing it
                lib = None
        if lib is None:
            lib = _compile_and_load(compiler, sources, directory, path)
    except _Refused as error:
        return None, f"native kernel refused: {error}"
    except Exception as error:  # any failure (compiler, loader, self-test) means: use the PyTorch implementation
        return None, f"native kernel unavailable ({type(error).__name__}: {str(error)[:300]})"
    return lib, path


def _read_sources():
    here = os.path.dirname(os.path.abspath(__file__))
    sources = {}
    for name in _KERNEL_SOURCES:
        try:
            with open(os.path.join(here, name), encoding="utf-8") as handle:
                sources[name] = handle.read()
        except OSError as error:
            raise FileNotFoundError(f"kernel source {name} not found next to fused.py (not installed as package "
                                    f"data?): {error}") from None
    return sources


def _library_name(sources, compiler):
    """The cache key: a hash of the C source, the compiler, its flags and the platform."""
    key = "\n".join([*sources.values(), " ".join(_C_FLAGS), os.path.realpath(compiler), sys.platform,
                     platform.machine()])
    return f"lif_kernel_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _cache_directory():
    """``$QPSNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/qpsnn_lite``, else ``~/.cache/qpsnn_lite``, created with mode 0o700
    if missing; a temporary folder named after the user if none of them can be created. The first one that exists or
    can be created must pass :func:`_check_private`, else the native kernel is refused."""
    candidates = []
    if os.environ.get("QPSNN_CACHE_DIR"):
        candidates.append(os.environ["QPSNN_CACHE_DIR"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(os.path.join(cache_home, "qpsnn_lite"))
    user = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"qpsnn_lite_{user}"))
    for directory in candidates:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            continue  # cannot be created here (read-only home, ...): try the next one
        _check_private(directory, directory=True)
        return directory
    raise OSError(f"no usable cache directory for the compiled kernel among {candidates} (set QPSNN_CACHE_DIR)")


def _check_private(path, directory):
    """Raise :class:`_Refused` unless ``path`` is a directory (resp. regular file) owned by the current user and not
    writable by group or others. Anyone who can write there could make this process load their code. POSIX only:
    Windows has no owner ids or mode bits to compare."""
    if os.name != "posix":
        return
    info = os.stat(path)
    what = "cache directory" if directory else "cached library"
    if not (stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)):
        raise _Refused(f"{what} {path} is not a {'directory' if directory else 'regular file'}")
    if info.st_uid != os.getuid():
        raise _Refused(f"{what} {path} is owned by uid {info.st_uid}, not by this user (uid {os.getuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _Refused(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                       f"run chmod go-w on it, or remove it")


def _compile_and_load(compiler, sources, directory, path):
    """Compile into a private temporary folder inside ``directory``, load and self-test the result, then move it to
    ``path`` with :func:`os.replace` (atomic: a concurrent process sees no library or the whole library). The library is
    loaded under its unique temporary name, so a stale library of the same final name loaded earlier is not reused."""
    build = tempfile.mkdtemp(prefix=".build_", dir=directory)  # mode 0o700, unique
    try:
        for name, text in sources.items():
            with open(os.path.join(build, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        target = os.path.join(build, os.path.basename(path))
        result = subprocess.run([compiler, *_C_FLAGS, os.path.join(build, _KERNEL_SOURCES[0]), "-o", target, "-lm"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-300:]}")
        os.chmod(target, 0o700)  # whatever the umask: not writable by group or others, so later runs accept it
        lib = _load(target)
        os.replace(target, path)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return lib


def _load(path):
    """Load the library, declare the argument types of every kernel, run :func:`_self_test`."""
    lib = ctypes.CDLL(path)
    pointer, i64, f64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for dtype in _DTYPES:
        for reset in RESETS:
            for with_membrane in (False, True):
                forward = getattr(lib, _kernel_name("forward", dtype, reset, with_membrane=with_membrane))
                forward.argtypes = [pointer, pointer, pointer, i64, i64, i64, i64, i64, f64, f64]
                forward.restype = c_int
                for surrogate in SURROGATES:
                    backward = getattr(lib, _kernel_name("backward", dtype, reset, surrogate, with_membrane))
                    backward.argtypes = [pointer, pointer, pointer, pointer, i64, i64, i64, i64, i64, f64, f64, f64]
                    backward.restype = c_int
    _self_test(lib)
    return lib


def _self_test(lib):
    """The freshly loaded kernel must agree with the PyTorch implementation on a small case, else it is not used."""
    generator = torch.Generator().manual_seed(0)
    for dtype in _DTYPES:
        x = torch.randn(5, 3, 37, generator=generator, dtype=dtype) + 0.6
        grad = torch.randn(x.shape, generator=generator, dtype=dtype)
        for reset in RESETS:
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
