"""Frozen features for evaluation: labelled patch sets read once, embedded once (DINOv2 ``eval/``).

Two kinds of labelled data are read:

- EuroSAT-style class folders (``<root>/<Class>/<anything>.tif``), one multi-band GeoTIFF per patch,
  single label per patch. The file band order is given by a preset (``eurosat`` stores B8A last) or
  read from the band descriptions.
- BigEarthNet v1 patch folders: ``train.bigearthnet``, read per batch and embedded straight to disk
  (:func:`stream_features`), because the v1 test set alone is about 94 GB as float32 pixels.

Features always go through ``core``: the model record's band order and statistics,
``core.geo.normalize.preprocess``, resizing to the record's ``input_size``, and the encoder's
``forward`` (pooled) or ``forward_linear_probe`` (DINOv2: CLS of the last 4 blocks + mean patch token).
The ``spectral`` features (per-band mean and standard deviation of each preprocessed patch) are the
no-network baseline that every encoder has to beat.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from core.geo.bands import resolve_bands
from core.device import autocast
from core.models.encoders import Encoder
from core.errors import SoftConError
from core.models.record import ModelRecord
from core.geo.normalize import preprocess
from core.io.atomic import atomic_path
from core.progress import Progress


@dataclass
class PatchSet:
    """Labelled patches in the model's band order.

    Attributes:
        x: (N, C, H, W) float32 raw values (zero where the model band is missing).
        y: (N,) int64 class index, or (N, K) float32 multi-hot for multi-label sets.
        classes: class names, index order.
        paths: one source path per patch.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    paths: list[str]

    @property
    def multilabel(self) -> bool:
        return self.y.ndim == 2


def _stack_bands(arr: np.ndarray, index: Sequence[int | None]) -> np.ndarray:
    """(C_file, H, W) -> (C_model, H, W), zeros where ``index`` is None."""
    out = np.zeros((len(index),) + arr.shape[1:], dtype=np.float32)
    for j, i in enumerate(index):
        if i is not None:
            out[j] = arr[i]
    return out


def read_class_folders(
    root: str | Path,
    model_bands: Sequence[str],
    bands: str | Sequence[str] | None = "eurosat",
    classes: Sequence[str] | None = None,
) -> PatchSet:
    """Read ``<root>/<Class>/*.tif`` patches, one class per sub-folder (EuroSAT layout).

    Args:
        model_bands: bands the model expects, in its order.
        bands: file band order (preset or list); None = read the files' band descriptions.
        classes: class order to use (e.g. the train split's for a test split); None = sorted folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise SoftConError(f"{root} is not a folder. Give a folder with one sub-folder of .tif patches per class.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.tif")))
    if not found:
        raise SoftConError(f"No class sub-folders with .tif files in {root} (expected <root>/<Class>/*.tif).")
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise SoftConError(f"Classes {unknown} in {root} are not in the training classes {classes}.")
    xs, ys, paths = [], [], []
    shape = None
    for ci, cname in enumerate(classes):
        for path in sorted((root / cname).glob("*.tif")):
            with rasterio.open(path) as ds:
                arr = ds.read()
                index = resolve_bands(list(ds.descriptions), model_bands, bands)
            if shape is None:
                shape = arr.shape[1:]
            elif arr.shape[1:] != shape:
                raise SoftConError(f"{path} is {arr.shape[1:]} px but other patches are {shape}; use one patch size.")
            xs.append(_stack_bands(arr, index))
            ys.append(ci)
            paths.append(str(path))
    return PatchSet(torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), classes, paths)


def model_input(x: torch.Tensor, record: ModelRecord, device: torch.device) -> torch.Tensor:
    """Raw (B, C, H, W) -> preprocessed (B, C, S, S) on ``device``, S = the record's input size."""
    x = preprocess(x.to(device), record.mean, record.std, sar_quantiles=record.sar_quantiles, clip=record.clip)
    if x.shape[-1] != record.input_size or x.shape[-2] != record.input_size:
        x = F.interpolate(x, size=(record.input_size, record.input_size), mode="bilinear", align_corners=False)
    return x


