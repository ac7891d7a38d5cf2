"""``classify``: train a classifier on labelled samples over a raster's embeddings, map the raster, report accuracy.

The raster is embedded once (:mod:`.embedding`, cached on disk), the samples become training pixels of the
map's grid (:mod:`core.geo.samples`), every method on every feature set is evaluated by spatially blocked
cross-validation and on independent validation samples when given (:mod:`.evaluate`), and the chosen one maps the
raster strip by strip (:mod:`.pixelmap`); :mod:`.outputs` writes everything at once at the end, so a failed run
leaves no output.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import rasterio

from ..embed.spec import EmbedSpec
from ..geo.crs import pixel_xy_m
from ..errors import SoftConError
from ..geo.samples import drop_invalid, rasterize_samples, Samples
from ..io.raster import gdal_env
from ..io.writer import check_folder
from ..progress import Progress
from .checks import least_per_class, preflight, strip_pixels
from .classifiers import make_classifier, SavedClassifier
from .embedding import drop_uncached, embedding_summary, get_embedding
from .methods import auto_methods, get_method
from .outputs import ClassifyResult, closing, describe_features, finish, OutputOptions
from .evaluate import block_size, evaluate
from .pixelmap import full_source, open_source
from .report import build_report, TrainingSet
from .selection import candidates
from .spec import FEATURE_SETS, FitSpec, parse_features
from .styles import class_colors
from .validation import read_validation


def _feature_warnings(feats: np.ndarray, weights: str, method: str) -> list[str]:
    """Warnings about the embeddings themselves: untrained encoder, embeddings nearly all alike."""
    out = []
    if "random-init" in weights:
        out.append(f"The encoder is {weights}: the map shows what an untrained network separates, "
                   f"not what SoftCon learned.")
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    centre = unit.mean(0)
    spread = float((unit @ (centre / max(np.linalg.norm(centre), 1e-12))).mean()) if len(unit) else 0.0
    if spread > 0.995 and get_method(method).features != "standardised":
        out.append(f"The training embeddings are nearly identical in direction (mean cosine to their mean "
                   f"{spread:.4f}), so cosine methods ({method}) cannot tell classes apart; use --method linear "
                   f"(standardised features), dense mode, or trained weights.")
    return out


def classify(
    raster: str | os.PathLike | Sequence[str | os.PathLike],
    samples: Samples,
    out_dir: str | os.PathLike,
    spec: EmbedSpec,
    fit: FitSpec,
    *,
    save_classifier: str | os.PathLike | bool | None = None,
    cache: bool = True,
    destinations: Mapping[str, str | os.PathLike] | None = None,
    progress: Progress | None = None,
    validation: Samples | None = None,
) -> ClassifyResult:
    """Train a classifier on labelled samples over a raster's embeddings, map the raster, report accuracy.

    Args:
        raster: raster file, list of single-band files, or an embedding raster from ``core.embed``.
        samples: the training samples (:class:`core.geo.samples.Samples`): points or polygons (GeoPackage,
            Shapefile, GeoJSON...) in any CRS, the attribute holding each sample's class (text or integer), and
            the layer of a multi-layer file.
        out_dir: folder for the outputs (created; existing outputs of the same names are replaced).
        spec: the embedding settings (:class:`core.embed.spec.EmbedSpec`): model, weights, bands, mode, extent...
        fit: the classifier settings (:class:`core.classify.spec.FitSpec`): ``method`` ``auto`` (every method on
            every feature set, the best on ``validation`` when given, else by blocked CV) or one of
            :data:`core.classify.methods.METHODS`; features (``pixel`` with ``rf`` is the per-pixel random forest
            of the bands that GIS tools offer, the baseline); grid; CV folds and block size (default the range of
            the embedding's spatial autocorrelation, :mod:`core.classify.spatial`); method parameters; minimum
            mapping unit.
        save_classifier: True = ``out_dir/classifier.npz``, or a path; None/False = do not save.
        cache: reuse / store the embedding in the embedding cache.
        destinations: output key (``class_raster``, ``report_html``... see ``outputs.NAMES``) -> path: keep only
            these outputs, each at its path (the plugin passes the files the user chose); the stage folder
            is still made in ``out_dir``, so same-folder destinations are renamed into place.
        progress: callback and cancel check.
        validation: independent reference points or polygons (any CRS), never trained on; their class field
            defaults to the training samples' (``reference`` for a sample from ``python -m core.assess sample``).
            Every report then headlines accuracy, kappa, per-class F1 and the confusion matrix on them, and
            ``method``/``features`` ``auto`` choose by them (:mod:`core.classify.validation`).

    Returns:
        :class:`ClassifyResult` with the output paths, the report dict, class names and colours.

    Raises:
        SoftConError: bad input (unknown field, samples outside the raster, too few samples per class,
            embedding raster from another model...); nothing is written in that case.
    """
    progress = progress or Progress()
    bands = spec.bands
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_folder(out_dir)
    if save_classifier not in (None, False, True):  # saved after the maps: its place must be known good now
        if Path(save_classifier).is_dir():
            raise SoftConError(f"--save-classifier {save_classifier} is a folder; give a file name such as "
                               f"{Path(save_classifier) / 'classifier.npz'}.")
        check_folder(Path(save_classifier).parent)
    if samples.field is None:
        raise SoftConError(f"Name the class field of the training samples {samples.path}.")
    vec = samples.read()
    if validation is not None:  # a missing file or field stops here, before the embedding
        validation = validation.labelled_by(samples.field)
        validation.read()
    least = least_per_class(fit.cv_folds)
    preflight(raster, vec, spec, parse_features(fit.features), fit.grid, fit.max_pixels_per_polygon, out_dir,
              progress.log, min_per_class=least)
    emb = get_embedding(raster, spec, cache=cache, progress=progress)
    t_embed = time.perf_counter() - t0
    try:
        with gdal_env(), rasterio.open(emb.path) as ds, closing(open_source(raster, emb.info)) as src:
            source = full_source(ds, src, emb.info, bands, fit.grid, emb.info.get("cell") or 1, fit.seed)
            full = source.spec
            wanted = parse_features(fit.features)
            if wanted is not None:
                source.select(full.select(wanted))  # checks
            g = source.grid
            px = rasterize_samples(vec, g.transform, (g.height, g.width), g.crs, None, fit.max_pixels_per_polygon,
                                   least, seed=fit.seed)
            feats, ok = source.sample(px.rows, px.cols)
            px = drop_invalid(px, ok, least)
            feats = feats[ok]
            xy = pixel_xy_m(g, px.rows, px.cols)
            summary = embedding_summary(emb, ds)
            window_m = (emb.info.get("window") or 64) * float(emb.info.get("input_res_m") or 10.0)
            block = block_size(ds, fit.block_size_m, window_m, summary["pixel_size_m"], fit.seed)
            val = None if validation is None else read_validation(
                validation, px.class_names, source, px, fit.max_pixels_per_polygon, fit.seed)
            sets = [n for n, gr in FEATURE_SETS.items() if set(gr) <= set(full.groups)]
            if wanted is not None:
                sets = [n for n, gr in FEATURE_SETS.items() if gr == wanted]
            n_classes = len(px.class_names)
            pairs = candidates(fit.method, sets, n_classes)
            left_out = [m for m in auto_methods() if m not in auto_methods(n_classes)]
            if fit.method == "auto" and left_out:
                progress.log(f"{n_classes} classes: {', '.join(left_out)} left out of the comparison (its "
                             f"cross-validation alone would take minutes); ask for it with --method.")
            others = ([p for p in candidates("auto", sets, n_classes) if p not in pairs]
                      if fit.compare_methods and fit.method != "auto" else [])  # for the comparison table
            t = time.perf_counter()
            ev = evaluate(ds, TrainingSet(px, feats, xy, full), pairs, others, fit, block, progress, val)
            fs, method = ev.chosen
            spec = full.select(FEATURE_SETS[fs])
            cols = spec.columns(full)
            feats = feats[:, cols]
            t_cv = time.perf_counter() - t
            colors = class_colors(px.class_names)
            clf = make_classifier(method, n_classes, spec, **fit.method_params(method)).fit(feats, px.labels)
            needs = {key: summary[key] for key in ("model", "bands", "mode", "stride", "dim", "weights")}
            needs["weights_id"] = emb.weights_id
            saved = SavedClassifier(clf, px.class_names, colors, needs, spec)
            report = build_report(
                saved, px, ev.cv, summary, emb.weights,
                timings={"embedding": round(t_embed, 3), "cross_validation": round(t_cv, 3)},
                extra_warnings=(_feature_warnings(feats, emb.weights, method) if fs == "emb" else []) + ev.warnings,
            )
            report.update(method_comparison=ev.table, selected_by=ev.selected_by,
                          spatial={"block": ev.block, "samples": ev.spread})
            if val is not None:
                report["validation"] = val.score(clf, cols, px.class_names)
            describe_features(report, spec, source)
            report["samples"]["path"] = str(samples.path)
            report["samples"]["label_field"] = samples.field
            report["samples"]["geometry"] = px.geometry_type
            save_to = True if save_classifier is True else (Path(save_classifier) if save_classifier else None)
            final = source.select(spec)
            final.strip_pixels = strip_pixels(spec.dim, n_classes)
            result = finish(final, emb, saved, out_dir, report, raster, bands, progress,
                            OutputOptions(destinations, save_to, fit.min_mapping_unit))
    finally:
        drop_uncached(emb)
    result.report["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
    return result
