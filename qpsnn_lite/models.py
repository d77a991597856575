"""Spiking CNNs: the small digits network of the book and a registry for the paper's architectures.

Taught in chapter 02 (digits CNN); the paper's VGG-16, ResNet20 and VGGSNN (``architectures.py``) in chapter 03.

Layout: a network takes a static image batch ``[B, C, H, W]`` (repeated over ``T`` time steps: direct encoding) or an
event tensor ``[T, B, C, H, W]``, runs convolutions and BatchNorm on the flattened ``T*B`` axis, loops the LIF over
``T``, and returns logits ``[B, classes]`` averaged over time (the paper's time-averaged readout, App. D).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .neurons import LIF

__all__ = ["SpikingConvBlock", "SpikingFeatures", "SpikingNet", "per_step", "DigitsCNN", "make_conv", "build", "MODEL_NAMES", "PRUNE_CONFIGS"]

MODEL_NAMES = ("digits_cnn", "vgg16", "resnet20", "vggsnn")
PRUNE_CONFIGS = ("A", "B", "C")


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 1,
    bits: int | None = None,
    gamma: str | None = "mean",
    bias: bool = False,
    **quant_kwargs,
) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` when ``bits`` is None, else a ``quant.QuantConv2d`` (ReScaW with ``gamma``; vanilla when
    ``gamma`` is None). Extra keyword arguments (``granularity``, ``ste``, ``ste_scale``) go to the quantizer."""
    if bits is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    from .quant import QuantConv2d  # chapter 03

    return QuantConv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
        bits=bits, gamma=gamma, **quant_kwargs,
    )


class SpikingConvBlock(nn.Module):
    """conv -> BatchNorm -> LIF on ``[T, B, C, H, W]``. The conv and BN see ``T*B`` images; the LIF loops over T.

    The names ``conv``, ``bn`` and ``lif`` are part of the API: pruning (chapter 05) finds layers by them.
    """

    temporal = True  # takes [T, B, ...] as a whole (see SpikingFeatures)

    def __init__(self, conv: nn.Conv2d, lif_kwargs: dict | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels)
        self.lif = LIF(**(lif_kwargs or {}))

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """The input current X[t] = BN(conv(S[t])) of Eq. 1, ``[T, B, C, H, W]``."""
        steps, batch = x.shape[:2]
        return self.bn(self.conv(x.flatten(0, 1))).unflatten(0, (steps, batch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.current(x))


def per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless image module (pooling, flatten) to every time step of ``[T, B, ...]``."""
    steps, batch = x.shape[:2]
    return module(x.flatten(0, 1)).unflatten(0, (steps, batch))


class SpikingNet(nn.Module):
    """Base class: direct encoding, ``features`` over ``[T, B, ...]``, time-averaged linear readout.

    Subclasses set ``self.features`` (a module mapping ``[T, B, C, H, W]`` spikes to ``[T, B, F]``) and
    ``self.classifier`` (a full-precision ``nn.Linear``, as in the paper).
    """

    default_T = 4
    input_channels = 3

    def __init__(self, T: int | None = None) -> None:
        super().__init__()
        T = self.default_T if T is None else T
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T (the number of time steps) must be an integer >= 1, got {T!r}")
        self.T = T

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Direct encoding: repeat a static batch ``[B, C, H, W]`` T times; pass ``[T, B, C, H, W]`` through."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        elif x.dim() != 5:
            raise ValueError(
                f"input must be images [B, C, H, W] or events [T, B, C, H, W], got shape {tuple(x.shape)}"
            )
        if x.shape[2] != self.input_channels:
            raise ValueError(
                f"this {type(self).__name__} expects {self.input_channels} input channels, got {x.shape[2]} "
                f"(input shape {tuple(x.shape)}); build it with in_channels={x.shape[2]}"
            )
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(self.encode(x))  # [T, B, F]
        return self.classifier(features).mean(0)  # time-averaged readout


class SpikingFeatures(nn.Sequential):
    """Sequential over ``[T, B, ...]`` tensors: modules marked ``temporal`` (the spiking blocks) take the whole
    sequence; stateless image modules (pooling, flatten) are applied to every time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x) if getattr(module, "temporal", False) else per_step(module, x)
        return x


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
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("in_channels", in_channels)
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


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _builders() -> dict[str, Callable[..., SpikingNet]]:
    builders: dict[str, Callable[..., SpikingNet]] = {"digits_cnn": DigitsCNN}
    try:  # the paper's architectures (chapter 03) live in their own module
        from . import architectures

        builders.update(architectures.BUILDERS)
    except ImportError:  # pragma: no cover - only while the package is being assembled
        pass
    return builders


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
