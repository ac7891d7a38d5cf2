"""Pieces of the 10 m map: bilinear upsampling, mirrored border windows, forests saved without pickle,
classifier/embedding mismatch checks (fast; the end-to-end map is in test_classify.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.classify.compat import check_compatible
from core.errors import SoftConError
from core.classify.features import FeatureSpec, pixel_features, upsample_rows
from core.classify.spec import parse_features
from core.classify.classifiers import SavedClassifier, load_classifier, make_classifier, save_classifier
from core.embed.windows import reflect_outside


def test_upsampling_is_bilinear_and_clamped_at_the_edges():
    rng = np.random.default_rng(0)
    tok = rng.normal(size=(7, 9, 5)).astype(np.float32)  # (rows, cols, d)
    cell = 8
    ref = torch.nn.functional.interpolate(torch.from_numpy(tok).permute(2, 0, 1)[None], scale_factor=cell,
                                          mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    # the whole grid at once, and a strip of rows read from the token rows it needs
    full = upsample_rows(tok, 0, np.arange(7 * cell), np.arange(9 * cell), cell, 7, 9)
    np.testing.assert_allclose(full, ref, atol=1e-5)
    strip = upsample_rows(tok[2:5], 2, np.arange(20, 33), np.arange(9 * cell), cell, 7, 9)
    np.testing.assert_allclose(strip, ref[20:33], atol=1e-5)


def test_upsampling_skips_nodata_tokens():
    tok = np.ones((2, 2, 3), np.float32)
    tok[0, 0] = np.nan
    out = upsample_rows(tok, 0, np.arange(16), np.arange(16), 8, 2, 2)
    ok = np.ones((16, 16), bool)
    ok[:4, :4] = False  # the quarter of the nodata token that has no other neighbour
    assert np.array_equal(np.isfinite(out[..., 0]), ok) and np.allclose(out[ok], 1)
    tok[:] = np.nan
    assert np.isnan(upsample_rows(tok, 0, np.arange(16), np.arange(16), 8, 2, 2)).all()


def test_pixel_features_are_reflectance_and_indices():
    spec = FeatureSpec(("pixel",), bands=["B3", "B4", "B8", "B11"], indices=["NDVI", "NDWI", "MNDWI", "NDBI"])
    raw = np.array([[1000], [500], [3000], [2000]], np.float32)  # B3, B4, B8, B11 as DN
    f = pixel_features(raw, spec)[0]
    np.testing.assert_allclose(f[:4], [0.1, 0.05, 0.3, 0.2])
    np.testing.assert_allclose(f[4:], [(0.3 - 0.05) / 0.35, (0.1 - 0.3) / 0.4, (0.1 - 0.2) / 0.3, (0.2 - 0.3) / 0.5],
                               rtol=1e-5)
    assert parse_features("pixel+emb") == ("emb", "pixel") and parse_features("auto") is None
    with pytest.raises(SoftConError, match="Unknown feature group"):
        parse_features("emb+texture")


def test_border_windows_see_the_raster_mirrored():
    rng = np.random.default_rng(1)
    raster = rng.integers(1, 100, size=(2, 10, 12))
    top, left, n, w = -3, -4, 8, 20  # a strip reaching over the top, left and right edges
    data = np.zeros((2, n, w), raster.dtype)
    valid = np.zeros((n, w), bool)
    data[:, 3:, 4:16] = raster[:, :5]
    valid[3:, 4:16] = True
    out, v = reflect_outside(data, valid, top, left, 10, 12)
    ref = np.pad(raster, ((0, 0), (3, 3), (4, 8)), mode="symmetric")[:, :n, :w]
    assert np.array_equal(out, ref) and v.all()
    inside = reflect_outside(data[:, 3:, 4:16], valid[3:, 4:16], 0, 0, 10, 12)
    assert inside[0] is not None and np.array_equal(inside[0], raster[:, :5])


@pytest.mark.parametrize("method", ["rf", "hgb"])
def test_forests_round_trip_without_pickle(tmp_path, method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0.5)  # classes 0..3, class 4 never seen
    clf = make_classifier(method, 5).fit(x, y)
    spec = FeatureSpec(("pixel",), bands=["B2", "B3", "B4", "B8"], indices=["NDVI"])
    path = save_classifier(SavedClassifier(clf, list("abcde"), [(0, 0, 0)] * 5, {"model": "m"}, spec), tmp_path / "c")
    back = load_classifier(path)
    p = back.classifier.predict_proba(x)
    np.testing.assert_allclose(p, clf.predict_proba(x), atol=1e-6)
    assert p.shape == (120, 5) and (p[:, 4] == 0).all() and (p.argmax(1) == y).mean() > 0.9
    assert back.features.groups == ("pixel",) and back.features.indices == ["NDVI"]
    with np.load(path, allow_pickle=False) as z:  # nothing in the file needs pickle
        assert {k for k in z.files} == {"meta_json", "skops"}


class Rogue:
    """A type no classifier file may hold."""


def test_forest_file_with_untrusted_or_wrong_types_is_refused(tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    clf = make_classifier("rf", 2).fit(np.eye(4), [0, 1, 0, 1])
    for obj, message in ((Rogue(), "holds types this tool does not load.*Rogue"),
                         (LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]), "holds a LogisticRegression, not")):
        clf.arrays = {"skops": np.frombuffer(sio.dumps(obj), np.uint8)}
        path = save_classifier(SavedClassifier(clf, ["a", "b"], [(0, 0, 0)] * 2), tmp_path / "rogue.npz")
        with pytest.raises(SoftConError, match=message):
            load_classifier(path).classifier.predict_proba(np.eye(4))


def _saved(**embedding):
    spec = FeatureSpec(("emb", "pixel"), "pixel", ["B2"], [], 0.0, np.zeros(3), np.eye(3))
    meta = {"model": "m1", "bands": ["B2", "B3"], "mode": "dense", "stride": 32, "dim": 3,
            "weights_id": "sha256:abc", **embedding}
    return SavedClassifier(make_classifier("linear", 2), ["a", "b"], [(0, 0, 0)] * 2, meta, spec)


@pytest.mark.parametrize("info, wid, asked, message", [
    ({"model": "m2"}, "", {}, "model 'm1' embeddings but x holds model 'm2'"),
    ({}, "", {"model": "m2"}, "model 'm1', not 'm2'"),
    ({"mode": "pooled"}, "", {}, "mode 'dense' embeddings but x holds mode 'pooled'"),
    ({}, "", {"mode": "pooled"}, "--mode pooled cannot apply it"),
    ({"bands": ["VV", "VH"]}, "", {}, "bands B2,B3 but x gives bands VV,VH"),
    ({}, "random-init", {}, "weights sha256:abc but x comes from a random-init encoder"),
    ({"dim": 5}, "", {}, "3-dimensional embeddings but x has 5"),
    ({}, "", {"features": ("pixel",)}, "feature groups emb\\+pixel, not pixel"),
    ({}, "", {"grid": "embedding"}, "pixel grid, not the embedding grid"),
])
def test_mismatched_classifier_is_refused_with_the_reason(info, wid, asked, message):
    base = {"model": "m1", "bands": ["B2", "B3"], "mode": "dense", "stride": 32, "dim": 3}
    with pytest.raises(SoftConError, match=message):
        check_compatible(_saved(), {**base, **info}, wid, what="x", **asked)
    check_compatible(_saved(), base, "sha256:abc", what="x")  # a match passes
    check_compatible(_saved(weights_id=""), base, "random-init", what="x")  # not recorded: not checked
