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

This module is the recipe (the stages of :func:`run` and :func:`ablation`, in their order of random draws); the
configuration and presets live in :mod:`qpsnn_lite.config`, resuming in :mod:`qpsnn_lite.resume` and the report
(tables, JSON, figures, export) in :mod:`qpsnn_lite.report`, all re-exported here.

Example::

    from qpsnn_lite import pipeline
    result = pipeline.run(pipeline.Config(epochs=5, finetune_epochs=2))
    print(result)              # a readable table
    result.save("run.json")
"""
from __future__ import annotations

import copy
import shutil
from contextlib import nullcontext
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import _dist, architectures, data, metrics, models, prune, quant, resume, train
from ._checks import UsageError, is_int
from .config import (DIGITS_IMAGE_SIZE, IN_CHANNELS, OPTIMIZERS, ORDERS, PRESET_NOTES, PRESETS, Config, check_device,
                     image_size, preset)
from .criteria import CRITERIA  # the live registry (prune.CRITERIA): Config.criterion accepts any name in it
from .report import AblationResult, AblationRow, Result, write_outputs
from .resume import checkpoint_file, checkpoint_folder, stage_record

__all__ = ["Config", "Result", "AblationRow", "AblationResult", "PRESETS", "PRESET_NOTES", "PAPER_ABLATION",
           "ABLATION_ROWS", "CRITERIA", "ORDERS", "OPTIMIZERS", "DIGITS_IMAGE_SIZE", "run", "ablation", "preflight", "preset",
           "quantize_model", "build_model", "layer_ratios"]


# --------------------------------------------------------------------------------------------------------------------
# Building blocks of a run
# --------------------------------------------------------------------------------------------------------------------
def _loaders(config: Config):
    if config.download and _dist.world()[1] > 1:  # several processes: rank 0 downloads, the others wait, then read
        loaders, failed = None, torch.zeros(1)
        if _dist.is_main():
            try:
                loaders = _load(config)
            except BaseException:
                failed += 1
                _dist.all_reduce_sum(failed)  # tell the others before raising, so that none waits forever
                raise
        _dist.all_reduce_sum(failed)
        if failed.item():
            raise UsageError("rank 0 could not load the data set (its message says why); fix that and run again")
        return loaders or _load(config)
    return _load(config)


def _load(config: Config):
    return data.load(config.dataset, config.batch_size, download=config.download,
                     image_size=image_size(config) if config.dataset == "digits" else None, augment=config.augment,
                     seed=config.seed, num_workers=config.num_workers, world=_dist.world())


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
        kwargs["image_size"] = image_size(config)
    return models.build(config.model, data.NUM_CLASSES[config.dataset], in_channels=IN_CHANNELS[config.dataset],
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
    checkpoint = resume.claim(checkpoint, stage_record(config, "finetune" if finetune else "train"))
    if checkpoint is not None and checkpoint.exists():
        _say(progress, f"      resuming from {checkpoint} (after its last finished epoch)")
    return train.fit(
        model, loaders[0], loaders[1], epochs,
        lr=config.finetune_lr if finetune else config.lr,
        optimizer=config.finetune_optimizer if finetune else config.optimizer,
        weight_decay=config.weight_decay, seed=config.seed, device=_dist.local_device(config.device), progress=progress,
        checkpoint=checkpoint,
    )


def _say(progress: bool, message: str) -> None:
    if progress:
        tqdm.write(message)


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


def _prune(model: nn.Module, config: Config, loader, criterion: str, state: Path | None = None) -> nn.Module:
    """Score ``model``'s channels and prune it. With a checkpoint ``state``, the scores and the keep-set are stored
    there, and a resumed run takes them from there instead of scoring again (on other batches), so that what it
    reports is the network it fine-tuned."""
    saved = None
    if state is not None:
        resume.claim(state, stage_record(config, "prune"))
        saved = resume.load_prune_state(state)
    if saved is not None:
        scores = saved["scores"]
    else:
        scores = prune.score(model, loader, criterion, batches=config.score_batches, seed=config.seed)
    pruned = prune.apply(model, scores, layer_ratios(config, model), copy_bn=config.copy_bn)
    if saved is not None:
        kept = saved["kept"]
        if set(kept) != set(pruned.pruned_channels) or any(
                not torch.equal(kept[name], pruned.pruned_channels[name]) for name in kept):
            raise UsageError(f"the keep-set stored in {state} is not the one its scores give now (another version "
                             f"of the package?); delete {state.parent} to start afresh")
    elif state is not None and _dist.is_main():
        resume.save_prune_state(state, scores, pruned.pruned_channels)
    return pruned


def preflight(config: Config, model: nn.Module | None = None) -> None:
    """Check everything about ``config`` that can be known before the first epoch, and raise ``ValueError`` (a
    :class:`~qpsnn_lite._checks.UsageError` for the output folder) naming it: the fields, the device, that
    ``output_dir`` can be written, and that the ratios fit the network (names, the last conv, no layer emptied:
    ``prune.plan``). ``run`` and ``ablation`` call it first; the command line calls it before it starts a run, so
    these errors exit with status 2. Writes nothing. Chapter 07."""
    config.validate()
    check_device(config)
    if config.output_dir is not None:
        resume.check_output_dir(config.output_dir)
    processes = _dist.world()[1]
    if config.batch_size % processes:
        raise ValueError(f"Config.batch_size {config.batch_size} is the global batch of the {processes} processes: "
                         f"choose a multiple of {processes}")
    model = build_model(config, bits=None if config.order == "pq" else config.bits) if model is None else model
    _check_ratio_names(config, model)
    prune.plan(model, layer_ratios(config, model))


def _owned(config: Config):
    """Hold ``output_dir`` for this run (``resume.own``; rank 0 of several processes), or nothing without one."""
    return nullcontext() if not _writes(config) else resume.own(config.output_dir)


def _writes(config: Config) -> bool:
    """This process writes the run's files: there is an output_dir and it is rank 0 (``docs/design.md``, "Several
    processes")."""
    return config.output_dir is not None and _dist.is_main()


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
    preflight(config)
    _dist.init(config.device)  # under torchrun: join the other processes (a no-op in one process)
    progress = progress and _dist.is_main()
    clock = _Clock()
    loaders = _loaders(config)
    clock.lap("data")
    with _owned(config):
        if config.output_dir is not None:
            resume.check_finished(config, Path(config.output_dir) / "result.json")
        return _run(config, loaders, clock, progress)


