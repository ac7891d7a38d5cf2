"""core.assess on class maps of growing size: time per pixel and peak memory of drawing a sample and of estimating.

Each size runs in its own process (peak RSS is a process's high-water mark); the figures are ratios of the
larger map to the smaller one, measured in one run. Memory should not grow with the map (strips of
``core.assess.classmap.STRIP_PIXELS`` pixels), time should grow with its pixel count.

    .venv/bin/python benchmarks/assess.py [--sizes 3000,6000] [--out-dir /tmp/assess_bench]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.assess.accuracy import assess_accuracy  # noqa: E402  (the repository's core, not an installed one)
from core.assess.sampling import create_sample  # noqa: E402


def write_map(path: Path, side: int) -> Path:
    """A ``side`` x ``side`` class map of 7 classes in blocks of 100 px (one of them 1.5 %), written strip by strip."""
    rng = np.random.default_rng(0)
    shares = np.array([0.3, 0.25, 0.15, 0.12, 0.1, 0.065, 0.015])
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:32618", transform=from_origin(400_000, 4_300_000, 10, 10), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        for row in range(0, side, 100):
            h = min(100, side - row)
            blocks = rng.choice(7, size=(side + 99) // 100, p=shares) + 1
            dst.write(np.repeat(blocks, 100)[None, :side].repeat(h, 0).astype(np.uint8), 1,
                      window=Window(0, row, side, h))
        dst.update_tags(CLASS_NAMES=json.dumps([f"class {i}" for i in range(1, 8)]),
                        CLASS_VALUES=json.dumps(list(range(1, 8))))
    return path


def child(map_path: str, out_dir: str) -> None:
    """Run in a fresh process: sample, label (reference = map class), estimate; print times and peak RSS."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    res = create_sample(map_path, Path(out_dir) / "sample.gpkg", size=400)
    t_sample = time.perf_counter() - t
    t = time.perf_counter()
    assess_accuracy(map_path, res.path, out_dir, reference_field="map_class")
    t_estimate = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sample_s": t_sample, "estimate_s": t_estimate, "rss_before_mb": base / 1024,
                      "peak_rss_mb": peak / 1024}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="3000,6000")
    p.add_argument("--out-dir", default="/tmp/assess_bench")
    a = p.parse_args()
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for side in map(int, a.sizes.split(",")):
        path = write_map(out / f"map_{side}.tif", side)
        work = out / f"run_{side}"
        work.mkdir(exist_ok=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), str(work)], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        rows[side] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"pixels": side * side}
    small, large = rows[min(rows)], rows[max(rows)]
    print(json.dumps({
        "runs": rows,
        "pixels_ratio": large["pixels"] / small["pixels"],
        "sample_time_ratio": large["sample_s"] / small["sample_s"],
        "estimate_time_ratio": large["estimate_s"] / small["estimate_s"],
        "peak_rss_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
