"""Pack an SSL4EO-S12 product into one GeoTIFF per location: ``python -m train.pack ROOT --modality s2c``.

SSL4EO-S12 stores each band of each season in its own file, so a two-season sample of ``s2c`` opens 26
files, which on a network filesystem costs more than the model step. The packed copy
``<ROOT>/<modality>_packed/<location>.tif`` holds every season's bands resampled to 264 px (bilinear, as the
training reader does anyway), one band per (season, band) in the source data type (values rounded for
integer data), DEFLATE-compressed; ``index.json`` lists each location's seasons. ``train.data.SSL4EODataset``
uses the packed copy when it exists: one open per sample. (The SSL4EO-S12 authors publish LMDB and Zarr
packings with the same purpose; this one keeps GeoTIFF so every file stays readable by GDAL.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from core.io.atomic import atomic_path
from core.errors import SoftConError
from core.geo.bands import S2_L1C
from core.progress import Progress

from .modality import MODALITIES

INDEX = "index.json"
#: Side (px) of an SSL4EO-S12 patch at 10 m; coarser bands are resized to it.
SSL4EO_SIZE = 264


def read_index(folder: Path) -> dict[str, list[str]] | None:
    """``{location: [season, ...]}`` of a packed folder, or None where there is none."""
    path = folder / INDEX
    if not path.is_file():
        return None
    try:
        return {str(k): [str(s) for s in v] for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError) as e:
        raise SoftConError(f"Cannot read {path} ({e}); pack again with python -m train.pack.") from None


def read_ssl4eo_patch(folder: Path, bands: Sequence[str] = S2_L1C, size: int = SSL4EO_SIZE,
                      files: Sequence[str] | None = None) -> torch.Tensor:
    """One SSL4EO-S12 season folder (``B1.tif`` ..., or ``VV.tif``, ``VH.tif``) -> (C, size, size) float32.

    Args:
        bands: the model's channels, in order; files: the bands stored as files (default: all of ``bands``);
            channels without a file (B10 of L2A) are raw 0. Coarser bands are resized bilinearly.
    """
    files = tuple(bands if files is None else files)
    out = torch.zeros(len(bands), size, size)
    for b in files:
        f = folder / f"{b}.tif"
        if not f.is_file():
            raise SoftConError(f"Missing band file {f} (SSL4EO-S12 layout: <product>/<location>/<season>/{b}.tif).")
        with rasterio.open(f) as src:
            a = torch.from_numpy(src.read(1).astype(np.float32))
        if a.shape != (size, size):
            a = F.interpolate(a[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        out[bands.index(b)] = a
    return out


def pack(root: str | Path, modality: str = "s2c", size: int = SSL4EO_SIZE, progress: Progress | None = None) -> Path:
    """Write ``<root>/<modality>_packed/`` from ``<root>/<modality>/``; returns the packed folder."""

    mod = MODALITIES[modality]
    src, dst = Path(root) / modality, Path(root) / f"{modality}_packed"
    if not src.is_dir():
        raise SoftConError(f"No {modality}/ folder under {root}.")
    dst.mkdir(exist_ok=True)
    progress = progress or Progress()
    locations = sorted(p for p in src.iterdir() if p.is_dir())
    index = {}
    for n, loc in enumerate(locations):
        progress.check()
        seasons = sorted(s for s in loc.iterdir() if s.is_dir())
        if not seasons:
            continue
        with rasterio.open(seasons[0] / f"{'B2' if mod.optical else 'VV'}.tif") as ref:   # a 10 m band: the grid
            dtype, crs, transform = ref.dtypes[0], ref.crs, ref.transform
        planes, names = [], []
        for s in seasons:
            x = read_ssl4eo_patch(s, mod.files, size).numpy()
            if np.issubdtype(np.dtype(dtype), np.integer):
                x = np.rint(x)
            planes.append(x.astype(dtype))
            names += [f"{s.name}/{b}" for b in mod.files]
        data = np.concatenate(planes)
        profile = dict(driver="GTiff", width=size, height=size, count=len(data), dtype=dtype, crs=crs,
                       transform=transform, compress="deflate")
        with atomic_path(dst / f"{loc.name}.tif") as tmp, rasterio.open(tmp, "w", **profile) as out:
            out.write(data)
            for i, name in enumerate(names, start=1):
                out.set_band_description(i, name)
        index[loc.name] = [s.name for s in seasons]
        progress.update(n + 1, len(locations), "packing")
    with atomic_path(dst / INDEX) as tmp:
        tmp.write_text(json.dumps(index))
    return dst


def read_packed(path: Path, seasons: Sequence[int], bands: Sequence[str],
                files: Sequence[str]) -> dict[int, torch.Tensor]:
    """Seasons (by position) of one packed location -> {season: (C, H, W) float32 in ``bands`` order}."""
    try:
        with rasterio.open(path) as src:
            out = {}
            for s in seasons:
                a = src.read([s * len(files) + j + 1 for j in range(len(files))]).astype(np.float32)
                x = torch.zeros(len(bands), *a.shape[1:])
                for j, b in enumerate(files):
                    x[bands.index(b)] = torch.from_numpy(a[j])
                out[s] = x
            return out
    except rasterio.errors.RasterioError as e:
        raise SoftConError(f"Cannot read the packed location {path} ({e}); pack again with python -m train.pack.") \
            from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser("python -m train.pack", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="SSL4EO-S12 root (with s2c/, s2a/ or s1/)")
    p.add_argument("--modality", default="s2c", choices=tuple(MODALITIES))
    args = p.parse_args(argv)
    print(f"packed into {pack(args.root, args.modality)}")


if __name__ == "__main__":
    try:
        main()
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
