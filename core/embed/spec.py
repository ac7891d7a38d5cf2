"""``EmbedSpec``: every setting that decides an embedding raster or how it is written, built once by the command
line or the plugin and carried unchanged to the engine (:func:`core.embed.engine.embed_raster`) and the cache key.

Standard library only: the QGIS process reads defaults and choices from here without torch. Each default is
declared once, on its field, with its flag (:mod:`core.settings`); ``__post_init__`` is the one check of every
value, for the command line and the plugin alike.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import SoftConError
from ..geo.bands import parse_band_list, PRESETS
from ..models.registry import DEFAULT_MODEL, REGISTRY
from ..settings import check_choices, default, fail, setting

#: ``pooled``: one embedding per window; ``dense``: the patch tokens of each window's centre.
MODES = ("pooled", "dense")
#: The embedding mode when none is given, everywhere (command line, plugin, Python).
DEFAULT_MODE = "dense"
#: Autocast precision of the encoder (``auto``: the device's best; see :func:`core.device.resolve_precision`).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
#: Devices (a numbered GPU as ``cuda:1`` too).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Value types of the output raster.
DTYPES = ("float16", "float32")
_NUMBERED_DEVICE = re.compile(r"^(cuda|mps):\d+$")


def _bands(text: str) -> str | tuple[str, ...]:
    return text if "," not in text else tuple(b.strip() for b in text.split(",") if b.strip())


def _show_bands(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SoftConError(f"--bbox takes four numbers minx,miny,maxx,maxy, not {text!r}.") from None


def _show_numbers(values: tuple[float, ...]) -> str:
    return ",".join(repr(v) for v in values)


def _polygon(value: Any) -> str:
    """WKT, a GeoJSON text or a file path; shapely geometries and GeoJSON dicts become text."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict):
        return json.dumps(value)
    wkt = getattr(value, "wkt", None)  # a shapely geometry
    if isinstance(wkt, str):
        return wkt
    raise SoftConError(f"--polygon takes WKT, GeoJSON or a .geojson file, not a {type(value).__name__}.")


