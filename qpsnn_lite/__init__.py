"""qpsnn-lite: an executable tutorial of QP-SNN (Wei et al., ICLR 2025), quantized and pruned spiking neural networks.

Each module grows out of a chapter of the book: ``neurons`` (01-02), ``data``/``models``/``train`` (02),
``quant`` (03-04), ``prune`` (05-06), ``pipeline`` (07), ``metrics``/``export`` (08).
"""
from importlib import import_module

__version__ = "0.1.0"

_MODULES = ("neurons", "quant", "models", "data", "train", "metrics", "prune", "pipeline", "export", "widgets", "plots")
__all__ = list(_MODULES) + ["__version__"]


def __getattr__(name: str):
    # Submodules are imported on first use, so `import qpsnn_lite` stays fast and light.
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
