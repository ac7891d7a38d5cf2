"""Classifiers over frozen embeddings and pixel features: cosine kNN, logistic regression, nearest class
prototype, random forest and histogram gradient boosting.

- ``knn``: the weighted kNN of DINO / DINOv2 ``eval/knn.py`` (Caron et al. 2021, Oquab et al. 2023):
  cosine similarity on L2-normalised features, the ``k`` nearest training samples vote with
  weight ``exp(sim / T)``, batched top-k in torch. Defaults k = 20, T = 0.07.
- ``linear``: multinomial logistic regression (scikit-learn) on standardised features; prediction
  is a plain matrix product, so a saved model needs no scikit-learn object.
- ``prototype``: cosine similarity to each class's mean (normalised) embedding, softmax(sim / T).
- ``rf`` / ``hgb``: scikit-learn's ``RandomForestClassifier`` (the per-pixel baseline of the
  Semi-Automatic Classification Plugin and dzetsaka) and ``HistGradientBoostingClassifier``. Their
  fitted trees are serialised with skops (no pickle) and loaded back only when every type in the
  file is on :data:`TRUSTED_TYPES`.

Every classifier is a set of numpy arrays plus a few numbers, so it is saved without pickle: one
``.npz`` whose ``meta_json`` entry is a JSON document naming the method, its parameters, the class
names and colours, and the model and bands the embeddings came from (``save_classifier`` /
``load_classifier``), and whose ``sha256`` entry is a digest of that JSON and every array: a flipped
byte or a hand-edited band list is "damaged, train it again", never a map made with the wrong bands. Each
method is declared once, in :mod:`core.classify.methods` (name, parameters, the features it suits, where its
class lives); adding one is a class here (or anywhere) and one ``register_method``.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..errors import SoftConError
from ..io.atomic import atomic_path
from .features import FeatureSpec
from .methods import get_method, load

FORMAT_VERSION = 4  # 2: feature spec (groups, PCA, grid), rf and hgb; 3: SHA-256 digest of meta and arrays;
#                     4: every dimension + context, edge-aware upsampling
CHUNK = 65536  # rows per batched prediction: (CHUNK, N_train) similarities stay ~ a few hundred MB


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1, eps=1e-12)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Row norms (B, 1), at least 1e-12 (as ``F.normalize``)."""
    return torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)


