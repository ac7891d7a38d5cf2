"""Edge-aware upsampling of token features to the pixel grid: joint bilateral upsampling guided by the pixel's bands.

A dense embedding has one token per patch (80 m for Galileo-nano); a map needs 10 m pixels. Bilinear
interpolation blurs every field, shore and channel edge over a token. Joint bilateral upsampling (Kopf et al.
2007, "Joint bilateral upsampling", SIGGRAPH; the JBU of FeatUp, Fu et al. ICLR 2024, learns its kernels) gives
each pixel the weighted mean of the tokens around it, weighted by distance *and* by how much the token looks
like the pixel:

    f(p) = sum_q f(q) k_s(|p - q| / cell) k_r(|g(p) - g(q)|) / sum_q k_s k_r

with Gaussian kernels (the spatial one lowered to reach zero at the neighbourhood's edge), ``g(p)`` the pixel's
guide (its standardised reflectances) and ``g(q)`` the token's
guide, the mean over the pixels the token covers. A pixel on the field side of an edge takes the semantics of
the field's tokens, one on the forest side those of the forest's; inside a field, the wide spatial kernel
(``sigma_s`` 1.5 tokens over a 6 x 6 neighbourhood) averages neighbouring tokens, which also removes what is
left of the window grid (a period of 4 tokens is damped by exp(-2 pi^2 sigma_s^2 / 16) = 0.06).

The weights depend only on the guide, so upsampling commutes with any linear map of the features: a linear
classifier projects the tokens to its C class scores first and upsamples C channels instead of D features
(:mod:`core.classify.pixelmap`). Pixels are grouped into blocks of a token's size, which share their neighbours,
so the work is two small batched matrix products per block (:func:`upsample`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Neighbourhood half-width (tokens), spatial and range kernel widths: chosen on the demo scene by blocked CV on
#: the training points and by the independent validation points (both agree), see docs/map_quality.md.
RADIUS, SIGMA_S, SIGMA_R = 3, 1.5, 0.5


@dataclass(frozen=True)
class JBU:
    """Joint bilateral upsampling settings: ``radius`` (the 2 radius x 2 radius tokens nearest a pixel),
    ``sigma_s`` (tokens), ``sigma_r`` (guide units: standardised reflectance, RMS over the guide's bands)."""

    radius: int = RADIUS
    sigma_s: float = SIGMA_S
    sigma_r: float = SIGMA_R

    def axis(self, first: int, n: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour token offsets relative to each pixel's base token, and spatial weights.

        Pixel ``x`` lies at ``t = (x + 0.5) / cell - 0.5`` token units; its base token is ``floor(t)`` and its
        neighbours ``floor(t) + o`` for ``o`` in ``[1 - radius, radius]``.

        Returns:
            base (n,) int64, weight (n, 2 radius) float32 for pixels ``first .. first + n - 1``.
        """
        t = (np.arange(first, first + n) + 0.5) / cell - 0.5
        base = np.floor(t).astype(np.int64)
        offs = np.arange(1 - self.radius, self.radius + 1)
        d = t[:, None] - (base[:, None] + offs[None])
        # a Gaussian lowered to reach 0 at the neighbourhood's edge, where tokens enter and leave it as the pixel
        # moves: weights then vary continuously across token borders (no token-sized grid in the output)
        edge = np.exp(-self.radius ** 2 / (2 * self.sigma_s ** 2))
        return base, np.maximum(np.exp(-d ** 2 / (2 * self.sigma_s ** 2)) - edge, 0).astype(np.float32)

    def token_rows(self, r0: int, r1: int, cell: int, n_tok_rows: int) -> tuple[int, int]:
        """Token rows [start, stop) that pixel rows [r0, r1) read."""
        lo = int(np.floor((r0 + 0.5) / cell - 0.5)) + 1 - self.radius
        hi = int(np.floor((r1 - 1 + 0.5) / cell - 0.5)) + self.radius + 1
        return max(0, lo), min(n_tok_rows, hi)


def token_guide(guide: np.ndarray, cell: int) -> np.ndarray:
    """Mean guide (h, w, G) of each token from the guide of whole token rows of pixels (h * cell, W, G);
    columns beyond the last whole token are averaged into it, NaN pixels left out (NaN where all are)."""
    n, width, g = guide.shape
    w = -(-width // cell)
    pad = np.full((n, w * cell, g), np.nan, np.float32)
    pad[:, :width] = guide
    blocks = pad.reshape(n // cell, cell, w, cell, g)
    ok = np.isfinite(blocks[..., :1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nan_to_num(blocks).sum((1, 3)) / ok.sum((1, 3))).astype(np.float32)


def upsample(tokens: np.ndarray, tok_guide: np.ndarray, tok_row0: int, guide: np.ndarray, row0: int, cell: int,
             n_tok_rows: int, jbu: JBU = JBU(), col0: int = 0) -> np.ndarray:
    """Joint bilateral upsampling of token features to a strip of pixels.

    Written as local attention: with Gaussian kernels, ``k_r = exp(-|g(p) - g(q)|^2 / s)`` is, up to a factor
    that depends on ``p`` alone and cancels, ``exp(2 g(p).g(q) / s - |g(q)|^2 / s)``, so a pixel's weights over
    its ``K = (2 radius)^2`` neighbour tokens are a softmax of a dot product plus the log spatial kernel. The
    ``cell x cell`` pixels between four token centres share their neighbours, which are gathered once per such
    block: two batched matrix products per strip, (blocks, cell^2, G) x (blocks, G, K) and (blocks, cell^2, K) x
    (blocks, K, C).

    Args:
        tokens: (h, w, C) features of token rows [tok_row0, tok_row0 + h) (all of :meth:`JBU.token_rows`),
            NaN = nodata; tok_guide: (h, w, G) their guide (:func:`token_guide`).
        guide: (n, W, G) guide of pixel rows [row0, row0 + n) and columns [col0, col0 + W) (relative to the token
            grid's origin); NaN = nodata.
        n_tok_rows: token rows of the whole grid (the neighbourhood is clamped to it, like the columns to ``w``,
            the token grid's full width).

    Returns:
        (n, W, C) float32; NaN where the pixel's guide is NaN or no neighbouring token holds data.
    """
    h, w, c = tokens.shape
    n, width, g = guide.shape
    s = 2 * jbu.sigma_r ** 2 * g  # the range kernel's scale for a distance summed over the guide's g bands
    offs = np.arange(1 - jbu.radius, jbu.radius + 1)
    k2 = len(offs) ** 2
    # block (i, j): pixel rows [(b0 + i) cell + half, + cell) and columns [(g0 + j) cell + half, + cell) (relative
    # to the grid's origin) lie between token centres b0 + i and b0 + i + 1 (columns: g0 + j and g0 + j + 1)
    half = cell // 2
    b0, g0 = (row0 - half) // cell, (col0 - half) // cell
    top, lead = row0 - (b0 * cell + half), col0 - (g0 * cell + half)
    rows_b, cols_b = -(-(n + top) // cell), -(-(width + lead) // cell)
    pad = np.zeros((rows_b * cell, cols_b * cell, g), np.float32)
    pad[top:top + n, lead:lead + width] = np.nan_to_num(guide)
    gp = torch.from_numpy(pad).reshape(rows_b, cell, cols_b, cell, g).transpose(1, 2).reshape(rows_b, cols_b, -1, g)
    # the neighbours of block (i, j): tokens (b0 + i + offs[u], g0 + j + offs[v]), clamped to the grid
    ti = np.clip(b0 + np.arange(rows_b)[:, None] + offs, 0, n_tok_rows - 1) - tok_row0  # (rows_b, 2R)
    tj = np.clip(g0 + np.arange(cols_b)[:, None] + offs, 0, w - 1)  # (cols_b, 2R)
    nb = (ti[:, None, :, None], tj[None, :, None, :])  # -> (rows_b, cols_b, 2R, 2R)
    valid = np.isfinite(tokens).all(-1) & np.isfinite(tok_guide).all(-1)  # (h, w)
    tq = np.nan_to_num(tok_guide).astype(np.float32)
    gq = torch.from_numpy(tq[nb].reshape(rows_b, cols_b, k2, g))
    fq = torch.from_numpy(np.nan_to_num(tokens).astype(np.float32)[nb].reshape(rows_b, cols_b, k2, c))
    prior = np.where(valid, -np.square(tq).sum(-1) / s, -np.inf).astype(np.float32)[nb].reshape(rows_b, cols_b, 1, k2)
    _, ws = jbu.axis(half, cell, cell)  # (cell, 2R): the spatial weights, the same in every block and direction
    with np.errstate(divide="ignore"):  # weight 0 at the neighbourhood's edge: log -inf, softmax weight 0
        spatial = (np.log(ws)[:, None, :, None] + np.log(ws)[None, :, None, :]).reshape(cell * cell, k2)
    logits = (2 / s) * (gp @ gq.transpose(2, 3)) + torch.from_numpy(prior + spatial.astype(np.float32))
    out = torch.softmax(logits, dim=-1) @ fq  # (rows_b, cols_b, cell^2, C); NaN where every neighbour is nodata
    out = out.reshape(rows_b, cols_b, cell, cell, c).transpose(1, 2).reshape(rows_b * cell, cols_b * cell, c)
    out = out[top:top + n, lead:lead + width].numpy()
    out[~np.isfinite(guide).all(-1)] = np.nan
    return out
