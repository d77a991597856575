"""Cost of quantization-aware training: one QAT step (forward + backward + Adam step) against the full-precision step
of the same model, measured in the same run.

Run from the repository root:

    python benchmarks/qat_step.py                 # digits CNN (8x8, B=64) and VGG-16 (CIFAR 32x32, B=8), 4 bits
    python benchmarks/qat_step.py --quick         # fewer repeats
    python benchmarks/qat_step.py --clock wall    # wall clock instead of the process's CPU time

The quantized model (``bits=4``, ReScaW with gamma = mean |w| per channel) differs from the baseline (``bits=None``)
only by the fake quantization of every conv weight but the first: the ratio "QAT / FP" is the price of QAT. Steps of
the two models are interleaved (FP, QAT, FP, QAT, ...) so that a change in the machine's load hits both alike; each
figure is the median over the repeats. Default: one torch thread and CPU time (user + system), which leaves out the
time spent waiting for a core on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from qpsnn_lite import models  # noqa: E402


def make_cases():
    """(label, model name, input batch, labels). Random inputs of the right shape: speed does not depend on data."""
    generator = torch.Generator().manual_seed(0)
    return [
        ("digits_cnn, 1x8x8, B=64, T=4", "digits_cnn", torch.rand(64, 1, 8, 8, generator=generator) * 2,
         torch.randint(0, 10, (64,), generator=generator)),
        ("vgg16, 3x32x32, B=8, T=4", "vgg16", torch.randn(8, 3, 32, 32, generator=generator),
         torch.randint(0, 10, (8,), generator=generator)),
    ]


def stepper(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, clock) -> float:
    start = clock()
    step()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall clock")
    parser.add_argument("--bits", type=int, default=4, help="weight bits of the QAT model (default: 4)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    repeats = 5 if args.quick else 15
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, median of {repeats} steps\n")
    print("| model | FP step (ms) | QAT step (ms) | QAT / FP |")
    print("|---|---:|---:|---:|")
    for label, name, images, labels in make_cases():
        torch.manual_seed(0)
        fp = stepper(models.build(name, num_classes=10, bits=None), images, labels)
        torch.manual_seed(0)
        qat = stepper(models.build(name, num_classes=10, bits=args.bits), images, labels)
        for step in (fp, qat):  # warm-up: allocator, kernels, Adam state
            step()
            step()
        times: dict[str, list[float]] = {"fp": [], "qat": []}
        for _ in range(repeats):
            times["fp"].append(timed(fp, clock))
            times["qat"].append(timed(qat, clock))
        fp_ms, qat_ms = (1e3 * statistics.median(times[k]) for k in ("fp", "qat"))
        rows.append({"model": label, "fp_ms": fp_ms, "qat_ms": qat_ms, "ratio": qat_ms / fp_ms})
        print(f"| {label} | {fp_ms:.2f} | {qat_ms:.2f} | {qat_ms / fp_ms:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "clock": args.clock,
                       "repeats": repeats, "bits": args.bits, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
