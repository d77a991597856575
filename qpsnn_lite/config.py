"""The configuration of a QP-SNN run: every knob of the paper as one field, and the paper's settings as presets.

Taught in chapter 07 (re-exported by :mod:`qpsnn_lite.pipeline`, where the chapter meets it). Each field is declared
once with :func:`qpsnn_lite.knobs.knob`: its help, choices and range. ``Config.validate``, ``Config``'s docstring and
the command line's flags are generated from these declarations (``docs/design.md``, "One source of truth per knob");
only the rules that relate two fields (``image_size`` and ``dataset``, ``channels`` and ``model``, ...) are written
out in :meth:`Config.validate`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from . import architectures, data, models, quant
from ._checks import BITS_RANGE, is_int, is_number
from .criteria import CRITERIA
from .knobs import knob, knob_of

__all__ = ["Config", "PRESETS", "PRESET_NOTES", "ORDERS", "OPTIMIZERS", "GROUPS", "DIGITS_IMAGE_SIZE", "preset",
           "image_size", "check_device"]

ORDERS = ("qp", "pq")
OPTIMIZERS = ("adam", "sgd")
DIGITS_IMAGE_SIZE = 16  # the digits' default side (Config.image_size=None)
NATIVE_SIZE = {"digits": 8, "mnist": 28, "cifar10": 32, "cifar100": 32}
IN_CHANNELS = {"digits": 1, "mnist": 1, "cifar10": 3, "cifar100": 3}

#: The sections of ``Config``'s docstring and of ``--help``, in order: (group, title).
GROUPS = (("data", "Data"), ("model", "Model"), ("quantization", "Quantization (chapters 03-04)"),
          ("pruning", "Pruning (chapters 05-06)"), ("training", "Training"), ("run", "Run"))


# --------------------------------------------------------------------------------------------------------------------
# The value types that are not a plain number, flag or choice
# --------------------------------------------------------------------------------------------------------------------
def _is_ratio(value: Any) -> bool:
    return is_number(value) and 0 <= value < 1


def _ratio_text(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a ratio must be a number in [0, 1), got {text!r}") from None
    if not _is_ratio(value):
        raise argparse.ArgumentTypeError(
            f"a ratio is the fraction of channels removed, a number in [0, 1) (1.0 would remove every channel), "
            f"got {text}")
    return value


def _parse_ratio(text: str) -> float | dict:
    """``0.5`` or ``conv_name=0.3,conv_name=0.5``."""
    if "=" not in text:
        return _ratio_text(text)
    ratios = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not name.strip() or not value:
            raise argparse.ArgumentTypeError(f"per-layer ratios look like name=0.3,name=0.5, got {text!r}")
        ratios[name.strip()] = _ratio_text(value.strip())
    return ratios


def _check_ratio(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_ratio(v) for k, v in value.items())
    return _is_ratio(value)


def _check_channels(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 4 and all(is_int(c) and c >= 1 for c in value)


def _parse_channels(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels are four integers like 16,32,64,64, got {text!r}") from None
    if not _check_channels(values):
        raise argparse.ArgumentTypeError(f"channels are four positive integers like 16,32,64,64, got {text!r}")
    return values


def _check_device(value: Any) -> bool:
    try:
        torch.device(value)
    except (RuntimeError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Every knob of one QP-SNN run. Defaults: the book's digits setting, about a minute on two CPU cores."""

    # data
    dataset: str = knob("digits", "data", "data set", "choice", choices=data.DATASETS,
                        doc='``"digits"`` (scikit-learn, offline), ``"mnist"``, ``"cifar10"``, ``"cifar100"``.')
    image_size: int | None = knob(
        None, "data", "digits only: resize the 8x8 digits to NxN (default: 16; 'none' = 16)", "int", low=4,
        optional=True, metavar="N", show_default=False,
        doc="the digits' side after resizing; None takes 16 for the digits (and the native size of the other data "
            "sets, which cannot be resized). 16 instead of the native 8 gives the SVS criterion 16x16 and 8x8 spike "
            "maps to rank instead of 8x8 and 4x4 (far fewer ties); the first convolutions see 4x as many pixels, so "
            "an epoch costs more (measure it on your machine: chapter 06 trains both).")
    batch_size: int = knob(64, "data", "mini-batch size", "int", low=1, metavar="N",
                           doc="mini-batch size (the paper: 256 on CIFAR).")
    augment: bool = knob(False, "data", "the paper's CIFAR augmentation", "bool",
                         doc="the paper's CIFAR augmentation (crop, flip, AutoAugment, Cutout).")
    download: bool = knob(False, "data", "let torchvision download MNIST/CIFAR (needs internet)", "bool")
    # model
    model: str = knob("digits_cnn", "model", "network", "choice", choices=models.MODEL_NAMES,
                      doc='``"digits_cnn"``, ``"vgg16"``, ``"resnet20"``, ``"vggsnn"``.')
    T: int | None = knob(None, "model", "time steps (default: the model's, 4; resnet20 2, vggsnn 10)", "int", low=1,
                         optional=True, what="a number of time steps", metavar="N", show_default=False,
                         doc="time steps; None takes the model's default (4; ResNet20 2, VGGSNN 10 as in the paper).")
    channels: tuple | None = knob(
        None, "model", "digits_cnn conv widths (default: 16,32,64,64)", "custom", optional=True,
        expected="four positive integers (the digits CNN's conv widths)", check=_check_channels,
        parse=_parse_channels, convert=lambda v: tuple(v) if isinstance(v, list) else v, metavar="C1,C2,C3,C4",
        show_default=False, doc="digits_cnn only: its four conv widths (None: 16, 32, 64, 64).")
    tau: float = knob(0.5, "model", "LIF leak factor", "number", low=0.0, strict=True, high=1.0,
                      doc="the LIF leak factor (the authors' code: 0.5).")
    threshold: float = knob(1.0, "model", "LIF threshold", "number", low=0.0, strict=True,
                            doc="the LIF firing threshold (the authors' code: 1.0).")
    # quantization
    bits: int | None = knob(
        4, "quantization", f"weight bits of every conv but the first, {BITS_RANGE[0]}..{BITS_RANGE[1]}, or 'none' "
        "for full precision", "int", low=BITS_RANGE[0], high=BITS_RANGE[1], optional=True, what="a bit width",
        metavar="B", doc="weight bits of every conv but the first (the paper: 8, 4, 2); None trains at full precision.")
    gamma: str | None = knob(
        "mean", "quantization", "ReScaW rule mean | max | percentile, or 'none' for the vanilla quantizer", "choice",
        choices=quant.GAMMA_RULES, optional=True, metavar="RULE",
        doc='ReScaW rule ``"mean"`` (the paper\'s choice), ``"max"``, ``"percentile"``; None is the vanilla quantizer '
            "(the paper's baseline).")
    granularity: str = knob("channel", "quantization", "gamma per", "choice", choices=quant.GRANULARITIES,
                            doc='``"channel"`` (the authors\' code) or ``"layer"`` (the paper\'s notation).')
    ste: str = knob("unmasked", "quantization", "straight-through estimator", "choice", choices=quant.STE_MODES,
                    doc='``"unmasked"`` (the authors\' code) or ``"masked"`` (the paper\'s App. D).')
    # pruning
    criterion: str = knob("svs", "pruning", "channel score", "choice", choices=lambda: tuple(CRITERIA),
                          doc='``"svs"`` (the paper), ``"sca"`` (its baseline), ``"l1"``, ``"firing_rate"``, '
                              '``"random"``, or any name registered with ``prune.register_criterion``.')
    ratio: float | dict = knob(
        0.5, "pruning", "fraction of channels removed per conv (not the last), in [0, 1), or name=r,name=r (clears a "
        "preset's --prune-config)", "custom", check=_check_ratio, parse=_parse_ratio,
        convert=lambda v: dict(v) if isinstance(v, Mapping) else v, metavar="R",
        expected="a number in [0, 1) (the fraction of channels removed) or {conv_name: ratio} with such numbers",
        doc="fraction of channels removed from every conv but the last, in [0, 1), or ``{conv_name: ratio}``.")
    prune_config: str | None = knob(
        None, "pruning", "the paper's per-layer ratios (Tables 9-11) for vgg16/resnet20/vggsnn; replaces --ratio",
        "choice", choices=models.PRUNE_CONFIGS, optional=True, metavar="A|B|C", show_default=False,
        doc='the paper\'s per-layer ratios ``"A"``, ``"B"`` (``"C"`` for VGGSNN) for vgg16/resnet20/vggsnn (Tables '
            "9-11); when given it replaces ``ratio``.")
    score_batches: int = knob(
        5, "pruning", "batches the criterion (and the energy estimate) sees", "int", low=1, metavar="N",
        doc="mini-batches of the training set the criterion sees (the authors' code: 5); also the number of test "
            "batches the firing rates, SOPs and energy are measured on.")
    copy_bn: bool = knob(True, "pruning", "keep the BatchNorm statistics of kept channels", "bool",
                         doc="keep the BatchNorm statistics of the kept channels (True) or re-initialise them like "
                             "the authors' code (False).")
    order: str = knob("qp", "pruning", "qp = quantize then prune (Algorithm 1), pq = prune then quantize (App. A)",
                      "choice", choices=ORDERS,
                      doc='``"qp"`` quantize then prune (Algorithm 1) or ``"pq"`` prune a full-precision model, then '
                          "quantize and fine-tune (App. A).")
    # training
    epochs: int = knob(12, "training", "training epochs", "int", low=1, metavar="N",
                       doc="training from scratch (the paper: 300 epochs).")
    optimizer: str = knob("adam", "training", "training optimizer", "choice", choices=OPTIMIZERS,
                          doc="the paper: SGD; the authors' code: Adam (``docs/design.md``, \"Training\").")
    lr: float = knob(1e-3, "training", "training learning rate", "number", low=0.0, strict=True,
                     doc="the paper: 0.1 with SGD; the authors' code: 1e-3 with Adam.")
    finetune_epochs: int = knob(6, "training", "fine-tuning epochs after pruning", "int", low=0, metavar="N",
                                doc="fine-tuning after pruning (the paper: 150).")
    finetune_optimizer: str = knob("adam", "training", "fine-tuning optimizer", "choice", choices=OPTIMIZERS,
                                   doc="the paper: Adam.")
    finetune_lr: float = knob(1e-3, "training", "fine-tuning learning rate", "number", low=0.0, strict=True,
                              doc="the paper: 1e-3.")
    weight_decay: float = knob(1e-5, "training", "weight decay on conv weights", "number", low=0.0,
                               doc="on conv weights only (the authors' code: 1e-5).")
    # run
    seed: int = knob(0, "run", "random seed", "int", low=0,
                     doc="seeds data order, initialisation and the random criterion.")
    device: str = knob("cpu", "run", "cpu, cuda, cuda:1, mps", "custom", check=_check_device,
                       expected="a torch device string such as 'cpu', 'cuda' or 'cuda:0'",
                       doc='``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.')
    num_workers: int = knob(
        0, "run", "data-loading processes (0: the main process)", "int", low=0, metavar="N",
        doc="processes that load and augment the data (``torch.utils.data.DataLoader``); 0 loads in the main "
            "process, right for the digits. The paper's presets use 2 (a Colab machine's two CPUs), so that the "
            "CIFAR augmentation does not keep the GPU waiting.")
    output_dir: str | None = knob(
        None, "run", "where to write results and per-epoch checkpoints (default: runs/<timestamp>; 'none' writes "
        "nothing); run again with the same DIR and flags to resume an interrupted run", "custom", optional=True,
        expected="a folder path (not empty)", check=lambda v: isinstance(v, str) and v.strip() != "",
        parse=lambda text: text,
        convert=lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v, metavar="DIR", show_default=False,
        doc="write ``result.json``, ``model.safetensors`` and figures here (None: write nothing). With an "
            "output_dir, training and fine-tuning save a checkpoint after every epoch in ``output_dir/checkpoints``; "
            "running the same configuration with the same output_dir again resumes after the last finished epoch "
            "(the device may differ; the mini-batch order after resuming is not the uninterrupted run's; settings that "
            "affect only the stages after training, such as the ratio, may differ while the training is unfinished). "
            "The checkpoints are deleted once the run has finished and written its results. A run locks its "
            "output_dir; a folder in use by another run, or holding the results or checkpoints of another "
            "configuration, is refused (``docs/design.md``, \"Resuming\").")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            convert = knob_of(f).convert
            if convert is not None:
                setattr(self, f.name, convert(getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is wrong: each field against its own declaration, then
        the rules that relate two fields."""
        for f in dataclasses.fields(self):
            knob_of(f).validate(f.name, getattr(self, f.name))
        native = NATIVE_SIZE.get(self.dataset)
        if self.dataset != "digits" and self.image_size not in (None, native):
            raise ValueError(f"Config.image_size can only resize the digits; {self.dataset} images stay "
                             f"{native}x{native}: set image_size=None, got {self.image_size!r}")
        if self.channels is not None and self.model != "digits_cnn":
            raise ValueError(f"Config.channels applies to model 'digits_cnn' only, got model {self.model!r}")
        if self.prune_config is not None:
            if self.model == "digits_cnn":
                raise ValueError("Config.prune_config (the paper's Tables 9-11) applies to vgg16, resnet20 and "
                                 "vggsnn; for digits_cnn set ratio instead")
            architectures.prune_ratios(self.model, data.NUM_CLASSES[self.dataset], self.prune_config)
        if self.order == "pq" and self.bits is None:
            raise ValueError("Config.order='pq' quantizes after pruning: it needs bits (e.g. 4), got bits=None")

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


def _field_docs() -> str:
    lines = []
    for group, title in GROUPS:
        lines.append(f"    {title}")
        for f in dataclasses.fields(Config):
            spec = knob_of(f)
            if spec.group == group:
                lines.append(f"        {f.name}: {spec.doc or spec.help}")
    return "\n".join(lines)


Config.__doc__ = f"{Config.__doc__}\n\n{_field_docs()}\n"


def image_size(config: Config) -> int:
    """The side of the images ``config`` trains on."""
    if config.dataset == "digits":
        return config.image_size or DIGITS_IMAGE_SIZE
    return NATIVE_SIZE[config.dataset]


def check_device(config: Config) -> None:
    """Fail before any work when ``config.device`` does not exist on this machine."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Config.device is {config.device!r} but CUDA is not available here; use device='cpu' "
                         "(and a smaller setting) or run on a GPU machine such as Colab")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Config.device is {config.device!r} but MPS is not available here; use device='cpu'")


# --------------------------------------------------------------------------------------------------------------------
# Presets: the paper's settings [P Tables 1, 8, 9-11]. Meant for a GPU: 300 + 150 epochs.
# --------------------------------------------------------------------------------------------------------------------
def _paper_preset(dataset: str, model: str, prune_config: str, bits: int = 4) -> Config:
    # Table 8: batch 256, 300 epochs with SGD at lr 0.1, fine-tune 150 epochs with Adam at 1e-3, cosine decay. The
    # authors' code trains with Adam at 1e-3 instead (docs/design.md, "Training"): pass --optimizer adam --lr 1e-3.
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
PRESET_NOTES["cifar100-resnet20-ablation"] = (
    "the ablation, Table 2: CIFAR-100, ResNet20, 300+150 epochs, GPU; 2 bits with configuration B (1.20 MB) is our "
    "inference, not stated by the paper")
PRESETS["cifar100-resnet20-pq"] = _paper_preset("cifar100", "resnet20", "B").replace(order="pq")
PRESET_NOTES["cifar100-resnet20-pq"] = "the order study, App. A Table 3: prune at full precision, then quantize " \
                                       "(4 bits), GPU"


def preset(name: str, **changes) -> Config:
    """The preset ``name`` (see :data:`PRESETS`) with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)
