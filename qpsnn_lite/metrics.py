r"""What the paper reports about a model: size in MB, parameter counts, the fraction of connections kept.

Taught in chapter 08. Also firing rates, synaptic operations (SOPs) and an energy estimate (Table 6): see
:func:`energy_mj` at the end of this module.

Model size follows the paper's rule [P App. G, Eq. 16]:

.. math::

    M = \sum P_q\,B_q + \sum P_{fp}\,B_{fp} \ \text{bits}, \qquad \text{MB} = M / 8 / 10^6

:math:`P_q` are the quantized conv weights (every conv but the first), stored at :math:`B_q = b` bits; :math:`P_{fp}`
are stored at :math:`B_{fp} = 32` bits: the first conv (weight and bias), the final Linear (weight and bias) and the
:math:`\gamma, \beta` of every BatchNorm (two per channel; running statistics are buffers and not counted). MB means
:math:`10^6` bytes. With the channel counts of the pruning configurations (``models.build(..., prune_config=...)``)
this reproduces every QP-SNN size of the paper's Table 1 to 0.01 MB.

"Quantized" is decided by position, not by type: all convs except the first one in ``model.named_modules()`` order.
So the rule also gives the size a full-precision model *would* have once quantized (Table 1 sizes from the
architecture alone), and ``bits=32`` gives the full-precision size.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._checks import batch_inputs, check_batches, check_bits, is_conv
from ._hooks import hooked
from .neurons import LIF

__all__ = [
    "SizeBreakdown",
    "conv_layers",
    "size_breakdown",
    "model_size_mb",
    "count_parameters",
    "quantized_weight_count",
    "connection_percent",
    "E_MAC_PJ",
    "E_AC_PJ",
    "LayerOps",
    "EnergyReport",
    "firing_rates",
    "sops",
    "energy_mj",
]

FP_BITS = 32  # B_fp of Eq. 16


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_bits(bits) -> None:
    # Eq. 16 prices the full-precision model too: bits=32 (B_fp, every weight a float32) is its size, which the run
    # reports beside the quantized one. Any other width is a quantizer's, checked by the package's one rule.
    if bits == FP_BITS and not isinstance(bits, bool) and isinstance(bits, int):
        return
    try:
        check_bits(bits)
    except ValueError as exc:
        raise ValueError(f"{exc} (or 32 for the full-precision size, B_fp of Eq. 16)") from None


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every conv layer in ``named_modules()`` order; the first is the full-precision stem.

    A conv is an ``nn.Conv*`` or any module holding a 4-d ``weight`` (so ``QuantConv2d`` counts whatever its base
    class). Chapter 08.
    """
    _check_model(model)
    return [(name, m) for name, m in model.named_modules() if is_conv(m)]


class SizeBreakdown(NamedTuple):
    """Parameter counts behind Eq. 16: ``quantized`` weights go at ``b`` bits, everything else at 32 bits.

    ``first_conv`` (weight + bias), ``linear`` (weights + biases of every Linear), ``batchnorm`` (gamma + beta),
    ``other`` (any remaining parameter, e.g. a bias of a quantized conv; 0 for the paper's networks).
    """

    quantized: int
    first_conv: int
    linear: int
    batchnorm: int
    other: int

    @property
    def full_precision(self) -> int:
        """:math:`\\sum P_{fp}`: the parameters stored at 32 bits."""
        return self.first_conv + self.linear + self.batchnorm + self.other

    def bits(self, bits: int) -> int:
        """Eq. 16: the model size in bits with quantized weights at ``bits`` bits."""
        _check_bits(bits)
        return self.quantized * bits + self.full_precision * FP_BITS


def size_breakdown(model: nn.Module) -> SizeBreakdown:
    """Split the parameters of ``model`` into the groups of Eq. 16 [P App. G] (see :class:`SizeBreakdown`).

    The first conv in module order is full precision (weight and bias); the *weights* of all other convs are the
    quantized parameters :math:`P_q`; BatchNorm gamma/beta and Linear weights/biases are full precision. Every other
    parameter (e.g. a conv bias after the first layer) is counted at 32 bits under ``other``. Chapter 08.
    """
    convs = conv_layers(model)
    if not convs:
        raise ValueError("model has no conv layer: the size rule of Eq. 16 needs at least the first conv")
    seen: set[int] = set()

    def take(*tensors) -> int:
        total = 0
        for t in tensors:
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                total += t.numel()
        return total

    first = convs[0][1]
    first_conv = take(first.weight, getattr(first, "bias", None))
    quantized = sum(take(m.weight) for _, m in convs[1:])
    linear = batchnorm = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            linear += take(m.weight, m.bias)
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            batchnorm += take(m.weight, m.bias)
    other = take(*model.parameters())
    return SizeBreakdown(quantized, first_conv, linear, batchnorm, other)


