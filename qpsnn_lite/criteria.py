r"""Pruning criteria: the equations that score a channel, the registry of criteria, and the stability measure.

Taught in chapter 05 (the SCA baseline, weight-L1 / firing-rate / random criteria, batch-to-batch instability) and
chapter 06 (SVS, the paper's criterion, and its stability, Eq. 15). :mod:`qpsnn_lite.scoring` runs a criterion over a
model and a loader; :mod:`qpsnn_lite.surgery` removes the channels. All three are re-exported by
:mod:`qpsnn_lite.prune`.

The criteria score every output channel :math:`f` of a layer :math:`l` on a few mini-batches; the channels with the
lowest scores are removed. With spikes :math:`\mathbf S^{l,f}[t] \in \{0,1\}^{h\times w}` (the LIF output) and the
pre-reset membrane potential :math:`\tilde{\mathbf U}^{l,f}[t]` (the LIF state before the reset of Eq. 3):

- ``"svs"`` (the paper, Eq. 11-13): the :math:`\epsilon`-rank of the time-averaged spike map, averaged over samples,

  .. math::

      \mathbf S^{l,f}_{avg} = \frac1T\sum_{t=1}^{T}\mathbf S^{l,f}[t] = \mathbf P\boldsymbol\Sigma\mathbf Q^\top,
      \qquad
      \mathrm{Score}(\mathbf W^{l,f}) = \mathbb E_B\Big[\sum_{i=1}^{\min(h,w)}\mathbb I(\sigma_i > \epsilon)\Big],
      \quad \epsilon = 10^{-6};

- ``"sca"`` (Li et al. 2024, the paper's baseline, Eq. 7):
  :math:`\frac{1}{BT}\sum_{b}\sum_{t}\|\tilde{\mathbf U}^{l,f}[t]\|_1`, the L1 norm of the membrane map;
- ``"l1"``: the L1 norm of the kernel's weights :math:`\|\mathbf W^{l,f}\|_1` (Li et al. 2016; no data needed);
- ``"firing_rate"``: the mean of :math:`\mathbf S^{l,f}[t]` over samples, time and positions;
- ``"random"``: uniform random scores from a seeded generator (the control every criterion must beat).

**Criteria are plug-ins.** Each is one :class:`Criterion` in :data:`CRITERIA`, registered once with
:func:`register_criterion`: a per-sample function, whether it needs data, and optionally its own finalisation
(``finalize``) and tie-break statistics (``tie_breaks``). SVS's ``tie_break="sum_sv"`` is such a plug-in option, not a
special case of the scoring machinery. A registered criterion is accepted everywhere a criterion name is:
``prune.score``, ``pipeline.Config.criterion`` and the command line's ``--criterion``.

**Choices made where the paper is silent** (``docs/design.md``, "Pruning"):

- :math:`\epsilon` is absolute and the singular values are computed in float64. The authors' code called
  ``matrix_rank`` with its default *relative* tolerance; in float32 the round-off of a zero singular value of a
  32x32 map (about :math:`10^{-5}`) already exceeds :math:`\epsilon = 10^{-6}`.
- Scores are averaged over *all samples* seen (:mod:`qpsnn_lite.scoring`).
- **Ties** (frequent: an :math:`\epsilon`-rank of a 2x2 map is 0, 1 or 2) are broken by channel index
  (:func:`qpsnn_lite.surgery.keep_indices`); ``score(..., tie_break="sum_sv")`` (off by default) first breaks ties of
  the SVS score by the sum of singular values :math:`\sum_i \sigma_i` (the nuclear norm).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .layers import PrunableLayer
from .neurons import lif_multistep_state

__all__ = ["CRITERIA", "Criterion", "LayerActivity", "register_criterion", "epsilon_rank", "svs_score", "sca_score",
           "firing_rate_score", "l1_norm_score", "avg_cos_similarity"]


# ------------------------------------------------------------------------------------------------------------------
# The criteria on tensors
# ------------------------------------------------------------------------------------------------------------------
def _check_spikes(spikes: Tensor, argument: str = "spikes") -> None:
    if not isinstance(spikes, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor [T, B, C, H, W], got {type(spikes).__name__}")
    if spikes.dim() != 5:
        raise ValueError(f"{argument} must be 5-D [T, B, C, H, W], got shape {tuple(spikes.shape)}")
    if spikes.numel() and not (spikes == 0).logical_or_(spikes == 1).all():
        raise ValueError(f"{argument} must be binary (every entry 0 or 1), as a LIF layer's output spikes are")


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps (the singular-value threshold) must be a number >= 0, got {eps!r}; the paper uses 1e-6")
    return float(eps)


def _time_averaged_maps(spikes: Tensor) -> Tensor:
    """``[T, B, C, H, W]`` spikes -> ``[B * C, H, W]`` firing-rate maps in float64 (Eq. 11)."""
    steps, batch, channels, height, width = spikes.shape
    counts = spikes.sum(0, dtype=torch.float64)  # spike counts: exact integers
    return (counts / steps).reshape(batch * channels, height, width)


def _singular_values(maps: Tensor) -> Tensor:
    """Singular values of every ``[H, W]`` map of ``[N, H, W]``, in one batched call. All-zero maps (frequent in
    sparse layers) are skipped: their singular values are exactly 0."""
    values = maps.new_zeros(maps.shape[0], min(maps.shape[-2:]))
    nonzero = maps.flatten(1).any(1)
    if nonzero.any():
        values[nonzero] = torch.linalg.svdvals(maps[nonzero])
    return values


def epsilon_rank(spikes: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Per sample and channel, the number of singular values above ``eps`` of the time-averaged spike map
    :math:`\mathbf S_{avg} = \frac1T\sum_t \mathbf S[t]` (Eq. 11-12): ``[T, B, C, H, W]`` -> ``LongTensor[B, C]``.

    All ``B * C`` maps go through one batched ``torch.linalg.svdvals`` in float64. Taught in chapter 06.
    """
    _check_spikes(spikes)
    eps = _check_eps(eps)
    _, batch, channels = spikes.shape[:3]
    return (_singular_values(_time_averaged_maps(spikes)) > eps).sum(-1).reshape(batch, channels)


