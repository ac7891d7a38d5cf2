"""``--method auto``: every classifier on every sensible feature set, compared by spatially blocked CV.

The comparison is cheap next to the embedding (a few hundred training pixels), and it answers the
question a user has before trusting a map: which method and which features suit *these* samples on
*this* raster. The whole table goes into the log and the report, and the best row is the map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..geo.samples import PixelSamples
from ..progress import Progress
from .features import FeatureSpec
from .methods import auto_methods, METHODS
from .report import cells, cross_validate
from .spec import FEATURE_SETS, FitSpec


def candidates(method: str, feature_sets: Sequence[str], n_classes: int = 0) -> list[tuple[str, str]]:
    """(feature set, method) pairs to compare: ``method`` (or every method ``auto`` tries for ``n_classes``
    classes, in the registry's order of preference) on each set, methods on cosine features only on embeddings
    alone."""
    methods = auto_methods(n_classes) if method == "auto" else (method,)
    out = [(fs, m) for fs in feature_sets for m in methods
           if not (METHODS[m].features == "cosine" and FEATURE_SETS[fs] != ("emb",))]
    if not out:  # e.g. knn asked for with pixel features only
        out = [(fs, m) for fs in feature_sets for m in methods][:1]
    return out


def compare(features: np.ndarray, full: FeatureSpec, px: PixelSamples, xy: np.ndarray,
            pairs: Sequence[tuple[str, str]], fit: FitSpec, block_m: float,
            progress: Progress | None = None) -> list[dict[str, Any]]:
    """Blocked CV (``fit.cv_folds`` folds, blocks of ``block_m``) of each (feature set, method) on the training
    pixels ``px`` (features (M, D) in ``full``'s columns, map coordinates ``xy`` (M, 2)); one row per pair with
    its metrics and full CV result."""
    rows = []
    for i, (fs, m) in enumerate(pairs):
        if progress is not None:  # the bar moves during the comparison (tens of seconds for auto), and Cancel acts
            progress.check()
            progress.update(i, len(pairs), "cross-validating")  # each row is logged below, with its scores
        cols = full.select(FEATURE_SETS[fs]).columns(full)
        res = cross_validate(features[:, cols], px.labels, px.groups, xy, px.class_names, m, fit.method_params(m),
                             fit.cv_folds, block_m, fit.seed)
        rows.append({"features": fs, "method": m, "overall_accuracy": res["overall_accuracy"],
                     "kappa": res["kappa"], "macro_f1": res["macro_f1"], "cv": res})
        if progress is not None:
            progress.log(f"  {fs:10s} {m:9s} " + cells(rows[-1]))
    if progress is not None:
        progress.update(len(pairs), len(pairs), "cross-validating")
    return rows


def pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row to map with: among the rows that cross-validation cannot tell from the best one (overall accuracy
    within one standard error of the best row's: the one-standard-error rule of Breiman et al. 1984 and Hastie et
    al. 2009, sec. 7.10), the method cheapest to predict (``Method.predict_cost``); then highest kappa, macro F1,
    and the earlier (preferred) row.

    The best row is the one of highest kappa (then macro F1); its standard error is the binomial one of its
    accuracy on the ``n_validated`` samples: with the demo's 143 points about 2 points, so that boosting at
    93.7 % does not displace a forest at 92.3 % that predicts a Sentinel-2 tile 7 times faster.
    """
    def quality(i_r):
        i, r = i_r
        return (-(r["kappa"] if r["overall_accuracy"] is not None else -1), -(r["macro_f1"] or 0), i)

    best = sorted(enumerate(rows), key=quality)[0][1]
    acc, n = best["overall_accuracy"], (best.get("cv") or {}).get("n_validated") or 0
    if acc is None or n < 2:
        return best
    se = (acc * (1 - acc) / n) ** 0.5
    close = [(i, r) for i, r in enumerate(rows)
             if r["overall_accuracy"] is not None and r["overall_accuracy"] >= acc - se - 1e-12]

    def cheap(i_r):
        method = METHODS.get(i_r[1]["method"])
        return (method.predict_cost if method is not None else float("inf"),) + quality(i_r)

    return sorted(close, key=cheap)[0][1]


def table_rows(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The comparison as JSON-ready rows (no per-fold detail), the chosen one marked."""
    return [{"features": r["features"], "method": r["method"], "overall_accuracy": r["overall_accuracy"],
             "kappa": r["kappa"], "macro_f1": r["macro_f1"], "chosen": r is chosen} for r in rows]
