"""Is this raster Sentinel-2 reflectance x 10000, and with which offset? Checked before any heavy work.

The models were trained on Level-1C / Level-2A digital numbers, reflectance x 10000, without the offset that
processing baseline 04.00 (from 25 January 2022) adds: such products store reflectance x 10000 + 1000 and say
so in their metadata (``RADIO_ADD_OFFSET`` (L1C) / ``BOA_ADD_OFFSET`` (L2A) = -1000 per band, in
``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` of the SAFE folder, in GDAL's band metadata, or a
``PROCESSING_BASELINE`` tag). Data on another scale still makes a map, just a wrong one: 0-1 reflectance
(48.8 % agreement with the right map), 8-bit display values, or +1000 data read without its offset
(16.8 %). :func:`check_reflectance` reads the offset from the metadata where it is there and samples the
values (16 block-aligned windows, whatever the raster's size) to stop on a scale that cannot be right,
saying what to change.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET  # nosec B405 - product metadata the user gave, parsed for two numbers
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import SoftConError
from ..geo.normalize import BOA_ADD_OFFSET, reflectance_offset
from .reader import read_window

OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
MTD_NAMES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml", "MTD_MSIL1C.XML", "MTD_MSIL2A.XML")
#: Windows (per side) and their size, sampled for the value checks.
GRID, WINDOW = 4, 128


def _offset_of(tags: dict[str, str]) -> float | None:
    """The value to subtract (1000 for -1000) from tags holding an ADD_OFFSET or a PROCESSING_BASELINE."""
    for key, value in tags.items():
        if re.fullmatch(r"(BOA|RADIO)_ADD_OFFSET(_B\w+)?", key.upper()):  # also per band: BOA_ADD_OFFSET_B04
            try:
                return -float(value)
            except ValueError:
                continue
    for key, value in tags.items():
        if key.upper() == "PROCESSING_BASELINE":
            try:
                return reflectance_offset(value)
            except ValueError:
                continue
    return None


def _safe_metadata(path: Path) -> tuple[float, str] | None:
    """The offset from the product metadata of a SAFE folder above ``path`` (or named like one)."""
    for folder in list(path.resolve().parents)[:6]:
        for name in MTD_NAMES:
            mtd = folder / name
            if mtd.is_file():
                try:
                    root = ET.parse(mtd).getroot()  # nosec B314 - a local product file, no entity expansion used
                except (ET.ParseError, OSError):
                    continue
                values = [float(e.text) for e in root.iter() if e.tag.rsplit("}", 1)[-1] in OFFSET_KEYS and e.text]
                if values:
                    return -values[0], mtd.name
                base = [e.text for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "PROCESSING_BASELINE" and e.text]
                if base:
                    return reflectance_offset(base[0]), f"{mtd.name} (processing baseline {base[0]})"
        m = re.search(r"_N(\d{4})_", folder.name)
        if folder.suffix.upper() == ".SAFE" and m:
            return reflectance_offset("N" + m.group(1)), f"the product name {folder.name}"
    return None


def metadata_offset(ds: Any, sources: Any) -> tuple[float, str] | None:
    """(value to subtract, where it was found) from the raster's or the product's metadata, or None."""
    found = _offset_of({k: v for i in range(1, ds.count + 1) for k, v in ds.tags(i).items()})
    if found is not None:
        return found, "the band metadata"
    found = _offset_of(ds.tags())
    if found is not None:
        return found, "the raster's metadata"
    files = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources or [])
    for f in files:
        if len(files) > 1:
            with rasterio.open(f) as one:
                found = _offset_of({**one.tags(), **one.tags(1)})
            if found is not None:
                return found, f"the metadata of {Path(f).name}"
        safe = _safe_metadata(Path(f))
        if safe is not None:
            return safe
    return None


def sample_values(ds: Any, indexes: Sequence[int]) -> list[np.ndarray]:
    """Valid values of each band (1-based ``indexes``) in a grid of small windows over the raster.

    Nodata, NaN and, where the raster declares no nodata, 0 (Sentinel-2's no-data value) are left out.
    """
    h, w = ds.height, ds.width
    size_r, size_c = min(WINDOW, h), min(WINDOW, w)
    rows = np.unique(np.linspace(0, h - size_r, GRID).astype(int))
    cols = np.unique(np.linspace(0, w - size_c, GRID).astype(int))
    nodata = ds.nodata
    out: list[list[np.ndarray]] = [[] for _ in indexes]
    for r in rows:
        for c in cols:
            block = read_window(ds, list(indexes), Window(int(c), int(r), size_c, size_r), "float64")
            for k, b in enumerate(block):
                v = b[np.isfinite(b)]
                v = v[v != nodata] if nodata is not None and np.isfinite(nodata) else v[v != 0]
                out[k].append(v)
    return [np.concatenate(v) for v in out]


def check_reflectance(ds: Any, sources: Any, indexes: Sequence[int], offset: float | None,
                      log: Callable[[str], None] = lambda m: None) -> float:
    """The offset to subtract from ``ds``'s optical bands; stops when the values cannot be reflectance x 10000.

    Args:
        ds: the open raster; sources: the file(s) it came from (for SAFE metadata); indexes: its 1-based bands
            the model reads; offset: the user's ``--offset`` (None = from the metadata, else 0).
        log: told where the offset came from.

    Raises:
        SoftConError: 8-bit display values, 0-1 reflectance, values mostly negative or far above 10000,
            +1000 data with no metadata and no ``--offset``, or ``--offset`` on data that has none.
    """
    if offset is not None and not np.isfinite(offset):
        raise SoftConError(f"--offset must be a number (1000 for Sentinel-2 baseline 04.00 or later, else 0), "
                           f"not {offset}.")
    vals = sample_values(ds, indexes)
    if not any(v.size for v in vals):
        return float(offset or 0.0)  # all nodata: the engine says so
    everything = np.concatenate(vals)
    dtypes = {ds.dtypes[i - 1] for i in indexes}
    original = "Use the product's original Level-1C / Level-2A values (reflectance x 10000, uint16)."
    if dtypes == {"uint8"} or all(v.size == 0 or np.percentile(v, 99.9) <= 255 for v in vals) and \
            all(np.issubdtype(np.dtype(d), np.integer) for d in dtypes):
        raise SoftConError("The raster holds 8-bit values (0-255), but the model expects Sentinel-2 reflectance "
                           f"x 10000 (typically 0-10000): display or rescaled data give a meaningless map. {original}")
    p99 = float(np.percentile(everything, 99))
    if p99 <= 2.0:
        raise SoftConError(f"The raster's values are reflectance as a fraction (99 % of them <= {p99:.2f}), but the "
                           f"model expects reflectance x 10000. Multiply the bands by 10000 first (gdal_calc.py "
                           f"--calc=\"A*10000\" --type=UInt16, or the QGIS Raster calculator).")
    negative = float((everything < 0).mean())
    if negative > 0.01:
        raise SoftConError(f"{100 * negative:.0f} % of the raster's values are negative, which reflectance x 10000 "
                           f"never is (radar backscatter in dB, or data shifted or rescaled?). {original}")
    meta = metadata_offset(ds, sources)
    p1 = [float(np.percentile(v, 1)) for v in vals if v.size]
    if offset is None:
        if meta is not None:
            offset = meta[0]
            log(f"Reflectance offset {offset:g} (subtracted from every optical value), from {meta[1]}.")
        elif min(p1) >= BOA_ADD_OFFSET - 50:
            raise SoftConError(
                f"Every band's values start near or above {BOA_ADD_OFFSET:.0f} (1st percentiles {min(p1):.0f}-"
                f"{max(p1):.0f}), as in Sentinel-2 products of processing baseline 04.00 or later (from 25 January "
                f"2022), which add {BOA_ADD_OFFSET:.0f} to reflectance x 10000, and the raster's metadata does not "
                f"say. Give --offset {BOA_ADD_OFFSET:.0f} for such data, or --offset 0 if it has no offset.")
        else:
            offset = 0.0
    elif meta is not None and meta[0] != offset:
        log(f"Warning: {meta[1]} gives a reflectance offset of {meta[0]:g}; using --offset {offset:g} as asked.")
    darkest = min((v for v in vals if v.size), key=lambda v: float(np.median(v)))
    below = float((darkest < offset - 200).mean())
    if offset > 0 and below > 0.25:
        raise SoftConError(f"With --offset {offset:g}, {100 * below:.0f} % of the darkest band's values become "
                           f"reflectance below -0.02: this data has no such offset. Use --offset 0.")
    median = float(np.median(everything)) - offset
    if median > 15000:
        raise SoftConError(f"The raster's median value is {median:.0f}, far above reflectance x 10000 (at most about "
                           f"10000 outside clouds and snow): another scaling (radiance, 16-bit stretch?). {original}")
    return float(offset)