def svs_score(spikes: Tensor, eps: float = 1e-6) -> Tensor:
    r"""The SVS score of every channel (Eq. 11-13): the mean over the batch of the :math:`\epsilon`-rank of the
    channel's time-averaged ``H x W`` spike map.

    .. math:: \mathrm{Score}(\mathbf W^{l,f}) = \mathbb E_B\Big[\sum_{i}\mathbb I(\sigma_i > \epsilon)\Big],
              \qquad \mathbf S^{l,f}_{avg} = \tfrac1T\textstyle\sum_t \mathbf S^{l,f}[t] = \mathbf P\boldsymbol\Sigma
              \mathbf Q^\top

    Args:
        spikes: binary LIF output ``[T, B, C, H, W]``.
        eps: absolute singular-value threshold (the paper: 1e-6).

    Returns:
        ``Tensor[C]`` (float64), each value in ``[0, min(H, W)]``.

    Example:
        >>> s = torch.zeros(1, 1, 2, 3, 3); s[0, 0, 0] = torch.eye(3)  # channel 0: identity map, channel 1: silent
        >>> svs_score(s).tolist()
        [3.0, 0.0]

    Taught in chapter 06.
    """
    return epsilon_rank(spikes, eps).to(torch.float64).mean(0)


def _singular_value_sum(spikes: Tensor) -> Tensor:
    """Per sample and channel, the sum of the singular values (nuclear norm) of the time-averaged map: ``[B, C]``."""
    _check_spikes(spikes)
    _, batch, channels = spikes.shape[:3]
    return _singular_values(_time_averaged_maps(spikes)).sum(-1).reshape(batch, channels)


def _sca_per_sample(membrane: Tensor) -> Tensor:
    if not isinstance(membrane, Tensor):
        raise TypeError(f"membrane must be a torch.Tensor [T, B, C, H, W], got {type(membrane).__name__}")
    if membrane.dim() != 5:
        raise ValueError(f"membrane must be 5-D [T, B, C, H, W], got shape {tuple(membrane.shape)}")
    return membrane.to(torch.float64).abs().sum((-2, -1)).mean(0)  # [B, C]: L1 over H x W, mean over T


def sca_score(membrane: Tensor) -> Tensor:
    r"""The SCA score (Li et al. 2024; the paper's Eq. 7): the L1 norm of each channel's pre-reset membrane map,
    averaged over batch and time.

    .. math:: \mathrm{Score}_{SCA}(\mathbf W^{l,f}) = \frac{1}{BT}\sum_{b=1}^{B}\sum_{t=1}^{T}
              \big\|\tilde{\mathbf U}^{l,f}[t]\big\|_1

    ``membrane``: ``[T, B, C, H, W]`` (``neurons.lif_multistep_state(...).membrane``) -> ``Tensor[C]`` (float64).
    Taught in chapter 05.
    """
    return _sca_per_sample(membrane).mean(0)


