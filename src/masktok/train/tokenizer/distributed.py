"""torch.distributed helpers: one code path for a single process, ``torchrun`` DDP and multi-node.

The process group is only ever created from the environment ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` or a rendezvous endpoint); there is
no process spawning here. Without those variables everything runs as rank 0 of 1.

    ctx = init_distributed("auto")       # cuda:LOCAL_RANK with NCCL, or CPU with gloo
    ...
    cleanup_distributed(ctx)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job.

    Attributes:
        rank, world_size, local_rank: as torchrun numbers them (0, 1, 0 for a single process).
        device: this process's device.
        initialized_here: whether :func:`init_distributed` created the process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:local_rank`` when CUDA is available, else CPU; ``"cuda"`` gets the local rank."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available")
        return torch.device("cuda", local_rank)
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from exc


def init_distributed(device: str | torch.device = "auto") -> DistributedContext:
    """Join the process group described by torchrun's environment (or stay single-process).

    Uses NCCL for CUDA devices and gloo for CPU. An already initialised group is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    if world_size <= 1:
        return DistributedContext(0, 1, 0, dev, False)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def cleanup_distributed(ctx: DistributedContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over ranks (returns a new tensor; identity for one process)."""
    if not ctx.distributed:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def broadcast_object(obj, ctx: DistributedContext, src: int = 0):
    """Rank ``src``'s Python object on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
