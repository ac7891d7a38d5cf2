"""Per-pixel features for maps on the input raster's own grid (10 m for Sentinel-2).

A window embedding carries context (sea vs inland water, a town vs a bare field) that a pixel's
spectrum cannot; the pixel carries the 10 m detail that an 80 m token cannot. A pixel's feature
vector joins *feature groups*:

- ``emb``: the encoder's dense embedding, every dimension, and its neighbourhood (:mod:`.context`: the
  embedding pooled and smoothed over about a kilometre, 32 principal components), upsampled from the token
  grid to the pixel grid edge-aware, guided by the pixel's own bands (:mod:`.upsample`, joint bilateral
  upsampling). Classifiers saved before version 3 hold 16 principal components upsampled bilinearly; they
  are applied as they were trained.
- ``pixel``: the pixel's own surface-reflectance bands (B2-B8A, B11, B12 as reflectance, DN / 10000)
  and the standard indices NDVI, NDWI (McFeeters), MNDWI and NDBI, all of order one.

Everything needed to recompute the features on another raster (groups, projections, guide statistics, band
names, grid) is a :class:`FeatureSpec`, saved inside the classifier. The sampling and strip readers of
:mod:`.pixelmap` are the only places that turn rasters into feature vectors, so training, validation and
mapping see the same numbers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from rasterio.windows import Window

from ..errors import SoftConError
from ..geo.bands import canonical, parse_band_list, resolve_bands
from ..io.raster import nodata_values
from ..io.reader import read_window
from .upsample import RADIUS, SIGMA_R, SIGMA_S

#: Surface bands taken as pixel features, when the raster has them (60 m atmospheric bands left out).
PIXEL_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
#: Normalised differences (a - b) / (a + b).
INDICES = {"NDVI": ("B8", "B4"), "NDWI": ("B3", "B8"), "MNDWI": ("B3", "B11"), "NDBI": ("B11", "B8")}
#: Principal components of the embeddings in classifiers saved before version 3 (bilinear upsampling).
EMB_COMPONENTS = 16
REFLECTANCE_SCALE = 10000.0


@dataclass
class FeatureSpec:
    """How to compute a pixel's features; saved with a classifier (arrays + JSON meta).

    Attributes:
        groups: feature groups, in order (``emb``, ``pixel``).
        grid: ``pixel`` (the raster's own grid) or ``embedding`` (the token grid).
        bands: raster band names read for the ``pixel`` group; indices: index names computed from them.
        offset: subtracted from the raw band values before scaling (S2 processing baseline >= 04.00).
        mean, components: a projection (D,), (D, d) of the embedding (PCA in classifiers before version 3);
            None: the embedding's own ``emb_dim`` dimensions.
        context_mean, context_components: the PCA of the neighbourhood features (:mod:`.context`); None: none.
        upsample: ``jbu`` (edge-aware, guided by ``guide_bands`` standardised with ``guide_mean``/``guide_std``,
            kernel ``jbu``: radius, sigma_s, sigma_r) or ``bilinear``.
    """

    groups: tuple[str, ...]
    grid: str = "pixel"
    bands: list[str] = field(default_factory=list)
    indices: list[str] = field(default_factory=list)
    offset: float = 0.0
    mean: np.ndarray | None = None
    components: np.ndarray | None = None
    emb_dim: int = 0
    context_mean: np.ndarray | None = None
    context_components: np.ndarray | None = None
    upsample: str = "bilinear"
    guide_bands: list[str] = field(default_factory=list)
    guide_mean: np.ndarray | None = None
    guide_std: np.ndarray | None = None
    jbu: tuple[int, float, float] = (RADIUS, SIGMA_S, SIGMA_R)

    @property
    def name(self) -> str:
        return "+".join(self.groups)

    @property
    def local_dim(self) -> int:
        """Features of the token itself: its projection, or all its dimensions."""
        return self.components.shape[1] if self.components is not None else self.emb_dim

    @property
    def emb_features(self) -> int:
        """Features of the ``emb`` group: the token's and its neighbourhood's."""
        if "emb" not in self.groups:
            return 0
        return self.local_dim + (self.context_components.shape[1] if self.context_components is not None else 0)

    @property
    def pixel_dim(self) -> int:
        """Features of the ``pixel`` group: the trailing columns, after :attr:`emb_features`."""
        return len(self.bands) + len(self.indices) if "pixel" in self.groups else 0

    @property
    def dim(self) -> int:
        return self.emb_features + self.pixel_dim

    def meta(self) -> dict[str, Any]:
        out = {"groups": list(self.groups), "grid": self.grid, "bands": self.bands, "indices": self.indices,
               "offset": self.offset, "dim": self.dim}
        if "emb" in self.groups:
            out.update(emb_dim=self.emb_dim, upsample=self.upsample)
            if self.upsample == "jbu":
                out.update(guide_bands=self.guide_bands, jbu=list(self.jbu))
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        if "emb" not in self.groups:
            return {}
        named = {"feat_mean": self.mean, "feat_components": self.components, "feat_context_mean": self.context_mean,
                 "feat_context_components": self.context_components, "feat_guide_mean": self.guide_mean,
                 "feat_guide_std": self.guide_std}
        return {k: v.astype(np.float32) for k, v in named.items() if v is not None}

    @classmethod
    def load(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "FeatureSpec":
        return cls(tuple(meta["groups"]), meta.get("grid", "pixel"), list(meta.get("bands", [])),
                   list(meta.get("indices", [])), float(meta.get("offset", 0.0)),
                   arrays.get("feat_mean"), arrays.get("feat_components"), int(meta.get("emb_dim", 0)),
                   arrays.get("feat_context_mean"), arrays.get("feat_context_components"),
                   meta.get("upsample", "bilinear"), list(meta.get("guide_bands", [])),
                   arrays.get("feat_guide_mean"), arrays.get("feat_guide_std"),
                   tuple(meta.get("jbu", (RADIUS, SIGMA_S, SIGMA_R))))

    def select(self, groups: Sequence[str]) -> "FeatureSpec":
        """The same spec restricted to ``groups`` (a feature set)."""
        emb, pix = "emb" in groups, "pixel" in groups
        return dataclasses.replace(
            self, groups=tuple(groups), bands=self.bands if pix else [], indices=self.indices if pix else [],
            mean=self.mean if emb else None, components=self.components if emb else None,
            emb_dim=self.emb_dim if emb else 0, context_mean=self.context_mean if emb else None,
            context_components=self.context_components if emb else None)

    def columns(self, full: "FeatureSpec") -> np.ndarray:
        """Column indices of this spec's features within the features of ``full`` (a superset)."""
        d = full.emb_features
        cols = []
        if "emb" in self.groups:
            cols += list(range(d))
        if "pixel" in self.groups:
            cols += list(range(d, full.dim))
        return np.asarray(cols, dtype=np.int64)

    def guide(self, raw: np.ndarray) -> np.ndarray:
        """Guide (..., G) of the upsampling from raw values (G, ...) of ``guide_bands``: standardised reflectance."""
        refl = (np.moveaxis(raw, 0, -1).astype(np.float32) - np.float32(self.offset)) / np.float32(REFLECTANCE_SCALE)
        return ((refl - self.guide_mean) / self.guide_std).astype(np.float32)


def fit_pca(samples: np.ndarray, n_components: int = EMB_COMPONENTS) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and leading principal axes (D, d) of embeddings ``samples`` (N, D)."""
    x = np.asarray(samples, np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    d = min(n_components, vt.shape[0])
    return mean.astype(np.float32), vt[:d].T.astype(np.float32)


def pixel_band_mapping(names: Sequence[str | None], bands: Any = None,
                       model_bands: Sequence[str] = ()) -> dict[str, int]:
    """1-based raster band of each of :data:`PIXEL_BANDS` the raster holds: by ``bands``, by description, or, for
    a raster without band names, in the order the embedding read it (:func:`core.geo.bands.resolve_bands` with the
    model's bands, e.g. 13 unnamed bands as Sentinel-2 L1C)."""
    listed = parse_band_list(bands) if bands is not None else [canonical(n) if n else None for n in names]
    found = {}
    for i, n in enumerate(listed):
        if n in PIXEL_BANDS and n not in found:
            found[n] = i + 1
    if not found and model_bands:
        try:
            mapping = resolve_bands(names, model_bands, bands)
        except SoftConError:
            return {}
        found = {b: i + 1 for b, i in zip(model_bands, mapping) if i is not None and b in PIXEL_BANDS}
    return found


def pixel_bands_spec(names: Sequence[str | None], bands: Any = None,
                     model_bands: Sequence[str] = ()) -> tuple[list[str], list[str], dict[str, int]]:
    """(band names, index names, band -> 1-based raster band) for the ``pixel`` group; empty if none."""
    found = pixel_band_mapping(names, bands, model_bands)
    if not {"B2", "B3", "B4", "B8"} <= set(found):
        return [], [], {}
    order = [b for b in PIXEL_BANDS if b in found]
    idx = [k for k, (a, b) in INDICES.items() if a in found and b in found]
    return order, idx, found


def pixel_features(raw: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Reflectances and indices (..., n_bands + n_indices) from raw band values (n_bands, ...)."""
    refl = (raw.astype(np.float32) - np.float32(spec.offset)) / np.float32(REFLECTANCE_SCALE)
    pos = {b: i for i, b in enumerate(spec.bands)}
    out = [refl[i] for i in range(len(spec.bands))]
    for name in spec.indices:
        a, b = (refl[pos[n]] for n in INDICES[name])
        with np.errstate(invalid="ignore", divide="ignore"):
            s = a + b
            out.append(np.where(np.abs(s) > 1e-6, (a - b) / np.where(np.abs(s) > 1e-6, s, 1), 0).astype(np.float32))
    return np.stack(out, axis=-1)


# ------------------------------------------------------------------------------------- interpolation
def _axis_weights(pix: np.ndarray, cell: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear neighbours (i0, i1) and weight of i1 along one axis for pixel indices ``pix``.

    Token i covers pixels [i * cell, (i + 1) * cell), centred at (i + 0.5) * cell; beyond the outermost
    token centres the nearest token is used (no extrapolation).
    """
    t = (pix + 0.5) / cell - 0.5
    f = np.floor(t)
    w = (t - f).astype(np.float32)
    i0 = np.clip(f, 0, n_tokens - 1).astype(np.int64)
    i1 = np.clip(f + 1, 0, n_tokens - 1).astype(np.int64)
    return i0, i1, w


def _lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """(1 - w) a + w b over valid (finite) values only; NaN where neither is valid."""
    shape = [1] * a.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    ma, mb = np.isfinite(a[..., :1]), np.isfinite(b[..., :1])  # validity per pixel (all channels alike)
    wa, wb = (1 - w) * ma, w * mb
    den = wa + wb
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.nan_to_num(a) * wa + np.nan_to_num(b) * wb) / den
    return np.where(den > 0, out, np.nan).astype(np.float32)


def upsample_rows(tokens: np.ndarray, tok_row0: int, pix_rows: np.ndarray, pix_cols: np.ndarray, cell: int,
                  n_tok_rows: int, n_tok_cols: int) -> np.ndarray:
    """Bilinear upsampling of token features to a block of pixels.

    Args:
        tokens: (h, W_tok, d) token features of token rows [tok_row0, tok_row0 + h), NaN = nodata.
        pix_rows, pix_cols: pixel indices (relative to the token grid's origin) of the block.
        n_tok_rows, n_tok_cols: size of the whole token grid (for clamping at its edges).

    Returns:
        (len(pix_rows), len(pix_cols), d) float32; NaN where no neighbouring token holds data.
    """
    r0, r1, wr = _axis_weights(pix_rows, cell, n_tok_rows)
    c0, c1, wc = _axis_weights(pix_cols, cell, n_tok_cols)
    rows = _lerp(tokens[r0 - tok_row0], tokens[r1 - tok_row0], wr, 0)  # (n, W_tok, d)
    return _lerp(rows[:, c0], rows[:, c1], wc, 1)


def token_rows_for(pix_r0: int, pix_r1: int, cell: int, n_tok_rows: int) -> tuple[int, int]:
    """Token rows [start, stop) that bilinear upsampling of pixel rows [pix_r0, pix_r1) reads."""
    a = _axis_weights(np.array([pix_r0]), cell, n_tok_rows)[0][0]
    b = _axis_weights(np.array([pix_r1 - 1]), cell, n_tok_rows)[1][0]
    return int(a), int(b) + 1


def sample_pixels(src, spec: FeatureSpec, band_index: dict[str, int], rows: np.ndarray,
                  cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``pixel`` features (M, n) of raster pixels (rows, cols) and whether each holds data (M,)."""
    idx = [band_index[b] for b in spec.bands]
    raw = np.zeros((len(idx), len(rows)), np.float32)
    nd = nodata_values(src)
    valid = np.ones(len(rows), bool)
    step = 512
    for s in np.unique(rows // step):
        sel = np.nonzero(rows // step == s)[0]
        ra, ca = int(rows[sel].min()), int(cols[sel].min())
        rb, cb = int(rows[sel].max()) + 1, int(cols[sel].max()) + 1
        block = read_window(src, idx, Window(ca, ra, cb - ca, rb - ra), "float32")
        raw[:, sel] = block[:, rows[sel] - ra, cols[sel] - ca]
    for k, b in enumerate(idx):
        if nd[b - 1] is not None:
            valid &= raw[k] != nd[b - 1]
    valid &= np.isfinite(raw).all(0)
    return pixel_features(raw, spec), valid


def strip_height(width: int, cell: int, target_pixels: int = 1 << 20) -> int:
    """Pixel rows per prediction strip: about ``target_pixels`` pixels, a whole number of tokens."""
    return max(cell, (target_pixels // max(width, 1)) // cell * cell)
