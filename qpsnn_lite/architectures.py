"""The paper's three spiking networks: VGG-16 (CIFAR, TinyImageNet), a wide ResNet20 (CIFAR) and VGGSNN (DVS-CIFAR10).

Taught in chapter 03 (the architectures) and chapter 05 (the pruning configurations of Tables 9-11).

All three are built from the blocks of :mod:`qpsnn_lite.layers`: a full-precision first conv (the "stem", fed with the
analog image by direct encoding), quantized 3x3 convs without bias after it (``QuantConv2d`` when ``bits`` is given,
plain ``nn.Conv2d`` otherwise), BatchNorm shared over time, LIF neurons, and one full-precision ``nn.Linear`` readout
averaged over the time steps [P App. D, App. G].

``prune_config="A" | "B" | "C"`` builds the physically narrower network of the paper's pruning configurations
directly: a conv with ``n`` channels and pruning ratio ``r`` keeps ``int(n * (1 - r))`` channels (a floor, as in the
authors' code). The per-conv ratios are data (:data:`PRUNE_RATIOS`, :func:`prune_ratios`) so the book can print them.
The ResNet20 ratios use the *code-faithful* reading of the authors' ``compress_rate`` list
(:data:`RESNET20_COMPRESS_RATE`, :func:`resnet20_widths`): Table 10 of the paper lists the stage-2 block outputs at
0.6 / 0.75, which contradicts its own parameter counts; the code prunes them like stage 1 (0.3 / 0.35), and with that
reading every model size of Table 1 reproduces to 0.01 MB (see :mod:`qpsnn_lite.metrics`).

(About 550 lines: the three architectures share their pruning tables and checks, and chapter 03 reads them side by
side; splitting per network would spread the tables of Tables 9-11 over three files.)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ._checks import check_positive_int
from .layers import OptionAShortcut, SpikingConvBlock, SpikingFeatures, SpikingNet, check_quant_kwargs, make_conv
from .neurons import LIF

__all__ = [
    "BUILDERS",
    "DATASETS",
    "PRUNE_RATIOS",
    "RESNET20_COMPRESS_RATE",
    "VGG16_CFG",
    "VGGSNN_CFG",
    "VGG16",
    "VGGSNN",
    "ResNet20",
    "BasicBlock",
    "OptionAShortcut",
    "dataset_for",
    "prune_ratios",
    "pruned_width",
    "resnet20_widths",
    "vgg16",
    "vggsnn",
    "resnet20",
]

M = "M"  # a 2x2 max-pool in a VGG configuration list
VGG16_CFG: tuple = (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512)
VGGSNN_CFG: tuple = (64, 128, M, 256, 256, M, 512, 512, M, 512, 512)
RESNET20_STAGES = ((128, 1), (256, 2), (512, 2))  # (width, stride of the first block) per stage
RESNET20_BLOCKS_PER_STAGE = 3
RESNET20_STEM = 64

# The data set each model/class-count pair stands for (the prune configurations of VGG-16 depend on it).
DATASETS = {10: "cifar10", 100: "cifar100", 200: "tinyimagenet"}

# ------------------------------------------------------------------------------------------------------------------
# Pruning configurations [P Tables 9-11, corrected against the code for ResNet20]
# ------------------------------------------------------------------------------------------------------------------
# VGG-16: convs 1-7 share one ratio, convs 8-12 another, conv 13 (feeding the classifier) is not pruned.
_VGG16_SHARED = {
    ("cifar10", "A"): (0.45, 0.51),
    ("cifar10", "B"): (0.49, 0.80),
    ("cifar100", "A"): (0.45, 0.70),
    ("cifar100", "B"): (0.45, 0.78),
    ("tinyimagenet", "A"): (0.45, 0.51),
    ("tinyimagenet", "B"): (0.45, 0.62),
}

# ResNet20 as the authors' ``compress_rate`` list (20 entries, read by resnet20_widths): entry 0 is the stem, entries
# 1 and 2 the block outputs of stage 1 and stage 2 (stage 3 outputs are never pruned), entries 3.. the block-internal
# convs (conv1) of the nine blocks in order.
RESNET20_COMPRESS_RATE = {
    "A": (0.1,) + (0.3,) * 3 + (0.6,) * 16,
    "B": (0.1,) + (0.35,) * 3 + (0.75,) * 16,
}

_VGGSNN_RATIOS = {
    "A": (0.5, 0.5, 0.5, 0.7, 0.7, 0.7, 0.7, 0.0),
    "B": (0.5, 0.5, 0.5, 0.8, 0.8, 0.8, 0.8, 0.0),
    "C": (0.82, 0.82, 0.82, 0.93, 0.93, 0.93, 0.93, 0.0),
}


def pruned_width(channels: int, ratio: float) -> int:
    """Channels kept when a conv of ``channels`` outputs is pruned at ``ratio``: ``int(channels * (1 - ratio))``, the
    floor used by the authors' code (e.g. 64 at 0.45 keeps 35)."""
    return int(channels * (1 - ratio))


