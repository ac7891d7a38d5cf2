"""``python -m core.classify [apply|similarity|pca|kmeans|demo]``; without arguments, the demo.

The settings flags come from the specs (:class:`core.embed.spec.EmbedSpec`, :class:`core.classify.spec.FitSpec`)
through :mod:`core.settings`: their defaults, choices and checks are declared there once, and
``to_argv(spec)`` gives back the flags of a spec built elsewhere (the QGIS plugin).
"""
from __future__ import annotations

import argparse
import sys
import time

from ..embed.spec import EmbedSpec
from ..errors import SoftConError
from ..progress import last_line, tqdm_progress
from ..settings import add_arguments, from_args
from .apply import apply_classifier
from .demo import DEMO_OUT_DIR, run_demo, summary_text
from .explore import kmeans_map, pca_preview, similarity_map
from .fit import classify
from .outputs import NAMES
from .spec import FitSpec, GRIDS

COMMANDS = ("apply", "similarity", "pca", "kmeans", "demo")
#: Embedding settings that mean nothing for a map: its embedding is an intermediate (cached) file.
NOT_FOR_MAPS = ("cog",)


def _outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", action="append", default=None, metavar="KEY=PATH",
                   help=f"write only the outputs named, each to its PATH (repeatable; class_raster is required); "
                        f"KEY is one of: {', '.join(NAMES)}")
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")


def _validation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validation", metavar="POINTS_OR_POLYGONS",
                   help="independent reference samples (same label field), never trained on: the reports headline "
                        "their accuracy, and --method/--features auto choose by them")
    p.add_argument("--validation-layer", help="layer of a multi-layer validation file")
    p.add_argument("--validation-field", help="class field of the validation samples (default: --label-field)")


def destinations(values: list[str] | None) -> dict[str, str] | None:
    """``["class_raster=a.tif", ...]`` -> ``{"class_raster": "a.tif", ...}`` (None when no --output was given)."""
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, path = item.partition("=")
        if not sep or not path or key not in NAMES:
            raise SoftConError(f"--output takes KEY=PATH with KEY one of {', '.join(NAMES)}, not {item!r}.")
        out[key] = path
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.classify",
        description="Land-cover map from training samples over SoftCon embeddings. Without arguments: the demo. "
                    "Other commands: apply, similarity, pca, kmeans, demo (python -m core.classify CMD -h).")
    p.add_argument("raster", nargs="+", help="raster, single-band files of one scene, or an embedding raster")
    p.add_argument("--samples", required=True, help="points or polygons (GeoPackage, Shapefile, GeoJSON)")
    p.add_argument("--label-field", required=True)
    p.add_argument("--layer", help="layer of a multi-layer vector file")
    _validation(p)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--save-classifier", nargs="?", const=True, default=None, metavar="PATH",
                   help="save the classifier (default out-dir/classifier.npz)")
    _outputs(p)
    add_arguments(p.add_argument_group("classifier settings"), FitSpec)
    add_arguments(p.add_argument_group("embedding settings"), EmbedSpec, exclude=NOT_FOR_MAPS)
    return p


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m core.classify {cmd}")
    if cmd == "demo":
        p.add_argument("--out-dir", default=DEMO_OUT_DIR)
        p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
        add_arguments(p.add_argument_group("classifier settings"), FitSpec)
        add_arguments(p.add_argument_group("embedding settings"), EmbedSpec, exclude=NOT_FOR_MAPS)
        return p
    p.add_argument("raster", nargs="+" if cmd in ("apply", "similarity") else None)
    if cmd == "apply":  # model, mode and stride are the classifier's; a flag that disagrees is refused
        p.add_argument("--classifier", required=True)
        p.add_argument("--out-dir", required=True)
        _outputs(p)
        p.add_argument("--model", help="must match the classifier's model (default: the classifier's)")
        p.add_argument("--mode", help="must match the classifier's embedding mode (default: its)")
        p.add_argument("--features", help="must match the classifier's feature groups (default: its)")
        p.add_argument("--grid", help="must match the classifier's grid (default: its)")
        add_arguments(p.add_argument_group("embedding settings"), EmbedSpec,
                      exclude=NOT_FOR_MAPS + ("model", "mode", "stride"))
    elif cmd == "similarity":
        p.add_argument("--reference", required=True, help="vector file of reference points/polygons")
        p.add_argument("--fids", help="comma-separated feature ids (default: all)")
        p.add_argument("--layer")
        p.add_argument("--out", required=True)
        p.add_argument("--grid", default="pixel", help=f"map grid; one of: {', '.join(GRIDS)} (default: pixel)")
        p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
        add_arguments(p.add_argument_group("embedding settings"), EmbedSpec, exclude=NOT_FOR_MAPS)
    elif cmd == "pca":
        p.add_argument("--out", required=True)
    elif cmd == "kmeans":
        p.add_argument("--clusters", type=int, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", required=True)
    return p


def _one(raster: list[str]) -> str | list[str]:
    return raster[0] if len(raster) == 1 else raster


def _fids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise SoftConError(f"--fids takes comma-separated feature ids, not {text!r}.") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        if not argv or cmd == "demo":
            a = _sub_parser("demo").parse_args(argv[1:] if cmd else [])
            t = time.perf_counter()
            res = run_demo(a.out_dir, from_args(EmbedSpec, a), from_args(FitSpec, a), cache=not a.no_cache,
                           progress=tqdm_progress("demo"))
            print(summary_text(res))
            print(f"demo time {time.perf_counter() - t:.1f} s "
                  f"(embedding {'from cache' if res.report['embedding']['from_cache'] else 'computed'})")
            return 0
        if cmd is None:
            a = get_args_parser().parse_args(argv)
            res = classify(_one(a.raster), a.samples, a.label_field, a.out_dir, from_args(EmbedSpec, a),
                           from_args(FitSpec, a), layer=a.layer, save_classifier=a.save_classifier,
                           cache=not a.no_cache, destinations=destinations(a.output),
                           progress=tqdm_progress("classify"), validation=a.validation,
                           validation_layer=a.validation_layer, validation_field=a.validation_field)
            print(summary_text(res))
            return 0
        a = _sub_parser(cmd).parse_args(argv[1:])
        if cmd == "apply":
            expect = {"model": a.model, "mode": a.mode, "features": a.features, "grid": a.grid}
            res = apply_classifier(_one(a.raster), a.classifier, a.out_dir, from_args(EmbedSpec, a), expect=expect,
                                   cache=not a.no_cache, destinations=destinations(a.output),
                                   progress=tqdm_progress("apply"))
            print(summary_text(res))
        elif cmd == "similarity":
            print(similarity_map(_one(a.raster), a.reference, a.out, from_args(EmbedSpec, a), fids=_fids(a.fids),
                                 layer=a.layer, grid=a.grid, cache=not a.no_cache,
                                 progress=tqdm_progress("similarity")))
        elif cmd == "pca":
            print(pca_preview(a.raster, a.out, progress=tqdm_progress("PCA")))
        elif cmd == "kmeans":
            print(kmeans_map(a.raster, a.clusters, a.out, seed=a.seed, progress=tqdm_progress("k-means")))
        return 0
    except KeyboardInterrupt:
        last_line("Interrupted; no output was written.")
        return 130
    except SoftConError as e:
        last_line(f"error: {e}")
        return 2
