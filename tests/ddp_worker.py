"""A worker for tests/test_distributed.py (not a test): one tiny QP-SNN run, in a single process or as one rank of
``python -m torch.distributed.run --nproc_per_node N tests/ddp_worker.py OUT``. Rank 0 writes the run's files into
``OUT/run``; every rank saves its replica's state after each ``train.fit`` into ``OUT/rank{r}-{stage}.pt``, and the
input batches it scored and the scores it got into ``OUT/rank{r}-score.pt``."""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import torch

from qpsnn_lite import _dist, pipeline, prune, train

# Learns to about 75 % in a second: a comparison of accuracies at chance level would prove nothing.
TINY = dict(epochs=2, finetune_epochs=1, channels=(8, 16, 16, 16), T=1, image_size=8, batch_size=32, score_batches=2,
            lr=5e-3)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    real_fit, stages = train.fit, iter(["train", "finetune"])

    def recording_fit(model, *args, **kwargs):
        history = real_fit(model, *args, **kwargs)
        torch.save(model.state_dict(), out / f"rank{_dist.world()[0]}-{next(stages)}.pt")
        return history

    real_score = prune.score

    def recording_score(model, loader, criterion, batches, **kwargs):
        seen = list(itertools.islice(loader, batches))  # one pass over the loader, as score itself takes
        scores = real_score(model, seen, criterion, batches, **kwargs)
        torch.save({"inputs": [x for x, _ in seen], "scores": scores}, out / f"rank{_dist.world()[0]}-score.pt")
        return scores

    train.fit, prune.score = recording_fit, recording_score
    start = time.perf_counter()
    result = pipeline.run(pipeline.Config(**TINY, output_dir=str(out / "run")), progress=False)
    if _dist.is_main():
        (out / "seconds.json").write_text(json.dumps({"run": time.perf_counter() - start,
                                                      "accuracy": result.accuracy_finetuned}))
    _dist.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
