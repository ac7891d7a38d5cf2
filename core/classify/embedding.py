"""The embedding raster behind a map: the given one (model checked), or computed once and cached."""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import cached_embedding, file_fingerprint, unusable
from ..device import pick_device, resolve_precision
from ..embed.engine import embed_raster
from ..embed.position_bias import table_path
from ..embed.spec import EmbedSpec
from ..embed.tags import embedding_info, is_embedding_raster
from ..errors import SoftConError
from ..geo.bands import resolve_bands
from ..geo.crs import pixel_size_m
from ..io.raster import band_names, gdal_env, open_raster
from ..io.reflectance import check_reflectance
from ..io.writer import verify_geotiff
from ..models.registry import DEFAULT_MODEL, get_record
from ..models.weights import cached_path, weights_id
from ..progress import Progress


def weights_label(model: str, pretrained: bool, checkpoint: str | os.PathLike | None) -> str:
    """Which weights produced the embeddings, in words, for the report (never pretend)."""
    record = get_record(model)
    if checkpoint is not None:
        return f"checkpoint {Path(checkpoint).name}"
    if not pretrained:
        if model == DEFAULT_MODEL and cached_path(record) is None:
            return "random-init (default weights not yet trained)"
        return "random-init (pretrained=False; not a trained model)"
    path = cached_path(record)
    return f"trained weights of {model}" + (f" ({path.name})" if path else "")


@dataclass
class Embedding:
    """An embedding raster and what is known about it."""

    path: Path
    info: dict[str, Any]
    weights: str
    from_cache: bool | None  # None: given by the user
    seconds: float = 0.0
    weights_id: str = ""  # core.models.weights.weights_id; "" for embedding rasters written before it was tagged
    temporary: bool = False  # computed outside the cache for this run only: removed by drop_uncached


def raster_sources(raster: Any) -> str | list[str]:
    files = [raster] if isinstance(raster, (str, os.PathLike)) else list(raster)
    for f in files:
        if not Path(f).exists():
            raise SoftConError(f"Raster {f} not found.")
    return str(files[0]) if isinstance(raster, (str, os.PathLike)) else [str(f) for f in files]


def get_embedding(raster: Any, spec: EmbedSpec, *, cache: bool = True, scratch: Path | None = None,
                  progress: Progress | None = None) -> Embedding:
    """The embedding raster of ``raster``: itself if it is one (model checked), else cached or computed.

    Raises:
        SoftConError: an embedding raster made with another model than ``spec.model``.
    """
    model = spec.model
    if is_embedding_raster(raster):
        info = embedding_info(raster)
        if info.get("model") != model:
            raise SoftConError(
                f"{Path(raster).name} holds embeddings of model {info.get('model')!r}, not {model!r}. "
                f"Use --model {info.get('model')} (the classifier must use the model the embeddings came from), "
                f"or embed the original raster with {model}."
            )
        ckpt = info.get("checkpoint") or ""
        return Embedding(Path(raster), info, "as recorded in the embedding raster"
                         + (f" (checkpoint {Path(ckpt).name})" if ckpt else ""), None,
                         weights_id=info.get("weights_id") or "")
    sources = raster_sources(raster)
    record = get_record(model)
    spec = checked_spec(sources, spec, record, progress)
    weights_file = spec.checkpoint or (cached_path(record) if spec.pretrained else None)
    dev = pick_device(spec.device)
    key = spec.cache_key(file_fingerprint(weights_file), dev.type, str(resolve_precision(dev, spec.precision)))
    if table_path(record).is_file():  # a re-measured position bias changes dense embeddings
        key["position_bias"] = file_fingerprint(table_path(record))

    def compute(out: Path) -> Path:
        return embed_raster(sources, out, spec, progress=progress)

    t = time.perf_counter()
    why = unusable() if cache else None
    if why is not None:
        (progress.log if progress else print)(f"Note: {why} Running without the embedding cache.")
        cache = False
    if cache:
        path, hit = cached_embedding(sources, key, compute, log=progress.log if progress else None,
                                     validate=lambda p: (verify_geotiff(p), embedding_info(p)))
    else:
        scratch = scratch or Path(tempfile.gettempdir())
        path, hit = compute(scratch / f"embedding-{uuid.uuid4().hex[:8]}.tif"), False
    info = embedding_info(path)
    if hit and progress is not None:  # the embedding run that logged the band order was an earlier one
        progress.log(f"Bands (as when the cached embedding was computed): "
                     f"{', '.join(f'{b}<-{s}' for b, s in zip(info.get('bands', []), info.get('source_bands', [])))}")
    return Embedding(path, info, weights_label(model, spec.pretrained, spec.checkpoint), hit, time.perf_counter() - t,
                     info.get("weights_id") or weights_id(record, spec.pretrained, spec.checkpoint), not cache)


def checked_spec(sources: Any, spec: EmbedSpec, record: Any, progress: Progress | None = None) -> EmbedSpec:
    """``spec`` with the reflectance offset resolved (the cache key depends on it), after the checks that need
    only the raster: band order and value scale (:func:`core.io.reflectance.check_reflectance`)."""
    if record.sar_quantiles is not None:
        return spec
    with gdal_env(), open_raster(sources) as src:
        mapping = resolve_bands(band_names(src, sources), record.bands, spec.bands)
        offset = check_reflectance(src, sources, [i + 1 for i in mapping if i is not None], spec.offset,
                                   progress.log if progress else print)
    return spec.replace(offset=offset)


def embedding_summary(emb: Embedding, ds) -> dict[str, Any]:
    info = emb.info
    px_m = pixel_size_m(ds)  # metres, also for rasters in degrees
    return {"model": info.get("model"), "bands": info.get("bands"), "mode": info.get("mode"),
            "stride": info.get("stride"), "window": info.get("window"), "dim": int(ds.count),
            "pixel_size_m": round(px_m, 3), "width": ds.width, "height": ds.height,
            "path": str(emb.path), "from_cache": emb.from_cache, "weights": emb.weights}


def drop_uncached(emb: Embedding) -> None:
    """Remove an embedding computed only for this run (without the cache)."""
    if emb.temporary and emb.path.exists():
        emb.path.unlink()
