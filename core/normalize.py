"""SoftCon preprocessing, applied by one function on the device (SoftCon README).

Each band: ``clip((x - (mean - 2 std)) / (4 std), 0, 1)`` with the SSL4EO-S12 statistics
the model record names. Sentinel-1 (dB) is first clamped per image to its 1-99 % quantiles.
Nodata pixels are excluded from quantiles and set to 0 after scaling.
"""
from __future__ import annotations

from typing import Sequence

import torch

# SSL4EO-S12 statistics (Wang et al. 2022; SoftCon and SSL4EO-S12 code), SoftCon band order.
S2C_MEAN = [1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118,
            2371.7172463, 2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323,
            1524.06546312]
S2C_STD = [786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054,
           1274.39184232, 1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639,
           1136.53823676]
S1_MEAN = [-12.54847273, -20.19237134]
S1_STD = [5.25697717, 5.91150917]

#: Sentinel-2 processing baseline 04.00 (from 2022-01-25) adds 1000 to L1C/L2A digital numbers.
BOA_ADD_OFFSET = 1000.0


def scale_bands(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """SoftCon scaling of (B, C, H, W) values to [0, 1]: clip((x - (m - 2s)) / (4s), 0, 1)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return ((x.float() - (m - 2 * s)) / (4 * s)).clamp_(0.0, 1.0)


def quantile_clamp(x: torch.Tensor, valid: torch.Tensor | None = None, q: tuple[float, float] = (0.01, 0.99)) -> torch.Tensor:
    """Clamp each image and band of (B, C, H, W) to its own quantiles, ignoring invalid pixels.

    Args:
        valid: (B, H, W) bool, True where the pixel holds data; None = all valid.
    """
    b, c = x.shape[:2]
    flat = x.float().reshape(b, c, -1)
    if valid is not None:
        flat = flat.masked_fill(~valid.reshape(b, 1, -1), float("nan"))
    qs = torch.nanquantile(flat, torch.tensor(q, device=x.device, dtype=flat.dtype), dim=-1)  # (2, B, C)
    lo = torch.nan_to_num(qs[0], nan=0.0).view(b, c, 1, 1)
    hi = torch.nan_to_num(qs[1], nan=0.0).view(b, c, 1, 1)
    return torch.maximum(torch.minimum(x.float(), hi), lo)


def preprocess(
    x: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    valid: torch.Tensor | None = None,
    sar_quantiles: tuple[float, float] | None = None,
    offset: float = 0.0,
) -> torch.Tensor:
    """Raw values (B, C, H, W) (any dtype, on any device) -> model input in [0, 1], float32.

    Args:
        mean, std: per-band statistics from the model record.
        valid: (B, H, W) bool mask of pixels holding data; others become 0.
        sar_quantiles: (low, high) per-image quantile clamp for Sentinel-1 dB; None for optical.
        offset: subtracted from optical values first (``BOA_ADD_OFFSET`` for processing
            baseline >= 04.00 data, so it matches the pre-2022 data SSL4EO-S12 was drawn from).
    """
    x = x.float()
    if offset:
        x = x - offset
    if sar_quantiles is not None:
        x = quantile_clamp(x, valid, sar_quantiles)
    x = scale_bands(x, mean, std)
    if valid is not None:
        x = x * valid.unsqueeze(1).to(x.dtype)
    return x
