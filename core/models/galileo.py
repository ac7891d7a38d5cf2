"""Galileo-nano for Sentinel-2, one time step: a clean-room encoder.

Tseng et al. (2025), *Galileo: Learning Global & Local Features of Many Remote Sensing Modalities*,
arXiv:2502.09356; weights from github.com/nasaharvest/galileo (MIT). Written from the facts-only
description in ``../shared/models/galileo_nano/README.md``, not from the upstream code.

The ten bands form five channel groups, each with its own patch embedding; every patch position
gives one token per group (5 h w tokens), each plus a 128-d encoding made of four 32-d parts:
learned channel-group embedding, time position 0, month 6 (the upstream default) and 2-D sin-cos
space. Four pre-norm transformer blocks (plain ``scaled_dot_product_attention``, no mask) and a
final LayerNorm follow. Pooled output: mean over all tokens; dense: mean over the groups per position.

Kernels are stored for 8 px patches; any other patch size uses FlexiViT's pseudo-inverse resize of
the kernels (Beyer et al. 2023), computed on the fly so it stays differentiable in training.
Key names are the upstream ones for the parts used (``space_time_embed.<group>.proj``,
``s_t_channel_embed``, ``blocks.<i>.{norm1,attn.{q,k,v,proj},norm2,mlp.{fc1,fc2}}``, ``norm``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder

#: Channel groups in token order: (upstream name, bands). Row g + 1 of ``s_t_channel_embed`` is group g.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("S2_RGB", ("B2", "B3", "B4")),
    ("S2_Red_Edge", ("B5", "B6", "B7")),
    ("S2_NIR_10m", ("B8",)),
    ("S2_NIR_20m", ("B8A",)),
    ("S2_SWIR", ("B11", "B12")),
)
#: The encoder's input bands, in order (= ``core.geo.bands.S2_SURFACE``, the bands its record declares).
BANDS: tuple[str, ...] = tuple(b for _, bands in GROUPS for b in bands)
STORED_PATCH = 8
DIM, DEPTH, HEADS, MLP_RATIO = 128, 4, 8, 4
#: Month used for every token (0-based index into the 12-month table; upstream default).
MONTH = 6


def sincos_1d(pos: torch.Tensor, dim: int, scale_dims: int) -> torch.Tensor:
    """``[sin(q w_0..), cos(q w_0..)]`` for positions ``pos`` (N,) -> (N, dim), ``w_i = 10000^(-i/scale_dims)``."""
    w = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / scale_dims)
    a = pos.to(torch.float64)[:, None] * w[None]
    return torch.cat([a.sin(), a.cos()], dim=1).float()


def space_encoding(h: int, w: int, patch: int) -> torch.Tensor:
    """(h, w, 32) 2-D sin-cos: first 16 dims the column, last 16 the row, coordinates = token index x patch."""
    cols = sincos_1d(torch.arange(w) * patch, 16, 32)
    rows = sincos_1d(torch.arange(h) * patch, 16, 32)
    return torch.cat([cols[None].expand(h, -1, -1), rows[:, None].expand(-1, w, -1)], dim=-1)


def fixed_time_month() -> torch.Tensor:
    """(64,) time position 0 (16 zeros, 16 ones) followed by the month-6 row of the 12-month table.

    The month table is ``[sin(2 pi m / 12)] * 16 + [cos(2 pi m / 12)] * 16``, computed in float32 like
    the stored table (so sin(pi) is -8.74e-8, not 0).
    """
    time0 = torch.cat([torch.zeros(16), torch.ones(16)])
    angle = torch.tensor(2 * math.pi * MONTH / 12, dtype=torch.float32)
    month = torch.cat([angle.sin().expand(16), angle.cos().expand(16)])
    return torch.cat([time0, month])


@lru_cache(maxsize=8)
def _pinv_resize(old: int, new: int) -> torch.Tensor:
    """(new², old²) pinv(R), R = the old x old one-hot basis kernels resized to new x new (bicubic, antialiased)."""
    basis = torch.eye(old * old, dtype=torch.float32).view(old * old, 1, old, old)
    r = F.interpolate(basis, size=(new, new), mode="bicubic", align_corners=False, antialias=True)
    return torch.linalg.pinv(r.reshape(old * old, new * new).double()).float()


def resize_kernel(weight: torch.Tensor, patch: int) -> torch.Tensor:
    """(O, I, k, k) kernels -> (O, I, patch, patch) by the pseudo-inverse of the resize (FlexiViT)."""
    k = weight.shape[-1]
    if patch == k:
        return weight
    pinv = _pinv_resize(k, patch).to(weight.device, weight.dtype)
    return (weight.flatten(2) @ pinv.T).unflatten(2, (patch, patch))


class PatchEmbed(nn.Module):
    """One channel group's patch embedding (``proj``: Conv2d weights stored at 8 px).

    Holds the weights under their upstream names; :meth:`GalileoNano.embed` applies all groups at once.
    """

    def __init__(self, in_chans: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, DIM, STORED_PATCH, STORED_PATCH)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(DIM, DIM) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        # one matmul for q, k and v (the weights stay separate, under their upstream names)
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight])
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(x, w, bias).view(b, n, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, DIM))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, DIM * MLP_RATIO)
        self.fc2 = nn.Linear(DIM * MLP_RATIO, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, no LayerScale; ``drop_path`` (stochastic depth) only in training."""

    def __init__(self, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=1e-5)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM, eps=1e-5)
        self.mlp = Mlp()
        self.drop_path = drop_path

    def _drop(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path <= 0:
            return y
        keep = 1.0 - self.drop_path
        mask = torch.empty(y.shape[0], 1, 1, device=y.device, dtype=y.dtype).bernoulli_(keep)
        return y * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop(self.attn(self.norm1(x)))
        return x + self._drop(self.mlp(self.norm2(x)))


class GalileoNano(nn.Module):
    """The weights (upstream key names) and the token computation; :class:`GalileoEncoder` wraps it."""

    def __init__(self, drop_path: float = 0.0):
        super().__init__()
        self.space_time_embed = nn.ModuleDict({g: PatchEmbed(len(b)) for g, b in GROUPS})
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(GROUPS) + 2, DIM // 4))
        self.blocks = nn.ModuleList(Block(drop_path) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(DIM, eps=1e-5)
        self._fixed_cache: dict[tuple, torch.Tensor] = {}

    def embed(self, x: torch.Tensor, patch: int) -> torch.Tensor:
        """(B, 10, H, W) -> tokens with their encodings, (B, h w, G, D); position order (row, column).

        The input is cut into patches once, (B, h w, 10 p²); each group's kernel is then a matmul on
        its slice of columns and the concatenated outputs are already in token order (cheaper than five
        convolutions on band slices followed by a stack and a permute).
        """
        b, c, height, width = x.shape
        h, w = height // patch, width // patch
        patches = (x[..., : h * patch, : w * patch].reshape(b, c, h, patch, w, patch)
                   .permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * patch * patch))
        embeds = [self.space_time_embed[g].proj for g, _ in GROUPS]
        bounds = torch.tensor([0] + [len(bands) for _, bands in GROUPS]).cumsum(0) * patch * patch
        t = torch.cat([F.linear(patches[..., a:z], resize_kernel(e.weight, patch).flatten(1))
                       for e, a, z in zip(embeds, bounds[:-1].tolist(), bounds[1:].tolist())], dim=-1)
        t = t.view(b, h * w, len(GROUPS), DIM)
        bias = torch.cat([e.bias for e in embeds]).view(len(GROUPS), DIM)
        return t + (bias + self._encoding(h, w, patch))

    def _encoding(self, h: int, w: int, patch: int) -> torch.Tensor:
        """(h w, G, D) token encodings: the learned channel part plus the fixed time, month and space
        parts, which are cached per (h, w, patch, device) in a plain dict (not in the state dict)."""
        g = len(GROUPS)
        channel = self.s_t_channel_embed[1:g + 1]  # (G, 32)
        key = (h, w, patch, channel.device)
        fixed = self._fixed_cache.get(key)
        if fixed is None:
            space = space_encoding(h, w, patch).reshape(h * w, 1, -1).expand(-1, g, -1)
            time_month = fixed_time_month()[None, None].expand(h * w, g, -1)
            fixed = torch.cat([time_month, space], dim=-1).to(channel.device)  # (h w, G, 96)
            self._fixed_cache[key] = fixed
        return torch.cat([channel[None].expand(h * w, -1, -1), fixed.to(channel.dtype)], dim=-1)


class GalileoEncoder(Encoder):
    """Galileo-nano behind the project's encoder interface; ``patch_size`` may be set to any value.

    ``model`` holds the weights (its state dict is what files store), as ``ViTEncoder.model`` does.
    """

    kind = "galileo"

    def __init__(self, patch_size: int = STORED_PATCH, drop_path: float = 0.0):
        super().__init__()
        self.model = GalileoNano(drop_path)
        self.embed_dim = DIM
        self.patch_size = patch_size
        self.groups = len(GROUPS)

    def _block_outputs(self, x: torch.Tensor, keep: torch.Tensor | None) -> list[torch.Tensor]:
        t = self.model.embed(x, self.patch_size)  # (B, N, G, D)
        if keep is not None:
            t = torch.gather(t, 1, keep[:, :, None, None].expand(-1, -1, t.shape[2], t.shape[3]))
        x = t.flatten(1, 2)
        outs = []
        for blk in self.model.blocks:
            x = blk(x)
            outs.append(x)
        return outs

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Normed tokens (B, N' G, D), position-major, group fastest.

        Args:
            x: (B, 10, H, W) preprocessed input.
            keep: (B, N') indices of the patch positions to keep (student masking, as
                ``ViTEncoder.tokens``); all the group tokens of a kept position are kept.
                None = all h w positions.
        """
        return self.model.norm(self._block_outputs(x, keep)[-1])

    def forward_linear_probe(self, x: torch.Tensor, n_last: int = 4, avgpool: bool = True) -> torch.Tensor:
        """DINOv2-style multi-layer features without a CLS token: the mean normed token of each of the
        last ``n_last`` blocks, (B, n_last D); ``avgpool`` is implied (every part is a token mean)."""
        outs = self._block_outputs(x, None)[-n_last:]
        return torch.cat([self.model.norm(o).mean(dim=1) for o in outs], dim=-1)

    def group_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normed tokens per group on the grid, (B, h, w, G, D)."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return self.tokens(x).view(x.shape[0], h, w, self.groups, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding (B, D): mean of all normed tokens."""
        return self.tokens(x).mean(dim=1)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Dense embedding (B, D, h, w): mean over the groups at each position."""
        return self.group_tokens(x).mean(dim=3).permute(0, 3, 1, 2)


def build(in_chans: int, img_size: int) -> GalileoEncoder:
    """Builder for ``core.models.encoders.ARCHS``: the ten Sentinel-2 bands only, any window size."""
    if in_chans != len(BANDS):
        raise ValueError(f"galileo_nano takes the {len(BANDS)} bands {', '.join(BANDS)}, not {in_chans}")
    return GalileoEncoder()
