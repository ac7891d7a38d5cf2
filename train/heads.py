"""Projector / predictor heads (MoCo v3) and batch norm over the global batch.

MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
``moco/builder.py``): projector = 3-layer MLP (Linear-BN-ReLU x2, Linear-BN without affine) for ViT,
2 layers for ResNet; predictor = 2-layer MLP (Linear-BN-ReLU, Linear-BN without affine). Their batch
norms are synchronised across GPUs. ``GlobalBatchNorm`` does that with differentiable all-reduces of
(count, sum) and then of the squared deviations, so it also works with gloo on CPU (``nn.SyncBatchNorm``
is GPU-only), and a 2-process run normalises exactly as a 1-process run with the same global batch.
"""
from __future__ import annotations

import torch
from torch import nn


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of each rank's input is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        torch.distributed.all_reduce(g)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-reduce (sum) across ranks."""
    return _AllReduceSum.apply(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch (all ranks); same keys as BatchNorm.

    Works for (B, C) and (B, C, H, W). Single process or eval mode: plain batch norm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2D-5D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        # two passes (mean, then squared deviations): E[x^2] - E[x]^2 cancels badly when the batch is
        # nearly constant, as the CLS tokens of a freshly initialised ViT are
        n = torch.tensor([x.numel() / c], device=x.device, dtype=torch.float32)
        stats = all_reduce_sum(torch.cat([n, xf.sum(dims)]))
        count, mean = stats[0], stats[1:] / stats[0]
        d = xf - mean.view(shape)
        var = all_reduce_sum((d * d).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp_min(1), alpha=m)
        y = d * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d`` in ``module`` by ``GlobalBatchNorm`` (keys and values kept)."""
    out = module
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_batchnorm(child))
    return out


def mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo v3 ``_build_mlp``: Linear-BN-ReLU x (num_layers - 1), Linear, then BN without affine."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [GlobalBatchNorm(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(GlobalBatchNorm(d_out, affine=False))
    return nn.Sequential(*layers)
