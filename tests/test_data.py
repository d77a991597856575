"""Tests of ``qpsnn_lite.data``: the offline digits set, and the torchvision sets read from tiny files written here in
the real on-disk formats (nothing is ever downloaded)."""
import collections
import math
import pickle
import struct

import numpy as np
import pytest
import torch
import torchvision
from torch.testing import assert_close

from qpsnn_lite import data

DIGITS_TOTAL, DIGITS_TEST = 1797, 360  # 20 % of 1797, rounded up by scikit-learn
DIGITS_TRAIN = DIGITS_TOTAL - DIGITS_TEST


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Fail loudly if anything in this file tries to fetch a data set."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download a data set")

    import torchvision.datasets.cifar
    import torchvision.datasets.mnist
    import torchvision.datasets.utils

    for module in (torchvision.datasets.utils, torchvision.datasets.mnist, torchvision.datasets.cifar):
        for name in ("download_url", "download_and_extract_archive"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64)


def _all(loader):
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


# ----------------------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------------------
def test_digits_sizes_and_stratified_split(digits):
    train, test = digits
    assert len(train.dataset) == DIGITS_TRAIN and len(test.dataset) == DIGITS_TEST
    assert len(train) == math.ceil(DIGITS_TRAIN / 64) and len(test) == math.ceil(DIGITS_TEST / 64)
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target, minlength=10)
    test_per_class = torch.bincount(test.dataset.tensors[1], minlength=10).numpy()
    train_per_class = torch.bincount(train.dataset.tensors[1], minlength=10).numpy()
    assert (train_per_class + test_per_class == per_class).all()
    assert np.abs(test_per_class - 0.2 * per_class).max() <= 1  # stratified


def test_digits_batches(digits):
    train, test = digits
    for loader in (train, test):
        images, labels = next(iter(loader))
        assert images.shape == (64, 1, 8, 8) and images.dtype == torch.float32
        assert labels.shape == (64,) and labels.dtype == torch.int64
    _, labels = _all(train)
    assert sorted(labels.unique().tolist()) == list(range(10))


def test_digits_normalised_with_training_statistics(digits):
    train, test = digits
    x_train, x_test = train.dataset.tensors[0], test.dataset.tensors[0]
    assert abs(x_train.mean().item()) < 1e-4
    assert x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    assert abs(x_test.mean().item()) < 0.1  # same statistics, not renormalised: close to but not exactly 0


def test_digits_split_covers_every_image_once_with_its_label(digits):
    # Undo the normalisation (pixel 0 and pixel 16 both occur in the training split) and compare, as a multiset of
    # (image, label) pairs, with scikit-learn's raw digits: nothing lost, duplicated, or mislabelled.
    train, test = digits
    x_train, y_train = train.dataset.tensors
    x_test, y_test = test.dataset.tensors
    low, high = x_train.min().item(), x_train.max().item()
    to_pixels = lambda x: torch.round((x.double() - low) / (high - low) * 16).long()  # noqa: E731
    raw = to_pixels(torch.cat([x_train, x_test]))
    assert_close((raw.double() / 16 * (high - low) + low).float(), torch.cat([x_train, x_test]))
    from sklearn.datasets import load_digits

    digits_raw = load_digits()
    ours = collections.Counter(
        (tuple(img.flatten().tolist()), int(lab)) for img, lab in zip(raw, torch.cat([y_train, y_test]))
    )
    theirs = collections.Counter(
        (tuple(int(v) for v in img.flatten()), int(lab)) for img, lab in zip(digits_raw.images, digits_raw.target)
    )
    assert ours == theirs


def test_digits_split_is_fixed_across_calls_and_seeds(digits):
    train, test = digits
    train2, test2 = data.load("digits", batch_size=32, seed=5)
    for a, b in zip(train.dataset.tensors + test.dataset.tensors, train2.dataset.tensors + test2.dataset.tensors):
        assert torch.equal(a, b)


def test_train_shuffling_follows_seed():
    first_epoch = lambda seed: _all(data.load("digits", batch_size=128, seed=seed)[0])[1]  # noqa: E731
    a, b, c = first_epoch(1), first_epoch(1), first_epoch(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a.sort().values, c.sort().values)


def test_train_loader_reshuffles_every_epoch_and_test_loader_does_not(digits):
    train, test = digits
    assert not torch.equal(_all(train)[1], _all(train)[1])
    assert torch.equal(_all(test)[1], test.dataset.tensors[1])


def test_digits_image_size():
    train, test = data.load("digits", batch_size=16, image_size=16)
    for loader in (train, test):
        assert next(iter(loader))[0].shape == (16, 1, 16, 16)
    same, _ = data.load("digits", batch_size=16, image_size=8)
    assert same.dataset.tensors[0].shape[-2:] == (8, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="imagenet"), "unknown data set"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=True), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(image_size=2), "image_size"),
        (dict(image_size=8.0), "image_size"),
        (dict(test_fraction=0.0), "test_fraction"),
        (dict(test_fraction=1.0), "test_fraction"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(**{"name": "digits", **kwargs})


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_image_size_is_for_digits_only(name, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        data.load(name, root=tmp_path, image_size=16)


# ----------------------------------------------------------------------------------------------------------------------
# torchvision sets from tiny files in the real formats
# ----------------------------------------------------------------------------------------------------------------------
def _write_idx_images(path, images):
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path, labels):
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes())


