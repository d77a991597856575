"""pipeline: Config validation, presets, the paper's per-layer ratios mapped onto conv names, quantize_model, and
tiny end-to-end runs (QP and PQ order, the A-F ablation with its model reuse)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from qpsnn_lite import data, export, metrics, models, pipeline, prune, quant, train


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# A run of a few seconds: tiny widths, one time step, 8x8 digits, large batches, one epoch per stage.
TINY = dict(epochs=1, finetune_epochs=1, channels=(4, 8, 8, 8), T=1, image_size=8, batch_size=256, score_batches=1)


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
def test_defaults_are_the_digits_setting():
    config = pipeline.Config()
    assert (config.dataset, config.model, config.bits, config.gamma, config.criterion, config.order) == \
        ("digits", "digits_cnn", 4, "mean", "svs", "qp")
    assert config.ratio == 0.5 and config.prune_config is None and config.score_batches == 5
    assert config.device == "cpu" and config.output_dir is None and config.download is False
    assert pipeline.PRESETS["digits"] == config


@pytest.mark.parametrize("changes,field", [
    (dict(bits=0), "bits"),
    (dict(bits=17), "bits"),
    (dict(bits=4.0), "bits"),
    (dict(ratio=1.0), "ratio"),
    (dict(ratio=-0.1), "ratio"),
    (dict(ratio={"features.stem.conv": 1.0}), "ratio"),
    (dict(dataset="imagenet"), "dataset"),
    (dict(model="alexnet"), "model"),
    (dict(gamma="median"), "gamma"),
    (dict(granularity="kernel"), "granularity"),
    (dict(ste="smooth"), "ste"),
    (dict(criterion="taylor"), "criterion"),
    (dict(order="both"), "order"),
    (dict(epochs=0), "epochs"),
    (dict(finetune_epochs=-1), "finetune_epochs"),
    (dict(T=0), "T"),
    (dict(lr=0.0), "lr"),
    (dict(tau=1.5), "tau"),
    (dict(batch_size=0), "batch_size"),
    (dict(score_batches=0), "score_batches"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(seed=-1), "seed"),
    (dict(device="toaster"), "device"),
    (dict(num_workers=-1), "num_workers"),
    (dict(download="yes"), "download"),
    (dict(channels=(4, 8)), "channels"),
    (dict(output_dir=""), "output_dir"),
    (dict(dataset="cifar10", image_size=16), "image_size"),
    (dict(prune_config="A"), "prune_config"),
    (dict(model="vgg16", prune_config="C"), "prune_config"),
    (dict(model="resnet20", channels=(4, 4, 4, 4)), "channels"),
    (dict(order="pq", bits=None), "order"),
])
def test_bad_fields_are_named(changes, field):
    with pytest.raises(ValueError, match=field):
        pipeline.Config(**changes)


def test_round_trip_through_dict():
    config = pipeline.Config(channels=(4, 8, 8, 8), ratio={"features.stem.conv": 0.25}, output_dir="out")
    record = json.loads(json.dumps(config.to_dict()))
    assert pipeline.Config.from_dict(record) == config
    with pytest.raises(ValueError, match="unknown Config field"):
        pipeline.Config.from_dict({"epoch": 3})


def test_presets_are_the_papers_settings():
    for name, config in pipeline.PRESETS.items():
        config.validate()
        assert name in pipeline.PRESET_NOTES
        if name == "digits":
            continue
        assert (config.epochs, config.finetune_epochs, config.batch_size) == (300, 150, 256)
        assert (config.optimizer, config.lr, config.finetune_optimizer, config.finetune_lr) == ("sgd", 0.1, "adam", 1e-3)
        assert config.T == (2 if config.model == "resnet20" else 4) and config.augment
        assert config.num_workers == 2  # CIFAR augmentation off the main process
    assert pipeline.PRESETS["cifar100-resnet20-ablation"].bits == 2
    assert pipeline.PRESETS["cifar100-resnet20-ablation"].prune_config == "B"
    assert pipeline.PRESETS["cifar100-resnet20-pq"].order == "pq"
    assert pipeline.preset("cifar10-vgg16-B", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="unknown preset"):
        pipeline.preset("imagenet")


# ----------------------------------------------------------------------------------------------------------------
# The paper's per-layer ratios on the conv names prune.score uses
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,dataset,config,size_4bit", [
    ("resnet20", "cifar100", "A", 3.35),  # residual stages share keep-sets; VGG-16 B is covered in test_export
])
def test_prune_config_reproduces_the_papers_widths_and_size(name, dataset, config, size_4bit):
    cfg = pipeline.Config(dataset=dataset, model=name, prune_config=config, T=1, image_size=None, bits=None)
    torch.manual_seed(0)
    model = pipeline.build_model(cfg)
    ratios = pipeline.layer_ratios(cfg, model)
    scores = prune.score(model, None, "l1")
    assert list(ratios) == list(scores)  # exactly the names prune.score keys by
    pruned = prune.apply(model, scores, ratios)
    reference = models.build(name, data.NUM_CLASSES[dataset], T=1, prune_config=config)
    assert [m.out_channels for _, m in metrics.conv_layers(pruned)] == reference.conv_widths
    assert round(metrics.model_size_mb(pruned, 4), 2) == size_4bit  # Table 1


def test_quantize_model_converts_every_conv_but_the_first():
    torch.manual_seed(0)
    fp = models.build("digits_cnn", 10)
    q = pipeline.quantize_model(fp, 2, "mean")
    convs = metrics.conv_layers(q)
    assert type(convs[0][1]) is nn.Conv2d
    assert all(isinstance(m, quant.QuantConv2d) and m.bits == 2 for _, m in convs[1:])
    for (_, a), (_, b) in zip(metrics.conv_layers(fp), convs):
        assert torch.equal(a.weight, b.weight)
    assert type(metrics.conv_layers(fp)[1][1]) is nn.Conv2d  # the original is untouched


# ----------------------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qp_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qp")
    return pipeline.run(pipeline.Config(**TINY, output_dir=str(folder)), progress=False), folder


def test_run_reports_everything(qp_run):
    result, folder = qp_run
    for accuracy in (result.accuracy_trained, result.accuracy_pruned, result.accuracy_finetuned):
        assert 0.0 <= accuracy <= 1.0
    assert result.channels_dense == {"features.stem.conv": 4, "features.block2.conv": 8,
                                     "features.block3.conv": 8, "features.block4.conv": 8}
    assert result.channels_pruned == {"features.stem.conv": 2, "features.block2.conv": 4,
                                      "features.block3.conv": 4, "features.block4.conv": 8}  # the last conv stays
    assert result.ratios["features.stem.conv"] == 0.5 and result.ratios["features.block4.conv"] == 0.0
    assert result.size_mb_pruned < result.size_mb_dense < result.size_mb_full_precision
    assert result.parameters_pruned < result.parameters_dense
    # connections: block2 4x2 of 8x4, block3 4x4 of 8x8, block4 8x4 of 8x8 kernels
    assert result.connection_percent == pytest.approx(100 * (8 + 16 + 32) / (32 + 64 + 64))
    assert set(result.firing_rates) == {"features.stem.lif", "features.block2.lif", "features.block3.lif",
                                        "features.block4.lif"}
    assert result.sops_pruned >= 0 and result.energy_mj_pruned > 0
    assert result.energy["e_mac_pj"] == 4.6 and "conventions" in result.energy
    assert {"data", "train", "score", "prune", "finetune", "measure", "write", "total"} <= set(result.seconds)
    assert len(result.history_train["test_accuracy"]) == 1 and len(result.history_finetune["test_accuracy"]) == 1
    assert "accuracy right after pruning" in result.table()


def test_run_writes_json_model_and_figures(qp_run):
    result, folder = qp_run
    assert sorted(p.name for p in folder.iterdir()) == ["accuracy.png", "channels.png", "model.safetensors",
                                                        "result.json"]
    record = json.loads((folder / "result.json").read_text())
    assert record["accuracy_finetuned"] == result.accuracy_finetuned and record["config"]["epochs"] == 1
    assert pipeline.Result.load(folder / "result.json") == result
    assert result.export["paper_size_mb"] == pytest.approx(result.size_mb_pruned)
    # the exported network is the fine-tuned one: same test accuracy
    _, test_loader = data.load("digits", 256, image_size=8)
    accuracy, _ = train.evaluate(export.load(folder / "model.safetensors"), test_loader)
    assert accuracy == result.accuracy_finetuned


def _interrupt_after_first_checkpoint(monkeypatch):
    """Make the next train.fit stop (as if the machine went away) right after it saved its first checkpoint."""
    real_save = train.save_checkpoint

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        monkeypatch.setattr(train, "save_checkpoint", real_save)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop)


def _interrupted_run(monkeypatch, folder, epochs: int):
    """A TINY run into ``folder`` stopped after its first training epoch: (its config, the checkpoint's path)."""
    config = pipeline.Config(**{**TINY, "epochs": epochs}, output_dir=str(folder))
    _interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    return config, folder / "checkpoints" / "train.pt"


def test_interrupted_run_resumes_after_its_last_epoch(monkeypatch, tmp_path):
    config, checkpoint = _interrupted_run(monkeypatch, tmp_path, epochs=3)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["history"]["epoch"] == [1] and not (tmp_path / "result.json").exists()

    epochs_trained = []
    real_fit = train.fit

    def recording_fit(model, train_loader, test_loader=None, epochs=10, **kwargs):
        history = real_fit(model, train_loader, test_loader, epochs, **kwargs)
        epochs_trained.append(history.epoch)
        return history

    monkeypatch.setattr(train, "fit", recording_fit)
    result = pipeline.run(config.replace(device="cpu"), progress=False)
    # training went on from epoch 2 (epoch 1 comes from the checkpoint), then the fine-tune ran in full
    assert epochs_trained == [[1, 2, 3], [1]]
    assert result.history_train["train_loss"][0] == saved["history"]["train_loss"][0]
    assert (tmp_path / "result.json").exists() and not (tmp_path / "checkpoints").exists()


def test_checkpoints_of_another_configuration_are_not_touched(monkeypatch, tmp_path):
    config, checkpoint = _interrupted_run(monkeypatch, tmp_path, epochs=2)
    before = checkpoint.read_bytes()
    with pytest.raises(ValueError, match=r"another configuration \(lr: 0.001 there, 0.002 now\)"):
        pipeline.run(config.replace(lr=2e-3), progress=False)
    assert checkpoint.read_bytes() == before


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown conv"):
        pipeline.run(pipeline.Config(**TINY, ratio={"features.block9.conv": 0.5}, output_dir=str(tmp_path)),
                     progress=False)
    result = pipeline.run(pipeline.Config(**TINY, output_dir=str(tmp_path)), progress=False)  # the corrected run
    assert (tmp_path / "result.json").exists() and result.config["ratio"] == 0.5


def test_a_corrupt_checkpoint_is_reported(monkeypatch, tmp_path):
    config, checkpoint = _interrupted_run(monkeypatch, tmp_path, epochs=2)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(ValueError, match="checkpoint"):
        pipeline.run(config, progress=False)


def test_run_pq_order():
    result = pipeline.run(pipeline.Config(**{**TINY, "finetune_epochs": 0}, order="pq", criterion="l1", bits=2),
                          progress=False)
    assert result.accuracy_finetuned == result.accuracy_pruned  # no fine-tuning
    assert result.history_finetune["epoch"] == []
    assert result.bits == 2 and result.size_mb_pruned < result.size_mb_dense
    assert result.channels_pruned["features.block4.conv"] == 8


def test_num_workers_reach_the_loaders(monkeypatch):
    seen = []
    real_load = pipeline.data.load

    def recording_load(*args, **kwargs):
        seen.append(kwargs.get("num_workers"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pipeline.data, "load", recording_load)
    result = pipeline.run(pipeline.Config(**TINY, num_workers=1), progress=False)
    assert seen == [1] and 0.0 <= result.accuracy_finetuned <= 1.0


def test_ratio_names_are_checked_before_training():
    with pytest.raises(ValueError, match="unknown conv"):
        pipeline.run(pipeline.Config(**TINY, ratio={"features.block9.conv": 0.5}), progress=False)
    with pytest.raises(ValueError, match="last conv"):
        pipeline.run(pipeline.Config(**TINY, ratio={"features.block4.conv": 0.5}), progress=False)


def test_run_rejects_unavailable_device():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pipeline.run(pipeline.Config(device="cuda"), progress=False)


def test_ablation_rows_and_model_reuse(monkeypatch, tmp_path):
    calls = []
    real_fit = pipeline._fit

    def counting_fit(model, loaders, config, finetune, progress, checkpoint=None):
        calls.append(finetune)
        return real_fit(model, loaders, config, finetune, progress, checkpoint)

    monkeypatch.setattr(pipeline, "_fit", counting_fit)
    result = pipeline.ablation(pipeline.Config(**TINY, output_dir=str(tmp_path)), seeds=2, progress=False)
    assert calls.count(False) == 2 * 2  # per seed: one vanilla and one ReScaW training, shared by the rows
    assert calls.count(True) == 4 * 2  # per seed: C, D, E, F fine-tuned
    assert [r.row for r in result.rows] == list("ABCDEF")
    assert [r.paper for r in result.rows] == [78.53, 79.16, 69.16, 73.40, 73.32, 73.89]
    assert [r.criterion for r in result.rows] == [None, None, "sca", "sca", "svs", "svs"]
    assert [r.gamma for r in result.rows] == [None, "mean", None, "mean", None, "mean"]
    for row in result.rows:
        assert len(row.accuracies) == 2
        assert row.mean == pytest.approx(sum(row.accuracies) / 2)
        assert row.std == pytest.approx(abs(row.accuracies[0] - row.accuracies[1]) / 2 ** 0.5)
    assert result.rows[0].size_mb > result.rows[2].size_mb  # pruned rows are smaller
    assert result.seeds == [0, 1]
    record = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["row"] for r in record["rows"]] == list("ABCDEF")
    assert "QP-SNN" in result.table()
    assert not (tmp_path / "checkpoints-ablation").exists()  # removed once ablation.json is written


def test_interrupted_ablation_resumes_without_repeating_finished_networks(monkeypatch, tmp_path):
    config = pipeline.Config(**{**TINY, "epochs": 2}, output_dir=str(tmp_path))
    stops = iter([False, False, True])  # the vanilla network finishes; the ReScaW one stops after its first epoch
    real_save = train.save_checkpoint

    def save_maybe_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        if next(stops, False):
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_maybe_stop)
    with pytest.raises(KeyboardInterrupt):
        pipeline.ablation(config, seeds=1, progress=False)
    folder = tmp_path / "checkpoints-ablation"
    assert sorted(p.name for p in folder.iterdir()) == ["seed0-rescaw.json", "seed0-rescaw.pt", "seed0-vanilla.json",
                                                        "seed0-vanilla.pt"]
    saved_epochs = []

    def counting_save(path, *args, **kwargs):
        saved_epochs.append(Path(path).name)  # one save per epoch trained
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", counting_save)
    # (checkpoints are checked per network: seed 0's networks are the same in a longer list of seeds; only a
    # finished ablation.json is checked against the list, resume.check_finished)
    result = pipeline.ablation(config, seeds=1, progress=False)
    # the vanilla network is not trained again, the ReScaW one only for its second epoch, then 4 fine-tunes
    assert saved_epochs == ["seed0-rescaw.pt", "seed0-rowC.pt", "seed0-rowD.pt", "seed0-rowE.pt", "seed0-rowF.pt"]
    assert [len(r.accuracies) for r in result.rows] == [1] * 6
    assert not folder.exists()


