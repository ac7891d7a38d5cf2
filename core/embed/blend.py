"""Seamless dense embeddings: overlapping windows blended with weights that fall off towards each window's edge.

Keeping only each window's central tokens (one window per token) leaves a step at every window border, because
neighbouring tokens then come from different windows with different context; the step shows as the window grid
in maps and PCA previews. Here every token of a window is kept and weighted by a raised-cosine taper (a Tukey
window) that is 1 in the window's middle and falls to near 0 over the ``overlap`` tokens at each edge, and each
output token is the weighted mean of the windows that cover it: the overlap-add of overlapping tiles used in
audio and in tiled segmentation inference. For windows every ``T - overlap`` tokens the tapers sum to 1
(a partition of unity: sin^2 + cos^2), so the crossfade from one window to the next spans the whole overlap,
and edge tokens, which saw the least context, weigh least.

:class:`TokenBlender` accumulates the weighted tokens of one row of windows after another and hands out an
output row as soon as no later window reaches it, so memory holds a few rows of windows, never the raster.
"""
from __future__ import annotations

import math
import numpy as np

#: Recorded in the ``blend`` tag of embedding rasters (and part of the cache key).
BLEND = "raised-cosine"


def taper(tokens: int, overlap: int) -> np.ndarray:
    """Raised-cosine weights (tokens,) of a window's tokens: 1 inside, sin^2 ramps over ``overlap`` tokens at each end.

    For windows every ``tokens - overlap`` tokens the weights of the windows covering a token sum to 1 when
    ``overlap <= tokens / 2``; with more overlap the blender normalises by the sum anyway.
    """
    p = np.arange(tokens) + 0.5
    if overlap <= 0:
        return np.ones(tokens, np.float32)
    ramp = np.clip(np.minimum(p, tokens - p) / overlap, 0.0, 1.0)
    return (np.sin(0.5 * np.pi * ramp) ** 2).astype(np.float32)


def halo_windows(margin_tokens: int, cells: int) -> int:
    """Rows (and columns) of windows beyond an extent whose tokens reach into it: ceil(margin / cells)."""
    return math.ceil(margin_tokens / cells) if margin_tokens > 0 else 0


class TokenBlender:
    """Weighted mean of overlapping windows' tokens, row of windows by row of windows.

    Output block ``b`` is the ``cells`` output rows ``[b * cells, (b + 1) * cells)`` owned by window row ``b``.
    Window ``(i, j)`` (output-grid window indices, which may be negative or beyond the grid: halo windows)
    puts its ``tokens x tokens`` patch features at output rows and columns starting at ``i * cells - margin``
    and ``j * cells - margin``; anything outside the output is dropped.

    Args:
        dim: embedding dimension D; cells: output pixels per window stride; tokens: tokens per window side;
        margin: tokens of context on each side of a window's owned cells ((tokens - cells) / 2);
        height, width: output raster size in tokens.
    """

    def __init__(self, dim: int, cells: int, tokens: int, margin: int, height: int, width: int):
        self.dim, self.k, self.t, self.m = dim, cells, tokens, margin
        self.height, self.width = height, width
        w1 = taper(tokens, tokens - cells)
        self.weight = np.outer(w1, w1)  # (T, T)
        self.reach = halo_windows(margin, cells)  # window rows after row b that still add to block b
        self._sum: dict[int, np.ndarray] = {}
        self._wsum: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        if b not in self._sum:
            self._sum[b] = np.zeros((self.dim, self.k, self.width), np.float32)
            self._wsum[b] = np.zeros((self.k, self.width), np.float32)
        return self._sum[b], self._wsum[b]

    def add(self, i: int, j: int, tokens: np.ndarray) -> None:
        """Add window (i, j)'s patch features (D, T, T) with the taper's weights."""
        r0, c0 = i * self.k - self.m, j * self.k - self.m
        ca, cb = max(c0, 0), min(c0 + self.t, self.width)
        if cb <= ca:
            return
        wy = tokens[:, :, ca - c0:cb - c0] * self.weight[:, ca - c0:cb - c0]
        w = self.weight[:, ca - c0:cb - c0]
        for b in range(max(r0, 0) // self.k, (min(r0 + self.t, self.height) - 1) // self.k + 1):
            lo, hi = max(r0, b * self.k), min(r0 + self.t, (b + 1) * self.k, self.height)
            if hi <= lo:
                continue
            s, ws = self._block(b)
            s[:, lo - b * self.k:hi - b * self.k, ca:cb] += wy[:, lo - r0:hi - r0]
            ws[lo - b * self.k:hi - b * self.k, ca:cb] += w[lo - r0:hi - r0]

    def pop(self, b: int) -> np.ndarray:
        """Output block ``b`` (D, cells, width) float32, the weighted mean of every window added to it (NaN where
        none was), dropped from memory; call it once no window row after ``b + reach`` is to come."""
        s, ws = self._sum.pop(b, None), self._wsum.pop(b, None)
        if s is None:
            return np.full((self.dim, self.k, self.width), np.nan, np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ws > 0, s / ws, np.nan).astype(np.float32)
