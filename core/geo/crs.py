"""Coordinates: geometries and boxes reprojected onto a raster, the part of a raster to work on (a bounding
box in any CRS and/or a polygon) as a pixel extent, and pixel sizes and positions in metres."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
import shapely
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.warp import transform as warp_points, transform_bounds
from shapely.geometry import shape

from ..errors import SoftConError


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



def reproject(geoms: np.ndarray, src_crs, dst_crs) -> np.ndarray:
    """Geometries from ``src_crs`` to ``dst_crs`` (EPSG code, WKT, rasterio CRS...), always x/y order.

    GDAL's transformer (through rasterio), not pyproj: QGIS runs Processing algorithms in threads that
    Python did not create, where pyproj 3.7's per-thread PROJ context crashes the second time round
    (pyproj issue 1509). GDAL keeps its own per-thread contexts, and each call builds its own transform.
    """
    if src_crs is None or dst_crs is None:
        return geoms
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return geoms

    def fn(xy: np.ndarray) -> np.ndarray:
        if len(xy) == 0:
            return xy
        xs, ys = warp_points(src, dst, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    return shapely.transform(geoms, fn)



def pixel_size_m(ds: rasterio.DatasetReader) -> float:
    """Mean pixel size in metres (geographic CRSs are converted at the raster's centre)."""
    if ds.crs is None:
        raise SoftConError(
            "The raster has no coordinate reference system. Assign one (e.g. gdal_edit.py -a_srs EPSG:32632 FILE)."
        )
    rx, ry = abs(ds.transform.a), abs(ds.transform.e)
    if ds.crs.is_geographic:
        lon, lat = ds.transform @ (ds.width / 2, ds.height / 2)
        geod = Geod(ellps="WGS84")
        _, _, dx = geod.inv(lon, lat, lon + rx, lat)
        _, _, dy = geod.inv(lon, lat, lon, lat + ry)
        return float((abs(dx) + abs(dy)) / 2)
    factor = ds.crs.linear_units_factor[1] if ds.crs.linear_units_factor else 1.0
    return float((rx + ry) / 2 * factor)



def pixel_area_m2(ds: rasterio.DatasetReader) -> float:
    """Area of one pixel in square metres (geographic CRSs: geodesic, at the raster's centre).

    Area estimates multiply pixel counts by it, so a projected map gives exact map-unit areas; a map in
    degrees, whose pixels shrink towards the poles, gives the area at its centre.
    """
    if ds.crs is None:
        raise SoftConError(
            "The raster has no coordinate reference system, so its pixels have no area. Assign one "
            "(e.g. gdal_edit.py -a_srs EPSG:32632 FILE)."
        )
    t = ds.transform
    if ds.crs.is_geographic:
        lon, lat = t @ (ds.width / 2, ds.height / 2)
        geod = Geod(ellps="WGS84")
        _, _, dx = geod.inv(lon, lat, lon + abs(t.a), lat)
        _, _, dy = geod.inv(lon, lat, lon, lat + abs(t.e))
        return float(abs(dx * dy))
    factor = ds.crs.linear_units_factor[1] if ds.crs.linear_units_factor else 1.0
    return float(abs(t.a * t.e - t.b * t.d) * factor ** 2)



def pixel_xy_m(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixel-centre map coordinates (M, 2) in metres (degrees converted near the raster's centre)."""
    x, y = ds.transform @ (cols + 0.5, rows + 0.5)
    x, y = np.asarray(x, float), np.asarray(y, float)
    if ds.crs is not None and ds.crs.is_geographic:
        lat0 = math.radians(float(np.mean(y)))
        return np.column_stack([x * 111_320.0 * math.cos(lat0), y * 110_574.0])
    factor = ds.crs.linear_units_factor[1] if ds.crs is not None and ds.crs.linear_units_factor else 1.0
    return np.column_stack([x * factor, y * factor])
