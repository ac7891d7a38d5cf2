"""``ModelRecord``: everything about one set of weights, and the metadata that makes a weights file describe itself.

Its own module so the registry and the weights cache can both import it without importing each other.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


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
        stats: name of the statistics set ``mean``/``std`` come from (``core.geo.normalize.STATS``).
        clip: clamp the scaled input to [0, 1] (SoftCon); False for Galileo, trained without it.
        revision: hub revision (branch or commit) to download; None = ``main``.
        local_path: a file shipped with the project, used before the cache and the download.
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
