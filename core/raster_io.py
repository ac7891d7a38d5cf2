"""Raster input and output for window-by-window inference, with memory that does not grow with area.

- :func:`open_raster` opens any GDAL raster, or stacks single-band files at 10/20/60 m (a Sentinel-2
  product) onto the finest file's grid through their geotransforms, as a GDAL VRT whose sources are
  resampled by GDAL (bilinear by default: coarser bands are interpolated between their pixel centres,
  never repeated or scaled as arrays). :func:`stack_to_geotiff` writes such a stack as one file.
- :class:`StripReader` reads rows in strips aligned to the file's blocks, keeps only the rows the next
  windows need, and pads outside the raster with invalid pixels.
- :class:`Prefetcher` runs a producer (reading, slicing, batching) in a background thread.
- :class:`BlockWriter` writes a tiled, compressed GeoTIFF one row of blocks at a time, into a temporary
  file in the target folder that is renamed at the end and removed on error or cancel.
"""
from __future__ import annotations

import errno
import math
import os
import queue
import shutil
import threading
from html import escape as _html_escape
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from . import bands as B
from .atomic import clean_stale, temp_path
from .errors import SoftConError

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


# ----------------------------------------------------------------------------------------- opening
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
        name = B.canonical(desc or "") or B.canonical(path.stem) or (desc or path.stem)
        nd = src_nodata if src_nodata is not None else (nodata if nodata is not None else (0 if name in B.S2_GSD else None))
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


def pixel_size_m(ds: rasterio.DatasetReader) -> float:
    """Mean pixel size in metres (geographic CRSs are converted at the raster's centre)."""
    if ds.crs is None:
        raise SoftConError(
            "The raster has no coordinate reference system. Assign one (e.g. gdal_edit.py -a_srs EPSG:32632 FILE)."
        )
    rx, ry = abs(ds.transform.a), abs(ds.transform.e)
    if ds.crs.is_geographic:
        from pyproj import Geod

        lon, lat = ds.transform @ (ds.width / 2, ds.height / 2)
        geod = Geod(ellps="WGS84")
        _, _, dx = geod.inv(lon, lat, lon + rx, lat)
        _, _, dy = geod.inv(lon, lat, lon, lat + ry)
        return float((abs(dx) + abs(dy)) / 2)
    factor = ds.crs.linear_units_factor[1] if ds.crs.linear_units_factor else 1.0
    return float((rx + ry) / 2 * factor)


def resample_to(ds: rasterio.DatasetReader, res_m: float, upsample: str = "bilinear") -> WarpedVRT:
    """A virtual copy of ``ds`` on a grid of ``res_m`` metres (a UTM zone for geographic rasters).

    Coarser rasters are interpolated (``upsample``); finer ones are averaged.
    """
    from rasterio.warp import calculate_default_transform

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


def stack_to_geotiff(
    files: Sequence[PathLike],
    out_path: PathLike,
    resampling: str = "bilinear",
    nodata: float | None = None,
    compress: str = "deflate",
    progress: Any = None,
) -> Path:
    """Write single-band files stacked onto one 10 m grid (see :func:`stack_vrt`) as one tiled GeoTIFF.

    Band descriptions carry the band names (``B1``... ``B8A``), so the file can be embedded without a
    band list. Written strip by strip into a temporary file that replaces ``out_path`` at the end.
    """
    out_path = Path(out_path)
    with gdal_env(), open_raster(list(files), resampling=resampling, nodata=nodata) as src:
        check_writable(out_path, src.count * src.width * src.height * np.dtype(src.dtypes[0]).itemsize // 3)
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
                       crs=src.crs, transform=src.transform, nodata=src.nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress=compress, predictor=2, interleave="pixel", bigtiff="if_safer")
        clean_stale(out_path.parent)
        tmp = _temp_name(out_path)
        try:
            with rasterio.open(tmp, "w", **profile) as dst:
                for i, d in enumerate(src.descriptions, start=1):
                    dst.set_band_description(i, d or "")
                for r in range(0, src.height, 256):
                    win = Window(0, r, src.width, min(256, src.height - r))
                    dst.write(src.read(window=win), window=win)
                    if progress is not None:
                        progress.check()
                        progress.update(r + win.height, src.height, "stacking")
            verify_geotiff(tmp, out_path)
            os.replace(tmp, out_path)
        except BaseException as e:
            _remove(tmp)
            raise _disk_error(e, out_path) from e
    return out_path


