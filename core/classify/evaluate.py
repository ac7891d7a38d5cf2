"""Which method and features to map with, and how accurate the map is: blocked CV with a block size taken from the
data, independent validation samples when given, and how far the training points' figure reaches.

:func:`evaluate` runs the comparison of :mod:`.selection` on the training features (and the validation
features), picks the map's method and features, and gathers what the report must say about the figure it
headlines (:mod:`.spatial`, :mod:`.validation`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..progress import Progress
from .report import format_table, TrainingSet
from .selection import compare, pick, table_rows
from .spatial import autocorrelation_range, sample_spread
from .spec import FitSpec
from .validation import Validation, warnings_for


@dataclass
class Evaluation:
    """The comparison's rows, the chosen (features, method), the CV result of the chosen row (with the table), and
    the block size with where it came from."""

    rows: list[dict[str, Any]]
    chosen: tuple[str, str]
    cv: dict[str, Any] | None
    block_m: float
    block: dict[str, Any]
    spread: dict[str, Any]
    selected_by: str
    table: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def block_size(emb_ds: Any, given_m: float | None, window_m: float, pixel_m: float, seed: int = 0) -> dict[str, Any]:
    """CV block side: ``given_m``, else the embedding's autocorrelation range, at least two window footprints
    (so that no validation pixel shares model input with a training pixel) and five embedding pixels."""
    floor = max(2 * window_m, 5 * pixel_m)
    if given_m:
        return {"block_m": float(given_m), "source": "given"}
    rng = autocorrelation_range(emb_ds, pixel_m, seed)
    return {"block_m": float(max(rng["range_m"], floor)), "source": "variogram", "floor_m": floor, **rng}


def evaluate(emb_ds: Any, train: TrainingSet, pairs: Sequence[tuple[str, str]], others: Sequence[tuple[str, str]],
             fit: FitSpec, block: dict[str, Any], progress: Progress | None = None,
             validation: Validation | None = None) -> Evaluation:
    """Compare ``pairs`` (the candidates) and ``others`` (shown for comparison only) by blocked CV (``fit``'s folds,
    parameters and seed; blocks as :func:`block_size` chose them) and on ``validation``; the best candidate on the
    validation samples when given, else by CV, is the map's. ``train`` holds the full feature spec's features."""
    progress = progress or Progress()
    folds = fit.cv_folds
    block_m = block["block_m"]
    spread = sample_spread(train.xy, train.groups, emb_ds, block_m)
    rows: list[dict[str, Any]] = []
    if folds >= 2 or validation is not None:
        what = [f"spatially blocked {folds}-fold cross-validation (blocks of {block_m:.0f} m)"] if folds >= 2 else []
        if validation is not None:
            what.append(f"{validation.samples.n_features} validation samples")
        progress.log(f"{' and '.join(what).capitalize()}, {len(pairs)} method/feature combination(s):")
        rows = compare(train, list(pairs) + list(others), fit, block_m, progress, validation)
    candidates = [r for r in rows if (r["features"], r["method"]) in pairs]
    best = pick(candidates) if candidates else None
    chosen = (best["features"], best["method"]) if best else tuple(pairs[0])
    selected_by = "validation" if validation is not None and best else ("cross_validation" if best else "none")
    table = table_rows(rows, best) if best is not None else []
    cv = None
    if best is not None and best["cv"] is not None:
        cv = best["cv"]
        cv["method_comparison"] = table
    if table:
        progress.log(format_table(table))
    notes = warnings_for(validation, selected_by == "validation", len(candidates)) if validation is not None else []
    return Evaluation(rows, chosen, cv, block_m, block, spread, selected_by, table, notes)
