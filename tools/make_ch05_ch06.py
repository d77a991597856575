"""Write book/05_structured_pruning.ipynb and book/06_svs.ipynb from the cell lists below.

The chapters are authored here as Python lists of cells, with the helpers of tools/nbgen.py.
Usage (then execute the notebooks to store their outputs):

    python tools/make_ch05_ch06.py
    bash tools/execute_notebooks.sh book/05_structured_pruning.ipynb book/06_svs.ipynb
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, where nbgen.py is, however this file is loaded

import nbgen  # noqa: E402
from nbgen import GLUE_IMPORT, INSTALL, code, colab_badge, md, setup_cell, write_chapters  # noqa: E402

PLOT_SETUP = nbgen.PLOT_SETUP + "CHAPTER_START = time.perf_counter()\n"

# What follows the imports in the setup cell of both chapters (see nbgen.setup_cell).
SETUP_SNIPPETS = (GLUE_IMPORT, PLOT_SETUP)

# The training recipe of both chapters: the 4-bit ReScaW digits CNN on 16 x 16 digits. Chapter 06 trains the same
# model for seed 0, so both chapters prune the same network.
RECIPE = '''
BITS, EPOCHS, LR, BATCH = 4, 3, 2e-3, 32          # 4-bit ReScaW (chapter 04); 3 epochs of Adam at 2e-3
FINE_TUNE_EPOCHS, FINE_TUNE_LR = 1, 1e-3           # the short fine-tune after pruning
SCORE_BATCHES = 5                                  # score on 5 mini-batches of 128, as the authors' code
'''

# Re-estimating the BatchNorm statistics of a pruned network: shared by both chapters.
RECALIBRATE = '''
def recalibrate_bn(net, loader, batches=3):
    """Re-estimate every BatchNorm's running mean and variance on a few training batches, without a gradient step."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                  # None: a plain average over all the batches seen
    net.train()
    with torch.no_grad():
        for x, _ in itertools.islice(loader, batches):
            net(x)
    for m in norms:
        m.momentum = 0.1                   # PyTorch's default again, for fine-tuning
    net.eval()
    return net
'''

# How much two batches agree on which channels to keep: shared by both chapters.
AGREEMENT = '''
def keep_agreement(rows, ratio=0.5):
    """Mean share of the kept channels that two batches agree on, over every pair of batches (1 = identical)."""
    keep = int(rows.shape[1] * (1 - ratio))
    sets = [set(prune.keep_indices(row, keep).tolist()) for row in rows]
    return float(np.mean([len(a & b) / keep for a, b in itertools.combinations(sets, 2)]))


