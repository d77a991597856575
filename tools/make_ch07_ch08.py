"""Write book/07_qpsnn_pipeline.ipynb and book/08_efficiency_deployment.ipynb from the cell lists below.

The chapters are authored here as Python lists of cells, with the helpers of tools/nbgen.py.
Usage (then execute the notebooks to store their outputs):

    python tools/make_ch07_ch08.py
    bash tools/execute_notebooks.sh book/07_qpsnn_pipeline.ipynb book/08_efficiency_deployment.ipynb
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, where nbgen.py is, however this file is loaded

import nbgen  # noqa: E402
from nbgen import INSTALL, PLOT_SETUP, code, colab_badge, md, setup_cell, write_chapters  # noqa: E402

# The book's budget for chapters 07 and 08, spliced into code and into the command lines shown in markdown, so the
# two never disagree. The paper trains 300 epochs and fine-tunes 150 (Table 8).
T_BOOK, EPOCHS_BOOK, FINETUNE_BOOK = 2, 6, 3


def budget(text: str) -> str:
    """Fill in the book's budget (T, epochs, fine-tuning epochs) in a command line shown in markdown."""
    return text.replace("T_BOOK", str(T_BOOK)).replace("EPOCHS_BOOK", str(EPOCHS_BOOK)).replace(
        "FINETUNE_BOOK", str(FINETUNE_BOOK))


GLUE_IMPORT = nbgen.GLUE_IMPORT + '''

def glue_words(name, text):
    """Glue a phrase (rendered with {glue:md}) whose wording depends on a measured result."""
    glue(name, Markdown(text), display=False)
'''

CLOCK = '''
def clock():
    """Wall-clock and CPU seconds so far; the difference of two calls is what a section cost."""
    return np.array([time.perf_counter(), time.process_time()])


CHAPTER_START = clock()
COST = {}  # section -> [wall seconds, CPU seconds]
'''

# What follows the imports in the setup cell of both chapters (see nbgen.setup_cell).
SETUP_SNIPPETS = (GLUE_IMPORT, PLOT_SETUP, CLOCK)

SETTING_CODE = f'''
SETTING = dict(T={T_BOOK}, epochs={EPOCHS_BOOK}, finetune_epochs={FINETUNE_BOOK})   # the book's budget (the paper: 300 + 150)
'''

# The train/fine-tune helper of both chapters: what pipeline.run does between its stages.
FIT_CODE = '''
train_loader, test_loader = data.load("digits", batch_size=config.batch_size, image_size=16, seed=config.seed)


def fit(net, epochs, finetune=False):
    """train.fit with the settings of `config`. The loader's shuffling is re-seeded first, as pipeline.run does
    before each stage, so every stage sees the same order of mini-batches whatever ran before it."""
    train_loader.generator.manual_seed(config.seed)
    return train.fit(net, train_loader, test_loader, epochs,
                     lr=config.finetune_lr if finetune else config.lr,
                     optimizer=config.finetune_optimizer if finetune else config.optimizer,
                     weight_decay=config.weight_decay, seed=config.seed, progress=False)
'''

