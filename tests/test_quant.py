"""Tests of qpsnn_lite.quant: grids checked against values computed by hand from Eq. 4-6, gamma against numpy."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from qpsnn_lite import quant
from qpsnn_lite.quant import (
    GAMMA_RULES,
    STE_MODES,
    QuantConv2d,
    QuantLinear,
    analytic_utilization,
    bit_utilization,
    compute_gamma,
    dequantize,
    levels,
    quantization_codes,
    quantize,
)


def gaussian(*shape: int, std: float = 0.05, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator) * std


# --------------------------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------------------------
def test_levels_1_and_2_bits_by_hand():
    assert levels(1).tolist() == [-1.0, 1.0]
    torch.testing.assert_close(levels(2), torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))


def test_levels_3_bits_by_hand():
    # s = 7: -1 + 2k/7 for k = 0..7
    expected = torch.tensor([-7, -5, -3, -1, 1, 3, 5, 7], dtype=torch.float32) / 7
    torch.testing.assert_close(levels(3), expected)
    assert levels(3).dtype == torch.float32


def test_levels_8_bits_has_256_levels_and_no_zero():
    grid = levels(8)
    assert grid.numel() == 256 and torch.unique(grid).numel() == 256
    assert not (grid == 0).any()
    assert grid.min() == -1 and grid.max() == 1
    assert torch.all(grid[1:] > grid[:-1])


def test_constants():
    assert GAMMA_RULES == ("mean", "max", "percentile")
    assert STE_MODES == ("unmasked", "masked")


# --------------------------------------------------------------------------------------------------------------------
# Eq. 4-6 by hand, Eq. 10 with an explicit gamma
# --------------------------------------------------------------------------------------------------------------------
def test_vanilla_values_by_hand_2_bits():
    # s = 3, W_int = round(1.5 (clamp(w) + 1)):
    # 0.2 -> round(1.8) = 2 -> 1/3; -0.9 -> round(0.15) = 0 -> -1; 5.0 -> clamp 1 -> 3 -> 1;
    # -0.3 -> round(1.05) = 1 -> -1/3; -7 -> clamp -1 -> 0 -> -1
    w = torch.tensor([0.2, -0.9, 5.0, -0.3, -7.0])
    codes, gamma = quantization_codes(w, 2)
    assert gamma is None
    assert codes.tolist() == [2, 0, 3, 1, 0]
    torch.testing.assert_close(quantize(w, 2), torch.tensor([1 / 3, -1.0, 1.0, -1 / 3, -1.0]))


def test_vanilla_values_by_hand_3_bits():
    # s = 7, W_int = round(3.5 (w + 1)): 0.1 -> round(3.85) = 4 -> 1/7; 0.5 -> round(5.25) = 5 -> 3/7;
    # -0.6 -> round(1.4) = 1 -> -5/7
    w = torch.tensor([0.1, 0.5, -0.6])
    assert quantization_codes(w, 3)[0].tolist() == [4, 5, 1]
    torch.testing.assert_close(quantize(w, 3), torch.tensor([1 / 7, 3 / 7, -5 / 7]))


def test_one_bit_is_a_sign_quantizer():
    w = torch.tensor([-0.4, 0.3, 2.0, -0.01])
    assert quantize(w, 1).tolist() == [-1.0, 1.0, 1.0, -1.0]


def test_exact_ties_round_to_even_like_torch_round():
    # 1 bit: w = 0 gives 0.5 (s/2)(0 + 1) = 0.5, a tie that torch.round sends to the even code 0, i.e. -1.
    # 2 bits: w = 0 gives 1.5 -> 2 -> +1/3. floor(x + 1/2) would give +1 at 1 bit.
    assert quantize(torch.zeros(1), 1).item() == -1.0
    assert quantization_codes(torch.zeros(1), 2)[0].item() == 2


def test_explicit_gamma_tensor_by_hand():
    # channel 0: gamma 0.5; channel 1: gamma 2.0; at 2 bits.
    # ch0: 0.1/0.5 = 0.2 -> 1/3 -> 0.5/3; -0.6/0.5 = -1.2 -> -1 -> -0.5
    # ch1: 1.0/2 = 0.5 -> round(2.25) = 2 -> 1/3 -> 2/3; -0.1/2 = -0.05 -> round(1.425) = 1 -> -1/3 -> -2/3
    w = torch.tensor([[0.1, -0.6], [1.0, -0.1]])
    gamma = torch.tensor([[0.5], [2.0]])
    expected = torch.tensor([[0.5 / 3, -0.5], [2 / 3, -2 / 3]])
    torch.testing.assert_close(quantize(w, 2, gamma=gamma), expected)
    codes, used = quantization_codes(w, 2, gamma=gamma)
    assert codes.tolist() == [[2, 0], [2, 1]]
    assert torch.equal(used, gamma)
    # a plain number works as a layer-wide gamma
    torch.testing.assert_close(quantize(w, 2, gamma=2.0), 2.0 * quantize(w / 2.0, 2))


def test_gamma_rule_equals_explicit_gamma():
    w = gaussian(6, 3, 3, 3)
    for rule in GAMMA_RULES:
        for granularity in ("channel", "layer"):
            gamma = compute_gamma(w, rule, granularity)
            assert torch.equal(quantize(w, 4, rule, granularity), quantize(w, 4, gamma))


def test_idempotent_without_gamma():
    w = gaussian(8, 4, 3, 3, std=0.7)
    for bits in (1, 2, 3, 4, 8, 16):
        once = quantize(w, bits)
        assert torch.equal(quantize(once, bits), once)


def test_values_are_exactly_on_the_grid():
    w = gaussian(8, 4, 3, 3, std=0.7)
    for bits in (2, 4, 8):
        assert torch.isin(quantize(w, bits), levels(bits)).all()


def test_distinct_values_per_output_channel():
    w = gaussian(5, 16, 3, 3, std=1.0)
    for bits in (1, 2, 3, 4):
        vanilla = quantize(w, bits)
        rescaled = quantize(w, bits, gamma="mean") / compute_gamma(w, "mean")
        for channel in range(w.shape[0]):
            assert torch.unique(vanilla[channel]).numel() <= 2**bits
            assert torch.unique(rescaled[channel]).numel() <= 2**bits
        # with this many Gaussian weights every level is used at these widths
        assert torch.unique(vanilla[0]).numel() == 2**bits


def test_dequantize_inverts_codes_exactly():
    w = gaussian(4, 3, 3, 3)
    for gamma in (None, "mean", "max", "percentile"):
        codes, used = quantization_codes(w, 4, gamma)
        assert codes.dtype == torch.uint8
        assert torch.equal(dequantize(codes, 4, used), quantize(w, 4, gamma))
    codes, _ = quantization_codes(w, 12)
    assert codes.dtype == torch.int32 and int(codes.max()) <= 4095


def test_all_zero_channel_gives_no_nan():
    w = gaussian(3, 2, 3, 3)
    w[1] = 0.0
    for rule in GAMMA_RULES:
        gamma = compute_gamma(w, rule)
        assert gamma[1].item() == pytest.approx(quant.GAMMA_MIN)
        out = quantize(w, 2, gamma=rule)
        assert torch.isfinite(out).all()
        assert out[1].abs().max() <= quant.GAMMA_MIN


# --------------------------------------------------------------------------------------------------------------------
# Gamma rules against numpy
# --------------------------------------------------------------------------------------------------------------------
def numpy_gamma(w: np.ndarray, rule: str, percentile: float = 0.99) -> np.ndarray:
    if rule == "mean":
        return np.mean(np.abs(w), axis=1)
    if rule == "max":
        return np.max(np.abs(w), axis=1)
    low, high = np.quantile(w, [1 - percentile, percentile], axis=1)
    return np.maximum(np.abs(low), np.abs(high))


@pytest.mark.parametrize("rule", GAMMA_RULES)
def test_gamma_per_channel_matches_numpy(rule):
    w = gaussian(6, 4, 3, 3, std=0.3, seed=1)
    gamma = compute_gamma(w, rule, "channel")
    assert gamma.shape == (6, 1, 1, 1)
    expected = numpy_gamma(w.numpy().reshape(6, -1).astype(np.float64), rule)
    np.testing.assert_allclose(gamma.flatten().numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("rule", GAMMA_RULES)
def test_gamma_per_layer_matches_numpy(rule):
    w = gaussian(6, 4, 3, 3, std=0.3, seed=2)
    gamma = compute_gamma(w, rule, "layer")
    assert gamma.dim() == 0
    assert torch.broadcast_shapes(gamma.shape, w.shape) == w.shape
    expected = numpy_gamma(w.numpy().reshape(1, -1).astype(np.float64), rule)[0]
    assert gamma.item() == pytest.approx(expected, rel=1e-5)


def test_percentile_argument_changes_gamma_and_one_means_max():
    w = gaussian(4, 50, seed=3)
    expected = numpy_gamma(w.numpy().astype(np.float64), "percentile", 0.9)
    np.testing.assert_allclose(compute_gamma(w, "percentile", percentile=0.9).flatten().numpy(), expected, rtol=1e-5)
    assert torch.equal(compute_gamma(w, "percentile", percentile=1.0), compute_gamma(w, "max"))


def test_gamma_is_detached():
    w = gaussian(4, 3, 3, 3).requires_grad_()
    for rule in GAMMA_RULES:
        for granularity in ("channel", "layer"):
            assert compute_gamma(w, rule, granularity).requires_grad is False
    _, used = quantization_codes(w, 2, "mean")
    assert used.requires_grad is False


def test_no_gradient_flows_into_a_given_gamma_tensor():
    w = gaussian(4, 3).requires_grad_()
    gamma = torch.full((4, 1), 0.05, requires_grad=True)
    quantize(w, 2, gamma=gamma).sum().backward()
    assert gamma.grad is None
    assert w.grad is not None
    assert quantization_codes(w, 2, gamma=gamma)[1].requires_grad is False


# --------------------------------------------------------------------------------------------------------------------
# Straight-through estimators
# --------------------------------------------------------------------------------------------------------------------
def upstream_for(w: torch.Tensor) -> torch.Tensor:
    return torch.randn(w.shape, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("gamma", [None, "mean", "max"])
def test_unmasked_ste_passes_the_gradient_unchanged(gamma):
    w = gaussian(4, 3, 3, 3, std=1.0).requires_grad_()  # std 1: many vanilla weights are clipped too
    upstream = upstream_for(w)
    quantize(w, 2, gamma=gamma, ste="unmasked").backward(upstream)
    assert torch.equal(w.grad, upstream)


def test_ste_scale_divides_by_gamma():
    w = gaussian(4, 3, 3, 3).requires_grad_()
    upstream = upstream_for(w)
    quantize(w, 2, gamma="mean", ste_scale=True).backward(upstream)
    gamma = compute_gamma(w, "mean")
    torch.testing.assert_close(w.grad, upstream / gamma)
    assert not torch.allclose(w.grad, upstream)


def test_ste_scale_without_gamma_is_the_identity():
    w = gaussian(4, 3).requires_grad_()
    upstream = upstream_for(w)
    quantize(w, 2, ste_scale=True).backward(upstream)
    assert torch.equal(w.grad, upstream)


def test_masked_ste_zeroes_exactly_the_clipped_weights():
    w = gaussian(8, 4, 3, 3).requires_grad_()
    upstream = upstream_for(w)
    quantize(w, 2, gamma="mean", ste="masked").backward(upstream)
    outside = (w / compute_gamma(w, "mean")).abs() > 1
    assert 0 < outside.sum() < outside.numel()  # both cases occur
    assert torch.all(w.grad[outside] == 0)
    assert torch.equal(w.grad[~outside], upstream[~outside])


def test_masked_ste_without_gamma_uses_the_fixed_clip_range():
    w = torch.tensor([-1.5, -1.0, -0.2, 0.7, 1.0, 3.0], requires_grad=True)
    quantize(w, 2, ste="masked").backward(torch.ones(6))
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_masked_ste_with_scale():
    w = gaussian(4, 3, 3, 3).requires_grad_()
    upstream = upstream_for(w)
    quantize(w, 2, gamma="mean", ste="masked", ste_scale=True).backward(upstream)
    gamma = compute_gamma(w, "mean")
    inside = ((w / gamma).abs() <= 1).float()
    torch.testing.assert_close(w.grad, upstream * inside / gamma)


# --------------------------------------------------------------------------------------------------------------------
# Bit-width utilisation
# --------------------------------------------------------------------------------------------------------------------
def test_vanilla_8_bit_utilization_is_small_and_near_the_analytic_value():
    w = gaussian(64, 64, 3, 3, std=0.05)
    steps = 255
    measured = bit_utilization(w, 8)
    analytic = analytic_utilization(w, 8)
    # a = max(|P_0.01|, |P_0.99|) ~ 2.33 std = 0.116, so R ~ (255 * 0.116 + 1) / 256 ~ 0.12
    assert analytic == pytest.approx((steps * 2.326 * 0.05 + 1) / 256, abs=0.01)
    assert measured < 0.25
    # The analytic R leaves out the 2 % of weights beyond the percentiles; the measured value counts them, so it
    # lies between R(a) and R(max |w|) ...
    upper = (steps * w.abs().max().item() + 1) / (steps + 1)
    assert analytic <= measured <= upper + 1 / 256
    # ... and on the weights clipped to [P_0.01, P_0.99] the two agree to within 2 codes.
    low, high = torch.quantile(w.flatten(), torch.tensor([0.01, 0.99]))
    assert bit_utilization(w.clamp(low.item(), high.item()), 8) == pytest.approx(analytic, abs=2 / 256)


@pytest.mark.parametrize("bits", [2, 4])
def test_rescaw_mean_uses_every_code(bits):
    w = gaussian(16, 8, 3, 3, std=0.05)
    assert bit_utilization(w, bits) < 0.6  # the vanilla quantizer wastes codes on small weights
    assert bit_utilization(w, bits, gamma="mean") == 1.0


def test_utilization_is_in_range_and_analytic_is_clipped_at_one():
    assert bit_utilization(torch.zeros(3, 3), 8) == 1 / 256
    assert analytic_utilization(torch.full((10,), 5.0), 8) == 1.0
    assert analytic_utilization(torch.zeros(10), 4) == pytest.approx(1 / 16)


# --------------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [None, "mean", "percentile"])
def test_quant_conv_matches_functional_conv(gamma):
    torch.manual_seed(0)
    conv = QuantConv2d(3, 6, 3, stride=2, padding=1, bits=2, gamma=gamma, dilation=1, groups=1)
    x = torch.randn(2, 3, 9, 9)
    expected = F.conv2d(x, quantize(conv.weight, 2, gamma=gamma), None, stride=2, padding=1)
    assert torch.equal(conv(x), expected)
    assert torch.equal(conv.quantized_weight(), quantize(conv.weight, 2, gamma=gamma))
    assert conv.quantized_weight().requires_grad is False


def test_quant_conv_groups_and_bias():
    torch.manual_seed(0)
    conv = QuantConv2d(4, 4, 3, padding=1, bias=True, bits=4, groups=2)
    x = torch.randn(1, 4, 5, 5)
    expected = F.conv2d(x, quantize(conv.weight, 4, "mean"), conv.bias, padding=1, groups=2)
    torch.testing.assert_close(conv(x), expected)


def test_quant_conv_gradient_reaches_the_weight():
    torch.manual_seed(0)
    conv = QuantConv2d(3, 4, 3, bits=2, gamma="mean")
    conv(torch.randn(2, 3, 6, 6)).square().sum().backward()
    assert conv.weight.grad is not None
    assert conv.weight.grad.abs().sum() > 0


def test_quant_conv_deepcopy_and_state_dict_round_trip():
    torch.manual_seed(0)
    conv = QuantConv2d(3, 4, 3, padding=1, bits=2, gamma="max", granularity="layer", ste="masked", ste_scale=True)
    x = torch.randn(1, 3, 5, 5)
    clone = copy.deepcopy(conv)
    assert torch.equal(clone(x), conv(x))
    assert (clone.bits, clone.gamma, clone.granularity, clone.ste, clone.ste_scale) == (2, "max", "layer", "masked", True)
    with torch.no_grad():
        clone.weight.add_(1.0)
    assert not torch.equal(clone.weight, conv.weight)  # independent copies
    fresh = QuantConv2d(3, 4, 3, padding=1, bits=2, gamma="max", granularity="layer", ste="masked", ste_scale=True)
    fresh.load_state_dict(conv.state_dict())
    assert set(conv.state_dict()) == {"weight"}
    assert torch.equal(fresh(x), conv(x))


def test_quant_conv_survives_a_narrower_weight():
    torch.manual_seed(0)
    conv = QuantConv2d(4, 8, 3, bits=2, gamma="mean")
    conv.weight = nn.Parameter(conv.weight.detach()[[0, 2, 5], :3].clone())  # what channel pruning does
    conv.in_channels, conv.out_channels = 3, 3
    x = torch.randn(2, 3, 5, 5)
    out = conv(x)
    assert out.shape == (2, 3, 3, 3)
    assert torch.equal(out, F.conv2d(x, quantize(conv.weight, 2, "mean")))
    assert "QuantConv2d(3, 3" in repr(conv)


def test_quant_conv_none_gamma_is_the_vanilla_quantizer():
    conv = QuantConv2d(2, 2, 1, bits=2, gamma=None)
    assert torch.isin(conv.quantized_weight(), levels(2)).all()
    assert "gamma=None" in repr(conv) and "bits=2" in repr(conv)


def test_quant_linear():
    torch.manual_seed(0)
    layer = QuantLinear(5, 3, bits=2, gamma="mean")
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), F.linear(x, quantize(layer.weight, 2, "mean"), layer.bias))
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    assert "bits=2" in repr(layer)
    assert torch.equal(copy.deepcopy(layer)(x), layer(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bits": 0}, "bits"),
        ({"gamma": "median"}, "gamma"),
        ({"gamma": 0.5}, "gamma"),
        ({"granularity": "tensor"}, "granularity"),
        ({"ste": "clipped"}, "ste"),
        ({"percentile": 0.3}, "percentile"),
    ],
)
def test_layers_validate_their_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantConv2d(2, 2, 3, **kwargs)
    with pytest.raises(ValueError, match=match):
        QuantLinear(2, 2, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Properties over shapes and bit widths
# --------------------------------------------------------------------------------------------------------------------
weights = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
    elements=st.floats(-3, 3, width=32),
)


@settings(max_examples=50, deadline=None)
@given(w=weights, bits=st.integers(1, 8), gamma=st.sampled_from([None, *GAMMA_RULES]),
       granularity=st.sampled_from(["channel", "layer"]))
def test_property_grid_codes_and_shape(w, bits, gamma, granularity):
    w = torch.from_numpy(w)
    out = quantize(w, bits, gamma=gamma, granularity=granularity)
    codes, used = quantization_codes(w, bits, gamma=gamma, granularity=granularity)
    assert out.shape == w.shape and out.dtype == w.dtype
    assert codes.shape == w.shape
    assert int(codes.min()) >= 0 and int(codes.max()) <= 2**bits - 1
    assert torch.unique(codes).numel() <= 2**bits
    assert (used is None) == (gamma is None)
    # forward values are exactly the grid levels of the codes, times gamma
    grid = levels(bits)
    expected = grid[codes.long()] if used is None else used * grid[codes.long()]
    assert torch.equal(out, expected)
    # and, dividing gamma back out, within float rounding of a grid level
    scaled = out if used is None else out / used
    distance = (scaled.unsqueeze(-1) - grid).abs().amin(dim=-1)
    assert distance.max() <= 1e-5
    assert 0 < bit_utilization(w, bits, gamma, granularity) <= 1


@settings(max_examples=50, deadline=None)
@given(w=weights, bits=st.integers(1, 8))
def test_property_vanilla_is_idempotent_and_close(w, bits):
    w = torch.from_numpy(w)
    out = quantize(w, bits)
    assert torch.equal(quantize(out, bits), out)
    # inside the clip range the error is at most half a step
    step = 2 / (2**bits - 1)
    inside = w.abs() <= 1
    assert torch.all((out - w)[inside].abs() <= step / 2 + 1e-6)


# --------------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [0, 17, -2, 2.5, 4.0, True, None, "4"])
def test_bad_bits(bits):
    w = gaussian(2, 3)
    with pytest.raises(ValueError, match="bits must be an integer in 1..16"):
        quantize(w, bits)
    with pytest.raises(ValueError, match="bits"):
        levels(bits)
    with pytest.raises(ValueError, match="bits"):
        bit_utilization(w, bits)


def test_bits_message_names_the_value():
    with pytest.raises(ValueError, match="got 0"):
        quantize(gaussian(2, 3), 0)


def test_numpy_integer_bits_are_accepted():
    w = gaussian(2, 3)
    assert torch.equal(quantize(w, np.int64(4)), quantize(w, 4))


def test_bad_weights():
    with pytest.raises(ValueError, match="empty"):
        quantize(torch.zeros(0, 3), 4)
    nan = gaussian(2, 3)
    nan[0, 1] = float("nan")
    with pytest.raises(ValueError, match="w contains NaN; check the learning rate"):
        quantize(nan, 4)
    inf = gaussian(2, 3)
    inf[1, 2] = float("inf")
    with pytest.raises(ValueError, match="w contains inf"):
        quantize(inf, 4, gamma="mean")
    with pytest.raises(ValueError, match="NaN"):
        compute_gamma(nan)
    with pytest.raises(TypeError, match="w must be a torch.Tensor"):
        quantize([0.1, 0.2], 4)
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.tensor([1, 2]), 4)


def test_bad_gamma():
    w = gaussian(4, 3)
    with pytest.raises(ValueError, match=r"gamma must be None, one of \('mean', 'max', 'percentile'\)"):
        quantize(w, 4, gamma="median")
    with pytest.raises(ValueError, match="rule"):
        compute_gamma(w, rule="median")
    with pytest.raises(ValueError, match="gamma has shape"):
        quantize(w, 4, gamma=torch.ones(3, 1))
    with pytest.raises(ValueError, match="gamma must be positive"):
        quantize(w, 4, gamma=torch.zeros(4, 1))
    with pytest.raises(ValueError, match="gamma must be positive"):
        quantize(w, 4, gamma=-0.5)
    with pytest.raises(TypeError, match="gamma"):
        quantize(w, 4, gamma=[0.1])


def test_bad_choices():
    w = gaussian(4, 3)
    with pytest.raises(ValueError, match="ste must be one of"):
        quantize(w, 4, ste="clipped")
    with pytest.raises(ValueError, match="granularity"):
        quantize(w, 4, gamma="mean", granularity="tensor")
    with pytest.raises(ValueError, match="granularity"):
        compute_gamma(w, granularity="row")
    with pytest.raises(TypeError, match="ste_scale"):
        quantize(w, 4, ste_scale="yes")


@pytest.mark.parametrize("percentile", [0.5, 0.2, 1.01, float("nan"), True])
def test_bad_percentile(percentile):
    w = gaussian(4, 3)
    with pytest.raises(ValueError, match="percentile must be a number in"):
        compute_gamma(w, "percentile", percentile=percentile)
    with pytest.raises(ValueError, match="percentile"):
        quantize(w, 4, gamma="percentile", percentile=percentile)


def test_bad_codes():
    with pytest.raises(ValueError, match="codes must lie in 0..3"):
        dequantize(torch.tensor([0, 4]), 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bits", [9, 12, 16])
def test_codes_stay_on_the_grid_in_half_precision(dtype, bits):
    # Issue 14, class 4: codes computed in the weight's dtype overflowed (float16, 16 bits: 65535 > 65504) or left
    # 0..2^b-1 (bfloat16 rounds 511 to 512).
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3)
    for gamma in (None, "mean"):
        codes, used = quant.quantization_codes(w.to(dtype), bits, gamma)
        assert codes.min() >= 0 and codes.max() <= 2**bits - 1
        reference, _ = quant.quantization_codes(w.to(dtype).float(), bits, None if used is None else used.float())
        assert torch.equal(codes, reference)
        w_hat = quant.quantize(w.to(dtype), bits, gamma)
        assert w_hat.dtype == dtype and torch.isfinite(w_hat).all()
    codes, _ = quant.quantization_codes(torch.ones(3, dtype=dtype), 16)
    assert int(codes.max()) == 2**16 - 1
