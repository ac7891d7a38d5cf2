"""A class map as an accuracy assessment sees it: its legend, the pixels of each class and the class under a point.

The legend comes from the ``CLASS_VALUES`` / ``CLASS_NAMES`` tags that ``core.classify`` writes (values need not
be 1..n: a user's own codes such as 10, 20, 30 are kept); a map without them is described by its integer codes.
Pixel counts are read strip by strip, so any size of map takes the memory of one strip.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import SoftConError
from ..geo.crs import pixel_area_m2
from ..io.raster import gdal_env, uses_mask_band
from ..progress import Progress

#: Pixels per strip read (about 4 M: 4 MB of uint8 plus its mask).
STRIP_PIXELS = 1 << 22
#: Most classes a map may hold. A raster with more distinct values is reflectance, an index or heights, not
#: classes (a stratified sample of it would be thousands of strata of a handful of pixels each).
MAX_CLASSES = 255


@dataclass(frozen=True)
class ClassMap:
    """The legend and pixel counts of an integer class raster.

    Attributes:
        values, names: the classes, in legend order (tagged classes first, then codes found but not tagged).
        counts: pixels of each class (0 for a tagged class the map never shows).
        pixel_area_m2: area of one pixel; ``named``: whether the names came from the map's tags.
    """

    path: str
    values: tuple[int, ...]
    names: tuple[str, ...]
    counts: tuple[int, ...]
    pixel_area_m2: float
    crs: str | None
    transform: rasterio.Affine
    width: int
    height: int
    named: bool
    geographic: bool = False

    @property
    def total(self) -> int:
        """Pixels that hold a class (nodata excluded)."""
        return int(sum(self.counts))

    @property
    def weights(self) -> np.ndarray:
        """(K,) share of the mapped area of each class (W_h of Olofsson et al. 2014)."""
        return np.asarray(self.counts, float) / max(self.total, 1)

    def hectares(self, pixels: float | np.ndarray) -> float | np.ndarray:
        return pixels * self.pixel_area_m2 / 1e4

    def lookup(self) -> dict[str, int]:
        """Class index of every spelling a label may take: the name (case-folded), then the code."""
        table = {n.strip().casefold(): i for i, n in reversed(list(enumerate(self.names)))}
        for i, v in enumerate(self.values):
            table.setdefault(str(v), i)
        return table

    def index_of(self, labels: list[str | None]) -> tuple[np.ndarray, list[str]]:
        """(class index per label, -1 where unknown or None; the unknown labels, in order of appearance)."""
        table = self.lookup()
        idx = np.array([-1 if s is None else table.get(s.strip().casefold(), -1) for s in labels], np.int64)
        unknown = list(dict.fromkeys(s for s, i in zip(labels, idx) if s is not None and i < 0))
        return idx, unknown


def _legend(ds: rasterio.DatasetReader) -> tuple[list[int], list[str]] | None:
    tags = ds.tags()
    if "CLASS_NAMES" not in tags:
        return None
    try:
        names = [str(n) for n in json.loads(tags["CLASS_NAMES"])]
        values = [int(v) for v in json.loads(tags["CLASS_VALUES"])] if "CLASS_VALUES" in tags else \
            list(range(1, len(names) + 1))
    except (ValueError, TypeError):
        raise SoftConError(f"The CLASS_NAMES / CLASS_VALUES tags of {ds.name} are not JSON lists; remove them "
                           "(gdal_edit.py -unsetmd) to use the integer codes, or write them again.") from None
    if len(values) != len(names) or len(set(values)) != len(values):
        raise SoftConError(f"{ds.name} tags {len(names)} class names for {len(values)} class values "
                           f"({values}); each class needs one value and one name.")
    return values, names


def strips(ds: rasterio.DatasetReader) -> list[tuple[int, int]]:
    """(first row, rows) of block-aligned strips of about :data:`STRIP_PIXELS` pixels."""
    bh = ds.block_shapes[0][0] if ds.block_shapes else 1
    step = bh * max(1, STRIP_PIXELS // max(1, ds.width * bh))
    return [(r, min(step, ds.height - r)) for r in range(0, ds.height, step)]


def read_strip(ds: rasterio.DatasetReader, row: int, rows: int,
               win: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class codes (rows, W), valid (rows, W)) of one strip (or window); invalid = nodata value or masked."""
    win = win or Window(0, row, ds.width, rows)
    data = ds.read(1, window=win)
    if ds.nodata is not None:
        valid = data != ds.nodata
    elif uses_mask_band(ds):
        valid = ds.read_masks(1, window=win) > 0
    else:
        valid = np.ones(data.shape, bool)
    return data, valid


