"""Model registry: one record per model (timm ``pretrained_cfg`` / TorchGeo ``Weights`` style).

A record holds everything needed to build the encoder, fetch and verify its weights and
preprocess its input. Adding a checkpoint is adding a record. ``create_encoder`` is the one
way to get a ready model.

Published SoftCon weights (Hugging Face ``wangyi111/softcon``, README of ``zhu-xlab/softcon``):
``B13_{rn50,vits14,vitb14}_softcon.pth`` (Sentinel-2 L1C, 13 bands) and ``B2_...`` (Sentinel-1,
VV/VH). The ViT files are DINOv2 ``DinoVisionTransformer`` state dicts (``block_chunks=0``,
``num_register_tokens=0``, 224 px), the RN50 files torchvision ``resnet50`` ones without ``fc``.
The hub also holds ``*_softcon_enc.pth`` ViT files; public code loads them into the very same
DINOv2 model (same key names), so they need no record of their own: pass one as
``create_encoder(name, checkpoint=path)`` with the matching ``B13_``/``B2_`` record.

User checkpoints written by ``train.pretrain`` (safetensors with :func:`record_metadata`) are
models too: ``create_encoder("path/to/file.safetensors")`` builds the record from the metadata.

CLI: ``python -m core.models list`` / ``info NAME`` / ``convert NAME IN.pth OUT.safetensors``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from . import bands as B
from .encoders import ARCHS, Encoder, build_encoder
from .errors import SoftConError
from .galileo import BANDS as GALILEO_BANDS
from .normalize import GALILEO_S2_MEAN, GALILEO_S2_STD, S1_MEAN, S1_STD, S2C_MEAN, S2C_STD
from .progress import Progress

SOFTCON_CITATION = (
    "Wang, Y., Albrecht, C. M., Zhu, X. X. (2024). Multi-Label Guided Soft Contrastive Learning "
    "for Efficient Earth Observation Pretraining. arXiv:2405.20462."
)
HF_REPO = "wangyi111/softcon"
GALILEO_CITATION = (
    "Tseng, G., Fuller, A., Reil, M., et al. (2025). Galileo: Learning Global & Local Features of Many "
    "Remote Sensing Modalities. arXiv:2502.09356."
)


@dataclass(frozen=True)
class ModelRecord:
    """Everything about one set of weights.

    Attributes:
        checkpoint_format: how to read the file: ``dinov2`` (DINOv2 ViT keys + mask_token),
            ``torchvision`` (ResNet keys, no fc), ``timm`` (timm keys), ``safetensors`` (this
            project's own files, timm keys).
        sar_quantiles: per-image quantile clamp before scaling (Sentinel-1), else None.
        stats: name of the statistics set ``mean``/``std`` come from (``core.normalize.STATS``).
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
        stats="ssl4eo_s12_l1c" if s2 else "ssl4eo_s12_s1",
        license="CC-BY-4.0",
        description=f"SoftCon {arch} pretrained on SSL4EO-S12 "
                    f"{'Sentinel-2 L1C (13 bands)' if s2 else 'Sentinel-1 GRD (VV, VH dB)'}.",
    )


REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    """Add a record (replacing one of the same name) and return it."""
    if record.arch not in ARCHS:
        raise ValueError(f"Record {record.name}: unknown arch {record.arch!r}; known: {', '.join(ARCHS)}")
    if len(record.mean) != len(record.bands) or len(record.std) != len(record.bands):
        raise ValueError(f"Record {record.name}: {len(record.bands)} bands but {len(record.mean)} means / {len(record.std)} stds")
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
    sha256="e50e349d39b173b4de322ad70d1527c12f82bc8cd3236a39f51d4449670089e5",
    checkpoint_format="safetensors",
    license="CC0-1.0 (trained on CC0 Copernicus data)",
    citation=SOFTCON_CITATION + " Small model trained by this project.",
    description="Small SoftCon ViT (8 px patches, 64 px windows) trained by this project on one CC0 Sentinel-2 L1C "
                "scene with weak spectral-index labels; short training, see core/weights/MODEL_CARD.md for its "
                "EuroSAT evaluation and limitations.",
    local_path=str(WEIGHTS_DIR / "softcon_tiny_s2.safetensors"),
))

