#!/usr/bin/env bash
# Execute notebooks in place and store their outputs (and widget state), as the book renders them.
# Usage: bash tools/execute_notebooks.sh [book/NN_slug.ipynb ...]   (default: every chapter)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then set -- book/*.ipynb; fi
for nb in "$@"; do
  start=$(date +%s)
  jupyter nbconvert --to notebook --execute --inplace \
    --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.store_widget_state=True "$nb"
  python tools/check_book.py --notebooks-only "$nb"
  echo "$nb executed in $(( $(date +%s) - start )) s"
done
