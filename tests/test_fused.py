"""The fused LIF (``qpsnn_lite.fused``) against the readable loop of chapter 01 (``neurons.lif_multistep_state``).

The reference loop, differentiated by PyTorch's autograd, is the oracle: spikes and membrane potentials must be
bit-identical, gradients equal to rounding. Both implementations of the fused node are tested: ``"torch"`` (in-place
PyTorch ops) and ``"native"`` (the C kernel; skipped when this machine has no C compiler). The last part tests the
build cache of the C kernel: private to the user, keyed by the source, refusing a library someone else could have put
there, rebuilding a corrupt one.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess

import pytest
import torch

from qpsnn_lite import fused, models, neurons

NATIVE_AVAILABLE = fused.native_status().startswith("native")
IMPLEMENTATIONS = [
    "torch",
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE_AVAILABLE, reason=fused.native_status())),
]

# (tau, threshold, alpha, shape [T, B, ...]): leak from strong to none, thresholds around the input scale, surrogate
# widths on both sides of 1, T from 1 to 16, and B * features that are and are not multiples of the native kernel's
# blocks (64 neurons forward, 128 backward).
CASES = [
    (0.5, 1.0, 1.0, (4, 8, 3, 5, 5)),
    (0.9, 0.5, 0.5, (1, 3)),
    (1.0, 2.0, 2.0, (7, 2, 33)),
    (0.25, 1.0, 1.3, (3, 2, 64)),
    (0.7, 0.8, 1.0, (16, 5, 17)),
]


def _input(shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 0.8 + 0.5).to(dtype)


def _run(function, x, grad_spikes, grad_membrane, **kwargs):
    """Spikes, membrane and dL/dx for L = <grad_spikes, S> + <grad_membrane, U~>."""
    x = x.clone().requires_grad_()
    spikes, membrane = function(x, **kwargs)
    ((spikes * grad_spikes).sum() + (membrane * grad_membrane).sum()).backward()
    return spikes.detach(), membrane.detach(), x.grad


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("surrogate", neurons.SURROGATES)
@pytest.mark.parametrize("reset", neurons.RESETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_loop(implementation, surrogate, reset, dtype):
    for seed, (tau, threshold, alpha, shape) in enumerate(CASES):
        x = _input(shape, dtype, seed)
        grad_spikes, grad_membrane = _input(shape, dtype, seed + 100), _input(shape, dtype, seed + 200)
        params = dict(tau=tau, threshold=threshold, surrogate=surrogate, alpha=alpha, reset=reset)
        expected = _run(neurons.lif_multistep_state, x, grad_spikes, grad_membrane, **params)
        got = _run(fused.lif_fused_state, x, grad_spikes, grad_membrane, implementation=implementation, **params)
        assert torch.equal(got[0], expected[0]), f"spikes differ for {params}, shape {shape}"
        assert torch.equal(got[1], expected[1]), f"membrane potentials differ for {params}, shape {shape}"
        torch.testing.assert_close(got[2], expected[2], msg=lambda m: f"{params}, shape {shape}: {m}")
        if shape[0] > 1:
            assert 0 < expected[0].mean() < 1, "the case should have both spikes and silences"
        # spikes-only entry point (no membrane output, so no membrane gradient in the backward)
        x_spikes = x.clone().requires_grad_()
        (fused.lif_fused(x_spikes, implementation=implementation, **params) * grad_spikes).sum().backward()
        x_reference = x.clone().requires_grad_()
        (neurons.lif_multistep(x_reference, backend="reference", **params) * grad_spikes).sum().backward()
        torch.testing.assert_close(x_spikes.grad, x_reference.grad)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_two_steps_by_hand(implementation):
    """BPTT written out for T = 2, hard reset, triangle: the derivation in fused.py's docstring, number by number."""
    tau, threshold = 0.5, 1.0
    x = torch.tensor([[1.2, 0.3], [0.5, 0.9]], dtype=torch.float64, requires_grad=True)  # [T=2, 2 neurons]
    grad = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    spikes = fused.lif_fused(x, tau, threshold, implementation=implementation)
    (spikes * grad).sum().backward()
    u0 = x.detach()[0]  # U~[0] = X[0] = (1.2, 0.3): neuron 0 fires, neuron 1 does not
    s0 = (u0 >= threshold).double()
    u1 = tau * u0 * (1 - s0) + x.detach()[1]  # U~[1] = (0.5, 1.05)
    triangle = lambda u: (1 - (u - threshold).abs()).clamp(min=0)  # noqa: E731
    delta1 = grad[1] * triangle(u1)
    delta0 = grad[0] * triangle(u0) + tau * delta1 * ((1 - s0) - u0 * triangle(u0))  # reset path not detached
    assert spikes.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    torch.testing.assert_close(x.grad, torch.stack([delta0, delta1]))
    # neuron 0: delta0 = 1 * 0.8 + 0.5 * 0.25 * (0 - 1.2 * 0.8) = 0.68
    assert x.grad[0, 0].item() == pytest.approx(0.68)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("reset", neurons.RESETS)
