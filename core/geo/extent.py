"""The part of a raster to work on: a bounding box (any CRS) and/or a polygon, as a pixel extent."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import shapely
from rasterio.warp import transform_bounds
from shapely.geometry import shape

from ..errors import SoftConError
from .samples import reproject



def pixel_extent(ds: Any, bbox: Sequence[float] | None, bbox_crs: Any, geometry: Any) -> tuple[int, int, int, int] | None:
    """Raster pixel extent (row0, col0, row1, col1) of a bbox and/or geometry (already in the raster CRS)."""
    if bbox is None and geometry is None:
        return None
    boxes = []
    if bbox is not None:
        if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            raise SoftConError(f"The bounding box must be minx,miny,maxx,maxy with min < max; got {list(bbox)}.")
        boxes.append(transform_bounds(bbox_crs or ds.crs, ds.crs, *bbox, densify_pts=21) if bbox_crs else tuple(bbox))
    if geometry is not None:
        boxes.append(geometry.bounds)
    minx, miny = max(b[0] for b in boxes), max(b[1] for b in boxes)
    maxx, maxy = min(b[2] for b in boxes), min(b[3] for b in boxes)
    inv = ~ds.transform
    xs, ys = zip(*(inv @ (x, y) for x in (minx, maxx) for y in (miny, maxy)))
    extent = (math.floor(min(ys)), math.floor(min(xs)), math.ceil(max(ys)), math.ceil(max(xs)))
    return extent


def to_geometry(polygon: Any, polygon_crs: Any, raster_crs: Any) -> Any:
    """A shapely geometry (from a geometry, WKT, GeoJSON dict or file) in the raster's CRS."""
    if isinstance(polygon, (str, os.PathLike)) and Path(str(polygon)).suffix.lower() in (".geojson", ".json"):
        gj = json.loads(Path(polygon).read_text())
        feats = gj.get("features", [gj]) if isinstance(gj, dict) else gj
        geom = shapely.union_all([shape(f.get("geometry", f)) for f in feats])
    elif isinstance(polygon, str):
        geom = shapely.from_wkt(polygon)
    elif isinstance(polygon, dict):
        geom = shape(polygon.get("geometry", polygon))
    else:
        geom = polygon
    if polygon_crs is not None:
        geom = reproject(np.array([geom]), polygon_crs, raster_crs)[0]
    if geom.is_empty:
        raise SoftConError("The polygon is empty; give a polygon (WKT, GeoJSON) that covers part of the raster.")
    return geom