@dataclass(frozen=True)
class EmbedSpec:
    """Model and weights, bands, window mode and stride, how the encoder runs, extent, input and output values.

    Attributes:
        model, checkpoint, pretrained: the encoder (see :func:`core.models.encoders.create_encoder`).
        bands: the raster's band order: a preset name, band names, or None (from the band descriptions).
        mode, stride: ``dense`` (patch features) or ``pooled`` (one per window); window spacing in px.
        precision, device, batch_size: how the encoder runs (``auto`` = the device's best; None = by window size).
        bbox, bbox_crs: the extent to embed (None = the whole raster; the raster's CRS unless given).
        polygon, polygon_crs: WKT, GeoJSON or a ``.geojson`` file; pixels outside are nodata.
        nodata: input value treated as missing (None = the raster's own nodata).
        offset: subtracted from optical values first (1000 for Sentinel-2 processing baseline >= 04.00); None = from
            the product's metadata, else 0 (:func:`core.io.reflectance.check_reflectance`, which resolves it before
            the embedding is computed or looked up in the cache).
        min_valid: share of an output pixel's input pixels that must hold data.
        resample: warp a raster far from 10 m onto a 10 m grid instead of refusing it.
        dtype, cog: output values, and a Cloud Optimized GeoTIFF with overviews.
    """

    model: str = setting(DEFAULT_MODEL, "--model", "registered model, or a .safetensors file written by "
                         "train.pretrain")
    checkpoint: str | None = setting(None, "--checkpoint", "weights file to load instead of the model's own")
    pretrained: bool = setting(True, "--random-init", "untrained encoder (testing only)")
    bands: str | tuple[str, ...] | None = setting(
        None, "--bands", f"band order of the raster: a preset ({', '.join(PRESETS)}) or names B2,B3,... "
        "(default: from the band descriptions)", parse=_bands, show=_show_bands)
    mode: str = setting(DEFAULT_MODE, "--mode", "dense: patch features (80 m with the default model); pooled: one "
                        "embedding per window", choices=MODES)
    stride: int | None = setting(None, "--stride", "window spacing in px (default: half a window)",
                                 parse=int)
    precision: str = setting("auto", "--precision", "encoder precision (auto: bf16 where the CPU or GPU has it)",
                             choices=PRECISIONS)
    device: str = setting("auto", "--device", "where the encoder runs (auto: a GPU if there is one; or cuda:N)")
    batch_size: int | None = setting(None, "--batch-size", "windows per model call (default: by device and "
                                     "window size)", parse=int)
    bbox: tuple[float, ...] | None = setting(None, "--bbox", "minx,miny,maxx,maxy limiting the extent",
                                             parse=_numbers, show=_show_numbers)
    bbox_crs: str | None = setting(None, "--bbox-crs", "CRS of --bbox, e.g. EPSG:4326 (default: the raster's)")
    polygon: str | None = setting(None, "--polygon", "WKT or a .geojson file limiting the extent",
                                  parse=_polygon)
    polygon_crs: str | None = setting(None, "--polygon-crs", "CRS of --polygon (default: the raster's)")
    nodata: float | None = setting(None, "--nodata", "input value that means no data (default: the raster's)",
                                   parse=float)
    offset: float | None = setting(None, "--offset", "subtracted from optical values first: 1000 for Sentinel-2 "
                                   "processing baseline 04.00 or later (default: from the product's metadata, "
                                   "else 0)", parse=float)
    min_valid: float = setting(0.5, "--min-valid", "share of an output pixel's input pixels that must hold data",
                               parse=float)
    resample: bool = setting(False, "--resample", "warp rasters far from 10 m onto a 10 m grid")
    dtype: str = setting("float16", "--dtype", "value type of the embedding raster", choices=DTYPES)
    cog: bool = setting(False, "--cog", "write a Cloud Optimized GeoTIFF with overviews")

    def __post_init__(self) -> None:  # checked, hashable, comparable values whatever the caller passed
        fix = object.__setattr__
        for name in ("checkpoint", "bbox_crs", "polygon_crs"):
            value = getattr(self, name)
            if value is not None:
                fix(self, name, os.fspath(value) if isinstance(value, os.PathLike) else str(value) or None)
        if self.bands is not None and not isinstance(self.bands, str):
            fix(self, "bands", tuple(str(b) for b in self.bands))
        if self.polygon is not None:
            fix(self, "polygon", _polygon(self.polygon) or None)
        for name in ("pretrained", "resample", "cog"):
            fix(self, name, bool(getattr(self, name)))
        self._numbers()
        check_choices(self)
        if not (self.device in DEVICES or _NUMBERED_DEVICE.match(str(self.device))):
            fail(EmbedSpec, "device", f"must be one of {', '.join(DEVICES)} or cuda:N", self.device)
        if self.model not in REGISTRY and not str(self.model).endswith(".safetensors"):
            fail(EmbedSpec, "model", f"must be a registered model ({', '.join(REGISTRY)}) or the path of a "
                 f".safetensors file written by train.pretrain", self.model)
        if self.bands is not None:
            parse_band_list(self.bands)  # names it cannot read are an error now, not after opening the raster
        if self.stride is not None and self.stride < 1:
            fail(EmbedSpec, "stride", "must be at least 1 px", self.stride)
        if self.batch_size is not None and self.batch_size < 1:
            fail(EmbedSpec, "batch_size", "must be at least 1", self.batch_size)
        if not 0 < self.min_valid <= 1:
            fail(EmbedSpec, "min_valid", "must be in (0, 1]", self.min_valid)
        if self.bbox is not None:
            b = self.bbox
            if len(b) != 4 or not all(math.isfinite(v) for v in b) or not (b[0] < b[2] and b[1] < b[3]):
                fail(EmbedSpec, "bbox", "takes minx,miny,maxx,maxy with min < max", ",".join(map(str, b)))
        if self.offset is not None and not math.isfinite(self.offset):
            fail(EmbedSpec, "offset", "must be a number", self.offset)

    def _numbers(self) -> None:
        """Whole numbers and floats as such (a numpy integer or a dialog's float become plain values)."""
        fix = object.__setattr__
        kinds = {"stride": int, "batch_size": int, "nodata": float, "offset": float, "min_valid": float}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                number = kind(value)
            except (TypeError, ValueError):
                fail(EmbedSpec, name, "must be a number", value)
            if kind is int and number != value:
                fail(EmbedSpec, name, "must be a whole number", value)
            fix(self, name, number)
        if self.bbox is not None:
            try:
                fix(self, "bbox", tuple(float(v) for v in self.bbox))
            except (TypeError, ValueError):
                fail(EmbedSpec, "bbox", "takes four numbers minx,miny,maxx,maxy", self.bbox)

    def replace(self, **changes: Any) -> "EmbedSpec":
        return dataclasses.replace(self, **changes)

    def cache_key(self, weights: str | None, device_type: str, precision: str) -> dict[str, Any]:
        """What the cached raster depends on: the settings that change its values, the weights file's
        fingerprint, and the device type and precision that actually ran (not the batch size or the COG
        layout, which change no value; the later settings only when not at their defaults, so older keys stay
        valid)."""
        key = dict(model=self.model, pretrained=self.pretrained, weights=weights, mode=self.mode, stride=self.stride,
                   bands=list(self.bands) if isinstance(self.bands, tuple) else self.bands,
                   bbox=list(self.bbox) if self.bbox is not None else None, bbox_crs=self.bbox_crs,
                   precision=precision, device=device_type)
        for name in ("nodata", "polygon", "polygon_crs", "offset", "min_valid", "resample", "dtype"):
            if name == "offset" and not self.offset:  # 0 (resolved) and None (not yet) alike: no offset
                continue
            if getattr(self, name) != default(EmbedSpec, name):
                key[name] = getattr(self, name)
        return key
