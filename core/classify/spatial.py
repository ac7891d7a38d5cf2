"""How far accuracy from the training points reaches: the CV block size from the data, and how clustered the
samples are.

Blocked cross-validation keeps validation pixels away from training pixels by assigning whole square blocks to
folds; blocks must be at least as large as the distance over which the features stay alike, or neighbouring
(near-duplicate) pixels leak across folds (Roberts et al. 2017, Ecography; Valavi et al. 2019, blockCV,
Methods Ecol. Evol., which sizes blocks by the range of spatial autocorrelation). Here that range comes from
the empirical variogram of the embedding itself: the semivariance ``gamma(h) = E|z(x) - z(x + h)|^2 / 2`` of
the standardised embedding along token rows and columns, and the practical range is the first lag where it
reaches 95 % of its sill (its mean over the farther half of the lags, up to a quarter of the raster).

Even so, CV on hand-picked points only speaks for places like them. :func:`sample_spread` says how clustered
the points are (distances to the nearest other sample) and how much of the map lies farther from any sample
than a block, where the CV figure says nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rasterio.windows import Window
from scipy.spatial import cKDTree

from ..geo.crs import pixel_xy_m

#: Transects (token rows and token columns) read for the variogram; lags up to this share of the raster.
TRANSECTS, MAX_LAG_SHARE, SILL_SHARE = 48, 0.25, 0.95


def variogram(emb_ds: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Empirical variogram of the standardised embedding: lags (tokens) and semivariance per dimension."""
    rng = np.random.default_rng(seed)
    h, w = emb_ds.height, emb_ds.width
    max_lag = max(2, int(MAX_LAG_SHARE * min(h, w)))
    rows = np.sort(rng.choice(h, min(h, TRANSECTS), replace=False))
    cols = np.sort(rng.choice(w, min(w, TRANSECTS), replace=False))
    lines = [emb_ds.read(window=Window(0, int(r), w, 1), out_dtype="float32")[:, 0] for r in rows]
    lines += [emb_ds.read(window=Window(int(c), 0, 1, h), out_dtype="float32")[:, :, 0] for c in cols]
    flat = np.concatenate(lines, axis=1)
    ok = np.isfinite(flat).all(0)
    mean, std = flat[:, ok].mean(1, keepdims=True), np.maximum(flat[:, ok].std(1, keepdims=True), 1e-6)
    lags = np.arange(1, max_lag + 1)
    gamma = np.zeros(len(lags))
    for k, lag in enumerate(lags):
        sq, n = 0.0, 0
        for line in lines:
            if line.shape[1] <= lag:
                continue
            z = (line - mean) / std
            d = np.square(z[:, lag:] - z[:, :-lag]).mean(0)
            d = d[np.isfinite(d)]
            sq, n = sq + d.sum(), n + d.size
        gamma[k] = 0.5 * sq / max(n, 1)
    return lags, gamma


def autocorrelation_range(emb_ds: Any, pixel_m: float, seed: int = 0) -> dict[str, Any]:
    """Practical range (m) of the embedding's spatial autocorrelation, with the variogram it comes from."""
    lags, gamma = variogram(emb_ds, seed)
    sill = float(gamma[len(gamma) // 2:].mean())
    reached = np.flatnonzero(gamma >= SILL_SHARE * sill)
    lag = int(lags[reached[0]] if reached.size else lags[-1])
    return {"range_m": float(lag * pixel_m), "sill": sill, "lags_m": (lags * pixel_m).round(1).tolist(),
            "semivariance": gamma.round(4).tolist()}


def sample_spread(xy: np.ndarray, groups: np.ndarray, emb_ds: Any, block_m: float) -> dict[str, Any]:
    """How clustered the samples are and how much of the map lies beyond a block from any of them.

    Args:
        xy: (M, 2) sample pixel centres in metres; groups: (M,) the point or polygon each pixel came from.
        emb_ds: the embedding raster (its valid tokens stand for the map's area).

    Returns:
        nearest-neighbour distances between samples (one per point or polygon: min, quartiles, max, in m) and
        the share of the map's area farther than ``block_m`` from every sample pixel.
    """
    _, first = np.unique(groups, return_index=True)
    pts = xy[first]
    out: dict[str, Any] = {"n": int(len(pts))}
    if len(pts) >= 2:
        d, _ = cKDTree(pts).query(pts, k=2)
        q = np.percentile(d[:, 1], [0, 25, 50, 75, 100])
        out["nearest_neighbour_m"] = dict(zip(("min", "q25", "median", "q75", "max"), q.round(1).tolist()))
    valid = np.zeros((emb_ds.height, emb_ds.width), bool)
    for r0 in range(0, emb_ds.height, 256):
        band = emb_ds.read(1, window=Window(0, r0, emb_ds.width, min(256, emb_ds.height - r0)), out_dtype="float32")
        valid[r0:r0 + band.shape[0]] = np.isfinite(band) & (band != emb_ds.nodata if emb_ds.nodata is not None
                                                            and np.isfinite(emb_ds.nodata) else True)
    rr, cc = np.nonzero(valid)
    dist, _ = cKDTree(xy).query(pixel_xy_m(emb_ds, rr, cc))
    out["map_share_beyond_block"] = float((dist > block_m).mean()) if dist.size else 0.0
    out["block_m"] = float(block_m)
    return out
