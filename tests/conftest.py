"""Shared pytest setup: make ``import qpsnn_lite`` work from a source checkout without installing the package, and the
``one_thread`` fixture."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """Run a test module on one torch thread and restore the setting afterwards.

    Tiny networks and small tensors run fastest on one thread, and on a busy machine torch's worker threads wait for
    each other (runs several times slower). A test module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
