"""Encoder modules built with timm, with the three feature outputs applications need.

- ``forward(x)``: pooled embedding (B, D): normed CLS token for ViT, global average pool for ResNet.
- ``forward_dense(x)``: patch features (B, D, h, w) on the patch grid (stride ``patch_size`` px).
- ``forward_linear_probe(x)``: DINOv2 linear-probe features: CLS of the last 4 blocks
  (+ mean patch token), (B, 4D or 5D); for ResNet the pooled embedding.

Architectures follow the published SoftCon checkpoints: DINOv2 ViT-S/14 and ViT-B/14 at 224 px
(16x16 grid, LayerScale, no registers) and torchvision's ResNet-50 (no ``fc``).
:func:`create_encoder` is the one way to get a ready model: the registry's record, its builder here and its
weights loaded strictly.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..progress import Progress
from .base import Encoder
from .checkpoint import load_weights
from .galileo import build as _galileo
from .record import ModelRecord
from .registry import DEFAULT_MODEL, get_record
from .timm_compat import timm
from .weights import weights_path


class ViTEncoder(Encoder):
    """timm VisionTransformer; state-dict keys are the model's own (``cls_token``, ``blocks.0...``)."""

    kind = "vit"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        self.patch_size = model.patch_embed.patch_size[0]

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Normed tokens (B, 1 + N', D); ``keep`` (B, N') indexes the patch tokens to keep (masking)."""
        m = self.model
        x = m.patch_embed(x)
        x = m._pos_embed(x)
        if keep is not None:
            prefix = m.num_prefix_tokens
            patches = torch.gather(x[:, prefix:], 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :prefix], patches], dim=1)
        x = m.patch_drop(x)
        x = m.norm_pre(x)
        x = m.blocks(x)
        return m.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)[:, 0]

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)[:, self.model.num_prefix_tokens:]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return t.transpose(1, 2).reshape(x.shape[0], self.embed_dim, h, w)

    def forward_linear_probe(self, x: torch.Tensor, n_last: int = 4, avgpool: bool = True) -> torch.Tensor:
        outs = self.model.get_intermediate_layers(x, n=n_last, return_prefix_tokens=True, norm=True)
        feats = [cls[:, 0] for _, cls in outs]
        if avgpool:
            feats.append(outs[-1][0].mean(dim=1))
        return torch.cat(feats, dim=-1)


class ResNetEncoder(Encoder):
    """timm ResNet (torchvision key names) without its classifier."""

    kind = "resnet"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embed_dim = model.num_features
        self.patch_size = 32

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dense(x).mean(dim=(2, 3))


def _vit(name: str, **kw) -> Callable[[int, int], Encoder]:
    def build(in_chans: int, img_size: int) -> Encoder:
        # dynamic_img_size: windows other than img_size resample pos_embed on the fly (dense
        # features on larger tiles); at img_size the stored pos_embed is used unchanged.
        model = timm.create_model(name, pretrained=False, in_chans=in_chans, img_size=img_size, num_classes=0,
                                  dynamic_img_size=True, **kw)
        return ViTEncoder(model)
    return build


def _resnet(name: str) -> Callable[[int, int], Encoder]:
    def build(in_chans: int, img_size: int) -> Encoder:
        return ResNetEncoder(timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0))
    return build


#: Architecture name -> builder(in_chans, img_size). Adding an architecture is adding an entry (and its name to
#: ``core.models.registry.ARCHITECTURES``, which records are checked against without torch).
ARCHS: dict[str, Callable[[int, int], Encoder]] = {
    "resnet50": _resnet("resnet50"),
    "resnet18": _resnet("resnet18"),  # small CNN baseline for the default-model study
    "vit_small_patch14_dinov2": _vit("vit_small_patch14_dinov2"),
    "vit_base_patch14_dinov2": _vit("vit_base_patch14_dinov2"),
    # The project's small default: ViT-Ti-like, 8 px patches on 64 px windows (8x8 grid), LayerScale.
    "vit_tiny_patch8_64": _vit("vit_tiny_patch16_224", patch_size=8, depth=6, init_values=1e-5),
    # Galileo-nano (core/models/galileo.py): Sentinel-2 B2..B12 in five channel groups, 8 px patches by default.
    "galileo_nano": _galileo,
}


def build_encoder(arch: str, in_chans: int, img_size: int, empty: bool = False) -> Encoder:
    """An encoder of a registered architecture.

    Args:
        empty: build on the ``meta`` device, without the random init (about 10x faster for
            ViT-B); only for when a state dict is loaded next with ``assign=True``
            (:func:`core.models.checkpoint.load_weights` does that).
    """
    if arch not in ARCHS:
        raise KeyError(f"Unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    if empty:
        with torch.device("meta"):
            return ARCHS[arch](in_chans, img_size)
    return ARCHS[arch](in_chans, img_size)


def is_empty(module: nn.Module) -> bool:
    """True when ``module`` was built with ``empty=True`` and holds no data yet."""
    return any(t.is_meta for t in module.state_dict().values())


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
        if checkpoint is not None:
            path = Path(checkpoint)
            fmt = "safetensors" if path.suffix == ".safetensors" else record.checkpoint_format
            load_weights(encoder, path, replace(record, checkpoint_format=fmt))
        else:
            load_weights(encoder, weights_path(record, progress), record)
    return encoder.eval(), record
