"""Siamese masking of the student view (SoftCon, after Siamese MAE / MSN / FLIP).

The student sees a masked view and the EMA teacher the full other view. For a ViT the masked patch
tokens are *dropped* from the sequence (``ViTEncoder.tokens(x, keep=...)``), which is where the memory
and time saving comes from; a ResNet cannot drop pixels, so square pixel patches are set to zero.

Masks are drawn from a generator seeded by (seed, epoch, sample index), not from a per-process random
stream: the same scene gets the same mask whatever the number of ranks, data workers or a resume, which
is what makes a 2-process run equal to a 1-process run and a resumed run equal to an uninterrupted one.
"""
from __future__ import annotations

import torch


def sample_noise(indices: torch.Tensor, n: int, seed: int, epoch: int, view: int) -> torch.Tensor:
    """(B, n) uniform noise, one reproducible row per sample index (independent of batch layout)."""
    rows = []
    for i in indices.tolist():
        g = torch.Generator().manual_seed(hash_seed(seed, epoch, int(i), 1000 + view))
        rows.append(torch.rand(n, generator=g))
    return torch.stack(rows)


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-like mixing; stable across processes, unlike ``hash``)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (p + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def keep_indices(noise: torch.Tensor, ratio: float) -> torch.Tensor:
    """Patch-token indices to keep, (B, N') sorted, N' = round(N (1 - ratio)) (at least 1).

    Args:
        noise: (B, N) per-token noise; the tokens with the smallest noise are kept (MAE's shuffle).
    """
    n = noise.shape[1]
    n_keep = max(1, int(round(n * (1.0 - ratio))))
    keep = torch.argsort(noise, dim=1)[:, :n_keep]
    return keep.sort(dim=1).values


def pixel_mask(noise: torch.Tensor, ratio: float, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) float mask, 0 on the dropped square patches of a (gh, gw) grid, for a ResNet view."""
    b = noise.shape[0]
    gh, gw = grid
    keep = keep_indices(noise, ratio)
    m = torch.zeros(b, gh * gw)
    m.scatter_(1, keep, 1.0)
    m = m.view(b, 1, gh, gw)
    return torch.nn.functional.interpolate(m, size=size, mode="nearest")
