"""Training samples: labelled points or polygons from a vector file, turned into raster pixels.

Vectors are read with pyogrio (GeoPackage, Shapefile, GeoJSON and anything else its GDAL reads), in
any CRS, and reprojected to the raster's CRS with GDAL (through rasterio) + shapely. A point gives the pixel it falls
in; a polygon gives the pixels whose centres it covers (``rasterio.features.rasterize``), at most
``max_pixels_per_polygon`` of them drawn at random, so that one large polygon cannot outweigh many
small ones; a polygon too small to cover a pixel centre gives the pixel under its centroid.
Samples outside the raster or on nodata are dropped and counted, so the report can say so.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import shapely
from pyogrio.raw import read
from rasterio.features import rasterize
from rasterio.windows import transform as window_transform, Window

from ..errors import SoftConError
from .crs import reproject

MIN_PER_CLASS = 2  # fewer cannot be cross-validated; 10+ per class is advisable


@dataclass(frozen=True)
class Samples:
    """Where labelled samples are: a vector file, the attribute holding each sample's class, and the layer of a
    multi-layer file. A map's training samples and its validation samples are named alike, so the three always
    travel together.

    Attributes:
        path: points or polygons (GeoPackage, Shapefile, GeoJSON...), any CRS.
        field: the class attribute (text or integer); None for validation samples means the training samples'
            field (:meth:`labelled_by`).
        layer: layer name or index in a multi-layer file (None: the first).
    """

    path: str | os.PathLike
    field: str | None = None
    layer: str | int | None = None

    def labelled_by(self, field: str) -> "Samples":
        """These samples, with ``field`` as their class attribute unless they name their own."""
        return self if self.field else dataclasses.replace(self, field=field)

    def read(self) -> "VectorSamples":
        """The geometries and classes (:func:`read_vector`)."""
        return read_vector(self.path, self.field, self.layer)


@dataclass
class VectorSamples:
    """Features of a vector layer: shapely geometries (N,), their labels as text, CRS (WKT or None)."""

    geometries: np.ndarray
    labels: list[str]
    crs: str | None
    fids: np.ndarray
    path: str = ""


@dataclass
class PixelSamples:
    """Training pixels on a raster grid.

    Attributes:
        rows, cols: pixel indices (M,) into the raster.
        labels: class index (M,) into ``class_names``.
        groups: index (M,) of the feature each pixel came from (pixels of one polygon share it).
        dropped: counts of features dropped by reason (``outside``, ``nodata``, ``empty``, ...).
    """

    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    class_names: list[str]
    n_features: int
    dropped: dict[str, int] = field(default_factory=dict)
    geometry_type: str = "point"

    def counts(self) -> dict[str, int]:
        """Training pixels per class name."""
        c = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, c)}

    def feature_counts(self) -> dict[str, int]:
        """Features (points / polygons) per class name that gave at least one pixel."""
        seen: dict[int, int] = {}
        for g, lab in zip(self.groups, self.labels):
            seen[int(g)] = int(lab)
        c = Counter(seen.values())
        return {name: int(c.get(i, 0)) for i, name in enumerate(self.class_names)}


def _label_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if np.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def read_vector(path: str | Path, label_field: str | None, layer: str | int | None = None,
                what: str = "training samples") -> VectorSamples:
    """Read geometries and the ``label_field`` of a GeoPackage / Shapefile / GeoJSON layer.

    ``label_field=None`` reads the geometries whatever the fields, labelled by feature id (reference
    features of a similarity map); ``what`` names the layer in errors.

    Raises:
        SoftConError: file missing or unreadable, unknown field (the message lists the fields).
    """
    path = Path(path)
    if not path.exists():
        raise SoftConError(f"{what[0].upper()}{what[1:]} file {path} not found.")
    try:
        meta, fids, wkb, fields = read(path, layer=layer, return_fids=True,
                                       columns=[] if label_field is None else None)
    except Exception as e:  # pyogrio raises its own DataSourceError / DataLayerError / ...
        raise SoftConError(f"Cannot read {what} from {path}: {e}") from None
    if label_field is None:
        return VectorSamples(shapely.from_wkb(wkb), [str(f) for f in fids], meta.get("crs"), np.asarray(fids),
                             str(path))
    if wkb is None or meta.get("geometry_type") in (None, "None"):
        raise SoftConError(
            f"{path.name} holds no geometries (a table such as a CSV?). Training samples must be points or "
            f"polygons: save them as a GeoPackage, Shapefile or GeoJSON (in QGIS: add the CSV as a delimited "
            f"text layer with its X/Y fields, then Export > Save Features As)."
        )
    names = [str(f) for f in meta["fields"]]
    if len(fids) == 0:
        raise SoftConError(f"The samples layer {path.name} holds no features; add training points or polygons "
                           f"(each with its class in a field) and save the layer.")
    if label_field not in names:
        lower = {n.lower(): n for n in names}
        if label_field.lower() in lower:
            label_field = lower[label_field.lower()]
        else:
            raise SoftConError(
                f"The samples layer {path.name} has no field {label_field!r}. "
                f"Its fields are: {', '.join(names) or '(none)'}. Pass one of them as the label field."
            )
    values = fields[names.index(label_field)]
    geoms = shapely.from_wkb(wkb) if len(wkb) else np.array([], dtype=object)
    return VectorSamples(geoms, [_label_text(v) for v in values], meta.get("crs"), np.asarray(fids), str(path))


def _class_order(labels: Sequence[str]) -> list[str]:
    """Class names in a stable order: numeric if all labels are numbers, else first appearance."""
    uniq = list(dict.fromkeys(labels))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def rasterize_samples(
    vec: VectorSamples,
    transform,
    shape: tuple[int, int],
    crs,
    valid: np.ndarray | None = None,
    max_pixels_per_polygon: int = 200,
    min_per_class: int = MIN_PER_CLASS,
    seed: int = 0,
    check: bool = True,
) -> PixelSamples:
    """Turn labelled features into training pixels of a raster grid.

    Args:
        vec: features from :func:`read_vector`.
        transform, shape, crs: the raster grid (affine, (H, W), CRS) the samples index.
        valid: (H, W) bool, True where the raster holds data; None = all valid.
        max_pixels_per_polygon: random subset of a polygon's pixels (balances large vs small).
        check: stop when a class has fewer than ``min_per_class`` features (:func:`check_counts`).

    Raises:
        SoftConError: no usable samples, fewer than two classes, or a class with too few samples.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    if crs is None and vec.crs is not None:
        raise SoftConError(
            "The raster has no coordinate reference system, so the training samples cannot be placed on it. "
            "Assign one (e.g. gdal_edit.py -a_srs EPSG:32632 FILE, or Layer Properties > Source in QGIS) and try again."
        )
    geoms = reproject(vec.geometries, vec.crs, crs)
    dropped: Counter = Counter()
    rows, cols, labs, groups = [], [], [], []
    inv = ~transform
    types = set()
    for i, (g, lab) in enumerate(zip(geoms, vec.labels)):
        if lab is None:
            dropped["no label"] += 1
            continue
        if g is None or shapely.is_empty(g):
            dropped["empty geometry"] += 1
            continue
        gtype = shapely.get_type_id(g)
        if gtype in (0, 4):  # Point, MultiPoint
            types.add("point")
            pts = shapely.get_coordinates(g)
            c, r = inv @ (pts[:, 0], pts[:, 1])
            rr, cc = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
        elif gtype in (3, 6):  # Polygon, MultiPolygon
            types.add("polygon")
            minx, miny, maxx, maxy = shapely.bounds(g)
            c0, r0 = inv @ (minx, maxy)
            c1, r1 = inv @ (maxx, miny)
            rlo, rhi = max(int(np.floor(min(r0, r1))), 0), min(int(np.ceil(max(r0, r1))), h)
            clo, chi = max(int(np.floor(min(c0, c1))), 0), min(int(np.ceil(max(c0, c1))), w)
            if rlo >= rhi or clo >= chi:
                rr = cc = np.array([-1])
            else:
                win = Window(clo, rlo, chi - clo, rhi - rlo)
                m = rasterize([(g, 1)], out_shape=(rhi - rlo, chi - clo), transform=window_transform(win, transform),
                              fill=0, dtype="uint8").astype(bool)
                rr, cc = np.nonzero(m)
                rr, cc = rr + rlo, cc + clo
                if rr.size == 0:  # smaller than a pixel: use the pixel under its centroid
                    c, r = inv @ tuple(shapely.get_coordinates(shapely.centroid(g))[0])
                    rr, cc = np.array([int(np.floor(r))]), np.array([int(np.floor(c))])
        else:
            raise SoftConError(
                f"Training samples must be points or polygons; feature {vec.fids[i]} is a "
                f"{g.geom_type}. Convert lines to polygons or points first."
            )
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        if not inside.any():
            dropped["outside the raster"] += 1
            continue
        rr, cc = rr[inside], cc[inside]
        if valid is not None:
            ok = valid[rr, cc]
            if not ok.any():
                dropped["on nodata"] += 1
                continue
            rr, cc = rr[ok], cc[ok]
        if rr.size > max_pixels_per_polygon:
            keep = rng.choice(rr.size, max_pixels_per_polygon, replace=False)
            rr, cc = rr[np.sort(keep)], cc[np.sort(keep)]
        rows.append(rr)
        cols.append(cc)
        labs.extend([lab] * rr.size)
        groups.append(np.full(rr.size, i))
    n_kept = len(rows)
    if n_kept == 0:
        why = ", ".join(f"{n} {k}" for k, n in dropped.items()) or "the layer is empty"
        if set(dropped) == {"no label"}:
            raise SoftConError(f"None of the {len(vec.labels)} training samples in {Path(vec.path).name} has a class: "
                               f"the label field is empty in every feature. Fill it in, or choose the field that "
                               f"holds the classes.")
        raise SoftConError(
            f"None of the {len(vec.labels)} training samples in {Path(vec.path).name} fall on valid raster "
            f"pixels ({why}). Check that the samples cover the raster (and that their layer CRS is right)."
        )
    rows_a, cols_a, groups_a = np.concatenate(rows), np.concatenate(cols), np.concatenate(groups)
    # Points of one class in the same pixel add nothing but weight: keep one.
    key = rows_a * w + cols_a
    lab_arr = np.asarray(labs, dtype=object)
    lab_idx = np.unique(lab_arr.astype(str), return_inverse=True)[1]
    _, first = np.unique(key * (lab_idx.max() + 1) + lab_idx, return_index=True)
    first = np.sort(first)
    if first.size < key.size and "polygon" not in types:
        dropped["duplicate point in one pixel"] += int(key.size - first.size)
    rows_a, cols_a, groups_a, lab_arr = rows_a[first], cols_a[first], groups_a[first], lab_arr[first]
    names = _class_order(list(lab_arr))
    index = {n: j for j, n in enumerate(names)}
    labels = np.array([index[v] for v in lab_arr], dtype=np.int64)
    out = PixelSamples(rows_a, cols_a, labels, groups_a, names, n_kept, dict(dropped),
                       "+".join(sorted(types)) or "point")
    if check:
        check_counts(out, min_per_class)
    return out