class Classifier:
    """Base: ``fit(X, y)`` then ``predict_proba(X) -> (N, C)``; state is ``arrays`` + ``params``.

    ``method`` is the registered name (:mod:`core.classify.methods`), set by :func:`make_classifier`.
    """

    method: str = ""

    def __init__(self, n_classes: int, **params: Any):
        self.n_classes = int(n_classes)
        self.params: dict[str, Any] = dict(params)
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Classifier":  # pragma: no cover - abstract
        raise NotImplementedError

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | torch.Tensor, workers: int = 1) -> np.ndarray:
        """Class probabilities for embeddings ``x`` (N, D), in chunks, as float32 (N, C).

        ``workers``: threads for the tree methods (a map uses every core; cross-validation's small
        predictions use one); the others run on torch's threads. The result does not depend on it.
        """
        x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        out = np.empty((x.shape[0], self.n_classes), dtype=np.float32)
        for i in range(0, x.shape[0], CHUNK):
            out[i:i + CHUNK] = self._proba(x[i:i + CHUNK].float(), max(1, workers)).cpu().numpy()
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index (N,) of the highest probability."""
        return self.predict_proba(x).argmax(1)


def knn_index(x: np.ndarray | torch.Tensor, center: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training features for :func:`knn_vote`, L2-normalised, and their mean when ``center``.

    Centring (SimpleShot's CL2N, Wang et al. 2019) subtracts the training mean first: without it,
    features that share a large common component (untrained networks, non-negative band statistics)
    all look alike under cosine and the vote degenerates to the class priors. Queries subtract the
    same mean.
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    mean = x.mean(dim=0) if center else None
    return _normalize(x if mean is None else x - mean), mean


@torch.no_grad()
def knn_vote(index: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, k: int, temperature: float,
             n_classes: int | None = None) -> torch.Tensor:
    """Weighted kNN scores (B, C) of queries ``x`` (B, D) (DINO ``knn_classifier``, DINOv2 ``eval/knn.py``).

    ``index`` is from :func:`knn_index` (queries already centred with its mean); ``targets`` are class
    indices (N,) (then ``n_classes`` is needed) or one-/multi-hot rows (N, C). The ``k`` most similar
    training samples vote with weight exp(cosine / ``temperature``); rows sum to 1 for single labels.
    """
    k = min(k, index.shape[0])
    # Rank by raw dot products and divide only the k winners by |x|: the same neighbours as with
    # normalised x (|x| > 0 is a per-row constant) without a normalised copy of the batch.
    top_dot, top_idx = (x @ index.T).topk(k, dim=1)  # (B, k)
    top_sim = top_dot / _norm(x)
    weights = (top_sim / temperature).exp()
    if targets.ndim == 1:
        votes = torch.zeros(x.shape[0], int(n_classes))
        votes.scatter_add_(1, targets[top_idx], weights)  # sum of exp(sim/T) per class
        return votes / votes.sum(1, keepdim=True).clamp_min(1e-12)
    votes = (weights.unsqueeze(-1) * targets[top_idx]).sum(dim=1)  # (B, C)
    return votes / weights.sum(dim=1, keepdim=True)


class KNNClassifier(Classifier):
    """Cosine kNN with temperature-weighted voting (DINO ``knn_classifier``); ``center``: see :func:`knn_index`."""

    def __init__(self, n_classes: int, k: int = 20, temperature: float = 0.07, center: bool = False, **_: Any):
        super().__init__(n_classes, k=int(k), temperature=float(temperature))
        if center:  # recorded only when on, so classifiers saved without it read back the same
            self.params["center"] = True

    def fit(self, x: np.ndarray, y: np.ndarray) -> "KNNClassifier":
        index, mean = knn_index(x, self.params.get("center", False))
        self.arrays = {"train_features": index.numpy(), "train_labels": np.asarray(y, dtype=np.int64)}
        if mean is not None:
            self.arrays["mean"] = mean.numpy()
        return self

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        if "mean" in self.arrays:
            x = x - torch.from_numpy(self.arrays["mean"])
        return knn_vote(torch.from_numpy(self.arrays["train_features"]), torch.from_numpy(self.arrays["train_labels"]),
                        x, self.params["k"], self.params["temperature"], self.n_classes)


class LinearClassifier(Classifier):
    """Multinomial logistic regression on standardised features (scikit-learn ``LogisticRegression``)."""

    def __init__(self, n_classes: int, C: float = 1.0, max_iter: int = 500, **_: Any):
        super().__init__(n_classes, C=float(C), max_iter=int(max_iter))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LinearClassifier":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        scaler = StandardScaler().fit(x)
        coef = np.zeros((self.n_classes, x.shape[1]), dtype=np.float32)
        bias = np.full(self.n_classes, -np.inf, dtype=np.float32)
        present = np.unique(y)
        if len(present) == 1:  # a CV fold of one class: that class, everywhere (lbfgs needs two)
            bias[present[0]] = 0.0
            self.arrays = {"mean": scaler.mean_.astype(np.float32), "scale": scaler.scale_.astype(np.float32),
                           "coef": coef, "intercept": bias}
            return self
        lr = LogisticRegression(C=self.params["C"], max_iter=self.params["max_iter"])
        # One BLAS thread: these problems are small (samples x D), and threaded BLAS on a busy machine
        # was measured 10-20x slower (oversubscription); lbfgs itself is sequential.
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr.fit(scaler.transform(x), y)
        # Expand to all n_classes (a CV fold may lack some): absent classes get -inf logits.
        if len(lr.classes_) == 2:  # sklearn stores one row: p1 = sigmoid(z) = softmax([-z/2, z/2])
            rows = np.stack([-lr.coef_[0] / 2, lr.coef_[0] / 2])
            ints = np.array([-lr.intercept_[0] / 2, lr.intercept_[0] / 2])
        else:
            rows, ints = lr.coef_, lr.intercept_
        coef[lr.classes_] = rows
        bias[lr.classes_] = ints
        self.arrays = {"mean": scaler.mean_.astype(np.float32), "scale": scaler.scale_.astype(np.float32),
                       "coef": coef, "intercept": bias}
        return self

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Class scores as ``x @ w.T + b``: w (C, D), b (C,), the standardisation folded into the weights
        (-inf bias for classes absent from the training data)."""
        a = self.arrays
        w = a["coef"] / a["scale"]
        return w.astype(np.float32), (a["intercept"] - w @ a["mean"]).astype(np.float32)

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        w, b = (torch.from_numpy(v) for v in self.affine())
        return torch.softmax(x @ w.T + b, dim=1)


