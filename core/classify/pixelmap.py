"""Feature vectors for training pixels and for the whole map, on the raster's grid or the embedding grid.

:class:`FeatureSource` couples an embedding raster with the raster it came from and a
:class:`~core.classify.features.FeatureSpec`. It gives the features of sample pixels (training) and yields the
map's features strip by strip (prediction), so memory is bounded by a strip of about a million
pixels whatever the raster's size; :func:`predict_map` writes the class, probability and confidence
rasters from it one strip at a time.

The pixel grid is the input raster's own grid over the embedding's extent: its origin is the
embedding grid's origin (a raster pixel), and token ``(i, j)`` covers pixels
``[i * cell, (i + 1) * cell)`` of it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.transform import array_bounds
from rasterio.windows import Window

from ..embed.tags import is_embedding_raster
from ..errors import SoftConError
from ..io.raster import band_names, nodata_values, open_raster
from ..io.reader import Prefetcher, random_pixels, read_pixels, read_window
from ..io.writer import BlockWriter
from ..progress import Progress
from .features import (FeatureSpec, fit_pca, pixel_bands_spec, pixel_features, sample_emb, sample_pixels,
                       strip_height, token_rows_for, upsample_rows)
from .styles import class_values


@dataclass(frozen=True)
class Grid:
    """An output grid: size, geotransform, CRS, and its offset in raster pixels (pixel grid only)."""

    height: int
    width: int
    transform: Affine
    crs: Any
    row_off: int = 0
    col_off: int = 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the CRS."""
        top_left_bottom_right = array_bounds(self.height, self.width, self.transform)  # (west, south, east, north)
        return tuple(float(v) for v in top_left_bottom_right)


