"""Tests of ``qpsnn_lite.neurons`` against a LIF unrolled by hand in this file (the oracle).

The oracle follows the paper's Eq. 1-3 and App. D literally:

    U~[t] = tau * U[t-1] + X[t],   S[t] = Heaviside(U~[t] - theta)   (fires on >=),
    hard reset U[t] = U~[t] * (1 - S[t]),   soft reset U[t] = U~[t] - theta * S[t],

with the surrogate derivative written out here independently of the package, and the reset path NOT detached.
"""
import copy
import doctest
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from qpsnn_lite import neurons
from qpsnn_lite.neurons import LIF, lif_multistep, lif_multistep_state


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TAUS = (0.25, 0.5, 1.0)
THRESHOLDS = (0.5, 1.0, 2.0)
STEPS = (1, 2, 5)
SHAPES = ((3, 4), (2, 3, 4, 4))  # feature shapes after [T]: [T, B, N] and [T, B, C, H, W]
SURROGATE_ALPHA = {"triangle": 1.0, "sigmoid": 4.0, "arctan": 2.0}
# Optional backends of lif_multistep / LIF (e.g. a fused kernel); None = no such argument in this version.
BACKENDS = tuple(getattr(neurons, "BACKENDS", ())) or (None,)


# ----------------------------------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------------------------------
def reference_surrogate(v: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    """dS/dU~ at v = U~ - theta, written from the formulas (not from the package)."""
    if surrogate == "triangle":
        return torch.maximum(alpha - v.abs(), torch.zeros_like(v)) / alpha**2
    if surrogate == "sigmoid":
        sig = 1.0 / (1.0 + torch.exp(-alpha * v))
        return alpha * sig * (1.0 - sig)
    if surrogate == "arctan":
        return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * v) ** 2)
    raise AssertionError(surrogate)


class ReferenceSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, surrogate, alpha):
        ctx.save_for_backward(v)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return torch.where(v >= 0, torch.ones_like(v), torch.zeros_like(v))

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * reference_surrogate(v, ctx.surrogate, ctx.alpha), None, None


def reference_lif(x, tau, theta, surrogate="triangle", alpha=1.0, reset="hard", detach_reset=False):
    """Hand-unrolled LIF; returns (spikes, pre-reset membrane), each [T, B, ...]."""
    u = torch.zeros_like(x[0])
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        u_tilde = tau * u + x[t]
        s = ReferenceSpike.apply(u_tilde - theta, surrogate, alpha)
        s_reset = s.detach() if detach_reset else s
        u = u_tilde * (1 - s_reset) if reset == "hard" else u_tilde - theta * s_reset
        spikes.append(s)
        membrane.append(u_tilde)
    return torch.stack(spikes), torch.stack(membrane)


