"""Weights files by hand: convert a published ``.pth`` to this project's safetensors, and register a file copied
onto a computer without internet access as a model's weights (``python -m core.models convert/register``)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..errors import SoftConError
from ..io.atomic import atomic_path
from .checkpoint import load_weights, save_safetensors
from .encoders import build_encoder, create_encoder
from .record import read_safetensors_metadata, record_metadata
from .registry import get_record, REGISTRY
from .weights import cached_path, sha256sum, verify_sha256, weights_dir


def convert(name: str, src: str | Path, dst: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Strictly load a published ``.pth`` for model ``name`` and save it in this project's safetensors format."""
    record = get_record(name)
    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=True)
    notes = load_weights(encoder, src, record)
    meta = record_metadata(record, source_file=Path(src).name, source_sha256=sha256sum(src), conversion=notes)
    return save_safetensors(encoder, dst, meta, dtype=dtype)


def register_weights(path: str | Path, model: str | None = None) -> tuple[Path, list[str]]:
    """Check a weights file against a registered model and copy it into the weights cache, where every command
    and the plugin find it (for computers that cannot download).

    Args:
        path: the file (the published ``.pth``, or a ``.safetensors`` of this project).
        model: the registered model it holds; None = the ``model`` its safetensors metadata names.

    Returns:
        The cached file, and warnings (e.g. that the model ships its own weights, which come first).

    Raises:
        SoftConError: no such file, no model known, a sha256 other than the record's (not the published file),
            or weights that do not load strictly into the model (the message names the keys).
    """
    path = Path(path)
    if not path.is_file():
        raise SoftConError(f"Weights file {path} not found.")
    if model is None:
        named = read_safetensors_metadata(path).get("model") if path.suffix == ".safetensors" else None
        if named not in REGISTRY:
            raise SoftConError(f"{path.name} does not say which registered model it holds; give it "
                               f"(--model NAME, one of: {', '.join(REGISTRY)}).")
        model = named
    record = get_record(model)
    if model not in REGISTRY or not record.filename:
        raise SoftConError(f"Only registered models take registered weights; pass {path.name} as a checkpoint "
                           f"(--checkpoint) instead.")
    verify_sha256(path, record.sha256)
    create_encoder(record.name, pretrained=False, checkpoint=path)  # strict: every weight must fit
    target = weights_dir() / record.filename
    warnings = []
    shipped = cached_path(record)
    if shipped is not None and record.local_path and Path(record.local_path) == shipped:
        warnings.append(f"{record.name} ships its own weights ({shipped}); those take precedence over the cache. "
                        f"Pass your file as a checkpoint (--checkpoint) instead.")
    if path.resolve() != target.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    return target, warnings
