r"""The whole QP-SNN recipe in one call: train a quantized SNN, score its channels, prune, fine-tune, report.

Taught in chapter 07 (the pipeline, the A-F ablation of Table 2, the order QP vs PQ); the report's sizes, SOPs and
energy in chapter 08.

Algorithm 1 of the paper, quantize-then-prune (``order="qp"``):

1. train a quantized SNN from scratch (QAT with ReScaW, no full-precision pretraining);
2. score every channel with a criterion (SVS, Eq. 11-13) on a few training batches;
3. remove the lowest-scored channels of each layer, one shot, at fixed per-layer ratios (``ratio`` or the paper's
   ``prune_config``); the last conv, which feeds the classifier, is never pruned;
4. fine-tune the narrower quantized network, then evaluate.

``order="pq"`` is the reverse order of App. A: train a full-precision SNN, prune it, then quantize and fine-tune.

Everything is one :class:`Config` (the paper's knobs as fields, defaults that run on the offline digits on a CPU in
about a minute) and one call, :func:`run`, which returns a :class:`Result`. :data:`PRESETS` holds the paper's
CIFAR settings (meant for a GPU) and :func:`ablation` reproduces the rows A-F of Table 2 at any budget.

Example::

    from qpsnn_lite import pipeline
    result = pipeline.run(pipeline.Config(epochs=5, finetune_epochs=2))
    print(result)              # a readable table
    result.save("run.json")
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from . import architectures, data, metrics, models, prune, quant, train

__all__ = ["Config", "Result", "AblationRow", "AblationResult", "PRESETS", "PRESET_NOTES", "PAPER_ABLATION",
           "ABLATION_ROWS", "CRITERIA", "ORDERS", "OPTIMIZERS", "run", "ablation", "preset", "quantize_model",
           "build_model", "layer_ratios"]

CRITERIA = ("svs", "sca", "l1", "firing_rate", "random")
ORDERS = ("qp", "pq")
OPTIMIZERS = ("adam", "sgd")
_NATIVE_SIZE = {"digits": 8, "mnist": 28, "cifar10": 32, "cifar100": 32}
_IN_CHANNELS = {"digits": 1, "mnist": 1, "cifar10": 3, "cifar100": 3}


# --------------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Config:
    """Every knob of one QP-SNN run. Defaults: the book's digits setting, about a minute on two CPU cores.

    Data
        dataset: ``"digits"`` (scikit-learn, offline), ``"mnist"``, ``"cifar10"``, ``"cifar100"``.
        image_size: the digits' side after resizing; None takes 16 for the digits (and the native size of the other
            data sets, which cannot be resized). 16 instead of the native 8 gives the SVS criterion 16x16 and 8x8
            spike maps to rank instead of 8x8 and 4x4 (far fewer ties); the first convolutions see 4x as many
            pixels, so an epoch costs more (measure it on your machine: chapter 06 trains both).
        batch_size: mini-batch size (the paper: 256 on CIFAR).
        augment: the paper's CIFAR augmentation (crop, flip, AutoAugment, Cutout).
        download: let torchvision download MNIST/CIFAR (needs internet).
    Model
        model: ``"digits_cnn"``, ``"vgg16"``, ``"resnet20"``, ``"vggsnn"``.
        T: time steps; None takes the model's default (4; ResNet20 2, VGGSNN 10 as in the paper).
        channels: digits_cnn only: its four conv widths (None: 16, 32, 64, 64).
        tau, threshold: the LIF leak factor and firing threshold (the authors' code: 0.5, 1.0).
    Quantization (chapters 03-04)
        bits: weight bits of every conv but the first (the paper: 8, 4, 2); None trains at full precision.
        gamma: ReScaW rule ``"mean"`` (the paper's choice), ``"max"``, ``"percentile"``; None is the vanilla
            quantizer (the paper's baseline).
        granularity: ``"channel"`` (the authors' code) or ``"layer"`` (the paper's notation).
        ste: ``"unmasked"`` (the authors' code) or ``"masked"`` (the paper's App. D).
    Pruning (chapters 05-06)
        criterion: ``"svs"`` (the paper), ``"sca"`` (its baseline), ``"l1"``, ``"firing_rate"``, ``"random"``.
        ratio: fraction of channels removed from every conv but the last, in [0, 1), or ``{conv_name: ratio}``.
        prune_config: the paper's per-layer ratios ``"A"``, ``"B"`` (``"C"`` for VGGSNN) for vgg16/resnet20/vggsnn
            (Tables 9-11); when given it replaces ``ratio``.
        score_batches: mini-batches of the training set the criterion sees (the authors' code: 5); also the number
            of test batches the firing rates, SOPs and energy are measured on.
        copy_bn: keep the BatchNorm statistics of the kept channels (True) or re-initialise them like the authors'
            code (False).
        order: ``"qp"`` quantize then prune (Algorithm 1) or ``"pq"`` prune a full-precision model, then quantize and
            fine-tune (App. A).
    Training
        epochs, optimizer, lr: training from scratch (the paper: 300 epochs, SGD at 0.1; the authors' code: Adam 1e-3).
        finetune_epochs, finetune_optimizer, finetune_lr: fine-tuning after pruning (the paper: 150, Adam, 1e-3).
        weight_decay: on conv weights only (the authors' code: 1e-5).
    Run
        seed: seeds data order, initialisation and the random criterion.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        num_workers: processes that load and augment the data (``torch.utils.data.DataLoader``); 0 loads in the main
            process, right for the digits. The paper's presets use 2 (a Colab machine's two CPUs), so that the CIFAR
            augmentation does not keep the GPU waiting.
        output_dir: write ``result.json``, ``model.safetensors`` and figures here (None: write nothing). With an
            output_dir, training and fine-tuning save a checkpoint after every epoch in ``output_dir/checkpoints``;
            running the same configuration with the same output_dir again resumes after the last finished epoch
            (the device may differ; the mini-batch order after resuming is not the uninterrupted run's). The
            checkpoints are deleted once the run has finished and written its results.
    """

    # data
    dataset: str = "digits"
    image_size: int | None = None
    batch_size: int = 64
    augment: bool = False
    download: bool = False
    # model
    model: str = "digits_cnn"
    T: int | None = None
    channels: tuple | None = None
    tau: float = 0.5
    threshold: float = 1.0
    # quantization
    bits: int | None = 4
    gamma: str | None = "mean"
    granularity: str = "channel"
    ste: str = "unmasked"
    # pruning
    criterion: str = "svs"
    ratio: float | dict = 0.5
    prune_config: str | None = None
    score_batches: int = 5
    copy_bn: bool = True
    order: str = "qp"
    # training
    epochs: int = 12
    optimizer: str = "adam"
    lr: float = 1e-3
    finetune_epochs: int = 6
    finetune_optimizer: str = "adam"
    finetune_lr: float = 1e-3
    weight_decay: float = 1e-5
    # run
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    output_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.channels, list):
            self.channels = tuple(self.channels)
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        if isinstance(self.ratio, Mapping):
            self.ratio = dict(self.ratio)
        self.validate()

    # Each check names the field, what it got and what it expects.
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is wrong."""

        def fail(name: str, expected: str) -> None:
            raise ValueError(f"Config.{name} must be {expected}, got {getattr(self, name)!r}")

        def choice(name: str, allowed: Sequence, optional: bool = False) -> None:
            value = getattr(self, name)
            if not (optional and value is None) and value not in allowed:
                fail(name, ("None or " if optional else "") + "one of " + ", ".join(map(repr, allowed)))

        def integer(name: str, low: int, optional: bool = False, high: int | None = None) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if not _is_int(value) or value < low or (high is not None and value > high):
                span = f"in {low}..{high}" if high is not None else f">= {low}"
                fail(name, ("None or " if optional else "") + f"an integer {span}")

        def number(name: str, low: float, strict: bool, high: float | None = None) -> None:
            value = getattr(self, name)
            if not _is_number(value) or value < low or (strict and value == low) or (high is not None and value > high):
                span = f"> {low}" if strict else f">= {low}"
                fail(name, f"a number {span}" + (f" and <= {high}" if high is not None else ""))

        def boolean(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")

        choice("dataset", data.DATASETS)
        integer("image_size", 4, optional=True)
        native = _NATIVE_SIZE.get(self.dataset)
        if self.dataset != "digits" and self.image_size not in (None, native):
            raise ValueError(f"Config.image_size can only resize the digits; {self.dataset} images stay "
                             f"{native}x{native}: set image_size=None, got {self.image_size!r}")
        integer("batch_size", 1)
        boolean("augment")
        boolean("download")
        choice("model", models.MODEL_NAMES)
        integer("T", 1, optional=True)
        if self.channels is not None:
            if self.model != "digits_cnn":
                raise ValueError(f"Config.channels applies to model 'digits_cnn' only, got model {self.model!r}")
            if not (isinstance(self.channels, tuple) and len(self.channels) == 4
                    and all(_is_int(c) and c >= 1 for c in self.channels)):
                fail("channels", "None or four positive integers (the digits CNN's conv widths)")
        number("tau", 0.0, strict=True, high=1.0)
        number("threshold", 0.0, strict=True)
        integer("bits", 1, optional=True, high=16)
        choice("gamma", quant.GAMMA_RULES, optional=True)
        choice("granularity", quant.GRANULARITIES)
        choice("ste", quant.STE_MODES)
        choice("criterion", CRITERIA)
        if isinstance(self.ratio, dict):
            for key, value in self.ratio.items():
                if not isinstance(key, str) or not _is_number(value) or not 0 <= value < 1:
                    raise ValueError(f"Config.ratio entries must map conv names to numbers in [0, 1), got "
                                     f"{key!r}: {value!r}")
        elif not _is_number(self.ratio) or not 0 <= self.ratio < 1:
            fail("ratio", "a number in [0, 1) (the fraction of channels removed) or {conv_name: ratio}")
        choice("prune_config", models.PRUNE_CONFIGS, optional=True)
        if self.prune_config is not None:
            if self.model == "digits_cnn":
                raise ValueError("Config.prune_config (the paper's Tables 9-11) applies to vgg16, resnet20 and "
                                 "vggsnn; for digits_cnn set ratio instead")
            architectures.prune_ratios(self.model, data.NUM_CLASSES[self.dataset], self.prune_config)
        integer("score_batches", 1)
        boolean("copy_bn")
        choice("order", ORDERS)
        if self.order == "pq" and self.bits is None:
            raise ValueError("Config.order='pq' quantizes after pruning: it needs bits (e.g. 4), got bits=None")
        integer("epochs", 1)
        choice("optimizer", OPTIMIZERS)
        number("lr", 0.0, strict=True)
        integer("finetune_epochs", 0)
        choice("finetune_optimizer", OPTIMIZERS)
        number("finetune_lr", 0.0, strict=True)
        number("weight_decay", 0.0, strict=False)
        integer("seed", 0)
        integer("num_workers", 0)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            fail("device", "a torch device string such as 'cpu', 'cuda' or 'cuda:0'")
        if self.output_dir is not None and not isinstance(self.output_dir, str):
            fail("output_dir", "None or a folder path")

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        if record["channels"] is not None:
            record["channels"] = list(record["channels"])
        return record

    @classmethod
    def from_dict(cls, record: Mapping) -> "Config":
        """The inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise ValueError(f"unknown Config field(s) {unknown}; the fields are {sorted(names)}")
        return cls(**dict(record))


# --------------------------------------------------------------------------------------------------------------------
# Presets: the paper's settings [P Tables 1, 8, 9-11]. Meant for a GPU: 300 + 150 epochs.
# --------------------------------------------------------------------------------------------------------------------
def _paper_preset(dataset: str, model: str, prune_config: str, bits: int = 4) -> Config:
    # Table 8: batch 256, 300 epochs with SGD at lr 0.1, fine-tune 150 epochs with Adam at 1e-3, cosine decay. The
    # authors' code trains with Adam at 1e-3 instead (section 8, item 10 of the notes): pass --optimizer adam --lr 1e-3.
    return Config(
        dataset=dataset, image_size=None, batch_size=256, augment=True, download=True, model=model,
        T=2 if model == "resnet20" else 4, bits=bits, gamma="mean", criterion="svs", prune_config=prune_config,
        epochs=300, optimizer="sgd", lr=0.1, finetune_epochs=150, finetune_optimizer="adam", finetune_lr=1e-3,
        device="cuda", num_workers=2,
    )


PRESETS: dict[str, Config] = {"digits": Config()}
PRESET_NOTES: dict[str, str] = {"digits": "the default: digits CNN on 16x16 digits, CPU, about a minute"}
for _dataset, _label in (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")):
    for _model, _t in (("resnet20", 2), ("vgg16", 4)):
        for _cfg in ("A", "B"):
            PRESETS[f"{_dataset}-{_model}-{_cfg}"] = _paper_preset(_dataset, _model, _cfg)
            PRESET_NOTES[f"{_dataset}-{_model}-{_cfg}"] = (
                f"{_label}, {_model} configuration {_cfg} (Tables 1, {9 if _model == 'vgg16' else 10}), T={_t}, "
                f"4 bits, 300+150 epochs, GPU")
PRESETS["cifar100-resnet20-ablation"] = _paper_preset("cifar100", "resnet20", "B", bits=2)
PRESET_NOTES["cifar100-resnet20-ablation"] = "the setting of the ablation, Table 2: CIFAR-100, ResNet20 B, 2 bits " \
                                             "(1.20 MB), 300+150 epochs, GPU"
PRESETS["cifar100-resnet20-pq"] = _paper_preset("cifar100", "resnet20", "B").replace(order="pq")
PRESET_NOTES["cifar100-resnet20-pq"] = "the order study, App. A Table 3: prune at full precision, then quantize " \
                                       "(4 bits), GPU"


def preset(name: str, **changes) -> Config:
    """The preset ``name`` (see :data:`PRESETS`) with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)


# --------------------------------------------------------------------------------------------------------------------
# Building blocks of a run
# --------------------------------------------------------------------------------------------------------------------
def _loaders(config: Config):
    return data.load(config.dataset, config.batch_size, download=config.download,
                     image_size=_image_size(config) if config.dataset == "digits" else None, augment=config.augment,
                     seed=config.seed, num_workers=config.num_workers)


DIGITS_IMAGE_SIZE = 16  # the digits' default side (Config.image_size=None)


def _image_size(config: Config) -> int:
    if config.dataset == "digits":
        return config.image_size or DIGITS_IMAGE_SIZE
    return _NATIVE_SIZE[config.dataset]


def build_model(config: Config, bits: int | None | str = "config", gamma: str | None | str = "config") -> nn.Module:
    """The untrained network of ``config`` (``bits``/``gamma`` override the config's when given)."""
    bits = config.bits if bits == "config" else bits
    gamma = config.gamma if gamma == "config" else gamma
    kwargs: dict[str, Any] = {"lif_kwargs": {"tau": config.tau, "threshold": config.threshold}}
    if bits is not None:
        kwargs.update(granularity=config.granularity, ste=config.ste)
    if config.model == "digits_cnn":
        if config.channels is not None:
            kwargs["channels"] = tuple(config.channels)
    else:
        kwargs["image_size"] = _image_size(config)
    return models.build(config.model, data.NUM_CLASSES[config.dataset], in_channels=_IN_CHANNELS[config.dataset],
                        T=config.T, bits=bits, gamma=gamma, **kwargs)


def quantize_model(model: nn.Module, bits: int, gamma: str | None = "mean", granularity: str = "channel",
                   ste: str = "unmasked") -> nn.Module:
    """A copy of a full-precision network whose convs after the first become ``QuantConv2d`` with the same weights
    (the "quantize" step of the PQ order, App. A). Chapter 07."""
    model = copy.deepcopy(model)
    first = metrics.conv_layers(model)[0][0]
    for name, conv in metrics.conv_layers(model):
        if name == first or isinstance(conv, quant.QuantConv2d):
            continue
        if type(conv) is not nn.Conv2d:
            raise ValueError(f"{name} is a {type(conv).__name__}; quantize_model converts plain nn.Conv2d only")
        new = quant.QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                padding=conv.padding, bias=conv.bias is not None, bits=bits, gamma=gamma,
                                granularity=granularity, ste=ste, dilation=conv.dilation, groups=conv.groups)
        new.to(conv.weight.device)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
    return model


def layer_ratios(config: Config, model: nn.Module) -> float | dict[str, float]:
    """The ``ratio`` argument of ``prune.apply`` for ``config``: the config's ratio, or, with ``prune_config``, the
    paper's per-conv ratios (``architectures.prune_ratios``, stem first, in module order) keyed by conv name."""
    if config.prune_config is None:
        return config.ratio
    ratios = architectures.prune_ratios(config.model, data.NUM_CLASSES[config.dataset], config.prune_config)
    names = [name for name, _ in metrics.conv_layers(model)]
    if len(names) != len(ratios):
        raise ValueError(f"{config.model} has {len(names)} convs but configuration {config.prune_config} lists "
                         f"{len(ratios)} ratios")
    return dict(zip(names, ratios))


def _check_ratio_names(config: Config, model: nn.Module) -> None:
    """Fail before training, not after, when a per-layer ratio names a conv the model does not have."""
    if not isinstance(config.ratio, dict) or config.prune_config is not None:
        return
    names = [layer.name for layer in prune.prunable_layers(model)]
    unknown = [name for name in config.ratio if name not in names]
    if unknown:
        raise ValueError(f"Config.ratio names unknown conv(s) {unknown}; {config.model}'s prunable convs are {names}")
    if config.ratio.get(names[-1], 0) > 0:
        raise ValueError(f"Config.ratio prunes {names[-1]}, the last conv, which feeds the classifier; the paper "
                         "never prunes it")


def _channels(model: nn.Module) -> dict[str, int]:
    return {name: int(conv.weight.shape[0]) for name, conv in metrics.conv_layers(model)}


def _applied_ratios(dense: dict[str, int], pruned: dict[str, int]) -> dict[str, float]:
    return {name: round(1 - pruned[name] / dense[name], 6) for name in dense}


def _fit(model, loaders, config: Config, finetune: bool, progress: bool, checkpoint: Path | None = None
         ) -> train.History:
    epochs = config.finetune_epochs if finetune else config.epochs
    generator = getattr(loaders[0], "generator", None)
    if isinstance(generator, torch.Generator):  # every stage sees the same data order, whatever ran before it
        generator.manual_seed(config.seed)
    if checkpoint is not None and checkpoint.exists():
        _say(progress, f"      resuming from {checkpoint} (after its last finished epoch)")
    return train.fit(
        model, loaders[0], loaders[1], epochs,
        lr=config.finetune_lr if finetune else config.lr,
        optimizer=config.finetune_optimizer if finetune else config.optimizer,
        weight_decay=config.weight_decay, seed=config.seed, device=config.device, progress=progress,
        checkpoint=checkpoint,
    )


# Fields that may change between an interrupted run and its resumption (where it runs, not what it computes).
_RESUMABLE_CHANGES = ("device", "num_workers", "output_dir")


def _checkpoints(config: Config, name: str = "checkpoints", **extra) -> Path | None:
    """The checkpoint folder ``output_dir/name`` of a run (None without an output_dir), after checking that
    checkpoints already there belong to this configuration (and ``extra``, e.g. the ablation's seeds). Writes the
    configuration there for the next check."""
    if config.output_dir is None:
        return None
    folder = Path(config.output_dir) / name
    record = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES} | extra
    saved = folder / "config.json"
    if saved.exists() and any(folder.glob("*.pt")):  # without a checkpoint there is nothing to resume or protect
        try:
            previous = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{saved} is unreadable ({exc}); delete the folder {folder} to start afresh") from exc
        changed = sorted(k for k in set(record) | set(previous) if record.get(k) != previous.get(k))
        if changed:
            details = ", ".join(f"{k}: {previous.get(k)!r} there, {record.get(k)!r} now" for k in changed[:4])
            raise ValueError(
                f"{folder} holds the checkpoints of an interrupted run with another configuration ({details}); "
                f"choose another output_dir, run again with that configuration to resume it, or delete {folder}"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        _write_text(saved, json.dumps(record, indent=2))
    return folder


def _check_device(config: Config) -> None:
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Config.device is {config.device!r} but CUDA is not available here; use device='cpu' "
                         "(and a smaller setting) or run on a GPU machine such as Colab")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Config.device is {config.device!r} but MPS is not available here; use device='cpu'")


def _say(progress: bool, message: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)


# --------------------------------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    """What :func:`run` measured. Accuracies are fractions in [0, 1]; sizes in MB of 10^6 bytes by the paper's rule
    (Eq. 16: quantized convs at ``bits``, everything else at 32 bits); SOPs per sample, summed over time; energy in mJ
    per sample (``energy`` holds the constants and conventions, :func:`qpsnn_lite.metrics.energy_mj`).

    ``accuracy_trained`` is the trained network before pruning (full precision for ``order="pq"``),
    ``accuracy_pruned`` right after pruning (and, for ``"pq"``, quantizing), ``accuracy_finetuned`` after fine-tuning.
    ``ratios`` is the fraction of channels each conv actually lost (``1 - kept / n``; the floor ``int(n (1 - r))``
    makes it differ slightly from the requested ratio). ``firing_rates`` are the fine-tuned network's (LIF name ->
    rate), ``firing_rates_dense`` the trained network's. ``seconds`` holds the wall time of each stage, ``files`` the
    paths written into ``output_dir`` and ``export`` the exported file's size beside the paper-rule size.
    """

    config: dict
    accuracy_trained: float
    accuracy_pruned: float
    accuracy_finetuned: float
    bits: int | None
    size_mb_dense: float
    size_mb_pruned: float
    size_mb_full_precision: float
    parameters_dense: int
    parameters_pruned: int
    connection_percent: float
    channels_dense: dict
    channels_pruned: dict
    ratios: dict
    firing_rates: dict
    firing_rates_dense: dict
    sops_dense: float
    sops_pruned: float
    energy_mj_dense: float
    energy_mj_pruned: float
    energy: dict
    seconds: dict
    history_train: dict
    history_finetune: dict
    files: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename)."""
        return _write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """Read a result written by :meth:`save`."""
        record = json.loads(Path(path).read_text())
        return cls(**record)

    def table(self) -> str:
        """The result as a plain-text table."""
        c = self.config
        bits = f"{self.bits}-bit" if self.bits else "full precision"
        prune_by = f"config {c['prune_config']}" if c.get("prune_config") else f"ratio {c['ratio']}"
        lines = [
            f"QP-SNN run: {c['model']} on {c['dataset']}, T={c['T'] or self.energy.get('T', 'default')}, {bits}, "
            f"gamma={c['gamma']}, "
            f"{c['criterion']} pruning at {prune_by}, order {c['order']}",
            "",
            f"{'':34}{'dense':>14}{'pruned':>14}",
            f"{'accuracy (trained / fine-tuned)':34}{100 * self.accuracy_trained:>13.2f}%"
            f"{100 * self.accuracy_finetuned:>13.2f}%",
            f"{'accuracy right after pruning':34}{'':>14}{100 * self.accuracy_pruned:>13.2f}%",
            f"{'model size, paper rule (MB)':34}{self.size_mb_dense:>14.4f}{self.size_mb_pruned:>14.4f}",
            f"{'parameters':34}{self.parameters_dense:>14,}{self.parameters_pruned:>14,}",
            f"{'connections kept':34}{100.0:>13.2f}%{self.connection_percent:>13.2f}%",
            f"{'SOPs per sample':34}{self.sops_dense:>14,.0f}{self.sops_pruned:>14,.0f}",
            f"{'energy per sample (uJ)':34}{1e3 * self.energy_mj_dense:>14.4f}{1e3 * self.energy_mj_pruned:>14.4f}",
            f"{'full-precision size (MB)':34}{self.size_mb_full_precision:>14.4f}",
            "",
            f"{'layer':34}{'channels':>14}{'kept':>14}{'firing rate':>14}",
        ]
        rates = self.firing_rates
        for name, dense in self.channels_dense.items():
            lif = _lif_of(name, rates)
            rate = f"{rates[lif]:>14.3f}" if lif in rates else f"{'':>14}"
            lines.append(f"{name:34}{dense:>14}{self.channels_pruned[name]:>14}{rate}")
        times = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        lines += ["", f"wall time: {times}"]
        if self.files:
            lines.append("files: " + ", ".join(f"{k}: {v}" for k, v in self.files.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _lif_of(conv_name: str, rates: Mapping) -> str:
    """The LIF after a conv: ``x.conv`` -> ``x.lif``, ``x.conv1`` -> ``x.lif1``."""
    prefix, _, last = conv_name.rpartition(".")
    return f"{prefix}.{last.replace('conv', 'lif')}" if prefix else last.replace("conv", "lif")


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self._stage = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._stage
        self._stage = now

    def total(self) -> None:
        self.seconds["total"] = time.perf_counter() - self._start


def _prune(model: nn.Module, config: Config, loader, criterion: str) -> nn.Module:
    scores = prune.score(model, loader, criterion, batches=config.score_batches, seed=config.seed)
    return prune.apply(model, scores, layer_ratios(config, model), copy_bn=config.copy_bn)


def run(config: Config | None = None, progress: bool = True) -> Result:
    """Run the QP-SNN pipeline of ``config`` (default :class:`Config`) and return its :class:`Result`.

    Stages (their wall times are in ``Result.seconds``): ``data``, ``train`` (QAT from scratch; full precision for
    ``order="pq"``), ``score`` (the criterion on ``score_batches`` training batches), ``prune`` (``prune.apply``, and
    quantization for ``"pq"``, then an evaluation), ``finetune``, ``measure`` (sizes, firing rates, SOPs, energy on
    ``score_batches`` test batches) and ``write`` (``result.json``, ``model.safetensors``, ``accuracy.png``,
    ``channels.png`` into ``output_dir`` when it is set). ``progress`` shows stage messages and per-epoch bars.

    Taught in chapter 07.
    """
    config = Config() if config is None else config
    if not isinstance(config, Config):
        raise TypeError(f"config must be a pipeline.Config, got {type(config).__name__}")
    config.validate()
    _check_device(config)
    checkpoints = _checkpoints(config)
    clock = _Clock()
    loaders = _loaders(config)
    clock.lap("data")

    pq = config.order == "pq"
    train.seed_everything(config.seed)
    model = build_model(config, bits=None if pq else config.bits).to(config.device)
    _check_ratio_names(config, model)
    what = "full-precision" if pq or config.bits is None else f"{config.bits}-bit"
    _say(progress, f"[1/4] training a {what} {config.model} on {config.dataset} for {config.epochs} epochs")
    history_train = _fit(model, loaders, config, finetune=False, progress=progress,
                         checkpoint=checkpoints / "train.pt" if checkpoints else None)
    accuracy_trained = history_train.final_accuracy
    clock.lap("train")

    _say(progress, f"[2/4] scoring channels with {config.criterion} on {config.score_batches} batches")
    scores = prune.score(model, loaders[0], config.criterion, batches=config.score_batches, seed=config.seed)
    clock.lap("score")
    pruned = prune.apply(model, scores, layer_ratios(config, model), copy_bn=config.copy_bn)
    if pq:
        pruned = quantize_model(pruned, config.bits, config.gamma, config.granularity, config.ste)
    accuracy_pruned, _ = train.evaluate(pruned, loaders[1])
    clock.lap("prune")

    _say(progress, f"[3/4] fine-tuning the pruned network for {config.finetune_epochs} epochs "
                   f"(accuracy right after pruning: {100 * accuracy_pruned:.2f}%)")
    history_finetune = train.History()
    accuracy_finetuned = accuracy_pruned
    if config.finetune_epochs > 0:
        history_finetune = _fit(pruned, loaders, config, finetune=True, progress=progress,
                                checkpoint=checkpoints / "finetune.pt" if checkpoints else None)
        accuracy_finetuned = history_finetune.final_accuracy
    clock.lap("finetune")

    _say(progress, "[4/4] measuring size, firing rates, SOPs and energy")
    # The trained network before pruning (full precision for "pq"; its paper-rule size is what it would take at
    # config.bits, since the rule decides "quantized" by position).
    dense = model
    bits = config.bits if config.bits is not None else 32
    energy_dense = metrics.energy_mj(dense, loaders[1], batches=config.score_batches)
    energy_pruned = metrics.energy_mj(pruned, loaders[1], batches=config.score_batches)
    channels_dense, channels_pruned = _channels(model), _channels(pruned)
    result = Result(
        config=config.to_dict(),
        accuracy_trained=accuracy_trained, accuracy_pruned=accuracy_pruned, accuracy_finetuned=accuracy_finetuned,
        bits=config.bits,
        size_mb_dense=metrics.model_size_mb(dense, bits), size_mb_pruned=metrics.model_size_mb(pruned, bits),
        size_mb_full_precision=metrics.model_size_mb(dense, 32),
        parameters_dense=metrics.count_parameters(dense), parameters_pruned=metrics.count_parameters(pruned),
        connection_percent=metrics.connection_percent(pruned, dense),
        channels_dense=channels_dense, channels_pruned=channels_pruned,
        ratios=_applied_ratios(channels_dense, channels_pruned),
        firing_rates=energy_pruned.firing_rates, firing_rates_dense=energy_dense.firing_rates,
        sops_dense=energy_dense.sops, sops_pruned=energy_pruned.sops,
        energy_mj_dense=energy_dense.energy_mj, energy_mj_pruned=energy_pruned.energy_mj,
        energy=energy_pruned.to_dict(), seconds={}, history_train=history_train.to_dict(),
        history_finetune=history_finetune.to_dict(),
    )
    clock.lap("measure")
    if config.output_dir is not None:
        _write_outputs(result, pruned, Path(config.output_dir))
        clock.lap("write")
    clock.total()
    result.seconds = clock.seconds
    if config.output_dir is not None:
        result.save(Path(config.output_dir) / "result.json")  # again, now with the total time
    if checkpoints is not None:
        shutil.rmtree(checkpoints)  # the run is complete and saved: its checkpoints are no longer needed
    _say(progress, f"done in {clock.seconds['total']:.1f} s: accuracy {100 * accuracy_finetuned:.2f}%, "
                   f"{result.size_mb_pruned:.4f} MB")
    return result


def _write_outputs(result: Result, model: nn.Module, folder: Path) -> None:
    from . import export

    folder.mkdir(parents=True, exist_ok=True)
    summary = export.save(model, folder / "model.safetensors")
    result.files = {"result": str(folder / "result.json"), "model": summary.path}
    result.export = {"file_bytes": summary.file_bytes, "file_mb": summary.file_mb,
                     "paper_size_mb": summary.paper_size_mb, "bits": summary.bits}
    result.files.update(_figures(result, folder))
    result.save(folder / "result.json")


def _figures(result: Result, folder: Path) -> dict[str, str]:
    """``accuracy.png`` (test accuracy over training and fine-tuning) and ``channels.png`` (channels per layer)."""
    from matplotlib.ticker import MaxNLocator

    from . import plots

    files = {}
    train_h, tune_h = result.history_train, result.history_finetune
    fig = plots.figure(6.0, 3.5)
    ax = fig.add_subplot()
    epochs = train_h["epoch"]
    ax.plot(epochs, [100 * a for a in train_h["test_accuracy"]], marker="o", color=plots.color("full precision"),
            label="training (quantized)" if result.config["order"] == "qp" else "training (full precision)")
    if tune_h["epoch"]:
        shifted = [epochs[-1] + e for e in tune_h["epoch"]]
        ax.plot([epochs[-1]] + shifted, [100 * result.accuracy_pruned] + [100 * a for a in tune_h["test_accuracy"]],
                marker="o", color=plots.color(result.config["criterion"]), label="pruned, fine-tuning")
    ax.set_xlabel("epoch (training, then fine-tuning)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Pruning costs {100 * (result.accuracy_trained - result.accuracy_pruned):.1f} points, "
                 f"fine-tuning recovers to {100 * result.accuracy_finetuned:.1f}%")
    ax.legend(loc="center")
    ax.grid(alpha=0.3)
    fig.savefig(folder / "accuracy.png", dpi=100)
    files["accuracy_figure"] = str(folder / "accuracy.png")

    fig = plots.figure(6.0, 3.5)
    ax = fig.add_subplot()
    names = list(result.channels_dense)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [result.channels_dense[n] for n in names], width=0.4, label="trained",
           color=plots.color("full precision"))
    ax.bar([i + 0.2 for i in x], [result.channels_pruned[n] for n in names], width=0.4, label="pruned",
           color=plots.color(result.config["criterion"]))
    ax.set_xticks(list(x), [n.replace("features.", "") for n in names], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("output channels")
    ax.set_title(f"Pruning keeps {result.connection_percent:.1f}% of the quantized connections")
    ax.legend()
    fig.savefig(folder / "channels.png", dpi=100)
    files["channels_figure"] = str(folder / "channels.png")
    return files


# --------------------------------------------------------------------------------------------------------------------
# Ablation, Table 2
# --------------------------------------------------------------------------------------------------------------------
#: The paper's Table 2 (CIFAR-100, ResNet20 configuration B, 2 bits), accuracy in %.
PAPER_ABLATION = {"A": 78.53, "B": 79.16, "C": 69.16, "D": 73.40, "E": 73.32, "F": 73.89}

#: ``(row, description, ReScaW?, criterion or None for no pruning)``.
ABLATION_ROWS = (
    ("A", "vanilla quantization, no pruning", False, None),
    ("B", "ReScaW quantization, no pruning", True, None),
    ("C", "vanilla + SCA pruning (baseline)", False, "sca"),
    ("D", "C with ReScaW", True, "sca"),
    ("E", "C with SVS", False, "svs"),
    ("F", "ReScaW + SVS (QP-SNN)", True, "svs"),
)


@dataclass
class AblationRow:
    """One row of the ablation: test accuracies in % per seed, their mean and sample standard deviation."""

    row: str
    description: str
    gamma: str | None
    criterion: str | None
    accuracies: list
    mean: float
    std: float
    paper: float
    size_mb: float


@dataclass
class AblationResult:
    """Rows A-F of Table 2 measured at the config's budget, beside the paper's numbers."""

    config: dict
    seeds: list
    rows: list
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike) -> Path:
        return _write_text(Path(path), self.to_json())

    def table(self) -> str:
        c = self.config
        prune_by = f"config {c['prune_config']}" if c.get("prune_config") else f"ratio {c['ratio']}"
        lines = [
            f"Ablation (Table 2): {c['model']} on {c['dataset']}, {c['bits']}-bit, pruning at {prune_by}, "
            f"{c['epochs']}+{c['finetune_epochs']} epochs, seeds {self.seeds}",
            f"{'row':4}{'setting':36}{'accuracy % (mean ± std)':>26}{'size MB':>10}{'paper %':>10}",
        ]
        for r in self.rows:
            r = r if isinstance(r, dict) else dataclasses.asdict(r)
            lines.append(f"{r['row']:4}{r['description']:36}{r['mean']:>17.2f} ± {r['std']:<6.2f}"
                         f"{r['size_mb']:>10.4f}{r['paper']:>10.2f}")
        lines.append("paper: CIFAR-100, ResNet20 configuration B, 2 bits, 300+150 epochs; "
                     f"wall time here {self.seconds:.0f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def ablation(config: Config | None = None, seeds: int | Sequence[int] = 3, progress: bool = True) -> AblationResult:
    """Rows A-F of the paper's ablation (Table 2) on ``config``'s data, model, budget and pruning ratios.

    A vanilla quantization without pruning; B ReScaW (``config.gamma``, "mean" if None) without pruning; C vanilla +
    SCA pruning (the baseline); D = C with ReScaW; E = C with SVS; F ReScaW + SVS (QP-SNN). Per seed, two networks
    are trained (vanilla and ReScaW) and each is pruned twice (SCA, SVS) and fine-tuned: A, C and E share the
    vanilla network, B, D and F the ReScaW one. ``seeds``: a count (seeds ``config.seed``, ``config.seed + 1``, ...)
    or a list. Returns an :class:`AblationResult` with mean and sample standard deviation per row beside the
    paper's numbers; writes ``ablation.json`` into ``config.output_dir`` when set, and meanwhile a checkpoint per
    network and epoch into ``output_dir/checkpoints-ablation``: the same call again resumes an interrupted ablation
    (finished trainings and fine-tunes are not repeated). Taught in chapter 07.
    """
    config = Config() if config is None else config
    config.validate()
    if config.bits is None:
        raise ValueError("the ablation compares quantizers: Config.bits must be set (the paper's Table 2 uses 2)")
    if config.order != "qp":
        raise ValueError("the ablation follows Algorithm 1: Config.order must be 'qp'")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {seeds!r}")
        seeds = list(range(config.seed, config.seed + seeds))
    seeds = list(seeds)
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a count >= 1 or a list of integers >= 0, got {seeds!r}")
    _check_device(config)
    checkpoints = _checkpoints(config, "checkpoints-ablation", seeds=seeds)
    start = time.perf_counter()
    rescaw = config.gamma or "mean"
    accuracies: dict[str, list[float]] = {row: [] for row, *_ in ABLATION_ROWS}
    sizes: dict[str, float] = {}
    for i, seed in enumerate(seeds):
        run_config = config.replace(seed=seed)
        loaders = _loaders(run_config)
        trained = {}
        for use_rescaw in (False, True):
            gamma = rescaw if use_rescaw else None
            _say(progress, f"seed {seed} ({i + 1}/{len(seeds)}): training the {'ReScaW' if use_rescaw else 'vanilla'} "
                           f"{config.bits}-bit network")
            train.seed_everything(seed)
            model = build_model(run_config, gamma=gamma).to(config.device)
            _check_ratio_names(run_config, model)
            history = _fit(model, loaders, run_config, finetune=False, progress=progress,
                           checkpoint=_checkpoint_file(checkpoints, seed, "rescaw" if use_rescaw else "vanilla"))
            trained[use_rescaw] = model
            row = "B" if use_rescaw else "A"
            accuracies[row].append(100 * history.final_accuracy)
            sizes[row] = metrics.model_size_mb(model, config.bits)
        for row, _, use_rescaw, criterion in ABLATION_ROWS:
            if criterion is None:
                continue
            _say(progress, f"seed {seed}: row {row}, {criterion} pruning and fine-tuning")
            pruned = _prune(trained[use_rescaw], run_config, loaders[0], criterion)
            if run_config.finetune_epochs > 0:
                history = _fit(pruned, loaders, run_config, finetune=True, progress=progress,
                               checkpoint=_checkpoint_file(checkpoints, seed, f"row{row}"))
                accuracy = history.final_accuracy
            else:
                accuracy, _ = train.evaluate(pruned, loaders[1])
            accuracies[row].append(100 * accuracy)
            sizes[row] = metrics.model_size_mb(pruned, config.bits)
    rows = []
    for row, description, use_rescaw, criterion in ABLATION_ROWS:
        values = accuracies[row]
        rows.append(AblationRow(
            row=row, description=description, gamma=rescaw if use_rescaw else None, criterion=criterion,
            accuracies=values, mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0,
            paper=PAPER_ABLATION[row], size_mb=sizes[row],
        ))
    result = AblationResult(config=config.to_dict(), seeds=seeds, rows=rows, seconds=time.perf_counter() - start)
    if config.output_dir is not None:
        result.save(Path(config.output_dir) / "ablation.json")
    if checkpoints is not None:
        shutil.rmtree(checkpoints)
    return result


def _checkpoint_file(folder: Path | None, seed: int, stage: str) -> Path | None:
    return None if folder is None else folder / f"seed{seed}-{stage}.pt"
