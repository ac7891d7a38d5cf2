"""Time to classify a full Sentinel-2 tile's embeddings with each method; prints one JSON object.

A 10980 x 10980 px tile embedded in ``pooled`` mode with stride 8 px gives a 1373 x 1373 grid of
192-dimensional embeddings (the default model's width). That grid is synthesised in float16 strips
(class centroids plus noise; the classifiers' cost does not depend on the values), so no encoder runs.
Training set: ``--train-per-class`` samples for each of 7 classes (the demo has ~20 per class; polygon
layers give thousands).

- ``predict``: classifier time alone (``predict_proba`` + argmax + max on every pixel, strip by strip
  as :func:`core.classify.classify` does), float16 strips converted to float32 per strip.
- ``--with-io``: additionally writes the synthetic grid as an embedding GeoTIFF (float16, untimed) and
  times the real output path, :func:`core.classify._predict_rasters`: read strips, classify, write the
  class, probability and confidence rasters.

    python benchmarks/classify.py                 # full tile, compute only
    python benchmarks/classify.py --with-io       # + reading and writing GeoTIFFs (needs ~1 GB of disk)
    python benchmarks/classify.py --tile 2560     # smaller tile
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.knn import CLASSIFIERS, SavedClassifier, make_classifier  # noqa: E402

N_CLASSES = 7
STRIP_ROWS = 64


def synthetic(n: int, dim: int, centroids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float16 embeddings (n, dim) around random class centroids, and their classes."""
    y = rng.integers(0, len(centroids), n)
    x = centroids[y] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    return x.astype(np.float16), y


def bench_predict(clf, height: int, width: int, strips: list[np.ndarray]) -> float:
    """Seconds to classify ``height x width`` pixels, strip by strip (strips cycle through ``strips``)."""
    t = time.perf_counter()
    done = 0
    for i in range(math.ceil(height / STRIP_ROWS)):
        rows = min(STRIP_ROWS, height - i * STRIP_ROWS)
        x = strips[i % len(strips)][: rows * width].astype(np.float32)
        p = clf.predict_proba(x)
        cls = p.argmax(1).astype(np.uint8) + 1
        conf = p.max(1)
        done += len(cls) + 0 * int(conf[0] > 2)
    assert done == height * width
    return time.perf_counter() - t


def write_embedding(path: Path, height: int, width: int, dim: int, centroids, rng) -> None:
    """The synthetic grid as an embedding raster like core.embed writes (float16, tiled, NaN nodata)."""
    from rasterio.transform import from_origin

    from core.raster_io import BlockWriter

    with BlockWriter(path, width=width, height=height, count=dim, crs="EPSG:32618",
                     transform=from_origin(399960, 4200000, 80, 80), dtype="float16",
                     tags={"model": "softcon_tiny_s2", "mode": "pooled", "stride": "8", "dim": str(dim)}) as w:
        pool = [synthetic(STRIP_ROWS * width, dim, centroids, rng)[0] for _ in range(2)]
        for r in range(0, height, STRIP_ROWS):
            n = min(STRIP_ROWS, height - r)
            w.write_rows(r, pool[(r // STRIP_ROWS) % 2][: n * width].reshape(n, width, dim).transpose(2, 0, 1))
        w.commit()


def bench_io(saved: SavedClassifier, emb: Path, out: Path) -> float:
    """Seconds for core.classify's read-classify-write of the whole grid (three output rasters)."""
    import rasterio

    from core.classify import _predict_rasters, _Stage
    from core.progress import Progress

    stage = _Stage(out)
    t = time.perf_counter()
    with rasterio.open(emb) as ds:
        _predict_rasters(ds, saved, stage, Progress())
    dt = time.perf_counter() - t
    stage.commit()
    return dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tile", type=int, default=10980, help="tile side in 10 m pixels")
    p.add_argument("--stride", type=int, default=8, help="pooled stride in pixels (output pixel)")
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--train-per-class", type=int, default=30)
    p.add_argument("--methods", default=",".join(CLASSIFIERS))
    p.add_argument("--with-io", action="store_true")
    p.add_argument("--workdir", help="folder for --with-io rasters (default: a temporary folder)")
    a = p.parse_args()

    rng = np.random.default_rng(0)
    side = math.ceil(a.tile / a.stride)
    centroids = rng.standard_normal((N_CLASSES, a.dim), dtype=np.float32)
    xt, yt = synthetic(N_CLASSES * a.train_per_class, a.dim, centroids, rng)
    strips = [synthetic(STRIP_ROWS * side, a.dim, centroids, rng)[0] for _ in range(4)]
    result = {
        "tile_px": a.tile, "stride_px": a.stride, "grid": [side, side, a.dim], "pixels": side * side,
        "train_samples": len(yt), "classes": N_CLASSES, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0], "methods": {},
    }
    names = [f"class {i}" for i in range(N_CLASSES)]
    colors = [(i * 30, 100, 200 - i * 20) for i in range(N_CLASSES)]
    tmp = tempfile.TemporaryDirectory(dir=a.workdir) if a.with_io else None
    emb = None
    if a.with_io:
        emb = Path(tmp.name) / "embedding.tif"
        t = time.perf_counter()
        write_embedding(emb, side, side, a.dim, centroids, rng)
        result["write_embedding_s"] = round(time.perf_counter() - t, 2)
        result["embedding_mb"] = round(emb.stat().st_size / 1e6, 1)
    for m in a.methods.split(","):
        t = time.perf_counter()
        clf = make_classifier(m, N_CLASSES).fit(xt.astype(np.float32), yt)
        fit = time.perf_counter() - t
        pred = bench_predict(clf, side, side, strips)
        acc = float((clf.predict(strips[0][:20000].astype(np.float32)) >= 0).mean())
        r = {"fit_s": round(fit, 3), "predict_s": round(pred, 2), "mpix_per_s": round(side * side / pred / 1e6, 3)}
        if a.with_io:
            saved = SavedClassifier(clf, names, colors, {"model": "softcon_tiny_s2", "mode": "pooled", "dim": a.dim})
            r["read_classify_write_s"] = round(bench_io(saved, emb, Path(tmp.name) / f"out_{m}"), 2)
        assert acc == 1.0
        result["methods"][m] = r
    print(json.dumps(result, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
