"""LIF forward+backward throughput and peak memory: qpsnn-lite's fused and reference LIF, SpikingJelly, snnTorch.

Run from the repository root (peers: ``pip install --no-deps -r benchmarks/requirements-bench.txt``):

    python benchmarks/lif_throughput.py            # the default shapes, about 3-5 minutes on 2 cores
    python benchmarks/lif_throughput.py --quick    # 3 shapes, 3 repeats: a smoke run
    python benchmarks/lif_throughput.py --threads 1 --clock cpu   # robust on a busy shared machine (see README)
    python benchmarks/lif_throughput.py --thp      # every library with PyTorch's huge-page allocation (see README)

Every implementation is first checked to fire the same spikes as ours on the same input. The settings match the paper's
LIF (tau = 0.5 leak, threshold 1, hard reset to 0, triangle surrogate of width 1, reset path not detached):

- SpikingJelly ``LIFNode(step_mode="m", backend="torch", decay_input=False, v_reset=0.0)`` charges
  ``H = V - (V - V_reset) / tau_sj + X = (1 - 1/tau_sj) V + X``, so its leak factor is ``1 - 1/tau_sj`` and our
  tau = 0.5 is ``tau_sj = 2``. Its ``PiecewiseQuadratic(alpha=1)`` surrogate, ``max(1 - |x|, 0)``, is our triangle, and
  ``detach_reset=False`` keeps the reset path: same spikes *and* same gradients.
- snnTorch ``Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")`` looped over T. Same spikes; its gradient
  differs by design (ATan surrogate, reset signal detached), which does not change the amount of work.

Timing: each implementation is warmed up on each shape, then repetitions are interleaved across implementations (the
machine is shared and noisy; compare within one run) and the median time of forward + backward is reported: wall time,
or with ``--clock cpu`` the process's CPU time (user + system, so page faults count), which on a busy machine leaves
out the waits for a free core; use it with ``--threads 1``.

Peak memory: PyTorch has no allocator statistics on CPU, so the script records every tensor allocation and free during
one forward + backward with ``torch.profiler`` (``profile_memory=True``; the allocation timeline of its memory profiler)
and reports the highest total of live bytes above the start (the input and upstream gradient exist before and are not
counted; the output, the saved tensors and the input gradient are). It also reports the bytes the autograd graph saves
for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

if "--thp" in sys.argv:  # must be set before PyTorch's CPU allocator is first used
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from qpsnn_lite import fused, neurons  # noqa: E402

TAU, THRESHOLD = 0.5, 1.0
# (T, B, C, H=W). A subset of T in {2,4,8,16} x B = 64 x C in {64,128} x H=W in {8,16,32} that covers every value of
# each axis and runs in a few minutes; --all runs the full grid (slow: SpikingJelly's backward grows like T^2).
DEFAULT_SHAPES = [(2, 64, 64, 32), (4, 64, 64, 8), (4, 64, 128, 16), (8, 64, 128, 8), (8, 64, 64, 16), (16, 64, 64, 8),
                  (16, 64, 128, 16)]
QUICK_SHAPES = [(4, 64, 64, 8), (4, 64, 128, 16), (16, 64, 64, 8)]
ALL_SHAPES = [(t, 64, c, h) for t in (2, 4, 8, 16) for c in (64, 128) for h in (8, 16, 32)]
OURS, SJ, SNN = "qpsnn fused", "SpikingJelly", "snnTorch"


# --------------------------------------------------------------------------------------------------------------------
# The implementations: each maps x [T, B, C, H, W] to spikes [T, B, C, H, W]
# --------------------------------------------------------------------------------------------------------------------
def implementations() -> dict:
    impls = {
        OURS: lambda x: neurons.lif_multistep(x, TAU, THRESHOLD),  # the default backend
        "qpsnn fused, torch ops": lambda x: fused.lif_fused(x, TAU, THRESHOLD, implementation="torch"),
        "qpsnn reference": lambda x: neurons.lif_multistep(x, TAU, THRESHOLD, backend="reference"),
    }
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate

        node = neuron.LIFNode(tau=1 / (1 - TAU), decay_input=False, v_threshold=THRESHOLD, v_reset=0.0,
                              surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0), detach_reset=False,
                              step_mode="m", backend="torch")

        def spikingjelly(x):
            functional.reset_net(node)  # v = 0 before every sequence
            return node(x)

        impls[SJ] = spikingjelly
    except ImportError as error:
        print(f"SpikingJelly not installed ({error}); see benchmarks/requirements-bench.txt")
    try:
        import snntorch

        leaky = snntorch.Leaky(beta=TAU, threshold=THRESHOLD, reset_mechanism="zero")

        def snn_torch(x):
            membrane, spikes = torch.zeros_like(x[0]), []
            for step in x:
                spike, membrane = leaky(step, membrane)
                spikes.append(spike)
            return torch.stack(spikes)

        impls[SNN] = snn_torch
    except ImportError as error:
        print(f"snnTorch not installed ({error}); see benchmarks/requirements-bench.txt")
    return impls


def check_same_spikes(impls: dict) -> None:
    """Each implementation must fire exactly our spikes; gradients are compared where the maths is the same."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, 16, 8, 8, generator=generator) * 0.8 + 0.5
    grad = torch.randn(x.shape, generator=generator)
    results = {}
    for name, function in impls.items():
        inputs = x.clone().requires_grad_()
        spikes = function(inputs)
        spikes.backward(grad)
        results[name] = (spikes.detach(), inputs.grad)
    ours_spikes, ours_grad = results[OURS]
    print(f"check on x {tuple(x.shape)} (firing rate {ours_spikes.mean():.2f}):")
    for name, (spikes, grad_x) in results.items():
        same = torch.equal(spikes, ours_spikes)
        note = "" if name != SNN else " (expected: ATan surrogate, detached reset)"
        print(f"  {name:24s} same spikes as ours: {same}; max |grad - ours| = {(grad_x - ours_grad).abs().max():.2e}"
              f"{note}")
        if not same:
            raise SystemExit(f"{name} fires different spikes: the comparison would not be fair")


