"""PNG quicklooks with Pillow: the RGB composite beside the class map, with a legend.

Users would rather look than read: one image shows whether the map follows the landscape. The RGB
panel is the box average of the raster read in strips of whole blocks, so memory stays small whatever the
raster's size; it covers exactly the class raster's extent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from rasterio.windows import from_bounds, Window

from ..errors import SoftConError
from ..geo.bands import resolve_bands, RGB
from ..io.atomic import atomic_path
from ..io.raster import band_names, gdal_env, open_raster

PANEL = 640  # longest side of each panel (px)


def stretch(rgb: np.ndarray, valid: np.ndarray | None = None, pct: tuple[float, float] = (2, 98)) -> np.ndarray:
    """Per-band percentile stretch of (H, W, 3) values to uint8; invalid pixels become black."""
    out = np.zeros(rgb.shape, np.uint8)
    mask = np.isfinite(rgb).all(-1) if valid is None else valid & np.isfinite(rgb).all(-1)
    if not mask.any():
        return out
    for b in range(rgb.shape[-1]):
        lo, hi = np.percentile(rgb[..., b][mask], pct)
        out[..., b] = np.clip((rgb[..., b] - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    out[~mask] = 0
    return out


def read_rgb(sources, bounds: tuple[float, float, float, float], shape: tuple[int, int], bands=None) -> np.ndarray | None:
    """B4/B3/B2 of a raster (or single-band file stack) over ``bounds``, decimated to ``shape``, as uint8.

    Returns None when the raster has no red, green and blue bands (e.g. an embedding raster).
    """
    with gdal_env(), open_raster(sources) as ds:
        try:
            idx = resolve_bands(band_names(ds, sources if not isinstance(sources, list) else None), RGB, bands)
        except SoftConError:
            return None
        if any(i is None for i in idx):
            return None
        win = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
        data = box_average(ds, [i + 1 for i in idx], win, shape)
    data = np.moveaxis(data, 0, -1)
    return stretch(data, valid=(data > 0).any(-1))


def box_average(ds, indexes: list[int], win: Window, shape: tuple[int, int], rows: int = 512) -> np.ndarray:
    """Bands ``indexes`` of window ``win`` averaged over boxes to ``shape`` (3, h, w) float32, read in strips of
    about ``rows`` rows (outside the raster: 0).

    GDAL's own decimated read (``out_shape``, average) decoded the blocks of a compressed pixel-interleaved
    raster again and again (45 s for a Sentinel-2 tile's quicklook); strips decode each block once."""
    h, w = shape
    height, width = int(win.height), int(win.width)
    if h >= height or w >= width:  # no decimation: GDAL's read is exact and cheap
        return ds.read(indexes, window=win, out_shape=(len(indexes), h, w), boundless=True, fill_value=0,
                       resampling=Resampling.average).astype(np.float32)
    r_edges = np.linspace(0, height, h + 1).round().astype(int)
    c_edges = np.linspace(0, width, w + 1).round().astype(int)
    out = np.zeros((len(indexes), h, w), np.float32)
    i = 0
    while i < h:
        j = i + 1
        while j < h and r_edges[j + 1] - r_edges[i] <= rows:
            j += 1
        r0, r1 = r_edges[i], r_edges[j]
        strip = ds.read(indexes, window=Window(win.col_off, win.row_off + r0, width, r1 - r0), boundless=True,
                        fill_value=0, out_dtype="float32")
        sums = np.add.reduceat(np.add.reduceat(strip, r_edges[i:j] - r0, axis=1), c_edges[:-1], axis=2)
        out[:, i:j] = sums / (np.diff(r_edges[i:j + 1])[:, None] * np.diff(c_edges)[None, :])
        i = j
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def panel_shape(height: int, width: int, panel: int = PANEL) -> tuple[int, int]:
    """Display size (h, w) of a raster of ``height x width`` with its longest side ``panel``."""
    s = panel / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def write_quicklook(
    out_path: str | Path,
    class_map: np.ndarray,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    rgb: np.ndarray | None = None,
    title: str = "",
    area_fraction: dict[str, float] | None = None,
    left_title: str = "RGB (B4, B3, B2)",
) -> Path:
    """Write a PNG: ``rgb`` (H, W, 3 uint8; optional) beside ``class_map`` (h, w; 0 = nodata, 1..C), legend below.

    Args:
        class_map: class values 1..C (0 = no data), any size; shown with nearest-neighbour scaling.
        rgb: left panel (already at display size); None = class map only.
    """
    h, w = panel_shape(*class_map.shape)
    lut = np.full((256, 3), 255, np.uint8)  # nodata (0) shows as background
    for i, c in enumerate(colors):
        lut[i + 1] = c[:3]
    cls_img = Image.fromarray(lut[class_map]).resize((w, h), Image.NEAREST)
    panels = [("class map", cls_img)]
    if rgb is not None:
        panels.insert(0, (left_title, Image.fromarray(rgb).resize((w, h), Image.BILINEAR)))
    font, small = _font(16), _font(13)
    pad, head = 10, 26 if not title else 48
    n = len(class_names)
    cols = max(1, min(n, (len(panels) * (w + pad)) // 230))
    leg_rows = (n + cols - 1) // cols
    width = len(panels) * (w + pad) + pad
    height = head + h + pad + leg_rows * 22 + pad
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if title:
        d.text((pad, 6), title, fill=(0, 0, 0), font=font)
    for k, (name, p) in enumerate(panels):
        x = pad + k * (w + pad)
        d.text((x, head - 20), name, fill=(60, 60, 60), font=small)
        img.paste(p, (x, head))
    y0 = head + h + pad
    for i, name in enumerate(class_names):
        x = pad + (i % cols) * 230
        y = y0 + (i // cols) * 22
        d.rectangle([x, y + 2, x + 16, y + 16], fill=tuple(int(v) for v in colors[i][:3]), outline=(0, 0, 0))
        label = name if not area_fraction else f"{name} ({100 * area_fraction.get(name, 0):.1f}%)"
        d.text((x + 22, y + 2), label, fill=(0, 0, 0), font=small)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        img.save(tmp, format="PNG")
    return out_path
