"""Training and evaluation: ``fit`` and ``evaluate``.

Taught in chapter 02. Backpropagation through time (STBP) is what autograd does over the unrolled LIF; the loss is
cross-entropy on the time-averaged logits (the paper, App. D). The defaults follow the authors' code, which the paper's
numbers came from: Adam, learning rate 1e-3, cosine decay to 0, weight decay 1e-5 on conv weights only (why:
``docs/design.md``, "Training").
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import _dist
from ._checks import check_finite_inputs, check_finite_model
from ._hooks import hooked
from ._io import atomic_path

__all__ = ["History", "fit", "evaluate", "seed_everything", "save_checkpoint", "load_checkpoint"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run on the same machine repeats exactly."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch (ready to plot)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last epoch (a fraction in [0, 1])."""
        if not self.test_accuracy:
            raise ValueError("the history is empty: fit ran no epoch")
        return self.test_accuracy[-1]


def _check_loader(loader, name: str) -> None:
    if not isinstance(loader, DataLoader) and not hasattr(loader, "__iter__"):
        raise TypeError(f"{name} must be an iterable of (inputs, labels) batches, got {type(loader).__name__}")
    try:
        empty = len(loader) == 0
    except TypeError:
        empty = False
    if empty:
        raise ValueError(f"{name} is empty: it yields no batch; check the data set and the batch size")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # The authors' code decays conv weights only (4-d tensors); BN, biases and the classifier are not decayed.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() == 4]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: str | torch.device | None = None) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy loss)`` of ``model`` on ``loader``, in eval mode. Chapter 02."""
    _check_loader(loader, "loader")
    device = torch.device(device) if device is not None else _device_of(model)
    check_finite_model(model, "evaluate")
    correct, total, loss_sum = 0, 0, 0.0
    with hooked(model, mode="eval"):  # every module's mode is restored afterwards, also on an error
        for batch_index, (inputs, labels) in enumerate(loader):
            inputs, labels = inputs.to(device), labels.to(device)
            check_finite_inputs(inputs, f"batch {batch_index} of the loader")
            logits = model(inputs)
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.numel()
    if total == 0:
        raise ValueError("loader is empty: it yielded no sample")
    return correct / total, loss_sum / total


def fit(
    model: nn.Module,
    train_loader,
    test_loader=None,
    epochs: int = 10,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 1e-5,
    momentum: float = 0.9,
    schedule: str = "cosine",
    seed: int | None = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` with surrogate gradients through time; return a :class:`History`. Chapter 02.

    Args:
        epochs: passes over ``train_loader``.
        lr, optimizer, weight_decay, momentum: ``"adam"`` (the authors' code, default) or ``"sgd"`` (the paper's
            Table 8 uses SGD with lr 0.1 at CIFAR scale); weight decay applies to conv weights only.
        schedule: ``"cosine"`` (decay to 0 over ``epochs``) or ``"constant"``.
        seed: seeds Python, NumPy and torch before training (None leaves the random state alone): the
            initial weights if the model is built after this call, dropout, random pruning. The order of the
            mini-batches is the loader's own: ``data.load(..., seed=s)`` seeds it.
        device: e.g. ``"cuda"``; default: where the model is.
        progress: show a tqdm progress bar per epoch.
        checkpoint: a file to save model and optimizer state to after every epoch (written atomically, so an
            interrupted run never leaves a broken file); an existing checkpoint there resumes the run.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    _check_loader(train_loader, "train_loader")
    if test_loader is not None:
        _check_loader(test_loader, "test_loader")
    if seed is not None:
        seed_everything(seed)
    if device is not None:
        model.to(device)
    device = _device_of(model)

    check_finite_model(model, "train")
    groups = _param_groups(model, weight_decay)
    opt = (
        torch.optim.Adam(groups, lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD(groups, lr=lr, momentum=momentum)
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1)) if schedule == "cosine" else None
    history = History()
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model)
        if state.get("optimizer") is not None:
            opt.load_state_dict(state["optimizer"])
        if state.get("history") is not None:  # a weights-only checkpoint starts a fresh history at epoch 0
            history = History(**state["history"])
        start_epoch = min(len(history.epoch), epochs)
        if sched is not None:
            # Rebuild the schedule for *this* run's length (the run may have been resumed with more epochs):
            # the cosine learning rate depends only on the epoch index.
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] = lr
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
            for _ in range(start_epoch):
                opt.step()  # a no-op without gradients; keeps the scheduler's order-of-calls check quiet
                sched.step()

    # Several processes (torchrun): every one trains a replica on its share of each batch (data.load(world=...));
    # DistributedDataParallel averages the gradients, so the replicas stay identical; only rank 0 saves.
    main = _dist.is_main()
    net = model
    if _dist.world()[1] > 1:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    for epoch in range(start_epoch, epochs):
        model.train()
        tic = time.perf_counter()
        loss_sum, correct, total = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress or not main, leave=False)
        for batch_index, (inputs, labels) in enumerate(bar):
            inputs, labels = inputs.to(device), labels.to(device)
            check_finite_inputs(inputs, f"batch {batch_index} of epoch {epoch + 1}")
            logits = net(inputs)
            loss = nn.functional.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} in epoch {epoch + 1}; lower lr (now {lr}) or check the input "
                    "data for NaN. The last good checkpoint (if any) is untouched."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.numel()
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
        history.epoch.append(epoch + 1)
        history.train_loss.append(loss_sum / total)
        history.train_accuracy.append(correct / total)
        history.lr.append(opt.param_groups[0]["lr"])
        if sched is not None:
            sched.step()
        _dist.broadcast_buffers(model)  # BatchNorm statistics: rank 0's in every replica
        if test_loader is not None:
            acc, test_loss = evaluate(model, test_loader, device)
            history.test_accuracy.append(acc)
            history.test_loss.append(test_loss)
        history.seconds.append(time.perf_counter() - tic)
        bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(
                f"parameters {bad[:3]} became NaN or inf in epoch {epoch + 1}; lower lr (now {lr}). "
                "The last good checkpoint (if any) is untouched."
            )
        if checkpoint is not None and main:
            save_checkpoint(checkpoint, model, opt, sched, history)
    return history


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, history: History | None = None) -> None:
    """Save model (and optimizer, scheduler, history) state atomically: a uniquely named temporary file in the same
    folder, fsync, then a rename (:mod:`qpsnn_lite._io`)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history.to_dict() if history is not None else None,
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path, model: nn.Module) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (safely: no code is executed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=_device_of(model), weights_only=True)
        model.load_state_dict(state["model"])
    except Exception as exc:  # truncated, tampered with, or from another architecture
        raise ValueError(
            f"the checkpoint {path} is corrupt or does not match this model ({type(exc).__name__}: {exc}); "
            "delete it to start afresh"
        ) from exc
    return state
