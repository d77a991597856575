#!/usr/bin/env bash
# Execute notebooks in place and store their outputs (and widget state). See tools/execute_notebooks.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python tools/execute_notebooks.py "$@"