def open_class_map(path: str | Path) -> rasterio.DatasetReader:
    """Open a single-band integer raster, or raise an error that says what a class map is."""
    path = Path(path)
    if not path.exists():
        raise SoftConError(f"Map {path} not found.")
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise SoftConError(f"Cannot open the map {path}: {e}") from None
    if not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) or ds.count != 1:
        what = f"{ds.dtypes[0]} values" if ds.count == 1 else f"{ds.count} bands"
        ds.close()
        raise SoftConError(f"{path.name} holds {what}; a class map is one band of integer class codes "
                           "(e.g. the class raster of Classify, not its probabilities or confidence, nor the image).")
    return ds


def read_class_map(path: str | Path, progress: Progress | None = None) -> ClassMap:
    """The legend and the pixel count of every class of the map at ``path`` (band 1).

    Raises:
        SoftConError: not an integer raster, no CRS, no class pixels, inconsistent class tags.
    """
    progress = progress or Progress()
    with gdal_env(), open_class_map(path) as ds:
        legend = _legend(ds)
        area = pixel_area_m2(ds)
        small = np.dtype(ds.dtypes[0]) in (np.dtype("uint8"), np.dtype("uint16"))
        bins = np.zeros(0, np.int64)
        found: dict[int, int] = {}
        parts = strips(ds)
        for k, (row, rows) in enumerate(parts):
            progress.check()
            data, valid = read_strip(ds, row, rows)
            vals = data[valid]
            if small:
                b = np.bincount(vals, minlength=len(bins))
                b[:len(bins)] += bins
                bins = b
            else:
                u, c = np.unique(vals, return_counts=True)
                for v, n in zip(u.tolist(), c.tolist()):
                    found[v] = found.get(v, 0) + n
            if (np.count_nonzero(bins) if small else len(found)) > MAX_CLASSES:
                raise SoftConError(f"{Path(path).name} holds over {MAX_CLASSES} distinct values, so it is not a "
                                   "class map (reflectance, an index, heights?); give the class raster of a map.")
            progress.update(k + 1, len(parts), "counting map pixels")
        if small:
            found = {int(v): int(bins[v]) for v in np.nonzero(bins)[0]}
        meta = dict(path=str(path), pixel_area_m2=area, crs=ds.crs.to_wkt() if ds.crs else None,
                    transform=ds.transform, width=ds.width, height=ds.height, geographic=bool(ds.crs.is_geographic))
    if not found:
        raise SoftConError(f"{Path(path).name} holds no class pixels (all nodata); give the class raster of a map.")
    values, names = legend if legend else ([], [])
    extra = sorted(set(found) - set(values))
    values = list(values) + extra
    names = list(names) + [str(v) for v in extra]
    counts = [found.get(v, 0) for v in values]
    return ClassMap(values=tuple(values), names=tuple(names), counts=tuple(counts), named=legend is not None, **meta)


def values_at(path: str | Path, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class code, valid) of the map at pixels (rows, cols), which must lie inside the map."""
    codes = np.zeros(len(rows), np.int64)
    valid = np.zeros(len(rows), bool)
    with gdal_env(), open_class_map(path) as ds:
        for i in np.argsort(rows, kind="stable"):  # down the map: each block is decoded once
            data, ok = read_strip(ds, int(rows[i]), 1, Window(int(cols[i]), int(rows[i]), 1, 1))
            codes[i], valid[i] = int(data[0, 0]), bool(ok[0, 0])
    return codes, valid