# ---------------------------------------------------------------------------------------- validity
def nodata_values(ds: rasterio.DatasetReader) -> list[float | None]:
    """Per-band nodata values (None where a band declares none)."""
    return [None if v is None else float(v) for v in ds.nodatavals]


def uses_mask_band(ds: rasterio.DatasetReader) -> bool:
    """True when validity comes from a mask or alpha band rather than a nodata value."""
    flags = ds.mask_flag_enums[0] if ds.count else []
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


# ------------------------------------------------------------------------------------------ reader
class StripReader:
    """Rows of a raster read in block-aligned strips, sliced and padded in numpy.

    Requests must move down the raster (``start`` and ``stop`` never decrease). Rows are read once, in
    strips that start and end on the file's block rows, and dropped as soon as no later request needs
    them, so memory is a few strips of the requested width whatever the raster's height.

    Args:
        ds: an open dataset, used only by the thread that calls :meth:`rows`.
        indexes: 1-based band per output channel; None gives a channel of zeros.
        cols: (start, stop) raster columns to return; outside the raster is padding.
        transform: optional ``f(data (C, n, w), valid (n, w)) -> (C, n, w) float32`` applied to the rows
            :meth:`rows` returns (pointwise preprocessing, once per row request rather than once per
            window that overlaps a pixel); the buffer keeps the file's compact dtype.
    """

    def __init__(
        self,
        ds: rasterio.DatasetReader,
        indexes: Sequence[int | None],
        cols: tuple[int, int],
        transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ):
        self.ds = ds
        self.indexes = list(indexes)
        self.read_bands = sorted({i for i in self.indexes if i is not None})
        same = all(d == ds.dtypes[0] for d in ds.dtypes)
        self.file_dtype = np.dtype(ds.dtypes[0] if same and ds.dtypes[0] in NATIVE_DTYPES else "float32")
        self.transform = transform
        self.dtype = np.dtype("float32") if transform is not None else self.file_dtype  # of rows()
        self.c_start, self.c_stop = cols
        bh, bw = ds.block_shapes[0] if ds.block_shapes else (256, 256)
        self.block_h = max(1, bh)
        # columns actually read: the request clipped to the raster, widened to whole blocks
        lo, hi = max(0, self.c_start), min(ds.width, self.c_stop)
        self.read_c0 = lo // bw * bw if hi > lo else 0
        self.read_c1 = min(ds.width, math.ceil(hi / bw) * bw) if hi > lo else 0
        nodata = nodata_values(ds)
        self._nodata = [(k, nodata[b - 1]) for k, b in enumerate(self.read_bands) if nodata[b - 1] is not None]
        self._mask_band = not self._nodata and uses_mask_band(ds)
        self._float = np.issubdtype(self.file_dtype, np.floating)
        w = self.read_c1 - self.read_c0
        self._buf = np.zeros((len(self.indexes), 0, w), self.file_dtype)
        self._valid = np.zeros((0, w), bool)
        self._b0 = 0  # raster row of _buf[:, 0]

    @property
    def _b1(self) -> int:
        return self._b0 + self._buf.shape[1]

    def _read(self, r0: int, r1: int) -> None:
        win = Window(self.read_c0, r0, self.read_c1 - self.read_c0, r1 - r0)
        try:
            data = self.ds.read(self.read_bands, window=win, out_dtype=self.file_dtype)
            mask = self.ds.read_masks(1, window=win) if self._mask_band else None
        except rasterio.errors.RasterioIOError as e:
            raise SoftConError(
                f"Cannot read rows {r0}-{r1} of {self.ds.name}: the file is truncated or corrupt "
                f"({str(e).splitlines()[0]}). Copy or download it again."
            ) from None
        valid = np.ones(data.shape[1:], bool)
        for k, nd in self._nodata:
            valid &= ~np.isnan(data[k]) if (self._float and math.isnan(nd)) else data[k] != nd
        if self._float:
            valid &= np.isfinite(data).all(axis=0)
        if mask is not None:
            valid &= mask > 0
        if self.indexes != self.read_bands:  # file order -> channel order, zero channels
            chans = np.zeros((len(self.indexes),) + data.shape[1:], data.dtype)
            for ch, b in enumerate(self.indexes):
                if b is not None:
                    chans[ch] = data[self.read_bands.index(b)]
            data = chans
        if self._b1 == r0:
            self._buf = np.concatenate([self._buf, data], axis=1)
            self._valid = np.concatenate([self._valid, valid], axis=0)
        else:  # a jump down the raster: nothing kept
            self._buf, self._valid, self._b0 = data, valid, r0

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Raster rows [start, stop) of columns ``cols``.

        Returns:
            data (C, stop - start, n_cols) in the file's dtype, or float32 after ``transform`` (zeros
            outside the raster), valid (stop - start, n_cols) bool.
        """
        h = self.ds.height
        lo, hi = max(0, start), min(h, stop)
        if hi > lo:
            if lo >= self._b1 or lo < self._b0:
                self._buf = self._buf[:, :0]
                self._valid = self._valid[:0]
                self._b0 = lo // self.block_h * self.block_h
            if hi > self._b1:
                self._read(self._b1, min(h, math.ceil(hi / self.block_h) * self.block_h))
            drop = lo - self._b0
            if drop > 0:
                self._buf = self._buf[:, drop:].copy() if drop > self._buf.shape[1] // 2 else self._buf[:, drop:]
                self._valid = self._valid[drop:]
                self._b0 = lo
        n, w = stop - start, self.c_stop - self.c_start
        data = np.zeros((len(self.indexes), n, w), self.file_dtype)
        valid = np.zeros((n, w), bool)
        if hi > lo and self.read_c1 > self.read_c0:
            cs0, cs1 = max(self.c_start, self.read_c0), min(self.c_stop, self.read_c1)
            src_r, src_c = slice(lo - self._b0, hi - self._b0), slice(cs0 - self.read_c0, cs1 - self.read_c0)
            dst_r, dst_c = slice(lo - start, hi - start), slice(cs0 - self.c_start, cs1 - self.c_start)
            data[:, dst_r, dst_c] = self._buf[:, src_r, src_c]
            valid[dst_r, dst_c] = self._valid[src_r, src_c]
        if self.transform is not None:
            data = self.transform(data, valid)
        return data, valid


def geometry_mask_fn(geometry: Any, transform: Any) -> Callable[[int, int, int, int], np.ndarray]:
    """(row, n_rows, col, n_cols) -> bool array, True inside ``geometry`` (in the raster's CRS)."""
    from rasterio.features import geometry_mask

    def fn(r: int, n: int, c: int, m: int) -> np.ndarray:
        t = transform @ rasterio.Affine.translation(c, r)
        return geometry_mask([geometry], out_shape=(n, m), transform=t, invert=True, all_touched=False)

    return fn


# --------------------------------------------------------------------------------------- prefetch
class Prefetcher:
    """Runs ``produce(stop_event)`` (a generator) in a background thread, a few items ahead.

    Iterating yields its items; an exception in the producer is re-raised here. :meth:`close` stops the
    producer within one item (it must check ``stop_event`` or be blocked in ``put``).

    ``background=False`` runs the producer inline, in the consumer's thread: when the model's threads
    already occupy every core, a reader thread can only preempt one of them, and each OpenMP barrier
    then waits for the preempted thread (``benchmarks/inference.py --reader``, 2 threads on 2 cores:
    1.20x the bare forward with the thread, 1.10x inline).
    """

    _END = object()

    def __init__(self, produce: Callable[[threading.Event], Iterator[Any]], depth: int = 3, background: bool = True):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._produce = produce
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, args=(produce,), name="softcon-prefetch", daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[threading.Event], Iterator[Any]]) -> None:
        try:
            with gdal_env():
                for item in produce(self._stop):
                    if not self._put(item):
                        return
        except BaseException as e:  # handed to the consumer
            self._error = e
        self._put(self._END)

    def __iter__(self) -> Iterator[Any]:
        if self._thread is None:
            with gdal_env():
                yield from self._produce(self._stop)
            return
        while True:
            item = self._q.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ writer
