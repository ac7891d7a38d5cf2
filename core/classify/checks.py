"""What a map run can check from its inputs alone, before the (slow) embedding: one place, called first.

A run that will fail should fail in seconds with the fix, not after minutes of embedding: samples that miss
the raster or have too few per class, more classes than a class raster holds, pixel features asked of a raster
whose bands cannot give them, and a map that would not fit on the disk or in memory. The raster's value scale
and offset are checked with the embedding settings (:func:`core.classify.embedding.checked_spec`).
"""
from __future__ import annotations

import resource
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from ..embed.tags import is_embedding_raster
from ..errors import MEMORY_FIX, SoftConError
from ..geo.samples import MIN_PER_CLASS, rasterize_samples, VectorSamples
from ..io.raster import band_names, gdal_env, open_raster
from ..models.registry import get_record
from .embedding import raster_sources
from .features import EMB_COMPONENTS, INDICES, pixel_band_mapping, PIXEL_BANDS
from .spec import GRIDS

#: Classes a class raster holds: uint8 values 1..255, 0 = nodata.
MAX_CLASSES = 255
#: Bands without which there are no pixel features (the indices need them).
PIXEL_CORE = ("B2", "B3", "B4", "B8")
#: Memory the embedding needs on top of the libraries (encoder, batches of windows, activations; bytes).
BASE_BYTES = 400 * 2**20
#: Smallest prediction strip worth running (pixels); the default is 1 Mpx; a strip's memory is at most 1 GB.
MIN_STRIP, MAX_STRIP, MAX_STRIP_BYTES = 1 << 16, 1 << 20, 1 << 30


def n_classes(vec: VectorSamples) -> int:
    return len({lab for lab in vec.labels if lab is not None})


def check_classes(vec: VectorSamples) -> None:
    """Stop when the samples name more classes than a class raster holds."""
    n = n_classes(vec)
    if n > MAX_CLASSES:
        raise SoftConError(f"The samples name {n} classes; a class map holds at most {MAX_CLASSES} (one byte per "
                           f"pixel, 0 = no data). Merge classes (e.g. a coarser level of the nomenclature).")


def check_features(src: Any, sources: Any, bands: Any, model_bands: Sequence[str], wanted: tuple[str, ...] | None,
                   grid: str, log: Callable[[str], None]) -> None:
    """Stop when ``wanted`` feature groups cannot be computed on this raster; say so when ``auto`` must do
    without the pixel features."""
    if grid not in GRIDS:
        raise SoftConError(f"Unknown grid {grid!r}; use one of: {', '.join(GRIDS)}.")
    if wanted is not None and "pixel" in wanted and grid == "embedding":
        raise SoftConError("Pixel features exist only on the raster's own grid; use --grid pixel, or --features emb.")
    if (wanted is not None and "pixel" not in wanted) or grid == "embedding" or src is None:
        return
    found = pixel_band_mapping(band_names(src, sources), bands, model_bands)
    missing = [b for b in PIXEL_CORE if b not in found]
    if not missing:
        return
    why = (f"the raster has no band {', '.join(missing)}" if found else
           "its bands have no names that say which is which (give --bands, e.g. --bands s2_l1c)")
    if wanted is not None:
        raise SoftConError(f"--features {'+'.join(wanted)} needs the pixel's own bands {', '.join(PIXEL_CORE)}, but "
                           f"{why}. Use --features emb, or a raster with those bands.")
    log(f"Note: no pixel features (bands and {', '.join(INDICES)}): {why}; comparing embedding features only.")


