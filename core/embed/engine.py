"""Sliding-window embedding of rasters of any size: ``python -m core.embed`` (after timm's ``inference.py``).

The raster is read in block-aligned strips by a background thread that slices windows (see
:mod:`core.embed.windows`), batches them as raw integers and, on CPU, normalises them (SoftCon
preprocessing, :func:`core.geo.normalize.preprocess`); on a GPU the raw batch goes over in pinned memory,
without blocking, and is normalised there. The model runs under ``torch.inference_mode`` and autocast,
several batches at once (:mod:`core.embed.runner`: on a CPU one batch per core, each on one thread); finished
output rows go to a tiled GeoTIFF one row of blocks at a time, so memory is bounded by the
raster's width, never its area.

Nodata: an output pixel (a window's centre cell in ``pooled`` mode, a patch in ``dense`` mode) is
nodata (NaN) when less than ``min_valid`` (default half) of the input pixels it covers hold data, or
when it lies outside ``polygon``. Windows whose output pixels are all nodata are not run. Windows at
the raster's border see the raster mirrored beyond its edge (:func:`core.embed.windows.reflect_outside`), so
border pixels are embedded from real-looking context; inside a window, nodata pixels enter the model
as 0 after normalisation, the value SoftCon preprocessing gives to missing data.

Many rasters shard across processes with ``torchrun``: rank r of WORLD_SIZE takes every WORLD_SIZE-th
file (``torchrun --nproc_per_node=4 -m core.embed *.tif --out DIR``); each rank uses GPU LOCAL_RANK.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..device import autocast, pick_device, resolve_precision
from ..errors import SoftConError
from ..geo.bands import describe_order, MissingBands, resolve_bands
from ..geo.crs import pixel_extent, pixel_size_m, to_geometry
from ..geo.normalize import preprocess, strip_normaliser
from ..io.atomic import clean_stale
from ..io.raster import band_names, gdal_env, open_raster, resample_to
from ..io.reflectance import check_reflectance
from ..io.reader import geometry_mask_fn, Prefetcher, StripReader
from ..io.writer import BlockWriter, check_writable
from ..models.encoders import create_encoder
from ..models.record import ModelRecord
from ..models.registry import models_for
from ..models.weights import weights_id
from ..progress import Progress
from . import position_bias
from .blend import BLEND, halo_windows, TokenBlender
from .runner import BatchRunner, cpu_workers
from .spec import EmbedSpec
from .tags import FORMAT_VERSION, TAG_NAMESPACE
from .windows import make_grid, reflect_outside, WindowGrid

#: Ground sampling distance (m) the SoftCon models were trained at (Sentinel-1/2 at 10 m).
MODEL_GSD_M = 10.0
#: Relative pixel-size deviation that earns a warning, and the one that is an error without ``resample``.
GSD_WARN, GSD_ERROR = 0.25, 1.0


#: Batches the reader thread may prepare ahead of the model.
QUEUE_DEPTH = 3


_PRECISION_NAME = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def normalise_on_device(device: torch.device) -> bool:
    """GPUs get raw integers (half the bytes of float32 over the bus) and normalise them; CPUs
    normalise in the reader thread, overlapped with the model."""
    return device.type != "cpu"


def default_batch_size(device: torch.device, window: int) -> int:
    """Windows per batch: 16 (CPU) or 1024 (GPU) windows of 64 px, fewer for larger windows.

    On a CPU each core runs its own batches (:mod:`.runner`); 16 windows of the default model keep a block's
    activations (at most 10 MB) in cache, and ran faster than 32 or 64 (``benchmarks/inference.py``).
    """
    base = 1024 if device.type == "cuda" else 16
    return max(4, int(base * (64 / window) ** 2))


def read_in_background(device: torch.device) -> bool:
    """Read and prepare windows in a background thread only when a core is free for it.

    On a GPU the CPU is idle while the model runs, so reading overlaps for free. On a CPU whose cores
    all run torch's threads, a reader thread only slows the model down (see ``Prefetcher``),
    so reading happens between batches instead.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return device.type != "cpu" or cores > torch.get_num_threads()