def make_mnist(root, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def _pickle(path, obj):
    # The real files are Python 2 pickles whose str keys torchvision reads back (encoding="latin1") as str "data",
    # "labels", ...; Python 3 bytes keys would stay bytes, so str keys are what reproduces the format as loaded.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar(root, hundred=False, per_batch=4, n_test=10):
    rng = np.random.default_rng(1)
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"

    def batch(n):
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n).tolist()
        entry = {"data": images, label_key: labels, "filenames": [f"img{i}.png" for i in range(n)]}
        if hundred:
            entry["coarse_labels"] = [label // 5 for label in labels]
        return entry

    if hundred:
        train = batch(5 * per_batch)
        _pickle(folder / "train", train)
        train_images, train_labels = train["data"], train[label_key]
        _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                                  "coarse_label_names": [f"s{i}" for i in range(20)]})
        test_name = "test"
    else:
        batches = [batch(per_batch) for _ in range(5)]
        for i, entry in enumerate(batches, 1):
            _pickle(folder / f"data_batch_{i}", entry)
        train_images = np.concatenate([b["data"] for b in batches])
        train_labels = sum((b[label_key] for b in batches), [])
        _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
        test_name = "test_batch"
    test = batch(n_test)
    _pickle(folder / test_name, test)
    return {"train": (train_images, train_labels), "test": (test["data"], test[label_key])}


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    # torchvision compares md5 sums with those of the real CIFAR files. Ours are in the real format but are not the
    # real bytes, so the checksum test is switched off (both the per-batch check and the one on the meta file).
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


def test_mnist_from_idx_files(tmp_path):
    written = make_mnist(tmp_path)
    train, test = data.load("mnist", batch_size=8, root=tmp_path)
    assert len(train.dataset) == 20 and len(test.dataset) == 10
    images, labels = next(iter(test))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # The test loader keeps file order: exact pixels after ToTensor and Normalize(0.1307, 0.3081).
    x_test, y_test = _all(test)
    expected = (torch.from_numpy(written["t10k"][0]).float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    assert_close(x_test, expected)
    assert y_test.tolist() == written["t10k"][1].tolist()
    x_train, y_train = _all(train)
    assert x_train.shape == (20, 1, 28, 28)
    assert abs(x_train.mean().item() - (127.5 / 255 - 0.1307) / 0.3081) < 0.1  # uniform random pixels
    assert sorted(y_train.tolist()) == sorted(written["train"][1].tolist())


@pytest.mark.parametrize("name, hundred", [("cifar10", False), ("cifar100", True)])
def test_cifar_from_pickled_batches(tmp_path, skip_cifar_md5, name, hundred):
    written = make_cifar(tmp_path, hundred=hundred)
    train, test = data.load(name, batch_size=4, root=tmp_path)
    assert len(train.dataset) == 20 and len(test.dataset) == 10
    images, labels = next(iter(train))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    x_test, y_test = _all(test)
    mean, std = data._STATS[name]
    raw = torch.from_numpy(written["test"][0]).float().reshape(-1, 3, 32, 32) / 255
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert_close(x_test, expected)
    assert y_test.tolist() == list(written["test"][1])
    if hundred:
        assert max(written["train"][1]) >= 10  # the fine labels (0..99), not the coarse ones, were read
    _, y_train = _all(train)
    assert sorted(y_train.tolist()) == sorted(written["train"][1])


@pytest.mark.parametrize("name, hundred", [("cifar10", False), ("cifar100", True)])
def test_cifar_augment_keeps_shape_and_leaves_test_alone(tmp_path, skip_cifar_md5, name, hundred):
    make_cifar(tmp_path, hundred=hundred)
    train, test = data.load(name, batch_size=20, root=tmp_path, augment=True)
    torch.manual_seed(0)
    images, labels = next(iter(train))
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (20,)
    assert torch.isfinite(images).all()
    _, plain_test = data.load(name, batch_size=20, root=tmp_path, augment=False)
    assert torch.equal(_all(test)[0], _all(plain_test)[0])


def test_fake_cifar_without_the_real_md5_is_reported_corrupt(tmp_path):
    make_cifar(tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_missing_dataset_says_download(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        data.load(name, root=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QPSNN_DATA", str(tmp_path / "elsewhere"))
    assert data.default_root() == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        data.load("mnist")
    make_mnist(tmp_path / "elsewhere")
    train, _ = data.load("mnist", batch_size=5)
    assert len(train.dataset) == 20


def test_cutout_zeroes_a_square_of_at_most_size():
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    out = data.Cutout(16)(img)
    assert torch.equal(img, torch.ones(3, 32, 32))  # input untouched
    zeroed = (out == 0).all(0)
    rows, cols = zeroed.any(1).sum().item(), zeroed.any(0).sum().item()
    assert 0 < rows <= 16 and 0 < cols <= 16 and zeroed.sum().item() == rows * cols


@pytest.mark.parametrize("batch_size", [32, 64])
def test_sharded_batches_are_the_single_process_batches(batch_size):
    # Under torchrun each rank takes its share of every global batch, in the single process's order, epoch after
    # epoch, also after a pass that stopped early (scoring takes a few batches).
    import itertools

    single, _ = data.load("digits", batch_size, image_size=8, seed=3)
    shards = [data.load("digits", batch_size, image_size=8, seed=3, world=(rank, 2))[0] for rank in (0, 1)]
    for stop in (None, 2, None, 1, None):
        expected = [x for x, _ in itertools.islice(single, stop)]
        parts = [[x for x, _ in itertools.islice(shard, stop)] for shard in shards]
        assert len(parts[0]) == len(parts[1]) == len(expected)
        assert all(torch.equal(x, torch.cat(pair)) for x, pair in zip(expected, zip(*parts)))
    with pytest.raises(ValueError, match="multiple of the 2 processes"):
        data.load("digits", 33, world=(0, 2))
