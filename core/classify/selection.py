"""``--method auto``: every classifier on every sensible feature set, compared on independent validation
samples when there are some, else by spatially blocked CV.

The comparison is cheap next to the embedding (a few hundred training pixels), and it answers the
question a user has before trusting a map: which method and which features suit *these* samples on
*this* raster. Blocked CV on clustered, hand-picked training points rewards what recovers places like the
training points (on the demo scene it ranked the candidates in an order that independent points
contradict), so validation samples, when given, decide; the table reports both. A preferred method stands in
for a better-scoring one unless the samples show a significant difference (:func:`pick`). The whole table goes
into the log and the report, and the chosen row is the map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest

from ..progress import Progress
from .classifiers import make_classifier
from .features import FeatureSpec
from .methods import auto_methods, METHODS
from .report import cells, cross_validate
from .spec import FEATURE_SETS


#: Level of the test that lets a preferred method stand in for a better-scoring one (:func:`pick`).
SIGNIFICANCE = 0.05


def candidates(method: str, feature_sets: Sequence[str]) -> list[tuple[str, str]]:
    """(feature set, method) pairs to compare: ``method`` (or every method ``auto`` tries, in the registry's
    order of preference) on each set, methods on cosine features only on embeddings alone."""
    methods = auto_methods() if method == "auto" else (method,)
    out = [(fs, m) for fs in feature_sets for m in methods
           if not (METHODS[m].features == "cosine" and FEATURE_SETS[fs] != ("emb",))]
    if not out:  # e.g. knn asked for with pixel features only
        out = [(fs, m) for fs in feature_sets for m in methods][:1]
    return out


def compare(features: np.ndarray, full: FeatureSpec, labels: np.ndarray, groups: np.ndarray, xy: np.ndarray,
            class_names: Sequence[str], pairs: Sequence[tuple[str, str]], folds: int, block_m: float,
            params: dict[str, dict[str, Any]], seed: int = 0, progress: Progress | None = None,
            validation: Any = None) -> list[dict[str, Any]]:
    """Blocked CV (``folds`` >= 2) and validation (a :class:`~core.classify.validation.Validation`) of each
    (feature set, method); one row per pair with its metrics and full CV result."""
    rows = []
    for fs, m in pairs:
        cols = full.select(FEATURE_SETS[fs]).columns(full)
        row: dict[str, Any] = {"features": fs, "method": m, "overall_accuracy": None, "kappa": None,
                               "macro_f1": None, "cv": None, "validation": None}
        if folds >= 2:
            res = cross_validate(features[:, cols], labels, groups, xy, class_names, m, params[m], folds, block_m, seed)
            row["_correct_cv"] = res.pop("predictions") == labels
            row.update(overall_accuracy=res["overall_accuracy"], kappa=res["kappa"], macro_f1=res["macro_f1"], cv=res)
        if validation is not None:
            clf = make_classifier(m, len(class_names), **params[m]).fit(features[:, cols], labels)
            row["validation"] = validation.score(clf, cols, class_names)
            row["_correct_val"] = validation.last_correct
        rows.append(row)
        if progress is not None:
            progress.log(f"  {fs:10s} {m:9s} " + cells(rows[-1]))
    return rows


def pick(rows: Sequence[dict[str, Any]], alpha: float = SIGNIFICANCE) -> dict[str, Any]:
    """The map's row: the first (most preferred: cheaper, smoother) row that is not significantly worse than the
    best one.

    The best row has the highest kappa on the validation samples when rows were validated, else in blocked CV.
    A 74-point validation set or 143 clustered training points cannot tell 73 right from 74 right, so a
    preferred row takes its place unless McNemar's exact test on the same samples (paired: which samples each
    gets right) says the best is better at level ``alpha`` (one-sided). Overfitting methods win such ties
    on clustered points more often than they win maps.
    """
    def kappa(r: dict[str, Any] | None) -> float:
        return -1.0 if not r or r.get("overall_accuracy") is None else r["kappa"]

    def key(i_r):
        i, r = i_r
        return (-kappa(r.get("validation")), -kappa(r), -(r["macro_f1"] or 0), i)

    best = sorted(enumerate(rows), key=key)[0][1]
    which = "_correct_val" if best.get("_correct_val") is not None else "_correct_cv"
    if best.get(which) is None:
        return best
    for r in rows:
        if r.get(which) is not None and not better(best[which], r[which], alpha):
            return r
    return best


def better(a: np.ndarray, b: np.ndarray, alpha: float = SIGNIFICANCE) -> bool:
    """Whether correctness ``a`` (M,) bool is significantly better than ``b`` on the same samples (McNemar's exact
    test, one-sided, level ``alpha``)."""
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    if wins <= losses:
        return False
    return binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue < alpha


def table_rows(rows: Sequence[dict[str, Any]], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The comparison as JSON-ready rows (no per-fold detail), the chosen one marked."""
    out = []
    for r in rows:
        row = {"features": r["features"], "method": r["method"], "overall_accuracy": r["overall_accuracy"],
               "kappa": r["kappa"], "macro_f1": r["macro_f1"], "chosen": r is chosen}
        if r.get("validation"):
            v = r["validation"]
            row["validation"] = {"overall_accuracy": v["overall_accuracy"], "kappa": v["kappa"],
                                 "macro_f1": v["macro_f1"], "n_validated": v["n_validated"]}
        out.append(row)
    return out
