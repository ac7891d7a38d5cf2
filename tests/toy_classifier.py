"""A classifier the project does not ship, registered in one call: the registry's promise, tested."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch

from core.classify import methods
from core.classify.classifiers import Classifier
from core.classify.methods import Method, Param


class CentroidClassifier(Classifier):
    """Nearest class mean in standardised Euclidean distance, softmax(-d^2 / spread)."""

    def __init__(self, n_classes: int, spread: float = 1.0, **_: Any):
        super().__init__(n_classes, spread=float(spread))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "CentroidClassifier":
        x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
        means = np.zeros((self.n_classes, x.shape[1]), np.float32)
        for c in np.unique(y):
            means[c] = x[y == c].mean(0)
        self.arrays = {"means": means, "present": np.bincount(y, minlength=self.n_classes) > 0,
                       "scale": x.std(0) + 1e-6}
        return self

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        a = {k: torch.from_numpy(v) for k, v in self.arrays.items()}
        d = torch.cdist(x / a["scale"], a["means"] / a["scale"]) ** 2
        return torch.softmax((-d / self.params["spread"]).masked_fill(~a["present"], float("-inf")), dim=1)


SPREAD = Param("spread", 1.0, "Spread (centroid)", "softmax scale of the centroid distances", low=0.0, low_open=True)
CENTROID = Method("centroid", "Nearest centroid", "nearest class mean, standardised Euclidean distance",
                  CentroidClassifier, (SPREAD,))


@contextlib.contextmanager
def registered(registry: Any = methods) -> Iterator[Method]:
    """The toy method registered (one call), and the registry as it was afterwards. ``registry``: the methods
    module to register in (the QGIS plugin runs its own copy of core, ``softcon_qgis.core``)."""
    before = dict(registry.METHODS)
    try:
        yield registry.register_method(CENTROID)
    finally:
        registry.METHODS.clear()
        registry.METHODS.update(before)
