"""Accuracy from spatially blocked cross-validation, and the reports a run writes.

Neighbouring pixels look alike and, with window embeddings, share most of their input, so a random
split of training pixels measures memory, not mapping skill (Roberts et al. 2017, "Cross-validation
strategies for data with temporal, spatial, hierarchical, or phylogenetic structure", Ecography).
Here every sample falls in a square block of ``block_size_m`` metres, and whole blocks are assigned to
folds (scikit-learn ``StratifiedGroupKFold`` with blocks as groups, so each fold keeps the class mix
as far as the blocks allow). All pixels of one polygon sit in the block of its first pixel.

Writes ``report.json`` (everything, machine-readable), ``report.txt`` (for people and logs) and
``report.html`` (for the QGIS plugin's results panel).
"""
from __future__ import annotations

import dataclasses
import html
import json
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..geo.samples import PixelSamples
from . import statement
from .classifiers import make_classifier, SavedClassifier
from .features import FeatureSpec

MIN_ADVISED_PER_CLASS = 10


@dataclass(frozen=True)
class TrainingSet:
    """The training pixels with what blocked cross-validation and the method comparison need of them, which
    always travel together: the pixels (their classes, the feature each came from, the class names), their
    features, and their centres in metres, which put them in CV blocks.

    Attributes:
        pixels: the training pixels (:class:`~core.geo.samples.PixelSamples`).
        features: (M, F) their features, the columns that ``spec`` describes.
        xy: (M, 2) map coordinates (metres in a projected CRS) of each pixel centre.
        spec: the feature groups of ``features`` (None: unnamed columns, as in tests; :meth:`select` then fails).
    """

    pixels: PixelSamples
    features: np.ndarray
    xy: np.ndarray
    spec: FeatureSpec | None = None

    @property
    def labels(self) -> np.ndarray:
        """(M,) class index into :attr:`class_names`."""
        return self.pixels.labels

    @property
    def groups(self) -> np.ndarray:
        """(M,) index of the point or polygon each pixel came from."""
        return self.pixels.groups

    @property
    def class_names(self) -> list[str]:
        return self.pixels.class_names

    def select(self, spec: FeatureSpec) -> "TrainingSet":
        """The same pixels with only the features of ``spec`` (a subset of :attr:`spec`'s groups)."""
        return dataclasses.replace(self, features=self.features[:, spec.columns(self.spec)], spec=spec)


def spatial_blocks(x: np.ndarray, y: np.ndarray, groups: np.ndarray, block_size_m: float) -> np.ndarray:
    """Block id (M,) of each sample: the block of the first pixel of its feature (``groups``)."""
    bx = np.floor(x / block_size_m).astype(np.int64)
    by = np.floor(y / block_size_m).astype(np.int64)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    bid = bx[first] * 1_000_003 + by[first]  # per feature
    return np.unique(bid, return_inverse=True)[1][inverse]


def plan_folds(labels: np.ndarray, blocks: np.ndarray, n_folds: int) -> tuple[int, list[str]]:
    """How many folds the samples allow, and why fewer than asked.

    Whole blocks go to folds, so there can be no more folds than blocks; and stratification needs the most
    widespread class to reach every fold (scikit-learn refuses more folds than that class has members). Fewer
    than two folds: no cross-validation (0), with the reason.
    """
    n_blocks = len(np.unique(blocks))
    spread = max(len(np.unique(blocks[labels == c])) for c in np.unique(labels)) if len(labels) else 0
    k = min(n_folds, n_blocks, spread)
    if k >= n_folds:
        return k, []
    plural = lambda n: f"{n} spatial block{'' if n == 1 else 's'}"  # noqa: E731
    why = (f"only {plural(n_blocks)} hold samples" if n_blocks <= spread else
           f"no class has samples in more than {plural(spread)}")
    if k < 2:
        return 0, [f"No cross-validation: {why}, and it needs 2. Add samples in other places (or use a smaller "
                   f"--block-size)."]
    return k, [f"Cross-validation uses {k} folds instead of {n_folds}: {why}."]


