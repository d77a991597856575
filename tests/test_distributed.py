"""Several processes (``torchrun``, gloo on CPU): the replicas stay identical, every rank prunes the same channels,
and the result matches a single process on the same global batches (issue 14, scale-out)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qpsnn_lite import export

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = WORKER.parent.parent
# BatchNorm normalises each process's half of a batch with that half's statistics, so training differs a little
# from one process on the whole batch: the accuracies agree within this many points (fractions of 1).
ACCURACY_TOLERANCE = 0.05


def _run(out: Path, processes: int) -> float:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [sys.executable, str(WORKER), str(out)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   str(WORKER), str(out)]
    tic = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - tic


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one(tmp_path):
    seconds_2 = _run(tmp_path / "two", 2)
    seconds_1 = _run(tmp_path / "one", 1)
    print(f"\n2 processes: {seconds_2:.1f} s, 1 process: {seconds_1:.1f} s, ratio {seconds_2 / seconds_1:.2f}")
    two, one = tmp_path / "two", tmp_path / "one"
    for stage in ("train", "finetune"):  # the replicas are identical, weights and BatchNorm statistics
        rank0, rank1 = (torch.load(two / f"rank{r}-{stage}.pt", weights_only=True) for r in (0, 1))
        assert rank0.keys() == rank1.keys()
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (stage, key)
    assert not list(two.glob("run/checkpoints*")) and sorted(p.name for p in (two / "run").iterdir()) == \
        sorted(p.name for p in (one / "run").iterdir())  # rank 0 wrote the run's files, once
    kept_two = export.read_spec(two / "run" / "model.safetensors")["attributes"]["pruned_channels"]
    kept_one = export.read_spec(one / "run" / "model.safetensors")["attributes"]["pruned_channels"]
    assert kept_two == kept_one
    result_two = json.loads((two / "run" / "result.json").read_text())
    result_one = json.loads((one / "run" / "result.json").read_text())
    assert result_two["channels_pruned"] == result_one["channels_pruned"]
    assert abs(result_two["accuracy_finetuned"] - result_one["accuracy_finetuned"]) <= ACCURACY_TOLERANCE
    assert abs(result_two["accuracy_trained"] - result_one["accuracy_trained"]) <= ACCURACY_TOLERANCE