def drop_invalid(samples: PixelSamples, ok: np.ndarray, min_per_class: int = MIN_PER_CLASS) -> PixelSamples:
    """Keep the pixels where ``ok`` (M,) is True; features that lose all their pixels count as dropped."""
    if ok.all():
        return samples
    before, after = set(samples.groups.tolist()), set(samples.groups[ok].tolist())
    dropped = dict(samples.dropped)
    if before - after:
        dropped["on nodata"] = dropped.get("on nodata", 0) + len(before - after)
    if not ok.any():
        raise SoftConError("All training samples fall on nodata pixels of the raster; move them onto valid data.")
    out = PixelSamples(samples.rows[ok], samples.cols[ok], samples.labels[ok], samples.groups[ok],
                       samples.class_names, len(after), dropped, samples.geometry_type)
    check_counts(out, min_per_class)
    return out


def check_counts(samples: PixelSamples, min_per_class: int = MIN_PER_CLASS) -> None:
    """Stop with a clear message when fewer than two classes, or a class with too few samples."""
    if len(samples.class_names) < 2:
        raise SoftConError(
            f"Only one class ({samples.class_names[0]!r}) among the usable training samples; "
            f"a classification needs at least two classes."
        )
    feats = samples.feature_counts()
    few = {n: c for n, c in feats.items() if c < min_per_class}
    if few:
        listing = ", ".join(f"{n!r}: {c}" for n, c in few.items())
        raise SoftConError(
            f"Too few usable training samples for class(es) {listing} (at least {min_per_class} points or "
            f"polygons per class are needed, 10 or more are advisable). Add samples for these classes "
            f"or remove them from the layer"
            + (" (or, for a class with one, train without cross-validation: --cv-folds 0)." if min_per_class == 2
               else ".")
            + (f" Dropped: {', '.join(f'{n} {k}' for k, n in samples.dropped.items())}." if samples.dropped else "")
        )
