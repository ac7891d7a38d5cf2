"""Model registry: one record per model (timm ``pretrained_cfg`` / TorchGeo ``Weights`` style).

A record holds everything needed to build the encoder, fetch and verify its weights and
preprocess its input. Adding a checkpoint is adding a record. ``create_encoder`` is the one
way to get a ready model. CLI: ``python -m core.models list`` / ``info NAME``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from . import bands as B
from .encoders import Encoder, build_encoder
from .errors import SoftConError
from .normalize import S1_MEAN, S1_STD, S2C_MEAN, S2C_STD

SOFTCON_CITATION = (
    "Wang, Y., Albrecht, C. M., Zhu, X. X. (2024). Multi-Label Guided Soft Contrastive Learning "
    "for Efficient Earth Observation Pretraining. arXiv:2405.20462."
)
HF_REPO = "wangyi111/softcon"


@dataclass(frozen=True)
class ModelRecord:
    """Everything about one set of weights.

    Attributes:
        checkpoint_format: how to read the file: ``dinov2`` (DINOv2 ViT keys + mask_token),
            ``torchvision`` (ResNet keys, no fc), ``timm`` (timm keys), ``safetensors`` (this
            project's own files, timm keys).
        sar_quantiles: per-image quantile clamp before scaling (Sentinel-1), else None.
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
    sha256: str | None = None
    checkpoint_format: str = "timm"
    sar_quantiles: tuple[float, float] | None = None
    license: str = "unknown"
    citation: str = SOFTCON_CITATION
    description: str = ""
    local_path: str | None = field(default=None, compare=False)

    @property
    def in_chans(self) -> int:
        return len(self.bands)


def _softcon(name: str, arch: str, modality: str, dim: int, fmt: str) -> ModelRecord:
    s2 = modality == "s2"
    fname = f"{name}.pth"
    return ModelRecord(
        name=name,
        arch=arch,
        bands=B.S2_L1C if s2 else B.S1_GRD,
        input_size=224,
        embed_dim=dim,
        mean=tuple(S2C_MEAN if s2 else S1_MEAN),
        std=tuple(S2C_STD if s2 else S1_STD),
        modality=modality,
        filename=fname,
        url=f"https://huggingface.co/{HF_REPO}/resolve/main/{fname}",
        hf_repo=HF_REPO,
        checkpoint_format=fmt,
        sar_quantiles=None if s2 else (0.01, 0.99),
        license="CC-BY-4.0",
        description=f"SoftCon {arch} pretrained on SSL4EO-S12 {'Sentinel-2 L1C (13 bands)' if s2 else 'Sentinel-1 GRD (VV, VH dB)'}.",
    )


REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    REGISTRY[record.name] = record
    return record


for _mod, _prefix in (("s2", "B13"), ("s1", "B2")):
    register(_softcon(f"{_prefix}_rn50_softcon", "resnet50", _mod, 2048, "torchvision"))
    register(_softcon(f"{_prefix}_vits14_softcon", "vit_small_patch14_dinov2", _mod, 384, "dinov2"))
    register(_softcon(f"{_prefix}_vitb14_softcon", "vit_base_patch14_dinov2", _mod, 768, "dinov2"))

#: The project's own small model (issue 11) ships inside the repository; its record is
#: completed (sha256) when the weights are trained. Name used when no model is given.
DEFAULT_MODEL = "softcon_tiny_s2"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
register(ModelRecord(
    name=DEFAULT_MODEL,
    arch="vit_tiny_patch8_64",
    bands=B.S2_L1C,
    input_size=64,
    embed_dim=192,
    mean=tuple(S2C_MEAN),
    std=tuple(S2C_STD),
    filename="softcon_tiny_s2.safetensors",
    checkpoint_format="safetensors",
    license="CC0-1.0 (trained on CC0 Copernicus data)",
    citation=SOFTCON_CITATION + " Small model trained by this project.",
    description="Small SoftCon ViT (8 px patches, 64 px windows) trained by this project on open data.",
    local_path=str(WEIGHTS_DIR / "softcon_tiny_s2.safetensors"),
))


def get_record(name: str) -> ModelRecord:
    """The record for ``name``, or a clear error listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SoftConError(f"Unknown model {name!r}. Known models: {', '.join(REGISTRY)}.") from None


def create_encoder(
    name: str = DEFAULT_MODEL,
    pretrained: bool = True,
    checkpoint: str | Path | None = None,
) -> tuple[Encoder, ModelRecord]:
    """Build the encoder of a registered model and load its weights strictly.

    Args:
        name: registry name.
        pretrained: load the record's weights (download if needed); False = random init.
        checkpoint: a local file to load instead of the record's (same architecture/bands).

    Returns:
        (encoder in eval mode, its record).
    """
    record = get_record(name)
    encoder = build_encoder(record.arch, record.in_chans, record.input_size)
    if checkpoint is not None or pretrained:
        from .checkpoint import load_weights
        from .weights import weights_path

        path = Path(checkpoint) if checkpoint is not None else weights_path(record)
        load_weights(encoder, path, record)
    return encoder.eval(), record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.models", description="List and inspect SoftCon models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    info = sub.add_parser("info")
    info.add_argument("name")
    args = p.parse_args(argv)
    from .weights import cached_path

    if args.cmd == "list":
        for r in REGISTRY.values():
            cached = cached_path(r)
            print(f"{r.name:24s} {r.arch:26s} {len(r.bands):2d} bands  {r.input_size:3d}px  "
                  f"{'cached' if cached else 'not cached'}")
        return 0
    try:
        r = get_record(args.name)
    except SoftConError as e:
        print(e, file=sys.stderr)
        return 2
    d = asdict(r)
    cached = cached_path(r)
    d["cached_path"] = str(cached) if cached else None
    d["size_bytes"] = cached.stat().st_size if cached else None
    print(json.dumps(d, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
