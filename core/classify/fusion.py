"""``fusion``: the embedding's classes with the pixel's edges, as a weighted product of two experts (Hinton 2002,
"Training products of experts by minimizing contrastive divergence", Neural Computation 14).

    p(c | x)  ∝  p_emb(c | x_emb) · p_pixel(c | x_pixel) ** a

``p_emb`` is logistic regression on the embedding columns (the token and its neighbourhood): it tells open sea from
lagoon and beach from a town, but its 80 m tokens, even upsampled edge-aware, round field edges and lose tidal channels
50-100 m wide. ``p_pixel`` is a per-pixel model on the trailing pixel columns (bands and indices): every 10 m edge,
and the confusions of spectra alone. In a product either expert can veto a class, so where the embedding hesitates
between marsh and water the pixel decides, and where the pixel's spectrum fits two classes the embedding does;
``a`` (``pixel_weight``) sets how loud the pixel speaks. Each expert's probabilities are floored at :data:`FLOOR`
first: a forest's zero is "no tree voted for it", not impossibility.

The pixel expert is logistic regression unless ``pixel_method`` says ``rf``: on the demo, with a = 0.5, it keeps
73 of 74 validation points and the open sea (forests as pixel expert: 72/74 and a noisier sea) at a third of the
cost of a 30-tree forest. The variants and the maps: docs/map_quality.md.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SoftConError
from .classifiers import Classifier, make_classifier

#: The experts' names, in column order: their arrays are saved as ``emb_<name>`` and ``pixel_<name>``.
EXPERTS = ("emb", "pixel")
#: Methods the pixel expert may be (plain arrays or skops forests: nothing a saved file could run).
PIXEL_METHODS = ("rf", "linear")
#: Lowest probability an expert gives a class the training data hold (what the offline measurement used).
FLOOR = 1e-4


class FusionClassifier(Classifier):
    """Logistic regression on the first columns times a per-pixel model on the last ``pixel_features`` columns.

    Args:
        pixel_features: how many trailing columns are the pixel group's (set by :func:`make_classifier` from the
            feature spec, saved with the classifier).
        pixel_weight: the pixel expert's exponent ``a`` (0: the embedding's logistic regression alone).
        pixel_method: ``linear`` or ``rf`` (``n_estimators`` trees, leaves of ``min_samples_leaf``, ``seed``).
    """

    def __init__(self, n_classes: int, pixel_features: int = 0, pixel_weight: float = 0.5, pixel_method: str = "linear",
                 n_estimators: int = 30, min_samples_leaf: int = 3, seed: int = 0, **_: Any):
        if pixel_method not in PIXEL_METHODS:
            raise SoftConError(f"The fusion's pixel expert must be one of {', '.join(PIXEL_METHODS)}, not "
                               f"{pixel_method!r}.")
        super().__init__(n_classes, pixel_features=int(pixel_features), pixel_weight=float(pixel_weight),
                         pixel_method=pixel_method, n_estimators=int(n_estimators),
                         min_samples_leaf=int(min_samples_leaf), seed=int(seed))
        self._experts: tuple[Classifier, Classifier] | None = None

    def _new_experts(self) -> tuple[Classifier, Classifier]:
        p = self.params
        return (make_classifier("linear", self.n_classes),
                make_classifier(p["pixel_method"], self.n_classes, n_estimators=p["n_estimators"],
                                min_samples_leaf=p["min_samples_leaf"], seed=p["seed"]))

    def experts(self) -> tuple[Classifier, Classifier]:
        """The embedding's and the pixel's classifier (rebuilt from ``arrays`` after loading)."""
        if self._experts is None:
            self._experts = self._new_experts()
            for name, expert in zip(EXPERTS, self._experts):
                expert.arrays = {k[len(name) + 1:]: v for k, v in self.arrays.items() if k.startswith(name + "_")}
        return self._experts

    def fit(self, x: np.ndarray, y: np.ndarray) -> "FusionClassifier":
        k = self.params["pixel_features"]
        if not 0 < k < x.shape[1]:  # make_classifier refuses features without both groups; this is a wrong matrix
            raise SoftConError(f"The fusion classifier expects {k} pixel columns after the embedding's, but got "
                               f"{x.shape[1]} columns in all.")
        emb, pix = self._experts = self._new_experts()
        emb.fit(x[:, :-k], y)
        pix.fit(x[:, -k:], y)
        self.arrays = {f"{name}_{key}": v for name, e in zip(EXPERTS, (emb, pix)) for key, v in e.arrays.items()}
        return self

    def _proba(self, x: torch.Tensor, workers: int = 1) -> torch.Tensor:
        k = self.params["pixel_features"]
        return self._fuse(self.experts()[0]._proba(x[:, :-k], workers), x[:, -k:], workers)

    def complete(self, p_emb: np.ndarray, pixel: np.ndarray, workers: int = 1) -> np.ndarray:
        """Fused probabilities (M, C) from the embedding expert's (M, C) and the pixel columns (M, F_pix): for a map
        that upsampled the expert's class scores, not its features (:func:`core.classify.pixelmap.linear_head`)."""
        return self._fuse(torch.from_numpy(p_emb), torch.from_numpy(pixel), workers).numpy()

    def _fuse(self, p_emb: torch.Tensor, pixel: torch.Tensor, workers: int) -> torch.Tensor:
        """Normalised p_emb * p_pixel ** a (B, C), each expert floored at :data:`FLOOR`; classes absent from the
        training data (-inf in the logistic regression) stay at 0."""
        emb, pix = self.experts()
        log_p = p_emb.float().clamp_min(FLOOR).log()
        log_p += self.params["pixel_weight"] * pix._proba(pixel.float(), workers).clamp_min(FLOOR).log()
        absent = torch.from_numpy(np.isinf(emb.arrays["intercept"]))
        return torch.softmax(log_p.masked_fill(absent, float("-inf")), dim=1)