class PrototypeClassifier(Classifier):
    """Nearest class prototype: softmax over cosine similarity to each class's mean embedding / T."""

    def __init__(self, n_classes: int, temperature: float = 0.07, **_: Any):
        super().__init__(n_classes, temperature=float(temperature))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "PrototypeClassifier":
        feats = _normalize(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        protos = torch.zeros(self.n_classes, feats.shape[1])
        protos.index_add_(0, y, feats)
        present = torch.bincount(y, minlength=self.n_classes) > 0
        self.arrays = {"prototypes": _normalize(protos).numpy(), "present": present.numpy()}
        return self

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        sim = (x @ torch.from_numpy(self.arrays["prototypes"]).T) / _norm(x)  # (B, C) cosine
        sim = sim.masked_fill(~torch.from_numpy(self.arrays["present"]), float("-inf"))
        return torch.softmax(sim / self.params["temperature"], dim=1)


#: The only types a saved forest may contain besides numpy/builtins (checked before skops loads it).
TRUSTED_TYPES = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.link.Interval",
    "numpy.random._pcg64.PCG64",
    "numpy.random._generator.Generator",
    "numpy.random.mtrand.RandomState",
    "collections.OrderedDict",
)


class _SklearnClassifier(Classifier):
    """A scikit-learn estimator fitted on the present classes, stored as skops bytes in ``arrays["skops"]``."""

    def _estimator(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_SklearnClassifier":
        with threadpool_limits(limits=1):  # small problems; threads only fight over a busy CPU
            est = self._estimator().fit(np.asarray(x, np.float32), np.asarray(y, np.int64))
        self._est = est
        self.arrays = {"skops": np.frombuffer(sio.dumps(est), np.uint8)}
        return self

    @property
    def estimator(self) -> Any:
        est = getattr(self, "_est", None)
        if est is None:
            data = self.arrays["skops"].tobytes()
            try:
                untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
            except Exception as e:  # noqa: BLE001 - anything skops cannot parse is a damaged file
                raise SoftConError(f"The saved {self.method} classifier is damaged ({e}); train it again.") from None
            if untrusted:
                raise SoftConError(f"The saved {self.method} classifier holds types this tool does not load "
                                   f"({', '.join(untrusted)}); train it again with this version.")
            est = sio.loads(data, trusted=list(TRUSTED_TYPES))
            if type(est).__name__ != self._estimator().__class__.__name__:
                raise SoftConError(f"The saved {self.method} classifier holds a {type(est).__name__}, not a "
                                   f"{self._estimator().__class__.__name__}; train it again.")
            self._est = est
        return est

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        est = self.estimator
        out = torch.zeros(x.shape[0], self.n_classes)
        if len(est.classes_) == 1:  # fitted on one class (a CV fold): that class, everywhere
            out[:, int(est.classes_[0])] = 1.0
            return out
        with threadpool_limits(limits=workers):  # HGB predicts on OpenMP threads, by rows
            p = self._estimator_proba(est, np.ascontiguousarray(x.numpy(), np.float32), workers)
        out[:, torch.as_tensor(est.classes_)] = torch.as_tensor(p, dtype=torch.float32)
        return out

    def _estimator_proba(self, est: Any, x: np.ndarray, workers: int) -> np.ndarray:
        return est.predict_proba(x)


class ForestClassifier(_SklearnClassifier):
    """Random forest (Breiman 2001): the per-pixel classifier GIS analysts compare with."""

    def __init__(self, n_classes: int, n_estimators: int = 100, min_samples_leaf: int = 1,
                 max_features: float | str = 0.5, seed: int = 0, **_: Any):
        super().__init__(n_classes, n_estimators=int(n_estimators), min_samples_leaf=int(min_samples_leaf),
                         max_features=max_features, seed=int(seed))

    def _estimator_proba(self, est: Any, x: np.ndarray, workers: int) -> np.ndarray:
        """scikit-learn's ``predict_proba``, with the rows split over ``workers`` threads (tree traversal
        releases the GIL) and each row's trees summed in the same order, so the result is the same (to the
        bit) whatever the number of threads. scikit-learn itself splits the trees over threads and sums
        their shares as they finish, which makes ties between classes depend on timing."""
        tables = [t.tree_.value[:, 0, :len(est.classes_)] for t in est.estimators_]

        def rows(sl: slice) -> np.ndarray:
            acc = np.zeros((sl.stop - sl.start, len(est.classes_)), np.float64)
            xs = x[sl]
            for tree, table in zip(est.estimators_, tables):
                acc += table[tree.tree_.apply(xs)]
            return acc / len(est.estimators_)

        if workers <= 1 or len(x) < 2 * workers:
            return rows(slice(0, len(x)))
        bounds = np.linspace(0, len(x), workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            return np.concatenate(list(pool.map(rows, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])])))

    def _estimator(self) -> Any:
        p = self.params
        # half the features per split (not sqrt): with embedding components beside the bands, sqrt mostly
        # drew trees that split on spectra alone; measured on the demo (galileo_nano_s2, emb+pixel):
        # blocked CV 95.8 % vs 95.1 %, offshore sea mapped as sea 89 % vs 86 %; bands alone unchanged
        return RandomForestClassifier(p["n_estimators"], min_samples_leaf=p["min_samples_leaf"],
                                      max_features=p["max_features"], random_state=p["seed"], n_jobs=1)