def test_ablation_arguments():
    with pytest.raises(ValueError, match="bits"):
        pipeline.ablation(pipeline.Config(bits=None), seeds=1, progress=False)
    with pytest.raises(ValueError, match="order"):
        pipeline.ablation(pipeline.Config(order="pq"), seeds=1, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        pipeline.ablation(pipeline.Config(), seeds=0, progress=False)


# ----------------------------------------------------------------------------------------------------------------
# Issue 14: validation before the work (class 2) and a run's folder describes that run only (class 1)
# ----------------------------------------------------------------------------------------------------------------
def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "fit", refuse)


def test_a_ratio_that_empties_a_layer_is_refused_before_training(monkeypatch, tmp_path):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match="would leave features.stem.conv with"):
        pipeline.run(pipeline.Config(**TINY, ratio=0.8, output_dir=str(tmp_path / "run")), progress=False)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_pruning_settings_do_not_block_resuming_the_training(monkeypatch, tmp_path):
    config, checkpoint = _interrupted_run(monkeypatch, tmp_path, epochs=2)
    saved = torch.load(checkpoint, weights_only=True)
    result = pipeline.run(config.replace(ratio=0.25, criterion="l1", finetune_lr=2e-3), progress=False)
    assert result.history_train["train_loss"][0] == saved["history"]["train_loss"][0]  # resumed, not restarted
    assert result.ratios["features.block2.conv"] == 0.25


