r"""Structured (channel) pruning of spiking CNNs: scoring criteria and physical channel removal.

Taught in chapter 05 (structured pruning, the SCA baseline, weight-L1 / firing-rate / random criteria, batch-to-batch
instability) and chapter 06 (SVS, the paper's criterion, and its stability, Eq. 15).

**What gets pruned.** A *prunable layer* is a conv followed by its BatchNorm and LIF: ``conv, bn, lif`` in a
:class:`~qpsnn_lite.models.SpikingConvBlock`, ``conv1, bn1, lif1`` and ``conv2, bn2, lif2`` in a ResNet
``BasicBlock``. It is named by its conv's name in ``model.named_modules()`` (``"features.block2.conv"``). Pruning
removes whole output channels (kernels) of the conv, the matching BatchNorm entries, the matching input channels of the
next conv and the matching columns of the classifier: the result is a physically narrower network, not a mask.

**The criteria** score every output channel :math:`f` of a layer :math:`l` on a few mini-batches; the channels with
the lowest scores are removed. With spikes :math:`\mathbf S^{l,f}[t] \in \{0,1\}^{h\times w}` (the LIF output) and
the pre-reset membrane potential :math:`\tilde{\mathbf U}^{l,f}[t]` (the LIF state before the reset of Eq. 3):

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

Every criterion is one function in :data:`CRITERIA`; :func:`register_criterion` adds one.

**Choices made where the paper is silent** (QP-SNN-METHOD.md, section 8):

- All layers are scored in *one* pass over the batches (the authors' code runs one pass per layer). Scoring happens
  in ``eval()`` mode under ``no_grad``, so both give the same numbers.
- Scores are averaged over *all samples* seen: :math:`\frac{1}{N}\sum_{\text{samples}}`. With equal batch sizes this
  is the mean of the per-batch means that :func:`score_per_batch` returns.
- :math:`\epsilon` is absolute and the singular values are computed in float64. The authors' code called
  ``matrix_rank`` with its default *relative* tolerance; in float32 the round-off of a zero singular value of a
  32x32 map (about :math:`10^{-5}`) already exceeds :math:`\epsilon = 10^{-6}`.
- **Ties** (frequent: an :math:`\epsilon`-rank of a 2x2 map is 0, 1 or 2) are broken by channel index: among equal
  scores the *lower* channel index is kept and the higher one pruned first, so a layer whose scores all tie keeps
  channels ``0..k-1``. ``score(..., tie_break="sum_sv")`` (off by default) first breaks ties of the SVS score by the
  sum of singular values :math:`\sum_i \sigma_i` (the nuclear norm).
- ResNet: the outputs of the blocks of one stage meet in the identity shortcut, so they share *one* keep-set chosen
  from the mean of their scores; block-internal convs (``conv1``) are pruned freely. The option-A shortcut between
  stages becomes a :class:`IndexedShortcut` that sends each kept input channel to its place among the kept output
  channels. (The authors' code chose every conv's channels independently.)
- BatchNorm weights and running statistics of the kept channels are copied (``copy_bn=True``); the authors' code
  re-initialised BatchNorm and relied on fine-tuning (``copy_bn=False``).
- Quantized convs (``QuantConv2d``) recompute :math:`\gamma` from the kept weights, so a pruned quantized layer is
  quantized slightly differently than before: fine-tuning (chapter 07) absorbs it. Full-precision pruning is exact.
"""
from __future__ import annotations

import copy
import itertools
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .neurons import LIF, lif_multistep_state

__all__ = [
    "CRITERIA",
    "Criterion",
    "LayerActivity",
    "PrunableLayer",
    "IndexedShortcut",
    "register_criterion",
    "prunable_layers",
    "epsilon_rank",
    "svs_score",
    "sca_score",
    "firing_rate_score",
    "l1_norm_score",
    "score",
    "score_per_batch",
    "keep_indices",
    "apply",
    "masked",
    "recalibrate_bn",
    "avg_cos_similarity",
]

INPUT = "<input>"  # stands for the network input where channels flow in from outside (never pruned)


# ------------------------------------------------------------------------------------------------------------------
# Prunable layers
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrunableLayer:
    """A conv -> BatchNorm -> LIF triple whose output channels can be removed. ``name`` is the conv's name."""

    name: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    lif: LIF

    @property
    def channels(self) -> int:
        return int(self.conv.weight.shape[0])