class BoostingClassifier(_SklearnClassifier):
    """Histogram gradient boosting (scikit-learn's LightGBM-style trees)."""

    def __init__(self, n_classes: int, max_iter: int = 100, learning_rate: float = 0.1,
                 min_samples_leaf: int = 5, seed: int = 0, **_: Any):
        super().__init__(n_classes, max_iter=int(max_iter), learning_rate=float(learning_rate),
                         min_samples_leaf=int(min_samples_leaf), seed=int(seed))

    def _estimator(self) -> Any:
        p = self.params
        # few training pixels: leaves of 5 (the default 20 leaves most trees a stump), no early stopping
        return HistGradientBoostingClassifier(max_iter=p["max_iter"], learning_rate=p["learning_rate"],
                                              min_samples_leaf=p["min_samples_leaf"], early_stopping=False,
                                              random_state=p["seed"])


def make_classifier(method: str, n_classes: int, features: FeatureSpec | None = None, **params: Any) -> Classifier:
    """An unfitted classifier of a registered ``method`` (:data:`core.classify.methods.METHODS`).

    ``features``: the spec of the columns it will be fitted on. A method that needs feature groups (``fusion``:
    ``Method.needs``) is refused without them, and learns here, from the spec and nowhere else, how many trailing
    columns are the pixel's (``pixel_features``, then saved with it).
    """
    declared = get_method(method)
    if declared.needs:
        declared.check_groups(features.groups if features is not None else ())
        params["pixel_features"] = features.pixel_dim
    clf = load(method)(n_classes, **params)
    clf.method = method
    return clf


