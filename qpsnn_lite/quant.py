r"""Uniform weight quantization (the QP-SNN baseline) and ReScaW weight rescaling.

Taught in chapter 03 (the vanilla quantizer, the straight-through estimator, bit-width utilisation) and chapter 04
(ReScaW: the three choices of :math:`\gamma`, per layer or per output channel).

**The vanilla quantizer** (paper Sec. 3, Eq. 4-6). With bit width :math:`b`, :math:`s(b) = 2^b - 1` grid steps and
zero point :math:`z = 1`:

.. math::

    \mathbf W_{int} = \Big\lceil \tfrac{s(b)}{2}\big(\mathrm{clamp}(\mathbf W; -1, 1) + z\big)\Big\rfloor
    \in \{0, 1, \dots, 2^b - 1\}, \qquad
    \hat{\mathbf W} = \frac{2\,\mathbf W_{int}}{s(b)} - z

The dequantized levels are :math:`-1 + 2k/(2^b - 1)`, :math:`k = 0, \dots, 2^b - 1`: an even number of levels, so
**there is no zero level** (2 bits: :math:`\{-1, -\tfrac13, \tfrac13, 1\}`). The clip range :math:`[-1, 1]` is fixed,
and small weights therefore use only a few of the :math:`2^b` integers (Sec. 4.1):

.. math::

    R_{utilize} = \frac{N_{actual}(\mathbf W_{int})}{2^b} \approx \frac{s(b)\,a + 1}{s(b) + 1}, \qquad
    a = \max\big(|P_{0.01}(\mathbf W)|, |P_{0.99}(\mathbf W)|\big)

**ReScaW** (Sec. 4.1, Eq. 9-10) divides the weights by a statistic :math:`\gamma` before quantizing and multiplies back:

.. math::

    \mathbf W_{scaled} = \frac{\mathbf W}{\gamma}, \qquad
    \mathbf W \approx \gamma \cdot \Big(\frac{2}{s(b)}\Big\lceil\tfrac{s(b)}{2}
    \big(\mathrm{clamp}(\tfrac{\mathbf W}{\gamma}; -1, 1) + z\big)\Big\rfloor - z\Big)

with :math:`\gamma` the mean :math:`|w|` (the default), the max :math:`|w|`, or a percentile
:math:`\Psi_x(\mathbf W) = \max(|P_{1-x}(\mathbf W)|, |P_x(\mathbf W)|)`. :math:`\gamma` is a statistic, not a learned
parameter: it is recomputed from the current weights at every call and carries no gradient.

Choices this module makes where the paper is silent or disagrees with the authors' code (reasons: ``docs/design.md``,
"Quantization"):

- ``granularity="channel"`` (one :math:`\gamma` per output channel, as the authors' code) is the default;
  ``"layer"`` is the paper's literal notation.
- Rounding :math:`\lceil\cdot\rfloor` is ``torch.round`` (ties go to the even integer), as in the authors' code.
- ``ste="unmasked"`` (the gradient passes straight through the clamp, as in the authors' code) is the default;
  ``ste="masked"`` is the paper's App. D estimator :math:`\mathbf 1_{|\mathbf W/\gamma| \le 1}`.
- :math:`\gamma` is clamped to at least :data:`GAMMA_MIN` so an all-zero channel does not divide by zero.

(About 500 lines, half of them the docstrings with the equations of chapters 03-04.)
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bits as _check_bits
from ._checks import check_choice as _check_choice

__all__ = [
    "GAMMA_RULES",
    "GRANULARITIES",
    "STE_MODES",
    "GAMMA_MIN",
    "levels",
    "compute_gamma",
    "quantize",
    "quantization_codes",
    "dequantize",
    "bit_utilization",
    "analytic_utilization",
    "QuantConv2d",
    "QuantLinear",
]

GAMMA_RULES = ("mean", "max", "percentile")
GRANULARITIES = ("channel", "layer")
STE_MODES = ("unmasked", "masked")
GAMMA_MIN = 1e-8
"""Smallest :math:`\\gamma` used. An all-zero channel has mean/max |w| = 0; dividing by it would give NaN."""

GammaArg = Union[None, str, float, torch.Tensor]


# --------------------------------------------------------------------------------------------------------------------
# Argument checks: each error says what was wrong, what was expected and what to do.
# --------------------------------------------------------------------------------------------------------------------
def _check_percentile(percentile: Any) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0.5 < percentile <= 1:
        raise ValueError(
            f"percentile must be a number in (0.5, 1], got {percentile!r}; "
            "0.99 means gamma = max(|P_0.01(w)|, |P_0.99(w)|)"
        )
    return float(percentile)


def _check_weight(w: Any) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}; wrap it with torch.as_tensor(w)")
    if not w.is_floating_point():
        raise TypeError(f"w must be a floating-point tensor, got dtype {w.dtype}; convert it with w.float()")
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}); pass a tensor with at least one weight")
    if torch.isnan(w).any():
        raise ValueError("w contains NaN; check the learning rate or load a clean checkpoint")
    if torch.isinf(w).any():
        raise ValueError("w contains inf; check the learning rate or load a clean checkpoint")


def _check_ste_scale(ste_scale: Any) -> bool:
    if not isinstance(ste_scale, bool):
        raise TypeError(f"ste_scale must be True or False, got {ste_scale!r}")
    return ste_scale


def _check_layer_gamma(gamma: Any) -> Optional[str]:
    if gamma is not None and (not isinstance(gamma, str) or gamma not in GAMMA_RULES):
        raise ValueError(f"gamma must be None (vanilla quantizer) or one of {GAMMA_RULES} for a layer, got {gamma!r}")
    return gamma


# The checks a quantized layer runs when one of its settings is assigned (see _QuantMixin).
_SETTING_CHECKS = {
    "bits": _check_bits,
    "gamma": _check_layer_gamma,
    "granularity": lambda value: _check_choice("granularity", value, GRANULARITIES),
    "ste": lambda value: _check_choice("ste", value, STE_MODES),
    "ste_scale": _check_ste_scale,
    "percentile": lambda value: _check_percentile(value),
}


# --------------------------------------------------------------------------------------------------------------------
# The grid and gamma
# --------------------------------------------------------------------------------------------------------------------
def _to_levels(codes: torch.Tensor, steps: int) -> torch.Tensor:
    """Eq. 5: :math:`2 W_{int} / s - z`. The one place this formula is written, so levels agree bit for bit."""
    return 2.0 * codes / steps - 1.0


def levels(bits: int) -> torch.Tensor:
    r"""The :math:`2^b` dequantized levels :math:`-1 + 2k/(2^b - 1)`, :math:`k = 0..2^b-1`, as float32.

    >>> levels(2)  # no zero level
    tensor([-1.0000, -0.3333,  0.3333,  1.0000])

    Taught in chapter 03.
    """
    bits = _check_bits(bits)
    return _to_levels(torch.arange(2**bits, dtype=torch.float32), 2**bits - 1)


def compute_gamma(
    w: torch.Tensor, rule: str = "mean", granularity: str = "channel", percentile: float = 0.99
) -> torch.Tensor:
    r"""The ReScaW scale :math:`\gamma` of weights ``w`` (paper Sec. 4.1, the three options of Eq. 9).

    - ``"mean"`` (default, the paper's best): :math:`\gamma = \|\mathbf W\|_1 / |\mathbf W|`, the mean :math:`|w|`;
    - ``"max"``: :math:`\gamma = \max |w|`;
    - ``"percentile"``: :math:`\gamma = \Psi_x(\mathbf W) = \max(|P_{1-x}(\mathbf W)|, |P_x(\mathbf W)|)` with
      :math:`x` = ``percentile`` (linear interpolation, as ``numpy.quantile``).

    ``granularity="channel"`` gives one value per output channel (dim 0) with shape ``[C_out, 1, 1, ...]``;
    ``"layer"`` gives one value for the whole tensor as a 0-d tensor. Both broadcast against ``w``. (For a 0-d ``w``
    the two coincide.)

    The result is detached (no gradient flows into :math:`\gamma`) and clamped to at least :data:`GAMMA_MIN`
    (or the dtype's smallest normal number, if larger), so an all-zero channel yields a tiny positive :math:`\gamma`
    instead of a division by zero.

    Taught in chapter 04.
    """
    _check_weight(w)
    _check_choice("rule", rule, GAMMA_RULES)
    _check_choice("granularity", granularity, GRANULARITIES)
    return _gamma(w, rule, granularity, _check_percentile(percentile))


def _gamma(w: torch.Tensor, rule: str, granularity: str, x: float) -> torch.Tensor:
    """:func:`compute_gamma` without the argument checks (for the forward pass of a layer whose settings were
    checked when they were set)."""
    w = w.detach()
    per_channel = granularity == "channel" and w.dim() >= 1
    # Rows are the groups that share one gamma: output channels, or the whole tensor.
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    if rule == "mean":
        gamma = rows.abs().mean(dim=1)
    elif rule == "max":
        gamma = rows.abs().amax(dim=1)
    else:
        # float64 for the quantile: exact enough to match numpy, and torch.quantile wants q and input in one dtype.
        q = torch.tensor([1.0 - x, x], dtype=torch.float64, device=w.device)
        gamma = torch.quantile(rows.double(), q, dim=1).abs().amax(dim=0).to(w.dtype)

    gamma = gamma.clamp(min=max(GAMMA_MIN, torch.finfo(w.dtype).tiny))
    if per_channel:
        return gamma.reshape([w.shape[0]] + [1] * (w.dim() - 1))
    return gamma.reshape(())


def _resolve_gamma(
    w: torch.Tensor, gamma: GammaArg, granularity: str, percentile: float
) -> Optional[torch.Tensor]:
    """Turn the ``gamma`` argument (None, rule name, number or tensor) into None or a detached tensor shaped for ``w``."""
    _check_choice("granularity", granularity, GRANULARITIES)
    _check_percentile(percentile)
    if gamma is None:
        return None
    if isinstance(gamma, str):
        if gamma not in GAMMA_RULES:
            raise ValueError(f"gamma must be None, one of {GAMMA_RULES} or a positive tensor, got {gamma!r}")
        return compute_gamma(w, gamma, granularity, percentile)
    if isinstance(gamma, numbers.Real) and not isinstance(gamma, bool):
        gamma = torch.tensor(float(gamma))
    if not isinstance(gamma, torch.Tensor):
        raise TypeError(
            f"gamma must be None, one of {GAMMA_RULES}, a positive number or a tensor, got {type(gamma).__name__}"
        )
    gamma = gamma.detach().to(dtype=w.dtype, device=w.device)
    try:
        broadcast = torch.broadcast_shapes(gamma.shape, w.shape)
    except (RuntimeError, ValueError):
        broadcast = None
    if broadcast != w.shape:
        raise ValueError(
            f"gamma has shape {tuple(gamma.shape)}, which does not broadcast to w's shape {tuple(w.shape)}; "
            f"use shape {[w.shape[0]] + [1] * (w.dim() - 1) if w.dim() else []} (per channel) or a 0-d tensor (per layer)"
        )
    if not (torch.isfinite(gamma).all() and (gamma > 0).all()):
        raise ValueError(
            "gamma must be positive and finite everywhere; compute it with compute_gamma(w), which clamps it to "
            f"at least {GAMMA_MIN}"
        )
    return gamma


def _code_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype integer codes are computed in: at least float32. In float16 the codes of 16 bits overflow
    (:math:`2^{16} - 1 > 65504`) and bfloat16 counts integers exactly only up to 256, so at 9-16 bits the codes
    would leave the grid 0..2^b-1; float32 counts exactly up to :math:`2^{24}`."""
    return torch.promote_types(dtype, torch.float32)


def _scaled(w: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
    """:math:`W / \\gamma` (or ``W``) in :func:`_code_dtype`."""
    dtype = _code_dtype(w.dtype)
    return w.to(dtype) if gamma is None else w.to(dtype) / gamma.to(dtype)


def _integer_codes(scaled: torch.Tensor, bits: int) -> torch.Tensor:
    """Eq. 4: :math:`W_{int} = \\lceil \\tfrac{s}{2}(\\mathrm{clamp}(W; -1, 1) + 1) \\rfloor`, as floats in 0..s
    (``scaled`` comes from :func:`_scaled`, so in at least float32)."""
    steps = 2**bits - 1
    return torch.round(steps / 2 * (scaled.clamp(-1.0, 1.0) + 1.0))


# --------------------------------------------------------------------------------------------------------------------
# Fake quantization with a straight-through estimator
# --------------------------------------------------------------------------------------------------------------------
class _FakeQuantize(torch.autograd.Function):
    """Forward: exactly :math:`\\gamma \\cdot \\hat W` (Eq. 6 / Eq. 10). Backward: the chosen straight-through rule.

    A hand-written Function rather than the ``w + (q - w).detach()`` trick: that trick adds and subtracts ``w`` and
    can move the result off the grid by one rounding error.
    """

    @staticmethod
    def forward(ctx, w, gamma, bits, ste, ste_scale):  # type: ignore[override]
        scaled = _scaled(w, gamma)  # codes and levels in at least float32, then back to w's dtype
        w_hat = _to_levels(_integer_codes(scaled, bits), 2**bits - 1)
        if gamma is not None:
            w_hat = gamma.to(w_hat.dtype) * w_hat
        w_hat = w_hat.to(w.dtype)
        ctx.ste, ctx.ste_scale, ctx.has_gamma = ste, ste_scale, gamma is not None
        mask = scaled.abs() <= 1.0 if ste == "masked" else None
        ctx.save_for_backward(mask, gamma)
        return w_hat

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        mask, gamma = ctx.saved_tensors
        grad = grad_output
        if ctx.ste == "masked":
            grad = grad * mask  # paper, App. D: identity inside the clip range, zero outside
        if ctx.ste_scale and ctx.has_gamma:
            grad = grad / gamma  # the authors' code: d(W/gamma)/dW
        return grad, None, None, None, None


def quantize(
    w: torch.Tensor,
    bits: int,
    gamma: GammaArg = None,
    granularity: str = "channel",
    ste: str = "unmasked",
    ste_scale: bool = False,
    percentile: float = 0.99,
) -> torch.Tensor:
    r"""Fake-quantized copy of ``w``: the values lie on the :math:`2^b`-level grid (times :math:`\gamma`).

    Without ``gamma`` this is the vanilla quantizer, Eq. 6:

    .. math:: \hat{\mathbf W} = \frac{2}{s(b)}\Big\lceil\tfrac{s(b)}{2}\big(\mathrm{clamp}(\mathbf W;-1,1)+1\big)
              \Big\rfloor - 1, \qquad s(b) = 2^b - 1

    With ``gamma`` it is ReScaW, Eq. 9-10: :math:`\gamma \cdot \hat{\mathbf W}(\mathbf W / \gamma)`.

    Args:
        w: floating-point weights of any shape (dim 0 is the output channel).
        bits: bit width :math:`b`, an integer in 1..16 (the paper uses 8, 4 and 2).
        gamma: ``None`` (vanilla), a rule name from :data:`GAMMA_RULES` (recomputed from the current ``w`` at every
            call, see :func:`compute_gamma`), a positive number, or a positive tensor broadcastable to ``w``.
            A given tensor is detached: no gradient flows into it.
        granularity: ``"channel"`` or ``"layer"``; only used when ``gamma`` is a rule name.
        ste: straight-through estimator for the backward pass.
            ``"unmasked"`` (default, the authors' code): :math:`\partial L/\partial \mathbf W =
            \partial L/\partial \hat{\mathbf W}`, the gradient passes through the clamp.
            ``"masked"`` (the paper, App. D): :math:`\partial L/\partial \mathbf W = \partial L/\partial
            \hat{\mathbf W} \cdot \mathbf 1_{|\mathbf W/\gamma| \le 1}` (without gamma :math:`\mathbf 1_{|\mathbf W|\le 1}`).
        ste_scale: also divide the gradient by :math:`\gamma`, as the authors' code does (its backward treats the
            output as :math:`\mathbf W/\gamma`). The factor is 10-100x for typical weights and Adam, which the code
            uses, mostly cancels it; with SGD it acts like a larger learning rate. No effect without ``gamma``.
        percentile: :math:`x` of the ``"percentile"`` rule, in (0.5, 1].

    Returns:
        A tensor of ``w``'s shape and dtype.

    Taught in chapter 03 (vanilla, STE) and chapter 04 (ReScaW).
    """
    _check_weight(w)
    bits = _check_bits(bits)
    _check_choice("ste", ste, STE_MODES)
    _check_ste_scale(ste_scale)
    gamma_tensor = _resolve_gamma(w, gamma, granularity, percentile)
    return _FakeQuantize.apply(w, gamma_tensor, bits, ste, ste_scale)


def quantization_codes(
    w: torch.Tensor,
    bits: int,
    gamma: GammaArg = None,
    granularity: str = "channel",
    percentile: float = 0.99,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    r"""The integer codes :math:`\mathbf W_{int} \in \{0, \dots, 2^b - 1\}` (Eq. 4, of :math:`\mathbf W/\gamma` with
    ReScaW) and the :math:`\gamma` used, for storage and export.

    Always returns ``(codes, gamma)``: ``codes`` has ``w``'s shape and dtype ``torch.uint8`` for ``bits <= 8``, else
    ``torch.int32``; ``gamma`` is the detached tensor used (``None`` for the vanilla quantizer). The fake-quantized
    weight is recovered exactly by ``dequantize(codes, bits, gamma) == quantize(w, bits, gamma)``.

    Taught in chapter 03; used for export in chapter 08.
    """
    _check_weight(w)
    bits = _check_bits(bits)
    gamma_tensor = _resolve_gamma(w, gamma, granularity, percentile)
    with torch.no_grad():
        codes = _integer_codes(_scaled(w, gamma_tensor), bits)
    return codes.to(torch.uint8 if bits <= 8 else torch.int32), gamma_tensor


def dequantize(codes: torch.Tensor, bits: int, gamma: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Eq. 5 (times :math:`\gamma`): :math:`\gamma\,(2\,\mathbf W_{int}/s(b) - 1)`, the inverse of
    :func:`quantization_codes`. Returns float32, or ``gamma``'s dtype when given. Taught in chapter 03."""
    bits = _check_bits(bits)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.numel() and (codes.min() < 0 or codes.max() > 2**bits - 1):
        raise ValueError(f"codes must lie in 0..{2**bits - 1} for bits={bits}; got {codes.min()}..{codes.max()}")
    dtype = gamma.dtype if isinstance(gamma, torch.Tensor) else torch.float32
    w_hat = _to_levels(codes.to(dtype), 2**bits - 1)
    return w_hat if gamma is None else gamma * w_hat


# --------------------------------------------------------------------------------------------------------------------
# Bit-width utilisation (Sec. 4.1)
# --------------------------------------------------------------------------------------------------------------------
def bit_utilization(
    w: torch.Tensor,
    bits: int,
    gamma: GammaArg = None,
    granularity: str = "channel",
    percentile: float = 0.99,
) -> float:
    r"""Measured :math:`R_{utilize} = N_{actual}(\mathbf W_{int}) / 2^b`: the fraction of the :math:`2^b` integer
    codes that the weights actually use, counted over the whole tensor (with ``gamma``, the codes of
    :math:`\mathbf W/\gamma`). In (0, 1]. Taught in chapter 03 (vanilla) and chapter 04 (ReScaW reaches 1).
    """
    codes, _ = quantization_codes(w, bits, gamma, granularity, percentile)
    return torch.unique(codes).numel() / 2 ** _check_bits(bits)


def analytic_utilization(w: torch.Tensor, bits: int) -> float:
    r"""The paper's approximation (Sec. 4.1) of the vanilla quantizer's utilisation:

    .. math:: R_{utilize} \approx \frac{s(b)\,a + 1}{s(b) + 1}, \qquad
              a = \max\big(|P_{0.01}(\mathbf W)|, |P_{0.99}(\mathbf W)|\big), \quad s(b) = 2^b - 1

    clipped to at most 1 (weights wider than the clip range use every code). The 1st/99th percentiles leave outliers
    out, so the measured :func:`bit_utilization` is usually somewhat higher. Taught in chapter 03.
    """
    _check_weight(w)
    bits = _check_bits(bits)
    steps = 2**bits - 1
    a = float(compute_gamma(w, "percentile", "layer", percentile=0.99))
    return min((steps * a + 1) / (steps + 1), 1.0)


# --------------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------------
class _QuantMixin:
    """Shared settings of :class:`QuantConv2d` and :class:`QuantLinear`.

    Only plain attributes are stored, never shapes: pruning may swap ``weight`` for a narrower Parameter, and
    ``deepcopy``/``state_dict`` need nothing special (the state dict holds just ``weight`` and ``bias``).

    The settings (``bits``, ``gamma``, ``granularity``, ``ste``, ``ste_scale``, ``percentile``) are checked when they
    are set, in the constructor or later (``conv.bits = 2``), so the forward pass calls the quantizer's unchecked core
    (``docs/design.md``, "Checks at the edges"). A NaN in the weights is caught by ``train.fit`` after every epoch.
    """

    weight: nn.Parameter

    def _set_quant(
        self, bits: int, gamma: Optional[str], granularity: str, ste: str, ste_scale: bool, percentile: float
    ) -> None:
        self.bits, self.gamma, self.granularity = bits, gamma, granularity
        self.ste, self.ste_scale, self.percentile = ste, ste_scale, percentile

    def __setattr__(self, name: str, value: Any) -> None:
        check = _SETTING_CHECKS.get(name)
        super().__setattr__(name, value if check is None else check(value))  # type: ignore[misc]

    def _quantize_weight(self) -> torch.Tensor:
        w = self.weight
        gamma = None if self.gamma is None else _gamma(w, self.gamma, self.granularity, self.percentile)
        return _FakeQuantize.apply(w, gamma, self.bits, self.ste, self.ste_scale)

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight the forward pass uses, without gradient."""
        with torch.no_grad():
            return self._quantize_weight()

    def _quant_repr(self) -> str:
        text = f"bits={self.bits}, gamma={self.gamma!r}"
        if self.gamma is not None:
            text += f", granularity={self.granularity!r}"
        if self.gamma == "percentile":
            text += f", percentile={self.percentile}"
        text += f", ste={self.ste!r}"
        return text + (", ste_scale=True" if self.ste_scale else "")

    def extra_repr(self) -> str:
        # super() is the layer class after this mixin (nn.Conv2d or nn.Linear): its repr, then the quantizer's.
        return f"{super().extra_repr()}, {self._quant_repr()}"  # type: ignore[misc]


class QuantConv2d(_QuantMixin, nn.Conv2d):
    r"""A 2-D convolution whose weight is fake-quantized at every forward pass ("QConv" in the paper's Tables 9-11).

    ``gamma=None`` gives the vanilla quantizer (Eq. 6, the paper's baseline); a rule name gives ReScaW (Eq. 10) with
    :math:`\gamma` recomputed from the current weight. See :func:`quantize` for ``granularity``, ``ste``,
    ``ste_scale`` and ``percentile``. Remaining keyword arguments (``dilation``, ``groups``, ``padding_mode``,
    ``device``, ``dtype``) go to :class:`torch.nn.Conv2d`. No bias by default: in the paper BN follows every QConv.

    Example:
        >>> conv = QuantConv2d(3, 8, 3, padding=1, bits=2, gamma="mean")
        >>> conv(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 8, 8, 8])

    Taught in chapter 03 (``gamma=None``) and chapter 04 (ReScaW).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Tuple[int, int]],
        stride: Union[int, Tuple[int, int]] = 1,
        padding: Union[int, Tuple[int, int], str] = 0,
        bias: bool = False,
        bits: int = 4,
        gamma: Optional[str] = "mean",
        granularity: str = "channel",
        ste: str = "unmasked",
        ste_scale: bool = False,
        percentile: float = 0.99,
        **conv_kwargs: Any,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias, **conv_kwargs)
        self._set_quant(bits, gamma, granularity, ste, ste_scale, percentile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # _conv_forward is F.conv2d with this module's stride/padding/dilation/groups (and padding_mode); every shape
        # comes from the weight tensor itself.
        return self._conv_forward(x, self._quantize_weight(), self.bias)


class QuantLinear(_QuantMixin, nn.Linear):
    r"""A linear layer whose weight is fake-quantized at every forward pass; same options as :class:`QuantConv2d`.

    The paper keeps its classifier at full precision, so this exists for completeness and experiments.
    ``bias`` defaults to True, as in :class:`torch.nn.Linear`. Taught in chapter 04.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bits: int = 4,
        gamma: Optional[str] = "mean",
        granularity: str = "channel",
        ste: str = "unmasked",
        ste_scale: bool = False,
        percentile: float = 0.99,
        **linear_kwargs: Any,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, **linear_kwargs)
        self._set_quant(bits, gamma, granularity, ste, ste_scale, percentile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._quantize_weight(), self.bias)
