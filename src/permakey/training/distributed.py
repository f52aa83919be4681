"""Processes and data order: one process, or many under `torchrun` (DDP).

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment; a process that
finds them joins the process group (gloo on CPU, nccl on CUDA). Nothing else launches
processes: ``torchrun --nproc_per_node N -m permakey train ...`` is the multi-GPU and
multi-node path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from permakey.devices import resolve_device
from permakey.errors import UserError


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Averages the gradients of the optimiser's parameters over the processes (DDP's job for
    losses computed outside its forward); nothing in a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world_size = dist.get_world_size()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world_size


@dataclass
class Processes:
    """This process's place among the training processes.

    Attributes:
        rank: global rank, 0 in a single process.
        world_size: number of processes.
        device: this process's device.
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes the run folder and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group of more than one process is running."""
        return self.world_size > 1

    @classmethod
    def start(cls, device: str) -> Processes:
        """Reads torchrun's environment and joins the process group if there is one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch_device = resolve_device(device, local_rank)
        if world_size > 1 and not dist.is_initialized():
            if torch_device.type == "cuda":
                torch.cuda.set_device(torch_device)
            dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
        return cls(rank, world_size, torch_device)

    def stop(self) -> None:
        """Leaves the process group."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of ``values`` over all processes (``values`` itself in one process)."""
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def share_error(self, message: str | None) -> None:
        """Raises `UserError` on every process if the main process reports an error.

        The main process checks and creates the run folder alone; without this the other
        processes would wait for it forever.
        """
        if self.distributed:
            box = [message]
            dist.broadcast_object_list(box, src=0)
            message = box[0]
        if message is not None:
            raise UserError(message)


class EpochSampler(DistributedSampler):
    """A `DistributedSampler` that can start part-way into an epoch.

    The order of epoch e is a permutation drawn from (seed, e) alone, split between processes
    as DistributedSampler does; `set_position` skips the items already trained on, so a resumed
    run sees exactly the items an uninterrupted run would.

    Args:
        dataset: the training dataset.
        world_size: number of processes.
        rank: this process's rank.
        seed: the run's seed.
    """

    def __init__(self, dataset: Dataset, world_size: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Epoch ``epoch``, skipping this process's first ``start`` items."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(super().__len__() - self.start, 0)

    @property
    def items_per_epoch(self) -> int:
        """Items this process sees in a whole epoch."""
        return super().__len__()
