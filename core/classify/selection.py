"""``--method auto``: every classifier on every sensible feature set, compared by spatially blocked CV.

The comparison is cheap next to the embedding (a few hundred training pixels), and it answers the
question a user has before trusting a map: which method and which features suit *these* samples on
*this* raster. The whole table goes into the log and the report, and the best row is the map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..progress import Progress
from .features import FEATURE_SETS, FeatureSpec
from .report import cells, cross_validate

#: Methods compared by ``auto``, in order of preference on ties (cheaper, smoother maps first).
AUTO_METHODS = ("linear", "hgb", "rf", "knn", "prototype")
#: Methods from the cheapest to the dearest to predict a pixel with. At 10 m a Sentinel-2 tile is 120 million
#: pixels; measured on 2 CPU cores: logistic regression a fraction of a CPU-second per million pixels, the
#: 100-tree forest about 6, boosting (100 rounds of one tree per class: 700 trees for 7 classes) about 42.
PREDICT_COST = ("linear", "prototype", "knn", "rf", "hgb")
#: Methods that compare feature vectors by cosine: sensible on embeddings only.
COSINE_METHODS = ("knn", "prototype")


def method_params(method: str, k: int = 20, temperature: float = 0.07, seed: int = 0) -> dict[str, Any]:
    """The options each classifier takes: kNN (k, T), prototype (T), forests (seed), linear (none)."""
    if method == "knn":
        return {"k": k, "temperature": temperature}
    if method == "prototype":
        return {"temperature": temperature}
    return {"seed": seed} if method in ("rf", "hgb") else {}


def candidates(method: str, feature_sets: Sequence[str]) -> list[tuple[str, str]]:
    """(feature set, method) pairs to compare: ``method`` (or every method for ``auto``) on each set,
    cosine methods only on embeddings alone."""
    methods = AUTO_METHODS if method == "auto" else (method,)
    out = [(fs, m) for fs in feature_sets for m in methods
           if not (m in COSINE_METHODS and FEATURE_SETS[fs] != ("emb",))]
    if not out:  # e.g. knn asked for with pixel features only
        out = [(fs, m) for fs in feature_sets for m in methods][:1]
    return out


def compare(features: np.ndarray, full: FeatureSpec, labels: np.ndarray, groups: np.ndarray, xy: np.ndarray,
            class_names: Sequence[str], pairs: Sequence[tuple[str, str]], folds: int, block_m: float,
            params: dict[str, dict[str, Any]], seed: int = 0, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Blocked CV of each (feature set, method); one row per pair with its metrics and full CV result."""
    rows = []
    for fs, m in pairs:
        cols = full.select(FEATURE_SETS[fs]).columns(full)
        res = cross_validate(features[:, cols], labels, groups, xy, class_names, m, params[m], folds, block_m, seed)
        rows.append({"features": fs, "method": m, "overall_accuracy": res["overall_accuracy"],
                     "kappa": res["kappa"], "macro_f1": res["macro_f1"], "cv": res})
        if progress is not None:
            progress.log(f"  {fs:10s} {m:9s} " + cells(rows[-1]))
    return rows


def pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row to map with: among the rows that cross-validation cannot tell from the best one (overall accuracy
    within one standard error of the best row's, the one-standard-error rule of Breiman et al. 1984 and Hastie et
    al. 2009, sec. 7.10), the method cheapest to predict (:data:`PREDICT_COST`); then highest kappa, macro F1, and
    the earlier (preferred) row.

    The best row is the one of highest kappa (then macro F1). Its standard error is the binomial one of its
    accuracy on the ``n_validated`` samples: with the demo's 143 points about 2 points, so that boosting at
    93.7 % does not displace a forest at 92.3 % that predicts a tile 7 times faster.
    """
    def quality(i_r):
        i, r = i_r
        return (-(r["kappa"] if r["overall_accuracy"] is not None else -1), -(r["macro_f1"] or 0), i)

    best = sorted(enumerate(rows), key=quality)[0][1]
    acc, n = best["overall_accuracy"], (best.get("cv") or {}).get("n_validated") or 0
    if acc is None or n < 2:
        return best
    se = (acc * (1 - acc) / n) ** 0.5
    close = [(i, r) for i, r in enumerate(rows) if r["overall_accuracy"] is not None
             and r["overall_accuracy"] >= acc - se - 1e-12]

    def cheap(i_r):
        m = i_r[1]["method"]
        return (PREDICT_COST.index(m) if m in PREDICT_COST else len(PREDICT_COST),) + quality(i_r)

    return sorted(close, key=cheap)[0][1]


def table_rows(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The comparison as JSON-ready rows (no per-fold detail), the chosen one marked."""
    return [{"features": r["features"], "method": r["method"], "overall_accuracy": r["overall_accuracy"],
             "kappa": r["kappa"], "macro_f1": r["macro_f1"], "chosen": r is chosen} for r in rows]
