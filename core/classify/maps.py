"""Maps without training labels: similarity to reference samples, PCA false colour, k-means clusters."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import rasterio

from ..embed.spec import EmbedSpec
from ..embed.tags import is_embedding_raster
from ..errors import SoftConError
from ..models.registry import DEFAULT_MODEL
from ..progress import Progress
from . import analysis
from .embedding import drop_uncached, get_embedding
from .features import GRIDS
from .pixelmap import open_source, upsample_to_pixels
from .styles import write_ramp_qml


def similarity_map(
    raster_or_embedding: str | os.PathLike | Sequence[str | os.PathLike],
    reference_vector: str | os.PathLike,
    out_path: str | os.PathLike,
    fids: Sequence[int] | None = None,
    model: str = DEFAULT_MODEL,
    bands: str | Sequence[str] | None = None,
    mode: str = "dense",
    stride: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    cache: bool = True,
    progress: Progress | None = None,
    pretrained: bool = True,
    layer: str | int | None = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    grid: str = "pixel",
    embed_spec: EmbedSpec | None = None,
) -> Path:
    """Cosine similarity of every embedding pixel to the mean embedding of reference points/polygons.

    Args:
        reference_vector: vector file; ``fids`` selects features (None = all).
        out_path: float32 GeoTIFF (NaN = nodata) with a ``.qml`` ramp beside it.
        grid: ``pixel``: on the raster's own grid (the similarity of the tokens, upsampled bilinearly;
            needs the original raster or an embedding raster whose source is still there);
            ``embedding``: on the token grid.
        embed_spec: the embedding settings at once (:class:`core.embed.spec.EmbedSpec`); replaces the keywords.
    """
    embed_spec = embed_spec or EmbedSpec(model=model, checkpoint=checkpoint, pretrained=pretrained, bands=bands,
                                         mode=mode, stride=stride, precision=precision, device=device, bbox=bbox,
                                         bbox_crs=bbox_crs)
    emb = get_embedding(raster_or_embedding, embed_spec, cache=cache, progress=progress)
    try:
        return _similarity(emb, raster_or_embedding, reference_vector, out_path, fids, layer, grid, progress)
    finally:
        drop_uncached(emb)


def _similarity(emb: Any, raster_or_embedding: Any, reference_vector: Any, out_path: Any, fids: Any, layer: Any,
                grid: str, progress: Progress | None) -> Path:
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise SoftConError(f"The output folder {out_path.parent} does not exist; create it first.")
    with rasterio.open(emb.path) as ds:
        ref, n = analysis.reference_embedding(ds, reference_vector, fids, layer)
    (progress or Progress()).log(f"Reference embedding from {n} pixel(s).")
    if grid not in GRIDS:
        raise SoftConError(f"Unknown grid {grid!r}; use one of: {', '.join(GRIDS)}.")
    src = open_source(raster_or_embedding, emb.info) if grid == "pixel" else None
    if src is None:
        if grid == "pixel" and emb.info.get("cell", 1) > 1:
            (progress or Progress()).log("The raster behind the embeddings is not available: similarity on the "
                                         "embedding grid.")
        return analysis.similarity_raster(emb.path, ref, out_path, progress)
    tmp = out_path.parent / f".{out_path.stem}-{uuid.uuid4().hex[:8]}.tif"
    try:
        with src:
            analysis.similarity_raster(emb.path, ref, tmp, progress)
            upsample_to_pixels(tmp, out_path, src, emb.info.get("cell") or 1, "cosine similarity", progress)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".qml").unlink(missing_ok=True)
    write_ramp_qml(out_path.with_suffix(".qml"), 0.0, 1.0)
    return out_path


def _need_embedding(path: Any) -> Path:
    if not is_embedding_raster(path):
        raise SoftConError(f"{path} is not an embedding raster; compute one first with "
                           f"`python -m core.embed RASTER --out EMB.tif`.")
    return Path(path)


def pca_preview(embedding_raster: str | os.PathLike, out_path: str | os.PathLike,
                progress: Progress | None = None) -> Path:
    """PCA false colour (3-band uint8 RGB GeoTIFF) of an embedding raster."""
    return analysis.pca_raster(_need_embedding(embedding_raster), out_path, progress)


def kmeans_map(embedding_raster: str | os.PathLike, n_clusters: int, out_path: str | os.PathLike,
               seed: int = 0, progress: Progress | None = None) -> Path:
    """Unsupervised class map: k-means clusters of an embedding raster (uint8, 1..k, with ``.qml``)."""
    return analysis.kmeans_raster(_need_embedding(embedding_raster), n_clusters, out_path, seed, progress)
