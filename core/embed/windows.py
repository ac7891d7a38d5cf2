"""The window grid of sliding-window inference (after TorchGeo's ``GridGeoSampler``, minus its per-window reads).

Windows of ``window`` px sit on a regular ``stride`` anchored at the raster's pixel (0, 0), so a window's
position depends only on where it is in the raster, never on the extent, tile or batch that asked for
it. Each window *owns* the ``stride x stride`` px cell at its centre:

- ``pooled``: one embedding per window, written as one output pixel of ``stride`` px (the window's
  centre cell).
- ``dense``: the window's patch tokens (output pixel = one patch, ``patch`` px). Every token of every window
  is kept and blended with its neighbours' (:mod:`core.embed.blend`: weights falling off towards each
  window's edge), so the window grid leaves no seams; the window that owns a token has it where its
  weight is highest, with ``(window - stride) / 2`` px of context on each side. Windows are anchored to
  the raster, and those just beyond the extent are run too, so the result is the same whatever extent,
  strip height or batch size produced it.

Pixels outside the raster are filled with the raster mirrored at its edge (:func:`reflect_outside`):
zero padding, which the model never saw in training, made border windows look like open sea.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine

from ..errors import SoftConError
from .spec import MODES


def default_stride(mode: str, window: int, patch: int) -> int:
    """Half a window for both modes. Pooled: output pixels of window/2 (e.g. 320 m for 64 px at 10 m). Dense:
    every token lies in 2 x 2 windows whose raised-cosine tapers cross-fade (:mod:`core.embed.blend`), so no token
    comes from one window alone.

    Dense stride 48 (3/4 of a window) costs 2.25x fewer windows, but where one window alone covers a token the
    embedding still varies with the token's place in that window; on the demo scene that shows as a lattice of
    inland-water dots in the surf zone at the 48 px window spacing. At 32 px the lattice is gone (open-sea zone
    97.7 -> 98.4 % open sea, the same 73/74 validation points; ``benchmarks/map_quality.py --stride 48``).
    """
    if mode == "dense":
        keeps_whole_patches = [s for s in range(patch, window + 1, patch) if (window - s) % (2 * patch) == 0]
        return max((s for s in keeps_whole_patches if 2 * s <= window), default=patch)
    return max(1, window // 2)


@dataclass(frozen=True)
class WindowGrid:
    """Windows covering an extent of a raster, in raster pixel coordinates.

    Attributes:
        mode: ``pooled`` or ``dense``.
        window: model input size (px).
        stride: distance between windows (px) = size of the cell each window owns.
        cell: output pixel size (px): ``stride`` (pooled) or the patch size (dense).
        row0, col0: raster pixel of the extent's top-left corner (a multiple of ``stride``).
        n_rows, n_cols: windows down and across.
        out_height, out_width: output raster size (pixels of ``cell`` px).
    """

    mode: str
    window: int
    stride: int
    cell: int
    row0: int
    col0: int
    n_rows: int
    n_cols: int
    out_height: int
    out_width: int

    @property
    def margin(self) -> int:
        """Context (px) on each side of a window's owned cell."""
        return (self.window - self.stride) // 2

    @property
    def cells_per_window(self) -> int:
        """Output pixels per window along each axis (1 pooled, stride / patch dense)."""
        return self.stride // self.cell

    @property
    def n_windows(self) -> int:
        return self.n_rows * self.n_cols

    def window_origin(self, i: int, j: int) -> tuple[int, int]:
        """Raster pixel (row, col) of the top-left corner of window (i, j); may be negative."""
        return self.row0 + i * self.stride - self.margin, self.col0 + j * self.stride - self.margin

    def row_span(self, i: int) -> tuple[int, int]:
        """Raster rows [start, end) read for window row i (its windows' full height)."""
        top = self.row0 + i * self.stride - self.margin
        return top, top + self.window

    def col_span(self) -> tuple[int, int]:
        """Raster columns [start, end) read for any window row."""
        left = self.col0 - self.margin
        return left, left + (self.n_cols - 1) * self.stride + self.window

    def out_rows(self, i: int) -> tuple[int, int]:
        """Output rows [start, end) owned by window row i (clipped to the output)."""
        k = self.cells_per_window
        return i * k, min((i + 1) * k, self.out_height)

    def with_halo(self, n: int) -> "WindowGrid":
        """The same windows plus ``n`` rows and columns of windows on every side: those whose tokens reach into
        the extent when windows are blended (:mod:`core.embed.blend`), so that a token's value never depends on
        the extent that was asked for. Only :meth:`row_span`, :meth:`col_span` and :meth:`cell_valid` apply to it."""
        if n <= 0:
            return self
        k = self.cells_per_window
        return dataclasses.replace(self, row0=self.row0 - n * self.stride, col0=self.col0 - n * self.stride,
                                   n_rows=self.n_rows + 2 * n, n_cols=self.n_cols + 2 * n,
                                   out_height=self.out_height + 2 * n * k, out_width=self.out_width + 2 * n * k)

    def transform(self, raster_transform: Affine) -> Affine:
        """Geotransform of the output raster."""
        return raster_transform @ Affine.translation(self.col0, self.row0) @ Affine.scale(self.cell)

    def cell_valid(self, valid: np.ndarray, min_valid: float) -> np.ndarray:
        """Which output pixels of one window row hold enough data.

        Args:
            valid: (stride, n_cols * stride) bool, the raster pixels owned by the window row.
            min_valid: fraction of a cell's pixels that must hold data.

        Returns:
            (cells_per_window, n_cols * cells_per_window) bool.
        """
        k, c = self.cells_per_window, self.cell
        frac = valid.reshape(k, c, -1, c).mean(axis=(1, 3))
        return frac >= min_valid - 1e-9


