"""What every LIF implementation shares: the names of the surrogates and resets, the result type, the argument checks.

The bottom layer of the LIF code, importing nothing from the package. Two implementations build on it:
:mod:`qpsnn_lite.fused` (the fused autograd node of the performance appendix) and :mod:`qpsnn_lite.neurons` (the
readable LIF of chapter 01, whose ``LIF`` module and ``lif_multistep`` run the fused node by default). Keeping these
pieces here, rather than in ``neurons``, lets ``neurons`` import ``fused`` at the top of the file without a cycle.
The public names are re-exported by :mod:`qpsnn_lite.neurons`; import them from there.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["SURROGATES", "RESETS", "LIFState", "check_lif_args", "check_params", "check_surrogate"]

SURROGATES = ("triangle", "sigmoid", "arctan")
RESETS = ("hard", "soft")


class LIFState(NamedTuple):
    """Everything a multi-step LIF pass produced, each ``[T, B, ...]``.

    ``spikes`` are S[t]; ``membrane`` is the pre-reset potential U~[t] (what the SCA criterion of chapter 05 scores).
    """

    spikes: torch.Tensor
    membrane: torch.Tensor


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_surrogate(surrogate: str, alpha: float) -> None:
    """Raise ``ValueError`` unless ``surrogate`` is one of :data:`SURROGATES` and ``alpha`` a finite number > 0."""
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    if not _is_real(alpha) or alpha <= 0:
        raise ValueError(f"alpha (the surrogate width) must be a number > 0, got {alpha!r}")


def check_params(tau, threshold, surrogate, alpha, reset) -> None:
    """Raise ``ValueError`` naming the first LIF parameter out of range."""
    if not _is_real(tau) or not 0 < tau <= 1:
        raise ValueError(f"tau (the leak factor) must be a number in (0, 1], got {tau!r}; the paper's code uses 0.5")
    if not _is_real(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a number > 0, got {threshold!r}; the paper's code uses 1.0")
    check_surrogate(surrogate, alpha)
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def check_lif_args(x, tau, threshold, surrogate, alpha, reset) -> None:
    """Validate the input current and the LIF parameters (shared by every LIF implementation)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"x must have a time axis and a batch axis, shape [T, B, ...], got shape {tuple(x.shape)}; "
            "for a single sample use x.unsqueeze(1), for a static image repeat it over T first"
        )
    if x.shape[0] == 0:
        raise ValueError("x has T = 0 time steps; give at least one")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    check_params(tau, threshold, surrogate, alpha, reset)
