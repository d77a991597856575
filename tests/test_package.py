"""The package's architecture: no import cycle, shared helpers (atomic writes, the hooked context), knobs declared
once, criteria as plug-ins that reach pipeline.run and the command line."""
from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from qpsnn_lite import _io, models, pipeline, prune, quant
from qpsnn_lite._hooks import hooked
from qpsnn_lite.__main__ import load_plugins, main
from qpsnn_lite.knobs import knob_of

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PACKAGE = Path(__file__).resolve().parents[1] / "qpsnn_lite"
TINY = dict(epochs=1, finetune_epochs=1, channels=(4, 8, 8, 8), T=1, image_size=8, batch_size=256, score_batches=1)
TINY_FLAGS = ["--epochs", "1", "--finetune-epochs", "1", "--channels", "4,8,8,8", "--T", "1", "--image-size", "8",
              "--batch-size", "256", "--score-batches", "1", "--quiet", "--output-dir", "none"]


# ------------------------------------------------------------------------------------------------------------------
# Imports: a layered package
# ------------------------------------------------------------------------------------------------------------------
def _package_imports(tree: ast.Module, name: str) -> set[str]:
    """Sibling modules imported by the top-level statements of a module of the package."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qpsnn_lite"):
            found.add((node.module.split(".") + [""])[1] or name)
    return found - {name}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in PACKAGE.glob("*.py")}


def test_top_level_imports_form_no_cycle():
    modules = _modules()
    graph = {name: _package_imports(tree, name) & set(modules) for name, tree in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [name, other]))
            if other not in state:
                visit(other, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert "prune" not in graph["export"] and "models" in graph["export"]
    assert "models" not in graph["architectures"] and "layers" in graph["architectures"]


def test_function_level_imports_say_why():
    """An import inside a function only where a cycle or an optional/heavy dependency needs it, with its reason."""
    for name, tree in _modules().items():
        if name == "widgets":
            continue  # widgets.py belongs to another developer (its imports of ipywidgets are optional)
        lines = (PACKAGE / f"{name}.py").read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        text = lines[inner.lineno - 1]
                        previous = lines[inner.lineno - 2] if inner.lineno > 1 else ""
                        assert "#" in text or previous.strip().startswith("#"), \
                            f"{name}.py:{inner.lineno}: a function-level import without its reason: {text.strip()}"


# widgets.py and fused.py belong to other developers right now; their references are theirs to fix.
@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("widgets", "fused")))
def test_no_module_points_outside_the_repository(module):
    text = (PACKAGE / f"{module}.py").read_text()
    for outside in ("QP-SNN-METHOD", "design notes", "../shared", "WIDGETS.md", "of the notes"):
        assert outside not in text, f"{module}.py refers to {outside!r}, which is not in the repository"


# ------------------------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------------------------
def test_hooked_restores_modes_and_removes_hooks_on_an_exception():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model.train()
    model[1].eval()  # a submodule in another mode than its parent must get its own mode back
    calls = []
    with pytest.raises(RuntimeError, match="boom"):
        with hooked(model, [(model[0], "forward", lambda m, i, o: calls.append(1))], mode="eval"):
            assert not model.training and not model[0].training
            model(torch.zeros(3, 2))
            raise RuntimeError("boom")
    assert calls == [1]
    assert model.training and model[0].training and not model[1].training
    assert not model[0]._forward_hooks
    model(torch.zeros(3, 2))
    assert calls == [1]


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    _io.write_text(target, "old")

    def failing(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write(target, failing)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    _io.write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_bit_width_rule_is_one_everywhere():
    from qpsnn_lite import export, metrics

    net = models.build("digits_cnn", num_classes=10)
    for call in (lambda b: quant.levels(b), lambda b: export.pack_codes(torch.zeros(3, dtype=torch.long), b),
                 lambda b: metrics.model_size_mb(net, b)):
        with pytest.raises(ValueError, match=r"bits must be an integer in 1\.\.16"):
            call(17)
    assert metrics.model_size_mb(net, 32) > metrics.model_size_mb(net, 16)  # 32: the full-precision size


def test_quantized_layer_checks_its_settings_when_they_change():
    conv = quant.QuantConv2d(2, 3, 3, bits=4)
    with pytest.raises(ValueError, match="bits"):
        conv.bits = 0
    with pytest.raises(ValueError, match="gamma"):
        conv.gamma = "median"
    conv.bits = 2
    assert conv(torch.randn(1, 2, 5, 5)).shape == (1, 3, 3, 3)
    torch.testing.assert_close(conv.quantized_weight(), quant.quantize(conv.weight.detach(), 2, "mean"))


# ------------------------------------------------------------------------------------------------------------------
# Knobs declared once
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [
    ("bits", 17, "Config.bits must be None or a bit width in 1..16, got 17"),
    ("tau", 0.0, "Config.tau must be a number > 0 and <= 1, got 0.0"),
    ("epochs", 0, "Config.epochs must be an integer >= 1, got 0"),
    ("granularity", "kernel", "Config.granularity must be one of 'channel', 'layer', got 'kernel'"),
    ("augment", 1, "Config.augment must be True or False, got 1"),
])
def test_generated_validation_names_the_field_and_its_range(field, value, message):
    with pytest.raises(ValueError) as error:
        pipeline.Config(**{field: value})
    assert str(error.value) == message


def test_every_field_has_one_declaration_used_by_docstring_and_cli(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(pipeline.Config):
        spec = knob_of(f)
        assert spec.help.split(" (")[0][:30] in " ".join(out.split()), f.name
        assert f"        {f.name}: " in pipeline.Config.__doc__


# ------------------------------------------------------------------------------------------------------------------
# Criteria as plug-ins
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def peak_criterion():
    @prune.register_criterion("test_peak", description="largest spike count of a neuron of the channel")
    def peak(activity):
        return activity.spikes.sum(0).amax((-2, -1)).double()

    yield "test_peak"
    del prune.CRITERIA["test_peak"]


def test_a_registered_criterion_runs_through_the_pipeline(peak_criterion):
    result = pipeline.run(pipeline.Config(criterion=peak_criterion, **TINY), progress=False)
    assert result.config["criterion"] == peak_criterion
    assert result.channels_pruned["features.stem.conv"] == 2


def test_a_registered_criterion_runs_through_the_cli(peak_criterion, capsys):
    assert main(["run", "--criterion", peak_criterion, *TINY_FLAGS]) == 0
    assert f"{peak_criterion} pruning" in capsys.readouterr().out


def test_an_unregistered_criterion_is_refused_by_config_and_cli(capsys):
    with pytest.raises(ValueError, match="Config.criterion must be one of"):
        pipeline.Config(criterion="test_never_registered")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--criterion", "test_never_registered"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_plugins_named_in_the_environment_are_imported(tmp_path, monkeypatch):
    (tmp_path / "qpsnn_test_plugin.py").write_text(
        "from qpsnn_lite import prune\n"
        "prune.register_criterion('test_plugin', needs_data=False)(lambda a: a.layer.conv.weight.detach().abs()"
        ".sum((1, 2, 3)).double())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("QPSNN_PLUGINS", "qpsnn_test_plugin")
    try:
        assert load_plugins() == ["qpsnn_test_plugin"]
        assert "test_plugin" in pipeline.Config(criterion="test_plugin").criterion
    finally:
        prune.CRITERIA.pop("test_plugin", None)


def test_a_criterion_brings_its_own_tie_break():
    model = models.build("digits_cnn", num_classes=10, channels=(4, 8, 8, 8), T=2)
    x = torch.rand(3, 1, 8, 8) * 3

    @prune.register_criterion("test_constant", tie_breaks={"by_l1": lambda a: prune.l1_norm_score(a.layer.conv)
                                                           .expand(a.spikes.shape[1], -1)},
                              finalize=lambda sums, total, tie: sums["score"] / total
                              + (0 if tie is None else 1e-3 * sums[tie] / total))
    def constant(activity):
        return torch.ones(activity.spikes.shape[1], activity.spikes.shape[2], dtype=torch.float64)

    try:
        plain = prune.score(model, [x], "test_constant", batches=1)
        broken = prune.score(model, [x], "test_constant", batches=1, tie_break="by_l1")
        assert torch.equal(plain["features.stem.conv"], torch.ones(4, dtype=torch.float64))
        l1 = prune.l1_norm_score(model.features.stem.conv)
        assert torch.equal(broken["features.stem.conv"].argsort(), l1.argsort())
        with pytest.raises(ValueError, match="tie_break"):
            prune.score(model, [x], "sca", tie_break="by_l1")
    finally:
        del prune.CRITERIA["test_constant"]
