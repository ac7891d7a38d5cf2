"""``python -m core.models list`` / ``info NAME`` / ``convert NAME IN.pth OUT.safetensors`` / ``register FILE``."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import torch

from ..errors import SoftConError
from .encoders import build_encoder
from .manage import convert, register_weights
from .record import ModelRecord
from .registry import get_record, REGISTRY
from .weights import cached_path, download_url


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
    reg = sub.add_parser("register", help="check a weights file copied by hand (sha256, strict load) and copy it "
                                          "into the weights cache")
    reg.add_argument("file", help="the published .pth, or a .safetensors file of this project")
    reg.add_argument("--model", help="the registered model it holds (default: the one its metadata names)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            for r in REGISTRY.values():
                cached = cached_path(r)
                print(f"{r.name:24s} {r.arch:26s} {len(r.bands):2d} bands  {r.input_size:3d}px  {r.embed_dim:4d}-d  "
                      f"{'cached' if cached else 'not cached'}")
            return 0
        if args.cmd == "info":
            print(json.dumps(_info(get_record(args.name)), indent=2))
            return 0
        if args.cmd == "register":
            target, warnings = register_weights(args.file, args.model)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            print(f"registered {args.file} as {target}")
            return 0
        dtype = getattr(torch, args.dtype) if args.dtype else None
        out = convert(args.name, args.src, args.dst, dtype)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
