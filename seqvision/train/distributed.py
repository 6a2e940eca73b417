"""Helpers for multi-process training with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m seqvision train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` reads them and joins the process group (gloo on CPU,
NCCL on CUDA). Without those variables everything here degrades to a single process: ``is_main()`` is True,
``barrier()`` does nothing, ``all_reduce_sum`` returns its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..runtime import select_device

__all__ = [
    "DistInfo",
    "init_from_env",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "all_gather_objects",
    "broadcast_object",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "gloo", "nccl" or "" (single process)
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw != "" else default
    except ValueError:
        return default


def init_from_env(*, device: str = "auto", backend: str | None = None, timeout_s: float = 1800.0,
                  device_key: str = "device") -> DistInfo:
    """Join the process group described by the torchrun environment variables, or stay single-process.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... With several processes on CUDA each takes ``cuda:LOCAL_RANK``.
        backend: ``"gloo"`` / ``"nccl"``; default NCCL for CUDA, gloo for CPU.
        timeout_s: collective timeout.
        device_key: what a bad ``device`` is called in the error (``train.device`` from a config).

    Returns:
        A :class:`DistInfo`. Calling it again when the group already exists returns the current state.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    dev = select_device(device, key=device_key)
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, local_rank=0, backend="", device=dev)
    if dev.type == "cuda":
        index = local_rank % max(torch.cuda.device_count(), 1)
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        chosen = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=chosen, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    backend=str(dist.get_backend()), device=dev)


def is_distributed() -> bool:
    """True when a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes checkpoints and logs."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor | float | int, *, device: torch.device | None = None) -> torch.Tensor:
    """Sum a tensor (or number) over all processes; returns a new float64/long tensor (input untouched)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().clone()
    else:
        t = torch.tensor(value, dtype=torch.float64 if isinstance(value, float) else torch.long)
    if not is_distributed():
        return t
    backend = dist.get_backend()
    target = device if device is not None else (torch.device("cuda", torch.cuda.current_device())
                                                if backend == "nccl" else torch.device("cpu"))
    orig = t.device
    t = t.to(target)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(orig)


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable, small), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, *, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