def make_grid(
    mode: str,
    window: int,
    stride: int | None,
    patch: int,
    height: int,
    width: int,
    extent: tuple[int, int, int, int] | None = None,
) -> WindowGrid:
    """The windows covering ``extent`` of a ``height x width`` raster.

    Args:
        mode: ``pooled`` or ``dense``.
        window: model input size (px); patch: its patch size (px; dense output pixel).
        stride: window spacing (px); None = :func:`default_stride`.
        extent: (row_start, col_start, row_stop, col_stop) in raster pixels, clipped to the raster;
            None = the whole raster. It is widened to the stride grid.

    Raises:
        SoftConError: for a stride the mode cannot use, or an empty extent.
    """
    if mode not in MODES:
        raise SoftConError(f"Unknown mode {mode!r}; use one of: {', '.join(MODES)}.")
    stride = default_stride(mode, window, patch) if stride is None else int(stride)
    if not 1 <= stride <= window:
        raise SoftConError(f"Stride {stride} px is outside 1..{window} (the window size); choose a stride in that range.")
    if mode == "dense":
        ok = stride % patch == 0 and (window - stride) % (2 * patch) == 0
        if not ok:
            valid = [s for s in range(patch, window + 1, patch) if (window - s) % (2 * patch) == 0]
            raise SoftConError(
                f"Dense stride {stride} px does not keep whole patches at the window centre "
                f"(window {window} px, patch {patch} px). Use one of: {', '.join(map(str, valid))}."
            )
    cell = stride if mode == "pooled" else patch
    r0, c0, r1, c1 = extent if extent is not None else (0, 0, height, width)
    r0, c0, r1, c1 = max(0, r0), max(0, c0), min(height, r1), min(width, c1)
    if r1 <= r0 or c1 <= c0:
        raise SoftConError("The requested extent does not overlap the raster; check the bounding box and its CRS.")
    row0, col0 = r0 // stride * stride, c0 // stride * stride
    n_rows, n_cols = math.ceil((r1 - row0) / stride), math.ceil((c1 - col0) / stride)
    out_h, out_w = math.ceil((r1 - row0) / cell), math.ceil((c1 - col0) / cell)
    return WindowGrid(mode, window, stride, cell, row0, col0, n_rows, n_cols, out_h, out_w)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Symmetric reflection of indices into [0, n): -1 -> 0, -2 -> 1, n -> n - 1 (numpy ``symmetric`` pad)."""
    i = np.mod(idx, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def reflect_outside(data: np.ndarray, valid: np.ndarray, top: int, left: int, height: int,
                    width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill the part of a strip outside the raster with the raster mirrored at its edges.

    Args:
        data: (C, n, w) raster rows [top, top + n) and columns [left, left + w), anything outside the raster.
        valid: (n, w) bool, which pixels hold data.
        height, width: the raster's size.

    Returns:
        (data, valid), new arrays where the strip reaches outside the raster, else the inputs themselves.
    """
    n, w = valid.shape
    if top >= 0 and left >= 0 and top + n <= height and left + w <= width:
        return data, valid
    rr = np.clip(_mirror(top + np.arange(n), height) - top, 0, n - 1)
    cc = np.clip(_mirror(left + np.arange(w), width) - left, 0, w - 1)
    return data[:, rr][:, :, cc], valid[rr][:, cc]
