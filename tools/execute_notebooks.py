"""The one command that refreshes a chapter: sync its .md/.ipynb pair, execute it, record what produced the outputs.

Usage (from the repository's root):

    python tools/execute_notebooks.py book/04_rescaw.md [book/05_structured_pruning.md ...]
    python tools/execute_notebooks.py                    # every chapter (about ten minutes on 2 CPU cores)
    python tools/execute_notebooks.py --sync-only ...    # only sync the pairs (jupytext --sync), no execution
    python tools/execute_notebooks.py --stamp-install ...# rewrite the Colab install cell from _config.yml/pyproject

For each chapter: ``jupytext --sync`` (the newer of the two files wins: edit the .md, or the .ipynb in Jupyter), the
install cell stamped from the one setting, execution in place with nbclient (widget state kept), the record of
``tools/book_sources.py`` (cell and package hashes, seconds) stored in the notebook, then the checks of
``tools/check_book.py --notebooks-only``. Commit both files of each pair afterwards.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_sources  # noqa: E402  (a sibling module of this script)

ROOT = book_sources.ROOT


def sync(md: Path) -> None:
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--sync", str(md)], check=True)


class SourceChanged(RuntimeError):
    """The chapter's .md was edited while the chapter executed: its outputs would belong to the older source."""


def execute(md: Path, timeout: int = 1200) -> float:
    ipynb = md.with_suffix(".ipynb")
    source = md.read_text()
    nb = nbformat.read(ipynb, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(md.parent)}}).execute()
    seconds = time.perf_counter() - start
    if md.read_text() != source:  # writing now would make the older cells the newer file, and sync would undo the edit
        shown = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
        raise SourceChanged(f"{shown} was edited while it executed: your edit is kept and these outputs were not "
                            f"stored; run python tools/execute_notebooks.py {shown} again")
    book_sources.record(nb, seconds)
    nbformat.write(nb, ipynb)
    sync(md)  # the .ipynb is now the newer file; this leaves the .md's cells as they are and updates its timestamp
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", type=Path, help="book/NN_slug.md or .ipynb (default: all)")
    parser.add_argument("--sync-only", action="store_true", help="sync the pairs, do not execute")
    parser.add_argument("--stamp-install", action="store_true", help="rewrite the install cell, then sync")
    args = parser.parse_args(argv)
    chapters = [p.resolve().with_suffix(".md") for p in args.chapters] or book_sources.chapters()
    missing = [str(p) for p in chapters if not p.exists()]
    if missing:
        parser.error(f"no such chapter source: {', '.join(missing)} (chapters are book/NN_slug.md)")
    status = 0
    for md in chapters:
        if book_sources.stamp_install(md):
            print(f"{md.relative_to(ROOT)}: install cell rewritten from _config.yml and pyproject.toml")
        sync(md)
        if args.sync_only or args.stamp_install:
            continue
        try:
            seconds = execute(md)
        except SourceChanged as changed:
            print(f"execute_notebooks: {changed}", file=sys.stderr)
            status = 1
            continue
        print(f"{md.relative_to(ROOT)} executed in {seconds:.0f} s", flush=True)
        status |= subprocess.call([sys.executable, str(ROOT / "tools" / "check_book.py"), "--notebooks-only",
                                   str(md.with_suffix(".ipynb"))])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
