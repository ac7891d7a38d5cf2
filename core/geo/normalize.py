"""SoftCon preprocessing, applied by one function on the device (SoftCon README).

Each band: ``clip((x - (mean - 2 std)) / (4 std), 0, 1)`` with the SSL4EO-S12 statistics
the model record names. Galileo uses the same affine map with its own statistics and no clip
(``clip=False``; the record says which). The README's ``normalize`` writes this as ``(x - min) / (max - min) * 255``
cast to uint8, and training divides by 255 again; ``quantize=True`` reproduces that uint8 step
bit for bit, the default keeps full float precision.

- Sentinel-1 (dB) is first clamped per image and band to its 1-99 % quantiles.
- Nodata pixels (``valid`` False) are excluded from the quantiles and set to 0 after scaling.
- Bands a raster lacks but the model takes (B10 for L2A) are filled with raw 0 *before* scaling
  (:func:`core.geo.bands.select_bands`), i.e. no cirrus signal; after scaling that is
  ``(0 - (22.10 - 2 * 51.15)) / (4 * 51.15) = 0.392``, not 0.
- Sentinel-2 products of processing baseline 04.00 or later (from 25 January 2022) carry
  ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` = -1000: their digital numbers are reflectance x 10000
  + 1000. SSL4EO-S12 (2021 data) has no offset, so pass ``offset=BOA_ADD_OFFSET``
  (:func:`reflectance_offset` picks it from the baseline) for newer data.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .stats import BOA_ADD_OFFSET


def reflectance_offset(processing_baseline: str | float | None) -> float:
    """The value to subtract from Sentinel-2 digital numbers: 1000 for baseline >= 04.00, else 0.

    Args:
        processing_baseline: e.g. ``"04.00"``, ``"N0400"``, ``"02.09"``, 5.09 or None (unknown: 0).
    """
    if processing_baseline is None:
        return 0.0
    text = str(processing_baseline).strip().upper().lstrip("N")
    try:
        value = float(text) if "." in text else float(text) / 100.0
    except ValueError:
        raise ValueError(f"Cannot read processing baseline {processing_baseline!r} (expected e.g. 04.00 or N0400)") from None
    return BOA_ADD_OFFSET if value >= 4.0 else 0.0


def scale_bands(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], clip: bool = True) -> torch.Tensor:
    """SoftCon scaling of (B, C, H, W) values to [0, 1]: clip((x - (m - 2s)) / (4s), 0, 1); ``clip=False`` keeps the range."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    y = (x.float() - (m - 2 * s)) / (4 * s)
    return y.clamp_(0.0, 1.0) if clip else y