def model_size_mb(model: nn.Module, bits: int) -> float:
    r"""Model size in MB (:math:`10^6` bytes) by the paper's rule, Eq. 16 [P App. G]:
    :math:`(\sum P_q\,b + \sum P_{fp}\cdot 32) / 8 / 10^6`.

    Every conv weight but the first conv's is stored at ``bits`` bits; the first conv (weight and bias), the final
    Linear (weight and bias) and each BatchNorm's gamma and beta at 32 bits. The rule is applied by position, so a
    model built without ``bits`` gives the size it would have once quantized; ``bits=32`` gives the full-precision
    size. Example: the paper's ResNet20 configuration A on CIFAR-10 at 2 bits is 1.61 MB (Table 1). Taught in
    chapter 08.

    Args:
        model: a network with at least one conv layer.
        bits: weight bit width :math:`B_q` of the quantized convs, an integer in 1..16, or 32 for the full-precision size.
    """
    _check_model(model)
    _check_bits(bits)
    return size_breakdown(model).bits(bits) / 8 / 1e6


def count_parameters(model: nn.Module, batchnorm: bool = True) -> int:
    """Number of parameters of ``model`` (each shared tensor once), as the paper's "Params" columns count them.

    ``batchnorm=False`` leaves out the BatchNorm gamma/beta. The paper does not count uniformly: its VGG-16 counts
    (Tables 9 and 11, e.g. 4.25 M for CIFAR-10 A) include them, while its VGGSNN counts (Table 11, e.g. 0.25 M for
    configuration C) and ResNet20 counts (Table 10, e.g. 6.22 M for CIFAR-10 A) match the count without them. The
    model *size* (:func:`model_size_mb`) always includes them. Taught in chapter 08.
    """
    _check_model(model)
    skip: set[int] = set()
    if not batchnorm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                skip.update(id(p) for p in m.parameters(recurse=False))
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen and id(p) not in skip:
            seen.add(id(p))
            total += p.numel()
    return total


def quantized_weight_count(model: nn.Module) -> int:
    """:math:`\\sum P_q`: the number of conv weights after the first conv (the quantized, prunable synapses).
    Chapter 08."""
    _check_model(model)
    return size_breakdown(model).quantized


def connection_percent(pruned: nn.Module, dense: nn.Module) -> float:
    """Fraction of the quantized conv weights that pruning kept, in %: ``100 * P_q(pruned) / P_q(dense)``.

    This is the "connection" column of the paper's Table 6 [P App. C]; e.g. VGG-16 CIFAR-10 configuration B keeps
    9.59 % (the paper prints 9.61 %) and ResNet20 CIFAR-100 B 22.70 % (printed 22.69 %). Taught in chapter 08.
    """
    kept = quantized_weight_count(pruned)
    total = quantized_weight_count(dense)
    if total == 0:
        raise ValueError("dense model has no quantized conv weights (it needs at least two convs)")
    return 100.0 * kept / total


# --------------------------------------------------------------------------------------------------------------------
# Firing rates, synaptic operations (SOPs) and energy [P App. C, Table 6; docs/design.md, "Energy"]
# --------------------------------------------------------------------------------------------------------------------
E_MAC_PJ = 4.6  # energy of a 32-bit float multiply-accumulate, 45 nm (Horowitz 2014), in pJ
E_AC_PJ = 0.9  # energy of a 32-bit float accumulate, 45 nm, in pJ

ENERGY_CONVENTIONS = (
    "SOPs = sum over every conv and Linear layer except the first conv of fr_l * T * MAC_l, per sample and summed "
    "over the T time steps; fr_l is the fraction of non-zero entries of the layer's input (the firing rate of the "
    "spikes entering it, measured after pooling) and MAC_l the dense multiply-accumulates per sample and time step "
    "(conv: H_out * W_out * C_out * C_in / groups * k_h * k_w; Linear: in * out; biases not counted). The classifier "
    "reads average-pooled spikes (fractional values): it is counted as accumulates on its non-zero inputs, like a "
    "spiking layer. The first conv reads the analog image and is charged at MAC energy: once per sample for a static "
    "image (direct encoding repeats the same image, so its output can be computed once), T times for event input "
    "[T, B, ...]. E = E_MAC * MAC_stem + E_AC * SOPs. The paper states no formula; this convention reproduces 3 of "
    "the 4 rows of its Table 6 only approximately (its own rows are not mutually consistent)."
)


