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

Standard library only (records are data): the QGIS plugin lists the models without torch. The builders
are :mod:`core.models.encoders` (``create_encoder``, ``ARCHS``), imported where a model is built.
CLI: ``python -m core.models`` (:mod:`core.models.cli`).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..errors import SoftConError
from ..geo.bands import parse_band_list, S1_GRD, S2_L1C, S2_SURFACE
from ..geo.stats import GALILEO_S2_MEAN, GALILEO_S2_STD, S1_MEAN, S1_STD, S2C_MEAN, S2C_STD
from .record import META_FIELDS, ModelRecord, read_safetensors_header, SOFTCON_CITATION

HF_REPO = "wangyi111/softcon"
GALILEO_CITATION = (
    "Tseng, G., Fuller, A., Reil, M., et al. (2025). Galileo: Learning Global & Local Features of Many "
    "Remote Sensing Modalities. arXiv:2502.09356."
)

#: Architectures with a builder in ``core.models.encoders.ARCHS`` (a test keeps the two equal), and their names.
ARCHITECTURES: dict[str, str] = {
    "resnet50": "ResNet-50",
    "resnet18": "ResNet-18",
    "vit_small_patch14_dinov2": "ViT-S/14",
    "vit_base_patch14_dinov2": "ViT-B/14",
    "vit_tiny_patch8_64": "ViT-Tiny/8",
    "galileo_nano": "nano",
}


def _softcon(name: str, arch: str, modality: str, dim: int, fmt: str, parameters: int) -> ModelRecord:
    s2 = modality == "s2"
    fname = f"{name}.pth"
    return ModelRecord(
        name=name,
        arch=arch,
        bands=S2_L1C if s2 else S1_GRD,
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
        title=f"SoftCon {ARCHITECTURES[arch]}",
        parameters=parameters,
    )


REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    """Add a record (replacing one of the same name) and return it."""
    if record.arch not in ARCHITECTURES:
        raise ValueError(f"Record {record.name}: unknown arch {record.arch!r}; known: {', '.join(ARCHITECTURES)}")
    if len(record.mean) != len(record.bands) or len(record.std) != len(record.bands):
        raise ValueError(f"Record {record.name}: {len(record.bands)} bands but {len(record.mean)} means / {len(record.std)} stds")
    REGISTRY[record.name] = record
    return record


for _mod, _prefix, _sizes in (("s2", "B13", (23539392, 22381440, 87230208)),
                               ("s1", "B2", (23504896, 21553536, 85574400))):
    register(_softcon(f"{_prefix}_rn50_softcon", "resnet50", _mod, 2048, "torchvision", _sizes[0]))
    register(_softcon(f"{_prefix}_vits14_softcon", "vit_small_patch14_dinov2", _mod, 384, "dinov2", _sizes[1]))
    register(_softcon(f"{_prefix}_vitb14_softcon", "vit_base_patch14_dinov2", _mod, 768, "dinov2", _sizes[2]))

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: The project's own small SoftCon ViT trained from scratch on one scene (issue 11), shipped in the repository:
#: the reference run of train.pretrain (scripts/build_default_model.sh) and the 13-band ViT of the tests; its
#: EuroSAT transfer is weak (core/weights/MODEL_CARD.md), so it is no longer the default.
register(ModelRecord(
    name="softcon_tiny_s2",
    arch="vit_tiny_patch8_64",
    bands=S2_L1C,
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
    title="SoftCon ViT-Tiny/8",
    parameters=2844480,
))

#: Galileo-nano (core/models/galileo.py), the upstream weights at commit 0f0b5b9 converted to safetensors
#: (float32: float16 moves the outputs by up to 7e-4, beyond the 1e-4 reference tolerance).
GALILEO_COMMIT = "0f0b5b95ac81acef4b74cf4686dc877202f4541b"
register(ModelRecord(
    name="galileo_nano_s2",
    arch="galileo_nano",
    bands=S2_SURFACE,
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
    title="Galileo nano",
    parameters=876128,
))

#: Name used when no model is given: the best shipped model on EuroSAT (core/weights/MODEL_CARD.md).
DEFAULT_MODEL = "galileo_nano_s2"


def record_from_checkpoint(path: str | Path) -> ModelRecord:
    """The record of a user checkpoint (safetensors with :func:`record_metadata` metadata).

    Fields the metadata lacks come from the registered record it names (``model``), if any.
    """
    path = Path(path)
    meta, shapes = read_safetensors_header(path)
    base = REGISTRY.get(meta.get("model", ""))
    if base is None and "arch" not in meta:
        raise SoftConError(
            f"{path} carries no model metadata (arch, bands, mean, std), so it cannot be used on its own. "
            f"Give the model it was trained as (--model NAME --checkpoint {path.name})."
        )
    values: dict[str, object] = asdict(base) if base is not None else {}
    text_fields = ("name", "arch", "modality", "stats", "license", "citation", "description")
    for k in META_FIELDS:
        if k not in meta:
            continue
        raw = meta[k]
        if k in text_fields:
            values[k] = raw
        elif k == "bands" and not raw.lstrip().startswith("["):
            values[k] = parse_band_list(raw)  # "B1,B2,..." also accepted
        else:
            try:
                values[k] = json.loads(raw)
            except json.JSONDecodeError:
                raise SoftConError(f"{path}: metadata field {k!r} is not valid JSON ({raw[:80]!r}).") from None
    for k in ("bands", "mean", "std", "sar_quantiles"):
        if values.get(k) is not None:
            values[k] = tuple(values[k])
    if "embed_dim" not in values and "norm.weight" in shapes:  # ViT and Galileo: the final LayerNorm's width
        values["embed_dim"] = shapes["norm.weight"][0]
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
