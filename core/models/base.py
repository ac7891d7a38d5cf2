"""``Encoder``: the interface every encoder implements (ViT, ResNet, Galileo), below the modules that build them."""
from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Common interface over a timm backbone."""

    embed_dim: int
    patch_size: int
    kind: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_linear_probe(self, x: torch.Tensor, n_last: int = 4, avgpool: bool = True) -> torch.Tensor:
        return self.forward(x)
