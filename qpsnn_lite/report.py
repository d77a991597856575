"""What a run reports: the :class:`Result` of ``pipeline.run`` and the :class:`AblationResult` of
``pipeline.ablation``, their tables, JSON files, the exported model and the figures.

Taught in chapter 07 (the tables) and chapter 08 (sizes, SOPs, energy); re-exported by :mod:`qpsnn_lite.pipeline`.
Every file is written atomically (:mod:`qpsnn_lite._io`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from torch import nn

from . import export
from ._io import write_text

__all__ = ["TABLE_WIDTH", "wrap", "Result", "AblationRow", "AblationResult", "write_outputs", "figures"]

TABLE_WIDTH = 88
"""The longest line a table (and the command line's listings) prints: the book shows them at about 90 columns."""


def wrap(text: str, indent: str = "  ", first: str = "") -> list[str]:
    """``first + text`` as lines of at most :data:`TABLE_WIDTH` characters, continuation lines indented by
    ``indent`` (a word longer than a line, e.g. a path, is broken)."""
    return textwrap.wrap(text, TABLE_WIDTH, initial_indent=first, subsequent_indent=indent,
                         break_on_hyphens=False) or [first.rstrip()]


# --------------------------------------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------------------------------------
class _Report:
    """What the two reports share: a JSON form, an atomic save, and ``str()`` as the table."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file, then a rename)."""
        return write_text(path, self.to_json())

    def table(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.table()


@dataclass
class Result(_Report):
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
            *wrap(f"QP-SNN run: {c['model']} on {c['dataset']}, T={c['T'] or self.energy.get('T', 'default')}, "
                  f"{bits}, gamma={c['gamma']}, {c['criterion']} pruning at {prune_by}, order {c['order']}"),
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
            lines.append(f"{name:34}{dense:>14}{self.channels_pruned[name]:>14}{rate}"[:TABLE_WIDTH])
        times = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        lines += ["", *wrap(f"wall time: {times}")]
        if self.files:
            lines += wrap("files: " + ", ".join(f"{k}: {v}" for k, v in self.files.items()))
        return "\n".join(lines)


def _lif_of(conv_name: str, rates: Mapping) -> str:
    """The LIF after a conv: ``x.conv`` -> ``x.lif``, ``x.conv1`` -> ``x.lif1``."""
    prefix, _, last = conv_name.rpartition(".")
    return f"{prefix}.{last.replace('conv', 'lif')}" if prefix else last.replace("conv", "lif")


def write_outputs(result: Result, model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    summary = export.save(model, folder / "model.safetensors")
    result.files = {"result": str(folder / "result.json"), "model": summary.path}
    result.export = {"file_bytes": summary.file_bytes, "file_mb": summary.file_mb,
                     "paper_size_mb": summary.paper_size_mb, "bits": summary.bits}
    result.files.update(figures(result, folder))
    result.save(folder / "result.json")


def figures(result: Result, folder: Path) -> dict[str, str]:
    """``accuracy.png`` (test accuracy over training and fine-tuning) and ``channels.png`` (channels per layer)."""
    from matplotlib.ticker import MaxNLocator  # matplotlib is imported only when figures are written (slow import)

    from . import plots  # builds on matplotlib: imported with it

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
# An ablation (Table 2)
# --------------------------------------------------------------------------------------------------------------------
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
class AblationResult(_Report):
    """Rows A-F of Table 2 measured at the config's budget, beside the paper's numbers."""

    config: dict
    seeds: list
    rows: list
    seconds: float

    def table(self) -> str:
        c = self.config
        prune_by = f"config {c['prune_config']}" if c.get("prune_config") else f"ratio {c['ratio']}"
        lines = [
            *wrap(f"Ablation (Table 2): {c['model']} on {c['dataset']}, {c['bits']}-bit, pruning at {prune_by}, "
                  f"{c['epochs']}+{c['finetune_epochs']} epochs, seeds {self.seeds}"),
            f"{'row':4}{'setting':36}{'accuracy % (mean ± std)':>26}{'size MB':>10}{'paper %':>10}",
        ]
        for r in self.rows:
            r = r if isinstance(r, dict) else dataclasses.asdict(r)
            lines.append(f"{r['row']:4}{r['description']:36}{r['mean']:>17.2f} ± {r['std']:<6.2f}"
                         f"{r['size_mb']:>10.4f}{r['paper']:>10.2f}")
        lines += wrap("paper: CIFAR-100, ResNet20, 300+150 epochs (configuration B at 2 bits is our inference, not "
                      f"stated by the paper); wall time here {self.seconds:.0f} s")
        return "\n".join(lines)
