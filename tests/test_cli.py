"""The command line, run in-process through ``main(argv)``: help, bad flags (exit 2), presets, and tiny runs that
write parseable JSON."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from qpsnn_lite import pipeline
from qpsnn_lite.__main__ import build_parser, main


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--epochs", "1", "--finetune-epochs", "1", "--channels", "4,8,8,8", "--T", "1", "--image-size", "8",
        "--batch-size", "256", "--score-batches", "1", "--quiet"]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "python -m qpsnn_lite run" in out and "ablation --seeds 3" in out


@pytest.mark.parametrize("command", ["run", "ablation"])
def test_subcommand_help_lists_every_config_field(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(pipeline.Config):
        assert "--" + f.name.replace("_", "-") in out, f.name


@pytest.mark.parametrize("argv,message", [
    (["run", "--bits", "0"], "bit width in 1..16"),
    (["run", "--bits", "four"], "expected a bit width"),
    (["run", "--ratio", "1.0"], "[0, 1)"),
    (["run", "--ratio", "stem=1.5"], "[0, 1)"),
    (["run", "--preset", "imagenet-resnet50"], "invalid choice"),
    (["run", "--dataset", "imagenet"], "invalid choice"),
    (["run", "--epochs", "0"], "expected an integer >= 1"),
    (["run", "--channels", "4,8"], "four positive integers"),
    (["run", "--gamma", "median"], "expected one of mean, max, percentile or none"),
    (["run", "--lr", "-1"], "expected a number > 0"),
    (["run", "--no-such-flag"], "unrecognized arguments"),
    (["run", "--model", "digits_cnn", "--prune-config", "A"], "prune_config"),
    (["run", "--dataset", "cifar10", "--image-size", "16"], "image_size"),
    (["ablation", "--seeds", "0"], "number of seeds"),
    (["run", "--threads", "0"], "number of threads"),
    (["presets", "imagenet"], "unknown preset"),
    ([], "required"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unavailable_device_is_an_argument_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--preset", "cifar10-resnet20-A"])  # the paper's preset asks for a GPU
    assert exit_info.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_presets_listing_and_one_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in pipeline.PRESETS:
        assert name in out
    assert max(map(len, out.splitlines())) <= 88  # the book shows the listing at about 90 columns
    assert main(["presets", "cifar100-resnet20-ablation"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["dataset"], record["model"], record["bits"], record["prune_config"]) == \
        ("cifar100", "resnet20", 2, "B")
    assert pipeline.Config.from_dict(record) == pipeline.PRESETS["cifar100-resnet20-ablation"]


class _Stub:
    def table(self) -> str:
        return "stub table"


def test_flags_override_the_preset(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run(config, progress=True):
        seen["config"], seen["progress"] = config, progress
        return _Stub()

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--preset", "cifar100-resnet20-B", "--device", "cpu", "--epochs", "2", "--ratio", "0.3",
            "--gamma", "none", "--no-augment", "--quiet", "--threads", "1"]
    assert main(argv) == 0
    config = seen["config"]
    assert (config.dataset, config.model, config.T, config.finetune_epochs) == ("cifar100", "resnet20", 2, 150)
    assert (config.epochs, config.ratio, config.prune_config, config.gamma, config.augment) == (2, 0.3, None, None,
                                                                                             False)
    assert config.output_dir.startswith("runs") and seen["progress"] is False  # default runs/<timestamp>
    assert "stub table" in capsys.readouterr().out
    assert main(["run", "--ratio", "features.stem.conv=0.25,features.block2.conv=0.5", "--output-dir", "none",
                 "--bits", "none", "--T", "none"]) == 0
    config = seen["config"]
    assert config.ratio == {"features.stem.conv": 0.25, "features.block2.conv": 0.5}
    assert config.output_dir is None and config.bits is None and config.T is None


def test_run_writes_parseable_json(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["run", *TINY, "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "model size, paper rule (MB)" in out and "wrote" in out
    record = json.loads((out_dir / "result.json").read_text())
    assert record["config"]["epochs"] == 1 and record["config"]["channels"] == [4, 8, 8, 8]
    assert 0 <= record["accuracy_finetuned"] <= 1
    assert (out_dir / "model.safetensors").stat().st_size > 0 and (out_dir / "accuracy.png").exists()


def test_ablation_writes_parseable_json(tmp_path, capsys, monkeypatch):
    # One seed, and fine-tuning skipped, keeps this a few seconds; test_pipeline runs the full ablation.
    out_dir = tmp_path / "ablation"
    assert main(["ablation", "--seeds", "1", *TINY, "--finetune-epochs", "0", "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "ReScaW + SVS (QP-SNN)" in out and "73.89" in out
    record = json.loads((out_dir / "ablation.json").read_text())
    assert [r["row"] for r in record["rows"]] == list("ABCDEF") and record["seeds"] == [0]


def test_parser_builds_without_running_anything():
    parser = build_parser()
    args = parser.parse_args(["run", "--bits", "2"])
    assert args.bits == 2 and not hasattr(args, "epochs")  # unset flags do not override a preset


def test_interrupted_run_says_how_to_resume(monkeypatch, tmp_path, capsys):
    def interrupted_run(config, progress=True):
        (tmp_path / "checkpoints").mkdir()  # what pipeline.run leaves after a finished epoch
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted_run)
    assert main(["run", "--output-dir", str(tmp_path), "--quiet"]) == 130
    error = capsys.readouterr().err
    assert "interrupted" in error and f"--output-dir {tmp_path} to resume" in error


# Issue 14, class 7: file-system problems, no network and late argument errors are user errors: exit 2, one
# message, nothing written.
def _status(argv) -> int:
    """main's exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_output_dir_under_a_regular_file_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _status(["run", *TINY, "--output-dir", str(tmp_path / "file" / "run")]) == 2
    error = capsys.readouterr().err
    assert "error:" in error and "Traceback" not in error and "output-dir" in error


def test_unwritable_output_dir_exits_2(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    real_access = os.access  # root may write anywhere: make the folder look read-only to it too
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(folder) else real_access(path, mode))
    try:
        assert _status(["run", *TINY, "--output-dir", str(folder / "run")]) == 2
    finally:
        folder.chmod(0o755)
    assert "cannot write" in capsys.readouterr().err and not (folder / "run").exists()


def test_download_without_network_exits_2(tmp_path, capsys, monkeypatch):
    import urllib.error

    import torchvision

    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    monkeypatch.setenv("QPSNN_DATA", str(tmp_path / "data"))
    assert _status(["run", "--epochs", "1", "--dataset", "mnist", "--download", "--quiet",
                 "--output-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "download" in error and "Traceback" not in error and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags,message", [
    (["--ratio", "features.block9.conv=0.5"], "unknown conv"),
    (["--ratio", "0.8"], "would leave features.stem.conv"),
])
def test_argument_errors_found_before_training_exit_2(flags, message, tmp_path, capsys, monkeypatch):
    from qpsnn_lite import train

    monkeypatch.setattr(train, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("training started")))
    assert _status(["run", *TINY, *flags, "--output-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["ablation"], ["presets"]])
def test_help_fits_the_books_page_width(command, capsys, monkeypatch):
    """Chapter 07 prints `run --help`; the page shows about 90 columns of output."""
    monkeypatch.setenv("COLUMNS", "80")  # what a notebook's subprocess and a CI log see
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 88, out
