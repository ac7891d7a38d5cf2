"""``--method auto``: every classifier on every sensible feature set, compared by spatially blocked CV.

The comparison is cheap next to the embedding (a few hundred training pixels), and it answers the
question a user has before trusting a map: which method and which features suit *these* samples on
*this* raster. The whole table goes into the log and the report, and the best row is the map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..progress import Progress
from .features import FeatureSpec
from .methods import auto_methods, METHODS
from .report import cells, cross_validate
from .spec import FEATURE_SETS


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
    """The best row: highest kappa, then macro F1; ties go to the earlier (preferred) row."""
    def key(i_r):
        i, r = i_r
        return (-(r["kappa"] if r["overall_accuracy"] is not None else -1), -(r["macro_f1"] or 0), i)

    return sorted(enumerate(rows), key=key)[0][1]


def table_rows(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The comparison as JSON-ready rows (no per-fold detail), the chosen one marked."""
    return [{"features": r["features"], "method": r["method"], "overall_accuracy": r["overall_accuracy"],
             "kappa": r["kappa"], "macro_f1": r["macro_f1"], "chosen": r is chosen} for r in rows]


