"""The book's figures: one colour per method in every chapter, colour-blind-safe (Okabe-Ito palette).

Every chapter imports its colours from here, so "ReScaW" or "SVS" has the same colour on every page.
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["PALETTE", "COLORS", "color", "figure", "to_png"]

# Okabe-Ito: distinguishable for the common forms of colour blindness.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

COLORS = {
    # chapters 01-02
    "membrane": "#0072B2",
    "threshold": "#D55E00",
    "spike": "#000000",
    "input": "#009E73",
    "train": "#0072B2",
    "test": "#E69F00",
    "triangle": "#0072B2",
    "sigmoid": "#E69F00",
    "arctan": "#009E73",
    "hard": "#0072B2",
    "soft": "#CC79A7",
    # precision / quantizers (chapters 03-04, 07)
    "full precision": "#000000",
    "vanilla": "#E69F00",
    "rescaw": "#0072B2",
    "mean": "#0072B2",
    "max": "#CC79A7",
    "percentile": "#009E73",
    "masked": "#D55E00",
    "unmasked": "#0072B2",
    # pruning criteria (chapters 05-07)
    "svs": "#0072B2",
    "sca": "#D55E00",
    "l1": "#009E73",
    "firing_rate": "#CC79A7",
    "random": "#999999",
}


def color(name: str) -> str:
    """The colour of a method or quantity (case-insensitive); a palette colour chosen by hash for unknown names
    (never the pale yellow, which is unreadable on white)."""
    key = name.lower()
    readable = [c for c in PALETTE if c != "#F0E442"]
    return COLORS.get(key, readable[sum(map(ord, key)) % len(readable)])


def figure(width: float = 6.0, height: float = 3.5, dpi: int = 100) -> Figure:
    """A ``matplotlib.figure.Figure`` detached from pyplot (so widgets can render it without displaying it twice)."""
    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def to_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a figure, for ``ipywidgets.Image``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
