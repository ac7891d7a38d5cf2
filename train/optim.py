"""AdamW parameter groups (no decay on 1-d parameters and tokens, optional layer-wise lr decay) and the
per-iteration schedules: linear warmup + cosine learning rate (MAE), cosine EMA momentum to 1 (BYOL)."""
from __future__ import annotations

import math

from torch import nn


def layer_id(name: str, num_layers: int) -> int:
    """0 for the stem / embeddings, i + 1 for ViT block i or ResNet stage i, ``num_layers`` for the rest."""
    parts = name.split(".")
    if not name.startswith("encoder.model."):
        return num_layers
    key = parts[2]
    if key in ("cls_token", "pos_embed", "reg_token", "patch_embed", "conv1", "bn1"):
        return 0
    if key == "blocks":
        return int(parts[3]) + 1
    if key.startswith("layer") and key[5:].isdigit():
        return int(key[5:])
    return num_layers


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no decay for 1-d params and tokens (MAE); ``lr_scale`` = decay^(depth - layer)."""
    enc = model.encoder.model
    num_layers = len(enc.blocks) + 1 if hasattr(enc, "blocks") else 5
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "reg_token"))
        lid = layer_id(name, num_layers)
        g = groups.setdefault((lid, no_decay), {
            "params": [], "weight_decay": 0.0 if no_decay else weight_decay,
            "lr_scale": layer_decay ** (num_layers - lid), "name": f"layer{lid}{'_no_decay' if no_decay else ''}"})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def lr_at(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Linear warmup then cosine decay to ``floor`` (per iteration)."""
    if step < warmup:
        return peak * step / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def momentum_at(step: int, total: int, m0: float) -> float:
    """BYOL's schedule: m0 at step 0, cosine up to 1 at ``total``."""
    return 1.0 - (1.0 - m0) * 0.5 * (1.0 + math.cos(math.pi * min(step / max(1, total), 1.0)))
