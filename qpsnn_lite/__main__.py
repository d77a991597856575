"""Command line: ``python -m qpsnn_lite run | ablation | presets``.

Taught in chapter 07. Every field of :class:`qpsnn_lite.pipeline.Config` is a flag (``--finetune-epochs``,
``--prune-config``, ...), generated from the field's declaration; ``--preset NAME`` starts from one of the paper's
settings and the flags given override it.

Plug-ins: a criterion registered with ``prune.register_criterion`` before the parser is built is a choice of
``--criterion``. From Python, register it and call ``main([...])`` in-process; from the shell, a module that
registers criteria can be named in the environment variable ``QPSNN_PLUGINS`` (comma-separated module names,
imported before the parser is built): ``QPSNN_PLUGINS=my_criteria python -m qpsnn_lite run --criterion mine``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from . import _dist, pipeline
from ._checks import UsageError
from .config import GROUPS
from .knobs import Knob, knob_of
from .report import wrap

EPILOG = """\
examples:
  # QP-SNN on the offline digits, on the CPU
  python -m qpsnn_lite run
  # harder: 2-bit weights, 70 % of the channels removed
  python -m qpsnn_lite run --bits 2 --ratio 0.7
  # the paper's baseline: vanilla quantizer + SCA
  python -m qpsnn_lite run --criterion sca --gamma none
  # per-layer ratios
  python -m qpsnn_lite run --ratio features.stem.conv=0.25,features.block2.conv=0.5
  # prune at full precision first, then quantize (App. A)
  python -m qpsnn_lite run --order pq
  # rows A-F of the paper's Table 2 on the digits
  python -m qpsnn_lite ablation --seeds 3
  # the paper's CIFAR settings, then the paper's run (GPU, downloads CIFAR-10)
  python -m qpsnn_lite presets
  python -m qpsnn_lite run --preset cifar10-resnet20-A
  # the same with a smaller budget
  python -m qpsnn_lite run --preset cifar10-resnet20-A --epochs 30 \\
      --finetune-epochs 10 --optimizer adam --lr 1e-3

