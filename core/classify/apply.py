"""``apply_classifier``: map a raster with a classifier saved by :func:`core.classify.fit.classify`."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import rasterio

from ..embed.spec import EmbedSpec
from ..embed.tags import embedding_info, is_embedding_raster
from ..io.raster import gdal_env
from ..io.writer import check_folder
from ..models.registry import DEFAULT_MODEL, get_record
from ..models.weights import weights_id
from ..progress import Progress
from .checks import preflight_apply, strip_pixels
from .classifiers import load_classifier
from .compat import check_compatible, check_expected
from .embedding import drop_uncached, embedding_summary, get_embedding
from .features import FeatureSpec
from .outputs import ClassifyResult, closing, describe_features, finish, OutputOptions
from .pixelmap import FeatureSource, full_spec_bands, open_source
from .report import build_report


def apply_classifier(
    raster: str | os.PathLike | Sequence[str | os.PathLike],
    classifier_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EmbedSpec,
    *,
    expect: Mapping[str, str | None] | None = None,
    cache: bool = True,
    destinations: Mapping[str, str | os.PathLike] | None = None,
    progress: Progress | None = None,
) -> ClassifyResult:
    """Map another raster (or the same one) with a classifier saved by :func:`core.classify.fit.classify`.

    The raster is embedded with the model, mode and stride the classifier was trained on (they replace those of
    ``spec``; its weights, bands, device, precision and extent apply), and the map is made from the classifier's
    feature groups on its grid. ``expect`` names what the caller requires of the classifier (``model``,
    ``mode``, ``features``, ``grid``; None = whatever it has): a classifier that differs, or weights
    (``spec.pretrained``, ``spec.checkpoint``, or those recorded in an embedding raster) that differ from the
    classifier's, stop the run before anything is computed (:func:`core.classify.compat.check_compatible`).
    Writes the same outputs as ``classify``, without cross-validation; ``destinations`` keeps only the outputs
    it names, at its paths.
    """
    progress = progress or Progress()
    t0 = time.perf_counter()
    check_folder(out_dir)
    saved = load_classifier(classifier_path)
    if not saved.checked:
        progress.log(f"Warning: {classifier_path} was saved by an older version without a checksum, so damage to it "
                     f"cannot be detected; save it again with this version.")
    meta = saved.embedding
    asked = check_expected(saved, expect)
    model = meta.get("model") or asked["model"] or DEFAULT_MODEL
    # classifiers of format 1 recorded no mode: they were trained on pooled embeddings
    spec = spec.replace(model=model, mode=meta.get("mode") or "pooled", stride=meta.get("stride"))
    bands, checkpoint, pretrained = spec.bands, spec.checkpoint, spec.pretrained
    if is_embedding_raster(raster):
        info = embedding_info(raster)
        check_compatible(saved, info, info.get("weights_id") or "", what=Path(raster).name, **asked)
    else:
        record = get_record(model)
        check_compatible(saved, {"model": model, "bands": list(record.bands)},
                         weights_id(record, pretrained, checkpoint), what="this raster with these options", **asked)
    preflight_apply(raster, spec, saved, Path(out_dir), progress.log)
    emb = get_embedding(raster, spec, cache=cache, progress=progress)
    try:
        with gdal_env(), rasterio.open(emb.path) as ds, closing(open_source(raster, emb.info)) as src:
            check_compatible(saved, {**emb.info, "dim": ds.count}, emb.weights_id, what=emb.path.name)
            summary = embedding_summary(emb, ds)
            features = saved.features
            if features is not None and "pixel" in features.groups:  # this raster's offset, not the training's
                features = dataclasses.replace(features, offset=float(emb.info.get("offset") or 0.0))
            if features is None:  # a classifier of format 1: the raw embeddings on their own grid
                dim = ds.count
                features = FeatureSpec(("emb",), "embedding", mean=np.zeros(dim, np.float32),
                                       components=np.eye(dim, dtype=np.float32))
            needs_bands = "pixel" in features.groups or features.upsample == "jbu"  # pixel features or the guide
            _, band_index = full_spec_bands(src, emb.info, bands) if needs_bands else ({}, {})
            source = FeatureSource(ds, src, features, emb.info.get("cell") or 1, band_index)
            source.strip_pixels = strip_pixels(features.dim, len(saved.class_names))
            report = build_report(saved, None, None, summary, emb.weights,
                                  timings={"embedding": round(time.perf_counter() - t0, 3)})
            describe_features(report, features, source)
            report["samples"] = {"classifier": str(classifier_path), "trained_on": meta}
            result = finish(source, emb, saved, out_dir, report, raster, bands, progress,
                            OutputOptions(destinations, keep=Path(classifier_path)))
    finally:
        drop_uncached(emb)
    return result
