"""Distributed set-up for ``torchrun`` (NCCL on GPU, gloo on CPU) and the collectives the loop needs.

Every helper here is a no-op in a single process, so the loop reads the same with one rank or many.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from core.device import pick_device
from core.errors import SoftConError


@dataclass
class Context:
    """Where this process stands: rank, world, device, autocast dtype and the run's step counts."""

    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype | None
    out: Path
    steps_per_epoch: int
    total_steps: int
    peak_lr: float
    flops_per_step: float = 0.0   # this rank's FLOPs of one step (counted on the first GPU step)
    peak_flops: float = 0.0       # per device, for MFU (GPU only)


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; NCCL on GPU, gloo on CPU. Else one process."""
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        return dist.get_rank(), dist.get_world_size(), dev
    return 0, 1, pick_device(device)


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world() == 1:
        return [obj]
    out: list = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def raise_if_any(error: str | None) -> None:
    """Collective: if any rank hit an error, every rank raises it (instead of the others hanging)."""
    errors = [e for e in gather_objects(error) if e]
    if errors:
        raise SoftConError(errors[0])


def all_mean(values: list[float], device: torch.device) -> list[float]:
    """Mean over ranks of a few numbers."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world() > 1:
        dist.all_reduce(t)
        t /= world()
    return t.tolist()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world() > 1:
        dist.all_reduce(t)
    return t.tolist()


def peak_flops(device: torch.device, dtype: torch.dtype | None) -> float:
    """Dense bf16/fp16 tensor-core peak of common GPUs (vendor data sheets); 0 if unknown or CPU."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    table = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
             "4090": 165e12, "3090": 71e12, "V100": 125e12}
    peak = next((v for k, v in table.items() if k in name), 0.0)
    return peak if dtype is not None else peak / 2  # fp32 runs as TF32 at about half the rate
