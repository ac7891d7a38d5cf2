"""Classifying a Sentinel-2 tile on its own 10 m grid vs embedding it; prints one JSON object.

The issue's target: with the default encoder and the linear classifier, a full 10980 x 10980 px tile
classifies (embedding + the 10 m map) within twice the time of its embedding alone, with peak RSS
under 3 GB. The raster is a mosaic of the real demo scene (tiled and cropped to ``--size`` px, uint16,
13 bands), so the encoder and the features see real data. Three phases, each in its own process so
that each one's peak RSS is its own:

1. ``train``: the demo classifier (``--method``, ``--features``) on the demo scene's embedding (cached), twice:
   the second run's embedding time is the warm-cache figure (``warm_cache_embedding_s``, seconds to find and
   open the cached embedding instead of computing it).
2. ``embed``: the mosaic's dense embedding alone (no cache) - the reference time.
3. ``apply``: :func:`core.classify.apply.apply_classifier` on that embedding raster: upsampled embeddings and
   pixel features strip by strip, prediction, class / probability / confidence rasters, quicklook, report.

Ratios from one run are what to compare on a shared machine: ``classify_over_embed`` =
(embed + apply) / embed.

    python benchmarks/classify.py                    # full tile (10980 px; about an hour on 2 CPU cores)
    python benchmarks/classify.py --size 2048        # a smaller mosaic
    python benchmarks/classify.py --method rf --features pixel   # the per-pixel random-forest baseline
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_mosaic(out: Path, size: int) -> Path:
    """The demo scene tiled to ``size`` x ``size`` px (mirrored copies, so seams look like the scene)."""
    import numpy as np
    import rasterio

    from core.classify.demo import demo_raster
    from core.io.writer import BlockWriter

    with rasterio.open(demo_raster()) as src:
        scene = src.read()
        desc, crs, t = src.descriptions, src.crs, src.transform
    h, w = scene.shape[1:]
    with BlockWriter(out, width=size, height=size, count=scene.shape[0], crs=crs, transform=t, dtype="uint16",
                     nodata=0, descriptions=list(desc), namespace=None) as wr:
        step = 256
        for r in range(0, size, step):
            n = min(step, size - r)
            rows = np.arange(r, r + n)
            tile_r, rr = rows // h, rows % h
            rr = np.where(tile_r % 2 == 1, h - 1 - rr, rr)  # mirrored every other tile
            cols = np.arange(size)
            tile_c, cc = cols // w, cols % w
            cc = np.where(tile_c % 2 == 1, w - 1 - cc, cc)
            wr.write_rows(r, scene[:, rr][:, :, cc])
        wr.commit()
    return out


def phase(args: argparse.Namespace) -> dict:
    """One phase in this process; returns its numbers."""
    import torch

    torch.set_num_threads(args.threads)
    from core.classify.demo import DEMO_LABEL_FIELD, DEMO_POINTS, demo_raster
    from core.classify.apply import apply_classifier
    from core.classify.fit import classify
    from core.classify.spec import FitSpec
    from core.embed.engine import embed_raster
    from core.embed.spec import EmbedSpec

    work = Path(args.work)
    t = time.perf_counter()
    if args.phase == "train":
        for run in ("train", "again"):  # the second run finds the demo's embedding in the cache
            r = classify(demo_raster(), DEMO_POINTS, DEMO_LABEL_FIELD, work / run,
                         EmbedSpec(model=args.model, device="cpu"),
                         FitSpec(method=args.method, features=args.features, cv_folds=0),
                         save_classifier=work / "classifier.npz")
        emb = r.report["embedding"]
        return {"seconds": round(time.perf_counter() - t, 2), "warm_cache_hit": emb["from_cache"],
                "warm_cache_embedding_s": r.report["timings_s"]["embedding"]}
    elif args.phase == "mosaic":
        make_mosaic(work / "mosaic.tif", args.size)
    elif args.phase == "embed":
        embed_raster(work / "mosaic.tif", work / "mosaic_emb.tif", EmbedSpec(model=args.model, mode="dense",
                     device="cpu"))
    elif args.phase == "apply":
        apply_classifier(work / "mosaic_emb.tif", work / "classifier.npz", work / "map", EmbedSpec(device="cpu"))
    return {"seconds": round(time.perf_counter() - t, 2)}


def run_phase(name: str, args: argparse.Namespace) -> dict:
    """Run one phase in a child process; its seconds and peak RSS (MB)."""
    cmd = [sys.executable, __file__, "--phase", name, "--work", args.work, "--size", str(args.size),
           "--model", args.model, "--method", args.method, "--features", args.features,
           "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {name} failed")
    res = json.loads(out.decode().strip().splitlines()[-1])
    res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return res


def main() -> None:
    from core.models.registry import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=10980, help="mosaic side in px (default: a full S2 tile)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--method", default="linear")
    p.add_argument("--features", default="emb+pixel")
    p.add_argument("--threads", type=int, default=torch_threads_default())
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--phase", choices=["train", "mosaic", "embed", "apply"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.work = args.work or tmp
        res = {name: run_phase(name, args) for name in ("train", "mosaic", "embed", "apply")}
    e, a = res["embed"], res["apply"]
    print(json.dumps({
        "size_px": args.size, "pixels": args.size ** 2, "model": args.model, "method": args.method,
        "features": args.features, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "embed_s": e["seconds"], "apply_s": a["seconds"],
        "classify_over_embed": round((e["seconds"] + a["seconds"]) / e["seconds"], 3),
        "apply_mpix_per_s": round(args.size ** 2 / 1e6 / a["seconds"], 2),
        "warm_cache_embedding_s": res["train"]["warm_cache_embedding_s"],   # the demo scene's, from the cache
        "warm_cache_hit": res["train"]["warm_cache_hit"],
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in res.items()},
        "targets": {"classify_over_embed": "<= 2", "peak_rss_mb": "< 3072"},
    }, indent=1))


def torch_threads_default() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


if __name__ == "__main__":
    main()
