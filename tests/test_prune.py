"""Tests of qpsnn_lite.prune: SVS against a numpy per-map oracle, SCA against a hand loop, channel selection, and the
equivalence of physical pruning with masking on the digits CNN, VGG-16 and ResNet20."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from qpsnn_lite import metrics, models, prune
from qpsnn_lite.models import SpikingConvBlock, SpikingFeatures, SpikingNet
from qpsnn_lite.neurons import lif_multistep_state

HAS_ARCHITECTURES = importlib.util.find_spec("qpsnn_lite.architectures") is not None
needs_architectures = pytest.mark.skipif(not HAS_ARCHITECTURES, reason="qpsnn_lite.architectures not written yet")
DIGITS_NAMES = ["features.stem.conv", "features.block2.conv", "features.block3.conv", "features.block4.conv"]


# ------------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------------
def svs_oracle(spikes: torch.Tensor, eps: float = 1e-6) -> np.ndarray:
    """The plain definition, one map at a time in numpy: mean over samples of #(sigma > eps) of mean_t S[t]."""
    maps = spikes.double().numpy().mean(0)  # [B, C, H, W]
    batch, channels = maps.shape[:2]
    ranks = np.zeros((batch, channels))
    for b in range(batch):
        for c in range(channels):
            ranks[b, c] = (np.linalg.svd(maps[b, c], compute_uv=False) > eps).sum()
    return ranks.mean(0)


def calibrate(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Make every layer fire at a moderate rate: BN statistics from one batch, BN affine drawn around (1, 0.2)."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) * 0.8 + 0.6)
                m.bias.copy_(torch.rand(m.num_features, generator=generator) * 0.6 - 0.1)
    return model.eval()


def digits(T: int = 2, bits=None, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = models.DigitsCNN(channels=(8, 8, 16, 16), T=T, bits=bits)
    x = torch.rand(6, 1, 16, 16)
    return calibrate(model, x, seed), x


def random_scores(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {layer.name: torch.rand(layer.channels, generator=generator, dtype=torch.float64)
            for layer in prune.prunable_layers(model)}


class FlattenNet(SpikingNet):
    """Tiny net whose classifier reads a flattened [C, 4, 4] map: 16 columns per channel, channel-major."""

    default_T = 2
    input_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.features = SpikingFeatures()
        self.features.add_module("stem", SpikingConvBlock(nn.Conv2d(1, 6, 3, padding=1, bias=True)))
        self.features.add_module("block2", SpikingConvBlock(nn.Conv2d(6, 5, 3, padding=1, bias=False)))
        self.features.add_module("pool", nn.MaxPool2d(2))
        self.features.add_module("flatten", nn.Flatten())
        self.classifier = nn.Linear(5 * 4 * 4, 3)


def assert_pruning_equals_masking(model: nn.Module, x: torch.Tensor, pruned: nn.Module, atol: float) -> None:
    """pruned(x) == model(x) with the removed channels' spikes forced to 0; the removed channels did spike, and
    every layer fires at a non-trivial rate, so the comparison means something."""
    rates, removed_spikes, handles = {}, {}, []
    for layer in prune.prunable_layers(model):
        kept = pruned.pruned_channels[layer.name]
        removed = torch.ones(layer.channels, dtype=torch.bool)
        removed[kept] = False

        def hook(module, inputs, output, name=layer.name, removed=removed):  # runs before the masking hook
            rates[name] = output.mean().item()
            removed_spikes[name] = output[:, :, removed].sum().item()

        handles.append(layer.lif.register_forward_hook(hook))
    try:
        with torch.no_grad(), prune.masked(model, pruned.pruned_channels):
            reference = model(x)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        out = pruned.eval()(x)
        unmasked = model(x)
    assert all(0.02 < rate < 0.9 for rate in rates.values()), rates
    channels = {layer.name: layer.channels for layer in prune.prunable_layers(model)}
    for name, kept in pruned.pruned_channels.items():
        if len(kept) < channels[name]:
            assert removed_spikes[name] > 0, f"no removed channel of {name} ever spiked: the test would be vacuous"
    assert (unmasked - reference).abs().max() > 1e-3  # masking changes the output...
    torch.testing.assert_close(out, reference, atol=atol, rtol=0)  # ...and pruning changes it in exactly the same way


# ------------------------------------------------------------------------------------------------------------------
# SVS: Eq. 11-13
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,rate", [((3, 4, 5, 6, 7), 0.3), ((4, 2, 3, 16, 16), 0.1), ((2, 2, 2, 32, 32), 0.5),
                                        ((1, 3, 4, 2, 2), 0.5), ((4, 5, 3, 8, 3), 0.8)])
def test_svs_matches_per_map_numpy_oracle(shape, rate):
    generator = torch.Generator().manual_seed(sum(shape))
    spikes = (torch.rand(shape, generator=generator) < rate).float()
    spikes[:, 0, 0] = 0  # a silent map
    spikes[:, 1 % shape[1], -1] = 1  # a saturated map (rank 1)
    np.testing.assert_array_equal(prune.svs_score(spikes).numpy(), svs_oracle(spikes))


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 4), B=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 6), W=st.integers(1, 6),
       rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_svs_oracle_property(T, B, C, H, W, rate, seed):
    generator = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(T, B, C, H, W, generator=generator) < rate).float()
    np.testing.assert_array_equal(prune.svs_score(spikes).numpy(), svs_oracle(spikes))


