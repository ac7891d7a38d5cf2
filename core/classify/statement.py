"""What a report says about accuracy, in words: the headline figure, where it comes from, and what it is worth.

With independent validation samples the headline is their accuracy (with its 95 % interval, per-class scores
and confusion matrix); blocked CV on the training points follows as a hint. Without them the report says
plainly that its figure comes from the training points, how clustered they are, how much of the map lies
beyond a CV block from any of them, and how to get a figure one can publish: a design-based sample of the map
(``python -m core.assess sample``, :data:`core.classify.report.DESIGN_BASED`), labelled and passed back with
``--validation``.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:5.1f}%"


def validation_sentence(report: dict[str, Any]) -> str | None:
    v = report.get("validation")
    if not v:
        return None
    lo, hi = v["accuracy_ci95"]
    chosen = (" Method and features were chosen on these samples." if report.get("selected_by") == "validation"
              else "")
    return (f"Accuracy on {v['n_validated']} independent validation pixels ({v['n_features']} {v['geometry']} "
            f"sample(s) of {Path(v['path']).name}, never trained on): overall accuracy {_pct(v['overall_accuracy'])} "
            f"(95 % interval {100 * lo:.1f}-{100 * hi:.1f} %), kappa {v['kappa']:.3f}, macro F1 {v['macro_f1']:.3f}."
            + chosen)


def cv_sentence(report: dict[str, Any]) -> str | None:
    cv = report.get("cross_validation") or {}
    if cv.get("overall_accuracy") is None:
        return None
    block = (report.get("spatial") or {}).get("block") or {}
    why = {"variogram": "the range of the embedding's spatial autocorrelation",
           "given": "as given"}.get(block.get("source"), "")
    return (f"Spatially blocked {cv['folds']}-fold cross-validation on the {cv['n_validated']} training pixels "
            f"(blocks of {cv['block_size_m']:.0f} m{', ' + why if why else ''}; {cv['n_blocks']} blocks hold samples): "
            f"overall accuracy {_pct(cv['overall_accuracy'])}, kappa {cv['kappa']:.3f}, macro F1 {cv['macro_f1']:.3f}.")


def caveat(report: dict[str, Any]) -> str | None:
    """Without validation samples: what the training points' figure is worth, and the way to a better one."""
    if report.get("validation"):
        return None
    spread = (report.get("spatial") or {}).get("samples") or {}
    nn = spread.get("nearest_neighbour_m")
    text = ("This accuracy comes from the training points alone, which someone chose as examples: it says how well "
            "the classifier recovers places like them, not how good the map is.")
    if nn:
        text += (f" The {spread['n']} samples are clustered: the nearest other sample lies {nn['median']:.0f} m away "
                 f"(median; quartiles {nn['q25']:.0f}-{nn['q75']:.0f} m)")
        share = spread.get("map_share_beyond_block")
        if share is not None:
            text += (f", and {100 * share:.0f} % of the map lies farther than one CV block "
                     f"({spread['block_m']:.0f} m) from every sample, where the figure says nothing")
        text += "."
    text += (" A labelled stratified random sample of the map (below) can also come back here as --validation "
             "DIR/validation_sample.gpkg --validation-field reference, and this report then headlines it.")
    return text


def headline(report: dict[str, Any]) -> list[str]:
    """The accuracy paragraphs, headline first."""
    return [s for s in (validation_sentence(report), cv_sentence(report), caveat(report)) if s]


def metric_lines(m: dict[str, Any], names: Sequence[str], width: int) -> list[str]:
    """Per-class precision, recall, F1 and support, and the confusion matrix, as text."""
    lines = [f"{'class':{width}s}  precision  recall     F1  support"]
    for n in names:
        p = m["per_class"][n]
        lines.append(f"{n:{width}s}  {_pct(p['precision'])}   {_pct(p['recall'])} {_pct(p['f1'])}  {p['support']:7d}")
    lines += ["", "confusion matrix (rows: reference, columns: predicted)",
              " " * (width + 2) + " ".join(f"{n[:7]:>7s}" for n in names)]
    lines += [f"{n:{width}s}  " + " ".join(f"{v:7d}" for v in row) for n, row in zip(names, m["confusion_matrix"])]
    return lines


def metric_html(m: dict[str, Any], classes: Sequence[dict[str, Any]]) -> str:
    """Per-class scores and the confusion matrix as HTML tables."""
    e = html.escape
    names = [c["name"] for c in classes]
    parts = ["<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"]
    for c in classes:
        p = m["per_class"][c["name"]]
        parts.append(f"<tr><td style='text-align:left'><span class='sw' style='background:{c['color']}'></span>"
                     f"{e(c['name'])}</td><td>{_pct(p['precision'])}</td><td>{_pct(p['recall'])}</td>"
                     f"<td>{_pct(p['f1'])}</td><td>{p['support']}</td></tr>")
    parts.append("</table><p>Confusion matrix (rows: reference, columns: predicted)</p><table><tr><th></th>")
    parts += [f"<th>{e(n)}</th>" for n in names] + ["</tr>"]
    for n, row in zip(names, m["confusion_matrix"]):
        parts.append(f"<tr><th>{e(n)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)
