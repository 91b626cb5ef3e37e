"""Data-parallel training with plain PyTorch DistributedDataParallel, launched by ``torchrun``.

One process per device; ``torchrun`` starts them and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT`` for each::

    torchrun --nproc_per_node 4 train.py          # train.py calls init_distributed() before building the trainer

:func:`init_distributed` joins the process group (NCCL on CUDA, Gloo on the CPU). Without those variables, as under
a plain ``python train.py``, it does nothing and every helper here reports rank 0 of 1, so one script serves both.
:class:`~agecurriculum.train.CurriculumTrainer` reads the rank and world size when it is built: it wraps the model
in DDP, gives each rank its share of every epoch, averages the validation metrics over all ranks, and lets only
rank 0 write checkpoints and call callbacks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedInfo",
    "init_distributed",
    "destroy_distributed",
    "distributed_session",
    "group_joined",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_sum",
    "all_gather_object",
]


@dataclass(frozen=True)
class DistributedInfo:
    """This process's place in a distributed run."""

    rank: int  # index of this process among all processes, from 0
    world_size: int  # number of processes
    local_rank: int  # index of this process on its machine: the GPU it uses


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(backend: str | None = None) -> DistributedInfo:
    """Joins the process group described by torchrun's environment variables; a no-op without them.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; by default NCCL when CUDA is available, else Gloo.

    Returns:
        This process's rank, world size and local rank (``0, 1, 0`` when not launched by torchrun).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedInfo(0, 1, 0)
    info = DistributedInfo(_env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)  # NCCL collectives run on the current device
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def destroy_distributed(barrier: bool = True) -> None:
    """Leaves the process group, if one was joined.

    Args:
        barrier: wait for every rank to get here first (the end of a run). A rank that tears down its gloo group
            while another still exchanges with it can make that one abort ("terminate called without an active
            exception", seen once on a loaded 2-core machine); pass False on an error path, where the other ranks
            may never come.
    """
    if group_joined():
        if barrier and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session() -> Iterator[DistributedInfo]:
    """Joins torchrun's process group for the ``with`` block and leaves it after (a no-op without torchrun).

    A script that trains under ``torchrun`` should leave the group before it exits: a group still alive when the
    interpreter shuts down is torn down with it, and a rank can then abort after a finished run. A group joined
    before the block is left as it is (its owner leaves it). If the block raises, the group is not left: the other
    ranks may be inside a collective that would never end, and torchrun stops them once this rank exits.

    Yields:
        This process's rank, world size and local rank.
    """
    joined_before = group_joined()
    info = init_distributed()
    yield info
    if not joined_before:
        destroy_distributed()


def group_joined() -> bool:
    """Whether this process has joined a process group (of any size), e.g. by :func:`init_distributed`."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return group_joined() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that writes files and logs."""
    return get_rank() == 0


def barrier() -> None:
    """Waits until every rank gets here (returns at once when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (``tensor`` itself when not distributed)."""
    if not is_distributed():
        return tensor
    # NCCL reduces only CUDA tensors; Gloo handles CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = tensor.detach().to(device, copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