def test_svs_low_rank_maps_have_their_rank():
    """Hand-made maps with a known rank, at low rank so the count is not just min(H, W)."""
    H, W = 6, 8
    eye = torch.zeros(H, W)
    eye[torch.arange(H), torch.arange(H)] = 1
    u, v = torch.tensor([1.0, 0, 1, 1, 0, 0]), torch.tensor([0, 1.0, 1, 0, 0, 1, 0, 1])
    outer = torch.outer(u, v)  # rank 1
    blocks = torch.zeros(H, W)
    blocks[:2, :3], blocks[3:, 4:] = 1, 1  # two disjoint all-ones blocks: rank 2
    repeated_rows = torch.stack([u.new_tensor([1.0, 0, 1, 0, 1, 0, 1, 0])] * 3 + [torch.zeros(W)] * 3)  # rank 1
    maps = torch.stack([eye, outer, blocks, torch.zeros(H, W), torch.ones(H, W), repeated_rows])  # [C, H, W]
    spikes = maps.expand(3, 2, *maps.shape)  # constant over T = 3, two identical samples
    assert prune.svs_score(spikes).tolist() == [6.0, 1.0, 2.0, 0.0, 1.0, 1.0]
    assert prune.epsilon_rank(spikes).tolist() == [[6, 1, 2, 0, 1, 1]] * 2


def test_svs_averages_over_time_then_over_samples():
    spikes = torch.zeros(2, 2, 1, 2, 2)
    spikes[0, 0] = torch.tensor([[1.0, 0], [0, 1]])
    spikes[1, 0] = torch.tensor([[1.0, 0], [0, 0]])  # sample 0: mean over T = diag(1, 0.5): rank 2
    spikes[:, 1] = torch.tensor([[1.0, 1], [0, 0]])  # sample 1: rank 1
    assert prune.svs_score(spikes).tolist() == [1.5]
    # eps is absolute: diag(1, 0.5) has one singular value above 0.6 and two above 0.4
    assert prune.epsilon_rank(spikes, eps=0.6)[:, 0].tolist() == [1, 1]
    assert prune.epsilon_rank(spikes, eps=0.4)[:, 0].tolist() == [2, 1]


def test_svs_accepts_bool_spikes_and_empty_time_average():
    spikes = torch.rand(2, 3, 4, 5, 5) < 0.4
    np.testing.assert_array_equal(prune.svs_score(spikes).numpy(), svs_oracle(spikes.float()))