def _triples(module: nn.Module) -> list[str]:
    """Suffixes ``s`` for which ``module`` has ``conv{s}``, ``bn{s}`` and ``lif{s}`` ("" for a conv block, "1", "2"
    for a residual block)."""
    found = []
    for suffix in ("", "1", "2", "3"):
        conv, bn, lif = (getattr(module, f"{part}{suffix}", None) for part in ("conv", "bn", "lif"))
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(lif, LIF):
            found.append(suffix)
    return found


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def prunable_layers(model: nn.Module) -> list[PrunableLayer]:
    """Every conv -> BatchNorm -> LIF triple of ``model`` in module order. Raises if there is none. Chapter 05."""
    layers = []
    for prefix, module in model.named_modules():
        for suffix in _triples(module):
            layers.append(PrunableLayer(
                _join(prefix, f"conv{suffix}"), getattr(module, f"conv{suffix}"), getattr(module, f"bn{suffix}"),
                getattr(module, f"lif{suffix}"),
            ))
    if not layers:
        raise ValueError(
            f"model ({type(model).__name__}) has no prunable layers: pruning looks for blocks with submodules "
            "conv, bn, lif (SpikingConvBlock) or conv1/bn1/lif1, conv2/bn2/lif2 (BasicBlock)"
        )
    return layers


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
# The criteria registry
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


class Criterion(NamedTuple):
    """A pruning criterion: ``function(activity)`` returns per-sample scores ``[B, C]`` (or ``[C]`` when
    ``needs_data`` is False); :func:`score` averages them over all samples."""

    function: Callable[[LayerActivity], Tensor]
    needs_data: bool
    description: str


#: ``CRITERIA[name]``: the pruning criteria :func:`score` knows. Add one with :func:`register_criterion`.
CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, needs_data: bool = True, description: str = "") -> Callable:
    """Decorator: register ``function(activity: LayerActivity) -> Tensor[B, C]`` (per-sample scores; ``Tensor[C]``
    when ``needs_data=False``) as criterion ``name`` of :func:`score`. Higher scores mean "keep". Chapter 05.

    Example (the largest spike count of any neuron of the channel)::

        @register_criterion("peak_count")
        def peak_count(activity):
            return activity.spikes.sum(0).amax((-2, -1))  # [B, C]

        prune.score(model, loader, "peak_count")
    """

    def decorator(function: Callable[[LayerActivity], Tensor]) -> Callable[[LayerActivity], Tensor]:
        CRITERIA[name] = Criterion(function, needs_data, description or (function.__doc__ or "").strip())
        return function

    return decorator


@register_criterion("svs", description="eps-rank of the time-averaged spike map (the paper, Eq. 11-13)")
def _svs(activity: LayerActivity) -> Tensor:
    return epsilon_rank(activity.spikes, activity.eps)


@register_criterion("sca", description="L1 norm of the pre-reset membrane map (Li et al. 2024; Eq. 7)")
def _sca(activity: LayerActivity) -> Tensor:
    return _sca_per_sample(activity.membrane)


@register_criterion("firing_rate", description="mean firing rate of the channel")
def _firing_rate(activity: LayerActivity) -> Tensor:
    _check_spikes(activity.spikes)
    return activity.spikes.to(torch.float64).mean((0, 3, 4))


@register_criterion("l1", needs_data=False, description="L1 norm of the kernel weights (Li et al. 2016)")
def _l1(activity: LayerActivity) -> Tensor:
    return l1_norm_score(activity.layer.conv)


@register_criterion("random", needs_data=False, description="uniform random scores from a seeded generator")
def _random(activity: LayerActivity) -> Tensor:
    return torch.rand(activity.layer.channels, generator=activity.generator, dtype=torch.float64)


# The secondary SVS key of tie_break="sum_sv" (not a criterion of its own).
_SUM_SV = Criterion(lambda activity: _singular_value_sum(activity.spikes), True, "sum of singular values")
TIE_BREAKS = (None, "sum_sv")


# ------------------------------------------------------------------------------------------------------------------
# Scoring a model
# ------------------------------------------------------------------------------------------------------------------
class _Sums(NamedTuple):
    sums: dict[str, dict[str, list[Tensor]]]  # criterion key -> layer name -> per-batch sum over samples, Tensor[C]
    sizes: list[int]  # samples per batch (1 per "batch" for criteria that need no data)


def _check_batches(batches) -> int:
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches (mini-batches to score on) must be an integer >= 1, got {batches!r}")
    return batches


def _get_criterion(criterion: str) -> Criterion:
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    return CRITERIA[criterion]


def _batch_inputs(batch) -> Tensor:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    if not isinstance(x, Tensor):
        raise TypeError(
            f"loader must yield tensors or (inputs, labels) pairs, got a batch of type {type(x).__name__}"
        )
    return x