def firing_rate_score(spikes: Tensor) -> Tensor:
    """Mean firing rate of every channel over time, batch and positions: ``[T, B, C, H, W]`` -> ``Tensor[C]``.
    Chapter 05."""
    _check_spikes(spikes)
    return spikes.to(torch.float64).mean((0, 1, 3, 4))


def _effective_weight(conv: nn.Conv2d) -> Tensor:
    """The weight the forward pass uses: the fake-quantized one for a ``QuantConv2d``."""
    quantized = getattr(conv, "quantized_weight", None)
    return quantized() if callable(quantized) else conv.weight.detach()


def l1_norm_score(conv: nn.Conv2d) -> Tensor:
    r"""L1 norm of each output kernel, :math:`\|\mathbf W^{l,f}\|_1` (Li et al. 2016), of the weight the forward pass
    uses (the fake-quantized one for a ``QuantConv2d``): ``Tensor[C_out]`` (float64). Chapter 05."""
    return _effective_weight(conv).to(torch.float64).abs().sum((1, 2, 3)).cpu()


# ------------------------------------------------------------------------------------------------------------------
# Criteria as plug-ins
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class LayerActivity:
    """What a criterion sees of one prunable layer on one mini-batch.

    ``spikes`` is the LIF output ``[T, B, C, H, W]`` and ``current`` the LIF input ``[T, B, C, H, W]`` (BN(conv(.)),
    plus the shortcut for a ResNet block output); both are None for criteria that need no data. ``membrane`` is the
    pre-reset potential, recomputed from ``current`` with the layer's own LIF parameters on first use.
    """

    layer: PrunableLayer
    spikes: Tensor | None
    current: Tensor | None
    eps: float
    generator: torch.Generator

    @property
    def membrane(self) -> Tensor:
        if self.current is None:
            raise ValueError("this criterion needs data: the membrane potential is only known during a forward pass")
        lif = self.layer.lif
        return lif_multistep_state(
            self.current, lif.tau, lif.threshold, lif.surrogate, lif.alpha, lif.reset
        ).membrane


SCORE = "score"  # the key of a criterion's own per-sample score among the sums handed to its finalisation


def mean_over_samples(sums: Mapping[str, Tensor], total: float, tie_break: str | None) -> Tensor:
    """The default finalisation: the criterion's summed per-sample scores divided by the number of samples."""
    return sums[SCORE] / total


@dataclass(frozen=True)
class Criterion:
    """A pruning criterion, registered once in :data:`CRITERIA` (see :func:`register_criterion`).

    - ``function(activity)`` returns per-sample scores ``[B, C]`` (``[C]`` when ``needs_data`` is False); higher
      means "keep".
    - ``tie_breaks``: ``{option: statistic}``, the options the criterion offers for ``score(..., tie_break=option)``;
      each statistic is a per-sample function like ``function``, collected only when its option is asked for.
    - ``finalize(sums, total, tie_break)`` turns the sums over every sample seen (``sums[SCORE]`` for ``function``,
      ``sums[option]`` for the chosen tie-break statistic; each ``Tensor[C]``, float64) into the layer's scores;
      the default is the mean over samples.
    """

    function: Callable[[LayerActivity], Tensor]
    needs_data: bool = True
    description: str = ""
    tie_breaks: Mapping[str, Callable[[LayerActivity], Tensor]] = field(default_factory=dict)
    finalize: Callable[[Mapping[str, Tensor], float, "str | None"], Tensor] = mean_over_samples