class FeatureSource:
    """Features of the map's pixels, from an open embedding raster and (for ``pixel``) its source raster.

    Args:
        emb_ds: open embedding raster (dense or pooled); cell: its output pixel in raster pixels.
        src: the open source raster, or None when it is not available (then only the ``emb`` group,
            and a pixel grid ``cell`` times finer than the embedding's, without the raster's nodata mask).
        spec: the features; band_index: 1-based raster band of each pixel band.
    """

    def __init__(self, emb_ds: Any, src: Any, spec: FeatureSpec, cell: int, band_index: dict[str, int] | None = None):
        self.emb, self.src, self.spec, self.cell = emb_ds, src, spec, int(cell)
        self.band_index = band_index or {}
        self.strip_pixels = 1 << 20  # pixels per prediction strip (core.classify.checks.strip_pixels lowers it)
        if "pixel" in spec.groups and (src is None or any(b not in self.band_index for b in spec.bands)):
            missing = [b for b in spec.bands if b not in self.band_index]
            raise SoftConError(
                f"The pixel features need the raster's own bands {', '.join(missing)}, which "
                + ("it does not have (or whose band names are missing: give --bands, e.g. --bands s2_l1c)"
                   if src is not None else "are not available: give the original raster, not only its embeddings")
                + ", or use a classifier trained with --features emb.")
        if spec.grid == "embedding":
            if "pixel" in spec.groups:
                raise SoftConError("Pixel features exist only on the raster's own grid; use --grid pixel "
                                   "or --features emb.")
            self.grid = Grid(emb_ds.height, emb_ds.width, emb_ds.transform, emb_ds.crs)
        else:
            self.grid = pixel_grid(emb_ds, src, self.cell)

    # ------------------------------------------------------------------------------------ samples
    def sample(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (M, F) of grid pixels (rows, cols) and whether each is usable (M,)."""
        parts, ok = [], np.ones(len(rows), bool)
        if "emb" in self.spec.groups:
            if self.spec.grid == "embedding":
                e = (read_pixels(self.emb, rows, cols) - self.spec.mean) @ self.spec.components
            else:
                e = sample_emb(self.emb, self.spec, rows, cols, self.cell)
            parts.append(e.astype(np.float32))
            ok &= np.isfinite(e).all(1)
        if "pixel" in self.spec.groups:
            p, v = sample_pixels(self.src, self.spec, self.band_index, rows + self.grid.row_off,
                                 cols + self.grid.col_off)
            parts.append(p)
            ok &= v
        elif self.src is not None and self.spec.grid == "pixel":
            ok &= self._src_valid(rows, cols)
        return np.concatenate(parts, axis=1), ok

    def _src_valid(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        nd = nodata_values(self.src)[0]
        if nd is None:
            return np.ones(len(rows), bool)
        spec = FeatureSpec(("pixel",), bands=["B"], offset=0.0)
        _, v = sample_pixels(self.src, spec, {"B": 1}, rows + self.grid.row_off, cols + self.grid.col_off)
        return v

    # ------------------------------------------------------------------------------------- strips
    def _tokens(self, t0: int, t1: int) -> np.ndarray:
        """Projected token features (t1 - t0, W_tok, d) of embedding rows [t0, t1), NaN = nodata."""
        x = read_window(self.emb, None, Window(0, t0, self.emb.width, t1 - t0), "float32")
        x = np.moveaxis(x, 0, -1)
        bad = ~np.isfinite(x).all(-1)
        if self.emb.nodata is not None and np.isfinite(self.emb.nodata):
            bad |= x[..., 0] == self.emb.nodata
        y = (np.nan_to_num(x) - self.spec.mean) @ self.spec.components
        y[bad] = np.nan
        return y.astype(np.float32)

    def strips(self, progress: Progress | None = None, message: str = "") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (first row, features (n, W, F) float32, valid (n, W) bool) down the grid."""
        g = self.grid
        cell = 1 if self.spec.grid == "embedding" else self.cell
        step = strip_height(g.width, cell, self.strip_pixels)
        cols = np.arange(g.width)
        for r0 in range(0, g.height, step):
            r1 = min(g.height, r0 + step)
            parts, valid = [], np.ones((r1 - r0, g.width), bool)
            if "emb" in self.spec.groups:
                if self.spec.grid == "embedding":
                    e = self._tokens(r0, r1)
                else:
                    t0, t1 = token_rows_for(r0, r1, self.cell, self.emb.height)
                    e = upsample_rows(self._tokens(t0, t1), t0, np.arange(r0, r1), cols, self.cell,
                                      self.emb.height, self.emb.width)
                valid &= np.isfinite(e[..., 0])
                parts.append(e)
            if self.src is not None and self.spec.grid == "pixel":
                raw, v = self._read_src(r0, r1)
                valid &= v
                if "pixel" in self.spec.groups:
                    parts.append(pixel_features(raw, self.spec))
            yield r0, np.concatenate(parts, axis=-1), valid
            if progress is not None:
                progress.check()
                progress.update(r1, g.height, message)

    def _read_src(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        idx = [self.band_index[b] for b in self.spec.bands] if "pixel" in self.spec.groups else [1]
        win = Window(g.col_off, g.row_off + r0, g.width, r1 - r0)
        raw = read_window(self.src, idx, win, "float32")
        nd = nodata_values(self.src)
        valid = np.isfinite(raw).all(0)
        for k, b in enumerate(idx):
            if nd[b - 1] is not None:
                valid &= raw[k] != nd[b - 1]
        return raw, valid


def pixel_grid(emb_ds: Any, src: Any, cell: int) -> Grid:
    """The raster's own grid over the embedding's extent (pixel size = embedding pixel / ``cell``)."""
    t = emb_ds.transform * Affine.scale(1.0 / cell)
    height, width = emb_ds.height * cell, emb_ds.width * cell
    row_off = col_off = 0
    if src is not None:
        col_f, row_f = ~src.transform * (t.c, t.f)
        row_off, col_off = int(round(row_f)), int(round(col_f))
        if abs(row_f - row_off) > 1e-3 or abs(col_f - col_off) > 1e-3 or abs(src.transform.a - t.a) > 1e-6 * abs(t.a):
            raise SoftConError("The embedding raster is not on the grid of the raster given with it; give the "
                               "raster it was computed from.")
        height, width = min(height, src.height - row_off), min(width, src.width - col_off)
    return Grid(int(height), int(width), t, emb_ds.crs, row_off, col_off)


def predict_map(source: FeatureSource, classifier: Any, class_names: list[str], colors: list, tags: dict[str, str],
                paths: dict[str, Path], progress: Progress) -> tuple[dict[str, float], np.ndarray]:
    """Classify every grid pixel strip by strip; write class, probability and confidence rasters.

    Returns:
        (area fraction per class, decimated class map for the quicklook).
    """
    g = source.grid
    n = len(class_names)
    values = class_values(class_names)  # the user's integer codes, or 1..n
    lut = np.array([0] + values, np.uint16 if max(values) > 255 else np.uint8)  # class index + 1 -> pixel value
    cmap = {0: (0, 0, 0, 0), **{v: (*map(int, c[:3]), 255) for v, c in zip(values, colors)}}
    tags = {"CLASS_NAMES": json.dumps(class_names), "CLASS_VALUES": json.dumps(values), **tags}
    counts = np.zeros(n + 1, np.int64)
    step = max(1, math.ceil(max(g.height, g.width) / 640))
    small = np.zeros((math.ceil(g.height / step), math.ceil(g.width / step)), np.uint8)
    kw = dict(width=g.width, height=g.height, crs=g.crs, transform=g.transform, namespace=None, tags=tags)
    with BlockWriter(paths["class_raster"], count=1, dtype=lut.dtype.name, nodata=0, colormap=cmap,
                     descriptions=["class"], **kw) as wc, \
         BlockWriter(paths["probability_raster"], count=n, dtype="float32",
                     descriptions=[f"p({c})" for c in class_names], **kw) as wp, \
         BlockWriter(paths["confidence_raster"], count=1, dtype="float32",
                     descriptions=["max class probability"], **kw) as wf:
        # the next strip's features are read and computed in a background thread while the classifier
        # predicts this one on every core; progress and cancel are handled here, between strips
        workers = torch.get_num_threads()
        with Prefetcher(lambda stop: source.strips(), depth=1) as strips:
            for r, x, valid in strips:
                progress.check()
                h, w = valid.shape
                prob = np.full((h, w, n), np.nan, np.float32)
                if valid.any():
                    prob[valid] = classifier.predict_proba(x[valid], workers=workers)
                cls = np.where(valid, np.nan_to_num(prob, nan=-1).argmax(-1) + 1, 0).astype(np.uint8)  # index + 1
                conf = np.where(valid, np.nan_to_num(prob, nan=0).max(-1), np.nan).astype(np.float32)
                wc.write_rows(r, lut[cls][None])
                wp.write_rows(r, np.moveaxis(prob, -1, 0))
                wf.write_rows(r, conf[None])
                counts += np.bincount(cls.ravel(), minlength=n + 1)
                first = (-r) % step
                small[(r + first) // step:(r + first) // step + len(range(first, h, step))] = cls[first::step, ::step]
                progress.update(r + h, g.height, "classifying")
        for wr in (wc, wp, wf):
            wr.commit()
    total = max(int(counts[1:].sum()), 1)
    return {name: float(counts[i + 1] / total) for i, name in enumerate(class_names)}, small


def open_source(raster: Any, info: dict[str, Any]) -> Any:
    """The raster the pixel features come from (opened), or None for an embedding raster whose source is gone."""
    if is_embedding_raster(raster):
        sources = info.get("sources") or []
        if not sources or not all(Path(s).exists() for s in sources):
            return None
        raster = sources[0] if len(sources) == 1 else sources
    return open_raster(raster if isinstance(raster, (str, Path)) else [str(r) for r in raster])


def full_spec(emb_ds: Any, src: Any, info: dict[str, Any], bands: Any, grid: str, seed: int = 0) -> tuple[FeatureSpec, dict[str, int]]:
    """Every feature group available for this raster (PCA fitted on its embeddings), and the pixel bands;
    ``grid`` is one of :data:`core.classify.spec.GRIDS` (checked by the spec)."""
    mean, comps = fit_pca(random_pixels(emb_ds, seed=seed))
    names, idx, index = [], [], {}
    if src is not None and grid == "pixel":
        names, idx, index = pixel_bands_spec(band_names(src, info.get("sources")), bands, info.get("bands") or ())
    groups = ("emb", "pixel") if names else ("emb",)
    spec = FeatureSpec(groups, grid, names, idx, float(info.get("offset") or 0.0), mean, comps)
    return spec, index


def full_spec_bands(src: Any, info: dict[str, Any], bands: Any) -> tuple[list[str], dict[str, int]]:
    """(pixel band names, band -> 1-based raster band) of a source raster; ([], {}) without one."""
    if src is None:
        return [], {}
    names, _, index = pixel_bands_spec(band_names(src, info.get("sources")), bands, info.get("bands") or ())
    return names, index


def upsample_to_pixels(token_raster: Path, out_path: Path, src: Any, cell: int, description: str,
                       progress: Progress | None = None) -> Path:
    """A one-band raster on the embedding grid (e.g. a similarity map) bilinearly upsampled to the raster's grid."""
    spec = FeatureSpec(("emb",), "pixel", mean=np.zeros(1, np.float32), components=np.eye(1, dtype=np.float32))
    with rasterio.open(token_raster) as tok:
        source = FeatureSource(tok, src, spec, cell)
        g = source.grid
        with BlockWriter(out_path, width=g.width, height=g.height, count=1, crs=g.crs, transform=g.transform,
                         dtype="float32", namespace=None, descriptions=[description]) as w:
            for r, x, valid in source.strips(progress, "upsampling"):
                w.write_rows(r, np.where(valid, x[..., 0], np.nan)[None].astype(np.float32))
            w.commit()
    return out_path
