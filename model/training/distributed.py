"""Several processes under `torchrun`: the process's rank, and what the ranks agree on.

Under torchrun (RANK/WORLD_SIZE set) training runs DistributedDataParallel: rank r trains on
batches r, r + world, ... of the same seeded list; rank 0 validates and writes. Without
torchrun every helper here is a no-op on one process.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Dist:
    """The process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Element-wise OR of `flags` over all ranks."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor([int(f) for f in flags], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order (one item without torchrun)."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def from_main(self, value: bool, device: torch.device) -> bool:
        """Rank 0's `value`, on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([int(value)], device=device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` under DistributedDataParallel when there are several ranks."""
        if not self.enabled:
            return module
        ids = [self.local_rank] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, **_no_buffer_sync())

    def close(self) -> None:
        if self.enabled:
            torch.distributed.destroy_process_group()


def start_distributed(device_name: str) -> Dist:
    """Join the torchrun job this process belongs to (nccl on CUDA, else gloo), if any."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return Dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local_rank)


def _no_buffer_sync() -> dict[str, bool]:
    """DDP arguments that skip syncing buffers every forward: the only buffer (sinusoidal
    positions) is constant. Newer torch renamed the argument."""
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    name = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {name: False}
