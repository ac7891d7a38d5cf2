"""Opening rasters: any GDAL raster, or single-band files at 10/20/60 m (a Sentinel-2 product) stacked onto
the finest file's grid through their geotransforms, as a GDAL VRT whose sources GDAL resamples (bilinear by
default: coarser bands are interpolated between their pixel centres, never repeated or scaled as arrays).
Reading is :mod:`.reader`, writing :mod:`.writer`; both run inside :func:`gdal_env`'s bounded block cache.
"""
from __future__ import annotations

import math
import os
from html import escape as _html_escape
from pathlib import Path
from typing import Any, Sequence

import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from ..errors import SoftConError
from ..geo.bands import canonical, S2_GSD
from ..geo.crs import pixel_size_m


#: GDAL block cache for reads and writes (MB). GDAL's default (5 % of RAM) would let memory grow
#: with the raster; block-aligned strips make a small cache enough. 24 MB rather than 64: written
#: blocks sit in this cache until GDAL needs room, so a larger cache shows up as RSS that grows with
#: the output size (benchmarks/inference.py (b): +10.7 % at 64 MB, +7-9 % at 24 MB for 4x the area).
GDAL_CACHE_MB = 24


#: Data types shipped to the device as they are; anything else is converted to float32.
NATIVE_DTYPES = ("uint8", "uint16", "int16", "int32", "float32")


PathLike = str | os.PathLike


def escape(text: str) -> str:
    """XML-escape text for a VRT (html.escape without quoting, as xml.sax.saxutils.escape)."""
    return _html_escape(text, quote=False)


