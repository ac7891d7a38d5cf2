"""Looking at embeddings without labels: similarity map, PCA false colour, k-means clusters.

- ``similarity``: cosine similarity of every embedding pixel to the mean (L2-normalised) embedding of
  reference points or polygons: "where else looks like this?"; on the raster's own grid, upsampled bilinearly.
- ``pca``: the first three principal components of the embeddings as RGB, a quick check that the
  encoder separates the landscape (as in the DINOv2 paper's PCA feature visualisations).
- ``kmeans``: k-means clusters of the L2-normalised embeddings as an unsupervised class map.

All read the embedding raster strip by strip along its blocks; PCA and k-means are fitted on a random
sample of valid pixels (at most ``FIT_PIXELS``) and then applied strip by strip, so memory does not
grow with the raster. Every output goes through ``core.io.writer.BlockWriter``; styles come from
:mod:`core.classify.styles`.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from sklearn.cluster import KMeans

from ..embed.spec import EmbedSpec
from ..embed.tags import is_embedding_raster
from ..errors import SoftConError
from ..geo.crs import reproject
from ..geo.samples import rasterize_samples, read_vector, VectorSamples
from ..io.reader import iter_strips, random_pixels, read_pixels
from ..io.writer import BlockWriter
from ..progress import Progress
from .embedding import get_embedding
from .pixelmap import open_source, upsample_to_pixels
from .spec import GRIDS
from .styles import cluster_style, PCA_RGB, SIMILARITY, write_qml


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def reference_embedding(ds, vector: str | Path, fids: Sequence[int] | None = None, layer=None,
                        max_pixels_per_polygon: int = 200) -> tuple[np.ndarray, int]:
    """Mean L2-normalised embedding (D,) of the pixels under the reference features, and their count.

    Args:
        fids: feature ids to use (None = all features of the layer).
    """
    vec = read_vector(vector, None, layer, what="reference features")
    if fids is not None:
        keep = np.isin(vec.fids, np.asarray(list(fids)))
        if not keep.any():
            raise SoftConError(f"None of the feature ids {list(fids)} exist in {Path(vector).name}.")
        vec.geometries, vec.fids = vec.geometries[keep], vec.fids[keep]
        vec.labels = [lab for lab, k in zip(vec.labels, keep) if k]
    rows, cols = _feature_pixels(reproject(vec.geometries, vec.crs, ds.crs), ds.transform, (ds.height, ds.width),
                                 max_pixels_per_polygon)
    x = read_pixels(ds, rows, cols)
    x = x[np.isfinite(x).all(1)]
    if len(x) == 0:
        raise SoftConError(f"The reference features in {Path(vector).name} cover no valid pixel of the raster; "
                           f"check that they overlap it (and that their layer CRS is right).")
    return _normalize(_normalize(x).mean(0)), len(x)


def _feature_pixels(geoms, transform, shape, max_pixels_per_polygon) -> tuple[np.ndarray, np.ndarray]:
    vec = VectorSamples(np.asarray(geoms), ["ref"] * len(geoms), None, np.arange(len(geoms)), "reference")
    try:
        px = rasterize_samples(vec, transform, shape, None, max_pixels_per_polygon=max_pixels_per_polygon,
                               min_per_class=0, check=False)
    except SoftConError:
        raise SoftConError("The reference features cover no pixel of the raster; check that they overlap it "
                           "(and that their layer CRS is right).") from None
    return px.rows, px.cols


def similarity_raster(embedding: str | Path, reference: np.ndarray, out_path: str | Path,
                      progress: Progress | None = None) -> Path:
    """Cosine similarity (float32, -1..1, NaN = nodata) of every pixel to ``reference`` (D,)."""
    out_path = Path(out_path)
    ref = _normalize(np.asarray(reference, np.float32))
    with rasterio.open(embedding) as ds, \
         BlockWriter.like(out_path, ds, 1, "float32", namespace=None, descriptions=["cosine similarity"]) as w:
        for r, x, valid in iter_strips(ds, progress, "similarity"):
            sim = _normalize(x) @ ref
            sim[~valid] = np.nan
            w.write_rows(r, sim[None].astype(np.float32))
        w.commit()
    write_qml(out_path.with_suffix(".qml"), SIMILARITY)
    return out_path


def pca_raster(embedding: str | Path, out_path: str | Path, progress: Progress | None = None,
               seed: int = 0) -> Path:
    """First three principal components as a 3-band uint8 RGB GeoTIFF (0 = nodata), 2-98 % stretch."""
    out_path = Path(out_path)
    with rasterio.open(embedding) as ds:
        sample = _normalize(random_pixels(ds, seed=seed))
        mean = sample.mean(0)
        centred = (sample - mean).astype(np.float64)
        evals, evecs = np.linalg.eigh(centred.T @ centred)  # (D, D) covariance: cheaper than an SVD of (N, D)
        comps = evecs[:, ::-1][:, :3].T.astype(np.float32)  # (3, D), largest variance first
        proj = (sample - mean) @ comps.T
        lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
        with BlockWriter.like(out_path, ds, 3, "uint8", nodata=0, namespace=None, photometric="RGB",
                              descriptions=["PC1", "PC2", "PC3"]) as w:
            for r, x, valid in iter_strips(ds, progress, "PCA"):
                p = (_normalize(x) - mean) @ comps.T  # (n, W, 3)
                v = np.clip(np.nan_to_num((p - lo) / np.maximum(hi - lo, 1e-9)) * 254 + 1, 1, 255).astype(np.uint8)
                v[~valid] = 0
                w.write_rows(r, np.moveaxis(v, -1, 0))
            w.commit()
    return out_path


def kmeans_raster(embedding: str | Path, n_clusters: int, out_path: str | Path, seed: int = 0,
                  progress: Progress | None = None) -> Path:
    """k-means clusters (1..k, 0 = nodata) of L2-normalised embeddings as a uint8 GeoTIFF + ``.qml``."""
    if not 2 <= int(n_clusters) <= 254:
        raise SoftConError(f"The number of clusters must be between 2 and 254, not {n_clusters}.")
    out_path = Path(out_path)
    with rasterio.open(embedding) as ds:
        sample = _normalize(random_pixels(ds, seed=seed))
        if len(sample) < n_clusters:
            raise SoftConError(f"Only {len(sample)} valid pixels for {n_clusters} clusters; choose fewer clusters.")
        km = KMeans(n_clusters=int(n_clusters), n_init=3, random_state=seed).fit(sample)
        centers = _normalize(km.cluster_centers_.astype(np.float32))  # (k, D)
        style = cluster_style(n_clusters)
        names = [name for _, name, _ in style.entries]
        cmap = {0: (0, 0, 0, 0), **{v: (*c, 255) for v, _, c in style.entries}}
        with BlockWriter.like(out_path, ds, 1, "uint8", nodata=0, namespace=None, colormap=cmap,
                              descriptions=["cluster"], tags={"CLASS_NAMES": json.dumps(names)}) as w:
            for r, x, valid in iter_strips(ds, progress, "k-means"):
                lab = (_normalize(x) @ centers.T).argmax(-1).astype(np.uint8) + 1
                lab[~valid] = 0
                w.write_rows(r, lab[None])
            w.commit()
    write_qml(out_path.with_suffix(".qml"), style)
    return out_path


# ------------------------------------------------------------------------------------ entry points
def similarity_map(
    raster_or_embedding: str | os.PathLike | Sequence[str | os.PathLike],
    reference_vector: str | os.PathLike,
    out_path: str | os.PathLike,
    spec: EmbedSpec,
    *,
    fids: Sequence[int] | None = None,
    layer: str | int | None = None,
    grid: str = "pixel",
    cache: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Cosine similarity of every embedding pixel to the mean embedding of reference points/polygons.

    Args:
        raster_or_embedding: imagery (embedded with ``spec``, cached) or an embedding raster of ``spec.model``.
        reference_vector: vector file; ``fids`` selects features (None = all), ``layer`` a layer in it.
        out_path: float32 GeoTIFF (NaN = nodata) with a ``.qml`` ramp beside it.
        grid: ``pixel``: on the raster's own grid (the similarity of the tokens, upsampled bilinearly;
            needs the original raster or an embedding raster whose source is still there);
            ``embedding``: on the token grid.
    """
    if grid not in GRIDS:
        raise SoftConError(f"Unknown grid {grid!r}; use one of: {', '.join(GRIDS)}.")
    emb = get_embedding(raster_or_embedding, spec, cache=cache, progress=progress)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise SoftConError(f"The output folder {out_path.parent} does not exist; create it first.")
    with rasterio.open(emb.path) as ds:
        ref, n = reference_embedding(ds, reference_vector, fids, layer)
    (progress or Progress()).log(f"Reference embedding from {n} pixel(s).")
    src = open_source(raster_or_embedding, emb.info) if grid == "pixel" else None
    if src is None:
        if grid == "pixel" and emb.info.get("cell", 1) > 1:
            (progress or Progress()).log("The raster behind the embeddings is not available: similarity on the "
                                         "embedding grid.")
        return similarity_raster(emb.path, ref, out_path, progress)
    tmp = out_path.parent / f".{out_path.stem}-{uuid.uuid4().hex[:8]}.tif"
    try:
        with src:
            similarity_raster(emb.path, ref, tmp, progress)
            upsample_to_pixels(tmp, out_path, src, emb.info.get("cell") or 1, "cosine similarity", progress)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".qml").unlink(missing_ok=True)
    write_qml(out_path.with_suffix(".qml"), SIMILARITY)
    return out_path


def _need_embedding(path: str | os.PathLike) -> Path:
    if not is_embedding_raster(path):
        raise SoftConError(f"{path} is not an embedding raster; compute one first with "
                           f"`python -m core.embed RASTER --out EMB.tif`.")
    return Path(path)


def pca_preview(embedding_raster: str | os.PathLike, out_path: str | os.PathLike, *,
                progress: Progress | None = None) -> Path:
    """PCA false colour (3-band uint8 RGB GeoTIFF with ``.qml``) of an embedding raster."""
    out = pca_raster(_need_embedding(embedding_raster), out_path, progress)
    write_qml(out.with_suffix(".qml"), PCA_RGB)
    return out


def kmeans_map(embedding_raster: str | os.PathLike, n_clusters: int, out_path: str | os.PathLike, *,
               seed: int = 0, progress: Progress | None = None) -> Path:
    """Unsupervised class map: k-means clusters of an embedding raster (uint8, 1..k, with ``.qml``)."""
    return kmeans_raster(_need_embedding(embedding_raster), n_clusters, out_path, seed, progress)
