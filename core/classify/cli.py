"""``python -m core.classify [apply|similarity|pca|kmeans|demo]``; without arguments, the demo."""
from __future__ import annotations

import argparse
import sys
import time

from ..embed.spec import EmbedSpec
from ..errors import SoftConError
from ..models.registry import DEFAULT_MODEL
from ..progress import last_line, tqdm_progress
from .apply import apply_classifier
from .demo import run_demo, summary_text
from .features import GRIDS
from .fit import classify, METHOD_CHOICES
from .maps import kmeans_map, pca_preview, similarity_map
from .tiles import apply_tiles, is_many_tiles, summary_text as tiles_summary


FEATURES_HELP = ("feature groups: auto (default: every available set, the best by blocked CV), emb (embeddings "
                 "upsampled to the pixel grid), pixel (the pixel's bands and NDVI/NDWI/MNDWI/NDBI; with "
                 "--method rf, the per-pixel random-forest baseline), or emb+pixel")


def _bbox(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise SoftConError(f"--bbox takes minx,miny,maxx,maxy, not {text!r}.")
    return vals


def _common(p: argparse.ArgumentParser, apply: bool = False) -> None:
    if apply:  # everything comes from the classifier; a flag that disagrees is refused
        p.add_argument("--model", help="must match the classifier's model (default: the classifier's)")
        p.add_argument("--mode", choices=["pooled", "dense"], help="must match the classifier's (default: its)")
        p.add_argument("--features", help="must match the classifier's feature groups (default: its)")
        p.add_argument("--grid", choices=list(GRIDS), help="must match the classifier's grid (default: its)")
    else:
        p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model (default {DEFAULT_MODEL})")
        p.add_argument("--mode", default="dense", choices=["pooled", "dense"],
                       help="dense: patch features (80 m for the default model; the default); pooled: one per window")
        p.add_argument("--grid", default="pixel", choices=list(GRIDS),
                       help="pixel: map on the raster's own grid (default); embedding: on the token grid")
    p.add_argument("--checkpoint", help="local weights file to use instead of the model's")
    p.add_argument("--random-init", action="store_true", help="untrained encoder (testing only)")
    p.add_argument("--bands", help="raster band order: preset (s2_l1c, s2_l2a, eurosat) or list B1,B2,...")
    p.add_argument("--stride", type=int, help="window stride in pixels (default: 3/4 of a window dense, 1/2 pooled)")
    p.add_argument("--bbox", help="minx,miny,maxx,maxy limiting the extent (raster CRS unless --bbox-crs)")
    p.add_argument("--bbox-crs")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.classify",
        description="Land-cover map from training samples over SoftCon embeddings. Without arguments: the demo. "
                    "Other commands: apply, similarity, pca, kmeans, demo (python -m core.classify CMD -h).")
    p.add_argument("raster", nargs="+", help="raster, single-band files of one scene, or an embedding raster")
    p.add_argument("--samples", required=True, help="points or polygons (GeoPackage, Shapefile, GeoJSON)")
    p.add_argument("--label-field", required=True)
    p.add_argument("--layer", help="layer of a multi-layer vector file")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--method", default="auto", choices=list(METHOD_CHOICES),
                   help="auto (default): every method on every feature set, the best by spatially blocked CV")
    p.add_argument("--features", default="auto", help=FEATURES_HELP)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--block-size", type=float, help="CV block side in metres")
    p.add_argument("--max-pixels-per-polygon", type=int, default=200)
    p.add_argument("--save-classifier", nargs="?", const=True, default=None, metavar="PATH",
                   help="save the classifier (default out-dir/classifier.npz)")
    _common(p)
    return p


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m core.classify {cmd}")
    if cmd == "demo":
        p.add_argument("--out-dir", default="outputs/demo")
        p.add_argument("--method", default="auto", choices=list(METHOD_CHOICES))
        p.add_argument("--features", default="auto", help=FEATURES_HELP)
        p.add_argument("--grid", default="pixel", choices=list(GRIDS))
        p.add_argument("--model", default=DEFAULT_MODEL)
        p.add_argument("--mode", default="dense", choices=["pooled", "dense"])
        p.add_argument("--bbox")
        p.add_argument("--bbox-crs")
        p.add_argument("--no-cache", action="store_true")
        p.add_argument("--device", default="auto")
        return p
    p.add_argument("raster", nargs="+" if cmd in ("apply", "similarity") else None,
                   help="a raster, the band files of one scene, or (apply) several rasters, Sentinel-2 product "
                        "folders or folders of them: one map per tile plus mosaic VRTs, resumable" if cmd == "apply"
                   else None)
    if cmd == "apply":
        p.add_argument("--classifier", required=True)
        p.add_argument("--out-dir", required=True)
        _common(p, apply=True)
    elif cmd == "similarity":
        p.add_argument("--reference", required=True, help="vector file of reference points/polygons")
        p.add_argument("--fids", help="comma-separated feature ids (default: all)")
        p.add_argument("--layer")
        p.add_argument("--out", required=True)
        _common(p)
    elif cmd == "pca":
        p.add_argument("--out", required=True)
    elif cmd == "kmeans":
        p.add_argument("--clusters", type=int, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", required=True)
    return p


def _embed_spec(a: argparse.Namespace) -> EmbedSpec:
    """The embedding settings of a command line, in one value."""
    return EmbedSpec(model=a.model, checkpoint=a.checkpoint, pretrained=not a.random_init, bands=a.bands, mode=a.mode,
                     stride=a.stride, precision=a.precision, device=a.device, bbox=_bbox(a.bbox), bbox_crs=a.bbox_crs)


def _one(raster: list[str]) -> str | list[str]:
    return raster[0] if len(raster) == 1 else raster


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = argv[0] if argv and argv[0] in ("apply", "similarity", "pca", "kmeans", "demo") else None
    try:
        if not argv or cmd == "demo":
            a = _sub_parser("demo").parse_args(argv[1:] if cmd else [])
            t = time.perf_counter()
            res = run_demo(a.out_dir, a.method, a.mode, _bbox(a.bbox), a.bbox_crs, not a.no_cache, a.device,
                           tqdm_progress("demo"), features=a.features, grid=a.grid, model=a.model)
            print(summary_text(res))
            print(f"demo time {time.perf_counter() - t:.1f} s "
                  f"(embedding {'from cache' if res.report['embedding']['from_cache'] else 'computed'})")
            return 0
        if cmd is None:
            a = get_args_parser().parse_args(argv)
            res = classify(_one(a.raster), a.samples, a.label_field, a.out_dir, method=a.method, k=a.k,
                           temperature=a.temperature, cv_folds=a.cv_folds, block_size_m=a.block_size,
                           max_pixels_per_polygon=a.max_pixels_per_polygon, save_classifier=a.save_classifier,
                           cache=not a.no_cache, progress=tqdm_progress("classify"), layer=a.layer,
                           features=a.features, grid=a.grid, embed_spec=_embed_spec(a))
            print(summary_text(res))
            return 0
        a = _sub_parser(cmd).parse_args(argv[1:])
        if cmd == "apply" and is_many_tiles(a.raster):
            spec = EmbedSpec(checkpoint=a.checkpoint, pretrained=not a.random_init, bands=a.bands, device=a.device,
                             precision=a.precision, bbox=_bbox(a.bbox), bbox_crs=a.bbox_crs)
            res = apply_tiles(a.raster, a.classifier, a.out_dir, spec, cache=not a.no_cache,
                              progress=tqdm_progress("tiles"), progress_for=tqdm_progress, model=a.model,
                              mode=a.mode, features=a.features, grid=a.grid)
            print(tiles_summary(res))
        elif cmd == "apply":
            res = apply_classifier(_one(a.raster), a.classifier, a.out_dir, bands=a.bands, checkpoint=a.checkpoint,
                                   device=a.device, precision=a.precision, cache=not a.no_cache,
                                   progress=tqdm_progress("apply"), pretrained=not a.random_init,
                                   bbox=_bbox(a.bbox), bbox_crs=a.bbox_crs, model=a.model, mode=a.mode,
                                   features=a.features, grid=a.grid)
            print(summary_text(res))
        elif cmd == "similarity":
            fids = [int(v) for v in a.fids.split(",")] if a.fids else None
            print(similarity_map(_one(a.raster), a.reference, a.out, fids, cache=not a.no_cache,
                                 progress=tqdm_progress("similarity"), layer=a.layer, grid=a.grid,
                                 embed_spec=_embed_spec(a)))
        elif cmd == "pca":
            print(pca_preview(a.raster, a.out, tqdm_progress("PCA")))
        elif cmd == "kmeans":
            print(kmeans_map(a.raster, a.clusters, a.out, a.seed, tqdm_progress("k-means")))
        return 0
    except KeyboardInterrupt:
        last_line("Interrupted; no output was written.")
        return 130
    except SoftConError as e:
        last_line(f"error: {e}")
        return 2
