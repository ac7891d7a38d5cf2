"""Encoder throughput and cost on this machine, as JSON.

For each architecture at its model's input size: images/s at batch 8 in float32 and under
bfloat16 autocast (forward of the pooled embedding, ``torch.inference_mode``), and GFLOP per
image counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOP).

    python benchmarks/encoders.py [--batch 8] [--min-time 3] [--arch resnet50 ...] [--device cpu]

Timings on a shared machine move with its load; the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.device import autocast, cpu_has_fast_bf16, pick_device  # noqa: E402
from core.encoders import build_encoder  # noqa: E402

#: architecture -> (bands, input size) as in the model records that use it.
ARCH_INPUTS = {
    "resnet50": (13, 224),
    "vit_small_patch14_dinov2": (13, 224),
    "vit_base_patch14_dinov2": (13, 224),
    "vit_tiny_patch8_64": (13, 64),
}


def gflop_per_image(encoder: torch.nn.Module, chans: int, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, chans, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        encoder(x)
    return counter.get_total_flops() / 1e9


def images_per_second(encoder: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None,
                      device: torch.device, min_time: float, min_iters: int = 2) -> float:
    with torch.inference_mode(), autocast(device, dtype):
        encoder(x)  # warm-up (allocator, oneDNN kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while n < min_iters or time.perf_counter() - t0 < min_time:
            encoder(x)
            n += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * x.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--min-time", type=float, default=3.0, help="seconds of timed runs per setting")
    p.add_argument("--arch", nargs="*", default=list(ARCH_INPUTS))
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    results = []
    for arch in args.arch:
        chans, size = ARCH_INPUTS[arch]
        enc = build_encoder(arch, chans, size).eval().to(device)
        x = torch.rand(args.batch, chans, size, size, device=device)
        row = {
            "arch": arch, "in_chans": chans, "input_size": size, "batch": args.batch,
            "params_M": round(sum(q.numel() for q in enc.parameters()) / 1e6, 2),
            "gflop_per_image": round(gflop_per_image(enc, chans, size, device), 3),
        }
        for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
            row[f"images_per_s_{label}"] = round(images_per_second(enc, x, dtype, device, args.min_time), 2)
        row["achieved_gflop_per_s_fp32"] = round(row["images_per_s_fp32"] * row["gflop_per_image"], 1)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {
        "machine": {
            "device": str(device), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_fast_bf16": cpu_has_fast_bf16(),
            "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "results": results,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
