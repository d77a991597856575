"""The course kit: a student edition of every chapter, with autograded checks, built with nbgrader.

Usage (from the repository's root):

    python tools/student_edition.py                       # every chapter, into _build/course
    python tools/student_edition.py book/01_lif_neurons.ipynb --out my-course

What it writes is an nbgrader course folder (https://nbgrader.readthedocs.io):

    <out>/nbgrader_config.py
    <out>/source/chNN/NN_slug.ipynb     the chapter, exercises marked for nbgrader (the teacher's copy)
    <out>/release/chNN/NN_slug.ipynb    the student edition: solutions replaced by stubs, solution text removed

How a chapter marks its exercises (the conventions of the book's sources, checked by tests/test_student_edition.py):

- a code cell that starts with ``# Solution to exercise N`` is the answer: in the student edition its body becomes
  ``raise NotImplementedError()`` (nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION``), preceded by a comment
  naming what the check needs;
- a code cell that starts with ``# Check exercise N`` is the autograded check (one point, locked): plain ``assert``
  statements on the names the answer defines, which nbval runs on the solutions in every CI run;
- the ``{dropdown} Solution`` blocks of the Markdown cells are removed.

Why nbgrader and not otter-grader: the student edition nbgrader produces is a plain notebook whose checks are plain
``assert`` cells, so a student runs it in Colab with nothing more installed (otter's ``grader.check`` needs
otter-grader in the runtime, and installing it changes packages that Colab already has); a teacher grades the
submissions in bulk with ``nbgrader autograde`` and exports the marks with ``nbgrader export`` (see teaching.md).
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = re.compile(r"#\s*Solution to exercise\s+(\d+)")
CHECK = re.compile(r"#\s*Check exercise\s+(\d+)")
DROPDOWN = re.compile(r"^(`{3,}|:{3,})\{dropdown\}\s*Solution.*$")
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
CONFIG = f"""c = get_config()  # noqa: F821 (nbgrader's configuration object)
c.CourseDirectory.root = __file__.rsplit("/", 1)[0]
c.ClearSolutions.code_stub = {{"python": {STUB!r}}}
"""


def exercise_number(cell, pattern):
    """N if the code cell's first line is ``# Solution to exercise N`` (or ``# Check exercise N``), else None."""
    if cell.cell_type != "code" or not cell.source.strip():
        return None
    match = pattern.match(cell.source.lstrip().splitlines()[0])
    return int(match.group(1)) if match else None


def remove_solution_text(markdown):
    """The Markdown without its ``{dropdown} Solution`` blocks (the fence that opens one closes it)."""
    out, fence = [], None
    for line in markdown.splitlines():
        if fence is None:
            match = DROPDOWN.match(line.strip())
            if match:
                fence = match.group(1)
                continue
            out.append(line)
        elif line.strip() == fence:
            fence = None
    return "\n".join(out).rstrip()


def bound_names(source):
    """Names a cell binds at its top level (assignments, defs, imports, for targets)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def read_names(source):
    """Names a cell reads."""
    return {
        node.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def exercises(nb):
    """{N: (solution cell index, check cell index or None)} of a chapter, in order."""
    found = {}
    for i, cell in enumerate(nb.cells):
        n = exercise_number(cell, SOLUTION)
        if n is not None:
            found[n] = [i, None]
        n = exercise_number(cell, CHECK)
        if n is not None:
            if n not in found:
                raise ValueError(f"'# Check exercise {n}' (cell {i}) comes before its solution cell")
            found[n][1] = i
    return {n: tuple(v) for n, v in found.items()}


def required_names(nb, solution, check):
    """What the check reads that the answer defines: the names a student's answer must define."""
    return sorted(read_names(nb.cells[check].source) & bound_names(nb.cells[solution].source))


def _code(nb, i):
    """A code cell's source as plain Python: IPython's magics and shell escapes (``%pip``, ``!python``) become
    ``pass``."""
    lines = nb.cells[i].source.splitlines()
    return "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in lines
    )


def premature_names(nb, solution, check):
    """Required names that some cell before the answer already binds (a stub would not make the check fail)."""
    earlier = set()
    for i in range(solution):
        if nb.cells[i].cell_type == "code":
            earlier |= bound_names(_code(nb, i))
    return sorted(set(required_names(nb, solution, check)) & earlier)


def _nbgrader(grade_id, *, solution, grade, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def teacher_copy(nb):
    """The chapter with nbgrader's marks on its answers and checks, solution text kept (nbgrader's source)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("qpsnn_lite", None)
    found = exercises(nb)
    for n, (solution, check) in found.items():
        cell = nb.cells[solution]
        lines = cell.source.lstrip().splitlines()
        needs = required_names(nb, solution, check) if check is not None else []
        head = [f"# Exercise {n}: your answer" + (f" (the check below needs {', '.join(needs)})" if needs else "")]
        cell.source = "\n".join(head + ["### BEGIN SOLUTION"] + lines[1:] + ["### END SOLUTION"])
        cell.metadata["nbgrader"] = _nbgrader(f"exercise{n}", solution=True, grade=False)
        if check is not None:
            nb.cells[check].metadata["nbgrader"] = _nbgrader(f"exercise{n}-check", solution=False, grade=True,
                                                             points=1)
    for cell in nb.cells:
        tags = [t for t in cell.metadata.get("tags", []) if t not in ("hide-cell", "hide-input", "hide-output")]
        cell.metadata["tags"] = tags
        if cell.cell_type == "markdown":
            cell.source = remove_solution_text(cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def assignment_name(notebook):
    return "ch" + notebook.stem.split("_")[0]


def build(notebooks, out, *, quiet=False):
    """Write the course folder: the teachers' copies, then nbgrader's student editions. Returns the release paths."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG)
    released = []
    for notebook in notebooks:
        notebook = Path(notebook).with_suffix(".ipynb")
        nb = nbformat.read(notebook, as_version=4)
        name = assignment_name(notebook)
        source = out / "source" / name / notebook.name
        source.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(teacher_copy(nb), source)
        command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                   "--log-level=WARN", f"--CourseDirectory.root={out}"]
        result = subprocess.run(command, cwd=out, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stdout}{result.stderr}")
        released.append(out / "release" / name / notebook.name)
        if not quiet:
            found = exercises(nb)
            checked = sum(check is not None for _, check in found.values())
            print(f"{released[-1].relative_to(out)}: {len(found)} solution cells, {checked} autograded")
    return released


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="book/NN_slug.ipynb or .md (default: every chapter)")
    parser.add_argument("--out", default=str(ROOT / "_build" / "course"), help="the course folder to write")
    args = parser.parse_args(argv)
    chapters = [Path(c) for c in args.chapters] or sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(c) for c in chapters if not Path(c).with_suffix(".ipynb").is_file()]
    if missing:
        parser.error(f"no such chapter notebook: {', '.join(missing)}")
    build(chapters, args.out)


if __name__ == "__main__":
    main()