def rank_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the ``torchrun`` environment; (0, 1, 0) outside it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


@dataclass
class _Batch:
    """Windows ready for the model, plus the window rows that are complete once it is placed."""

    x: torch.Tensor | None  # (B, C, W, W): raw (GPU path) or normalised (CPU path)
    valid: torch.Tensor | None  # (B, W, W) bool, only on the GPU path
    where: list[tuple[int, int]]  # (window row, window col) per window
    rows_done: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (window row, cell validity)
    uint16_as_int16: bool = False  # raw uint16 shipped as its int16 bit pattern (GPU path)


def _check_resolution(ds: Any, resample: bool, progress: Progress) -> Any:
    """The dataset to read: ``ds`` itself, or a 10 m virtual copy when ``resample`` is set."""
    res = pixel_size_m(ds)
    rel = res / MODEL_GSD_M
    if resample and abs(rel - 1) > 0.01:
        progress.log(f"Resampling the {res:.1f} m raster to {MODEL_GSD_M:.0f} m on the fly.")
        return resample_to(ds, MODEL_GSD_M)
    if rel > 1 + GSD_ERROR or rel < 1 / (1 + GSD_ERROR):
        raise SoftConError(
            f"The raster has {res:.1f} m pixels but the model was trained on {MODEL_GSD_M:.0f} m data; "
            f"embeddings would be meaningless. Resample to {MODEL_GSD_M:.0f} m (--resample, or resample=True) "
            f"or use a {MODEL_GSD_M:.0f} m raster."
        )
    if abs(rel - 1) > GSD_WARN:
        progress.log(f"Warning: the raster has {res:.1f} m pixels; the model expects {MODEL_GSD_M:.0f} m. "
                     f"Embeddings may be degraded; consider --resample.")
    return ds


def _produce(
    stop: threading.Event,
    ds: Any,
    indexes: list[int | None],
    grid: WindowGrid,
    batch_size: int,
    min_valid: float,
    polygon_mask: Any,
    norm: dict[str, Any] | None,
    pin: bool,
    in_flight: int = 2,
) -> Iterator[_Batch]:
    """Background producer: strips -> windows -> batches (runs in the :class:`~core.Prefetcher` thread).

    Args:
        norm: preprocessing arguments when normalising here (CPU): pointwise (optical) preprocessing
            is applied to each window row's strip, per-window statistics (SAR) to each batch.
            None (GPU): raw values go out with their validity, in pinned memory if ``pin``.
        in_flight: batches the model side holds at once (:attr:`core.embed.runner.BatchRunner.depth`, plus the
            one it computes), which sizes the ring of batch buffers.
    """
    reader = StripReader(ds, indexes, grid.col_span())
    normaliser = strip_normaliser(reader.file_dtype, len(indexes), norm) if norm is not None else None
    if normaliser is not None:
        reader = StripReader(ds, indexes, grid.col_span(), transform=normaliser)
    need_valid = normaliser is None
    w, s, m, k = grid.window, grid.stride, grid.margin, grid.cells_per_window
    shape = (batch_size, len(indexes), w, w)
    # A ring of batch buffers, reused: the queue holds at most ``QUEUE_DEPTH`` batches and the model side
    # ``in_flight`` more, so a buffer is free again by the time the ring comes back to it. Fresh arrays per
    # batch would let malloc's arenas grow.
    ring = [(np.empty(shape, reader.dtype), np.empty((batch_size, w, w), bool) if need_valid else None)
            for _ in range(QUEUE_DEPTH + in_flight + 2)]
    slot = 0
    xb, vb = ring[slot]
    where: list[tuple[int, int]] = []
    rows_done: list[tuple[int, np.ndarray]] = []

    def emit() -> _Batch:
        n = len(where)
        x = torch.from_numpy(xb[:n]) if n else None
        v = torch.from_numpy(vb[:n]) if n and need_valid else None
        if x is not None and norm is not None and normaliser is None:  # CPU, SAR: per-window quantiles
            x, v = preprocess(x, valid=v, **norm), None
        as_int16 = x is not None and norm is None and xb.dtype == np.uint16
        if as_int16:  # torch's uint16 has few kernels: ship the bits as int16, widen on the device
            x = torch.from_numpy(xb[:n].view(np.int16))
        if x is not None and pin:
            x, v = x.pin_memory(), v.pin_memory()
        return _Batch(x, v, list(where), list(rows_done), as_int16)

    for i in range(grid.n_rows):
        if stop.is_set():
            return
        data, valid = reader.rows(*grid.row_span(i))  # (C, W, cols), (W, cols)
        owned = valid[m:m + s, m:m + grid.n_cols * s]
        if polygon_mask is not None:
            owned = owned & polygon_mask(grid.row0 + i * s, s, grid.col0, grid.n_cols * s)
        cells = grid.cell_valid(owned, min_valid)  # (k, n_cols * k)
        # windows at the border see the raster mirrored, never zeros the model has not seen
        data, valid = reflect_outside(data, valid, grid.row_span(i)[0], grid.col_span()[0], ds.height, ds.width)
        for j in np.flatnonzero(cells.reshape(k, grid.n_cols, k).any(axis=(0, 2))):
            c = j * s
            n = len(where)
            xb[n] = data[:, :, c:c + w]
            if need_valid:
                vb[n] = valid[:, c:c + w]
            where.append((i, int(j)))
            if len(where) == batch_size:
                yield emit()
                slot = (slot + 1) % len(ring)
                xb, vb = ring[slot]
                where.clear()
                rows_done.clear()
        rows_done.append((i, cells))
    yield emit()


