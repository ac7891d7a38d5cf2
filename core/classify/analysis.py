"""Looking at embeddings without labels: similarity map, PCA false colour, k-means clusters.

- ``similarity``: cosine similarity of every embedding pixel to the mean (L2-normalised) embedding of
  reference points or polygons: "where else looks like this?".
- ``pca``: the first three principal components of the embeddings as RGB, a quick check that the
  encoder separates the landscape (as in the DINOv2 paper's PCA feature visualisations).
- ``kmeans``: k-means clusters of the L2-normalised embeddings as an unsupervised class map.

All read the embedding raster strip by strip along its blocks; PCA and k-means are fitted on a random
sample of valid pixels (at most ``FIT_PIXELS``) and then applied strip by strip, so memory does not
grow with the raster. Also home of the small helpers the classifier shares: strip iteration and reading
pixels at sample positions. Every output goes through ``core.raster_io.BlockWriter``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import SoftConError
from ..progress import Progress

FIT_PIXELS = 50_000
STRIP_BYTES = 64 * 2**20  # float32 bytes of embeddings held per strip


# ------------------------------------------------------------------------------ embedding rasters
def embedding_tags(path: str | Path) -> dict[str, str]:
    """The ``SOFTCON`` tags of a raster (empty for any other raster)."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return ds.tags(ns="SOFTCON")
    except rasterio.errors.RasterioIOError:
        return {}


def is_embedding_raster(path: Any) -> bool:
    """True for a single raster file written by ``core.embed`` (it carries a ``SOFTCON`` model tag)."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        return False
    return "model" in embedding_tags(path)


def embedding_info(path: str | Path) -> dict[str, Any]:
    """``core.embed.read_embedding_info`` when available, else the raw tags with JSON values decoded."""
    try:
        from ..embed.tags import read_embedding_info
    except ImportError:  # pragma: no cover - embed lands with issue 6
        read_embedding_info = None
    if read_embedding_info is not None:
        return dict(read_embedding_info(path))
    info: dict[str, Any] = {}
    for k, v in embedding_tags(path).items():
        try:
            info[k] = json.loads(v)
        except ValueError:
            info[k] = v
    return info


def strip_rows(ds) -> int:
    """Rows per strip: a multiple of the block height holding about ``STRIP_BYTES`` of float32."""
    bh = ds.block_shapes[0][0]
    per_row = ds.width * ds.count * 4
    n = max(1, STRIP_BYTES // max(per_row * bh, 1))
    return int(min(ds.height, n * bh))


def iter_strips(ds, progress: Progress | None = None, message: str = "") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (first row, embeddings (n, W, D) float32, valid (n, W) bool) down the raster.

    A pixel is valid when its first band is finite and not the declared nodata value.
    """
    from rasterio.windows import Window

    step = strip_rows(ds)
    nodata = ds.nodata
    for r in range(0, ds.height, step):
        n = min(step, ds.height - r)
        x = ds.read(window=Window(0, r, ds.width, n), out_dtype="float32")  # (D, n, W)
        valid = np.isfinite(x[0])
        if nodata is not None and np.isfinite(nodata):
            valid &= x[0] != nodata
        yield r, np.ascontiguousarray(np.moveaxis(x, 0, -1)), valid
        if progress is not None:
            progress.check()
            progress.update(r + n, ds.height, message)


