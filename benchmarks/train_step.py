"""One training step (forward + backward + Adam step): images/s and peak memory, fused vs reference LIF backend.

Run from the repository root:

    python benchmarks/train_step.py            # digits CNN (8x8, B=64) and VGG-16 (CIFAR 32x32, B=8), T = 4
    python benchmarks/train_step.py --quick    # fewer repeats
    python benchmarks/train_step.py --threads 1 --clock cpu   # robust on a busy shared machine

The two backends compute the same spikes and gradients (tests/test_fused.py), so the difference is pure speed. The
whole step counts: convolutions, BatchNorm and the optimizer are the same for both, which bounds the gain.
Peak memory is measured as in lif_throughput.py (torch.profiler's allocation timeline, above the start) over forward +
backward, where the LIF's saved tensors live; Adam's update, the same for both backends, is measured on its own.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from qpsnn_lite import fused, models, neurons  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lif_throughput import peak_bytes  # noqa: E402

BACKENDS = ("fused", "reference")


def set_backend(model: nn.Module, backend: str) -> None:
    for module in model.modules():
        if isinstance(module, neurons.LIF):
            module.backend = backend


def make_cases():
    """(name, model, images, labels). Random inputs of the right shape: the speed does not depend on the data."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cases = [("digits_cnn, 1x8x8, B=64, T=4", models.build("digits_cnn", num_classes=10),
              torch.rand(64, 1, 8, 8, generator=generator) * 2, torch.randint(0, 10, (64,), generator=generator))]
    try:
        vgg = models.build("vgg16", num_classes=10)
    except (ValueError, ImportError) as error:  # architectures.py not there yet
        print(f"vgg16 not available ({error}); timing the digits CNN only")
    else:
        cases.append(("vgg16, 3x32x32, B=8, T=4", vgg, torch.randn(8, 3, 32, 32, generator=generator),
                      torch.randint(0, 10, (8,), generator=generator)))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time (default) or the process's CPU time (with --threads 1 on a busy machine)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, load average "
          f"{os.getloadavg()[0]:.1f}; fused LIF: {fused.native_status()}")
    load_start = os.getloadavg()[0]
    rows = []
    print("| model | backend | ms / step | images/s | peak MB, forward + backward | fused speed-up |")
    print("|---|---|---|---|---|---|")
    for name, model, images, labels in make_cases():
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_function = nn.CrossEntropyLoss()

        def forward_backward():
            optimizer.zero_grad(set_to_none=True)
            loss_function(model(images), labels).backward()

        def step():
            forward_backward()
            optimizer.step()

        times = {backend: [] for backend in BACKENDS}
        for backend in BACKENDS:  # warm-up: Adam's state, first allocations, the kernel's compilation
            set_backend(model, backend)
            step()
            step()
        for repeat in range(repeats):
            for backend in BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]:
                set_backend(model, backend)
                start = clock()
                step()
                times[backend].append(clock() - start)
                gc.collect()
        medians = {backend: statistics.median(times[backend]) for backend in BACKENDS}
        for backend in BACKENDS:
            set_backend(model, backend)
            optimizer.zero_grad(set_to_none=True)  # outside the measured window: only forward + backward inside
            gc.collect()
            peak = peak_bytes(lambda: loss_function(model(images), labels).backward())
            speedup = medians["reference"] / medians[backend]
            print(f"| {name} | {backend} | {medians[backend] * 1e3:.0f} | {len(images) / medians[backend]:.0f} | "
                  f"{peak / 2**20:.0f} | {speedup:.2f}x |")
            rows.append({"model": name, "backend": backend, "seconds": medians[backend],
                         "images_per_s": len(images) / medians[backend], "peak_bytes": peak, "speedup": speedup})
        print(f"| {name} | Adam's update alone (either backend) | | | {peak_bytes(optimizer.step) / 2**20:.0f} | |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
                       "repeats": repeats, "load_average": [load_start, os.getloadavg()[0]], "rows": rows}, handle,
                      indent=1)


if __name__ == "__main__":
    main()