def test_a_finished_run_is_not_overwritten_by_another_configuration(tmp_path):
    pipeline.run(pipeline.Config(**TINY, output_dir=str(tmp_path)), progress=False)
    before = (tmp_path / "result.json").read_bytes()
    with pytest.raises(ValueError, match="holds the results of another configuration.*lr"):
        pipeline.run(pipeline.Config(**TINY, lr=2e-3, output_dir=str(tmp_path)), progress=False)
    assert (tmp_path / "result.json").read_bytes() == before


def test_a_folder_in_use_by_another_run_is_refused(tmp_path):
    from qpsnn_lite import resume

    with resume.own(tmp_path):
        with pytest.raises(ValueError, match="in use by another run"):
            pipeline.run(pipeline.Config(**TINY, output_dir=str(tmp_path)), progress=False)
    assert not (tmp_path / "result.json").exists()


def test_a_run_resumed_during_fine_tuning_reports_the_network_it_fine_tuned(monkeypatch, tmp_path):
    config = pipeline.Config(**{**TINY, "finetune_epochs": 2}, output_dir=str(tmp_path))
    real_save, real_apply = train.save_checkpoint, prune.apply
    calls, kept = [], []

    def save_then_stop_in_finetune(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the first fine-tuning epoch is saved
            raise KeyboardInterrupt

    def recording_apply(*args, **kwargs):
        pruned = real_apply(*args, **kwargs)
        kept.append({k: v.tolist() for k, v in pruned.pruned_channels.items()})
        return pruned

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop_in_finetune)
    monkeypatch.setattr(pipeline.prune, "apply", recording_apply)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    monkeypatch.setattr(train, "save_checkpoint", real_save)

    def no_rescoring(*args, **kwargs):
        raise AssertionError("the resumed run scored the channels again")

    monkeypatch.setattr(pipeline.prune, "score", no_rescoring)
    result = pipeline.run(config, progress=False)
    assert kept[-1] == kept[0]
    assert export.read_spec(tmp_path / "model.safetensors")["attributes"]["pruned_channels"] == kept[0]
    assert result.history_finetune["epoch"] == [1, 2]


