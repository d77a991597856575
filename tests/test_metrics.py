"""Model size (Eq. 16), parameter counts and connection % against the paper's Tables 1, 6 and 9-11."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn

from qpsnn_lite import metrics, models


@lru_cache(maxsize=None)
def _net(name: str, num_classes: int, config: str | None = None, image_size: int | None = None) -> nn.Module:
    kwargs = {} if image_size is None else {"image_size": image_size}
    with torch.no_grad():
        return models.build(name, num_classes, T=1, prune_config=config, **kwargs)


# (model, classes, config, image_size) -> sizes in MB at 8 / 4 / 2 bits [P Table 1]
TABLE1 = [
    ("resnet20", 10, "A", None, (6.27, 3.16, 1.61)),
    ("resnet20", 10, "B", None, (3.92, 1.98, 1.02)),
    ("resnet20", 100, "A", None, (6.45, 3.35, 1.79)),
    ("resnet20", 100, "B", None, (4.10, 2.17, 1.20)),
    ("vgg16", 10, "A", None, (4.28, 2.16, 1.10)),
    ("vgg16", 10, "B", None, (1.45, 0.74, 0.39)),
    ("vgg16", 100, "A", None, (2.48, 1.35, 0.79)),
    ("vgg16", 100, "B", None, (1.85, 1.04, 0.63)),
    ("vgg16", 200, "A", 64, (5.90, 3.78, 2.72)),
    ("vgg16", 200, "B", 64, (4.67, 3.17, 2.41)),
    ("vggsnn", 10, "A", None, (1.61, 0.90, 0.55)),
    ("vggsnn", 10, "B", None, (1.05, 0.62, 0.41)),
    ("vggsnn", 10, "C", None, (0.40, 0.29, 0.24)),
]


@pytest.mark.parametrize("name,classes,config,image_size,sizes", TABLE1,
                         ids=[f"{n}-{c}-{cfg}" for n, c, cfg, _, _ in TABLE1])
def test_table1_qpsnn_sizes(name, classes, config, image_size, sizes):
    net = _net(name, classes, config, image_size)
    got = tuple(round(metrics.model_size_mb(net, bits), 2) for bits in (8, 4, 2))
    assert got == sizes


def test_full_precision_sizes():
    # Table 6: ResNet20 on CIFAR-100 is 68.4 MB (68.38 exactly), VGG-16 on CIFAR-10 58.88 MB (58.90 by Eq. 16).
    resnet = metrics.model_size_mb(_net("resnet20", 100), 32)
    assert round(resnet, 1) == 68.4 and round(resnet, 2) == 68.38
    assert round(metrics.model_size_mb(_net("vgg16", 10), 32), 2) == 58.90
    assert round(metrics.count_parameters(_net("resnet20", 100)) / 1e6, 1) == 17.1


def test_size_rule_is_structural():
    # A model built with bits has the same size as its full-precision twin: "quantized" is decided by position.
    pytest.importorskip("qpsnn_lite.quant")
    quantized = models.build("vggsnn", 10, T=1, bits=2, prune_config="C")
    assert metrics.size_breakdown(quantized) == metrics.size_breakdown(_net("vggsnn", 10, "C"))
    assert metrics.model_size_mb(quantized, 2) == metrics.model_size_mb(_net("vggsnn", 10, "C"), 2)


# Params of the pruned networks [P Tables 9-11, as corrected in docs/design.md, "Parameter counts"], in millions. The paper's
# counting is not uniform: the VGG-16 counts include BatchNorm (4.25 and 3.43 need it), the VGGSNN and ResNet20
# counts match conv + FC parameters without BatchNorm (0.25 for VGGSNN C needs that: with BN it is 0.2552 M).
VGG16_PARAMS = [
    (10, "A", None, 4.25),
    (10, "B", None, 1.42),
    (100, "A", None, 2.31),
    (100, "B", None, 1.68),
    (200, "A", 64, 4.65),
    (200, "B", 64, 3.43),
]


@pytest.mark.parametrize("classes,config,image_size,millions", VGG16_PARAMS,
                         ids=[f"{c}-{cfg}" for c, cfg, _, _ in VGG16_PARAMS])
def test_vgg16_parameter_counts(classes, config, image_size, millions):
    assert round(metrics.count_parameters(_net("vgg16", classes, config, image_size)) / 1e6, 2) == millions


@pytest.mark.parametrize("config,millions", [("A", 1.46), ("B", 0.90), ("C", 0.25)])
def test_vggsnn_parameter_counts(config, millions):
    net = _net("vggsnn", 10, config)
    assert round(metrics.count_parameters(net, batchnorm=False) / 1e6, 2) == millions


@pytest.mark.parametrize("classes,config,millions", [(10, "A", 6.22), (100, "A", 6.27), (10, "B", 3.87),
                                                      (100, "B", 3.92)])
def test_resnet_parameter_counts(classes, config, millions):
    # Table 10's counts match conv + FC parameters (no BN) rounded, or all parameters truncated.
    net = _net("resnet20", classes, config)
    assert round(metrics.count_parameters(net, batchnorm=False) / 1e6, 2) == millions
    assert int(metrics.count_parameters(net) / 1e4) / 100 == millions
    assert metrics.count_parameters(net) > metrics.count_parameters(net, batchnorm=False)


def test_connection_percent_table6():
    # Table 6 prints 9.61 % (VGG-16 CIFAR-10 B) and 22.69 % (ResNet20 CIFAR-100 B); Eq.-16 counting gives these.
    assert round(metrics.connection_percent(_net("vgg16", 10, "B"), _net("vgg16", 10)), 2) == 9.59
    assert round(metrics.connection_percent(_net("resnet20", 100, "B"), _net("resnet20", 100)), 2) == 22.70
    assert metrics.connection_percent(_net("vggsnn", 10), _net("vggsnn", 10)) == 100.0


class _Tiny(nn.Module):
    def __init__(self, second_bias: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, bias=True)  # first conv: 18 weights + 2 biases at 32 bits
        self.bn1 = nn.BatchNorm2d(2)  # 4 at 32 bits
        self.conv2 = nn.Conv2d(2, 4, 3, bias=second_bias)  # 72 quantized weights (+4 biases at 32 bits)
        self.bn2 = nn.BatchNorm2d(4)  # 8 at 32 bits
        self.fc = nn.Linear(4, 3)  # 12 + 3 at 32 bits


def test_model_size_hand_computed():
    net = _Tiny()
    assert metrics.size_breakdown(net) == metrics.SizeBreakdown(72, 20, 15, 12, 0)
    # 72 * 4 + (20 + 15 + 12) * 32 = 288 + 1504 = 1792 bits = 224 bytes
    assert metrics.model_size_mb(net, 4) == pytest.approx(224e-6, rel=1e-12)
    assert metrics.model_size_mb(net, 32) == pytest.approx((72 + 47) * 4 / 1e6, rel=1e-12)
    assert metrics.model_size_mb(net, 1) == pytest.approx((72 + 47 * 32) / 8e6, rel=1e-12)
    assert metrics.count_parameters(net) == 119 and metrics.count_parameters(net, batchnorm=False) == 107
    assert metrics.quantized_weight_count(net) == 72
    # a bias on a later conv is not part of P_q: it stays at 32 bits ("other")
    biased = _Tiny(second_bias=True)
    assert metrics.size_breakdown(biased).other == 4
    assert metrics.model_size_mb(biased, 4) == pytest.approx((1792 + 4 * 32) / 8e6, rel=1e-12)
    # running statistics are buffers, not counted
    assert [name for name, _ in metrics.conv_layers(net)] == ["conv1", "conv2"]


def test_shared_parameters_counted_once():
    net = _Tiny()
    net.conv3 = net.conv2  # the same module twice
    assert metrics.model_size_mb(net, 4) == metrics.model_size_mb(_Tiny(), 4)
    assert metrics.count_parameters(net) == 119


@pytest.mark.parametrize("bits", [0, 33, 4.0, True, None, "8"])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        metrics.model_size_mb(_Tiny(), bits)


def test_bad_models():
    with pytest.raises(TypeError, match="nn.Module"):
        metrics.model_size_mb("resnet20", 4)
    with pytest.raises(ValueError, match="no conv"):
        metrics.model_size_mb(nn.Linear(3, 2), 4)
    single = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten())
    with pytest.raises(ValueError, match="quantized"):
        metrics.connection_percent(single, single)