def test_gradcheck_away_from_the_surrogate_window(implementation, reset):
    """Finite differences see the true derivative of the spiking forward. The step itself has derivative 0, so they can
    only agree with the surrogate backward where the surrogate is 0 too: every U~ at least ``alpha`` away from the
    threshold (outside the triangle, away from its kinks). There they check the rest of the backward exactly: the leak
    carried over time, the (1 - S) factor of the reset, the membrane output's gradient. The surrogate terms are checked
    against the reference's autograd in test_matches_reference_loop."""
    alpha, threshold, tau = 0.05, 1.0, 0.8
    for seed in range(1000):
        x = _input((4, 2, 3), torch.float64, seed) * 2
        membrane = neurons.lif_multistep_state(x, tau, threshold, reset=reset).membrane
        if (membrane - threshold).abs().min() > alpha + 1e-3 and 0 < (membrane >= threshold).double().mean() < 1:
            break
    else:
        pytest.fail("no input kept every membrane potential away from the surrogate window")
    x.requires_grad_()

    def function(inputs):
        return tuple(fused.lif_fused_state(inputs, tau, threshold, "triangle", alpha, reset, implementation))

    assert torch.autograd.gradcheck(function, (x,), eps=1e-6, atol=1e-8)


@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="no native kernel on this machine")
def test_native_kernel_in_parallel_chunks():
    """Large enough to be split across threads; 40 001 neurons is not a multiple of the blocks."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = _input((2, 1, 40001), torch.float32, 7).requires_grad_()
        grad = _input((2, 1, 40001), torch.float32, 8)
        spikes = fused.lif_fused(x, implementation="native")
        (spikes * grad).sum().backward()
    finally:
        torch.set_num_threads(previous)
    reference = x.detach().clone().requires_grad_()
    expected = neurons.lif_multistep(reference, backend="reference")
    (expected * grad).sum().backward()
    assert torch.equal(spikes, expected)
    torch.testing.assert_close(x.grad, reference.grad)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_edge_cases(implementation):
    base = _input((5, 6, 4), torch.float32, 3)
    # a non-contiguous input (the last two axes swapped in memory)
    strided = base.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    expected = neurons.lif_multistep_state(base).spikes
    assert torch.equal(fused.lif_fused(strided, implementation=implementation), expected)
    # T = 1, an empty batch, no autograd at all
    assert torch.equal(fused.lif_fused(base[:1], implementation=implementation), (base[:1] >= 1).float())
    assert fused.lif_fused(base[:, :0], implementation=implementation).shape == (5, 0, 4)
    with torch.no_grad():
        assert torch.equal(fused.lif_fused(base, implementation=implementation), expected)
    # only one of the two outputs used: the other gets no gradient, and the backward still works
    x = base.clone().requires_grad_()
    fused.lif_fused_state(x, implementation=implementation).membrane.sum().backward()
    reference = base.clone().requires_grad_()
    neurons.lif_multistep_state(reference).membrane.sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def test_backends_and_argument_errors():
    x = _input((4, 3, 10), torch.float32, 5)
    assert torch.equal(neurons.LIF()(x), neurons.LIF(backend="reference")(x))
    assert neurons.LIF().backend == "fused" and "backend" not in repr(neurons.LIF())
    assert "backend='reference'" in repr(neurons.LIF(backend="reference"))
    with pytest.raises(ValueError, match="backend must be one of"):
        neurons.LIF(backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        neurons.lif_multistep(x, backend="fast")
    with pytest.raises(ValueError, match="implementation must be one of"):
        fused.lif_fused(x, implementation="c")
    with pytest.raises(ValueError, match="needs a CPU float32/float64"):
        fused.lif_fused(x.half(), implementation="native")
    with pytest.raises(ValueError, match="tau"):  # the shared argument checks of neurons.py
        fused.lif_fused(x, tau=1.5)
    assert torch.equal(fused.lif_fused(x.half()), neurons.lif_multistep_state(x.half()).spikes)  # via torch ops


def test_fallback_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("QPSNN_CACHE_DIR", str(tmp_path))
    library, reason = fused._build_native()
    assert library is None and "unavailable" in reason
    monkeypatch.setenv("QPSNN_NATIVE", "0")
    assert fused._build_native() == (None, "disabled by QPSNN_NATIVE=0")
    monkeypatch.setattr(fused, "_native", (None, "test: no kernel"))
    assert fused.native_status() == "torch: test: no kernel"
    x = _input((3, 2, 5), torch.float32, 9)
    assert torch.equal(fused.lif_fused(x), neurons.lif_multistep_state(x).spikes)  # "auto" falls back silently
    with pytest.raises(RuntimeError, match="not available: test: no kernel"):
        fused.lif_fused(x, implementation="native")


def test_digits_cnn_same_with_either_backend():
    """A whole network: the default (fused) LIF gives the reference's logits and parameter gradients."""
    torch.manual_seed(0)
    model = models.build("digits_cnn", num_classes=10)
    images = torch.rand(6, 1, 8, 8) * 2
    results = []
    for backend in ("reference", "fused"):
        for module in model.modules():
            if isinstance(module, neurons.LIF):
                module.backend = backend
        model.zero_grad()
        logits = model(images)
        logits.logsumexp(1).sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for reference_grad, fused_grad in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# The build cache: private to the user, keyed by the source, never loading someone else's library
