r"""Leaky integrate-and-fire neurons and surrogate spike functions.

Taught in chapter 01 (the neuron) and chapter 02 (surrogate gradients).

The paper's LIF (Eq. 1-3), per layer and time step :math:`t`:

.. math::

    \tilde U[t] = \tau\, U[t-1] + X[t], \qquad
    S[t] = \Theta(\tilde U[t] - \theta), \qquad
    U[t] = \tilde U[t]\,(1 - S[t])

:math:`\tau` is a multiplicative leak factor in (0, 1] (not a time constant), :math:`\theta` the threshold, and the
reset is hard (to 0) by default. The reset path is *not* detached: the gradient through :math:`(1 - S[t])` flows, as in
the paper's STBP rule (Eq. 14). The Heaviside step :math:`\Theta` has a zero derivative almost everywhere, so the
backward pass uses a surrogate: the triangle of the paper (App. D, :math:`a = 1`), a sigmoid or an arctan.

Tensors are laid out ``[T, B, ...]``: time first, then batch, then any feature shape.

Layering: the names of the surrogates and resets, :class:`LIFState` and the argument checks live in the private module
``qpsnn_lite._lif_common`` (re-exported here), so that both this module and :mod:`qpsnn_lite.fused` import them and
this module can import ``fused`` (the default time loop of :class:`LIF`) without an import cycle.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._lif_common import RESETS, SURROGATES, LIFState, check_lif_args
from ._lif_common import check_params as _check_params
from ._lif_common import check_surrogate as _check_surrogate
from .fused import lif_fused

__all__ = [
    "SURROGATES",
    "RESETS",
    "spike",
    "lif_multistep",
    "lif_multistep_state",
    "LIFState",
    "LIF",
    "surrogate_derivative",
]

BACKENDS = ("fused", "reference")  # how lif_multistep / LIF run the time loop (same numbers)


# --------------------------------------------------------------------------------------------------------------------
# Surrogate spike functions
# --------------------------------------------------------------------------------------------------------------------
class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward. ``x`` is ``U~ - threshold``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * surrogate_derivative(x, ctx.surrogate, ctx.alpha), None, None


def surrogate_derivative(x: torch.Tensor, surrogate: str = "triangle", alpha: float = 1.0) -> torch.Tensor:
    r"""The surrogate :math:`\partial S / \partial U` evaluated at ``x = U~ - threshold``.

    - ``"triangle"`` (the paper, App. D; the authors' code normalises it to unit area):
      :math:`\frac{1}{a^2}\max(a - |x|, 0)` with :math:`a` = ``alpha`` (at ``alpha = 1`` both forms agree);
    - ``"sigmoid"``: :math:`\alpha\,\sigma(\alpha x)(1 - \sigma(\alpha x))` (here ``alpha`` is a steepness, try 4);
    - ``"arctan"``: :math:`\frac{\alpha}{2} / (1 + (\frac{\pi}{2}\alpha x)^2)` (SpikingJelly's ATan, try 2).

    Each integrates to 1 over the real line. Taught in chapter 02.
    """
    _check_surrogate(surrogate, alpha)
    if surrogate == "triangle":
        return (alpha - x.abs()).clamp(min=0) / (alpha * alpha)
    if surrogate == "sigmoid":
        sig = torch.sigmoid(alpha * x)
        return alpha * sig * (1 - sig)
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def spike(x: torch.Tensor, surrogate: str = "triangle", alpha: float = 1.0) -> torch.Tensor:
    """Heaviside step ``x >= 0`` with the chosen surrogate gradient. ``x`` is ``U~ - threshold``. Chapter 02."""
    _check_surrogate(surrogate, alpha)
    return _SpikeFunction.apply(x, surrogate, float(alpha))


# --------------------------------------------------------------------------------------------------------------------
# Multi-step LIF, functional form
# --------------------------------------------------------------------------------------------------------------------
def lif_multistep_state(
    x: torch.Tensor,
    tau: float = 0.5,
    threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float = 1.0,
    reset: str = "hard",
) -> LIFState:
    """Run the LIF of Eq. 1-3 over the time axis of ``x`` (``[T, B, ...]``, the input current X[t]).

    Returns :class:`LIFState` with the spikes and the pre-reset membrane potentials. ``reset="hard"`` sets the
    potential to 0 after a spike (the paper); ``reset="soft"`` subtracts the threshold instead. Taught in chapter 01.
    """
    check_lif_args(x, tau, threshold, surrogate, alpha, reset)
    u = torch.zeros_like(x[0])
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        u_tilde = tau * u + x[t]  # Eq. 1: charge
        s = spike(u_tilde - threshold, surrogate, alpha)  # Eq. 2: fire
        if reset == "hard":
            u = u_tilde * (1 - s)  # Eq. 3: hard reset, gradient flows through (1 - s)
        else:
            u = u_tilde - threshold * s
        spikes.append(s)
        membrane.append(u_tilde)
    return LIFState(torch.stack(spikes), torch.stack(membrane))


def lif_multistep(
    x: torch.Tensor,
    tau: float = 0.5,
    threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float = 1.0,
    reset: str = "hard",
    backend: str = "fused",
) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of the LIF of Eq. 1-3 driven by input current ``x`` (``[T, B, ...]``). Chapter 01.

    ``backend="reference"`` runs the readable loop of :func:`lif_multistep_state`; ``"fused"`` (the default) computes
    the same spikes and gradients in one autograd node, several times faster (``qpsnn_lite.fused``, appendix).
    """
    if backend == "reference":
        return lif_multistep_state(x, tau, threshold, surrogate, alpha, reset).spikes
    if backend == "fused":
        return lif_fused(x, tau, threshold, surrogate, alpha, reset)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# --------------------------------------------------------------------------------------------------------------------
# Module form
# --------------------------------------------------------------------------------------------------------------------
class LIF(nn.Module):
    r"""Multi-step leaky integrate-and-fire layer: ``[T, B, ...]`` input current -> ``[T, B, ...]`` spikes.

    .. math:: \tilde U[t] = \tau U[t-1] + X[t],\quad S[t] = \Theta(\tilde U[t]-\theta),\quad U[t] = \tilde U[t](1-S[t])

    Args:
        tau: multiplicative leak factor in (0, 1]; the authors' code uses 0.5.
        threshold: firing threshold > 0; the authors' code uses 1.0.
        surrogate: ``"triangle"`` (the paper), ``"sigmoid"`` or ``"arctan"``.
        alpha: surrogate width (triangle) or steepness (sigmoid, arctan); the paper's triangle uses 1.
        reset: ``"hard"`` (the paper) or ``"soft"``.
        backend: ``"fused"`` (default: one autograd node for all T steps, ``qpsnn_lite.fused``) or ``"reference"``
            (the readable loop of :func:`lif_multistep_state`); both give the same spikes and gradients.

    Example:
        >>> lif = LIF(tau=0.5, threshold=1.0)
        >>> lif(torch.full((4, 1, 1), 0.7)).flatten().tolist()
        [0.0, 1.0, 0.0, 1.0]

    Taught in chapter 01; the surrogate in chapter 02.
    """

    def __init__(
        self,
        tau: float = 0.5,
        threshold: float = 1.0,
        surrogate: str = "triangle",
        alpha: float = 1.0,
        reset: str = "hard",
        backend: str = "fused",
    ) -> None:
        super().__init__()
        _check_params(tau, threshold, surrogate, alpha, reset)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.tau = float(tau)
        self.threshold = float(threshold)
        self.surrogate = surrogate
        self.alpha = float(alpha)
        self.reset = reset
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # getattr: modules pickled before `backend` existed still load and run fused
        backend = getattr(self, "backend", "fused")
        return lif_multistep(x, self.tau, self.threshold, self.surrogate, self.alpha, self.reset, backend)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, threshold={self.threshold}, surrogate={self.surrogate!r}, "
            f"alpha={self.alpha}, reset={self.reset!r}"
        ) + ("" if getattr(self, "backend", "fused") == "fused" else f", backend={self.backend!r}")
