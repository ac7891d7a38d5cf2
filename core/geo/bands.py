"""Band specs and name-based band mapping (after TorchGeo's band metadata).

A model record lists the bands it was trained on, in order. A raster's bands are matched
to them by band description (``B04``, ``B4``, ``VV``...) or by an explicit list / preset
naming what each raster band holds. Model bands a raster lacks but that may be zero-filled
(B10 for Sentinel-2 L2A, which drops the cirrus band) map to ``None`` and are filled with raw
zeros by :func:`select_bands`.

Specs: Sentinel-2 L1C (13 bands, SoftCon order B1..B8, B8A, B9, B10, B11, B12), Sentinel-2 L2A
(12 bands, no B10), Sentinel-1 GRD (VV, VH, in dB). Presets name file band orders, e.g.
``eurosat`` (B8A stored last: indices [0,1,2,3,4,5,6,7,12,8,9,10,11] into the file).
"""
from __future__ import annotations

import re
from typing import Sequence, TypeVar

from ..errors import SoftConError

ArrayT = TypeVar("ArrayT")

S2_L1C: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_L2A: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
S1_GRD: tuple[str, ...] = ("VV", "VH")
#: The ten 10 m and 20 m surface bands (Sentinel-2 without the 60 m atmospheric B1, B9, B10): Galileo's input.
S2_SURFACE: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

#: Native ground sampling distance (m) of each Sentinel-2 band.
S2_GSD: dict[str, int] = {
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}

#: Bands that may be filled with zeros when a raster lacks them (SoftCon README: L2A gets a zero B10).
ZERO_FILLABLE: frozenset[str] = frozenset({"B10"})

#: File band orders of common products, by preset name.
PRESETS: dict[str, tuple[str, ...]] = {
    "s2_l1c": S2_L1C,
    "s2_l2a": S2_L2A,
    # EuroSAT-MS stores B8A last: B01..B12 then B8A.
    "eurosat": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B8A"),
    "s1": S1_GRD,
}

RGB: tuple[str, str, str] = ("B4", "B3", "B2")


def canonical(name: str) -> str | None:
    """Canonical band name for a description such as ``B04``, ``b8a``, ``s2_B12.jp2``, ``VV``, or None."""
    text = name.strip().upper()
    m = re.search(r"(?<![A-Z0-9])B0?(\d{1,2})(A?)(?![0-9])", text)
    if m:
        num, a = int(m.group(1)), m.group(2)
        cand = f"B{num}{a}"
        return cand if cand in S2_L1C else None
    for pol in S1_GRD:
        if re.search(rf"(?<![A-Z]){pol}(?![A-Z])", text):
            return pol
    return None


