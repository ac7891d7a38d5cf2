"""Multi-hot land-cover labels for SoftCon, over the 9 Dynamic World classes.

Three sources, one output format (a float vector of 9 zeros/ones per scene, all zeros = unknown):

1. The published SSL4EO-S12-ML file (Wang et al. 2024, SoftCon): JSON ``{location: {season: ["0", "3", ...]}}``
   with Dynamic World class ids, read by :func:`load_ssl4eo_labels`.
2. Any land-cover raster for the user's own imagery: Dynamic World (ids 0-8) directly, or ESA WorldCover
   through :data:`WORLDCOVER_TO_DW`; a class is present when it covers at least ``threshold`` of the
   scene (:func:`labels_from_landcover`).
3. Imagery without a land-cover map: :func:`spectral_classes` assigns each pixel at most one class from
   spectral indices of the 13 Sentinel-2 L1C bands with the documented rules below, and
   :func:`labels_from_class_map` turns the per-pixel classes into weak multi-labels the same way.

Dynamic World classes (Brown et al. 2022, Scientific Data 9:251), index = id:
0 water, 1 trees, 2 grass, 3 flooded vegetation, 4 crops, 5 shrub and scrub, 6 built, 7 bare, 8 snow and ice.

Spectral rules (:data:`RULES`), on top-of-atmosphere reflectance (L1C digital number / 10000), applied in
this order, first match wins (so each rule only sees the pixels the rules above it left); pixels matching
none stay unlabelled:

1. snow and ice: NDSI = (B3 - B11) / (B3 + B11) > 0.4 and B8 > 0.11 (Hall, Riggs, Salomonson 1995, the
   MODIS/Landsat SNOMAP test), and B3 > 0.2 so that dark water (also NDSI-positive) is not snow.
2. clouds (unlabelled): B2 > 0.25 and not snow.
3. water: MNDWI = (B3 - B11) / (B3 + B11) > 0.2 (Xu 2006; threshold raised from 0 against shadows) or
   NDWI = (B3 - B8) / (B3 + B8) > 0.1 (McFeeters 1996), with NDVI < 0.1 and B11 < 0.05 (water absorbs SWIR).
4. trees: NDVI = (B8 - B4) / (B8 + B4) > 0.55 with a dark canopy, B4 < 0.05, and B11 < 0.18 (forest
   canopies are dark in red and SWIR from shadowing and leaf water; grass and crops are brighter).
5. built, bluish-grey surfaces: NDVI < 0.45, B4 < 0.95 B2, B12 > 0.69 B11, B11 < 0.25, B2 > 0.08 and
   MNDWI < -0.15 (roofs and paving in the vegetated urban mix: bluer than soil, whose B4 exceeds B2; SWIR-flat;
   drier than water). Checked before the vegetation rules so gardens and street trees do not take these pixels.
6. crops: NDVI > 0.6 and B8 > 0.40 (vigorous, peak-season crops reflect more NIR than pasture or forest).
   One date cannot separate crops from grass reliably: this is the weakest rule.
7. grass: NDVI > 0.3 (other green vegetation).
8. flooded vegetation: NDVI > 0.1 and B11 < 0.08, i.e. 0.1 < NDVI <= 0.3 after rule 7 (sparse vegetation over
   water-saturated ground).
9. shrub and scrub: NDVI > 0.15, i.e. 0.15 < NDVI <= 0.3 (sparse vegetation; Dynamic World's shrub class is
   mostly that).
10. bare: NDVI <= 0.15, NDBI = (B11 - B8) / (B11 + B8) > 0 (Zha, Gao, Ni 2003) and reddish soil, B4 > B2.
11. built, the rest: NDBI > -0.3 and grey (B4 <= 1.1 B2) with B2 > 0.08, on what is left (NDVI <= 0.15).

These are weak labels: they get the dominant, spectrally distinct classes (water, dense forest, built-up,
snow) right most of the time and confuse crops / grass / shrub, which is what a soft label similarity
tolerates. ``tests/test_labels.py`` measures them on real EuroSAT patches.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from core.geo.bands import S2_L1C
from core.errors import SoftConError

DW_CLASSES: tuple[str, ...] = ("water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub",
                               "built", "bare", "snow_and_ice")
NUM_CLASSES = len(DW_CLASSES)

#: ESA WorldCover 2020/2021 class value -> Dynamic World id (Zanaga et al. 2021 legend).
WORLDCOVER_TO_DW: dict[int, int] = {
    10: 1,   # tree cover -> trees
    20: 5,   # shrubland -> shrub and scrub
    30: 2,   # grassland -> grass
    40: 4,   # cropland -> crops
    50: 6,   # built-up -> built
    60: 7,   # bare / sparse vegetation -> bare
    70: 8,   # snow and ice
    80: 0,   # permanent water bodies -> water
    90: 3,   # herbaceous wetland -> flooded vegetation
    95: 3,   # mangroves -> flooded vegetation (Dynamic World puts mangroves there)
    100: 2,  # moss and lichen -> grass (low non-woody cover; Dynamic World has no closer class)
}
#: Dynamic World label rasters store the class id itself.
DYNAMIC_WORLD_TO_DW: dict[int, int] = {i: i for i in range(NUM_CLASSES)}
LANDCOVER_MAPPINGS: dict[str, dict[int, int]] = {"dynamic_world": DYNAMIC_WORLD_TO_DW, "worldcover": WORLDCOVER_TO_DW}

#: Unlabelled pixel in a class map.
NO_CLASS = -1


def multi_hot(ids: Sequence[int | str]) -> np.ndarray:
    """(9,) float32 multi-hot vector of Dynamic World ids (strings allowed, as in the SSL4EO-S12-ML file)."""
    v = np.zeros(NUM_CLASSES, np.float32)
    for i in ids:
        k = int(i)
        if not 0 <= k < NUM_CLASSES:
            raise SoftConError(f"Label id {i!r} is not a Dynamic World class (0-{NUM_CLASSES - 1}).")
        v[k] = 1.0
    return v


def load_ssl4eo_labels(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read the SSL4EO-S12-ML JSON ``{location: {season: ["0", "3", ...]}}`` into multi-hot vectors.

    Returns:
        ``{location: {season: (9,) float32}}`` with the same keys as the file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SoftConError(f"Cannot read the SSL4EO-S12-ML label file {path}: {e}. "
                           f"Give the JSON file {{location: {{season: [class ids]}}}}.") from None
    if not isinstance(raw, dict):
        raise SoftConError(f"{path} is not a {{location: {{season: [class ids]}}}} JSON object.")
    out: dict[str, dict[str, np.ndarray]] = {}
    for loc, seasons in raw.items():
        if not isinstance(seasons, dict):
            raise SoftConError(f"{path}: entry {loc!r} is not a {{season: [class ids]}} object.")
        out[str(loc)] = {str(s): multi_hot(ids) for s, ids in seasons.items()}
    return out


def labels_from_class_map(class_map: np.ndarray, threshold: float = 0.05, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Multi-hot labels from per-pixel class ids: a class is present if it covers >= ``threshold``.

    Args:
        class_map: (..., H, W) int class ids, ``NO_CLASS`` (-1) where unknown.
        threshold: minimum share of the *labelled* pixels (0 = any pixel).

    Returns:
        (..., 9) float32; all zeros where no pixel is labelled.
    """
    cm = np.asarray(class_map)
    flat = cm.reshape(cm.shape[:-2] + (-1,))
    counts = np.stack([(flat == k).sum(-1) for k in range(num_classes)], axis=-1).astype(np.float64)
    total = counts.sum(-1, keepdims=True)
    frac = counts / np.maximum(total, 1)
    present = (frac >= threshold) & (counts > 0)
    return present.astype(np.float32)