def _per_sample(result: Tensor, layer: PrunableLayer, key: str, needs_data: bool) -> Tensor:
    expected = "[B, C]" if needs_data else "[C]"
    if not isinstance(result, Tensor) or result.shape[-1] != layer.channels or result.dim() != (2 if needs_data else 1):
        shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise ValueError(f"criterion {key!r} returned {shape} for layer {layer.name}; expected {expected} with "
                         f"C = {layer.channels}")
    return result.detach().to(torch.float64).cpu().reshape(-1, layer.channels)


def _collect(model: nn.Module, loader, criteria: Mapping[str, Criterion], batches: int, eps: float,
             seed: int) -> _Sums:
    """Run the criteria over ``batches`` mini-batches; keep only per-batch sums over samples (never the spikes)."""
    layers = prunable_layers(model)
    generator = torch.Generator().manual_seed(int(seed))
    sums = {key: {layer.name: [] for layer in layers} for key in criteria}
    if not any(c.needs_data for c in criteria.values()):  # l1, random: no forward pass at all
        for _ in range(batches):
            for layer in layers:
                activity = LayerActivity(layer, None, None, eps, generator)
                for key, c in criteria.items():
                    sums[key][layer.name].append(_per_sample(c.function(activity), layer, key, False).sum(0))
        return _Sums(sums, [1] * batches)
    if loader is None:
        raise TypeError(f"criteria {sorted(criteria)} need data: pass a loader of input batches")

    seen: dict[str, int] = {}  # LIF calls per layer in the current forward pass
    sizes_seen: set[int] = set()

    def make_hook(layer: PrunableLayer):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if output.dim() != 5:
                raise ValueError(f"the LIF of {layer.name} returned shape {tuple(output.shape)}; scoring needs "
                                 "[T, B, C, H, W]")
            activity = LayerActivity(layer, output, inputs[0], eps, generator)
            for key, c in criteria.items():  # reduce now: only Tensor[C] survives the batch
                sums[key][layer.name].append(_per_sample(c.function(activity), layer, key, True).sum(0))
            seen[layer.name] = seen.get(layer.name, 0) + 1
            sizes_seen.add(int(output.shape[1]))
        return hook

    modes = {module: module.training for module in model.modules()}
    handles = [layer.lif.register_forward_hook(make_hook(layer)) for layer in layers]
    device = next(model.parameters()).device
    sizes: list[int] = []
    try:
        model.eval()
        with torch.no_grad():
            for batch in itertools.islice(loader, batches):  # never pulls a batch it will not use
                seen.clear()
                sizes_seen.clear()
                model(_batch_inputs(batch).to(device))
                wrong = {layer.name: seen.get(layer.name, 0) for layer in layers if seen.get(layer.name, 0) != 1}
                if wrong or len(sizes_seen) != 1:
                    raise RuntimeError(f"every prunable layer's LIF must run exactly once per forward pass, on one "
                                       f"batch size; LIF calls: {wrong}, batch sizes: {sorted(sizes_seen)}")
                sizes.append(sizes_seen.pop())
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    if not sizes:
        raise ValueError("loader is empty: it yielded no batches to score on")
    if len(sizes) < batches:
        warnings.warn(f"loader yielded only {len(sizes)} of the {batches} batches asked for; scored on those")
    return _Sums(sums, sizes)


def _check_finite(scores: Mapping[str, Tensor], criterion: str) -> None:
    for name, values in scores.items():
        if torch.isnan(values).any():
            raise ValueError(f"criterion {criterion!r} produced NaN scores for layer {name}; check the model's "
                             "weights and inputs for NaN")


def score_per_batch(model: nn.Module, loader: Iterable | None, criterion: str = "svs", batches: int = 5,
                    eps: float = 1e-6, seed: int = 0) -> dict[str, Tensor]:
    """Per-batch scores for stability analysis (Eq. 15, :func:`avg_cos_similarity`): ``{conv_name: [batches, C]}``,
    row ``b`` being the mean over the samples of batch ``b``. Arguments as :func:`score`. Taught in chapter 05."""
    key = criterion
    chosen = _get_criterion(criterion)
    collected = _collect(model, loader, {key: chosen}, _check_batches(batches), _check_eps(eps), seed)
    sizes = torch.tensor(collected.sizes, dtype=torch.float64).unsqueeze(1)
    result = {name: torch.stack(rows) / sizes for name, rows in collected.sums[key].items()}
    _check_finite(result, criterion)
    return result


