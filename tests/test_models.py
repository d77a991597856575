"""Tests of ``qpsnn_lite.models``: the digits CNN and ``build`` (the paper's architectures are tested elsewhere)."""
import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from qpsnn_lite import models
from qpsnn_lite.neurons import LIF


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return models.build("digits_cnn", num_classes=10, **kwargs)


def _images(batch=6, size=8, channels=1, seed=1):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_build_gives_digits_cnn_with_paper_defaults():
    model = _model()
    assert isinstance(model, models.DigitsCNN)
    assert model.T == 4 and model.input_channels == 1
    assert model.classifier.out_features == 10 and type(model.classifier) is nn.Linear
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert len(lifs) == 4 and all((m.tau, m.threshold, m.reset) == (0.5, 1.0, "hard") for m in lifs)


def test_forward_static_and_event_input():
    model = _model()
    x = _images()
    out = model(x)
    assert out.shape == (6, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # Direct encoding: a static batch is the same as the batch repeated over the model's T time steps.
    assert_close(model(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)), out)
    # Event input of its own length passes through.
    assert model(torch.rand(3, 6, 1, 8, 8)).shape == (6, 10)


def test_time_steps_argument():
    model = _model(T=2)
    assert model.T == 2
    assert model.encode(_images()).shape == (2, 6, 1, 8, 8)
    assert model(_images()).shape == (6, 10)


def test_output_is_time_averaged_per_step_readout():
    model = _model()  # train mode: BatchNorm normalises with batch statistics, so the untrained layers fire
    captured = {}
    model.features.register_forward_hook(lambda module, inputs, output: captured.setdefault("features", output))
    out = model(_images())
    features = captured["features"]
    assert features.shape == (4, 6, 64)
    # Global average pooling of spikes: each feature is a firing rate in [0, 1], and something fires.
    assert features.min() >= 0 and features.max() <= 1 and features.sum() > 0
    per_step = torch.stack([model.classifier(features[t]) for t in range(4)])
    assert_close(out, per_step.mean(0))


def test_features_use_lif_spikes_per_time_step():
    # The features differ between time steps (the membrane carries state): the readout is not trivially T copies.
    model = _model()
    spikes = model.features.stem(model.encode(_images()))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(spikes[0], spikes[1])


def test_gradient_reaches_every_parameter():
    model = _model()
    x, y = _images(batch=8), torch.arange(8) % 10
    nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_stem_has_bias_and_later_convs_do_not():
    model = _model()
    f = model.features
    assert f.stem.conv.bias is not None
    assert all(block.conv.bias is None for block in (f.block2, f.block3, f.block4))
    assert [f.stem.conv.out_channels, f.block2.conv.out_channels, f.block3.conv.out_channels,
            f.block4.conv.out_channels] == [16, 32, 64, 64]


def test_image_size_16():
    assert _model()(_images(size=16)).shape == (6, 10)


def test_in_channels():
    model = _model(in_channels=3)
    assert model(_images(channels=3)).shape == (6, 10)
    with pytest.raises(ValueError, match="expects 1 input channels, got 3.*in_channels=3"):
        _model()(_images(channels=3))


def test_bad_input_shape_and_type():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        _model()(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        _model()([[0.0]])


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model name 'alexnet'") as info:
        models.build("alexnet", num_classes=10)
    assert "digits_cnn" in str(info.value)


@pytest.mark.parametrize("T", [0, -1, 1.5, True, "4"])
def test_bad_time_steps(T):
    with pytest.raises(ValueError, match="T \\(the number of time steps\\)"):
        models.build("digits_cnn", num_classes=10, T=T)


@pytest.mark.parametrize("num_classes", [0, -3, 2.0, True, None])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        models.build("digits_cnn", num_classes=num_classes)


@pytest.mark.parametrize("kwargs, match", [(dict(in_channels=0), "in_channels"), (dict(channels=(4, 8, 8)), "channels"),
                                           (dict(channels=(4, 8, 0, 8)), "channels")])
def test_bad_shape_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build("digits_cnn", num_classes=10, **kwargs)


@pytest.mark.parametrize("config", ["A", "B", "C", "Z"])
def test_prune_config_rejected_for_digits_cnn(config):
    with pytest.raises(ValueError, match="prune_config"):
        models.build("digits_cnn", num_classes=10, prune_config=config)


def test_lif_kwargs_reach_every_neuron():
    model = models.DigitsCNN(lif_kwargs={"tau": 0.25, "reset": "soft"})
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert len(lifs) == 4 and all(m.tau == 0.25 and m.reset == "soft" for m in lifs)


def test_state_dict_round_trip_and_deepcopy():
    model, other = _model(seed=0), _model(seed=1)  # train mode: the outputs depend on every layer
    x = _images()
    assert not torch.equal(model(x), other(x))
    other.load_state_dict(model.state_dict())
    assert torch.equal(model(x), other(x))
    assert torch.equal(copy.deepcopy(model)(x), model(x))


def test_quantized_convs_except_the_stem():
    quant = pytest.importorskip("qpsnn_lite.quant")
    model = _model(bits=4)
    f = model.features
    assert type(f.stem.conv) is nn.Conv2d  # full precision first layer, as in the paper
    for block in (f.block2, f.block3, f.block4):
        assert isinstance(block.conv, quant.QuantConv2d)
        assert block.conv.bits == 4 and block.conv.gamma == "mean"
    assert type(model.classifier) is nn.Linear
    assert model(_images()).shape == (6, 10)
    vanilla = _model(bits=2, gamma=None)
    assert all(b.conv.gamma is None and b.conv.bits == 2 for b in (vanilla.features.block2, vanilla.features.block4))
    full = _model()
    assert not any(isinstance(m, quant.QuantConv2d) for m in full.modules())


@pytest.mark.parametrize("bits", [None, 4])
@pytest.mark.parametrize("name", ["digits_cnn", "vgg16", "resnet20", "vggsnn"])
def test_unknown_keywords_raise_at_every_precision(name, bits):
    # Issue 14, class 6: a typo (lif_kwarg for lif_kwargs) was dropped silently at full precision.
    with pytest.raises(TypeError, match="lif_kwarg"):
        models.build(name, 10, bits=bits, lif_kwarg={"tau": 0.25})
    with pytest.raises(TypeError, match="granularty"):
        models.make_conv(4, 8, bits=bits, granularty="layer")