# ======================================================================================================================
# Chapter 07 · The full QP-SNN pipeline
# ======================================================================================================================
CH07 = [
    md(
        r"""
        # 07 · The full QP-SNN pipeline

        Chapters 03 to 06 built the parts of QP-SNN one at a time: the uniform quantizer, ReScaW, structured pruning
        and the SVS criterion. This chapter assembles them in the order of the paper's Algorithm 1, *quantize, then
        prune, then fine-tune*: first as four explicit calls into the package, then as one call, `pipeline.run`, which
        must give exactly the same network. With the one call we then repeat three of the paper's experiments at a
        small scale: the ablation of Table 2 over several seeds, the order study of App. A (quantize-then-prune against
        prune-then-quantize), and a map of accuracy against model size over bit widths and pruning ratios.

        **Learning goals.** After this chapter you can

        - run Algorithm 1 step by step: quantization-aware training (QAT) with ReScaW from scratch, SVS scores on the
          trained *quantized* network, one-shot pruning at fixed ratios, fine-tuning with quantization still on;
        - explain why accuracy collapses right after pruning although the neurons keep firing, and why a few epochs of
          fine-tuning bring it back;
        - do all of it with one call, `pipeline.run(Config(...))`, or one command line, and read its report;
        - reproduce the ablation A-F of Table 2 over several seeds, put it beside the paper's numbers, and say where and
          why a small-scale reproduction can and cannot agree;
        - compare the two orders of App. A, quantize-then-prune (QP) and prune-then-quantize (PQ);
        - read an accuracy-versus-size plot and its Pareto front to choose a bit width and a pruning ratio.

        **Run it yourself.** BADGE On Colab the first code cell installs the `qpsnn_lite` package; anywhere else it
        does nothing. The paper trains every network for 300 epochs and fine-tunes it for 150 after pruning; to fit
        dozens of networks into a few minutes of CPU, this chapter trains for a handful of epochs (section 1 says
        exactly how many, section 7 what it cost).
        """.replace("BADGE", colab_badge("07_qpsnn_pipeline.ipynb"))
    ),
    INSTALL,
    setup_cell(
        '''
        import os
        import statistics
        import time

        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        from IPython.display import Markdown, display

        from qpsnn_lite import data, metrics, models, pipeline, plots, prune, quant, train, widgets
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 1. Algorithm 1 in four steps

        The paper's Algorithm 1 turns a spiking network into a quantized, pruned one in four steps. Written out, with
        the equations of the earlier chapters:

        1. **Quantization-aware training from scratch.** Every convolution but the first computes with
           ReScaW-quantized weights (chapter 04),

           $$W^{l} \approx \gamma \cdot \Big( \frac{2}{s(b)} \Big\lceil \frac{s(b)}{2} \big( \mathrm{clamp}(\tfrac{W^{l}}
           {\gamma}; -1, 1) + z \big) \Big\rfloor - z \Big), \qquad \gamma = \frac{\|W^l\|_1}{|W^l|}, \tag{10}$$

           with $s(b) = 2^b - 1$, $z = 1$ and $\gamma$ recomputed at every forward pass. The network is trained with
           surrogate gradients through time (STBP) and the straight-through estimator. There is **no full-precision
           pre-training**: the network is quantized from its first step.
        2. **Score every channel with SVS** on a few training batches of the trained, *quantized* network (chapter 06):
           the time-averaged spike map of channel $f$ of layer $l$ is decomposed,

           $$\mathbf S^{l,f}_{avg} = \frac1T\sum_{t=1}^{T}\mathbf S^{l,f}[t] = \mathbf P\,\boldsymbol\Sigma\,\mathbf
           Q^{\top}, \tag{11}$$

           and the score counts its singular values above $\epsilon = 10^{-6}$, averaged over the samples:

           $$\mathrm{Score}(\mathbf W^{l,f}) = \mathbb E_B\Big[\sum_{i=1}^{\min(h,w)}\mathbb I(\sigma_i > \epsilon)
           \Big]. \tag{13}$$
        3. **Prune once.** In every layer $l$ but the last (which feeds the classifier), remove the fraction $r_l$ of
           channels with the lowest scores, with their BatchNorm entries and the matching input channels of the next
           layer (chapter 05). The ratios are fixed by hand per layer; there is no search and no iteration.
        4. **Fine-tune** the narrower network, with quantization still on.

        The paper gives its reasons for this order in App. A: kernels judged important in full precision may no longer
        be the important ones once quantized, so the scores should come from the quantized network; and this order
        needs two training stages instead of three. Section 4 tests the other order.

        Everything a run needs is one `pipeline.Config`. We take its defaults (the digits, resized to 16 x 16 so that
        the spike maps SVS ranks are not tiny; the chapter 02 CNN; 4-bit ReScaW with the mean rule; SVS pruning that
        removes half the channels of every layer but the last) and change only the budget:
        """
    ),
    code(
        SETTING_CODE,
        r'''
        SEEDS = [0, 1, 2]                         # seeds of the ablation (section 3) and the order study (section 4)
        config = pipeline.Config(**SETTING)
        print("pipeline.Config(**SETTING), the fields that matter here (image_size None means 16 for the digits):")
        for name in ("dataset", "image_size", "batch_size", "model", "T", "bits", "gamma", "granularity", "ste",
                     "criterion", "ratio", "score_batches", "copy_bn", "order", "epochs", "optimizer", "lr",
                     "finetune_epochs", "finetune_optimizer", "finetune_lr", "weight_decay", "seed"):
            print(f"  {name:18s} = {getattr(config, name)!r}")
        glue("ch07_T", config.T, display=False)
        glue("ch07_epochs", config.epochs, display=False)
        glue("ch07_finetune_epochs", config.finetune_epochs, display=False)
        glue("ch07_bits", config.bits, display=False)
        glue("ch07_ratio_pct", 100 * config.ratio, display=False)
        glue("ch07_seeds", len(SEEDS), display=False)
        glue("ch07_score_batches", config.score_batches, display=False)
        '''
    ),
    md(
        r"""
        **The book's budget.** Every network in this chapter is trained for {glue:text}`ch07_epochs` epochs and
        fine-tuned for {glue:text}`ch07_finetune_epochs` after pruning; the paper trains for 300 and fine-tunes for 150
        (its Table 8). We also run the digits CNN at $T =$ {glue:text}`ch07_T` time steps, the value the paper uses for
        its ResNet20 on CIFAR (chapter 02 used 4): it halves the cost of every epoch. Everything else is the package's
        default, which follows the authors' code: Adam at a learning rate of $10^{-3}$ with cosine decay, weight decay
        $10^{-5}$ on the convolution weights only. Expect networks that are not fully trained: the point of this
        chapter is the recipe and the comparisons, each measured under the same budget.

        ## 2. Algorithm 1, step by step with the package

        ### Step 1: quantization-aware training with ReScaW, from scratch

        `models.build(..., bits=4, gamma="mean")` builds the digits CNN with ReScaW-quantized convolutions after the
        full-precision stem; `train.fit` trains it. Two seeds make the run repeatable: `train.seed_everything` fixes the
        initial weights, and re-seeding the training loader's random generator before each stage fixes the order of
        the mini-batches. `pipeline.run` does exactly this, which is why we will be able to compare the two bit for
        bit.
        """
    ),
    code(
        FIT_CODE,
        r'''
        tic = clock()
        train.seed_everything(config.seed)                                  # the initial weights
        model = models.build("digits_cnn", num_classes=10, T=config.T, bits=config.bits, gamma=config.gamma)
        history_train = fit(model, config.epochs)
        COST["2. step 1: QAT"] = clock() - tic

        print("epoch   test accuracy")
        for epoch, accuracy in zip(history_train.epoch, history_train.test_accuracy):
            print(f"{epoch:5d}   {100 * accuracy:12.1f} %")
        print("\nlayer                  type          weights   stored as                          levels used")
        for name, m in metrics.conv_layers(model):
            if isinstance(m, quant.QuantConv2d):
                used = quant.bit_utilization(m.weight.detach(), m.bits, m.gamma, m.granularity)
                kind, levels = f"{m.bits} bits, gamma = {m.gamma} per {m.granularity}", f"{used * 2**m.bits:.0f} of {2**m.bits}"
            else:
                kind, levels = "32 bits (full precision)", ""
            print(f"{name:22s} {type(m).__name__:12s} {m.weight.numel():8,d}   {kind:34s} {levels}")
        glue("ch07_acc_trained", 100 * history_train.final_accuracy, display=False)
        levels = [quant.bit_utilization(m.weight.detach(), m.bits, m.gamma, m.granularity) * 2**m.bits
                  for _, m in metrics.conv_layers(model)[1:]]
        glue_words("ch07_levels", f"all {2**config.bits}" if min(levels) == 2**config.bits
                   else f"at least {min(levels):.0f} of the {2**config.bits}")
        glue("ch07_params", metrics.count_parameters(model), display=False)
        '''
    ),
    md(
        r"""
        After {glue:text}`ch07_epochs` epochs the quantized network classifies {glue:text}`ch07_acc_trained:.1f` % of
        the test digits correctly, and, as chapter 04 promised, ReScaW's quantized layers use {glue:md}`ch07_levels`
        levels of their grid.

        ### Step 2: score every channel with SVS

        `prune.score` runs {glue:text}`ch07_score_batches` training batches through the trained network in evaluation
        mode, hooks every prunable layer's LIF output, and returns one score per output channel. An SVS score is an
        average $\epsilon$-rank, so it lies between 0 and the side $\min(h, w)$ of the layer's spike map, which we
        record with a hook too:
        """
    ),
    code(
        r'''
        tic = clock()
        scores = prune.score(model, train_loader, config.criterion, batches=config.score_batches, seed=config.seed)
        COST["2. step 2: SVS scores"] = clock() - tic

        map_side = {}                                                    # the side of each layer's spike map


        def record_side(name):
            def hook(module, inputs, spikes):                             # spikes: [T, B, C, h, w]
                map_side[name] = min(spikes.shape[-2:])                   # (a forward hook must return None)
            return hook


        hooks = [layer.lif.register_forward_hook(record_side(layer.name)) for layer in prune.prunable_layers(model)]
        with torch.no_grad():
            model.eval()(next(iter(test_loader))[0])
        for hook in hooks:
            hook.remove()

        print("layer                 channels   spike map side   SVS score: min    mean    max")
        for name, s in scores.items():
            print(f"{name:22s} {s.numel():7d}   {map_side[name]:14d}   {s.min():14.2f} {s.mean():7.2f} {s.max():6.2f}")
            assert 0 <= s.min() and s.max() <= map_side[name]           # an average rank of an h x w map
        '''
    ),
    md(
        r"""
        ### Step 3: prune once

        `prune.apply(model, scores, ratio)` returns a physically narrower copy: in each layer with $n$ channels it
        keeps the $\lfloor n(1 - r)\rfloor$ channels with the highest scores, and removes the others with their
        BatchNorm entries and the matching input channels of the next convolution. The last convolution, which feeds
        the classifier, is not pruned. We check that the kept channels are exactly the top-scored ones, then measure
        the network right after the cut.
        """
    ),
    code(
        r'''
        tic = clock()
        pruned = prune.apply(model, scores, config.ratio, copy_bn=config.copy_bn)
        accuracy_pruned, _ = train.evaluate(pruned, test_loader)
        rates_before = metrics.firing_rates(model, test_loader, batches=None)
        rates_after = metrics.firing_rates(pruned, test_loader, batches=None)
        COST["2. step 3: prune"] = clock() - tic

        print("layer                 channels -> kept   lowest kept score   highest removed score   "
              "firing rate before -> after")
        for layer in prune.prunable_layers(model):
            name, n = layer.name, layer.channels
            kept = pruned.pruned_channels[name]
            removed = torch.tensor(sorted(set(range(n)) - set(kept.tolist())), dtype=torch.long)
            lif = name.replace(".conv", ".lif")
            if removed.numel():                                        # the kept channels are the top-scored ones
                assert len(kept) == int(n * (1 - config.ratio))
                assert scores[name][kept].min() >= scores[name][removed].max()
                cut = f"{scores[name][kept].min():17.2f}   {scores[name][removed].max():21.2f}"
            else:
                cut = f"{'(last conv: not pruned)':>41s}"
            print(f"{name:22s} {n:8d} -> {len(kept):4d}   {cut}   {rates_before[lif]:14.3f} -> {rates_after[lif]:.3f}")

        size_before = metrics.model_size_mb(model, config.bits)
        size_after = metrics.model_size_mb(pruned, config.bits)
        kept_connections = metrics.connection_percent(pruned, model)
        print(f"\nparameters {metrics.count_parameters(model):,} -> {metrics.count_parameters(pruned):,}; quantized "
              f"connections kept {kept_connections:.1f} %; size (Eq. 16, {config.bits} bits) "
              f"{1e3 * size_before:.1f} kB -> {1e3 * size_after:.1f} kB")
        print(f"test accuracy {100 * history_train.final_accuracy:.1f} % before pruning, "
              f"{100 * accuracy_pruned:.1f} % right after")
        glue("ch07_acc_pruned", 100 * accuracy_pruned, display=False)
        glue_words("ch07_chance", "about chance for ten classes" if accuracy_pruned < 0.2 else "far below where it was")
        glue("ch07_rate_change", max(abs(rates_after[k] - rates_before[k]) for k in rates_before), display=False)
        lowest = min(float(scores[layer.name].min()) for layer in prune.prunable_layers(model)[:-1])
        glue_words("ch07_removed_fired",
                   f"Every removed channel was firing: the lowest SVS score in any pruned layer is {lowest:.2f}, and a "
                   "channel that never fires scores 0." if lowest > 0 else
                   "Most removed channels were firing (a channel that never fires scores 0).")
        glue("ch07_connections", kept_connections, display=False)
        glue("ch07_kb_before", 1e3 * size_before, display=False)
        glue("ch07_kb_after", 1e3 * size_after, display=False)
        '''
    ),
    md(
        r"""
        The cut keeps {glue:text}`ch07_connections:.1f` % of the quantized connections and shrinks the model from
        {glue:text}`ch07_kb_before:.1f` kB to {glue:text}`ch07_kb_after:.1f` kB. (Removing half the channels of two
        consecutive layers removes three quarters of the weights between them; the last layer keeps its outputs but
        loses half its inputs.) And the accuracy falls to {glue:text}`ch07_acc_pruned:.1f` %, {glue:md}`ch07_chance`.

        **Why the collapse, when the neurons keep firing?** The firing rates barely move (by at most
        {glue:text}`ch07_rate_change:.3f`): the network is not silent, it is *confused*.
        {glue:md}`ch07_removed_fired` Their spikes reached the next layer through weights that a quantized layer cannot
        make zero (chapter 03: the grid has no zero level). Remove half of a layer's inputs and
        every neuron of the next layer receives a current that is missing half its terms; its BatchNorm still
        normalises with statistics measured on the full input. The errors compound over three layers, and the
        classifier receives spike counts it has never seen. The low-scored channels are the *least informative* ones
        by SVS's measure, not the ones whose removal changes nothing. That is what fine-tuning is for. (Exercise 1
        shows how much of the damage is just stale BatchNorm statistics.)

        ### Step 4: fine-tune, with quantization still on

        The pruned copy still holds `QuantConv2d` layers, so fine-tuning is quantization-aware too; note that each one
        recomputes its $\gamma$ from the weights it kept. We fine-tune with the same helper.
        """
    ),
    code(
        r'''
        tic = clock()
        assert all(isinstance(m, quant.QuantConv2d) for _, m in metrics.conv_layers(pruned)[1:])   # still quantized
        history_finetune = fit(pruned, config.finetune_epochs, finetune=True)
        COST["2. step 4: fine-tune"] = clock() - tic
        print("fine-tuning epoch   test accuracy")
        for epoch, accuracy in zip(history_finetune.epoch, history_finetune.test_accuracy):
            print(f"{epoch:17d}   {100 * accuracy:12.1f} %")
        glue("ch07_acc_finetuned", 100 * history_finetune.final_accuracy, display=False)
        glue("ch07_acc_cost", 100 * (history_train.final_accuracy - history_finetune.final_accuracy), display=False)
        '''
    ),
    code(
        r'''
        E = len(history_train.epoch)
        fig, ax = plt.subplots(figsize=(6.8, 3.3))
        ax.plot(history_train.epoch, [100 * a for a in history_train.test_accuracy], marker="o", ms=4,
                color=color("rescaw"), label=f"step 1: QAT, {config.bits}-bit ReScaW")
        ax.plot([E, E + 0.5], [100 * history_train.final_accuracy, 100 * accuracy_pruned], ls=":", color="0.4")
        ax.plot([E + 0.5], [100 * accuracy_pruned], marker="v", ms=7, color="0.4", ls="none",
                label="step 3: right after pruning")
        ax.plot([E + 0.5] + [E + 0.5 + e for e in history_finetune.epoch],
                [100 * accuracy_pruned] + [100 * a for a in history_finetune.test_accuracy], marker="o", ms=4,
                color=color("svs"), ls="--", label="step 4: fine-tuning the pruned network")
        ax.axvline(E + 0.25, color="0.8", lw=6, zorder=0)
        ax.set_xlabel("epoch (training, then fine-tuning)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7, frameon=False)
        ax.set_title(f"Pruning {100 * config.ratio:.0f} % of the channels drops accuracy to {100 * accuracy_pruned:.0f} %; "
                     f"{len(history_finetune.epoch)} epochs of fine-tuning recover "
                     f"{100 * history_finetune.final_accuracy:.1f} %",
                     fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        {glue:text}`ch07_finetune_epochs` epochs of fine-tuning bring the pruned network back to
        {glue:text}`ch07_acc_finetuned:.1f` %, against {glue:text}`ch07_acc_trained:.1f` % before pruning. The
        surviving weights already encode most of what the network knew; the fine-tuning re-balances them (and the
        BatchNorm statistics) for the missing channels, far faster than training from scratch would.

        ### The same in one call

        `pipeline.run(config)` performs the four steps (and measures size, firing rates, SOPs and energy, the subject of
        chapter 08) and returns a `Result`. Since it seeds the same way, it must give the same network as our four
        steps, to the last bit: same channel counts, same size and the same accuracy after every epoch.
        """
    ),
    code(
        r'''
        tic = clock()
        result = pipeline.run(config, progress=False)
        COST["2. pipeline.run"] = clock() - tic

        assert result.channels_pruned == {name: int(m.weight.shape[0]) for name, m in metrics.conv_layers(pruned)}
        assert result.size_mb_pruned == metrics.model_size_mb(pruned, config.bits)
        assert result.connection_percent == kept_connections
        assert result.history_train["test_accuracy"] == history_train.test_accuracy
        assert result.accuracy_pruned == accuracy_pruned
        assert result.history_finetune["test_accuracy"] == history_finetune.test_accuracy
        print("pipeline.run agrees with the four explicit steps: channels, size, and the accuracy after every epoch\n")
        print(result.table())
        '''
    ),
    md(
        r"""
        Besides the accuracies, the report gives the size by the paper's rule (Eq. 16) before and after pruning, the
        connections kept, the synaptic operations (SOPs) and an energy estimate per sample, the channels kept per layer
        with their firing rates, and the wall time of each stage. `Result.save(path)` writes all of it as JSON, and
        `Config(output_dir=...)` also writes the integer export of the pruned network and two figures (chapter 08).

        ## 3. The ablation of Table 2: what each ingredient buys

        The paper isolates its two ingredients in Table 2, on CIFAR-100 with ResNet20 at 2 bits (pruning
        configuration B, a 1.20 MB model). Rows A and B quantize without pruning; rows C to F prune as well. The
        *baseline* C uses the vanilla quantizer of chapter 03 and the SCA criterion of chapter 05; D swaps in ReScaW,
        E swaps in SVS, and F, QP-SNN, uses both:

        | row | quantizer | pruning | the paper's accuracy (%) | the paper's gain |
        |---|---|---|---|---|
        | A | vanilla | none | 78.53 | |
        | B | ReScaW | none | 79.16 | +0.63 over A |
        | C | vanilla | SCA | 69.16 | (the baseline) |
        | D | ReScaW | SCA | 73.40 | +4.24 over C |
        | E | vanilla | SVS | 73.32 | +4.16 over C |
        | F | ReScaW | SVS | 73.89 | +4.73 over C |

        The "4.73 %" of the paper's abstract is F against C. `pipeline.ablation(config, seeds)` runs all six rows on
        our data, model and budget: per seed it trains two networks (vanilla and ReScaW) and prunes each one twice (SCA
        and SVS), then fine-tunes. We run it at 2 bits, like the paper, with the pruning ratio of section 2, over
        {glue:text}`ch07_seeds` seeds.
        """
    ),
    code(
        r'''
        tic = clock()
        ablation = pipeline.ablation(config.replace(bits=2), seeds=SEEDS, progress=False)
        COST["3. ablation"] = clock() - tic
        print(ablation.table())
        '''
    ),
    md(
        r"""
        Our accuracies and the paper's are on different scales (ten digit classes against a hundred CIFAR classes, a
        network of {glue:text}`ch07_params:,d` parameters against the paper's 17.1 million), so compare the *gains*
        instead: each
        row against its reference. Because row B's network and row A's network start from the same seed, as do the
        pruned rows, we can pair the runs seed by seed, which removes much of the seed-to-seed variation from the
        differences.
        """
    ),
    code(
        r'''
        rows = {r.row: r for r in ablation.rows}
        GAINS = (("B", "A", "ReScaW, no pruning"), ("D", "C", "ReScaW, with SCA pruning"),
                 ("E", "C", "SVS instead of SCA"), ("F", "C", "ReScaW + SVS (QP-SNN)"))


        def paired(row, reference):
            """Per-seed differences row - reference, in points (the seeds are in the same order in both rows)."""
            return [a - b for a, b in zip(rows[row].accuracies, rows[reference].accuracies)]


        print("row  setting                               ours: mean +- std (%)   per seed                paper (%)")
        for r in ablation.rows:
            seeds = "  ".join(f"{a:5.1f}" for a in r.accuracies)
            print(f"{r.row:3s}  {r.description:36s}  {r.mean:10.2f} +- {r.std:4.2f}      {seeds}      {r.paper:6.2f}")
        print("\ngain            what changes                 ours: mean +- std (points)   per seed            paper")
        for row, reference, what in GAINS:
            d = paired(row, reference)
            paper = rows[row].paper - rows[reference].paper
            print(f"{row} over {reference}       {what:27s}  {statistics.fmean(d):+13.2f} +- {statistics.stdev(d):4.2f}"
                  f"        {'  '.join(f'{x:+5.1f}' for x in d)}      {paper:+.2f}")
        for r in ablation.rows:
            glue(f"ch07_abl_{r.row}", r.mean, display=False)
            glue(f"ch07_abl_{r.row}_std", r.std, display=False)
        for row, reference, _ in GAINS:
            d = paired(row, reference)
            glue(f"ch07_gain_{row}{reference}", statistics.fmean(d), display=False)
            glue(f"ch07_gain_{row}{reference}_std", statistics.stdev(d), display=False)
        glue("ch07_abl_kb_dense", 1e3 * rows["A"].size_mb, display=False)
        glue("ch07_abl_kb_pruned", 1e3 * rows["F"].size_mb, display=False)
        glue("ch07_test_images", len(test_loader.dataset), display=False)
        glue("ch07_one_image", 100 / len(test_loader.dataset), display=False)


        def verdict(row, reference):
            """How a measured gain compares with its seed-to-seed spread, in words."""
            d = paired(row, reference)
            mean = statistics.fmean(d)
            if mean > 0 and min(d) > 0:
                return "positive for every seed"
            if mean > 0:
                return "positive on average but not for every seed"
            return "not positive on average"


        for row, reference, _ in GAINS:
            glue_words(f"ch07_verdict_{row}{reference}", verdict(row, reference))
        pruned_rows = sorted("CDEF", key=lambda k: rows[k].mean)
        for key, row in (("best", pruned_rows[-1]), ("worst", pruned_rows[0])):
            glue_words(f"ch07_{key}_pruned", f"row {row} ({rows[row].mean:.1f} ± {rows[row].std:.1f} %)")
        '''
    ),
    code(
        r'''
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4), width_ratios=[1.25, 1])
        labels = [r.row for r in ablation.rows]
        x = np.arange(len(labels))
        row_color = {"A": color("vanilla"), "B": color("rescaw"), "C": color("sca"), "D": color("sca"),
                     "E": color("svs"), "F": color("svs")}
        for i, r in enumerate(ablation.rows):
            hatch = "//" if r.gamma is None and r.criterion is not None else None
            ax1.bar(i, r.mean, yerr=r.std, color=row_color[r.row], alpha=0.85 if r.gamma else 0.45, hatch=hatch,
                    capsize=3, edgecolor="white")
            ax1.plot([i] * len(r.accuracies), r.accuracies, "k.", ms=5)
        ax1.set_xticks(x, [f"{r.row}\n{'ReScaW' if r.gamma else 'vanilla'}\n{r.criterion or 'no pruning'}"
                           for r in ablation.rows], fontsize=8)
        ax1.set_ylabel("test accuracy (%), ours")
        low = min(min(r.accuracies) for r in ablation.rows)
        ax1.set_ylim(max(0, 5 * (low // 5) - 5), 100)
        ax1.set_title("Our rows A-F: mean, spread and each seed (dots)", fontsize=10)

        width = 0.38
        for i, (row, reference, what) in enumerate(GAINS):
            d = paired(row, reference)
            ax2.bar(i - width / 2, statistics.fmean(d), width, yerr=statistics.stdev(d), capsize=3,
                    color=row_color[row], label="ours (mean over seeds)" if i == 0 else None)
            ax2.plot([i - width / 2] * len(d), d, "k.", ms=5)
            ax2.bar(i + width / 2, rows[row].paper - rows[reference].paper, width, color="0.75",
                    label="the paper's (CIFAR-100, ResNet20)" if i == 0 else None)
        ax2.axhline(0, color="0.3", lw=0.8)
        SHORT = {"B": "ReScaW\n(no pruning)", "D": "ReScaW\n(SCA pruning)", "E": "SVS\ninstead of SCA",
                 "F": "ReScaW + SVS\n(QP-SNN)"}
        ax2.set_xticks(range(len(GAINS)), [f"{row} - {ref}\n{SHORT[row]}" for row, ref, _ in GAINS], fontsize=7)
        ax2.set_ylabel("gain (points)")
        ax2.legend(fontsize=7, loc="upper left")
        ax2.set_title("Gains over the reference row, paired by seed", fontsize=10)
        fc = statistics.fmean(paired("F", "C"))
        fig.suptitle(f"Ablation at 2 bits, {len(SEEDS)} seeds, {config.epochs} + {config.finetune_epochs} epochs: "
                     f"QP-SNN (F) {'beats' if fc > 0 else 'trails'} the baseline (C) by {abs(fc):.1f} points "
                     f"(the paper: 4.73)", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        **Where we agree with the paper.**

        - *Pruning costs accuracy, and ReScaW + SVS costs the least of the four pruned variants in the paper.* Our
          best pruned row is {glue:md}`ch07_best_pruned`, our worst {glue:md}`ch07_worst_pruned`. The pruned networks are
          {glue:text}`ch07_abl_kb_pruned:.1f` kB against {glue:text}`ch07_abl_kb_dense:.1f` kB unpruned.
        - *ReScaW helps the pruned network* (D over C): {glue:text}`ch07_gain_DC:+.1f` ±
          {glue:text}`ch07_gain_DC_std:.1f` points, {glue:md}`ch07_verdict_DC`; the paper: +4.24.
        - *Both together are the best combination* (F over C): {glue:text}`ch07_gain_FC:+.1f` ±
          {glue:text}`ch07_gain_FC_std:.1f` points, {glue:md}`ch07_verdict_FC`; the paper: +4.73.

        **Where we differ, and why.**

        - *ReScaW without pruning* (B over A): {glue:text}`ch07_gain_BA:+.1f` ± {glue:text}`ch07_gain_BA_std:.1f`
          points, {glue:md}`ch07_verdict_BA`; the paper's gain is +0.63. A difference in size is expected: at 2 bits
          the vanilla quantizer makes our small layers binary (chapter 03: all weights at $\pm\frac13$), and a
          network of four layers trained for a few epochs feels that more than a 17-million-parameter ResNet20
          trained for 300 epochs, which has the capacity and the time to compensate.
        - *SVS instead of SCA* (E over C): {glue:text}`ch07_gain_EC:+.1f` ± {glue:text}`ch07_gain_EC_std:.1f` points,
          {glue:md}`ch07_verdict_EC`; the paper: +4.16. This is the comparison our setting resolves worst. A criterion
          matters when the network depends on which channels survive; with a fine-tuning budget this short, all
          variants are still far from converged, and the seed-to-seed spread of a few points is as large as the
          effect we are looking for. Our test set has {glue:text}`ch07_test_images` images, so one image is
          {glue:text}`ch07_one_image:.2f` points. The spike maps SVS ranks are also small here (16 x 16 down to
          8 x 8, against 32 x 32 down to 8 x 8 in ResNet20), so its scores tie often (chapter 06), and with only
          {glue:text}`ch07_seeds` seeds a gain of one or two points cannot be told from noise.
        - *The size of the pruning penalty* differs too: the paper's configuration B keeps 22.69 % of ResNet20's
          quantized connections (its Table 6) for a drop of 5.27 points from row B to row F after 150 epochs of
          fine-tuning; we keep
          {glue:text}`ch07_connections:.0f` % and fine-tune for {glue:text}`ch07_finetune_epochs` epochs.

        The honest summary: at this scale the ablation reproduces the *direction* of the paper's findings where the
        effects are large (ReScaW at 2 bits, and the full method against the baseline), and it is too noisy to confirm
        or refute the smaller ones. The paper reports a single run per row, without a spread, so we cannot tell how
        much of its +0.63 or of the 0.57 between E and F is noise either. To resolve smaller gains, raise the number of
        seeds and the epochs (exercise 3 estimates how many seeds), or run the paper's own setting on a GPU: the
        command is in section 6.

        ## 4. Which order? Quantize-then-prune against prune-then-quantize (App. A)

        App. A of the paper compares Algorithm 1 (QP: quantize, train, score, prune, fine-tune) with the reverse order
        (PQ: train in full precision, score and prune the full-precision network, then quantize and fine-tune), on
        CIFAR-100 with ResNet20 at 4 bits. Its Table 3:

        | order | baseline (vanilla + SCA) | with ReScaW + SVS |
        |---|---|---|
        | PQ: prune, then quantize | 71.51 % | 73.34 % |
        | QP: quantize, then prune (Algorithm 1) | 70.27 % | **74.73 %** |

        QP-SNN beats PQ-SNN by 1.39 points. The argument is that the channels that matter in the full-precision network
        are not necessarily those that matter once it is quantized; scoring the quantized network judges the channels
        the deployed network will actually have. `Config(order="pq")` runs the reverse order with the same budget: the
        same number of epochs, spent on the full-precision network instead of the quantized one. We compare the two at
        4 bits over {glue:text}`ch07_seeds` seeds; the QP run with seed 0 is the `result` of section 2.
        """
    ),
    code(
        r'''
        tic = clock()
        order_runs = {"qp": {config.seed: result}, "pq": {}}
        for seed in SEEDS:
            for order in ("qp", "pq"):
                if seed not in order_runs[order]:
                    order_runs[order][seed] = pipeline.run(config.replace(order=order, seed=seed), progress=False)
        COST["4. order study"] = clock() - tic

        PAPER_ORDER = {"pq": 73.34, "qp": 74.73}   # the paper's Table 3 (CIFAR-100, ResNet20, 4 bits)
        TRAINED_AS = {"qp": f"{config.bits}-bit ReScaW", "pq": "full precision"}


        def spread(values):
            return f"{statistics.fmean(values):6.2f} +- {statistics.stdev(values):4.2f}"


        print(f"order  trained as           trained (%)       right after pruning (%)   fine-tuned (%)    paper (%)")
        for order, runs in order_runs.items():
            trained = [100 * runs[s].accuracy_trained for s in SEEDS]
            cut = [100 * runs[s].accuracy_pruned for s in SEEDS]
            final = [100 * runs[s].accuracy_finetuned for s in SEEDS]
            print(f"{order:5s}  {TRAINED_AS[order]:18s}  {spread(trained)}    {spread(cut)}            {spread(final)}"
                  f"    {PAPER_ORDER[order]:6.2f}")
            glue(f"ch07_order_{order}", statistics.fmean(final), display=False)
            glue(f"ch07_order_{order}_std", statistics.stdev(final), display=False)
            glue(f"ch07_order_{order}_trained", statistics.fmean(trained), display=False)
        gap = [100 * (order_runs["qp"][s].accuracy_finetuned - order_runs["pq"][s].accuracy_finetuned) for s in SEEDS]
        print(f"\nQP - PQ after fine-tuning, per seed: {'  '.join(f'{g:+.1f}' for g in gap)} points "
              f"(mean {statistics.fmean(gap):+.2f}; the paper: {PAPER_ORDER['qp'] - PAPER_ORDER['pq']:+.2f})")
        assert {r.size_mb_pruned for runs in order_runs.values() for r in runs.values()} == {result.size_mb_pruned}
        print(f"every run ends with the same architecture: {1e3 * result.size_mb_pruned:.1f} kB at {config.bits} bits")
        glue("ch07_order_gap", statistics.fmean(gap), display=False)
        for order, runs in order_runs.items():
            glue(f"ch07_order_{order}_cut", statistics.fmean(100 * runs[s].accuracy_pruned for s in SEEDS), display=False)
        glue_words("ch07_order_sign", "agrees with the paper's in sign" if statistics.fmean(gap) > 0
                   else "has the opposite sign to the paper's")
        glue_words("ch07_order_verdict",
                   "QP ahead for every seed" if min(gap) > 0 else
                   "PQ ahead for every seed" if max(gap) < 0 else "the order changing from seed to seed")
        '''
    ),
    md(
        r"""
        After fine-tuning, QP reaches {glue:text}`ch07_order_qp:.1f` ± {glue:text}`ch07_order_qp_std:.1f` % and PQ
        {glue:text}`ch07_order_pq:.1f` ± {glue:text}`ch07_order_pq_std:.1f` %: a mean difference QP - PQ of
        {glue:text}`ch07_order_gap:+.1f` points, with {glue:md}`ch07_order_verdict`. Our difference
        {glue:md}`ch07_order_sign` (+1.39), and both are of the size of the seed-to-seed spread of each arm. Three
        things to read from the table:

        - *Right after pruning*, the PQ network suffers two shocks at once, the cut and the switch to 4-bit weights
          ({glue:text}`ch07_order_pq_cut:.1f` % on average), while the QP network only suffers the cut
          ({glue:text}`ch07_order_qp_cut:.1f` %): it was trained quantized. This is the paper's argument in action.
        - *The budget is shared differently.* PQ spends its {glue:text}`ch07_epochs` training epochs on a
          full-precision network, which learns faster than a quantized one: it reaches
          {glue:text}`ch07_order_pq_trained:.1f` % against {glue:text}`ch07_order_qp_trained:.1f` %. How much of that
          head start survives the cut, the quantization and a fine-tuning of {glue:text}`ch07_finetune_epochs` epochs
          decides the comparison at our budget; with the paper's 300 + 150 epochs, both arms converge and the head
          start disappears.
        - *At 4 bits, quantization is gentle.* ReScaW at 4 bits represents a layer closely (chapter 04), so the
          channels that matter in full precision and after quantization are mostly the same, and the argument for QP
          is weakest exactly where the paper tested it. At 2 bits it should weigh more (exercise 5).

        The paper's second argument for QP is about cost, and it holds in any setting: a fair PQ pipeline with its own
        full-precision pre-training would need three stages (train, then fine-tune after pruning, then again after
        quantizing), QP needs two.

        ## 5. Accuracy against model size: choosing bits and ratio

        The paper reports its networks at 8, 4 and 2 bits and at two or three pruning configurations each (Table 1).
        Which combination should you deploy? Plot every trained network as a point, size against accuracy; a point
        is *Pareto-optimal* if no other network is both smaller and more accurate, and the Pareto-optimal points form
        the *front*: the only sensible choices. We train the digits CNN at 2, 4, 8 and 32 bits (full precision) and
        prune each at ratios 0, 0.5 and 0.75, always with SVS. The 4-bit network is the one of section 2 (same seed,
        same settings), so we reuse it; a network at ratio 0 is the trained network itself, without fine-tuning.
        """
    ),
    code(
        r'''
        tic = clock()
        BITS, RATIOS = (2, 4, 8, 32), (0.0, 0.5, 0.75)
        trained = {config.bits: (model, scores, history_train.final_accuracy)}     # section 2's 4-bit network
        for bits in BITS:
            if bits not in trained:
                train.seed_everything(config.seed)
                net = models.build("digits_cnn", num_classes=10, T=config.T, bits=None if bits == 32 else bits,
                                   gamma=config.gamma)
                history = fit(net, config.epochs)
                net_scores = prune.score(net, train_loader, "svs", batches=config.score_batches, seed=config.seed)
                trained[bits] = (net, net_scores, history.final_accuracy)

        points = []
        for bits in BITS:
            net, net_scores, accuracy = trained[bits]
            points.append(dict(bits=bits, ratio=0.0, kb=1e3 * metrics.model_size_mb(net, bits), accuracy=100 * accuracy))
            for ratio in RATIOS[1:]:
                small = prune.apply(net, net_scores, ratio)
                history = fit(small, config.finetune_epochs, finetune=True)
                if (bits, ratio) == (config.bits, config.ratio):      # the same network as section 2, retrained
                    assert history.test_accuracy == history_finetune.test_accuracy
                points.append(dict(bits=bits, ratio=ratio, kb=1e3 * metrics.model_size_mb(small, bits),
                                   accuracy=100 * history.final_accuracy))
        COST["5. size sweep"] = clock() - tic


        def pareto_front(points):
            """The points no other point beats on both counts (smaller and more accurate), smallest first."""
            front, best = [], -1.0
            for p in sorted(points, key=lambda p: (p["kb"], -p["accuracy"])):
                if p["accuracy"] > best:
                    front.append(p)
                    best = p["accuracy"]
            return front


        front = pareto_front(points)
        print("bits   ratio   size (kB)   test accuracy (%)   on the Pareto front")
        for p in points:
            on_front = "yes" if p in front else ""
            print(f"{p['bits']:4d}   {p['ratio']:5.2f}   {p['kb']:9.2f}   {p['accuracy']:17.1f}   {on_front}")
        glue("ch07_front_n", len(front), display=False)
        glue("ch07_points_n", len(points), display=False)
        glue_words("ch07_front_list", "; ".join(f"{p['bits']} bits at ratio {p['ratio']:g} ({p['kb']:.1f} kB, "
                                                f"{p['accuracy']:.1f} %)" for p in front))
        largest, smallest = max(p["kb"] for p in points), min(p["kb"] for p in points)
        glue("ch07_kb_largest", largest, display=False)
        glue("ch07_kb_smallest", smallest, display=False)
        glue("ch07_kb_factor", largest / smallest, display=False)
        absent = [b for b in BITS if not any(p["bits"] == b for p in front)]
        glue_words("ch07_front_absent", "every bit width has at least one network on it" if not absent else
                   "none of the " + " or ".join(f"{b}-bit" for b in absent) + " networks is on it")
        best = max(points, key=lambda p: p["accuracy"])
        best_quantized = max(p["accuracy"] for p in points if p["bits"] < 32)
        glue_words("ch07_fp_sentence",
                   f"Full precision is the most accurate here, by {best['accuracy'] - best_quantized:.1f} points over "
                   "the best quantized network, but at several times the size; under a short training budget it also "
                   "has the advantage of learning fastest." if best["bits"] == 32 else
                   "The most accurate network is a quantized one: full precision buys nothing here.")
        near = min((p for p in points if p["accuracy"] >= best["accuracy"] - 2), key=lambda p: p["kb"])
        glue_words("ch07_near_best", f"{near['bits']} bits at ratio {near['ratio']:g}: {near['accuracy']:.1f} % in "
                   f"{near['kb']:.1f} kB, against {best['accuracy']:.1f} % in {best['kb']:.1f} kB for the most accurate "
                   f"network ({best['bits']} bits at ratio {best['ratio']:g})")
        glue("ch07_fp_gain", best["accuracy"] - max(p["accuracy"] for p in points if p["bits"] < 32), display=False)
        '''
    ),
    code(
        r'''
        BIT_COLOR = {2: plots.PALETTE[3], 4: plots.PALETTE[0], 8: plots.PALETTE[2], 32: color("full precision")}
        RATIO_MARKER = {0.0: "o", 0.5: "s", 0.75: "^"}


        def draw_sweep(ax, highlight=None):
            """All points of the sweep, the Pareto front, and (optionally) one bit width highlighted and labelled."""
            xs = [p["kb"] for p in front]
            ax.step(xs, [p["accuracy"] for p in front], where="post", color="0.3", ls="--", lw=1, zorder=1,
                    label="Pareto front")
            for p in points:
                on = highlight is None or p["bits"] == highlight
                ax.scatter(p["kb"], p["accuracy"], s=60 if on else 30, marker=RATIO_MARKER[p["ratio"]], zorder=3,
                           color=BIT_COLOR[p["bits"]] if on else "0.82", edgecolor="k" if p in front else "none")
                if highlight is not None and on:
                    ax.annotate(f"ratio {p['ratio']:g}\n{p['accuracy']:.1f} %", (p["kb"], p["accuracy"]),
                                textcoords="offset points", xytext=(6, -18), fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("model size, Eq. 16 (kB, log scale)")
            ax.set_ylabel("test accuracy (%)")
            low = min(p["accuracy"] for p in points)
            ax.set_ylim(max(0, 10 * (low // 10) - 5), 100)


        fig, ax = plt.subplots(figsize=(7, 3.8))
        draw_sweep(ax)
        for bits, c in BIT_COLOR.items():
            ax.scatter([], [], color=c, label=f"{bits} bits" if bits < 32 else "32 bits (full precision)")
        for ratio, marker in RATIO_MARKER.items():
            ax.scatter([], [], color="0.5", marker=marker, label=f"ratio {ratio:g}")
        ax.legend(fontsize=7, ncol=2, loc="lower right")
        fp_front = sum(p["bits"] == 32 for p in front)
        ax.set_title(f"{len(front)} of {len(points)} networks are Pareto-optimal, "
                     f"{fp_front if fp_front else 'none'} of them at full precision", fontsize=10)
        plt.show()
        '''
    ),
    md(
        r"""
        The sweep spans sizes from {glue:text}`ch07_kb_smallest:.1f` kB to {glue:text}`ch07_kb_largest:.0f` kB, a
        factor of {glue:text}`ch07_kb_factor:.0f`. {glue:text}`ch07_front_n` of its {glue:text}`ch07_points_n`
        networks are on the front: {glue:md}`ch07_front_list`. The small end of the front belongs to the low bit
        widths, and {glue:md}`ch07_front_absent`. {glue:md}`ch07_fp_sentence` A practical way to read the
        front is to ask for the smallest network within 2 points of the most accurate one. Here that is
        {glue:md}`ch07_near_best`.

        Two general lessons, which the paper's Table 1 shows too. Lowering the bit width is the cheapest way to shrink
        a network: at the same architecture, 2 bits shrink the quantized part sixteen-fold against 32 bits, for a cost
        in accuracy that ReScaW keeps small. Pruning removes whole channels, so it also removes computation (chapter
        08) and the full-precision BatchNorm parameters that quantization cannot touch, but at a ratio of 0.75 it costs
        more accuracy than our short fine-tuning can recover.

        Move the slider to highlight one bit width; the labels give the pruning ratio and the accuracy of each of its
        three networks. The figures were rendered when the chapter was executed, so the slider also works on the static
        page.
        """
    ),
    code(
        r'''
        def render_bits(bits):
            fig = plots.figure(6.6, 3.4)
            ax = fig.add_subplot()
            draw_sweep(ax, highlight=bits)
            mine = sorted((p for p in points if p["bits"] == bits), key=lambda p: p["ratio"])
            name = f"{bits} bits" if bits < 32 else "Full precision"
            ax.set_title(f"{name}: pruning 75 % takes {mine[0]['kb']:.1f} kB to {mine[-1]['kb']:.1f} kB, "
                         f"accuracy {mine[0]['accuracy']:.1f} % to {mine[-1]['accuracy']:.1f} %", fontsize=9)
            return fig


        display(widgets.slider_stack(BITS, render_bits, "weights", value=config.bits,
                                     readout=lambda b: f"{b} bits" if b < 32 else "32 bits (full precision)", dpi=72))
        '''
    ),
    md(
        budget(
            r"""
            ## 6. The same from the command line

            The package installs a command line with the same knobs: every field of `Config` is a flag
            (`--finetune-epochs`, `--prune-config`, ...), `--preset NAME` starts from one of the paper's settings, and
            the flags given override it. `presets` lists the named settings:
            """
        )
    ),
    code(
        r'''
        !python -m qpsnn_lite presets
        '''
    ),
    md(
        r"""
        And `run --help` lists every flag, grouped like the fields of `Config`, with the defaults:
        """
    ),
    code(
        r'''
        !python -m qpsnn_lite run --help
        '''
    ),
    md(
        budget(
            r"""
            The runs of this chapter as command lines (each writes `result.json`, the integer export and two figures
            into `runs/<timestamp>` unless you pass `--output-dir`):

            ```bash
            # section 2: Algorithm 1 on the digits, at the book's budget
            python -m qpsnn_lite run --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK

            # section 3: the ablation A-F of Table 2, at 2 bits over three seeds
            python -m qpsnn_lite ablation --seeds 3 --bits 2 --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK

            # section 4: the reverse order (App. A), one seed
            python -m qpsnn_lite run --order pq --seed 1 --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK

            # section 5: one point of the sweep, 8 bits with 75 % of the channels removed
            python -m qpsnn_lite run --bits 8 --ratio 0.75 --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK

            # the paper's ablation setting (CIFAR-100, ResNet20 configuration B, 2 bits, 300 + 150 epochs): GPU only
            python -m qpsnn_lite ablation --preset cifar100-resnet20-ablation --seeds 3
            ```

            On a shared machine, `--threads 1` can be much faster than PyTorch's default of one thread per core: a
            thread that has to wait for a busy core stalls the others at every operation. Chapter 08 explains how to
            run the paper-scale presets on a Colab GPU and what they cost.

            ## 7. What this chapter cost

            Every section above recorded its wall-clock time and the CPU time of this process:
            """
        )
    ),
    code(
        r'''
        total = clock() - CHAPTER_START
        print("section                         wall (s)    CPU (s)")
        for name, (wall, cpu) in COST.items():
            print(f"{name:30s} {wall:9.1f} {cpu:10.1f}")
        print(f"{'whole chapter so far':30s} {total[0]:9.1f} {total[1]:10.1f}")
        trainings = 2 + 2 * len(SEEDS) + (2 * len(SEEDS) - 1) + (len(BITS) - 1)
        finetunings = 2 + 4 * len(SEEDS) + (2 * len(SEEDS) - 1) + len(BITS) * (len(RATIOS) - 1)
        print(f"\n{trainings} networks trained from scratch ({config.epochs} epochs each), {finetunings} pruned networks "
              f"fine-tuned ({config.finetune_epochs} epochs each)")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"torch used {torch.get_num_threads()} thread(s) on a machine with {os.cpu_count()} cores; "
              f"load average over the last minute: {load:.1f}")
        glue("ch07_wall", float(total[0]), display=False)
        glue("ch07_cpu", float(total[1]), display=False)
        glue("ch07_trainings", trainings, display=False)
        glue("ch07_finetunings", finetunings, display=False)
        glue("ch07_threads", torch.get_num_threads(), display=False)
        glue("ch07_cores", os.cpu_count(), display=False)
        glue("ch07_load", load, display=False)
        '''
    ),
    md(
        r"""
        The chapter trained {glue:text}`ch07_trainings` networks from scratch and fine-tuned
        {glue:text}`ch07_finetunings` pruned ones, in {glue:text}`ch07_wall:.0f` s of wall-clock time and
        {glue:text}`ch07_cpu:.0f` s of CPU time when it was last executed, with {glue:text}`ch07_threads` torch
        thread(s) on {glue:text}`ch07_cores` cores. That machine was shared with other jobs (its load average was
        {glue:text}`ch07_load:.1f`), so the wall time above is inflated; the CPU time is the better guide to what the
        chapter costs on an idle machine. The fine-tuning stages are cheap (a pruned network has a quarter to a half of
        the work per epoch), and the ablation dominates because it trains two networks per seed.

        ## Exercises

        **1. How much of the pruning shock is BatchNorm?** Right after pruning, every BatchNorm still normalises with
        the running statistics it measured on the *unpruned* network. Re-estimate them on the pruned network (one pass
        over the training set in training mode, no gradient, `momentum=None` for an exact average) and evaluate it
        again, before any fine-tuning. What fraction of the lost accuracy comes back?

        ```{dropdown} Solution
        The cell below recalibrates a copy of section 2's pruned network (before fine-tuning: we prune the trained
        network again with the same scores). Recalibration alone recovers a good part of the lost accuracy without a
        single gradient step (the cell prints how much): much of the "confusion" after pruning is a mismatch of
        scale. Each neuron's input current
        lost half its terms, so its mean and variance changed, and BatchNorm keeps shifting and scaling with the old
        values. The rest needs fine-tuning: the remaining weights must learn to carry what the removed channels
        carried. Recalibrating BatchNorm is a standard first step after pruning (and after quantizing) in practice,
        because it is almost free.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 1
        fresh = prune.apply(model, scores, config.ratio)                   # section 2's cut, before fine-tuning
        for m in fresh.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None                                          # a cumulative average over the pass
        fresh.train()
        with torch.no_grad():
            for images, _ in train_loader:
                fresh(images)
        recalibrated, _ = train.evaluate(fresh, test_loader)
        print(f"trained {100 * history_train.final_accuracy:.1f} %, right after pruning {100 * accuracy_pruned:.1f} %, "
              f"after recalibrating BatchNorm {100 * recalibrated:.1f} %, after fine-tuning "
              f"{100 * history_finetune.final_accuracy:.1f} %")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **2. Per-layer ratios.** The paper never prunes all layers alike: it removes 10 % of ResNet20's stem but 75 % of
        its block-internal convolutions (its Tables 9-11). Prune section 2's trained network with
        `ratio={"features.stem.conv": 0.25, "features.block2.conv": 0.5, "features.block3.conv": 0.75}` instead of a
        uniform 0.5, fine-tune it the same way and compare size and accuracy. Which layer is the cheapest to keep, and
        why might the stem deserve a lower ratio?

        ```{dropdown} Solution
        The cell below does it. A convolution's weights grow with the product of its input and output channels, and a
        layer's cost in operations also with its spike map's area, so the layers that dominate the size are the wide,
        late ones (`block3`, `block4`), while the stem is tiny: pruning it saves almost nothing, and every stem channel
        removed takes away a view of the *analog* input for all later layers. That is why the paper prunes its stems
        lightly and its wide layers heavily. Whether the non-uniform cut beats the uniform one at equal size depends on
        the seed and the budget at this scale; compare the sizes first, then the accuracies.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        per_layer = {"features.stem.conv": 0.25, "features.block2.conv": 0.5, "features.block3.conv": 0.75}
        custom = prune.apply(model, scores, per_layer)
        custom_history = fit(custom, config.finetune_epochs, finetune=True)
        for label, net, accuracy in (("uniform 0.5", pruned, history_finetune.final_accuracy),
                                     ("per layer  ", custom, custom_history.final_accuracy)):
            widths = [m.weight.shape[0] for _, m in metrics.conv_layers(net)]
            print(f"{label}: channels {widths}, {1e3 * metrics.model_size_mb(net, config.bits):.1f} kB, "
                  f"{metrics.connection_percent(net, model):.1f} % of the connections, accuracy {100 * accuracy:.1f} %")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **3. How many seeds would it take?** The per-seed gains of F over C (section 3) have a standard deviation $s$.
        The standard error of their mean over $n$ seeds is $s/\sqrt n$. How many seeds would it take for a gain of one
        point to be two standard errors from zero? Use our measured $s$.

        ```{dropdown} Solution
        Solve $1 = 2 s / \sqrt n$ for $n$: $n = (2 s)^2$ with $s$ in points. The cell below computes it for each of
        the four gains. With paired spreads of a few points, resolving a one-point effect takes a dozen seeds or more,
        and the paper's one-run-per-row table cannot resolve such effects either; the large effects (several points)
        need only a handful. Pairing by seed matters: the spread of a *difference* of two rows
        trained from the same seed is usually smaller than the spread of either row alone.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        for row, reference, what in GAINS:
            s = statistics.stdev(paired(row, reference))
            print(f"{row} over {reference} ({what}): s = {s:.2f} points -> about {max(2, int(np.ceil((2 * s) ** 2)))} "
                  "seeds to resolve a 1-point gain")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **4. Predict the size before you train.** Compute the size of section 2's pruned network at 4 bits by hand from
        its channel counts with Eq. 16, and check it against `metrics.model_size_mb`. (The stem is a 3 x 3 convolution
        with bias from 1 input channel; each BatchNorm has two parameters per channel; the classifier maps the last
        conv's channels to 10 classes, with bias.)

        ```{dropdown} Solution
        With widths $c_1, \dots, c_4$ after pruning: the quantized weights are $P_q = 9(c_1 c_2 + c_2 c_3 + c_3 c_4)$,
        at 4 bits each; the full-precision parameters are the stem $9 c_1 + c_1$, the BatchNorms $2(c_1 + c_2 + c_3 +
        c_4)$ and the classifier $10 c_4 + 10$, at 32 bits each. Divide the total bits by $8 \cdot 10^6$ for MB. The cell
        below does the arithmetic. Chapter 08 applies the same rule to the paper's networks and reproduces its Table 1.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 4
        c1, c2, c3, c4 = (m.weight.shape[0] for _, m in metrics.conv_layers(pruned))
        p_q = 9 * (c1 * c2 + c2 * c3 + c3 * c4)
        p_fp = (9 * c1 + c1) + 2 * (c1 + c2 + c3 + c4) + (10 * c4 + 10)
        by_hand = (p_q * config.bits + p_fp * 32) / 8 / 1e6
        assert abs(by_hand - metrics.model_size_mb(pruned, config.bits)) < 1e-12
        print(f"widths {c1}, {c2}, {c3}, {c4}: P_q = {p_q:,} at {config.bits} bits + P_fp = {p_fp:,} at 32 bits "
              f"= {1e3 * by_hand:.3f} kB, as metrics.model_size_mb says")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        budget(r"""
        **5. The order study at 2 bits.** Section 4 argued that the case for quantizing first should be stronger at 2
        bits, where quantization changes a network far more than at 4. Run the order study at 2 bits and see. (It
        trains six networks; we leave it to you to keep this chapter within its budget.)

        ````{dropdown} Solution
        Replace the loop of section 4 by one over `config.replace(bits=2, order=order, seed=seed)`, or from the shell:

        ```bash
        python -m qpsnn_lite run --bits 2 --order qp --seed 0 --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK
        python -m qpsnn_lite run --bits 2 --order pq --seed 0 --T T_BOOK --epochs EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK
        ```

        for seeds 0, 1 and 2, and compare the fine-tuned accuracies seed by seed. Look first at the accuracy *right
        after pruning*: at 2 bits the PQ network's second shock, the switch from full precision to two bits, is much
        larger than at 4, and the few fine-tuning epochs must repair it. Whether that outweighs the head start of
        full-precision training is exactly what App. A claims and what your runs will tell.
        ````

        ## Summary

        - Algorithm 1 is four package calls: `train.fit` on a network built with ReScaW-quantized convolutions (QAT from
          scratch), `prune.score(..., "svs")` on the trained quantized network, `prune.apply` at fixed per-layer ratios,
          and `train.fit` again to fine-tune with quantization on. `pipeline.run(Config(...))` is exactly these calls
          (we checked it bit for bit), plus measurements and files; `python -m qpsnn_lite run` is the same from the
          shell.
        - Right after a one-shot cut the network is not silent but confused: accuracy falls to
          {glue:text}`ch07_acc_pruned:.0f` % while the firing rates hardly change. A few epochs of fine-tuning recover
          most of it (exercise 1: recalibrating BatchNorm alone recovers a good part).
        - At our small scale the ablation of Table 2 reproduces the direction of the large effects (ReScaW at 2 bits,
          and ReScaW + SVS against the vanilla + SCA baseline) and cannot resolve the smaller ones; the paper's single
          runs cannot either. Report seeds and spreads, and pair runs by seed.
        - The order of App. A made a difference of {glue:text}`ch07_order_gap:+.1f` points (QP - PQ) at 4 bits in our
          setting, within the seed spread. Quantizing first spares the network the second shock at the cut; the
          paper's cost argument (two training stages instead of three) holds anyway.
        - The small end of the accuracy-size front belongs to the low bit widths; the smallest network within 2 points
          of the most accurate one is {glue:md}`ch07_near_best`.

        Chapter 08 turns to what the paper reports about such networks: model size (and how to reproduce Table 1
        exactly), operations and energy, and how to store a network as integers and load it back.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905) (Algorithm 1, Table 2, App. A Table 3, Tables 1, 8-11
          for this chapter).
        - Y. Li, Q. Xu, J. Shen, H. Xu, L. Chen, G. Pan. *Towards efficient deep spiking neural networks construction
          with spiking activity based pruning.* ICML 2024 (the SCA criterion, the baseline of Table 2).
        - M. Lin, R. Ji, Y. Wang, Y. Zhang, B. Zhang, Y. Tian, L. Shao. *HRank: Filter pruning using high-rank feature
          map.* CVPR 2020 (ranking channels by the rank of their feature maps, the ancestor of SVS).
        - D. Blalock, J. J. Gonzalez Ortiz, J. Frankle, J. Guttag. *What is the state of neural network pruning?* MLSys
          2020 (why pruning results need seeds, spreads and matched budgets).
        - M. Nagel et al. *A white paper on neural network quantization.*
          [arXiv:2106.08295](https://arxiv.org/abs/2106.08295), 2021 (BatchNorm re-estimation after quantizing or
          pruning, exercise 1).
        """)
    ),
]


# ======================================================================================================================
# Chapter 08 · Efficiency and deployment
# ======================================================================================================================
CH08 = [
    md(
        r"""
        # 08 · Efficiency and deployment

        A quantized, pruned spiking network is meant to be small, cheap to run and stored as integers on a device.
        This chapter measures all three the way the paper reports them, and checks the paper's own numbers on the way.
        *Size*: the rule of App. G (Eq. 16), which reproduces every QP-SNN size in the paper's Table 1 exactly from the
        architectures alone. *Operations and energy*: synaptic operations (SOPs) and the energy estimate of App. C,
        whose conventions the paper never states; we state ours, and show which of the paper's rows they reproduce.
        *Deployment*: the network saved as bit-packed integer codes and loaded back with identical outputs. The chapter
        ends with the paper's errata, the commands that run the paper-scale settings on a Colab GPU, and a look at
        where a spiking network spends its time on a CPU.

        **Learning goals.** After this chapter you can

        - compute a model's size with Eq. 16 by hand and with `metrics.model_size_mb`, and reproduce the paper's
          Table 1 sizes from its architectures and pruning configurations;
        - explain why the paper's parameter counts and its sizes do not always count the same parameters;
        - measure firing rates, SOPs and energy per sample with `metrics.energy_mj`, state the conventions behind
          the numbers, and test the paper's Table 6 against them;
        - save a quantized, pruned network as integers with `export.save`, account for every byte of the file, load it
          with `export.load` and check that it computes exactly the same outputs;
        - list the inconsistencies of the paper that matter when you compare with it;
        - run the paper's settings on a GPU, and estimate beforehand what they cost;
        - say why the package runs the LIF time loop as one fused operation, and how much that saves.

        **Run it yourself.** BADGE On Colab the first code cell installs the `qpsnn_lite` package; anywhere else it
        does nothing. The chapter retrains chapter 07's network (a few epochs instead of the paper's 300 + 150) and
        builds the paper's networks without training them; it runs in a couple of minutes on a laptop CPU.
        """.replace("BADGE", colab_badge("08_efficiency_deployment.ipynb"))
    ),
    INSTALL,
    setup_cell(
        '''
        import os
        import shutil
        import statistics
        import struct
        import tempfile
        import time
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        from IPython.display import Markdown
        from safetensors.torch import load as load_tensors

        from qpsnn_lite import data, export, fused, metrics, models, neurons, pipeline, prune, train
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 0. Two networks to measure

        We need a trained network of each kind that the paper's Table 6 compares: a *dense* full-precision network (all
        channels, 32-bit weights) and a *QP-SNN* (4-bit ReScaW, half of the channels removed by SVS, fine-tuned). Both
        are chapter 07's digits CNN with chapter 07's budget and seed, so the QP-SNN is exactly the network of chapter
        07, section 2.
        """
    ),
    code(
        SETTING_CODE,
        r'''
        config = pipeline.Config(**SETTING)
        ''',
        FIT_CODE,
        r'''
        tic = clock()
        train.seed_everything(config.seed)
        dense = models.build("digits_cnn", num_classes=10, T=config.T)                   # full precision, all channels
        dense_history = fit(dense, config.epochs)

        train.seed_everything(config.seed)
        quantized = models.build("digits_cnn", num_classes=10, T=config.T, bits=config.bits, gamma=config.gamma)
        fit(quantized, config.epochs)                                                   # Algorithm 1, step 1
        scores = prune.score(quantized, train_loader, "svs", batches=config.score_batches, seed=config.seed)
        qpsnn = prune.apply(quantized, scores, config.ratio)                            # steps 2 and 3
        qpsnn_history = fit(qpsnn, config.finetune_epochs, finetune=True)               # step 4
        COST["0. training"] = clock() - tic

        accuracy = {"dense": 100 * dense_history.final_accuracy, "qpsnn": 100 * qpsnn_history.final_accuracy}
        print(f"dense full-precision network: {accuracy['dense']:.1f} % test accuracy after {config.epochs} epochs")
        print(f"QP-SNN ({config.bits} bits, ratio {config.ratio}): {accuracy['qpsnn']:.1f} % after "
              f"{config.epochs} + {config.finetune_epochs} epochs")
        '''
    ),
    md(
        r"""
        ## 1. Model size: the rule of App. G

        The paper measures a network's size in megabytes with one rule (App. G):

        $$M = \sum P_q\, B_q + \sum P_{fp}\, B_{fp} \ \text{bits}, \qquad \text{MB} = M / 8 / 10^{6} \tag{16}$$

        - $P_q$, the *quantized* parameters, are the weights of every convolution but the first, stored at
          $B_q = b$ bits (8, 4 or 2);
        - $P_{fp}$, the *full-precision* parameters, are stored at $B_{fp} = 32$ bits: the first convolution (weight
          and bias), the classifier (weight and bias) and the $\gamma$ and $\beta$ of every BatchNorm. The BatchNorm
          running statistics are not counted (after training they can be folded into the thresholds and biases), nor
          is ReScaW's scale $\gamma$ (it can be folded into the BatchNorm that follows each quantized convolution);
        - a megabyte is $10^6$ bytes, not $2^{20}$.

        `metrics.size_breakdown` splits a network's parameters into these groups and `metrics.model_size_mb` applies
        Eq. 16. The rule decides "quantized" by *position* (every convolution but the first), not by the layer's type,
        so it also gives the size a full-precision network would have once quantized. For our two networks:
        """
    ),
    code(
        r'''
        print("network   P_q (quantized)   P_fp: stem   BatchNorm   classifier    size at 32 / 8 / 4 / 2 bits (kB)")
        for label, net in (("dense", dense), ("QP-SNN", qpsnn)):
            parts = metrics.size_breakdown(net)
            sizes = {b: 1e3 * metrics.model_size_mb(net, b) for b in (32, 8, 4, 2)}
            for b, kb in sizes.items():                               # Eq. 16 by hand, in kB (1 kB = 1000 bytes)
                assert abs(kb - (parts.quantized * b + parts.full_precision * 32) / 8 / 1e3) < 1e-9
            print(f"{label:8s}  {parts.quantized:15,d}   {parts.first_conv:10,d}   {parts.batchnorm:9,d}   "
                  f"{parts.linear:10,d}    " + "  ".join(f"{sizes[b]:7.2f}" for b in (32, 8, 4, 2)))
        size_kb = {"dense": 1e3 * metrics.model_size_mb(dense, 32), "qpsnn": 1e3 * metrics.model_size_mb(qpsnn, config.bits)}
        glue("ch08_kb_dense", size_kb["dense"], display=False)
        glue("ch08_kb_qpsnn", size_kb["qpsnn"], display=False)
        glue("ch08_size_ratio", size_kb["dense"] / size_kb["qpsnn"], display=False)
        parts = metrics.size_breakdown(qpsnn)
        glue("ch08_fp_share_2", 100 * 32 * parts.full_precision / parts.bits(2), display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        The dense full-precision network takes {glue:text}`ch08_kb_dense:.1f` kB, the 4-bit QP-SNN
        {glue:text}`ch08_kb_qpsnn:.1f` kB, {glue:text}`ch08_size_ratio:.1f` times less. Note how the full-precision
        part, small at 32 bits, becomes a sizeable share of a low-bit network ({glue:text}`ch08_fp_share_2:.0f` % of
        the QP-SNN at 2 bits): it is a floor that quantization cannot lower, and only pruning (which also removes
        BatchNorm channels and classifier columns) shrinks it.

        ## 2. The paper's Table 1, reproduced from the architectures

        The paper's sizes need no training to check: Eq. 16 only counts parameters. `models.build(name, num_classes,
        prune_config=...)` builds the paper's networks (chapter 03) directly at the widths of its pruning
        configurations (Tables 9-11; "A", "B", "C" in the order of their columns), where a layer of $n$ channels pruned
        at ratio $r$ keeps $\lfloor n(1 - r)\rfloor$ channels, as in the authors' code. We compute every QP-SNN row of
        Table 1 and require each size to equal the paper's when rounded to 0.01 MB.
        """
    ),
    code(
        r'''
        TABLE1 = [  # (network, data set, model, classes, configuration, image side, the paper's MB at 8 / 4 / 2 bits)
            ("ResNet20", "CIFAR-10", "resnet20", 10, "A", None, (6.27, 3.16, 1.61)),
            ("ResNet20", "CIFAR-10", "resnet20", 10, "B", None, (3.92, 1.98, 1.02)),
            ("VGG-16", "CIFAR-10", "vgg16", 10, "A", None, (4.28, 2.16, 1.10)),
            ("VGG-16", "CIFAR-10", "vgg16", 10, "B", None, (1.45, 0.74, 0.39)),
            ("ResNet20", "CIFAR-100", "resnet20", 100, "A", None, (6.45, 3.35, 1.79)),
            ("ResNet20", "CIFAR-100", "resnet20", 100, "B", None, (4.10, 2.17, 1.20)),
            ("VGG-16", "CIFAR-100", "vgg16", 100, "A", None, (2.48, 1.35, 0.79)),
            ("VGG-16", "CIFAR-100", "vgg16", 100, "B", None, (1.85, 1.04, 0.63)),
            ("VGG-16", "TinyImageNet", "vgg16", 200, "A", 64, (5.90, 3.78, 2.72)),
            ("VGG-16", "TinyImageNet", "vgg16", 200, "B", 64, (4.67, 3.17, 2.41)),
            ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "A", None, (1.61, 0.90, 0.55)),
            ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "B", None, (1.05, 0.62, 0.41)),
            ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "C", None, (0.40, 0.29, 0.24)),
        ]


        def paper_net(model, classes, configuration=None, image_size=None):
            """One of the paper's networks, untrained (Eq. 16 only counts parameters)."""
            kwargs = {} if image_size is None else {"image_size": image_size}
            with torch.no_grad():
                return models.build(model, classes, prune_config=configuration, **kwargs)


        print("network   data set       config   ours at 8 / 4 / 2 bits (MB)     the paper's Table 1   match")
        matches = 0
        for network, dataset, model, classes, configuration, side, paper in TABLE1:
            net = paper_net(model, classes, configuration, side)
            ours = tuple(metrics.model_size_mb(net, b) for b in (8, 4, 2))
            same = tuple(round(o, 2) for o in ours) == paper
            matches += same
            print(f"{network:9s} {dataset:14s} {configuration:6s}   {ours[0]:7.4f} {ours[1]:7.4f} {ours[2]:7.4f}"
                  f"       {paper[0]:5.2f} {paper[1]:5.2f} {paper[2]:5.2f}      {'yes' if same else 'NO'}")
        assert matches == len(TABLE1)
        print(f"\nall {3 * len(TABLE1)} sizes of the {len(TABLE1)} QP-SNN rows equal the paper's to 0.01 MB")

        full = {"ResNet20, CIFAR-100": (paper_net("resnet20", 100), 68.4), "VGG-16, CIFAR-10": (paper_net("vgg16", 10), 58.88)}
        print("\nfull precision (the paper's Table 6):")
        for label, (net, paper) in full.items():
            print(f"  {label}: {metrics.count_parameters(net) / 1e6:.2f} M parameters, "
                  f"{metrics.model_size_mb(net, 32):.2f} MB by Eq. 16, the paper prints {paper} MB")
        glue("ch08_table1_sizes", 3 * len(TABLE1), display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        All {glue:text}`ch08_table1_sizes` sizes match. Two details were needed to get there, and both are worth
        knowing when you compare with the paper:

        - *ResNet20's stage-2 outputs.* The paper's Table 10 lists the output channels of ResNet20's second stage as
          pruned at 0.6 (configuration A) and 0.75 (B). With those ratios neither the parameter counts of Table 10 nor
          the sizes of Table 1 come out. The authors' code reads its `compress_rate` list differently: the outputs of
          stages 1 and 2 are both pruned at 0.3 (A) or 0.35 (B), stage 3's not at all. With that reading every size
          above matches, so the package uses it (`architectures.RESNET20_COMPRESS_RATE`).
        - *TinyImageNet's classifier.* VGG-16 on 64 x 64 images ends with a 2 x 2 x 512 = 2048-input classifier, not
          512 inputs as on CIFAR: `image_size=64`.

        The full-precision sizes agree with the paper's rounding for ResNet20 (68.4 MB); for VGG-16, Eq. 16 gives 0.02
        MB more than the 58.88 MB printed in Table 6, a difference we cannot trace.

        ## 3. Counting parameters: the paper is not uniform

        The paper's Tables 9-11 also give each pruned network's parameter count ("Params"). These do not all count the
        same things. `metrics.count_parameters(net, batchnorm=...)` computes the count with and without the BatchNorm
        $\gamma$ and $\beta$; often both round to the paper's figure, but where they differ, the VGG-16 counts match
        the count *with* BatchNorm and the ResNet20 and VGGSNN counts the count *without*:
        """
    ),
    code(
        r'''
        PARAMS = [  # (network, data set, model, classes, configuration, image side, the paper's count in millions)
            ("VGG-16", "CIFAR-10", "vgg16", 10, "A", None, 4.25), ("VGG-16", "CIFAR-10", "vgg16", 10, "B", None, 1.42),
            ("VGG-16", "CIFAR-100", "vgg16", 100, "A", None, 2.31), ("VGG-16", "CIFAR-100", "vgg16", 100, "B", None, 1.68),
            ("VGG-16", "TinyImageNet", "vgg16", 200, "A", 64, 4.65), ("VGG-16", "TinyImageNet", "vgg16", 200, "B", 64, 3.43),
            ("ResNet20", "CIFAR-10", "resnet20", 10, "A", None, 6.22),
            ("ResNet20", "CIFAR-10", "resnet20", 10, "B", None, 3.87),
            ("ResNet20", "CIFAR-100", "resnet20", 100, "A", None, 6.27),
            ("ResNet20", "CIFAR-100", "resnet20", 100, "B", None, 3.92),
            ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "A", None, 1.46), ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "B", None, 0.90),
            ("VGGSNN", "DVS-CIFAR10", "vggsnn", 10, "C", None, 0.25),
        ]
        print("network   data set       config   with BatchNorm (M)   without (M)   the paper (M)   matches the count")
        for network, dataset, model, classes, configuration, side, paper in PARAMS:
            net = paper_net(model, classes, configuration, side)
            with_bn = metrics.count_parameters(net) / 1e6
            without = metrics.count_parameters(net, batchnorm=False) / 1e6
            counted = [label for label, value in (("with BatchNorm", with_bn), ("without", without))
                       if round(value, 2) == paper]
            assert counted, (network, dataset, configuration)
            print(f"{network:9s} {dataset:14s} {configuration:6s}   {with_bn:18.4f}   {without:11.4f}   {paper:13.2f}"
                  f"   {' and '.join(counted)}")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        So a parameter count from one table cannot be compared with one from another without checking what was counted.
        The sizes of Table 1 are consistent throughout: they always include the BatchNorm parameters, at 32 bits.

        ## 4. Operations and energy

        A spiking neuron does work only when a spike arrives: each input spike adds one weight to the membrane
        potential of each target neuron, an *accumulate* (AC), where a conventional network performs a
        *multiply-accumulate* (MAC) for every input. The usual measure is the number of **synaptic operations**:

        $$\mathrm{SOPs} = \sum_{l \ge 2} \mathrm{fr}_l \cdot T \cdot \mathrm{MAC}_l ,$$

        where $\mathrm{MAC}_l$ is the number of multiply-accumulates layer $l$ would do per sample and time step if all
        its inputs were non-zero, and $\mathrm{fr}_l$ the fraction of its inputs that are spikes. The energy estimate
        charges each operation with the 45 nm figures of Horowitz (2014) for 32-bit floating point, $E_{MAC} = 4.6$ pJ
        and $E_{AC} = 0.9$ pJ:

        $$E = E_{MAC}\cdot\mathrm{MAC}_{\text{stem}} + E_{AC}\cdot\mathrm{SOPs}.$$

        The paper gives no formula for either (App. C reports only the results), so here are the conventions of
        `metrics.energy_mj`, stated once and for all:

        1. **SOPs are per sample and summed over the $T$ time steps.**
        2. **The first convolution (the stem) is a MAC layer, counted once per sample.** It reads the analog image,
           not spikes; with direct encoding the same image enters at every step, so its output can be computed once.
           (With event input, `[T, B, ...]`, it is charged $T$ times.)
        3. **Every other convolution and the classifier are AC layers**, charged for their non-zero inputs. The
           classifier reads average-pooled spikes, which are fractions, not spikes; we still count it as accumulates
           on its non-zero inputs.
        4. $\mathrm{fr}_l$ is measured at the layer's input, after any pooling. Biases, BatchNorm and the LIF updates
           are not counted (BatchNorm folds into the weights and thresholds at inference).
        5. The energy constants are those of *32-bit floating-point* operations, whatever the bit width of the
           weights: in this model, quantization saves memory but no energy per operation (exercise 2 changes that).

        `metrics.energy_mj(net, loader)` makes one pass over the data with hooks on every layer and returns an
        `EnergyReport` with all of it. We measure both networks on the whole test set, and recompute the totals by hand
        from the per-layer record:
        """
    ),
    code(
        r'''
        tic = clock()
        reports = {label: metrics.energy_mj(net, test_loader, batches=None)
                   for label, net in (("dense", dense), ("qpsnn", qpsnn))}
        COST["4. energy"] = clock() - tic

        for label, report in reports.items():
            print(f"{'dense full precision' if label == 'dense' else 'QP-SNN'}: {report.samples} test samples, T = {report.T}")
            print(f"  {'layer':22s} {'kind':6s} {'MACs per step':>13s} {'steps':>6s} {'input rate':>11s} {'SOPs':>12s}")
            print(f"  {report.stem:22s} {'stem':6s} {report.mac_stem:13,.0f} {'1':>6s} {'(analog)':>11s} "
                  f"{'MAC, once':>12s}")
            for layer in report.layers:
                print(f"  {layer.name:22s} {layer.kind:6s} {layer.macs_per_step:13,d} {layer.steps:6.0f} "
                      f"{layer.input_rate:11.3f} {layer.sops:12,.0f}")
            sops = sum(layer.input_rate * layer.steps * layer.macs_per_step for layer in report.layers)
            energy = (metrics.E_MAC_PJ * report.mac_stem + metrics.E_AC_PJ * sops) * 1e-9       # pJ -> mJ
            assert abs(sops - report.sops) <= 1e-6 * sops and abs(energy - report.energy_mj) <= 1e-9 * energy
            print(f"  total: {report.sops:,.0f} SOPs; E = 4.6 pJ x {report.mac_stem:,.0f} + 0.9 pJ x {report.sops:,.0f} "
                  f"= {1e6 * report.energy_mj:.1f} nJ per sample\n")
        '''
    ),
    code(
        r'''
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.3))
        names = [layer.name for layer in reports["dense"].layers]
        x = np.arange(len(names) + 1)
        style = {"dense": ("dense, full precision", color("full precision")), "qpsnn": ("QP-SNN", color("svs"))}
        for i, (label, report) in enumerate(reports.items()):
            stem_nj = metrics.E_MAC_PJ * report.mac_stem * 1e-3                   # pJ -> nJ
            layer_nj = [metrics.E_AC_PJ * layer.sops * 1e-3 for layer in report.layers]
            ax1.bar(x + (i - 0.5) * 0.4, [stem_nj] + layer_nj, 0.4, color=style[label][1], label=style[label][0])
            lifs = list(report.firing_rates)
            ax2.plot(range(len(lifs)), list(report.firing_rates.values()), marker="o", color=style[label][1],
                     label=style[label][0])
        ax1.set_xticks(x, ["stem (MAC)"] + [n.replace("features.", "") for n in names], fontsize=8)
        ax1.set_ylabel("energy per sample (nJ)")
        ax1.legend(fontsize=8)
        saving = 1 - reports["qpsnn"].energy_mj / reports["dense"].energy_mj
        ax1.set_title(f"Energy per layer: the QP-SNN needs {100 * saving:.0f} % less in total", fontsize=10)
        ax2.set_xticks(range(len(lifs)), [n.replace("features.", "") for n in lifs], fontsize=8)
        ax2.set_ylabel("firing rate (spikes per neuron and step)")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=8)
        ax2.set_title("Firing rates of the LIF layers", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    code(
        r'''
        connections = metrics.connection_percent(qpsnn, dense)
        rows = {"dense": ("dense (full precision)", 100.0, 32),
                "qpsnn": (f"QP-SNN (ratio {config.ratio})", connections, config.bits)}
        print("network                  connections   bits   size (kB)   SOPs per sample   energy (nJ)   accuracy (%)")
        for label, (name, kept, bits) in rows.items():
            r = reports[label]
            print(f"{name:24s} {kept:10.2f} %   {bits:4d}   {size_kb[label]:9.2f}   {r.sops:15,.0f}   "
                  f"{1e6 * r.energy_mj:11.1f}   {accuracy[label]:12.1f}")
        cut = {"size": 1 - size_kb["qpsnn"] / size_kb["dense"],
               "SOPs": 1 - reports["qpsnn"].sops / reports["dense"].sops,
               "energy": 1 - reports["qpsnn"].energy_mj / reports["dense"].energy_mj}
        print("\nQP-SNN against dense: " + ", ".join(f"{k} -{100 * v:.1f} %" for k, v in cut.items())
              + f", accuracy {accuracy['qpsnn'] - accuracy['dense']:+.1f} points")
        print("the paper's VGG-16 on CIFAR-10 (Table 6): size -98.74 %, SOPs -78.69 %, energy -77.45 %, accuracy -2.44 points")
        for k, v in cut.items():
            glue(f"ch08_cut_{k.lower()}", 100 * v, display=False)
        glue("ch08_connections", connections, display=False)
        rates = {label: statistics.fmean(r.firing_rates.values()) for label, r in reports.items()}
        glue("ch08_rate_dense", rates["dense"], display=False)
        glue("ch08_rate_qpsnn", rates["qpsnn"], display=False)
        stem_share = metrics.E_MAC_PJ * reports["qpsnn"].mac_stem * 1e-9 / reports["qpsnn"].energy_mj
        glue("ch08_stem_share", 100 * stem_share, display=False)
        glue_words("ch08_sops_vs_connections", "more" if cut["SOPs"] > 1 - connections / 100 else "less")
        macs = {label: sum(layer.macs_per_step for layer in r.layers) for label, r in reports.items()}
        glue("ch08_mac_cut", 100 * (1 - macs["qpsnn"] / macs["dense"]), display=False)
        glue_words("ch08_rates_differ", "hardly differ between the two networks"
                   if abs(rates["dense"] - rates["qpsnn"]) < 0.01 else "differ between the two networks")
        '''
    ),
    md(
        r"""
        The QP-SNN keeps {glue:text}`ch08_connections:.1f` % of the dense network's quantized connections, and its
        SOPs fall by {glue:text}`ch08_cut_sops:.1f` %, its energy by {glue:text}`ch08_cut_energy:.1f` % and its size
        by {glue:text}`ch08_cut_size:.1f` %. SOPs fall {glue:md}`ch08_sops_vs_connections` than the connections
        alone would suggest. Connections count weights, but a weight costs one operation per position of its layer's
        map: pruning took three quarters of `block2`'s weights, which run on 16 x 16 maps, and half of `block4`'s,
        which run on 4 x 4, so the dense operation count falls by {glue:text}`ch08_mac_cut:.1f` %, more than the
        weights. SOPs then follow the firing rates too, which here {glue:md}`ch08_rates_differ` (mean over the LIF
        layers: {glue:text}`ch08_rate_dense:.3f` dense, {glue:text}`ch08_rate_qpsnn:.3f` QP-SNN; per layer in the
        figure above). The stem, computed with
        multiply-accumulates, accounts for {glue:text}`ch08_stem_share:.0f` % of the QP-SNN's energy: on a small
        network the analog first layer is not negligible.

        ### The paper's Table 6, re-derived from its own SOPs

        The paper's Table 6 gives, for two networks before and after QP-SNN, the SOPs and the energy. Since it states
        no formula, we can test conventions by recomputing its energy column from its SOPs column. The stem's MACs come
        from the architectures (a 3 x 3 convolution from 3 to 64 channels on a 32 x 32 image, fewer channels after
        pruning); we let `metrics.energy_mj` count them on one blank image. Two readings of the SOPs column:

        - **(a)** SOPs *per time step*: $E = 4.6\,\text{pJ}\cdot\mathrm{MAC}_{stem} + 0.9\,\text{pJ}\cdot\mathrm{SOPs}
          \cdot T$;
        - **(b)** SOPs *summed over time* (our convention): $E = 4.6\,\text{pJ}\cdot\mathrm{MAC}_{stem} +
          0.9\,\text{pJ}\cdot\mathrm{SOPs}$.

        A reading *reproduces* a row if it lands within 0.001 mJ of the printed value (one unit of its last digit).
        """
    ),
    code(
        r'''
        TABLE6 = [  # (row, model, classes, configuration, T, the paper's SOPs in millions, the paper's energy in mJ)
            ("VGG-16, CIFAR-10, full precision", "vgg16", 10, None, 4, 54.60, 0.204),
            ("VGG-16, CIFAR-10, QP-SNN (B, 4 bits)", "vgg16", 10, "B", 4, 11.63, 0.046),
            ("ResNet20, CIFAR-100, full precision", "resnet20", 100, None, 2, 415.64, 0.756),
            ("ResNet20, CIFAR-100, QP-SNN (B, 4 bits)", "resnet20", 100, "B", 2, 131.53, 0.126),
        ]
        blank = [(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))]      # one image: only the MACs matter
        print("row                                       stem MACs   T   (a) SOPs x T (mJ)   (b) SOPs (mJ)   the paper (mJ)")
        reproduced = {"a": 0, "b": 0}
        for row, model, classes, configuration, T, sops_m, paper in TABLE6:
            mac_stem = metrics.energy_mj(paper_net(model, classes, configuration), blank, batches=1).mac_stem
            stem_mj = metrics.E_MAC_PJ * mac_stem * 1e-9
            reading = {"a": stem_mj + metrics.E_AC_PJ * sops_m * 1e6 * T * 1e-9,
                       "b": stem_mj + metrics.E_AC_PJ * sops_m * 1e6 * 1e-9}
            marks = {}
            for key, value in reading.items():
                ok = abs(value - paper) <= 0.001 + 1e-12
                marks[key] = "yes" if ok else "no "
                reproduced[key] += ok
            print(f"{row:40s} {mac_stem:10,.0f}   {T}   {reading['a']:8.4f}  {marks['a']}      {reading['b']:8.4f}  "
                  f"{marks['b']}   {paper:10.3f}")

        SPIKINGFORMER = [("Spikingformer-4-384, full precision", 292.14, 0.266),   # the paper's App. B (T = 4)
                         ("Spikingformer-4-384, QP-SNN (4 bits)", 130.05, 0.118)]
        print("\nApp. B (its stem is not in the package): 0.9 pJ x SOPs alone, no stem and no factor T")
        for row, sops_m, paper in SPIKINGFORMER:
            print(f"{row:40s} {metrics.E_AC_PJ * sops_m * 1e-3:8.4f} mJ   the paper: {paper:.3f} mJ")
        print(f"\nreading (a) reproduces {reproduced['a']} of {len(TABLE6)} rows, reading (b) {reproduced['b']}")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Reading (a) reproduces three rows of Table 6, reading (b) the fourth, the ResNet20 QP-SNN row. No single
        convention reproduces them all: either that row was computed differently, or its SOPs are reported summed over
        time while the others are per step. The Spikingformer rows of App. B come out close to
        $0.9\,\text{pJ}\times\mathrm{SOPs}$ with neither a stem term nor a factor $T$. The paper is not internally
        consistent here, so its energy numbers are best compared within a pair of rows, as relative savings. Our own
        numbers follow convention (b) throughout, the one that matches SOPs defined as above.

        ## 5. Integer export: what a device would store

        Until now the quantized network has been *fake*-quantized: it holds 32-bit latent weights and rounds them at
        every forward pass. A device stores only the integer codes $W_{int} \in \{0, \dots, 2^b - 1\}$ of Eq. 4 and the
        scales $\gamma$. `export.save(net, path)` writes exactly that into a
        [safetensors](https://huggingface.co/docs/safetensors) file (raw tensors and a JSON header, so loading it never
        executes code, unlike a pickle):

        - for every quantized convolution, its codes **bit-packed** ($8/b$ codes per byte at $b$ = 1, 2, 4, 8) and its
          $\gamma$ (one 32-bit float per output channel);
        - the full-precision layers (stem, classifier) and every BatchNorm, including the running statistics, as
          32-bit floats;
        - in the header, the architecture: every layer's channel counts, so that a pruned network, whose widths no
          constructor argument describes, can be rebuilt; and a SHA-256 digest of the tensors, so that a damaged file
          is detected.
        """
    ),
    code(
        r'''
        tic = clock()
        folder = Path(tempfile.mkdtemp())
        summary = export.save(qpsnn, folder / "qpsnn_digits.safetensors")
        raw = (folder / "qpsnn_digits.safetensors").read_bytes()
        (header_bytes,) = struct.unpack("<Q", raw[:8])                    # safetensors: 8-byte header length, JSON
        tensors = load_tensors(raw)

        GROUP = {"codes": "packed integer codes", "gamma": "ReScaW gamma", "running_mean": "BatchNorm running statistics",
                 "running_var": "BatchNorm running statistics", "num_batches_tracked": "BatchNorm running statistics"}
        groups = {}                                                       # where the bytes go
        for key, t in tensors.items():
            group = GROUP.get(key.rsplit(".", 1)[-1], "full-precision parameters")
            groups[group] = groups.get(group, 0) + t.numel() * t.element_size()
        assert len(raw) == summary.file_bytes == 8 + header_bytes + sum(groups.values())

        parts = metrics.size_breakdown(qpsnn)
        rule = {"packed integer codes": parts.quantized * config.bits / 8,
                "full-precision parameters": parts.full_precision * 4}
        print(f"{Path(summary.path).name}: {summary.file_bytes:,} bytes on disk; the paper's rule (Eq. 16): "
              f"{1e6 * summary.paper_size_mb:,.0f} bytes\n")
        print(f"{'part':32s} {'in the file':>12s} {'in Eq. 16':>10s}")
        for group in ("packed integer codes", "full-precision parameters", "ReScaW gamma", "BatchNorm running statistics"):
            print(f"{group:32s} {groups.get(group, 0):12,d} {rule.get(group, 0):10,.0f}")
        print(f"{'header (length + JSON)':32s} {8 + header_bytes:12,d} {0:10,d}")
        glue("ch08_file_bytes", summary.file_bytes, display=False)
        glue("ch08_rule_bytes", 1e6 * summary.paper_size_mb, display=False)
        glue("ch08_header_bytes", 8 + header_bytes, display=False)
        glue("ch08_file_ratio", summary.file_bytes / (1e6 * summary.paper_size_mb), display=False)
        '''
    ),
    md(
        r"""
        The file has {glue:text}`ch08_file_bytes:,d` bytes against {glue:text}`ch08_rule_bytes:,.0f` by the paper's
        rule, {glue:text}`ch08_file_ratio:.2f` times as much. The codes and the full-precision parameters take exactly
        what Eq. 16 charges; the rest is what Eq. 16 leaves out: the $\gamma$ scales and the BatchNorm running
        statistics (both of which a deployment would fold into the BatchNorm and the thresholds), and a header of
        {glue:text}`ch08_header_bytes:,d` bytes that describes the architecture. On a network this small the header
        weighs; on the paper's networks it is negligible, as we will see.

        `export.load` rebuilds the network: the architecture from the header, and every quantized convolution as an
        `IntegerConv2d` that keeps the codes and $\gamma$ and computes with exactly the weight the trained layer used.
        So the outputs must be *identical*, not merely close:
        """
    ),
    code(
        r'''
        loaded = export.load(folder / "qpsnn_digits.safetensors")
        qpsnn.eval()
        with torch.no_grad():
            for images, _ in test_loader:
                assert torch.equal(qpsnn(images), loaded(images))
        reloaded_accuracy, _ = train.evaluate(loaded, test_loader)
        assert 100 * reloaded_accuracy == accuracy["qpsnn"]
        print(f"the loaded network's logits equal the original's on all {len(test_loader.dataset)} test images "
              f"(torch.equal); accuracy {100 * reloaded_accuracy:.1f} % in both")
        print("\nlayer                  type            weight stored as")
        for name, m in loaded.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                stored = (f"{m.bits}-bit codes ({m.codes.dtype}) + gamma per channel"
                          if isinstance(m, export.IntegerConv2d) else "32-bit floats")
                print(f"{name:22s} {type(m).__name__:15s} {stored}")
        '''
    ),
    md(
        r"""
        Here are the integer codes themselves: the first kernel of `block2`, its $\gamma$, and the weights they stand
        for, $\hat w = \gamma\,(2 W_{int}/s(b) - 1)$ with $s(4) = 15$ (Eq. 5 and 10). In the file, two 4-bit codes share
        a byte, the first in the low nibble.
        """
    ),
    code(
        r'''
        conv = loaded.features.block2.conv
        codes, gamma = conv.codes[0, 0], conv.gamma[0].item()                    # output channel 0, input channel 0
        s = 2**conv.bits - 1
        w_hat = conv.gamma[0, 0, 0, 0] * (2 * codes.float() / s - 1)
        assert torch.equal(w_hat, conv.weight[0, 0])                              # Eq. 5 times gamma, by hand
        original = qpsnn.features.block2.conv.quantized_weight()[0, 0]
        assert torch.equal(conv.weight[0, 0], original)                           # what the trained layer used
        print(f"codes (4 bits):\n{codes.numpy()}\ngamma = {gamma:.6f}\nweights = gamma (2 codes / {s} - 1):\n"
              f"{np.array2string(w_hat.numpy(), precision=4, suppress_small=True)}")

        packed = tensors["features.block2.conv.codes"]
        flat = conv.codes.flatten()
        print("\nfirst bytes of the file's packed codes:", " ".join(f"{b:02x}" for b in packed[:4].tolist()))
        for i, byte in enumerate(packed[:4].tolist()):
            assert byte & 0xF == flat[2 * i] and byte >> 4 == flat[2 * i + 1]
        print("the codes they hold, low nibble first:", [int(c) for c in flat[:8]])
        '''
    ),
    md(
        r"""
        Finally the paper's scale. Built without training, the paper's ResNet20 on CIFAR-10 (configuration A) is
        exported at 8, 4 and 2 bits; for a full-precision network `export.save(..., bits=b)` quantizes every
        convolution but the first with ReScaW's mean rule on the way out. The file sizes do not depend on the weights'
        values, so an untrained network shows what the trained one would take:
        """
    ),
    code(
        r'''
        resnet = paper_net("resnet20", 10, "A")
        print("bits   file on disk (MB)   Eq. 16 (MB)   the paper's Table 1 (MB)   file / Eq. 16")
        for bits, paper in zip((8, 4, 2), (6.27, 3.16, 1.61)):
            big = export.save(resnet, folder / f"resnet20_A_{bits}bit.safetensors", bits=bits)
            print(f"{bits:4d}   {big.file_mb:17.3f}   {big.paper_size_mb:11.3f}   {paper:24.2f}   "
                  f"{big.file_mb / big.paper_size_mb:13.3f}")
            glue(f"ch08_resnet_file_{bits}", big.file_mb, display=False)
            glue(f"ch08_resnet_overhead_{bits}", 100 * (big.file_mb / big.paper_size_mb - 1), display=False)
        shutil.rmtree(folder)                                                     # the exports were only for show
        COST["5. export"] = clock() - tic
        '''
    ),
    md(
        r"""
        The 2-bit file of the paper's 1.61 MB network takes {glue:text}`ch08_resnet_file_2:.2f` MB on disk, a real,
        loadable file {glue:text}`ch08_resnet_overhead_2:.0f` % larger than the paper's figure; the difference is
        $\gamma$, the running statistics and the header.

        ## 6. The paper's errata

        Reproducing the paper's numbers exactly, as above, also shows where the paper disagrees with itself. When you
        compare with QP-SNN, keep these in mind:

        1. **Table 10's ResNet20 ratios.** The stage-2 block outputs are listed at 0.6 (A) and 0.75 (B); with those
           ratios neither Table 10's parameter counts nor Table 1's sizes come out. The authors' code prunes them like
           stage 1, at 0.3 and 0.35, and then everything matches (section 2).
        2. **Figure 1.** The bubble plot is titled CIFAR-100, but its QP-SNN bubbles are labelled 1.61, 3.16 and 6.27
           MB, the CIFAR-10 sizes of Table 1; the CIFAR-100 sizes are 1.79, 3.35 and 6.45 MB.
        3. **The Spikingformer experiment** (App. B) is labelled CIFAR-10 in the submission; its full-precision accuracy
           of 79.09 % is a CIFAR-100 result, and the camera-ready version says CIFAR-100.
        4. **The ImageNet rows of Table 1** (13.28 and 7.71 MB at 8 and 4 bits) are the sizes of an *unpruned*
           ResNet-18 with quantized convolutions (checked below), although the text presents them as the first
           structured-pruning result on ImageNet: they look quantization-only.
        5. **The energy rows of Table 6 are not mutually consistent**: no single convention reproduces all four
           (section 4), and the Spikingformer rows of App. B follow yet another.

        Smaller discrepancies, for completeness: the parameter counts of Tables 9-11 include BatchNorm for VGG-16 but not
        for ResNet20 and VGGSNN (section 3); Table 6's connection percentages, 9.61 % and 22.69 %, come out as 9.59 % and
        22.70 % with the counting of Eq. 16 (below); the full-precision VGG-16 is 58.88 MB in Table 6 against 58.90 MB by
        Eq. 16; and App. E.1 uses $s(b) = 256$ instead of $2^8 - 1 = 255$ for 8 bits (chapter 03). None of these changes
        a conclusion of the paper, but each one changes a comparison made to two decimals.
        """
    ),
    code(
        r'''
        import torchvision                   # for ResNet-18's layout (SEW-ResNet18 has the same convolutions)

        with torch.no_grad():
            resnet18 = torchvision.models.resnet18(num_classes=1000)
        print("unpruned ResNet-18 on ImageNet: " + ", ".join(f"{metrics.model_size_mb(resnet18, b):.2f} MB at {b} bits"
                                                             for b in (8, 4)) + " (the paper's Table 1: 13.28, 7.71)")
        for label, model, classes, paper in (("VGG-16, CIFAR-10, configuration B", "vgg16", 10, 9.61),
                                             ("ResNet20, CIFAR-100, configuration B", "resnet20", 100, 22.69)):
            kept = metrics.connection_percent(paper_net(model, classes, "B"), paper_net(model, classes))
            print(f"connections kept, {label}: {kept:.2f} % (the paper's Table 6: {paper:.2f} %)")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        budget(
            r"""
            ## 7. The paper's scale on a Colab GPU

            The presets of chapter 07 (`python -m qpsnn_lite presets`) hold the paper's settings: CIFAR-10 or
            CIFAR-100, ResNet20 ($T = 2$) or VGG-16 ($T = 4$), configuration A or B, 4 bits, batch 256, 300 epochs of
            SGD at 0.1 and 150 epochs of Adam at $10^{-3}$ for fine-tuning, and the paper's augmentation (crop, flip,
            AutoAugment, Cutout). In a Colab notebook with a GPU runtime (*Runtime, Change runtime type*):

            ```bash
            !pip install -q git+https://github.com/qpsnn-lite/qpsnn-lite
            !python -m qpsnn_lite presets cifar10-resnet20-A        # print the preset's fields
            !python -m qpsnn_lite run --preset cifar10-resnet20-A --device cuda --download \
                --output-dir /content/drive/MyDrive/qpsnn/cifar10-resnet20-A
            ```

            `--download` fetches CIFAR with torchvision; `--output-dir` on a mounted Google Drive
            (`from google.colab import drive; drive.mount("/content/drive")`) keeps `result.json`, the integer export
            and the figures when the session ends, and a checkpoint after every epoch while the run lasts: if the
            session ends first, the same command (same flags, same `--output-dir`) resumes the run after its last
            finished epoch. Other settings are other presets, or flags on top of one:

            ```bash
            # the other order (App. A), and the ablation of Table 2 (two networks per seed: budget accordingly)
            !python -m qpsnn_lite run --preset cifar100-resnet20-pq --device cuda --download
            !python -m qpsnn_lite ablation --preset cifar100-resnet20-ablation --seeds 3 --device cuda --download
            # configuration B at 2 bits
            !python -m qpsnn_lite run --preset cifar10-resnet20-B --bits 2 --device cuda --download
            ```

            **What it costs.** The network's dense MACs per image and time step come from the architecture (one pass on a
            blank image). A training step costs about three forward passes (the forward pass, and a backward pass of
            twice the work) at two floating-point operations per MAC, so the total is roughly
            $6 \cdot \mathrm{MACs} \cdot T \cdot N_{images} \cdot N_{epochs}$ floating-point operations. Divided by a
            throughput, that is a lower bound on the time: the LIF loops, BatchNorm, the optimizer and the data
            augmentation all add to it.
            """
        )
    ),
    code(
        r'''
        ASSUMED_TFLOPS = 4.0   # an assumption, not a measurement: about half the float32 peak of a Colab T4 (8.1 TFLOP/s)
        IMAGES = 50_000        # the CIFAR training set


        def dense_macs(net):
            """MACs per image and time step of every conv and Linear layer, at full activity."""
            report = metrics.energy_mj(net, blank, batches=1)
            return report.mac_stem + sum(layer.macs_per_step for layer in report.layers)


        print("preset              MACs per image and step   T   train (h)   fine-tune (h)   total (h)")
        for name in ("cifar10-resnet20-A", "cifar10-vgg16-A"):
            preset = pipeline.PRESETS[name]
            before = dense_macs(paper_net(preset.model, 10))
            after = dense_macs(paper_net(preset.model, 10, preset.prune_config))
            hours = [6 * macs * preset.T * IMAGES * epochs / (ASSUMED_TFLOPS * 1e12) / 3600
                     for macs, epochs in ((before, preset.epochs), (after, preset.finetune_epochs))]
            short = [6 * macs * preset.T * IMAGES * epochs / (ASSUMED_TFLOPS * 1e12) / 3600
                     for macs, epochs in ((before, 30), (after, 10))]
            print(f"{name:19s} {before / 1e6:19,.0f} M   {preset.T}   {hours[0]:9.1f}   {hours[1]:13.1f}   {sum(hours):9.1f}")
            glue(f"ch08_hours_{preset.model}", sum(hours), display=False)
            glue(f"ch08_hours_{preset.model}_short", sum(short), display=False)
        glue("ch08_tflops", ASSUMED_TFLOPS, display=False)
        '''
    ),
    md(
        budget(
            r"""
            At an assumed {glue:text}`ch08_tflops:.0f` TFLOP/s, the wide ResNet20 needs at least
            {glue:text}`ch08_hours_resnet20:.0f` hours for 300 + 150 epochs and VGG-16 at least
            {glue:text}`ch08_hours_vgg16:.0f`: more than a free Colab session lasts, so plan for interruptions, a paid
            runtime, or a smaller budget. For a smaller budget, change in this order:

            - **fewer epochs, with Adam**: `--epochs 30 --finetune-epochs 10 --optimizer adam --lr 1e-3` (the authors'
              code trains with Adam at $10^{-3}$; SGD at 0.1 needs its long schedule). By the same estimate that is
              {glue:text}`ch08_hours_resnet20_short:.1f` hours for ResNet20 and {glue:text}`ch08_hours_vgg16_short:.1f`
              for VGG-16. Expect a few points below the paper's accuracy;
            - **VGG-16 before ResNet20**: the preset `cifar10-vgg16-A` is several times cheaper per epoch;
            - **no AutoAugment and Cutout** (`--no-augment`) if the GPU waits for the CPU: the augmentation runs in the
              main process, and Colab gives you two CPU cores; accuracy drops without it;
            - **a larger batch** (`--batch-size 512`) if the GPU has memory to spare; scale the learning rate with it.

            A run that fits a CPU is the digits setting of chapter 07: `python -m qpsnn_lite run --T T_BOOK --epochs
            EPOCHS_BOOK --finetune-epochs FINETUNE_BOOK`.

            ## 8. Performance: where a spiking network spends its time

            On a CPU, a spiking network's convolutions are ordinary dense convolutions; what is particular to it is the
            LIF's loop over time. Written as in chapter 01, one line per equation, each time step creates several
            small tensors and several nodes of the autograd graph, and the backward pass walks them all. The package's
            default LIF (`neurons.LIF()`, `backend="fused"`, in `qpsnn_lite/fused.py`) computes all $T$ steps, forward
            and backward, as one autograd operation, in a small C kernel when a compiler is available and in
            vectorised PyTorch otherwise; the readable loop stays available as `backend="reference"`, and the tests
            check that both give the same spikes and gradients. We check that here too, on one layer's worth of
            neurons, and time a forward and backward pass of each:
            """
        )
    ),
    code(
        r'''
        tic = clock()
        x = torch.randn(4, 64, 32, 16, 16)                        # [T, B, C, H, W]: a block of the digits CNN at T = 4
        grad = torch.randn_like(x)
        implementations = {"reference": neurons.LIF(backend="reference"), "fused": neurons.LIF(backend="fused")}


        def forward_backward(lif):
            inputs = x.clone().requires_grad_(True)
            spikes = lif(inputs)
            spikes.backward(grad)
            return spikes, inputs.grad


        outputs = {name: forward_backward(lif) for name, lif in implementations.items()}      # also a warm-up
        assert torch.equal(outputs["reference"][0], outputs["fused"][0])                       # the same spikes
        assert torch.allclose(outputs["reference"][1], outputs["fused"][1], atol=1e-6)          # the same gradients

        seconds = {name: [] for name in implementations}
        for _ in range(5):                                        # interleaved, so a busy machine slows both alike
            for name, lif in implementations.items():
                start = time.perf_counter()
                forward_backward(lif)
                seconds[name].append(time.perf_counter() - start)
        median = {name: statistics.median(t) for name, t in seconds.items()}
        ratio = median["reference"] / median["fused"]
        COST["8. fused LIF"] = clock() - tic
        print(f"input {tuple(x.shape)}, forward + backward, median of 5: reference {1e3 * median['reference']:.1f} ms, "
              f"fused {1e3 * median['fused']:.1f} ms ({fused.native_status().split(':')[0]} implementation); "
              f"the fused LIF is {ratio:.1f} x faster")
        glue("ch08_fused_ratio", ratio, display=False)
        '''
    ),
    md(
        r"""
        Here the fused LIF was {glue:text}`ch08_fused_ratio:.1f` times faster than the readable loop on this shape. The
        ratio varies with the shape, $T$, the machine and its load; it grows with $T$, since the readable loop's backward
        pass costs more per step the longer the sequence. In a whole training step the convolutions take most of the
        remaining time, so the gain per epoch is smaller than this ratio. For the full picture, see
        `benchmarks/README.md` in the repository: it compares the fused and the readable LIF with SpikingJelly and
        snnTorch (throughput and peak memory over several shapes, with the same neuron settings, after checking that
        all fire the same spikes) and times a whole training step, with the commands to rerun every figure on your
        machine (for example `python benchmarks/lif_throughput.py --threads 1 --clock cpu`).

        One more knob matters on a CPU: threads. On a machine shared with other jobs, PyTorch's default of one thread
        per core can be many times slower than one thread, because every parallel operation waits for its slowest
        thread (the command line's `--threads 1`). This book's stored outputs were computed that way; the cost of each
        section:
        """
    ),
    code(
        r'''
        total = clock() - CHAPTER_START
        print("section            wall (s)    CPU (s)")
        for name, (wall, cpu) in COST.items():
            print(f"{name:17s} {wall:9.1f} {cpu:10.1f}")
        print(f"{'whole chapter':17s} {total[0]:9.1f} {total[1]:10.1f}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}, load average (1 min): {load:.1f}")
        glue("ch08_wall", float(total[0]), display=False)
        glue("ch08_cpu", float(total[1]), display=False)
        '''
    ),
    md(
        r"""
        This chapter took {glue:text}`ch08_wall:.0f` s of wall-clock time and {glue:text}`ch08_cpu:.0f` s of CPU time
        when it was last executed, most of it in training the two networks of section 0.

        ## Exercises

        **1. Where do the bits go?** For the paper's ResNet20 and VGG-16 on CIFAR-10 (configuration B), what fraction
        of the model size is the full-precision part $32 \sum P_{fp}$ at 2 bits? How much smaller would 1-bit weights
        make them?

        ```{dropdown} Solution
        The cell below splits Eq. 16 into its terms. The full-precision part (stem, BatchNorm and classifier) does not
        shrink with the bit width, so its share grows as $b$ falls, and it is larger for the heavily pruned VGG-16 B,
        whose quantized weights shrank the most. Halving the bits again, from 2 to 1, therefore saves less than half of
        the size. Below that floor only quantizing the BatchNorm parameters (or folding them into the thresholds), the
        stem and the classifier would help.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 1
        for label, model in (("ResNet20", "resnet20"), ("VGG-16", "vgg16")):
            p = metrics.size_breakdown(paper_net(model, 10, "B"))
            print(f"{label} B: full precision = stem {p.first_conv:,} + BatchNorm {p.batchnorm:,} + classifier "
                  f"{p.linear:,} parameters")
            for bits in (2, 1):
                q_bits, fp_bits = bits * p.quantized, 32 * p.full_precision
                print(f"  {bits} bit(s): {(q_bits + fp_bits) / 8e6:.3f} MB, of which full precision "
                      f"{100 * fp_bits / (q_bits + fp_bits):.1f} %")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **2. Energy with integer arithmetic.** Our energy model charges every accumulate as a 32-bit floating-point
        addition (0.9 pJ), whatever the weights' bit width. With 4-bit weights and integer membrane potentials, a
        device could use integer adders: Horowitz (2014) gives 0.03 pJ for an 8-bit and 0.1 pJ for a 32-bit integer
        addition at 45 nm. Recompute the QP-SNN's energy with `metrics.energy_mj(..., e_ac_pj=0.1)` and compare. What
        dominates now?

        ```{dropdown} Solution
        The accumulates become nine times cheaper, and the stem's floating-point MACs, unchanged, take a much larger
        share of the budget (cell below). Two lessons: energy estimates of this kind depend entirely on the constants
        chosen, which is why a paper must state them; and for a quantized SNN, the analog first layer is the next
        thing to optimise (quantize the stem, or encode the input as spikes).
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        for e_ac in (metrics.E_AC_PJ, 0.1):
            r = metrics.energy_mj(qpsnn, test_loader, batches=None, e_ac_pj=e_ac)
            stem = metrics.E_MAC_PJ * r.mac_stem * 1e-9
            print(f"E_AC = {e_ac} pJ: {1e6 * r.energy_mj:.1f} nJ per sample, of which the stem "
                  f"{100 * stem / r.energy_mj:.0f} %")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **3. Predict a file size.** Without saving anything, predict the size on disk of the paper's VGG-16 for CIFAR-10,
        configuration B, exported at 2 bits: Eq. 16, plus 4 bytes per output channel of every quantized convolution
        for $\gamma$, plus the BatchNorm running statistics (two 4-byte floats per channel and an 8-byte counter per
        layer), plus the header that describes the architecture. Then save it and compare.

        ```{dropdown} Solution
        The cell below computes the prediction from the architecture and checks it against `export.save`: what is left
        is the header (the JSON record of every layer) and the padding of each layer's codes to whole bytes. On a
        network of 1.4 million parameters it is a small part of the file.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        vgg = paper_net("vgg16", 10, "B")
        quantized_convs = metrics.conv_layers(vgg)[1:]
        batchnorms = [m for m in vgg.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        predicted = (1e6 * metrics.model_size_mb(vgg, 2) + 4 * sum(m.out_channels for _, m in quantized_convs)
                     + sum(8 * m.num_features + 8 for m in batchnorms))
        with tempfile.TemporaryDirectory() as scratch:
            actual = export.save(vgg, Path(scratch) / "vgg16_B_2bit.safetensors", bits=2).file_bytes
        print(f"predicted {predicted:,.0f} bytes + header; on disk {actual:,} bytes: the header and the byte padding "
              f"take {actual - predicted:,.0f} bytes")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **4. Fused or not, the same network?** Train the digits CNN for two epochs twice from the same seed, once with
        `backend="reference"` in every LIF and once with the default, and compare the final weights and accuracies.
        Should they be equal?

        ```{dropdown} Solution
        The forward passes compute the same spikes, but the backward passes compute the same gradients in a different
        order of floating-point operations, so they agree only to rounding. Training then amplifies the difference: a
        tiny change of a weight moves a membrane potential across the threshold somewhere, one spike appears or
        disappears, and from then on the two runs follow different paths. After a few hundred updates the weights
        differ well beyond rounding (the cell prints by how much), while the accuracies stay comparable. The two
        networks are equally good, not identical. This is the usual situation with any change of kernel (a GPU,
        another BLAS library, a different thread count), and the reason the book compares runs by their spread over
        seeds rather than bit for bit.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 4
        twins = {}
        for backend in ("fused", "reference"):
            train.seed_everything(config.seed)
            net = models.build("digits_cnn", num_classes=10, T=config.T, bits=config.bits, gamma=config.gamma)
            for m in net.modules():
                if isinstance(m, neurons.LIF):
                    m.backend = backend
            twins[backend] = (net, fit(net, 2).final_accuracy)
        difference = max((a - b).abs().max().item() for a, b in zip(twins["fused"][0].parameters(),
                                                                     twins["reference"][0].parameters()))
        scale = max(p.abs().max().item() for p in twins["fused"][0].parameters())
        print(f"largest weight difference after 2 epochs: {difference:.2e} (largest weight: {scale:.2f}); accuracy "
              f"{100 * twins['fused'][1]:.1f} % fused, {100 * twins['reference'][1]:.1f} % reference")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        ## Summary

        - **Size** follows Eq. 16: quantized convolution weights at $b$ bits, the stem, classifier and BatchNorm
          parameters at 32 bits, megabytes of $10^6$ bytes. With the pruning configurations read as in the authors'
          code, it reproduces every QP-SNN size of Table 1 from the architectures alone.
        - **Parameter counts** in the paper include BatchNorm for VGG-16 but not for ResNet20 and VGGSNN.
        - **SOPs** count accumulates on spikes, summed over time; the **energy** charges the analog stem with MACs
          (once per static image) and every other layer with accumulates. The paper states none of this, and no
          single convention reproduces all its energy rows.
        - **Integer export** stores bit-packed codes and scales: the file is the Eq. 16 size plus scales, running
          statistics and a header, and the loaded network computes exactly the same outputs.
        - **The paper's scale** needs a GPU and many hours per ResNet20 run at the full schedule; the presets and a few
          flags run it, and the estimate above says what to expect before you start.
        - **The fused LIF** runs the time loop as one operation: the same spikes, the same gradients up to rounding,
          and several times faster.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905) (Table 1, App. B, App. C Tables 6-7, App. G, Tables 9-11
          for this chapter).
        - M. Horowitz. *Computing's energy problem (and what we can do about it).* ISSCC 2014 (the 45 nm energy per
          operation).
        - Z. Zhou et al. *Spikformer: When spiking neural network meets transformer.* ICLR 2023 (the common SOPs and
          energy conventions for SNNs).
        - C. Zhou et al. *Spikingformer: Spike-driven residual learning for transformer-based spiking neural network.*
          [arXiv:2304.11954](https://arxiv.org/abs/2304.11954), 2023 (the network of the paper's App. B).
        - Hugging Face. *safetensors*, [documentation](https://huggingface.co/docs/safetensors) (the file format of
          the export).
        - W. Fang et al. *SpikingJelly: An open-source machine learning infrastructure platform for spike-based
          intelligence.* Science Advances 2023; J. K. Eshraghian et al. *Training spiking neural networks using
          lessons from deep learning.* Proceedings of the IEEE 2023 (snnTorch): the libraries of the benchmarks.
        """
    ),
]


CHAPTERS = {"07": (CH07, "07_qpsnn_pipeline.ipynb"), "08": (CH08, "08_efficiency_deployment.ipynb")}


def main() -> int:
    return write_chapters(CHAPTERS, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
