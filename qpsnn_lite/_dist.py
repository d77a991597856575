"""Several processes, one run: the few facts about ``torch.distributed`` the package needs, in one place.

``torchrun --nproc_per_node N -m qpsnn_lite run ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in their environment; :func:`init` joins them (gloo on CPU, NCCL on GPUs). Every process trains a
replica with ``DistributedDataParallel`` on its share of each global batch (``data.load(world=...)``), scoring sums
its statistics over the processes so that every rank prunes the same channels, and only rank 0 writes files
(``docs/design.md``, "Several processes"). In a single process every function here is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["world", "is_main", "init", "finish", "local_device", "all_reduce_sum", "broadcast_buffers", "barrier"]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(rank, world_size)``: of the process group when there is one, else of the environment torchrun sets
    (``(0, 1)`` in a plain process)."""
    if _active():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Rank 0, the process that writes files and prints."""
    return world()[0] == 0


def local_device(device: str) -> torch.device:
    """``device`` for this process: ``"cuda"`` becomes this process's GPU, ``cuda:LOCAL_RANK``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def init(device: str) -> None:
    """Join the process group torchrun describes in the environment (gloo for CPU, NCCL for CUDA), once; nothing in
    a single process."""
    if world()[1] <= 1 or _active():
        return
    target = local_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")


def finish() -> None:
    """Leave the process group (at the end of the command line's run)."""
    if _active():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the processes (in place; the tensor itself in a single process). CPU tensors
    travel through gloo; with NCCL they go to this process's GPU and back."""
    if not _active() or dist.get_world_size() == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu)
        tensor.copy_(on_gpu.cpu())
    else:
        dist.all_reduce(tensor)
    return tensor


def broadcast_buffers(model: nn.Module) -> None:
    """Give every replica rank 0's buffers (BatchNorm running statistics): each replica normalises its own share of
    the batch, so its statistics drift apart from the others' between synchronisations."""
    if not _active() or dist.get_world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def barrier() -> None:
    """Wait until every process got here."""
    if _active() and dist.get_world_size() > 1:
        dist.barrier()
