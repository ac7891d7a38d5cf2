"""Weights adapted to another input: more or fewer input channels, another patch grid, RGB models for
multispectral input (after timm's ``adapt_input_conv`` / ``resample_abs_pos_embed``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SoftConError
from .checkpoint import (describe_state_dict, filter_dinov2, key_names, load_state_dict_strict, read_state_dict,
                         unwrap_state_dict)


def adapt_input_conv(weight: torch.Tensor, in_chans: int, mode: str = "random",
                     band_map: Sequence[int | None] | None = None) -> torch.Tensor:
    """First-layer filters (O, I, kh, kw) for ``in_chans`` input bands.

    Args:
        mode: ``random``: a fresh ``nn.Conv2d`` default init (kaiming-uniform, a=sqrt(5)), as
            SoftCon does when it swaps the RGB stem for a 13- or 2-band one. ``inflate``: reuse the
            RGB filters: band ``c`` gets filter ``band_map[c]`` (or the mean RGB filter where None);
            without ``band_map`` the RGB filters are cycled (timm's convention). Then everything is
            scaled by I / in_chans so a flat input gives the same response as before.
        band_map: per new band, the index of the matching old channel (e.g. B4->0, B3->1, B2->2).

    Returns:
        (O, in_chans, kh, kw) float tensor.
    """
    out_ch, old, kh, kw = weight.shape
    if mode == "random":
        new = torch.empty(out_ch, in_chans, kh, kw, dtype=torch.float32)
        nn.init.kaiming_uniform_(new, a=math.sqrt(5))
        return new.to(weight.dtype)
    if mode != "inflate":
        raise ValueError(f"mode must be 'random' or 'inflate', not {mode!r}")
    w = weight.float()
    if band_map is not None:
        if len(band_map) != in_chans:
            raise ValueError(f"band_map has {len(band_map)} entries for {in_chans} bands")
        mean = w.mean(dim=1)
        new = torch.stack([w[:, i] if i is not None else mean for i in band_map], dim=1)
    else:
        reps = math.ceil(in_chans / old)
        new = w.repeat(1, reps, 1, 1)[:, :in_chans]
    return (new * (old / in_chans)).to(weight.dtype)


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int] | int, num_prefix_tokens: int = 1,
                       old_grid: tuple[int, int] | None = None, antialias: bool = False) -> torch.Tensor:
    """Bicubic resampling of absolute position embeddings (1, P + H*W, D) -> (1, P + h*w, D).

    DINOv2 publishes 518 px / 14 px = 37x37 grids; SoftCon runs at 224 px = 16x16. Like DINOv2's
    ``interpolate_pos_encoding`` the default uses no antialiasing; prefix tokens (CLS) are kept.
    """
    if isinstance(new_grid, int):
        new_grid = (new_grid, new_grid)
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"pos_embed has {n} grid tokens, not a square; pass old_grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed.clone()
    g = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=new_grid, mode="bicubic", align_corners=False, antialias=antialias)
    g = g.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, g], dim=1)


_RGB_INDEX = {"B4": 0, "B3": 1, "B2": 2}  # DINOv2 / torchvision models take R, G, B


def init_from_rgb(encoder: nn.Module, rgb: str | Path | Mapping[str, torch.Tensor], mode: str = "random",
                  bands: Sequence[str] | None = None) -> list[str]:
    """Initialise a 13- or 2-band encoder from an RGB DINOv2 ViT or (DINO/ImageNet) ResNet-50.

    The first layer is adapted with :func:`adapt_input_conv` (``random``: the paper's choice;
    ``inflate``: RGB filters reused, matched by band name B4/B3/B2 when ``bands`` is given),
    ``pos_embed`` is resampled bicubically to the encoder's grid (DINOv2 37x37 -> 16x16 at 224 px),
    DINOv2's ``mask_token`` and any ``fc.*``/``head.*`` classifier are dropped (named in the
    returned notes). Everything else must match exactly (strict).

    Args:
        encoder: a :class:`core.models.encoders.Encoder` (or a bare timm model).
        rgb: path or state dict of the RGB checkpoint (wrappers/prefixes are unwrapped).
        bands: the encoder's band names, for ``inflate``.

    Returns:
        Notes on what was adapted, one line each.
    """
    notes: list[str] = []
    state = read_state_dict(rgb, notes) if isinstance(rgb, (str, Path)) else unwrap_state_dict(dict(rgb), notes)
    state = filter_dinov2(state, notes)
    heads = [k for k in state if k.startswith(("fc.", "head."))]
    if heads:
        notes.append(f"dropped classifier {key_names(heads)}")
        state = {k: v for k, v in state.items() if k not in heads}
    model = getattr(encoder, "model", encoder)
    target = model.state_dict()
    conv_key = "patch_embed.proj.weight" if "patch_embed.proj.weight" in target else "conv1.weight"
    if conv_key not in state:
        raise SoftConError(f"The RGB checkpoint has no {conv_key}; it looks like {describe_state_dict(state)}.")
    w = state[conv_key]
    want = target[conv_key].shape
    if w.shape[0] != want[0] or w.shape[2:] != want[2:]:
        raise SoftConError(
            f"The RGB checkpoint's {conv_key} {tuple(w.shape)} does not fit the encoder's {tuple(want)} "
            f"(width or patch size differ): it looks like {describe_state_dict(state)}."
        )
    band_map = [_RGB_INDEX.get(b) for b in bands] if (bands is not None and mode == "inflate") else None
    state[conv_key] = adapt_input_conv(w, want[1], mode, band_map)
    notes.append(f"{conv_key}: {w.shape[1]} -> {want[1]} bands ({mode})")
    if "pos_embed" in target and "pos_embed" in state and state["pos_embed"].shape != target["pos_embed"].shape:
        prefix = getattr(model, "num_prefix_tokens", 1)
        n_new = target["pos_embed"].shape[1] - prefix
        side = math.isqrt(n_new)
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", (side, side))
        old = state["pos_embed"].shape
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], tuple(grid), prefix)
        notes.append(f"pos_embed {tuple(old)} -> {tuple(state['pos_embed'].shape)} (bicubic)")
    load_state_dict_strict(model, state, None, source="the RGB checkpoint")
    return notes
