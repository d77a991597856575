"""A worker for tests/test_distributed.py (not a test): one tiny QP-SNN run, in a single process or as one rank of
``python -m torch.distributed.run --nproc_per_node N tests/ddp_worker.py OUT``. Rank 0 writes the run's files into
``OUT/run``; every rank saves its replica's state after each ``train.fit`` into ``OUT/rank{r}-{stage}.pt``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from qpsnn_lite import _dist, pipeline, train

TINY = dict(epochs=2, finetune_epochs=1, channels=(4, 8, 8, 8), T=1, image_size=8, batch_size=256, score_batches=2)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    real_fit, stages = train.fit, iter(["train", "finetune"])

    def recording_fit(model, *args, **kwargs):
        history = real_fit(model, *args, **kwargs)
        torch.save(model.state_dict(), out / f"rank{_dist.world()[0]}-{next(stages)}.pt")
        return history

    train.fit = recording_fit
    start = time.perf_counter()
    result = pipeline.run(pipeline.Config(**TINY, output_dir=str(out / "run")), progress=False)
    if _dist.is_main():
        (out / "seconds.json").write_text(json.dumps({"run": time.perf_counter() - start,
                                                      "accuracy": result.accuracy_finetuned}))
    _dist.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
