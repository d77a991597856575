"""Run a model with forward hooks in a chosen mode, and leave it exactly as it was afterwards.

Scoring channels (``scoring``), measuring firing rates and SOPs (``metrics``), masking channels (``surgery.masked``),
recalibrating BatchNorm and evaluating all need the same discipline: register hooks, switch the train/eval mode,
and on exit, also after an exception, remove the hooks and restore every module's own mode.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Literal

from torch import nn

__all__ = ["hooked"]

Hook = tuple  # (module, "forward" | "forward_pre", function)


@contextmanager
def hooked(model: nn.Module, hooks: Iterable[Hook] = (), mode: Literal["eval", "train"] | None = "eval"
           ) -> Iterator[nn.Module]:
    """Inside the ``with``: ``hooks`` registered (``(module, "forward" | "forward_pre", function)`` triples) and
    ``model`` in ``mode`` (``"eval"``, ``"train"``, or None to leave it). On exit, also on an exception, the hooks
    are removed and every submodule's ``training`` flag is restored."""
    modes = {module: module.training for module in model.modules()}
    handles = []
    try:
        for module, kind, function in hooks:
            register: Callable = {"forward": module.register_forward_hook,
                                  "forward_pre": module.register_forward_pre_hook}[kind]
            handles.append(register(function))
        if mode is not None:
            model.train(mode == "train")
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
