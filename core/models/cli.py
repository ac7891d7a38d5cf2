"""``python -m core.models list`` / ``info NAME`` / ``download NAME`` / ``convert NAME IN.pth OUT.safetensors`` /
``register FILE``. For the plugin (``SOFTCON_PROGRESS=jsonl``) list, download and register end with a result line:
every model with its weights on this computer, and the versions in use."""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict

import rasterio
import torch

from ..errors import SoftConError
from ..progress import cli_progress, emit_result, json_lines, last_line
from .encoders import build_encoder
from .manage import convert, register_weights
from .record import ModelRecord
from .registry import get_record, REGISTRY
from .timm_compat import timm
from .weights import cached_path, download_url, weights_path


def _info(record: ModelRecord) -> dict:
    d = asdict(record)
    cached = cached_path(record)
    d["in_chans"] = record.in_chans
    d["download_url"] = download_url(record)
    d["cached"] = cached is not None
    d["cached_path"] = str(cached) if cached else None
    d["size_bytes"] = cached.stat().st_size if cached else None
    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=True)
    d["parameters"] = sum(p.numel() for p in encoder.parameters())
    return d


def environment() -> str:
    """One line naming the versions that matter when something goes wrong."""
    return (f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")


def catalogue() -> list[dict]:
    """Every registered model with whether (and where) its weights are on this computer."""
    out = []
    for r in REGISTRY.values():
        local = cached_path(r)
        out.append(dict(name=r.name, arch=r.arch, bands=list(r.bands), input_size=r.input_size, dim=r.embed_dim,
                        license=r.license, citation=r.citation, source=download_url(r) or "shipped",
                        weights=str(local) if local else None))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.models",
                                description="List, inspect, convert and register SoftCon models.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="one line per registered model")
    info = sub.add_parser("info", help="bands, statistics, size, cached or not (JSON)")
    info.add_argument("name")
    conv = sub.add_parser("convert", help="strict-load a published .pth and write this project's safetensors")
    conv.add_argument("name")
    conv.add_argument("src", help="published .pth file")
    conv.add_argument("dst", help="output .safetensors file")
    conv.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    down = sub.add_parser("download", help="fetch a model's published weights into the cache (sha256 checked)")
    down.add_argument("name")
    reg = sub.add_parser("register", help="check a weights file copied by hand (sha256, strict load) and copy it "
                                          "into the weights cache")
    reg.add_argument("file", help="the published .pth, or a .safetensors file of this project")
    reg.add_argument("--model", help="the registered model it holds (default: the one its metadata names)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list" and json_lines():
            emit_result({"models": catalogue(), "environment": environment()})
            return 0
        if args.cmd == "list":
            for r in REGISTRY.values():
                cached = cached_path(r)
                print(f"{r.name:24s} {r.arch:26s} {len(r.bands):2d} bands  {r.input_size:3d}px  {r.embed_dim:4d}-d  "
                      f"{'cached' if cached else 'not cached'}")
            return 0
        if args.cmd == "info":
            print(json.dumps(_info(get_record(args.name)), indent=2))
            return 0
        if args.cmd in ("download", "register"):
            if args.cmd == "download":
                target, warnings = weights_path(get_record(args.name), progress=cli_progress("download")), []
            else:
                target, warnings = register_weights(args.file, args.model)
            if json_lines():
                emit_result({"weights": str(target), "warnings": warnings, "models": catalogue(),
                             "environment": environment()})
            else:
                what = args.file if args.cmd == "register" else args.name
                print("\n".join([f"warning: {w}" for w in warnings] + [f"{what}: {target}"]))
            return 0
        dtype = getattr(torch, args.dtype) if args.dtype else None
        out = convert(args.name, args.src, args.dst, dtype)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    except KeyboardInterrupt:
        last_line("Interrupted; no output was written.")
        return 130
    except SoftConError as e:
        last_line(f"error: {e}")
        return 2