@dataclass
class SavedClassifier:
    """A fitted classifier with what it needs to be re-applied: model, bands, classes, colours."""

    classifier: Classifier
    class_names: list[str]
    colors: list[tuple[int, int, int]]
    embedding: dict[str, Any] = field(default_factory=dict)  # model, bands, mode, stride, dim, weights, ...
    features: Any = None  # core.classify.features.FeatureSpec; None: embeddings on their own grid (format 1)
    checked: bool = True  # False: read from a file older than format 3, which carries no digest

    @property
    def model(self) -> str | None:
        return self.embedding.get("model")


def _digest(meta_json: str, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the JSON meta and of every array (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(meta_json.encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_classifier(saved: SavedClassifier, path: str | Path) -> Path:
    """Write a classifier as one ``.npz`` (arrays, ``meta_json`` and their ``sha256``), atomically, without pickle."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    clf = saved.classifier
    meta = {
        "format": "softcon-classifier",
        "version": FORMAT_VERSION,
        "method": clf.method,
        "params": clf.params,
        "n_classes": clf.n_classes,
        "class_names": list(saved.class_names),
        "colors": [list(map(int, c)) for c in saved.colors],
        "embedding": saved.embedding,
    }
    arrays = dict(clf.arrays)
    if saved.features is not None:
        meta["features"] = saved.features.meta()
        arrays.update(saved.features.arrays())
    text = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, meta_json=np.array(text), sha256=np.array(_digest(text, arrays)), **arrays)
    return path


def load_classifier(path: str | Path) -> SavedClassifier:
    """Read a classifier written by :func:`save_classifier` (``allow_pickle=False``), its digest checked.

    Raises:
        SoftConError: missing, not a classifier, damaged (unreadable, or its digest does not match), or newer.
    """
    path = Path(path)
    if not path.is_file():
        raise SoftConError(f"Classifier file {path} not found; train one with `python -m core.classify ... "
                           f"--save-classifier FILE`.")
    damaged = (f"The classifier {path} is damaged or was edited; train it again (python -m core.classify ... "
               f"--save-classifier)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta_json" not in z.files:
                raise SoftConError(f"{path} is not a SoftCon classifier file (no meta_json entry).")
            text = str(z["meta_json"])
            digest = str(z["sha256"]) if "sha256" in z.files else None
            arrays = {k: z[k] for k in z.files if k not in ("meta_json", "sha256")}
        meta = json.loads(text)
    except SoftConError:
        raise
    except Exception as e:  # noqa: BLE001 - zlib, zip, npy and JSON errors alike: the bytes are not what was saved
        raise SoftConError(f"{damaged} ({type(e).__name__}: {str(e)[:120]}).") from None
    if not isinstance(meta, dict) or meta.get("format") != "softcon-classifier":
        raise SoftConError(f"{path} is not a SoftCon classifier file (no 'softcon-classifier' header).")
    version = meta.get("version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SoftConError(f"{path} was written by a newer version (format {version}); update this software.")
    if version >= 3 and digest != _digest(text, arrays):
        raise SoftConError(f"{damaged}: its contents do not match the checksum saved with it.")
    try:
        spec = FeatureSpec.load(meta["features"], arrays) if meta.get("features") else None
        clf = make_classifier(meta["method"], meta["n_classes"], spec, **meta["params"])
        clf.arrays = {k: v for k, v in arrays.items() if not k.startswith("feat_")}
        return SavedClassifier(clf, meta["class_names"], [tuple(c) for c in meta["colors"]],
                               meta.get("embedding", {}), spec, checked=version >= 3)
    except SoftConError:
        raise
    except Exception as e:  # noqa: BLE001 - an older file without a digest, edited by hand
        raise SoftConError(f"{damaged} ({type(e).__name__}: {str(e)[:120]}).") from None