#: Galileo-nano (core/galileo.py), the upstream weights at commit 0f0b5b9 converted to safetensors
#: (float32: float16 moves the outputs by up to 7e-4, beyond the 1e-4 reference tolerance).
GALILEO_COMMIT = "0f0b5b95ac81acef4b74cf4686dc877202f4541b"
register(ModelRecord(
    name="galileo_nano_s2",
    arch="galileo_nano",
    bands=GALILEO_BANDS,
    input_size=64,
    embed_dim=128,
    mean=tuple(GALILEO_S2_MEAN),
    std=tuple(GALILEO_S2_STD),
    filename="galileo_nano_s2.safetensors",
    sha256="35a07b6373accf8c907ef6f81a6973febb6ac1c5b986f9c94a1c3729cd6a91b0",
    checkpoint_format="galileo",
    license="MIT (core/weights/LICENSE-galileo_nano)",
    citation=GALILEO_CITATION,
    description="Galileo-nano (1.0 M parameters) pretrained on 127k global multi-modal samples, used on "
                "Sentinel-2 alone (10 bands: L1C, L2A or 10-band stacks), one time step, 8 px patches.",
    local_path=str(WEIGHTS_DIR / "galileo_nano_s2.safetensors"),
    stats="galileo_s2",
    clip=False,
))


#: Record fields stored as safetensors metadata (JSON text for non-strings).
_META_FIELDS = ("name", "arch", "bands", "input_size", "embed_dim", "mean", "std", "modality",
                "sar_quantiles", "stats", "license", "citation", "description", "clip")


def record_metadata(record: ModelRecord, **extra: object) -> dict[str, str]:
    """String metadata describing ``record`` for a safetensors file (``model`` = record name).

    ``train.pretrain`` and ``convert`` write this, so the file alone says how to use it.
    """
    d = asdict(record)
    meta = {"model": record.name, "format": "softcon-safetensors-v1"}
    for k in _META_FIELDS:
        v = d[k]
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    for k, v in extra.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return meta


def record_from_checkpoint(path: str | Path) -> ModelRecord:
    """The record of a user checkpoint (safetensors with :func:`record_metadata` metadata).

    Fields the metadata lacks come from the registered record it names (``model``), if any.
    """
    from .checkpoint import read_safetensors_metadata

    path = Path(path)
    meta = read_safetensors_metadata(path)
    base = REGISTRY.get(meta.get("model", ""))
    if base is None and "arch" not in meta:
        raise SoftConError(
            f"{path} carries no model metadata (arch, bands, mean, std), so it cannot be used on its own. "
            f"Give the model it was trained as (--model NAME --checkpoint {path.name})."
        )
    values: dict[str, object] = asdict(base) if base is not None else {}
    text_fields = ("name", "arch", "modality", "stats", "license", "citation", "description")
    for k in _META_FIELDS:
        if k not in meta:
            continue
        raw = meta[k]
        if k in text_fields:
            values[k] = raw
        elif k == "bands" and not raw.lstrip().startswith("["):
            values[k] = B.parse_band_list(raw)  # "B1,B2,..." also accepted
        else:
            try:
                values[k] = json.loads(raw)
            except json.JSONDecodeError:
                raise SoftConError(f"{path}: metadata field {k!r} is not valid JSON ({raw[:80]!r}).") from None
    for k in ("bands", "mean", "std", "sar_quantiles"):
        if values.get(k) is not None:
            values[k] = tuple(values[k])
    if "embed_dim" not in values and values.get("arch") in ARCHS and values.get("bands") and values.get("input_size"):
        values["embed_dim"] = build_encoder(values["arch"], len(values["bands"]), int(values["input_size"]), empty=True).embed_dim
    name = values.get("name") or meta.get("model") or path.stem
    values.update(name=str(name), filename=path.name, url=None, hf_repo=None,
                  revision=None, sha256=None, checkpoint_format="safetensors", local_path=str(path))
    try:
        return ModelRecord(**values)
    except TypeError as exc:
        raise SoftConError(f"{path}: incomplete model metadata ({exc}).") from None