# --------------------------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------------------------
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def time_once(function, x, grad) -> float:
    inputs = x.detach().requires_grad_()
    start = clock()
    spikes = function(inputs)
    spikes.backward(grad)
    elapsed = clock() - start
    del spikes, inputs
    return elapsed


def peak_bytes(run) -> int:
    """Highest total of live tensor bytes allocated while ``run()`` executes, above the level at its start."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:  # (time, action, tensor, bytes), in time order
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def forward_backward(function, x, grad) -> None:
    inputs = x.detach().requires_grad_()
    spikes = function(inputs)
    spikes.backward(grad)


def saved_bytes(function, x) -> int:
    """Bytes of the distinct storages the autograd graph keeps for backward."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = x.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        spikes = function(inputs)
    del spikes
    return sum(storages.values())


def copy_bandwidth(numel: int, repeats: int = 15) -> float:
    """Bytes/s of a plain one-thread copy (read + write) into a preallocated tensor, best of ``repeats``: the memory
    bandwidth one core gets (best, not median: it is a hardware limit, and the machine is shared)."""
    source, target = torch.randn(numel), torch.empty(numel)
    target.copy_(source)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    for _ in range(repeats):
        start = time.thread_time()  # this thread's CPU time: robust to waiting for a core on a busy machine
        target.copy_(source)
        times.append(time.thread_time() - start)
    torch.set_num_threads(threads)
    return 2 * 4 * numel / min(times)


def kernel_times(x, grad, repeats: int = 15):
    """Best-of-``repeats`` seconds of the native forward and backward kernels alone, on one thread, on preallocated
    outputs (no autograd, no allocation), to set against the one-thread copy bandwidth."""
    library = fused._native_library()[0]
    if library is None:
        return None
    steps, neurons_per_step = x.shape[0], x[0].numel()
    spikes, grad_x = torch.empty_like(x), torch.empty_like(x)
    forward = getattr(library, fused._kernel_name("forward", x.dtype, "hard"))
    backward = getattr(library, fused._kernel_name("backward", x.dtype, "hard", "triangle"))
    forward_args = ((x.data_ptr(), spikes.data_ptr(), None, steps, neurons_per_step),
                    (fused._block_width(steps, backward=False), TAU, THRESHOLD))
    backward_args = ((x.data_ptr(), grad.data_ptr(), None, grad_x.data_ptr(), steps, neurons_per_step),
                     (fused._block_width(steps, backward=True), TAU, THRESHOLD, 1.0))
    results = []
    for kernel, (before, after) in ((forward, forward_args), (backward, backward_args)):
        kernel(*before, 0, neurons_per_step, *after)  # touch the output pages once
        times = []
        for _ in range(repeats):
            start = time.thread_time()
            kernel(*before, 0, neurons_per_step, *after)
            times.append(time.thread_time() - start)
        results.append(min(times))
    return tuple(results)