def shuffled_cosine(rows, seed=0):
    """AvgCosS of the same rows after shuffling the channels of each one: what Eq. 15 gives with no agreement."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.stack([row[torch.randperm(len(row), generator=generator)] for row in rows])
    return prune.avg_cos_similarity(shuffled)


def mean_correlation(rows):
    """Mean Pearson correlation between the score vectors of every pair of batches (Eq. 15 after centring)."""
    return prune.avg_cos_similarity(rows - rows.mean(dim=1, keepdim=True))
'''

SHORT = '''
def short(name):
    """features.block2.conv -> block2"""
    return name.split(".")[1]
'''

# ======================================================================================================================
# Chapter 05 · Structured pruning, the baseline
# ======================================================================================================================
CH05 = [
    md(
        r"""
        # 05 · Structured pruning, the baseline

        Chapters 03 and 04 made every weight cheaper: fewer bits each. QP-SNN's second lever makes the network
        *smaller*: it removes whole channels. It is a simple recipe. Train the quantized network, give every channel a
        score computed on a few mini-batches of data, remove the channels with the lowest scores, fine-tune what is
        left. Everything hinges on the score. This chapter builds the machinery and the score the paper starts from:
        the *spiking channel activity* (SCA) of Li et al. (2024), the paper's Eq. 7 and the baseline that its own
        criterion, SVS (chapter 06), is measured against. Three classic criteria come with it as a yardstick: the L1
        norm of the weights, the firing rate, and random scores.

        **Learning goals.** After this chapter you can

        - explain why QP-SNN removes whole channels rather than single weights, and measure what that buys on
          ordinary (dense) hardware;
        - remove channels by hand from a conv, its BatchNorm and the next conv, and check the result against masking
          and against `qpsnn_lite.prune.apply`;
        - compute the SCA score (Eq. 7) by hand from recorded membrane potentials;
        - measure how much a score changes from one mini-batch to the next, with the paper's AvgCosS (Eq. 15) and
          with a measure that asks what pruning actually needs to know;
        - run a pruning experiment (accuracy against prune ratio, for four criteria, before and after a short
          fine-tune) and read it critically.

        **Run it yourself.** BADGE On Colab the first code cell installs the `qpsnn_lite` package; anywhere else it
        does nothing. The chapter trains one small network and fine-tunes sixteen pruned copies of it; it runs in
        about two minutes on a laptop CPU.
        """.replace("BADGE", colab_badge("05_structured_pruning.ipynb"))
    ),
    INSTALL,
    setup_cell(
        '''
        import itertools
        import time

        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        import torch.nn.functional as F
        from torch import nn

        from qpsnn_lite import data, metrics, models, neurons, prune, quant, train
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 1. Why whole channels?

        There are two ways to remove weights from a convolution with weight tensor
        $\mathbf W^{l} \in \mathbb R^{c_l \times c_{l-1} \times k \times k}$:

        - **unstructured pruning** (Han et al. 2015) sets individual weights to zero wherever they are small. The
          tensor keeps its shape and becomes *sparse*;
        - **structured pruning** (Li et al. 2017) removes whole *kernels* $\mathbf W^{l,f} \in \mathbb
          R^{c_{l-1} \times k \times k}$, that is whole output channels $f$. The layer becomes *narrower* but stays
          *dense*: it is simply a smaller convolution.

        At the same number of removed weights, unstructured pruning usually keeps more accuracy, because it is free to
        choose. But a dense convolution routine (CPU, GPU, and most accelerators) multiplies a zero just as fast as any
        other number. Unstructured sparsity pays off only with sparse storage formats and kernels, or with hardware
        built to skip zeros. A narrower convolution is faster and smaller everywhere, which is why QP-SNN prunes
        channels. Let us measure it: a convolution with $C = 128$ output channels on a batch of spike maps, the same
        convolution with $C/2 = 64$, and the full-width one with half of its weights set to zero at random. The three
        are timed in turns in the same cell, so a busy machine slows all of them alike.
        """
    ),
    code(
        r'''
        T, B = 4, 32
        x = (torch.rand(T * B, 64, 16, 16) < 0.15).float()       # T x B spike maps, 64 channels of 16 x 16
        dense = nn.Conv2d(64, 128, 3, padding=1, bias=False)     # C = 128 output channels
        narrow = nn.Conv2d(64, 64, 3, padding=1, bias=False)     # structured: C/2 = 64 output channels
        sparse_weight = dense.weight.detach() * (torch.rand_like(dense.weight) < 0.5)   # unstructured: half are 0

        variants = {
            "dense, C = 128": (lambda: dense(x), dense.weight),
            "structured, C/2 = 64 channels": (lambda: narrow(x), narrow.weight),
            "unstructured, 50 % zero weights": (lambda: F.conv2d(x, sparse_weight, padding=1), sparse_weight),
        }
        times = {name: [] for name in variants}
        with torch.no_grad():
            for run, _ in variants.values():
                run()                                            # warm-up
            for _ in range(20):                                  # interleaved repetitions
                for name, (run, _) in variants.items():
                    tic = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - tic)
        median = {name: float(np.median(t)) for name, t in times.items()}

        print("variant                            non-zero weights   time (ms)   vs dense")
        for name, (_, weight) in variants.items():
            print(f"{name:34s} {int(torch.count_nonzero(weight)):16,d}   {1e3 * median[name]:9.2f}   "
                  f"{median[name] / median['dense, C = 128']:8.2f}")
        glue("ch05_time_structured", median["structured, C/2 = 64 channels"] / median["dense, C = 128"], display=False)
        glue("ch05_time_unstructured", median["unstructured, 50 % zero weights"] / median["dense, C = 128"],
             display=False)
        '''
    ),
    md(
        r"""
        On this machine the narrower convolution took {glue:text}`ch05_time_structured:.2f` of the dense one's time,
        and the one with half of its weights zero took {glue:text}`ch05_time_unstructured:.2f`: the zeros were
        multiplied like any other weight. (Timings depend on the machine and its load; the ratios are what to look at.)

        Memory tells the same story, and with low-bit weights it is even starker. A sparse tensor must also record
        *where* its non-zero weights are: one bit per position for a bitmask, or an index per non-zero weight. At 4
        bits per weight an index costs more than the weight it points to. And a removed channel saves twice: its own
        kernels, and the matching input channels of the next layer (section 3), as well as its spikes.
        """
    ),
    code(
        r'''
        n = dense.weight.numel()                       # 128 x 64 x 3 x 3 weights
        bits = 4


        def kilobytes(bit_count):
            return bit_count / 8 / 1e3


        print(f"weights of the layer at {bits} bits:")
        print(f"  dense, C = 128                         {kilobytes(n * bits):6.2f} kB")
        print(f"  structured, C/2 = 64                   {kilobytes(n // 2 * bits):6.2f} kB")
        print(f"  unstructured 50 %, values + bitmask    {kilobytes(n // 2 * bits + n):6.2f} kB")
        print(f"  unstructured 50 %, values + 16-bit idx {kilobytes(n // 2 * (bits + 16)):6.2f} kB")
        print("output spikes per sample and time step (1 bit each):")
        print(f"  C = 128: {kilobytes(128 * 16 * 16):.3f} kB   C/2 = 64: {kilobytes(64 * 16 * 16):.3f} kB   "
              f"unstructured: {kilobytes(128 * 16 * 16):.3f} kB")
        glue("ch05_kb_dense", kilobytes(n * bits), display=False)
        glue("ch05_kb_bitmask", kilobytes(n // 2 * bits + n), display=False)
        glue("ch05_kb_index", kilobytes(n // 2 * (bits + 16)), display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Half the weights removed without structure still cost {glue:text}`ch05_kb_bitmask:.2f` kB with a bitmask, or
        {glue:text}`ch05_kb_index:.2f` kB with 16-bit indices: *more* than the {glue:text}`ch05_kb_dense:.2f` kB of
        the dense 4-bit layer. Structured pruning halves it, with no bookkeeping at all.

        ## 2. The network we prune

        The paper prunes the **trained quantized** network (its Algorithm 1): quantization-aware training first, then
        scoring, pruning and fine-tuning with quantization still on. So we first train the digits CNN of chapter 02 with
        4-bit ReScaW weights (chapter 04). We use the digits upsampled to 16 x 16 (`data.load(..., image_size=16)`,
        bilinear): the spike maps of the first two layers are then 16 x 16 instead of 8 x 8, which matters for
        chapter 06, and both chapters prune the same network. Three epochs at a learning rate of $2 \cdot 10^{-3}$
        with mini-batches of 32 are enough here.

        For scoring we draw mini-batches of 128 training images, 5 of them, as the authors' code does; and we
        evaluate on the 360 held-out test digits. Everything in this chapter uses **one seed**. On 360 test images
        one image is 0.28 points, and runs with different seeds differ by a point or more; chapter 06 repeats the
        comparison over three seeds.
        """
    ),
    code(
        RECIPE,
        r'''
        train_loader, _ = data.load("digits", batch_size=BATCH, image_size=16, seed=0)
        score_loader, test_loader = data.load("digits", batch_size=128, image_size=16, seed=0)

        torch.manual_seed(0)
        model = models.build("digits_cnn", num_classes=10, bits=BITS, gamma="mean")
        tic = time.perf_counter()
        train.fit(model, train_loader, epochs=EPOCHS, lr=LR, seed=0, progress=False)
        train_seconds = time.perf_counter() - tic
        dense_accuracy = train.evaluate(model, test_loader)[0]
        dense_kb = 1e3 * metrics.model_size_mb(model, BITS)
        print(f"4-bit digits CNN: test accuracy {100 * dense_accuracy:.1f} %, size {dense_kb:.1f} kB (Eq. 16), "
              f"trained in {train_seconds:.0f} s")
        glue("ch05_dense_accuracy", 100 * dense_accuracy, display=False)
        glue("ch05_dense_kb", dense_kb, display=False)
        glue("ch05_train_seconds", train_seconds, display=False)
        '''
    ),
    md(
        r"""
        `prune.prunable_layers` finds every conv that is followed by a BatchNorm and a LIF layer (a
        `SpikingConvBlock`): these are the layers whose output channels can be removed. A layer is named after its
        conv. The paper prunes all of them **except the last**, which feeds the classifier, and it does prune the
        full-precision first conv ("stem"). Here are ours, with the size of their spike maps for a 16 x 16 input:
        """
    ),
    code(
        r'''
        layers = prune.prunable_layers(model)
        map_shapes = {}
        hooks = [layer.lif.register_forward_hook(
                     lambda module, inputs, output, name=layer.name: map_shapes.__setitem__(name, tuple(output.shape)))
                 for layer in layers]
        model.eval()
        with torch.no_grad():
            model(next(iter(test_loader))[0][:2])
        for hook in hooks:
            hook.remove()

        print("layer                 conv                 weight shape       channels   spike maps   pruned?")
        for i, layer in enumerate(layers):
            kind = f"QuantConv2d, {layer.conv.bits} bits" if isinstance(layer.conv, quant.QuantConv2d) else "Conv2d, 32 bits"
            height, width = map_shapes[layer.name][-2:]
            pruned = "no (feeds the classifier)" if i == len(layers) - 1 else "yes"
            print(f"{layer.name:21s} {kind:20s} {str(tuple(layer.conv.weight.shape)):18s} {layer.channels:8d}"
                  f"   {height:2d} x {width:2d}      {pruned}")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        ## 3. Removing channels by hand

        Removing output channel $f$ of layer $l$ touches everything that has a channel axis of that layer. Write
        $\mathcal K \subset \{1, \dots, c_l\}$ for the channels we keep. Then

        - the conv keeps the kernels in $\mathcal K$: $\mathbf W^{l} \to \mathbf W^{l}[\mathcal K, :, :, :]$, and the
          bias entries $b^{l}[\mathcal K]$ if it has a bias;
        - the BatchNorm keeps its four per-channel vectors: the affine $\gamma[\mathcal K]$, $\beta[\mathcal K]$ and
          the running statistics $\mu[\mathcal K]$, $\sigma^2[\mathcal K]$;
        - the LIF layer has no parameters; it just receives fewer channels;
        - the **next** conv loses the matching *input* channels: $\mathbf W^{l+1} \to \mathbf W^{l+1}[:, \mathcal K,
          :, :]$ (and, after the last conv, the classifier would lose the matching columns).

        Removing a channel should change nothing but the channel's own spikes, which are gone. The *masked* network,
        the full network with the removed channels' spikes forced to zero, must therefore compute the same thing as the
        narrower one. We check this by hand for the stem and the conv after it (`block2`), keeping the 8 of the stem's
        16 channels with the largest weight L1 norm (the choice does not matter for the check). `block2` is a 4-bit
        `QuantConv2d`, so it computes with its quantized weight (`quantized_weight()`); we slice that.
        """
    ),
    code(
        r'''
        stem, block2 = model.features.stem, model.features.block2
        keep = prune.keep_indices(prune.l1_norm_score(stem.conv), 8)          # the 8 channels we keep

        # The narrower layers, sliced by hand.
        weight_1, bias_1 = stem.conv.weight.detach()[keep], stem.conv.bias.detach()[keep]
        bn = stem.bn
        bn_weight, bn_bias = bn.weight.detach()[keep], bn.bias.detach()[keep]
        running_mean, running_var = bn.running_mean[keep], bn.running_var[keep]
        weight_2 = block2.conv.quantized_weight()[:, keep]                     # next conv: input channels K only

        images = next(iter(test_loader))[0]                                    # 128 test digits
        frames = model.encode(images)                                          # direct encoding: [T, B, 1, 16, 16]
        with torch.no_grad():
            # narrow: conv -> BN (eval mode: running statistics) -> LIF -> next conv
            current_1 = F.batch_norm(F.conv2d(frames.flatten(0, 1), weight_1, bias_1, padding=1),
                                     running_mean, running_var, bn_weight, bn_bias, eps=bn.eps)
            spikes_1 = stem.lif(current_1.unflatten(0, frames.shape[:2]))       # [T, B, 8, 16, 16]
            current_2_narrow = F.conv2d(spikes_1.flatten(0, 1), weight_2, padding=1)

            # masked: the full layers, with the spikes of the removed channels set to 0
            mask = torch.zeros(stem.conv.out_channels)
            mask[keep] = 1
            spikes_full = stem(frames)                                         # [T, B, 16, 16, 16]
            current_2_masked = F.conv2d((spikes_full * mask.view(-1, 1, 1)).flatten(0, 1),
                                        block2.conv.quantized_weight(), padding=1)

        assert torch.equal(spikes_1, spikes_full[:, :, keep])                  # the kept channels spike as before
        assert torch.allclose(current_2_narrow, current_2_masked, atol=1e-5)   # and the next conv sees the same input
        print(f"keeping {len(keep)} of the stem's {stem.conv.out_channels} channels:")
        print("narrow stem -> block2 conv == masked full network: same spikes, same input current to block2")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        `prune.apply(model, scores, ratio)` does this for every prunable layer at once and returns a narrower *copy*
        (the model itself is left alone). For each layer it keeps the $\lfloor n(1 - r)\rfloor$ channels with the
        highest scores; it records the kept indices in `pruned_channels`. With the same L1 scores and a ratio of 0.5
        for the stem only, it must produce exactly our tensors. Note what it does with `block2`: it slices the
        *latent* (full-precision) weight, not the quantized one, because the quantized weight is recomputed from the
        latent one at every forward pass.
        """
    ),
    code(
        r'''
        l1_scores = prune.score(model, None, "l1")                  # {layer: Tensor[C]}; L1 needs no data
        pruned = prune.apply(model, l1_scores, {"features.stem.conv": 0.5})
        p_stem, p_block2 = pruned.features.stem, pruned.features.block2

        assert torch.equal(pruned.pruned_channels["features.stem.conv"], keep)
        assert torch.equal(p_stem.conv.weight, weight_1) and torch.equal(p_stem.conv.bias, bias_1)
        assert torch.equal(p_stem.bn.weight, bn_weight) and torch.equal(p_stem.bn.bias, bn_bias)
        assert torch.equal(p_stem.bn.running_mean, running_mean) and torch.equal(p_stem.bn.running_var, running_var)
        assert torch.equal(p_block2.conv.weight, block2.conv.weight[:, keep])          # the latent weight, sliced
        print("prune.apply sliced exactly our tensors:")
        for name, module in (("stem.conv", p_stem.conv), ("stem.bn", p_stem.bn), ("block2.conv", p_block2.conv)):
            shape = tuple(module.weight.shape)
            print(f"  {name:12s} weight {str(shape):16s}" + (f" in/out channels {module.in_channels}/{module.out_channels}"
                                                             if hasattr(module, "in_channels") else
                                                             f" num_features {module.num_features}"))
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Is the narrower network now *exactly* the masked one? For full-precision layers it is. For a quantized layer
        there is a catch, and it is worth understanding. ReScaW (chapter 04) divides the weights by
        $\gamma = \mathrm{mean}|\mathbf W|$ of each output channel before quantizing them; after pruning, `block2`'s
        $\gamma$ is the mean over the *remaining* input channels: every kept kernel is rescaled a little, and some
        of its weights land on a different quantization level. We check both halves of this statement on the 360 test digits: first on a full-precision
        *twin* of our model (the same parameters, with the 4-bit weights frozen in as plain floats), where pruning
        must match masking; then on the quantized model itself.
        """
    ),
    code(
        r'''
        twin = models.build("digits_cnn", num_classes=10)            # full precision, same layout
        twin.load_state_dict(model.state_dict())                     # same parameters and BatchNorm statistics ...
        with torch.no_grad():                                        # ... with the quantized weights frozen in
            for name, module in model.named_modules():
                if isinstance(module, quant.QuantConv2d):
                    twin.get_submodule(name).weight.copy_(module.quantized_weight())
        twin.eval()
        test_images = torch.cat([x for x, _ in test_loader])
        with torch.no_grad():
            assert torch.allclose(twin(test_images), model(test_images), atol=1e-5)    # the twin computes the same
            twin_pruned = prune.apply(twin, l1_scores, 0.5)                             # every layer but the last
            with prune.masked(twin, twin_pruned.pruned_channels):
                twin_masked = twin(test_images)
            assert torch.allclose(twin_pruned(test_images), twin_masked, atol=1e-4)
        print("full precision: prune.apply(..., 0.5) == prune.masked(...) on all 360 test digits")
        ''',
        tags=["nbval-check-output"],
    ),
    code(
        r'''
        with torch.no_grad():
            model_pruned = prune.apply(model, l1_scores, 0.5)
            with prune.masked(model, model_pruned.pruned_channels):
                masked_logits = model(test_images)
            pruned_logits = model_pruned(test_images)
        kept_in = model_pruned.pruned_channels["features.stem.conv"]
        kept_out = model_pruned.pruned_channels["features.block2.conv"]
        codes_before, gamma_before = quant.quantization_codes(block2.conv.weight, BITS, "mean")       # dense layer
        codes_after, gamma_after = quant.quantization_codes(model_pruned.features.block2.conv.weight, BITS, "mean")
        moved = (codes_before[kept_out][:, kept_in] != codes_after).float().mean().item()
        gamma_change = (gamma_after / gamma_before[kept_out]).flatten()
        agree = (pruned_logits.argmax(1) == masked_logits.argmax(1)).float().mean().item()
        print(f"4-bit model, block2 after pruning: gamma changed by a factor {gamma_change.min():.3f} to "
              f"{gamma_change.max():.3f};\n{100 * moved:.1f} % of the kept weights moved to another quantization "
              f"level;\nthe pruned and the masked network predict the same class for {100 * agree:.1f} % of the "
              "test digits")
        glue("ch05_gamma_min", float(gamma_change.min()), display=False)
        glue("ch05_gamma_max", float(gamma_change.max()), display=False)
        glue("ch05_moved", 100 * moved, display=False)
        glue("ch05_agree", 100 * agree, display=False)
        '''
    ),
    md(
        r"""
        In the quantized model, `block2`'s $\gamma$ changed by a factor between {glue:text}`ch05_gamma_min:.3f` and
        {glue:text}`ch05_gamma_max:.3f`, {glue:text}`ch05_moved:.1f` % of its kept weights moved to a neighbouring
        level, and the pruned network predicts the same class as the masked one for {glue:text}`ch05_agree:.1f` % of
        the test digits. (Both are poor networks at this point, as section 6 shows: neither has been fine-tuned.) This
        is not an error: the pruned model is a valid 4-bit network in its own right, with every kernel rescaled
        slightly, and the fine-tuning that always follows pruning absorbs the difference.

        ## 4. Scoring channels: the criteria

        A criterion gives every output channel of every prunable layer a number; the channels with the **lowest**
        scores are removed. In `qpsnn_lite` every criterion sits behind one call,
        `prune.score(model, loader, criterion, batches=5)`, which returns `{layer name: Tensor[C]}`. It runs the
        batches through the model in `eval()` mode with hooks on each prunable layer's LIF and averages the criterion
        over all samples seen. The criteria of this chapter:

        - `"l1"`: the L1 norm of the kernel's weights $\|\mathbf W^{l,f}\|_1$ (Li et al. 2017), here of the quantized
          weights the forward pass uses. It needs no data;
        - `"firing_rate"`: the channel's mean firing rate, averaged over samples, time steps and positions;
        - `"random"`: uniform random numbers, the control that every real criterion has to beat;
        - `"sca"`: the paper's baseline, the **spiking channel activity** of Li et al. (2024).

        SCA scores the membrane potential rather than the spikes. For kernel $f$ of layer $l$, with the pre-reset
        membrane potential $\tilde{\mathbf U}^{l,f}[t] \in \mathbb R^{h \times w}$ of Eq. 1 (before the reset of
        Eq. 3):

        $$\mathrm{Score}_{SCA}(\mathbf W^{l,f}) = \frac{1}{BT} \sum_{b=1}^{B} \sum_{t=1}^{T}
          \big\| \tilde{\mathbf U}^{l,f}[t] \big\|_1 \tag{7}$$

        the L1 norm over the $h \times w$ map, averaged over the $B$ samples of a batch and the $T$ time steps. The
        idea: the membrane potential carries graded information even when it stays below threshold, and a channel whose
        potential stays near zero contributes little. Let us compute it by hand for `block2` on one scoring batch. A
        forward hook records the LIF's input current $X[t]$; Eq. 1-3 turn it into $\tilde U[t]$.
        """
    ),
    code(
        r'''
        layer = {l.name: l for l in layers}["features.block2.conv"]
        record = {}
        handle = layer.lif.register_forward_hook(lambda module, inputs, output: record.update(current=inputs[0],
                                                                                               spikes=output))
        score_images = next(iter(score_loader))[0]                   # one scoring batch: 128 training digits
        with torch.no_grad():
            model(score_images)
        handle.remove()
        current = record["current"]                                  # X[t] = BN(conv(S[t])): [T, B, C, H, W]

        lif = layer.lif                                              # tau = 0.5, threshold = 1, hard reset
        u = torch.zeros_like(current[0])
        membrane, spikes = [], []
        for t in range(current.shape[0]):
            u_tilde = lif.tau * u + current[t]                       # Eq. 1: charge
            s = (u_tilde >= lif.threshold).float()                   # Eq. 2: fire
            u = u_tilde * (1 - s)                                    # Eq. 3: hard reset
            membrane.append(u_tilde)
            spikes.append(s)
        membrane, spikes = torch.stack(membrane), torch.stack(spikes)
        assert torch.equal(spikes, record["spikes"])                 # the network's LIF fired the same spikes

        sca_by_hand = membrane.abs().sum(dim=(-2, -1)).mean(dim=(0, 1))          # Eq. 7: [C]
        assert torch.allclose(sca_by_hand.double(), prune.sca_score(membrane))
        assert torch.allclose(sca_by_hand.double(),
                              prune.score(model, [(score_images, None)], "sca", batches=1)[layer.name])
        order = sca_by_hand.argsort(descending=True)
        print(f"SCA of block2's {len(order)} channels (Eq. 7) by hand == prune.sca_score == prune.score(..., 'sca')")
        print("highest:", ", ".join(f"ch {int(c)}: {sca_by_hand[c]:.1f}" for c in order[:3]))
        print("lowest: ", ", ".join(f"ch {int(c)}: {sca_by_hand[c]:.1f}" for c in order[-3:]))
        '''
    ),
    code(
        r'''
        fig = plt.figure(figsize=(11, 4.2), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[1, 2.4])
        ax = left.subplots()
        ax.bar(range(len(order)), sca_by_hand[order], color=color("sca"))
        ax.set_xlabel("block2 channels, by SCA")
        ax.set_ylabel("SCA (Eq. 7), one batch")
        ax.set_title("every channel scores alike", fontsize=9)
        axes = right.subplots(2, T, sharex=True, sharey=True)
        limit = float(membrane[:, 0, [order[0], order[-1]]].abs().max())
        for row, (label, channel) in enumerate((("highest SCA", order[0]), ("lowest SCA", order[-1]))):
            for t in range(T):
                ax = axes[row, t]
                image = ax.imshow(membrane[t, 0, channel], cmap="RdBu_r", vmin=-limit, vmax=limit)
                ys, xs = torch.nonzero(spikes[t, 0, channel], as_tuple=True)
                ax.scatter(xs, ys, s=6, c="k", marker="s", label="spike" if t == 0 else None)
                ax.set_title(f"t = {t + 1}", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel(f"{label}\nchannel {int(channel)}", fontsize=9)
        right.colorbar(image, ax=axes, shrink=0.8, label=r"pre-reset potential $\tilde U[t]$")
        axes[0, 0].legend(loc="lower left", fontsize=7, handletextpad=0.2)
        right.suptitle("one digit: the potentials of the highest- and the lowest-scoring channel", fontsize=9)
        fig.suptitle(f"SCA of block2's channels spans only {sca_by_hand.min():.0f} to {sca_by_hand.max():.0f}: "
                     "BatchNorm gives every channel's current a similar scale", fontsize=10)
        plt.show()
        sca_spread = float(sca_by_hand.std() / sca_by_hand.mean())
        glue("ch05_sca_min", float(sca_by_hand.min()), display=False)
        glue("ch05_sca_max", float(sca_by_hand.max()), display=False)
        glue("ch05_sca_spread", 100 * sca_spread, display=False)
        glue("ch05_sca_per_position", float(sca_by_hand.mean()) / (16 * 16), display=False)
        '''
    ),
    md(
        r"""
        Black squares mark spikes. The surprise is on the left: in our trained network SCA hardly separates the
        channels of `block2`. Its scores span only {glue:text}`ch05_sca_min:.0f` to {glue:text}`ch05_sca_max:.0f`
        (a standard deviation of {glue:text}`ch05_sca_spread:.1f` % of the mean), and the two channels on the right,
        the highest- and the lowest-scoring one, look much alike. The reason is the BatchNorm in front of every LIF
        layer: it normalises each channel's input current to a similar scale, so every channel's potential moves by
        about {glue:text}`ch05_sca_per_position:.1f` per position on average, and SCA's differences between channels
        come only from what BatchNorm's learned $\gamma, \beta$ and the LIF dynamics add on top. Note also that SCA
        counts both signs alike: the blue regions, where a digit firmly *silences* a channel, raise its score as much as
        the red ones where it fires. Scores that differ this little are easily reordered by noise, which brings us to
        the paper's criticism.

        ## 5. Does the score depend on the batch?

        Scores are computed on a few mini-batches, so they are estimates: another batch gives somewhat different
        numbers. What matters for pruning is whether it gives a different *ranking*, above all near the cut, where a
        small change decides whether a channel lives or dies. The paper argues (its Fig. 3) that SCA scores vary
        strongly from batch to batch, and it measures the variation with the average cosine similarity between the
        score vectors of every pair of batches $i < j$, for each layer (App. F):

        $$\mathrm{AvgCosS} = \frac{2}{N_B (N_B - 1)} \sum_{i < j} \cos\big(\mathrm{Score}_i, \mathrm{Score}_j\big)
          \tag{15}$$

        $\mathrm{AvgCosS} = 1$ means every batch gives proportional score vectors. `prune.score_per_batch` returns one
        score vector per batch, and `prune.avg_cos_similarity` computes Eq. 15. The heatmaps show SCA on our model for
        three of the five scoring batches, one row per layer and one column per channel, each score shown as its
        deviation from its layer's mean, in per cent, so that the four layers share one colour scale; the last panel
        shows how much each channel's score varies across the five batches.
        """
    ),
    code(
        SHORT,
        r'''
        score_loader.generator.manual_seed(0)           # the same 5 scoring batches in chapters 05 and 06
        sca_batches = prune.score_per_batch(model, score_loader, "sca", batches=SCORE_BATCHES)   # {layer: [5, C]}
        names = list(sca_batches)
        width = max(rows.shape[1] for rows in sca_batches.values())


        def layer_grid(values):
            """One row per layer, padded with NaN to the widest layer."""
            grid = np.full((len(values), width), np.nan)
            for i, row in enumerate(values):
                grid[i, :len(row)] = row
            return grid


        deviation = {name: 100 * (rows / rows.mean(1, keepdim=True) - 1) for name, rows in sca_batches.items()}
        spread = layer_grid([100 * (rows.std(0) / rows.mean(0)).numpy() for rows in sca_batches.values()])
        limit = float(np.ceil(max(float(d.abs().max()) for d in deviation.values())))
        glue("ch05_dev_max", limit, display=False)
        fig, axes = plt.subplots(1, 4, figsize=(11, 3.2), sharey=True, layout="constrained")
        for b in range(3):
            grid = layer_grid([deviation[name][b].numpy() for name in names])
            image = axes[b].imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            axes[b].set_title(f"batch {b + 1}", fontsize=9)
            axes[b].set_xlabel("channel")
        fig.colorbar(image, ax=axes[:3], location="bottom", shrink=0.5, aspect=40, label="SCA vs layer mean (%)")
        image = axes[3].imshow(spread, aspect="auto", cmap="magma", vmin=0, interpolation="nearest")
        fig.colorbar(image, ax=axes[3], label="std over 5 batches (%)")
        axes[3].set_title("batch-to-batch spread", fontsize=9)
        axes[3].set_xlabel("channel")
        axes[0].set_yticks(range(len(names)), [short(name) for name in names])
        fig.suptitle("SCA per batch (Eq. 7), each channel relative to its layer's mean: the pattern repeats, "
                     "but channels differ by only a few times the batch-to-batch spread", fontsize=10)
        plt.show()
        '''
    ),
    md(
        r"""
        On our model the three heatmaps look alike: the same channels are red or blue in every batch. But the colour
        scale is narrow: no channel differs from its layer's mean by more than {glue:text}`ch05_dev_max:.0f` %, and the spread
        panel shows that a channel's score moves by a few per cent from batch to batch. Is that "stable"? Eq. 15 says
        yes, emphatically, but Eq. 15 has a weakness that is worth knowing before reading any table of it. All our
        scores are positive and of similar size, so two score vectors point in nearly the same direction *even if they
        disagree completely about which channel is best*. To see how much of AvgCosS comes for free, we also compute it
        after shuffling the channels of every batch independently (no agreement at all). Two measures that do not
        suffer from this are the mean Pearson correlation between batches (Eq. 15 after subtracting each vector's
        mean), and the question pruning actually asks: **at a ratio of 0.5, which share of the kept channels do two
        batches agree on?**
        """
    ),
    code(
        AGREEMENT,
        r'''
        print("layer    channels   AvgCosS (Eq. 15)   ... shuffled   correlation   kept channels agreed"
              "   channel spread / batch noise")
        stability = {}
        for name, rows in sca_batches.items():
            signal_to_noise = float(rows.mean(0).std() / rows.std(0).mean())
            stability[name] = (prune.avg_cos_similarity(rows), shuffled_cosine(rows), mean_correlation(rows),
                               keep_agreement(rows), signal_to_noise)
            print(f"{short(name):8s} {rows.shape[1]:8d}   {stability[name][0]:16.4f}   {stability[name][1]:12.4f}"
                  f"   {stability[name][2]:11.3f}   {100 * stability[name][3]:16.1f} %   {signal_to_noise:16.1f}")
        print("(kept channels agreed: at r = 0.5, mean over the 10 pairs of batches)")
        pruned_layers = names[:-1]                                   # the last conv is never pruned
        glue("ch05_sca_cos_min", min(stability[n][0] for n in names), display=False)
        glue("ch05_sca_shuffled_min", min(stability[n][1] for n in names), display=False)
        glue("ch05_sca_agree_min", 100 * min(stability[n][3] for n in pruned_layers), display=False)
        glue("ch05_sca_agree_max", 100 * max(stability[n][3] for n in pruned_layers), display=False)
        glue("ch05_sca_snr_min", min(stability[n][4] for n in pruned_layers), display=False)
        glue("ch05_sca_snr_max", max(stability[n][4] for n in pruned_layers), display=False)
        '''
    ),
    md(
        r"""
        Every layer's AvgCosS is at least {glue:text}`ch05_sca_cos_min:.4f`, but even the *shuffled* scores reach
        {glue:text}`ch05_sca_shuffled_min:.3f`: on score vectors like these, Eq. 15 can only move in its third or
        fourth decimal. The agreement of the keep-sets is more telling. In the three layers that are pruned, two
        batches agree on {glue:text}`ch05_sca_agree_min:.0f` % to {glue:text}`ch05_sca_agree_max:.0f` % of the
        channels to keep: the rest of the decisions change with the batch. The last column says why: the spread of
        the scores *between* channels is only {glue:text}`ch05_sca_snr_min:.0f` to {glue:text}`ch05_sca_snr_max:.0f`
        times the batch-to-batch noise of a single channel's score, so the channels near the cut trade places. That
        is the instability the paper criticises. On our small, unaugmented digits AvgCosS cannot show it (the paper's
        App. F reports a minimum AvgCosS of 0.870 for SCA on ResNet20 and CIFAR-100, scored on augmented CIFAR
        batches); chapter 06 puts SCA next to SVS on all four measures.

        ## 6. Accuracy against prune ratio

        Now the experiment that matters: prune the trained network with each criterion and see what survives. We use
        one **uniform ratio** $r$ for every prunable layer except the last conv (the paper sets the ratios of each
        layer by hand, its Tables 9-11; a uniform ratio keeps the comparison simple). A layer with $n$ channels keeps
        $\lfloor n(1 - r) \rfloor$ of them. This table shows what each ratio leaves and the model size by Eq. 16:
        """
    ),
    code(
        r'''
        RATIOS = [0.25, 0.5, 0.75, 0.9]
        random_scores = prune.score(model, None, "random")
        print("ratio   " + "".join(f"{short(n):>8s}" for n in names) + "   parameters   size (kB)   vs dense")
        print(f"{0:5.2f}   " + "".join(f"{l.channels:8d}" for l in layers)
              + f"   {metrics.count_parameters(model):10,d}   {dense_kb:9.1f}   {100:7.1f} %")
        sizes_kb = {0.0: dense_kb}
        for ratio in RATIOS:
            shape = prune.apply(model, random_scores, ratio)          # any scores give the same widths
            sizes_kb[ratio] = 1e3 * metrics.model_size_mb(shape, BITS)
            print(f"{ratio:5.2f}   " + "".join(f"{len(shape.pruned_channels[n]):8d}" for n in names)
                  + f"   {metrics.count_parameters(shape):10,d}   {sizes_kb[ratio]:9.1f}   "
                  f"{100 * sizes_kb[ratio] / dense_kb:7.1f} %")
        glue("ch05_size_05", 100 * sizes_kb[0.5] / dense_kb, display=False)
        glue("ch05_size_09", 100 * sizes_kb[0.9] / dense_kb, display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Because a middle layer loses both output and input channels, its weights shrink by about $(1 - r)^2$: at
        $r = 0.5$ the model keeps {glue:text}`ch05_size_05:.0f` % of its size, at $r = 0.9$ only
        {glue:text}`ch05_size_09:.0f` % (the unpruned last conv and the full-precision parts set a floor). At 0.9 the
        stem keeps a single channel: the whole network then sees the digit through one feature map.

        For every criterion we score once (5 batches of 128), then for every ratio we prune and measure the test
        accuracy in three stages, one after the other:

        1. **one-shot**: straight after `prune.apply`;
        2. **+ BN recalibration**: after re-estimating the BatchNorm running statistics on 3 training batches,
           forward passes only, no gradient step (the "adaptive BN" of Li et al. 2020). This separates two effects:
           the network lost information, and the network's statistics no longer fit;
        3. **+ fine-tune**: after one epoch of quantization-aware training (Adam, learning rate $10^{-3}$). The paper
           fine-tunes for 150 epochs; one epoch is a *very* short fine-tune.

        Every criterion scores the same five batches and every fine-tune sees the same sequence of mini-batches (we
        reset the loaders' random generators), so the criteria are compared on equal terms.
        """
    ),
    code(
        RECALIBRATE,
        r'''
        CRITERIA = ["l1", "firing_rate", "random", "sca"]
        STAGES = ["one-shot", "+ BN recalibration", "+ fine-tune"]
        results = {}                                    # (criterion, ratio) -> [accuracy after each stage]
        rates = {}                                      # firing rates of one example, for the next cell
        tic = time.perf_counter()
        for criterion in CRITERIA:
            score_loader.generator.manual_seed(0)         # every criterion scores the same 5 batches
            scores = prune.score(model, score_loader, criterion, batches=SCORE_BATCHES)
            for ratio in RATIOS:
                net = prune.apply(model, scores, ratio)
                accuracy = [train.evaluate(net, test_loader)[0]]
                if (criterion, ratio) == ("sca", 0.5):
                    rates["one-shot"] = metrics.firing_rates(net, test_loader, batches=1)
                recalibrate_bn(net, score_loader)
                accuracy.append(train.evaluate(net, test_loader)[0])
                if (criterion, ratio) == ("sca", 0.5):
                    rates["+ BN recalibration"] = metrics.firing_rates(net, test_loader, batches=1)
                train_loader.generator.manual_seed(0)     # the same batch order for every fine-tune
                train.fit(net, train_loader, epochs=FINE_TUNE_EPOCHS, lr=FINE_TUNE_LR, seed=0, progress=False)
                accuracy.append(train.evaluate(net, test_loader)[0])
                results[criterion, ratio] = accuracy
        grid_seconds = time.perf_counter() - tic

        print(f"test accuracy (%); dense model {100 * dense_accuracy:.1f} %; one seed\n")
        print("criterion      stage                 " + "".join(f"r = {r:<6}" for r in RATIOS))
        for criterion in CRITERIA:
            for s, stage in enumerate(STAGES):
                print(f"{criterion if s == 0 else '':14s} {stage:20s}"
                      + "".join(f"{100 * results[criterion, r][s]:9.1f}" for r in RATIOS))
        print(f"\n{len(CRITERIA)} criteria x {len(RATIOS)} ratios scored, pruned, recalibrated and fine-tuned "
              f"in {grid_seconds:.0f} s")
        glue("ch05_grid_seconds", grid_seconds, display=False)
        '''
    ),
    code(
        r'''
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
        for s, ax in enumerate(axes):
            ax.axhline(100 * dense_accuracy, color="0.3", ls="--", lw=1, label="dense")
            ax.axhline(10, color="0.6", ls=":", lw=1, label="chance")
            for criterion in CRITERIA:
                ax.plot([0] + RATIOS, [100 * dense_accuracy] + [100 * results[criterion, r][s] for r in RATIOS],
                        marker="o", ms=4, lw=1.8, color=color(criterion), label=criterion)
            ax.set_title(STAGES[s], fontsize=10)
            ax.set_xlabel("prune ratio $r$ (every layer but the last)")
        axes[0].set_ylabel("test accuracy (%)")
        axes[0].set_ylim(0, 100)
        axes[2].legend(fontsize=8, loc="lower left")
        one_shot_best = max(results[c, RATIOS[0]][0] for c in CRITERIA)
        fig.suptitle(f"One-shot pruning: at most {100 * one_shot_best:.0f} % already at r = {RATIOS[0]}; "
                     "recalibrating BatchNorm restores much, one epoch of fine-tuning more (one seed)", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        **What happened in the one-shot column?** Already at $r = 0.25$ no criterion keeps more than
        {glue:text}`ch05_oneshot_025_max:.0f` % accuracy, and beyond that the network is close to chance. The recalibration column shows that a large part of this is
        not lost information but *stale statistics*: each BatchNorm after a pruned layer still normalises with the
        running mean and variance of the dense network, but its conv now sums over fewer input channels. In a spiking
        network this is harsh, because every neuron compares its input current with a fixed threshold $\theta$: a
        current that is too small or too large changes *which* neurons fire, and the error cascades through the
        layers. The firing rates of one example (SCA at $r = 0.5$) show it:
        """
    ),
    code(
        r'''
        rates["dense"] = metrics.firing_rates(model, test_loader, batches=1)
        print("mean firing rate      " + "".join(f"{short(name):>9s}" for name in rates["dense"]))
        for stage in ("dense", "one-shot", "+ BN recalibration"):
            print(f"{stage:20s}  " + "".join(f"{rate:9.3f}" for rate in rates[stage].values()))
        deepest = list(rates["dense"])[2]                          # block3, the last pruned layer
        glue("ch05_rate_dense", rates["dense"][deepest], display=False)
        glue("ch05_rate_oneshot", rates["one-shot"][deepest], display=False)
        glue("ch05_rate_recal", rates["+ BN recalibration"][deepest], display=False)
        '''
    ),
    code(
        r'''
        def best(stage, ratio):
            """The criterion with the highest accuracy at a stage and ratio, with its margin over the runner-up."""
            ranked = sorted(CRITERIA, key=lambda c: -results[c, ratio][stage])
            return ranked[0], 100 * (results[ranked[0], ratio][stage] - results[ranked[1], ratio][stage])


        for s, stage in enumerate(STAGES[1:], start=1):
            for ratio in RATIOS:
                winner, margin = best(s, ratio)
                print(f"{stage:20s} r = {ratio:<5}: best {winner:12s} " + (f"by {margin:4.1f} points over the next"
                                                                          if margin > 0 else "(tied)"))
        ordinal = {1: "first", 2: "second", 3: "third", 4: "fourth"}
        sca_places = [1 + sum(results[c, r][2] > results["sca", r][2] for c in CRITERIA) for r in RATIOS]
        glue("ch05_sca_places", ", ".join(ordinal[p] for p in sca_places), display=False)
        glue("ch05_sca_verdict", "comes out on top at every ratio here, though by margins one seed cannot confirm"
             if all(p == 1 for p in sca_places) else "is not consistently better than the simpler criteria here",
             display=False)
        glue("ch05_oneshot_025_max", 100 * max(results[c, 0.25][0] for c in CRITERIA), display=False)
        recal_05 = {c: 100 * results[c, 0.5][1] for c in CRITERIA}
        tuned = {c: [100 * results[c, r][2] for r in RATIOS] for c in CRITERIA}
        glue("ch05_best_recal_05", best(1, 0.5)[0], display=False)
        glue("ch05_best_recal_05_acc", recal_05[best(1, 0.5)[0]], display=False)
        glue("ch05_random_recal_05", recal_05["random"], display=False)
        glue("ch05_sca_recal_05", recal_05["sca"], display=False)
        glue("ch05_tuned_05_min", min(t[1] for t in tuned.values()), display=False)
        glue("ch05_tuned_05_max", max(t[1] for t in tuned.values()), display=False)
        glue("ch05_tuned_09_min", min(t[3] for t in tuned.values()), display=False)
        glue("ch05_tuned_09_max", max(t[3] for t in tuned.values()), display=False)
        glue("ch05_sca_tuned_05", tuned["sca"][1], display=False)
        glue("ch05_random_tuned_05", tuned["random"][1], display=False)
        '''
    ),
    md(
        r"""
        In `block3` the firing rate goes from {glue:text}`ch05_rate_dense:.3f` (dense) to
        {glue:text}`ch05_rate_oneshot:.3f` after one-shot pruning and back to {glue:text}`ch05_rate_recal:.3f` after
        recalibration: a few forward passes put the currents back into the range where the thresholds make sense.

        **After recalibration** the criteria separate. At $r = 0.5$ the best is {glue:text}`ch05_best_recal_05`
        ({glue:text}`ch05_best_recal_05_acc:.1f` %); SCA reaches {glue:text}`ch05_sca_recal_05:.1f` % and random
        scores {glue:text}`ch05_random_recal_05:.1f` %. This column is the closest we get to the question "which
        channels carry the information?", because no weight has been retrained yet.

        **After one epoch of fine-tuning** the picture compresses. At $r = 0.5$ all four criteria lie between
        {glue:text}`ch05_tuned_05_min:.1f` % and {glue:text}`ch05_tuned_05_max:.1f` % (SCA
        {glue:text}`ch05_sca_tuned_05:.1f` %, random {glue:text}`ch05_random_tuned_05:.1f` %), and at $r = 0.9$,
        where the stem keeps one channel, between {glue:text}`ch05_tuned_09_min:.1f` % and
        {glue:text}`ch05_tuned_09_max:.1f` %. Three lessons, all well known from pruning ANNs:

        - **Fine-tuning forgives a lot.** A pruned network is still a good initialisation whichever channels were
          kept, so the criterion matters less the longer one fine-tunes (Liu et al. 2019 even found that training the
          pruned *architecture* from scratch often does as well). The criterion matters most when the budget for
          fine-tuning is small and the ratio high.
        - **Random is a strong baseline** at moderate ratios. Any claim that a criterion helps has to beat it by more
          than the noise.
        - **One seed is not enough** to rank criteria whose curves lie within a few points of each other: one test
          image is 0.28 points, and the fine-tune alone moves results by a point or two (chapter 06 measures this
          over three seeds).

        The paper's own baseline, SCA, {glue:text}`ch05_sca_verdict`: after fine-tuning it places
        {glue:text}`ch05_sca_places` of four at the ratios 0.25, 0.5, 0.75 and 0.9 (ties share a place). Chapter 06
        brings a criterion built on a different idea, the *rank* of the spike maps, and three seeds to compare them.

        ## Exercises

        **1. Counting what pruning saves.** With a uniform ratio $r$, a middle conv loses output *and* input
        channels. Predict the share of the quantized conv weights that survives at $r = 0.5$ in our network (careful
        with the stem, which is not quantized, and the last conv, which keeps its outputs), then check with
        `metrics.connection_percent(pruned, model)`.

        ```{dropdown} Solution
        The quantized convs are `block2` (16 -> 32 channels), `block3` (32 -> 64) and `block4` (64 -> 64), with
        $3 \times 3$ kernels. At $r = 0.5$ they become 8 -> 16, 16 -> 32 and 32 -> 64: `block2` and `block3` keep a
        quarter of their weights, `block4` half (it keeps its outputs). That is
        $(8 \cdot 16 + 16 \cdot 32 + 32 \cdot 64) / (16 \cdot 32 + 32 \cdot 64 + 64 \cdot 64) = 2688 / 6656 \approx
        40.4\,\%$. The cell below checks it.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 1
        half = prune.apply(model, random_scores, 0.5)
        predicted = 100 * (8 * 16 + 16 * 32 + 32 * 64) / (16 * 32 + 32 * 64 + 64 * 64)
        measured = metrics.connection_percent(half, model)
        assert abs(predicted - measured) < 1e-9
        print(f"quantized conv weights kept at r = 0.5: predicted {predicted:.2f} %, measured {measured:.2f} %")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **2. A criterion of your own.** Register an `"l2"` criterion, the L2 norm of each kernel, with
        `prune.register_criterion("l2", needs_data=False)` (the function receives a `prune.LayerActivity` whose
        `layer.conv` is the conv). At $r = 0.5$, how many of the channels it keeps does `"l1"` keep too?

        ```{dropdown} Solution
        The function returns one number per output channel, computed from the weight the forward pass uses. L1 and
        L2 norms of the same kernels are strongly correlated, so the two criteria keep almost the same channels; they
        differ only where two kernels have similar norms. The cell below counts the overlap per layer.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        @prune.register_criterion("l2", needs_data=False, description="L2 norm of the kernel weights")
        def l2_norm(activity):
            conv = activity.layer.conv
            weight = conv.quantized_weight() if hasattr(conv, "quantized_weight") else conv.weight.detach()
            return weight.double().pow(2).sum((1, 2, 3)).sqrt()


        kept_l1 = prune.apply(model, prune.score(model, None, "l1"), 0.5).pruned_channels
        kept_l2 = prune.apply(model, prune.score(model, None, "l2"), 0.5).pruned_channels
        for name in pruned_layers:
            same = len(set(kept_l1[name].tolist()) & set(kept_l2[name].tolist()))
            print(f"{short(name)}: l1 and l2 agree on {same} of {len(kept_l1[name])} kept channels")
        '''
    ),
    md(
        r"""
        **3. Batch size and stability.** The SCA of a batch is an average over its samples, so larger batches should
        agree better. Predict how the keep-set agreement of `block3` at $r = 0.5$ changes when the scoring batches
        hold 16 instead of 128 digits, then measure it.

        ```{dropdown} Solution
        Each batch's score is a mean over $B$ samples, so its noise shrinks roughly like $1/\sqrt{B}$: batches of 16
        are noisier, and two of them disagree on more of the channels to keep. That is one reason why the paper's
        scores (batches of 128 drawn *with* training augmentation, on much harder data) can vary more than ours, and
        why scoring on more data is the simplest way to stabilise any data-based criterion.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        for batch_size in (16, 128):
            loader, _ = data.load("digits", batch_size=batch_size, image_size=16, seed=1)
            rows = prune.score_per_batch(model, loader, "sca", batches=5)["features.block3.conv"]
            print(f"batches of {batch_size:3d}: block3 keep-set agreement at r = 0.5: {100 * keep_agreement(rows):.1f} %,"
                  f" AvgCosS {prune.avg_cos_similarity(rows):.4f}")
        '''
    ),
    md(
        r"""
        **4. Why not the last conv?** Prune our model with `prune.apply(model, scores, 0.5, last_conv=True)`. What
        happens to the classifier, and why does the paper leave the last conv alone?

        ```{dropdown} Solution
        The last conv's channels are, after global average pooling, the classifier's inputs: removing half of them
        removes half of the classifier's columns (`pruned.classifier.in_features` drops from 64 to 32). Every class
        decision is read from these features, and the classifier is small anyway (it is kept at full precision for the
        same reason), so there is little to gain and much to lose. The paper never prunes the last conv; `prune.apply`
        refuses to unless asked.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 4
        whole = prune.apply(model, random_scores, 0.5, last_conv=True)
        print(f"classifier inputs: {model.classifier.in_features} -> {whole.classifier.in_features}")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        ## Summary

        - QP-SNN prunes **whole channels**: a narrower conv is a smaller dense conv, faster and smaller on any
          hardware. Zeros scattered through a dense conv cost as much time as any weight, and with 4-bit weights even
          their positions cost more memory than they save.
        - Removing channel $f$ of layer $l$ slices the conv's kernels (and bias), the BatchNorm's $\gamma, \beta,
          \mu, \sigma^2$, and the next conv's input channels. The result computes exactly what the masked network
          computes; for a quantized layer, ReScaW's $\gamma$ is recomputed from the remaining weights, a change
          that fine-tuning absorbs. `prune.apply` does all of it; `prune.masked` gives the masked form.
        - Criteria score channels on a few batches: the L1 norm of the weights, the firing rate, random, and the
          paper's baseline, **SCA** (Eq. 7): the L1 norm of the pre-reset membrane map, averaged over samples and
          time.
        - Scores change from batch to batch. The paper's AvgCosS (Eq. 15) is close to 1 for *any* positive score
          vectors; the share of keep decisions on which two batches agree shows the instability more directly.
        - One-shot pruning of a spiking network breaks its BatchNorm statistics and with them its firing; a few
          forward passes to recalibrate BatchNorm (`prune.recalibrate_bn(net, loader)` in the package) restore much
          of the accuracy, and fine-tuning more. After
          fine-tuning the criteria lie close together, with random a strong baseline.

        Chapter 06 introduces the paper's criterion, SVS, and compares all five over three seeds.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905) (Sec. 3 and 4.2, Eq. 7 and 15, Fig. 3, Algorithm 1,
          App. F and G for this chapter).
        - Y. Li, Q. Xu, J. Shen, H. Xu, L. Chen, G. Pan. *Towards efficient deep spiking neural networks construction
          with spiking activity based pruning.* ICML 2024. [arXiv:2406.01072](https://arxiv.org/abs/2406.01072)
          (the SCA criterion).
        - H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf. *Pruning filters for efficient ConvNets.* ICLR 2017.
          [arXiv:1608.08710](https://arxiv.org/abs/1608.08710) (structured pruning by the L1 norm of kernels).
        - S. Han, J. Pool, J. Tran, W. J. Dally. *Learning both weights and connections for efficient neural
          networks.* NeurIPS 2015. [arXiv:1506.02626](https://arxiv.org/abs/1506.02626) (unstructured pruning).
        - B. Li, B. Wu, J. Su, G. Wang, L. Lin. *EagleEye: Fast sub-net evaluation for efficient neural network
          pruning.* ECCV 2020. [arXiv:2007.02491](https://arxiv.org/abs/2007.02491) (recalibrating BatchNorm after
          pruning).
        - Z. Liu, M. Sun, T. Zhou, G. Huang, T. Darrell. *Rethinking the value of network pruning.* ICLR 2019.
          [arXiv:1810.05270](https://arxiv.org/abs/1810.05270).
        - T. Hoefler, D. Alistarh, T. Ben-Nun, N. Dryden, A. Peste. *Sparsity in deep learning: pruning and growth for
          efficient inference and training in neural networks.* JMLR 2021.
          [arXiv:2102.00554](https://arxiv.org/abs/2102.00554) (a survey, including what sparsity costs on hardware).
        """
    ),
    code(
        r'''
        print(f"chapter executed in {time.perf_counter() - CHAPTER_START:.0f} s")
        '''
    ),
]

# ======================================================================================================================
# Chapter 06 · SVS
# ======================================================================================================================
CH06 = [
    md(
        r"""
        # 06 · SVS: scoring channels by the rank of their spike maps

        Chapter 05 built structured pruning and the criterion QP-SNN starts from, SCA, and found two weaknesses: its
        scores hardly differ between channels, and the channels near the cut trade places from one mini-batch to the
        next. The paper's answer is its **singular value-based spiking activity** criterion (SVS, Sec. 4.2, Eq. 11-13).
        It looks at what a channel *outputs*: for every sample it takes the channel's spike map, averages it over time,
        and counts how many singular values of that map are not negligible, its $\epsilon$-rank. A channel whose maps
        have many significant singular values produces rich, varied spatial patterns; a silent channel (rank 0), or one
        that fires in a uniform block or a stripe (rank 1), produces little that the next layer could not get
        elsewhere. And a count, the paper argues, changes less from batch to batch than a sum of potentials.

        **Learning goals.** After this chapter you can

        - compute a time-averaged spike map, its singular value decomposition and its $\epsilon$-rank by hand
          (Eq. 11-13), and check the batched version `prune.svs_score` against it;
        - recognise high- and low-rank spike maps, and compare the singular-value spectra of kept and pruned channels;
        - test the paper's stability claim: AvgCosS (Eq. 15) of SVS against SCA on our model, next to the paper's own
          table (App. F), and with measures that see what Eq. 15 cannot;
        - explain why SVS scores tie, how ties are broken, and what the map size has to do with it;
        - run a three-seed comparison of five criteria and report it honestly, including where SVS does not win.

        **Run it yourself.** BADGE On Colab the first code cell installs the `qpsnn_lite` package; anywhere else it
        does nothing. The chapter trains four small networks and fine-tunes 45 pruned ones; it runs in about two
        minutes on a laptop CPU.
        """.replace("BADGE", colab_badge("06_svs.ipynb"))
    ),
    INSTALL,
    setup_cell(
        '''
        import itertools
        import time

        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        from IPython.display import display
        from matplotlib.colors import ListedColormap
        from torch import nn

        from qpsnn_lite import data, metrics, models, plots, prune, train, widgets
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 1. The spike map of one channel, and its singular values

        We prune the same network as chapter 05: the digits CNN with 4-bit ReScaW weights, trained for three epochs on
        the digits upsampled to 16 x 16 (seed 0). Then we run one scoring batch of 128 training digits through it and
        record the output spikes $\mathbf S^{l}[t] \in \{0, 1\}^{c_l \times h \times w}$ of every prunable layer, with
        a forward hook on its LIF layer.
        """
    ),
    code(
        RECIPE,
        SHORT,
        r'''
        train_loader, _ = data.load("digits", batch_size=BATCH, image_size=16, seed=0)
        score_loader, test_loader = data.load("digits", batch_size=128, image_size=16, seed=0)
        torch.manual_seed(0)
        model = models.build("digits_cnn", num_classes=10, bits=BITS, gamma="mean")
        tic = time.perf_counter()
        train.fit(model, train_loader, epochs=EPOCHS, lr=LR, seed=0, progress=False)
        dense_accuracy = train.evaluate(model, test_loader)[0]
        print(f"4-bit digits CNN (seed 0): test accuracy {100 * dense_accuracy:.1f} %, "
              f"trained in {time.perf_counter() - tic:.0f} s")

        layers = prune.prunable_layers(model)
        names = [layer.name for layer in layers]
        recorded = {}
        hooks = [layer.lif.register_forward_hook(
                     lambda module, inputs, output, name=layer.name: recorded.__setitem__(name, output))
                 for layer in layers]
        score_images = next(iter(score_loader))[0]
        with torch.no_grad():
            model.eval()
            model(score_images)
        for hook in hooks:
            hook.remove()
        for name, s in recorded.items():
            print(f"{short(name):7s} spikes {tuple(s.shape)}  [T, B, C, H, W]")
        '''
    ),
    md(
        r"""
        Take one sample and one channel $f$ of layer `block2`. Averaging its spikes over the $T$ time steps gives an
        $h \times w$ map of firing rates, with entries in $\{0, \frac1T, \dots, 1\}$, and like every real matrix it
        has a singular value decomposition:

        $$\mathbf S^{l,f}_{avg} = \frac1T \sum_{t=1}^{T} \mathbf S^{l,f}[t] = \mathbf P\, \boldsymbol\Sigma_{h \times w}\,
          \mathbf Q^{\top} \tag{11}$$

        with orthogonal $\mathbf P$, $\mathbf Q$ and $\boldsymbol\Sigma = \mathrm{diag}(\sigma_1 \ge \sigma_2 \ge \dots
        \ge \sigma_{\min(h,w)} \ge 0)$. The paper splits the singular values at a small threshold $\epsilon$:

        $$\sigma_{r^*} \ge \epsilon > \sigma_{r^*+1} \tag{12}$$

        The $r^*$ values above $\epsilon$ carry the map's structure; the rest are treated as noise. The score of the
        channel is the number of significant singular values, averaged over the samples of the batch:

        $$\mathrm{Score}(\mathbf W^{l,f}) = \mathbb E_{B}\Big[\sum_{i=1}^{\min(h,w)} \mathbb I(\sigma_i > \epsilon)\Big]
          \tag{13}$$

        It is a *count*, the $\epsilon$-rank: not a sum of singular values, not a norm. The paper uses
        $\epsilon = 10^{-6}$. Here is one map, by hand with NumPy (we pick the channel with the median spike count for
        this digit, so that it is neither silent nor saturated):
        """
    ),
    code(
        r'''
        EPS = 1e-6                                                 # the paper's epsilon (Sec. 5.1)
        spikes = recorded["features.block2.conv"]                  # [T, B, C, 16, 16]
        T = spikes.shape[0]
        sample = 0
        counts = spikes[:, sample].sum(dim=(0, 2, 3))              # spikes per channel for this digit
        channel = int(counts.argsort()[len(counts) // 2])

        s_avg = spikes[:, sample, channel].double().mean(0).numpy()      # Eq. 11: the time-averaged map
        P, sigma, Qt = np.linalg.svd(s_avg)                              # Eq. 11: S_avg = P Sigma Q^T
        assert np.allclose(P @ np.diag(sigma) @ Qt, s_avg)
        r_star = int((sigma > EPS).sum())                                # Eq. 12-13 for one sample
        print(f"block2, sample {sample}, channel {channel}: entries {sorted(set(s_avg.flatten().tolist()))}")
        print("singular values:", " ".join(f"{v:.2g}" for v in sigma))
        print(f"epsilon-rank r* = {r_star} of {len(sigma)}")
        glue("ch06_r_star", r_star, display=False)
        glue("ch06_channel", channel, display=False)
        '''
    ),
    code(
        r'''
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3), width_ratios=[1, 1.6])
        image = ax1.imshow(s_avg, cmap="Greys", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax1, label="firing rate over T = 4 steps")
        ax1.set_title(f"$S_{{avg}}$ of block2 channel {channel}, one digit", fontsize=9)
        ax1.set_xticks([])
        ax1.set_yticks([])
        index = np.arange(1, len(sigma) + 1)
        shown = np.maximum(sigma, 1e-18)                           # exact zeros cannot be drawn on a log axis
        above = sigma > EPS
        ax2.semilogy(index[above], shown[above], "o", color=color("svs"), label=f"$\\sigma_i > \\epsilon$: {above.sum()}")
        ax2.semilogy(index[~above], shown[~above], "o", color="0.6", label="$\\sigma_i \\leq \\epsilon$ (round-off)")
        ax2.axhline(EPS, color="k", ls="--", lw=1, label="$\\epsilon = 10^{-6}$")
        ax2.set_xlabel("index $i$")
        ax2.set_ylabel("singular value $\\sigma_i$")
        ax2.set_ylim(1e-18, 30)
        ax2.legend(fontsize=8, loc="lower left")
        ax2.set_title(f"Eq. 12: {r_star} singular values above $\\epsilon$, the rest at round-off level", fontsize=9)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        This map has $\epsilon$-rank {glue:text}`ch06_r_star`: that many singular values stand clear of $\epsilon$,
        and the others are not small but *zero*, up to the round-off of a float64 computation (about $10^{-16}$ and
        below). A spike map is not a noisy measurement: its entries are exact multiples of $1/T$, so it either contains
        a pattern or it does not, and its rank is well defined. With $\epsilon = 10^{-6}$ in float64 the
        $\epsilon$-rank is then simply the **rank** of the map, provided no genuine singular value falls below
        $\epsilon$. Let us check that on every map of the batch, in every layer:
        """
    ),
    code(
        r'''
        largest_zero, smallest_nonzero = 0.0, float("inf")
        for name, s in recorded.items():
            values = torch.linalg.svdvals(s.double().mean(0))              # [B, C, min(h, w)]
            if (values <= EPS).any():
                largest_zero = max(largest_zero, float(values[values <= EPS].max()))
            smallest_nonzero = min(smallest_nonzero, float(values[values > EPS].min()))
        print(f"over all {sum(s.shape[1] * s.shape[2] for s in recorded.values()):,} maps of the batch: "
              f"largest singular value <= eps: {largest_zero:.1e}; smallest > eps: {smallest_nonzero:.1e}")
        glue("ch06_largest_zero", largest_zero, display=False)
        glue("ch06_smallest_nonzero", smallest_nonzero, display=False)
        glue("ch06_gap_orders", float(np.log10(smallest_nonzero / max(largest_zero, 1e-300))), display=False)
        '''
    ),
    md(
        r"""
        Below $\epsilon$ nothing is larger than {glue:text}`ch06_largest_zero:.0e`, above it nothing is smaller than
        {glue:text}`ch06_smallest_nonzero:.1e`: a gap of {glue:text}`ch06_gap_orders:.0f` orders of magnitude, and any
        $\epsilon$ inside it gives the same scores. (The authors'
        code counts with `matrix_rank` and its default *relative* tolerance instead; exercise 3 shows when that
        matters, and why the package computes in float64.)

        ## 2. All channels and samples at once

        A score needs the rank of every map: $B \times C$ matrices per layer. `prune.epsilon_rank(spikes)` computes all
        of them with one batched `torch.linalg.svdvals` call and returns the ranks as a `[B, C]` tensor;
        `prune.svs_score(spikes)` averages them over the batch (Eq. 13); `prune.score(model, loader, "svs")` does it
        for every layer with hooks. (On a CPU the batched call still decomposes one matrix after the other; it saves
        Python overhead, and on a GPU it runs them in parallel.) Maps that are entirely zero are skipped: their
        singular values are exactly zero. We check all three against a plain loop over the maps of `block2`:
        """
    ),
    code(
        r'''
        maps = spikes.double().mean(0).numpy()                               # [B, C, 16, 16]
        B, C = maps.shape[:2]
        by_hand = np.array([[int((np.linalg.svd(maps[b, c], compute_uv=False) > EPS).sum()) for c in range(C)]
                            for b in range(B)])                               # [B, C] epsilon-ranks
        ranks = prune.epsilon_rank(spikes, eps=EPS)                          # [B, C], one batched call

        assert np.array_equal(by_hand, ranks.numpy())
        assert torch.allclose(prune.svs_score(spikes), torch.from_numpy(by_hand).double().mean(0))       # Eq. 13
        assert torch.allclose(prune.svs_score(spikes),
                              prune.score(model, [(score_images, None)], "svs", batches=1)["features.block2.conv"])
        print(f"epsilon-ranks of all {B} x {C} maps of block2: the loop, prune.epsilon_rank, prune.svs_score and "
              "prune.score agree")
        '''
    ),
    md(
        r"""
        ## 3. What high and low ranks look like

        The rank of a map measures how many independent row (or column) patterns it contains. A silent map has rank 0.
        A map that fires everywhere at the same rate, or in one rectangular block, or in a set of identical rows, is an
        outer product $\mathbf u \mathbf v^\top$: rank 1, however many spikes it contains. A map shaped like a
        digit's strokes needs many patterns. Here are maps of `block2` from our batch, from the lowest rank present to
        the highest:
        """
    ),
    code(
        r'''
        present = sorted(set(ranks.flatten().tolist()))
        chosen = [present[round(i)] for i in np.linspace(0, len(present) - 1, 8)]
        fig, axes = plt.subplots(1, len(chosen), figsize=(11, 1.9))
        for ax, rank in zip(axes, chosen):
            b, c = [int(i) for i in torch.nonzero(ranks == rank)[0]]
            ax.imshow(maps[b, c], cmap="Greys", vmin=0, vmax=1)
            ax.set_title(f"rank {rank}\nrate {maps[b, c].mean():.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle("Time-averaged spike maps of block2 (16 x 16), sorted by epsilon-rank: rank counts patterns, "
                     "not spikes", fontsize=10, y=1.08)
        plt.show()
        '''
    ),
    md(
        r"""
        So SVS and the firing rate measure different things: a channel can fire a lot and still have low rank. How
        different are they on our model? We score every channel of the four layers on 5 batches of 128 (the authors'
        setting) with both criteria, and compare their rankings with the Spearman correlation (the correlation of the
        ranks; 1 means the same order).
        """
    ),
    code(
        r'''
        def spearman(a, b):
            """Spearman rank correlation of two score vectors (ties get arbitrary but distinct ranks)."""
            rank_a, rank_b = (v.argsort().argsort().double() for v in (a, b))
            return float(torch.corrcoef(torch.stack([rank_a, rank_b]))[0, 1])


        score_loader.generator.manual_seed(0)          # the same 5 scoring batches as chapter 05
        svs_scores = prune.score(model, score_loader, "svs", batches=SCORE_BATCHES)
        score_loader.generator.manual_seed(0)
        rate_scores = prune.score(model, score_loader, "firing_rate", batches=SCORE_BATCHES)

        fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
        for ax, name in zip(axes, names):
            ax.scatter(rate_scores[name], svs_scores[name], s=10, color=color("svs"))
            ax.set_title(f"{short(name)}: Spearman {spearman(svs_scores[name], rate_scores[name]):.2f}", fontsize=9)
            ax.set_xlabel("firing rate")
        axes[0].set_ylabel("SVS score (mean rank)")
        fig.suptitle("SVS against the firing rate, one point per channel", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        Rank and rate are related (a silent channel has both at zero, and more spikes allow more patterns) but they
        are not the same ranking, and the channels they disagree on are exactly the ones the criteria will prune
        differently.

        ## 4. Kept and pruned channels: their spectra

        What separates the channels SVS keeps from those it prunes? At a ratio of 0.5, `block2` and `block3` keep the
        half of their channels with the highest SVS scores. For the maps of our recorded batch, the curves show the
        median $i$-th singular value of the kept and of the pruned channels (with the band between the quartiles),
        and the histograms the $\epsilon$-ranks themselves.
        """
    ),
    code(
        r'''
        fig, axes = plt.subplots(1, 4, figsize=(11, 2.9), width_ratios=[1.2, 1, 1.2, 1])
        for (ax_spectrum, ax_ranks), name in zip(((axes[0], axes[1]), (axes[2], axes[3])),
                                                 ("features.block2.conv", "features.block3.conv")):
            s = recorded[name]
            values = torch.linalg.svdvals(s.double().mean(0)).clamp(min=1e-18)      # [B, C, k]
            layer_ranks = prune.epsilon_rank(s, eps=EPS)                            # [B, C]
            channels = s.shape[2]
            kept = torch.zeros(channels, dtype=torch.bool)
            kept[prune.keep_indices(svs_scores[name], channels // 2)] = True
            index = np.arange(1, values.shape[-1] + 1)
            for label, selection, shade in (("kept", kept, color("svs")), ("pruned", ~kept, "0.55")):
                group = values[:, selection].reshape(-1, values.shape[-1])
                low, mid, high = torch.quantile(group, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0)
                ax_spectrum.semilogy(index, mid, color=shade, lw=1.8, label=label)
                ax_spectrum.fill_between(index, low, high, color=shade, alpha=0.25, lw=0)
                ax_ranks.hist(layer_ranks[:, selection].flatten(), bins=np.arange(values.shape[-1] + 2) - 0.5,
                              color=shade, alpha=0.6, label=label)
            ax_spectrum.axhline(EPS, color="k", ls="--", lw=1)
            ax_spectrum.set_ylim(1e-18, 30)
            ax_spectrum.set_xlabel("index $i$")
            ax_spectrum.set_title(f"{short(name)}: median $\\sigma_i$", fontsize=9)
            ax_ranks.set_xlabel("epsilon-rank of a map")
            ax_ranks.set_title(f"{short(name)}: ranks", fontsize=9)
        axes[0].set_ylabel("singular value")
        axes[1].set_ylabel("maps")
        axes[0].legend(fontsize=8)
        fig.suptitle("At r = 0.5, the channels SVS keeps have more singular values above epsilon (dashed) "
                     "than those it prunes", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        The kept channels' spectra stay above $\epsilon$ for more indices before they fall to round-off, and their
        rank histograms sit further right. The two groups overlap, though: a score is an average over many samples, and
        a kept channel may well produce a low-rank map for a given digit.

        ## 5. Is SVS more stable than SCA?

        The paper's argument for SVS rests on its stability across batches (its Fig. 3 against Fig. 5b, and App. F):
        AvgCosS (Eq. 15), the mean cosine similarity between the score vectors of every pair of batches, is higher for
        SVS in every model it tests. We measure the same on our model: both criteria on the same five scoring batches
        of 128, with the three further measures of chapter 05: AvgCosS after shuffling the channels (what Eq. 15 gives
        with no agreement at all), the mean correlation between batches, and the share of the kept channels that two
        batches agree on at $r = 0.5$.
        """
    ),
    code(
        AGREEMENT,
        r'''
        per_batch = {}
        for criterion in ("sca", "svs"):
            score_loader.generator.manual_seed(0)
            per_batch[criterion] = prune.score_per_batch(model, score_loader, criterion, batches=SCORE_BATCHES)

        measures = {}                  # (criterion, layer) -> (AvgCosS, shuffled, correlation, agreement)
        for criterion, rows_by_layer in per_batch.items():
            for name, rows in rows_by_layer.items():
                measures[criterion, name] = (prune.avg_cos_similarity(rows), shuffled_cosine(rows),
                                             mean_correlation(rows), keep_agreement(rows))
        print("            AvgCosS (Eq. 15)      shuffled             correlation      kept channels agreed")
        print("layer       SCA       SVS        SCA       SVS        SCA     SVS        SCA      SVS")
        for name in names:
            a, b = measures["sca", name], measures["svs", name]
            print(f"{short(name):8s} {a[0]:8.4f}  {b[0]:8.4f}   {a[1]:8.4f}  {b[1]:8.4f}   {a[2]:7.3f} {b[2]:7.3f}"
                  f"   {100 * a[3]:6.1f} %  {100 * b[3]:5.1f} %")

        pruned_names = names[:-1]      # the last conv is scored but never pruned
        print("\nminimum AvgCosS over layers             SCA      SVS")
        for label, (sca_value, svs_value) in {"ResNet20 / CIFAR-100 (the paper)": (0.870, 0.993),
                                              "VGG-16 / TinyImageNet (the paper)": (0.879, 0.997),
                                              "VGGSNN / DVS-CIFAR10 (the paper)": (0.952, 1.000)}.items():
            print(f"{label:38s} {sca_value:6.3f}   {svs_value:6.3f}")
        for label, subset in (("digits CNN, all 4 layers (ours)", names), ("digits CNN, 3 pruned layers (ours)",
                                                                            pruned_names)):
            print(f"{label:38s} {min(measures['sca', n][0] for n in subset):6.3f}   "
                  f"{min(measures['svs', n][0] for n in subset):6.3f}")
        for criterion in ("sca", "svs"):
            glue(f"ch06_{criterion}_cos_min", min(measures[criterion, n][0] for n in names), display=False)
            glue(f"ch06_{criterion}_shuffled_min", min(measures[criterion, n][1] for n in names), display=False)
            for name in pruned_names:
                glue(f"ch06_{criterion}_agree_{short(name)}", 100 * measures[criterion, name][3], display=False)
        better = [short(n) for n in pruned_names if measures["svs", n][3] > measures["sca", n][3]]
        if len(better) == len(pruned_names):
            verdict = "in all three pruned layers the keep-sets of SVS agree better across batches than those of SCA"
        elif better:
            verdict = (f"the keep-sets of SVS agree better across batches than those of SCA in {len(better)} of the "
                       f"three pruned layers ({', '.join(better)}), not in the others")
        else:
            verdict = "the keep-sets of SVS agree no better across batches than those of SCA in any pruned layer"
        glue("ch06_stability_verdict", verdict, display=False)
        '''
    ),
    code(
        r'''
        x = np.arange(len(names))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3))
        for offset, criterion in ((-0.2, "sca"), (0.2, "svs")):
            ax1.bar(x + offset, [measures[criterion, n][0] for n in names], 0.4, color=color(criterion),
                    label=f"{criterion.upper()}, AvgCosS")
            ax1.scatter(x + offset, [measures[criterion, n][1] for n in names], marker="_", s=300, color="k",
                        zorder=3, label="same, channels shuffled" if criterion == "svs" else None)
            ax2.bar(x + offset, [100 * measures[criterion, n][3] for n in names], 0.4, color=color(criterion),
                    label=criterion.upper())
        low = min(min(v[0], v[1]) for v in measures.values())
        ax1.set_ylim(low - 0.8 * (1 - low), 1.0)
        ax1.set_ylabel("AvgCosS (Eq. 15)")
        ax1.legend(fontsize=7, loc="lower left")
        ax2.set_ylabel("kept channels agreed (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(fontsize=8, loc="lower left")
        for ax in (ax1, ax2):
            ax.set_xticks(x, [short(n) for n in names])
        ax1.set_title("Eq. 15: near 1 for both, and for shuffled scores", fontsize=9)
        ax2.set_title("which channels to keep at r = 0.5: pairs of batches agree on", fontsize=9)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        **What ours shows.** On our model AvgCosS does not separate the two criteria: its minimum over the layers is
        {glue:text}`ch06_sca_cos_min:.4f` for SCA and {glue:text}`ch06_svs_cos_min:.4f` for SVS, and the scores with
        their channels shuffled still reach {glue:text}`ch06_sca_shuffled_min:.3f` (SCA) and
        {glue:text}`ch06_svs_shuffled_min:.3f` (SVS). Both criteria produce positive scores with a large common part,
        and the cosine of Eq. 15 measures mostly that common part. The paper's SCA values (0.870 to 0.952) are far
        lower than anything our SCA produces: its networks are deeper, its data harder and its scoring batches
        augmented, all of which make per-batch scores noisier.

        The measures that look at the *ordering* are more informative. The keep-sets of two batches agree on
        {glue:text}`ch06_svs_agree_stem:.0f` %, {glue:text}`ch06_svs_agree_block2:.0f` % and
        {glue:text}`ch06_svs_agree_block3:.0f` % of the channels with SVS in `stem`, `block2` and `block3`, against
        {glue:text}`ch06_sca_agree_stem:.0f` %, {glue:text}`ch06_sca_agree_block2:.0f` % and
        {glue:text}`ch06_sca_agree_block3:.0f` % with SCA. So, on our model, {glue:text}`ch06_stability_verdict`.
        Whichever way it goes, the evidence comes from the keep-sets; Eq. 15 cannot resolve differences this small.
        (`block4`, the last conv, is scored but never pruned.)

        ## 6. Ties

        An $\epsilon$-rank is an integer between 0 and $\min(h, w)$, so a score averaged over $N$ samples is a multiple
        of $1/N$ in $[0, \min(h, w)]$. Two channels can therefore have *exactly* the same score, and when such a tie
        straddles the cut, something other than the score has to decide. Ties are frequent when the maps are small
        (a $2 \times 2$ map has rank 0, 1 or 2) and when the score averages few samples. The table counts the channels
        of each layer that share their score with at least one other channel, for scores over 1 sample, over one batch
        of 128, and over the 5 batches (640 samples) used for pruning:
        """
    ),
    code(
        r'''
        def tied_channels(scores):
            """How many channels share their score with at least one other channel."""
            _, counts = torch.unique(scores, return_counts=True)
            return int(counts[counts > 1].sum())


        def tie_table(recorded_spikes, scores, label):
            print(f"{label}\nlayer    map      max rank   channels   tied, 1 sample   tied, 128 samples   tied, 640 samples")
            rows = {}
            for name in scores:
                ranks_ = prune.epsilon_rank(recorded_spikes[name], eps=EPS).double()
                h, w = recorded_spikes[name].shape[-2:]
                rows[name] = (tied_channels(ranks_[0]), tied_channels(ranks_.mean(0)), tied_channels(scores[name]))
                print(f"{short(name):8s} {h:2d} x {w:<2d}  {min(h, w):8d}   {len(scores[name]):8d}   "
                      f"{rows[name][0]:14d}   {rows[name][1]:17d}   {rows[name][2]:17d}")
            return rows


        ties_16 = tie_table(recorded, svs_scores, "16 x 16 digits (our model)")
        '''
    ),
    md(
        r"""
        With one sample almost every channel ties with another: the ranks are small integers. Averaging over 128 and
        then 640 samples spreads the scores out and removes most ties, except where the maps are small. That is why
        this book upsamples the digits: on the native 8 x 8 digits every map is half as wide, `block3`'s maps are
        4 x 4 and `block4`'s 2 x 2. To see the effect we train the same network on the 8 x 8 digits (same recipe,
        seed 0) and count again:
        """
    ),
    code(
        r'''
        train_8, _ = data.load("digits", batch_size=BATCH, seed=0)                     # native 8 x 8 digits
        score_8, test_8 = data.load("digits", batch_size=128, seed=0)
        torch.manual_seed(0)
        model_8 = models.build("digits_cnn", num_classes=10, bits=BITS, gamma="mean")
        train.fit(model_8, train_8, epochs=EPOCHS, lr=LR, seed=0, progress=False)
        print(f"8 x 8 model: test accuracy {100 * train.evaluate(model_8, test_8)[0]:.1f} %\n")

        recorded_8 = {}
        hooks = [layer.lif.register_forward_hook(
                     lambda module, inputs, output, name=layer.name: recorded_8.__setitem__(name, output))
                 for layer in prune.prunable_layers(model_8)]
        score_8.generator.manual_seed(0)
        with torch.no_grad():
            model_8.eval()
            model_8(next(iter(score_8))[0])
        for hook in hooks:
            hook.remove()
        score_8.generator.manual_seed(0)
        svs_scores_8 = prune.score(model_8, score_8, "svs", batches=SCORE_BATCHES)
        ties_8 = tie_table(recorded_8, svs_scores_8, "8 x 8 digits")
        glue("ch06_ties8_block3", ties_8["features.block3.conv"][2], display=False)
        glue("ch06_ties16_block3", ties_16["features.block3.conv"][2], display=False)
        '''
    ),
    md(
        r"""
        With 640 samples, `block3` has {glue:text}`ch06_ties8_block3` tied channels on 8 x 8 digits against
        {glue:text}`ch06_ties16_block3` on 16 x 16 digits. The paper's deep layers have small maps too (VGG-16's last
        stages work on 2 x 2 maps of CIFAR images), which is why the rule for ties matters.

        **The tie-break rule.** Only ties at the cut change anything: when the last kept and the first pruned channel
        have the same score. `prune.apply` keeps the $k$ highest scores with a *stable* sort of the descending scores
        (`prune.keep_indices`), so among equal scores **the lower channel index is kept**. This is deterministic but
        arbitrary: channel indices carry no meaning. (The authors' code left ties to NumPy's default sort, which is
        not stable, so its choice is just as arbitrary and less reproducible.) `prune.score(..., tie_break="sum_sv")`
        offers a documented alternative, off by default: it breaks ties of the rank count by the sum of the singular
        values $\sum_i \sigma_i$, larger first, and changes no other order. How often does the rule decide at $r = 0.5$?
        """
    ),
    code(
        r'''
        def cut_ties(scores, ratio=0.5):
            """Channels whose score equals the score at the cut, and how many of them are kept."""
            keep = int(len(scores) * (1 - ratio))
            boundary = scores.sort(descending=True).values[keep - 1]
            tied = scores == boundary
            kept = torch.zeros_like(tied)
            kept[prune.keep_indices(scores, keep)] = True
            return int(tied.sum()), int((tied & kept).sum())


        print("digits   scored on   layer    channels at the cut's score (kept)   tie_break='sum_sv' keeps other")
        for label, net, loader in (("16 x 16", model, score_loader), ("8 x 8", model_8, score_8)):
            for batches in (1, SCORE_BATCHES):
                loader.generator.manual_seed(0)
                scores = prune.score(net, loader, "svs", batches=batches)
                loader.generator.manual_seed(0)
                by_sum = prune.score(net, loader, "svs", batches=batches, tie_break="sum_sv")
                kept_index = prune.apply(net, scores, 0.5).pruned_channels
                kept_sum = prune.apply(net, by_sum, 0.5).pruned_channels
                for name in names[:-1]:
                    tied, kept = cut_ties(scores[name])
                    changed = len(set(kept_index[name].tolist()) - set(kept_sum[name].tolist()))
                    print(f"{label:8s} {128 * batches:4d} digits  {short(name):7s}  {tied:14d} ({kept:2d} kept)"
                          f"                 {changed:2d} channel(s)")
        '''
    ),
    md(
        r"""
        A tie at the cut shows up as more than one channel at the cut's score; the rule then keeps some of them and
        prunes the others, and the sum of singular values may pick different ones. With 640 samples and large maps
        this is rare; with fewer samples, or on small maps, it becomes routine, and then the tie-break rule, not the
        criterion, decides those channels.

        ## 7. Does SVS prune better? Five criteria, three seeds

        The claim that matters is accuracy: at the same size, does a network pruned by SVS do better? The paper's
        ablation (its Table 2) compares SVS with SCA on ResNet20 and CIFAR-100 with a long fine-tune: 73.32 % against
        69.16 %, both with the vanilla quantizer, the only criteria it compares. We compare all five criteria of the
        package: `svs`, `sca`, `l1`, `firing_rate` and `random`.

        The protocol, per seed (0, 1, 2; the seed sets the initial weights *and* the order of the training and scoring
        batches): train the 4-bit network as above; score it once with each criterion on the same 5 batches of 128;
        for each ratio 0.5, 0.75 and 0.9 (every layer but the last), prune, recalibrate BatchNorm on 3 batches
        (chapter 05), measure, fine-tune for one epoch with the same batch order for every criterion, measure again.
        That is 3 networks to train and 45 to fine-tune, so we keep the grid small and measure how long it takes.
        """
    ),
    code(
        RECALIBRATE,
        r'''
        SEEDS = [0, 1, 2]
        CRITERIA = ["svs", "sca", "l1", "firing_rate", "random"]
        RATIOS = [0.5, 0.75, 0.9]
        accuracy = {}        # (seed, criterion, ratio) -> (after BN recalibration, after fine-tune)
        dense = {}           # seed -> accuracy of the unpruned network
        kept_channels = {}   # (criterion, ratio) -> {layer: kept indices}, seed 0
        sizes_kb = {}        # ratio -> model size in kB (Eq. 16)
        tic = time.perf_counter()
        for seed in SEEDS:
            train_s, _ = data.load("digits", batch_size=BATCH, image_size=16, seed=seed)
            score_s, _ = data.load("digits", batch_size=128, image_size=16, seed=seed)
            if seed == 0:
                base = model                                   # trained above with exactly this recipe
            else:
                torch.manual_seed(seed)
                base = models.build("digits_cnn", num_classes=10, bits=BITS, gamma="mean")
                train.fit(base, train_s, epochs=EPOCHS, lr=LR, seed=seed, progress=False)
            dense[seed] = train.evaluate(base, test_loader)[0]
            for criterion in CRITERIA:
                score_s.generator.manual_seed(seed)            # every criterion scores the same 5 batches
                scores = prune.score(base, score_s, criterion, batches=SCORE_BATCHES, seed=seed)
                for ratio in RATIOS:
                    net = prune.apply(base, scores, ratio)
                    if seed == 0:
                        kept_channels[criterion, ratio] = net.pruned_channels
                        sizes_kb[ratio] = 1e3 * metrics.model_size_mb(net, BITS)
                    recalibrate_bn(net, score_s)
                    recalibrated = train.evaluate(net, test_loader)[0]
                    train_s.generator.manual_seed(seed)        # the same batch order for every fine-tune
                    train.fit(net, train_s, epochs=FINE_TUNE_EPOCHS, lr=FINE_TUNE_LR, seed=seed, progress=False)
                    accuracy[seed, criterion, ratio] = (recalibrated, train.evaluate(net, test_loader)[0])
        grid_seconds = time.perf_counter() - tic
        sizes_kb[0.0] = 1e3 * metrics.model_size_mb(model, BITS)
        print(f"{len(SEEDS)} seeds: trained {len(SEEDS) - 1} more networks, scored {len(SEEDS) * len(CRITERIA)} times, "
              f"pruned, recalibrated and fine-tuned {len(accuracy)} networks in {grid_seconds:.0f} s")
        print("dense accuracy per seed: " + ", ".join(f"{100 * a:.1f} %" for a in dense.values()))
        glue("ch06_grid_seconds", grid_seconds, display=False)
        glue("ch06_grid_runs", len(accuracy), display=False)
        '''
    ),
    code(
        r'''
        STAGES = ["+ BN recalibration", "+ fine-tune (1 epoch)"]


        def summary(criterion, ratio, stage):
            values = 100 * np.array([accuracy[seed, criterion, ratio][stage] for seed in SEEDS])
            return float(values.mean()), float(values.std(ddof=1))


        dense_mean = 100 * np.mean(list(dense.values()))
        print(f"test accuracy (%), mean +- standard deviation over {len(SEEDS)} seeds; dense {dense_mean:.1f} %")
        for s, stage in enumerate(STAGES):
            print(f"\n{stage:22s}" + "".join(f"     r = {r:<8}" for r in RATIOS))
            for criterion in CRITERIA:
                print(f"{criterion:22s}" + "".join("   {:5.1f} +- {:4.1f}".format(*summary(criterion, r, s))
                                                     for r in RATIOS))
        print("\nmodel size (Eq. 16): " + ", ".join(f"r = {r}: {sizes_kb[r]:.1f} kB" for r in [0.0] + RATIOS))
        '''
    ),
    code(
        r'''
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.5), sharey=True)
        for s, ax in enumerate(axes):
            ax.axhline(dense_mean, color="0.3", ls="--", lw=1, label="dense")
            for k, criterion in enumerate(CRITERIA):
                stats = np.array([summary(criterion, r, s) for r in RATIOS])
                ax.errorbar(np.array(RATIOS) + 0.006 * (k - 2), stats[:, 0], yerr=stats[:, 1], marker="o", ms=4,
                            lw=1.8 if criterion == "svs" else 1.2, capsize=3, color=color(criterion), label=criterion)
            ax.set_title(STAGES[s], fontsize=10)
            ax.set_xlabel("prune ratio $r$ (every layer but the last)")
            ax.set_xticks(RATIOS)
        axes[0].set_ylabel("test accuracy (%), mean $\\pm$ std, 3 seeds")
        axes[0].set_ylim(0, 100)
        axes[1].legend(fontsize=8, loc="lower left")
        winner = {r: max(CRITERIA, key=lambda c: summary(c, r, 1)[0]) for r in RATIOS}
        fig.suptitle("Best mean after fine-tuning: " + ", ".join(f"{winner[r]} at r = {r}" for r in RATIOS)
                     + " (error bars: std over 3 seeds)", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        Before reading the curves, look at the error bars: the standard deviations over three seeds are often as large
        as the differences between the criteria. To compare two criteria fairly we use the fact that, within a seed,
        they prune the *same* trained network and fine-tune on the same batches: the paired difference
        (SVS minus the other, seed by seed) cancels much of the seed-to-seed variation.
        """
    ),
    code(
        r'''
        print("after the 1-epoch fine-tune: SVS minus each other criterion, in points (mean +- std over 3 seeds; "
              "wins = seeds where SVS is higher)")
        print("versus        " + "".join(f"         r = {r:<8}" for r in RATIOS))
        paired = {}
        for other in CRITERIA[1:]:
            cells = []
            for ratio in RATIOS:
                d = 100 * np.array([accuracy[s, "svs", ratio][1] - accuracy[s, other, ratio][1] for s in SEEDS])
                paired[other, ratio] = d
                cells.append(f"{d.mean():+6.1f} +- {d.std(ddof=1):4.1f} ({(d > 0).sum()}/3)")
            print(f"{other:12s}  " + "  ".join(cells))

        places = {r: 1 + sum(summary(c, r, 1)[0] > summary("svs", r, 1)[0] for c in CRITERIA) for r in RATIOS}
        ordinal = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
        glue("ch06_svs_places", ", ".join(f"{ordinal[places[r]]} at r = {r}" for r in RATIOS), display=False)
        for ratio in RATIOS:
            key = str(ratio).replace(".", "")
            glue(f"ch06_svs_{key}", summary("svs", ratio, 1)[0], display=False)
            glue(f"ch06_svs_{key}_std", summary("svs", ratio, 1)[1], display=False)
            glue(f"ch06_sca_{key}", summary("sca", ratio, 1)[0], display=False)
            glue(f"ch06_sca_{key}_std", summary("sca", ratio, 1)[1], display=False)
            glue(f"ch06_vs_sca_{key}", float(paired["sca", ratio].mean()), display=False)
            glue(f"ch06_vs_sca_wins_{key}", int((paired["sca", ratio] > 0).sum()), display=False)
            glue(f"ch06_best_{key}", winner[ratio], display=False)
        spread = [summary(c, r, 1)[1] for c in CRITERIA for r in RATIOS]
        glue("ch06_std_min", float(min(spread)), display=False)
        glue("ch06_std_max", float(max(spread)), display=False)
        '''
    ),
    md(
        r"""
        **Our numbers, honestly.** After the one-epoch fine-tune SVS places {glue:text}`ch06_svs_places` of five
        (by the mean over seeds). Against the paper's own comparison, SCA, SVS reaches
        {glue:text}`ch06_svs_05:.1f` ± {glue:text}`ch06_svs_05_std:.1f` % against
        {glue:text}`ch06_sca_05:.1f` ± {glue:text}`ch06_sca_05_std:.1f` % at $r = 0.5$
        ({glue:text}`ch06_vs_sca_05:+.1f` points on average, higher in {glue:text}`ch06_vs_sca_wins_05` of 3 seeds),
        {glue:text}`ch06_svs_075:.1f` ± {glue:text}`ch06_svs_075_std:.1f` % against
        {glue:text}`ch06_sca_075:.1f` ± {glue:text}`ch06_sca_075_std:.1f` % at $r = 0.75$
        ({glue:text}`ch06_vs_sca_075:+.1f`, {glue:text}`ch06_vs_sca_wins_075` of 3), and
        {glue:text}`ch06_svs_09:.1f` ± {glue:text}`ch06_svs_09_std:.1f` % against
        {glue:text}`ch06_sca_09:.1f` ± {glue:text}`ch06_sca_09_std:.1f` % at $r = 0.9$
        ({glue:text}`ch06_vs_sca_09:+.1f`, {glue:text}`ch06_vs_sca_wins_09` of 3). The best mean is
        {glue:text}`ch06_best_05` at $r = 0.5$, {glue:text}`ch06_best_075` at $r = 0.75$ and
        {glue:text}`ch06_best_09` at $r = 0.9$, and the standard deviations over seeds range from
        {glue:text}`ch06_std_min:.1f` to {glue:text}`ch06_std_max:.1f` points. Read any difference smaller than
        that as "no evidence either way".

        **Why our setting is a hard test for any criterion.** Several things work against a criterion showing its
        worth here, and they explain why our comparison can show much less than the paper's:

        - **Small data, tiny network.** 1,437 training digits, and a network with 16 to 64 channels per layer: at
          $r = 0.9$ the stem keeps a single channel, and that one channel decides more than any criterion.
        - **Small maps.** The paper's first layers see 32 x 32 (CIFAR) or 64 x 64 (TinyImageNet) maps with ranks up
          to 32 or 64; ours are at
          most 16 x 16, and 8 x 8 from `block3` on. Fewer possible ranks mean coarser scores and more ties.
        - **A very short fine-tune.** One epoch against the paper's 150: we measure how good a starting point each
          criterion leaves behind, not where the networks end up, and the result of a one-epoch fine-tune itself
          varies by a point or two with the order of the batches.
        - **Three seeds.** Enough to see the spread, not enough to resolve differences of a point or two.
        - **A uniform ratio** instead of the paper's hand-tuned per-layer ratios (Tables 9-11).

        What our small setting can show is the mechanism: SVS ranks channels by a property of their *output* that is
        cheap to compute and integer-valued, and section 5 measured how consistent its rankings are from batch to
        batch. Whether that buys accuracy is a question for larger networks and longer fine-tunes, which the paper
        answers for its setting; chapter 07 puts SVS and ReScaW together into the full QP-SNN pipeline.

        ## 8. Explore: prune ratio and criterion

        The slider sets the prune ratio, the tabs the criterion. The figure shows how many channels each layer keeps
        (the same for every criterion), *which* channels the criterion keeps in the seed-0 network, and the accuracy
        after the fine-tune of every criterion at that ratio, with the chosen one highlighted. All figures were
        rendered when the notebook ran, so the widget also works on the static page.
        """
    ),
    code(
        r'''
        width = max(layer.channels for layer in layers)
        totals = [layer.channels for layer in layers]


        def render(ratio, criterion):
            fig = plots.figure(8, 4.2)
            grid_spec = fig.add_gridspec(2, 2, height_ratios=[1.25, 1], width_ratios=[1, 1.3])
            ax_bars, ax_acc = fig.add_subplot(grid_spec[0, 0]), fig.add_subplot(grid_spec[0, 1])
            ax_kept = fig.add_subplot(grid_spec[1, :])
            kept = kept_channels[criterion, ratio]
            counts = [len(kept[name]) for name in names]
            x = np.arange(len(names))
            ax_bars.bar(x, totals, color="0.88", label="removed")
            ax_bars.bar(x, counts, color=color(criterion), label="kept")
            for i, count in enumerate(counts):
                ax_bars.text(i, count + 1, str(count), ha="center", fontsize=8)
            ax_bars.set_xticks(x, [short(name) for name in names], fontsize=8)
            ax_bars.set_ylabel("channels", fontsize=9)
            ax_bars.set_ylim(0, width + 10)
            ax_bars.legend(fontsize=7, loc="upper left")
            ax_bars.set_title("channels per layer", fontsize=9)

            for k, other in enumerate(CRITERIA):
                mean, std = summary(other, ratio, 1)
                ax_acc.bar(k, mean, yerr=std, capsize=2, color=color(other), alpha=1 if other == criterion else 0.3)
            ax_acc.axhline(dense_mean, color="0.3", ls="--", lw=1, label="dense")
            ax_acc.set_xticks(range(len(CRITERIA)), [c.replace("_", " ") for c in CRITERIA], fontsize=8)
            ax_acc.set_ylim(0, 100)
            ax_acc.set_ylabel("test accuracy (%)", fontsize=9)
            ax_acc.legend(fontsize=7, loc="lower right")
            ax_acc.set_title("after the fine-tune, mean $\\pm$ std over 3 seeds", fontsize=9)

            grid = np.full((len(names), width), np.nan)
            for i, name in enumerate(names):
                grid[i, :totals[i]] = 0
                grid[i, kept[name].numpy()] = 1
            cmap = ListedColormap(["0.85", color(criterion)])
            cmap.set_bad("white")
            ax_kept.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                           interpolation="nearest")
            ax_kept.set_yticks(range(len(names)), [short(name) for name in names], fontsize=8)
            ax_kept.set_xlabel("channel index (coloured: kept)", fontsize=9)
            ax_kept.set_title(f"which channels {criterion} keeps (seed 0)", fontsize=9)
            mean, std = summary(criterion, ratio, 1)
            fig.suptitle(f"r = {ratio}, {criterion}: {sizes_kb[ratio]:.1f} kB ({100 * sizes_kb[ratio] / sizes_kb[0.0]:.0f} %"
                         f" of the dense {sizes_kb[0.0]:.1f} kB), accuracy {mean:.1f} $\\pm$ {std:.1f} %", fontsize=10)
            return fig


        explorer = widgets.grid_stack({"prune ratio": RATIOS, "criterion": CRITERIA}, render, dpi=66)
        display(explorer)
        '''
    ),
    md(
        r"""
        Step through the tabs at one ratio: the bar chart on the left does not move (a uniform ratio fixes the widths),
        but the middle panel does. How similar are the criteria's choices? The table gives, for the seed-0 network at
        $r = 0.5$, the share of kept channels that two criteria have in common, over the three pruned layers; two
        independent random choices would share about half.
        """
    ),
    code(
        r'''
        pruned_names = names[:-1]
        print("shared kept channels at r = 0.5 (seed 0, stem + block2 + block3)")
        print(" " * 12 + "".join(f"{c:>12s}" for c in CRITERIA))
        for a in CRITERIA:
            cells = []
            for b in CRITERIA:
                shared = sum(len(set(kept_channels[a, 0.5][n].tolist()) & set(kept_channels[b, 0.5][n].tolist()))
                             for n in pruned_names)
                cells.append(f"{100 * shared / sum(len(kept_channels[a, 0.5][n]) for n in pruned_names):11.0f}%")
            print(f"{a:12s}" + "".join(cells))
        '''
    ),
    md(
        r"""
        ## Exercises

        **1. Ranks by eye.** Predict the $\epsilon$-rank of these $8 \times 8$ maps, then check with
        `prune.epsilon_rank`: (a) all entries 1; (b) a checkerboard of 0 and 1; (c) the identity; (d) a single spike;
        (e) the left half 1, the right half 0; (f) a 3 x 3 block of ones in one corner and a 2 x 2 block in the
        opposite corner; (g) the same maps at half the rate (all values 0.5 instead of 1).

        ```{dropdown} Solution
        (a) 1: every row is the same. (b) 2: the rows alternate between two patterns, $(1,0,1,0,\dots)$ and
        $(0,1,0,1,\dots)$, which are independent. (c) 8: full rank. (d) 1: one outer product $e_i e_j^\top$. (e) 1: every
        row is $(1,1,1,1,0,0,0,0)$. (f) 2: two blocks in disjoint rows and columns. (g) The same ranks: scaling a
        matrix does not change its rank. SVS ignores *how strongly* a channel fires, as long as it fires; only the
        pattern counts. The cell below checks all of them.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 1
        n = 8
        checker = (torch.arange(n).view(-1, 1) + torch.arange(n)) % 2
        half = torch.zeros(n, n)
        half[:, : n // 2] = 1
        blocks = torch.zeros(n, n)
        blocks[:3, :3] = 1
        blocks[-2:, -2:] = 1
        single = torch.zeros(n, n)
        single[2, 5] = 1
        examples = {"all ones": torch.ones(n, n), "checkerboard": checker.float(), "identity": torch.eye(n),
                    "single spike": single, "left half": half, "two blocks": blocks}
        expected = {"all ones": 1, "checkerboard": 2, "identity": 8, "single spike": 1, "left half": 1,
                    "two blocks": 2}
        for label, m in examples.items():
            full_rate = m.view(1, 1, 1, n, n)                                 # T = 1: every 1 is a spike
            half_rate = torch.stack([m, torch.zeros(n, n)]).view(2, 1, 1, n, n)   # T = 2, one spike in two steps
            r_full = int(prune.epsilon_rank(full_rate)[0, 0])
            r_half = int(prune.epsilon_rank(half_rate)[0, 0])
            assert r_full == r_half == expected[label]
            print(f"{label:13s} rank {r_full} (at half the rate: {r_half})")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **2. How much does $\epsilon$ matter?** Recompute `block2`'s and `block3`'s scores on the recorded batch with
        $\epsilon \in \{10^{-6}, 10^{-3}, 0.1, 0.5, 1\}$. Up to which $\epsilon$ do the scores not change at all, and how
        far does the keep-set at $r = 0.5$ move for the larger values?

        ```{dropdown} Solution
        Section 1 found no singular value between round-off and the smallest real one, so every $\epsilon$ up to that
        smallest value gives identical scores. Larger values start to ignore weak patterns: the score becomes a count
        of *strong* singular values, and the ranking, and with it the keep-set, changes gradually. The paper's
        $\epsilon = 10^{-6}$ is the choice that makes SVS a plain rank.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        for name in ("features.block2.conv", "features.block3.conv"):
            reference = prune.svs_score(recorded[name], eps=1e-6)
            keep = len(reference) // 2
            kept_reference = set(prune.keep_indices(reference, keep).tolist())
            for eps in (1e-6, 1e-3, 0.1, 0.5, 1.0):
                scores = prune.svs_score(recorded[name], eps=eps)
                same = len(kept_reference & set(prune.keep_indices(scores, keep).tolist()))
                print(f"{short(name)} eps = {eps:<6g} mean score {scores.mean():6.3f}   "
                      f"identical to eps = 1e-6: {bool(torch.equal(scores, reference))!s:5}   "
                      f"keep-set overlap {same}/{keep}")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **3. Float32 and a relative tolerance.** The authors' code computes the rank with `matrix_rank` in float32,
        whose default tolerance is *relative*: $\sigma_{max} \cdot \max(h, w) \cdot \epsilon_{float32}$ with
        $\epsilon_{float32} \approx 1.2 \cdot 10^{-7}$. Compare its ranks on our recorded maps with the package's
        (float64, absolute $10^{-6}$), and also with an absolute $10^{-6}$ in float32. How large is float32's
        round-off compared with $10^{-6}$, and how small the smallest genuine singular value compared with the
        relative tolerance?

        ```{dropdown} Solution
        Two margins decide. In float32 the round-off of a zero singular value is roughly $\sigma_{max}$ times
        $10^{-7}$: for our 16 x 16 maps it stays below $10^{-6}$, but it grows with the map size and the firing rate,
        and for large maps (64 x 64 feature maps of TinyImageNet, say) it can pass $10^{-6}$, so that an absolute
        $10^{-6}$ in float32 would count round-off as structure. The relative tolerance avoids that, but it can hide a
        genuine small singular value that lies below $\sigma_{max} \cdot \max(h, w) \cdot 1.2 \cdot 10^{-7}$. The
        cell prints both margins for our maps. In float64 with the paper's absolute $\epsilon$ both margins are many
        orders of magnitude wide (section 1), which is why the package computes in float64.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        print("layer    disagree with ours: matrix_rank   abs. 1e-6 in float32   largest float32 round-off   "
              "smallest genuine sigma / relative tolerance")
        for name, s in recorded.items():
            maps32 = s.float().mean(0)                                       # float32 maps, as the authors' code
            ours = prune.epsilon_rank(s)                                     # float64, absolute 1e-6
            relative = torch.linalg.matrix_rank(maps32)                      # float32, default relative tolerance
            sigma32 = torch.linalg.svdvals(maps32)
            absolute32 = (sigma32 > 1e-6).sum(-1)                            # float32, absolute 1e-6
            sigma64 = torch.linalg.svdvals(s.double().mean(0))
            roundoff = float(sigma32[sigma64 < 1e-9].max()) if (sigma64 < 1e-9).any() else 0.0
            tolerance = sigma64[..., :1] * max(s.shape[-2:]) * torch.finfo(torch.float32).eps
            genuine = sigma64 > 1e-9
            margin = float((sigma64[genuine] / tolerance.expand_as(sigma64)[genuine]).min())
            print(f"{short(name):7s} {int((relative != ours).sum()):12d} / {ours.numel():<6d}"
                  f" {int((absolute32 != ours).sum()):8d} / {ours.numel():<6d}   {roundoff:20.1e}   {margin:28.0f} x")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        **4. Busy but simple.** Find the channels of `block2` and `block3` that are in the top quarter by firing rate
        but in the bottom half by SVS score. What do their maps look like, and is it right to prune them first?

        ```{dropdown} Solution
        They fire a lot, but in simple patterns: large uniform regions, blocks or stripes, whose rank is low however
        many spikes they contain (exercise 1). The paper's argument is that such maps carry little information that
        other channels do not; the counter-argument is that a strongly firing channel drives the next layer hard, so
        removing it changes that layer's input a lot (which BatchNorm recalibration and fine-tuning must then repair).
        Which view wins is an empirical question, and section 7 is our small attempt to answer it.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 4
        for name in ("features.block2.conv", "features.block3.conv"):
            rate, svs_ = rate_scores[name], svs_scores[name]
            busy = rate >= rate.quantile(0.75)
            simple = svs_ <= svs_.median()
            channels = torch.nonzero(busy & simple).flatten().tolist()
            print(f"{short(name)}: {len(channels)} channels busy but simple: {channels}")
            for c in channels[:3]:
                print(f"   channel {c}: firing rate {rate[c]:.3f} (layer median {rate.median():.3f}), "
                      f"SVS {svs_[c]:.2f} (layer median {svs_.median():.2f})")
        ''',
        tags=["hide-input"],
    ),
    md(
        r"""
        ## Summary

        - SVS scores a channel by the **$\epsilon$-rank of its time-averaged spike map** (Eq. 11-13): one SVD per
          sample and channel, the number of singular values above $\epsilon = 10^{-6}$, averaged over the batch. It is a
          count, bounded by $\min(h, w)$.
        - On our maps the singular values are either clearly nonzero or at round-off level, with a gap of
          {glue:text}`ch06_gap_orders:.0f` orders of magnitude around $\epsilon$: in float64 the $\epsilon$-rank is
          the ordinary rank. `prune.epsilon_rank` computes all of them in one batched call.
        - Rank counts *patterns*, not spikes: a uniform or block-shaped map has rank 1 however busy it is. SVS and
          the firing rate are related but rank channels differently.
        - On our model the paper's stability measure, AvgCosS (Eq. 15), is close to 1 for both SVS and SCA, and
          even for shuffled scores. The keep-sets of different batches are more telling: on our model,
          {glue:text}`ch06_stability_verdict`.
        - Scores tie when maps are small or samples few; ties at the cut are broken by channel index (the lower one is
          kept), or optionally by the sum of singular values. Upsampling our digits to 16 x 16 removes most ties.
        - Over three seeds with a one-epoch fine-tune, SVS places {glue:text}`ch06_svs_places` of five criteria,
          with seed-to-seed spreads of {glue:text}`ch06_std_min:.1f` to {glue:text}`ch06_std_max:.1f` points. The
          paper's advantage for SVS was measured in a setting (large maps, deep networks, 150 epochs of fine-tuning)
          that this small experiment does not reach.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905) (Sec. 4.2, Eq. 11-13 and 15, Fig. 3-5, Table 2,
          App. F for this chapter).
        - M. Lin, R. Ji, Y. Wang, Y. Zhang, B. Zhang, Y. Tian, L. Shao. *HRank: Filter pruning using high-rank feature
          map.* CVPR 2020. [arXiv:2002.10179](https://arxiv.org/abs/2002.10179) (ranking filters by the rank of their
          feature maps in ANNs; the authors' code builds on it).
        - Y. Li, Q. Xu, J. Shen, H. Xu, L. Chen, G. Pan. *Towards efficient deep spiking neural networks construction
          with spiking activity based pruning.* ICML 2024. [arXiv:2406.01072](https://arxiv.org/abs/2406.01072)
          (SCA).
        - G. H. Golub, C. F. Van Loan. *Matrix Computations*, 4th ed. Johns Hopkins University Press, 2013 (the
          singular value decomposition and numerical rank).
        - Z. Liu, M. Sun, T. Zhou, G. Huang, T. Darrell. *Rethinking the value of network pruning.* ICLR 2019.
          [arXiv:1810.05270](https://arxiv.org/abs/1810.05270).
        """
    ),
    code(
        r'''
        print(f"chapter executed in {time.perf_counter() - CHAPTER_START:.0f} s")
        '''
    ),
]


CHAPTERS = {"05": (CH05, "05_structured_pruning.ipynb"), "06": (CH06, "06_svs.ipynb")}


def main(argv: list[str]) -> int:
    return write_chapters(CHAPTERS, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
