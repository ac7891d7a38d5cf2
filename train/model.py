"""Student and EMA teacher around a ``core`` encoder (MoCo v3 layout, Chen, Xie, He 2021), and Siamese masking.

Student = encoder + projector + predictor, fed the *masked* views; teacher = EMA copy of encoder + projector,
fed the full views. The encoder always comes from ``core.models.encoders.build_encoder`` (:func:`build_encoder_for`),
so every architecture ``core`` knows can be pretrained.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.models.adapt import init_from_rgb
from core.models.encoders import Encoder, ViTEncoder, build_encoder
from core.models.galileo import GalileoEncoder
from core.models.encoders import create_encoder

from .config import Config
from .heads import convert_batchnorm, mlp
from .masking import keep_indices, pixel_mask, sample_noise
from .modality import MODALITIES


class SoftConModel(nn.Module):
    """MoCo v3 layout around a ``core.models.encoders.Encoder``; ``forward`` takes masked views.

    ``bn_per_view``: the encoder runs on each view as its own batch, so batch-norm statistics (ResNet) are per
    view as in MoCo v3's ``forward(x1, x2)``; a ViT has no batch norm in its encoder and runs both views at once.
    """

    def __init__(self, encoder: Encoder, proj_layers: int, proj_hidden: int, proj_dim: int, pred_hidden: int,
                 pred_last_bn: bool = True, bn_per_view: bool = True):
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(proj_layers, encoder.embed_dim, proj_hidden, proj_dim)
        self.predictor = mlp(2, proj_dim, pred_hidden, proj_dim, last_bn=pred_last_bn)
        self.bn_per_view = bn_per_view and not isinstance(encoder, ViTEncoder)

    def embed(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features (B, D): the ViT's CLS token over the kept tokens, or the ResNet pool."""
        if isinstance(self.encoder, ViTEncoder):
            return self.encoder.tokens(x, keep)[:, 0]
        if isinstance(self.encoder, GalileoEncoder):  # no CLS token: the pooled embedding is the token mean
            return self.encoder.tokens(x, keep).mean(dim=1)
        return self.encoder(x)

    def forward(self, views: torch.Tensor, keep: torch.Tensor | None = None, predict: bool = True,
                with_features: bool = False):
        """Views (B, V, C, H, W) (already pixel-masked for a ResNet), ``keep`` (B, V, N') -> V x (B, proj_dim).

        ``with_features`` also returns the encoder outputs (B, V, D), for the gradient-share measurement.
        Projector and predictor always run per view (MoCo v3 batch norm).
        """
        b, v = views.shape[:2]
        if self.bn_per_view:
            feats = torch.stack([self.embed(views[:, i], None if keep is None else keep[:, i]) for i in range(v)], 1)
        else:
            k = keep.flatten(0, 1) if keep is not None else None
            feats = self.embed(views.flatten(0, 1), k).view(b, v, -1)
        out = []
        for i in range(v):
            z = self.projector(feats[:, i])
            out.append(self.predictor(z) if predict else z)
        return (out, feats) if with_features else out


class CheckpointedSequential(nn.Sequential):
    """``nn.Sequential`` whose children are recomputed in the backward pass; state-dict keys unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = checkpoint(module, x, use_reentrant=False) if torch.is_grad_enabled() else module(x)
        return x


def enable_grad_checkpointing(encoder: Encoder) -> int:
    """Recompute the ViT blocks / ResNet stages in the backward pass; returns how many modules are wrapped.

    ResNet batch norms update their running statistics twice per step then (training uses batch statistics,
    and the exported teacher is never checkpointed, so its statistics are unaffected).
    """
    m = encoder.model
    if isinstance(encoder, ViTEncoder):
        m.blocks = CheckpointedSequential(*m.blocks)
        return len(m.blocks)
    stages = [n for n in ("layer1", "layer2", "layer3", "layer4") if isinstance(getattr(m, n, None), nn.Sequential)]
    for n in stages:
        setattr(m, n, CheckpointedSequential(*getattr(m, n)))
    return sum(len(getattr(m, n)) for n in stages)


def build_encoder_for(cfg: Config) -> Encoder:
    """The encoder to pretrain: a registered model's (continual pretraining, ``init_model``), or ``core``'s
    builder for ``cfg.arch`` with the modality's input bands."""
    if cfg.init_model:
        return create_encoder(cfg.init_model)[0].train()
    return build_encoder(cfg.arch, len(MODALITIES[cfg.modality].bands), cfg.img_size)


