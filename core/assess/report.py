"""The assessment's outputs: ``accuracy.json`` (every figure), ``accuracy.html`` (the tables Olofsson et al. 2014
ask a report to give: the error matrix in area proportions, accuracies and areas with 95 % intervals, the design)
and ``error_matrix.csv``; written together, each to a temporary file renamed into place only when all succeeded."""
from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io.atomic import atomic_path
from ..io.writer import make_folder
from .classmap import ClassMap
from .estimation import Estimates, Z95
from .reference import LabelledSample

if TYPE_CHECKING:  # the design type only; accuracy imports this module
    from .accuracy import Design

NAMES = {"json": "accuracy.json", "html": "accuracy.html", "csv": "error_matrix.csv"}
CITATIONS = {
    "olofsson2014": "Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014). "
                    "Good practices for estimating area and assessing accuracy of land change. Remote Sensing of "
                    "Environment 148: 42-57.",
    "stehman2014": "Stehman, S. V. (2014). Estimating area and map accuracy for stratified random sampling when the "
                   "strata are different from the map classes. International Journal of Remote Sensing 35: "
                   "4923-4939.",
}


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def figure(value: float, se: float, scale: float = 1.0) -> dict[str, Any]:
    """An estimate with its standard error and 95 % interval (None where undefined), times ``scale``.

    The interval is estimate +- 1.96 SE clipped to what the figure can be, [0, scale]: with few points the normal
    interval of a small area can reach below 0.
    """
    v, s = _num(value * scale), _num(se * scale)
    if v is None:
        return {"estimate": None, "se": None, "ci95": None}
    return {"estimate": v, "se": s,
            "ci95": None if s is None else [max(v - Z95 * s, 0.0), min(v + Z95 * s, scale)]}


def build_report(cmap: ClassMap, sample: LabelledSample, design: "Design", est: Estimates, sample_path: str,
                 reference_field: str) -> dict[str, Any]:
    """Everything the assessment found, JSON-ready. Matrices: rows = map class, columns = reference class."""
    frame_pixels = int(design.sizes.sum())
    frame_ha = float(cmap.hectares(frame_pixels))
    map_ha = float(cmap.hectares(cmap.total))
    warnings = []
    skipped = sample.skipped
    if skipped.get("unlabelled"):
        warnings.append(f"{skipped['unlabelled']} unlabelled point(s) skipped.")
    left_out = {k: v for k, v in skipped.items() if k != "unlabelled"}
    if left_out:
        warnings.append("Labelled points left out: " + ", ".join(f"{v} {k}" for k, v in left_out.items()) + ".")
    if design.names == ["whole map"]:
        warnings.append("The sample records no strata, so it is taken as a simple random (or systematic) sample of the "
                        "map. Points placed by hand are not: for them these figures are not design-based estimates.")
    if cmap.geographic:
        warnings.append("The map is in a geographic CRS: areas use the pixel area at its centre. Project the map to "
                        "an equal-area CRS for exact areas.")
    if abs(frame_pixels - cmap.total) > 0.01 * cmap.total:
        warnings.append(f"The strata hold {frame_pixels} pixels but the map {cmap.total}: areas are estimated for "
                        "the strata's extent.")
    never = [n for n, c in zip(cmap.names, est.counts.sum(0)) if c == 0]
    if never:
        warnings.append(f"No labelled point is of class {', '.join(never)} in the reference: its producer's "
                        "accuracy cannot be estimated, and its estimated area is 0 only for want of evidence.")
    n_map, n_ref = est.counts.sum(1), est.counts.sum(0)
    classes = []
    for k, (v, name, px) in enumerate(zip(cmap.values, cmap.names, cmap.counts)):
        classes.append({
            "value": int(v), "name": name, "mapped_pixels": int(px), "mapped_area_ha": float(cmap.hectares(px)),
            "mapped_proportion": px / max(cmap.total, 1),
            "points_mapped": int(n_map[k]), "points_reference": int(n_ref[k]),
            "users_accuracy": figure(est.users[k], est.users_se[k]),
            "producers_accuracy": figure(est.producers[k], est.producers_se[k]),
            "area_proportion": figure(est.area[k], est.area_se[k]),
            "area_ha": figure(est.area[k], est.area_se[k], frame_ha),
        })
    n_h = np.bincount(design.strata, minlength=len(design.names))
    return {
        "map": cmap.path, "sample": sample_path, "reference_field": reference_field,
        "estimator": design.estimator, "design": design.description, "citation": CITATIONS[design.estimator],
        "confidence": {"level": 0.95, "z": Z95},
        "pixel_area_m2": cmap.pixel_area_m2, "map_area_ha": map_ha, "strata_area_ha": frame_ha,
        "points": {"read": sample.read, "used": int(len(sample.mapped)), "skipped": dict(skipped)},
        "strata": [{"name": n, "pixels": int(p), "area_ha": float(cmap.hectares(p)), "weight": p / frame_pixels,
                    "points": int(c)} for n, p, c in zip(design.names, design.sizes, n_h)],
        "overall_accuracy": figure(est.overall, est.overall_se),
        "classes": classes,
        "error_matrix": {"rows": "map class", "columns": "reference class", "names": list(cmap.names),
                         "counts": est.counts.tolist(),
                         "area_proportions": [[_num(x) for x in row] for row in est.matrix]},
        "warnings": warnings,
    }


