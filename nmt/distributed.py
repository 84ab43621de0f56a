"""Where training runs: the device (also translation's), and data-parallel helpers: process
group, collectives, each rank's share of the data.

One process (world size 1) needs none of torch.distributed: every helper is then a no-op, and
torch.distributed is imported only when torchrun started several processes.
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

import torch

from nmt import NmtError
from nmt.procs import pick_threads

T = TypeVar("T")

log = logging.getLogger(__name__)


def pick_device(device: str, option: str = "device") -> str:
    """ "auto" (CUDA when available, else the CPU), "cpu", "cuda" or "cuda:N", checked; errors
    name `option` (the flag or config key the value came from)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise NmtError(f"must be auto, cpu, cuda or cuda:N, got {device!r}", option=option)
    if kind == "cuda" and not torch.cuda.is_available():
        raise NmtError(
            f"{device}: CUDA is not available to this torch ({torch.__version__})", option=option
        )
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def local_device(device: torch.device, world: int) -> torch.device:
    """This process's GPU when several share a machine (torchrun sets LOCAL_RANK)."""
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """`tensor` summed over the ranks, in place."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def broadcast(tensor: torch.Tensor, world: int) -> float:
    """Rank 0's value of a scalar on every rank."""
    if world > 1:
        import torch.distributed as dist

        dist.broadcast(tensor, src=0)
    return float(tensor)


def rank0_decides(flag: bool, device: torch.device, world: int) -> bool:
    """Rank 0's `flag` on every rank (all ranks call it): one verdict where clocks or
    validation results would differ, e.g. whether the time is up."""
    if world <= 1:
        return flag
    return bool(broadcast(torch.tensor(float(flag), device=device), world))


def shard(batches: list[T], rank: int, world: int) -> list[T]:
    """This rank's share of a plan that every rank built alike: every world-th batch.

    Each rank gets as many batches (the remainder is dropped), so that the gradient all-reduce
    never waits on a rank that has run out.
    """
    if world <= 1:
        return batches
    return batches[: len(batches) // world * world][rank::world]


def set_threads(requested: int, device: torch.device, world: int) -> None:
    """torch's CPU threads for training: train.threads, or with 0 this process's share of the
    idle cores (nmt.procs.pick_threads); said in the log."""
    threads, why = pick_threads(requested, world if device.type == "cpu" else 1)
    torch.set_num_threads(threads)
    log.info("threads: %d (%s)", threads, why)