def get_record(name: str) -> ModelRecord:
    """The record for ``name`` (a registry name, or a ``.safetensors`` user checkpoint path)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if str(name).endswith(".safetensors") and Path(name).is_file():
        return record_from_checkpoint(name)
    raise SoftConError(f"Unknown model {name!r}. Known models: {', '.join(REGISTRY)} "
                       f"(or the path of a .safetensors file written by train.pretrain).")


def create_encoder(
    name: str = DEFAULT_MODEL,
    pretrained: bool = True,
    checkpoint: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[Encoder, ModelRecord]:
    """Build the encoder of a registered model and load its weights strictly.

    Args:
        name: registry name, or the path of a user ``.safetensors`` checkpoint.
        pretrained: load the record's weights (download if needed); False = random init.
        checkpoint: a local file to load instead of the record's (same architecture/bands);
            ``.safetensors`` files are read as this project's format (timm keys), others with
            the record's ``checkpoint_format``.
        progress: reports download progress.

    Returns:
        (encoder in eval mode, its record).
    """
    record = get_record(name)
    load = checkpoint is not None or pretrained
    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=load)
    if load:
        from .checkpoint import load_weights
        from .weights import weights_path

        if checkpoint is not None:
            path = Path(checkpoint)
            fmt = "safetensors" if path.suffix == ".safetensors" else record.checkpoint_format
            load_weights(encoder, path, replace(record, checkpoint_format=fmt))
        else:
            load_weights(encoder, weights_path(record, progress), record)
    return encoder.eval(), record


def convert(name: str, src: str | Path, dst: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Strictly load a published ``.pth`` for model ``name`` and save it in this project's safetensors format."""
    record = get_record(name)
    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=True)
    from .checkpoint import load_weights, save_safetensors
    from .weights import sha256sum

    notes = load_weights(encoder, src, record)
    meta = record_metadata(record, source_file=Path(src).name, source_sha256=sha256sum(src), conversion=notes)
    return save_safetensors(encoder, dst, meta, dtype=dtype)


def _info(record: ModelRecord) -> dict:
    from .weights import cached_path, download_url

    d = asdict(record)
    cached = cached_path(record)
    d["in_chans"] = record.in_chans
    d["download_url"] = download_url(record)
    d["cached"] = cached is not None
    d["cached_path"] = str(cached) if cached else None
    d["size_bytes"] = cached.stat().st_size if cached else None
    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=True)
    d["parameters"] = sum(p.numel() for p in encoder.parameters())
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.models", description="List, inspect and convert SoftCon models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="one line per registered model")
    info = sub.add_parser("info", help="bands, statistics, size, cached or not (JSON)")
    info.add_argument("name")
    conv = sub.add_parser("convert", help="strict-load a published .pth and write this project's safetensors")
    conv.add_argument("name")
    conv.add_argument("src", help="published .pth file")
    conv.add_argument("dst", help="output .safetensors file")
    conv.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    args = p.parse_args(argv)
    from .weights import cached_path

    try:
        if args.cmd == "list":
            for r in REGISTRY.values():
                cached = cached_path(r)
                print(f"{r.name:24s} {r.arch:26s} {len(r.bands):2d} bands  {r.input_size:3d}px  {r.embed_dim:4d}-d  "
                      f"{'cached' if cached else 'not cached'}")
            return 0
        if args.cmd == "info":
            print(json.dumps(_info(get_record(args.name)), indent=2))
            return 0
        dtype = getattr(torch, args.dtype) if args.dtype else None
        out = convert(args.name, args.src, args.dst, dtype)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
