"""Checkpoints of a pretraining run: save, exact resume on every rank, and the final encoder export.

A checkpoint is ``ckpt-<step>.safetensors`` (student and teacher, with heads), ``ckpt-<step>.optim.pt``
(optimizer and loss-scaler state, read with ``torch.load(weights_only=True)``), one ``ckpt-<step>.rng<rank>.pt``
per rank, and ``last.json`` written last: the commit point, so a kill in between leaves the previous
checkpoint valid. ``output_dir`` must be on a filesystem that every node sees (docs/training.md): rank 0
writes the shared files and reads ``last.json``; every rank reads the weights and its own RNG file.

Resume is collective: rank 0 reads ``last.json`` and broadcasts it, every rank loads, and the ranks compare
the step and a fingerprint of the weights they loaded. Any error on any rank stops every rank with one
message that names the file and the way out (``--resume none``).
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.io.atomic import atomic_path
from core.errors import SoftConError
from core.models.checkpoint import save_safetensors
from core.models.registry import get_record, REGISTRY
from core.models.record import ModelRecord, record_metadata

from .config import Config
from .distributed import Context, broadcast_object, gather_objects, raise_if_any
from .modality import MODALITIES

FRESH = "Point --resume at another run's output_dir, or start afresh with --resume none."


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


def _torch_save(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_checkpoint(ctx: Context, cfg: Config, step: int, model: nn.Module, teacher: nn.Module,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write ckpt-<step>.* then ``last.json`` (the commit point); a kill in between leaves the old one valid."""
    stem = f"ckpt-{step:08d}"
    _torch_save(rng_state(), ctx.out / f"{stem}.rng{ctx.rank}.pt")
    if ctx.rank == 0:
        tensors = {f"student.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tensors.update({f"teacher.{k}": v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()})
        with atomic_path(ctx.out / f"{stem}.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"step": str(step), "arch": cfg.arch})
        _torch_save({"optimizer": optimizer.state_dict(), "step": step, "world": ctx.world,
                     "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}},
                    ctx.out / f"{stem}.optim.pt")
    if ctx.world > 1:
        torch.distributed.barrier()
    if ctx.rank == 0:
        write_text(json.dumps({"step": step, "checkpoint": stem, "world": ctx.world,
                               "global_batch": cfg.batch_size * ctx.world}), ctx.out / "last.json")
        old = sorted({p.name.split(".")[0] for p in ctx.out.glob("ckpt-*.*")} - {stem})
        for name in old[: max(0, len(old) - (cfg.keep_checkpoints - 1))]:
            for p in ctx.out.glob(f"{name}.*"):
                p.unlink(missing_ok=True)


def read_last(folder: Path) -> dict:
    """``last.json`` of a run, checked: {step, checkpoint, world?, global_batch?}."""
    path = folder / "last.json"
    try:
        last = json.loads(path.read_text())
        step, stem = int(last["step"]), str(last["checkpoint"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SoftConError(f"Cannot resume from {path}: unreadable or incomplete ({type(e).__name__}: {e}). "
                           f"{FRESH}") from None
    if step < 0 or not stem.startswith("ckpt-"):
        raise SoftConError(f"Cannot resume from {path}: step {step} / checkpoint {stem!r} are not valid. {FRESH}")
    return {"step": step, "checkpoint": stem, "world": last.get("world"), "global_batch": last.get("global_batch")}


def _read(path: Path, reader, what: str):
    if not path.is_file():
        raise SoftConError(f"Cannot resume: {path} is missing ({what}). If this is not rank 0's node, output_dir "
                           f"must be on a filesystem every node shares (docs/training.md). {FRESH}")
    try:
        return reader(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the file means the same to the user
        raise SoftConError(f"Cannot resume from {path}: the {what} file is corrupt or truncated "
                           f"({type(e).__name__}: {str(e)[:200]}). {FRESH}") from None


def _load_into(module: nn.Module, state: dict, path: Path, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SoftConError(f"Cannot resume from {path}: its {what} does not fit this configuration (arch, modality "
                           f"or head sizes changed?): {str(e)[:300]}. {FRESH}") from None


def _fingerprint(model: nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum().item() for p in model.state_dict().values() if p.is_floating_point()))


def load_checkpoint(folder: Path, ctx: Context, model: nn.Module, teacher: nn.Module,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                    info: dict | None = None) -> int:
    """Restore everything :func:`save_checkpoint` wrote on this rank; returns the checkpoint's step."""
    info = info or read_last(folder)
    stem = info["checkpoint"]
    weights = folder / f"{stem}.safetensors"
    tensors = _read(weights, lambda p: load_file(str(p)), "weights")
    _load_into(model, {k[8:]: v for k, v in tensors.items() if k.startswith("student.")}, weights, "student")
    _load_into(teacher, {k[8:]: v for k, v in tensors.items() if k.startswith("teacher.")}, weights, "teacher")
    optim_path = folder / f"{stem}.optim.pt"
    opt = _read(optim_path, lambda p: torch.load(p, map_location="cpu", weights_only=True), "optimizer")
    try:
        optimizer.load_state_dict(opt["optimizer"])
        if scaler is not None and scaler.is_enabled() and opt.get("scaler"):
            scaler.load_state_dict(opt["scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise SoftConError(f"Cannot resume from {optim_path}: the optimizer state does not fit this configuration "
                           f"({type(e).__name__}: {str(e)[:200]}). {FRESH}") from None
    rng_file = folder / f"{stem}.rng{ctx.rank}.pt"
    if rng_file.is_file() or (info.get("world") or ctx.world) == ctx.world:
        set_rng_state(_read(rng_file, lambda p: torch.load(p, weights_only=True), "random-state"))
    return info["step"]


def resume(folder: Path, ctx: Context, cfg: Config, model: nn.Module, teacher: nn.Module,
           optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> int:
    """Collective resume: rank 0's ``last.json`` for all, every rank loads and checks; returns the step to run from.

    A run resumed with another world size is refused unless ``allow_world_change``; then the step is rescaled so
    the number of samples seen stays the same (schedules and epochs follow from it; a ``blr``-derived learning
    rate follows the new global batch by itself). The data order then differs from an uninterrupted run.
    """
    info, err = None, None
    if ctx.rank == 0:
        try:
            info = read_last(folder)
        except SoftConError as e:
            err = str(e)
    info, err = broadcast_object((info, err))
    if err:
        raise SoftConError(err)
    global_batch = cfg.batch_size * ctx.world
    saved_world, saved_batch = info.get("world") or ctx.world, info.get("global_batch") or global_batch
    if (saved_world, saved_batch) != (ctx.world, global_batch) and not cfg.allow_world_change:
        raise SoftConError(f"{folder / 'last.json'} was written by {saved_world} process(es) with a global batch of "
                           f"{saved_batch}; this run has {ctx.world} x {cfg.batch_size} = {global_batch}. Launch "
                           f"the same number of processes and batch_size, or pass --allow_world_change true to "
                           f"continue with the step rescaled to the samples seen.")
    err = None
    try:
        step = load_checkpoint(folder, ctx, model, teacher, optimizer, scaler, info)
    except SoftConError as e:
        err = f"rank {ctx.rank}: {e}" if ctx.world > 1 else str(e)
    raise_if_any(err)
    seen = gather_objects((info["step"], info["checkpoint"], _fingerprint(model)))
    if len(set(seen)) > 1:
        raise SoftConError(f"The ranks resumed different checkpoints {seen}: output_dir must be one folder on a "
                           f"filesystem every node shares (docs/training.md). {FRESH}")
    if saved_batch != global_batch:
        new = round(step * saved_batch / global_batch)
        if ctx.rank == 0:
            print(f"world size changed: step {step} x {saved_batch} images -> step {new} x {global_batch} images")
        step = new
    return step


def truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop metrics a killed run logged past its last checkpoint, and a line it left half written."""
    if not path.is_file():
        return
    keep, broken = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            broken += bool(line.strip())
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= step:
            keep.append(line)
    if broken:
        print(f"{path}: dropped {broken} unreadable line(s) (a run killed while writing)")
    write_text("".join(line + "\n" for line in keep), path)


def export_encoder(cfg: Config, source: nn.Module, out: Path, rank: int, world: int) -> Path:
    """encoder.safetensors: the encoder's timm keys + the record metadata ``core.models`` reads back."""
    mod = MODALITIES[cfg.modality]
    path = out / "encoder.safetensors"
    if rank == 0 and cfg.init_model:  # continual pretraining: the registered model's record, renamed
        record = dataclasses.replace(get_record(cfg.init_model), name=cfg.model_name or f"{cfg.init_model}_softcon")
        save_safetensors(source.encoder, path, record_metadata(
            record, source=f"train.pretrain ({cfg.export}) from {cfg.init_model}", config=dataclasses.asdict(cfg)))
        print(f"encoder written to {path}")
    elif rank == 0:
        base = REGISTRY.get(cfg.model_name) or next(
            (r for r in REGISTRY.values() if r.arch == cfg.arch and r.input_size == cfg.img_size
             and tuple(r.bands) == mod.bands), None)
        fields = dict(name=cfg.model_name or (base.name if base else cfg.arch), arch=cfg.arch, bands=mod.bands,
                      input_size=cfg.img_size, embed_dim=source.encoder.embed_dim, mean=mod.mean, std=mod.std,
                      modality="s2" if mod.optical else "s1", sar_quantiles=mod.sar_quantiles, stats=mod.stats,
                      description=f"train.pretrain ({cfg.export}, {cfg.modality})")
        record = dataclasses.replace(base, **fields) if base else ModelRecord(**fields)
        meta = record_metadata(record, source=f"train.pretrain ({cfg.export})", config=dataclasses.asdict(cfg))
        save_safetensors(source.encoder, path, meta)
        print(f"encoder written to {path}")
    if world > 1:
        torch.distributed.barrier()
    return path
