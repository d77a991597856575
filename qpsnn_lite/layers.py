"""The building blocks every network of the package is made of, below ``models`` and ``architectures``.

Taught in chapter 02 (the conv-BN-LIF block, direct encoding, the time-averaged readout), chapter 03 (the option-A
shortcut of the ResNet) and chapter 05 (the indexed shortcut that pruning leaves behind, prunable layers).

Layout: a network takes a static image batch ``[B, C, H, W]`` (repeated over ``T`` time steps: direct encoding) or an
event tensor ``[T, B, C, H, W]``, runs convolutions and BatchNorm on the flattened ``T*B`` axis, loops the LIF over
``T``, and returns logits ``[B, classes]`` averaged over time (the paper's time-averaged readout, App. D).

Where this module sits in the package: ``docs/design.md``, "Layering".
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int
from .neurons import LIF
from .quant import QuantConv2d

__all__ = ["QUANT_OPTIONS", "check_quant_kwargs", "make_conv", "SpikingConvBlock", "per_step", "SpikingNet", "SpikingFeatures", "OptionAShortcut",
           "IndexedShortcut", "PrunableLayer", "prunable_layers"]


QUANT_OPTIONS = frozenset(
    p.name for p in inspect.signature(QuantConv2d.__init__).parameters.values()
    if p.kind is not inspect.Parameter.VAR_KEYWORD
) - {"self", "in_channels", "out_channels", "kernel_size", "stride", "padding", "bias", "bits", "gamma"}
"""The quantizer options a network passes on to its ``QuantConv2d`` layers (``granularity``, ``ste``, ...)."""


def check_quant_kwargs(owner: str, quant_kwargs: dict, takes: str = "") -> None:
    """Raise ``TypeError`` naming every key of ``quant_kwargs`` that is not a quantizer option: a typo
    (``lif_kwarg``) must not be dropped silently at full precision, where the options are unused."""
    unknown = sorted(set(quant_kwargs) - QUANT_OPTIONS)
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s) {unknown}; it takes {takes}the quantizer "
                        f"options {sorted(QUANT_OPTIONS)}")


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
    ``gamma`` is None). Extra keyword arguments (``granularity``, ``ste``, ``ste_scale``) go to the quantizer; any
    other keyword raises ``TypeError``, also at full precision (where the quantizer options are unused)."""
    check_quant_kwargs("make_conv", quant_kwargs)
    if bits is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
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


# ------------------------------------------------------------------------------------------------------------------
# Shortcuts of a residual block
# ------------------------------------------------------------------------------------------------------------------
class OptionAShortcut(nn.Module):
    """Parameter-free "option A" shortcut of a ResNet block: subsample the map spatially (``x[..., ::s, ::s]``) and
    zero-pad the channel axis (axis -3) from ``in_channels`` to ``out_channels``, ``(out - in) // 2`` channels in front
    and the rest behind, as in the authors' code. When a pruned block keeps fewer output channels than it receives
    (``out < in``; never the case in the paper's configurations) the same formula gives negative padding, i.e. it
    crops channels at both ends, exactly like ``F.pad`` in the code. Works on ``[..., C, H, W]`` (e.g. ``[T, B, C, H,
    W]``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        diff = out_channels - in_channels
        self.pad_front, self.pad_back = diff // 2, diff - diff // 2

    @property
    def is_identity(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"shortcut expects [..., {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        if self.is_identity:
            return x
        if self.stride != 1:
            x = x[..., :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


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


# ------------------------------------------------------------------------------------------------------------------
# Prunable layers: the conv -> BatchNorm -> LIF triples, found by their names
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


def triple_suffixes(module: nn.Module) -> list[str]:
    """Suffixes ``s`` for which ``module`` has ``conv{s}``, ``bn{s}`` and ``lif{s}`` ("" for a conv block, "1", "2"
    for a residual block)."""
    found = []
    for suffix in ("", "1", "2", "3"):
        conv, bn, lif = (getattr(module, f"{part}{suffix}", None) for part in ("conv", "bn", "lif"))
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(lif, LIF):
            found.append(suffix)
    return found


def join_name(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def prunable_layers(model: nn.Module) -> list[PrunableLayer]:
    """Every conv -> BatchNorm -> LIF triple of ``model`` in module order. Raises if there is none. Chapter 05."""
    layers = []
    for prefix, module in model.named_modules():
        for suffix in triple_suffixes(module):
            layers.append(PrunableLayer(
                join_name(prefix, f"conv{suffix}"), getattr(module, f"conv{suffix}"), getattr(module, f"bn{suffix}"),
                getattr(module, f"lif{suffix}"),
            ))
    if not layers:
        raise ValueError(
            f"model ({type(model).__name__}) has no prunable layers: pruning looks for blocks with submodules "
            "conv, bn, lif (SpikingConvBlock) or conv1/bn1/lif1, conv2/bn2/lif2 (BasicBlock)"
        )
    return layers
