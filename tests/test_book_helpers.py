"""qpsnn_lite.book: what every chapter's setup cell calls."""
from __future__ import annotations

import builtins

import matplotlib.pyplot as plt
import pytest
import torch

from qpsnn_lite import book


def test_setup_seeds_styles_and_prints_the_device(capsys):
    chapter = book.setup(seed=3)
    first = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(first, torch.rand(3))
    assert plt.rcParams["figure.dpi"] == book.STYLE["figure.dpi"]
    assert chapter.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert capsys.readouterr().out.startswith(f"device: {chapter.device}")
    wall, cpu = chapter.elapsed()
    assert wall >= 0 and cpu >= 0


def test_explicit_cpu_device_and_a_missing_gpu():
    assert book.setup(device="cpu", quiet=True).device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU: use device='cpu'"):
            book.choose_device("cuda")


def test_glue_without_the_book_tools_prints_only_when_asked(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name == "myst_nb":
            raise ImportError("no myst_nb here (as on Colab)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    book.glue("hidden", 1.5, display=False)
    book.glue("shown", 2.5)
    assert capsys.readouterr().out == "shown = 2.5\n"


def test_clock_differences_are_wall_and_cpu_seconds():
    start = book.clock()
    sum(i * i for i in range(20000))
    spent = book.clock() - start
    assert spent.shape == (2,) and (spent >= 0).all()


def test_numpy_and_torch_scalars_are_glued_as_python_numbers(monkeypatch):
    import numpy as np
    import torch

    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    book.glue("np", np.float64(398.0), display=False)
    book.glue("torch", torch.tensor(3), display=False)
    book.glue("array", np.array([1.0, 2.0]), display=False)
    assert type(glued["np"]) is float and glued["np"] == 398.0
    assert type(glued["torch"]) is int and glued["torch"] == 3
    assert isinstance(glued["array"], np.ndarray)  # not a scalar: glued as it is