@torch.no_grad()
def encoder_features(
    encoder: Encoder,
    record: ModelRecord,
    x: torch.Tensor,
    feature: str = "pooled",
    batch_size: int = 32,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    check_all: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Embed raw patches (N, C, H, W) -> (N, D) float32 features on the CPU.

    Args:
        feature: ``pooled`` (``encoder.forward``), ``linear_probe`` (DINOv2 4-layer features) or
            ``token_stats`` (:func:`token_stats`).
        dtype: autocast dtype (bf16 / fp16) or None for float32.
        check_all: compare reduced precision with float32 on every batch, not only the first.

    Returns:
        (features, info) where info holds, when ``dtype`` is set, the cosine similarity between
        the reduced-precision and float32 features (min and mean over the first batch, or over
        all patches with ``check_all``): the equivalence check for using bf16.
    """
    device = device or torch.device("cpu")
    encoder = encoder.to(device).eval()
    fn = {"pooled": encoder.forward, "linear_probe": encoder.forward_linear_probe,
          "token_stats": lambda x: token_stats(encoder, x)}.get(feature)
    if fn is None:
        raise SoftConError(f"Unknown feature type {feature!r}; use pooled, linear_probe or token_stats.")
    progress = progress or Progress()
    out, cos = [], []
    n = x.shape[0]
    for start in range(0, n, batch_size):
        progress.check()
        inp = model_input(x[start:start + batch_size], record, device)
        with autocast(device, dtype):
            f = fn(inp).float()
        if dtype is not None and (start == 0 or check_all):
            cos.append(F.cosine_similarity(f, fn(inp).float(), dim=-1).cpu())
        out.append(f.cpu())
        progress.update(min(start + batch_size, n), n, "embedding")
    info = {}
    if cos:
        c = torch.cat(cos)
        info = {"reduced_precision_cosine_min": float(c.min()), "reduced_precision_cosine_mean": float(c.mean()),
                "reduced_precision_checked": int(c.numel())}
    return torch.cat(out), info


def token_stats(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    """Pooled embedding, mean and standard deviation of the dense features, each L2-normalised: (B, 3D).

    The mean and spread of the patch features over the window are a first-order texture summary that the
    pooled embedding alone may not carry (the "multi-scale features" of the default-model study).
    """
    dense = encoder.forward_dense(x).flatten(2)
    parts = (encoder.forward(x), dense.mean(dim=2), dense.std(dim=2))
    return torch.cat([F.normalize(p.float(), dim=1) for p in parts], dim=1)


def spectral_features(x: torch.Tensor, record: ModelRecord, texture: bool = False) -> torch.Tensor:
    """Per-band mean and standard deviation of each preprocessed patch: (N, C, H, W) -> (N, 2C).

    Computed at the patch's native size (no resizing) on the record's band scaling, so the
    baseline sees exactly the values the encoder sees. ``texture`` adds each band's mean absolute
    difference between horizontal and between vertical neighbours (N, 4C): a crude texture measure.
    """
    z = preprocess(x, record.mean, record.std, sar_quantiles=record.sar_quantiles, clip=record.clip)
    parts = [z.mean(dim=(2, 3)), z.std(dim=(2, 3))]
    if texture:
        parts += [(z[..., 1:] - z[..., :-1]).abs().mean(dim=(2, 3)), (z[..., 1:, :] - z[..., :-1, :]).abs().mean(dim=(2, 3))]
    return torch.cat(parts, dim=1)


def stream_features(read: Callable[[int, int], torch.Tensor], n: int, embed: Callable[[torch.Tensor], torch.Tensor],
                    path: str | Path, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
    """Embed ``n`` patches read in batches by ``read(start, stop)`` into a float32 ``.npy`` file on disk.

    Only one batch of pixels is in memory at a time; the features go to ``path`` (written to a temporary
    name, renamed when complete) and come back memory-mapped: (n, D).
    """
    progress = progress or Progress()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out = None
        for start in range(0, n, batch_size):
            progress.check()
            f = embed(read(start, min(n, start + batch_size))).float().numpy()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, f.shape[1]))
            out[start:start + len(f)] = f
            progress.update(min(n, start + batch_size), n, "embedding")
        if out is None:
            raise SoftConError("No patches to embed.")
        out.flush()
        del out
    return np.load(path, mmap_mode="r")
