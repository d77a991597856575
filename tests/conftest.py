"""Shared pytest setup: make ``import qpsnn_lite`` work from a source checkout without installing the package."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