def spatial_folds(labels: np.ndarray, blocks: np.ndarray, n_folds: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Fold index (M,) per sample with whole blocks per fold (-1 everywhere: no CV), and any warnings
    (:func:`plan_folds` decides how many folds the samples allow)."""
    k, notes = plan_folds(labels, blocks, n_folds)
    folds = np.full(labels.shape, -1, dtype=np.int64)
    if k < 2:
        return folds, notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits": reported below
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for f, (_, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, blocks)):
            folds[val] = f
    return folds, notes


def metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, macro F1, per-class precision/recall/F1, confusion matrix.

    The confusion matrix has true classes as rows and predicted classes as columns.
    """
    n = len(class_names)
    cm = np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)
    total = cm.sum()
    tp = np.diag(cm).astype(float)
    pred_tot, true_tot = cm.sum(0).astype(float), cm.sum(1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred_tot > 0, tp / pred_tot, 0.0)
        recall = np.where(true_tot > 0, tp / true_tot, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    oa = float(tp.sum() / total) if total else 0.0
    pe = float((pred_tot * true_tot).sum() / total**2) if total else 0.0
    kappa = (oa - pe) / (1 - pe) if pe < 1 else 0.0
    return {
        "overall_accuracy": oa,
        "kappa": float(kappa),
        "macro_f1": float(f1[true_tot > 0].mean()) if (true_tot > 0).any() else 0.0,
        "n_validated": int(total),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(true_tot[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
    }


def cross_validate(
    train: TrainingSet,
    method: str,
    params: dict[str, Any],
    n_folds: int = 5,
    block_size_m: float = 1000.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Spatially blocked k-fold cross-validation of a classifier on the training pixels' features.

    Args:
        train: features, classes, feature of origin and position of each training pixel; a classifier that
            needs to know the feature groups (``fusion``) gets ``train.spec``.
        method, params: the classifier (:data:`core.classify.methods.METHODS`) and its parameters.

    Returns:
        ``metrics`` of the pooled out-of-fold predictions plus fold and block counts and warnings, and the
        predictions themselves (``predictions``, (M,), not JSON).
    """
    features, labels, groups, xy, class_names = train.features, train.labels, train.groups, train.xy, train.class_names
    blocks = spatial_blocks(xy[:, 0], xy[:, 1], groups, block_size_m)
    folds, notes = spatial_folds(labels, blocks, n_folds, seed)
    out: dict[str, Any] = {"folds": int(folds.max() + 1), "block_size_m": float(block_size_m),
                           "n_blocks": int(len(np.unique(blocks))), "warnings": notes}
    if folds.max() < 1:
        out.update(metrics(labels[:0], labels[:0], class_names))
        out["overall_accuracy"] = None
        return out
    pred = np.empty_like(labels)
    for f in range(folds.max() + 1):
        learn, val = folds != f, folds == f
        clf = make_classifier(method, len(class_names), train.spec, **params).fit(features[learn], labels[learn])
        pred[val] = clf.predict(features[val])
    out.update(metrics(labels, pred, class_names))
    out["predictions"] = pred  # out-of-fold, for paired comparisons (:func:`core.classify.selection.pick`)
    for i, name in enumerate(class_names):
        nb = len(np.unique(blocks[labels == i]))
        if nb < 2:
            out["warnings"].append(
                f"All samples of class {name!r} lie in one spatial block, so cross-validation never trains "
                f"on it while validating it; its recall is not meaningful. Add samples elsewhere.")
    return out


def build_report(
    saved: SavedClassifier,
    samples: PixelSamples | None,
    cv: dict[str, Any] | None,
    embedding: dict[str, Any],
    weights: str,
    *,
    timings: dict[str, float] | None = None,
    extra_warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything a run learned, as one JSON-ready dict (``report.json``): the classifier (method, parameters,
    classes and colours), its training ``samples`` (None when a saved classifier is applied), the
    cross-validation, the embeddings and weights."""
    class_names, colors = saved.class_names, saved.colors
    if samples is None:
        counts, feature_counts, dropped, n_features = {n: 0 for n in class_names}, {}, {}, 0
    else:
        counts, feature_counts = samples.counts(), samples.feature_counts()
        dropped, n_features = samples.dropped, samples.n_features
    warns = list(extra_warnings)
    n_dropped = sum(dropped.values())
    if n_dropped:
        warns.append(f"{n_dropped} training sample(s) dropped: "
                     + ", ".join(f"{n} {why}" for why, n in dropped.items()) + ".")
    few = [f"{n} ({c})" for n, c in feature_counts.items() if c < MIN_ADVISED_PER_CLASS]
    if few:
        warns.append(f"Classes with fewer than {MIN_ADVISED_PER_CLASS} samples, whose accuracy is uncertain: "
                     + ", ".join(few) + ".")
    if cv:
        warns.extend(cv.get("warnings", []))
    return {
        "method": saved.classifier.method,
        "params": saved.classifier.params,
        "weights": weights,
        "embedding": embedding,
        "classes": [{"value": i + 1, "name": n, "color": "#%02x%02x%02x" % tuple(colors[i])}
                    for i, n in enumerate(class_names)],
        "samples": {"features_read": n_features + n_dropped, "features_used": n_features,
                    "dropped": dropped, "features_per_class": feature_counts, "pixels_per_class": counts},
        "cross_validation": cv,
        "area_fraction": {},
        "timings_s": timings or {},
        "warnings": warns,
    }


#: The next step the reports point to: cross-validation on hand-picked points is a hint, not the map's accuracy.
DESIGN_BASED = (
    "Cross-validation on the training points is a hint, not the map's accuracy (the points were chosen by hand, "
    "not drawn at random). For accuracy and class areas with confidence intervals by the book (Olofsson et al. "
    "2014): draw a stratified random sample of the class raster (python -m core.assess sample CLASSES.tif "
    "--out-dir DIR; in QGIS: SoftCon > Accuracy assessment > Create validation sample), label the points' "
    "'reference' field, then run python -m core.assess estimate CLASSES.tif DIR/validation_sample.gpkg "
    "--out-dir DIR (in QGIS: Assess accuracy and estimate areas)."
)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:5.1f}%"


def format_text(report: dict[str, Any]) -> str:
    """``report.txt``: the same facts as the JSON, laid out for reading; the accuracy on independent validation
    samples first when there are some (:mod:`.statement`)."""
    names = [c["name"] for c in report["classes"]]
    cv = report.get("cross_validation") or {}
    w = max(12, *(len(n) for n in names))
    lines = [
        "SoftCon land-cover classification",
        f"method: {report['method']} {json.dumps(report['params'])}",
        f"model: {report['embedding'].get('model')}  weights: {report['weights']}",
        f"embedding: mode={report['embedding'].get('mode')} stride={report['embedding'].get('stride')} "
        f"pixel={report['embedding'].get('pixel_size_m')} m  dim={report['embedding'].get('dim')}",
        f"features: {report.get('features', 'emb')}  map grid: {(report.get('grid') or {}).get('kind', 'embedding')}"
        f" ({report.get('grid_pixel_size_m', report['embedding'].get('pixel_size_m'))} m pixels)",
        "",
    ]
    for para in statement.headline(report):
        lines += textwrap.wrap(para, 110) + [""]
    if report.get("validation"):
        lines += ["validation samples"] + statement.metric_lines(report["validation"], names, w) + [""]
    if cv.get("overall_accuracy") is not None:
        lines += ["blocked cross-validation on the training points"] + statement.metric_lines(cv, names, w) + [""]
    table = report.get("method_comparison") or cv.get("method_comparison")
    if table:
        lines += ["every method and feature set (same blocked folds, same validation samples):", format_table(table)]
    if report.get("min_mapping_unit"):
        mmu = report["min_mapping_unit"]
        lines += ["", f"minimum mapping unit: {mmu['pixels']} pixels ({mmu['area_m2']:g} m2), GDAL sieve filter: "
                      f"{100 * mmu['share_changed']:.2f} % of the pixels changed class (probabilities unchanged)"]
    if report.get("area_fraction"):
        lines += ["", "mapped area"]
        lines += [f"{n:{w}s}  {_pct(f)}" for n, f in report["area_fraction"].items()]
    if report["warnings"]:
        lines += ["", "warnings"] + [f"- {m}" for m in report["warnings"]]
    lines += [""] + textwrap.wrap(DESIGN_BASED, 110)
    return "\n".join(lines) + "\n"


def format_html(report: dict[str, Any], quicklook: str | None = None) -> str:
    """``report.html``: a self-contained page for the plugin's results viewer."""
    e = html.escape
    cv = report.get("cross_validation") or {}
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SoftCon classification report</title>",
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}"
        ".sw{display:inline-block;width:12px;height:12px;margin-right:4px;border:1px solid #555}"
        ".warn{color:#a50}</style></head><body>",
        "<h2>SoftCon land-cover classification</h2>",
        f"<p>Method <b>{e(report['method'])}</b> {e(json.dumps(report['params']))}; model "
        f"<b>{e(str(report['embedding'].get('model')))}</b>, weights: {e(report['weights'])}; features "
        f"<b>{e(str(report.get('features', 'emb')))}</b>, map pixels of "
        f"{e(str(report.get('grid_pixel_size_m', report['embedding'].get('pixel_size_m'))))} m.</p>",
    ]
    head = statement.headline(report)
    if head:
        parts.append(f"<p><b>{e(head[0])}</b></p>" + "".join(f"<p>{e(t)}</p>" for t in head[1:]))
    if report.get("validation"):
        parts.append("<h3>Validation samples</h3>" + statement.metric_html(report["validation"], report["classes"]))
    if cv.get("overall_accuracy") is not None:
        parts.append("<h3>Blocked cross-validation on the training points</h3>"
                     + statement.metric_html(cv, report["classes"]))
    table = report.get("method_comparison") or cv.get("method_comparison")
    if table:
        parts.append("<h3>Every method and feature set</h3><table><tr><th>features</th><th>method</th><th>CV "
                     "accuracy</th><th>CV kappa</th><th>validation accuracy</th><th>validation kappa</th></tr>")
        for r in table:
            b = ("<b>", "</b>") if r.get("chosen") else ("", "")
            v = r.get("validation") or {}
            kappa = "" if r["kappa"] is None else f"{r['kappa']:.3f}"
            v_acc, v_kappa = (_pct(v["overall_accuracy"]), f"{v['kappa']:.3f}") if v else ("", "")
            parts.append(f"<tr><td>{b[0]}{e(r['features'])}{b[1]}</td><td>{b[0]}{e(r['method'])}{b[1]}</td>"
                         f"<td>{_pct(r['overall_accuracy'])}</td><td>{kappa}</td><td>{v_acc}</td><td>{v_kappa}</td>"
                         f"</tr>")
        parts.append("</table>")
    if quicklook:
        parts.append(f"<h3>Quicklook</h3><img src='{e(quicklook)}' style='max-width:100%'>")
    if report["warnings"]:
        items = "".join(f"<li class='warn'>{e(m)}</li>" for m in report["warnings"])
        parts.append("<h3>Warnings</h3><ul>" + items + "</ul>")
    parts.append(f"<h3>Accuracy by the book</h3><p>{e(DESIGN_BASED)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def cells(r: dict[str, Any]) -> str:
    out = "CV n/a" if r["overall_accuracy"] is None else (
        f"CV accuracy {100 * r['overall_accuracy']:5.1f}%  kappa {r['kappa']:.3f}  macro F1 {r['macro_f1']:.3f}")
    v = r.get("validation")
    return out + (f"  | validation {100 * v['overall_accuracy']:5.1f}%  kappa {v['kappa']:.3f}" if v else "")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a plain-text table (CLI, report.txt, the plugin's log): blocked CV, and the validation
    samples when given."""
    val = any(r.get("validation") for r in rows)
    lines = [f"{'features':10s} {'method':9s} {'CV acc':>7s} {'kappa':>6s} {'macro F1':>8s}"
             + (f" {'valid acc':>9s} {'kappa':>6s}" if val else "")]
    for r in rows:
        acc = "n/a" if r["overall_accuracy"] is None else f"{100 * r['overall_accuracy']:.1f}%"
        kappa = "" if r["kappa"] is None else f"{r['kappa']:.3f}"
        f1 = "" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}"
        line = f"{r['features']:10s} {r['method']:9s} {acc:>7s} {kappa:>6s} {f1:>8s}"
        if val:
            v = r.get("validation") or {}
            line += (f" {100 * v['overall_accuracy']:8.1f}% {v['kappa']:6.3f}" if v else f" {'':>9s} {'':>6s}")
        lines.append(line + ("  <- chosen" if r.get("chosen") else ""))
    return "\n".join(lines)
