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
import struct
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
import shapely
from pyogrio.raw import read, write


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
    kill: tuple[float, int] | None = None  # (s after the first progress line, signal): the crop runs in < 5 s
    concurrent: bool = False


def _classes(path: Path) -> tuple[np.ndarray, list[str], rasterio.Affine]:
    with rasterio.open(path) as ds:
        names = json.loads(ds.tags().get("CLASS_NAMES", "[]"))
        return ds.read(1), names, ds.transform


def agrees(threshold: float = 0.95, ref: str = "fast", name: str = "classes.tif") -> Callable:
    """The map (``name`` in the case's output folder: a multi-tile run's mosaic is ``classes.vrt``) agrees with
    the reference map of the clean crop on at least ``threshold`` of the pixels."""
    def check(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
        if rc != 0:
            return None
        a, an, at = _classes(out / "o" / name)
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


def flip(at: float | str) -> Callable:
    """``{OUT}/c.npz``: the reference classifier with one byte flipped, at a fraction of the file (which may be a
    zip header field that nothing reads: a harmless flip) or in the middle of the stored data of member ``at``."""
    def before(ctx: Ctx, out: Path) -> None:
        path = ctx.ref / "main" / "classifier.npz"
        b = bytearray(path.read_bytes())
        if isinstance(at, str):
            with zipfile.ZipFile(path) as z:
                info = z.getinfo(at)
            h = info.header_offset  # the local header: 30 bytes, then the name and the extra field, then the data
            name_len, extra_len = struct.unpack("<HH", b[h + 26:h + 30])
            i = h + 30 + name_len + extra_len + info.compress_size // 2
        else:
            i = int(len(b) * at)
        b[i] ^= 0x55
        (out / "c.npz").write_bytes(bytes(b))
    return before


def truncated_classifier(ctx: Ctx, out: Path) -> None:
    """``{OUT}/c.npz``: the first half of the reference classifier."""
    b = (ctx.ref / "main" / "classifier.npz").read_bytes()
    (out / "c.npz").write_bytes(b[:len(b) // 2])


def either(*checks: Callable) -> Callable:
    """The first problem any check finds, whatever the exit code (each check decides what a code means)."""
    def check(ctx, out, rc, err):
        return next((p for c in checks if (p := c(ctx, out, rc, err))), None)
    return check


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
    """The pixel bands reversed, or the upsampling's guide bands when the features have no pixel bands (a
    classifier on ``emb`` alone: reversing an empty list would leave the file as it was)."""
    fs = meta["features"]
    key = "bands" if fs.get("bands") else "guide_bands"
    fs[key] = list(reversed(fs[key]))


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


TILE_FILES = ("classes.tif", "probabilities.tif", "confidence.tif", "report.json")


def tiles_whole(names: list[str]) -> Callable:
    """A multi-tile run: the tiles ``names`` (those that can be mapped) are in ``o/tiles/``, each whole, with the
    mosaic over them; nothing half-written (hidden stage folders) is left, whatever the exit code."""
    def check(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
        root = out / "o" / "tiles"
        found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        if hidden := [n for n in found if n.startswith(".")]:
            return f"data loss: partial tiles left {hidden}"
        if broken := [n for n in found if not all((root / n / f).is_file() for f in TILE_FILES)]:
            return f"data loss: incomplete tiles {broken}"
        if found != sorted(names):
            return f"tiles {found}, not {sorted(names)}"
        return None if not names or (out / "o" / "classes.vrt").is_file() else "no mosaic"
    return check


def tiles_complete(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    """After an interrupted multi-tile run: every tile folder there is whole (a rerun maps the rest)."""
    root = out / "o" / "tiles"
    return tiles_whole(sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir()
                       else [])(ctx, out, rc, err)


def embedding_tiles(ctx: Ctx, out: Path) -> None:
    """A folder of tiles that are embedding rasters (the crop's, of galileo_nano_s2)."""
    (out / "embs").mkdir()
    shutil.copy(ctx.ref / "emb.tif", out / "embs" / "emb.tif")


def half_done_in_inputs(ctx: Ctx, out: Path) -> None:
    """``o`` holds the two tiles and the outputs of an earlier run into the same folder that mapped only one."""
    shutil.copytree(ctx.ref / "tiles", out / "o")
    shutil.rmtree(out / "o" / "tiles" / "east")
    for f in (ctx.fix / "tiles_good").glob("*.tif"):
        shutil.copy(f, out / "o" / f.name)


def sample_of(size: int | None, class_map: str = "main/classes.tif", min_per_class: int = 20) -> Callable:
    """``o/validation_sample.gpkg`` holds ``size`` (None: any number of) unlabelled points, every class of the map
    (``class_map`` under ``{REF}``) at least ``min_per_class``, each on a pixel of the class it records."""
    def check(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
        if rc != 0:
            return None
        meta, _, wkb, values = read(out / "o" / "validation_sample.gpkg", layer="validation_sample")
        f = dict(zip(meta["fields"], values))
        xy = shapely.get_coordinates(shapely.from_wkb(wkb))
        with rasterio.open(ctx.ref / class_map) as ds:
            names = json.loads(ds.tags()["CLASS_NAMES"])
            r, c = rasterio.transform.rowcol(ds.transform, xy[:, 0], xy[:, 1])
            under = ds.read(1)[np.asarray(r), np.asarray(c)]
        counts = {n: int((f["map_class"] == n).sum()) for n in names}
        if size not in (None, len(xy)) or min(counts.values()) < min_per_class:
            return f"{len(xy)} points, per class {counts}"
        if any(names[v - 1] != m for v, m in zip(under, f["map_class"])) or any(v is not None for v in f["reference"]):
            return "points not on the class they record, or already labelled"
        return None
    return check


def labelled(reference: Callable) -> Callable:
    """``{OUT}/l.gpkg``: the reference sample with ``reference(map_class)`` in its reference field, as QGIS
    would save it after labelling."""
    def before(ctx: Ctx, out: Path) -> None:
        meta, _, wkb, values = read(ctx.ref / "sample.gpkg", layer="validation_sample")
        f = dict(zip(meta["fields"], values))
        f["reference"] = np.array([reference(m) for m in f["map_class"]], dtype=object)
        write(out / "l.gpkg", wkb, list(f.values()), list(f), geometry_type="Point", crs=meta["crs"], driver="GPKG",
              layer="validation_sample")
    return before


def accuracy(estimator: str, overall: float | None = None) -> Callable:
    """``o/accuracy.json`` used ``estimator`` and (if given) reports overall accuracy ``overall``."""
    def check(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
        if rc != 0:
            return None
        rep = json.loads((out / "o" / "accuracy.json").read_text())
        oa = rep["overall_accuracy"]["estimate"]
        if rep["estimator"] != estimator or (overall is not None and abs(oa - overall) > 1e-9):
            return f"estimator {rep['estimator']}, overall accuracy {oa}"
        return None
    return check


def protocol_result(ctx: Ctx, out: Path, rc: int, err: str) -> str | None:
    """Under ``SOFTCON_PROGRESS=jsonl`` a successful run ends with the protocol's ``{"result": ...}`` line."""
    return None if rc != 0 or any(ln.startswith('{"result"') for ln in err.splitlines()) else "no result line"