def resnet20_widths(compress_rate: Sequence[float]) -> tuple[list[int], list[int]]:
    """Channel counts of the wide ResNet20 for a ``compress_rate`` list, in the reading of the authors' code.

    Returns ``(outputs, mids)``: ``outputs`` has 10 entries, the stem followed by the output width of each of the nine
    BasicBlocks (the channels of the residual stream); ``mids`` has 9, the width of each block's internal conv1.
    ``compress_rate[0]`` prunes the stem, ``compress_rate[1]`` the outputs of stage 1, ``compress_rate[2]`` the
    outputs of stage 2, stage 3 outputs stay at 512, and ``compress_rate[3 + i]`` prunes the conv1 of block ``i``.
    """
    rates = [float(r) for r in compress_rate]
    needed = 3 + len(RESNET20_STAGES) * RESNET20_BLOCKS_PER_STAGE
    if len(rates) < needed or not all(0.0 <= r < 1.0 for r in rates):
        raise ValueError(
            f"compress_rate must hold at least {needed} ratios in [0, 1), got {list(compress_rate)!r}"
        )
    stage_widths = [w for w, _ in RESNET20_STAGES]
    out_rates = [rates[0]]
    for s in range(len(stage_widths)):
        rate = rates[1 + s] if s < len(stage_widths) - 1 else 0.0  # the last stage feeds the classifier
        out_rates += [rate] * RESNET20_BLOCKS_PER_STAGE
    full = [RESNET20_STEM] + [w for w in stage_widths for _ in range(RESNET20_BLOCKS_PER_STAGE)]
    outputs = [pruned_width(n, r) for n, r in zip(full, out_rates)]
    mids = [pruned_width(n, r) for n, r in zip(full[1:], rates[3:])]
    return outputs, mids


def _resnet20_conv_ratios(compress_rate: Sequence[float]) -> tuple[float, ...]:
    """Per-conv ratios of ResNet20 in module order: stem, then (conv1, conv2) of each block."""
    rates = list(compress_rate)
    ratios = [rates[0]]
    for b in range(len(RESNET20_STAGES) * RESNET20_BLOCKS_PER_STAGE):
        stage = b // RESNET20_BLOCKS_PER_STAGE
        ratios += [rates[3 + b], rates[1 + stage] if stage < len(RESNET20_STAGES) - 1 else 0.0]
    return tuple(ratios)


def _build_prune_ratios() -> dict[tuple[str, str, str], tuple[float, ...]]:
    table: dict[tuple[str, str, str], tuple[float, ...]] = {}
    for (dataset, config), (early, late) in _VGG16_SHARED.items():
        table[("vgg16", dataset, config)] = (early,) * 7 + (late,) * 5 + (0.0,)
    for dataset in ("cifar10", "cifar100"):
        for config, rates in RESNET20_COMPRESS_RATE.items():
            table[("resnet20", dataset, config)] = _resnet20_conv_ratios(rates)
    for config, ratios in _VGGSNN_RATIOS.items():
        table[("vggsnn", "dvs_cifar10", config)] = ratios
    return table


#: ``PRUNE_RATIOS[(model, dataset, config)]``: the pruning ratio of every conv in module order (the first entry is the
#: full-precision stem, the last conv of each network feeds the classifier and has ratio 0).
PRUNE_RATIOS: dict[tuple[str, str, str], tuple[float, ...]] = _build_prune_ratios()


