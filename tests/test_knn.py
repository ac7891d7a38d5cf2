"""Classifiers over embeddings (core.classify.classifiers): DINO kNN voting, logistic regression, prototypes, saving."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
import torch

from core.errors import SoftConError
from core.classify.classifiers import SavedClassifier, load_classifier, make_classifier, save_classifier
from core.classify.features import FeatureSpec
from core.classify.methods import METHODS
from train.linear_probe import knn_scores


def _split(n_cols: int, n_pixel: int) -> FeatureSpec:
    """``n_cols`` feature columns, the last ``n_pixel`` the pixel's (``fusion`` needs the split; others ignore it)."""
    return FeatureSpec(("emb", "pixel"), bands=[f"b{i}" for i in range(n_pixel)], emb_dim=n_cols - n_pixel)


def _dino_reference(train, labels, test, k, t, n_classes):
    """DINO's knn_classifier written out in numpy, one test sample at a time."""
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    out = []
    for x in test:
        sim = tr @ (x / np.linalg.norm(x))
        idx = np.argsort(-sim)[:k]
        votes = np.zeros(n_classes)
        for i in idx:
            votes[labels[i]] += np.exp(sim[i] / t)
        out.append(votes / votes.sum())
    return np.array(out)


def test_knn_matches_dino_voting():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 24)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    test = rng.normal(size=(40, 24)).astype(np.float32)
    for k, t in ((20, 0.07), (5, 0.5), (1, 0.07)):
        clf = make_classifier("knn", 5, k=k, temperature=t).fit(train, labels)
        np.testing.assert_allclose(clf.predict_proba(test), _dino_reference(train, labels, test, k, t, 5), atol=1e-5)


def test_knn_k_larger_than_training_set():
    clf = make_classifier("knn", 2, k=20).fit(np.eye(3, 4, dtype=np.float32), np.array([0, 1, 1]))
    p = clf.predict_proba(np.eye(3, 4, dtype=np.float32))
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    assert p.argmax(1).tolist() == [0, 1, 1]


@pytest.fixture(scope="module")
def eurosat_features(eurosat_dir: Path):
    """Per-band mean and std (26 numbers) of each real EuroSAT-MS patch, with its class index."""
    files = sorted(eurosat_dir.glob("*/*.tif"))
    classes = sorted({f.parent.name for f in files})
    x, y = [], []
    for f in files:
        with rasterio.open(f) as ds:
            a = ds.read().reshape(13, -1).astype(np.float32) / 10000
        x.append(np.concatenate([a.mean(1), a.std(1)]))
        y.append(classes.index(f.parent.name))
    return np.array(x), np.array(y), classes


@pytest.mark.parametrize("method", list(METHODS))
def test_methods_separate_real_eurosat_classes(eurosat_features, method):
    """On real patches every method must beat chance (10 %) by far on held-out patches."""
    x, y, classes = eurosat_features
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for c in range(len(classes)):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, len(idx) // 3, replace=False)] = True
    clf = make_classifier(method, len(classes), _split(x.shape[1], 13), k=5).fit(x[~test], y[~test])  # means | stds
    acc = (clf.predict(x[test]) == y[test]).mean()
    assert acc > 0.45, f"{method}: {acc:.2f}"
    p = clf.predict_proba(x[test])
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)


def test_linear_and_prototype_handle_a_class_missing_from_training():
    """A CV fold may lack a class: it must get probability 0, not break the model."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 8)) + 5 * np.eye(8)[i] for i in (0, 2)]).astype(np.float32)
    y = np.repeat([0, 2], 30)
    for method in ("linear", "prototype", "knn"):
        p = make_classifier(method, 3).fit(x, y).predict_proba(x)
        assert np.all(p[:, 1] == 0), method
        assert (p.argmax(1) == y).mean() > 0.95, method


def test_linear_binary_matches_sklearn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    ours = make_classifier("linear", 2).fit(x, y).predict_proba(x)
    sc = StandardScaler().fit(x)
    ref = LogisticRegression(max_iter=500).fit(sc.transform(x), y).predict_proba(sc.transform(x))
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("method", list(METHODS))
def test_save_load_round_trip_without_pickle(tmp_path, method):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    clf = make_classifier(method, 3, _split(16, 4)).fit(x, y)
    meta = {"model": "softcon_tiny_s2", "bands": ["B1", "B2"], "mode": "dense", "stride": 32, "dim": 16}
    path = save_classifier(SavedClassifier(clf, ["a", "b", "c"], [(1, 2, 3), (4, 5, 6), (7, 8, 9)], meta,
                                           _split(16, 4)),
                           tmp_path / "clf.npz")
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        doc = json.loads(str(z["meta_json"]))
    assert doc["method"] == method and doc["class_names"] == ["a", "b", "c"]
    assert doc["embedding"]["model"] == "softcon_tiny_s2" and doc["embedding"]["bands"] == ["B1", "B2"]
    assert all(not n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist())
    back = load_classifier(path)
    assert back.class_names == ["a", "b", "c"] and back.model == "softcon_tiny_s2"
    np.testing.assert_array_equal(back.classifier.predict_proba(x), clf.predict_proba(x))
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_bad_classifier_inputs(tmp_path):
    with pytest.raises(SoftConError, match="Unknown method"):
        make_classifier("svm", 3)
    with pytest.raises(SoftConError, match="not found"):
        load_classifier(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(SoftConError, match="not a SoftCon classifier"):
        load_classifier(tmp_path / "other.npz")


def test_centred_knn_is_the_probes_knn_and_survives_saving(eurosat_features, tmp_path):
    """The map's kNN with center=True gives the linear probe's kNN scores on real EuroSAT features, is
    unchanged by a common offset (which moves the uncentred one), and reads back centred."""
    x, y, classes = eurosat_features
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.3
    clf = make_classifier("knn", len(classes), k=5, center=True).fit(x[~test], y[~test])
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y[~test]), len(classes)).float()
    probe = knn_scores(torch.from_numpy(x[~test]), onehot, torch.from_numpy(x[test]), k=5).numpy()
    np.testing.assert_allclose(clf.predict_proba(x[test]), probe, atol=1e-5)
    shifted = make_classifier("knn", len(classes), k=5, center=True).fit(x[~test] + 3, y[~test])
    np.testing.assert_allclose(shifted.predict_proba(x[test] + 3), probe, atol=1e-4)
    plain = make_classifier("knn", len(classes), k=5).fit(x[~test], y[~test]).predict_proba(x[test])
    assert np.abs(plain - probe).max() > 0.05  # centring changes the vote on these non-negative features
    saved = SavedClassifier(clf, classes, [(0, 0, 0)] * len(classes), {"model": "m"})
    back = load_classifier(save_classifier(saved, tmp_path / "c.npz")).classifier
    np.testing.assert_allclose(back.predict_proba(x[test]), probe, atol=1e-5)
