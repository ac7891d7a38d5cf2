"""What a fault-matrix case is (:class:`Case`), and the checks and preparations its outcome depends on.

A check is ``(ctx, out, rc, err) -> problem or None``: ``None`` when the case's outputs (in ``out``) are right for
its exit code ``rc``; a problem starting with ``data loss`` when an earlier output was damaged or a failed run left
outputs behind. Preparations (``before``/``after``) set a case's folder up: earlier outputs, a small or read-only
tmpfs, a damaged classifier or cache entry.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio


@dataclass
class Ctx:
    work: Path
    repo: Path
    python: str
    fix: Path
    ref: Path

    def fill(self, text: str, out: Path) -> str:
        return (text.replace("{F}", str(self.fix)).replace("{REF}", str(self.ref)).replace("{OUT}", str(out))
                if isinstance(text, str) else text)


@dataclass
class Case:
    name: str
    group: str
    argv: list[str]
    expect: str = "any"
    check: Callable | None = None       # (ctx, out, rc, err) -> problem or None
    before: Callable | None = None      # (ctx, out): prepare the case's folder
    after: Callable | None = None       # (ctx, out): clean up (unmount)
    env: dict = field(default_factory=dict)
    timeout: float = 300.0
    shell_prefix: str = ""
    kill: tuple[float, int] | None = None
    concurrent: bool = False


def _classes(path: Path) -> tuple[np.ndarray, list[str], rasterio.Affine]:
    with rasterio.open(path) as ds:
        names = json.loads(ds.tags().get("CLASS_NAMES", "[]"))
        return ds.read(1), names, ds.transform


def agrees(threshold: float = 0.95, ref: str = "fast") -> Callable:
    """The map agrees with the reference map of the clean crop on at least ``threshold`` of the pixels."""
    def check(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
        if rc != 0:
            return None
        a, an, at = _classes(out / "o" / "classes.tif")
        b, bn, bt = _classes(ctx.ref / ref / "classes.tif")
        if a.shape != b.shape or at != bt:
            return f"map grid {a.shape} differs from the reference {b.shape}"
        lut = np.array([-1] + [bn.index(n) + 1 if n in bn else -2 for n in an])
        a = lut[a]
        both = (a > 0) & (b > 0)
        agree = float((a[both] == b[both]).mean()) if both.any() else 0.0
        return None if agree >= threshold else f"{100 * agree:.1f} % agreement with the clean map"
    return check


def outputs_ok(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    """The class map opens and the report names the same classes (a failed run: nothing to check here)."""
    if rc != 0:
        return None
    a, names, _ = _classes(out / "o" / "classes.tif")
    rep = json.loads((out / "o" / "report.json").read_text())
    if [c["name"] for c in rep["classes"]] != names:
        return "report and class raster disagree"
    return None if (a > 0).any() else "empty map"


def all_of(*checks: Callable) -> Callable:
    def check(ctx, out, rc, err):
        for c in checks:
            if rc == 0 and (p := c(ctx, out, rc, err)):
                return p
        return None
    return check


def pixel_used(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    rep = json.loads((out / "o" / "report.json").read_text())
    rows = (rep.get("cross_validation") or {}).get("method_comparison") or []
    sets = {r["features"] for r in rows} | {rep.get("features")}
    return None if any("pixel" in (s or "") for s in sets) else "pixel features silently dropped"


def no_stale_classifier(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    return "classifier.npz of the first run left beside the new maps" if (out / "o" / "classifier.npz").exists() \
        else None


def copy_ref(ctx: Ctx, out: Path) -> None:
    shutil.copytree(ctx.ref / "main", out / "o")


def earlier_kept(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    """After a failed or interrupted run, the earlier outputs are byte for byte what they were, nothing added."""
    if rc == 0:
        return outputs_ok(ctx, out, rc, err)
    for f in (ctx.ref / "main").iterdir():
        if not f.name.startswith(".") and (not (out / "o" / f.name).exists()
                                           or (out / "o" / f.name).read_bytes() != f.read_bytes()):
            return f"data loss: {f.name} changed or removed"
    extra = {p.name for p in (out / "o").iterdir() if not p.name.startswith(".")} - \
        {p.name for p in (ctx.ref / "main").iterdir()}
    return f"data loss: partial outputs {sorted(extra)}" if extra else None


def nothing_left(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    """A failed run leaves no output folder content (hidden temp files of a killed run excepted)."""
    if rc == 0:
        return outputs_ok(ctx, out, rc, err)
    o = out / "o"
    left = [p.name for p in o.rglob("*") if not p.name.startswith(".")] if o.exists() else []
    return f"data loss: partial outputs {left[:5]}" if left else None


def no_temp_left(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    o = out / "o"
    hidden = [p.name for p in o.iterdir() if p.name.startswith(".")] if o.exists() else []
    return f"temp files left: {hidden}" if hidden else (outputs_ok(ctx, out, rc, err) if rc == 0 else None)


def mount(size: str = "2m", ro: bool = False, fill: bool = False, copy: bool = False) -> Callable:
    def before(ctx: Ctx, out: Path) -> None:
        m = out / "mnt"
        m.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(m)], check=True)
        if copy:
            shutil.copytree(ctx.ref / "main", m / "o")
        if fill:
            free = shutil.disk_usage(m).free
            (m / "filler").write_bytes(b"\0" * max(0, free - 300_000))
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(m)], check=True)
    return before


def umount(ctx: Ctx, out: Path) -> None:
    subprocess.run(["umount", "-l", str(out / "mnt")], capture_output=True)


def flip(at: float) -> Callable:
    def before(ctx: Ctx, out: Path) -> None:
        b = bytearray((ctx.ref / "main" / "classifier.npz").read_bytes())
        i = int(len(b) * at)
        b[i] ^= 0x55
        (out / "c.npz").write_bytes(bytes(b))
    return before


def edited(key: Callable) -> Callable:
    """A classifier whose JSON meta was edited by ``key(meta)`` (arrays unchanged), saved like the tool saves it."""
    def before(ctx: Ctx, out: Path) -> None:
        with np.load(ctx.ref / "main" / "classifier.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta_json"]))
        key(meta)
        arrays["meta_json"] = np.array(json.dumps(meta))
        np.savez_compressed(out / "c.npz", **arrays)
    return before


def reverse_bands(meta: dict) -> None:
    meta["embedding"]["bands"] = list(reversed(meta["embedding"]["bands"]))


def reverse_feature_bands(meta: dict) -> None:
    fs = meta.get("features") or {}
    fs["bands"] = list(reversed(fs.get("bands", [])))


def rename_classes(meta: dict) -> None:
    meta["class_names"] = list(reversed(meta["class_names"]))


def cache_entry(damage: str) -> Callable:
    """A private copy of the shared cache whose entry of the clean crop is damaged (same size) before the run."""
    def before(ctx: Ctx, out: Path) -> None:
        shutil.copytree(ctx.work / "cache", out / "cache", ignore=shutil.ignore_patterns("weights", "data"))
        for side in (out / "cache" / "embeddings").glob("*.json"):
            meta = json.loads(side.read_text())
            if any(s.endswith("/fixtures/crop.tif") for s in meta.get("sources", [])):
                tif = side.with_suffix(".tif")
                if damage == "sidecar":
                    side.write_text("{ not json")
                    continue
                b = bytearray(tif.read_bytes())
                if damage == "zeros":
                    b[len(b) // 3: len(b) // 3 + 65536] = bytes(65536)
                else:
                    b = bytearray(b"x" * len(b))
                tif.write_bytes(bytes(b))
    return before


def sigint_after(s: float) -> tuple[float, int]:
    return (s, signal.SIGINT)
