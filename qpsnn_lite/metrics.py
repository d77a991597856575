r"""What the paper reports about a model: size in MB, parameter counts, the fraction of connections kept.

Taught in chapter 08. (Synaptic operations and energy, Table 6, join this module later.)

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

__all__ = [
    "SizeBreakdown",
    "conv_layers",
    "size_breakdown",
    "model_size_mb",
    "count_parameters",
    "quantized_weight_count",
    "connection_percent",
]

FP_BITS = 32  # B_fp of Eq. 16


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_bits(bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an integer from 1 to 32 (the weight bit width B_q of Eq. 16), got {bits!r}")


def _is_conv(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.modules.conv._ConvNd) or (
        isinstance(weight, torch.Tensor) and weight.dim() == 4 and not isinstance(module, nn.Linear)
    )


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every conv layer in ``named_modules()`` order; the first is the full-precision stem.

    A conv is an ``nn.Conv*`` or any module holding a 4-d ``weight`` (so ``QuantConv2d`` counts whatever its base
    class). Chapter 08.
    """
    _check_model(model)
    return [(name, m) for name, m in model.named_modules() if _is_conv(m)]


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
        bits: weight bit width :math:`B_q` of the quantized convs, an integer from 1 to 32.
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
