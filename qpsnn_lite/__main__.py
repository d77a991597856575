"""Command line: ``python -m qpsnn_lite run | ablation | presets``.

Taught in chapter 07. Every field of :class:`qpsnn_lite.pipeline.Config` is a flag (``--finetune-epochs``,
``--prune-config``, ...); ``--preset NAME`` starts from one of the paper's settings and the flags given override it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Sequence

EPILOG = """\
examples:
  python -m qpsnn_lite run                          # QP-SNN on the offline digits, about a minute on a CPU
  python -m qpsnn_lite run --bits 2 --ratio 0.7     # harder: 2-bit weights, 70 % of the channels removed
  python -m qpsnn_lite run --criterion sca --gamma none   # the paper's baseline: vanilla quantizer + SCA
  python -m qpsnn_lite run --ratio features.stem.conv=0.25,features.block2.conv=0.5   # per-layer ratios
  python -m qpsnn_lite run --order pq               # prune at full precision first, then quantize (App. A)
  python -m qpsnn_lite ablation --seeds 3           # rows A-F of the paper's Table 2 on the digits
  python -m qpsnn_lite presets                      # the paper's CIFAR settings
  python -m qpsnn_lite run --preset cifar10-resnet20-A                # the paper's run (GPU, downloads CIFAR-10)
  python -m qpsnn_lite run --preset cifar10-resnet20-A --epochs 30 --finetune-epochs 10 --optimizer adam --lr 1e-3