def test_tables_fit_the_books_page_width(qp_run):
    # The book shows these at about 90 columns: at most 88 characters a line.
    result, _ = qp_run
    long = dataclasses.replace(result, files={"result.json": "/a/very/long/output/folder/" * 4 + "result.json"},
                               config={**result.config, "prune_config": None, "ratio": {"features.block2.conv": 0.5}})
    rows = [pipeline.AblationRow(row=row, description=description, gamma=None, criterion=criterion,
                                 accuracies=[12.3456] * 10, mean=12.3456, std=1.234, paper=pipeline.PAPER_ABLATION[row],
                                 size_mb=0.1234) for row, description, _, criterion in pipeline.ABLATION_ROWS]
    ablation = pipeline.AblationResult(config=pipeline.Config().to_dict(), seeds=list(range(100, 130)), rows=rows,
                                       seconds=12345.0)
    for table in (result.table(), long.table(), ablation.table()):
        assert max(map(len, table.splitlines())) <= 88, table
    assert "our inference, not stated by the paper" in pipeline.PRESET_NOTES["cifar100-resnet20-ablation"]


def test_a_finished_ablation_is_not_overwritten_by_another_list_of_seeds(monkeypatch, tmp_path):
    config = pipeline.Config(**TINY, output_dir=str(tmp_path))
    rows = [pipeline.AblationRow(row=row, description=description, gamma=None, criterion=criterion, accuracies=[50.0],
                                 mean=50.0, std=0.0, paper=pipeline.PAPER_ABLATION[row], size_mb=0.1)
            for row, description, _, criterion in pipeline.ABLATION_ROWS]
    pipeline.AblationResult(config=config.to_dict(), seeds=[0], rows=rows, seconds=1.0).save(tmp_path / "ablation.json")
    before = (tmp_path / "ablation.json").read_bytes()
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"another configuration \(seeds: \[0\] there, \[0, 1\] now\)"):
        pipeline.ablation(config, seeds=2, progress=False)
    assert (tmp_path / "ablation.json").read_bytes() == before
