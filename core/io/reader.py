"""Reading in block-aligned strips with memory that does not grow with area.

- :class:`StripReader` reads rows in strips aligned to the file's blocks, keeps only the rows the next
  windows need, and pads outside the raster with invalid pixels.
- :class:`Prefetcher` runs a producer (reading, slicing, batching) in a background thread.
"""
from __future__ import annotations

import math
import queue
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window

from ..errors import SoftConError
from ..progress import Progress
from .raster import gdal_env, NATIVE_DTYPES, nodata_values, uses_mask_band


def _damaged(ds: Any, win: Window, e: Exception) -> SoftConError:
    return SoftConError(f"Cannot read rows {int(win.row_off)}-{int(win.row_off + win.height)} of {ds.name}: the file "
                        f"is truncated or corrupt ({str(e).splitlines()[0]}). Copy or download it again.")


def read_window(ds: Any, indexes: Any, window: Window, out_dtype: Any = None) -> np.ndarray:
    """``ds.read(indexes, window=window)``; a read that fails (a truncated or damaged file) is one clear error."""
    try:
        return ds.read(indexes, window=window, out_dtype=out_dtype)
    except rasterio.errors.RasterioIOError as e:
        raise _damaged(ds, window, e) from None


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
        data = read_window(self.ds, self.read_bands, win, self.file_dtype)
        try:
            mask = self.ds.read_masks(1, window=win) if self._mask_band else None
        except rasterio.errors.RasterioIOError as e:
            raise _damaged(self.ds, win, e) from None
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
    def fn(r: int, n: int, c: int, m: int) -> np.ndarray:
        t = transform @ rasterio.Affine.translation(c, r)
        return geometry_mask([geometry], out_shape=(n, m), transform=t, invert=True, all_touched=False)

    return fn


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



FIT_PIXELS = 50_000


STRIP_BYTES = 64 * 2**20  # float32 bytes of embeddings held per strip


def strip_rows(ds) -> int:
    """Rows per strip: a multiple of the block height holding about ``STRIP_BYTES`` of float32."""
    bh = ds.block_shapes[0][0]
    per_row = ds.width * ds.count * 4
    n = max(1, STRIP_BYTES // max(per_row * bh, 1))
    return int(min(ds.height, n * bh))


def iter_strips(ds, progress: Progress | None = None, message: str = "") -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (first row, embeddings (n, W, D) float32, valid (n, W) bool) down the raster.

    A pixel is valid when its first band is finite and not the declared nodata value.
    """
    step = strip_rows(ds)
    nodata = ds.nodata
    for r in range(0, ds.height, step):
        n = min(step, ds.height - r)
        x = read_window(ds, None, Window(0, r, ds.width, n), "float32")  # (D, n, W)
        valid = np.isfinite(x[0])
        if nodata is not None and np.isfinite(nodata):
            valid &= x[0] != nodata
        yield r, np.ascontiguousarray(np.moveaxis(x, 0, -1)), valid
        if progress is not None:
            progress.check()
            progress.update(r + n, ds.height, message)


def read_pixels(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Embeddings (M, D) float32 at pixel (rows, cols); NaN rows where the raster has no data."""
    out = np.full((len(rows), ds.count), np.nan, np.float32)
    if len(rows) == 0:
        return out
    step = strip_rows(ds)
    strip = rows // step
    nodata = ds.nodata
    for s in np.unique(strip):
        sel = np.nonzero(strip == s)[0]
        r0, c0 = int(rows[sel].min()), int(cols[sel].min())
        r1, c1 = int(rows[sel].max()) + 1, int(cols[sel].max()) + 1
        x = read_window(ds, None, Window(c0, r0, c1 - c0, r1 - r0), "float32")  # (D, h, w)
        v = x[:, rows[sel] - r0, cols[sel] - c0].T
        if nodata is not None and np.isfinite(nodata):
            v[v[:, 0] == nodata] = np.nan
        out[sel] = v
    return out


def random_pixels(ds, n: int = FIT_PIXELS, seed: int = 0) -> np.ndarray:
    """Up to ``n`` valid embeddings (n, D) drawn uniformly over the raster (strip by strip)."""
    rng = np.random.default_rng(seed)
    frac = min(1.0, n / max(ds.width * ds.height, 1))
    picks = []
    for _, x, valid in iter_strips(ds):
        r, c = np.nonzero(valid)
        if r.size:
            take = rng.random(r.size) < frac
            picks.append(x[r[take], c[take]])
    if not picks or sum(len(p) for p in picks) == 0:
        raise SoftConError("The embedding raster holds no valid pixels; recompute it over an area with data.")
    return np.concatenate(picks)[:n]