def score(model: nn.Module, loader: Iterable | None, criterion: str = "svs", batches: int = 5, eps: float = 1e-6,
          seed: int = 0, tie_break: str | None = None) -> dict[str, Tensor]:
    r"""Score every output channel of every prunable layer: ``{conv_name: Tensor[C]}`` (float64, on the CPU).

    Runs ``batches`` mini-batches of ``loader`` through ``model`` in ``eval()`` mode under ``no_grad``, with forward
    hooks on each prunable layer's LIF; each batch is reduced to per-channel sums at once. The result is the mean
    over every sample seen (equal batch sizes: the mean of :func:`score_per_batch`'s rows). The model's train/eval
    modes are restored and the hooks removed afterwards, also on error.

    Args:
        model: a spiking network (``models.build(...)``).
        loader: yields input batches or ``(inputs, labels)``; may be None for ``"l1"`` and ``"random"``.
        criterion: one of :data:`CRITERIA`: ``"svs"`` (the paper), ``"sca"``, ``"l1"``, ``"firing_rate"``,
            ``"random"``.
        batches: mini-batches to use (the authors' code: 5 of 128).
        eps: the singular-value threshold of ``"svs"`` (the paper: 1e-6).
        seed: seed of ``"random"``.
        tie_break: None (ties are left to :func:`keep_indices`, which keeps the lower channel index), or ``"sum_sv"``
            (``"svs"`` only): add :math:`\frac{0.5}{N}\,\frac{\Sigma}{\max\Sigma + 1}` to every score, where
            :math:`\Sigma` is the channel's mean sum of singular values and :math:`N` the number of samples. SVS
            scores are multiples of :math:`1/N`, so this orders tied channels by :math:`\Sigma` and changes no other
            order.

    Example:
        ``scores = prune.score(model, train_loader, "svs", batches=5)`` then ``prune.apply(model, scores, 0.5)``.

    Taught in chapter 05 (the signature, SCA and the baselines) and chapter 06 (SVS).
    """
    chosen = _get_criterion(criterion)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if tie_break is not None and criterion != "svs":
        raise ValueError(f"tie_break={tie_break!r} applies to criterion 'svs' only, got criterion {criterion!r}")
    criteria = {criterion: chosen} | ({tie_break: _SUM_SV} if tie_break else {})
    collected = _collect(model, loader, criteria, _check_batches(batches), _check_eps(eps), seed)
    total = float(sum(collected.sizes))
    result = {name: torch.stack(rows).sum(0) / total for name, rows in collected.sums[criterion].items()}
    if tie_break == "sum_sv":
        for name, primary in result.items():
            counts = torch.stack(collected.sums[criterion][name]).sum(0).round()  # integers: sums of eps-ranks
            secondary = torch.stack(collected.sums[tie_break][name]).sum(0) / total
            result[name] = (counts + 0.5 * secondary / (secondary.max() + 1)) / total
    _check_finite(result, criterion)
    return result


# ------------------------------------------------------------------------------------------------------------------
# Choosing channels
# ------------------------------------------------------------------------------------------------------------------
def keep_indices(scores: Tensor, keep: int) -> Tensor:
    """Indices (ascending) of the ``keep`` highest ``scores``. Ties: the lower channel index is kept (a stable sort
    on the descending score), so equal scores keep channels in index order. Chapter 05.

    Example:
        >>> keep_indices(torch.tensor([1.0, 3.0, 1.0, 1.0, 2.0]), 3).tolist()
        [0, 1, 4]
    """
    if not isinstance(scores, Tensor) or scores.dim() != 1:
        raise ValueError(f"scores must be a 1-D tensor, got {getattr(scores, 'shape', type(scores).__name__)}")
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= scores.numel():
        raise ValueError(f"keep must be an integer in 1..{scores.numel()}, got {keep!r}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a channel ranking needs comparable numbers")
    order = torch.sort(-scores.detach().to(torch.float64).cpu(), stable=True).indices
    return order[:keep].sort().values


# ------------------------------------------------------------------------------------------------------------------
# The channel flow of a network
# ------------------------------------------------------------------------------------------------------------------
class _Conv(NamedTuple):
    name: str  # prunable conv
    source: str  # the conv whose channels it reads, or INPUT


class _Shortcut(NamedTuple):
    name: str  # the shortcut module
    source: str  # the block's input channels
    target: str  # the block's output conv (conv2)


class _Classifier(NamedTuple):
    name: str
    source: str


