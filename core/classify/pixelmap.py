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

import dataclasses
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
from ..io.reader import Prefetcher, read_window
from ..io.writer import BlockWriter
from ..progress import Progress
from .context import Context
from .features import (FeatureSpec, pixel_bands_spec, pixel_features, REFLECTANCE_SCALE, sample_pixels,
                       strip_height, token_rows_for, upsample_rows)
from .styles import class_values
from .upsample import JBU, token_guide, upsample


#: Most bytes of float32 raster bands read at once for the map (a read block: whole blocks of the raster).
READ_BYTES = 1 << 27


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
        src: the open source raster, or None when it is not available (then only the ``emb`` group, upsampled
            bilinearly, and a pixel grid ``cell`` times finer than the embedding's, without the raster's nodata mask).
        spec: the features; band_index: 1-based raster band of each pixel band.
        context: the :class:`~core.classify.context.Context` of ``emb_ds`` when already computed.
    """

    def __init__(self, emb_ds: Any, src: Any, spec: FeatureSpec, cell: int, band_index: dict[str, int] | None = None,
                 context: Context | None = None):
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
        emb = "emb" in spec.groups
        self.context = None
        if emb and spec.context_components is not None:
            self.context = context or Context(emb_ds, spec.context_mean, spec.context_components)
        self.jbu = self._tok_guide = None
        if emb and spec.grid == "pixel" and spec.upsample == "jbu":
            missing = [b for b in spec.guide_bands if b not in self.band_index]
            if src is None or missing:
                raise SoftConError(
                    "This classifier upsamples the embeddings guided by the raster's own bands"
                    + (f" ({', '.join(missing)} not found)" if src is not None else "")
                    + "; give the original raster, not only its embeddings.")
            self.jbu = JBU(*spec.jbu)

    def select(self, spec: FeatureSpec) -> "FeatureSource":
        """The same rasters with features ``spec`` (a subset of this one's), sharing what was computed."""
        out = FeatureSource(self.emb, self.src, spec, self.cell, self.band_index, self.context)
        out._tok_guide = self._tok_guide if out.jbu is not None else None
        return out

    # ------------------------------------------------------------------------------------ tokens
    def _tokens(self, t0: int, t1: int, head: np.ndarray | None = None, a: int = 0, b: int | None = None) -> np.ndarray:
        """Token features (t1 - t0, b - a, F) of embedding rows [t0, t1) and columns [a, b) (all by default),
        NaN = nodata: the embedding (or its projection) and its context, times ``head`` (F, C) when given."""
        b = self.emb.width if b is None else b
        x = read_window(self.emb, None, Window(a, t0, b - a, t1 - t0), "float32")
        x = np.moveaxis(x, 0, -1)
        bad = ~np.isfinite(x).all(-1)
        if self.emb.nodata is not None and np.isfinite(self.emb.nodata):
            bad |= x[..., 0] == self.emb.nodata
        x = np.nan_to_num(x)
        if self.spec.components is not None:
            x = (x - self.spec.mean) @ self.spec.components
        if self.context is not None:
            x = np.concatenate([x, self.context.tokens(t0, t1, np.arange(a, b))], axis=-1)
        if head is not None:
            x = x @ head
        x[bad] = np.nan
        return x.astype(np.float32)

    def token_guide(self) -> np.ndarray:
        """Mean guide (h, w, G) of every token, read once from the source raster."""
        if self._tok_guide is None:
            g, idx = self.grid, [self.band_index[b] for b in self.spec.guide_bands]
            out = np.full((self.emb.height, self.emb.width, len(idx)), np.nan, np.float32)
            # token rows per read: whole blocks of the raster where they fit in READ_BYTES / 2 of float32 bands
            # (a strip of one token row decoded each block row of a Sentinel-2 tile 32 times over)
            bh = -(-self.src.block_shapes[0][0] // self.cell)
            step = max(1, min(bh, (READ_BYTES // 2) // (4 * g.width * len(idx) * self.cell)))
            for t0 in range(0, self.emb.height, step):
                t1 = min(self.emb.height, t0 + step)
                r0, r1 = t0 * self.cell, min(g.height, t1 * self.cell)
                if r1 <= r0:
                    break
                raw, valid = self._read_src(r0, r1, idx)
                guide = np.full((t1 * self.cell - r0, g.width, len(idx)), np.nan, np.float32)
                guide[:r1 - r0] = np.where(valid[..., None], self.spec.guide(raw), np.nan)
                tg = token_guide(guide, self.cell)
                out[t0:t1, :tg.shape[1]] = tg[:, :self.emb.width]
            self._tok_guide = out
        return self._tok_guide

    def _emb_rows(self, r0: int, r1: int, c0: int, c1: int, head: np.ndarray | None = None) -> np.ndarray:
        """``emb`` features (r1 - r0, c1 - c0, F) of grid pixels [r0, r1) x [c0, c1) (or their product with
        ``head``): tokens upsampled, or the tokens themselves on the embedding grid."""
        if self.spec.grid == "embedding":
            return self._tokens(r0, r1, head)[:, c0:c1]
        if self.jbu is None:
            t0, t1 = token_rows_for(r0, r1, self.cell, self.emb.height)
            return upsample_rows(self._tokens(t0, t1, head), t0, np.arange(r0, r1), np.arange(c0, c1), self.cell,
                                 self.emb.height, self.emb.width)
        t0, t1 = self.jbu.token_rows(r0, r1, self.cell, self.emb.height)
        # only the token columns the pixels' neighbourhoods reach (a few for a training sample, not a block row)
        a, b = self.jbu.token_rows(c0, c1, self.cell, self.emb.width)
        idx = [self.band_index[name] for name in self.spec.guide_bands]
        raw, _ = self._read_src(r0, r1, idx, c0, c1)
        return self._jbu(self._tokens(t0, t1, head, a, b), t0, raw, idx, r0, c0, a)

    def _jbu(self, tokens: np.ndarray, t0: int, raw: np.ndarray, idx: list[int], r0: int, c0: int = 0,
             a: int = 0) -> np.ndarray:
        """Edge-aware upsampling of ``tokens`` (token rows from ``t0`` and columns from ``a``, at least those the
        pixels' neighbourhoods reach, or up to the grid's edge) to the pixels [r0, r0 + n) x [c0, c0 + w) whose
        raw guide bands ``idx`` are ``raw`` (G, n, w). Cropped columns give the same result: the neighbourhood is
        clamped only at the grid's own edges, which a crop keeps."""
        guide = np.where(self._valid(raw, idx)[..., None], self.spec.guide(raw), np.nan)
        i, j = self.jbu.token_rows(r0, r0 + raw.shape[1], self.cell, self.emb.height)
        return upsample(tokens[i - t0:j - t0], self.token_guide()[i:j, a:a + tokens.shape[1]], i, guide, r0,
                        self.cell, self.emb.height, self.jbu, col0=c0 - a * self.cell)

    # ------------------------------------------------------------------------------------ samples
    def sample(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (M, F) of grid pixels (rows, cols) and whether each is usable (M,): the features the map
        computes for those pixels (one row of pixels at a time, over the samples' columns)."""
        parts, ok = [], np.ones(len(rows), bool)
        if "emb" in self.spec.groups:
            e = np.full((len(rows), self.spec.emb_features), np.nan, np.float32)
            for r in np.unique(rows):
                sel = np.flatnonzero(rows == r)
                c0, c1 = int(cols[sel].min()), int(cols[sel].max()) + 1
                e[sel] = self._emb_rows(int(r), int(r) + 1, c0, c1)[0, cols[sel] - c0]
            parts.append(e)
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
    def strips(self, progress: Progress | None = None, message: str = "",
               head: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (first row, features (n, W, F) float32, valid (n, W) bool) down the grid.

        With ``head`` (F_emb, C), the ``emb`` features come as their product with it, C channels: a linear
        classifier's class scores, projected on the token grid and upsampled as C channels instead of F_emb
        (upsampling commutes with linear maps), then the ``pixel`` features as usual.

        The raster's bands and the tokens are read once per *read block* of whole raster blocks (256 rows of a
        Sentinel-2 tile: each compressed block is decoded once, 112 MB for 10 bands) and the strips are cut from
        it. Reading each few-row strip on its own decoded every block row 40 times over on a full tile, and read
        the upsampling's token halo again for every strip: 80 % of the map's time (``benchmarks/classify.py``).
        """
        g = self.grid
        cell = 1 if self.spec.grid == "embedding" else self.cell
        width_f = (head.shape[1] if head is not None else self.spec.emb_features) + self.spec.pixel_dim
        # about 128 MB of features per strip; edge-aware upsampling holds (2 radius)^2 weights per pixel besides;
        # never more than the memory left allows (self.strip_pixels, from core.classify.checks.strip_pixels)
        pixels = (1 << 25) // max(width_f, 8) if self.jbu is None else (1 << 23) // (2 * self.jbu.radius) ** 2
        step = strip_height(g.width, cell, min(max(1 << 16, pixels), self.strip_pixels))
        emb, own = "emb" in self.spec.groups, self.src is not None and self.spec.grid == "pixel"
        pix = ([self.band_index[b] for b in self.spec.bands] if "pixel" in self.spec.groups else [1]) if own else []
        gui = [self.band_index[b] for b in self.spec.guide_bands] if self.jbu is not None else []
        idx = list(dict.fromkeys(pix + gui))
        at_pix, at_gui = [idx.index(i) for i in pix], [idx.index(i) for i in gui]  # their rows in a read block
        block = step
        if own:  # whole raster blocks per read, at most READ_BYTES of float32 bands
            bh = self.src.block_shapes[0][0]
            most = max(step, READ_BYTES // (4 * g.width * len(idx)) // step * step)
            block = min(most, max(step, -(-bh // step) * step))
        for b0 in range(0, g.height, block):
            b1 = min(g.height, b0 + block)
            raw_b = self._read_src(b0, b1, idx)[0] if own else None
            tok, t0 = None, 0
            if emb and self.jbu is not None:
                t0, t1 = self.jbu.token_rows(b0, b1, cell, self.emb.height)
                tok = self._tokens(t0, t1, head)
            for r0 in range(b0, b1, step):
                r1 = min(b1, r0 + step)
                parts, valid = [], np.ones((r1 - r0, g.width), bool)
                if emb:
                    if tok is not None:
                        e = self._jbu(tok, t0, raw_b[at_gui, r0 - b0:r1 - b0], gui, r0)
                    else:
                        e = self._emb_rows(r0, r1, 0, g.width, head)
                    valid &= np.isfinite(e).all(-1)
                    parts.append(e)
                if own:
                    raw = raw_b[at_pix, r0 - b0:r1 - b0]
                    valid &= self._valid(raw, pix)
                    if "pixel" in self.spec.groups:
                        parts.append(pixel_features(raw, self.spec))
                yield r0, np.concatenate(parts, axis=-1), valid
                if progress is not None:
                    progress.check()
                    progress.update(r1, g.height, message)

    def _read_src(self, r0: int, r1: int, idx: list[int], c0: int = 0,
                  c1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands ``idx`` (len(idx), n, w) float32 of grid pixels [r0, r1) x [c0, c1), and where all hold data."""
        g = self.grid
        c1 = g.width if c1 is None else c1
        win = Window(g.col_off + c0, g.row_off + r0, c1 - c0, r1 - r0)
        raw = read_window(self.src, idx, win, "float32")
        return raw, self._valid(raw, idx)

    def _valid(self, raw: np.ndarray, idx: list[int]) -> np.ndarray:
        """Where raw bands ``idx`` (len(idx), ...) all hold data (finite, not the band's nodata value)."""
        nd = nodata_values(self.src)
        valid = np.isfinite(raw).all(0)
        for k, b in enumerate(idx):
            if nd[b - 1] is not None:
                valid &= raw[k] != nd[b - 1]
        return valid


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
    step = quicklook_step(g.height, g.width)
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
        head = linear_head(classifier, source.spec)
        with Prefetcher(lambda stop: source.strips(head=None if head is None else head[0]), depth=1) as strips:
            for r, x, valid in strips:
                progress.check()
                h, w = valid.shape
                prob = np.full((h, w, n), np.nan, np.float32)
                if valid.any():
                    if head is None:
                        prob[valid] = classifier.predict_proba(x[valid], workers=workers)
                    else:  # class scores: upsampled token part + pixel part + bias
                        z = x[valid]
                        p = softmax(z[:, :n] + z[:, n:] @ head[1] + head[2])
                        if hasattr(classifier, "complete"):  # fusion: its pixel expert on the pixel features
                            p = classifier.complete(p, z[:, n:], workers)
                        prob[valid] = p
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


def quicklook_step(height: int, width: int) -> int:
    """Decimation of the class map kept for the quicklook (its longest side about 640 pixels)."""
    return max(1, math.ceil(max(height, width) / 640))


def linear_head(classifier: Any, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A linear classifier's weights split into the ``emb`` part (F_emb, C), the ``pixel`` part (F_pix, C) and the
    bias (C,), for :meth:`FeatureSource.strips` ``head``; None for other classifiers or features.

    A classifier with a linear expert on the ``emb`` columns and a ``complete`` step (``fusion``) gets its expert's
    weights with a zero ``pixel`` part: the map then upsamples C class scores for it too, and ``complete`` adds the
    pixel's expert (a map 2-3 times cheaper than upsampling every embedding feature)."""
    if "emb" not in spec.groups:
        return None
    if getattr(classifier, "method", None) == "linear":
        w, b = classifier.affine()
    elif hasattr(classifier, "complete"):
        w, b = classifier.experts()[0].affine()
        w = np.concatenate([w, np.zeros((w.shape[0], spec.dim - w.shape[1]), w.dtype)], axis=1)
    else:
        return None
    d = spec.emb_features
    return w[:, :d].T.copy(), w[:, d:].T.copy(), b


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of class scores (M, C); -inf scores (classes a classifier never saw) get 0."""
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def open_source(raster: Any, info: dict[str, Any]) -> Any:
    """The raster the pixel features come from (opened), or None for an embedding raster whose source is gone."""
    if is_embedding_raster(raster):
        sources = info.get("sources") or []
        if not sources or not all(Path(s).exists() for s in sources):
            return None
        raster = sources[0] if len(sources) == 1 else sources
    return open_raster(raster if isinstance(raster, (str, Path)) else [str(r) for r in raster])


def full_source(emb_ds: Any, src: Any, info: dict[str, Any], bands: Any, grid: str, cell: int,
                seed: int = 0) -> FeatureSource:
    """Every feature group available for this raster, fitted on it: the embedding's context PCA
    (:mod:`.context`) and, on the pixel grid with the raster's bands, the guide statistics of the edge-aware
    upsampling (:mod:`.upsample`) and the pixel group; ``grid`` is one of :data:`core.classify.spec.GRIDS`
    (checked by the spec)."""
    context = Context(emb_ds)
    names, idx, index = [], [], {}
    if src is not None and grid == "pixel":
        names, idx, index = pixel_bands_spec(band_names(src, info.get("sources")), bands, info.get("bands") or ())
    groups = ("emb", "pixel") if names else ("emb",)
    spec = FeatureSpec(groups, grid, names, idx, float(info.get("offset") or 0.0), emb_dim=emb_ds.count,
                       context_mean=context.mean, context_components=context.components)
    if names:
        mean, std = guide_statistics(src, [index[b] for b in names], spec.offset, seed)
        spec = dataclasses.replace(spec, upsample="jbu", guide_bands=list(names), guide_mean=mean, guide_std=std)
    return FeatureSource(emb_ds, src, spec, cell, index, context)


def guide_statistics(src: Any, idx: list[int], offset: float, seed: int = 0,
                     n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (G,) of the reflectance of bands ``idx`` over about ``n`` pixels of the raster,
    to standardise the upsampling's guide: every k-th pixel of at most 16 strips spread down the raster.

    Strips, not GDAL's decimated read (``out_shape``): on a compressed pixel-interleaved GeoTIFF that read
    decompresses blocks again and again (63 s for 10 bands of the demo scene, against 0.5 s for all of it).
    """
    height = max(256, src.block_shapes[0][0])
    starts = list(range(0, src.height, height))
    if len(starts) > 16:
        starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, 16).round().astype(int))]
    rows = sum(min(height, src.height - r) for r in starts)
    step = max(1, int(math.sqrt(rows * src.width / n)))
    # each strip's subsample copied, so the strip itself is freed (a view would keep 16 full strips alive:
    # 1.8 GB for a Sentinel-2 tile)
    raw = np.concatenate([read_window(src, idx, Window(0, r, src.width, min(height, src.height - r)),
                                      "float32")[:, ::step, ::step].copy() for r in starts], axis=1)
    nd = nodata_values(src)
    ok = np.isfinite(raw).all(0)
    for k, b in enumerate(idx):
        if nd[b - 1] is not None:
            ok &= raw[k] != nd[b - 1]
    if not ok.any():
        raise SoftConError("The raster holds no valid pixels in its bands; check its nodata value.")
    refl = (raw[:, ok] - offset) / REFLECTANCE_SCALE
    return refl.mean(1).astype(np.float32), np.maximum(refl.std(1), 1e-4).astype(np.float32)


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
