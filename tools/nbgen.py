"""Helpers shared by the notebook generators ``tools/make_chXX_chYY.py``.

Each generator authors two chapters as Python lists of cells, so that prose and code are easy to edit and review, and
writes them to ``book/`` with :func:`write_chapters`. Code cells are raw strings: what you read in a generator is
exactly what the notebook holds. Cell tags go in ``cell.metadata["tags"]`` (``nbval-check-output``, ``nbval-skip``,
``hide-input``).

The generators are run as scripts from the repository's root (``python tools/make_ch03_ch04.py``) and import this
module as ``nbgen``.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
REPO_URL = "github/qpsnn-lite/qpsnn-lite/blob/main"


def md(text: str, tags: list[str] | None = None):
    cell = new_markdown_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def code(*parts: str, tags: list[str] | None = None, width: int | None = None):
    """A code cell; several parts are dedented separately and joined by a blank line (to splice in shared snippets).

    With ``width``, warn on stderr about every code line longer than that many characters.
    """
    source = "\n\n".join(textwrap.dedent(part).strip("\n") for part in parts)
    if width is not None:
        for line in source.splitlines():
            if len(line) > width:
                print(f"warning: code line of {len(line)} characters: {line.strip()[:60]}", file=sys.stderr)
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def colab_badge(name: str) -> str:
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/{REPO_URL}/book/{name})"
    )


# The first code cell of every chapter: installs the package on Colab, does nothing elsewhere.
INSTALL = code(
    '''
    import sys
    if "google.colab" in sys.modules:  # on Colab: install the book's package
        import subprocess
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "git+https://github.com/qpsnn-lite/qpsnn-lite"], check=True)
    ''',
    tags=["nbval-skip"],
)

# `glue` from myst_nb, or a stand-in that prints the value where the book's tools are not installed (chapters 03-08).
GLUE_IMPORT = '''
try:
    from myst_nb import glue  # stores a value for the rendered book's {glue:text} roles
except ImportError:  # e.g. on Colab, where the book's build tools are not installed
    def glue(name, value, display=True):
        if display:
            print(f"{name} = {value}")
'''

PLOT_SETUP = '''
torch.manual_seed(0)
plt.rcParams.update({"figure.dpi": 80, "axes.spines.top": False, "axes.spines.right": False})
'''

PNG_FIGURES = '%config InlineBackend.figure_format = "png"'


def setup_cell(imports: str, *snippets: str, **options):
    """The code cell after INSTALL: PNG figures and the chapter's imports, then snippets such as GLUE_IMPORT and
    PLOT_SETUP, each after a blank line. ``options`` (``tags``, ``width``) go to :func:`code`."""
    return code(PNG_FIGURES + "\n" + textwrap.dedent(imports).strip("\n"), *snippets, **options)


def write(cells: list, name: str) -> Path:
    """Write the cells as ``book/<name>`` (without outputs) and return its path."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "book" / name
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def write_chapters(chapters: dict[str, tuple[list, str]], keys: list[str] | None = None, note: str = "") -> int:
    """Write the chapters named by ``keys`` (all of them if none), each ``key: (cells, file name)``; skip empty lists.

    Prints ``wrote book/<name>`` per notebook, followed by ``note`` if one is given. Returns 0, a script's exit status.
    """
    for key in keys or list(chapters):
        cells, name = chapters[key]
        if cells:
            print("wrote", write(cells, name).relative_to(ROOT), *([note] if note else []))
    return 0
