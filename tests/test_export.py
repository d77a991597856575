"""Integer export: exact round trips (digits CNN at 2/4/8 bits, pruned or not; VGG-16 and ResNet20 pruned), bit
packing, file size against the paper's rule, and clear errors for damaged files."""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
from torch import nn

from qpsnn_lite import export, metrics, models, prune, quant


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _settle_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """One training-mode pass so BatchNorm running statistics are not the trivial (0, 1)."""
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _digits(bits: int, gamma="mean", granularity="channel", pruned: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.build("digits_cnn", 10, bits=bits, gamma=gamma, granularity=granularity)
    _settle_bn(model, torch.randn(16, 1, 8, 8))
    if pruned:
        scores = prune.score(model, [torch.randn(8, 1, 8, 8)], "svs", batches=1)
        model = prune.apply(model, scores, 0.5).eval()
    return model


def _paper_pruned(name: str, config: str) -> nn.Module:
    """The paper's configuration built directly (cheaper than pruning the full network), then pruned once more by
    prune.apply so that a ResNet gets the IndexedShortcut modules pruning leaves behind."""
    torch.manual_seed(0)
    model = models.build(name, 10, T=1, bits=4, prune_config=config)
    pruned = prune.apply(model, prune.score(model, None, "l1"), 0.1)
    return _settle_bn(pruned, torch.randn(2, 3, 32, 32))


# ----------------------------------------------------------------------------------------------------------------
# Bit packing
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_roundtrip(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (0, 1, 7, 9, 1000):
        codes = torch.randint(0, 2**bits, (n,), generator=g)
        packed = export.pack_codes(codes, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
        assert torch.equal(export.unpack_codes(packed, bits, n), codes)


def test_packing_is_a_little_endian_bit_stream():
    codes = torch.tensor([1, 2, 3, 0, 15, 7])
    assert export.pack_codes(codes, 4).tolist() == [0x21, 0x03, 0x7F]  # two codes per byte, first in the low nibble
    assert export.pack_codes(torch.tensor([1, 2, 3, 0]), 2).tolist() == [0b00111001]  # four per byte
    assert export.pack_codes(torch.tensor([5, 3, 1]), 3).tolist() == [0b01011101, 0b0]  # 101, 011, 001 from bit 0
    stream = np.array([(5 >> i) & 1 for i in range(3)] + [(3 >> i) & 1 for i in range(3)] + [1, 0, 0], np.uint8)
    assert export.pack_codes(torch.tensor([5, 3, 1]), 3).tolist() == np.packbits(stream, bitorder="little").tolist()


def test_pack_rejects_codes_out_of_range_and_unpack_checks_length_and_padding():
    with pytest.raises(ValueError, match="0..3"):
        export.pack_codes(torch.tensor([4]), 2)
    with pytest.raises(ValueError, match="bytes"):
        export.unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, 7)
    with pytest.raises(ValueError, match="padding"):
        export.unpack_codes(torch.tensor([0xFF], dtype=torch.uint8), 3, 2)  # 6 bits used, 2 padding bits set


# ----------------------------------------------------------------------------------------------------------------
# Exact round trips
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_digits_roundtrip_is_exact(tmp_path, bits, pruned):
    model = _digits(bits, pruned=pruned)
    summary = export.save(model, tmp_path / "m.safetensors")
    loaded = export.load(tmp_path / "m.safetensors")
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    convs = metrics.conv_layers(loaded)
    assert type(convs[0][1]) is nn.Conv2d  # the full-precision stem
    assert all(isinstance(m, export.IntegerConv2d) and m.bits == bits for _, m in convs[1:])
    assert all(m.codes.max() <= 2**bits - 1 for _, m in convs[1:])
    # the paper-rule size and the parameter counts survive the trip
    assert metrics.model_size_mb(loaded, bits) == metrics.model_size_mb(model, bits) == summary.paper_size_mb
    assert metrics.count_parameters(loaded) == metrics.count_parameters(model)
    if pruned:
        assert {k: v.tolist() for k, v in loaded.pruned_channels.items()} == \
            {k: v.tolist() for k, v in model.pruned_channels.items()}


@pytest.mark.parametrize("gamma,granularity", [(None, "channel"), ("max", "layer"), ("percentile", "channel")])
def test_other_quantizers_roundtrip(tmp_path, gamma, granularity):
    model = _digits(3, gamma=gamma, granularity=granularity)
    export.save(model, tmp_path / "m.safetensors")
    loaded = export.load(tmp_path / "m.safetensors")
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    conv = loaded.features.block2.conv
    assert (conv.gamma is None) == (gamma is None)
    if granularity == "layer":
        assert conv.gamma.dim() == 0


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_paper_networks_pruned_roundtrip(tmp_path, name):
    model = _paper_pruned(name, "B")
    export.save(model, tmp_path / "m.safetensors")
    loaded = export.load(tmp_path / "m.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    if name == "resnet20":  # the pruned option-A shortcuts come back as the same modules
        assert any(isinstance(m, prune.IndexedShortcut) for m in loaded.modules())
        assert [type(m).__name__ for n, m in loaded.named_modules() if n.endswith("shortcut")] == \
            [type(m).__name__ for n, m in model.named_modules() if n.endswith("shortcut")]


def test_resave_of_loaded_model_is_identical(tmp_path):
    export.save(_digits(4, pruned=True), tmp_path / "a.safetensors")
    export.save(export.load(tmp_path / "a.safetensors"), tmp_path / "b.safetensors")
    assert export.read_spec(tmp_path / "a.safetensors")["sha256"] == export.read_spec(tmp_path / "b.safetensors")["sha256"]


def test_full_precision_model_and_post_training_quantization(tmp_path):
    torch.manual_seed(0)
    model = _settle_bn(models.build("digits_cnn", 10), torch.randn(8, 1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    export.save(model, tmp_path / "fp.safetensors")
    with torch.no_grad():
        assert torch.equal(model(x), export.load(tmp_path / "fp.safetensors")(x))
    summary = export.save(model, tmp_path / "ptq.safetensors", bits=4)
    loaded = export.load(tmp_path / "ptq.safetensors")
    assert summary.bits == 4 and summary.quantized_layers == 3
    expected = quant.quantize(model.features.block2.conv.weight, 4, "mean", "channel")
    assert torch.equal(loaded.features.block2.conv.weight, expected)
    assert torch.equal(loaded.features.stem.conv.weight, model.features.stem.conv.weight)


def test_bits_must_match_a_quantized_model(tmp_path):
    with pytest.raises(ValueError, match="trained at 4 bits"):
        export.save(_digits(4), tmp_path / "m.safetensors", bits=2)
    with pytest.raises(ValueError, match="bits"):
        export.save(_digits(4), tmp_path / "m.safetensors", bits=0)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="models.build"):
        export.save(nn.Sequential(nn.Conv2d(1, 1, 1)), tmp_path / "m.safetensors")


def test_loaded_conv_is_frozen_and_computes_with_dequantized_codes(tmp_path):
    export.save(_digits(2), tmp_path / "m.safetensors")
    conv = export.load(tmp_path / "m.safetensors").features.block3.conv
    assert not conv.weight.requires_grad
    assert torch.equal(conv.weight, quant.dequantize(conv.codes, 2, conv.gamma))
    assert "bits=2" in repr(conv)


# ----------------------------------------------------------------------------------------------------------------
# File size against the paper's rule (Eq. 16)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_file_size_is_paper_size_plus_what_the_rule_leaves_out(tmp_path, bits):
    model = _digits(bits, pruned=True)
    summary = export.save(model, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    payload = len(data) - 8 - header_length
    convs = metrics.conv_layers(model)
    quantized = [m.weight.numel() for _, m in convs[1:]]
    packing_slack = sum(math.ceil(n * bits / 8) - n * bits / 8 for n in quantized)
    gammas = sum(m.weight.shape[0] for _, m in convs[1:])  # one float per output channel
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    running = sum(2 * m.num_features for m in bns)  # mean and variance
    expected = summary.paper_size_mb * 1e6 + packing_slack + 4 * (gammas + running) + 8 * len(bns)
    assert payload == pytest.approx(expected, abs=1e-6)
    assert summary.file_bytes == len(data)


# ----------------------------------------------------------------------------------------------------------------
# Damaged files
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path):
    path = tmp_path / "m.safetensors"
    export.save(_digits(4, pruned=True), path)
    return path


def _rewrite(path, change, fix_digest: bool):
    """Rewrite a saved file after ``change(tensors, spec)``, optionally with a fresh digest (a consistent forgery)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    spec = export.read_spec(path)
    change(tensors, spec)
    if fix_digest:
        spec["sha256"] = export._digest(tensors, spec)
    save_file(tensors, path, metadata={"qpsnn_lite": json.dumps(spec)})


def test_truncated_file(saved):
    data = saved.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="corrupt"):
            export.load(saved)


def test_flipped_header_byte(saved):
    data = bytearray(saved.read_bytes())
    data[8] ^= 0xFF  # the '{' opening the JSON header
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        export.load(saved)


def test_flipped_tensor_byte_fails_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.*SHA-256"):
        export.load(saved)


def test_missing_tensor(saved):
    original = saved.read_bytes()
    _rewrite(saved, lambda t, s: t.pop("features.block2.bn.running_var"), fix_digest=False)
    with pytest.raises(ValueError, match="corrupt.*SHA-256"):
        export.load(saved)
    saved.write_bytes(original)
    _rewrite(saved, lambda t, s: t.pop("features.block3.conv.codes"), fix_digest=True)
    with pytest.raises(ValueError, match="corrupt.*features.block3.conv.codes is missing"):
        export.load(saved)


def test_wrong_shape(saved):
    def widen(tensors, spec):
        tensors["classifier.weight"] = torch.zeros(10, 65)

    _rewrite(saved, widen, fix_digest=True)
    with pytest.raises(ValueError, match="corrupt.*classifier.weight has shape"):
        export.load(saved)


def test_inconsistent_widths(saved):
    def shrink(tensors, spec):  # a self-consistent record of a BatchNorm that does not fit its conv
        record = spec["layers"]["features.block2.bn"]
        record["num_features"] = 3
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensors[f"features.block2.bn.{name}"] = tensors[f"features.block2.bn.{name}"][:3].clone()
            record["tensors"][name]["shape"] = [3]

    _rewrite(saved, shrink, fix_digest=True)
    with pytest.raises(ValueError, match="corrupt.*do not fit"):
        export.load(saved)


def test_codes_that_do_not_fit_the_bit_width(saved):
    def claim_two_bits(tensors, spec):
        spec["layers"]["features.block3.conv"]["bits"] = 2

    _rewrite(saved, claim_two_bits, fix_digest=True)
    with pytest.raises(ValueError, match="corrupt.*codes of features.block3.conv"):
        export.load(saved)


def test_bad_gamma(saved):
    def negative(tensors, spec):
        tensors["features.block2.conv.gamma"] = -tensors["features.block2.conv.gamma"]

    _rewrite(saved, negative, fix_digest=True)
    with pytest.raises(ValueError, match="corrupt.*gamma"):
        export.load(saved)


def test_not_an_export(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="corrupt.*metadata"):
        export.load(tmp_path / "plain.safetensors")
    torch.save({"x": torch.zeros(2)}, tmp_path / "pickle.pt")  # a pickle is never unpickled
    with pytest.raises(ValueError, match="corrupt"):
        export.load(tmp_path / "pickle.pt")
    with pytest.raises(FileNotFoundError):
        export.load(tmp_path / "absent.safetensors")


def test_failed_save_leaves_existing_file_intact(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "m.safetensors"
    export.save(_digits(4), path)
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export.save(_digits(2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary file left behind


@pytest.mark.parametrize("edit", [
    lambda spec: spec["layers"]["features.block2.lif"].update(threshold=0.25),
    lambda spec: spec["build"].update(T=7),
    lambda spec: spec["layers"]["features.block2.conv"].update(padding=[0, 0]),
    lambda spec: spec["layers"]["features.block2.bn"].update(eps=0.5),
])
def test_edited_architecture_fails_the_digest(saved, edit):
    # Issue 14, class 5: the digest covered the tensors only, so an edited LIF threshold, T, padding or BN eps
    # loaded and computed something else.
    _rewrite(saved, lambda tensors, spec: edit(spec), fix_digest=False)
    with pytest.raises(ValueError, match="corrupt.*SHA-256"):
        export.load(saved)


@pytest.mark.parametrize("where", ["weight", "running_var"])
def test_save_refuses_non_finite_values(tmp_path, where):
    # Issue 14, class 3: a NaN in a full-precision weight or a BatchNorm statistic was exported without a word.
    model = _digits(4)
    with torch.no_grad():
        target = model.features.stem.conv.weight if where == "weight" else model.features.block3.bn.running_var
        target.view(-1)[0] = float("nan")
    path = tmp_path / "m.safetensors"
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        export.save(model, path)
    assert not path.exists()
