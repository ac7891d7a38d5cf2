"""Post-classification clean-up with a minimum mapping unit: GDAL's sieve filter on the class raster.

A per-pixel map keeps every isolated pixel; a map meant for area statistics or cartography usually has a
minimum mapping unit (MMU), the smallest patch it shows. GDAL's sieve filter (``GDALSieveFilter``, through
:func:`rasterio.features.sieve`) replaces each 8-connected patch smaller than the MMU by the class of its
largest neighbouring patch. Nodata (0) is never filled. Only the class raster changes: probabilities and
confidence stay per pixel, so a pixel's class may then differ from its most probable class (the report says
so). The whole class raster is held in memory (one byte per pixel, plus GDAL's patch labels).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import sieve

from ..io.writer import BlockWriter


def sieve_class_raster(path: Path, min_pixels: int, n_classes: int, step: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Sieve the class raster at ``path`` in place (through a verified temporary file).

    Returns:
        (pixel count per class value 0..n_classes, the class map decimated by ``step`` for the quicklook,
        pixels changed).
    """
    with rasterio.open(path) as ds:
        cls = ds.read(1)
        cmap, tags, desc = ds.colormap(1), ds.tags(), ds.descriptions
        out = sieve(cls, size=int(min_pixels), mask=cls > 0, connectivity=8)
        out[cls == 0] = 0
        tmp = path.with_name(path.stem + ".sieved.tif")
        with BlockWriter.like(tmp, ds, 1, "uint8", nodata=0, colormap=cmap, descriptions=list(desc), namespace=None,
                              tags=tags) as w:
            for r in range(0, out.shape[0], 1024):
                w.write_rows(r, out[None, r:r + 1024])
            w.commit()
    tmp.replace(path)
    return np.bincount(out.ravel(), minlength=n_classes + 1), out[::step, ::step], int((out != cls).sum())