Results go to --output-dir (default runs/<timestamp>): result.json, model.safetensors (integer export), accuracy.png
and channels.png; `ablation` writes ablation.json. Flags override the preset's fields; `presets NAME` prints one.
`run` and `ablation` save a checkpoint after every epoch in DIR: if a long run is interrupted (a Colab session ends),
the same command with the same --output-dir resumes it after its last finished epoch.
"""

_NONE = ("none", "None", "null")


# --------------------------------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError with what was expected, so argparse exits with status 2.
# --------------------------------------------------------------------------------------------------------------------
def _int_type(low: int, high: int | None = None, optional: bool = False, what: str = "an integer"):
    def parse(text: str):
        if optional and text in _NONE:
            return None
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {what} {span}, got {value}")
        return value

    return parse


def _float_type(low: float, strict: bool, high: float | None = None):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > low if strict else value >= low) or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if strict else '>='} {low}" + (f" and <= {high}" if high else "")
                + f", got {text}")
        return value

    return parse


def _ratio_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a ratio must be a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"a ratio is the fraction of channels removed, a number in [0, 1) (1.0 would remove every channel), "
            f"got {text}")
    return value


def _ratio_type(text: str):
    """``0.5`` or ``conv_name=0.3,conv_name=0.5``."""
    if "=" not in text:
        return _ratio_value(text)
    ratios = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not name.strip() or not value:
            raise argparse.ArgumentTypeError(f"per-layer ratios look like name=0.3,name=0.5, got {text!r}")
        ratios[name.strip()] = _ratio_value(value.strip())
    return ratios


def _channels_type(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels are four integers like 16,32,64,64, got {text!r}") from None
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"channels are four positive integers like 16,32,64,64, got {text!r}")
    return values


def _optional_choice(choices: Sequence[str]):
    def parse(text: str):
        if text in _NONE:
            return None
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)} or none, got {text!r}")
        return text

    return parse


def _optional_path(text: str):
    return None if text in _NONE else text


# --------------------------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------------------------
def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field; defaults are SUPPRESS so only the flags given override the preset."""
    from . import data, models, pipeline, quant

    default = pipeline.Config()
    S = argparse.SUPPRESS

    def d(name: str) -> str:
        value = getattr(default, name)
        return f" (default: {'none' if value is None else value})"

    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=data.DATASETS, default=S, help="data set" + d("dataset"))
    g.add_argument("--image-size", type=_int_type(4, optional=True), default=S, metavar="N",
                   help="digits only: resize the 8x8 digits to NxN (default: 16; 'none' = 16)")
    g.add_argument("--batch-size", type=_int_type(1), default=S, metavar="N", help="mini-batch size" + d("batch_size"))
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=S,
                   help="the paper's CIFAR augmentation" + d("augment"))
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=S,
                   help="let torchvision download MNIST/CIFAR (needs internet)" + d("download"))
    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=models.MODEL_NAMES, default=S, help="network" + d("model"))
    g.add_argument("--T", type=_int_type(1, optional=True, what="a number of time steps"), default=S, metavar="N",
                   help="time steps (default: the model's, 4; resnet20 2, vggsnn 10)")
    g.add_argument("--channels", type=_channels_type, default=S, metavar="C1,C2,C3,C4",
                   help="digits_cnn conv widths (default: 16,32,64,64)")
    g.add_argument("--tau", type=_float_type(0.0, True, 1.0), default=S, help="LIF leak factor" + d("tau"))
    g.add_argument("--threshold", type=_float_type(0.0, True), default=S, help="LIF threshold" + d("threshold"))
    g = parser.add_argument_group("quantization")
    g.add_argument("--bits", type=_int_type(1, 16, optional=True, what="a bit width"), default=S, metavar="B",
                   help="weight bits of every conv but the first, 1..16, or 'none' for full precision" + d("bits"))
    g.add_argument("--gamma", type=_optional_choice(quant.GAMMA_RULES), default=S, metavar="RULE",
                   help="ReScaW rule mean | max | percentile, or 'none' for the vanilla quantizer" + d("gamma"))
    g.add_argument("--granularity", choices=quant.GRANULARITIES, default=S, help="gamma per" + d("granularity"))
    g.add_argument("--ste", choices=quant.STE_MODES, default=S, help="straight-through estimator" + d("ste"))
    g = parser.add_argument_group("pruning")
    g.add_argument("--criterion", choices=pipeline.CRITERIA, default=S, help="channel score" + d("criterion"))
    g.add_argument("--ratio", type=_ratio_type, default=S, metavar="R",
                   help="fraction of channels removed per conv (not the last), in [0, 1), or name=r,name=r "
                        "(clears a preset's --prune-config)" + d("ratio"))
    g.add_argument("--prune-config", type=_optional_choice(models.PRUNE_CONFIGS), default=S, metavar="A|B|C",
                   help="the paper's per-layer ratios (Tables 9-11) for vgg16/resnet20/vggsnn; replaces --ratio")
    g.add_argument("--score-batches", type=_int_type(1), default=S, metavar="N",
                   help="batches the criterion (and the energy estimate) sees" + d("score_batches"))
    g.add_argument("--copy-bn", action=argparse.BooleanOptionalAction, default=S,
                   help="keep the BatchNorm statistics of kept channels" + d("copy_bn"))
    g.add_argument("--order", choices=pipeline.ORDERS, default=S,
                   help="qp = quantize then prune (Algorithm 1), pq = prune then quantize (App. A)" + d("order"))
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=_int_type(1), default=S, metavar="N", help="training epochs" + d("epochs"))
    g.add_argument("--optimizer", choices=pipeline.OPTIMIZERS, default=S, help="training optimizer" + d("optimizer"))
    g.add_argument("--lr", type=_float_type(0.0, True), default=S, help="training learning rate" + d("lr"))
    g.add_argument("--finetune-epochs", type=_int_type(0), default=S, metavar="N",
                   help="fine-tuning epochs after pruning" + d("finetune_epochs"))
    g.add_argument("--finetune-optimizer", choices=pipeline.OPTIMIZERS, default=S,
                   help="fine-tuning optimizer" + d("finetune_optimizer"))
    g.add_argument("--finetune-lr", type=_float_type(0.0, True), default=S,
                   help="fine-tuning learning rate" + d("finetune_lr"))
    g.add_argument("--weight-decay", type=_float_type(0.0, False), default=S,
                   help="weight decay on conv weights" + d("weight_decay"))
    g = parser.add_argument_group("run")
    g.add_argument("--preset", choices=sorted(pipeline.PRESETS), default=None, metavar="NAME",
                   help="start from a named setting (see `presets`); the flags given override it")
    g.add_argument("--seed", type=_int_type(0), default=S, help="random seed" + d("seed"))
    g.add_argument("--device", default=S, help="cpu, cuda, cuda:1, mps" + d("device"))
    g.add_argument("--num-workers", type=_int_type(0), default=S, metavar="N",
                   help="data-loading processes (0: the main process)" + d("num_workers"))
    g.add_argument("--output-dir", type=_optional_path, default=S, metavar="DIR",
                   help="where to write results and per-epoch checkpoints (default: runs/<timestamp>; 'none' writes "
                        "nothing); run again with the same DIR and flags to resume an interrupted run")
    g.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    g.add_argument("--threads", type=_int_type(1, what="a number of threads"), default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice; on a busy machine 1 can be much faster)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qpsnn_lite",
        description="QP-SNN (Wei et al., ICLR 2025) from the shell: train a quantized spiking network, prune its "
                    "channels by singular-value score, fine-tune, and report accuracy, model size, SOPs and energy.",
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
                                   description="Rows A-F of Table 2: vanilla vs ReScaW quantization, no pruning vs "
                                               "SCA vs SVS pruning, over several seeds.",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ablation.add_argument("--seeds", type=_int_type(1, what="a number of seeds"), default=3, metavar="N",
                          help="seeds per row (default: 3)")
    _config_flags(ablation)
    ablation.set_defaults(subparser=ablation)
    presets = commands.add_parser("presets", help="list the named settings, or print one",
                                  description="List the presets (the paper's settings), or print one as JSON.")
    presets.add_argument("name", nargs="?", help="print this preset's fields")
    return parser


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from . import pipeline

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(pipeline.Config) if hasattr(args, f.name)}
    base = pipeline.PRESETS[args.preset] if args.preset else pipeline.Config()
    if "ratio" in given and "prune_config" not in given:
        given["prune_config"] = None  # an explicit ratio replaces the preset's per-layer configuration
    try:
        config = base.replace(**given)
        pipeline._check_device(config)
    except ValueError as exc:
        parser.error(str(exc))
    return config


def _default_output(command: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / (stamp if command == "run" else f"{command}-{stamp}"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 run failed, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import pipeline

    if args.command == "presets":
        if args.name:
            if args.name not in pipeline.PRESETS:
                parser.error(f"unknown preset {args.name!r}; choose one of {', '.join(sorted(pipeline.PRESETS))}")
            print(json.dumps(pipeline.PRESETS[args.name].to_dict(), indent=2))
            return 0
        width = max(map(len, pipeline.PRESETS))
        for name, config in pipeline.PRESETS.items():
            print(f"{name:{width}}  {pipeline.PRESET_NOTES.get(name, '')}")
        print("\nrun one with: python -m qpsnn_lite run --preset NAME [flags that override it]")
        return 0

    if not hasattr(args, "output_dir"):
        args.output_dir = _default_output(args.command)
    config = _config(args, args.subparser)
    progress = not args.quiet
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "run":
            result = pipeline.run(config, progress=progress)
            print(result.table())
            if config.output_dir:
                print(f"\nwrote {Path(config.output_dir) / 'result.json'}")
        else:
            result = pipeline.ablation(config, seeds=args.seeds, progress=progress)
            print(result.table())
            if config.output_dir:
                print(f"\nwrote {Path(config.output_dir) / 'ablation.json'}")
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
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
