"""``apply_classifier``: map a raster with a classifier saved by :func:`core.classify.fit.classify`."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio

from ..embed.spec import EmbedSpec
from ..embed.tags import embedding_info, is_embedding_raster
from ..io.writer import check_folder
from ..models.registry import DEFAULT_MODEL, get_record
from ..models.weights import weights_id
from ..progress import Progress
from .compat import check_compatible
from .embedding import drop_uncached, embedding_summary, get_embedding
from .features import FeatureSpec, parse_features
from .outputs import ClassifyResult, closing, describe_features, finish, read_classifier
from .pixelmap import FeatureSource, full_spec_bands, open_source
from .report import build_report


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
    embed_spec: EmbedSpec | None = None,
    destinations: Mapping[str, str | os.PathLike] | None = None,
) -> ClassifyResult:
    """Map another raster (or the same one) with a classifier saved by :func:`classify`.

    The raster is embedded with the model, mode and stride the classifier was trained on, and the map
    is made from the classifier's feature groups on its grid. ``model``, ``mode``, ``features`` and
    ``grid`` (None = the classifier's) and the weights (``pretrained``, ``checkpoint``, or those recorded
    in an embedding raster) must match the classifier, or nothing runs (:func:`core.classify.compat.check_compatible`).
    Writes the same outputs as :func:`classify`, without cross-validation.
    ``embed_spec`` (:class:`core.embed.spec.EmbedSpec`), when given, replaces ``bands``, ``checkpoint``,
    ``pretrained``, ``device``, ``precision`` and ``bbox``; model, mode and stride are the classifier's.
    ``destinations`` keeps only the outputs it names, at its paths (as in :func:`classify`).
    """
    progress = progress or Progress()
    t0 = time.perf_counter()
    check_folder(out_dir)
    saved = read_classifier(classifier_path)
    meta = saved.embedding
    asked = dict(model=model, mode=mode, features=parse_features(features), grid=grid)
    model = meta.get("model") or model or DEFAULT_MODEL
    embed_spec = (embed_spec or EmbedSpec(checkpoint=checkpoint, pretrained=pretrained, bands=bands, device=device,
                                          precision=precision, bbox=bbox, bbox_crs=bbox_crs)).replace(
        model=model, mode=meta.get("mode") or "pooled", stride=meta.get("stride"))
    bands, checkpoint, pretrained = embed_spec.bands, embed_spec.checkpoint, embed_spec.pretrained
    if is_embedding_raster(raster):
        info = embedding_info(raster)
        check_compatible(saved, info, info.get("weights_id") or "", what=Path(raster).name, **asked)
    else:
        record = get_record(model)
        check_compatible(saved, {"model": model, "bands": list(record.bands)},
                         weights_id(record, pretrained, checkpoint), what="this raster with these options", **asked)
    emb = get_embedding(raster, embed_spec, cache=cache, progress=progress)
    try:
        with rasterio.open(emb.path) as ds, closing(open_source(raster, emb.info)) as src:
            check_compatible(saved, {**emb.info, "dim": ds.count}, emb.weights_id, what=emb.path.name)
            summary = embedding_summary(emb, ds)
            spec = saved.features
            if spec is None:  # a classifier of format 1: the raw embeddings on their own grid
                dim = ds.count
                spec = FeatureSpec(("emb",), "embedding", mean=np.zeros(dim, np.float32),
                                   components=np.eye(dim, dtype=np.float32))
            needs_bands = "pixel" in spec.groups or spec.upsample == "jbu"
            _, band_index = full_spec_bands(src, emb.info, bands) if needs_bands else ({}, {})
            source = FeatureSource(ds, src, spec, emb.info.get("cell") or 1, band_index)
            report = build_report(
                class_names=saved.class_names, colors=saved.colors, counts={n: 0 for n in saved.class_names},
                feature_counts={}, dropped={}, n_features=0, cv=None,
                method=saved.classifier.method, params=saved.classifier.params, embedding=summary,
                weights=emb.weights, timings={"embedding": round(time.perf_counter() - t0, 3)},
            )
            describe_features(report, spec, source)
            report["samples"] = {"classifier": str(classifier_path), "trained_on": meta}
            result = finish(source, emb, saved, out_dir, report, raster, bands, progress, None, destinations)
    finally:
        drop_uncached(emb, cache)
    return result