def _p(fig: dict[str, Any], digits: int = 3) -> str:
    """``0.947 ± 0.018``, or ``n/a``."""
    if fig["estimate"] is None:
        return "n/a"
    if fig["se"] is None:
        return f"{fig['estimate']:.{digits}f}"
    return f"{fig['estimate']:.{digits}f} ± {Z95 * fig['se']:.{digits}f}"


def _ha(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 or v == 0 else f"{v:,.2f}"


def format_csv(report: dict[str, Any]) -> str:
    """The error matrix in estimated proportions of area, with its margins (map rows, reference columns)."""
    names = report["error_matrix"]["names"]
    m = np.array([[np.nan if x is None else x for x in row] for row in report["error_matrix"]["area_proportions"]])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["map \\ reference"] + names + ["total"])
    for name, row in zip(names, m):
        w.writerow([name] + [f"{x:.6f}" for x in row] + [f"{np.nansum(row):.6f}"])
    w.writerow(["total"] + [f"{x:.6f}" for x in np.nansum(m, 0)] + [f"{np.nansum(m):.6f}"])
    return buf.getvalue()


def format_text(report: dict[str, Any]) -> str:
    """A few lines for the command line: overall accuracy, then each class's accuracies and area."""
    pts = report["points"]
    users, producers = "user's", "producer's"
    lines = [f"overall accuracy {_p(report['overall_accuracy'])} (95 %), {pts['used']} labelled points; "
             f"{report['estimator']}: {report['design']}",
             f"{'class':20s} {users:>15s} {producers:>15s} {'mapped ha':>12s} {'estimated ha':>22s}"]
    for c in report["classes"]:
        a = c["area_ha"]
        est = "n/a" if a["estimate"] is None else f"{_ha(a['estimate'])} ± {_ha(Z95 * a['se'])}"
        lines.append(f"{c['name'][:20]:20s} {_p(c['users_accuracy']):>15s} {_p(c['producers_accuracy']):>15s} "
                     f"{_ha(c['mapped_area_ha']):>12s} {est:>22s}")
    lines += [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines)


