"""Tests of ``qpsnn_lite.train`` on a small subset of the digits (a few seconds in all)."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from qpsnn_lite import data, models, train

LR = 1e-2  # Adam; 3 epochs of 8 batches is enough to lower the loss of the tiny model clearly
FIELDS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits_subset():
    train_loader, test_loader = data.load("digits")
    x, y = train_loader.dataset.tensors
    x_test, y_test = test_loader.dataset.tensors
    return TensorDataset(x[:256], y[:256]), TensorDataset(x_test[:128], y_test[:128])


def _loaders(subset, seed=0):
    train_set, test_set = subset
    return (
        DataLoader(train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        DataLoader(test_set, batch_size=64),
    )


def _model(seed=0):
    torch.manual_seed(seed)
    return models.DigitsCNN(channels=(4, 8, 8, 8), T=2)


def _fit(subset, epochs=3, model=None, **kwargs):
    model = model if model is not None else _model()
    train_loader, test_loader = _loaders(subset)
    kwargs = {"lr": LR, "progress": False, **kwargs}
    return model, train.fit(model, train_loader, test_loader, epochs, **kwargs)


@pytest.fixture(scope="module")
def trained(digits_subset):
    return _fit(digits_subset)


def test_fit_lowers_the_training_loss(trained, digits_subset):
    model, history = trained
    assert history.train_loss[-1] < history.train_loss[0] - 0.05
    train_loader, _ = _loaders(digits_subset)
    _, untrained_loss = train.evaluate(_model(), train_loader)
    _, loss = train.evaluate(model, train_loader)
    assert loss < untrained_loss - 0.05


def test_history_has_one_entry_per_epoch(trained):
    _, history = trained
    assert history.epoch == [1, 2, 3]
    for name in FIELDS + ("seconds",):
        assert len(getattr(history, name)) == 3, name
    assert all(0 <= a <= 1 for a in history.train_accuracy + history.test_accuracy)
    assert all(math.isfinite(v) and v > 0 for v in history.train_loss + history.test_loss)
    assert history.final_accuracy == history.test_accuracy[-1]
    assert set(history.to_dict()) == set(FIELDS + ("seconds",))


def test_learning_rate_follows_cosine_decay(trained):
    _, history = trained
    expected = [LR * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]  # 1e-2, 7.5e-3, 2.5e-3
    assert history.lr == pytest.approx(expected, rel=1e-9)


def test_constant_schedule(digits_subset):
    _, history = _fit(digits_subset, epochs=2, schedule="constant")
    assert history.lr == [LR, LR]


def test_fit_is_reproducible_with_the_same_seed(trained, digits_subset):
    model, history = trained
    model2, history2 = _fit(digits_subset, seed=0)
    for name in FIELDS:
        assert getattr(history2, name) == getattr(history, name), name
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


def test_sgd_optimizer_trains(digits_subset):
    model, history = _fit(digits_subset, epochs=2, optimizer="sgd", lr=0.1, schedule="constant")
    assert history.lr == [0.1, 0.1] and all(math.isfinite(v) for v in history.train_loss)
    assert not torch.equal(model.classifier.weight, _model().classifier.weight)


def test_zero_epochs_leave_the_model_alone(digits_subset):
    model, history = _fit(digits_subset, epochs=0)
    assert history.epoch == [] and history.lr == []
    for a, b in zip(model.parameters(), _model().parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="empty"):
        history.final_accuracy


def test_evaluate(trained, digits_subset):
    model, _ = trained
    _, test_loader = _loaders(digits_subset)
    model.train()
    accuracy, loss = train.evaluate(model, test_loader)
    assert model.training  # mode restored
    assert 0 <= accuracy <= 1 and math.isfinite(loss) and loss > 0
    model.eval()
    with torch.no_grad():
        x, y = test_loader.dataset.tensors
        logits = model(x)
    assert accuracy == pytest.approx((logits.argmax(1) == y).double().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------------
def test_checkpoint_is_written_and_resumed(digits_subset, tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    model, first = _fit(digits_subset, epochs=2, checkpoint=path)
    assert path.is_file() and not path.with_name(path.name + ".tmp").exists()

    # Same number of epochs: nothing left to do, the checkpointed weights and history come back.
    fresh = _model(seed=123)
    _, again = _fit(digits_subset, epochs=2, model=fresh, checkpoint=path)
    assert again.to_dict() == first.to_dict()
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name

    # More epochs: the history continues from the checkpoint.
    resumed_model = _model(seed=7)
    _, resumed = _fit(digits_subset, epochs=3, model=resumed_model, checkpoint=path)
    assert resumed.epoch == [1, 2, 3]
    for name in FIELDS + ("seconds",):
        assert getattr(resumed, name)[:2] == getattr(first, name), name
        assert len(getattr(resumed, name)) == 3, name
    saved = torch.load(path, weights_only=True)
    assert saved["history"]["epoch"] == [1, 2, 3]


def test_resumed_extra_epoch_trains_with_positive_learning_rate(digits_subset, tmp_path):
    path = tmp_path / "checkpoint.pt"
    _fit(digits_subset, epochs=2, checkpoint=path)
    model = _model(seed=7)
    _, resumed = _fit(digits_subset, epochs=3, model=model, checkpoint=path)
    assert resumed.lr[2] > 0


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_checkpoint_raises_and_is_left_alone(digits_subset, tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    if content == "truncated":
        _fit(digits_subset, epochs=1, checkpoint=path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="delete it"):
        _fit(digits_subset, epochs=2, checkpoint=path)
    assert path.read_bytes() == content


def test_model_only_checkpoint_resumes_or_raises_a_clear_error(digits_subset, tmp_path):
    path = tmp_path / "checkpoint.pt"
    train.save_checkpoint(path, _model())
    try:
        _, history = _fit(digits_subset, epochs=1, checkpoint=path)
    except ValueError as exc:
        assert "checkpoint" in str(exc)
    else:
        assert history.epoch == [1]


def test_checkpoint_of_another_architecture_raises(digits_subset, tmp_path):
    path = tmp_path / "checkpoint.pt"
    train.save_checkpoint(path, models.DigitsCNN(channels=(2, 2, 2, 2)))
    with pytest.raises(ValueError, match="does not match this model"):
        train.load_checkpoint(path, _model())
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "missing.pt", _model())


# ----------------------------------------------------------------------------------------------------------------------
# Bad data and arguments
# ----------------------------------------------------------------------------------------------------------------------
def _nan_loader():
    x = torch.randn(32, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    return DataLoader(TensorDataset(x, torch.arange(32) % 10), batch_size=16)


def test_nan_loss_raises_before_saving(tmp_path):
    # A model that propagates NaN (a linear classifier) makes the loss NaN: fit must stop with FloatingPointError
    # before the epoch ends, so no checkpoint of the broken state is written.
    path = tmp_path / "checkpoint.pt"
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(FloatingPointError, match="NaN"):
        train.fit(model, _nan_loader(), epochs=1, progress=False, checkpoint=path)
    assert not path.exists()


def test_nan_input_raises_for_the_spiking_model():
    with pytest.raises(FloatingPointError):
        train.fit(_model(), _nan_loader(), epochs=1, progress=False)


def test_non_iterable_loader_raises_type_error():
    with pytest.raises(TypeError, match="train_loader must be an iterable"):
        train.fit(_model(), 5, epochs=1, progress=False)


def test_empty_loader_names_the_loader(digits_subset):
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    train_loader, test_loader = _loaders(digits_subset)
    with pytest.raises(ValueError, match="train_loader is empty"):
        train.fit(_model(), empty, epochs=1, progress=False)
    with pytest.raises(ValueError, match="test_loader is empty"):
        train.fit(_model(), train_loader, empty, epochs=1, progress=False)
    with pytest.raises(ValueError, match="loader is empty"):
        train.evaluate(_model(), empty)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=-1), "epochs"),
        (dict(epochs=1.5), "epochs"),
        (dict(epochs=True), "epochs"),
        (dict(lr=0), "lr"),
        (dict(lr=-1e-3), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(lr="1e-3"), "lr"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(schedule="step"), "schedule"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_bad_arguments_raise(digits_subset, kwargs, match):
    train_loader, _ = _loaders(digits_subset)
    model = _model()
    before = [p.clone() for p in model.parameters()]
    args = {"epochs": 1, **kwargs}
    epochs = args.pop("epochs")
    with pytest.raises(ValueError, match=match):
        train.fit(model, train_loader, None, epochs, progress=False, **args)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_seed_everything_repeats_random_draws():
    train.seed_everything(3)
    a = torch.rand(3)
    train.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        train.seed_everything(True)


def _poisoned(where: str):
    torch.manual_seed(0)
    model = models.build("digits_cnn", 10, channels=(4, 4, 4, 4))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    if where == "input":
        x[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        if where == "weight":
            model.features.stem.conv.weight.view(-1)[0] = float("inf")
        if where == "running_mean":
            model.features.block2.bn.running_mean[0] = float("nan")
    return model, [(x, y)]


@pytest.mark.parametrize("where", ["input", "weight", "running_mean"])
def test_evaluate_and_score_refuse_non_finite_values(where):
    # Issue 14, class 3: a spike turns NaN into 0, so NaN inputs, weights or BN statistics gave finite-looking
    # accuracies and pruning scores.
    from qpsnn_lite import prune

    model, loader = _poisoned(where)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        train.evaluate(model, loader)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        prune.score(model, loader, "svs", batches=1)