def _input(T, shape, theta, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    # Centred a little below threshold so that both spikes and silences occur and the surrogate is often nonzero.
    return (torch.randn(T, *shape, generator=g, dtype=dtype) * theta + 0.6 * theta).requires_grad_(True)


def _cases():
    # Every (tau, threshold, T) combination; the two layouts alternate, so each test sees both.
    grid = itertools.product(TAUS, THRESHOLDS, STEPS)
    return [(tau, theta, T, SHAPES[i % 2]) for i, (tau, theta, T) in enumerate(grid)]


# ----------------------------------------------------------------------------------------------------------------------
# Forward and gradients against the oracle
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid", "arctan"])
def test_lif_multistep_state_matches_reference(surrogate, reset, dtype):
    alpha = SURROGATE_ALPHA[surrogate]
    total_spikes, total_grad = 0.0, 0.0
    for i, (tau, theta, T, shape) in enumerate(_cases()):
        where = f"tau={tau} theta={theta} T={T} shape={shape}"
        x = _input(T, shape, theta, dtype, seed=i)
        x_ref = x.detach().clone().requires_grad_(True)
        g = torch.Generator().manual_seed(1000 + i)
        w_spikes = torch.randn(x.shape, generator=g, dtype=dtype)
        w_membrane = torch.randn(x.shape, generator=g, dtype=dtype)

        state = lif_multistep_state(x, tau, theta, surrogate, alpha, reset)
        spikes_ref, membrane_ref = reference_lif(x_ref, tau, theta, surrogate, alpha, reset)
        assert state.spikes.dtype == dtype and state.membrane.dtype == dtype, where
        assert state.spikes.shape == x.shape and state.membrane.shape == x.shape, where
        assert_close(state.spikes, spikes_ref, msg=lambda m: f"spikes, {where}: {m}")
        assert_close(state.membrane, membrane_ref, msg=lambda m: f"membrane, {where}: {m}")

        # Gradients w.r.t. the input through both outputs (spikes and pre-reset membrane).
        ((state.spikes * w_spikes).sum() + (state.membrane * w_membrane).sum()).backward()
        ((spikes_ref * w_spikes).sum() + (membrane_ref * w_membrane).sum()).backward()
        assert_close(x.grad, x_ref.grad, msg=lambda m: f"grad, {where}: {m}")
        total_spikes += float(state.spikes.detach().sum())
        total_grad += float(x.grad.abs().sum())
    assert total_spikes > 0 and total_grad > 0  # the cases are not degenerate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid", "arctan"])
def test_lif_multistep_and_module_match_reference(surrogate, reset, dtype):
    alpha = SURROGATE_ALPHA[surrogate]
    for i, (tau, theta, T, shape) in enumerate(_cases()):
        where = f"tau={tau} theta={theta} T={T} shape={shape}"
        w = torch.randn(T, *shape, generator=torch.Generator().manual_seed(7 + i), dtype=dtype)
        x_ref = _input(T, shape, theta, dtype, seed=i)
        spikes_ref, _ = reference_lif(x_ref, tau, theta, surrogate, alpha, reset)
        (spikes_ref * w).sum().backward()
        variants = []
        for backend in BACKENDS:  # every implementation of the time loop the package offers
            kw = {} if backend is None else {"backend": backend}
            variants += [
                (f"lif_multistep{kw}", lambda x, kw=kw: lif_multistep(x, tau, theta, surrogate, alpha, reset, **kw)),
                (f"LIF{kw}", LIF(tau=tau, threshold=theta, surrogate=surrogate, alpha=alpha, reset=reset, **kw)),
            ]
        for name, fn in variants:
            x = _input(T, shape, theta, dtype, seed=i)
            spikes = fn(x)
            assert_close(spikes, spikes_ref, msg=lambda m: f"{name} spikes, {where}: {m}")
            (spikes * w).sum().backward()
            assert_close(x.grad, x_ref.grad, msg=lambda m: f"{name} grad, {where}: {m}")


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 6),
    batch=st.integers(1, 3),
    tau=st.sampled_from(TAUS),
    theta=st.sampled_from(THRESHOLDS),
    reset=st.sampled_from(["hard", "soft"]),
    seed=st.integers(0, 2**16),
)
def test_spikes_binary_and_membrane_follows_recurrence(T, batch, tau, theta, reset, seed):
    x = torch.randn(T, batch, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    spikes, membrane = lif_multistep_state(x, tau, theta, reset=reset)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(spikes, (membrane >= theta).to(spikes.dtype))
    # Rebuild U~ from the outputs alone: U[t-1] is 0 after a hard-reset spike, U~ - theta after a soft one.
    u = torch.zeros_like(x[0])
    for t in range(T):
        assert_close(membrane[t], tau * u + x[t])
        u = membrane[t] * (1 - spikes[t]) if reset == "hard" else membrane[t] - theta * spikes[t]


# ----------------------------------------------------------------------------------------------------------------------
# Known values computed by hand
# ----------------------------------------------------------------------------------------------------------------------
def test_known_values_constant_input_tau_half():
    # U~ = 0.6, 0.5*0.6+0.6 = 0.9, 0.5*0.9+0.6 = 1.05 (>= 1: spike, reset to 0), 0.6.
    spikes, membrane = lif_multistep_state(torch.full((4, 1, 1), 0.6), tau=0.5, threshold=1.0)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert_close(membrane.flatten(), torch.tensor([0.6, 0.9, 1.05, 0.6]))


def test_known_values_constant_input_tau_one():
    # No leak: U~ = 0.6, 1.2 (spike, reset), 0.6, 1.2 (spike).
    spikes, membrane = lif_multistep_state(torch.full((4, 1, 1), 0.6), tau=1.0, threshold=1.0)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert_close(membrane.flatten(), torch.tensor([0.6, 1.2, 0.6, 1.2]))


def test_known_values_soft_reset():
    # Soft reset keeps the excess: U~ = 0.7, 0.35+0.7 = 1.05 (spike, U = 0.05), 0.025+0.7 = 0.725, 0.3625+0.7 = 1.0625.
    spikes, membrane = lif_multistep_state(torch.full((4, 1, 1), 0.7, dtype=torch.float64), 0.5, 1.0, reset="soft")
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert_close(membrane.flatten(), torch.tensor([0.7, 1.05, 0.725, 1.0625], dtype=torch.float64))


def test_lif_docstring_example_runs():
    runner = doctest.DocTestRunner(verbose=False)
    for test in doctest.DocTestFinder().find(LIF, "LIF", globs={"LIF": LIF, "torch": torch}):
        runner.run(test, out=lambda _: None)
    assert runner.tries >= 2 and runner.failures == 0


def test_fires_when_membrane_equals_threshold_exactly():
    # 0.5 then 0.5*0.5 + 0.75 = 1.0 exactly (all dyadic, so no rounding): fires on >=.
    x = torch.tensor([0.5, 0.75]).reshape(2, 1)
    spikes, membrane = lif_multistep_state(x, tau=0.5, threshold=1.0)
    assert membrane[1].item() == 1.0
    assert spikes.flatten().tolist() == [0.0, 1.0]
    # At exactly threshold from the first step, and just below it.
    assert lif_multistep(torch.tensor([[2.0]]), threshold=2.0).item() == 1.0
    below = torch.nextafter(torch.tensor(2.0), torch.tensor(0.0))
    assert lif_multistep(below.reshape(1, 1), threshold=2.0).item() == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# The reset path carries gradient (not detached)
# ----------------------------------------------------------------------------------------------------------------------
def test_hard_reset_gradient_is_not_detached():
    # t=0: U~ = 1.2 spikes (triangle at 0.2 -> 0.8); t=1: U~ = 0.5*U[0] + 0.9 = 0.9, triangle at -0.1 -> 0.9.
    # dS[1]/dX[0] = 0.9 * tau * dU[0]/dU~[0], with dU/dU~ = (1 - S) - U~ * S' = 0 - 1.2 * 0.8 = -0.96 -> -0.432.
    # With a detached reset dU/dU~ = 1 - S = 0, so the gradient would be 0.
    x = torch.tensor([[1.2], [0.9]], dtype=torch.float64, requires_grad=True)
    lif_multistep(x, tau=0.5, threshold=1.0)[1].sum().backward()
    assert_close(x.grad[0], torch.tensor([-0.432], dtype=torch.float64))

    x_ref = x.detach().clone().requires_grad_(True)
    reference_lif(x_ref, 0.5, 1.0, detach_reset=True)[0][1].sum().backward()
    assert x_ref.grad[0].item() == 0.0
    assert not torch.allclose(x.grad, x_ref.grad)


def test_soft_reset_gradient_is_not_detached():
    # t=0: U~ = 1.2 spikes, U = 0.2, dU/dU~ = 1 - theta * S' = 1 - 0.8 = 0.2; t=1: U~ = 0.1 + 0.9 = 1.0, S' = 1.
    # dS[1]/dX[0] = 1 * 0.5 * 0.2 = 0.1 (detached: 1 * 0.5 * 1 = 0.5).
    x = torch.tensor([[1.2], [0.9]], dtype=torch.float64, requires_grad=True)
    lif_multistep(x, tau=0.5, threshold=1.0, reset="soft")[1].sum().backward()
    assert_close(x.grad[0], torch.tensor([0.1], dtype=torch.float64))
    x_ref = x.detach().clone().requires_grad_(True)
    reference_lif(x_ref, 0.5, 1.0, reset="soft", detach_reset=True)[0][1].sum().backward()
    assert_close(x_ref.grad[0], torch.tensor([0.5], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------------------------
# Surrogates
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("surrogate", neurons.SURROGATES)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 4.0])
def test_surrogate_integrates_to_one(surrogate, alpha):
    # The arctan tail beyond |x| = L holds about 4 / (pi^2 alpha L) of the mass: < 1e-3 for L = 1000. A step of 0.01
    # on [-10, 10] puts the triangle's kinks on grid points (trapezoid exact) and resolves the narrowest bump (width
    # ~0.15); beyond that only the smooth arctan tail is left, and a step of 0.5 suffices.
    tail = torch.linspace(10.0, 1000.0, 1981, dtype=torch.float64)[1:]
    v = torch.cat([-tail.flip(0), torch.linspace(-10.0, 10.0, 2001, dtype=torch.float64), tail])
    area = torch.trapezoid(neurons.surrogate_derivative(v, surrogate, alpha), v).item()
    assert area == pytest.approx(1.0, abs=1.5e-3)


@pytest.mark.parametrize("surrogate", neurons.SURROGATES)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_spike_gradient_is_the_surrogate(surrogate, alpha):
    v = torch.linspace(-3, 3, 121, dtype=torch.float64, requires_grad=True)
    s = neurons.spike(v, surrogate, alpha)
    assert torch.equal(s, (v >= 0).double())
    s.sum().backward()
    expected = reference_surrogate(v.detach(), surrogate, alpha)
    assert_close(v.grad, expected)
    assert_close(neurons.surrogate_derivative(v.detach(), surrogate, alpha), expected)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_triangle_is_zero_outside_its_window(alpha):
    outside = torch.tensor([alpha, -alpha, alpha + 1e-3, -alpha - 1e-3, 5 * alpha, -100.0], dtype=torch.float64)
    assert torch.equal(neurons.surrogate_derivative(outside, "triangle", alpha), torch.zeros_like(outside))
    inside = torch.tensor([0.0, alpha / 2, -alpha / 2], dtype=torch.float64)
    assert_close(
        neurons.surrogate_derivative(inside, "triangle", alpha),
        torch.tensor([1 / alpha, 0.5 / alpha, 0.5 / alpha], dtype=torch.float64),
    )


def test_surrogate_peaks():
    zero = torch.zeros(1, dtype=torch.float64)
    assert neurons.surrogate_derivative(zero, "sigmoid", 4.0).item() == pytest.approx(1.0)  # alpha / 4
    assert neurons.surrogate_derivative(zero, "arctan", 2.0).item() == pytest.approx(1.0)  # alpha / 2
    assert neurons.surrogate_derivative(zero, "triangle", 1.0).item() == pytest.approx(1.0)  # 1 / a


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
GOOD_X = torch.zeros(2, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=0), "tau"),
        (dict(tau=1.5), "tau"),
        (dict(tau=-1), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(tau=True), "tau"),
        (dict(threshold=0), "threshold"),
        (dict(threshold=-1), "threshold"),
        (dict(threshold=float("inf")), "threshold"),
        (dict(surrogate="relu"), "surrogate"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(reset="zero"), "reset"),
    ],
)
def test_bad_parameters_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lif_multistep(GOOD_X, **kwargs)
    with pytest.raises(ValueError, match=match):
        lif_multistep_state(GOOD_X, **kwargs)
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.zeros(4), ValueError, "time axis"),  # 1-D: no batch axis
        (torch.zeros(()), ValueError, "time axis"),
        ([[0.0, 1.0]], TypeError, "x must be a torch.Tensor"),
        (torch.zeros(2, 3, dtype=torch.int64), TypeError, "floating-point"),
        (torch.zeros(0, 3), ValueError, "T = 0"),
    ],
)
def test_bad_input_current_raises(x, error, match):
    with pytest.raises(error, match=match):
        lif_multistep(x)
    with pytest.raises(error, match=match):
        lif_multistep_state(x)
    with pytest.raises(error, match=match):
        LIF()(x)


