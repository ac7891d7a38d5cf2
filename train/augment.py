"""Multispectral view augmentation (SimCLR / MoCo v3 recipe adapted to 13-band and SAR data).

Raw values in, SoftCon-normalised views in [0, 1] out; every random choice comes from the caller's generator,
so a sample's views depend only on (seed, epoch, index) (``train.data``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from core.geo.normalize import quantile_clamp, scale_bands
from core.geo.stats import S2C_MEAN, S2C_STD


@dataclass
class Augment:
    """Multispectral view augmentation of raw (C, H, W) values -> normalised (C, S, S) in [0, 1].

    Random resized crop (SimCLR/MoCo v3 scale and ratio ranges), horizontal flip, 90-degree rotation
    (overhead imagery has no up), SoftCon normalisation, brightness/contrast jitter, Gaussian blur.

    ``jitter_bands``: ``per_band`` gives each band its own factors (the multispectral version of colour
    jitter, SSL4EO-S12's choice); ``shared`` draws one brightness and one contrast factor for all bands,
    like a change of illumination or haze, which keeps each patch's spectral shape. Measured on the
    default model, ``shared`` transferred worse to EuroSAT (``core/weights/MODEL_CARD.md``).
    """

    size: int = 64
    mean: Sequence[float] = tuple(S2C_MEAN)
    std: Sequence[float] = tuple(S2C_STD)
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rot90: bool = True
    jitter_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    jitter_bands: str = "per_band"
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    sar_quantiles: tuple[float, float] | None = None
    bands: Sequence[int] | None = None  # input bands to keep, in model order (a model on fewer bands); None = all
    clip: bool = True                   # clamp to [0, 1] (SoftCon); False for models trained unclipped (Galileo)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.bands is not None:
            x = x[list(self.bands)]
        c, h, w = x.shape
        if self.sar_quantiles is not None:   # SAR dB: clamp the whole image to its own quantiles first
            x = quantile_clamp(x[None].float(), q=self.sar_quantiles)[0]
        u = lambda lo=0.0, hi=1.0: lo + (hi - lo) * torch.rand((), generator=g).item()  # noqa: E731
        # random resized crop (torchvision's RandomResizedCrop parameter sampling)
        area = h * w
        for _ in range(10):
            a = area * u(*self.crop_scale)
            r = math.exp(u(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
            cw, ch = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (), generator=g))
                left = int(torch.randint(0, w - cw + 1, (), generator=g))
                break
        else:
            ch = cw = min(h, w)
            top, left = (h - ch) // 2, (w - cw) // 2
        v = x[:, top:top + ch, left:left + cw].float().unsqueeze(0)
        v = F.interpolate(v, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=(ch > self.size or cw > self.size))
        v = scale_bands(v, self.mean, self.std, self.clip)[0]
        if self.flip and u() < 0.5:
            v = v.flip(-1)
        if self.rot90:
            v = torch.rot90(v, int(torch.randint(0, 4, (), generator=g)), dims=(1, 2))
        if u() < self.jitter_p:
            n = c if self.jitter_bands == "per_band" else 1
            bright = (torch.rand(n, 1, 1, generator=g) * 2 - 1) * self.brightness
            contrast = 1 + (torch.rand(n, 1, 1, generator=g) * 2 - 1) * self.contrast
            m = v.mean(dim=(1, 2), keepdim=True)
            v = (v - m) * contrast + m + bright
            if self.clip:
                v = v.clamp_(0.0, 1.0)
        if u() < self.blur_p:
            v = gaussian_blur(v, u(*self.blur_sigma))
        return v.contiguous()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W) with reflect padding, kernel radius ceil(2 sigma)."""
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x.unsqueeze(0), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]
