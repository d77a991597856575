"""Wall time of one QP-SNN run from the command line in one process and in N processes (torchrun, gloo on the CPU,
or NCCL with ``--device cuda``), each process at one thread; prints both and the ratio N-process / 1-process.

    python benchmarks/distributed.py                  # the tiny digits run of tests/test_distributed.py, 2 processes
    python benchmarks/distributed.py --nproc 2 -- --epochs 4 --channels 16,32,64,64   # other flags for `run`

On a CPU the processes share the cores (and, on a busy machine, wait for them), and the digits CNN is far too small
for two replicas to beat one: the point of the scale-out is several GPUs, each with its own replica.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "2", "--finetune-epochs", "1", "--channels", "8,16,16,16", "--T", "1", "--image-size", "8",
        "--batch-size", "32", "--score-batches", "2", "--lr", "5e-3", "--quiet"]


def _seconds(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    tic = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes of the distributed run (default 2)")
    parser.add_argument("flags", nargs="*", help="flags for `python -m qpsnn_lite run` (default: a tiny run)")
    args = parser.parse_args()
    flags = args.flags or TINY
    with tempfile.TemporaryDirectory() as folder:
        single = _seconds([sys.executable, "-m", "qpsnn_lite", "run", *flags, "--threads", "1",
                           "--output-dir", f"{folder}/one"])
        several = _seconds([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={args.nproc}", "-m", "qpsnn_lite", "run", *flags, "--threads", "1",
                            "--output-dir", f"{folder}/several"])
    print(f"1 process: {single:.1f} s; {args.nproc} processes: {several:.1f} s; ratio {several / single:.2f} "
          "(wall time of the whole command, start-up included)")


if __name__ == "__main__":
    main()
