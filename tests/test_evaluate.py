"""Choosing the map's method and saying what its accuracy is worth: paired selection, CV blocks from the variogram,
how clustered the samples are, the minimum mapping unit (fast; the end-to-end map is in test_classify.py)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.classify.cleanup import sieve_class_raster
from core.classify.selection import better, pick
from core.classify.spatial import autocorrelation_range, sample_spread
from core.classify.statement import caveat, headline
from core.classify.validation import wilson


def _row(method, right, n=74, kappa=None):
    correct = np.zeros(n, bool)
    correct[:right] = True
    return {"features": "emb+pixel", "method": method, "overall_accuracy": 0.9, "kappa": 0.9, "macro_f1": 0.9,
            "validation": {"overall_accuracy": right / n, "kappa": kappa if kappa is not None else right / n},
            "_correct_val": correct}


def test_a_preferred_method_stands_in_unless_the_samples_show_it_is_worse():
    linear, rf = _row("linear", 73), _row("rf", 74)
    assert pick([linear, rf]) is linear  # one point apart: no evidence
    worse = _row("linear", 62)
    assert pick([worse, rf]) is rf  # twelve points apart on the same samples: significant
    assert better(rf["_correct_val"], worse["_correct_val"]) and not better(worse["_correct_val"], rf["_correct_val"])
    same = np.ones(10, bool)
    assert not better(same, same)


def test_without_validation_the_cv_predictions_decide():
    a = {"features": "pixel", "method": "linear", "overall_accuracy": 0.9, "kappa": 0.88, "macro_f1": 0.9,
         "_correct_cv": np.r_[np.ones(129, bool), np.zeros(14, bool)]}
    b = {**a, "method": "rf", "kappa": 0.9, "_correct_cv": np.r_[np.ones(131, bool), np.zeros(12, bool)]}
    assert pick([a, b]) is a
    b["_correct_cv"] = np.ones(143, bool)
    assert pick([a, b]) is b


def _embedding(path, values, res=80.0):
    d, h, w = values.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=d, dtype="float32", nodata=np.nan,
                       crs="EPSG:32618", transform=rasterio.Affine(res, 0, 400000, 0, -res, 4200000)) as ds:
        ds.write(values.astype(np.float32))
    return path


@pytest.mark.parametrize("patch", [4, 12])
def test_block_size_follows_the_range_of_spatial_autocorrelation(tmp_path, patch):
    """A mosaic of random patches of ``patch`` tokens: the features decorrelate over about one patch."""
    rng = np.random.default_rng(patch)
    cells = rng.normal(size=(8, 120 // patch + 1, 120 // patch + 1))
    emb = np.repeat(np.repeat(cells, patch, axis=1), patch, axis=2)[:, :120, :120]
    with rasterio.open(_embedding(tmp_path / "e.tif", emb)) as ds:
        rng_m = autocorrelation_range(ds, 80.0)["range_m"]
    assert 0.6 * patch * 80 <= rng_m <= 1.3 * patch * 80, rng_m


def test_spread_says_how_clustered_the_samples_are_and_how_much_map_they_miss(tmp_path):
    with rasterio.open(_embedding(tmp_path / "e.tif", np.ones((2, 50, 50)))) as ds:  # 4 km x 4 km
        xy = np.array([[400100.0, 4199900.0], [400150.0, 4199900.0], [400100.0, 4199800.0]])
        out = sample_spread(xy, np.arange(3), ds, 1000.0)
    assert out["n"] == 3 and out["nearest_neighbour_m"]["min"] == 50 and out["nearest_neighbour_m"]["max"] == 100
    assert 0.85 < out["map_share_beyond_block"] < 0.97  # a quarter disc of 1 km radius in a 4 km square: 4.9 %


def test_sieve_removes_patches_below_the_minimum_mapping_unit_and_keeps_nodata(tmp_path):
    cls = np.full((40, 40), 2, np.uint8)
    cls[10:12, 10:12] = 1  # 4 px: kept with an MMU of 4
    cls[30, 30] = 3  # 1 px: filled
    cls[0:3, 0:3] = 0  # nodata
    path = tmp_path / "classes.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:32618", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as ds:
        ds.write(cls[None])
        ds.write_colormap(1, {0: (0, 0, 0, 0), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255)})
    counts, small, changed = sieve_class_raster(path, 4, 3, 2)
    with rasterio.open(path) as ds:
        out = ds.read(1)
        assert ds.colormap(1)[1][:3] == (255, 0, 0)
    assert out[30, 30] == 2 and (out[10:12, 10:12] == 1).all() and (out[0:3, 0:3] == 0).all()
    assert changed == 1 and counts.tolist() == [9, 4, 1600 - 9 - 4, 0] and small.shape == (20, 20)


def test_wilson_interval_is_sound_at_the_edges():
    lo, hi = wilson(1.0, 74)
    assert hi == pytest.approx(1.0) and 0.93 < lo < 0.96
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.404, abs=0.002) and hi == pytest.approx(0.596, abs=0.002)


def test_reports_headline_validation_and_otherwise_say_what_the_cv_figure_is_worth():
    cv = {"overall_accuracy": 0.97, "kappa": 0.96, "macro_f1": 0.97, "folds": 5, "n_validated": 143,
          "block_size_m": 2080.0, "n_blocks": 30}
    spatial = {"block": {"block_m": 2080.0, "source": "variogram"},
               "samples": {"n": 143, "nearest_neighbour_m": {"min": 20, "q25": 150, "median": 330, "q75": 600,
                                                             "max": 2000}, "map_share_beyond_block": 0.31,
                           "block_m": 2080.0}}
    report = {"cross_validation": cv, "spatial": spatial}
    text = " ".join(headline(report))
    assert text.startswith("Spatially blocked 5-fold") and "range of the embedding's spatial autocorrelation" in text
    assert "330 m" in caveat(report) and "31 % of the map" in caveat(report) and "--validation" in caveat(report)
    report["validation"] = {"overall_accuracy": 0.986, "kappa": 0.98, "macro_f1": 0.98, "n_validated": 74,
                            "n_features": 74, "geometry": "point", "path": "/x/points.geojson",
                            "accuracy_ci95": [0.927, 0.998]}
    report["selected_by"] = "validation"
    first = headline(report)[0]
    assert first.startswith("Accuracy on 74 independent validation pixels") and "92.7-99.8" in first
    assert "chosen on these samples" in first and caveat(report) is None
