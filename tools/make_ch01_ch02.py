"""Write book/01_lif_neurons.ipynb and book/02_training_snns.ipynb from the cell lists below.

The two chapters are authored here as Python lists of cells, with the helpers of tools/nbgen.py. Keep code and printed
lines within 76 characters, the width the rendered page shows without scrolling.

    python tools/make_ch01_ch02.py            # both chapters (or: 01, 02)
    bash tools/execute_notebooks.sh book/01_lif_neurons.ipynb book/02_training_snns.ipynb
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, where nbgen.py is, however this file is loaded

import nbgen  # noqa: E402
from nbgen import INSTALL, colab_badge, md, write_chapters  # noqa: E402

WIDTH = 76  # characters of code the rendered page shows without a scroll bar
code = partial(nbgen.code, width=WIDTH)  # cells that warn about lines wider than the page
setup_cell = partial(nbgen.setup_cell, width=WIDTH)

GLUE = r'''
try:
    from myst_nb import glue  # a value for the rendered book's {glue} roles
except ImportError:  # on Colab, where the book's tools are not installed
    def glue(name, value, display=True):
        if display:
            print(f"{name} = {value}")
'''

SETUP = r'''
torch.manual_seed(0)
plt.rcParams.update({"figure.dpi": 80, "axes.spines.top": False,
                     "axes.spines.right": False})
'''

# What follows the imports in the setup cell of both chapters (see nbgen.setup_cell).
SETUP_SNIPPETS = (GLUE, SETUP)

# ======================================================================================================================
# Chapter 01 · LIF neurons
# ======================================================================================================================
CH01 = [
    md(
        rf"""
        # 01 · LIF neurons

        A spiking neural network (SNN) is built from neurons that carry a state from one time step to the next and
        talk to each other with binary events: spikes. QP-SNN uses the workhorse of the field, the *leaky
        integrate-and-fire* (LIF) neuron in discrete time. Everything in the later chapters (training, quantization,
        pruning) runs on top of it, so we build it first, slowly, and learn what its two knobs do.

        **Learning goals.** After this chapter you can

        - write down the paper's LIF neuron (Eq. 1-3): charge with a multiplicative leak $\tau$, fire at the threshold
          $\theta$, reset hard to zero;
        - implement it from scratch in a few lines of PyTorch over a `[T, B, N]` input, and check it against
          `qpsnn_lite.neurons.LIF`;
        - read membrane-potential traces and spike rasters;
        - predict from $\tau$ and $\theta$ whether, and how often, a neuron fires for a constant input current;
        - explain the difference between a hard and a soft reset.

        **Run it yourself.** {colab_badge("01_lif_neurons.ipynb")} On Colab the first code cell installs the
        `qpsnn_lite` package; anywhere else it does nothing. The chapter runs in seconds on a laptop CPU.
        """
    ),
    INSTALL,
    setup_cell(
        r'''
        import math

        import ipywidgets as w
        import matplotlib.pyplot as plt
        import torch
        from IPython.display import display

        from qpsnn_lite import neurons, plots, widgets
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 1. The neuron in three equations

        Take one layer $l$ of LIF neurons. At each time step $t = 1, \dots, T$ every neuron does three things:

        $$\tilde U^{l}[t] = \tau\, U^{l}[t-1] + X^{l}[t], \qquad X^{l}[t] = W^{l} S^{l-1}[t] \tag{1}$$

        \begin{equation*}
        S^{l}[t] = \Theta\big(\tilde U^{l}[t] - \theta\big) =
          \begin{cases} 1 & \tilde U^{l}[t] \ge \theta \\ 0 & \text{otherwise} \end{cases} \tag{2}
        \end{equation*}

        $$U^{l}[t] = \tilde U^{l}[t]\,\big(1 - S^{l}[t]\big) \tag{3}$$

        - **Charge** (Eq. 1). The potential left over from the previous step, $U[t-1]$, is multiplied by the *leak
          factor* $\tau \in (0, 1]$, and the input current $X[t]$ is added. The current is the weighted sum of the
          previous layer's spikes; in a convolutional network it is a convolution followed by BatchNorm. We call
          $\tilde U[t]$ (read "U tilde") the *pre-reset* potential.
        - **Fire** (Eq. 2). $\Theta$ is the Heaviside step: the neuron emits a spike, $S[t] = 1$, when $\tilde U[t]$
          reaches the threshold $\theta$.
        - **Reset** (Eq. 3). A neuron that fired starts again from 0 (a *hard reset*); one that did not keeps its
          potential.

        Without input the potential decays geometrically, $U[t] = \tau^{t}\,U[0]$: with $\tau = 0.5$ it halves at every
        step. So $\tau$ is a factor, not a time constant in milliseconds. If you know the continuous neuron
        $\tau_m\,\mathrm{d}u/\mathrm{d}t = -u + R\,I$, an Euler step of length $\Delta t$ gives the factor
        $1 - \Delta t/\tau_m$; $\tau = 0.5$ is a step of half a membrane time constant, and the input scaling is absorbed
        into the weights $W$.

        **Where $\tau = 0.5$ and $\theta = 1$ come from.** The paper calls $\tau$ a "constant leaky factor" but states
        neither $\tau$ nor $\theta$. We use **$\tau = 0.5$, $\theta = 1.0$** and $U[0] = 0$, the values in the authors'
        public code. Two small reading notes: the paper writes Eq. 2 as a test on $U[t]$, but it means the pre-reset
        $\tilde U[t]$ (after the reset there is nothing left to test); and the authors' code fires when
        $\tilde U - \theta > 0$ while `qpsnn_lite` fires at $\tilde U \ge \theta$, as Eq. 2 is written. The two differ
        only when $\tilde U$ lands exactly on $\theta$.

        ## 2. The neuron from scratch

        Eq. 1-3 translate line by line into PyTorch. The input current has the shape `[T, B, N]`: time steps, samples
        of a batch, neurons. The loop runs over time, and every neuron of every sample is updated at once.
        """
    ),
    code(
        r'''
        def lif_from_scratch(x, tau=0.5, threshold=1.0):
            """Hard-reset LIF over input currents x of shape [T, B, N].

            Returns the spikes and the pre-reset potentials, both [T, B, N].
            """
            u = torch.zeros_like(x[0])                 # U[0] = 0
            spikes, potentials = [], []
            for t in range(x.shape[0]):
                u_tilde = tau * u + x[t]               # Eq. (1): charge
                s = (u_tilde >= threshold).to(x.dtype)  # Eq. (2): fire
                u = u_tilde * (1 - s)                  # Eq. (3): hard reset
                spikes.append(s)
                potentials.append(u_tilde)
            return torch.stack(spikes), torch.stack(potentials)
        '''
    ),
    md(
        r"""
        Let us follow one neuron, driven by a constant current $X[t] = 0.6$, step by step (one sample, one neuron:
        the shape is `[8, 1, 1]`). $U[t]$ is the potential after the reset, the one carried to the next step.
        """
    ),
    code(
        r'''
        x = torch.full((8, 1, 1), 0.6)
        s, u_tilde = lif_from_scratch(x)
        u_after = u_tilde * (1 - s)
        print(" t   X[t]   U~[t]  S[t]   U[t]")
        for t in range(8):
            print(f"{t + 1:2d}  {x[t].item():5.2f}  {u_tilde[t].item():6.3f}"
                  f"  {int(s[t].item()):3d}  {u_after[t].item():6.3f}")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Read the table row by row: the potential climbs for two steps, crosses $\theta = 1$ at the third, emits a spike
        and falls back to 0, and the cycle repeats. This neuron turns a constant current into a regular spike train
        with one spike every three steps.

        ## 3. The package's neuron agrees

        The book's package has the same neuron as a module, `neurons.LIF`, and as a function, `neurons.lif_multistep`
        (`neurons.lif_multistep_state` also returns the pre-reset potentials). The later chapters build networks
        from them, so we check now, on a random input, that they compute exactly what we just wrote.
        """
    ),
    code(
        r'''
        x = torch.rand(20, 3, 5) * 1.5   # T = 20 steps, B = 3 samples, N = 5
        spikes, potentials = lif_from_scratch(x)

        lif = neurons.LIF(tau=0.5, threshold=1.0)   # used by chapter 02's nets
        state = neurons.lif_multistep_state(x, tau=0.5, threshold=1.0)

        assert torch.equal(lif(x), spikes)
        assert torch.equal(neurons.lif_multistep(x), spikes)
        assert torch.equal(state.membrane, potentials)
        print("neurons.LIF and neurons.lif_multistep agree with lif_from_scratch:")
        print(f"{int(spikes.sum())} spikes and all {potentials.numel()} potentials "
              "are identical")
        print(lif)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        ## 4. Watching neurons: membrane traces and rasters

        A *membrane trace* plots the potential against time. We draw the pre-reset potential $\tilde U[t]$ as dots,
        the drop to $U[t] = 0$ after each spike as a vertical line, the threshold as a dashed line and the spikes as
        ticks along the top. Four neurons get four constant currents.
        """
    ),
    code(
        r'''
        def simulate(current, tau=0.5, threshold=1.0, reset="hard", T=30):
            """One neuron, constant current: (U~, U after reset, S), each [T]."""
            x = torch.full((T, 1, 1), float(current), dtype=torch.float64)
            state = neurons.lif_multistep_state(x, tau=tau, threshold=threshold,
                                                reset=reset)
            u_tilde, s = state.membrane.flatten(), state.spikes.flatten()
            if reset == "hard":
                u_after = u_tilde * (1 - s)
            else:
                u_after = u_tilde - threshold * s
            return u_tilde, u_after, s


        def draw_trace(ax, current, tau=0.5, threshold=1.0, reset="hard", T=30,
                       legend=True):
            """Draw the membrane trace of one neuron on ax; return its spikes."""
            u_tilde, u_after, s = simulate(current, tau, threshold, reset, T)
            t = torch.arange(1, T + 1)
            # a sawtooth: charge from U[t-1] up to U~[t], then drop to U[t]
            xs = torch.cat([torch.zeros(1), torch.stack([t, t], 1).flatten()])
            ys = torch.cat([torch.zeros(1),
                            torch.stack([u_tilde, u_after], 1).flatten()])
            ax.plot(xs, ys, color=color("membrane"), lw=1.2)
            ax.plot(t, u_tilde, "o", ms=3, color=color("membrane"),
                    label=r"pre-reset potential $\tilde U[t]$")
            ax.axhline(threshold, ls="--", lw=1.2, color=color("threshold"),
                       label=r"threshold $\theta$")
            top = max(float(u_tilde.max()), threshold) * 1.25 + 0.05
            ax.vlines(t[s > 0], top * 0.9, top, color=color("spike"), lw=2,
                      label="spike $S[t]=1$")
            ax.set_ylim(min(0.0, float(u_after.min())) - 0.05, top)
            ax.set_xlim(0, T + 0.5)
            if legend:
                ax.legend(loc="lower right", fontsize=7, frameon=False, ncols=3)
            return int(s.sum())


        currents = [0.4, 0.6, 0.8, 1.2]
        fig, axes = plt.subplots(len(currents), 1, figsize=(7.5, 6),
                                 sharex=True, layout="constrained")
        for ax, current in zip(axes, currents):
            n = draw_trace(ax, current, legend=(ax is axes[0]))
            ax.set_title(f"constant current $X = {current}$: "
                         f"{n} spikes in 30 steps", fontsize=9, loc="left")
        axes[-1].set_xlabel("time step $t$")
        fig.supylabel(r"membrane potential (units of $X$ and $\theta$)",
                      fontsize=10)
        fig.suptitle("A stronger current charges faster and fires more often; "
                     r"a weak one never reaches $\theta$")
        plt.show()
        '''
    ),
    md(
        r"""
        The weakest neuron charges towards a ceiling below the threshold and never fires. The strongest one fires at
        every step: its current alone reaches $\theta$. In between, spikes come at a regular rhythm whose period
        shrinks as the current grows.

        A *raster plot* shows many neurons at once: one row per neuron, one dot per spike. Below, 40 neurons receive
        mean currents from 0.2 to 1.2 plus a little noise that changes at every step (standard deviation 0.1), as a
        neuron inside a network would.
        """
    ),
    code(
        r'''
        T, N = 50, 40
        mean_current = torch.linspace(0.2, 1.2, N)
        x = mean_current + 0.1 * torch.randn(T, 1, N)       # [T, B=1, N]
        raster = neurons.lif_multistep(x)[:, 0, :]           # [T, N]

        fig, (ax_r, ax_f) = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True,
                                         width_ratios=[3, 1])
        times, cells = raster.nonzero(as_tuple=True)
        ax_r.scatter(times + 1, mean_current[cells], s=5, color=color("spike"))
        ax_r.set_xlabel("time step $t$")
        ax_r.set_ylabel("mean input current of the neuron")
        ax_r.set_title("Spike raster: one row per neuron", fontsize=10)
        ax_f.plot(raster.mean(0), mean_current, "o", ms=3,
                  color=color("membrane"))
        ax_f.set_xlabel("firing rate (spikes / step)")
        ax_f.set_title("rate per neuron", fontsize=10)
        for ax in (ax_r, ax_f):
            ax.axhline(0.5, ls=":", color=color("threshold"))
            ax.axhline(1.0, ls="--", color=color("threshold"))
        fig.suptitle("Neurons below a mean current of about 0.5 stay (almost) "
                     "silent; above it the rate climbs towards 1 per step")
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        Two current levels stand out: 0.5 (dotted line) and 1.0 (dashed line). The next section explains both.

        ## 5. What $\tau$ and $\theta$ do

        Drive a neuron with a constant current $I$. After a reset (or at the start) the potential is 0, and
        Eq. 1 sums a geometric series: as long as the neuron has not fired, after $n$ steps

        $$\tilde U[n] = I\,(1 + \tau + \dots + \tau^{n-1}) = I\,\frac{1 - \tau^{n}}{1 - \tau} \qquad (0 < \tau < 1).$$

        This grows with $n$ and approaches the ceiling $I/(1-\tau)$ from below. Two facts follow.

        - **Saturation.** If $I \ge \theta$, the neuron fires at the first step, resets to 0 and fires again: one spike
          at *every* step, a firing rate of 1, whatever $\tau$ is. A single time step cannot hold more than one spike.
        - **Minimum current.** The neuron fires at some step only if the ceiling lies above the threshold,
          $I/(1-\tau) > \theta$, that is, if
          $$I > \theta\,(1 - \tau).$$
          With $\tau = 0.5$ and $\theta = 1$ that is {glue:text}`ch01_min_current:.2f`. A current at or below it never
          makes a spike, however long we wait. The leak decides where firing starts: a leakier neuron (smaller $\tau$)
          forgets faster and needs a stronger current.

        Because the dynamics are linear below the threshold, dividing the current by $\theta$ gives the same
        spikes as a threshold of 1: the threshold only rescales the current axis. Let us measure firing-rate curves
        (spikes per time step over 200 steps) for several $\tau$ and several $\theta$, and check both facts on them.
        """
    ),
    code(
        r'''
        def firing_rate(currents, tau=0.5, threshold=1.0, reset="hard", T=200):
            """Spikes per step of neurons driven by constant currents (1-d)."""
            x = currents.to(torch.float64).expand(T, 1, -1)  # [T, 1, N]
            spikes = neurons.lif_multistep(x, tau=tau, threshold=threshold,
                                           reset=reset)
            return spikes.mean(0)[0]


        # Currents on a grid of step 0.005, placed between its multiples so
        # that none sits exactly on a boundary like theta * (1 - tau) = 0.5
        # (there exact arithmetic never fires, and rounding would decide).
        currents = (torch.arange(500, dtype=torch.float64) + 0.5) * 0.005
        taus, thresholds = [0.25, 0.5, 0.75, 0.9], [0.5, 1.0, 1.5, 2.0]
        rates_tau = {tau: firing_rate(currents, tau=tau) for tau in taus}
        rates_theta = {th: firing_rate(currents, threshold=th)
                       for th in thresholds}

        print("  tau  theta  theta(1-tau)  last silent I  first firing I"
              "  sat.")
        settings = ([(tau, 1.0, rates_tau[tau]) for tau in taus]
                    + [(0.5, th, rates_theta[th]) for th in thresholds])
        for tau, theta, rate in settings:
            bound = theta * (1 - tau)
            silent = currents[rate == 0].max().item()
            firing = currents[rate > 0].min().item()
            saturates = bool((rate[currents >= theta] == 1).all()
                             and (rate[currents < theta] < 1).all())
            assert silent < bound < firing and firing - silent < 0.0051
            assert saturates
            print(f"{tau:5.2f}  {theta:5.2f}  {bound:12.4f}  {silent:13.4f}"
                  f"  {firing:14.4f}  {saturates}")
        print("On every curve firing starts just above theta(1 - tau), and the")
        print("rate is 1 (sat.) exactly for the currents I >= theta.")
        glue("ch01_min_current", 1.0 * (1 - 0.5), display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    code(
        r'''
        fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
        for i, tau in enumerate(taus):
            c = plots.PALETTE[i]
            ax_t.plot(currents, rates_tau[tau], color=c, lw=1.4,
                      label=rf"$\tau$ = {tau}")
            ax_t.axvline(1 - tau, color=c, ls=":", lw=1)
        ax_t.set_title(r"$\theta = 1$: the leak sets where firing starts, "
                       r"$\theta(1-\tau)$", fontsize=10)
        for i, theta in enumerate(thresholds):
            c = plots.PALETTE[i]
            ax_h.plot(currents, rates_theta[theta], color=c, lw=1.4,
                      label=rf"$\theta$ = {theta}")
            ax_h.axvline(theta * 0.5, color=c, ls=":", lw=1)
        ax_h.set_title(r"$\tau = 0.5$: the threshold stretches the current axis",
                       fontsize=10)
        for ax in (ax_t, ax_h):
            ax.set_xlabel("constant input current $I$")
            ax.legend(fontsize=8, frameon=False, loc="lower right")
        ax_t.set_ylabel("firing rate (spikes / step)")
        fig.suptitle(r"Firing rate is a staircase 1, 1/2, 1/3, ...: zero below "
                     r"$\theta(1-\tau)$ (dotted), 1 from $I = \theta$")
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        The curves are staircases: with a constant current and a hard reset the neuron repeats the same cycle of $n$
        steps, so its rate is exactly $1/n$ (1, 1/2, 1/3, ...). Exercise 1 asks you for $n$ as a function of $I$.

        Keep this picture in mind for chapter 02. Its networks run for only $T = 4$ time steps, so a neuron there can
        express at most five firing rates (0, 1/4, ..., 1), and a current that needs more than four steps to reach
        $\theta$ produces no spike at all (exercise 4).

        ## 6. Hard versus soft reset

        Eq. 3 throws away everything the potential had above the threshold. The common alternative, the *soft reset*
        (or *reset by subtraction*), subtracts the threshold instead and keeps the surplus:

        $$U[t] = \tilde U[t] - \theta\, S[t] \qquad \text{(soft reset; the paper uses the hard reset of Eq. 3)}.$$

        `qpsnn_lite` offers both through the argument `reset="hard"` or `reset="soft"`.
        """
    ),
    code(
        r'''
        fig = plt.figure(figsize=(9, 5.2))
        grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
        for col, reset in enumerate(["hard", "soft"]):
            ax = fig.add_subplot(grid[0, col])
            n = draw_trace(ax, 0.95, reset=reset, T=20, legend=False)
            ax.set_title(f"{reset} reset, $X = 0.95$: {n} spikes in 20 steps",
                         fontsize=10)
            ax.set_xlabel("time step $t$")
            ax.set_ylabel("potential")
        for col, tau in enumerate([0.5, 1.0]):
            ax = fig.add_subplot(grid[1, col])
            for reset, c in [("hard", color("membrane")),
                             ("soft", color("input"))]:
                ax.plot(currents, firing_rate(currents, tau=tau, reset=reset),
                        color=c, lw=1.4, label=f"{reset} reset")
            ax.set_title(rf"$\tau = {tau}$, $\theta = 1$", fontsize=10)
            ax.set_xlabel("constant input current $I$")
            ax.set_ylabel("firing rate (spikes / step)")
            ax.legend(fontsize=8, frameon=False)
        fig.suptitle(r"A soft reset keeps the surplus above $\theta$: "
                     "more spikes, and a finer rate code")
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        With a soft reset a neuron that overshoots starts the next cycle with a head start, so it fires more often and
        its rate follows the current more smoothly. Without leak ($\tau = 1$) the soft-reset rate grows almost in
        proportion to the current until it saturates: the neuron behaves like a ReLU in time, which is why
        methods that convert trained ANNs into SNNs favour it. The hard reset loses information about *how far* above
        $\theta$ the potential went, but it keeps every neuron's state bounded and simple to reason about. QP-SNN and
        the authors' code use the hard reset, and so do we from now on.

        ## 7. Explore: leak, threshold and current

        Move the sliders to change $\tau$, $\theta$ and the constant current, and watch the trace. These sliders
        recompute the neuron, so they respond only in a running notebook (Jupyter or Colab); on the static page they
        show the default setting.
        """
    ),
    code(
        r'''
        def show_trace(tau=0.5, threshold=1.0, current=0.6):
            fig, ax = plt.subplots(figsize=(7, 2.6))
            n = draw_trace(ax, current, tau=tau, threshold=threshold)
            bound = threshold * (1 - tau)
            ax.set_title(f"{n} spikes in 30 steps; the neuron fires only if "
                         rf"the current exceeds $\theta(1-\tau)$ = {bound:.2f}",
                         fontsize=9)
            ax.set_xlabel("time step $t$")
            ax.set_ylabel("potential")
            plt.show()


        def slider(value, low, high, name):
            return w.FloatSlider(value=value, min=low, max=high, step=0.05,
                                 description=name)


        explorer = w.interactive(show_trace,
                                 tau=slider(0.5, 0.05, 1.0, "leak tau"),
                                 threshold=slider(1.0, 0.25, 2.0, "threshold"),
                                 current=slider(0.6, 0.0, 2.0, "current"))
        display(explorer)
        '''
    ),
    md(
        r"""
        For reference, here is the trace at the explorer's default setting ($\tau = 0.5$, $\theta = 1$, current 0.6),
        side by side with two single changes, so the page teaches without a kernel too.
        """
    ),
    code(
        r'''
        fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), sharey=True)
        counts = {}
        cases = [(0.5, 1.0, "default"), (0.8, 1.0, "less leak"),
                 (0.5, 1.5, "higher threshold")]
        for ax, (tau, theta, label) in zip(axes, cases):
            n = draw_trace(ax, 0.6, tau=tau, threshold=theta, T=20, legend=False)
            counts[label] = n
            ax.set_title(rf"{label}: $\tau$ = {tau}, $\theta$ = {theta}"
                         f"\n{n} spikes in 20 steps", fontsize=9)
            ax.set_xlabel("time step $t$")
        axes[0].set_ylabel("potential")
        assert (counts["less leak"] > counts["default"]
                > counts["higher threshold"] == 0)
        fig.suptitle("Current 0.6: less leak fires more often; "
                     "a higher threshold silences the neuron")
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        The slider below was rendered for every position in advance, so it also works on this static page: it sweeps
        the input current at $\tau = 0.5$, $\theta = 1$. Watch the rhythm change at the steps of the staircase.
        """
    ),
    code(
        r'''
        def render_current(current):
            fig = plots.figure(5.5, 2.1)
            ax = fig.add_subplot()
            n = draw_trace(ax, current, T=24, legend=False)
            ax.set_title(f"current {current:.2f}: {n} spikes in 24 steps "
                         r"(firing needs more than $\theta(1-\tau)$ = 0.5)",
                         fontsize=9)
            ax.set_xlabel("time step $t$")
            ax.set_ylabel("potential")
            return fig


        sweep = [0.4, 0.5, 0.52, 0.55, 0.6, 0.7, 0.8, 1.0, 1.2]
        display(widgets.slider_stack(sweep, render_current, "input current",
                                     value=0.6, readout=lambda v: f"{v:.2f}"))
        '''
    ),
    md(
        r"""
        ## Exercises

        **1. The firing rate for a constant input.** A hard-reset LIF neuron with $0 < \tau < 1$ receives a constant
        current $I > \theta(1-\tau)$. After how many steps $n$ does it fire, and what is its firing rate? Check your
        formula against `firing_rate`.

        ```{dropdown} Solution
        Starting from 0, the potential after $k$ steps is $I(1-\tau^k)/(1-\tau)$. The neuron fires at the first $k$ with
        $I(1-\tau^k)/(1-\tau) \ge \theta$, that is $\tau^k \le 1 - \theta(1-\tau)/I$. Taking logarithms (and
        remembering that $\ln\tau < 0$ flips the inequality):

        $$n = \left\lceil \frac{\ln\big(1 - \theta(1-\tau)/I\big)}{\ln \tau} \right\rceil .$$

        After the spike the potential is 0 again, so the cycle repeats exactly: the rate is $1/n$ spikes per step, and
        over $T$ steps the neuron fires $\lfloor T/n \rfloor$ times. For $I \ge \theta$ the fraction is at most 1, so
        $n = 1$. The hidden cell below checks the formula against the simulation on the whole grid of currents.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 1: the formula against the simulation
        T = 200
        for tau in taus:
            fires = currents > 1.0 * (1 - tau)
            n = torch.ceil(torch.log(1 - (1 - tau) / currents[fires])
                           / math.log(tau))
            predicted = torch.zeros_like(currents)
            predicted[fires] = torch.floor(T / n) / T
            assert torch.equal(predicted, rates_tau[tau])
        print(f"exercise 1: the formula predicts all {len(currents)} measured "
              "rates exactly,")
        print(f"for each tau in {taus}")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **2. No leak.** What happens at $\tau = 1$? Which currents make the neuron fire, and how often? Predict, then
        run `firing_rate(currents, tau=1.0)`.

        ```{dropdown} Solution
        With $\tau = 1$ nothing leaks: the neuron is a plain integrate-and-fire neuron and $\tilde U[n] = nI$. Any positive
        current eventually reaches $\theta$ (the minimum current $\theta(1-\tau)$ is 0), after
        $n = \lceil \theta / I \rceil$ steps, so the rate is $1/\lceil \theta/I \rceil$. In a finite window of $T$
        steps, currents below $\theta/T$ still show no spike. The neuron also never forgets: a brief input long ago
        still counts, which makes it sensitive to the order and timing of inputs in a very different way.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        rate = firing_rate(currents, tau=1.0)
        predicted = torch.floor(T / torch.ceil(1.0 / currents)) / T
        assert torch.equal(rate, predicted)
        print(f"exercise 2: the formula matches all {len(currents)} rates at "
              "tau = 1")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **3. Soft reset from scratch.** Change one line of `lif_from_scratch` to implement the soft reset
        $U[t] = \tilde U[t] - \theta S[t]$, and check it against `neurons.lif_multistep(x, reset="soft")`.
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        def lif_soft_from_scratch(x, tau=0.5, threshold=1.0):
            u = torch.zeros_like(x[0])
            spikes = []
            for t in range(x.shape[0]):
                u_tilde = tau * u + x[t]
                s = (u_tilde >= threshold).to(x.dtype)
                u = u_tilde - threshold * s   # the change: subtract theta
                spikes.append(s)
            return torch.stack(spikes)


        x = torch.rand(20, 3, 5) * 1.5
        soft = neurons.lif_multistep(x, reset="soft")
        assert torch.equal(lif_soft_from_scratch(x), soft)
        print("exercise 3: the soft reset from scratch agrees with the package")
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        **4. Only four time steps.** The networks of chapter 02 run for $T = 4$ steps. Which constant currents make a
        neuron ($\tau = 0.5$, $\theta = 1$, $U[0] = 0$) fire at least once within those four steps?

        ```{dropdown} Solution
        The potential is highest at the last step, $\tilde U[T] = I(1-\tau^T)/(1-\tau)$, so the neuron fires within $T$
        steps if and only if $I \ge \theta(1-\tau)/(1-\tau^T)$. With $T = 4$ that is
        {glue:text}`ch01_min_current_T4:.4f`, a little above the long-run minimum $\theta(1-\tau)$. The hidden cell below
        confirms it by simulation. In a network, the currents come out of BatchNorm, whose learned scale and shift
        decide how many neurons clear this bar.
        ```
        """
    ),
    code(
        r'''
        # Solution to exercise 4
        bound_T4 = 1.0 * (1 - 0.5) / (1 - 0.5 ** 4)
        rate_T4 = firing_rate(currents, T=4)
        silent = currents[rate_T4 == 0].max()
        firing = currents[rate_T4 > 0].min()
        assert silent < bound_T4 < firing
        print("exercise 4: the simulation agrees with the bound, to the grid's "
              "resolution")
        glue("ch01_min_current_T4", bound_T4, display=False)
        ''',
        tags=["hide-input", "nbval-check-output"],
    ),
    md(
        r"""
        ## Summary

        - The paper's LIF neuron charges with a multiplicative leak, $\tilde U[t] = \tau U[t-1] + X[t]$ (Eq. 1), fires
          when $\tilde U[t] \ge \theta$ (Eq. 2) and resets hard to 0 (Eq. 3). We use the authors' code's values
          $\tau = 0.5$, $\theta = 1$, which the paper does not state.
        - A few lines of PyTorch over `[T, B, N]` implement it; `qpsnn_lite.neurons.LIF` and `lif_multistep` compute
          exactly the same spikes and potentials.
        - For a constant current $I$: no spike at all if $I \le \theta(1-\tau)$, one spike per step if $I \ge \theta$, and
          a regular rhythm of rate $1/n$ in between. The leak sets where firing starts; the threshold rescales the
          current axis.
        - A soft reset keeps the surplus above $\theta$ and gives a finer rate code; QP-SNN uses the hard reset.

        Next, chapter 02 asks how to *train* networks of these neurons, when the spike in Eq. 2 has no useful gradient.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905)
        - Y. Wu, L. Deng, G. Li, J. Zhu, L. Shi. *Spatio-temporal backpropagation for training high-performance spiking
          neural networks.* Frontiers in Neuroscience 12:331, 2018.
        - E. O. Neftci, H. Mostafa, F. Zenke. *Surrogate gradient learning in spiking neural networks.* IEEE Signal
          Processing Magazine 36(6):51-63, 2019.
        - W. Gerstner, W. M. Kistler, R. Naud, L. Paninski. *Neuronal Dynamics.* Cambridge University Press, 2014
          (chapter 1 for the integrate-and-fire neuron), free at <https://neuronaldynamics.epfl.ch>.
        """
    ),
]

# ======================================================================================================================
# Chapter 02 · Training an SNN
# ======================================================================================================================
CH02 = [
    md(
        rf"""
        # 02 · Training an SNN

        Chapter 01 built one LIF neuron. Now a network of them learns to read handwritten digits. The obstacle is
        Eq. 2: a spike is a step function, and a step function has no useful derivative, so plain backpropagation has
        nothing to work with. QP-SNN trains its networks the standard way: the forward pass keeps the exact spikes, the
        backward pass replaces the missing derivative with a *surrogate* (a triangle, in the paper), and
        backpropagation runs through the time steps of the unrolled network (STBP, Wu et al. 2018).

        **Learning goals.** After this chapter you can

        - explain why the spike blocks gradient descent and how a surrogate derivative unblocks it (the paper's
          triangle with $a = 1$, and the sigmoid and arctan alternatives);
        - check that `neurons.spike` returns the surrogate gradient through autograd;
        - follow backpropagation through time over an unrolled LIF neuron, and see what the reset path contributes;
        - encode a static image directly, read out time-averaged logits, and write down the paper's loss;
        - train the book's spiking CNN on real digits on a CPU, and inspect its learning curves, firing rates and
          spikes;
        - compare surrogates, and know the limits of a one-seed comparison.

        **Run it yourself.** {colab_badge("02_training_snns.ipynb")} The whole chapter, four short training runs
        included, takes about a minute on a laptop CPU.
        """
    ),
    INSTALL,
    setup_cell(
        r'''
        import time

        import matplotlib.pyplot as plt
        import torch
        from torch import nn

        from qpsnn_lite import data, models, neurons, plots, train
        from qpsnn_lite.plots import color
        ''',
        *SETUP_SNIPPETS,
    ),
    md(
        r"""
        ## 1. The spike has no useful gradient

        A spike is $S = \Theta(\tilde U - \theta)$ (Eq. 2). Its derivative with respect to the potential is 0
        everywhere except at $\tilde U = \theta$, where it is infinite (a Dirac $\delta$). Every gradient that reaches
        a weight passes through this factor,

        $$\frac{\partial \mathcal L}{\partial W^{l}} = \sum_t \frac{\partial \mathcal L}{\partial S^{l}[t]}\,
          \underbrace{\frac{\partial S^{l}[t]}{\partial \tilde U^{l}[t]}}_{0 \text{ almost surely}}\,
          \frac{\partial \tilde U^{l}[t]}{\partial W^{l}} + \dots,$$

        so the weights receive a zero gradient and never move. The fix is to lie, consistently and only in the backward
        pass: keep the exact step in the forward pass, and use the derivative of a smooth step in its place when
        backpropagating. The paper (App. D) uses a triangle of half-width $a$ around the threshold,

        $$\frac{\partial S[t]}{\partial \tilde U[t]} \approx \frac{1}{a}\max\big(a - |\tilde U[t] - \theta|,\ 0\big),
          \qquad a = 1.$$

        The authors' code divides by $a^2$ instead of $a$, so that the triangle has unit area for any $a$; at $a = 1$,
        the value used throughout, the two forms are identical, and `qpsnn_lite` follows the code. Two other popular
        surrogates are the derivatives of a sigmoid and of an arctan, with $x = \tilde U - \theta$:

        $$\sigma'_{\text{sigmoid}}(x) = \alpha\,\mathrm{sig}(\alpha x)\,\big(1 - \mathrm{sig}(\alpha x)\big), \qquad
          \sigma'_{\text{arctan}}(x) = \frac{\alpha/2}{1 + \big(\tfrac{\pi}{2}\alpha x\big)^{2}},$$

        where $\alpha$ sets the steepness (we use $\alpha = 4$ and $\alpha = 2$, common choices). Each integrates to 1:
        each is the derivative of a smooth step from 0 to 1, the step the backward pass pretends the neuron has.
        `neurons.surrogate_derivative` evaluates all three.
        """
    ),
    code(
        r'''
        # name: alpha (the paper's triangle uses a = 1)
        surrogates = {"triangle": 1.0, "sigmoid": 4.0, "arctan": 2.0}
        surrogate_color = {name: color(name) for name in surrogates}
        surrogate_color["triangle"] = color("membrane")  # the paper's: blue

        x = torch.linspace(-3, 3, 1201, dtype=torch.float64)  # U~ - theta
        fig, (ax_s, ax_d) = plt.subplots(1, 2, figsize=(9.5, 3.4))
        ax_s.plot(x, (x >= 0).double(), color=color("spike"), lw=2,
                  label=r"Heaviside step $\Theta$ (forward)")
        ax_d.plot(x, torch.zeros_like(x), color=color("spike"), lw=2,
                  label="true derivative: 0 ...")
        ax_d.annotate("", xy=(0, 1.15), xytext=(0, 0),
                      arrowprops=dict(arrowstyle="-|>", color=color("spike")))
        ax_d.text(0.08, 1.1, r"... and $\delta$ (infinite) at 0", fontsize=8)
        for name, alpha in surrogates.items():
            d = neurons.surrogate_derivative(x, name, alpha)
            # the smooth step it is the derivative of: integrate it (each
            # surrogate is symmetric, so the step is 1/2 at x = 0)
            area = torch.cumulative_trapezoid(d, x)
            step = torch.cat([area.new_zeros(1), area])
            step = step - step[600] + 0.5
            label = rf"{name}, $\alpha$ = {alpha:g}"
            if name == "triangle":
                label += " (the paper)"
            ax_s.plot(x, step, color=surrogate_color[name], lw=1.4, label=label)
            ax_d.plot(x, d, color=surrogate_color[name], lw=1.4, label=label)
        ax_s.set_title("Forward: the exact step; backward: a smooth stand-in",
                       fontsize=10)
        ax_s.set_ylabel("spike $S$")
        ax_d.set_title("Derivatives: zero almost everywhere vs. surrogates",
                       fontsize=10)
        ax_d.set_ylabel(r"$\partial S / \partial \tilde U$")
        ax_d.set_ylim(-0.05, 1.25)
        for ax in (ax_s, ax_d):
            ax.set_xlabel(r"distance to threshold $\tilde U - \theta$")
            ax.legend(fontsize=7, frameon=False, loc="upper left")
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        `neurons.spike(x, surrogate, alpha)` is the spike function the package's LIF uses: a custom
        `torch.autograd.Function` whose forward is the step and whose backward multiplies the incoming gradient by the
        surrogate. Autograd should therefore return the triangle formula exactly. We check it, and the areas.
        """
    ),
    code(
        r'''
        x = torch.linspace(-2, 2, 401, requires_grad=True)   # U~ - theta
        s = neurons.spike(x)                    # default: triangle, a = 1
        s.sum().backward()                      # x.grad[i] = dS_i / dx_i
        a = 1.0
        triangle = (a - x.detach().abs()).clamp(min=0) / a     # App. D
        assert torch.equal(s.detach(), (x >= 0).float())       # forward
        assert torch.equal(x.grad, triangle)                   # backward
        for name, alpha in surrogates.items():
            x.grad = None
            neurons.spike(x, name, alpha).sum().backward()
            expected = neurons.surrogate_derivative(x.detach(), name, alpha)
            assert torch.equal(x.grad, expected)
        print("neurons.spike: forward = the Heaviside step, backward = the")
        print("paper's triangle (a = 1); sigmoid and arctan match too, exactly.")

        wide = torch.linspace(-1000, 1000, 2_000_001, dtype=torch.float64)
        areas = [f"{name} {torch.trapezoid(d, wide).item():.3f}"
                 for name, alpha in surrogates.items()
                 for d in [neurons.surrogate_derivative(wide, name, alpha)]]
        print("area on [-1000, 1000]: " + ", ".join(areas))
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        ## 2. Backpropagation through time

        A network of LIF neurons run for $T$ steps is a recurrent network: the potential carries information from one
        step to the next. Unroll the loop and it becomes an ordinary feed-forward graph, $T$ copies deep, and autograd
        backpropagates through it like through any other graph. This is backpropagation through time; in SNNs it is
        called spatio-temporal backpropagation (STBP, Wu et al. 2018) because the gradient flows both *spatially*
        (to the previous layer, through $X[t] = W S^{l-1}[t]$) and *temporally* (to the previous step, through
        $U[t-1]$).

        Follow the temporal path of one neuron. The pre-reset potential $\tilde U[t]$ influences the loss through its
        spike $S[t]$ and through the potential $U[t]$ it leaves for the next step:

        $$\frac{\partial \mathcal L}{\partial \tilde U[t]} =
          \frac{\partial \mathcal L}{\partial S[t]}\,\sigma'(\tilde U[t] - \theta)
          + \tau\,\frac{\partial \mathcal L}{\partial \tilde U[t+1]}\,\frac{\partial U[t]}{\partial \tilde U[t]},$$

        $$\frac{\partial U[t]}{\partial \tilde U[t]} = \underbrace{1 - S[t]}_{\text{potential kept}}
          \;-\; \underbrace{\tilde U[t]\,\sigma'(\tilde U[t] - \theta)}_{\text{reset path}},$$

        with $\sigma'$ the surrogate. The last term comes from differentiating the hard reset
        $U[t] = \tilde U[t]\,(1 - S[t])$ through the spike. It says: raising the potential brings a spike closer, and a
        spike empties the potential. The paper's STBP rule (Eq. 14) keeps this term, and so do the authors' code and
        `qpsnn_lite`. Many implementations drop it by *detaching* the spike in the reset (snnTorch, for example,
        detaches its reset signal), which is cheaper and sometimes trains just as well.

        A tiny experiment shows the difference. One neuron receives eight input currents; the loss is simply its spike
        count, $\mathcal L = \sum_t S[t]$, so $\partial \mathcal L / \partial X[t]$ answers: how would the number of
        spikes change if the current at step $t$ were a little larger? We build the unrolled neuron by hand, once with
        the reset path and once with it detached, and compare both with the package.
        """
    ),
    code(
        r'''
        tau, threshold = 0.5, 1.0
        # X[t] of one neuron, t = 1..8
        current = torch.tensor([0.9, 0.3, 0.8, 0.2, 1.2, 0.1, 0.7, 0.6])
        T = len(current)


        def spike_count_gradient(detach_reset):
            """Unrolled LIF by hand: (U~, S, dL/dX) for L = number of spikes."""
            x = current.reshape(T, 1, 1).clone().requires_grad_(True)
            u, potentials, spikes = torch.zeros(1, 1), [], []
            for t in range(T):
                u_tilde = tau * u + x[t]                   # Eq. (1)
                s = neurons.spike(u_tilde - threshold)     # Eq. (2)
                reset = s.detach() if detach_reset else s
                u = u_tilde * (1 - reset)                  # Eq. (3)
                potentials.append(u_tilde)
                spikes.append(s)
            torch.stack(spikes).sum().backward()
            return (torch.stack(potentials).detach().flatten(),
                    torch.stack(spikes).detach().flatten(), x.grad.flatten())


        u_tilde, s, grad_kept = spike_count_gradient(detach_reset=False)
        _, s_cut, grad_cut = spike_count_gradient(detach_reset=True)

        x = current.reshape(T, 1, 1).clone().requires_grad_(True)
        spikes = neurons.lif_multistep(x, tau=tau, threshold=threshold)
        spikes.sum().backward()
        # the forward pass is the same in all three
        assert torch.equal(spikes.flatten(), s) and torch.equal(s, s_cut)
        # the package keeps the reset path ...
        assert torch.allclose(x.grad.flatten(), grad_kept, rtol=0, atol=1e-6)
        # ... and that changes every gradient but the last
        assert (grad_kept[:-1] < grad_cut[:-1]).all()
        assert grad_kept[-1] == grad_cut[-1]

        print(" t   X[t]   U~[t]  S[t]    dL/dX[t]:  reset kept  detached")
        for t in range(T):
            print(f"{t + 1:2d}  {current[t].item():5.2f}  {u_tilde[t].item():6.3f}"
                  f"  {int(s[t].item()):3d}  {grad_kept[t].item():22.4f}"
                  f"  {grad_cut[t].item():8.4f}")
        print("The package's gradient is the hand-built one with the reset path")
        print("kept (equal to float rounding).")
        ''',
        tags=["nbval-check-output"],
    ),
    code(
        r'''
        fig, ax = plt.subplots(figsize=(7.5, 3))
        steps = torch.arange(1, T + 1)
        ax.bar(steps - 0.2, grad_kept, width=0.4, color=color("membrane"),
               label="reset path kept (paper, qpsnn_lite)")
        ax.bar(steps + 0.2, grad_cut, width=0.4, color=plots.PALETTE[1],
               label="reset detached")
        ax.plot(steps[s > 0], [0.05] * int(s.sum()), "v", color=color("spike"),
                label="spike at this step")
        ax.set_xlabel("time step $t$")
        ax.set_ylabel(r"$\partial \mathcal{L} / \partial X[t]$" "\n"
                      "(spikes per unit current)")
        ax.set_title("Keeping the reset path lowers every gradient but the "
                     "last: a spike empties the potential", fontsize=10)
        ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=3)
        ax.set_ylim(0, max(grad_cut) * 1.3)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        The forward pass is identical in both versions; only the gradients differ. With the reset detached, the
        gradient ignores that a spike wipes out the potential it was built from, so it overestimates how much an extra
        bit of current helps later steps. At the last step there is no future, and both agree. Note also that every
        gradient is positive even at steps where nothing fired: the surrogate spreads credit over a window around the
        threshold. The true derivative of the spike count is zero almost everywhere (exercise 2 checks that).

        ## 3. Direct encoding and the time-averaged readout

        Digit images are static, but the network runs for $T$ steps. QP-SNN uses **direct encoding**: the same image is
        fed at every time step, and the first convolution with BatchNorm turns pixels into input currents for the first
        LIF layer, which does the actual encoding into spikes (a learned encoder, rather than a fixed rate code).

        At the other end, the last layer is a full-precision linear classifier that does not spike. It is applied to
        the spikes of every step, and the loss is the cross-entropy of the **time-averaged** output (App. D):

        $$\mathcal L = -\sum_{i} y_i \log \operatorname{softmax}_i\Big(\frac{1}{T}\sum_{t=1}^{T} O[t]\Big),
          \qquad O[t] = W^{L} S^{L-1}[t] + b^{L},$$

        with $y$ the one-hot label. The paper phrases it as the time average of the last layer's potential; because
        the classifier is linear, averaging its outputs is the same as classifying the average spike counts.

        ## 4. The digits

        The book's default data set is scikit-learn's *digits*: 1,797 real handwritten digits of 8 x 8 pixels,
        10 classes. It ships with scikit-learn, so it works offline, and a small spiking CNN learns it on a CPU in
        seconds. `data.load` returns a training and a test loader (a fixed, stratified 80/20 split; pixels normalised
        with the training split's mean and standard deviation).
        """
    ),
    code(
        r'''
        train_loader, test_loader = data.load("digits", batch_size=64)
        images, labels = next(iter(test_loader))
        n_train = len(train_loader.dataset)
        n_test = len(test_loader.dataset)
        print(f"training images: {n_train}, test images: {n_test}")
        print(f"one batch: {tuple(images.shape)} = [B, C, H, W]")
        glue("ch02_n_test", n_test, display=False)

        fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
        for digit, ax in enumerate(axes):
            first = (labels == digit).nonzero()[0].item()  # first of its class
            ax.imshow(images[first, 0], cmap="gray_r")
            ax.set_title(f"label {digit}", fontsize=8)
            ax.axis("off")
        fig.suptitle("One 8 x 8 test image per class (normalised pixels)",
                     fontsize=10)
        plt.show()
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        ## 5. The spiking CNN

        `models.build("digits_cnn", num_classes=10)` builds the book's small network: four blocks of
        convolution, BatchNorm and LIF, two max-pools, a global average pool and a linear classifier, run for $T = 4$
        time steps. Convolutions and BatchNorm see the $T \cdot B$ images of a batch at once; each LIF layer loops over
        the time steps as in chapter 01. As in the paper, the first convolution (`stem`) and the classifier stay at full
        precision in the quantized networks of the next chapters; here everything is full precision. `print(model)`
        shows every detail; the table below is a more compact view.
        """
    ),
    code(
        r'''
        torch.manual_seed(0)
        model = models.build("digits_cnn", num_classes=10)


        def describe(module):
            if isinstance(module, nn.Conv2d):
                k = "x".join(map(str, module.kernel_size))
                bias = ", bias" if module.bias is not None else ""
                return (f"Conv2d {module.in_channels} -> "
                        f"{module.out_channels}, {k}{bias}")
            if isinstance(module, nn.BatchNorm2d):
                return f"BatchNorm2d({module.num_features})"
            if isinstance(module, neurons.LIF):
                return (f"LIF(tau={module.tau}, threshold={module.threshold},"
                        f" {module.surrogate})")
            if isinstance(module, nn.Linear):
                return f"Linear {module.in_features} -> {module.out_features}"
            return type(module).__name__


        print(f"{'layer':22s} {'module':38s} {'params':>7s}")
        for name, module in model.named_modules():
            if len(list(module.children())) == 0:        # leaf modules only
                n = sum(p.numel() for p in module.parameters())
                name = name.removeprefix("features.")
                print(f"{name:22s} {describe(module):38s} {n:7,d}")
        n_params = sum(p.numel() for p in model.parameters())
        print(f"total: {n_params:,} parameters; T = {model.T} time steps")
        glue("ch02_n_params", f"{n_params:,}", display=False)
        glue("ch02_T", model.T, display=False)
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        Before training, let us take the forward pass apart and check the encoding and the readout of section 3 on one
        batch: `model.encode` repeats the image, `model.features` produces the pooled spikes of the last block at
        every step, and the classifier turns each step into logits.
        """
    ),
    code(
        r'''
        model.eval()                     # BatchNorm uses running statistics
        with torch.no_grad():
            encoded = model.encode(images)            # [T, B, C, H, W]
            features = model.features(encoded)        # [T, B, 64]
            per_step = model.classifier(features)     # O[t]: [T, B, 10]
            logits = model(images)                    # [B, 10]

        assert encoded.shape == (model.T, *images.shape)
        # direct encoding: the same image at every step
        assert all(torch.equal(encoded[t], images) for t in range(model.T))
        # time-averaged readout = classifying the time-averaged spikes
        assert torch.allclose(logits, per_step.mean(0))
        assert torch.allclose(logits, model.classifier(features.mean(0)),
                              atol=1e-6)
        loss = nn.functional.cross_entropy(logits, labels)  # the paper's loss
        print(f"images  {tuple(images.shape)}")
        print(f"encoded {tuple(encoded.shape)}   (repeated T times)")
        print(f"features {tuple(features.shape)}    (last block, pooled)")
        print(f"per-step logits {tuple(per_step.shape)}")
        print(f"logits {tuple(logits.shape)}    (averaged over T)")
        ''',
        tags=["nbval-check-output"],
    ),
    md(
        r"""
        ## 6. Training

        `train.fit` runs the loop you would write yourself: for each batch, the forward pass above, the cross-entropy of
        the time-averaged logits, `loss.backward()` (autograd does STBP through the unrolled LIF layers, with the
        triangle surrogate) and an optimizer step. Its defaults follow the authors' code: Adam, learning rate
        $10^{-3}$ with cosine decay, weight decay $10^{-5}$ on the convolution weights. It evaluates on the test set after
        every epoch and returns a `History`.
        """
    ),
    code(
        r'''
        EPOCHS = 8
        tic = time.perf_counter()
        history = train.fit(model, train_loader, test_loader, epochs=EPOCHS,
                            progress=False)   # progress=True shows a bar
        seconds = time.perf_counter() - tic

        print("epoch  train loss  train acc  test loss  test acc")
        for e in range(EPOCHS):
            print(f"{history.epoch[e]:5d}  {history.train_loss[e]:10.3f}"
                  f"  {history.train_accuracy[e]:9.1%}"
                  f"  {history.test_loss[e]:9.3f}"
                  f"  {history.test_accuracy[e]:8.1%}")
        print(f"{EPOCHS} epochs in {seconds:.0f} s; "
              f"final test accuracy {history.final_accuracy:.1%}")
        glue("ch02_epochs", EPOCHS, display=False)
        glue("ch02_seconds", seconds, display=False)
        glue("ch02_accuracy", 100 * history.final_accuracy, display=False)
        '''
    ),
    md(
        r"""
        After {glue:text}`ch02_epochs` epochs ({glue:text}`ch02_seconds:.0f` s on the CPU that built this page) the
        spiking CNN classifies {glue:text}`ch02_accuracy:.1f` % of the {glue:text}`ch02_n_test` test digits correctly,
        with binary spikes and only {glue:text}`ch02_T` time steps. The curves show how it got there.
        """
    ),
    code(
        r'''
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
        for split in ("train", "test"):
            loss = getattr(history, f"{split}_loss")
            acc = [100 * a for a in getattr(history, f"{split}_accuracy")]
            ax_loss.plot(history.epoch, loss, "o-", ms=4, color=color(split),
                         label=split)
            ax_acc.plot(history.epoch, acc, "o-", ms=4, color=color(split),
                        label=split)
        ax_loss.set_ylabel("cross-entropy loss (nats)")
        ax_acc.set_ylabel("accuracy (%)")
        for ax in (ax_loss, ax_acc):
            ax.set_xlabel("epoch")
            ax.legend(frameon=False)
        ax_loss.set_title("Loss falls fast, then flattens as the learning "
                          "rate decays", fontsize=10)
        ax_acc.set_title(f"Test accuracy reaches "
                         f"{100 * history.final_accuracy:.1f} % after "
                         f"{EPOCHS} epochs", fontsize=10)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        The training numbers are averages over each epoch while the weights were still changing, with BatchNorm using
        batch statistics; the test numbers are measured after the epoch, in evaluation mode. That is why test accuracy
        can sit above training accuracy in the first epochs.

        ## 7. Inside the trained network: firing rates and spikes

        How busy are the neurons? A forward hook on each LIF layer records its output spikes `[T, B, C, H, W]` as the
        test set flows through, and the mean of those zeros and ones is the firing rate: the fraction of (neuron, time
        step) pairs with a spike. Sparse firing is what makes SNNs cheap on neuromorphic hardware (chapter 08 turns it
        into synaptic operations and energy).
        """
    ),
    code(
        r'''
        def record_spikes(model, images):
            """(logits, {block: spikes [T, B, C, H, W]}) of every LIF layer."""
            spikes, handles = {}, []
            for name, module in model.named_modules():
                if isinstance(module, neurons.LIF):
                    block = name.split(".")[-2]   # features.stem.lif -> stem
                    def hook(module, inputs, output, block=block):
                        spikes[block] = output
                    handles.append(module.register_forward_hook(hook))
            try:
                with torch.no_grad():
                    logits = model(images)
            finally:
                for handle in handles:
                    handle.remove()
            return logits, spikes


        def channel_rates(model, loader):
            """Firing rate of every channel of every LIF layer, over a loader."""
            model.eval()
            totals, counts = {}, {}
            for images, _ in loader:
                _, spikes = record_spikes(model, images)
                for block, s in spikes.items():            # [T, B, C, H, W]
                    per_channel = s.sum(dim=(0, 1, 3, 4))
                    totals[block] = totals.get(block, 0) + per_channel
                    counts[block] = counts.get(block, 0) + s[:, :, 0].numel()
            return {block: totals[block] / counts[block] for block in totals}


        rates = channel_rates(model, test_loader)          # {block: [C]}
        blocks = list(rates)
        quiet = {block: int((r < 0.01).sum()) for block, r in rates.items()}
        print("layer    channels  mean rate  channels below 1 %")
        for block in blocks:
            print(f"{block:7s}  {len(rates[block]):8d}"
                  f"  {rates[block].mean().item():9.3f}  {quiet[block]:18d}")
        '''
    ),
    code(
        r'''
        fig, (ax_m, ax_c) = plt.subplots(1, 2, figsize=(9.5, 3.2))
        means = [rates[b].mean().item() for b in blocks]
        ax_m.bar([f"{b}.lif" for b in blocks], means, color=color("membrane"))
        ax_m.set_xlabel("LIF layer")
        ax_m.set_ylabel("firing rate (spikes / neuron / step)")
        ax_m.set_title(f"On average a neuron fires at {sum(means) / len(means):.0%}"
                       " of the time steps", fontsize=10)
        for i, block in enumerate(blocks):
            r = rates[block].sort(descending=True).values
            ax_c.plot(torch.linspace(0, 1, len(r)), r, "o-", ms=2.5, lw=1,
                      color=plots.PALETTE[i], label=f"{block}.lif")
        ax_c.set_xlabel("channel rank (0 = most active, 1 = least active)")
        ax_c.set_ylabel("channel firing rate")
        n_quiet = sum(quiet.values())
        n_channels = sum(len(r) for r in rates.values())
        low = min(r.min().item() for r in rates.values())
        high = max(r.max().item() for r in rates.values())
        ax_c.set_title(f"Channel rates span {low:.0%} to {high:.0%}; "
                       f"{n_quiet} of {n_channels} are below 1 %", fontsize=10)
        ax_c.legend(fontsize=8, frameon=False, loc="center left",
                    bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        plt.show()
        glue("ch02_n_quiet", n_quiet, display=False)
        glue("ch02_n_channels", n_channels, display=False)
        '''
    ),
    md(
        r"""
        Here {glue:text}`ch02_n_quiet` of the {glue:text}`ch02_n_channels` channels fire at under 1 % of the steps.
        So which channels could the network do without? Firing rate alone does not say whether a channel carries
        information the next layer needs; answering that question is the job of the pruning criteria of chapters 05
        and 06 (firing rate is one of the candidates they compare; SVS is the paper's answer).

        For one test image, here are the spikes themselves: for the four most active channels of the first two LIF
        layers, the 8 x 8 spike map at each of the four time steps and, in the last column, their average over time:
        the *firing-rate map* whose singular values the SVS pruning criterion of chapter 06 counts.
        """
    ),
    code(
        r'''
        image, label = images[:1], labels[0].item()
        logits, spikes = record_spikes(model, image)
        rows = []
        for block in ("stem", "block2"):
            s = spikes[block][:, 0]                      # [T, C, H, W]
            top = s.mean(dim=(0, 2, 3)).argsort(descending=True)[:4]
            rows += [(block, int(c), s[:, c]) for c in top]

        fig = plt.figure(figsize=(7.5, 8.4), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[1, 3.6])
        ax_in = left.add_subplot(3, 1, 1)
        ax_in.imshow(image[0, 0], cmap="gray_r")
        ax_in.set_title(f"input digit: {label}\n"
                        f"predicted: {logits.argmax().item()}", fontsize=9)
        ax_in.set_xticks([])
        ax_in.set_yticks([])
        axes = right.subplots(len(rows), model.T + 1)
        for r, (block, channel, maps) in enumerate(rows):
            for t in range(model.T):
                axes[r, t].imshow(maps[t], cmap="gray_r", vmin=0, vmax=1)
            rate_map = axes[r, -1].imshow(maps.mean(0), cmap="viridis",
                                          vmin=0, vmax=1)
            axes[r, 0].set_ylabel(f"{block}\nch. {channel}", fontsize=8)
        for t in range(model.T):
            axes[0, t].set_title(f"$t = {t + 1}$", fontsize=9)
        axes[0, -1].set_title("rate", fontsize=9)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        right.colorbar(rate_map, ax=axes[:, -1], shrink=0.25,
                       label="spikes / step")
        fig.suptitle("Spike maps (black = spike) of the four most active "
                     "channels of stem and block2:\neach channel fires in its "
                     "own spatial pattern, which shifts from step to step",
                     fontsize=10)
        plt.show()
        '''
    ),
    md(
        r"""
        ## 8. Does the surrogate matter?

        The paper uses the triangle. Would the sigmoid or the arctan do as well? `models.build` passes `lif_kwargs` to
        every LIF layer, so we can train the same network with each surrogate: same initialisation (seed 0), same
        data order, {glue:text}`ch02_sur_epochs` epochs each to keep the chapter short.
        """
    ),
    code(
        r'''
        SURROGATE_EPOCHS = 4
        comparison = {}
        for name, alpha in surrogates.items():
            torch.manual_seed(0)       # the same initial weights for each
            net = models.build("digits_cnn", num_classes=10,
                               lif_kwargs={"surrogate": name, "alpha": alpha})
            assert all(m.surrogate == name and m.alpha == alpha
                       for m in net.modules() if isinstance(m, neurons.LIF))
            tic = time.perf_counter()
            h = train.fit(net, train_loader, test_loader,
                          epochs=SURROGATE_EPOCHS, progress=False)
            comparison[name] = (h, time.perf_counter() - tic)
            glue(f"ch02_acc_{name}", 100 * h.final_accuracy, display=False)

        print(f"surrogate  alpha  test accuracy ({SURROGATE_EPOCHS} epochs)"
              "  seconds")
        for name, (h, sec) in comparison.items():
            print(f"{name:9s}  {surrogates[name]:5.1f}"
                  f"  {h.final_accuracy:24.1%}  {sec:7.1f}")
        finals = [h.final_accuracy for h, _ in comparison.values()]
        spread = max(finals) - min(finals)
        glue("ch02_sur_epochs", SURROGATE_EPOCHS, display=False)
        glue("ch02_sur_spread", 100 * spread, display=False)
        glue("ch02_one_image", 100 / n_test, display=False)

        fig, ax = plt.subplots(figsize=(6, 3))
        for name, (h, _) in comparison.items():
            ax.plot(h.epoch, [100 * a for a in h.test_accuracy], "o-", ms=4,
                    color=surrogate_color[name],
                    label=rf"{name} ($\alpha$ = {surrogates[name]:g})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(range(1, SURROGATE_EPOCHS + 1))
        ax.set_title(f"All three surrogates train the network (final spread "
                     f"{100 * spread:.1f} points, one seed)", fontsize=10)
        ax.legend(frameon=False)
        fig.tight_layout()
        plt.show()
        '''
    ),
    md(
        r"""
        After {glue:text}`ch02_sur_epochs` epochs the triangle reaches {glue:text}`ch02_acc_triangle:.1f` %, the sigmoid
        {glue:text}`ch02_acc_sigmoid:.1f` % and the arctan {glue:text}`ch02_acc_arctan:.1f` % test accuracy (one test
        image is worth {glue:text}`ch02_one_image:.2f` points). This is **one seed per surrogate**, so a gap of a few
        test images would not be evidence of a ranking: exercise 5 measures how much the seed alone moves the result.
        What the experiment does show is that all three train this network, ending within
        {glue:text}`ch02_sur_spread:.1f` points of each other. That they land close together is less surprising than
        it looks: with the $\alpha$ values we chose, all three surrogates have the same peak height, 1 (the sigmoid's
        peak is $\alpha/4$, the arctan's $\alpha/2$), and differ only in shape. Zenke and Vogels (2021) found exactly
        this: surrogate-gradient learning is robust to the surrogate's shape, and far more sensitive to its scale
        (exercise 6).

        ## Exercises

        **1. The triangle's width.** The paper writes the triangle as $\frac{1}{a}\max(a - |x|, 0)$; the authors' code
        (and `qpsnn_lite`) as $\frac{1}{a^2}\max(a - |x|, 0)$. For $a = 0.5$, what are the peak height and the area of
        each? Why might the code's version be preferable when you tune $a$?

        ```{dropdown} Solution
        Both are triangles of half-width $a$. The paper's form peaks at $1$ and has area $a \cdot 1 = 0.5$; the code's
        form peaks at $1/a = 2$ and has area $1$. With the code's normalisation, changing $a$ changes only how wide the
        window of neurons that receive gradient is, not the total gradient a neuron receives when its potential sweeps
        past the threshold, so the effective learning rate does not drift with $a$. At $a = 1$ the two coincide, which
        is why the paper and the code agree on everything the paper reports.
        ```

        **2. The true gradient.** Estimate $\partial \mathcal L / \partial X[t]$ for the spike-count loss of section 2
        by finite differences: add $\pm 10^{-3}$ to one current at a time and count spikes. What do you get, and what
        does it tell you about the surrogate?
        """
    ),
    code(
        r'''
        # Solution to exercise 2
        def spike_count(currents):
            return neurons.lif_multistep(currents.reshape(-1, 1, 1)).sum().item()


        h = 1e-3
        finite_differences = []
        for t in range(T):
            bump = torch.zeros(T)
            bump[t] = h
            up, down = spike_count(current + bump), spike_count(current - bump)
            finite_differences.append((up - down) / (2 * h))
        print("finite differences:", finite_differences)
        print("surrogate gradient:", [round(g, 2) for g in grad_kept.tolist()])
        ''',
        tags=["hide-input", "hide-output", "nbval-check-output"],
    ),
    md(
        r"""
        ```{dropdown} Solution to exercise 2 (discussion)
        Every finite difference is zero: a small change of current moves no potential across the threshold, so the
        spike count does not change. (Only a current that puts some potential *exactly* at the threshold would show a
        jump, the Dirac spike of section 1.) The true gradient gives gradient descent nothing to follow. The surrogate
        instead answers a smoothed question: how much closer would the potentials be to producing a spike? That
        smoothed signal is what trains the network.
        ```

        **3. Fewer or more time steps at test time.** The network was trained with $T = 4$. Evaluate the trained
        `model` with $T = 1, 2, 4, 8$ (set `model.T`, then `train.evaluate(model, test_loader)`), without retraining.
        What do you expect at $T = 1$, where no neuron can integrate over time?
        """
    ),
    code(
        r'''
        # Solution to exercise 3
        results = []
        for steps in (1, 2, 4, 8):
            model.T = steps
            accuracy, _ = train.evaluate(model, test_loader)
            results.append(f"evaluated with T = {steps}: {accuracy:.1%}")
        model.T = 4
        print("\n".join(results))
        ''',
        tags=["hide-input", "hide-output"],
    ),
    md(
        r"""
        ```{dropdown} Solution to exercise 3 (discussion)
        Compare the printed accuracies with the $T = 4$ row. With fewer steps, neurons whose current needs several steps
        to reach the threshold (chapter 01, exercise 4) never fire, and the readout averages fewer spikes, so the network
        sees a coarser picture than the one it was trained on. With more steps it sees more spikes, but of a pattern it
        was never trained on, and the time-averaged logits need not be calibrated for it. A network meant to run at
        several $T$ should be trained at those $T$. The paper fixes $T$ per data set and architecture (for example 2
        for ResNet20 and 4 for VGG-16 on CIFAR).
        ```

        **4. The readout.** Show that averaging the classifier's outputs over time equals classifying the time-averaged
        spikes. Would the same hold if we averaged the softmax *probabilities* over time instead?

        ```{dropdown} Solution
        The classifier is affine: $\frac1T\sum_t (W s[t] + b) = W\big(\frac1T\sum_t s[t]\big) + b$, because sums commute
        with matrix products; the `assert` of section 5 checked it numerically. Softmax is not linear, so
        $\frac1T\sum_t \operatorname{softmax}(O[t]) \ne \operatorname{softmax}\big(\frac1T\sum_t O[t]\big)$ in general.
        Averaging probabilities is a different (also used) readout; the paper's loss averages the logits.
        ```

        **5. How much is one seed worth?** Train the triangle network for {glue:text}`ch02_sur_epochs` epochs with
        three different seeds (`torch.manual_seed(seed)` before `models.build`, and `train.fit(..., seed=seed)`), and
        compare the spread of the test accuracies with the differences between surrogates in section 8.

        ````{dropdown} Solution
        ```python
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            net = models.build("digits_cnn", num_classes=10)
            h = train.fit(net, train_loader, test_loader, epochs=4,
                          seed=seed, progress=False)
            print(seed, f"{h.final_accuracy:.1%}")
        ```
        If the seed-to-seed spread is as large as the gap between two surrogates, the comparison cannot rank them; you
        would need several seeds per surrogate and a look at the mean and its standard error. This is true of every
        small comparison in this book, and we say so each time.
        ````

        **6. The scale of the surrogate.** Keep the sigmoid's shape but change its scale: train for
        {glue:text}`ch02_sur_epochs` epochs with `lif_kwargs={"surrogate": "sigmoid", "alpha": 16.0}` (peak 4, a
        narrow window) and with `alpha=1.0` (peak 1/4, a wide, flat window). What do you expect, and why?

        ```{dropdown} Solution
        The surrogate multiplies every gradient that crosses a LIF layer, and there are four in a row. A narrow window
        (`alpha=16`, peak 4) gives a gradient only to neurons whose potential lies very close to the threshold: most
        neurons get none, the few that do get an amplified one (up to a factor 4 per layer), so expect slower and
        noisier learning. A wide window (`alpha=1`, peak 1/4) lets nearly every neuron take some credit but shrinks
        the gradient at every layer; Adam's per-parameter normalisation undoes much of that shrinkage, plain SGD
        (`train.fit(..., optimizer="sgd", lr=0.1)`) does not. Which effect matters more for this network is what your
        runs tell you; compare them with the seed-to-seed spread of exercise 5 before concluding.
        ```

        ## Summary

        - The spike's true derivative is zero almost everywhere, so gradients die at every neuron. Surrogate gradients
          keep the exact step forward and use a smooth stand-in backward: the paper's triangle,
          $\frac1a\max(a - |\tilde U - \theta|, 0)$ with $a = 1$, or a sigmoid or arctan. `neurons.spike` does this
          through autograd.
        - Unrolled over time, an SNN is a feed-forward graph and autograd does STBP. Differentiating the hard reset adds
          a term that the paper keeps and many libraries detach; it changes the gradients but not the forward pass.
        - Direct encoding repeats the image at every step; the readout averages the classifier's outputs over time, and
          the loss is the cross-entropy of that average.
        - `models.build("digits_cnn", 10)` and `train.fit` train a {glue:text}`ch02_n_params`-parameter spiking CNN to
          {glue:text}`ch02_accuracy:.1f` % test accuracy on the digits in {glue:text}`ch02_epochs` epochs on a CPU.
        - All three surrogates train it; a one-seed comparison cannot rank them.

        Next, chapter 03 stores the weights of this network with a few bits each, the first half of QP-SNN.

        ## References

        - W. Wei, M. Zhang, et al. *QP-SNN: Quantized and Pruned Spiking Neural Networks.* ICLR 2025.
          [arXiv:2502.05905](https://arxiv.org/abs/2502.05905) (App. D: surrogate and loss.)
        - Y. Wu, L. Deng, G. Li, J. Zhu, L. Shi. *Spatio-temporal backpropagation for training high-performance spiking
          neural networks.* Frontiers in Neuroscience 12:331, 2018.
        - E. O. Neftci, H. Mostafa, F. Zenke. *Surrogate gradient learning in spiking neural networks.* IEEE Signal
          Processing Magazine 36(6):51-63, 2019.
        - F. Zenke, T. P. Vogels. *The remarkable robustness of surrogate gradient learning for instilling complex
          function in spiking neural networks.* Neural Computation 33(4):899-925, 2021.
        - E. Alpaydin, C. Kaynak. *Optical Recognition of Handwritten Digits* (the source of scikit-learn's digits). UCI
          Machine Learning Repository, 1998.
        """
    ),
]


CHAPTERS = {"01": (CH01, "01_lif_neurons.ipynb"), "02": (CH02, "02_training_snns.ipynb")}


def main(argv: list[str]) -> int:
    return write_chapters(CHAPTERS, argv, note="(outputs cleared: execute it next)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
