"""``ModelRecord``: everything about one set of weights, and the metadata that makes a weights file describe itself.

Its own module so the registry and the weights cache can both import it without importing each other.
Standard library only: the QGIS plugin reads records (names, titles, sizes) without torch.
"""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SoftConError


SOFTCON_CITATION = (
    "Wang, Y., Albrecht, C. M., Zhu, X. X. (2024). Multi-Label Guided Soft Contrastive Learning "
    "for Efficient Earth Observation Pretraining. arXiv:2405.20462."
)


@dataclass(frozen=True)
class ModelRecord:
    """Everything about one set of weights.

    Attributes:
        checkpoint_format: how to read the file: ``dinov2`` (DINOv2 ViT keys + mask_token),
            ``torchvision`` (ResNet keys, no fc), ``timm`` (timm keys), ``safetensors`` (this
            project's own files, timm keys).
        sar_quantiles: per-image quantile clamp before scaling (Sentinel-1), else None.
        stats: name of the statistics set ``mean``/``std`` come from (``core.geo.stats.STATS``).
        clip: clamp the scaled input to [0, 1] (SoftCon); False for Galileo, trained without it.
        revision: hub revision (branch or commit) to download; None = ``main``.
        local_path: a file shipped with the project, used before the cache and the download.
        title: the name people know it by (``SoftCon ViT-S/14``), for menus.
        parameters: the encoder's parameter count (its float32 download is 4 bytes each); checked by a test.
    """

    name: str
    arch: str
    bands: tuple[str, ...]
    input_size: int
    embed_dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    modality: str = "s2"
    filename: str | None = None
    url: str | None = None
    hf_repo: str | None = None
    revision: str | None = None
    sha256: str | None = None
    checkpoint_format: str = "timm"
    sar_quantiles: tuple[float, float] | None = None
    license: str = "unknown"
    citation: str = SOFTCON_CITATION
    description: str = ""
    local_path: str | None = field(default=None, compare=False)
    stats: str = "ssl4eo_s12_l1c"
    clip: bool = True
    title: str = ""
    parameters: int | None = None

    @property
    def in_chans(self) -> int:
        return len(self.bands)


#: Record fields stored as safetensors metadata (JSON text for non-strings).
META_FIELDS = ("name", "arch", "bands", "input_size", "embed_dim", "mean", "std", "modality",
                "sar_quantiles", "stats", "license", "citation", "description", "clip")


def record_metadata(record: ModelRecord, **extra: object) -> dict[str, str]:
    """String metadata describing ``record`` for a safetensors file (``model`` = record name).

    ``train.pretrain`` and ``convert`` write this, so the file alone says how to use it.
    """
    d = asdict(record)
    meta = {"model": record.name, "format": "softcon-safetensors-v1"}
    for k in META_FIELDS:
        v = d[k]
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    for k, v in extra.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return meta


def read_safetensors_header(path: str | Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """The string metadata and the tensor shapes of a ``.safetensors`` file, read from its JSON header.

    The format is an 8-byte little-endian header length, then the JSON header; reading it needs no torch.
    """
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100_000_000:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(fh.read(size))
        meta = header.pop("__metadata__", None) or {}
        shapes = {k: list(v["shape"]) for k, v in header.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise SoftConError(f"Cannot read {path} as safetensors ({exc}). Is it truncated?") from None
    return {str(k): str(v) for k, v in meta.items()}, shapes


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (empty dict if none)."""
    return read_safetensors_header(path)[0]
