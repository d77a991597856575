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

from qpsnn_lite import export, pipeline, prune

WORKER = Path(__file__).with_name("ddp_worker.py")
sys.path.insert(0, str(WORKER.parent))
from ddp_worker import TINY  # noqa: E402  (the worker's configuration, one fact in one place)
ROOT = WORKER.parent.parent
# BatchNorm normalises each process's half of a batch with that half's statistics (no SyncBatchNorm on the CPU), so
# training differs a little from one process on the whole batch: the accuracies of this tiny run (about 75 % after
# training) agree within this tolerance (a fraction of 1), and the trained networks, hence the channels they keep,
# may differ. What must agree exactly: the global batches, and the scores (so the channels) of a given network.
ACCURACY_TOLERANCE = 0.10


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
    # the ranks' shares of each scored batch, in rank order, are the single process's batches
    scored = [torch.load(two / f"rank{r}-score.pt", weights_only=True) for r in (0, 1)]
    single = torch.load(one / "rank0-score.pt", weights_only=True)
    global_batches = [torch.cat(shares) for shares in zip(scored[0]["inputs"], scored[1]["inputs"])]
    assert all(torch.equal(a, b) for a, b in zip(global_batches, single["inputs"]))
    # every rank got the same scores, those of one process scoring the same network on the whole batches
    model = pipeline.build_model(pipeline.Config(**TINY))
    model.load_state_dict(torch.load(two / "rank0-train.pt", weights_only=True))
    reference = prune.score(model, global_batches, "svs", batches=len(global_batches))
    for name, values in reference.items():
        assert torch.equal(scored[0]["scores"][name], scored[1]["scores"][name])
        torch.testing.assert_close(scored[0]["scores"][name], values, rtol=1e-12, atol=1e-12)
    kept = export.read_spec(two / "run" / "model.safetensors")["attributes"]["pruned_channels"]
    assert kept == {k: v.tolist() for k, v in prune.apply(model, reference, 0.5).pruned_channels.items()}
    result_two = json.loads((two / "run" / "result.json").read_text())
    result_one = json.loads((one / "run" / "result.json").read_text())
    assert result_two["channels_pruned"] == result_one["channels_pruned"]
    for key in ("accuracy_trained", "accuracy_finetuned"):
        assert abs(result_two[key] - result_one[key]) <= ACCURACY_TOLERANCE, key
