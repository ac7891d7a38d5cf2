"""``python -m core.embed RASTER... --out OUT``: one scene, stacked single-band files, or many rasters.

Many rasters shard across processes with ``torchrun``: rank r of WORLD_SIZE takes every WORLD_SIZE-th
file (``torchrun --nproc_per_node=4 -m core.embed *.tif --out DIR``); each rank uses GPU LOCAL_RANK.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import rasterio
import torch

from ..errors import Cancelled, SoftConError
from ..io.writer import make_folder
from ..models.record import ModelRecord
from ..models.registry import create_encoder, DEFAULT_MODEL
from ..progress import last_line, Progress, tqdm_progress
from .engine import embed_raster, rank_info
from .spec import EmbedSpec
from .windows import MODES


def output_name(raster: str | os.PathLike, out_dir: Path, mode: str) -> Path:
    """``out_dir/<stem>_<mode>_emb.tif`` for one of several rasters."""
    return out_dir / f"{Path(raster).stem}_{mode}_emb.tif"


def embed_many(
    rasters: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = True,
    encoder: tuple[torch.nn.Module, ModelRecord] | None = None,
    progress_for: Callable[[str], Progress] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Embed several rasters into ``out_dir``; under ``torchrun`` each rank takes its own share of files.

    Rank r of WORLD_SIZE embeds ``rasters[r::WORLD_SIZE]`` on GPU LOCAL_RANK; no process talks to
    another, so a failed rank can simply be rerun. The model is built once per process.
    ``progress_for(raster)`` gives each raster its own progress (the command line's tqdm bars); other
    keyword arguments go to :func:`embed_raster`.
    """
    rank, world, _ = rank_info()
    out_dir = make_folder(out_dir)
    mine = list(rasters)[rank::world]
    if encoder is None and mine:
        encoder = create_encoder(model, pretrained=pretrained, checkpoint=checkpoint)
    mode = kwargs.get("mode", "pooled")
    out = []
    for r in mine:
        if progress_for is not None:
            kwargs["progress"] = progress_for(str(r))
        out.append(embed_raster(r, output_name(r, out_dir, mode), checkpoint=checkpoint, encoder=encoder, **kwargs))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.embed",
        description="Embed rasters with a SoftCon encoder, window by window, into GeoTIFFs.",
    )
    p.add_argument("rasters", nargs="+", metavar="RASTER",
                   help="a raster, several single-band files of one scene (stacked onto the finest grid), "
                        "or several rasters to embed one by one into the --out folder")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", required=True, help="output GeoTIFF (one input) or folder (several rasters)")
    p.add_argument("--mode", choices=MODES, default="pooled")
    p.add_argument("--stride", type=int, default=None,
                   help="window spacing in px (default: 3/4 of a window dense, 1/2 pooled)")
    p.add_argument("--bands", default=None, help="band order of the raster: a preset (s2_l1c, s2_l2a, eurosat, s1) or B1,B2,...")
    p.add_argument("--bbox", default=None, help="minx,miny,maxx,maxy")
    p.add_argument("--bbox-crs", default=None, help="CRS of --bbox, e.g. EPSG:4326 (default: the raster's)")
    p.add_argument("--polygon", default=None, help="WKT or a .geojson file limiting the extent")
    p.add_argument("--polygon-crs", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--cog", action="store_true", help="write Cloud Optimized GeoTIFFs with overviews")
    p.add_argument("--checkpoint", default=None, help="weights file to load instead of the model's own")
    p.add_argument("--random-weights", action="store_true", help="random initialisation (testing only)")
    p.add_argument("--resample", action="store_true", help="warp rasters far from 10 m onto a 10 m grid")
    p.add_argument("--min-valid", type=float, default=0.5)
    p.add_argument("--offset", type=float, default=0.0, help="subtract from optical values (1000 for S2 baseline >= 04.00)")
    p.add_argument("--separate", action="store_true", help="embed single-band inputs one by one instead of stacking them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        bbox = None
        if args.bbox:
            try:
                bbox = [float(v) for v in args.bbox.split(",")]
            except ValueError:
                raise SoftConError(f"--bbox must be four numbers minx,miny,maxx,maxy, not {args.bbox!r}.") from None
        spec = EmbedSpec(model=args.model, checkpoint=args.checkpoint, pretrained=not args.random_weights,
                         bands=args.bands, mode=args.mode, stride=args.stride, precision=args.precision,
                         device=args.device, batch_size=args.batch_size, bbox=bbox, bbox_crs=args.bbox_crs)
        kw: dict[str, Any] = dict(spec.engine_kwargs(), polygon=args.polygon, polygon_crs=args.polygon_crs,
                                  dtype=args.dtype, resample=args.resample, min_valid=args.min_valid,
                                  offset=args.offset, cog=args.cog)
        rasters = args.rasters
        stack = len(rasters) > 1 and not args.separate and _all_single_band(rasters)
        encoder = create_encoder(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint)
        if len(rasters) == 1 or stack:
            if rank_info()[0] != 0:
                return 0  # one scene: rank 0 does it
            embed_raster(rasters if stack else rasters[0], args.out, encoder=encoder, progress=tqdm_progress("embed"),
                         **kw)
        else:  # torchrun: each rank its own files
            embed_many(rasters, args.out, encoder=encoder, progress_for=lambda r: tqdm_progress(Path(r).name), **kw)
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
