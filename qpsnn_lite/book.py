"""What every chapter of the book does in its setup cell, written once: figures, seeds, the device, glue, a clock.

A chapter's setup cell is a few readable lines::

    from qpsnn_lite import book
    from qpsnn_lite.book import glue
    chapter = book.setup()          # PNG figures in the book's style, seed 0, device chosen and printed

``glue`` stores a value for the rendered book's ``{glue:text}`` roles when the book's tools (myst-nb) are installed
and is a quiet stand-in elsewhere (Colab, a plain Jupyter): a chapter runs the same in both. Used by every chapter;
nothing here is part of the method.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["Chapter", "setup", "glue", "glue_words", "clock", "choose_device", "STYLE"]

# The book's figure style: small PNGs, no top/right spines, and type one step larger than matplotlib's default,
# because a figure 8-9 inches wide is shown in a text column of about 680 pixels (at 80 dpi, 1 pt is about 1 px).
STYLE = {
    "figure.dpi": 80,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
}


@dataclass
class Chapter:
    """What :func:`setup` chose, and a clock started when the chapter began."""

    device: torch.device
    started: tuple[float, float] = field(default_factory=lambda: (time.perf_counter(), time.process_time()))

    def elapsed(self) -> tuple[float, float]:
        """Wall-clock and CPU seconds since :func:`setup`."""
        wall, cpu = self.started
        return time.perf_counter() - wall, time.process_time() - cpu


def clock():
    """Wall-clock and CPU seconds so far, as an array: the difference of two calls is what a section cost."""
    return np.array([time.perf_counter(), time.process_time()])


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given (checked), else CUDA when a GPU is there, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but this runtime has no GPU: use device='cpu'")
    return chosen


def setup(seed: int = 0, device: str | torch.device | None = None, quiet: bool = False) -> Chapter:
    """Prepare a chapter: PNG inline figures in the book's style, ``torch.manual_seed(seed)``, the device.

    Prints the device once (unless ``quiet``) and returns a :class:`Chapter` whose ``device`` the chapter passes on
    and whose ``elapsed()`` reports the chapter's run time.
    """
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats  # optional: IPython kernels only
    except ImportError:  # outside IPython (a plain script): nothing to configure
        pass
    else:
        set_matplotlib_formats("png")
    plt.rcParams.update(STYLE)
    torch.manual_seed(seed)
    chapter = Chapter(device=choose_device(device))
    if not quiet:
        name = torch.cuda.get_device_name(chapter.device) if chapter.device.type == "cuda" else "CPU"
        print(f"device: {chapter.device} ({name}), torch {torch.__version__}")
    return chapter


def glue(name: str, value, display: bool = True) -> None:
    """``myst_nb.glue`` when the book's tools are installed; elsewhere print the value if ``display``.

    A NumPy or PyTorch scalar is glued as the Python number it holds, so that ``{glue:text}`name:.1f``` can
    format it (the stored text of ``np.float64(3.0)`` is not a number the book's formatter reads).
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    try:
        from myst_nb import glue as myst_glue  # optional: only the book's build environment has myst-nb
    except ImportError:
        if display:
            print(f"{name} = {value}")
        return
    myst_glue(name, value, display=display)


def glue_words(name: str, text: str) -> None:
    """Glue a phrase (rendered with ``{glue:md}``) whose wording depends on a measured result."""
    from IPython.display import Markdown  # a dependency, imported here: loading IPython is slow, and only this needs it

    glue(name, Markdown(text), display=False)