def embed_raster(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    spec: EmbedSpec,
    *,
    progress: Progress | None = None,
    encoder: tuple[torch.nn.Module, ModelRecord] | None = None,
) -> Path:
    """Embed a raster window by window into a GeoTIFF of ``embed_dim`` bands in the raster's CRS.

    Args:
        sources: one raster (any GDAL format), or single-band files stacked onto the finest one's grid
            (a Sentinel-2 product at 10/20/60 m; coarser bands are resampled bilinearly).
        out_path: output GeoTIFF (tiled, ZSTD-compressed, NaN nodata, tags in namespace ``SOFTCON``).
        spec: every setting (:class:`core.embed.spec.EmbedSpec`): model and weights, bands (default: band
            descriptions / file names, else the model's order when the count matches), ``mode`` (``pooled``: one
            embedding per window, output pixel = stride; ``dense``: patch tokens of each window's centre, output
            pixel = patch size), stride (default :func:`core.embed.windows.default_stride`:
            3/4 of a window dense, half pooled), extent (bbox,
            polygon), device, precision, batch size (default :func:`default_batch_size`), nodata, offset,
            min_valid, resample, output dtype and COG layout (averaged overviews: one extra pass).
        progress: callback and cancel check; cancelling stops within one batch and leaves no file.
        encoder: an already built ``(encoder, record)`` to use instead of ``spec.model``/``spec.checkpoint``.

    Returns:
        ``out_path``.

    Raises:
        SoftConError: bad input (missing CRS, unknown band order, resolution, unwritable output, full disk).
        Cancelled: when ``progress`` asked to stop; no output file is left.
    """
    progress = progress or Progress()
    out_path = Path(out_path)
    check_writable(out_path)
    clean_stale(out_path.parent)  # what killed runs left there goes, even if this run fails before writing
    t_start = time.perf_counter()
    with gdal_env():
        src = open_raster(sources, nodata=spec.nodata)
        try:
            if src.crs is None:
                raise SoftConError(
                    "The raster has no coordinate reference system, so the embeddings could not be placed on a map. "
                    "Assign one (e.g. gdal_edit.py -a_srs EPSG:32632 FILE) and try again."
                )
            ds = _check_resolution(src, spec.resample, progress)
            if encoder is None:
                enc, record = create_encoder(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint)
            else:
                enc, record = encoder
            names = band_names(src, sources)
            notes: list[str] = []
            try:
                mapping = resolve_bands(names, record.bands, spec.bands, notes)
            except MissingBands as e:
                usable = [m for m in models_for(e.bands) if m != record.name]
                raise SoftConError(f"{e} " + (f"Models that can use this raster: {', '.join(usable)} (--model)."
                                              if usable else "No registered model can use these bands: each needs "
                                              "10 or 13 Sentinel-2 bands, or Sentinel-1 VV and VH.")) from None
            progress.log(f"Bands ({'; '.join(notes)}): {describe_order(mapping, record.bands)}")
            indexes = [None if b is None else b + 1 for b in mapping]
            if record.sar_quantiles is None:  # optical: reflectance x 10000, offset from the metadata (None: auto)
                spec = spec.replace(offset=check_reflectance(src, sources, [i for i in indexes if i is not None],
                                                             spec.offset, progress.log))
            geometry = to_geometry(spec.polygon, spec.polygon_crs, ds.crs) if spec.polygon is not None else None
            extent = pixel_extent(ds, spec.bbox, spec.bbox_crs, geometry)
            grid = make_grid(spec.mode, record.input_size, spec.stride, enc.patch_size, ds.height, ds.width, extent)
            polygon_mask = geometry_mask_fn(geometry, ds.transform) if geometry is not None else None
            inp = _Input(ds, sources, indexes, names, grid, polygon_mask)
            return _run(inp, out_path, enc, record, spec, progress, t_start,
                        weights_id(record, spec.pretrained, spec.checkpoint))
        finally:
            src.close()