# --------------------------------------------------------------------------------------------------------------------
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="owner ids and mode bits are checked on POSIX only")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A fresh cache directory (not yet created) and a fresh build decision; the process's is restored afterwards."""
    directory = tmp_path / "cache" / "qpsnn_lite"
    monkeypatch.setenv("QPSNN_CACHE_DIR", str(directory))
    monkeypatch.delenv("QPSNN_NATIVE", raising=False)
    monkeypatch.setattr(fused, "_native", None)
    return directory


def _cached_library(directory):
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return directory / fused._library_name(fused._read_sources(), compiler)


def _fake_owner(monkeypatch, path):
    """Make os.stat report ``path`` as owned by another user."""
    real_stat = os.stat

    def fake_stat(target, *args, **kwargs):
        result = real_stat(target, *args, **kwargs)
        if os.fspath(target) == os.fspath(path):
            fields = list(result[:10])
            fields[4] = result.st_uid + 1  # st_uid
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(os, "stat", fake_stat)


def _recording_loader(monkeypatch):
    loaded, real_cdll = [], ctypes.CDLL

    def cdll(name, *args, **kwargs):
        loaded.append(os.fspath(name))
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return loaded


@POSIX_ONLY
@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="no native kernel on this machine")
def test_fresh_build_is_private_and_reused(cache):
    library, path = fused._build_native()
    assert library is not None, path
    assert os.path.dirname(path) == str(cache) and os.path.basename(path).startswith("lif_kernel_")
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert not os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert os.listdir(cache) == [os.path.basename(path)]  # the private build folder is gone
    before = os.stat(path).st_mtime_ns
    assert fused._build_native()[1] == path and os.stat(path).st_mtime_ns == before  # loaded, not rebuilt
    assert fused.native_status() == f"native: {path}"


