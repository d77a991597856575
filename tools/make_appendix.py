"""Write book/appendix_performance.ipynb (the "Performance" appendix) from the cell list below.

Usage (then execute the notebook to store its outputs):

    python tools/make_appendix.py
    bash tools/execute_notebooks.sh book/appendix_performance.ipynb

The page plots the measurements that `benchmarks/*.py --json` stored in `benchmarks/results/` (the peers, snnTorch
and SpikingJelly, are not dependencies of the book) and repeats the ones that need no peer on the reader's machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbgen import GLUE_IMPORT, INSTALL, code, colab_badge, md, write_chapters  # noqa: E402

NAME = "appendix_performance.ipynb"

CELLS = [
    md(
        f"""
        # Appendix · Performance

        Every chapter of this book trains spiking networks on a laptop CPU, so the package has to be fast where a
        spiking network spends its time: the LIF layer's loop over the $T$ time steps, and, for pruning, the
        singular values of SVS (chapter 06). This page shows how fast, measured against the two libraries a reader
        would otherwise use:

        - **snnTorch** (`snntorch.Leaky`), stepped by a Python loop over $T$, as its tutorials do;
        - **SpikingJelly** (`spikingjelly.activation_based.neuron.LIFNode` in multi-step mode, its plain-PyTorch
          back-end `backend="torch"`);
        - the package's own **readable loop** (`neurons.LIF(backend="reference")`, chapter 01) and its **fused**
          LIF (`backend="fused"`, the default): the whole time loop, forward and backward, in one autograd node
          with a hand-derived backward, run by a small C kernel (or by vectorised PyTorch ops where no C compiler
          is found: `qpsnn_lite.fused.native_status()` says which).

        The measurements with the peers come from the scripts in `benchmarks/` of the repository, which wrote them
        to `benchmarks/results/*.json`; the cells below read and plot those files (the peers are not dependencies of
        the book, so the book does not rerun them). Everything that needs no peer is measured again, live, on the
        machine that runs this page: the numbers in the text come from these cells.

        {colab_badge(NAME)} On Colab, clone the repository first if you want the stored measurements
        (`!git clone https://github.com/qpsnn-lite/qpsnn-lite`); the live measurements run anywhere, in about
        half a minute.
        """
    ),
    INSTALL,
    code(
        '''
        %config InlineBackend.figure_format = "png"
        import json
        import os
        import statistics
        import time
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        from torch import nn

        from IPython.display import Markdown

        from qpsnn_lite import data, fused, models, neurons, prune, train
        from qpsnn_lite.plots import color
        ''',
        GLUE_IMPORT,
        '''
        plt.rcParams.update({"figure.dpi": 80, "axes.spines.top": False, "axes.spines.right": False})
        CHAPTER_START = time.perf_counter()


        def find_results():
            """benchmarks/results of the repository this notebook sits in (None outside a clone)."""
            for folder in (Path.cwd(), *Path.cwd().parents, Path("qpsnn-lite")):
                if (folder / "benchmarks" / "results").is_dir():
                    return folder / "benchmarks" / "results"
            return None


        RESULTS = find_results()
        print("stored benchmark results:", "found" if RESULTS else "not found (clone the repository to plot them)")
        print("fused LIF implementation on this machine:", fused.native_status().split(":")[0])
        '''
    ),
    md(
        """
        ## 1. What the LIF layer costs

        A LIF layer does almost no arithmetic: per neuron and time step a multiply-add, a comparison and a reset
        (Eq. 1-3). What it does a lot of is *moving memory*. A multi-step LIF reads its input current
        $\\mathbf X \\in \\mathbb R^{T \\times B \\times \\dots}$ and writes the spikes; training then reads the
        incoming gradient and writes the gradient of the input. In float32 that is at least 8 bytes per
        neuron-step forward (read 4, write 4) and 12 backward, and whatever the forward saves for the backward
        must be written and read again.

        A loop written with PyTorch operations (ours in chapter 01, snnTorch's, SpikingJelly's `torch` back-end)
        runs several operations per time step, each a full pass over a $B \\times C \\times H \\times W$ tensor,
        and saves the membrane potential and the surrogate's input of every step for the backward. The fused LIF
        runs one pass over $\\mathbf X$ with the neuron's state held in registers, saves only $\\mathbf X$ itself,
        and *recomputes* the membrane potentials in the backward. Its cost is close to what copying the tensors
        costs (`benchmarks/README.md` measures the kernels against the machine's copy bandwidth).

        ## 2. Live: the fused and the readable LIF on this machine

        First the comparison that needs nothing but this package: forward and backward through the LIF at four
        shapes, both implementations interleaved (one repetition of each in turn, so that a busy machine slows both
        alike), the median of 7, after a warm-up. The spikes must be identical and the gradients equal to rounding.
        """
    ),
    code(
        '''
        SHAPES = [(4, 32, 64, 8, 8), (4, 32, 32, 16, 16), (8, 32, 64, 8, 8), (16, 32, 32, 8, 8)]   # T, B, C, H, W
        layers = {"reference": neurons.LIF(backend="reference"), "fused": neurons.LIF(backend="fused")}


        def forward_backward(layer, x, grad):
            x = x.detach().requires_grad_()
            spikes = layer(x)
            spikes.backward(grad)
            return spikes, x.grad


        live = []
        for shape in SHAPES:
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(shape, generator=generator) * 0.8 + 0.5
            grad = torch.randn(shape, generator=generator)
            outputs = {name: forward_backward(layer, x, grad) for name, layer in layers.items()}   # also the warm-up
            assert torch.equal(outputs["reference"][0], outputs["fused"][0])
            assert torch.allclose(outputs["reference"][1], outputs["fused"][1], atol=1e-5)
            times = {name: [] for name in layers}
            for repeat in range(7):
                for name in (list(layers) if repeat % 2 == 0 else list(layers)[::-1]):
                    tic = time.perf_counter()
                    forward_backward(layers[name], x, grad)
                    times[name].append(time.perf_counter() - tic)
            median = {name: statistics.median(t) for name, t in times.items()}
            live.append((shape, median))

        print("T   B   C  H=W   neuron-steps   reference ms   fused ms   fused M neuron-steps/s   speed-up")
        for shape, median in live:
            steps = int(np.prod(shape))
            print(f"{shape[0]:<3d} {shape[1]:<3d} {shape[2]:<3d} {shape[3]:<3d}  {steps / 1e6:9.2f} M   "
                  f"{1e3 * median['reference']:12.2f}   {1e3 * median['fused']:8.2f}   "
                  f"{steps / median['fused'] / 1e6:22.0f}   {median['reference'] / median['fused']:7.1f} x")
        live_ratios = [median["reference"] / median["fused"] for _, median in live]
        glue("perf_live_min", min(live_ratios), display=False)
        glue("perf_live_max", max(live_ratios), display=False)
        '''
    ),
    md(
        """
        On this machine the fused LIF was {glue:text}`perf_live_min:.1f` to {glue:text}`perf_live_max:.1f` times
        faster than the readable loop, with the same spikes. (These timings come from whatever machine executed the
        page, under whatever load it had; the ratio is what to look at.)

        ## 3. Stored: against snnTorch and SpikingJelly

        `benchmarks/lif_throughput.py` times five implementations at seven shapes: the fused LIF (native kernel),
        the fused LIF's PyTorch-ops fallback, the readable loop, SpikingJelly and snnTorch, each checked to fire the
        same spikes first (snnTorch's default surrogate differs, so only its spikes are compared). It warms every
        implementation on every shape, interleaves their repetitions and reports medians. The stored run used one
        PyTorch thread and the process's CPU time (`--threads 1 --clock cpu`), which leaves out time spent
        waiting for a core on a shared machine. The left panel is the speed-up of the fused LIF over each of the
        others (their time divided by ours; above 1 means we are faster), the right panel the peak memory of one
        forward and backward.
        """
    ),
    code(
        '''
        def load_results(name):
            path = RESULTS / name if RESULTS else None
            if path is None or not path.exists():
                print(f"{name}: not found; run the command in benchmarks/README.md to create it")
                return None
            return json.loads(path.read_text())


        lif = load_results("lif_throughput_1thread_cpu.json")
        OURS = "qpsnn fused"
        PEERS = {"SpikingJelly": "SpikingJelly", "snnTorch": "snnTorch", "qpsnn reference": "readable loop",
                 "qpsnn fused, torch ops": "fused, PyTorch ops"}
        PEER_COLORS = {"SpikingJelly": "#d95f02", "snnTorch": "#7570b3", "qpsnn reference": "0.6",
                       "qpsnn fused, torch ops": "#66a61e"}
        if lif:
            rows = lif["rows"]
            labels = [f"T={r['shape'][0]}\\nC={r['shape'][2]}\\n{r['shape'][3]}x{r['shape'][4]}" for r in rows]
            x = np.arange(len(rows))
            width = 0.8 / len(PEERS)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
            for k, (key, label) in enumerate(PEERS.items()):
                ratios = [r["results"][key]["seconds"] / r["results"][OURS]["seconds"] for r in rows]
                ax1.bar(x + (k - 1.5) * width, ratios, width, label=label, color=PEER_COLORS[key])
            ax1.axhline(1, color="k", lw=0.8)
            ax1.axhline(2, color=PEER_COLORS["SpikingJelly"], ls=":", lw=1)
            ax1.axhline(4, color=PEER_COLORS["snnTorch"], ls=":", lw=1)
            ax1.set_xticks(x, labels, fontsize=8)
            ax1.set_ylabel("speed-up of the fused LIF (their time / ours)")
            ax1.set_title(f"forward + backward, B = {rows[0]['shape'][1]}; dotted: the targets 2x and 4x",
                          fontsize=10)
            ax1.legend(fontsize=8)
            names = [OURS, *PEERS]
            width = 0.8 / len(names)
            for k, key in enumerate(names):
                peaks = [r["results"][key]["peak_bytes"] / 2**20 for r in rows]
                ax2.bar(x + (k - 2) * width, peaks, width, color=PEER_COLORS.get(key, color("svs")),
                        label="fused (ours)" if key == OURS else PEERS[key])
            ax2.set_yscale("log")
            ax2.set_ylim(top=10 * max(r["results"][k]["peak_bytes"] for r in rows for k in names) / 2**20)
            ax2.set_xticks(x, labels, fontsize=8)
            ax2.set_ylabel("peak memory, forward + backward (MiB)")
            ax2.set_title("peak memory (lower is better)", fontsize=10)
            ax2.legend(fontsize=8, ncol=3, loc="upper left")
            fig.tight_layout()
            plt.show()

            def ratio_range(key):
                ratios = [r["results"][key]["seconds"] / r["results"][OURS]["seconds"] for r in rows]
                return min(ratios), max(ratios)

            for key, label in PEERS.items():
                low, high = ratio_range(key)
                print(f"fused LIF vs {label:20s}: {low:5.1f} x to {high:5.1f} x faster")
            leanest = all(r["results"][OURS]["peak_bytes"] <= min(r["results"][k]["peak_bytes"] for k in PEERS)
                          for r in rows)
            print("fused LIF has the lowest peak memory at every shape:", leanest)
            print("saved for the backward, bytes per neuron-step (float32 input: 4 B):")
            for key in names:
                per_step = [r["results"][key]["saved_bytes"] / r["numel"] for r in rows]
                print(f"  {'fused (ours)' if key == OURS else PEERS[key]:20s} {min(per_step):4.1f} to {max(per_step):4.1f}")
            saved = {key: [r["results"][key]["saved_bytes"] / r["numel"] for r in rows] for key in names}
            glue("perf_saved_ours", max(saved[OURS]), display=False)
            glue("perf_saved_peers_min", min(min(saved[k]) for k in ("SpikingJelly", "snnTorch")), display=False)
            glue("perf_saved_peers_max", max(max(saved[k]) for k in ("SpikingJelly", "snnTorch")), display=False)
            glue("perf_sj_min", ratio_range("SpikingJelly")[0], display=False)
            glue("perf_sj_max", ratio_range("SpikingJelly")[1], display=False)
            glue("perf_snn_min", ratio_range("snnTorch")[0], display=False)
            glue("perf_snn_max", ratio_range("snnTorch")[1], display=False)
            glue("perf_lif_threads", lif["threads"], display=False)
        '''
    ),
    md(
        """
        In the stored run the fused LIF was {glue:text}`perf_sj_min:.1f` to {glue:text}`perf_sj_max:.1f` times
        faster than SpikingJelly and {glue:text}`perf_snn_min:.1f` to {glue:text}`perf_snn_max:.1f` times faster
        than snnTorch, and used the least memory. Three things to read from the plot:

        - **The gap grows with $T$ for the stacked-input loops.** SpikingJelly's `torch` back-end and our readable
          loop index `x[t]` on a stacked input; the backward of each such index writes a full $[T, \\dots]$ tensor
          of zeros, so their cost grows like $T^2$. snnTorch, stepped by the user, avoids that and is the leanest
          peer.
        - **The smallest margins are at the smallest shapes**, where fixed costs (Python, autograd, allocation)
          weigh most.
        - **Memory**: the fused LIF keeps only its input for the backward ({glue:text}`perf_saved_ours:.0f` bytes
          per neuron-step); SpikingJelly and snnTorch keep {glue:text}`perf_saved_peers_min:.1f` to
          {glue:text}`perf_saved_peers_max:.1f`.

        On a GPU the fused LIF uses its PyTorch-ops implementation (green), which does what SpikingJelly's
        `torch` back-end does with fewer, in-place operations; SpikingJelly's CuPy back-end, which this page does
        not measure, is a fused CUDA kernel.

        ## 4. A whole training step

        The LIF is only part of a training step: convolutions, BatchNorm and the optimizer cost the same with
        either LIF. Live, on this machine: one step (forward, backward, Adam) of the digits CNN on a batch of 64
        digits at $T = 4$, with each backend.
        """
    ),
    code(
        '''
        def set_backend(model, backend):
            for module in model.modules():
                if isinstance(module, neurons.LIF):
                    module.backend = backend


        torch.manual_seed(0)
        train_loader, _ = data.load("digits", batch_size=64, seed=0)
        images, labels = next(iter(train_loader))
        model = models.build("digits_cnn", num_classes=10)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_function = nn.CrossEntropyLoss()


        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_function(model(images), labels).backward()
            optimizer.step()


        step_times = {"reference": [], "fused": []}
        for backend in step_times:                                  # warm-up
            set_backend(model, backend)
            step()
        for repeat in range(9):
            for backend in (["reference", "fused"] if repeat % 2 == 0 else ["fused", "reference"]):
                set_backend(model, backend)
                tic = time.perf_counter()
                step()
                step_times[backend].append(time.perf_counter() - tic)
        step_median = {backend: statistics.median(t) for backend, t in step_times.items()}
        for backend, seconds in step_median.items():
            print(f"digits CNN, B = 64, T = 4, {backend:9s}: {1e3 * seconds:6.1f} ms per step, "
                  f"{64 / seconds:6.0f} images/s")
        glue("perf_step_ratio", step_median["reference"] / step_median["fused"], display=False)

        stored = load_results("train_step_1thread_cpu.json")
        if stored:
            print("\\nstored run (benchmarks/train_step.py --threads 1 --clock cpu):")
            for row in stored["rows"]:
                print(f"  {row['model']:30s} {row['backend']:9s} {1e3 * row['seconds']:7.0f} ms per step, "
                      f"peak {row['peak_bytes'] / 2**20:4.0f} MiB, speed-up {row['speedup']:.2f} x")
        '''
    ),
    md(
        """
        Here the whole step was {glue:text}`perf_step_ratio:.2f` times faster with the fused LIF. The gain on a
        step is smaller than on the LIF alone, and smaller still for VGG-16 (in the stored run), whose thirteen
        convolutions dominate its step: a fused LIF removes the LIF's cost, not the convolutions'.

        ## 5. What SVS scoring costs

        SVS (chapter 06) needs the singular values of every time-averaged spike map: $B \\times C$ small matrices
        per layer and batch. `prune.svs_score` computes them with one batched `torch.linalg.svdvals` call per layer
        (in float64, skipping all-zero maps), where the authors' code calls `matrix_rank` once per map. How does
        that compare with the per-map loop, and with the forward pass that produced the spikes? Live, on the digits
        CNN (16 x 16 digits, a batch of 32, $T = 4$); the loop runs on 4 of the 32 samples and is scaled up, to keep
        the page quick.
        """
    ),
    code(
        '''
        torch.manual_seed(0)
        score_loader, _ = data.load("digits", batch_size=32, image_size=16, seed=0)
        net = models.build("digits_cnn", num_classes=10)
        train.fit(net, score_loader, epochs=2, progress=False)      # a trained network fires like one
        net.eval()
        images16 = next(iter(score_loader))[0]
        recorded = {}
        hooks = [layer.lif.register_forward_hook(
                     lambda module, inputs, output, name=layer.name: recorded.__setitem__(name, output))
                 for layer in prune.prunable_layers(net)]
        with torch.no_grad():
            net(images16)
        for hook in hooks:
            hook.remove()


        def forward_pass():
            with torch.no_grad():
                net(images16)


        def batched():
            for spikes in recorded.values():
                prune.svs_score(spikes)


        LOOP_SAMPLES = 4


        def per_map_loop():
            for spikes in recorded.values():
                maps = spikes[:, :LOOP_SAMPLES].double().mean(0)
                for b in range(maps.shape[0]):
                    for c in range(maps.shape[1]):
                        int((torch.linalg.svdvals(maps[b, c]) > 1e-6).sum())


        svs_times = {"forward pass": [], "batched SVS": [], "per-map loop": []}
        jobs = {"forward pass": forward_pass, "batched SVS": batched, "per-map loop": per_map_loop}
        for job in jobs.values():                                    # warm-up
            job()
        for _ in range(5):
            for name, job in jobs.items():
                tic = time.perf_counter()
                job()
                svs_times[name].append(time.perf_counter() - tic)
        svs_median = {name: statistics.median(t) for name, t in svs_times.items()}
        svs_median["per-map loop"] *= images16.shape[0] / LOOP_SAMPLES   # scaled to the whole batch
        maps_count = sum(s.shape[1] * s.shape[2] for s in recorded.values())
        silent = sum(int((s.sum(0).flatten(2).amax(-1) == 0).sum()) for s in recorded.values())
        rate = sum(float(s.sum()) for s in recorded.values()) / sum(s.numel() for s in recorded.values())
        print(f"digits CNN trained for 2 epochs, {len(recorded)} layers, {maps_count:,} maps of the batch "
              f"({100 * silent / maps_count:.0f} % of them silent and skipped), mean firing rate {rate:.2f}:")
        for name, seconds in svs_median.items():
            print(f"  {name:13s} {1e3 * seconds:8.1f} ms   ({seconds / svs_median['forward pass']:5.2f} x the forward pass)")
        glue("perf_svs_vs_loop", svs_median["per-map loop"] / svs_median["batched SVS"], display=False)
        svs_vs_forward = svs_median["batched SVS"] / svs_median["forward pass"]
        glue("perf_svs_vs_forward", svs_vs_forward, display=False)
        glue("perf_svs_verdict", Markdown(
            "so here scoring cost *more* than the forward pass that produced the spikes" if svs_vs_forward > 1 else
            "so here scoring cost less than the forward pass that produced the spikes, though not by much"),
            display=False)
        '''
    ),
    md(
        """
        The batched call was {glue:text}`perf_svs_vs_loop:.1f` times faster than the per-map loop, and cost
        {glue:text}`perf_svs_vs_forward:.2f` forward passes of this small network, {glue:md}`perf_svs_verdict`.
        On a CPU the batched call still decomposes one matrix after another inside LAPACK: what it saves is the
        Python and dispatch overhead of one call per map, which dominates for maps of 16 x 16 and smaller. The
        digits CNN's forward pass is very cheap (four small convolutions), so the two are of the same order; for a
        network whose convolutions do real work, such as VGG-16, scoring is the smaller part. The stored run
        (`benchmarks/svs_scoring.py`, where batch normalisation is calibrated so that every layer fires at a
        realistic rate):
        """
    ),
    code(
        '''
        svs_stored = load_results("svs_scoring.json")
        if svs_stored:
            print(f"stored run: benchmarks/svs_scoring.py, B = {svs_stored['batch']}, T = {svs_stored['T']}, "
                  f"{svs_stored['threads']} threads, medians of {svs_stored['reps']}")
            fig, ax = plt.subplots(figsize=(8, 2.6))
            for k, row in enumerate(svs_stored["rows"]):
                seconds = row["seconds"]
                for j, (key, label) in enumerate([("forward", "forward pass"), ("batched", "batched SVS"),
                                                  ("loop", "per-map loop (scaled)")]):
                    ax.barh(k + (j - 1) * 0.27, seconds[key], 0.25, color=["0.6", color("svs"), "#d95f02"][j],
                            label=label if k == 0 else None)
                print(f"  {row['network']:44s} batched SVS = {seconds['batched'] / seconds['forward']:.2f} forward "
                      f"passes; per-map loop / batched = {seconds['loop'] / seconds['batched']:.1f}")
            ax.set_yticks(range(len(svs_stored["rows"])), [row["network"] for row in svs_stored["rows"]], fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("seconds for one batch (log scale)")
            ax.legend(fontsize=8, loc="lower right")
            fig.tight_layout()
            plt.show()
        '''
    ),
    md(
        """
        Is there a faster route? The eigenvalues of the Gram matrix $\\mathbf M \\mathbf M^\\top$ are the squared
        singular values, and a symmetric eigenvalue solver is cheaper than an SVD. But squaring moves the threshold
        from $\\epsilon = 10^{-6}$ to $\\epsilon^2 = 10^{-12}$, and squaring also squares the scale of the
        round-off. Let us measure both on random spike maps of 8 x 8 and of 32 x 32 (the size of VGG-16's first
        layers on CIFAR): the time, the largest eigenvalue where the exact value is zero, and the smallest
        genuine squared singular value.
        """
    ),
    code(
        '''
        print("maps      svdvals ms   eigvalsh(M M^T) ms   largest round-off eigenvalue   smallest genuine sigma^2   "
              "same ranks")
        for side, count in ((8, 4096), (32, 512)):
            generator = torch.Generator().manual_seed(side)
            maps = (torch.rand(4, count, side, side, generator=generator) < 0.2).double().mean(0)
            maps[: count // 2, 1::2] = maps[: count // 2, ::2]        # half of them with repeated rows: rank <= side/2
            gram = maps @ maps.mT
            timings = {}
            for name, job in (("svd", lambda: torch.linalg.svdvals(maps)), ("eig", lambda: torch.linalg.eigvalsh(gram))):
                job()
                runs = []
                for _ in range(5):
                    tic = time.perf_counter()
                    job()
                    runs.append(time.perf_counter() - tic)
                timings[name] = statistics.median(runs)
            sigma, eigen = torch.linalg.svdvals(maps), torch.linalg.eigvalsh(gram)
            zero = sigma < 1e-9                                      # exact zeros (up to float64 round-off)
            roundoff = float(eigen.flip(-1)[zero].abs().max()) if zero.any() else 0.0
            same = torch.equal((sigma > 1e-6).sum(-1), (eigen > 1e-12).sum(-1))
            bound = side * torch.finfo(torch.float64).eps * side * side   # n u ||M||_F^2 for a map of ones
            print(f"{side:2d} x {side:<2d}  {1e3 * timings['svd']:10.1f}   {1e3 * timings['eig']:18.1f}   "
                  f"{roundoff:28.1e}   {float((sigma[~zero] ** 2).min()):24.1e}   {same}")
            print(f"         a-priori error bound of the eigenvalues, n u ||M||_F^2 at most: {bound:.1e}")
            glue(f"perf_gram_bound_{side}", bound, display=False)
            glue(f"perf_gram_roundoff_{side}", roundoff, display=False)
            glue(f"perf_gram_speedup_{side}", timings["svd"] / timings["eig"], display=False)
        '''
    ),
    md(
        """
        The Gram route was {glue:text}`perf_gram_speedup_8:.1f` times faster on 8 x 8 maps and
        {glue:text}`perf_gram_speedup_32:.1f` times on 32 x 32 maps, and on these maps its round-off
        ({glue:text}`perf_gram_roundoff_8:.0e` and {glue:text}`perf_gram_roundoff_32:.0e`) stayed below
        $\\epsilon^2$ (the "same ranks" column says whether the two routes agreed on every map). What it lacks is a
        guarantee: the textbook error bound of the eigenvalues grows with the map's size and firing, up to
        {glue:text}`perf_gram_bound_32:.0e` for a 32 x 32 map, above $\\epsilon^2 = 10^{-12}$, while the smallest
        genuine squared singular values come within a few orders of magnitude of it. The package
        stays with float64 singular values, which chapter 06 (section 1) showed separate zero from non-zero by
        many orders of magnitude. Scoring runs once per pruning, on 5 batches; it is never the bottleneck of a
        QP-SNN run, which spends its time training.

        ## Reproduce the stored runs

        From a clone of the repository, with the peers installed without dependencies (so that pip never replaces
        your PyTorch):

        ```bash
        python -m pip install --no-deps -r benchmarks/requirements-bench.txt
        python benchmarks/lif_throughput.py --threads 1 --clock cpu --json benchmarks/results/lif_throughput_1thread_cpu.json
        python benchmarks/train_step.py --threads 1 --clock cpu --json benchmarks/results/train_step_1thread_cpu.json
        python benchmarks/svs_scoring.py --json benchmarks/results/svs_scoring.json
        ```

        `benchmarks/README.md` has the full tables, the machine they were measured on, the memory-bandwidth bound
        of the fused kernels, and why the kernel is a small C file loaded with `ctypes` rather than `torch.compile`.
        """
    ),
    code(
        '''
        print(f"page executed in {time.perf_counter() - CHAPTER_START:.0f} s")
        '''
    ),
]


if __name__ == "__main__":
    sys.exit(write_chapters({"performance": (CELLS, NAME)}))