def format_html(report: dict[str, Any]) -> str:
    """``accuracy.html``: the tables to quote, then how they were obtained."""
    e = html.escape
    names = report["error_matrix"]["names"]
    counts = np.array(report["error_matrix"]["counts"])
    props = report["error_matrix"]["area_proportions"]
    cls = report["classes"]
    pts = report["points"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Accuracy assessment and area estimates</title>",
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}td.l,th.l{text-align:left}"
        ".warn{color:#a50}</style></head><body>",
        "<h2>Accuracy assessment and area estimates</h2>",
        f"<p>Map <b>{e(report['map'])}</b>; sample <b>{e(report['sample'])}</b> (reference field "
        f"<b>{e(report['reference_field'])}</b>): {pts['used']} labelled points used of {pts['read']}. "
        f"Overall accuracy <b>{e(_p(report['overall_accuracy']))}</b>. Intervals are 95 % "
        f"(± {report['confidence']['z']} standard errors; the interval columns clipped to the possible range).</p>",
        "<h3>Accuracy</h3><table><tr><th class='l'>class</th><th>user's accuracy</th><th>producer's accuracy</th>"
        "<th>points (map)</th><th>points (reference)</th></tr>",
    ]
    for c in cls:
        parts.append(f"<tr><td class='l'>{e(c['name'])}</td><td>{e(_p(c['users_accuracy']))}</td>"
                     f"<td>{e(_p(c['producers_accuracy']))}</td><td>{c['points_mapped']}</td>"
                     f"<td>{c['points_reference']}</td></tr>")
    parts.append(f"<tr><th class='l'>overall</th><th colspan='2'>{e(_p(report['overall_accuracy']))}</th>"
                 f"<th colspan='2'>{pts['used']}</th></tr></table>")
    parts.append("<h3>Area</h3><table><tr><th class='l'>class</th><th>mapped area (ha)</th>"
                 "<th>estimated area (ha)</th><th>95 % interval (ha)</th><th>estimated proportion</th></tr>")
    for c in cls:
        a = c["area_ha"]
        ci = "n/a" if a["ci95"] is None else f"{_ha(a['ci95'][0])} to {_ha(a['ci95'][1])}"
        pm = "" if a["se"] is None else f" ± {_ha(Z95 * a['se'])}"
        parts.append(f"<tr><td class='l'>{e(c['name'])}</td><td>{_ha(c['mapped_area_ha'])}</td>"
                     f"<td>{_ha(a['estimate'])}{pm}</td><td>{ci}</td><td>{e(_p(c['area_proportion'], 4))}</td></tr>")
    parts.append(f"<tr><th class='l'>total</th><th>{_ha(report['map_area_ha'])}</th>"
                 f"<th>{_ha(report['strata_area_ha'])}</th><th></th><th></th></tr></table>")
    header = "<tr><th class='l'>map \\ reference</th>" + "".join(f"<th>{e(n)}</th>" for n in names)
    parts.append("<h3>Error matrix, estimated proportions of area</h3><table>" + header
                 + "<th>total</th><th>mapped proportion</th></tr>")
    for c, row in zip(cls, props):
        parts.append(f"<tr><th class='l'>{e(c['name'])}</th>" + "".join(
            f"<td>{'' if x is None else f'{x:.4f}'}</td>" for x in row)
            + f"<td>{sum(x or 0 for x in row):.4f}</td><td>{c['mapped_proportion']:.4f}</td></tr>")
    parts.append("<tr><th class='l'>total</th>" + "".join(
        f"<th>{sum((row[j] or 0) for row in props):.4f}</th>" for j in range(len(names))) + "<th></th><th></th></tr>")
    parts.append("</table><h3>Error matrix, sample counts</h3><table>" + header + "<th>total</th></tr>")
    for name, row in zip(names, counts):
        parts.append(f"<tr><th class='l'>{e(name)}</th>" + "".join(f"<td>{v}</td>" for v in row)
                     + f"<td>{row.sum()}</td></tr>")
    parts.append("<tr><th class='l'>total</th>" + "".join(f"<th>{v}</th>" for v in counts.sum(0))
                 + f"<th>{counts.sum()}</th></tr></table>")
    parts.append(f"<h3>Design</h3><p>{e(report['design'])}. Estimator: {e(report['citation'])}</p>"
                 "<table><tr><th class='l'>stratum</th><th>pixels</th><th>area (ha)</th><th>weight</th>"
                 "<th>labelled points</th></tr>")
    for s in report["strata"]:
        parts.append(f"<tr><td class='l'>{e(s['name'])}</td><td>{s['pixels']}</td><td>{_ha(s['area_ha'])}</td>"
                     f"<td>{s['weight']:.4f}</td><td>{s['points']}</td></tr>")
    parts.append("</table>")
    if report["warnings"]:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li class='warn'>{e(w)}</li>" for w in report["warnings"])
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_outputs(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path, Path]:
    """Write the three outputs into ``out_dir``; none replaces an earlier file unless all were written."""
    texts = {"json": json.dumps(report, indent=2), "html": format_html(report), "csv": format_csv(report)}
    make_folder(out_dir)
    paths = {k: out_dir / NAMES[k] for k in NAMES}
    with contextlib.ExitStack() as stack:
        for k, text in texts.items():
            tmp = stack.enter_context(atomic_path(paths[k]))
            tmp.write_text(text, encoding="utf-8")
    return paths["json"], paths["html"], paths["csv"]
