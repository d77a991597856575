"""Spiking CNNs by name: the small digits network of the book and the registry of every model ``build`` knows.

Taught in chapter 02 (digits CNN); the paper's VGG-16, ResNet20 and VGGSNN (``architectures.py``) in chapter 03. The
blocks they are made of (conv-BN-LIF, the spiking container, shortcuts) live in :mod:`qpsnn_lite.layers` and are
re-exported here, where chapter 02 introduces them.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from . import architectures
from ._checks import check_positive_int
from .layers import SpikingConvBlock, SpikingFeatures, SpikingNet, check_quant_kwargs, make_conv, per_step

__all__ = ["SpikingConvBlock", "SpikingFeatures", "SpikingNet", "per_step", "DigitsCNN", "make_conv", "build",
           "MODEL_NAMES", "PRUNE_CONFIGS"]

MODEL_NAMES = ("digits_cnn", "vgg16", "resnet20", "vggsnn")
PRUNE_CONFIGS = ("A", "B", "C")


class DigitsCNN(SpikingNet):
    """The book's small spiking CNN (chapter 02): four conv-BN-LIF blocks, two max-pools, global average pool.

    ``stem`` (the first conv) and the classifier stay at full precision as in the paper; the other convs are quantized
    when ``bits`` is given. The last conv (``block4``) feeds the classifier and is not pruned by default.
    """

    default_T = 4

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        T: int | None = None,
        channels: Sequence[int] = (16, 32, 64, 64),
        bits: int | None = None,
        gamma: str | None = "mean",
        lif_kwargs: dict | None = None,
        **quant_kwargs,
    ) -> None:
        super().__init__(T)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        check_quant_kwargs("DigitsCNN", quant_kwargs,
                           "num_classes, in_channels, T, channels, bits, gamma, lif_kwargs and ")
        if len(channels) != 4 or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"channels must be four positive integers, got {channels!r}")
        self.input_channels = in_channels
        c1, c2, c3, c4 = channels
        quantized = dict(bits=bits, gamma=gamma, **quant_kwargs)
        self.features = SpikingFeatures()
        self.features.add_module("stem", SpikingConvBlock(make_conv(in_channels, c1, bias=True), lif_kwargs))
        self.features.add_module("block2", SpikingConvBlock(make_conv(c1, c2, **quantized), lif_kwargs))
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("block3", SpikingConvBlock(make_conv(c2, c3, **quantized), lif_kwargs))
        self.features.add_module("pool3", nn.MaxPool2d(2))
        self.features.add_module("block4", SpikingConvBlock(make_conv(c3, c4, **quantized), lif_kwargs))
        self.features.add_module("gap", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.classifier = nn.Linear(c4, num_classes)


def _builders() -> dict[str, Callable[..., SpikingNet]]:
    """Every model ``build`` knows: the digits CNN and the paper's architectures (chapter 03)."""
    return {"digits_cnn": DigitsCNN, **architectures.BUILDERS}


def build(
    name: str,
    num_classes: int,
    in_channels: int | None = None,
    T: int | None = None,
    bits: int | None = None,
    gamma: str | None = "mean",
    prune_config: str | None = None,
    **kwargs,
) -> SpikingNet:
    """Build a spiking network by name: ``"digits_cnn"`` (chapter 02) or the paper's ``"vgg16"``, ``"resnet20"``,
    ``"vggsnn"`` (chapter 03).

    Args:
        num_classes: classifier outputs.
        in_channels: input channels; None takes the model's default (1 digits, 3 CIFAR, 2 DVS).
        T: time steps; None takes the paper's value (2 ResNet20, 4 VGG-16, 10 VGGSNN; 4 for the digits CNN).
        bits: None for full precision, else the weight bit width of every conv but the first.
        gamma: ReScaW rule ``"mean"`` (default), ``"max"``, ``"percentile"``, or None for the vanilla quantizer.
        prune_config: None, or the paper's pruning configuration ``"A"``, ``"B"``, ``"C"`` (Tables 9-11): builds the
            narrower network directly.
    """
    builders = _builders()
    if name not in builders:
        raise ValueError(f"unknown model name {name!r}; choose one of {sorted(builders)}")
    if prune_config is not None and prune_config not in PRUNE_CONFIGS:
        raise ValueError(f"prune_config must be None or one of {PRUNE_CONFIGS}, got {prune_config!r}")
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    if prune_config is not None:
        if name == "digits_cnn":
            raise ValueError("prune_config applies to the paper's models only; prune digits_cnn with prune.apply")
        kwargs["prune_config"] = prune_config
    return builders[name](num_classes=num_classes, T=T, bits=bits, gamma=gamma, **kwargs)
