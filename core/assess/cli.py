"""``python -m core.assess sample MAP ...`` and ``python -m core.assess estimate MAP SAMPLE ...``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SoftConError
from ..progress import last_line, tqdm_progress
from .accuracy import assess_accuracy
from .layer import LAYER, REFERENCE, STRATUM
from .report import format_text
from .sampling import create_sample, EXPECTED_UA, MIN_PER_CLASS, TARGET_SE


def _expected_ua(text: str) -> float | dict[str, float]:
    """``0.85`` (every class) or ``water=0.95,forest=0.8`` (the classes named; others 0.85)."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [p.rsplit("=", 1) for p in text.split(",") if p.strip()]
        return {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number (0.85) or class=number pairs (water=0.95,forest=0.8), "
                                         f"not {text!r}") from None


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.assess",
        description="Accuracy assessment and area estimation by the book (Olofsson et al. 2014): draw a stratified "
                    "random sample of a class map, label it, estimate accuracy and areas with 95 %% intervals.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="draw a stratified random validation sample of a class map")
    s.add_argument("map", help="class raster (e.g. classes.tif from core.classify)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", help=f"folder for {LAYER}.gpkg")
    where.add_argument("--out", help="the GeoPackage to write (instead of --out-dir)")
    s.add_argument("--size", type=int, help="number of points (default: Olofsson et al. 2014 eq. 13 from "
                                            "--target-se and --expected-ua)")
    s.add_argument("--min-per-class", type=int, default=MIN_PER_CLASS,
                   help=f"fewest points per class (default {MIN_PER_CLASS}); the rest proportional to area")
    s.add_argument("--expected-ua", type=_expected_ua, default=EXPECTED_UA,
                   help=f"expected user's accuracy: one number (default {EXPECTED_UA}) or class=number pairs")
    s.add_argument("--target-se", type=float, default=TARGET_SE,
                   help=f"standard error of overall accuracy aimed at (default {TARGET_SE})")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, same map: same points)")
    e = sub.add_parser("estimate", help="accuracy and areas with 95 %% intervals from the labelled sample")
    e.add_argument("map", help="the class raster that was sampled")
    e.add_argument("sample", help="the labelled sample (points: GeoPackage, Shapefile, GeoJSON; any CRS)")
    e.add_argument("--reference-field", default=REFERENCE, help=f"field with the reference class (default {REFERENCE})")
    e.add_argument("--stratum-field", default=STRATUM,
                   help=f"field with each point's stratum (default {STRATUM}; absent: one stratum)")
    e.add_argument("--layer", help="layer of a multi-layer vector file")
    e.add_argument("--out-dir", required=True, help="folder for accuracy.json, accuracy.html, error_matrix.csv")
    return p


def main(argv: list[str] | None = None) -> int:
    a = get_args_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if a.command == "sample":
            out = Path(a.out) if a.out else Path(a.out_dir) / f"{LAYER}.gpkg"
            res = create_sample(a.map, out, a.size, a.min_per_class, a.expected_ua, a.target_se, a.seed,
                                tqdm_progress("sample"))
            print(f"{res.size} points: " + ", ".join(f"{k} {v}" for k, v in res.allocation.items()))
            print(f"wrote {res.path}; label the field '{REFERENCE}', then: python -m core.assess estimate "
                  f"{a.map} {res.path} --out-dir DIR")
        else:
            res = assess_accuracy(a.map, a.sample, a.out_dir, a.reference_field, a.stratum_field or None, a.layer,
                                  tqdm_progress("estimate"))
            print(format_text(res.report))
            print(f"wrote {res.json}, {res.html.name}, {res.csv.name}")
        return 0
    except KeyboardInterrupt:
        last_line("Interrupted; no output was written.")
        return 130
    except SoftConError as e:
        last_line(f"error: {e}")
        return 2
