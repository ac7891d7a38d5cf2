"""Encoder throughput and cost on this machine, as JSON.

For each architecture at its model's input size: images/s at batch 8 in float32 and under
bfloat16 autocast (forward of the pooled embedding, ``torch.inference_mode``), their ratio, GFLOP
per image counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOP), and
the cosine between the bf16 and fp32 pooled embeddings (lowest over the batch). The batch is real
EuroSAT patches preprocessed by the model's record where ``../shared`` has them, else uniform noise.

    python benchmarks/encoders.py [--batch 8] [--min-time 3] [--arch resnet50 ...] [--patch 4] [--device cpu]

Timings on a shared machine move with its load; the load average is printed with them, and the
bf16/fp32 ratio (both timed in one run) is the figure that carries over.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.device import autocast, cpu_has_fast_bf16, pick_device  # noqa: E402
from core.models.encoders import build_encoder  # noqa: E402

#: architecture -> (bands, input size) as in the model records that use it.
ARCH_INPUTS = {
    "resnet50": (13, 224),
    "vit_small_patch14_dinov2": (13, 224),
    "vit_base_patch14_dinov2": (13, 224),
    "vit_tiny_patch8_64": (13, 64),
    "galileo_nano": (10, 64),
}
#: architecture -> registry model whose weights and preprocessing are used (random init otherwise).
ARCH_MODEL = {"vit_tiny_patch8_64": "softcon_tiny_s2", "galileo_nano": "galileo_nano_s2"}
EUROSAT = ROOT.parent / "shared" / "data" / "eurosat_ms"


def real_batch(record, n: int) -> torch.Tensor | None:
    """``n`` EuroSAT patches preprocessed for ``record`` (B, C, 64, 64), or None without ../shared."""
    import rasterio

    from core.geo.bands import resolve_bands, select_bands
    from core.geo.normalize import preprocess

    files = sorted(EUROSAT.glob("*/*.tif"))
    if not files:
        return None
    raw = []
    for path in (files * (n // len(files) + 1))[:n]:
        with rasterio.open(path) as ds:
            raw.append(select_bands(ds.read(), resolve_bands(ds.descriptions, record.bands, "eurosat")))
    x = torch.from_numpy(np.stack(raw).astype(np.float32))
    return preprocess(x, record.mean, record.std, sar_quantiles=record.sar_quantiles, clip=record.clip)


def bf16_cosine(encoder: torch.nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Lowest cosine over the batch between pooled embeddings under bf16 autocast and in fp32."""
    with torch.inference_mode():
        ref = encoder(x).float()
        with autocast(device, torch.bfloat16):
            low = encoder(x).float()
    return float(F.cosine_similarity(ref, low, dim=1).min())


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
    p.add_argument("--patch", type=int, default=0, help="patch size for encoders that take any (galileo_nano); 0 = own")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    results = []
    for arch in args.arch:
        chans, size = ARCH_INPUTS[arch]
        x = None
        if arch in ARCH_MODEL:
            from core.models.encoders import create_encoder

            enc, record = create_encoder(ARCH_MODEL[arch])
            x = real_batch(record, args.batch)
        else:
            enc = build_encoder(arch, chans, size)
        enc = enc.eval().to(device)
        if args.patch and hasattr(enc, "group_tokens"):
            enc.patch_size = args.patch
        input_kind = "eurosat" if x is not None else "noise"
        x = (x if x is not None else torch.rand(args.batch, chans, size, size)).to(device)
        row = {
            "arch": arch, "model": ARCH_MODEL.get(arch, "random init"), "patch_size": enc.patch_size,
            "in_chans": chans, "input_size": size, "batch": args.batch, "input": input_kind,
            "params_M": round(sum(q.numel() for q in enc.parameters()) / 1e6, 2),
            "gflop_per_image": round(gflop_per_image(enc, chans, size, device), 3),
        }
        for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
            row[f"images_per_s_{label}"] = round(images_per_second(enc, x, dtype, device, args.min_time), 2)
        row["bf16_over_fp32_speed"] = round(row["images_per_s_bf16_autocast"] / row["images_per_s_fp32"], 2)
        row["bf16_vs_fp32_cosine_min"] = round(bf16_cosine(enc, x, device), 5)
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
