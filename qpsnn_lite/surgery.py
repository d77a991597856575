r"""Structured (channel) surgery: choose the channels to keep, follow them through the network, cut them out.

Taught in chapter 05. The scores come from :mod:`qpsnn_lite.scoring`; :mod:`qpsnn_lite.prune` re-exports everything.

**What gets pruned.** A *prunable layer* is a conv followed by its BatchNorm and LIF (:mod:`qpsnn_lite.layers`):
``conv, bn, lif`` in a ``SpikingConvBlock``, ``conv1, bn1, lif1`` and ``conv2, bn2, lif2`` in a ResNet
``BasicBlock``. It is named by its conv's name in ``model.named_modules()`` (``"features.block2.conv"``). Pruning
removes whole output channels (kernels) of the conv, the matching BatchNorm entries, the matching input channels of the
next conv and the matching columns of the classifier: the result is a physically narrower network, not a mask
(:func:`masked` gives the mask form with the same outputs).

**Choices made where the paper is silent** (``docs/design.md``, "Pruning"):

- **Ties** are broken by channel index: among equal scores the *lower* channel index is kept and the higher one
  pruned first, so a layer whose scores all tie keeps channels ``0..k-1`` (:func:`keep_indices`).
- ResNet: the outputs of the blocks of one stage meet in the identity shortcut, so they share *one* keep-set chosen
  from the mean of their scores; block-internal convs (``conv1``) are pruned freely. The option-A shortcut between
  stages becomes an :class:`~qpsnn_lite.layers.IndexedShortcut` that sends each kept input channel to its place among
  the kept output channels. (The authors' code chose every conv's channels independently.)
- BatchNorm weights and running statistics of the kept channels are copied (``copy_bn=True``); the authors' code
  re-initialised BatchNorm and relied on fine-tuning (``copy_bn=False``).
- Quantized convs (``QuantConv2d``) recompute :math:`\gamma` from the kept weights, so a pruned quantized layer is
  quantized slightly differently than before: fine-tuning (chapter 07) absorbs it. Full-precision pruning is exact.
"""
from __future__ import annotations

import copy
import itertools
import math
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from ._checks import batch_inputs, check_batches
from ._hooks import hooked
from .layers import IndexedShortcut, join_name, prunable_layers, triple_suffixes

__all__ = ["INPUT", "keep_indices", "plan", "apply", "masked", "recalibrate_bn"]

INPUT = "<input>"  # stands for the network input where channels flow in from outside (never pruned)


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
        suffixes = triple_suffixes(module)
        if suffixes == [""]:  # conv -> bn -> lif
            steps.append(_Conv(join_name(prefix, "conv"), source))
            source = join_name(prefix, "conv")
            return
        if suffixes == ["1", "2"] and isinstance(getattr(module, "shortcut", None), nn.Module):  # BasicBlock
            conv1, conv2 = join_name(prefix, "conv1"), join_name(prefix, "conv2")
            shortcut_step = _Shortcut(join_name(prefix, "shortcut"), source, conv2)
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
                visit(child, join_name(prefix, name))
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


def _plan(model: nn.Module, ratio, last_conv: bool):
    """Everything :func:`apply` decides before it looks at a score: the layer names and widths, the trace, the
    keep-set groups and, per group, ``(ratio, channels kept)``; raises what apply would raise for these."""
    layers = prunable_layers(model)
    names = [layer.name for layer in layers]
    channels = {layer.name: layer.channels for layer in layers}
    steps = _trace(model)
    groups = _groups(steps, model)
    ratios = _resolve_ratios(ratio, groups, names, last_conv)
    kept_counts = []
    for group, value in zip(groups, ratios):
        layer_names = [name for name in group if name != INPUT]
        n = channels[layer_names[0]]
        kept = int(n * (1 - value))
        if kept < 1:
            raise ValueError(f"ratio {value} would leave {layer_names[0]} with int({n} * (1 - {value})) = {kept} of "
                             f"its {n} channels; use a ratio of at most {1 - 1 / n:.4g}")
        kept_counts.append((value, kept))
    for step in steps:
        if isinstance(step, _Conv) and model.get_submodule(step.name).groups != 1:
            raise ValueError(f"{step.name} is a grouped convolution (groups={model.get_submodule(step.name).groups}); "
                             "prune.apply handles groups=1 only")
        if isinstance(step, _Classifier) and step.source != INPUT:
            n = channels[step.source]
            if model.classifier.in_features % n:
                raise ValueError(f"the classifier has {model.classifier.in_features} inputs, not a multiple of the {n} "
                                 f"channels of {step.source}; prune.apply cannot tell which columns belong to which "
                                 "channel")
    return names, channels, steps, groups, kept_counts


def plan(model: nn.Module, ratio: float | Mapping[str, float], last_conv: bool = False) -> dict[str, int]:
    """The number of channels :func:`apply` would keep in every prunable layer of ``model`` at ``ratio``, without
    scores: it raises every error apply would raise that does not depend on the scores (unknown layer names, a ratio
    that would empty a layer, the last conv, widths the classifier does not divide), so that a run can check its
    ratios before it trains. Taught in chapter 05."""
    _, _, _, groups, kept_counts = _plan(model, ratio, last_conv)
    return {name: kept for group, (_, kept) in zip(groups, kept_counts) for name in group if name != INPUT}


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
    names, channels, steps, groups, kept_counts = _plan(model, ratio, last_conv)
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a dict {{conv_name: Tensor[C]}} from prune.score, got {type(scores).__name__}")
    strangers = [name for name in scores if name not in channels]
    if strangers:
        raise ValueError(f"scores names layer(s) {strangers} that this model does not have (scores of another "
                         f"model?); its prunable convs are {names}")

    keep: dict[str, Tensor] = {}
    for group, (value, kept) in zip(groups, kept_counts):
        layer_names = [name for name in group if name != INPUT]
        n = channels[layer_names[0]]
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
    hooks = []
    for name, kept in kept_channels.items():
        mask = torch.zeros(layers[name].channels)
        mask[torch.as_tensor(kept, dtype=torch.long)] = 1

        def hook(module: nn.Module, inputs: tuple, output: Tensor, mask: Tensor = mask) -> Tensor:
            return output * mask.to(output).view(-1, 1, 1)

        hooks.append((layers[name].lif, "forward", hook))
    with hooked(model, hooks, mode=None):
        yield model


def recalibrate_bn(model: nn.Module, loader: Iterable, batches: int = 3) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``batches`` mini-batches of ``loader``: forward
    passes only, no gradient step, no parameter changed (the "adaptive BN" of Li et al. 2020, EagleEye).

    After :func:`apply`, each BatchNorm behind a pruned layer still normalises with the dense network's statistics,
    although its conv now sums over fewer input channels; in a spiking network the wrong scale changes which neurons
    cross the threshold. A few forward passes restore much of the accuracy before any fine-tuning (chapter 05; the
    paper itself only fine-tunes). The statistics are a plain average over the batches; the BatchNorms' momentum
    and every module's train/eval mode are restored afterwards. Returns ``model``.
    """
    batches = check_batches(batches)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the model has no BatchNorm layer to recalibrate")
    if loader is None:
        raise ValueError("recalibrate_bn needs a loader of training batches")
    statistics = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over all the batches seen
    seen = 0
    device = next(model.parameters()).device
    try:
        with hooked(model, mode="train"), torch.no_grad():
            for batch in itertools.islice(loader, batches):
                model(batch_inputs(batch).to(device))
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
    return model
