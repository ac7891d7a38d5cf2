"""Multi-labels: spectral rules on real EuroSAT patches, land-cover rasters, the SSL4EO-S12-ML file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import calculate_default_transform, reproject, Resampling

from core.geo.bands import PRESETS
from core.errors import SoftConError
from train.data import landcover_on_grid, stack_bands
from train.labels import (DW_CLASSES, NO_CLASS, WORLDCOVER_TO_DW, labels_from_class_map, labels_from_landcover,
                          load_ssl4eo_labels, multi_hot, spectral_classes, spectral_labels)

WATER, TREES, BUILT = DW_CLASSES.index("water"), DW_CLASSES.index("trees"), DW_CLASSES.index("built")


@pytest.fixture(scope="module")
def eurosat(eurosat_dir):
    """{class: (N, 13, 64, 64) uint16} in EuroSAT band order."""
    out = {}
    for folder in sorted(p for p in eurosat_dir.iterdir() if p.is_dir()):
        arrays = []
        for f in sorted(folder.glob("*.tif")):
            with rasterio.open(f) as src:
                arrays.append(src.read())
        out[folder.name] = np.stack(arrays)
    return out


@pytest.fixture(scope="module")
def eurosat_labels(eurosat):
    """Share of patches of each EuroSAT class that get each Dynamic World label (threshold 0.1)."""
    return {c: spectral_labels(x, PRESETS["eurosat"], threshold=0.1).mean(0) for c, x in eurosat.items()}


def test_water_on_sea_lake_and_river(eurosat_labels):
    assert eurosat_labels["SeaLake"][WATER] >= 0.9
    assert eurosat_labels["River"][WATER] >= 0.7
    for dry in ("Forest", "Pasture", "PermanentCrop", "Industrial", "Residential", "HerbaceousVegetation"):
        assert eurosat_labels[dry][WATER] <= 0.05, dry


def test_trees_on_forest(eurosat_labels):
    assert eurosat_labels["Forest"][TREES] >= 0.9
    assert eurosat_labels["SeaLake"][TREES] <= 0.05


def test_built_on_industrial_and_residential(eurosat_labels):
    assert eurosat_labels["Industrial"][BUILT] >= 0.8
    assert eurosat_labels["Residential"][BUILT] >= 0.6
    for natural in ("Forest", "Pasture", "PermanentCrop", "SeaLake"):
        assert eurosat_labels[natural][BUILT] <= 0.1, natural


def test_built_pixel_share_separates_urban_from_vegetation(eurosat):
    share = {c: (spectral_classes(x, PRESETS["eurosat"]) == BUILT).mean() for c, x in eurosat.items()}
    urban = min(share["Industrial"], share["Residential"])
    green = max(share["Forest"], share["Pasture"], share["PermanentCrop"], share["HerbaceousVegetation"])
    assert urban > 4 * green, share


def test_forest_pixels_mostly_trees(eurosat):
    cm = spectral_classes(eurosat["Forest"], PRESETS["eurosat"])
    assert (cm == TREES).mean() > 0.7


def test_rules_need_bands():
    with pytest.raises(SoftConError, match="B11, B12"):
        spectral_classes(np.zeros((3, 4, 4)), bands=("B2", "B3", "B4"))
    with pytest.raises(SoftConError, match="need bands B12;"):
        spectral_classes(np.zeros((5, 4, 4)), bands=("B2", "B3", "B4", "B8", "B11"))


# One pixel per rule of the train.labels docstring, as reflectances (B2, B3, B4, B8, B11, B12), chosen to meet
# the documented conditions of its rule and to fail every rule listed before it.
DOCUMENTED = [
    ("snow_and_ice", (0.20, 0.50, 0.45, 0.40, 0.10, 0.08)),     # NDSI 0.67, B8 > 0.11, B3 > 0.2
    (None, (0.30, 0.30, 0.30, 0.30, 0.30, 0.25)),               # cloud: B2 > 0.25, not snow
    ("water", (0.06, 0.05, 0.03, 0.02, 0.01, 0.01)),            # MNDWI 0.67, NDVI < 0.1, B11 < 0.05
    ("trees", (0.02, 0.04, 0.02, 0.35, 0.15, 0.07)),            # NDVI 0.89, B4 < 0.05, B11 < 0.18
    ("built", (0.10, 0.10, 0.09, 0.20, 0.18, 0.15)),            # rule 5: bluish grey, SWIR-flat, NDVI 0.38
    ("crops", (0.03, 0.06, 0.03, 0.45, 0.20, 0.10)),            # NDVI 0.88, B8 > 0.40 (B4 < 0.05 but B11 0.20)
    ("grass", (0.04, 0.07, 0.06, 0.30, 0.22, 0.12)),            # NDVI 0.67, B8 < 0.40
    ("flooded_vegetation", (0.04, 0.06, 0.06, 0.10, 0.07, 0.04)),  # NDVI 0.25, B11 < 0.08
    ("shrub_and_scrub", (0.06, 0.08, 0.10, 0.17, 0.20, 0.15)),  # NDVI 0.26
    ("bare", (0.08, 0.10, 0.14, 0.16, 0.25, 0.20)),             # NDVI 0.07, NDBI 0.22, B4 > B2
    ("built", (0.12, 0.12, 0.12, 0.13, 0.14, 0.08)),            # rule 11: NDBI 0.04, grey (B12 < 0.69 B11: not rule 5)
]


@pytest.mark.parametrize("name,refl", DOCUMENTED)
def test_each_documented_rule_in_its_documented_order(name, refl):
    """The rules as the module docstring states them (docs and code once disagreed on built and B12)."""
    x = np.zeros((13, 1, 1), np.float32)
    for band, v in zip(("B2", "B3", "B4", "B8", "B11", "B12"), refl):
        x[PRESETS["s2_l1c"].index(band)] = v * 10000
    got = int(spectral_classes(x)[0, 0])
    assert got == (NO_CLASS if name is None else DW_CLASSES.index(name)), (name, got)


def test_labels_from_class_map_threshold():
    cm = np.full((10, 10), 1, np.int8)      # trees everywhere
    cm[0, :5] = 0                           # 5 % water
    cm[1:3, :] = NO_CLASS                   # unlabelled pixels do not count
    y5 = labels_from_class_map(cm, threshold=0.05)
    y10 = labels_from_class_map(cm, threshold=0.1)
    assert y5[WATER] == 1 and y5[TREES] == 1      # 5 of 80 labelled pixels = 6.25 %
    assert y10[WATER] == 0 and y10[TREES] == 1
    assert labels_from_class_map(np.full((4, 4), NO_CLASS, np.int8)).sum() == 0


def test_worldcover_mapping():
    wc = np.array([[10, 10, 50, 80], [10, 10, 50, 0], [10, 10, 10, 10], [95, 10, 10, 10]])
    y = labels_from_landcover(wc, "worldcover", threshold=0.05)
    assert set(np.flatnonzero(y)) == {WORLDCOVER_TO_DW[10], WORLDCOVER_TO_DW[50], WORLDCOVER_TO_DW[80],
                                      WORLDCOVER_TO_DW[95]}
    y = labels_from_landcover(wc, "worldcover", threshold=0.1)   # 0 is nodata, 80 and 95 are 1/15 < 0.1
    assert set(np.flatnonzero(y)) == {TREES, BUILT}


def test_landcover_raster_on_scene_grid(tmp_path, s2_scene_files):
    """A Dynamic World raster in another CRS and resolution lands on the 10 m grid of the real scene."""
    with rasterio.open(s2_scene_files[1]) as src:   # B2, 10 m
        transform, crs = src.transform, src.crs   # the top-left 400 x 400 px window
    grid = {"crs": crs, "transform": transform, "height": 400, "width": 400}
    stack, full = stack_bands(s2_scene_files)
    classes = spectral_classes(stack[:, :400, :400]).astype(np.int16)
    # write it as a 20 m Dynamic World raster in geographic coordinates
    dst_crs = "EPSG:4326"
    bounds = (transform.c, transform.f + 400 * transform.e, transform.c + 400 * transform.a, transform.f)
    t2, w2, h2 = calculate_default_transform(crs, dst_crs, 400, 400, *bounds, resolution=0.0001)
    geo = np.full((h2, w2), -1, np.int16)
    reproject(classes, geo, src_transform=transform, src_crs=crs, dst_transform=t2, dst_crs=dst_crs,
              resampling=Resampling.nearest, src_nodata=-1, dst_nodata=-1)
    path = tmp_path / "dw.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w2, height=h2, count=1, dtype="int16", crs=dst_crs,
                       transform=t2, nodata=-1) as dst:
        dst.write(geo, 1)
    back = landcover_on_grid(path, grid)
    inside = back[20:-20, 20:-20] >= 0
    assert inside.mean() > 0.99
    agree = (back[20:-20, 20:-20] == classes[20:-20, 20:-20])[inside].mean()
    assert agree > 0.6   # nearest-neighbour round trip through ~10 m geographic pixels
    y_direct = labels_from_class_map(classes, 0.1)
    y_back = labels_from_landcover(back, "dynamic_world", 0.1)
    assert (y_direct == y_back).all()
    assert full["transform"].a == 10.0


def test_ssl4eo_json(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"0000042": {"20200401T000000_A": ["0", "3"], "20200701T000000_B": ["1"]}}))
    table = load_ssl4eo_labels(path)
    assert table["0000042"]["20200401T000000_A"].tolist() == multi_hot([0, 3]).tolist()
    assert table["0000042"]["20200701T000000_B"][TREES] == 1
    path.write_text(json.dumps({"1": {"s": ["12"]}}))
    with pytest.raises(SoftConError, match="Dynamic World"):
        load_ssl4eo_labels(path)
    path.write_text("{not json")
    with pytest.raises(SoftConError, match="Cannot read"):
        load_ssl4eo_labels(path)