# ------------------------------------------------------------------------------------------------------------------
# SCA (Eq. 7), firing rate, l1, random
# ------------------------------------------------------------------------------------------------------------------
def test_sca_score_matches_hand_loop():
    membrane = torch.randn(3, 4, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    T, B, C = membrane.shape[:3]
    expected = [sum(membrane[t, b, c].abs().sum().item() for t in range(T) for b in range(B)) / (B * T)
                for c in range(C)]
    np.testing.assert_allclose(prune.sca_score(membrane).numpy(), expected, rtol=1e-6)


def test_score_sca_uses_the_pre_reset_membrane_of_the_layer():
    model, x = digits()
    with torch.no_grad():
        current = model.features.stem.current(model.encode(x))
    lif = model.features.stem.lif
    membrane = lif_multistep_state(current, lif.tau, lif.threshold).membrane
    assert (membrane > lif.threshold).any()  # pre-reset: values above threshold exist (post-reset ones would not)
    scores = prune.score(model, [x], "sca", batches=1)
    torch.testing.assert_close(scores["features.stem.conv"], prune.sca_score(membrane))


def test_firing_rate_and_l1_and_random():
    model, x = digits()
    with torch.no_grad():
        spikes = model.features.stem(model.encode(x))
    rates = prune.score(model, [x], "firing_rate", batches=1)["features.stem.conv"]
    torch.testing.assert_close(rates, spikes.double().mean((0, 1, 3, 4)))
    l1 = prune.score(model, None, "l1")
    for layer in prune.prunable_layers(model):
        torch.testing.assert_close(l1[layer.name], layer.conv.weight.detach().double().abs().sum((1, 2, 3)))
    first, again, other = (prune.score(model, None, "random", seed=s) for s in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["features.stem.conv"], other["features.stem.conv"])


def test_l1_scores_the_quantized_weight_of_a_quant_conv():
    model, _ = digits(bits=2)
    conv = model.features.block2.conv
    expected = conv.quantized_weight().double().abs().sum((1, 2, 3))
    torch.testing.assert_close(prune.score(model, None, "l1")["features.block2.conv"], expected)
    assert not torch.allclose(expected, conv.weight.detach().double().abs().sum((1, 2, 3)))


def test_register_criterion_is_one_function():
    @prune.register_criterion("test_peak_count")
    def peak(activity):
        return activity.spikes.sum(0).amax((-2, -1))  # [B, C]

    try:
        model, x = digits()
        scores = prune.score(model, [x], "test_peak_count", batches=1)
        with torch.no_grad():
            spikes = model.features.stem(model.encode(x))
        torch.testing.assert_close(scores["features.stem.conv"], spikes.sum(0).amax((-2, -1)).double().mean(0))
    finally:
        del prune.CRITERIA["test_peak_count"]


# ------------------------------------------------------------------------------------------------------------------
# score() and score_per_batch()
# ------------------------------------------------------------------------------------------------------------------
def test_score_keys_are_the_prunable_conv_names():
    model, x = digits()
    for criterion in prune.CRITERIA:
        scores = prune.score(model, [x], criterion, batches=1)
        assert list(scores) == DIGITS_NAMES
        assert [v.shape for v in scores.values()] == [(8,), (8,), (16,), (16,)]
    assert [layer.name for layer in prune.prunable_layers(model)] == DIGITS_NAMES


@pytest.mark.parametrize("criterion", ["svs", "sca", "firing_rate"])
def test_per_batch_rows_and_pooled_score_agree(criterion):
    model, x = digits()
    loader = [(x[:3], None), (x[3:], None)]  # equal sizes
    rows = prune.score_per_batch(model, loader, criterion, batches=2)
    pooled = prune.score(model, loader, criterion, batches=2)
    for name in DIGITS_NAMES:
        assert rows[name].shape == (2, pooled[name].numel())
        torch.testing.assert_close(pooled[name], rows[name].mean(0))
        for b, (batch, _) in enumerate(loader):  # each row is that batch scored alone
            torch.testing.assert_close(rows[name][b], prune.score(model, [batch], criterion, batches=1)[name])
    # unequal sizes: the mean over all samples, i.e. the per-batch means weighted by batch size
    unequal = [x[:5], x[5:]]
    rows = prune.score_per_batch(model, unequal, criterion, batches=2)
    pooled = prune.score(model, unequal, criterion, batches=2)
    for name in DIGITS_NAMES:
        torch.testing.assert_close(pooled[name], (5 * rows[name][0] + rows[name][1]) / 6)


def test_score_uses_only_the_requested_batches_and_restores_the_model():
    model, x = digits()
    model.train()
    model.features.block3.eval()  # a mixed state must come back as it was
    consumed = []

    def loader():
        for i in range(10):
            consumed.append(i)
            yield x[i % 6: i % 6 + 1]

    assert prune.score_per_batch(model, loader(), "svs", batches=3)["features.stem.conv"].shape[0] == 3
    assert consumed == [0, 1, 2]
    assert model.training and not model.features.block3.training and model.features.block2.training
    assert all(not layer.lif._forward_hooks for layer in prune.prunable_layers(model))


def test_score_restores_the_model_after_an_error():
    model, x = digits()
    model.train()

    def failing():
        yield x
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        prune.score(model, failing(), "svs", batches=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(not layer.lif._forward_hooks for layer in prune.prunable_layers(model))


def test_fewer_batches_than_asked_warns():
    model, x = digits()
    with pytest.warns(UserWarning, match="only 1 of the 4"):
        rows = prune.score_per_batch(model, [x], "svs", batches=4)
    assert rows["features.stem.conv"].shape == (1, 8)


def test_tie_break_by_sum_of_singular_values():
    model, x = digits()
    plain = prune.score(model, [x], "svs", batches=1)
    broken = prune.score(model, [x], "svs", batches=1, tie_break="sum_sv")
    captured = {}
    handle = model.features.stem.lif.register_forward_hook(lambda m, i, o: captured.setdefault("s", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    maps = captured["s"].double().numpy().mean(0)  # [B, C, H, W]
    nuclear = np.array([[np.linalg.svd(maps[b, c], compute_uv=False).sum() for c in range(maps.shape[1])]
                        for b in range(maps.shape[0])]).mean(0)
    p, q = plain["features.stem.conv"], broken["features.stem.conv"]
    ties = 0
    for i in range(len(p)):
        for j in range(len(p)):
            if p[i] < p[j]:
                assert q[i] < q[j]  # the primary order never changes
            elif p[i] == p[j] and i != j and not math.isclose(nuclear[i], nuclear[j]):
                ties += 1
                assert (q[i] < q[j]) == (nuclear[i] < nuclear[j])
    assert ties > 0
    torch.testing.assert_close(torch.floor(q * 6 + 1e-9), p * 6)  # 6 samples: the eps-rank sums are untouched


# ------------------------------------------------------------------------------------------------------------------
# Channel selection and apply()
# ------------------------------------------------------------------------------------------------------------------
def test_keep_indices_keeps_the_highest_and_breaks_ties_by_lower_index():
    assert prune.keep_indices(torch.tensor([1.0, 3.0, 1.0, 1.0, 2.0]), 3).tolist() == [0, 1, 4]
    assert prune.keep_indices(torch.zeros(6), 4).tolist() == [0, 1, 2, 3]
    assert prune.keep_indices(torch.tensor([0.5, 0.1, 0.9, 0.3]), 2).tolist() == [0, 2]


def test_apply_keeps_highest_scored_channels_and_slices_every_tensor():
    model, x = digits()
    scores = random_scores(model)
    pruned = prune.apply(model, scores, 0.3)
    expected_kept = {name: sorted(torch.argsort(s, descending=True)[: int(len(s) * 0.7)].tolist())
                     for name, s in scores.items() if name != DIGITS_NAMES[-1]}
    for name, kept in expected_kept.items():
        assert pruned.pruned_channels[name].tolist() == kept
    assert pruned.pruned_channels[DIGITS_NAMES[-1]].tolist() == list(range(16))  # last conv untouched
    previous = None
    for name in DIGITS_NAMES:
        block = name.removesuffix(".conv")
        old, new = model.get_submodule(block), pruned.get_submodule(block)
        kept = pruned.pruned_channels[name]
        weight = old.conv.weight[kept] if previous is None else old.conv.weight[kept][:, previous]
        torch.testing.assert_close(new.conv.weight, weight)
        assert (new.conv.out_channels, new.conv.in_channels) == tuple(weight.shape[:2])
        for attribute in ("weight", "bias", "running_mean", "running_var"):
            torch.testing.assert_close(getattr(new.bn, attribute), getattr(old.bn, attribute)[kept])
        assert new.bn.num_features == len(kept)
        previous = kept
    torch.testing.assert_close(pruned.features.stem.conv.bias, model.features.stem.conv.bias[
        pruned.pruned_channels[DIGITS_NAMES[0]]])
    assert [len(k) for k in pruned.pruned_channels.values()] == [5, 5, 11, 16]  # int(8 * .7), int(16 * .7)
    assert model.features.stem.conv.out_channels == 8 and model.features.stem.conv.weight.shape[0] == 8  # untouched
    assert pruned(x).shape == (6, 10)


@pytest.mark.parametrize("n,ratio", [(8, 0.45), (8, 0.5), (16, 0.3), (16, 0.1), (8, 0.875), (16, 0.05)])
def test_int_floor_rule(n, ratio):
    torch.manual_seed(0)
    model = models.DigitsCNN(channels=(n, n, n, n), T=1)
    pruned = prune.apply(model, random_scores(model), ratio)
    assert pruned.features.stem.conv.out_channels == int(n * (1 - ratio))


def test_per_layer_ratio_dict_and_last_conv():
    model, x = digits()
    scores = random_scores(model)
    pruned = prune.apply(model, scores, {"features.block3.conv": 0.5})
    assert [pruned.get_submodule(n).out_channels for n in DIGITS_NAMES] == [8, 8, 8, 16]
    assert pruned.features.block4.conv.in_channels == 8
    with pytest.raises(ValueError, match="last_conv=True"):
        prune.apply(model, scores, {"features.block4.conv": 0.5})
    last = prune.apply(model, scores, {"features.block4.conv": 0.25}, last_conv=True)
    kept = last.pruned_channels["features.block4.conv"]
    assert len(kept) == 12 and last.classifier.in_features == 12
    torch.testing.assert_close(last.classifier.weight, model.classifier.weight[:, kept])
    torch.testing.assert_close(last.classifier.bias, model.classifier.bias)
    assert prune.apply(model, scores, 0.5, last_conv=True).features.block4.conv.out_channels == 8


def test_copy_bn_false_reinitialises_batchnorm():
    model, _ = digits()
    pruned = prune.apply(model, random_scores(model), 0.5, copy_bn=False)
    bn = pruned.features.block2.bn
    assert bn.num_features == 4
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.running_var, torch.ones(4))


def test_apply_on_a_quantized_model():
    model, x = digits(bits=4)
    pruned = prune.apply(model, random_scores(model), 0.5)
    conv = pruned.features.block3.conv
    assert type(conv).__name__ == "QuantConv2d" and conv.bits == 4
    assert (conv.in_channels, conv.out_channels) == (4, 8) and conv.weight.shape == (8, 4, 3, 3)
    assert pruned(x).shape == (6, 10)


# ------------------------------------------------------------------------------------------------------------------
# Pruning == masking
# ------------------------------------------------------------------------------------------------------------------
def test_pruning_equals_masking_digits_cnn():
    model, x = digits(T=2)
    model, x = model.double(), x.double()
    scores = prune.score(model, [x], "svs", batches=1)
    assert_pruning_equals_masking(model, x, prune.apply(model, scores, 0.5), atol=1e-10)
    ratios = {"features.stem.conv": 0.25, "features.block3.conv": 0.75, "features.block4.conv": 0.5}
    assert_pruning_equals_masking(model, x, prune.apply(model, scores, ratios, last_conv=True), atol=1e-10)


def test_pruning_equals_masking_through_a_flattened_classifier():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    model = calibrate(FlattenNet().double(), x)
    pruned = prune.apply(model, random_scores(model), 0.4, last_conv=True)
    kept = pruned.pruned_channels["features.block2.conv"]
    columns = [c * 16 + i for c in kept.tolist() for i in range(16)]  # channel-major blocks of H * W = 16
    torch.testing.assert_close(pruned.classifier.weight, model.classifier.weight[:, columns])
    assert_pruning_equals_masking(model, x, pruned, atol=1e-10)


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    return calibrate(models.build("vgg16", 10, T=1), x), x


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    return calibrate(models.build("resnet20", 10, T=2), x), x


@needs_architectures
def test_pruning_equals_masking_vgg16(vgg16):
    model, x = vgg16
    ratios = [0.45] * 7 + [0.51] * 5  # the paper's CIFAR-10 configuration A (Table 9)
    names = [layer.name for layer in prune.prunable_layers(model)]
    pruned = prune.apply(model, random_scores(model), dict(zip(names, ratios)))
    assert pruned.conv_widths == [35, 35, 70, 70, 140, 140, 140, 250, 250, 250, 250, 250, 512]  # int(n * (1 - r))
    reference = models.build("vgg16", 10, prune_config="A")  # the same widths built directly (4.25 M parameters)
    assert metrics.count_parameters(pruned) == metrics.count_parameters(reference)
    assert metrics.model_size_mb(pruned, 4) == metrics.model_size_mb(reference, 4)
    assert_pruning_equals_masking(model, x, pruned, atol=1e-5)


@needs_architectures
def test_vgg16_classifier_columns_on_64x64():
    torch.manual_seed(0)
    model = models.build("vgg16", 200, T=1, image_size=64)  # 512 channels x 2 x 2 = 2048 classifier inputs
    pruned = prune.apply(model, random_scores(model), 0.5, last_conv=True)
    kept = pruned.pruned_channels["features.block13.conv"]
    columns = [c * 4 + i for c in kept.tolist() for i in range(4)]
    assert pruned.classifier.in_features == 1024
    torch.testing.assert_close(pruned.classifier.weight, model.classifier.weight[:, columns])


@needs_architectures
def test_pruning_equals_masking_resnet20(resnet20):
    model, x = resnet20
    scores = prune.score(model, [x], "svs", batches=1)
    pruned = prune.apply(model, scores, 0.5)
    kept = pruned.pruned_channels
    # one shared keep-set per stage for the block outputs, from the mean of the stage's scores
    for stage in ("layer1", "layer2"):
        outputs = [f"features.{stage}.{b}.conv2" for b in range(3)]
        assert all(torch.equal(kept[outputs[0]], kept[name]) for name in outputs)
        mean = torch.stack([scores[name] for name in outputs]).mean(0)
        assert kept[outputs[0]].tolist() == prune.keep_indices(mean, len(mean) // 2).tolist()
    assert all(len(kept[f"features.layer3.{b}.conv2"]) == 512 for b in range(3))  # feeds the classifier
    assert not torch.equal(kept["features.layer1.1.conv1"], kept["features.layer1.2.conv1"])  # internal: free
    assert isinstance(pruned.features.layer2[0].shortcut, prune.IndexedShortcut)
    assert pruned.block_widths == [32] + [64] * 3 + [128] * 3 + [512] * 3
    assert pruned.mid_widths == [64] * 3 + [128] * 3 + [256] * 3
    assert_pruning_equals_masking(model, x, pruned, atol=1e-5)


@needs_architectures
def test_resnet20_code_faithful_configuration(resnet20):
    """The paper's ResNet20 configuration A as per-layer ratios gives the widths models.build(prune_config="A")."""
    from qpsnn_lite import architectures

    model, x = resnet20
    names = [layer.name for layer in prune.prunable_layers(model)]
    ratios = dict(zip(names, architectures.prune_ratios("resnet20", 10, "A")))
    pruned = prune.apply(model, random_scores(model), ratios)
    outputs, mids = architectures.resnet20_widths(architectures.RESNET20_COMPRESS_RATE["A"])
    assert (pruned.block_widths, pruned.mid_widths) == (outputs, mids)
    assert [layer.channels for layer in prune.prunable_layers(pruned)] == pruned.conv_widths
    reference = models.build("resnet20", 10, prune_config="A")  # 6.22 M parameters in the paper
    assert metrics.count_parameters(pruned) == metrics.count_parameters(reference)
    assert metrics.model_size_mb(pruned, 4) == metrics.model_size_mb(reference, 4)
    with torch.no_grad():
        assert pruned(x).shape == (2, 10)


def test_indexed_shortcut():
    shortcut = prune.IndexedShortcut(3, torch.tensor([-1, 2, 0, -1]), stride=2)
    x = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4)
    out = shortcut(x)
    assert out.shape == (1, 4, 2, 2)
    torch.testing.assert_close(out[0, 1], x[0, 2, ::2, ::2])
    torch.testing.assert_close(out[0, 2], x[0, 0, ::2, ::2])
    assert out[0, 0].abs().sum() == 0 and out[0, 3].abs().sum() == 0
    assert "channel_index" in shortcut.state_dict()


# ------------------------------------------------------------------------------------------------------------------
# AvgCosS (Eq. 15)
# ------------------------------------------------------------------------------------------------------------------
def test_avg_cos_similarity_hand_cases():
    assert prune.avg_cos_similarity(torch.tensor([[1.0, 2.0, 3.0]] * 4)) == pytest.approx(1.0)
    assert prune.avg_cos_similarity(torch.tensor([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(0.0)
    assert prune.avg_cos_similarity([torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])]) \
        == pytest.approx(1 / 3)  # pairs: 1, 0, 0
    rows = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    loop = [torch.nn.functional.cosine_similarity(rows[i], rows[j], dim=0).item()
            for i in range(5) for j in range(i + 1, 5)]
    assert prune.avg_cos_similarity(rows) == pytest.approx(sum(loop) / len(loop))
    assert prune.avg_cos_similarity(rows * 7.5) == pytest.approx(prune.avg_cos_similarity(rows))


def test_avg_cos_similarity_of_real_per_batch_scores():
    model, x = digits()
    rows = prune.score_per_batch(model, [x[:3], x[3:]], "sca", batches=2)["features.stem.conv"]
    assert 0.5 < prune.avg_cos_similarity(rows) <= 1.0 + 1e-12


# ------------------------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1, float("nan"), True, "0.5"])
def test_bad_ratio(ratio):
    model, _ = digits()
    with pytest.raises(ValueError, match="ratio must be a number in \\[0, 1\\)"):
        prune.apply(model, random_scores(model), ratio)
    with pytest.raises(ValueError, match="ratio\\['features.block2.conv'\\]"):
        prune.apply(model, random_scores(model), {"features.block2.conv": ratio})


def test_ratio_that_empties_a_layer():
    model, _ = digits()
    with pytest.raises(ValueError, match="would leave features.stem.conv with int\\(8 \\* \\(1 - 0.9\\)\\) = 0"):
        prune.apply(model, random_scores(model), 0.9)


def test_unknown_layer_name_lists_valid_names():
    model, _ = digits()
    with pytest.raises(ValueError, match="unknown layer.*'features.block9.conv'.*features.stem.conv"):
        prune.apply(model, random_scores(model), {"features.block9.conv": 0.5})


def test_missing_nan_and_misshapen_scores():
    model, _ = digits()
    scores = random_scores(model)
    with pytest.raises(ValueError, match="no entry for features.block2.conv"):
        prune.apply(model, {k: v for k, v in scores.items() if k != "features.block2.conv"}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        prune.apply(model, scores | {"features.block2.conv": torch.full((8,), float("nan"))}, 0.5)
    with pytest.raises(ValueError, match="shape \\(8,\\)"):
        prune.apply(model, scores | {"features.block2.conv": torch.zeros(7)}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        prune.keep_indices(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="features.block9.conv.*does not have"):
        prune.apply(model, scores | {"features.block9.conv": torch.zeros(8)}, 0.5)


def test_nan_scores_from_a_criterion():
    model, x = digits()
    with torch.no_grad():
        model.features.block2.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="cannot score: features.block2.conv.weight holds NaN or inf"):
        prune.score(model, None, "l1")  # the model is refused before any criterion runs

    @prune.register_criterion("nan_test", needs_data=False)
    def nan_criterion(activity):
        return torch.full((activity.layer.channels,), float("nan"))

    try:
        with pytest.raises(ValueError, match="'nan_test' produced NaN scores for layer features.stem.conv"):
            prune.score(digits()[0], None, "nan_test")
    finally:
        prune.CRITERIA.pop("nan_test")


def test_bad_scoring_arguments():
    model, x = digits()
    with pytest.raises(ValueError, match="loader is empty"):
        prune.score(model, [], "svs")
    for batches in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batches"):
            prune.score(model, [x], "svs", batches=batches)
    with pytest.raises(ValueError, match="unknown criterion 'hrank'.*'firing_rate', 'l1', 'random', 'sca', 'svs'"):
        prune.score(model, [x], "hrank")
    with pytest.raises(TypeError, match="need data"):
        prune.score(model, None, "svs")
    with pytest.raises(ValueError, match="tie_break"):
        prune.score(model, [x], "sca", tie_break="sum_sv")
    with pytest.raises(ValueError, match="eps"):
        prune.score(model, [x], "svs", eps=-1.0)


def test_model_without_prunable_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="no prunable layers"):
        prune.score(model, [torch.rand(1, 1, 4, 4)], "svs")
    with pytest.raises(ValueError, match="no prunable layers"):
        prune.apply(model, {}, 0.5)


def test_bad_spikes_for_svs():
    with pytest.raises(ValueError, match="5-D"):
        prune.svs_score(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="binary"):
        prune.svs_score(torch.full((1, 1, 1, 2, 2), 0.5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        prune.svs_score(np.zeros((1, 1, 1, 2, 2)))
    with pytest.raises(ValueError, match="5-D"):
        prune.sca_score(torch.zeros(2, 3, 4))


def test_bad_avg_cos_similarity_input():
    with pytest.raises(ValueError, match="N_B >= 2"):
        prune.avg_cos_similarity(torch.ones(1, 4))
    with pytest.raises(ValueError, match="N_B >= 2"):
        prune.avg_cos_similarity([])
    with pytest.raises(ValueError, match="N_B >= 2"):
        prune.avg_cos_similarity(torch.ones(4))


def test_docstring_examples():
    import doctest

    result = doctest.testmod(prune, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


# ------------------------------------------------------------------------------------------------------------------
# BatchNorm recalibration after pruning
# ------------------------------------------------------------------------------------------------------------------
def bn_statistics_oracle(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm, the mean over batches of each batch's channel mean and unbiased variance of the BN's input,
    recorded with hooks in train mode (what a cumulative running average must equal)."""
    import copy

    net = copy.deepcopy(model).train()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            def hook(module, inputs, name=name):
                x = inputs[0].double()
                seen.setdefault(name, []).append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)))
            handles.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        for x in batches:
            net(x)
    for handle in handles:
        handle.remove()
    return {name: (torch.stack([m for m, _ in v]).mean(0), torch.stack([s for _, s in v]).mean(0))
            for name, v in seen.items()}


def test_recalibrate_bn_matches_the_average_of_batch_statistics():
    model, _ = digits(T=2, bits=4)
    pruned = prune.apply(model, random_scores(model), 0.5).eval()
    generator = torch.Generator().manual_seed(3)
    batches = [torch.rand(5, 1, 16, 16, generator=generator) for _ in range(4)]
    expected = bn_statistics_oracle(pruned, batches[:3])
    parameters = {k: v.clone() for k, v in pruned.named_parameters()}
    momenta = [m.momentum for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]

    assert prune.recalibrate_bn(pruned, [(x, None) for x in batches], batches=3) is pruned
    for name, m in pruned.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            torch.testing.assert_close(m.running_mean.double(), expected[name][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(m.running_var.double(), expected[name][1], rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, parameters[k]) for k, v in pruned.named_parameters())  # no gradient step
    assert not pruned.training  # the mode it had
    assert [m.momentum for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)] == momenta


def test_recalibrate_bn_bad_input_leaves_the_statistics_alone():
    model, _ = digits(T=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no batch"):
        prune.recalibrate_bn(model, [])
    with pytest.raises(ValueError, match="batches"):
        prune.recalibrate_bn(model, [torch.rand(2, 1, 16, 16)], batches=0)
    with pytest.raises(ValueError, match="loader"):
        prune.recalibrate_bn(model, None)
    with pytest.raises(ValueError, match="no BatchNorm"):
        prune.recalibrate_bn(nn.Sequential(nn.Conv2d(1, 2, 3)), [torch.rand(1, 1, 4, 4)])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_plan_tells_apply_widths_without_scores():
    # What a run checks before it trains (issue 14, class 2): the widths apply will keep, and its errors.
    model = models.build("resnet20", 10)
    ratios = {layer.name: 0.5 for layer in prune.prunable_layers(model) if layer.name.endswith("conv1")}
    ratios["features.layer1.0.conv2"] = 0.25  # a keep-set shared through identity shortcuts
    scores = {layer.name: torch.rand(layer.channels, dtype=torch.float64) for layer in prune.prunable_layers(model)}
    pruned = prune.apply(model, scores, ratios)
    assert prune.plan(model, ratios) == {name: len(kept) for name, kept in pruned.pruned_channels.items()}
    with pytest.raises(ValueError, match="would leave"):
        prune.plan(models.build("digits_cnn", 10, channels=(4, 8, 8, 8)), 0.8)