Results go to --output-dir (default runs/<timestamp>): result.json, model.safetensors
(integer export), accuracy.png and channels.png; `ablation` writes ablation.json. Flags
override the preset's fields; `presets NAME` prints one. `run` and `ablation` save a
checkpoint after every epoch in DIR: if a long run is interrupted (a Colab session
ends), the same command with the same --output-dir resumes it after its last finished
epoch.
"""

# --------------------------------------------------------------------------------------------------------------------
# The parser: one flag per Config field, generated from the field's declaration (qpsnn_lite.knobs); only the flags
# that are not Config fields (--preset, --quiet, --threads, --seeds) are written here.
# --------------------------------------------------------------------------------------------------------------------
def _count(what: str) -> Knob:
    """A positive count of a command-line-only flag, parsed and checked like a Config knob."""
    return Knob("run", "", "int", low=1, what=what)


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, grouped as ``config.GROUPS``; defaults are SUPPRESS so only the flags given
    override the preset. Built when the parser is, so criteria registered before ``main`` are choices."""
    default = pipeline.Config()
    fields = dataclasses.fields(pipeline.Config)
    for group_name, _ in GROUPS:
        group = parser.add_argument_group(group_name)
        if group_name == "run":
            group.add_argument("--preset", choices=sorted(pipeline.PRESETS), default=None, metavar="NAME",
                               help="start from a named setting (see `presets`); the flags given override it")
        for f in fields:
            spec = knob_of(f)
            if spec.group == group_name:
                spec.add_flag(group, f.name, getattr(default, f.name))
        if group_name == "run":
            group.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
            group.add_argument("--threads", type=_count("a number of threads").cli_parse, default=None, metavar="N",
                               help="CPU threads for torch (default: torch's choice; on a busy machine 1 can be much "
                                    "faster)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qpsnn_lite",
        description="\n".join(wrap(
            "QP-SNN (Wei et al., ICLR 2025) from the shell: train a quantized spiking network, prune its channels "
            "by singular-value score, fine-tune, and report accuracy, model size, SOPs and energy.", indent="")),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{run,ablation,presets}")
    commands.required = True
    run = commands.add_parser("run", help="one QP-SNN run (train, score, prune, fine-tune, report)",
                              description="Train, score, prune, fine-tune and report. Default: digits on a CPU.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_flags(run)
    run.set_defaults(subparser=run)
    ablation = commands.add_parser("ablation", help="rows A-F of the paper's Table 2, mean ± std over seeds",
                                   description="\n".join(wrap(
                                       "Rows A-F of Table 2: vanilla vs ReScaW quantization, no pruning vs SCA vs SVS "
                                       "pruning, over several seeds.", indent="")),
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ablation.add_argument("--seeds", type=_count("a number of seeds").cli_parse, default=3, metavar="N",
                          help="seeds per row (default: 3)")
    _config_flags(ablation)
    ablation.set_defaults(subparser=ablation)
    presets = commands.add_parser("presets", help="list the named settings, or print one",
                                  description="List the presets (the paper's settings), or print one as JSON.")
    presets.add_argument("name", nargs="?", help="print this preset's fields")
    return parser


def load_plugins(names: str | None = None) -> list[str]:
    """Import the modules named in ``names`` (default: the environment variable ``QPSNN_PLUGINS``, comma-separated),
    e.g. modules that register criteria with ``prune.register_criterion``. Returns the names imported."""
    names = os.environ.get("QPSNN_PLUGINS", "") if names is None else names
    modules = [name.strip() for name in names.split(",") if name.strip()]
    for name in modules:
        importlib.import_module(name)
    return modules


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser):
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(pipeline.Config) if hasattr(args, f.name)}
    base = pipeline.PRESETS[args.preset] if args.preset else pipeline.Config()
    if "ratio" in given and "prune_config" not in given:
        given["prune_config"] = None  # an explicit ratio replaces the preset's per-layer configuration
    try:
        config = base.replace(**given)
        pipeline.preflight(config)  # everything that can be known before the first epoch: exit 2, nothing written
    except ValueError as exc:
        parser.error(str(exc))
    return config


def _default_output(command: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / (stamp if command == "run" else f"{command}-{stamp}"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 run failed, 2 bad arguments or another user error: a folder
    that cannot be written or belongs to another run or configuration, missing data, no network for --download)."""
    load_plugins()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "presets":
        if args.name:
            if args.name not in pipeline.PRESETS:
                parser.error(f"unknown preset {args.name!r}; choose one of {', '.join(sorted(pipeline.PRESETS))}")
            print(json.dumps(pipeline.PRESETS[args.name].to_dict(), indent=2))
            return 0
        width = max(map(len, pipeline.PRESETS)) + 2
        for name in pipeline.PRESETS:  # lines of at most TABLE_WIDTH characters, the note wrapped under itself
            print("\n".join(wrap(pipeline.PRESET_NOTES.get(name, ""), " " * width, f"{name:{width}}")))
        print("\nrun one with: python -m qpsnn_lite run --preset NAME [flags that override it]")
        return 0

    if not hasattr(args, "output_dir"):
        args.output_dir = _default_output(args.command)
    config = _config(args, args.subparser)
    progress = not args.quiet
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if args.command == "run":
            result = pipeline.run(config, progress=progress)
            written = "result.json"
        else:
            result = pipeline.ablation(config, seeds=args.seeds, progress=progress)
            written = "ablation.json"
        if _dist.is_main():  # under torchrun only rank 0 prints (and writes)
            print(result.table())
            if config.output_dir:
                print(f"\nwrote {Path(config.output_dir) / written}")
        _dist.finish()
    except (UsageError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        # the user fixes these (another --output-dir, the data, the network): an argument error
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, FloatingPointError, OSError) as exc:  # the run itself failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        folder = "checkpoints" if args.command == "run" else "checkpoints-ablation"
        where = Path(config.output_dir) / folder if config.output_dir else None
        print("\ninterrupted" + (f"; the epochs finished so far are saved in {where}: run the same command with "
                                 f"--output-dir {config.output_dir} to resume" if where and where.exists() else ""),
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
