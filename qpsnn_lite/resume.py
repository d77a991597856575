"""Resuming an interrupted run: the checkpoint folder of a configuration, and the check that checkpoints found
there belong to it.

Taught in chapter 07. ``train.fit`` saves a checkpoint after every epoch and resumes from one; this module decides
where the checkpoints of a run or an ablation live and refuses to resume another configuration's.
"""
from __future__ import annotations

import json
from pathlib import Path

from ._io import write_text
from .config import Config

__all__ = ["RESUMABLE_CHANGES", "checkpoint_folder", "checkpoint_file"]

# Fields that may change between an interrupted run and its resumption (where it runs, not what it computes).
RESUMABLE_CHANGES = ("device", "num_workers", "output_dir")


def checkpoint_folder(config: Config, name: str = "checkpoints", **extra) -> Path | None:
    """The checkpoint folder ``output_dir/name`` of a run (None without an output_dir), after checking that
    checkpoints already there belong to this configuration (and ``extra``, e.g. the ablation's seeds). Writes the
    configuration there for the next check."""
    if config.output_dir is None:
        return None
    folder = Path(config.output_dir) / name
    record = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES} | extra
    saved = folder / "config.json"
    if saved.exists() and any(folder.glob("*.pt")):  # without a checkpoint there is nothing to resume or protect
        try:
            previous = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{saved} is unreadable ({exc}); delete the folder {folder} to start afresh") from exc
        changed = sorted(k for k in set(record) | set(previous) if record.get(k) != previous.get(k))
        if changed:
            details = ", ".join(f"{k}: {previous.get(k)!r} there, {record.get(k)!r} now" for k in changed[:4])
            raise ValueError(
                f"{folder} holds the checkpoints of an interrupted run with another configuration ({details}); "
                f"choose another output_dir, run again with that configuration to resume it, or delete {folder}"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(saved, json.dumps(record, indent=2))
    return folder


def checkpoint_file(folder: Path | None, seed: int, stage: str) -> Path | None:
    return None if folder is None else folder / f"seed{seed}-{stage}.pt"
