r"""Scoring a model's channels with a criterion: hooks on every prunable layer's LIF, batching, averaging.

Taught in chapter 05 (``score``, ``score_per_batch``) and chapter 06 (SVS). The criteria themselves (the equations,
the registry) are in :mod:`qpsnn_lite.criteria`; this module only runs them and knows no criterion by name.

**Choices made where the paper is silent** (``docs/design.md``, "Pruning"):

- All layers are scored in *one* pass over the batches (the authors' code runs one pass per layer). Scoring happens
  in ``eval()`` mode under ``no_grad``, so both give the same numbers.
- Scores are averaged over *all samples* seen: :math:`\frac{1}{N}\sum_{\text{samples}}`. With equal batch sizes this
  is the mean of the per-batch means that :func:`score_per_batch` returns.
- Over several processes (``torchrun``) each scores its share of every batch and the per-batch sums and sample
  counts are summed over the processes, so every rank gets the scores of the whole batches and prunes the same
  channels.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Callable, Iterable, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from . import _dist
from ._checks import batch_inputs, check_batches, check_finite_inputs, check_finite_model
from ._hooks import hooked
from .criteria import CRITERIA, SCORE, Criterion, LayerActivity, _check_eps
from .layers import PrunableLayer, prunable_layers

__all__ = ["score", "score_per_batch"]


class _Sums(NamedTuple):
    sums: dict[str, dict[str, list[Tensor]]]  # function key -> layer name -> per-batch sum over samples, Tensor[C]
    sizes: list[int]  # samples per batch (1 per "batch" for criteria that need no data)


def _get_criterion(criterion: str) -> Criterion:
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    return CRITERIA[criterion]


def _per_sample(result: Tensor, layer: PrunableLayer, key: str, needs_data: bool) -> Tensor:
    expected = "[B, C]" if needs_data else "[C]"
    if not isinstance(result, Tensor) or result.shape[-1] != layer.channels or result.dim() != (2 if needs_data else 1):
        shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise ValueError(f"criterion {key!r} returned {shape} for layer {layer.name}; expected {expected} with "
                         f"C = {layer.channels}")
    return result.detach().to(torch.float64).cpu().reshape(-1, layer.channels)


def _collect(model: nn.Module, loader, functions: Mapping[str, Callable], needs_data: bool, batches: int,
             eps: float, seed: int) -> _Sums:
    """Run the per-sample ``functions`` (a criterion and its tie-break statistic, by name) over ``batches``
    mini-batches; keep only per-batch sums over samples (never the spikes)."""
    layers = prunable_layers(model)
    check_finite_model(model, "score")
    generator = torch.Generator().manual_seed(int(seed))
    sums = {key: {layer.name: [] for layer in layers} for key in functions}
    if not needs_data:  # l1, random: no forward pass at all
        for _ in range(batches):
            for layer in layers:
                activity = LayerActivity(layer, None, None, eps, generator)
                for key, function in functions.items():
                    sums[key][layer.name].append(_per_sample(function(activity), layer, key, False).sum(0))
        return _Sums(sums, [1] * batches)
    if loader is None:
        raise TypeError(f"criteria {sorted(functions)} need data: pass a loader of input batches")

    seen: dict[str, int] = {}  # LIF calls per layer in the current forward pass
    sizes_seen: set[int] = set()

    def make_hook(layer: PrunableLayer):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if output.dim() != 5:
                raise ValueError(f"the LIF of {layer.name} returned shape {tuple(output.shape)}; scoring needs "
                                 "[T, B, C, H, W]")
            activity = LayerActivity(layer, output, inputs[0], eps, generator)
            for key, function in functions.items():  # reduce now: only Tensor[C] survives the batch
                sums[key][layer.name].append(_per_sample(function(activity), layer, key, True).sum(0))
            seen[layer.name] = seen.get(layer.name, 0) + 1
            sizes_seen.add(int(output.shape[1]))
        return hook

    hooks = [(layer.lif, "forward", make_hook(layer)) for layer in layers]
    device = next(model.parameters()).device
    sizes: list[int] = []
    with hooked(model, hooks, mode="eval"), torch.no_grad():
        for index, batch in enumerate(itertools.islice(loader, batches)):  # never pulls a batch it will not use
            seen.clear()
            sizes_seen.clear()
            inputs = batch_inputs(batch).to(device)
            check_finite_inputs(inputs, f"batch {index} of the loader")
            model(inputs)
            wrong = {layer.name: seen.get(layer.name, 0) for layer in layers if seen.get(layer.name, 0) != 1}
            if wrong or len(sizes_seen) != 1:
                raise RuntimeError(f"every prunable layer's LIF must run exactly once per forward pass, on one "
                                   f"batch size; LIF calls: {wrong}, batch sizes: {sorted(sizes_seen)}")
            sizes.append(sizes_seen.pop())
    if _dist.world()[1] > 1 and sizes:  # several processes, each on its share of every batch: sum over them
        for per_layer in sums.values():
            for name, rows in per_layer.items():
                per_layer[name] = list(_dist.all_reduce_sum(torch.stack(rows)))
        sizes = [int(n) for n in _dist.all_reduce_sum(torch.tensor(sizes, dtype=torch.float64))]
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
    chosen = _get_criterion(criterion)
    collected = _collect(model, loader, {criterion: chosen.function}, chosen.needs_data, check_batches(batches),
                         _check_eps(eps), seed)
    sizes = torch.tensor(collected.sizes, dtype=torch.float64).unsqueeze(1)
    result = {name: torch.stack(rows) / sizes for name, rows in collected.sums[criterion].items()}
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
        criterion: a name registered in :data:`~qpsnn_lite.criteria.CRITERIA`: ``"svs"`` (the paper), ``"sca"``,
            ``"l1"``, ``"firing_rate"``, ``"random"``, or one added with ``register_criterion``.
        batches: mini-batches to use (the authors' code: 5 of 128).
        eps: the singular-value threshold of ``"svs"`` (the paper: 1e-6).
        seed: seed of ``"random"``.
        tie_break: None (ties are left to ``keep_indices``, which keeps the lower channel index), or an option the
            criterion offers (its ``Criterion.tie_breaks``). ``"svs"`` offers ``"sum_sv"``: add :math:`\frac{0.5}{N}\,\frac{\Sigma}{\max\Sigma + 1}` to every score, where
            :math:`\Sigma` is the channel's mean sum of singular values and :math:`N` the number of samples. SVS
            scores are multiples of :math:`1/N`, so this orders tied channels by :math:`\Sigma` and changes no other
            order.

    Example:
        ``scores = prune.score(model, train_loader, "svs", batches=5)`` then ``prune.apply(model, scores, 0.5)``.

    Taught in chapter 05 (the signature, SCA and the baselines) and chapter 06 (SVS).
    """
    chosen = _get_criterion(criterion)
    if tie_break is not None and tie_break not in chosen.tie_breaks:
        offered = ", ".join(map(repr, chosen.tie_breaks)) or "none"
        raise ValueError(f"tie_break={tie_break!r} is not offered by criterion {criterion!r} (its tie-breaks: "
                         f"{offered}); use tie_break=None")
    functions = {criterion: chosen.function} | ({tie_break: chosen.tie_breaks[tie_break]} if tie_break else {})
    collected = _collect(model, loader, functions, chosen.needs_data, check_batches(batches), _check_eps(eps), seed)
    total = float(sum(collected.sizes))
    result = {}
    for name in collected.sums[criterion]:
        sums = {SCORE if key == criterion else key: torch.stack(per_key[name]).sum(0)
                for key, per_key in collected.sums.items()}
        result[name] = chosen.finalize(sums, total, tie_break)
    _check_finite(result, criterion)
    return result
