"""The course kit (tools/student_edition.py): the student edition hides every solution, and its checks grade.

The checks themselves run on the solutions in every CI run (nbval executes the chapters); here we prove that they
cannot pass on a stub, and, for chapter 01 end to end as a teacher runs it, that nbgrader gives the solutions full
marks and the untouched student edition none.
"""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import student_edition  # noqa: E402

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_dropdown_solutions_are_removed_and_the_rest_kept():
    text = "**1.** Question.\n\n```{dropdown} Solution\nThe answer is 42.\n```\n\nAfter."
    assert student_edition.remove_solution_text(text) == "**1.** Question.\n\n\nAfter."
    colon = "Q\n:::{dropdown} Solution\nA\n```python\nx\n```\n:::\nR"
    assert student_edition.remove_solution_text(colon) == "Q\nR"
    assert student_edition.remove_solution_text("```{dropdown} Hint\nh\n```") == "```{dropdown} Hint\nh\n```"


def test_a_check_needs_what_the_answer_defines():
    code = nbformat.v4.new_code_cell
    nb = _nb(code("x = 1"), code("# Solution to exercise 1\ny = x + 1\ndef f():\n    return y"),
             code("# Check exercise 1\nassert f() == y == 2 and x == 1"))
    assert student_edition.exercises(nb) == {1: (1, 2)}
    assert student_edition.required_names(nb, 1, 2) == ["f", "y"]
    assert student_edition.premature_names(nb, 1, 2) == []
    nb.cells[0].source = "y = 2"  # defined before the answer: a stub would pass the check
    assert student_edition.premature_names(nb, 1, 2) == ["y"]


def test_a_check_before_its_solution_is_refused():
    code = nbformat.v4.new_code_cell
    with pytest.raises(ValueError, match="before its solution"):
        student_edition.exercises(_nb(code("# Check exercise 2\nassert True")))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_converts_and_hides_its_solutions(chapter):
    nb = nbformat.read(chapter, as_version=4)
    found = student_edition.exercises(nb)
    assert found, f"{chapter.name} has no exercise"
    copy = student_edition.teacher_copy(nb)
    for n, (solution, check) in found.items():
        cell = copy.cells[solution]
        assert cell.metadata["nbgrader"]["solution"] is True
        assert "### BEGIN SOLUTION" in cell.source and cell.source.rstrip().endswith("### END SOLUTION")
        if check is not None:
            assert copy.cells[check].metadata["nbgrader"]["grade"] is True
            assert student_edition.required_names(nb, solution, check), f"exercise {n}'s check reads no answer"
            assert student_edition.premature_names(nb, solution, check) == [], (
                f"{chapter.name} exercise {n}: the check would pass on a stub"
            )
    for cell in copy.cells:
        if cell.cell_type == "markdown":
            assert "{dropdown} Solution" not in cell.source
        assert "hide-cell" not in cell.metadata.get("tags", [])


def test_nbgrader_grades_solutions_full_and_stubs_zero(tmp_path):
    pytest.importorskip("nbgrader")
    chapter = BOOK / "01_lif_neurons.ipynb"
    (release,) = student_edition.build([chapter], tmp_path, quiet=True)
    stub_cells = [c for c in nbformat.read(release, 4).cells if "raise NotImplementedError()" in c.source]
    assert len(stub_cells) == len(student_edition.exercises(nbformat.read(chapter, 4)))
    for student, source in (("solutions", tmp_path / "source"), ("stubs", tmp_path / "release")):
        target = tmp_path / "submitted" / student / "ch01"
        target.mkdir(parents=True)
        shutil.copy(source / "ch01" / chapter.name, target)
    run = [sys.executable, "-m", "nbgrader"]
    for step in (["autograde", "ch01", "--create", "--force"], ["export"]):
        subprocess.run(run + step + ["--log-level=ERROR"], cwd=tmp_path, check=True, capture_output=True)
    with open(tmp_path / "grades.csv") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    checks = sum(check is not None for _, check in student_edition.exercises(nbformat.read(chapter, 4)).values())
    assert scores == {"solutions": (checks, checks), "stubs": (0.0, checks)}
