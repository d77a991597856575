"""The book's sources and the proof that their stored outputs are fresh.

Each chapter is one MyST Markdown notebook, ``book/NN_slug.md`` (the file people edit), paired by jupytext with
``book/NN_slug.ipynb`` (the executed outputs: what the book renders, Colab opens and nbval runs). Executing a chapter
with ``python tools/execute_notebooks.py book/NN_slug.md`` records in the notebook's metadata, under
``qpsnn_lite.execution``, a SHA-256 of every code cell's source and of the package's source files. The checks here,
run by ``tools/check_book.py`` in CI, fail when

- the ``.md`` and the ``.ipynb`` differ in any cell's type, source or tags (one was edited, the pair not synced);
- a stored output was produced by other cell sources, or by another version of the package, than those committed;
- a chapter's Colab install cell is not the one made from the repository's address and the package's version.

Every message ends with the one command that fixes it.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qpsnn_lite"
METADATA_KEY = "qpsnn_lite"
FIX = "python tools/execute_notebooks.py {md}"
SYNC = "jupytext --sync {md}   (or, to re-execute too: " + FIX + ")"


def package_digest(package: Path = PACKAGE) -> str:
    """SHA-256 over the package's source files (``*.py`` and ``*.c``, by relative path and content)."""
    digest = hashlib.sha256()
    files = sorted(p for p in package.rglob("*") if p.suffix in {".py", ".c"} and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cell_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def record(nb, seconds: float, package: Path = PACKAGE) -> None:
    """Store in ``nb.metadata`` what produced its outputs (call right after executing it)."""
    nb.metadata[METADATA_KEY] = {"execution": {
        "package_sha256": package_digest(package),
        "cell_sha256": [cell_digest(c.source) for c in code_cells(nb)],
        "seconds": round(seconds, 1),
    }}


def execution_seconds(nb) -> float | None:
    return nb.metadata.get(METADATA_KEY, {}).get("execution", {}).get("seconds")


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def pair_problems(md: Path, ipynb: Path) -> list[str]:
    """Differences in cell type, source or tags between a chapter's ``.md`` and its ``.ipynb``."""
    rel = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    if not ipynb.exists():
        return [f"{rel} has no paired notebook {ipynb.name}: run {FIX.format(md=rel)}"]
    text = jupytext.read(md)
    stored = nbformat.read(ipynb, as_version=4)
    if len(text.cells) != len(stored.cells):
        return [f"{rel} has {len(text.cells)} cells, {ipynb.name} {len(stored.cells)}: run {SYNC.format(md=rel)}"]
    problems = []
    for i, (a, b) in enumerate(zip(text.cells, stored.cells)):
        what = [k for k, differs in (("type", a.cell_type != b.cell_type), ("source", a.source != b.source),
                                     ("tags", _tags(a) != _tags(b))) if differs]
        if what:
            problems.append(f"{rel} and {ipynb.name} differ in cell {i} ({', '.join(what)}): run {SYNC.format(md=rel)}")
    return problems


def freshness_problems(ipynb: Path, md: Path | None = None, package: Path = PACKAGE) -> list[str]:
    """Stored outputs not produced by the committed cell sources and package."""
    md = md or ipynb.with_suffix(".md")
    rel = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    nb = nbformat.read(ipynb, as_version=4)
    record_ = nb.metadata.get(METADATA_KEY, {}).get("execution")
    fix = FIX.format(md=rel)
    if not record_:
        return [f"{ipynb.name} records no execution: run {fix}"]
    problems = []
    stored = record_.get("cell_sha256", [])
    now = [cell_digest(c.source) for c in code_cells(nb)]
    if len(stored) != len(now):
        problems.append(f"{ipynb.name}: its outputs come from a notebook with {len(stored)} code cells, it has "
                        f"{len(now)}: run {fix}")
    else:
        changed = [i for i, (a, b) in enumerate(zip(stored, now)) if a != b]
        if changed:
            problems.append(f"{ipynb.name}: the outputs of code cells {changed} (0-based among code cells) come "
                            f"from other sources: run {fix}")
    if record_.get("package_sha256") != package_digest(package):
        problems.append(f"{ipynb.name}: its outputs come from another version of the qpsnn_lite package: run {fix}")
    return problems


# --- the Colab install cell -------------------------------------------------------------------------------------

def repository_url() -> str:
    """The repository's address: ``repository.url`` of ``_config.yml``, the one place it is written for the book."""
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if not match:
        raise SystemExit("_config.yml has no repository.url")
    return match.group(1).rstrip("/")


def package_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not match:
        raise SystemExit("pyproject.toml has no version")
    return match.group(1)


def install_cell_source() -> str:
    """The first code cell of every chapter: on Colab, install the package release the page was executed with."""
    return (
        "# On Colab: install the qpsnn_lite release this page was executed with (elsewhere: nothing to do).\n"
        '# For the newest code instead, replace the release tag after "@" with "main".\n'
        "import sys\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "qpsnn-lite @ git+{repository_url()}@v{package_version()}"'
    )


def install_problems(md: Path) -> list[str]:
    rel = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    cells = code_cells(jupytext.read(md))
    if not cells or cells[0].source != install_cell_source():
        return [f"{rel}: the first code cell is not the install cell made from _config.yml and pyproject.toml: "
                f"run python tools/execute_notebooks.py --stamp-install {rel}"]
    return []


def stamp_install(md: Path) -> bool:
    """Write today's install cell into ``md`` (the first code cell); True if it changed."""
    text = md.read_text()
    match = re.search(r"```\{code-cell\} ipython3\n(:tags: \[[^\]]*\]\n\n)?(.*?)\n```", text, re.S)
    if not match:
        raise SystemExit(f"{md}: no code cell")
    new = text[:match.start(2)] + install_cell_source() + text[match.end(2):]
    if new != text:
        md.write_text(new)
    return new != text


def chapters() -> list[Path]:
    """The chapter sources: every ``book/*.md`` that is a jupytext notebook."""
    return sorted(p for p in (ROOT / "book").glob("*.md") if p.read_text().startswith("---\njupytext:"))
