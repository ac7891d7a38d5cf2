"""The labelled validation sample, read against the map it assesses.

Points in any CRS are reprojected onto the map (``core.geo.crs``); each gets the map's class at its pixel.
Points outside the map or on nodata are reported and left out; unlabelled points are skipped and counted;
reference labels must be map classes (by name, case aside, or by code), else one error names them all.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyogrio import list_layers, read_info
from pyogrio.errors import DataLayerError, DataSourceError

from ..errors import SoftConError
from ..geo.crs import reproject
from ..geo.samples import read_vector
from .classmap import ClassMap, values_at
from .layer import LAYER, STRATUM, STRATUM_PIXELS


@dataclass
class LabelledSample:
    """Labelled points that fall on mapped pixels.

    Attributes:
        mapped, reference: (n,) class index (into the map's legend) of the map and of the reference label.
        strata: (n,) stratum label as the file records it, or None when it records none.
        stratum_pixels: stratum label -> pixels, when the file records them (``stratum_pixels``).
        read: points in the file; skipped: why points were left out -> how many.
    """

    mapped: np.ndarray
    reference: np.ndarray
    strata: list[str] | None
    stratum_pixels: dict[str, int] | None
    read: int
    skipped: dict[str, int] = field(default_factory=dict)
    all_strata: list[str] = field(default_factory=list)


def pick_layer(path: Path, layer: str | int | None) -> str | int | None:
    """The layer to read: the one given, else the sample layer, else the first one that is not QGIS's styles."""
    if layer not in (None, ""):
        return layer
    try:
        names = [str(n) for n, _ in list_layers(path)]
    except (DataSourceError, DataLayerError):  # read_vector reports an unreadable file clearly
        return None
    if LAYER in names:
        return LAYER
    data = [n for n in names if n != "layer_styles"]
    return data[0] if data else None


def _field(path: Path, layer, name: str | None) -> str | None:
    """The file's spelling of field ``name`` (case-insensitive), or None when it has none."""
    if not name:
        return None
    try:
        fields = [str(f) for f in read_info(path, layer=layer)["fields"]]
    except (DataSourceError, DataLayerError):  # unreadable: read_vector has already said why
        return None
    return {f.casefold(): f for f in fields}.get(name.casefold())


def read_labelled_sample(path: str | Path, reference_field: str, cmap: ClassMap, stratum_field: str | None = "stratum",
                         layer: str | int | None = None) -> LabelledSample:
    """Read the points of ``path``, their reference labels and strata, and the map's class under each.

    Raises:
        SoftConError: unreadable file, missing reference field, a stratum field named (other than the default)
            but missing, geometries that are not points, reference labels that are not map classes, CRS missing
            on one side only, no labelled point on the map.
    """
    path = Path(path)
    layer = pick_layer(path, layer)
    vec = read_vector(path, reference_field, layer, what="validation sample")
    n = len(vec.geometries)
    stratum_name = _field(path, layer, stratum_field)
    if stratum_field and stratum_name is None and stratum_field.casefold() != STRATUM:
        raise SoftConError(f"The validation sample {path.name} has no stratum field {stratum_field!r}; name the "
                           "field that records each point's stratum, or none (--stratum-field '') for a sample "
                           "that is not stratified.")
    strata = read_vector(path, stratum_name, layer, what="validation sample").labels if stratum_name else None
    pixels_name = _field(path, layer, STRATUM_PIXELS) if stratum_name else None
    pixels = read_vector(path, pixels_name, layer, what="validation sample").labels if pixels_name else None

    types = set(shapely.get_type_id(vec.geometries[~shapely.is_empty(vec.geometries)]).tolist()) if n else set()
    if types - {0}:
        raise SoftConError(f"The validation sample {path.name} holds geometries other than points; an accuracy "
                           "assessment samples pixels, one point each (e.g. from Create validation sample).")
    ref_idx, unknown = cmap.index_of(vec.labels)
    if unknown:
        raise SoftConError(
            f"Reference labels that are not classes of the map: {', '.join(map(repr, unknown))}. The map's classes "
            f"are: {', '.join(cmap.names)} (codes {', '.join(map(str, cmap.values))}); correct the labels in the "
            f"field {reference_field!r}.")
    if vec.crs is not None and cmap.crs is None:
        raise SoftConError("The map has no coordinate reference system, so the sample's points cannot be placed on "
                           "it. Assign one to the map (gdal_edit.py -a_srs EPSG:... FILE).")
    geoms = reproject(vec.geometries, vec.crs, cmap.crs)
    xy = np.full((n, 2), np.nan)
    ok = ~shapely.is_empty(geoms) if n else np.zeros(0, bool)
    xy[ok] = shapely.get_coordinates(geoms[ok])
    c, r = ~cmap.transform @ (xy[:, 0], xy[:, 1])
    with np.errstate(invalid="ignore"):
        rows, cols = np.floor(r), np.floor(c)
        inside = ok & (rows >= 0) & (rows < cmap.height) & (cols >= 0) & (cols < cmap.width)
    labelled = np.array([s is not None for s in vec.labels], bool)
    skipped: Counter = Counter()
    skipped["unlabelled"] = int((~labelled).sum())
    skipped["outside the map"] = int((labelled & ~inside).sum())
    codes, valid = np.zeros(n, np.int64), np.zeros(n, bool)
    look = labelled & inside
    codes[look], valid[look] = values_at(cmap.path, rows[look].astype(np.int64), cols[look].astype(np.int64))
    skipped["on nodata"] = int((look & ~valid).sum())
    use = look & valid
    if not use.any():
        raise SoftConError(
            f"No labelled point of {path.name} lies on a mapped pixel ({n} points: {_reasons(skipped)}). Label the "
            f"points in the field {reference_field!r}, and check that the sample was drawn on this map.")
    code_index = {v: i for i, v in enumerate(cmap.values)}
    return LabelledSample(
        mapped=np.array([code_index[v] for v in codes[use]], np.int64),
        reference=ref_idx[use],
        strata=[strata[i] or "" for i in np.nonzero(use)[0]] if strata is not None else None,
        stratum_pixels=_stratum_pixels(strata, pixels) if pixels is not None else None,
        read=n, skipped={k: v for k, v in skipped.items() if v},
        all_strata=sorted({s or "" for s in strata}) if strata is not None else [],
    )


def _stratum_pixels(strata: list[str | None], pixels: list[str | None]) -> dict[str, int]:
    """Stratum -> pixels, from the per-point ``stratum_pixels`` field (one value per stratum)."""
    out: dict[str, set[int]] = {}
    for s, p in zip(strata, pixels):
        try:
            out.setdefault(s or "", set()).add(int(float(p)) if p is not None else -1)
        except ValueError:
            out.setdefault(s or "", set()).add(-1)
    bad = [s for s, v in out.items() if len(v) != 1 or min(v) <= 0]
    if bad:
        raise SoftConError(f"The field {STRATUM_PIXELS!r} must hold one positive pixel count per stratum; strata "
                           f"{', '.join(map(repr, bad))} have none or several. Correct it, or delete the field to "
                           "use the map's own pixel counts.")
    return {s: v.pop() for s, v in out.items()}


def _reasons(skipped: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in skipped.items() if v) or "none usable"