def _temp_name(out_path: Path) -> Path:
    return temp_path(out_path)


def _remove(path: Path) -> None:
    for p in (path, Path(str(path) + ".aux.xml"), Path(str(path) + ".msk")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _disk_error(e: BaseException, out_path: Path) -> BaseException:
    """A write failure as one SoftConError that names the folder and the fix; other errors unchanged."""
    if isinstance(e, SoftConError) or not isinstance(e, Exception):
        return e
    text = str(e)
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in text or "ENOSPC" in text:
        return SoftConError(f"The disk holding {out_path.parent} is full; nothing was written to {out_path.name}. "
                            f"Free some space or choose another output folder.")
    if isinstance(e, (OSError, rasterio.errors.RasterioError)):
        return SoftConError(_write_failed(out_path, text.splitlines()[0] if text else type(e).__name__))
    return e


def _write_failed(out_path: Path, why: str) -> str:
    try:
        free = f"{shutil.disk_usage(out_path.parent).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return (f"Writing {out_path} failed ({why}); it was left as it was. The disk holding {out_path.parent} "
            f"may be full ({free}): free some space or choose another output folder.")


def verify_geotiff(path: PathLike, out_path: PathLike | None = None) -> None:
    """Check that a GeoTIFF just written is complete: it opens and every tile of every band is on disk.

    GDAL reports write errors at close (a full disk while flushing its block cache) only to its error
    handler, and rasterio's ``close()`` does not raise them, so a truncated file would otherwise look
    written. A tile whose size is 0 or that ends beyond the file's end was not written.

    Raises:
        SoftConError: naming ``out_path`` (default ``path``) and the likely cause.
    """
    path = Path(path)
    out_path = Path(out_path or path)
    try:
        size = path.stat().st_size
        with rasterio.open(path) as ds:
            bh, bw = ds.block_shapes[0]
            n_rows, n_cols = math.ceil(ds.height / bh), math.ceil(ds.width / bw)
            bands = [1] if ds.interleaving == rasterio.enums.Interleaving.pixel else range(1, ds.count + 1)
            for b in bands:
                for i in range(n_rows):
                    for j in range(n_cols):
                        n = ds.block_size(b, i, j)
                        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=b) or 0)
                        if n <= 0 or offset <= 0 or offset + n > size:
                            raise SoftConError(_write_failed(out_path, f"block {i},{j} of band {b} is missing"))
    except (OSError, rasterio.errors.RasterioError) as e:
        why = f"the written file does not open: {str(e).splitlines()[0]}"
        raise SoftConError(_write_failed(out_path, why)) from None


