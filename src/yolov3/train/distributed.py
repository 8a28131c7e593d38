"""Many processes through PyTorch's own engine: ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node N [--nnodes M ...] -m yolov3 train ...`` starts N processes per
machine and describes them in the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...). A plain ``yolov3 train`` finds no such variables and runs one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from yolov3.errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on at least one (a stop request or a
        time limit that only some processes have seen yet)."""
        if not self.distributed:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def start_processes(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group that ``torchrun`` described (NCCL on CUDA, gloo on the CPU), or
    run alone. Returns this process's place and its device (``cuda:LOCAL_RANK`` on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, local_rank, world_size), device


def stop_processes() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def minibatch_per_process(batch: int, subdivisions: int, world_size: int) -> int:
    """Images each process takes per forward/backward pass, so that
    ``per-process minibatch x subdivisions x world size = batch`` (darknet's batch, which the lr
    and decay are scaled by, stays the same whatever the number of processes)."""
    share, rest = divmod(batch, subdivisions * world_size)
    if rest or share < 1:
        fits = [s for s in range(subdivisions, 0, -1) if batch % (s * world_size) == 0]
        hint = (f"set optimizer.subdivisions={fits[0]}" if fits else
                f"make optimizer.batch a multiple of {subdivisions * world_size}")
        raise ConfigError(
            f"optimizer.batch ({batch}) must be a multiple of optimizer.subdivisions "
            f"({subdivisions}) x processes ({world_size}) = {subdivisions * world_size}, so "
            f"that every process gets whole minibatches: {hint}, or change the number of "
            "processes"
        )
    return share
