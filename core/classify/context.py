"""The neighbourhood of a token: the embedding averaged over a kilometre or two, as extra features.

A 64 px window (640 m) is too small to tell some classes apart: turbid water off a barrier beach and water in
the lagoon behind it look alike inside one window. The embedding pooled over 4 x 4 tokens (320 m cells) and
smoothed by a Gaussian of two cells (640 m) says which side of the beach a token is on; its 32 leading principal
components (fitted on the raster's own cells) join each token's own embedding. The cells also average whole
window strides, so whatever is left of the window grid cancels. On the demo scene this context is what keeps
the sea off the beach open sea, and blocked CV and the independent validation points agree with it; as extra
features beside the token's own, it keeps the 10 m channels that a smoothed embedding alone would wash out
(docs/map_quality.md has the ablation).

The pooled grid is 16 times smaller than the token grid (60 MB for a full Sentinel-2 tile's 128-d embedding),
so it is computed once, in one pass over the embedding raster, and kept in memory; tokens read it by bilinear
interpolation between cell centres.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from ..io.reader import iter_strips
from .features import fit_pca

#: Tokens per side of a context cell, Gaussian smoothing of the cells (in cells), principal components kept.
#: On the demo scene (stride 48, the linear model auto picks), sigma 1 cell maps 98.4 % of the open-sea zone as
#: open sea, 2 cells 99.2 % (docs/map_quality.md); both 73 of the 74 validation points.
POOL, SIGMA, COMPONENTS = 4, 2.0, 32


def pooled_grid(emb_ds: Any, pool: int = POOL) -> np.ndarray:
    """Mean embedding (h, w, D) float32 of each ``pool x pool`` block of tokens (NaN where none holds data)."""
    h, w = math.ceil(emb_ds.height / pool), math.ceil(emb_ds.width / pool)
    total = np.zeros((h, w, emb_ds.count), np.float64)
    count = np.zeros((h, w, 1), np.float64)
    cols = np.arange(emb_ds.width) // pool
    for r0, x, valid in iter_strips(emb_ds):
        rows = (r0 + np.arange(x.shape[0])) // pool
        idx = (rows[:, None] * w + cols[None]).ravel()
        ok = valid.ravel()
        np.add.at(total.reshape(h * w, -1), idx[ok], x.reshape(-1, x.shape[-1])[ok])
        np.add.at(count.reshape(h * w, 1), idx[ok], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def smooth(grid: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Gaussian smoothing of a (h, w, D) grid over its valid cells (normalised convolution, which also fills
    nodata cells near data; the grid mirrored at its edges, as the encoder's windows see the raster); NaN only
    where no data lies within reach."""
    ok = np.isfinite(grid[..., 0])
    weight = gaussian_filter(ok.astype(np.float32), sigma, mode="mirror")
    out = np.empty_like(grid)
    filled = np.where(ok[..., None], grid, 0)
    for d in range(grid.shape[-1]):
        out[..., d] = gaussian_filter(filled[..., d], sigma, mode="mirror")
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= weight[..., None]
    out[weight < 1e-6] = np.nan
    return out


class Context:
    """Context features of every token of an embedding raster: ``(grid - mean) @ components`` on the smoothed
    pooled grid, interpolated to token centres.

    Args:
        emb_ds: the open embedding raster; mean (D,), components (D, k): the context PCA (None: fit it here).
    """

    def __init__(self, emb_ds: Any, mean: np.ndarray | None = None, components: np.ndarray | None = None):
        grid = smooth(pooled_grid(emb_ds))
        if mean is None:
            cells = grid.reshape(-1, grid.shape[-1])
            mean, components = fit_pca(cells[np.isfinite(cells).all(1)], COMPONENTS)
        self.mean, self.components = mean, components
        self.cells = ((grid - mean) @ components).astype(np.float32)  # (h, w, k), NaN where no data
        self.height, self.width = emb_ds.height, emb_ds.width

    def tokens(self, t0: int, t1: int, cols: np.ndarray | None = None) -> np.ndarray:
        """Context features (t1 - t0, len(cols), k) of token rows [t0, t1) (all columns by default)."""
        cols = np.arange(self.width) if cols is None else np.asarray(cols)
        r0, r1, fr = _bilinear(np.arange(t0, t1), self.cells.shape[0])
        c0, c1, fc = _bilinear(cols, self.cells.shape[1])
        cells = np.nan_to_num(self.cells)
        top = cells[r0][:, c0] * (1 - fc)[None, :, None] + cells[r0][:, c1] * fc[None, :, None]
        bottom = cells[r1][:, c0] * (1 - fc)[None, :, None] + cells[r1][:, c1] * fc[None, :, None]
        return (top * (1 - fr)[:, None, None] + bottom * fr[:, None, None]).astype(np.float32)


def _bilinear(tokens: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells (i0, i1) either side of each token centre and the weight of i1 (clamped at the grid's edge)."""
    t = (tokens + 0.5) / POOL - 0.5
    f = np.floor(t)
    i0 = np.clip(f, 0, n_cells - 1).astype(np.int64)
    i1 = np.clip(f + 1, 0, n_cells - 1).astype(np.int64)
    return i0, i1, np.clip(t - f, 0, 1).astype(np.float32)
