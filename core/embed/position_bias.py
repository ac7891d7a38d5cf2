"""The encoder's token position bias: what each token position of a window adds to a dense embedding, whatever
the window shows.

A ViT-style encoder's patch tokens carry a pattern that depends on where the token sits in the window (the
position embeddings, and edge tokens seeing context on one side only). Tiled over a raster, that pattern
repeats with the window stride: on the demo scene it dominates the leading principal components (the PCA
preview shows the window grid) and puts a periodic ripple into class scores. It is measured once per weights
file as the mean token at each position minus the mean over all positions, ``(D, T, T)``, over many windows of
varied content, and subtracted from every window before blending (:mod:`core.embed.engine`).

The shipped table for ``galileo_nano_s2`` comes from the 158 EuroSAT-MS patches (64 px, ten classes, all over
Europe; not the demo scene) in their 8 dihedral orientations, 1264 windows: content moves, positions stay.
``python -m core.embed.position_bias FOLDER --model NAME`` measures it for any weights from any folder of
window-sized GeoTIFFs. A table is used only with the weights it was measured on (``weights_id``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import rasterio
import torch
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from ..errors import SoftConError
from ..geo.bands import resolve_bands
from ..geo.normalize import preprocess
from ..models.record import ModelRecord
from ..models.encoders import create_encoder
from ..models.registry import DEFAULT_MODEL, WEIGHTS_DIR
from ..models.weights import weights_id


def table_path(record: ModelRecord) -> Path:
    """Where the table of a registered model lives: beside its shipped weights."""
    return WEIGHTS_DIR / f"{record.name}.position_bias.safetensors"


@torch.inference_mode()
def measure(encoder: torch.nn.Module, windows: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Position bias (D, T, T) of ``encoder`` over preprocessed ``windows`` (N, C, W, W) and their 8 dihedral
    orientations: mean token per position minus the mean over positions."""
    total, n = None, 0
    for k in range(4):
        for flip in (False, True):
            x = torch.rot90(windows, k, (2, 3))
            x = x.flip(3) if flip else x
            for i in range(0, len(x), batch):
                y = encoder.forward_dense(x[i:i + batch]).float().sum(0)  # (D, T, T)
                total = y if total is None else total + y
            n += len(x)
    mean = total / n
    return (mean - mean.mean(dim=(1, 2), keepdim=True)).numpy()


def load(record: ModelRecord, weights: str) -> tuple[np.ndarray | None, str]:
    """(table (D, T, T) float32, description) for ``record`` run with weights ``weights`` (a ``weights_id``);
    (None, "none") when no table was measured for those weights."""
    path = table_path(record)
    if not path.is_file():
        return None, "none"
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    if meta.get("weights_id") != weights:
        return None, "none"
    return load_file(str(path))["bias"].astype(np.float32), meta.get("source", path.name)


def read_windows(files: Sequence[Path], record: ModelRecord, bands: str | None) -> torch.Tensor:
    """Window-sized rasters as one preprocessed batch (N, C, W, W) in the model's band order."""
    out = []
    for f in files:
        with rasterio.open(f) as ds:
            if (ds.height, ds.width) != (record.input_size, record.input_size):
                continue
            idx = resolve_bands(list(ds.descriptions), record.bands, bands)
            data = ds.read(out_dtype="float32")
        out.append(np.stack([data[i] if i is not None else np.zeros_like(data[0]) for i in idx]))
    if not out:
        raise SoftConError(f"No {record.input_size} x {record.input_size} px rasters among the {len(files)} files; "
                           f"the position bias is measured on window-sized patches (e.g. EuroSAT-MS).")
    x = torch.from_numpy(np.stack(out))
    return preprocess(x, record.mean, record.std, clip=record.clip)


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.embed.position_bias", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="folder of window-sized GeoTIFFs (searched recursively)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--bands", default=None, help="band order of the files (e.g. eurosat)")
    p.add_argument("--source", default=None, help="what the files are, recorded in the table")
    p.add_argument("--out", default=None, help="default: beside the model's shipped weights")
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        encoder, record = create_encoder(a.model)
        files = sorted(Path(a.folder).rglob("*.tif"))
        windows = read_windows(files, record, a.bands)
        bias = measure(encoder.eval(), windows)
        out = Path(a.out) if a.out else table_path(record)
        source = a.source or f"{len(windows)} windows of {Path(a.folder).name} x 8 dihedral orientations"
        save_file({"bias": bias.astype(np.float32)}, str(out),
                  metadata={"model": record.name, "weights_id": weights_id(record, True), "source": source})
        print(f"{out}: position bias of {record.name}, {bias.shape}, from {source}; "
              f"mean |bias| per position {np.linalg.norm(bias, axis=0).mean():.3f}")
        return 0
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