def check_writable(out_path: PathLike, nbytes: int = 0) -> None:
    """Fail early when ``out_path`` cannot be written or its disk clearly lacks room for ``nbytes``.

    Raises:
        SoftConError: naming the folder and what to do.
    """
    out_path = Path(out_path)
    folder = out_path.parent
    if out_path.is_dir():
        raise SoftConError(f"The output path {out_path} is a folder; give a file name such as {out_path / 'embeddings.tif'}.")
    if not folder.is_dir():
        raise SoftConError(f"The output folder {folder} does not exist; create it or choose another output path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SoftConError(f"The output folder {folder} is not writable; choose another output path.")
    if out_path.exists() and not os.access(out_path, os.W_OK):
        raise SoftConError(f"The output file {out_path} exists and cannot be overwritten; remove it or choose another name.")
    free = shutil.disk_usage(folder).free
    if nbytes and free < nbytes:
        raise SoftConError(
            f"The disk holding {folder} has {free / 1e9:.2f} GB free but the output needs about {nbytes / 1e9:.2f} GB. "
            f"Free some space, choose another output folder, or limit the extent (--bbox)."
        )


def check_folder(folder: PathLike) -> None:
    """Fail early when ``folder`` neither exists as a writable folder nor can be created.

    Raises:
        SoftConError: naming the folder (or the read-only parent it would be created in).
    """
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise SoftConError(f"The output folder {folder} is a file; choose a folder.")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        what = "is not writable" if parent == folder else f"cannot be created: {parent} is not writable"
        raise SoftConError(f"The output folder {folder} {what}; choose another output folder.")


def make_folder(folder: PathLike) -> Path:
    """``mkdir -p`` whose failure (a read-only parent, a full disk) is one SoftConError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SoftConError(f"Cannot create the output folder {folder} ({e.strerror or e}); "
                           f"choose another output folder.") from None
    return folder


class BlockWriter:
    """A tiled, compressed GeoTIFF (or COG) written one row of blocks at a time, renamed into place at the end.

    Every raster the project writes goes through it: embeddings, class maps, probabilities, similarity,
    PCA and cluster maps. Rows arrive in order through :meth:`write_rows`; as soon as a full row of blocks
    is buffered it is handed to GDAL, so the buffer is ``count x block_height x width`` values whatever
    the raster's height (block height shrinks for very wide rasters to keep it under ``max_buffer_mb``;
    tiles never exceed the raster, since a tile of many bands is compressed whole). GDAL keeps finished
    tiles in its block cache, bounded by :data:`GDAL_CACHE_MB`, and compresses them to disk when it needs
    room or at the end. Float16 output is stored as IEEE half floats (GeoTIFF ``NBITS=16`` on Float32
    bands, rounded to nearest by numpy first), read back by GDAL as float32.

    ``cog=True`` turns the finished file into a Cloud Optimized GeoTIFF with overviews (GDAL's COG
    driver, ``overview_resampling``) before the rename; the tags' metadata domain is carried over
    (``SRC_MDD``), which the COG driver would otherwise drop.

    Use as a context manager: leaving it by an exception removes the temporary file; :meth:`commit`
    renames it to ``out_path``.
    """

    def __init__(
        self,
        out_path: PathLike,
        *,
        width: int,
        height: int,
        count: int,
        crs: Any,
        transform: Any,
        dtype: str = "float16",
        nodata: float | None = None,
        descriptions: Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
        namespace: str | None = "SOFTCON",
        colormap: dict[int, tuple[int, ...]] | None = None,
        photometric: str | None = None,
        blocksize: int = 128,
        max_buffer_mb: float = 64.0,
        compress: str = "zstd",
        cog: bool = False,
        overview_resampling: str = "average",
    ):
        is_float = dtype.startswith("float")
        if not is_float and nodata is None:
            raise ValueError(f"{dtype} output needs an explicit nodata value")
        self.out_path = Path(out_path)
        self.width, self.height, self.count = width, height, count
        self.nodata = float("nan") if nodata is None else nodata
        self.cog, self.overview_resampling = cog, overview_resampling
        itemsize = np.dtype(dtype).itemsize
        row_bytes = count * width * itemsize
        # one tile of all bands (GDAL caches it as float32) must fit GDAL's block cache several times over
        while blocksize > 16 and count * blocksize * blocksize * 4 > GDAL_CACHE_MB * 2**20 / 4:
            blocksize //= 2
        bh = int(max_buffer_mb * 2**20 // max(row_bytes, 1)) // 16 * 16
        # tiles no larger than the raster: a tile of many bands is compressed whole, padding included
        self.block_h = max(16, min(blocksize, bh, math.ceil(height / 16) * 16))
        self.block_w = max(16, min(blocksize, math.ceil(width / 16) * 16))
        check_writable(self.out_path, int(count * width * height * itemsize * (1.0 if cog else 0.5)))
        clean_stale(self.out_path.parent)
        self.tmp = _temp_name(self.out_path)
        self.profile = dict(
            driver="GTiff", width=width, height=height, count=count, dtype="float32" if dtype == "float16" else dtype,
            crs=crs, transform=transform, nodata=self.nodata, tiled=True, blockxsize=self.block_w,
            blockysize=self.block_h, compress=compress, predictor=3 if is_float else 2,
            interleave="pixel" if count > 1 else "band", bigtiff="if_safer",
        )
        if compress == "zstd":
            self.profile["zstd_level"] = 1
        if dtype == "float16":
            self.profile["nbits"] = 16
        if photometric:
            self.profile["photometric"] = photometric
        self._ds = None
        try:  # anything from here on (Ctrl-C included) removes the file it created
            self._ds = rasterio.open(self.tmp, "w", **self.profile)
            if colormap:
                self._ds.write_colormap(1, colormap)
            for i, d in enumerate(descriptions or [], start=1):
                self._ds.set_band_description(i, d)
        except BaseException as e:
            if self._ds is not None:
                self._ds.close()
            _remove(self.tmp)
            if isinstance(e, Exception):
                raise SoftConError(f"Cannot create {self.tmp}: {e}. Choose a writable output folder.") from None
            raise
        self._tags = dict(tags or {})
        self._ns = namespace
        # float16 output is buffered as float16: numpy rounds to nearest (GDAL's NBITS=16 conversion
        # truncates), and the buffer takes half the memory.
        self._buf = np.full((count, self.block_h, width), self.nodata, dtype)
        self._row0 = 0  # output row of _buf[:, 0]
        self._filled = 0  # rows of _buf filled
        self._done = False

    @classmethod
    def like(cls, out_path: PathLike, ref: rasterio.DatasetReader, count: int, dtype: str, **kw: Any) -> "BlockWriter":
        """A writer on the grid of an open raster ``ref`` (size, CRS, transform)."""
        return cls(out_path, width=ref.width, height=ref.height, count=count, crs=ref.crs, transform=ref.transform,
                   dtype=dtype, **kw)

    def set_tags(self, **tags: str) -> None:
        self._tags.update({k: str(v) for k, v in tags.items()})

    def write_rows(self, row: int, data: np.ndarray) -> None:
        """Add output rows ``[row, row + n)``; ``data`` (count, n, width); rows must come in order."""
        if row != self._row0 + self._filled:
            raise ValueError(f"rows must come in order: expected {self._row0 + self._filled}, got {row}")
        n = data.shape[1]
        i = 0
        while i < n:
            take = min(n - i, self.block_h - self._filled)
            self._buf[:, self._filled:self._filled + take] = data[:, i:i + take]
            self._filled += take
            i += take
            if self._filled == self.block_h or self._row0 + self._filled == self.height:
                self._flush()

    def _flush(self) -> None:
        n = min(self._filled, self.height - self._row0)
        if n <= 0:
            return
        try:
            self._ds.write(self._buf[:, :n].astype(self._ds.dtypes[0], copy=False),
                           window=Window(0, self._row0, self.width, n))
        except Exception as e:
            raise _disk_error(e, self.out_path) from e
        self._row0 += self._filled
        self._filled = 0
        self._buf.fill(self.nodata)

    def commit(self) -> Path:
        """Write what is left, the tags, close and rename into place."""
        if self._row0 + self._filled != self.height:
            raise ValueError(f"only {self._row0 + self._filled} of {self.height} rows were written")
        self._flush()
        try:
            self._ds.update_tags(ns=self._ns, **self._tags)
            self._close()
            verify_geotiff(self.tmp, self.out_path)
            if self.cog:
                self._to_cog()
                verify_geotiff(self.tmp, self.out_path)
            os.replace(self.tmp, self.out_path)
        except Exception as e:
            self.abort()
            raise _disk_error(e, self.out_path) from e
        self._done = True
        return self.out_path

    def _close(self) -> None:
        """Close the dataset: GDAL writes the cached tiles and the TIFF directory now."""
        self._ds.close()

    def _to_cog(self) -> None:
        """Rewrite the temporary file as a COG with overviews (a second temporary file, then swapped)."""
        from rasterio.shutil import copy as rio_copy

        p = self.profile
        opts = dict(compress=p["compress"], predictor="YES", blocksize=max(p["blockxsize"], 128), bigtiff="if_safer",
                    overviews="auto", overview_resampling=self.overview_resampling, num_threads="1")
        if p["compress"] == "zstd":
            opts["level"] = 1
        if "nbits" in p:
            opts["nbits"] = p["nbits"]
        if self._ns:
            opts["src_mdd"] = self._ns
        cog_tmp = _temp_name(self.out_path)
        try:
            rio_copy(self.tmp, cog_tmp, driver="COG", **opts)
        except BaseException:
            _remove(cog_tmp)
            raise
        _remove(self.tmp)
        self.tmp = cog_tmp

    def abort(self) -> None:
        """Close and remove the temporary file (nothing is left at ``out_path``)."""
        if not self._done:
            try:
                self._ds.close()
            # the file is removed next whatever state it is in (bandit B110)
            except Exception:  # nosec B110
                pass
            _remove(self.tmp)
            self._done = True

    def __enter__(self) -> "BlockWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()
