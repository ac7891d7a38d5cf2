"""``python -m core.classify [apply|similarity|pca|kmeans|demo]``; without arguments, the demo.

The settings flags come from the specs (:class:`core.embed.spec.EmbedSpec`, :class:`core.classify.spec.FitSpec`)
through :mod:`core.settings`: their defaults, choices and checks are declared there once, and
``to_argv(spec)`` gives back the flags of a spec built elsewhere (the QGIS plugin).
"""
from __future__ import annotations

import argparse
import time

from ..cli import add_debug, run_main
from ..embed.spec import EmbedSpec
from ..errors import SoftConError
from ..geo.samples import Samples
from ..progress import cli_progress, emit_result, json_lines
from ..settings import add_arguments, from_args
from .apply import apply_classifier
from .demo import DEMO_OUT_DIR, run_demo, summary_text
from .explore import kmeans_map, pca_preview, similarity_map
from .fit import classify
from .outputs import ClassifyResult, NAMES
from .spec import FitSpec, GRIDS
from .tiles import apply_tiles, is_many_tiles, summary_text as tiles_summary

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
    add_debug(p)
    return p


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m core.classify {cmd}")
    add_debug(p)
    if cmd == "demo":
        p.add_argument("--out-dir", default=DEMO_OUT_DIR)
        p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
        add_arguments(p.add_argument_group("classifier settings"), FitSpec)
        add_arguments(p.add_argument_group("embedding settings"), EmbedSpec, exclude=NOT_FOR_MAPS)
        return p
    p.add_argument("raster", nargs="+" if cmd in ("apply", "similarity") else None,
                   help="a raster, the band files of one scene, or several rasters, Sentinel-2 product folders or "
                        "folders of them: one map per tile plus mosaic VRTs, resumable" if cmd == "apply" else None)
    if cmd == "apply":  # model, mode and stride are the classifier's; a flag that disagrees is refused
        p.add_argument("--classifier", required=True)
        p.add_argument("--out-dir", required=True)
        p.add_argument("--tiles", action="store_true", help="map every input as a tile of its own (out-dir/tiles/"
                       "<tile>/ and mosaic VRTs), even a single raster; the default for folders and several rasters")
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


def _done(res: ClassifyResult) -> None:
    """The result: the summary on stdout, or for the plugin the protocol's result line."""
    if json_lines():
        emit_result(res.summary())
    else:
        print(summary_text(res))


def _wrote(path) -> None:
    """An output file: its path on stdout, or for the plugin the protocol's result line."""
    if json_lines():
        emit_result({"output": str(path)})
    else:
        print(path)


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


def _main(argv: list[str]) -> int:
    cmd = argv[0] if argv and argv[0] in COMMANDS else None
    if not argv or cmd == "demo":
        a = _sub_parser("demo").parse_args(argv[1:] if cmd else [])
        t = time.perf_counter()
        res = run_demo(a.out_dir, from_args(EmbedSpec, a), from_args(FitSpec, a), cache=not a.no_cache,
                       progress=cli_progress("demo"))
        print(summary_text(res))
        print(f"demo time {time.perf_counter() - t:.1f} s "
              f"(embedding {'from cache' if res.report['embedding']['from_cache'] else 'computed'})")
        return 0
    if cmd is None:
        a = get_args_parser().parse_args(argv)
        validation = (Samples(a.validation, a.validation_field, a.validation_layer)
                      if a.validation is not None else None)
        res = classify(_one(a.raster), Samples(a.samples, a.label_field, a.layer), a.out_dir,
                       from_args(EmbedSpec, a), from_args(FitSpec, a), save_classifier=a.save_classifier,
                       cache=not a.no_cache, destinations=destinations(a.output),
                       progress=cli_progress("classify"), validation=validation)
        _done(res)
        return 0
    a = _sub_parser(cmd).parse_args(argv[1:])
    if cmd == "apply" and (a.tiles or is_many_tiles(a.raster)):
        if a.output:
            raise SoftConError("--output places the outputs of one map; several tiles are mapped into "
                               "OUT_DIR/tiles/<tile>/ with mosaics in OUT_DIR: leave --output out, or apply to "
                               "one raster.")
        expect = {"model": a.model, "mode": a.mode, "features": a.features, "grid": a.grid}
        tiles = apply_tiles(a.raster, a.classifier, a.out_dir, from_args(EmbedSpec, a), expect=expect,
                            cache=not a.no_cache, progress=cli_progress("tiles"), progress_for=cli_progress)
        if json_lines():
            emit_result(tiles.summary())
        else:
            print(tiles_summary(tiles))
    elif cmd == "apply":
        expect = {"model": a.model, "mode": a.mode, "features": a.features, "grid": a.grid}
        res = apply_classifier(_one(a.raster), a.classifier, a.out_dir, from_args(EmbedSpec, a), expect=expect,
                               cache=not a.no_cache, destinations=destinations(a.output),
                               progress=cli_progress("apply"))
        _done(res)
    elif cmd == "similarity":
        _wrote(similarity_map(_one(a.raster), a.reference, a.out, from_args(EmbedSpec, a), fids=_fids(a.fids),
                              layer=a.layer, grid=a.grid, cache=not a.no_cache,
                              progress=cli_progress("similarity")))
    elif cmd == "pca":
        _wrote(pca_preview(a.raster, a.out, progress=cli_progress("PCA")))
    elif cmd == "kmeans":
        _wrote(kmeans_map(a.raster, a.clusters, a.out, seed=a.seed, progress=cli_progress("k-means")))
    return 0