#: ``CRITERIA[name]``: the pruning criteria :func:`qpsnn_lite.scoring.score` knows. Add one with
#: :func:`register_criterion`; ``pipeline.Config`` and the command line accept every name registered here.
CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, needs_data: bool = True, description: str = "",
                       tie_breaks: Mapping[str, Callable[[LayerActivity], Tensor]] | None = None,
                       finalize: Callable | None = None) -> Callable:
    """Decorator: register ``function(activity: LayerActivity) -> Tensor[B, C]`` (per-sample scores; ``Tensor[C]``
    when ``needs_data=False``) as criterion ``name`` of ``prune.score``. Higher scores mean "keep". Chapter 05.
    ``tie_breaks`` and ``finalize`` are described in :class:`Criterion`. Decorating a ready :class:`Criterion`
    registers it as it is (the other arguments are then ignored).

    Example (the largest spike count of any neuron of the channel)::

        @register_criterion("peak_count")
        def peak_count(activity):
            return activity.spikes.sum(0).amax((-2, -1))  # [B, C]

        prune.score(model, loader, "peak_count")
        pipeline.run(pipeline.Config(criterion="peak_count"))
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a criterion's name must be a non-empty string, got {name!r}")

    def decorator(function):
        if isinstance(function, Criterion):
            CRITERIA[name] = function
        else:
            CRITERIA[name] = Criterion(function, needs_data, description or (function.__doc__ or "").strip(),
                                       dict(tie_breaks or {}), finalize or mean_over_samples)
        return function

    return decorator


def _svs_finalize(sums: Mapping[str, Tensor], total: float, tie_break: str | None) -> Tensor:
    r"""SVS's finalisation. With ``tie_break="sum_sv"`` it adds :math:`rac{0.5}{N}\,rac{\Sigma}{\max\Sigma + 1}`
    to every score, :math:`\Sigma` being the channel's mean sum of singular values and :math:`N` the number of
    samples: SVS scores are multiples of :math:`1/N`, so this orders tied channels by :math:`\Sigma` and changes no
    other order."""
    if tie_break is None:
        return mean_over_samples(sums, total, tie_break)
    counts = sums[SCORE].round()  # integers: sums of eps-ranks
    secondary = sums[tie_break] / total
    return (counts + 0.5 * secondary / (secondary.max() + 1)) / total


@register_criterion("svs", description="eps-rank of the time-averaged spike map (the paper, Eq. 11-13)",
                    tie_breaks={"sum_sv": lambda activity: _singular_value_sum(activity.spikes)},
                    finalize=_svs_finalize)
def _svs(activity: LayerActivity) -> Tensor:
    return epsilon_rank(activity.spikes, activity.eps)


@register_criterion("sca", description="L1 norm of the pre-reset membrane map (Li et al. 2024; Eq. 7)")
def _sca(activity: LayerActivity) -> Tensor:
    return _sca_per_sample(activity.membrane)


@register_criterion("l1", needs_data=False, description="L1 norm of the kernel weights (Li et al. 2016)")
def _l1(activity: LayerActivity) -> Tensor:
    return l1_norm_score(activity.layer.conv)


@register_criterion("firing_rate", description="mean firing rate of the channel")
def _firing_rate(activity: LayerActivity) -> Tensor:
    _check_spikes(activity.spikes)
    return activity.spikes.to(torch.float64).mean((0, 3, 4))


@register_criterion("random", needs_data=False, description="uniform random scores from a seeded generator")
def _random(activity: LayerActivity) -> Tensor:
    return torch.rand(activity.layer.channels, generator=activity.generator, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------------------
# Stability across batches (Eq. 15)
# ------------------------------------------------------------------------------------------------------------------
def avg_cos_similarity(score_vectors: Tensor | Sequence) -> float:
    r"""The paper's stability measure (App. F, Eq. 15): the mean cosine similarity between the score vectors of
    every pair of batches,

    .. math:: \mathrm{AvgCosS} = \frac{2}{N_B(N_B - 1)}\sum_{i<j}\cos(\mathrm{Score}_i, \mathrm{Score}_j).

    ``score_vectors``: ``[N_B, C]`` (one row per batch, e.g. ``score_per_batch(...)[name]``) or a list of
    ``Tensor[C]``; ``N_B >= 2``. An all-zero row (a silent layer) has cosine 0 with everything (torch's convention).

    Example:
        >>> avg_cos_similarity(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # pairs: 1, 0, 0
        0.3333333333333333

    Taught in chapter 05 (SCA's instability) and chapter 06 (SVS's stability).
    """
    if isinstance(score_vectors, Tensor):
        rows = score_vectors
    else:
        rows = torch.stack([torch.as_tensor(row, dtype=torch.float64) for row in score_vectors]) \
            if len(score_vectors) else torch.empty(0, 0)
    rows = rows.detach().to(torch.float64).cpu()
    if rows.dim() != 2 or rows.shape[0] < 2 or rows.shape[1] < 1:
        raise ValueError(f"score_vectors must be [N_B, C] with N_B >= 2 batches, got shape {tuple(rows.shape)}")
    if torch.isnan(rows).any():
        raise ValueError("score_vectors contain NaN")
    unit = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cosines = unit @ unit.T
    i, j = torch.triu_indices(len(rows), len(rows), offset=1)
    return float(cosines[i, j].mean())