def dataset_for(name: str, num_classes: int) -> str:
    """The data set whose prune configurations a model with ``num_classes`` outputs uses.

    VGG-16: 10 -> ``"cifar10"``, 100 -> ``"cifar100"``, 200 -> ``"tinyimagenet"``; ResNet20: ``"cifar10"`` or
    ``"cifar100"`` (its ratios are the same for both, so other class counts reuse them); VGGSNN: ``"dvs_cifar10"``.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown model name {name!r}; choose one of {sorted(BUILDERS)}")
    check_positive_int("num_classes", num_classes)
    if name == "vggsnn":
        return "dvs_cifar10"
    if name == "resnet20":
        return "cifar100" if num_classes == 100 else "cifar10"
    if num_classes not in DATASETS:
        raise ValueError(
            f"VGG-16 prune configurations exist for CIFAR-10, CIFAR-100 and TinyImageNet only: num_classes must be "
            f"one of {sorted(DATASETS)} to pick one, got num_classes={num_classes}"
        )
    return DATASETS[num_classes]


def prune_ratios(name: str, num_classes: int, config: str) -> list[float]:
    """Per-conv pruning ratios (module order, stem first) of the paper's configuration ``config`` for model ``name``.

    Example: ``prune_ratios("vgg16", 10, "B")`` gives seven 0.49s, five 0.8s and a final 0.0 [P Table 9].
    """
    dataset = dataset_for(name, num_classes)
    key = (name, dataset, config)
    if key not in PRUNE_RATIOS:
        available = sorted(c for (n, d, c) in PRUNE_RATIOS if (n, d) == (name, dataset))
        raise ValueError(
            f"prune_config {config!r} does not exist for {name} on {dataset}; the paper gives {available}"
        )
    return list(PRUNE_RATIOS[key])


# ------------------------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------------------------
def _check_quant_kwargs(model: str, quant_kwargs: dict) -> None:
    extra = "compress_rate, " if model == "resnet20" else ""
    check_quant_kwargs(model, quant_kwargs, f"num_classes, T, bits, gamma, in_channels, image_size, prune_config, "
                                            f"{extra}lif_kwargs and ")


def _check_config(config) -> None:
    if config is not None and config not in ("A", "B", "C"):
        raise ValueError(f"prune_config must be None or one of ('A', 'B', 'C'), got {config!r}")


def _is_conv(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Conv2d) or (isinstance(weight, torch.Tensor) and weight.dim() == 4)


def _init_vgg(model: nn.Module) -> None:
    """[C] VGG initialisation: conv N(0, sqrt(2 / (k^2 C_out))), bias 0; BN (1, 0); Linear N(0, 0.01), bias 0."""
    for m in model.modules():
        if _is_conv(m):
            k_h, k_w = m.weight.shape[-2:]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (k_h * k_w * m.weight.shape[0])))
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _init_resnet(model: nn.Module) -> None:
    """[C] ResNet initialisation: conv Kaiming-normal (fan_out, ReLU gain); BN (1, 0); Linear left at its default."""
    for m in model.modules():
        if _is_conv(m):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _FixedInputSize:
    """Mixin for networks whose Linear input depends on the image size: check H x W in ``encode``."""

    image_size: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = super().encode(x)  # type: ignore[misc]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"this {type(self).__name__} was built for {self.image_size}x{self.image_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]} (input shape {tuple(x.shape)}); build it with "
                f"image_size={x.shape[-1]}" + ("" if x.shape[-2] == x.shape[-1] else " after making the input square")
            )
        return x


def _check_image_size(model: str, image_size, multiple: int) -> None:
    bad_type = isinstance(image_size, bool) or not isinstance(image_size, int)
    if bad_type or image_size < multiple or image_size % multiple:
        raise ValueError(
            f"image_size for {model} must be a positive multiple of {multiple} (its pooling halves the map "
            f"{int(math.log2(multiple))} times), got {image_size!r}"
        )


def _vgg_features(
    cfg: Sequence,
    in_channels: int,
    ratios: Sequence[float],
    quantized: dict,
    lif_kwargs: dict | None,
) -> tuple[SpikingFeatures, list[int]]:
    """Conv-BN-LIF blocks ``block1..blockN`` and max-pools ``pool1..`` of a VGG configuration list; the first conv is
    full precision with a bias, the others quantized (when ``bits`` is given) without bias."""
    features = SpikingFeatures()
    widths: list[int] = []
    channels, n_conv, n_pool = in_channels, 0, 0
    for item in cfg:
        if item == M:
            n_pool += 1
            features.add_module(f"pool{n_pool}", nn.MaxPool2d(2))
            continue
        width = pruned_width(item, ratios[n_conv])
        conv = make_conv(channels, width, bias=True) if n_conv == 0 else make_conv(channels, width, **quantized)
        n_conv += 1
        features.add_module(f"block{n_conv}", SpikingConvBlock(conv, lif_kwargs))
        widths.append(width)
        channels = width
    return features, widths


def _build_vgg(
    net: SpikingNet,
    name: str,
    cfg: Sequence,
    multiple: int,
    num_classes: int,
    bits: int | None,
    gamma: str | None,
    in_channels: int,
    image_size: int,
    prune_config: str | None,
    lif_kwargs: dict | None,
    quant_kwargs: dict,
) -> None:
    """The body of :class:`VGG16` and :class:`VGGSNN` ``__init__`` (after ``SpikingNet.__init__``): check the
    arguments, then build ``features`` from ``cfg``, AvgPool2d(2), flatten and the Linear ``classifier`` for an
    ``image_size`` that the pooling divides by ``multiple``, and initialise the weights."""
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)
    _check_image_size(name, image_size, multiple)
    _check_config(prune_config)
    _check_quant_kwargs(name, quant_kwargs)
    net.input_channels = in_channels
    net.image_size = image_size
    net.prune_config = prune_config
    n_convs = sum(item != M for item in cfg)
    ratios = [0.0] * n_convs if prune_config is None else prune_ratios(name, num_classes, prune_config)
    net.prune_ratios = ratios
    net.features, net.conv_widths = _vgg_features(
        cfg, in_channels, ratios, dict(bits=bits, gamma=gamma, **quant_kwargs), lif_kwargs
    )
    net.features.add_module("avgpool", nn.AvgPool2d(2))
    net.features.add_module("flatten", nn.Flatten())
    side = image_size // multiple
    net.classifier = nn.Linear(net.conv_widths[-1] * side * side, num_classes)
    _init_vgg(net)


# ------------------------------------------------------------------------------------------------------------------
# VGG-16 and VGGSNN
# ------------------------------------------------------------------------------------------------------------------
class VGG16(_FixedInputSize, SpikingNet):
    """Spiking VGG-16 [P Table 9; C]: 13 conv3x3-BN-LIF blocks with four 2x2 max-pools, AvgPool2d(2), flatten, ONE
    full-precision Linear (512 inputs on 32x32, 2048 on 64x64). Paper default T = 4.

    Modules: ``features.block1 .. block13`` (``SpikingConvBlock``: ``conv``, ``bn``, ``lif``), ``features.pool1..4``,
    ``features.avgpool``, ``features.flatten``, ``classifier``. ``conv_widths`` lists the output channels of each conv.

    Args:
        num_classes: 10 (CIFAR-10), 100 (CIFAR-100), 200 (TinyImageNet); any count without ``prune_config``.
        T: time steps, None for 4.
        bits: None for full precision, else the weight bits of every conv but the first.
        gamma: ReScaW rule for the quantized convs (None: vanilla quantizer).
        in_channels: input channels (3).
        image_size: 32 (CIFAR) or 64 (TinyImageNet); any multiple of 32.
        prune_config: None, ``"A"`` or ``"B"`` [P Table 9 (CIFAR), Table 11 (Tiny)], chosen by ``num_classes``.
        lif_kwargs: LIF options (tau, threshold, surrogate, alpha, reset).
        **quant_kwargs: quantizer options (``granularity``, ``ste``, ``ste_scale``, ``percentile``).
    """

    default_T = 4
    input_channels = 3

    def __init__(
        self,
        num_classes: int = 10,
        T: int | None = None,
        bits: int | None = None,
        gamma: str | None = "mean",
        in_channels: int = 3,
        image_size: int = 32,
        prune_config: str | None = None,
        lif_kwargs: dict | None = None,
        **quant_kwargs,
    ) -> None:
        super().__init__(T)
        _build_vgg(self, "vgg16", VGG16_CFG, 32, num_classes, bits, gamma, in_channels, image_size, prune_config,
                   lif_kwargs, quant_kwargs)


class VGGSNN(_FixedInputSize, SpikingNet):
    """VGGSNN for DVS-CIFAR10 [P Table 11; C]: 8 conv3x3-BN-LIF blocks (64, 128, M, 256, 256, M, 512, 512, M, 512,
    512) on 2 x 48 x 48 event frames, AvgPool2d(2) -> 512 x 3 x 3 = 4608 features, one full-precision Linear.
    Paper default T = 10. Feed event tensors ``[T, B, 2, 48, 48]`` (static ``[B, C, H, W]`` inputs are repeated T
    times). Module names and arguments as :class:`VGG16`; ``image_size`` is any multiple of 16 (48 by default) and
    ``prune_config`` one of ``"A"``, ``"B"``, ``"C"``.
    """

    default_T = 10
    input_channels = 2

    def __init__(
        self,
        num_classes: int = 10,
        T: int | None = None,
        bits: int | None = None,
        gamma: str | None = "mean",
        in_channels: int = 2,
        image_size: int = 48,
        prune_config: str | None = None,
        lif_kwargs: dict | None = None,
        **quant_kwargs,
    ) -> None:
        super().__init__(T)
        _build_vgg(self, "vggsnn", VGGSNN_CFG, 16, num_classes, bits, gamma, in_channels, image_size, prune_config,
                   lif_kwargs, quant_kwargs)


# ------------------------------------------------------------------------------------------------------------------
# ResNet20 (wide)
# ------------------------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Spiking BasicBlock of the wide ResNet20 [P Table 10; C]: ``conv1-bn1-lif1-conv2-bn2``, the option-A shortcut
    added to the BN output, then ``lif2`` (the residual joins *before* the second LIF).

    Takes and returns ``[T, B, C, H, W]`` (``temporal = True``). ``conv1`` has ``mid_channels`` outputs (the
    block-internal width, pruned freely) and ``conv2`` ``out_channels`` (the residual-stream width, shared by a stage).
    The submodule names ``conv1, bn1, lif1, conv2, bn2, lif2`` are part of the API: pruning finds layers by them.
    """

    temporal = True

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        bits: int | None = None,
        gamma: str | None = "mean",
        lif_kwargs: dict | None = None,
        **quant_kwargs,
    ) -> None:
        super().__init__()
        quantized = dict(bits=bits, gamma=gamma, **quant_kwargs)
        self.conv1 = make_conv(in_channels, mid_channels, 3, stride=stride, padding=1, **quantized)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.lif1 = LIF(**(lif_kwargs or {}))
        self.conv2 = make_conv(mid_channels, out_channels, 3, stride=1, padding=1, **quantized)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.lif2 = LIF(**(lif_kwargs or {}))
        self.shortcut = OptionAShortcut(in_channels, out_channels, stride)

    def current1(self, x: torch.Tensor) -> torch.Tensor:
        """BN(conv1(x)) on ``[T, B, C, H, W]``: the input current of ``lif1``."""
        steps, batch = x.shape[:2]
        return self.bn1(self.conv1(x.flatten(0, 1))).unflatten(0, (steps, batch))

    def current2(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """BN(conv2(hidden)) + shortcut(x): the input current of ``lif2``."""
        steps, batch = hidden.shape[:2]
        return self.bn2(self.conv2(hidden.flatten(0, 1))).unflatten(0, (steps, batch)) + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"BasicBlock expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        return self.lif2(self.current2(x, self.lif1(self.current1(x))))


class _Stage(SpikingFeatures):
    """A ResNet stage: a sequence of BasicBlocks, itself temporal (``[T, B, ...]`` in and out)."""

    temporal = True


class ResNet20(SpikingNet):
    """The paper's wide spiking ResNet20 [P Table 10; C]: full-precision stem conv 3->64 (no bias) + BN + LIF, three
    stages of three :class:`BasicBlock` with 128 / 256 / 512 channels and strides 1 / 2 / 2, option-A shortcuts,
    global average pooling and a full-precision Linear(512 -> classes). 17.1 M parameters, 68.4 MB at FP32 on
    CIFAR-100. Paper default T = 2.

    Modules: ``features.stem`` (``SpikingConvBlock``), ``features.layer1..layer3`` (each ``0, 1, 2`` BasicBlocks with
    ``conv1, bn1, lif1, conv2, bn2, lif2, shortcut``), ``features.pool``, ``features.flatten``, ``classifier``.
    ``block_widths`` holds the residual-stream widths (stem, then each block's output), ``mid_widths`` each block's
    conv1 width, ``conv_widths`` every conv's output channels in module order.

    ``prune_config`` ``"A"`` / ``"B"`` uses :data:`RESNET20_COMPRESS_RATE` (the same for any class count);
    ``compress_rate`` takes a custom 20-entry list in the same format instead. Other arguments as :class:`VGG16`;
    ``image_size`` is accepted for a uniform interface but any size works (global pooling).
    """

    default_T = 2
    input_channels = 3

    def __init__(
        self,
        num_classes: int = 10,
        T: int | None = None,
        bits: int | None = None,
        gamma: str | None = "mean",
        in_channels: int = 3,
        image_size: int | None = None,
        prune_config: str | None = None,
        compress_rate: Sequence[float] | None = None,
        lif_kwargs: dict | None = None,
        **quant_kwargs,
    ) -> None:
        super().__init__(T)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        if image_size is not None:
            check_positive_int("image_size", image_size)  # any size runs: global average pooling
        _check_config(prune_config)
        _check_quant_kwargs("resnet20", quant_kwargs)
        if prune_config is not None and compress_rate is not None:
            raise ValueError("give prune_config or compress_rate, not both")
        if prune_config is not None:
            prune_ratios("resnet20", num_classes, prune_config)  # raises for configs the paper does not define
            compress_rate = RESNET20_COMPRESS_RATE[prune_config]
        elif compress_rate is None:
            compress_rate = (0.0,) * 20
        self.input_channels = in_channels
        self.image_size = image_size
        self.prune_config = prune_config
        self.compress_rate = tuple(float(r) for r in compress_rate)
        self.block_widths, self.mid_widths = resnet20_widths(self.compress_rate)
        self.prune_ratios = list(_resnet20_conv_ratios(self.compress_rate))

        self.features = SpikingFeatures()
        self.features.add_module("stem", SpikingConvBlock(make_conv(in_channels, self.block_widths[0]), lif_kwargs))
        block = 0
        for s, (_, stride) in enumerate(RESNET20_STAGES):
            stage = _Stage()
            for i in range(RESNET20_BLOCKS_PER_STAGE):
                stage.add_module(str(i), BasicBlock(
                    self.block_widths[block], self.mid_widths[block], self.block_widths[block + 1],
                    stride=stride if i == 0 else 1, bits=bits, gamma=gamma, lif_kwargs=lif_kwargs, **quant_kwargs,
                ))
                block += 1
            self.features.add_module(f"layer{s + 1}", stage)
        self.features.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.features.add_module("flatten", nn.Flatten())
        self.classifier = nn.Linear(self.block_widths[-1], num_classes)
        self.conv_widths = [self.block_widths[0]]
        for b in range(len(self.mid_widths)):
            self.conv_widths += [self.mid_widths[b], self.block_widths[b + 1]]
        _init_resnet(self)


# ------------------------------------------------------------------------------------------------------------------
# Builders (called by models.build)
# ------------------------------------------------------------------------------------------------------------------
def vgg16(num_classes: int = 10, T: int | None = None, bits: int | None = None, gamma: str | None = "mean",
          **kwargs) -> VGG16:
    """Build :class:`VGG16` (``models.build("vgg16", ...)``)."""
    return VGG16(num_classes=num_classes, T=T, bits=bits, gamma=gamma, **kwargs)


def resnet20(num_classes: int = 10, T: int | None = None, bits: int | None = None, gamma: str | None = "mean",
             **kwargs) -> ResNet20:
    """Build :class:`ResNet20` (``models.build("resnet20", ...)``)."""
    return ResNet20(num_classes=num_classes, T=T, bits=bits, gamma=gamma, **kwargs)


def vggsnn(num_classes: int = 10, T: int | None = None, bits: int | None = None, gamma: str | None = "mean",
           **kwargs) -> VGGSNN:
    """Build :class:`VGGSNN` (``models.build("vggsnn", ...)``)."""
    return VGGSNN(num_classes=num_classes, T=T, bits=bits, gamma=gamma, **kwargs)


BUILDERS = {"vgg16": vgg16, "resnet20": resnet20, "vggsnn": vggsnn}