def test_spike_and_surrogate_reject_bad_surrogate():
    with pytest.raises(ValueError, match="surrogate"):
        neurons.spike(torch.zeros(2), "step")
    with pytest.raises(ValueError, match="alpha"):
        neurons.surrogate_derivative(torch.zeros(2), "triangle", 0.0)


# ----------------------------------------------------------------------------------------------------------------------
# The module
# ----------------------------------------------------------------------------------------------------------------------
def test_lif_defaults_are_the_papers():
    lif = LIF()
    assert (lif.tau, lif.threshold, lif.surrogate, lif.alpha, lif.reset) == (0.5, 1.0, "triangle", 1.0, "hard")


def test_lif_repr_shows_parameters():
    text = repr(LIF(tau=0.25, threshold=2, surrogate="sigmoid", alpha=4, reset="soft"))
    for part in ("tau=0.25", "threshold=2.0", "surrogate='sigmoid'", "alpha=4.0", "reset='soft'"):
        assert part in text, text


def test_lif_under_no_grad():
    x = _input(3, (2, 4), 1.0, torch.float32, seed=3)
    lif = LIF(tau=0.25)
    with torch.no_grad():
        out = lif(x)
    assert not out.requires_grad
    assert_close(out, reference_lif(x.detach(), 0.25, 1.0)[0])


