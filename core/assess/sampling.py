"""A stratified random sample of a class map, one point per pixel centre, the strata being the map's classes.

Sample size from the target standard error of overall accuracy (Olofsson et al. 2014, eq. 13); allocation
with a minimum per class, the rest proportional to area (proportional allocation alone would leave a 1 % class
a handful of points and its user's accuracy unknown). Pixels are drawn without replacement, reproducibly from
a seed, in two passes over the map that hold one strip in memory: count the pixels of each class, then pick the
chosen ordinals of each class as the strips go by.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import SoftConError
from ..io.raster import gdal_env
from ..io.writer import check_folder, make_folder
from ..progress import Progress
from .classmap import ClassMap, open_class_map, read_class_map, read_strip, strips
from .layer import write_sample_layer

MIN_PER_CLASS = 20       # Olofsson et al. (2014) suggest 50 or more for a class whose user's accuracy matters
EXPECTED_UA = 0.85       # the user's accuracy a class is expected to reach, when nothing better is known
TARGET_SE = 0.015        # standard error of overall accuracy aimed at: a 95 % interval of about +- 0.03


def sample_size(weights: np.ndarray, expected_ua: np.ndarray, target_se: float, total: int | None = None) -> int:
    """Olofsson et al. (2014), eq. 13: n = (sum W_i S_i)^2 / (S(O)^2 + sum W_i S_i^2 / N), S_i = sqrt(U_i (1 - U_i)).

    Args:
        weights: (K,) area share of each class; expected_ua: (K,) expected user's accuracies.
        target_se: the standard error of overall accuracy aimed at, S(O).
        total: N, pixels of the map (None: infinite).
    """
    u = np.asarray(expected_ua, float)
    if not (0 < target_se < 1) or not np.all((u > 0) & (u < 1)):  # written so that NaN fails too
        raise SoftConError("Expected user's accuracies and the target standard error must lie strictly between 0 "
                           f"and 1 (got {np.unique(u).tolist()} and {target_se}).")
    w = np.asarray(weights, float)
    s = np.sqrt(u * (1 - u))
    den = target_se ** 2 + ((w * s ** 2).sum() / total if total else 0.0)
    return int(math.ceil((w * s).sum() ** 2 / den))


def allocate(size: int, counts: np.ndarray, min_per_class: int = MIN_PER_CLASS) -> np.ndarray:
    """Points per class: at least ``min_per_class`` (or every pixel of a smaller class), the rest in proportion
    to area. Integers that sum to ``size`` (rounded by largest remainder).

    Raises:
        SoftConError: ``size`` is below what the minimum needs.
    """
    counts = np.asarray(counts, np.int64)
    floor = np.minimum(min_per_class, counts)
    if size < floor.sum():
        present = int((counts > 0).sum())
        raise SoftConError(f"A sample of {size} points cannot give each of the {present} mapped classes "
                           f"{min_per_class} points; ask for at least {int(floor.sum())} (--size) or lower "
                           f"--min-per-class.")
    if size >= counts.sum():
        return counts.copy()
    fixed = np.zeros(len(counts), bool)        # classes held at their floor (or at all their pixels)
    value = np.zeros(len(counts), float)
    while True:
        free = ~fixed & (counts > 0)
        if not free.any():
            break
        share = (size - value[fixed].sum()) * counts / counts[free].sum()
        low, high = free & (share < floor), free & (share > counts)
        if not (low.any() or high.any()):
            value[free] = share[free]
            break
        value[low], value[high] = floor[low], counts[high]
        fixed |= low | high
    out = np.floor(value).astype(np.int64)
    order = np.argsort(-(value - out), kind="stable")
    out[order[: size - out.sum()]] += 1
    return out


@dataclass
class Sample:
    """A drawn sample: pixel (rows, cols) and class index of each point, in random order."""

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    allocation: np.ndarray


def draw(path: str | Path, cmap: ClassMap, allocation: np.ndarray, seed: int = 0,
         progress: Progress | None = None) -> Sample:
    """Stratified random pixels: ``allocation[k]`` distinct pixels of class k, every pixel of a class equally likely."""
    progress = progress or Progress()
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(n, a, replace=False)) if a < n else np.arange(n)
              for n, a in zip(cmap.counts, allocation)]
    seen = np.zeros(len(chosen), np.int64)     # pixels of each class in the strips read so far
    rows, cols, classes = [], [], []
    with gdal_env(), open_class_map(path) as ds:
        parts = strips(ds)
        for s, (row, nrows) in enumerate(parts):
            progress.check()
            data, valid = read_strip(ds, row, nrows)
            for k, v in enumerate(cmap.values):
                if not len(chosen[k]):
                    continue
                here = valid & (data == v)
                n_here = int(here.sum())
                lo, hi = np.searchsorted(chosen[k], [seen[k], seen[k] + n_here])
                if hi > lo:
                    r, c = np.divmod(np.flatnonzero(here)[chosen[k][lo:hi] - seen[k]], ds.width)
                    rows.append(r + row)
                    cols.append(c)
                    classes.append(np.full(hi - lo, k))
                seen[k] += n_here
            progress.update(s + 1, len(parts), "drawing the sample")
    if not np.array_equal(seen, cmap.counts):
        raise SoftConError(f"{Path(path).name} changed while it was being sampled; run again.")
    order = rng.permutation(int(sum(len(c) for c in classes)))  # a random labelling order, not class by class
    rows, cols, classes = (np.concatenate(a or [np.zeros(0, np.int64)])[order] for a in (rows, cols, classes))
    return Sample(rows, cols, classes, np.asarray(allocation))


@dataclass
class SampleResult:
    """What :func:`create_sample` wrote and why: the layer, its size, the allocation and the design."""

    path: Path
    size: int
    allocation: dict[str, int]
    design: dict = field(default_factory=dict)


def expected_ua_for(cmap: ClassMap, expected: float | Mapping[str, float]) -> np.ndarray:
    """(K,) expected user's accuracy of each class: one value for all, or a value per class name (others:
    :data:`EXPECTED_UA`)."""
    if not isinstance(expected, Mapping):
        return np.full(len(cmap.values), float(expected))
    idx, unknown = cmap.index_of(list(expected))
    if unknown:
        raise SoftConError(f"Expected user's accuracy given for {', '.join(map(repr, unknown))}, which the map does "
                           f"not have; its classes are: {', '.join(cmap.names)}.")
    u = np.full(len(cmap.values), EXPECTED_UA)
    u[idx] = list(expected.values())
    return u


def create_sample(map_path: str | Path, out_path: str | Path, size: int | None = None,
                  min_per_class: int = MIN_PER_CLASS, expected_ua: float | Mapping[str, float] = EXPECTED_UA,
                  target_se: float = TARGET_SE, seed: int = 0, progress: Progress | None = None) -> SampleResult:
    """Draw a stratified random validation sample of a class map and write it as a GeoPackage point layer.

    Args:
        map_path: integer class raster (the class raster of Classify, or any other).
        out_path: the ``.gpkg`` to write (replaced atomically when it exists).
        size: number of points; None: from eq. 13 with ``expected_ua`` and ``target_se``.
        min_per_class: the fewest points any class gets (a class with fewer pixels gets them all).
        seed: the same seed on the same map draws the same points.

    Returns:
        a :class:`SampleResult`. Nothing is written when an argument is invalid or the run is cancelled.
    """
    progress = progress or Progress()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".gpkg":
        raise SoftConError(f"The sample is written as a GeoPackage; give a .gpkg file name, not {out_path.name}.")
    if min_per_class < 2:
        raise SoftConError("--min-per-class must be at least 2: a stratum's variance needs two points.")
    if size is not None and size < 1:
        raise SoftConError(f"--size must be a positive number of points, not {size} (leave it out for eq. 13's).")
    if seed < 0:
        raise SoftConError(f"--seed must be 0 or more, not {seed}.")
    check_folder(out_path.parent)
    cmap = read_class_map(map_path, progress)
    strata = np.asarray(cmap.counts) > 0
    ua = expected_ua_for(cmap, expected_ua)
    eq13 = sample_size(cmap.weights[strata], ua[strata], target_se, cmap.total)
    n = int(size) if size is not None else eq13
    alloc = allocate(n, np.asarray(cmap.counts), min_per_class)
    design = {"size": int(alloc.sum()), "size_from_eq13": eq13, "size_given": size, "target_se": target_se,
              "expected_ua": dict(zip(cmap.names, ua.tolist())), "min_per_class": min_per_class, "seed": seed}
    why = "" if size is not None else (f" (Olofsson et al. 2014 eq. 13: standard error of overall accuracy "
                                       f"{target_se} with expected user's accuracies {sorted(set(ua.tolist()))})")
    progress.log(f"{cmap.total} mapped pixels in {int(strata.sum())} classes; sample of {int(alloc.sum())} points{why}")
    sample = draw(map_path, cmap, alloc, seed, progress)
    make_folder(out_path.parent)
    write_sample_layer(out_path, cmap, sample.rows, sample.cols, sample.classes)
    allocation = {name: int(a) for name, a, present in zip(cmap.names, alloc, strata) if present}
    for name, a in allocation.items():
        progress.log(f"  {name}: {a} points")
    return SampleResult(out_path, int(alloc.sum()), allocation, design)
