"""SoftCon pretraining: ``python -m train.pretrain --config configs/X.toml [--key value ...]`` (``--help`` lists all).

Wang, Albrecht, Zhu (2024), *Multi-Label Guided Soft Contrastive Learning for Efficient Earth Observation
Pretraining*, arXiv:2405.20462. Layout after MAE's ``main_pretrain.py``: this file is the loop, read top to
bottom (:func:`main`, :func:`train_one_epoch`, :func:`softcon_step`); beside it ``config`` (options),
``model`` (student, EMA teacher, masking), ``optim`` (parameter groups, schedules), ``distributed`` (torchrun
set-up, collectives), ``checkpoint`` (save, collective resume, export), ``data`` and ``labels``.

One step (MoCo v3 + Siamese masking + soft labels):

1. two views of each scene (two seasons, or two augmentations of one patch);
2. student = encoder + projector + predictor on the *masked* views (ViT: a share of patch tokens dropped,
   ResNet: pixel patches zeroed); teacher = EMA copy of encoder + projector on the full views;
3. ``core.loss.SoftContrastiveLoss``: 2T x InfoNCE against the other view's teacher embedding with in-batch
   negatives from every rank, plus lambda x the soft term whose targets are label cosine similarities;
4. AdamW (warmup + per-iteration cosine, optional layer-wise decay), gradient clipping, a GradScaler for
   fp16, NaN guard, then the EMA update with a cosine momentum schedule from ``momentum`` to 1 (BYOL).

Distributed: ``torchrun --nproc_per_node N -m train.pretrain ...`` (NCCL on GPU, gloo on CPU); ``batch_size``
is per process. Outputs in ``output_dir``: ``config.json`` (resolved), ``metrics.jsonl`` (per logged step:
losses, each term's gradient share, lr, images/s; per epoch: the share of samples with labels), checkpoints
(``train/checkpoint.py``) and at the end ``encoder.safetensors``, loadable with
``core.models.registry.create_encoder(name, checkpoint=path)``.
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from core.device import autocast, resolve_precision
from core.errors import SoftConError
from core.loss import SoftContrastiveLoss
from core.models.registry import get_record

from .checkpoint import export_encoder, resume, save_checkpoint, truncate_metrics, write_text
from .config import Config, check, get_args_parser, parse_args  # noqa: F401 - the CLI's public names
from .augment import Augment
from .data import EpochSampler, build_dataset
from .distributed import Context, all_mean, all_sum, broadcast_object, init_distributed, peak_flops
from .model import SoftConModel, build_model, ema_update, make_teacher, student_masks, zero_invariant_grads
from .modality import MODALITIES
from .optim import lr_at, momentum_at, param_groups


def main(cfg: Config) -> Path:
    """Run (or resume) pretraining; returns the exported encoder file."""
    check(cfg)
    rank, world, device = init_distributed(cfg.device)
    try:
        return _main(cfg, rank, world, device)
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _main(cfg: Config, rank: int, world: int, device: torch.device) -> Path:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)            # same initial weights on every rank
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    # data: one loader for the whole run, workers kept alive; the sampler carries the epoch
    mod = MODALITIES[cfg.modality]
    norm = dict(mean=mod.mean, std=mod.std)
    if cfg.init_model:  # continual pretraining: the registered model's arch, bands and normalisation
        record = get_record(cfg.init_model)
        cfg = dataclasses.replace(cfg, arch=record.arch)
        norm = dict(mean=record.mean, std=record.std, clip=record.clip, bands=[mod.bands.index(b) for b in record.bands])
    augment = Augment(size=cfg.img_size, **norm, sar_quantiles=mod.sar_quantiles,
                      crop_scale=(cfg.crop_min_scale, 1.0), jitter_p=cfg.jitter_p, brightness=cfg.brightness,
                      contrast=cfg.contrast, jitter_bands=cfg.jitter_bands, blur_p=cfg.blur_p)
    dataset = build_dataset(cfg.data, cfg.img_size, cfg.labels, cfg.label_file or None, cfg.landcover_mapping,
                            cfg.label_threshold, cfg.patch_size, cfg.patch_stride or None, augment, cfg.seed,
                            cfg.bands or None, cfg.modality)
    sampler = EpochSampler(len(dataset), world, rank, cfg.seed, cfg.batch_size)
    steps_per_epoch = sampler.steps_per_epoch
    if steps_per_epoch == 0:
        raise SoftConError(f"{len(dataset)} samples give no full batch of {cfg.batch_size} x {world} processes; "
                           f"lower batch_size or add data (smaller patch_stride).")
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                                         num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                         persistent_workers=cfg.num_workers > 0)

    # model, teacher, optimiser, loss, loss scaler
    model = build_model(cfg).to(device)
    teacher = make_teacher(model).to(device)
    if cfg.zero_invariant_grads:
        zero_invariant_grads(model)
    peak_lr = cfg.lr or cfg.blr * cfg.batch_size * world / 256
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.layer_decay), lr=peak_lr,
                                  betas=(0.9, cfg.beta2))
    loss_fn = SoftContrastiveLoss(cfg.temperature, cfg.soft_weight, cfg.soft_form, cfg.soft_temperature,
                                  cfg.symmetric, cfg.hard_scale)
    dtype = resolve_precision(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)   # fp16 range needs loss scaling
    ctx = Context(rank, world, device, dtype, out, steps_per_epoch, steps_per_epoch * cfg.epochs, peak_lr,
                  peak_flops=peak_flops(device, dtype))

    # resume: collective, from rank 0's last.json
    step = 0
    resume_dir = out if cfg.resume == "auto" else None if cfg.resume == "none" else Path(cfg.resume)
    has_last = broadcast_object(resume_dir is not None and (resume_dir / "last.json").is_file() if rank == 0 else None)
    if not has_last and cfg.resume not in ("auto", "none"):
        raise SoftConError(f"No checkpoint (last.json) in {cfg.resume}; give a run's output_dir or --resume none.")
    if has_last:
        step = resume(resume_dir, ctx, cfg, model, teacher, optimizer, scaler)
        if rank == 0:
            truncate_metrics(out / "metrics.jsonl", step)
            print(f"resumed from {resume_dir} at step {step}")
    elif rank == 0:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if rank == 0:
        resolved = dataclasses.asdict(cfg) | {"world_size": world, "global_batch": cfg.batch_size * world,
                                              "peak_lr": peak_lr, "steps_per_epoch": steps_per_epoch,
                                              "num_samples": len(dataset), "device": str(device),
                                              "autocast": str(dtype), "grad_scaler": scaler.is_enabled()}
        write_text(json.dumps(resolved, indent=2), out / "config.json")
        print(f"SoftCon pretraining: {cfg.arch} on {cfg.modality}, {len(dataset)} samples, {steps_per_epoch} "
              f"steps/epoch, global batch {cfg.batch_size * world}, {world} process(es) on {device}, "
              f"autocast {dtype}{' + GradScaler' if scaler.is_enabled() else ''}")

    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    model.train()
    teacher.train()   # MoCo v3: the momentum encoder's BN uses batch statistics too
    log = MetricsLog(out / "metrics.jsonl", rank)
    while step < ctx.total_steps and not (cfg.max_steps and step >= cfg.max_steps):
        epoch, skip = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch, skip)
        dataset.set_epoch(epoch)
        step = train_one_epoch(ddp, teacher, loss_fn, loader, optimizer, scaler, epoch, step, cfg, ctx, log)
        if not cfg.save_every or step % cfg.save_every:
            save_checkpoint(ctx, cfg, step, model, teacher, optimizer, scaler)
    return export_encoder(cfg, teacher if cfg.export == "teacher" else model, out, rank, world)


def train_one_epoch(model: nn.Module, teacher: SoftConModel, loss_fn: SoftContrastiveLoss,
                    loader: torch.utils.data.DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, epoch: int, step: int, cfg: Config, ctx: Context, log) -> int:
    """One pass over ``loader`` (which may start mid-epoch after a resume); returns the global step reached."""
    student = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    params = [p for p in model.parameters() if p.requires_grad]
    bar = None
    if cfg.progress and ctx.rank == 0:
        bar = tqdm(total=len(loader), desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    t_last, n_since = time.perf_counter(), 0
    labelled = seen = 0
    for batch in loader:
        if cfg.max_steps and step >= cfg.max_steps:
            break
        # per-iteration schedules
        lr = lr_at(step, ctx.total_steps, int(cfg.warmup_epochs * ctx.steps_per_epoch), ctx.peak_lr, cfg.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr * g["lr_scale"]
        m = momentum_at(step, ctx.total_steps, cfg.momentum)
        logging = (step + 1) % cfg.log_every == 0

        counter = None
        if ctx.flops_per_step == 0.0 and ctx.device.type == "cuda":   # count once, for MFU
            counter = FlopCounterMode(display=False)
            counter.__enter__()
        out, grad_norm, ok = softcon_step(model, teacher, loss_fn, optimizer, scaler, batch, params, epoch, m, cfg,
                                          ctx, measure=logging and cfg.log_grad_share)
        if counter is not None:
            counter.__exit__(None, None, None)
            ctx.flops_per_step = float(counter.get_total_flops()) or 1.0
        step += 1
        n_since += 1
        labelled += int((batch["labels"].sum(1) > 0).sum())
        seen += batch["labels"].shape[0]

        if logging or not ok:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            dt = (time.perf_counter() - t_last) / n_since
            t_last, n_since = time.perf_counter(), 0
            loss, hard, soft = all_mean([float(out["loss"].detach()), float(out["hard"]), float(out["soft"])],
                                        ctx.device)
            rec = {"step": step, "epoch": epoch, "loss": loss, "hard": hard, "soft": soft, "lr": lr, "momentum": m,
                   "grad_norm": float(grad_norm), "skipped": not ok, "step_time": dt,
                   "img_per_s": cfg.batch_size * ctx.world / dt, "img_per_s_per_device": cfg.batch_size / dt}
            rec.update(out.get("grad_share", {}))
            if scaler.is_enabled():
                rec["loss_scale"] = scaler.get_scale()
            if ctx.flops_per_step:
                rec["tflops"] = ctx.flops_per_step / dt / 1e12   # per device
                if ctx.peak_flops:
                    rec["mfu"] = ctx.flops_per_step / dt / ctx.peak_flops
            log(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", ips=f"{rec['img_per_s']:.0f}")
        if not ok and not scaler.is_enabled():   # a GradScaler skips overflowing steps by design
            log.bad += 1
            if log.bad >= 20:
                raise SoftConError("The loss or gradients were not finite 20 times; lower the learning rate "
                                   "or use precision fp32.")
        if bar is not None:
            bar.update(1)
        if cfg.save_every and step % cfg.save_every == 0:
            save_checkpoint(ctx, cfg, step, student, teacher, optimizer, scaler)
    if bar is not None:
        bar.close()
    check_label_share(labelled, seen, epoch, step, cfg, ctx, log)
    return step


def softcon_step(model: nn.Module, teacher: SoftConModel, loss_fn: SoftContrastiveLoss,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batch: dict,
                 params: list[torch.Tensor], epoch: int, m: float, cfg: Config, ctx: Context,
                 measure: bool = False) -> tuple[dict, torch.Tensor, bool]:
    """One optimisation step on a batch {views (B, V, C, H, W), labels (B, 9), index (B,)}.

    ``measure``: also return, under ``grad_share``, the norm of each term's gradient on the encoder output
    (the pooled features of both views; all ranks) and the soft term's share of their sum. This costs two
    backward passes through the heads only.

    Returns (loss dict, gradient norm, whether the step was applied).
    """
    student = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    views = batch["views"].to(ctx.device, non_blocking=True)
    labels = batch["labels"].to(ctx.device, non_blocking=True)
    student_views, keep = student_masks(student, batch, views, cfg, epoch)
    with autocast(ctx.device, ctx.dtype):
        q, feats = model(student_views, keep, with_features=True)    # V x (B, P) with grad; (B, V, D)
        with torch.no_grad():
            k = teacher(views, predict=False)                           # V x (B, P)
    out = loss_fn([x.float() for x in q], [x.float() for x in k], labels)
    if measure:
        out["grad_share"] = grad_share(out, feats, ctx)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out["loss"]).backward()
    scaler.unscale_(optimizer)
    # NaN guard: DDP has averaged the gradients, so every rank sees the same norm and decides alike
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0 else float("inf"))
    ok = bool(torch.isfinite(grad_norm))
    if scaler.is_enabled():
        scaler.step(optimizer)      # skips the step itself when the unscaled gradients overflowed
        scaler.update()
    elif ok:
        optimizer.step()
    if ok:
        ema_update(teacher, student, m)
    return out, grad_norm, ok


def grad_share(out: dict, feats: torch.Tensor, ctx: Context) -> dict:
    """Norms of the hard and soft terms' gradients on the encoder output (summed over ranks) and the soft share."""
    sq = []
    for name in ("hard_term", "soft_term"):
        t = out[name]
        g = torch.autograd.grad(t, feats, retain_graph=True, allow_unused=True)[0] if t.requires_grad else None
        sq.append(0.0 if g is None else float(g.float().pow(2).sum()))
    hard, soft = (v ** 0.5 for v in all_sum(sq, ctx.device))
    return {"grad_hard": hard, "grad_soft": soft, "soft_grad_share": soft / (hard + soft) if hard + soft else 0.0}


def check_label_share(labelled: int, seen: int, epoch: int, step: int, cfg: Config, ctx: Context, log) -> None:
    """Log the share of this epoch's samples that carry labels; stop below ``min_label_share``."""
    if seen == 0 and ctx.world == 1:
        return
    labelled, seen = all_sum([labelled, seen], ctx.device)
    if seen == 0:
        return
    share = labelled / seen
    log({"epoch": epoch, "step": step, "label_share": share, "samples": int(seen)})
    if cfg.labels != "none" and cfg.soft_weight and share < cfg.min_label_share:
        raise SoftConError(f"Only {share:.1%} of epoch {epoch}'s {int(seen)} samples had labels (min_label_share "
                           f"{cfg.min_label_share}): the soft term hardly trains. Check that label_file covers the "
                           f"locations and seasons of the data, or lower min_label_share.")


class MetricsLog:
    """Rank 0 appends one JSON object per line; other ranks log nothing."""

    def __init__(self, path: Path, rank: int):
        self.path, self.rank, self.bad = path, rank, 0

    def __call__(self, rec: dict) -> None:
        if self.rank == 0:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    try:
        main(parse_args())
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
