"""Argument checks shared by the whole package, each written once with one message.

Public functions and constructors call these at their edges; inner forward passes never do (``docs/design.md``,
"Checks at the edges"). Every error names the argument, what it got and what is expected.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["UsageError", "BITS_RANGE", "check_bits", "check_positive_int", "check_batches", "check_choice", "is_int", "is_number",
           "is_conv", "batch_inputs", "check_finite_inputs", "check_finite_model"]

class UsageError(ValueError):
    """An error the user fixes by changing a setting, a path or the environment (another ``output_dir``, a network
    connection), not a failure of the computation. The command line prints its message and exits with status 2."""


BITS_RANGE = (1, 16)
"""Weight bit widths the package quantizes to (the paper uses 8, 4 and 2; 16 bounds the integer codes' storage)."""


def is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python, and 2.0 is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_bits(bits: Any, name: str = "bits") -> int:
    """``bits`` as an int in 1..16, else ``ValueError``."""
    low, high = BITS_RANGE
    if not is_int(bits) or not low <= int(bits) <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}; the paper uses 8, 4 or 2")
    return int(bits)


def check_positive_int(name: str, value: Any) -> int:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_batches(batches: Any, allow_none: bool = False) -> int | None:
    """A number of mini-batches: an integer >= 1 (or None, "the whole loader", when ``allow_none``)."""
    if allow_none and batches is None:
        return None
    if not is_int(batches) or batches < 1:
        expected = "None (the whole loader) or an integer >= 1" if allow_none else "an integer >= 1"
        raise ValueError(f"batches (the number of mini-batches) must be {expected}, got {batches!r}")
    return int(batches)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def is_conv(module: nn.Module) -> bool:
    """An ``nn.Conv*`` or any module holding a 4-d ``weight`` that is not a Linear (so a ``QuantConv2d`` or an
    ``IntegerConv2d`` counts whatever its base class)."""
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.modules.conv._ConvNd) or (
        isinstance(weight, torch.Tensor) and weight.dim() == 4 and not isinstance(module, nn.Linear)
    )


def batch_inputs(batch: Any) -> torch.Tensor:
    """The inputs of a loader's batch: the batch itself (a tensor) or the first item of an ``(inputs, labels)``
    pair."""
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the loader must yield tensors or (inputs, labels) pairs, got a batch of type "
                        f"{type(x).__name__}")
    return x


def check_finite_inputs(x: torch.Tensor, where: str) -> None:
    """``FloatingPointError`` when the input batch ``x`` holds NaN or inf. A spike maps NaN to 0 (``NaN >= theta`` is
    False), so a NaN input never shows in the outputs: accuracies and scores would look finite."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise FloatingPointError(f"{where} contains NaN or inf inputs; clean the data set")


def check_finite_model(model: nn.Module, action: str) -> None:
    """``FloatingPointError`` naming the parameters and buffers (BatchNorm running statistics) of ``model`` that hold
    NaN or inf, before ``action`` ("evaluate", "score", "export") uses them."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        verb = "holds" if len(bad) == 1 else "hold"
        raise FloatingPointError(f"cannot {action}: {', '.join(bad[:3])}{more} {verb} NaN or inf; load a clean "
                                 "checkpoint or retrain with a lower lr")
