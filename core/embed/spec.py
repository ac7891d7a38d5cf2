"""``EmbedSpec``: every setting that decides an embedding raster, built once by the command line or the plugin
and carried unchanged to the engine (:func:`core.embed.engine.embed_raster`) and the cache key."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..models.registry import DEFAULT_MODEL

#: The embedding mode of a map when none is given (the plugin's MODE enums default to it too).
DEFAULT_MODE = "dense"


@dataclass(frozen=True)
class EmbedSpec:
    """Model and weights, bands, window mode and stride, precision, device, batch, extent and nodata.

    Attributes:
        model, checkpoint, pretrained: the encoder (see :func:`core.models.registry.create_encoder`).
        bands: the raster's band order: a preset name, band names, or None (from the band descriptions).
        mode, stride: ``dense`` (patch features) or ``pooled`` (one per window); window spacing in px.
        precision, device, batch_size: how the encoder runs (``auto`` = the device's best).
        bbox, bbox_crs: the extent to embed (None = the whole raster; the raster's CRS unless given).
        nodata: input value treated as missing (None = the raster's own nodata).
        offset: subtracted from optical values (1000 for Sentinel-2 processing baseline >= 04.00); None = from
            the product's metadata, else 0 (:func:`core.io.reflectance.check_reflectance`).
    """

    model: str = DEFAULT_MODEL
    checkpoint: str | None = None
    pretrained: bool = True
    bands: str | tuple[str, ...] | None = None
    mode: str = DEFAULT_MODE
    stride: int | None = None
    precision: str = "auto"
    device: str = "auto"
    batch_size: int | None = None
    bbox: tuple[float, ...] | None = None
    bbox_crs: str | None = None
    nodata: float | None = None
    offset: float | None = None

    def __post_init__(self) -> None:  # hashable, comparable values whatever the caller passed
        fix = object.__setattr__
        if self.checkpoint is not None:
            fix(self, "checkpoint", os.fspath(self.checkpoint))
        if self.bands is not None and not isinstance(self.bands, str):
            fix(self, "bands", tuple(self.bands))
        if self.bbox is not None:
            fix(self, "bbox", tuple(float(v) for v in self.bbox))
        if self.bbox_crs is not None:
            fix(self, "bbox_crs", str(self.bbox_crs) or None)
        fix(self, "pretrained", bool(self.pretrained))
        if self.offset is not None:
            fix(self, "offset", float(self.offset))

    def replace(self, **changes: Any) -> "EmbedSpec":
        return dataclasses.replace(self, **changes)

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`core.embed.engine.embed_raster`."""
        kw = dataclasses.asdict(self)
        kw["bands"] = list(self.bands) if isinstance(self.bands, tuple) else self.bands
        kw["bbox"] = list(self.bbox) if self.bbox is not None else None
        return kw

    def cache_key(self, weights: str | None, device: torch.device, precision: Any) -> dict[str, Any]:
        """What the cached raster depends on: the settings, the weights file's fingerprint and the device
        and precision that actually ran (batch size does not change the numbers)."""
        key = dict(model=self.model, pretrained=self.pretrained, weights=weights, mode=self.mode, stride=self.stride,
                   bands=list(self.bands) if isinstance(self.bands, tuple) else self.bands,
                   bbox=list(self.bbox) if self.bbox is not None else None, bbox_crs=self.bbox_crs,
                   precision=str(precision), device=device.type)
        if self.nodata is not None:
            key["nodata"] = self.nodata
        if self.offset:  # only when set, so that entries cached before offsets were keyed still hit
            key["offset"] = float(self.offset)
        return key

