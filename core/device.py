"""Device and precision choice shared by inference and training.

CPUs with native bfloat16 (AVX512-BF16 or AMX) run bf16 matmuls about 4x faster than
float32, so ``precision="auto"`` uses bf16 autocast there; elsewhere on CPU it stays float32.
On CUDA, auto means bf16 where supported, else fp16.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .embed.spec import PRECISIONS
from .errors import SoftConError


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch.device."""
    if preference and preference != "auto":
        dev = torch.device(preference)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SoftConError("CUDA was requested but this torch has no GPU support; use --device cpu.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