def masked_quantiles(x: torch.Tensor, q: Sequence[float], valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per image and band quantiles of (B, C, H, W) over valid, finite pixels -> (len(q), B, C).

    Same 'linear' interpolation as ``torch.nanquantile``, computed with one sort so it has no
    input-size limit (``torch.quantile`` refuses tensors over 2**24 elements). Images without any
    valid pixel get 0.
    """
    b, c = x.shape[:2]
    flat = x.float().reshape(b, c, -1)
    ok = torch.isfinite(flat)
    if valid is not None:
        ok = ok & valid.reshape(b, 1, -1)
    flat = flat.masked_fill(~ok, float("inf"))
    srt = flat.sort(dim=-1).values  # invalid (inf) pixels sort last
    n = ok.sum(dim=-1)  # (B, C)
    out = []
    for qi in q:
        pos = qi * (n - 1).clamp(min=0).to(torch.float64)
        lo_i = pos.floor().long()
        hi_i = pos.ceil().long()
        frac = (pos - lo_i).to(srt.dtype)
        lo_v = srt.gather(-1, lo_i.unsqueeze(-1)).squeeze(-1)
        hi_v = srt.gather(-1, hi_i.unsqueeze(-1)).squeeze(-1)
        val = lo_v + (hi_v - lo_v) * frac
        out.append(torch.where(n > 0, val, torch.zeros_like(val)))
    return torch.stack(out)


def quantile_clamp(x: torch.Tensor, valid: torch.Tensor | None = None, q: tuple[float, float] = (0.01, 0.99)) -> torch.Tensor:
    """Clamp each image and band of (B, C, H, W) to its own quantiles, ignoring invalid pixels.

    Args:
        valid: (B, H, W) bool, True where the pixel holds data; None = all valid (non-finite
            values are always ignored).
    """
    b, c = x.shape[:2]
    qs = masked_quantiles(x, q, valid)
    lo = qs[0].view(b, c, 1, 1)
    hi = qs[1].view(b, c, 1, 1)
    return torch.maximum(torch.minimum(x.float(), hi), lo)


def preprocess(
    x: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    valid: torch.Tensor | None = None,
    sar_quantiles: tuple[float, float] | None = None,
    offset: float = 0.0,
    quantize: bool = False,
    clip: bool = True,
) -> torch.Tensor:
    """Raw values (B, C, H, W) (any dtype, on any device) -> model input in [0, 1], float32.

    Args:
        mean, std: per-band statistics from the model record.
        valid: (B, H, W) bool mask of pixels holding data; others (and non-finite pixels)
            become 0 and are left out of the SAR quantiles.
        sar_quantiles: (low, high) per-image quantile clamp for Sentinel-1 dB; None for optical.
        offset: subtracted from optical values first (``BOA_ADD_OFFSET`` for processing
            baseline >= 04.00 data, so it matches the pre-2022 data SSL4EO-S12 was drawn from).
        quantize: round down to multiples of 1/255 like the README's uint8 ``normalize``.
        clip: clamp to [0, 1] (SoftCon); False for models trained without it (Galileo,
            ``ModelRecord.clip``).

    Returns:
        (B, C, H, W) float32, in [0, 1] when ``clip``.
    """
    x = x.float()
    finite = torch.isfinite(x).all(dim=1)  # NaN nodata (float SAR rasters) counts as invalid
    if not bool(finite.all()):
        valid = finite if valid is None else (valid & finite)
    if offset:
        x = x - offset
    if sar_quantiles is not None:
        x = quantile_clamp(x, valid, sar_quantiles)
    x = scale_bands(x, mean, std, clip)
    if quantize:
        x = torch.floor(x * 255.0) / 255.0
    if valid is not None:
        x = torch.where(valid.unsqueeze(1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x



def strip_normaliser(dtype: np.dtype, n_channels: int, norm: dict[str, Any]) -> Any:
    """A pointwise ``f(data (C, n, w), valid (n, w)) -> float32`` for optical data, or None (SAR).

    For 8/16-bit unsigned data it is :func:`core.geo.normalize.preprocess` evaluated once on every possible
    value (a per-band lookup table, 3.4 MB for 13 uint16 bands) and then looked up, which gives the
    same numbers as calling ``preprocess`` on the pixels at a fraction of the CPU time the model
    would otherwise lose to it. Other types call ``preprocess`` on the strip.
    """
    if norm.get("sar_quantiles") is not None:
        return None  # per-window quantiles: applied to each batch
    if dtype in (np.uint8, np.uint16):
        levels = torch.arange(np.iinfo(dtype).max + 1, dtype=torch.float32)
        lut = preprocess(levels.view(1, 1, -1, 1).expand(1, n_channels, -1, 1), **norm)[0, :, :, 0].numpy()

        def lookup(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
            out = np.empty(data.shape, np.float32)
            for c in range(n_channels):
                np.take(lut[c], data[c], out=out[c])
            out *= valid  # invalid pixels -> 0, as preprocess(valid=...) does
            return out

        return lookup

    def call(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        x = preprocess(torch.from_numpy(data)[None], valid=torch.from_numpy(valid)[None], **norm)
        return x[0].numpy()

    return call