def map_landcover(raster: np.ndarray, mapping: str | Mapping[int, int] = "dynamic_world") -> np.ndarray:
    """Land-cover values (..., H, W) -> Dynamic World ids, ``NO_CLASS`` for values not in the mapping."""
    table = LANDCOVER_MAPPINGS[mapping] if isinstance(mapping, str) else dict(mapping)
    raster = np.asarray(raster)
    out = np.full(raster.shape, NO_CLASS, np.int8)
    for src, dst in table.items():
        out[raster == src] = dst
    return out


def labels_from_landcover(raster: np.ndarray, mapping: str | Mapping[int, int] = "dynamic_world",
                          threshold: float = 0.05) -> np.ndarray:
    """Multi-hot labels (..., 9) from a land-cover patch (..., H, W) (Dynamic World or WorldCover values)."""
    return labels_from_class_map(map_landcover(raster, mapping), threshold)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, 1e-6)


def spectral_classes(x: np.ndarray, bands: Sequence[str] = S2_L1C, scale: float = 10000.0,
                     offset: float = 0.0) -> np.ndarray:
    """Per-pixel Dynamic World class ids from the spectral rules in the module docstring.

    Args:
        x: (..., C, H, W) Sentinel-2 L1C digital numbers (or reflectance with ``scale=1``).
        bands: band name of each of the C channels (needs B2, B3, B4, B8, B11, B12).
        scale: divide by this to get reflectance; offset: subtracted first (1000 for baseline >= 04.00).

    Returns:
        (..., H, W) int8 class ids, ``NO_CLASS`` where no rule matches.
    """
    idx = {b: i for i, b in enumerate(bands)}
    need = [b for b in ("B2", "B3", "B4", "B8", "B11", "B12") if b not in idx]
    if need:
        raise SoftConError(f"Spectral labels need bands {', '.join(need)}; give the band order of the input.")
    x = np.asarray(x)
    ax = x.ndim - 3

    def band(name: str) -> np.ndarray:
        return (np.take(x, idx[name], axis=ax).astype(np.float32) - offset) / scale

    b2, b3, b4, b8, b11, b12 = (band(n) for n in ("B2", "B3", "B4", "B8", "B11", "B12"))
    ndvi = _ratio(b8, b4)
    mndwi = _ratio(b3, b11)   # also the NDSI of Hall et al. (same bands)
    ndwi = _ratio(b3, b8)
    ndbi = _ratio(b11, b8)
    valid = (b2 > 0) & (b8 > 0)
    out = np.full(b2.shape, NO_CLASS, np.int8)
    free = valid.copy()

    def assign(cls: int, cond: np.ndarray) -> None:
        hit = free & cond
        out[hit] = cls
        free[hit] = False

    snow = (mndwi > 0.4) & (b8 > 0.11) & (b3 > 0.2)
    assign(8, snow)
    free &= ~(b2 > 0.25)  # clouds stay unlabelled
    assign(0, ((mndwi > 0.2) | (ndwi > 0.1)) & (ndvi < 0.1) & (b11 < 0.05))
    assign(1, (ndvi > 0.55) & (b4 < 0.05) & (b11 < 0.18))
    assign(6, (ndvi < 0.45) & (b4 < 0.95 * b2) & (b12 > 0.69 * b11) & (b11 < 0.25) & (b2 > 0.08) & (mndwi < -0.15))
    assign(4, (ndvi > 0.6) & (b8 > 0.40))
    assign(2, ndvi > 0.3)
    assign(3, (ndvi > 0.1) & (b11 < 0.08))
    assign(5, ndvi > 0.15)
    assign(7, (ndvi <= 0.15) & (ndbi > 0) & (b4 > b2))
    assign(6, (ndbi > -0.3) & (b4 <= 1.1 * b2) & (b2 > 0.08))
    return out


def spectral_labels(x: np.ndarray, bands: Sequence[str] = S2_L1C, threshold: float = 0.05,
                    scale: float = 10000.0, offset: float = 0.0) -> np.ndarray:
    """Weak multi-hot labels (..., 9) of image patches (..., C, H, W) from the spectral rules."""
    return labels_from_class_map(spectral_classes(x, bands, scale, offset), threshold)


#: Named label rules; ``train.pretrain --labels`` picks one for raster data.
RULES = {"spectral": spectral_classes}