def _trace(model: nn.Module) -> list:
    """The order in which channels flow: conv steps, ResNet shortcut steps, then the classifier.

    Supports networks with ``features`` (conv blocks, residual blocks, stateless modules such as pooling and
    flatten, and containers of these) and an ``nn.Linear`` ``classifier``, the layout of every model of
    :mod:`qpsnn_lite.models` and :mod:`qpsnn_lite.architectures`.
    """
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Module) or not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"prune.apply needs a network with .features and an nn.Linear .classifier (the layout of "
            f"models.build); {type(model).__name__} does not have them"
        )
    steps: list = []
    source = INPUT

    def visit(module: nn.Module, prefix: str) -> None:
        nonlocal source
        suffixes = _triples(module)
        if suffixes == [""]:  # conv -> bn -> lif
            steps.append(_Conv(_join(prefix, "conv"), source))
            source = _join(prefix, "conv")
            return
        if suffixes == ["1", "2"] and isinstance(getattr(module, "shortcut", None), nn.Module):  # BasicBlock
            conv1, conv2 = _join(prefix, "conv1"), _join(prefix, "conv2")
            shortcut_step = _Shortcut(_join(prefix, "shortcut"), source, conv2)
            steps.extend([_Conv(conv1, source), _Conv(conv2, conv1), shortcut_step])
            shortcut = module.shortcut
            if any(True for _ in shortcut.parameters()) or not all(
                    hasattr(shortcut, a) for a in ("in_channels", "out_channels", "stride")):
                raise ValueError(f"{prefix}.shortcut ({type(shortcut).__name__}) is not a parameter-free option-A "
                                 "shortcut with in_channels, out_channels and stride; prune.apply handles only those")
            source = conv2
            return
        if suffixes:
            raise ValueError(f"{prefix} ({type(module).__name__}) has conv/bn/lif triples {suffixes} in a layout "
                             "prune.apply does not know")
        children = list(module.named_children())
        if children:
            for name, child in children:
                visit(child, _join(prefix, name))
        elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            raise ValueError(f"{prefix} ({type(module).__name__}) has parameters outside a conv -> BN -> LIF block; "
                             "prune.apply cannot pass channels through it")

    visit(features, "features")
    steps.append(_Classifier("classifier", source))
    traced = {step.name for step in steps if isinstance(step, _Conv)}
    outside = [layer.name for layer in prunable_layers(model) if layer.name not in traced]
    if outside:
        raise ValueError(f"prunable layers outside model.features: {outside}; prune.apply cannot follow them")
    return steps


def _shortcut_map(shortcut: nn.Module) -> Tensor:
    """For every output channel of a channel-padding shortcut, the input channel it copies (-1: zeros)."""
    index = getattr(shortcut, "channel_index", None)
    if isinstance(index, Tensor):
        return index.cpu()
    in_channels, out_channels = int(shortcut.in_channels), int(shortcut.out_channels)
    front = (out_channels - in_channels) // 2  # option A pads (out - in) // 2 channels in front
    source = torch.arange(out_channels) - front
    return torch.where((source >= 0) & (source < in_channels), source, torch.full_like(source, -1))


