"""Data sets as (train_loader, test_loader) pairs.

Taught in chapter 02. ``"digits"`` (scikit-learn's 1,797 real 8x8 handwritten digits) ships with scikit-learn and
works offline; it is the book's default. ``"mnist"``, ``"cifar10"`` and ``"cifar100"`` come through torchvision and are
downloaded only when you pass ``download=True`` (for example on Colab).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


from ._checks import UsageError

__all__ = ["load", "DATASETS", "NUM_CLASSES", "default_root", "Cutout", "ShardedBatches"]

DATASETS = ("digits", "mnist", "cifar10", "cifar100")
NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "cifar100": 100}

# Per-channel statistics of the training sets, for normalisation.
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def default_root() -> Path:
    """Where torchvision data sets live: ``$QPSNN_DATA`` or ``~/.cache/qpsnn_lite/data``."""
    return Path(os.environ.get("QPSNN_DATA", Path.home() / ".cache" / "qpsnn_lite" / "data"))


def load(
    name: str = "digits",
    batch_size: int = 64,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    test_fraction: float = 0.2,
    world: tuple[int, int] = (0, 1),
) -> tuple[DataLoader, DataLoader]:
    """Return ``(train_loader, test_loader)`` yielding ``(images [B, C, H, W], labels [B])``.

    Args:
        name: ``"digits"`` (offline, default), ``"mnist"``, ``"cifar10"`` or ``"cifar100"``.
        batch_size: mini-batch size of both loaders.
        root: folder of the torchvision data sets (default :func:`default_root`).
        download: let torchvision download a missing data set (needs internet; never in tests).
        image_size: resize the digits from 8x8 to ``image_size`` x ``image_size`` (bilinear). Larger maps give the
            SVS criterion of chapter 06 more room (the rank of an 8x8 map is at most 8).
        augment: CIFAR training augmentation of the paper (random crop with padding 4, horizontal flip, AutoAugment,
            Cutout of 16 px).
        seed: seeds the shuffling of the training loader (and the fixed digits split, which uses seed 0 always).
        test_fraction: share of the digits held out for testing (stratified, fixed).
        world: ``(rank, world_size)`` of a run over several processes (``torchrun``): the training loader then
            yields rank's share of every global batch of ``batch_size`` samples (which ``world_size`` must divide),
            in the order a single process would draw them (:class:`ShardedBatches`); the test loader is the whole
            test set in every process.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4):
        raise ValueError(f"image_size must be None or an integer >= 4, got {image_size!r}")
    generator = torch.Generator().manual_seed(seed)
    if name == "digits":
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        train_set, test_set = _digits(image_size, test_fraction)
    else:
        if image_size is not None:
            raise ValueError("image_size applies to 'digits' only; torchvision sets keep their native size")
        train_set, test_set = _torchvision(name, Path(root) if root is not None else default_root(), download, augment)
    rank, world_size = world
    if world_size > 1:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} (the global batch) must be a multiple of the {world_size} "
                             "processes")
        batches = ShardedBatches(len(train_set), batch_size, rank, world_size, generator)
        train_loader = DataLoader(train_set, batch_sampler=batches, generator=generator, num_workers=num_workers)
    else:
        train_loader = DataLoader(
            train_set, batch_size=batch_size, shuffle=True, generator=generator, num_workers=num_workers
        )
    test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return train_loader, test_loader


class ShardedBatches:
    """A batch sampler for one of ``world_size`` processes: the global batches a single process would draw (a
    ``torch.randperm`` of the data set from ``generator`` per epoch, cut into batches of ``batch_size``), of which
    this ``rank`` takes its contiguous share (``batch_size / world_size`` samples; the last, smaller batch is split
    as evenly as possible, and dropped if it has fewer samples than processes, so that every process runs the same
    number of steps). Together the processes see exactly the single process's batches."""

    def __init__(self, size: int, batch_size: int, rank: int, world_size: int, generator: torch.Generator) -> None:
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.generator = generator

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (rest >= self.world_size)

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator)  # what RandomSampler draws in one process
        batches = [order[start:start + self.batch_size] for start in range(0, self.size, self.batch_size)]
        # RandomSampler draws a second permutation for its (empty) remainder of num_samples % n samples when asked for
        # the index after the last one: before the last, partial batch, or after the last batch when every batch is
        # full. Draw it at the same point, so the generator stays in step with a single process's, epoch after epoch
        # (also when a pass stops early, as scoring's does).
        partial = self.size % self.batch_size != 0
        for i, batch in enumerate(batches):
            if partial and i == len(batches) - 1:
                torch.randperm(self.size, generator=self.generator)
            if batch.numel() >= self.world_size:
                yield torch.tensor_split(batch, self.world_size)[self.rank].tolist()
        if not partial:
            torch.randperm(self.size, generator=self.generator)


def _digits(image_size: int | None, test_fraction: float) -> tuple[TensorDataset, TensorDataset]:
    # scikit-learn is imported only for the digits (a slow import the other data sets do not need)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split  # (see above)

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values 0..16 -> [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=0, stratify=digits.target
    )

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).unsqueeze(1)  # [N, 1, 8, 8]
        if image_size is not None and image_size != t.shape[-1]:
            t = torch.nn.functional.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return t

    train_images, test_images = to_tensor(x_train), to_tensor(x_test)
    mean, std = train_images.mean(), train_images.std()  # statistics of the training split only
    return (
        TensorDataset(((train_images - mean) / std).contiguous(), torch.from_numpy(y_train).long()),
        TensorDataset(((test_images - mean) / std).contiguous(), torch.from_numpy(y_test).long()),
    )


class Cutout:
    """Zero one random square of ``size`` pixels in a ``[C, H, W]`` tensor (DeVries and Taylor 2017), as the paper's
    CIFAR augmentation."""

    def __init__(self, size: int = 16) -> None:
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(0, y - self.size // 2), min(h, y + self.size // 2)
        x0, x1 = max(0, x - self.size // 2), min(w, x + self.size // 2)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0
        return img


def _torchvision(name: str, root: Path, download: bool, augment: bool):
    from torchvision import datasets, transforms  # only MNIST/CIFAR need torchvision (a slow import)

    mean, std = _STATS[name]
    normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    train_ops: list = []
    if augment and name.startswith("cifar"):
        train_ops = [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10),
        ]
    train_tf = transforms.Compose(train_ops + normalize + ([Cutout(16)] if augment and name.startswith("cifar") else []))
    test_tf = transforms.Compose(normalize)
    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(root), train=True, transform=train_tf, download=download)
        test = cls(str(root), train=False, transform=test_tf, download=download)
    except (OSError, RuntimeError) as exc:
        if download:  # no network (urllib's URLError is an OSError; torchvision: "Error downloading ..."), no space
            raise UsageError(
                f"could not download {name} into {root} ({type(exc).__name__}: {exc}); check the internet "
                f"connection and the free space there, or copy the data set into {root} (or point $QPSNN_DATA at a "
                "folder that has it) and run without --download"
            ) from exc
        # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise FileNotFoundError(
            f"{name} was not found (or is corrupt) under {root}. Pass download=True to fetch it (needs internet, "
            f"e.g. on Colab), or point root= (or $QPSNN_DATA) at a folder that has it. torchvision said: {exc}"
        ) from exc
    return train, test
