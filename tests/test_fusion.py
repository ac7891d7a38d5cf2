"""The fusion classifier (core.classify.fusion): a weighted product of the embedding's and the pixel's experts."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core.classify.classifiers import SavedClassifier, load_classifier, make_classifier, save_classifier
from core.classify.features import FeatureSpec
from core.classify.fusion import FLOOR
from core.classify.pixelmap import linear_head, softmax
from core.classify.report import cross_validate, TrainingSet
from core.classify.selection import candidates
from core.classify.spec import FitSpec
from core.errors import SoftConError
from core.geo.samples import PixelSamples

EMB, PIX = 8, ["B2", "B3", "B4", "B8"]
FIX = r"use --features emb\+pixel"


def _spec(groups=("emb", "pixel")) -> FeatureSpec:
    """Features of 8 embedding columns and, with ``pixel``, 4 trailing band columns."""
    return FeatureSpec(tuple(groups), bands=list(PIX) if "pixel" in groups else [], emb_dim=EMB)


def _data(seed: int = 0, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: the embedding columns separate 0 from {1, 2}, the pixel columns 1 from 2."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    emb = rng.normal(size=(n, EMB)) + 1.5 * (y == 0)[:, None]
    pix = rng.normal(size=(n, len(PIX))) + 1.5 * (y == 1)[:, None]
    return np.concatenate([emb, pix], 1).astype(np.float32), y


def test_probabilities_are_the_normalised_weighted_product_of_the_experts():
    x, y = _data()
    clf = make_classifier("fusion", 3, _spec(), pixel_weight=0.7, pixel_method="rf").fit(x, y)
    assert clf.params["pixel_features"] == len(PIX)
    # the experts, fitted on their own columns by themselves: the split is where the spec says
    pe = make_classifier("linear", 3).fit(x[:, :EMB], y).predict_proba(x[:, :EMB]).astype(np.float64)
    pp = make_classifier("rf", 3, n_estimators=clf.params["n_estimators"], min_samples_leaf=clf.params[
        "min_samples_leaf"], seed=0).fit(x[:, EMB:], y).predict_proba(x[:, EMB:]).astype(np.float64)
    want = np.maximum(pe, FLOOR) * np.maximum(pp, FLOOR) ** 0.7
    np.testing.assert_allclose(clf.predict_proba(x), want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    alone = make_classifier("fusion", 3, _spec(), pixel_weight=0.0).fit(x, y).predict_proba(x)
    floored = np.maximum(pe, FLOOR)
    np.testing.assert_allclose(alone, floored / floored.sum(1, keepdims=True), atol=1e-6)  # a = 0: the embedding's


def test_a_class_missing_from_training_stays_at_zero():
    x, y = _data()
    keep = y != 1
    p = make_classifier("fusion", 3, _spec()).fit(x[keep], y[keep]).predict_proba(x)
    assert np.all(p[:, 1] == 0) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("pixel_method", ["rf", "linear"])
def test_save_load_round_trip_gives_identical_probabilities(tmp_path, pixel_method):
    x, y = _data(1)
    clf = make_classifier("fusion", 3, _spec(), pixel_method=pixel_method, seed=3).fit(x, y)
    path = save_classifier(SavedClassifier(clf, list("abc"), [(1, 2, 3)] * 3, {}, _spec()), tmp_path / "f.npz")
    assert all(not n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist())
    back = load_classifier(path).classifier
    assert back.method == "fusion" and back.params == clf.params
    np.testing.assert_array_equal(back.predict_proba(x), clf.predict_proba(x))


def test_features_without_both_groups_are_refused_with_the_fix():
    with pytest.raises(SoftConError, match=f"Method fusion needs .*{FIX}"):
        make_classifier("fusion", 3, _spec(("emb",)))
    with pytest.raises(SoftConError, match=FIX):
        make_classifier("fusion", 3)  # no spec: the split is never guessed from the data
    with pytest.raises(SoftConError, match=FIX):
        FitSpec(method="fusion", features="pixel")  # before anything is embedded
    with pytest.raises(SoftConError, match=FIX):
        candidates("fusion", ["emb"])  # a raster without the pixel's bands


def test_auto_tries_fusion_on_emb_plus_pixel_only():
    pairs = candidates("auto", ["emb+pixel", "emb", "pixel"])
    assert [fs for fs, m in pairs if m == "fusion"] == ["emb+pixel"]
    assert candidates("fusion", ["emb+pixel", "emb", "pixel"]) == [("emb+pixel", "fusion")]


def test_blocked_cross_validation_fits_the_fusion_on_the_spec_it_is_given():
    x, y = _data(2, 60)
    xy = np.random.default_rng(2).uniform(0, 10000, (len(y), 2))
    pixels = PixelSamples(np.zeros_like(y), np.zeros_like(y), y, np.arange(len(y)), list("abc"), len(y))
    res = cross_validate(TrainingSet(pixels, x, xy, _spec()), "fusion", {"pixel_weight": 0.5}, 3, 1000.0)
    assert res["folds"] == 3 and res["overall_accuracy"] > 0.6


def test_the_map_path_upsampling_class_scores_gives_the_classifiers_probabilities():
    """The map upsamples the embedding expert's class scores, not its features (pixelmap.linear_head)."""
    x, y = _data(4)
    clf = make_classifier("fusion", 3, _spec()).fit(x, y)
    w_emb, w_pix, b = linear_head(clf, _spec())
    assert w_emb.shape == (EMB, 3) and not w_pix.any()
    p_emb = softmax(x[:, :EMB] @ w_emb + x[:, EMB:] @ w_pix + b)
    np.testing.assert_allclose(clf.complete(p_emb, x[:, EMB:]), clf.predict_proba(x), atol=1e-5)