class LayerOps(NamedTuple):
    """Synaptic work of one conv or Linear layer, per sample (see :func:`energy_mj`)."""

    name: str
    kind: str  # "conv" or "linear"
    macs_per_step: int  # dense MACs per sample and time step
    steps: float  # applications per sample: T (one per time step)
    input_rate: float  # fraction of non-zero inputs: the firing rate of the spikes entering the layer
    sops: float  # input_rate * steps * macs_per_step


class EnergyReport(NamedTuple):
    """What :func:`energy_mj` measured, with the constants and conventions used (``conventions``).

    ``energy_mj`` is the estimate per sample in millijoules. ``sops`` are per sample and summed over the time steps; ``mac_stem`` is the first conv's MAC count per
    sample as charged (once for static images); ``layers`` has a :class:`LayerOps` per conv/Linear layer after the
    first; ``firing_rates`` maps each LIF module to its mean firing rate.
    """

    energy_mj: float
    sops: float
    mac_stem: float
    stem: str
    e_mac_pj: float
    e_ac_pj: float
    T: int | None
    samples: int
    firing_rates: dict
    layers: list
    conventions: str

    def to_dict(self) -> dict:
        """JSON-ready dict (``layers`` as a list of dicts)."""
        record = self._asdict()
        record["layers"] = [layer._asdict() for layer in self.layers]
        record["firing_rates"] = dict(self.firing_rates)
        return record


def _split_batch(batch) -> tuple[torch.Tensor, int]:
    """``(inputs, samples)`` of a batch that is a tensor or an ``(inputs, labels)`` pair."""
    inputs = batch_inputs(batch)
    if isinstance(batch, (list, tuple)) and len(batch) > 1 and isinstance(batch[1], torch.Tensor) and batch[1].dim():
        return inputs, int(batch[1].shape[0])
    # images [B, C, H, W] or events [T, B, C, H, W]
    return inputs, int(inputs.shape[1] if inputs.dim() == 5 else inputs.shape[0])


def _measure(model: nn.Module, loader, batches: int | None) -> dict:
    """One pass over ``batches`` mini-batches with hooks: LIF spike counts, non-zero inputs and MACs of every
    conv/Linear layer. Eval mode, no gradient; modes restored and hooks removed afterwards."""
    _check_model(model)
    batches = check_batches(batches, allow_none=True)
    convs = conv_layers(model)
    if not convs:
        raise ValueError("model has no conv layer: SOPs and energy need at least the first conv")
    stem_name = convs[0][0]
    layers = [(name, m, "conv") for name, m in convs] + [
        (name, m, "linear") for name, m in model.named_modules() if isinstance(m, nn.Linear)
    ]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    layers.sort(key=lambda item: order[item[0]])
    lifs = [(name, m) for name, m in model.named_modules() if isinstance(m, LIF)]
    spikes = {name: [0.0, 0] for name, _ in lifs}  # name -> [spike sum, elements]
    stats = {name: {"nonzero": 0, "elements": 0, "rows": 0, "macs": 0, "kind": kind} for name, _, kind in layers}

    def lif_hook(name):
        def hook(module, inputs, output):
            spikes[name][0] += float(output.detach().sum())
            spikes[name][1] += output.numel()
        return hook

    def pre_hook(name, kind):
        def hook(module, inputs):
            x = inputs[0].detach()
            entry = stats[name]
            entry["nonzero"] += int(torch.count_nonzero(x))
            entry["elements"] += x.numel()
            entry["rows"] += x.shape[0] if kind == "conv" else x.numel() // x.shape[-1]
        return hook

    def post_hook(name, kind):
        def hook(module, inputs, output):
            weight = module.weight
            per_position = weight.numel()  # C_out * C_in / groups * k_h * k_w, or out * in for a Linear
            stats[name]["macs"] = per_position * (output.shape[-1] * output.shape[-2] if kind == "conv" else 1)
        return hook

    hooks = [(m, "forward", lif_hook(name)) for name, m in lifs]
    for name, m, kind in layers:
        hooks += [(m, "forward_pre", pre_hook(name, kind)), (m, "forward", post_hook(name, kind))]
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    samples, used, event_input = 0, 0, False
    with hooked(model, hooks, mode="eval"), torch.no_grad():
        for batch in loader:
            if batches is not None and used >= batches:
                break
            inputs, size = _split_batch(batch)
            event_input = event_input or inputs.dim() == 5
            model(inputs.to(device))
            samples += size
            used += 1
    if samples == 0:
        raise ValueError("loader is empty: it yielded no batch to measure on")
    return {"stem": stem_name, "stats": stats, "spikes": spikes, "samples": samples, "event_input": event_input,
            "T": getattr(model, "T", None)}


