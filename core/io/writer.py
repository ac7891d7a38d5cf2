"""The one writer of raster outputs, and the checks around it.

:class:`BlockWriter` writes a tiled, compressed GeoTIFF (or a COG with overviews) one row of blocks at a
time, into a temporary file in the target folder that :func:`verify_geotiff` checks complete before it is
renamed at the end (GDAL's write errors at close, e.g. a full disk, are not raised by rasterio), and that
is removed on error or cancel. :func:`stack_to_geotiff` writes a stack of single-band files as one file.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from ..errors import SoftConError
from .atomic import clean_stale, temp_path
from .raster import GDAL_CACHE_MB, gdal_env, open_raster, PathLike


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
        p = self.profile
        cog_tmp = _temp_name(self.out_path)
        cog_copy(self.tmp, cog_tmp, compress=p["compress"], blocksize=max(p["blockxsize"], 128),
                 overview_resampling=self.overview_resampling, nbits=p.get("nbits"), namespace=self._ns)
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


def cog_copy(src: PathLike, dst: PathLike, *, compress: str = "zstd", blocksize: int = 256,
             overview_resampling: str = "average", nbits: int | None = None, namespace: str | None = None) -> Path:
    """Copy a GeoTIFF to ``dst`` as a Cloud Optimized GeoTIFF with overviews (GDAL's COG driver).

    ``namespace``: a tag domain to carry over (the COG driver drops all but the default one). ``dst`` is
    removed if the copy fails.
    """
    opts = dict(compress=compress, predictor="YES", blocksize=blocksize, bigtiff="if_safer", overviews="auto",
                overview_resampling=overview_resampling, num_threads="1")
    if compress == "zstd":
        opts["level"] = 1
    if nbits:
        opts["nbits"] = nbits
    if namespace:
        opts["src_mdd"] = namespace
    try:
        rasterio.shutil.copy(src, dst, driver="COG", **opts)
    except BaseException:
        _remove(Path(dst))
        raise
    return Path(dst)


def make_cog(path: PathLike, overview_resampling: str = "average") -> Path:
    """Turn a finished GeoTIFF into a COG in place: written beside it, checked complete, renamed over it.

    Raises:
        SoftConError: the copy failed or came out incomplete (a full disk); ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        with gdal_env():
            with rasterio.open(path) as ds:
                bs = ds.block_shapes[0][1] if ds.block_shapes else 256
                nbits = ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") if ds.count else None
            cog_copy(path, tmp, blocksize=max(128, bs), overview_resampling=overview_resampling,
                     nbits=int(nbits) if nbits else None)
        verify_geotiff(tmp, path)
        os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        raise _disk_error(e, path) from e
    return path