def build_model(cfg: Config) -> SoftConModel:
    """Student for ``cfg``: encoder (optionally from an RGB checkpoint) + MoCo v3 heads, global batch norm."""
    encoder = build_encoder_for(cfg)
    if cfg.layer_scale_init > 0:
        with torch.no_grad():
            for name, p in encoder.named_parameters():
                if name.endswith(("ls1.gamma", "ls2.gamma")):
                    p.fill_(cfg.layer_scale_init)
    if cfg.init:
        for note in init_from_rgb(encoder, cfg.init, mode=cfg.init_mode, bands=MODALITIES[cfg.modality].bands):
            print(f"init: {note}")
    if cfg.grad_checkpointing:
        enable_grad_checkpointing(encoder)
    last_bn = isinstance(encoder, ViTEncoder) if cfg.pred_last_bn == "auto" else cfg.pred_last_bn == "true"
    model = SoftConModel(encoder, cfg.proj_layers, cfg.proj_hidden, cfg.proj_dim, cfg.pred_hidden, last_bn,
                         cfg.bn_per_view)
    return convert_batchnorm(model)  # ResNet BNs too: statistics over the global batch on every backend


def zero_invariant_grads(model: SoftConModel) -> list[str]:
    """Zero the gradients that are exactly 0 in exact arithmetic, so Adam cannot turn rounding noise into steps.

    Adam divides each gradient element by its own running scale, so an element whose true gradient is 0 but
    whose computed gradient is rounding noise (1e-10) moves by about +-lr every step: a random walk that also
    makes runs with a different batch split (1 vs 2 processes) drift apart. Two such parameters exist in a ViT
    trained with this objective: the *key* third of each ``attn.qkv.bias`` (adding a constant to every key
    adds q.b to all logits of a query, which the softmax ignores; BEiT/MAE drop that bias for this reason)
    and the bias of the final ``norm`` (the projector batch-normalises its output, removing any shift common
    to the batch). Returns the names of the parameters hooked.
    """
    hooked = []
    for name, p in model.named_parameters():
        if name.startswith("encoder.model.blocks.") and name.endswith("attn.k.bias"):  # Galileo: separate k
            p.register_hook(torch.zeros_like)
            hooked.append(name)
        elif name.startswith("encoder.model.blocks.") and name.endswith("attn.qkv.bias"):
            d = p.numel() // 3
            mask = torch.ones_like(p)
            mask[d:2 * d] = 0
            p.register_hook(lambda g, mask=mask: g * mask)
            hooked.append(name)
        elif name in ("encoder.model.norm.bias",) and isinstance(model.encoder, (ViTEncoder, GalileoEncoder)):
            p.register_hook(torch.zeros_like)
            hooked.append(name)
    return hooked


def make_teacher(model: SoftConModel) -> SoftConModel:
    """EMA copy of encoder + projector (no predictor, no gradients)."""
    teacher = copy.deepcopy(model)
    teacher.predictor = nn.Identity()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: SoftConModel, student: SoftConModel, m: float) -> None:
    """teacher = m teacher + (1 - m) student, for encoder and projector parameters."""
    t = [p for n, p in teacher.named_parameters() if not n.startswith("predictor")]
    s = [p.detach() for n, p in student.named_parameters() if not n.startswith("predictor")]
    torch._foreach_mul_(t, m)
    torch._foreach_add_(t, s, alpha=1.0 - m)


def student_masks(model: SoftConModel, batch: dict, views: torch.Tensor, cfg: Config, epoch: int):
    """Siamese masking: (views for the student, keep indices or None). Masks depend on (seed, epoch, index)."""
    if cfg.mask_ratio <= 0:
        return views, None
    b, v, _, h, w = views.shape
    enc = model.encoder
    if isinstance(enc, (ViTEncoder, GalileoEncoder)):
        n = (h // enc.patch_size) * (w // enc.patch_size)
        keep = torch.stack([keep_indices(sample_noise(batch["index"], n, cfg.seed, epoch, i), cfg.mask_ratio)
                            for i in range(v)], dim=1)
        return views, keep.to(views.device)
    grid = (h // cfg.mask_patch, w // cfg.mask_patch)
    masks = torch.stack([pixel_mask(sample_noise(batch["index"], grid[0] * grid[1], cfg.seed, epoch, i),
                                    cfg.mask_ratio, grid, (h, w)) for i in range(v)], dim=1)
    return views * masks.to(views.device, views.dtype), None