def _layer_ops(measured: dict) -> list[LayerOps]:
    result = []
    samples = measured["samples"]
    for name, entry in measured["stats"].items():
        if name == measured["stem"] or entry["elements"] == 0:
            continue  # the stem is charged at MAC energy; layers that never ran cost nothing
        rate = entry["nonzero"] / entry["elements"]
        steps = entry["rows"] / samples
        result.append(LayerOps(name, entry["kind"], int(entry["macs"]), steps, rate, rate * steps * entry["macs"]))
    return result


def firing_rates(model: nn.Module, loader, batches: int | None = 5) -> dict[str, float]:
    """Mean firing rate of every LIF module over ``batches`` mini-batches of ``loader`` (None: all of them):
    ``{lif_name: spikes / (T * B * neurons)}``, in [0, 1]. Eval mode, no gradient. Taught in chapter 08."""
    measured = _measure(model, loader, batches)
    return {name: (total / count if count else 0.0) for name, (total, count) in measured["spikes"].items()}


def sops(model: nn.Module, loader, batches: int | None = 5) -> float:
    r"""Synaptic operations per sample, summed over the time steps:

    .. math:: \mathrm{SOPs} = \sum_{l \ge 2} \mathrm{fr}_l \cdot T \cdot \mathrm{MAC}_l

    over every conv and Linear layer but the first conv. :math:`\mathrm{fr}_l` is the fraction of non-zero inputs of
    layer :math:`l` (the firing rate of the spikes entering it, after any pooling), :math:`\mathrm{MAC}_l` its dense
    multiply-accumulates per sample and time step. The classifier reads average-pooled spikes, which are fractional:
    it is counted as accumulates on its non-zero inputs. Measured on ``batches`` mini-batches (None: all). Taught in
    chapter 08; :func:`energy_mj` gives the per-layer record.
    """
    return float(sum(layer.sops for layer in _layer_ops(_measure(model, loader, batches))))


def energy_mj(model: nn.Module, loader, batches: int | None = 5, e_mac_pj: float = E_MAC_PJ,
              e_ac_pj: float = E_AC_PJ) -> EnergyReport:
    r"""Energy per sample of a spiking network, 45 nm constants (the paper gives none; ``docs/design.md``, "Energy"):

    .. math:: E = E_{MAC}\cdot\mathrm{MAC}_{stem} + E_{AC}\cdot\mathrm{SOPs}, \qquad
              E_{MAC} = 4.6\ \text{pJ},\ E_{AC} = 0.9\ \text{pJ}

    The first conv reads the analog image (direct encoding) and is charged at MAC energy **once** per sample, not
    T times (the same image enters at every step); with event input ``[T, B, ...]`` it is charged T times. SOPs are
    summed over time (:func:`sops`), the classifier counted as accumulates on its non-zero (average-pooled) inputs.
    One pass over ``batches`` mini-batches (None: all) in eval mode gives everything in the returned
    :class:`EnergyReport`: the energy in mJ, SOPs, the stem MACs, per-layer :class:`LayerOps`, the LIF firing rates,
    the constants and the conventions in words.

    Example: ``metrics.energy_mj(model, test_loader).energy_mj``. Taught in chapter 08.
    """
    for label, value in (("e_mac_pj", e_mac_pj), ("e_ac_pj", e_ac_pj)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{label} must be a number >= 0 (picojoules per operation), got {value!r}")
    measured = _measure(model, loader, batches)
    layers = _layer_ops(measured)
    stem = measured["stats"][measured["stem"]]
    stem_steps = stem["rows"] / measured["samples"] if measured["event_input"] else 1.0
    mac_stem = stem["macs"] * stem_steps
    total_sops = float(sum(layer.sops for layer in layers))
    energy = (e_mac_pj * mac_stem + e_ac_pj * total_sops) * 1e-9  # pJ -> mJ
    rates = {name: (total / count if count else 0.0) for name, (total, count) in measured["spikes"].items()}
    return EnergyReport(
        energy_mj=energy, sops=total_sops, mac_stem=float(mac_stem), stem=measured["stem"], e_mac_pj=float(e_mac_pj),
        e_ac_pj=float(e_ac_pj), T=measured["T"], samples=measured["samples"], firing_rates=rates, layers=layers,
        conventions=ENERGY_CONVENTIONS,
    )