def available_memory() -> int | None:
    """Bytes this process may still allocate: free memory, an address-space limit (ulimit -v) and a cgroup
    limit, whichever is smallest; None when none is known."""
    limits = []
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        limits.append(int(info["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            used = int(status["VmSize"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            used = 0
        limits.append(soft - used)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
            if text.isdigit() and int(text) < 1 << 60:
                used_path = Path(path).with_name("memory.current" if path.endswith("max") else "memory.usage_in_bytes")
                limits.append(int(text) - int(used_path.read_text().strip()))
                break
        except (OSError, ValueError):
            continue
    return min(limits) if limits else None


def strip_pixels(n_features: int, n_classes: int, reserve: int = 0) -> int:
    """Pixels per prediction strip that fit in half the memory left after ``reserve`` bytes (at most 1 Mpx and
    1 GB).

    A strip holds its features (the ``emb`` part upsampled through a few float32 copies), the class
    probabilities (float64 inside scikit-learn, float32 written) and the written rows: about
    ``24 * features + 24 * classes + 32`` bytes per pixel. The map is the same whatever the strip height.

    Raises:
        SoftConError: not even a strip of 64 kpx fits; the message says what to change.
    """
    free = available_memory()
    per_pixel = 24 * n_features + 24 * n_classes + 32
    if free is None:
        return int(min(MAX_STRIP, MAX_STRIP_BYTES // per_pixel))
    budget = min((free - reserve) // 2, MAX_STRIP_BYTES)
    if budget < MIN_STRIP * per_pixel:
        need = reserve + 2 * MIN_STRIP * per_pixel
        raise SoftConError(f"Not enough memory: this run needs about {need / 2**20:.0f} MB more and "
                           f"{max(free, 0) / 2**20:.0f} MB are left; {MEMORY_FIX}.")
    return int(min(MAX_STRIP, budget // per_pixel))


def check_disk(height: int, width: int, n_classes: int, folder: Path) -> None:
    """Stop when the map's rasters (class, probabilities, confidence) cannot fit on ``folder``'s disk.

    Estimated at half their uncompressed size (probabilities compress poorly); a raster far larger than meant
    (a mosaic, a wrong pixel size) is refused in a second instead of filling the disk for hours.
    """
    need = height * width * (1 + 4 * n_classes + 4) // 2
    where = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(where).free
    if need > free:
        raise SoftConError(f"The map would be {width} x {height} px: its rasters need about {need / 1e9:.0f} GB and "
                           f"{where} has {free / 1e9:.0f} GB free. Map a smaller extent (--bbox), or check the "
                           f"raster's size and pixel size.")


def least_per_class(cv_folds: int) -> int:
    """The fewest points or polygons a class needs: two to be cross-validated, one when there is no CV."""
    return MIN_PER_CLASS if cv_folds else 1


def preflight(raster: Any, vec: VectorSamples, spec: Any, wanted: tuple[str, ...] | None, grid: str,
              max_pixels_per_polygon: int, out_dir: Path, log: Callable[[str], None], *,
              min_per_class: int = MIN_PER_CLASS) -> None:
    """Every check of :mod:`core.classify.checks` on a ``classify`` run's inputs (raster not yet embedded);
    ``min_per_class``: the fewest points or polygons a class may have (:func:`least_per_class`)."""
    check_classes(vec)
    if is_embedding_raster(raster):
        return
    record = get_record(spec.model)
    sources = raster_sources(raster)
    with gdal_env(), open_raster(sources) as src:
        if spec.bbox is None:  # samples on the raster (with a bbox, on the embedded extent, after embedding)
            rasterize_samples(vec, src.transform, (src.height, src.width), src.crs, None, max_pixels_per_polygon,
                              min_per_class)
            check_disk(src.height, src.width, n_classes(vec), Path(out_dir))
        check_features(src, sources, spec.bands, record.bands, wanted, grid, log)
    strip_pixels(EMB_COMPONENTS + len(PIXEL_BANDS) + len(INDICES), n_classes(vec), reserve=BASE_BYTES)


def preflight_apply(raster: Any, spec: Any, saved: Any, out_dir: Path, log: Callable[[str], None]) -> None:
    """The checks of :func:`preflight` that concern ``apply``: the raster gives the classifier's features, and its
    map fits on the disk."""
    if is_embedding_raster(raster):
        return
    record = get_record(spec.model)
    sources = raster_sources(raster)
    groups = saved.features.groups if saved.features is not None else ("emb",)
    grid = saved.features.grid if saved.features is not None else "embedding"
    with gdal_env(), open_raster(sources) as src:
        if spec.bbox is None:
            check_disk(src.height, src.width, len(saved.class_names), Path(out_dir))
        check_features(src, sources, spec.bands, record.bands, tuple(groups), grid, log)
