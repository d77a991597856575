#!/usr/bin/env bash
# Colab (and plain pip) as a runtime: install the package the way a chapter's first cell does on Colab, on top of
# Colab's preinstalled packages, and run the package and every chapter without the book's tools or the repository.
#
#  1. fresh virtual environment (.venv-colab) with .ci/colab-preinstalled.txt; snapshot `pip freeze`
#  2. `pip install <copy of the checkout>`: not editable, not via requirements.txt (the copy keeps the checkout clean)
#  3. no preinstalled package may change version or disappear (Colab would ask for a runtime restart); print the
#     packages the install added; `pip check` must not get worse
#  4. the book's tools are absent (myst_nb, jupyter_book, nbval...) and every module of the installed package imports,
#     from the installed copy (not this checkout), with its package data (*.c)
#  5. a small `python -m qpsnn_lite run` writes result.json, model.safetensors (which loads back) and its figures
#  6. every book/*.ipynb, each copied alone into a fresh empty folder, executed with nbclient in that venv's kernel
#     (cwd = the folder), as on Colab; the time of each; fails naming the chapter and the error if a cell raises
#
# Usage: bash .ci/colab_check.sh [book/NN_slug.ipynb ...]     (default: every book/*.ipynb; called by .ci/run)
# Env: PYTHON (interpreter for the venv, default python3), OMP_NUM_THREADS is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$(date +%s)
stamp() { echo "[colab $(( $(date +%s) - start ))s] $*"; }

VENV=$ROOT/.venv-colab
BASE_PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qpsnn-colab.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

stamp "fresh virtual environment with Colab's preinstalled set (.ci/colab-preinstalled.txt)"
rm -rf "$VENV"
"$BASE_PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
# Only this venv from here on: its bin first, no checkout on sys.path, kernels looked up in the venv first.
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" JUPYTER_PATH="$VENV/share/jupyter"
export PYDEVD_DISABLE_FILE_VALIDATION=1  # as on Colab: no debugger warning from each kernel start
unset PYTHONPATH PYTHONHOME
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -r .ci/colab-preinstalled.txt
"$PY" -m ipykernel install --sys-prefix --name python3 > /dev/null  # the "python3" kernel = this venv's python
"$PY" -m pip freeze --all > "$WORK/before.txt"
"$PY" -m pip check > "$WORK/check-before.txt" 2>&1 || true
echo "preinstalled: $(wc -l < "$WORK/before.txt") packages"

stamp "pip install . (non-editable, from a copy of the checkout's tracked and unignored files)"
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -f "$f" ]; then mkdir -p "$WORK/src/$(dirname "$f")" && cp -p "$f" "$WORK/src/$f"; fi
done
"$PY" -m pip install -q "$WORK/src"
"$PY" -m pip freeze --all > "$WORK/after.txt"
"$PY" -m pip check > "$WORK/check-after.txt" 2>&1 || true

stamp "nothing preinstalled changed; what the install added"
"$PY" - "$WORK" <<'PYEOF'
import re
import sys
from pathlib import Path

work = Path(sys.argv[1])


