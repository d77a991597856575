"""Checks of the book that CI runs after the build (and `execute_notebooks.py` runs after each execution).

- every notebook in book/ is listed in _toc.yml and every _toc.yml entry exists;
- every chapter's .md source and .ipynb agree in every cell's type, source and tags, its stored outputs were produced
  by the committed cell sources and package (tools/book_sources.py), and its install cell is made from the one
  setting (_config.yml's repository.url, pyproject's version);
- every code cell of every notebook was executed (in order) and no stored output is an error;
- no stored output shows a path of this machine;
- (unless --notebooks-only) every chapter page was rendered to _build/html and shows no error output.
Exits 1 with one line per problem.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_sources  # noqa: E402  (a sibling module of this script)

ROOT = book_sources.ROOT


def toc_entries() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"(?:file|root):\s*([^\s#]+)", text)


def check_notebook(path: Path) -> list[str]:
    problems = []
    nb = json.loads(path.read_text())
    local = [str(ROOT), os.path.expanduser("~"), tempfile.gettempdir()]
    pattern = re.compile("|".join(re.escape(p.rstrip("/") + "/") for p in local if len(p) > 1))
    last = 0
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        count = cell.get("execution_count")
        if count is None:
            problems.append(f"{path.name} cell {i} was never executed: run python tools/execute_notebooks.py book/{path.stem}.md")
        elif count <= last:
            problems.append(f"{path.name} cell {i} ran out of order (count {count} after {last})")
        else:
            last = count
        outputs = cell.get("outputs", [])
        for out in outputs:
            if out.get("output_type") == "error":
                problems.append(f"{path.name} cell {i} stores an error: {out.get('ename')}: {out.get('evalue')}")
        if pattern.search(json.dumps(outputs)):
            problems.append(f"{path.name} cell {i} output shows a path of this machine")
    return problems


def check_html() -> list[str]:
    problems = []
    html = ROOT / "_build" / "html"
    for entry in toc_entries():
        page = html / (str(Path(entry).with_suffix("")) + ".html")
        if not page.exists():
            problems.append(f"the page {page.relative_to(ROOT)} of _toc.yml entry {entry} was not built")
            continue
        text = page.read_text(errors="replace")
        if "output_error" in text or "Traceback (most recent call last)" in text:
            problems.append(f"{page.relative_to(ROOT)} shows an error output")
        if entry.split("/")[-1][:2].isdigit() and "<img" not in text and "data:image/png" not in text:
            problems.append(f"{page.relative_to(ROOT)} has no figure")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--notebooks-only", action="store_true", help="skip the checks of the built HTML")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    problems: list[str] = []
    listed = {str(Path(e).with_suffix("")) for e in toc_entries()}
    for nb in notebooks:
        rel = str(nb.resolve().relative_to(ROOT).with_suffix(""))
        if rel not in listed:
            problems.append(f"{rel} is not listed in _toc.yml")
        problems += check_notebook(nb)
        md = nb.resolve().with_suffix(".md")
        if not md.exists():
            problems.append(f"{rel}.ipynb has no .md source beside it (each chapter is a jupytext pair)")
            continue
        problems += book_sources.pair_problems(md, nb.resolve())
        problems += book_sources.freshness_problems(nb.resolve(), md)
        problems += book_sources.install_problems(md)
    for entry in listed:
        if not any((ROOT / (entry + ext)).exists() for ext in (".ipynb", ".md")):
            problems.append(f"_toc.yml lists {entry}, which does not exist")
    if not args.notebooks_only:
        problems += check_html()
    for p in problems:
        print("check_book:", p)
    print(f"check_book: {len(notebooks)} notebooks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