def gdal_env(**options: Any) -> rasterio.Env:
    """A rasterio environment with a bounded block cache (and any extra GDAL options)."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS=options.pop("num_threads", 1), **options)


def _open(path: PathLike) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise SoftConError(f"Cannot open raster {path}: {e}. Check the path and that GDAL can read the format.") from None


def stack_vrt(files: Sequence[PathLike], resampling: str = "bilinear", nodata: float | None = None) -> str:
    """GDAL VRT XML stacking single-band files onto the grid of the finest one.

    Each file becomes one band, placed through its geotransform (``DstRect`` in target pixels, which
    may be fractional when origins differ by less than a pixel) and resampled by GDAL.

    Args:
        files: single-band rasters in one CRS, north-up.
        resampling: GDAL resampling for files coarser than the target (``bilinear``, ``cubic``,
            ``nearest``, ...); finer files are averaged.
        nodata: value marking no data where a file declares none; default 0 for Sentinel-2 bands
            (their no-data value) and none otherwise. Areas a file does not cover get this value.

    Raises:
        SoftConError: mixed CRSs, rotated grids or multi-band files.
    """
    if not files:
        raise SoftConError("No input files were given.")
    metas = []
    for f in files:
        with _open(f) as ds:
            if ds.count != 1:
                raise SoftConError(
                    f"{f} has {ds.count} bands; stacking takes single-band files. Pass multi-band rasters one at a time."
                )
            if ds.crs is None:
                raise SoftConError(
                    f"{f} has no coordinate reference system. Assign one (e.g. gdal_edit.py -a_srs EPSG:32632 FILE)."
                )
            t = ds.transform
            if t.b != 0 or t.d != 0:
                raise SoftConError(f"{f} has a rotated geotransform; warp it north-up first (gdalwarp).")
            metas.append((Path(f), ds.crs, t, ds.width, ds.height, ds.dtypes[0], ds.nodata, ds.descriptions[0]))
    crs0 = metas[0][1]
    for m in metas[1:]:
        if m[1] != crs0:
            raise SoftConError(f"{m[0]} is in {m[1]} but {metas[0][0]} is in {crs0}; reproject the files to one CRS first.")
    ref = min(metas, key=lambda m: abs(m[2].a))
    t0 = ref[2]
    rx, ry = t0.a, -t0.e
    # The target is the finest files' grid (their union when they differ); coarser files cover it
    # through their geotransforms, and what they do not cover is nodata.
    finest = [m for m in metas if abs(abs(m[2].a) - rx) < 1e-6 * rx]
    lefts = [m[2].c for m in finest]
    tops = [m[2].f for m in finest]
    rights = [m[2].c + m[3] * m[2].a for m in finest]
    bottoms = [m[2].f + m[4] * m[2].e for m in finest]
    x0 = t0.c - math.floor(round((t0.c - min(lefts)) / rx, 6)) * rx
    y0 = t0.f + math.floor(round((max(tops) - t0.f) / ry, 6)) * ry
    width = math.ceil(round((max(rights) - x0) / rx, 6))
    height = math.ceil(round((y0 - min(bottoms)) / ry, 6))
    dtypes = {m[5] for m in metas}
    dtype = metas[0][5] if len(dtypes) == 1 else "float32"
    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
                 "float32": "Float32", "float64": "Float64"}.get(dtype, "Float32")
    bands_xml = []
    for i, (path, _, t, w, h, _, src_nodata, desc) in enumerate(metas, start=1):
        name = canonical(desc or "") or canonical(path.stem) or (desc or path.stem)
        nd = src_nodata if src_nodata is not None else (nodata if nodata is not None else (0 if name in S2_GSD else None))
        dx, dy = (t.c - x0) / rx, (y0 - t.f) / ry
        dw, dh = w * t.a / rx, h * -t.e / ry
        coarser = abs(t.a) > rx * 1.0001
        res = resampling if coarser else ("average" if abs(t.a) < rx * 0.9999 else "nearest")
        nd_xml = f"<NoDataValue>{nd}</NoDataValue>" if nd is not None else ""
        src_nd = f"<NODATA>{nd}</NODATA>" if nd is not None else ""
        bands_xml.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{i}" blockXSize="512" blockYSize="128">'
            f"<Description>{escape(name)}</Description>{nd_xml}"
            f'<ComplexSource resampling="{res}">'
            f'<SourceFilename relativeToVRT="0">{escape(str(path.resolve()))}</SourceFilename><SourceBand>1</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{dx!r}" yOff="{dy!r}" xSize="{dw!r}" ySize="{dh!r}"/>{src_nd}'
            f"</ComplexSource></VRTRasterBand>"
        )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(crs0.to_wkt())}</SRS>'
        f"<GeoTransform>{x0!r}, {rx!r}, 0, {y0!r}, 0, {-ry!r}</GeoTransform>" + "".join(bands_xml) + "</VRTDataset>"
    )


def open_raster(
    sources: PathLike | Sequence[PathLike],
    resampling: str = "bilinear",
    nodata: float | None = None,
) -> rasterio.DatasetReader:
    """Open one raster, or stack a list of single-band files onto one grid (see :func:`stack_vrt`).

    The caller closes the dataset. A list of one file is opened as that file.
    """
    if isinstance(sources, (str, os.PathLike)):
        return _open(sources)
    files = list(sources)
    if len(files) == 1:
        return _open(files[0])
    return _open(stack_vrt(files, resampling=resampling, nodata=nodata))


def band_names(ds: rasterio.DatasetReader, sources: PathLike | Sequence[PathLike] | None = None) -> list[str | None]:
    """What each band holds: its description, or for a single-band file its file name ("s2_B04.tif")."""
    names = list(ds.descriptions)
    if not isinstance(sources, (str, os.PathLike)) and sources is not None and len(sources) == 1:
        sources = sources[0]
    if ds.count == 1 and not names[0] and isinstance(sources, (str, os.PathLike)):
        names = [Path(sources).stem]
    return [n or None for n in names]


def resample_to(ds: rasterio.DatasetReader, res_m: float, upsample: str = "bilinear") -> WarpedVRT:
    """A virtual copy of ``ds`` on a grid of ``res_m`` metres (a UTM zone for geographic rasters).

    Coarser rasters are interpolated (``upsample``); finer ones are averaged.
    """
    crs = ds.crs
    if crs.is_geographic:  # the WGS 84 UTM zone of the centre (arithmetic: no PROJ database query)
        w, s, e, n = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        lon, lat = (w + e) / 2, (s + n) / 2
        zone = min(60, int((lon + 180) // 6) + 1)
        crs = rasterio.crs.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    transform, width, height = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds, resolution=res_m)
    method = Resampling[upsample] if pixel_size_m(ds) > res_m else Resampling.average
    nodata = {} if ds.nodata is None else dict(src_nodata=ds.nodata, nodata=ds.nodata)
    return WarpedVRT(ds, crs=crs, transform=transform, width=width, height=height, resampling=method, **nodata)


def nodata_values(ds: rasterio.DatasetReader) -> list[float | None]:
    """Per-band nodata values (None where a band declares none)."""
    return [None if v is None else float(v) for v in ds.nodatavals]


def uses_mask_band(ds: rasterio.DatasetReader) -> bool:
    """True when validity comes from a mask or alpha band rather than a nodata value."""
    flags = ds.mask_flag_enums[0] if ds.count else []
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
