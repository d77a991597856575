"""A run's folder describes that run only: its owner (a lock), the refusal to overwrite another configuration's
results, and resuming an interrupted run from checkpoints that are checked to belong to it.

Taught in chapter 07. ``train.fit`` saves a checkpoint after every epoch and resumes from one; this module decides
where the checkpoints of a run or an ablation live, records beside each one the settings its stage depends on, and
refuses to resume (or overwrite) another configuration's. Why stage by stage: ``docs/design.md``, "Resuming".
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch

from . import _dist
from ._checks import UsageError
from ._io import atomic_path, write_text
from .config import Config

__all__ = ["RESUMABLE_CHANGES", "AFTER_TRAINING", "check_output_dir", "own", "check_finished", "checkpoint_folder",
           "checkpoint_file", "stage_record", "claim", "load_prune_state", "save_prune_state"]

# Fields that may change between an interrupted run and its resumption (where it runs, not what it computes).
RESUMABLE_CHANGES = ("device", "num_workers", "output_dir")
# Fields that affect only the stages after training (scoring, pruning, fine-tuning): changing them does not stop
# a run from resuming its training.
AFTER_TRAINING = ("criterion", "ratio", "prune_config", "score_batches", "copy_bn", "finetune_epochs",
                  "finetune_optimizer", "finetune_lr")
LOCK_NAME = ".lock"


def _what_to_do(folder: Path) -> str:
    return f"choose another output_dir (--output-dir), or delete {folder} to start afresh"


def check_output_dir(path: str | os.PathLike) -> Path:
    """Fail (``UsageError``) before any work when ``path`` cannot be a folder this process writes into: it is a
    file, it lies under a file, or its nearest existing folder is not writable. Creates nothing."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise UsageError(f"output_dir (--output-dir) {path} {where}; choose a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {existing} (no permission), so output_dir (--output-dir) {path} cannot be "
                         "written; choose a folder you can write to")
    return path


def _lock(path: Path):
    """Open ``path`` and hold an exclusive ``flock`` on it, or raise ``UsageError`` naming the holder. The standard
    pattern for a lock file that is removed on release: after locking, check that ``path`` is still the file locked
    (a run that finished meanwhile may have removed it), else try again."""
    import fcntl  # POSIX only (the caller skips locking without it): a function-level import

    for _ in range(5):
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UsageError(f"{path.parent} is in use by another run (process {holder}); wait for it to finish, "
                             "or choose another output_dir (--output-dir)") from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()
    raise UsageError(f"could not lock {path}: other runs keep starting in {path.parent}; choose another output_dir")


@contextmanager
def own(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` and hold an exclusive lock on it (the file ``folder/.lock``, ``fcntl.flock``) while the
    block runs: another run into the same folder meanwhile is refused with ``UsageError``. The lock dies with the
    process, so a killed run never leaves its folder locked (only, at worst, an unlocked ``.lock`` file); the file is
    removed on release. On Windows (no ``fcntl``) the folder is not locked."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output_dir (--output-dir) {folder}: {exc.strerror or exc}; choose a folder "
                         "you can write to") from exc
    if os.name != "posix":
        yield folder
        return
    path = folder / LOCK_NAME
    handle = _lock(path)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield folder
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no other run can have it open and locked
        handle.close()  # releases the lock


def _record(config: Config, keep: tuple = ()) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and k not in keep}


def _compare(previous: Mapping, record: Mapping) -> list[str]:
    return sorted(k for k in set(record) | set(previous) if record.get(k) != previous.get(k))


def _details(previous: Mapping, record: Mapping, changed: list[str]) -> str:
    return ", ".join(f"{k}: {previous.get(k)!r} there, {record.get(k)!r} now" for k in changed[:4])


def check_finished(config: Config, result_file: Path, **extra) -> None:
    """Refuse (``UsageError``) to write into a folder whose ``result_file`` (``result.json``, ``ablation.json``)
    holds a finished run of another configuration (``extra``: e.g. the ablation's seeds). The same configuration
    may run again: it computes the same run."""
    if not result_file.exists():
        return
    try:
        saved = json.loads(result_file.read_text())
        previous = {**_record(Config.from_dict(saved["config"])), **{k: saved.get(k) for k in extra}}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{result_file} is unreadable ({exc}); {_what_to_do(result_file.parent)}") from exc
    record = {**_record(config), **extra}
    changed = _compare(previous, record)
    if changed:
        raise UsageError(f"{result_file.parent} holds the results of another configuration "
                         f"({_details(previous, record, changed)}); {_what_to_do(result_file.parent)}")


def checkpoint_folder(config: Config, name: str = "checkpoints") -> Path | None:
    """The checkpoint folder ``output_dir/name`` of a run (None without an output_dir). Each stage's checkpoint is
    checked when the stage starts (:func:`claim`)."""
    return None if config.output_dir is None else Path(config.output_dir) / name


def checkpoint_file(folder: Path | None, seed: int, stage: str) -> Path | None:
    return None if folder is None else folder / f"seed{seed}-{stage}.pt"


def stage_record(config: Config, stage: str) -> dict:
    """The settings a stage's result depends on: ``"train"`` all but :data:`AFTER_TRAINING` (and the
    :data:`RESUMABLE_CHANGES`), every later stage all but the resumable changes."""
    return _record(config, AFTER_TRAINING if stage == "train" else ())


def claim(checkpoint: Path | None, record: Mapping) -> Path | None:
    """Check that a checkpoint already at ``checkpoint`` was written for ``record`` (its settings are stored beside
    it, ``<name>.json``), else raise ``UsageError``; then record them for the next check. Returns ``checkpoint``."""
    if checkpoint is None:
        return None
    saved = checkpoint.with_suffix(".json")
    if checkpoint.exists() and saved.exists():
        try:
            previous = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{saved} is unreadable ({exc}); {_what_to_do(checkpoint.parent)}") from exc
        changed = _compare(previous, record)
        if changed:
            raise UsageError(
                f"{checkpoint.parent} holds the checkpoints of an interrupted run with another configuration "
                f"({_details(previous, record, changed)}); run again with that configuration to resume it, or "
                f"{_what_to_do(checkpoint.parent)}")
    elif _dist.is_main():  # only rank 0 of several processes writes
        write_text(saved, json.dumps(dict(record), indent=2))
    return checkpoint


def save_prune_state(path: Path, scores: Mapping[str, torch.Tensor], kept: Mapping[str, torch.Tensor]) -> None:
    """Store the scores and the keep-set of a pruning, so that a run resumed during fine-tuning reports the network
    it fine-tunes (re-scoring would see other batches and may keep other channels)."""
    state = {"scores": {k: v.detach().cpu() for k, v in scores.items()},
             "kept": {k: v.detach().cpu() for k, v in kept.items()}}
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_prune_state(path: Path) -> dict | None:
    """The state :func:`save_prune_state` wrote at ``path``, or None when there is none."""
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # truncated or tampered with
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"the pruning checkpoint {path} is corrupt ({type(exc).__name__}: {first}); "
                         f"{_what_to_do(path.parent)}") from exc
