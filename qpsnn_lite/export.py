r"""Integer export: save a quantized (and pruned) spiking network as b-bit integer codes, load it back exactly.

Taught in chapter 08.

A file written by :func:`save` is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: raw tensors plus a
JSON header, so loading it never runs code (unlike a pickle). It holds

- for every quantized conv: the integer codes :math:`\mathbf W_{int} \in \{0, \dots, 2^b - 1\}` of Eq. 4 (of
  :math:`\mathbf W/\gamma` with ReScaW, Eq. 10), **bit-packed**: ``8 / b`` codes per byte for b = 1, 2, 4, 8, and a
  little-endian bit stream of ``b`` bits per code for any other ``b`` (``tensor "<conv>.codes"``, ``uint8``), plus the
  ReScaW scale :math:`\gamma` (``"<conv>.gamma"``, float32, one per output channel or one per layer; absent for the
  vanilla quantizer). The weight the network computes with is :math:`\gamma\,(2\mathbf W_{int}/(2^b - 1) - 1)`;
- the full-precision layers (the first conv, the classifier) and every BatchNorm's weights and running statistics as
  float32 (their ``num_batches_tracked`` as int64);
- in the header metadata (key ``"qpsnn_lite"``, a JSON string): the model name and constructor arguments, and a
  record of every layer with state (channel counts, kernel, stride, bits, LIF parameters, shortcut type), so that a
  *pruned* network, whose widths no constructor argument describes, is rebuilt layer by layer; and a SHA-256 digest
  of the metadata and all tensors, so that a damaged or edited file is detected.

:func:`load` rebuilds the network: it instantiates the architecture for its parameter-free skeleton (pooling,
flatten, the forward logic), then recreates every recorded layer at its stored shape. Quantized convs come back as
:class:`IntegerConv2d`, which keeps the codes and :math:`\gamma` and computes with exactly the weight the trained
``QuantConv2d`` used, so the loaded network's outputs equal the original's bit for bit (in eval mode).

A file that is truncated, damaged or tampered with raises ``ValueError`` saying it is corrupt; :func:`save` writes a
temporary file and renames it, so a failed save never destroys an existing file.

File size against the paper's rule (Eq. 16, :func:`qpsnn_lite.metrics.model_size_mb`): the file also stores what the
rule leaves out, :math:`\gamma` (one float per output channel), the BatchNorm running statistics (two floats per
channel) and the JSON header, so it is a little larger; :class:`ExportSummary` reports both.

(About 560 lines: writing and reading are one file format, and keeping :func:`save` and :func:`load` beside each other
keeps each field written and read in one place.)
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from . import architectures, metrics, models, quant
from ._checks import check_bits as _check_bits
from ._checks import check_finite_model
from ._io import atomic_path
from .layers import IndexedShortcut, OptionAShortcut
from .neurons import LIF

__all__ = ["FORMAT", "VERSION", "IntegerConv2d", "ExportSummary", "save", "load", "read_spec", "pack_codes",
           "unpack_codes"]

FORMAT = "qpsnn_lite.export"
VERSION = 2  # 2: the digest covers the architecture spec too (1 covered the tensors only)
_METADATA_KEY = "qpsnn_lite"
_CHUNK = 1 << 20  # codes per packing chunk (a multiple of 8, so chunks end on byte boundaries)
_LIF_FIELDS = ("tau", "threshold", "surrogate", "alpha", "reset")
_ATTRIBUTES = ("conv_widths", "block_widths", "mid_widths", "prune_config", "prune_ratios", "compress_rate")


# --------------------------------------------------------------------------------------------------------------------
# Bit packing
# --------------------------------------------------------------------------------------------------------------------
def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in ``0..2**bits - 1`` into a 1-D ``uint8`` tensor of ``ceil(n * bits / 8)`` bytes.

    The codes (flattened in C order) form a little-endian bit stream, ``bits`` bits each, lowest bit first: at 4 bits
    code ``2i`` is the low nibble of byte ``i``; at 8 bits the bytes are the codes. Unused bits of the last byte are 0.
    Chapter 08.
    """
    bits = _check_bits(bits)
    flat = codes.detach().cpu().reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) > 2**bits - 1):
        raise ValueError(f"codes must lie in 0..{2**bits - 1} for bits={bits}, got {int(flat.min())}..{int(flat.max())}")
    if 8 % bits == 0:  # 1, 2, 4, 8 bits: whole codes per byte, combined with shifts
        per_byte = 8 // bits
        padded = torch.zeros(math.ceil(flat.numel() / per_byte) * per_byte, dtype=torch.int64)
        padded[: flat.numel()] = flat
        shifts = torch.arange(per_byte, dtype=torch.int64) * bits
        return (padded.view(-1, per_byte) << shifts).sum(1).to(torch.uint8)
    values = flat.numpy().astype(np.uint16)
    shifts = np.arange(bits, dtype=np.uint16)
    chunks = []
    for start in range(0, values.size, _CHUNK):
        planes = ((values[start:start + _CHUNK, None] >> shifts) & 1).astype(np.uint8)  # [n, bits], low bit first
        chunks.append(np.packbits(planes.reshape(-1), bitorder="little"))
    packed = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
    return torch.from_numpy(packed)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` codes (``int64``, 1-D). Raises ValueError if the byte count is wrong
    or the padding bits of the last byte are not 0. Chapter 08."""
    bits = _check_bits(bits)
    data = packed.detach().cpu().reshape(-1)
    if data.dtype != torch.uint8:
        raise ValueError(f"packed codes must be uint8, got {data.dtype}")
    expected = math.ceil(count * bits / 8)
    if data.numel() != expected:
        raise ValueError(f"{count} codes of {bits} bits take {expected} bytes, got {data.numel()}")
    raw = data.numpy()
    used = count * bits
    if used % 8 and raw[-1] >> (used % 8):
        raise ValueError("the padding bits after the last code are not 0")
    if 8 % bits == 0:
        per_byte = 8 // bits
        shifts = torch.arange(per_byte, dtype=torch.int64) * bits
        codes = (data.to(torch.int64).unsqueeze(1) >> shifts) & (2**bits - 1)
        return codes.reshape(-1)[:count].clone()
    weights = (1 << np.arange(bits, dtype=np.int64))
    out = np.empty(count, dtype=np.int64)
    chunk_bytes = _CHUNK * bits // 8
    for i, start in enumerate(range(0, count, _CHUNK)):
        n = min(_CHUNK, count - start)
        planes = np.unpackbits(raw[i * chunk_bytes:i * chunk_bytes + math.ceil(n * bits / 8)], count=n * bits,
                               bitorder="little")
        out[start:start + n] = planes.reshape(n, bits).astype(np.int64) @ weights
    return torch.from_numpy(out)


# --------------------------------------------------------------------------------------------------------------------
# The inference layer
# --------------------------------------------------------------------------------------------------------------------
class IntegerConv2d(nn.Conv2d):
    r"""A conv that stores its weight as ``bits``-bit integer codes and a scale :math:`\gamma`: the deployed form of
    a ``QuantConv2d``.

    Buffers ``codes`` (``[C_out, C_in/groups, k, k]``, ``uint8`` for ``bits <= 8``, else ``int32``) and ``gamma``
    (``[C_out, 1, 1, 1]``, a 0-d tensor, or None for the vanilla quantizer). ``weight`` is the dequantized weight
    :math:`\gamma\,(2\mathbf W_{int}/(2^b-1) - 1)` (Eq. 5, 10), computed once by :func:`qpsnn_lite.quant.dequantize`
    and frozen (``requires_grad=False``): it is exactly the weight the trained ``QuantConv2d`` computed with, so the
    outputs agree bit for bit. Built by :func:`load`. Taught in chapter 08.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", bits: int = 4) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode)
        self.bits = _check_bits(bits)
        self.gamma_rule = "stored"  # the rule gamma was computed by when trained (load sets it from the file)
        self.weight.requires_grad_(False)
        dtype = torch.uint8 if bits <= 8 else torch.int32
        self.register_buffer("codes", torch.zeros(self.weight.shape, dtype=dtype))
        self.register_buffer("gamma", None)

    def set_codes(self, codes: torch.Tensor, gamma: torch.Tensor | None) -> None:
        """Store ``codes`` and ``gamma`` and recompute the weight from them."""
        if tuple(codes.shape) != tuple(self.weight.shape):
            raise ValueError(f"codes have shape {tuple(codes.shape)}, the conv needs {tuple(self.weight.shape)}")
        self.codes = codes.to(self.codes.dtype).clone()
        self.gamma = None if gamma is None else gamma.detach().clone()
        with torch.no_grad():
            self.weight.copy_(quant.dequantize(self.codes, self.bits, self.gamma))

    def extra_repr(self) -> str:
        scale = "none (vanilla)" if self.gamma is None else ("per channel" if self.gamma.dim() else "per layer")
        return f"{super().extra_repr()}, bits={self.bits}, gamma={scale}"


# --------------------------------------------------------------------------------------------------------------------
# What a model is made of
# --------------------------------------------------------------------------------------------------------------------
def _model_name(model: nn.Module) -> str:
    names = {models.DigitsCNN: "digits_cnn", architectures.VGG16: "vgg16", architectures.ResNet20: "resnet20",
             architectures.VGGSNN: "vggsnn"}
    for cls, name in names.items():
        if type(model) is cls:
            return name
    raise ValueError(
        f"export handles the networks of models.build (digits_cnn, vgg16, resnet20, vggsnn), got "
        f"{type(model).__name__}"
    )


_SHORTCUT_TYPES: dict[str, type] = {"option_a": OptionAShortcut, "indexed": IndexedShortcut}


def _pair(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else value


def _conv_record(m: nn.Conv2d) -> dict:
    return {"kind": "conv", "in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride), "padding": _pair(m.padding),
            "dilation": _pair(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _describe(model: nn.Module, bits: int | None) -> tuple[dict, dict[str, torch.Tensor]]:
    """The metadata records and the tensors to write."""
    name = _model_name(model)
    shortcut_types = _SHORTCUT_TYPES
    first_conv = metrics.conv_layers(model)[0][0]
    records: dict[str, dict] = {}
    tensors: dict[str, torch.Tensor] = {}
    quantized_bits: set[int] = set()

    def store(key: str, value: torch.Tensor) -> dict:
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"shape": list(value.shape), "dtype": _dtype_name(value)}

    for path, m in model.named_modules():
        if not path:
            continue
        record: dict[str, Any]
        if isinstance(m, nn.Conv2d):
            record = _conv_record(m)
            codes = gamma = None
            if isinstance(m, IntegerConv2d):
                layer_bits, codes, gamma, rule = m.bits, m.codes, m.gamma, m.gamma_rule
                if bits is not None and bits != layer_bits:
                    raise ValueError(f"{path} stores {layer_bits}-bit codes; cannot export it at bits={bits}")
            elif isinstance(m, quant.QuantConv2d):
                layer_bits, rule = m.bits, m.gamma
                if bits is not None and bits != layer_bits:
                    raise ValueError(
                        f"{path} was trained at {layer_bits} bits; export stores the codes the model computes with, "
                        f"so bits must be None or {layer_bits}, got {bits}"
                    )
                codes, gamma = quant.quantization_codes(m.weight, m.bits, m.gamma, m.granularity, m.percentile)
            elif bits is not None and path != first_conv:  # post-training quantization of a full-precision model
                layer_bits, rule = bits, "mean"
                codes, gamma = quant.quantization_codes(m.weight, bits, "mean", "channel")
            if codes is not None:
                quantized_bits.add(layer_bits)
                record.update(quantized=True, bits=layer_bits, gamma_rule=rule,
                              codes=store(f"{path}.codes", pack_codes(codes, layer_bits)),
                              gamma=None if gamma is None else store(f"{path}.gamma", gamma.float()))
                if m.bias is not None:
                    record["tensors"] = {"bias": store(f"{path}.bias", m.bias)}
                records[path] = record
                continue
            record["quantized"] = False
        elif isinstance(m, nn.BatchNorm2d):
            record = {"kind": "batchnorm", "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                      "affine": m.affine, "track_running_stats": m.track_running_stats}
        elif isinstance(m, quant.QuantLinear):
            raise ValueError(f"{path} is a QuantLinear; export stores the paper's full-precision classifier only")
        elif isinstance(m, nn.Linear):
            record = {"kind": "linear", "in_features": m.in_features, "out_features": m.out_features,
                      "bias": m.bias is not None}
        elif isinstance(m, LIF):
            record = {"kind": "lif", **{f: getattr(m, f) for f in _LIF_FIELDS}}
        elif any(isinstance(m, cls) for cls in shortcut_types.values()):
            kind = next(k for k, cls in shortcut_types.items() if type(m) is cls)
            record = {"kind": "shortcut", "type": kind, "in_channels": m.in_channels, "out_channels": m.out_channels,
                      "stride": m.stride}
        else:
            if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
                raise ValueError(f"export does not know how to store {path} ({type(m).__name__})")
            continue  # containers, pooling, flatten: part of the architecture's skeleton
        own = dict(m.named_parameters(recurse=False))
        own.update((k, v) for k, v in m.named_buffers(recurse=False) if v is not None)
        record["tensors"] = {local: store(f"{path}.{local}", value) for local, value in own.items()}
        records[path] = record

    image_size = getattr(model, "image_size", None)
    build = {"name": name, "num_classes": model.classifier.out_features, "in_channels": model.input_channels,
             "T": model.T}
    if name != "digits_cnn":
        build["image_size"] = image_size
    attributes = {}
    for key in _ATTRIBUTES:
        value = getattr(model, key, None)
        if isinstance(value, (list, tuple)):
            attributes[key] = [v if isinstance(v, (int, float)) else float(v) for v in value]
        elif value is None or isinstance(value, str):
            attributes[key] = value
    pruned = getattr(model, "pruned_channels", None)
    if isinstance(pruned, dict):
        attributes["pruned_channels"] = {k: [int(i) for i in v] for k, v in pruned.items()}
    side = image_size if isinstance(image_size, int) else (8 if name == "digits_cnn" else 32)
    spec = {
        "format": FORMAT, "version": VERSION, "torch": torch.__version__,
        "build": build, "attributes": attributes, "layers": records,
        "bits": sorted(quantized_bits)[0] if len(quantized_bits) == 1 else (sorted(quantized_bits) or None),
        "check_input": [model.input_channels, side, side],
        "paper_size_mb": metrics.model_size_mb(model, sorted(quantized_bits)[0] if quantized_bits else 32),
    }
    return spec, tensors


def _digest(tensors: dict[str, torch.Tensor], spec: dict) -> str:
    """SHA-256 over everything that defines the function: the spec (architecture, LIF settings, paddings, BN eps,
    T, ...; canonical JSON without the digest itself) and every tensor's name, dtype, shape and bytes, in name
    order. An edited threshold in the metadata fails it as a flipped weight byte does."""
    h = hashlib.sha256()
    described = {key: value for key, value in spec.items() if key != "sha256"}
    h.update(json.dumps(described, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{_dtype_name(t)}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------------------------------
class ExportSummary(NamedTuple):
    """What :func:`save` wrote: the file, its size on disk, and the paper-rule size of the same model (Eq. 16)."""

    path: str
    file_bytes: int
    paper_size_mb: float
    bits: int | list | None
    quantized_layers: int

    @property
    def file_mb(self) -> float:
        """File size in MB of :math:`10^6` bytes, the unit of the paper's rule."""
        return self.file_bytes / 1e6


def save(model: nn.Module, path: str | os.PathLike, bits: int | None = None) -> ExportSummary:
    """Write ``model`` to ``path`` as integer codes + :math:`\\gamma` + full-precision layers + architecture spec.

    Args:
        model: a network of ``models.build`` (digits_cnn, vgg16, resnet20, vggsnn), quantized or not, pruned or not
            (``prune.apply``), or a model returned by :func:`load`.
        path: the file to write (conventionally ``*.safetensors``); written to a temporary file in the same folder
            and renamed, so a failed save leaves an existing file untouched.
        bits: None stores each ``QuantConv2d`` at its own bit width (and a full-precision model as float32). For a
            quantized model it must equal the model's bit width. For a *full-precision* model an integer applies
            post-training quantization (ReScaW, gamma = mean |w| per output channel) to every conv but the first;
            the loaded model then computes with the quantized weights.

    Returns:
        :class:`ExportSummary` (file size on disk and the paper-rule size).

    Taught in chapter 08.
    """
    from safetensors.torch import save_file  # optional dependency: only export needs it

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if bits is not None:
        _check_bits(bits)
    check_finite_model(model, "export")
    spec, tensors = _describe(model, bits)
    spec = json.loads(json.dumps(spec))  # the digest covers the spec as load will read it (tuples become lists)
    spec["sha256"] = _digest(tensors, spec)
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={_METADATA_KEY: json.dumps(spec)})
    layers = sum(1 for r in spec["layers"].values() if r.get("quantized"))
    return ExportSummary(str(path), path.stat().st_size, spec["paper_size_mb"], spec["bits"], layers)


# --------------------------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------------------------
class _Corrupt(ValueError):
    pass


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is corrupt or not a qpsnn_lite export: {why}. Export the model again with "
                      "qpsnn_lite.export.save")


def _header(data: bytes) -> dict:
    """The safetensors JSON header (8-byte little-endian length, then JSON), parsed without touching the tensors."""
    if len(data) < 8:
        raise _Corrupt("the file is shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise _Corrupt(f"the header claims {length} bytes but the file has {len(data) - 8} after the length field")
    try:
        header = json.loads(data[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _Corrupt("the header is not a JSON object")
    return header


def _spec_from_header(header: dict) -> dict:
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or _METADATA_KEY not in metadata:
        raise _Corrupt(f"the metadata key {_METADATA_KEY!r} is missing")
    try:
        spec = json.loads(metadata[_METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"the metadata is not valid JSON ({exc})") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise _Corrupt(f"the metadata does not describe a {FORMAT} file")
    if spec.get("version") != VERSION:
        raise _Corrupt(f"format version {spec.get('version')!r}; this qpsnn_lite reads version {VERSION}")
    for key, kind in (("build", dict), ("layers", dict), ("attributes", dict), ("sha256", str),
                      ("check_input", list)):
        if not isinstance(spec.get(key), kind):
            raise _Corrupt(f"the metadata field {key!r} is missing or malformed")
    return spec


def read_spec(path: str | os.PathLike) -> dict:
    """The architecture spec stored in an export (the JSON metadata), without building the model. Chapter 08."""
    path = Path(path)
    try:
        return _spec_from_header(_header(path.read_bytes()))
    except _Corrupt as exc:
        raise _corrupt(path, str(exc)) from None


def _tensor(tensors: dict, key: str, expected: dict) -> torch.Tensor:
    if not isinstance(expected, dict):
        raise _Corrupt(f"the record of tensor {key} is malformed")
    if key not in tensors:
        raise _Corrupt(f"tensor {key} is missing")
    t = tensors[key]
    if list(t.shape) != expected.get("shape") or _dtype_name(t) != expected.get("dtype"):
        raise _Corrupt(f"tensor {key} has shape {list(t.shape)} and dtype {_dtype_name(t)}, the metadata says "
                       f"{expected.get('shape')} and {expected.get('dtype')}")
    return t


def _make_layer(path: str, record: dict, tensors: dict, used: set) -> nn.Module:
    kind = record.get("kind")

    def take(local: str) -> torch.Tensor:
        key = f"{path}.{local}"
        used.add(key)
        return _tensor(tensors, key, record.get("tensors", {}).get(local) if local not in ("codes", "gamma")
                       else record.get(local))

    if kind == "conv":
        args = dict(kernel_size=tuple(record["kernel_size"]), stride=tuple(record["stride"]),
                    padding=tuple(record["padding"]) if isinstance(record["padding"], list) else record["padding"],
                    dilation=tuple(record["dilation"]), groups=int(record["groups"]), bias=bool(record["bias"]),
                    padding_mode=record["padding_mode"])
        if record.get("quantized"):
            layer = IntegerConv2d(int(record["in_channels"]), int(record["out_channels"]), bits=int(record["bits"]),
                                  **args)
            count = layer.weight.numel()
            try:
                codes = unpack_codes(take("codes"), layer.bits, count).reshape(layer.weight.shape)
            except ValueError as exc:
                raise _Corrupt(f"the codes of {path}: {exc}") from exc
            gamma = None
            if record.get("gamma") is not None:
                gamma = take("gamma")
                if not (torch.isfinite(gamma).all() and (gamma > 0).all()):
                    raise _Corrupt(f"gamma of {path} is not positive and finite")
                if gamma.dim() and list(gamma.shape) != [layer.out_channels, 1, 1, 1]:
                    raise _Corrupt(f"gamma of {path} has shape {list(gamma.shape)}")
            layer.set_codes(codes, gamma)
            layer.gamma_rule = record.get("gamma_rule", "stored")
            if layer.bias is not None:
                with torch.no_grad():
                    layer.bias.copy_(take("bias"))
            return layer
        layer = nn.Conv2d(int(record["in_channels"]), int(record["out_channels"]), **args)
    elif kind == "batchnorm":
        layer = nn.BatchNorm2d(int(record["num_features"]), eps=record["eps"], momentum=record["momentum"],
                               affine=record["affine"], track_running_stats=record["track_running_stats"])
    elif kind == "linear":
        layer = nn.Linear(int(record["in_features"]), int(record["out_features"]), bias=bool(record["bias"]))
    elif kind == "lif":
        layer = LIF(**{f: record[f] for f in _LIF_FIELDS})
    elif kind == "shortcut":
        types = _SHORTCUT_TYPES
        if record.get("type") not in types:
            raise _Corrupt(f"unknown shortcut type {record.get('type')!r} at {path}")
        if record["type"] == "indexed":
            index = take("channel_index")
            layer = types["indexed"](int(record["in_channels"]), index, int(record["stride"]))
        else:
            layer = types["option_a"](int(record["in_channels"]), int(record["out_channels"]), int(record["stride"]))
    else:
        raise _Corrupt(f"unknown layer kind {kind!r} at {path}")
    state = {local: take(local) for local in record.get("tensors", {})}
    layer.load_state_dict(state, strict=True)
    return layer


def _stateful(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear, LIF)) or any(
        isinstance(m, cls) for cls in _SHORTCUT_TYPES.values())


def _rebuild(spec: dict, tensors: dict) -> nn.Module:
    build = dict(spec["build"])
    name = build.pop("name", None)
    if name not in models.MODEL_NAMES:
        raise _Corrupt(f"unknown model name {name!r}")
    try:
        # Only the skeleton is used (every layer with state is recreated below), so build it on the meta device:
        # no memory and no initialisation of weights that would be thrown away.
        with torch.device("meta"):
            model = models.build(name, bits=None, **build)
    except (TypeError, ValueError) as exc:
        raise _Corrupt(f"cannot build {name} from {build} ({exc})") from exc
    used: set[str] = set()
    replaced: set[str] = set()
    for path, record in spec["layers"].items():
        if not isinstance(record, dict):
            raise _Corrupt(f"the record of layer {path} is malformed")
        parent_path, _, child = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path)
            old = parent.get_submodule(child)
        except AttributeError:
            raise _Corrupt(f"layer {path} does not exist in a {name}") from None
        if not _stateful(old):
            raise _Corrupt(f"layer {path} is a {type(old).__name__} in a {name}, not a {record.get('kind')}")
        try:
            layer = _make_layer(path, record, tensors, used)
        except _Corrupt:
            raise
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise _Corrupt(f"layer {path} cannot be rebuilt ({type(exc).__name__}: {exc})") from exc
        setattr(parent, child, layer)
        replaced.add(path)
    missing = [p for p, m in model.named_modules() if p and _stateful(m) and p not in replaced]
    if missing:
        raise _Corrupt(f"the file has no record of layer(s) {missing[:5]}")
    left = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:
        raise _Corrupt(f"the file has no tensors for {left[:5]}")
    extra = sorted(set(tensors) - used)
    if extra:
        raise _Corrupt(f"unexpected tensor(s) {extra[:5]}")
    for key, value in spec["attributes"].items():
        if key == "pruned_channels":
            value = {k: torch.tensor(v, dtype=torch.long) for k, v in value.items()}
        elif key in ("compress_rate",) and isinstance(value, list):
            value = tuple(value)
        setattr(model, key, value)
    return model


def load(path: str | os.PathLike) -> nn.Module:
    """Rebuild the network saved by :func:`save`, in eval mode, with :class:`IntegerConv2d` for the quantized convs.

    Its outputs equal the saved model's exactly (``torch.equal`` in eval mode). Nothing in the file is executed:
    safetensors holds raw tensors and JSON. Raises ``ValueError`` saying the file is corrupt if it is truncated,
    damaged (checksum mismatch), or inconsistent (missing or unexpected tensors, wrong shapes, codes that do not
    fit the bit width, layers that do not fit together). Taught in chapter 08.
    """
    from safetensors.torch import load as load_bytes  # optional dependency: only export needs it

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no export at {path}")
    data = path.read_bytes()
    try:
        spec = _spec_from_header(_header(data))
        try:
            tensors = load_bytes(data)
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise _Corrupt(f"safetensors cannot read the tensors ({type(exc).__name__}: {exc})") from exc
        if _digest(tensors, spec) != spec["sha256"]:
            raise _Corrupt("the SHA-256 digest of the architecture and tensors does not match the one saved with them "
                           "(the file was damaged or edited)")
        model = _rebuild(spec, tensors)
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(1, *[int(v) for v in spec["check_input"]]))
        except Exception as exc:
            raise _Corrupt(f"the rebuilt layers do not fit together ({type(exc).__name__}: {exc})") from exc
    except _Corrupt as exc:
        raise _corrupt(path, str(exc)) from None
    return model