@POSIX_ONLY
def test_cache_directory_writable_by_others_is_refused(cache):
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    assert fused._build_native()[0] is None
    status = fused.native_status()
    assert status.startswith("torch: native kernel refused: cache directory")
    assert "writable by group or others" in status
    x = _input((3, 2, 5), torch.float32, 9)
    assert torch.equal(fused.lif_fused(x), neurons.lif_multistep_state(x).spikes)  # "auto" runs on PyTorch ops
    with pytest.raises(RuntimeError, match="writable by group or others"):
        fused.lif_fused(x, implementation="native")


@POSIX_ONLY
def test_cache_directory_of_another_user_is_refused(cache, monkeypatch):
    cache.mkdir(parents=True, mode=0o700)
    _fake_owner(monkeypatch, cache)
    library, reason = fused._build_native()
    assert library is None and "cache directory" in reason and "is owned by uid" in reason


@POSIX_ONLY
@pytest.mark.parametrize("problem", ["other owner", "group-writable"])
def test_foreign_cached_library_is_not_loaded(cache, monkeypatch, problem):
    cache.mkdir(parents=True, mode=0o700)
    planted = _cached_library(cache)
    planted.write_bytes(b"\x7fELF not really a library")
    planted.chmod(0o700)
    if problem == "other owner":
        _fake_owner(monkeypatch, planted)
    else:
        planted.chmod(0o770)
    loaded = _recording_loader(monkeypatch)
    library, reason = fused._build_native()
    assert library is None and reason.startswith("native kernel refused: cached library")
    assert ("is owned by uid" if problem == "other owner" else "writable by group or others") in reason
    assert loaded == [] and planted.read_bytes() == b"\x7fELF not really a library"  # neither loaded nor replaced


@POSIX_ONLY
@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="no native kernel on this machine")
def test_corrupt_or_wrong_cached_library_is_rebuilt(cache, monkeypatch):
    cache.mkdir(parents=True, mode=0o700)
    target = _cached_library(cache)
    # 1. garbage under the library's name: it does not load, a fresh build replaces it
    target.write_bytes(b"garbage")
    target.chmod(0o700)
    library, path = fused._build_native()
    assert library is not None and path == str(target) and target.read_bytes()[:4] == b"\x7fELF"
    # 2. a real library that computes something else (the leak sign flipped): the self-test rejects it
    wrong = cache / "wrong"
    wrong.mkdir()
    for name, text in fused._read_sources().items():
        (wrong / name).write_text(text.replace("tau * u[j] + xt[j]", "tau * u[j] - xt[j]"))
    compiler = os.environ.get("CC") or shutil.which("cc")
    subprocess.run([compiler, *fused._C_FLAGS, str(wrong / "_lif_kernel.c"), "-o", str(target), "-lm"], check=True)
    target.chmod(0o700)
    shutil.rmtree(wrong)
    with pytest.raises(RuntimeError, match="self-test failed"):
        fused._load(str(target))
    sabotaged = target.read_bytes()
    library, path = fused._build_native()
    assert library is not None and path == str(target) and target.read_bytes() != sabotaged
    x = _input((4, 3, 50), torch.float64, 11)
    assert torch.equal(fused._native_forward(x, 0.5, 1.0, "hard", False, library)[0],
                       neurons.lif_multistep_state(x).spikes)
