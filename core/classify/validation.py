"""Independent validation: reference points or polygons that never train anything, scored on the map's own features.

Blocked cross-validation on hand-picked, clustered training points measures how well a classifier recovers
places like the ones someone chose as examples; reference samples collected independently (ideally a
stratified random sample of the map, Olofsson et al. 2014, "Good practices for estimating area and assessing
accuracy of land change", Remote Sensing of Environment) measure the map. They are read by the same vector
reader as the training samples, become pixels of the same grid, and get their features from the same
:class:`~core.classify.pixelmap.FeatureSource` that makes the map, so a validation pixel is classified exactly
as the map classifies it. Accuracy, kappa, per-class F1 and the confusion matrix come from
:func:`core.classify.report.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SoftConError
from ..geo.samples import PixelSamples, rasterize_samples, Samples
from .report import metrics


@dataclass
class Validation:
    """Validation pixels with their classes (indices into the training classes) and their map features."""

    path: str
    samples: PixelSamples
    labels: np.ndarray  # (M,) index into the training class names
    features: np.ndarray  # (M, F) the full feature spec's features
    n_features: int  # points or polygons kept
    overlap: int  # validation pixels that are also training pixels

    def score(self, classifier: Any, columns: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
        """Metrics of ``classifier`` (fitted on the feature ``columns``) on these pixels."""
        pred = np.asarray(classifier.predict_proba(self.features[:, columns])).argmax(1)
        self.last_correct = pred == self.labels  # for paired comparisons of candidates
        out = metrics(self.labels, pred, class_names)
        out.update(path=self.path, n_features=self.n_features, geometry=self.samples.geometry_type,
                   accuracy_ci95=wilson(out["overall_accuracy"], out["n_validated"]))
        return out


def read_validation(samples: Samples, class_names: Sequence[str], source: Any, train: PixelSamples,
                    max_pixels_per_polygon: int = 200, seed: int = 0) -> Validation:
    """Validation samples (their class field named) as pixels of ``source``'s grid with their features.

    Raises:
        SoftConError: no usable validation sample, or a class the training samples do not have (the map
            cannot contain it, so its reference samples could only count as errors).
    """
    path, label_field = samples.path, samples.field
    vec = samples.read()
    g = source.grid
    px = rasterize_samples(vec, g.transform, (g.height, g.width), g.crs, None, max_pixels_per_polygon, seed=seed,
                           check=False)
    unknown = sorted(set(px.class_names) - set(class_names))
    if unknown:
        raise SoftConError(
            f"The validation samples in {Path(path).name} hold class(es) {', '.join(map(repr, unknown))} that no "
            f"training sample has, so the map cannot show them. Use the training samples' class names "
            f"({', '.join(map(repr, class_names))}) in the field {label_field!r}, or add training samples.")
    index = {n: i for i, n in enumerate(class_names)}
    labels = np.array([index[px.class_names[k]] for k in px.labels], dtype=np.int64)
    feats, ok = source.sample(px.rows, px.cols)
    if not ok.any():
        raise SoftConError(f"None of the validation samples in {Path(path).name} falls on valid raster pixels; "
                           f"check that they cover the raster.")
    kept = PixelSamples(px.rows[ok], px.cols[ok], labels[ok], px.groups[ok], list(class_names),
                        len(set(px.groups[ok].tolist())), px.dropped, px.geometry_type)
    train_keys = set((train.rows * g.width + train.cols).tolist())
    overlap = int(sum(k in train_keys for k in (kept.rows * g.width + kept.cols).tolist()))
    return Validation(str(path), kept, labels[ok], feats[ok], kept.n_features, overlap)


def warnings_for(validation: Validation, chosen_on_it: bool, n_candidates: int) -> list[str]:
    """What a reader of the validation figure must know."""
    out = []
    if validation.overlap:
        out.append(f"{validation.overlap} validation pixel(s) are also training pixels: the validation accuracy is "
                   f"optimistic; validation samples should be collected independently of the training samples.")
    if chosen_on_it and n_candidates > 1:
        out.append(f"Method and features were chosen by their accuracy on the validation samples (among "
                   f"{n_candidates} combinations), which makes the validation figure slightly optimistic; an "
                   f"untouched second sample gives an unbiased one.")
    return out


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion ``p`` observed on ``n`` samples (sound near 0 and 1)."""
    if n == 0:
        return [0.0, 1.0]
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]
