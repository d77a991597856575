"""The paper's VGG-16, ResNet20 and VGGSNN: shapes, prune configurations, option-A shortcut, validation."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

from qpsnn_lite import architectures as arch
from qpsnn_lite import models
from qpsnn_lite.neurons import LIF

HAS_QUANT = importlib.util.find_spec("qpsnn_lite.quant") is not None
BITS = [None, pytest.param(4, marks=pytest.mark.skipif(not HAS_QUANT, reason="qpsnn_lite.quant not written yet"))]


def _convs(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


# ------------------------------------------------------------------------------------------------------------------
# Forward passes
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name,shape,classes,kwargs", [
    ("vgg16", (2, 3, 32, 32), 10, {}),
    ("vgg16", (2, 3, 64, 64), 200, {"image_size": 64, "prune_config": "B"}),
    ("resnet20", (2, 3, 32, 32), 100, {}),
    ("vggsnn", (1, 2, 2, 48, 48), 10, {"prune_config": "B"}),  # events [T, B, C, H, W]
])
def test_forward_shapes(name, shape, classes, kwargs, bits):
    torch.manual_seed(0)
    net = models.build(name, classes, T=1, bits=bits, **kwargs)
    with torch.no_grad():
        out = net(torch.rand(shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()
    first, *rest = _convs(net)
    assert type(first) is nn.Conv2d  # the stem stays full precision
    if bits is None:
        assert all(type(c) is nn.Conv2d for c in rest)
    else:
        from qpsnn_lite.quant import QuantConv2d

        assert all(isinstance(c, QuantConv2d) and c.bits == bits for c in rest)
    assert all(c.bias is None for c in rest)
    assert (first.bias is not None) == (name != "resnet20")  # VGG stems have a bias, the ResNet stem none
    assert isinstance(net.classifier, nn.Linear)


def test_backward_reaches_every_conv():
    torch.manual_seed(0)
    net = models.build("resnet20", 10, T=2, prune_config="B")
    net(torch.rand(2, 3, 16, 16) * 4).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name


def test_default_time_steps_and_registry():
    assert {"vgg16", "resnet20", "vggsnn"} <= set(models._builders())
    assert arch.BUILDERS["resnet20"] is arch.resnet20
    assert models.build("resnet20", 10, prune_config="B").T == 2
    assert models.build("vggsnn", 10, prune_config="C").T == 10
    assert arch.VGG16.default_T == 4 and arch.vgg16(10, T=3, prune_config="B").T == 3


def test_full_width_layouts():
    vgg = arch.vgg16(10)
    assert vgg.conv_widths == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 4
    assert vgg.classifier.in_features == 512
    assert arch.vgg16(200, image_size=64, prune_config="A").classifier.in_features == 2048
    snn = arch.vggsnn(10, prune_config="A")
    assert snn.classifier.in_features == 4608 and snn.conv_widths[-1] == 512
    res = arch.resnet20(10, compress_rate=[0.0] * 20)
    assert res.block_widths == [64] + [128] * 3 + [256] * 3 + [512] * 3
    assert res.mid_widths == [128] * 3 + [256] * 3 + [512] * 3
    assert [b.conv1.stride[0] for b in res.modules() if isinstance(b, arch.BasicBlock)] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert res.classifier.in_features == 512


def test_pruning_finds_layers_by_name():
    res = arch.resnet20(10, prune_config="A")
    block = res.features.layer2[0]
    for attr, kind in [("conv1", nn.Conv2d), ("bn1", nn.BatchNorm2d), ("lif1", LIF), ("conv2", nn.Conv2d),
                       ("bn2", nn.BatchNorm2d), ("lif2", LIF)]:
        assert isinstance(getattr(block, attr), kind)
    assert block.temporal and "features.layer3.2.lif2" in dict(res.named_modules())
    vgg = arch.vgg16(10, prune_config="A")
    blocks = [m for m in vgg.features if isinstance(m, models.SpikingConvBlock)]
    assert len(blocks) == 13 and all(hasattr(b, "conv") and hasattr(b, "bn") and hasattr(b, "lif") for b in blocks)
    assert [b.conv.out_channels for b in blocks] == vgg.conv_widths


# ------------------------------------------------------------------------------------------------------------------
# Prune configurations [P Tables 9-11; code-faithful ResNet reading]
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes,config,image_size,widths", [
    (10, "A", 32, [35, 35, 70, 70, 140, 140, 140, 250, 250, 250, 250, 250, 512]),  # 0.45 / 0.51
    (10, "B", 32, [32, 32, 65, 65, 130, 130, 130, 102, 102, 102, 102, 102, 512]),  # 0.49 / 0.80
    (100, "A", 32, [35, 35, 70, 70, 140, 140, 140, 153, 153, 153, 153, 153, 512]),  # 0.45 / 0.70
    (200, "B", 64, [35, 35, 70, 70, 140, 140, 140, 194, 194, 194, 194, 194, 512]),  # 0.45 / 0.62
])
def test_vgg16_prune_widths(classes, config, image_size, widths):
    net = arch.vgg16(classes, prune_config=config, image_size=image_size)
    assert net.conv_widths == widths
    assert [c.out_channels for c in _convs(net)] == widths
    assert [c.in_channels for c in _convs(net)] == [3] + widths[:-1]


def test_vggsnn_prune_widths():
    assert arch.vggsnn(10, prune_config="A").conv_widths == [32, 64, 128, 76, 153, 153, 153, 512]
    assert arch.vggsnn(10, prune_config="C").conv_widths == [11, 23, 46, 17, 35, 35, 35, 512]


def test_resnet20_code_faithful_widths():
    net = arch.resnet20(10, prune_config="A")
    # stage-2 outputs pruned at 0.3 like stage 1 (Table 10 prints 0.6, which contradicts its own counts)
    assert net.block_widths == [57, 89, 89, 89, 179, 179, 179, 512, 512, 512]
    assert net.mid_widths == [89, 51, 51, 102, 102, 102, 204, 204, 204]
    blocks = [m for m in net.modules() if isinstance(m, arch.BasicBlock)]
    assert [(b.conv1.in_channels, b.conv1.out_channels, b.conv2.out_channels) for b in blocks[:4]] == [
        (57, 89, 89), (89, 51, 89), (89, 51, 89), (89, 102, 179)]
    b = arch.resnet20(100, prune_config="B")
    assert b.block_widths == [57, 83, 83, 83, 166, 166, 166, 512, 512, 512]
    assert b.mid_widths == [83, 32, 32, 64, 64, 64, 128, 128, 128]
    assert arch.resnet20_widths(arch.RESNET20_COMPRESS_RATE["B"]) == (b.block_widths, b.mid_widths)


def test_prune_ratios_as_data():
    assert arch.prune_ratios("vgg16", 10, "B") == [0.49] * 7 + [0.8] * 5 + [0.0]
    assert arch.prune_ratios("vgg16", 200, "A") == [0.45] * 7 + [0.51] * 5 + [0.0]
    assert arch.prune_ratios("vggsnn", 10, "C") == [0.82] * 3 + [0.93] * 4 + [0.0]
    res = arch.prune_ratios("resnet20", 100, "A")
    assert len(res) == 19 and res[:5] == [0.1, 0.3, 0.3, 0.6, 0.3] and res[-2:] == [0.6, 0.0]
    assert arch.PRUNE_RATIOS[("resnet20", "cifar10", "B")] == arch.PRUNE_RATIOS[("resnet20", "cifar100", "B")]
    assert {k[0] for k in arch.PRUNE_RATIOS} == {"vgg16", "resnet20", "vggsnn"}
    assert arch.resnet20(10, prune_config="A").prune_ratios == arch.prune_ratios("resnet20", 10, "A")
    for (name, dataset, config), ratios in arch.PRUNE_RATIOS.items():
        assert ratios[-1] == 0.0 and all(0 <= r < 1 for r in ratios), (name, dataset, config)
    assert arch.pruned_width(64, 0.45) == 35 and arch.pruned_width(512, 0.0) == 512


@pytest.mark.parametrize("name,classes,config,match", [
    ("vgg16", 10, "C", "'C' does not exist"),
    ("vgg16", 43, "A", "num_classes"),
    ("resnet20", 10, "C", "'C' does not exist"),
    ("vggsnn", 10, "D", "prune_config"),
])
def test_missing_prune_configs(name, classes, config, match):
    with pytest.raises(ValueError, match=match):
        arch.BUILDERS[name](num_classes=classes, prune_config=config)
    if config in models.PRUNE_CONFIGS:
        with pytest.raises(ValueError, match=match):
            arch.prune_ratios(name, classes, config)


def test_vgg16_any_class_count_without_config():
    assert arch.vgg16(43).classifier.out_features == 43


# ------------------------------------------------------------------------------------------------------------------
# Option-A shortcut and the BasicBlock
# ------------------------------------------------------------------------------------------------------------------
def test_option_a_identity_and_padding():
    x = torch.randn(2, 3, 5, 8, 8)  # [T, B, C, H, W]
    same = arch.OptionAShortcut(5, 5, 1)
    assert same.is_identity and same(x) is x
    pad = arch.OptionAShortcut(5, 9, 2)  # (9 - 5) // 2 = 2 zero channels in front, 2 behind
    y = pad(x)
    assert y.shape == (2, 3, 9, 4, 4)
    assert torch.equal(y[:, :, 2:7], x[..., ::2, ::2])
    assert y[:, :, :2].abs().sum() == 0 and y[:, :, 7:].abs().sum() == 0
    odd = arch.OptionAShortcut(57, 89, 1)  # the stem -> stage 1 join of configuration A: 16 in front, 16 behind
    assert (odd.pad_front, odd.pad_back) == (16, 16)
    assert arch.OptionAShortcut(89, 179, 2).pad_front == 45 and arch.OptionAShortcut(89, 179, 2).pad_back == 45
    assert list(same.parameters()) == [] and list(pad.parameters()) == []


def test_option_a_crops_when_output_is_narrower():
    x = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 1, 5, 2, 2)
    crop = arch.OptionAShortcut(5, 2, 1)  # (2 - 5) // 2 = -2 in front, -1 behind: keeps channels 2, 3 (as F.pad does)
    assert crop(x).flatten(2, -1)[0, 0].tolist() == [2.0] * 4 + [3.0] * 4
    with pytest.raises(ValueError, match="shortcut expects"):
        crop(torch.zeros(1, 1, 4, 2, 2))


@pytest.mark.parametrize("cin,mid,cout,stride", [(8, 4, 8, 1), (6, 3, 10, 2), (10, 5, 7, 1), (7, 7, 7, 2)])
def test_basic_block_shapes(cin, mid, cout, stride):
    block = arch.BasicBlock(cin, mid, cout, stride)
    y = block(torch.rand(2, 3, cin, 8, 8) * 3)
    assert y.shape == (2, 3, cout, 8 // stride, 8 // stride)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        block(torch.rand(3, cin, 8, 8))


def test_resnet_residual_joins_before_lif2():
    torch.manual_seed(0)
    block = arch.BasicBlock(4, 4, 4, 1).eval()
    x = torch.rand(3, 1, 4, 6, 6) * 2  # a graded input, so "spikes of the sum" differ from "spikes plus input"
    nn.init.zeros_(block.bn2.weight)  # kill the residual branch: lif2 then sees the shortcut alone
    y = block(x)
    assert torch.equal(y, block.lif2(x)) and 0 < y.mean() < 1


# ------------------------------------------------------------------------------------------------------------------
# Initialisation [C]
# ------------------------------------------------------------------------------------------------------------------
def test_initialisation():
    torch.manual_seed(0)
    vgg = arch.vgg16(10)
    conv = vgg.features.block10.conv
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    assert vgg.features.block1.conv.bias.abs().sum() == 0
    assert vgg.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert vgg.classifier.bias.abs().sum() == 0
    bn = vgg.features.block3.bn
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    res = arch.resnet20(10)
    w = res.features.layer3[1].conv1.weight  # Kaiming fan_out: std sqrt(2 / (9 * C_out))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    assert torch.equal(res.features.layer1[0].bn2.weight, torch.ones(128))


# ------------------------------------------------------------------------------------------------------------------
# Options and validation
# ------------------------------------------------------------------------------------------------------------------
def test_lif_kwargs_and_quant_kwargs_reach_layers():
    net = models.build("vggsnn", 10, prune_config="C", lif_kwargs={"tau": 0.25, "threshold": 0.5})
    lifs = [m for m in net.modules() if isinstance(m, LIF)]
    assert len(lifs) == 8 and all(m.tau == 0.25 and m.threshold == 0.5 for m in lifs)
    res = models.build("resnet20", 10, prune_config="B", lif_kwargs={"tau": 0.75})
    assert all(m.tau == 0.75 for m in res.modules() if isinstance(m, LIF))
    if HAS_QUANT:
        q = models.build("resnet20", 10, bits=2, gamma=None, prune_config="B", granularity="layer")
        quantized = _convs(q)[1:]
        assert all(c.gamma is None and c.granularity == "layer" for c in quantized)


def test_in_channels():
    net = models.build("vgg16", 10, in_channels=1, T=1, prune_config="B")
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="in_channels=3"):
        net(torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("name,kwargs,match", [
    ("vgg16", {"image_size": 40}, "image_size"),
    ("vgg16", {"image_size": 0}, "image_size"),
    ("vggsnn", {"image_size": 50}, "image_size"),
    ("resnet20", {"image_size": 0}, "image_size"),
    ("vgg16", {"num_classes": 0}, "num_classes"),
    ("resnet20", {"in_channels": 0}, "in_channels"),
    ("resnet20", {"T": 0}, "T"),
    ("vgg16", {"prune_config": "a"}, "prune_config"),
    ("resnet20", {"prune_config": "A", "compress_rate": [0.1] * 20}, "not both"),
    ("resnet20", {"compress_rate": [0.1] * 5}, "compress_rate"),
    ("resnet20", {"compress_rate": [1.0] * 20}, "compress_rate"),
])
def test_bad_arguments(name, kwargs, match):
    kwargs = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        arch.BUILDERS[name](**kwargs)


def test_unknown_keyword():
    with pytest.raises(TypeError, match="prune_cfg"):
        arch.vgg16(10, prune_cfg="A")
    with pytest.raises(ValueError, match="prune_config"):
        models.build("vgg16", 10, prune_config="Z")


def test_wrong_input_size_is_explained():
    net = arch.vggsnn(10, T=1, prune_config="C")
    with pytest.raises(ValueError, match="image_size=64"):
        net(torch.rand(1, 2, 2, 64, 64))
    res = arch.resnet20(10, T=1, prune_config="B")  # global pooling: any size runs
    assert res(torch.rand(1, 3, 20, 20)).shape == (1, 10)
