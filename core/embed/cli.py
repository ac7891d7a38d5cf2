"""``python -m core.embed RASTER... --out OUT``: one scene, stacked single-band files, or many rasters.

Many rasters shard across processes with ``torchrun``: rank r of WORLD_SIZE takes every WORLD_SIZE-th
file (``torchrun --nproc_per_node=4 -m core.embed *.tif --out DIR``); each rank uses GPU LOCAL_RANK.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import rasterio
import torch

from ..errors import Cancelled, SoftConError
from ..io.writer import make_folder
from ..models.encoders import create_encoder
from ..models.record import ModelRecord
from ..progress import last_line, Progress, tqdm_progress
from ..settings import add_arguments, from_args
from .engine import embed_raster, rank_info
from .spec import EmbedSpec


def output_name(raster: str | os.PathLike, out_dir: Path, mode: str) -> Path:
    """``out_dir/<stem>_<mode>_emb.tif`` for one of several rasters."""
    return out_dir / f"{Path(raster).stem}_{mode}_emb.tif"


def embed_many(
    rasters: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    spec: EmbedSpec,
    *,
    encoder: tuple[torch.nn.Module, ModelRecord] | None = None,
    progress_for: Callable[[str], Progress] | None = None,
) -> list[Path]:
    """Embed several rasters into ``out_dir``; under ``torchrun`` each rank takes its own share of files.

    Rank r of WORLD_SIZE embeds ``rasters[r::WORLD_SIZE]`` on GPU LOCAL_RANK; no process talks to
    another, so a failed rank can simply be rerun. The model is built once per process.
    ``progress_for(raster)`` gives each raster its own progress (the command line's tqdm bars).
    """
    rank, world, _ = rank_info()
    out_dir = make_folder(out_dir)
    mine = list(rasters)[rank::world]
    if encoder is None and mine:
        encoder = create_encoder(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint)
    return [embed_raster(r, output_name(r, out_dir, spec.mode), spec, encoder=encoder,
                         progress=progress_for(str(r)) if progress_for is not None else None) for r in mine]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.embed",
        description="Embed rasters with a SoftCon encoder, window by window, into GeoTIFFs.",
    )
    p.add_argument("rasters", nargs="+", metavar="RASTER",
                   help="a raster, several single-band files of one scene (stacked onto the finest grid), "
                        "or several rasters to embed one by one into the --out folder")
    p.add_argument("--out", required=True, help="output GeoTIFF (one input) or folder (several rasters)")
    p.add_argument("--separate", action="store_true", help="embed single-band inputs one by one instead of stacking them")
    add_arguments(p.add_argument_group("embedding settings"), EmbedSpec)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = get_args_parser().parse_args(argv)
        spec = from_args(EmbedSpec, args)
        rasters = args.rasters
        stack = len(rasters) > 1 and not args.separate and _all_single_band(rasters)
        encoder = create_encoder(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint)
        if len(rasters) == 1 or stack:
            if rank_info()[0] != 0:
                return 0  # one scene: rank 0 does it
            embed_raster(rasters if stack else rasters[0], args.out, spec, encoder=encoder,
                         progress=tqdm_progress("embed"))
        else:  # torchrun: each rank its own files
            embed_many(rasters, args.out, spec, encoder=encoder, progress_for=lambda r: tqdm_progress(Path(r).name))
    except Cancelled as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        last_line("Interrupted; no output was written.")
        return 130
    except SoftConError as e:
        last_line(f"error: {e}")
        return 2
    return 0


def _all_single_band(rasters: Sequence[str]) -> bool:
    for r in rasters:
        try:
            with rasterio.open(r) as ds:
                if ds.count != 1:
                    return False
        except rasterio.errors.RasterioIOError as e:
            raise SoftConError(f"Cannot open raster {r}: {e}.") from None
    return True