def _run(config: Config, loaders, clock: _Clock, progress: bool) -> Result:
    checkpoints = checkpoint_folder(config)

    pq = config.order == "pq"
    train.seed_everything(config.seed)
    model = build_model(config, bits=None if pq else config.bits).to(_dist.local_device(config.device))
    what = "full-precision" if pq or config.bits is None else f"{config.bits}-bit"
    _say(progress, f"[1/4] training a {what} {config.model} on {config.dataset} for {config.epochs} epochs")
    history_train = _fit(model, loaders, config, finetune=False, progress=progress,
                         checkpoint=checkpoints / "train.pt" if checkpoints else None)
    accuracy_trained = history_train.final_accuracy
    clock.lap("train")

    _say(progress, f"[2/4] scoring channels with {config.criterion} on {config.score_batches} batches")
    pruned = _prune(model, config, loaders[0], config.criterion,
                    state=checkpoints / "prune.pt" if checkpoints else None)
    clock.lap("score")
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
    if _writes(config):
        write_outputs(result, pruned, Path(config.output_dir))
        clock.lap("write")
    clock.total()
    result.seconds = clock.seconds
    if _writes(config):
        result.save(Path(config.output_dir) / "result.json")  # again, now with the total time
    if _writes(config) and checkpoints.exists():
        shutil.rmtree(checkpoints)  # the run is complete and saved: its checkpoints are no longer needed
    _say(progress, f"done in {clock.seconds['total']:.1f} s: accuracy {100 * accuracy_finetuned:.2f}%, "
                   f"{result.size_mb_pruned:.4f} MB")
    return result


# --------------------------------------------------------------------------------------------------------------------
# Ablation, Table 2
# --------------------------------------------------------------------------------------------------------------------
#: The paper's Table 2 (CIFAR-100, ResNet20; configuration B at 2 bits is our inference, not stated by the paper),
#: accuracy in %.
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
    if not seeds or not all(is_int(s) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a count >= 1 or a list of integers >= 0, got {seeds!r}")
    preflight(config)
    _dist.init(config.device)
    progress = progress and _dist.is_main()
    with _owned(config):
        if config.output_dir is not None:
            resume.check_finished(config, Path(config.output_dir) / "ablation.json", seeds=seeds)
        return _ablation(config, seeds, progress)


def _ablation(config: Config, seeds: list[int], progress: bool) -> AblationResult:
    checkpoints = checkpoint_folder(config, "checkpoints-ablation")
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
            model = build_model(run_config, gamma=gamma).to(_dist.local_device(config.device))
            history = _fit(model, loaders, run_config, finetune=False, progress=progress,
                           checkpoint=checkpoint_file(checkpoints, seed, "rescaw" if use_rescaw else "vanilla"))
            trained[use_rescaw] = model
            row = "B" if use_rescaw else "A"
            accuracies[row].append(100 * history.final_accuracy)
            sizes[row] = metrics.model_size_mb(model, config.bits)
        for row, _, use_rescaw, criterion in ABLATION_ROWS:
            if criterion is None:
                continue
            _say(progress, f"seed {seed}: row {row}, {criterion} pruning and fine-tuning")
            pruned = _prune(trained[use_rescaw], run_config, loaders[0], criterion,
                            state=checkpoint_file(checkpoints, seed, f"row{row}-prune"))
            if run_config.finetune_epochs > 0:
                history = _fit(pruned, loaders, run_config, finetune=True, progress=progress,
                               checkpoint=checkpoint_file(checkpoints, seed, f"row{row}"))
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
    if _writes(config):
        result.save(Path(config.output_dir) / "ablation.json")
    if _writes(config) and checkpoints.exists():
        shutil.rmtree(checkpoints)
    return result