def _groups(steps: list, model: nn.Module) -> list[list[str]]:
    """Layers that must share one keep-set: block outputs joined by a shortcut that maps channels one to one."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for step in steps:
        if isinstance(step, _Conv):
            find(step.name)
        elif isinstance(step, _Shortcut):
            shortcut = model.get_submodule(step.name)
            mapping = _shortcut_map(shortcut)
            if shortcut.in_channels == shortcut.out_channels and torch.equal(mapping, torch.arange(len(mapping))):
                parent[find(step.target)] = find(step.source)
    members: dict[str, list[str]] = {}
    for step in steps:
        if isinstance(step, _Conv):
            members.setdefault(find(step.name), []).append(step.name)
    for root, group in members.items():
        if find(INPUT) == root:
            group.append(INPUT)
    return list(members.values())


# ------------------------------------------------------------------------------------------------------------------
# Ratios
# ------------------------------------------------------------------------------------------------------------------
def _check_ratio(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value < 1:
        raise ValueError(f"{argument} must be a number in [0, 1) (the fraction of channels to remove), got {value!r}")
    return float(value)


def _resolve_ratios(ratio, groups: list[list[str]], names: list[str], last_conv: bool) -> list[float]:
    """One ratio per group. A float prunes every group except the last conv's (unless ``last_conv``); a dict names
    layers (missing: 0; the members of a coupled group take the one ratio given for any of them)."""
    last = next(i for i, group in enumerate(groups) if names[-1] in group)
    if isinstance(ratio, Mapping):
        unknown = [name for name in ratio if name not in names]
        if unknown:
            raise ValueError(f"ratio names unknown layer(s) {unknown}; valid conv names: {names}")
        given = {name: _check_ratio(value, f"ratio[{name!r}]") for name, value in ratio.items()}
        result = []
        for i, group in enumerate(groups):
            values = {given[name] for name in group if name in given}
            if len(values) > 1:
                raise ValueError(f"layers {[n for n in group if n != INPUT]} are joined by identity shortcuts and "
                                 f"share one keep-set: give them one ratio, got {sorted(values)}")
            value = values.pop() if values else 0.0
            if value > 0 and i == last and not last_conv:
                raise ValueError(f"ratio prunes {names[-1]}, the last conv (it feeds the classifier); pass "
                                 "last_conv=True to allow it")
            if value > 0 and INPUT in group:
                raise ValueError(f"layers {group[:-1]} share channels with the network input through an identity "
                                 "shortcut and cannot be pruned")
            result.append(value)
        return result
    value = _check_ratio(ratio, "ratio")
    return [0.0 if (i == last and not last_conv) or INPUT in group else value for i, group in enumerate(groups)]


# ------------------------------------------------------------------------------------------------------------------
# Physical removal
# ------------------------------------------------------------------------------------------------------------------
class IndexedShortcut(nn.Module):
    """A parameter-free shortcut after pruning: subsample spatially, then output channel ``j`` copies input channel
    ``channel_index[j]`` (zeros where it is -1).

    This is the pruned form of the option-A shortcut (subsample and zero-pad channels): with different keep-sets
    before and after the block, each kept input channel must land on its position among the kept output channels.
    ``channel_index`` is a buffer, so it travels with ``state_dict``. Taught in chapter 05.
    """

    def __init__(self, in_channels: int, channel_index: Tensor, stride: int = 1) -> None:
        super().__init__()
        index = torch.as_tensor(channel_index, dtype=torch.long)
        if index.dim() != 1 or (index < -1).any() or (index >= in_channels).any():
            raise ValueError(f"channel_index must be 1-D with entries in -1..{in_channels - 1}")
        self.in_channels, self.out_channels, self.stride = int(in_channels), int(index.numel()), int(stride)
        self.register_buffer("channel_index", index)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(f"shortcut expects [..., {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        if self.stride != 1:
            x = x[..., :: self.stride, :: self.stride]
        padded = torch.cat([x, torch.zeros_like(x[..., :1, :, :])], dim=-3)  # channel in_channels is all zeros
        index = torch.where(self.channel_index < 0, self.in_channels, self.channel_index)
        return padded.index_select(-3, index.to(x.device))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


def _parameter(like: Tensor, value: Tensor) -> nn.Parameter:
    return nn.Parameter(value.clone(), requires_grad=like.requires_grad)


def _slice_conv(conv: nn.Conv2d, keep_out: Tensor, keep_in: Tensor | None, name: str) -> None:
    if conv.groups != 1:
        raise ValueError(f"{name} is a grouped convolution (groups={conv.groups}); prune.apply handles groups=1 only")
    weight = conv.weight.data.index_select(0, keep_out.to(conv.weight.device))
    if keep_in is not None:
        weight = weight.index_select(1, keep_in.to(weight.device))
    conv.weight = _parameter(conv.weight, weight)
    if conv.bias is not None:
        conv.bias = _parameter(conv.bias, conv.bias.data.index_select(0, keep_out.to(conv.bias.device)))
    conv.out_channels, conv.in_channels = int(weight.shape[0]), int(weight.shape[1])


def _slice_bn(bn: nn.BatchNorm2d, keep: Tensor, copy_bn: bool) -> None:
    index = keep.to(bn.weight.device if bn.weight is not None else "cpu")
    for attribute in ("weight", "bias"):
        value = getattr(bn, attribute)
        if value is not None:
            setattr(bn, attribute, _parameter(value, value.data.index_select(0, index)))
    for attribute in ("running_mean", "running_var"):
        value = getattr(bn, attribute)
        if value is not None:
            setattr(bn, attribute, value.index_select(0, index.to(value.device)).clone())
    bn.num_features = int(keep.numel())
    if not copy_bn:
        bn.reset_parameters()  # fresh (1, 0) affine and (0, 1) statistics, as the authors' code


def _pruned_shortcut(shortcut: nn.Module, keep_in: Tensor, keep_out: Tensor) -> nn.Module:
    """The shortcut of the narrower block: a plain option-A shortcut when it still maps channels right, else an
    :class:`IndexedShortcut`."""
    position = {int(channel): i for i, channel in enumerate(keep_in)}
    mapping = _shortcut_map(shortcut)
    index = torch.tensor([position.get(int(mapping[o]), -1) for o in keep_out], dtype=torch.long)
    k_in, k_out, stride = int(keep_in.numel()), int(keep_out.numel()), int(shortcut.stride)
    if not isinstance(shortcut, IndexedShortcut):
        plain = type(shortcut)(k_in, k_out, stride)
        if torch.equal(_shortcut_map(plain), index):
            return plain
    return IndexedShortcut(k_in, index, stride)


def _refresh_widths(model: nn.Module, steps: list) -> None:
    """Keep the width attributes of the paper's architectures (``conv_widths``, ``block_widths``, ``mid_widths``)
    true after pruning."""
    convs = [model.get_submodule(step.name) for step in steps if isinstance(step, _Conv)]
    if isinstance(getattr(model, "conv_widths", None), list) and len(model.conv_widths) == len(convs):
        model.conv_widths = [conv.out_channels for conv in convs]
    shortcuts = [step for step in steps if isinstance(step, _Shortcut)]
    if shortcuts and isinstance(getattr(model, "block_widths", None), list) \
            and len(model.block_widths) == len(shortcuts) + 1:
        first = shortcuts[0].source
        stem = model.get_submodule(first).out_channels if first != INPUT else model.block_widths[0]
        model.block_widths = [stem] + [model.get_submodule(s.target).out_channels for s in shortcuts]
    if shortcuts and isinstance(getattr(model, "mid_widths", None), list) and len(model.mid_widths) == len(shortcuts):
        model.mid_widths = [model.get_submodule(s.target.removesuffix("conv2") + "conv1").out_channels
                            for s in shortcuts]


def apply(model: nn.Module, scores: Mapping[str, Tensor], ratio: float | Mapping[str, float],
          last_conv: bool = False, copy_bn: bool = True) -> nn.Module:
    r"""A physically narrower deep copy of ``model`` that keeps, in each prunable layer with :math:`n` output
    channels and ratio :math:`r`, the :math:`\lfloor n(1 - r)\rfloor` channels with the highest scores.

    Removed with each kernel: its bias, its BatchNorm entries, the matching input channels of the next conv and the
    matching classifier columns (a flattened ``[C, H, W]`` map feeds the classifier channel-major, so each channel
    owns a block of ``H * W`` columns). ``in_channels``/``out_channels``/``num_features``/``in_features`` follow.
    Kept indices stay in ascending order; ties keep the lower channel index (:func:`keep_indices`).

    ResNet blocks whose shortcut maps channels one to one (identity) share one keep-set with the block before them,
    chosen from the mean of the group's scores; option-A shortcuts that pad channels become :class:`IndexedShortcut`.

    Args:
        model: the network to prune (left unchanged).
        scores: ``{conv_name: Tensor[C]}`` from :func:`score`; needed for every layer with a ratio above 0.
        ratio: a fraction in [0, 1) for every prunable layer, or ``{conv_name: fraction}`` (missing layers: 0; the
            members of a shared keep-set take the ratio given for any of them).
        last_conv: also prune the conv that feeds the classifier (the paper never does).
        copy_bn: copy the kept BatchNorm weights and running statistics (True) or re-initialise them (False, as the
            authors' code).

    Returns:
        The pruned copy, with ``pruned_channels``: ``{conv_name: LongTensor}`` the kept channel indices of every
        prunable layer (all of them for an unpruned layer).

    Taught in chapter 05.
    """
    layers = prunable_layers(model)
    names = [layer.name for layer in layers]
    channels = {layer.name: layer.channels for layer in layers}
    steps = _trace(model)
    groups = _groups(steps, model)
    ratios = _resolve_ratios(ratio, groups, names, last_conv)
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a dict {{conv_name: Tensor[C]}} from prune.score, got {type(scores).__name__}")
    strangers = [name for name in scores if name not in channels]
    if strangers:
        raise ValueError(f"scores names layer(s) {strangers} that this model does not have (scores of another "
                         f"model?); its prunable convs are {names}")

    keep: dict[str, Tensor] = {}
    for group, value in zip(groups, ratios):
        layer_names = [name for name in group if name != INPUT]
        n = channels[layer_names[0]]
        kept = int(n * (1 - value))
        if kept < 1:
            raise ValueError(f"ratio {value} would leave {layer_names[0]} with int({n} * (1 - {value})) = {kept} of "
                             f"its {n} channels; use a ratio of at most {1 - 1 / n:.4g}")
        if kept == n:
            indices = torch.arange(n)
        else:
            group_scores = []
            for name in layer_names:
                if name not in scores:
                    raise ValueError(f"scores has no entry for {name} (pruned at ratio {value}); compute them with "
                                     "prune.score(model, loader)")
                values = torch.as_tensor(scores[name]).detach().to(torch.float64).cpu()
                if values.shape != (n,):
                    raise ValueError(f"scores[{name!r}] must have shape ({n},), got {tuple(values.shape)}")
                if torch.isnan(values).any():
                    raise ValueError(f"scores[{name!r}] contains NaN; a channel ranking needs comparable numbers")
                group_scores.append(values)
            indices = keep_indices(torch.stack(group_scores).mean(0), kept)
        for name in layer_names:
            keep[name] = indices

    pruned = copy.deepcopy(model)
    for step in steps:
        keep_in = None if step.source == INPUT else keep[step.source]
        if isinstance(step, _Conv):
            block_prefix, _, suffix = step.name.rpartition(".conv")
            _slice_conv(pruned.get_submodule(step.name), keep[step.name], keep_in, step.name)
            _slice_bn(pruned.get_submodule(f"{block_prefix}.bn{suffix}"), keep[step.name], copy_bn)
        elif isinstance(step, _Shortcut):
            shortcut = model.get_submodule(step.name)
            keep_in = torch.arange(shortcut.in_channels) if keep_in is None else keep_in
            block, _, attribute = step.name.rpartition(".")
            setattr(pruned.get_submodule(block), attribute, _pruned_shortcut(shortcut, keep_in, keep[step.target]))
        elif keep_in is not None:  # the classifier
            linear = pruned.classifier
            n = channels[step.source]
            if linear.in_features % n:
                raise ValueError(f"the classifier has {linear.in_features} inputs, not a multiple of the {n} channels "
                                 f"of {step.source}; prune.apply cannot tell which columns belong to which channel")
            per_channel = linear.in_features // n
            columns = (keep_in.unsqueeze(1) * per_channel + torch.arange(per_channel)).flatten()
            weight = linear.weight.data.index_select(1, columns.to(linear.weight.device))
            linear.weight = _parameter(linear.weight, weight)
            linear.in_features = int(columns.numel())
    _refresh_widths(pruned, steps)
    pruned.pruned_channels = {name: keep[name].clone() for name in names}
    return pruned


@contextmanager
def masked(model: nn.Module, kept_channels: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """Inside the ``with``, every prunable layer named in ``kept_channels`` outputs zero spikes on the channels not
    kept: the *masked* form of pruning, which :func:`apply` turns into a narrower network with the same outputs.

    Example: ``with prune.masked(model, pruned.pruned_channels): out = model(x)`` equals ``pruned(x)``. Chapter 05.
    """
    layers = {layer.name: layer for layer in prunable_layers(model)}
    unknown = [name for name in kept_channels if name not in layers]
    if unknown:
        raise ValueError(f"kept_channels names unknown layer(s) {unknown}; valid conv names: {list(layers)}")
    handles = []
    try:
        for name, kept in kept_channels.items():
            mask = torch.zeros(layers[name].channels)
            mask[torch.as_tensor(kept, dtype=torch.long)] = 1

            def hook(module: nn.Module, inputs: tuple, output: Tensor, mask: Tensor = mask) -> Tensor:
                return output * mask.to(output).view(-1, 1, 1)

            handles.append(layers[name].lif.register_forward_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def recalibrate_bn(model: nn.Module, loader: Iterable, batches: int = 3) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``batches`` mini-batches of ``loader``: forward
    passes only, no gradient step, no parameter changed (the "adaptive BN" of Li et al. 2020, EagleEye).

    After :func:`apply`, each BatchNorm behind a pruned layer still normalises with the dense network's statistics,
    although its conv now sums over fewer input channels; in a spiking network the wrong scale changes which neurons
    cross the threshold. A few forward passes restore much of the accuracy before any fine-tuning (chapter 05; the
    paper itself only fine-tunes). The statistics are a plain average over the batches; the BatchNorms' momentum
    and the model's train/eval mode are restored afterwards. Returns ``model``.
    """
    batches = _check_batches(batches)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the model has no BatchNorm layer to recalibrate")
    if loader is None:
        raise ValueError("recalibrate_bn needs a loader of training batches")
    statistics = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over all the batches seen
    seen = 0
    device = next(model.parameters()).device
    model.train()
    try:
        with torch.no_grad():
            for batch in itertools.islice(loader, batches):
                model(_batch_inputs(batch).to(device))
                seen += 1
        if seen == 0:
            raise ValueError("the loader yielded no batch: recalibrate_bn needs at least one")
    except BaseException:
        for m, (mean, var, count) in zip(norms, statistics):  # leave the model as it was
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
        raise
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return model


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
