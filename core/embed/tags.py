"""The ``SOFTCON`` tags of an embedding raster: what it holds and how it was made, decoded back by
:func:`read_embedding_info`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import rasterio

from ..errors import SoftConError

TAG_NAMESPACE = "SOFTCON"
FORMAT_VERSION = "2"  # 2: dense tokens blended across overlapping windows (tag ``blend``)


_JSON_TAGS = ("bands", "source_bands", "mean", "std", "sar_quantiles", "sources")


_INT_TAGS = ("stride", "window", "patch_size", "cell", "dim", "windows_total", "windows_run", "windows_skipped")


_FLOAT_TAGS = ("offset", "min_valid", "input_res_m", "seconds")


def read_embedding_info(path: str | os.PathLike) -> dict[str, Any]:
    """What an embedding raster holds: its ``SOFTCON`` tags, decoded, plus its grid.

    Returns:
        dict with ``model``, ``arch``, ``bands`` (list), ``mean``/``std`` (lists), ``mode``, ``stride``,
        ``window``, ``patch_size``, ``cell`` (output pixel, input px), ``dim``, ``precision``, ``dtype``,
        ``min_valid``, ``offset``, ``sources``, window counts, and ``crs`` (WKT), ``transform`` (6 affine
        coefficients a, b, c, d, e, f), ``width``, ``height``, ``res``, ``bounds``, ``count``, ``nodata``.

    Raises:
        SoftConError: if the file is not an embedding raster written by :func:`embed_raster`.
    """
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags(ns=TAG_NAMESPACE)
            grid = dict(crs=ds.crs.to_wkt() if ds.crs else None, transform=tuple(ds.transform)[:6], width=ds.width,
                        height=ds.height, res=ds.res, bounds=tuple(ds.bounds), count=ds.count, nodata=ds.nodata)
    except rasterio.errors.RasterioIOError as e:
        raise SoftConError(f"Cannot open {path}: {e}.") from None
    if "model" not in tags or "mode" not in tags:
        raise SoftConError(
            f"{path} is not an embedding raster made by core.embed (no {TAG_NAMESPACE} tags); run python -m core.embed first."
        )
    info: dict[str, Any] = {}
    for key, value in tags.items():
        if key in _JSON_TAGS:
            info[key] = json.loads(value)
        elif key in _INT_TAGS:
            info[key] = int(value)
        elif key in _FLOAT_TAGS:
            info[key] = float(value)
        else:
            info[key] = value
    info.update(grid)
    return info



def embedding_tags(path: str | Path) -> dict[str, str]:
    """The ``SOFTCON`` tags of a raster (empty for any other raster)."""
    try:
        with rasterio.open(path) as ds:
            return ds.tags(ns="SOFTCON")
    except rasterio.errors.RasterioIOError:
        return {}


def is_embedding_raster(path: Any) -> bool:
    """True for a single raster file written by ``core.embed`` (it carries a ``SOFTCON`` model tag)."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        return False
    return "model" in embedding_tags(path)


def embedding_info(path: str | Path) -> dict[str, Any]:
    """The embedding raster's tags, decoded (:func:`core.embed.tags.read_embedding_info`)."""
    return dict(read_embedding_info(path))
