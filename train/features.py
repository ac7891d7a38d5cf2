"""Frozen features for evaluation: labelled patch sets read once, embedded once (DINOv2 ``eval/``).

Two kinds of labelled data are read:

- EuroSAT-style class folders (``<root>/<Class>/<anything>.tif``), one multi-band GeoTIFF per patch,
  single label per patch. The file band order is given by a preset (``eurosat`` stores B8A last) or
  read from the band descriptions.
- BigEarthNet v1 patch folders (``<root>/<patch>/<patch>_B01.tif ... _labels_metadata.json``), one
  file per band at 10/20/60 m, multi-label in the 43-class CORINE nomenclature, mapped to the
  19-class nomenclature of Sumbul et al. 2021 (the ``bigearthnet-common`` table).

Features always go through ``core``: the model record's band order and statistics,
``core.normalize.preprocess``, resizing to the record's ``input_size``, and the encoder's
``forward`` (pooled) or ``forward_linear_probe`` (DINOv2: CLS of the last 4 blocks + mean patch token).
The ``spectral`` features (per-band mean and standard deviation of each preprocessed patch) are the
no-network baseline that every encoder has to beat.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.bands import canonical, resolve_bands
from core.device import autocast
from core.encoders import Encoder
from core.errors import SoftConError
from core.models import ModelRecord
from core.normalize import preprocess
from core.progress import Progress

#: BigEarthNet 43 CORINE labels -> 19-class nomenclature (None = dropped), from bigearthnet-common.
BEN_43_TO_19: dict[str, str | None] = {
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Industrial or commercial units": "Industrial or commercial units",
    "Road and rail networks and associated land": None,
    "Port areas": None,
    "Airports": None,
    "Mineral extraction sites": None,
    "Dump sites": None,
    "Construction sites": None,
    "Green urban areas": None,
    "Sport and leisure facilities": None,
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Pastures": "Pastures",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Complex cultivation patterns": "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation":
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas": "Agro-forestry areas",
    "Broad-leaved forest": "Broad-leaved forest",
    "Coniferous forest": "Coniferous forest",
    "Mixed forest": "Mixed forest",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Beaches, dunes, sands": "Beaches, dunes, sands",
    "Bare rock": None,
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Burnt areas": None,
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Intertidal flats": None,
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}

#: The 19 classes in their original order (Sumbul et al. 2021).
BEN_19: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

#: BigEarthNet v1 patch size at 10 m.
BEN_SIZE = 120


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
    import rasterio

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


def is_bigearthnet(root: str | Path) -> bool:
    """True when ``root`` holds BigEarthNet patch folders (``*/*_labels_metadata.json``)."""
    return any(Path(root).glob("*/*_labels_metadata.json"))


def read_bigearthnet(root: str | Path, model_bands: Sequence[str], size: int = BEN_SIZE) -> PatchSet:
    """Read BigEarthNet v1 S2 patch folders with 19-class multi-hot labels.

    Each band file is resampled to ``size`` px (bilinear for the 20 m and 60 m bands, which is
    how BigEarthNet models are usually fed); bands the model needs but the patch lacks (B10 for
    L2A) are zero-filled as ``core.bands`` allows.
    """
    import rasterio

    root = Path(root)
    folders = sorted(p.parent for p in root.glob("*/*_labels_metadata.json"))
    if not folders:
        raise SoftConError(f"No BigEarthNet patch folders (<patch>/<patch>_labels_metadata.json) in {root}.")
    xs, ys = [], []
    for folder in folders:
        files = sorted(folder.glob("*.tif"))
        names = [canonical(f.stem.rsplit("_", 1)[-1]) for f in files]
        index = resolve_bands(names, model_bands)
        planes = []
        for f in files:
            with rasterio.open(f) as ds:
                a = torch.from_numpy(ds.read(1).astype(np.float32))[None, None]
            if a.shape[-1] != size:
                a = F.interpolate(a, size=(size, size), mode="bilinear", align_corners=False)
            planes.append(a[0, 0])
        arr = torch.stack(planes).numpy()
        xs.append(_stack_bands(arr, index))
        meta = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
        hot = np.zeros(len(BEN_19), dtype=np.float32)
        for label in meta["labels"]:
            if label not in BEN_43_TO_19:
                raise SoftConError(f"Unknown BigEarthNet label {label!r} in {folder}.")
            new = BEN_43_TO_19[label]
            if new is not None:
                hot[BEN_19.index(new)] = 1.0
        ys.append(hot)
    return PatchSet(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), list(BEN_19),
                    [str(f) for f in folders])


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
