"""Execute notebooks in place and store their outputs and widget state, as the book renders them.

Usage: python tools/execute_notebooks.py [book/NN_slug.ipynb ...]   (default: every chapter)
Uses nbclient (installed with Jupyter Book), then runs tools/check_book.py --notebooks-only on each notebook.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path, timeout: int = 900) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((ROOT / "book").glob("[0-9]*.ipynb"))
    status = 0
    for path in paths:
        seconds = execute(path)
        print(f"{path} executed in {seconds:.0f} s", flush=True)
        status |= subprocess.call([sys.executable, str(ROOT / "tools" / "check_book.py"), "--notebooks-only", str(path)])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
