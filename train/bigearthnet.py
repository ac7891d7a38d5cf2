"""BigEarthNet v1 (Sumbul et al. 2019) for frozen-feature evaluation at paper scale.

Patch folders ``<root>/<patch>/<patch>_B01.tif ... _labels_metadata.json``: one file per band at 10/20/60 m,
multi-label in the 43-class CORINE nomenclature, mapped to the 19-class nomenclature of Sumbul et al. 2021
(the ``bigearthnet-common`` table). :class:`BigEarthNet` reads the labels up front and the pixels per batch,
so features can be streamed to disk (``train.features.stream_features``).

- **Statistics**: BigEarthNet-S2 is Level-2A (Sen2Cor, no B10). A 13-band L1C model is fed the SSL4EO-S12
  L2A statistics for the 12 bands and raw 0 at B10 (``train.modality``'s ``s2a``, as SoftCon's own L2A
  pretraining uses), not the L1C statistics (:func:`statistics_for`).
- **10 % split**: SoftCon reports "BigEarthNet-10%" linear probing after SSL4EO-S12, whose rule is a uniform
  random 10 % of the official training split. The authors' list of patches could not be fetched here, so
  :func:`fraction_split` implements the rule (seeded, independent of listing order) and the evaluation writes
  the chosen patch names next to its results; numbers are comparable in protocol, not patch for patch.
- **Metric**: the authors' code reports micro-averaged mAP; both micro and macro are reported.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from core.geo.bands import S2_L1C, canonical, resolve_bands
from core.errors import SoftConError
from core.models.record import ModelRecord

from .features import encoder_features, PatchSet, spectral_features, stream_features
from .modality import MODALITIES

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


def is_bigearthnet(root: str | Path) -> bool:
    """True when ``root`` holds BigEarthNet patch folders (``*/*_labels_metadata.json``)."""
    return any(Path(root).glob("*/*_labels_metadata.json"))


def read_names(path: str | Path) -> list[str]:
    """Patch names of a split file (one per line, or the first CSV column), e.g. the official ``train.csv``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise SoftConError(f"Cannot read the split file {path}: {e}.") from None
    return [ln.split(",")[0].strip() for ln in lines if ln.strip()]


def fraction_split(names: Sequence[str], fraction: float = 0.1, seed: int = 42) -> list[str]:
    """A uniform random ``fraction`` of ``names`` (the "BigEarthNet-10%" rule), the same for any listing order."""
    if not 0 < fraction <= 1:
        raise SoftConError(f"The training fraction must be in (0, 1], not {fraction}.")
    names = sorted(names)
    n = max(1, round(fraction * len(names)))
    pick = np.random.default_rng(seed).permutation(len(names))[:n]
    return [names[i] for i in sorted(pick)]


def statistics_for(record: ModelRecord, stats: str = "auto") -> ModelRecord:
    """The record with the statistics to feed BigEarthNet-S2 (L2A) with: ``auto`` = L2A for a 13-band L1C model."""
    if stats == "model" or (stats == "auto" and (tuple(record.bands) != S2_L1C or record.stats != "ssl4eo_s12_l1c")):
        return record
    if tuple(record.bands) != S2_L1C:
        raise SoftConError(f"L2A statistics are for 13-band Sentinel-2 models; {record.name} takes {record.bands}.")
    l2a = MODALITIES["s2a"]
    return dataclasses.replace(record, mean=l2a.mean, std=l2a.std, stats=l2a.stats)


def _labels(folder: Path) -> np.ndarray:
    meta = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
    hot = np.zeros(len(BEN_19), dtype=np.float32)
    for label in meta["labels"]:
        if label not in BEN_43_TO_19:
            raise SoftConError(f"Unknown BigEarthNet label {label!r} in {folder}.")
        new = BEN_43_TO_19[label]
        if new is not None:
            hot[BEN_19.index(new)] = 1.0
    return hot


class BigEarthNet:
    """BigEarthNet v1 S2 patches: 19-class labels in memory, pixels read per batch (:meth:`read`).

    Args:
        root: folder of patch folders; names: keep only these patches (a split), in this order.
        model_bands: the model's bands; bands a patch lacks (B10 for L2A) are zero-filled as ``core`` does.
        size: every band is resampled to this size (bilinear for the 20 m and 60 m bands).
    """

    classes = list(BEN_19)
    multilabel = True

    def __init__(self, root: str | Path, model_bands: Sequence[str], size: int = BEN_SIZE,
                 names: Sequence[str] | None = None):
        root = Path(root)
        folders = sorted(p.parent for p in root.glob("*/*_labels_metadata.json"))
        if names is not None:
            have = {f.name: f for f in folders}
            missing = [n for n in names if n not in have]
            if missing:
                raise SoftConError(f"{len(missing)} patch(es) of the split are not in {root}, e.g. {missing[0]}.")
            folders = [have[n] for n in names]
        if not folders:
            raise SoftConError(f"No BigEarthNet patch folders (<patch>/<patch>_labels_metadata.json) in {root}.")
        self.folders, self.model_bands, self.size = folders, tuple(model_bands), size
        self.paths = [str(f) for f in folders]
        self.y = torch.from_numpy(np.stack([_labels(f) for f in folders]))

    def __len__(self) -> int:
        return len(self.folders)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Raw patches ``start:stop`` as (B, C, size, size) float32 in the model's band order."""
        out = torch.zeros(stop - start, len(self.model_bands), self.size, self.size)
        for j, folder in enumerate(self.folders[start:stop]):
            files = sorted(folder.glob("*.tif"))
            index = resolve_bands([canonical(f.stem.rsplit("_", 1)[-1]) for f in files], self.model_bands)
            for c, i in enumerate(index):
                if i is None:
                    continue
                with rasterio.open(files[i]) as ds:
                    a = torch.from_numpy(ds.read(1).astype(np.float32))[None, None]
                if a.shape[-1] != self.size:
                    a = F.interpolate(a, size=(self.size, self.size), mode="bilinear", align_corners=False)
                out[j, c] = a[0, 0]
        return out


def read_bigearthnet(root: str | Path, model_bands: Sequence[str], size: int | None = None) -> PatchSet:
    """All BigEarthNet patches of ``root`` in memory (small sets; use :class:`BigEarthNet`
    with :func:`stream_features` for the full dataset)."""
    data = BigEarthNet(root, model_bands, size or BEN_SIZE)
    return PatchSet(data.read(0, len(data)), data.y, list(data.classes), data.paths)


# ------------------------------------------------------- train.linear_probe on BigEarthNet (args = its CLI)
def bigearthnet_splits(args, record: ModelRecord, feat_dir: Path) -> tuple[BigEarthNet, BigEarthNet | None]:
    """Train (optionally a --train-fraction of --train-list) and test BigEarthNet sets; the names used are
    written to ``feat_dir/train_patches.txt`` so a run can be repeated patch for patch."""
    names = read_names(args.train_list) if args.train_list else None
    if args.train_fraction < 1:
        names = fraction_split(names or [p.parent.name for p in Path(args.train).glob("*/*_labels_metadata.json")],
                               args.train_fraction, args.split_seed)
    train = BigEarthNet(args.train, record.bands, names=names)
    feat_dir.mkdir(parents=True, exist_ok=True)
    (feat_dir / "train_patches.txt").write_text("".join(Path(p).name + "\n" for p in train.paths))
    test = None
    if args.test:
        test = BigEarthNet(args.test, record.bands, names=read_names(args.test_list) if args.test_list else None)
    return train, test


def streamed_features(args, encoder, record: ModelRecord, data: BigEarthNet, device, dtype, path: Path) -> torch.Tensor:
    """Features of every patch of ``data``, embedded batch by batch into ``path`` (never all pixels in memory)."""
    if encoder is None:
        embed = lambda x: spectral_features(x, record, args.texture)  # noqa: E731
    else:
        def embed(x: torch.Tensor) -> torch.Tensor:
            f = encoder_features(encoder, record, x, feature=args.feature, batch_size=args.batch_size, device=device,
                                 dtype=dtype)[0]
            if args.with_spectral:
                f = torch.cat([F.normalize(f, dim=1), F.normalize(spectral_features(x, record, args.texture), dim=1)],
                              dim=1)
            return f
    arr = stream_features(data.read, len(data), embed, path, batch_size=max(args.batch_size, 64))
    return torch.from_numpy(np.array(arr))
