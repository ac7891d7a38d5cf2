"""``--method auto``: every classifier on every sensible feature set, compared on independent validation
samples when there are some, else by spatially blocked CV.

The comparison is cheap next to the embedding (a few hundred training pixels), and it answers the
question a user has before trusting a map: which method and which features suit *these* samples on
*this* raster. Blocked CV on clustered, hand-picked training points rewards what recovers places like the
training points (on the demo scene it ranked the candidates in an order that independent points
contradict), so validation samples, when given, decide; the table reports both. The whole table goes into
the log and the report, and the best row is the map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..progress import Progress
from .classifiers import make_classifier
from .features import FeatureSpec
from .methods import auto_methods, METHODS
from .report import cells, cross_validate
from .spec import FEATURE_SETS


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
            row.update(overall_accuracy=res["overall_accuracy"], kappa=res["kappa"], macro_f1=res["macro_f1"], cv=res)
        if validation is not None:
            clf = make_classifier(m, len(class_names), **params[m]).fit(features[:, cols], labels)
            row["validation"] = validation.score(clf, cols, class_names)
        rows.append(row)
        if progress is not None:
            progress.log(f"  {fs:10s} {m:9s} " + cells(rows[-1]))
    return rows


def pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best row: highest validation kappa when rows were validated, else highest CV kappa; then CV kappa,
    macro F1; ties go to the earlier (preferred) row."""
    def kappa(r: dict[str, Any] | None) -> float:
        return -1.0 if not r or r.get("overall_accuracy") is None else r["kappa"]

    def key(i_r):
        i, r = i_r
        return (-kappa(r.get("validation")), -kappa(r), -(r["macro_f1"] or 0), i)

    return sorted(enumerate(rows), key=key)[0][1]


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
