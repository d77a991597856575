"""Firing rates, SOPs and energy (metrics; docs/design.md, "Energy") on hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qpsnn_lite import metrics, models, neurons
from qpsnn_lite.models import SpikingConvBlock, SpikingFeatures, SpikingNet


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

T = 4


class _Tiny(SpikingNet):
    """stem 1x1 conv (1 -> 2) -> LIF -> maxpool 2 -> 1x1 conv (2 -> 3) -> LIF -> global average pool -> Linear(3, 2).

    BatchNorm is replaced by the identity so that the input currents are exactly the conv outputs."""

    default_T = T
    input_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.features = SpikingFeatures()
        self.features.add_module("stem", SpikingConvBlock(nn.Conv2d(1, 2, 1, bias=False)))
        self.features.add_module("pool", nn.MaxPool2d(2))
        self.features.add_module("block2", SpikingConvBlock(nn.Conv2d(2, 3, 1, bias=False)))
        self.features.add_module("gap", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.classifier = nn.Linear(3, 2)
        for block in (self.features.stem, self.features.block2):
            block.bn = nn.Identity()
        with torch.no_grad():
            # A constant current of 1.5 fires at every step; 0.6 (tau 0.5, threshold 1) charges 0.6, 0.9, 1.05 and
            # fires once in 4 steps, at t = 2; 0 never fires.
            self.features.stem.conv.weight.copy_(torch.tensor([1.5, 0.6]).view(2, 1, 1, 1))
            self.features.block2.conv.weight.copy_(torch.tensor([[1.5, 0.0], [0.0, 0.0], [0.6, 0.0]]).view(3, 2, 1, 1))


def _image() -> torch.Tensor:
    """A 4x4 image with a 1 at the top-left pixel of every 2x2 block: a quarter of the pixels are on."""
    x = torch.zeros(1, 4, 4)
    x[:, ::2, ::2] = 1.0
    return x


def _loader(images: list[torch.Tensor], batch: int):
    x = torch.stack(images)
    y = torch.zeros(len(images), dtype=torch.long)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(images), batch)]


def test_lif_example_rates_are_what_the_tests_assume():
    lif = neurons.LIF()
    assert lif(torch.full((T, 1), 0.6)).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert lif(torch.full((T, 1), 1.5)).flatten().tolist() == [1.0] * T


def test_firing_rates_by_hand():
    rates = metrics.firing_rates(_Tiny(), _loader([_image()] * 3, batch=3))
    # stem: channel 0 fires every step on 4 of 16 pixels, channel 1 once in 4 steps on the same pixels.
    assert rates["features.stem.lif"] == pytest.approx((4 / 16 * 1 + 4 / 16 * 0.25) / 2)
    # block2 (on the pooled 2x2 maps): channel 0 always, channel 1 never, channel 2 once in 4 steps.
    assert rates["features.block2.lif"] == pytest.approx((1 + 0 + 0.25) / 3)
    assert set(rates) == {"features.stem.lif", "features.block2.lif"}


def test_sops_and_energy_by_hand():
    model = _Tiny()
    report = metrics.energy_mj(model, _loader([_image()] * 4, batch=2), batches=None)
    layers = {layer.name: layer for layer in report.layers}
    # block2 conv reads the max-pooled stem spikes: after pooling channel 0 is always on and channel 1 on at t = 2,
    # so its input rate is (1 + 1/4) / 2 = 0.625 (the stem's own rate, 0.156, would be wrong here).
    conv2 = layers["features.block2.conv"]
    assert conv2.input_rate == pytest.approx(0.625)
    assert conv2.macs_per_step == 2 * 2 * 3 * 2  # H_out * W_out * C_out * C_in * 1 * 1
    assert conv2.steps == T
    assert conv2.sops == pytest.approx(0.625 * T * 24)  # 60
    # classifier: pooled spikes per step are (1, 0, 0), (1, 0, 0), (1, 0, 1), (1, 0, 0): 5 of 12 inputs non-zero.
    linear = layers["classifier"]
    assert linear.input_rate == pytest.approx(5 / 12)
    assert linear.macs_per_step == 3 * 2
    assert linear.sops == pytest.approx(5 / 12 * T * 6)  # 10
    assert report.sops == pytest.approx(70.0)
    assert metrics.sops(model, _loader([_image()] * 4, batch=2)) == pytest.approx(70.0)
    # The stem: 4 * 4 * 2 * 1 MACs, charged once per sample (static image).
    assert report.stem == "features.stem.conv"
    assert report.mac_stem == 32
    assert report.energy_mj == pytest.approx((4.6 * 32 + 0.9 * 70) * 1e-9)
    assert report.samples == 4 and report.T == T
    assert report.e_mac_pj == 4.6 and report.e_ac_pj == 0.9 and "once per sample" in report.conventions


def test_sops_are_averaged_per_sample():
    # A blank image makes no spike at all: the mean over one active and one blank sample halves the SOPs,
    # while the stem's dense MACs do not change.
    report = metrics.energy_mj(_Tiny(), _loader([_image(), torch.zeros(1, 4, 4)], batch=1), batches=None)
    assert report.sops == pytest.approx(35.0)
    assert report.mac_stem == 32
    assert report.firing_rates["features.block2.lif"] == pytest.approx((1 + 0 + 0.25) / 3 / 2)


def test_batches_limits_the_pass():
    loader = _loader([_image(), torch.zeros(1, 4, 4)], batch=1)
    assert metrics.energy_mj(_Tiny(), loader, batches=1).sops == pytest.approx(70.0)  # only the active sample
    assert metrics.energy_mj(_Tiny(), loader, batches=1).samples == 1


def test_event_input_charges_the_stem_every_step():
    events = _image().unsqueeze(0).expand(T, 1, 1, 4, 4).contiguous()  # [T, B, C, H, W]
    report = metrics.energy_mj(_Tiny(), [(events, torch.zeros(1, dtype=torch.long))], batches=None)
    assert report.mac_stem == 32 * T
    assert report.sops == pytest.approx(70.0)


def test_constants_can_be_changed_and_record_is_json_ready():
    import json

    report = metrics.energy_mj(_Tiny(), _loader([_image()], batch=1), e_mac_pj=1.0, e_ac_pj=0.0)
    assert report.energy_mj == pytest.approx(32 * 1e-9)
    record = json.loads(json.dumps(report.to_dict()))
    assert record["layers"][0]["name"] == "features.block2.conv"
    assert record["e_mac_pj"] == 1.0


def test_digits_cnn_counts():
    torch.manual_seed(0)
    model = models.build("digits_cnn", 10, bits=4)
    loader = _loader([torch.randn(1, 8, 8) for _ in range(4)], batch=2)
    report = metrics.energy_mj(model, loader)
    assert report.mac_stem == 8 * 8 * 16 * 1 * 9  # stem 1 -> 16 channels, 3x3, on 8x8
    macs = {layer.name: layer.macs_per_step for layer in report.layers}
    assert macs == {
        "features.block2.conv": 8 * 8 * 32 * 16 * 9,
        "features.block3.conv": 4 * 4 * 64 * 32 * 9,
        "features.block4.conv": 2 * 2 * 64 * 64 * 9,
        "classifier": 64 * 10,
    }
    assert all(0.0 <= r <= 1.0 for r in report.firing_rates.values())
    assert all(0.0 <= layer.input_rate <= 1.0 and layer.steps == 4 for layer in report.layers)
    assert math.isclose(report.sops, sum(layer.sops for layer in report.layers))
    # the model's mode is restored
    model.train()
    metrics.firing_rates(model, loader)
    assert model.training


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_batches(bad):
    with pytest.raises(ValueError, match="batches"):
        metrics.sops(_Tiny(), _loader([_image()], 1), batches=bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        metrics.sops(_Tiny(), [], batches=None)
    with pytest.raises(ValueError, match="e_ac_pj"):
        metrics.energy_mj(_Tiny(), _loader([_image()], 1), e_ac_pj=-1)
    with pytest.raises(TypeError, match="nn.Module"):
        metrics.sops("not a model", _loader([_image()], 1))