# --------------------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 shapes, 3 repeats")
    parser.add_argument("--all", action="store_true", help="the full grid of 24 shapes (slow)")
    parser.add_argument("--shapes", nargs="+", metavar="TxBxCxH", help="shapes to run instead, e.g. 4x64x128x16")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per implementation (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time (default), or the process's CPU time: with --threads 1 on a busy shared "
                             "machine, CPU time leaves out the time spent waiting for a core")
    parser.add_argument("--thp", action="store_true", help="THP_MEM_ALLOC_ENABLE=1 for every library")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else ALL_SHAPES if args.all else DEFAULT_SHAPES
    if args.shapes:
        shapes = [tuple(int(size) for size in shape.lower().split("x")) for shape in args.shapes]
    repeats = args.repeats or (3 if args.quick else 7)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f}, THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '0')}; "
          f"fused LIF: {fused.native_status()}")
    impls = implementations()
    check_same_spikes(impls)
    names = list(impls)
    rows = []
    for steps, batch, channels, size in shapes:
        shape = (steps, batch, channels, size, size)
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(shape, generator=generator) * 0.8 + 0.5
        grad = torch.randn(shape, generator=generator)
        for function in impls.values():  # warm-up: first calls allocate, compile, fault pages in
            time_once(function, x, grad)
        times = {name: [] for name in names}
        for repeat in range(repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate the order
                times[name].append(time_once(impls[name], x, grad))
                gc.collect()
        row = {"shape": shape, "numel": x.numel(), "copy_bandwidth": copy_bandwidth(x.numel()),
               "kernels": kernel_times(x, grad), "results": {}}
        for name in names:
            median = statistics.median(times[name])
            row["results"][name] = {"seconds": median, "images_per_s": batch / median,
                                    "neuron_steps_per_s": x.numel() / median,
                                    "peak_bytes": peak_bytes(lambda: forward_backward(impls[name], x, grad)),
                                    "saved_bytes": saved_bytes(impls[name], x)}
        rows.append(row)
        print_row(row)
    print_summary(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
                       "thp": args.thp, "load_average_end": os.getloadavg()[0], "rows": rows}, handle,
                      indent=1)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def print_row(row) -> None:
    steps, batch, channels, size, _ = row["shape"]
    results = row["results"]
    ours = results[OURS]
    print(f"\nT={steps} B={batch} C={channels} H=W={size}: {row['numel'] / 1e6:.1f} M neuron-steps")
    print(f"  {'implementation':24s} {'ms':>8s} {'images/s':>9s} {'Mneuron-steps/s':>16s} {'ours x':>7s} "
          f"{'peak MB':>8s} {'saved MB':>9s}")
    for name, result in results.items():
        print(f"  {name:24s} {result['seconds'] * 1e3:8.1f} {result['images_per_s']:9.0f} "
              f"{result['neuron_steps_per_s'] / 1e6:16.0f} {result['seconds'] / ours['seconds']:7.1f} "
              f"{result['peak_bytes'] / 2**20:8.0f} {result['saved_bytes'] / 2**20:9.0f}")
    if row["kernels"]:
        forward, backward = row["kernels"]
        moved_forward, moved_backward = 8 * row["numel"], 12 * row["numel"]  # bytes per neuron-step, float32
        bandwidth = row["copy_bandwidth"]
        print(f"  native kernels alone, 1 thread: forward {forward * 1e3:.1f} ms = {moved_forward / forward / 1e9:.1f} "
              f"GB/s ({moved_forward / forward / bandwidth:.0%} of a 1-thread copy, {bandwidth / 1e9:.1f} GB/s), "
              f"backward {backward * 1e3:.1f} ms = {moved_backward / backward / 1e9:.1f} GB/s "
              f"({moved_backward / backward / bandwidth:.0%})")


def print_summary(rows) -> None:
    print("\nSummary (throughput ratio = their time / our time; memory: our peak / theirs):")
    print("| T | C | H=W | ours (fused) Mneuron-steps/s | x SpikingJelly | x snnTorch | x reference | "
          "peak MB ours / SJ / snnTorch |")
    print("|---|---|---|---|---|---|---|---|")
    met = {"sj": True, "snn": True, "memory": True}
    for row in rows:
        steps, _, channels, size, _ = row["shape"]
        results = row["results"]
        ours = results[OURS]
        ratio = {name: result["seconds"] / ours["seconds"] for name, result in results.items()}
        peaks = [results[name]["peak_bytes"] / 2**20 for name in (OURS, SJ, SNN) if name in results]
        print(f"| {steps} | {channels} | {size} | {ours['neuron_steps_per_s'] / 1e6:.0f} | "
              f"{ratio.get(SJ, float('nan')):.1f} | {ratio.get(SNN, float('nan')):.1f} | "
              f"{ratio['qpsnn reference']:.1f} | {' / '.join(f'{p:.0f}' for p in peaks)} |")
        met["sj"] &= ratio.get(SJ, 0) >= 2
        met["snn"] &= ratio.get(SNN, 0) >= 4
        met["memory"] &= all(ours["peak_bytes"] <= results[name]["peak_bytes"] for name in (SJ, SNN) if name in results)
    print(f"\ntargets: >= 2x SpikingJelly at every shape: {met['sj']}; >= 4x snnTorch: {met['snn']}; "
          f"peak memory <= both: {met['memory']}")


if __name__ == "__main__":
    main()