def test_lif_deepcopy_is_independent_and_equal():
    lif = LIF(tau=0.25, threshold=0.5, surrogate="arctan", alpha=2.0, reset="soft")
    clone = copy.deepcopy(lif)
    assert clone is not lif and repr(clone) == repr(lif)
    x = _input(4, (2, 3), 0.5, torch.float64, seed=4)
    assert_close(clone(x), lif(x))
    clone.tau = 1.0
    assert lif.tau == 0.25


# ----------------------------------------------------------------------------------------------------------------------
# The fused node's PyTorch-ops implementation (the one that runs on a GPU), on CPU with the native kernel disabled
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def native_disabled(monkeypatch):
    """QPSNN_NATIVE=0 and a fresh build decision, so that implementation="auto" takes the PyTorch-ops path exactly as
    it does on CUDA; the previous decision is restored afterwards."""
    from qpsnn_lite import fused

    monkeypatch.setenv("QPSNN_NATIVE", "0")
    monkeypatch.setattr(fused, "_native", None)
    assert fused.native_status() == "torch: disabled by QPSNN_NATIVE=0"
    return fused


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", ["triangle", "sigmoid", "arctan"])
def test_fused_torch_ops_path_matches_reference(native_disabled, surrogate, reset, dtype):
    """Spikes and membrane bit-identical to the hand-unrolled oracle, gradients (through both outputs, and through the
    spikes only, via LIF's default backend) equal to rounding."""
    fused = native_disabled
    alpha = SURROGATE_ALPHA[surrogate]
    for i, (tau, theta, T, shape) in enumerate(_cases()):
        where = f"tau={tau} theta={theta} T={T} shape={shape}"
        x = _input(T, shape, theta, dtype, seed=i)
        x_ref = x.detach().clone().requires_grad_(True)
        g = torch.Generator().manual_seed(2000 + i)
        w_spikes = torch.randn(x.shape, generator=g, dtype=dtype)
        w_membrane = torch.randn(x.shape, generator=g, dtype=dtype)
        spikes, membrane = fused.lif_fused_state(x, tau, theta, surrogate, alpha, reset)  # "auto": torch ops here
        spikes_ref, membrane_ref = reference_lif(x_ref, tau, theta, surrogate, alpha, reset)
        assert torch.equal(spikes, spikes_ref), f"spikes, {where}"
        assert torch.equal(membrane, membrane_ref), f"membrane, {where}"
        ((spikes * w_spikes).sum() + (membrane * w_membrane).sum()).backward()
        ((spikes_ref * w_spikes).sum() + (membrane_ref * w_membrane).sum()).backward()
        assert_close(x.grad, x_ref.grad, msg=lambda m: f"grad, {where}: {m}")

        x_module = x.detach().clone().requires_grad_(True)
        x_ref = x.detach().clone().requires_grad_(True)
        lif = LIF(tau=tau, threshold=theta, surrogate=surrogate, alpha=alpha, reset=reset)  # backend="fused"
        (lif(x_module) * w_spikes).sum().backward()
        (reference_lif(x_ref, tau, theta, surrogate, alpha, reset)[0] * w_spikes).sum().backward()
        assert_close(x_module.grad, x_ref.grad, msg=lambda m: f"spikes-only grad, {where}: {m}")


# ----------------------------------------------------------------------------------------------------------------------
# Layering: neurons imports fused at the top, fused does not import neurons
# ----------------------------------------------------------------------------------------------------------------------
def test_imports_are_acyclic_and_at_module_level():
    import ast
    import os
    import pathlib
    import subprocess
    import sys

    package = pathlib.Path(neurons.__file__).parent
    for name in ("neurons.py", "fused.py", "_lif_common.py"):
        tree = ast.parse((package / name).read_text())
        top_level = set(tree.body)
        nested = [node.lineno for node in ast.walk(tree)
                  if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in top_level]
        assert not nested, f"{name} imports inside a function (line {nested})"
    code = ("import sys, qpsnn_lite.fused; assert 'qpsnn_lite.neurons' not in sys.modules; "
            "import qpsnn_lite._lif_common as c; assert not [m for m in sys.modules if m.startswith('qpsnn_lite.') "
            "and m not in ('qpsnn_lite.fused', 'qpsnn_lite._lif_common')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=package.parent,
                   env={**os.environ, "PYTHONPATH": str(package.parent)})