@dataclass
class _Input:
    """The opened raster and what was decided about it: band indexes (None = zeros), window grid, polygon mask."""

    ds: Any
    sources: Any
    indexes: list[int | None]
    names: list[str | None]
    grid: WindowGrid
    polygon_mask: Any


def _run(inp: _Input, out_path: Path, enc: torch.nn.Module, record: ModelRecord, spec: EmbedSpec,
         progress: Progress, t_start: float, wid: str) -> Path:
    ds, sources, indexes, names, grid, polygon_mask = (inp.ds, inp.sources, inp.indexes, inp.names, inp.grid,
                                                       inp.polygon_mask)
    min_valid, offset, checkpoint, dtype = spec.min_valid, spec.offset or 0.0, spec.checkpoint, spec.dtype
    rank, _, local_rank = rank_info()
    dev = pick_device(spec.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    amp = resolve_precision(dev, spec.precision)
    bs = spec.batch_size or default_batch_size(dev, grid.window)
    enc = enc.to(dev).eval()
    stats = dict(mean=list(record.mean), std=list(record.std), sar_quantiles=record.sar_quantiles, offset=offset,
                 clip=record.clip)
    on_gpu = normalise_on_device(dev)
    dim = record.embed_dim
    mp = grid.margin // grid.cell if grid.mode == "dense" else 0
    k = grid.cells_per_window
    halo = halo_windows(mp, k)  # rows/columns of windows beyond the extent that blend into it
    run_grid = grid.with_halo(halo)
    blender = TokenBlender(dim, k, k + 2 * mp, mp, grid.out_height, grid.out_width)
    bias, bias_source = position_bias.load(record, wid) if grid.mode == "dense" else (None, "none")
    bias_t = None if bias is None else torch.from_numpy(bias).to(dev)
    tags = {
        "format_version": FORMAT_VERSION, "model": record.name, "arch": record.arch,
        "bands": json.dumps(list(record.bands)),
        "source_bands": json.dumps([None if i is None else names[i - 1] or f"band {i}" for i in indexes]),
        "mean": json.dumps(list(record.mean)), "std": json.dumps(list(record.std)),
        "sar_quantiles": json.dumps(record.sar_quantiles), "offset": repr(float(offset)),
        "mode": grid.mode, "stride": str(grid.stride), "window": str(grid.window),
        "patch_size": str(enc.patch_size), "cell": str(grid.cell), "dim": str(dim),
        "precision": _PRECISION_NAME[amp], "dtype": dtype, "min_valid": repr(float(min_valid)),
        "checkpoint": str(checkpoint) if checkpoint else "", "weights_id": wid, "border": "reflect",
        "blend": BLEND if grid.mode == "dense" else "none", "position_bias": bias_source,
        "input_res_m": f"{pixel_size_m(ds):.3f}",
        "sources": json.dumps([str(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]),
    }
    workers = cpu_workers(dev)
    progress.log(
        f"{record.name}: {grid.mode} embeddings, {grid.n_windows} windows of {grid.window} px every {grid.stride} px "
        f"-> {grid.out_width} x {grid.out_height} x {dim} on {dev} ({_PRECISION_NAME[amp]}, batch {bs}"
        + (f", {workers} batches at once, one per core)" if workers > 1 else ")")
    )

    def forward(x: torch.Tensor) -> torch.Tensor:
        """(B, C, W, W) normalised windows -> (B, D, T, T) float embeddings of all their tokens (blended by
        ``place``), the encoder's token position pattern taken off (:mod:`core.embed.position_bias`)."""
        with autocast(dev, amp):
            y = enc.forward_dense(x) if grid.mode == "dense" else enc(x)[:, :, None, None]
        return y.float() if bias_t is None else y.float() - bias_t

    writer = BlockWriter(
        out_path, width=grid.out_width, height=grid.out_height, count=dim, crs=ds.crs,
        transform=grid.transform(ds.transform), dtype=dtype,
        descriptions=[f"emb_{d:03d}" for d in range(dim)], tags=tags, namespace=TAG_NAMESPACE, cog=spec.cog,
    )
    runner = BatchRunner(forward, dev, workers)
    try:
        prefetch = Prefetcher(
            lambda stop: _produce(stop, ds, indexes, run_grid, bs, min_valid, polygon_mask,
                                  None if on_gpu else stats, dev.type == "cuda", runner.depth),
            depth=QUEUE_DEPTH, background=read_in_background(dev),
        )
    except BaseException:
        runner.close()
        writer.abort()
        raise
    cells_of: dict[int, np.ndarray] = {}  # output block -> which of its tokens hold enough data
    done = run = 0

    def place(batch: _Batch, out: np.ndarray | None) -> None:
        """Blend a batch's embeddings (B, D, T, T) into the output; write the rows no later window reaches."""
        nonlocal done
        for b, (i, j) in enumerate(batch.where):
            blender.add(i - halo, j - halo, out[b])
        for i, cells in batch.rows_done:
            i -= halo
            if 0 <= i < grid.n_rows:
                cells_of[i] = cells[:, halo * k:halo * k + grid.out_width]
            while done < grid.n_rows and done + halo <= i:
                row = blender.pop(done)
                row[:, ~cells_of.pop(done)] = np.nan
                r0, r1 = grid.out_rows(done)
                writer.write_rows(r0, row[:, :r1 - r0])
                done += 1

    try:
        for batch in prefetch:
            progress.check()
            x = batch.x
            if x is not None and on_gpu:
                x = x.to(dev, non_blocking=True)
                if batch.uint16_as_int16:
                    x = x.to(torch.int32).bitwise_and_(0xFFFF)
                x = preprocess(x, valid=batch.valid.to(dev, non_blocking=True), **stats)
            run += len(batch.where)
            for finished, out in runner.submit(batch, x):
                place(finished, out)
            progress.update(done, grid.n_rows, f"{run} windows")
        for finished, out in runner.drain():
            place(finished, out)
        progress.check()
        if run == 0:
            raise SoftConError(
                f"No output pixel has enough valid input (at least {min_valid:.0%} of its pixels): the raster "
                f"({ds.width} x {ds.height} px) is all nodata, or too small for {grid.window} px windows every "
                f"{grid.stride} px. Use a larger extent, or check the raster's nodata value."
            )
        elapsed = time.perf_counter() - t_start
        writer.set_tags(windows_total=run_grid.n_windows, windows_run=run, windows_skipped=run_grid.n_windows - run,
                        seconds=f"{elapsed:.2f}", device=str(dev))
        result = writer.commit()
    except BaseException:
        runner.close()
        prefetch.close()
        writer.abort()
        raise
    runner.close()
    prefetch.close()
    progress.update(grid.n_rows, grid.n_rows, f"{run} windows")
    progress.log(f"Wrote {result} ({run} windows run, {grid.n_windows - run} skipped as nodata, {elapsed:.1f} s).")
    return result
