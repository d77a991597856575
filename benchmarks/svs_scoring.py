"""How much does SVS scoring cost? Batched singular values vs a per-map loop vs one forward pass.

For each network, one mini-batch is run through the model once with hooks that keep the LIF output spikes of every
prunable layer. Then three things are timed, interleaved (one repetition of each in turn, after a warm-up), and the
median over repetitions is reported:

  batched  prune.svs_score on every layer (the package's implementation): time-average, then ONE
           torch.linalg.svdvals call (float64) over all B*C maps of a layer, count the singular values above
           eps = 1e-6;
  loop     the authors' HRank-style path: torch.linalg.matrix_rank on each [H, W] map, one call per sample and
           channel (default *relative* tolerance, as their code); to keep the run short it is timed on the first
           --loop-samples samples of the batch and scaled up linearly to the whole batch (the cost per map is
           constant), which the table marks with "~";
  forward  one forward pass of the whole network over the same batch (eval mode, no_grad).

The BatchNorm statistics are set from the batch first (and the BN affine drawn around (1, 0.2)) so that every layer
fires at a realistic rate; all-zero maps are skipped by the batched path (their singular values are exactly 0), so
the table also reports their share. The loop also counts how many maps get a different rank from matrix_rank's
relative tolerance than from the paper's absolute eps.

Run:  python benchmarks/svs_scoring.py            (digits CNN on 16x16 digits + VGG-16 on 32x32 random input)
      python benchmarks/svs_scoring.py --models digits --reps 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qpsnn_lite import data, models, prune  # noqa: E402


def calibrate(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """BN statistics from this batch, BN affine around (1, 0.2): every layer fires at a moderate rate."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) * 0.8 + 0.6)
                m.bias.copy_(torch.rand(m.num_features, generator=generator) * 0.6 - 0.1)
    return model.eval()


def capture_spikes(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    spikes, handles = {}, []
    for layer in prune.prunable_layers(model):
        handles.append(layer.lif.register_forward_hook(
            lambda module, inputs, output, name=layer.name: spikes.__setitem__(name, output)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return spikes


def batched(spikes: dict[str, torch.Tensor]) -> None:
    for s in spikes.values():
        prune.svs_score(s)


def loop(spikes: dict[str, torch.Tensor], samples: int) -> int:
    """Per-map matrix_rank on the first ``samples`` samples; returns how many ranks differ from the absolute eps."""
    differ = 0
    for s in spikes.values():
        maps = s[:, :samples].mean(0)  # [b, C, H, W]
        ranks = torch.empty(maps.shape[:2], dtype=torch.long)
        for b in range(maps.shape[0]):
            for c in range(maps.shape[1]):
                ranks[b, c] = torch.linalg.matrix_rank(maps[b, c])
        differ += int((ranks != prune.epsilon_rank(s[:, :samples])).sum())
    return differ


def forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def setup(name: str, batch: int, T: int) -> tuple[nn.Module, torch.Tensor, str]:
    torch.manual_seed(0)
    if name == "digits":
        loader, _ = data.load("digits", batch_size=batch, image_size=16)
        x = next(iter(loader))[0]
        model = models.build("digits_cnn", 10, T=T)
        return calibrate(model, x), x, f"digits CNN, 16x16 digits, B={batch}, T={T}"
    x = torch.rand(batch, 3, 32, 32)
    model = models.build("vgg16", 10, T=T)
    return calibrate(model, x), x, f"VGG-16, 32x32 random input, B={batch}, T={T}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["digits", "vgg16"], default=["digits", "vgg16"])
    parser.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--T", type=int, default=4, help="time steps (default 4, the paper's VGG-16 setting)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    parser.add_argument("--loop-samples", type=int, default=4,
                        help="samples the per-map loop really runs, scaled up to --batch (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    loop_samples = min(args.loop_samples, args.batch)
    scale = args.batch / loop_samples

    rows = []
    for name in args.models:
        model, x, label = setup(name, args.batch, args.T)
        spikes = capture_spikes(model, x)
        maps = sum(s.shape[1] * s.shape[2] for s in spikes.values())
        zero = sum(int((s.sum(0).flatten(2).amax(-1) == 0).sum()) for s in spikes.values())
        rate = sum(float(s.sum()) for s in spikes.values()) / sum(s.numel() for s in spikes.values())
        # warm-up: the capture pass above was a forward pass; svdvals and matrix_rank run once on one sample each
        batched({key: s[:, :1] for key, s in spikes.items()}), loop(spikes, 1)
        times: dict[str, list[float]] = {"batched": [], "loop": [], "forward": []}
        differ = 0
        for _ in range(args.reps):  # interleaved: load on the machine hits all three alike
            times["forward"].append(timed(forward, model, x))
            times["batched"].append(timed(batched, spikes))
            start = time.perf_counter()
            differ = loop(spikes, loop_samples)
            times["loop"].append((time.perf_counter() - start) * scale)
        median = {key: statistics.median(values) for key, values in times.items()}
        rows.append((label, len(spikes), maps, zero / maps, rate, median, differ, loop_samples * maps // args.batch))

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.reps} interleaved "
          f"repetitions after a warm-up; '~' = per-map loop run on {loop_samples} of {args.batch} samples and "
          "scaled up\n")
    header = (f"{'network':<42} {'layers':>6} {'maps':>7} {'zero':>5} {'rate':>5} {'batched s':>9} "
              f"{'loop s':>8} {'forward s':>9} {'loop/batched':>12} {'batched/fwd':>11}")
    print(header)
    print("-" * len(header))
    for label, layers, maps, zero, rate, m, differ, looped in rows:
        print(f"{label:<42} {layers:>6} {maps:>7} {zero:>5.0%} {rate:>5.2f} {m['batched']:>9.3f} "
              f"{'~' + format(m['loop'], '.2f'):>8} {m['forward']:>9.3f} {m['loop'] / m['batched']:>11.1f}x "
              f"{m['batched'] / m['forward']:>10.2f}x")
    print("\nmaps = samples x channels summed over layers; zero = share of all-zero time-averaged maps; rate = mean "
          "firing rate.")
    for label, *_, differ, looped in rows:
        print(f"{label}: matrix_rank (relative tolerance) and the absolute eps = 1e-6 disagree on {differ} of the "
              f"{looped} maps the loop ranked.")
    if args.json:
        keys = ("network", "layers", "maps", "zero_share", "firing_rate", "seconds", "rank_disagreements",
                "maps_ranked_by_loop")
        with open(args.json, "w") as handle:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
                       "T": args.T, "reps": args.reps, "loop_samples": loop_samples,
                       "load_average": [load_start, os.getloadavg()[0]],
                       "rows": [dict(zip(keys, row)) for row in rows]}, handle, indent=1)


if __name__ == "__main__":
    main()
