"""Assess a class map from a labelled validation sample: the design, the estimates, the outputs.

The design is read from the sample itself. Strata recorded as the map's classes, with the map's own pixel counts,
give the estimators of Olofsson et al. (2014); strata that differ from the map's classes (a sample drawn on an
earlier map, or on other strata) give Stehman's (2014), with the stratum sizes the file records; a sample without
strata is one stratum, the whole map (simple random or systematic sampling). Nothing is written until the whole
sample has been read and checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SoftConError
from ..io.writer import check_folder
from ..progress import Progress
from .classmap import ClassMap, read_class_map
from .estimation import Estimates, estimate
from .layer import REFERENCE, STRATUM
from .reference import LabelledSample, read_labelled_sample
from .report import build_report, write_outputs


@dataclass(frozen=True)
class Design:
    """The strata of the estimate: a name and pixel count each, and the stratum index of every labelled point."""

    estimator: str            # "olofsson2014" or "stehman2014"
    description: str
    names: list[str]
    sizes: np.ndarray
    strata: np.ndarray


@dataclass
class AssessResult:
    """What :func:`assess_accuracy` wrote, and the report (the content of ``accuracy.json``)."""

    json: Path
    html: Path
    csv: Path
    report: dict = field(default_factory=dict)


def design_of(cmap: ClassMap, sample: LabelledSample, stratum_field: str | None) -> Design:
    """The estimator and strata that match how the sample was drawn (see the module docstring)."""
    counts = np.asarray(cmap.counts)
    if sample.strata is None:
        return Design("stehman2014", "no strata recorded: one stratum, the whole map (simple random or systematic "
                      "sampling)", ["whole map"], np.array([cmap.total]), np.zeros(len(sample.mapped), np.int64))
    if "" in sample.all_strata:
        raise SoftConError(f"Some points of the sample have no stratum (field {stratum_field!r} empty); fill it in, "
                           "or name no stratum field to treat the sample as unstratified.")
    as_class, _ = cmap.index_of(sample.strata)
    recorded = sample.stratum_pixels or {}
    recorded_class = dict(zip(recorded, cmap.index_of(list(recorded))[0]))
    same_sizes = all(k >= 0 and counts[k] == recorded[s] for s, k in recorded_class.items())
    if np.array_equal(as_class, sample.mapped) and same_sizes:
        present = np.nonzero(counts > 0)[0]
        remap = np.full(len(counts), -1)
        remap[present] = np.arange(len(present))
        return Design("olofsson2014", f"strata = the map's classes (field {stratum_field!r})",
                      [cmap.names[i] for i in present], counts[present], remap[sample.mapped])
    if not recorded:
        raise SoftConError(
            f"The sample's strata (field {stratum_field!r}) differ from the map's classes at "
            f"{int((as_class != sample.mapped).sum())} labelled points, so the map's pixel counts are not the strata's "
            f"sizes. Add a field {'stratum_pixels'!r} holding the pixels of each point's stratum (Create validation "
            "sample writes it), or assess the map the sample was drawn on.")
    names = sample.all_strata
    index = {s: i for i, s in enumerate(names)}
    return Design("stehman2014", f"strata recorded in the field {stratum_field!r}, different from the map's classes",
                  names, np.array([recorded[s] for s in names]), np.array([index[s] for s in sample.strata]))


def check_strata(design: Design, skipped_unlabelled: int) -> None:
    """Every stratum needs 2 labelled points (its variance) unless all its pixels were labelled."""
    n_h = np.bincount(design.strata, minlength=len(design.names))
    few = [f"{name!r} ({n})" for name, n, size in zip(design.names, n_h, design.sizes) if n < 2 and n < size]
    if few:
        hint = f" ({skipped_unlabelled} points are still unlabelled)" if skipped_unlabelled else ""
        raise SoftConError(
            f"Strata with fewer than 2 labelled points on the map: {', '.join(few)}. A stratum's variance needs at "
            f"least 2; label more of its points{hint}, or draw a sample that gives each class enough "
            "(Create validation sample, --min-per-class).")


def assess_accuracy(map_path: str | Path, sample_path: str | Path, out_dir: str | Path,
                    reference_field: str = REFERENCE, stratum_field: str | None = STRATUM,
                    layer: str | int | None = None, progress: Progress | None = None) -> AssessResult:
    """Accuracy (overall, user's, producer's) and area of each class, with 95 % confidence intervals.

    Args:
        map_path: the class raster that was sampled.
        sample_path: the labelled sample (points; any vector format and CRS).
        out_dir: receives ``accuracy.json``, ``accuracy.html`` and ``error_matrix.csv``.
        reference_field: the field holding the reference class (name or code) of each point.
        stratum_field: the field recording each point's stratum (None or absent: no strata).
    """
    progress = progress or Progress()
    out_dir = Path(out_dir)
    check_folder(out_dir)
    cmap = read_class_map(map_path, progress)
    sample = read_labelled_sample(sample_path, reference_field, cmap, stratum_field, layer)
    design = design_of(cmap, sample, stratum_field)
    check_strata(design, sample.skipped.get("unlabelled", 0))
    est: Estimates = estimate(design.strata, sample.mapped, sample.reference, design.sizes, len(cmap.values))
    report = build_report(cmap, sample, design, est, sample_path=str(sample_path), reference_field=reference_field)
    paths = write_outputs(out_dir, report)
    return AssessResult(*paths, report=report)