def parse_band_list(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A preset name (``eurosat``) or comma list (``B2,B3,B4``) as canonical band names."""
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        spec = [s for s in spec.split(",") if s.strip()]
    out = []
    for s in spec:
        c = canonical(s)
        if c is None:
            raise SoftConError(
                f"Unknown band name {s!r}. Use Sentinel-2 names (B1..B12, B8A), VV/VH, "
                f"or a preset: {', '.join(PRESETS)}."
            )
        out.append(c)
    return tuple(out)


def map_bands(source: Sequence[str | None], model_bands: Sequence[str]) -> list[int | None]:
    """Index into ``source`` for each model band (``None`` = fill with zeros).

    Args:
        source: what each raster band holds, in file order (None where unknown).
        model_bands: the bands the model expects, in its order.

    Raises:
        SoftConError: naming the model bands the raster lacks.
    """
    where = {}
    for i, name in enumerate(source):
        if name is not None and name not in where:
            where[name] = i
    index: list[int | None] = []
    missing = []
    for band in model_bands:
        if band in where:
            index.append(where[band])
        elif band in ZERO_FILLABLE:
            index.append(None)
        else:
            missing.append(band)
    if missing:
        raise SoftConError(
            f"The raster lacks band(s) {', '.join(missing)} needed by the model "
            f"(raster bands: {', '.join(str(s) for s in source)}). Give the band order explicitly "
            f"(e.g. --bands eurosat or --bands B1,B2,...) or use a raster with those bands."
        )
    return index


def resolve_bands(
    descriptions: Sequence[str | None],
    model_bands: Sequence[str],
    bands: str | Sequence[str] | None = None,
    notes: list[str] | None = None,
) -> list[int | None]:
    """Map a raster's bands onto a model's bands.

    Bands are matched by name; when all but one raster band are named and the model lacks exactly one
    of the named bands, the unnamed band is that one (elimination). A raster without any band names is
    taken in the model's own order only when it has exactly the model's bands; anything else stops with a
    message naming the raster's bands and the ``--bands`` fix, since guessing swaps bands silently.

    Args:
        descriptions: the raster's band descriptions (may be empty strings / None).
        model_bands: bands the model expects.
        bands: explicit file order (preset name or list); None = read the descriptions.
        notes: gets one line saying how the order was decided (for the run's log).
    """
    notes = notes if notes is not None else []
    n = len(descriptions)
    if bands is not None:
        names = parse_band_list(bands)
        if len(names) != n:
            raise SoftConError(
                f"The band list names {len(names)} bands but the raster has {n}. "
                f"Give one name per raster band, in file order."
            )
        notes.append(f"band order as given ({bands if isinstance(bands, str) else ','.join(bands)})")
        return map_bands(names, model_bands)
    named = [canonical(d) if d else None for d in descriptions]
    shown = ", ".join(f"{i + 1}: {d!r}" if d else f"{i + 1}: (no name)" for i, d in enumerate(descriptions))
    fix = (f"Give the band order explicitly, one name per raster band in file order: --bands with a preset "
           f"({', '.join(PRESETS)}) or a list such as {','.join(model_bands[:3])},...")
    if any(named):
        unknown = [i for i, x in enumerate(named) if x is None]
        absent = [b for b in model_bands if b not in named]
        if len(unknown) == 1 and len(absent) == 1 and n == len(model_bands):
            named[unknown[0]] = absent[0]
            notes.append(f"band order from the band names; band {unknown[0] + 1} "
                         f"({descriptions[unknown[0]]!r}) taken as {absent[0]}, the only one left")
        elif unknown and [b for b in absent if b not in ZERO_FILLABLE]:
            raise SoftConError(
                f"Cannot tell which raster band is which: {len(unknown)} of its {n} bands have names that are not "
                f"band names, and the model needs {', '.join(absent)} among them (raster bands: {shown}). {fix}"
            )
        else:
            extra = f"; unnamed band(s) {', '.join(str(i + 1) for i in unknown)} not used" if unknown else ""
            notes.append(f"band order from the band names{extra}")
        return map_bands(named, model_bands)
    if n == len(model_bands):
        notes.append(f"the raster's {n} bands have no names: taken in the model's order ({', '.join(model_bands)})")
        return list(range(n))
    if n == len(S2_L1C) and all(b in S2_L1C for b in model_bands):  # only an L1C product has 13 bands
        notes.append(f"the raster's {n} bands have no names: taken as a Sentinel-2 L1C product in its "
                     f"standard order ({', '.join(S2_L1C)})")
        return map_bands(S2_L1C, model_bands)
    hint = " For Sentinel-2 L2A in its standard order use --bands s2_l2a." if n == len(S2_L2A) else ""
    raise SoftConError(
        f"Cannot tell which of the raster's {n} bands are which: the model needs "
        f"{len(model_bands)} bands ({', '.join(model_bands)}) and the band descriptions are empty. {fix}.{hint}"
    )


def describe_order(index: Sequence[int | None], model_bands: Sequence[str]) -> str:
    """``B1<-1, B2<-2, ..., B10<-zeros``: which raster band feeds each model band."""
    return ", ".join(f"{b}<-{'zeros' if i is None else i + 1}" for b, i in zip(model_bands, index))


def select_bands(x: ArrayT, index: Sequence[int | None], axis: int = -3) -> ArrayT:
    """Reorder raster bands into model order, zero-filling ``None`` bands (B10 for L2A).

    Works on numpy arrays and torch tensors alike, keeping dtype and device. The zero is a raw
    value (no cirrus signal), filled *before* normalisation, as SoftCon's README does for L2A.

    Args:
        x: raster values with bands on ``axis``, e.g. (B, C_file, H, W) or (C_file, H, W).
        index: from :func:`resolve_bands`, one entry per model band.

    Returns:
        Same type, (..., C_model, H, W).
    """
    axis = axis % x.ndim
    take = lambda i: x[(slice(None),) * axis + (slice(i, i + 1),)]  # noqa: E731 - keeps the band axis
    if hasattr(x, "new_zeros"):  # torch tensor
        import torch  # not at the top: the plugin reads band presets before torch is installed

        return torch.cat([torch.zeros_like(take(0)) if i is None else take(i) for i in index], dim=axis)
    import numpy as np  # (as torch above)

    return np.concatenate([np.zeros_like(take(0)) if i is None else take(i) for i in index], axis=axis)