def freeze(name: str) -> dict[str, str]:
    packages = {}
    for line in (work / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        package, _, version = line.partition(" @ ") if " @ " in line else line.partition("==")
        packages[re.sub(r"[-_.]+", "-", package).lower()] = version
    return packages


before, after = freeze("before.txt"), freeze("after.txt")
changed = {p: (v, after[p]) for p, v in before.items() if p in after and after[p] != v}
removed = sorted(p for p in before if p not in after)
added = {p: v for p, v in after.items() if p not in before}
for package, version in sorted(added.items()):
    print(f"added: {package} {'@ ' + version if '://' in version else version}")
for package, (old, new) in sorted(changed.items()):
    print(f"CHANGED: {package} {old} -> {new}")
for package in removed:
    print(f"REMOVED: {package} {before[package]}")
new_problems = sorted(set((work / "check-after.txt").read_text().splitlines())
                      - set((work / "check-before.txt").read_text().splitlines()))
for line in new_problems:
    print(f"pip check, new: {line}")
if "qpsnn-lite" not in added:
    sys.exit("qpsnn-lite was not installed")
if changed or removed or new_problems:
    sys.exit("installing qpsnn-lite changed Colab's preinstalled packages (a runtime restart) or broke their "
             "requirements: loosen the bounds in pyproject.toml")
print(f"unchanged: all {len(before)} preinstalled packages keep their versions")
PYEOF

stamp "the package imports without the book's tools and without the checkout"
mkdir "$WORK/empty"
(cd "$WORK/empty" && "$PY" - "$ROOT" "$VENV" <<'PYEOF'
import importlib
import pkgutil
import sys
from pathlib import Path

root, venv = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
for tool in ("myst_nb", "jupyter_book", "nbval", "pytest", "hypothesis"):
    try:
        importlib.import_module(tool)
    except ImportError:
        continue
    sys.exit(f"{tool} is importable in the Colab-like venv: this check would not prove that the package works without")
import ipywidgets
import qpsnn_lite

package = Path(qpsnn_lite.__file__).resolve().parent
if venv not in package.parents:
    sys.exit(f"qpsnn_lite was imported from {package}, not from the installed copy in {venv}")
modules = sorted(m.name for m in pkgutil.iter_modules([str(package)]) if not m.name.startswith("_"))
for name in modules:
    importlib.import_module(f"qpsnn_lite.{name}")
print(f"imported from {package}: qpsnn_lite and {', '.join(modules)}")
missing = sorted(p.name for p in (root / "qpsnn_lite").glob("*.c") if not (package / p.name).is_file())
if missing:
    sys.exit(f"package data missing from the installed package: {missing} (pyproject [tool.setuptools.package-data])")
print(f"package data: {sorted(p.name for p in package.glob('*.c')) or 'no *.c files in the package'}")

from matplotlib.figure import Figure
from qpsnn_lite import widgets

box = widgets.slider_stack([1, 2], lambda v: Figure(figsize=(1, 1)), "v", dpi=10)
kind = type(box.children[1]).__name__
print(f"ipywidgets {ipywidgets.__version__}: slider_stack builds a VBox of "
      f"{[type(c).__name__ for c in box.children]} (the stack is a {kind})")
PYEOF
)

stamp "python -m qpsnn_lite run (tiny settings) writes its result files"
mkdir "$WORK/cli"
(cd "$WORK/cli" && "$PY" -m qpsnn_lite run --epochs 1 --finetune-epochs 1 --channels 4,8,8,8 --T 1 --image-size 8 \
  --batch-size 256 --score-batches 1 --threads 1 --quiet --output-dir out)
(cd "$WORK/cli" && "$PY" - <<'PYEOF'
import json
import sys
from pathlib import Path

from qpsnn_lite import export

out = Path("out")
missing = [n for n in ("result.json", "model.safetensors", "accuracy.png", "channels.png") if not (out / n).is_file()]
if missing:
    sys.exit(f"python -m qpsnn_lite run did not write {missing} (found {sorted(p.name for p in out.iterdir())})")
result = json.loads((out / "result.json").read_text())
model = export.load(out / "model.safetensors")
print(f"wrote {sorted(p.name for p in out.iterdir())}; result.json has {len(result)} fields; "
      f"model.safetensors loads back as a {type(model).__name__}")
PYEOF
)

stamp "every chapter alone in an empty folder, executed in the venv's kernel as on Colab"
if [ "$#" -gt 0 ]; then notebooks=("$@"); else notebooks=(book/*.ipynb); fi
"$PY" - "$WORK" "${notebooks[@]}" <<'PYEOF'
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

work, paths = Path(sys.argv[1]), [Path(p).resolve() for p in sys.argv[2:]]
venv = Path(sys.prefix).resolve()

# the kernel is this venv's python and imports the installed package
probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    "import sys, qpsnn_lite; print(sys.prefix); print(qpsnn_lite.__file__)")])
with tempfile.TemporaryDirectory(dir=work) as folder:
    NotebookClient(probe, timeout=120, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
kernel_prefix, package_file = probe.cells[0].outputs[0]["text"].split()
if Path(kernel_prefix).resolve() != venv or venv not in Path(package_file).resolve().parents:
    sys.exit(f"the kernel runs {kernel_prefix} and imports {package_file}, not the venv {venv}")

def execute(copy, folder):
    """Execute the notebook in a fresh kernel; return it. A kernel that stops answering (seen once here: kernel and
    client both idle, a cell never replied) is the harness's fault, not the chapter's: such a run times out after
    15 minutes without a reply and is retried once, and the log says so. A cell that raises is never retried."""
    for attempt in (1, 2):
        nb = nbformat.read(copy, as_version=4)
        client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": folder}})
        try:
            client.execute()
            return nb, "ok" if attempt == 1 else "ok (second attempt)"
        except CellExecutionError as error:
            error.nb = nb
            raise
        except Exception as error:  # a timeout, a dead kernel
            if attempt == 2:
                raise
            print(f"         {copy.name}: {type(error).__name__}: {error}; retrying in a fresh kernel", flush=True)


failures, total = [], 0.0
for path in paths:
    with tempfile.TemporaryDirectory(prefix="chapter-", dir=work) as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        tic = time.perf_counter()
        try:
            nb, status = execute(copy, folder)
        except CellExecutionError as error:
            nb = error.nb
            cell = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
                o.get("output_type") == "error" for o in c.get("outputs", []))), None)
            status = f"FAILED in cell {cell}: {error.ename}: {error.evalue}"
            failures.append(f"{path.name}: cell {cell}: {error.ename}: {error.evalue}\n"
                            + "\n".join(str(error).splitlines()[-25:]))
        except Exception as error:  # a timeout, a dead kernel
            status = f"FAILED: {type(error).__name__}: {error}"
            failures.append(f"{path.name}: {type(error).__name__}: {error}")
        seconds = time.perf_counter() - tic
        total += seconds
        print(f"{seconds:7.1f} s  {path.name}  {status}", flush=True)
print(f"{total:7.1f} s  in all ({len(paths)} notebooks, {len(failures)} failed)")
for failure in failures:
    print(f"\n--- {failure}")
sys.exit(1 if failures else 0)
PYEOF
du -sh "$VENV" | sed 's/^/Colab-like venv size: /'
stamp "done"