def read_pixels(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Embeddings (M, D) float32 at pixel (rows, cols); NaN rows where the raster has no data."""
    from rasterio.windows import Window

    out = np.full((len(rows), ds.count), np.nan, np.float32)
    if len(rows) == 0:
        return out
    step = strip_rows(ds)
    strip = rows // step
    nodata = ds.nodata
    for s in np.unique(strip):
        sel = np.nonzero(strip == s)[0]
        r0, c0 = int(rows[sel].min()), int(cols[sel].min())
        r1, c1 = int(rows[sel].max()) + 1, int(cols[sel].max()) + 1
        x = ds.read(window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")  # (D, h, w)
        v = x[:, rows[sel] - r0, cols[sel] - c0].T
        if nodata is not None and np.isfinite(nodata):
            v[v[:, 0] == nodata] = np.nan
        out[sel] = v
    return out


def random_pixels(ds, n: int = FIT_PIXELS, seed: int = 0) -> np.ndarray:
    """Up to ``n`` valid embeddings (n, D) drawn uniformly over the raster (strip by strip)."""
    rng = np.random.default_rng(seed)
    frac = min(1.0, n / max(ds.width * ds.height, 1))
    picks = []
    for _, x, valid in iter_strips(ds):
        r, c = np.nonzero(valid)
        if r.size:
            take = rng.random(r.size) < frac
            picks.append(x[r[take], c[take]])
    if not picks or sum(len(p) for p in picks) == 0:
        raise SoftConError("The embedding raster holds no valid pixels; recompute it over an area with data.")
    return np.concatenate(picks)[:n]


# --------------------------------------------------------------------------------------- analyses
def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def reference_embedding(ds, vector: str | Path, fids: Sequence[int] | None = None, layer=None,
                        max_pixels_per_polygon: int = 200) -> tuple[np.ndarray, int]:
    """Mean L2-normalised embedding (D,) of the pixels under the reference features, and their count.

    Args:
        fids: feature ids to use (None = all features of the layer).
    """
    from ..geo.samples import reproject

    vec = read_vector_any(vector, layer)
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


def read_vector_any(path: str | Path, layer=None):
    """Read a vector's geometries whatever its fields (the label is the feature id)."""
    import shapely

    from ..geo.samples import VectorSamples

    try:
        from pyogrio.raw import read
        meta, fids, wkb, _ = read(path, layer=layer, return_fids=True, columns=[])
    except Exception as e:
        raise SoftConError(f"Cannot read reference features from {path}: {e}") from None
    return VectorSamples(shapely.from_wkb(wkb), [str(f) for f in fids], meta.get("crs"), np.asarray(fids), str(path))


def _feature_pixels(geoms, transform, shape, max_pixels_per_polygon) -> tuple[np.ndarray, np.ndarray]:
    from ..geo.samples import VectorSamples, rasterize_samples

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
    import rasterio

    from ..io.writer import BlockWriter
    from .styles import write_ramp_qml

    out_path = Path(out_path)
    ref = _normalize(np.asarray(reference, np.float32))
    with rasterio.open(embedding) as ds, \
         BlockWriter.like(out_path, ds, 1, "float32", namespace=None, descriptions=["cosine similarity"]) as w:
        for r, x, valid in iter_strips(ds, progress, "similarity"):
            sim = _normalize(x) @ ref
            sim[~valid] = np.nan
            w.write_rows(r, sim[None].astype(np.float32))
        w.commit()
    write_ramp_qml(out_path.with_suffix(".qml"), 0.0, 1.0)
    return out_path


def pca_raster(embedding: str | Path, out_path: str | Path, progress: Progress | None = None,
               seed: int = 0) -> Path:
    """First three principal components as a 3-band uint8 RGB GeoTIFF (0 = nodata), 2-98 % stretch."""
    import rasterio

    from ..io.writer import BlockWriter

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
    import rasterio
    from sklearn.cluster import KMeans

    from ..io.writer import BlockWriter
    from .styles import PALETTE, write_class_qml

    if not 2 <= int(n_clusters) <= 254:
        raise SoftConError(f"The number of clusters must be between 2 and 254, not {n_clusters}.")
    out_path = Path(out_path)
    with rasterio.open(embedding) as ds:
        sample = _normalize(random_pixels(ds, seed=seed))
        if len(sample) < n_clusters:
            raise SoftConError(f"Only {len(sample)} valid pixels for {n_clusters} clusters; choose fewer clusters.")
        km = KMeans(n_clusters=int(n_clusters), n_init=3, random_state=seed).fit(sample)
        centers = _normalize(km.cluster_centers_.astype(np.float32))  # (k, D)
        names = [f"cluster {i + 1}" for i in range(n_clusters)]
        colors = [PALETTE[i % len(PALETTE)] for i in range(n_clusters)]
        cmap = {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(colors)}}
        with BlockWriter.like(out_path, ds, 1, "uint8", nodata=0, namespace=None, colormap=cmap,
                              descriptions=["cluster"], tags={"CLASS_NAMES": json.dumps(names)}) as w:
            for r, x, valid in iter_strips(ds, progress, "k-means"):
                lab = (_normalize(x) @ centers.T).argmax(-1).astype(np.uint8) + 1
                lab[~valid] = 0
                w.write_rows(r, lab[None])
            w.commit()
    write_class_qml(out_path.with_suffix(".qml"), names, colors)
    return out_path
