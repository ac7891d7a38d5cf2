"""Many tiles, one classifier (core.classify.tiles): finding tiles in product folders, the mosaic VRTs, and a
4-tile folder of real crops mapped in one command that resumes tile by tile after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from core.classify.cli import main
from core.classify.fit import classify
from core.classify.spec import FitSpec
from core.classify.tiles import apply_tiles, find_tiles, is_many_tiles, product_band_files, write_mosaics
from core.embed.spec import EmbedSpec
from core.errors import Cancelled, SoftConError
from core.geo.samples import Samples
from core.io.writer import BlockWriter
from core.progress import Progress
from core.classify.demo import demo_raster
from pyogrio.raw import write

ROOT = Path(__file__).resolve().parents[1]
TILE = 160  # px; 4 tiles side by side in a 2 x 2 block of the real scene
ORIGIN = (640, 640)  # row, col of the block in the scene (land, marsh and water)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_bands_of_l1c_and_l2a_products_are_found_and_masks_ignored(tmp_path):
    l1c = tmp_path / "S2A_MSIL1C_X.SAFE" / "GRANULE" / "L1C_T18SVF"
    for b in ("B01", "B02", "B03", "B04", "B08", "B8A", "B11", "B12", "TCI"):
        _touch(l1c / "IMG_DATA" / f"T18SVF_20200101T153619_{b}.jp2")
    _touch(l1c / "QI_DATA" / "MSK_DETFOO_B05.jp2")  # a mask named after a band: not a band
    l2a = tmp_path / "S2B_MSIL2A_Y.SAFE" / "GRANULE" / "L2A_T18SVG" / "IMG_DATA"
    for res, bands in ((10, ("B02", "B03", "B04", "B08")), (20, ("B02", "B05", "B8A", "SCL")), (60, ("B01", "B02"))):
        for b in bands:
            _touch(l2a / f"R{res}m" / f"T18SVG_20200101T153619_{b}_{res}m.jp2")

    (files,) = product_band_files(tmp_path / "S2A_MSIL1C_X.SAFE")
    assert [f.stem[-3:] for f in files] == ["B01", "B02", "B03", "B04", "B08", "B8A", "B11", "B12"]
    (files,) = product_band_files(tmp_path / "S2B_MSIL2A_Y.SAFE")
    assert [f.name for f in files] == ["T18SVG_20200101T153619_B01_60m.jp2", "T18SVG_20200101T153619_B02_10m.jp2",
                                       "T18SVG_20200101T153619_B03_10m.jp2", "T18SVG_20200101T153619_B04_10m.jp2",
                                       "T18SVG_20200101T153619_B05_20m.jp2", "T18SVG_20200101T153619_B08_10m.jp2",
                                       "T18SVG_20200101T153619_B8A_20m.jp2"]
    tiles = find_tiles([tmp_path])  # a folder of products: one tile per product, named after it
    assert [t.name for t in tiles] == ["S2A_MSIL1C_X", "S2B_MSIL2A_Y"]
    assert is_many_tiles([tmp_path]) and find_tiles([tmp_path / "S2A_MSIL1C_X.SAFE"])[0].name == "S2A_MSIL1C_X"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SoftConError, match="no raster"):
        find_tiles([empty])


def _class_raster(path: Path, left: float, top: float, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with BlockWriter(path, width=values.shape[1], height=values.shape[0], count=1, crs="EPSG:32618",
                     transform=rasterio.Affine(10, 0, left, 0, -10, top), dtype="uint8", nodata=0,
                     colormap={0: (0, 0, 0, 0), 1: (0, 0, 255, 255), 2: (0, 255, 0, 255)}, namespace=None,
                     tags={"CLASS_NAMES": '["water", "forest"]'}) as w:
        w.write_rows(0, values[None])
        w.commit()
    return path


def test_mosaic_places_each_tile_by_its_geotransform_and_keeps_the_colours(tmp_path):
    a = np.ones((20, 30), np.uint8)
    b = np.full((20, 30), 2, np.uint8)
    b[:, :5] = 0  # nodata in the overlap: the tile below shows through
    _class_raster(tmp_path / "tiles" / "A" / "classes.tif", 1000.0, 5000.0, a)
    _class_raster(tmp_path / "tiles" / "B" / "classes.tif", 1250.0, 4900.0, b)  # 25 px right, 10 px down
    (tmp_path / "tiles" / ".softcon-1-00000000").mkdir()  # an unfinished tile: not in the mosaic
    mosaics = write_mosaics(tmp_path)
    assert set(mosaics) == {"classes"}
    with rasterio.open(mosaics["classes"]) as ds:
        got = ds.read(1)
        assert (ds.width, ds.height) == (55, 30) and ds.transform.c == 1000.0 and ds.transform.f == 5000.0
        assert ds.colormap(1)[2] == (0, 255, 0, 255) and ds.tags()["CLASS_NAMES"] == '["water", "forest"]'
    want = np.zeros((30, 55), np.uint8)
    want[:20, :30] = 1
    want[10:, 25:] = np.where(b > 0, b, want[10:, 25:])
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------------- real tiles, end to end
@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """A folder of 4 adjacent 160 px crops of the real scene, and a classifier trained on one of them."""

    root = tmp_path_factory.mktemp("tiles")
    folder = root / "tiles"
    folder.mkdir()
    with rasterio.open(demo_raster()) as src:
        for i in range(2):
            for j in range(2):
                win = Window(ORIGIN[1] + j * TILE, ORIGIN[0] + i * TILE, TILE, TILE)
                prof = dict(src.profile, width=TILE, height=TILE, transform=src.window_transform(win))
                with rasterio.open(folder / f"t{i}{j}.tif", "w", **prof) as dst:
                    dst.write(src.read(window=win))
                    dst.descriptions = src.descriptions
    rng = np.random.default_rng(0)
    with rasterio.open(folder / "t00.tif") as ds:
        b = ds.read([4, 8]).astype(float)  # B4, B8: water / open / green from NDVI
        ndvi = (b[1] - b[0]) / np.maximum(b[1] + b[0], 1)
        rows, cols = rng.integers(0, TILE, 200), rng.integers(0, TILE, 200)
        x, y = ds.transform * (cols + 0.5, rows + 0.5)
        labels = np.where(ndvi[rows, cols] < 0, "water", np.where(ndvi[rows, cols] < 0.3, "open", "green"))
        crs = ds.crs.to_wkt()
    pts = root / "pts.gpkg"
    write(pts, shapely.to_wkb(shapely.points(x, y)), [labels.astype(object)], ["class"], geometry_type="Point",
          crs=crs, driver="GPKG")
    classify(folder / "t00.tif", Samples(pts, "class"), root / "train", EmbedSpec(device="cpu"),
             FitSpec(method="linear", features="emb+pixel", cv_folds=0, compare_methods=False), cache=False,
             save_classifier=root / "c.npz")
    return folder, root / "c.npz"


def _cli(log: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m core.classify apply ARGS`` in a child process, its output into ``log`` (a pipe nobody reads
    while the test waits would fill up and block the child)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "core.classify", "apply", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # nosec B603 - fixed argv


def test_a_folder_of_tiles_maps_in_one_command_with_mosaics_of_cogs(tiles, tmp_path, capsys):
    folder, clf = tiles
    assert main(["apply", str(folder), "--classifier", str(clf), "--out-dir", str(tmp_path), "--no-cache"]) == 0
    assert "4 tile(s) mapped" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "tiles").iterdir())
    assert names == ["t00", "t01", "t10", "t11"]
    for name in names:
        with rasterio.open(tmp_path / "tiles" / name / "classes.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    with rasterio.open(tmp_path / "classes.vrt") as ds:
        mosaic = ds.read(1)
        assert mosaic.shape == (2 * TILE, 2 * TILE) and ds.colormap(1)[1][3] == 255
    for i in range(2):
        for j in range(2):
            with rasterio.open(tmp_path / "tiles" / f"t{i}{j}" / "classes.tif") as ds:
                assert np.array_equal(mosaic[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE], ds.read(1))
    with rasterio.open(tmp_path / "probabilities.vrt") as ds:
        assert ds.count == 3 and np.allclose(np.nansum(ds.read(), axis=0)[mosaic > 0], 1, atol=1e-4)
    assert (tmp_path / "classes.qml").is_file()
    # a second run maps nothing again and says so
    assert main(["apply", str(folder), "--classifier", str(clf), "--out-dir", str(tmp_path), "--no-cache"]) == 0
    out = capsys.readouterr()
    assert "0 tile(s) mapped, 4 already mapped and skipped" in out.out
    assert out.out.count("already mapped (") == 4


def test_a_cancelled_run_stitches_the_tiles_it_finished(tiles, tmp_path):
    """Cancel (or Ctrl-C) after the first tile: that tile opens as the mosaic; a rerun maps only the rest."""
    folder, clf = tiles
    out = tmp_path / "out"
    stop = Progress(is_cancelled=lambda: (out / "tiles" / "t00").is_dir())
    with pytest.raises(Cancelled):
        apply_tiles([folder], clf, out, EmbedSpec(device="cpu"), cache=False, progress=stop)
    assert sorted(p.name for p in (out / "tiles").iterdir()) == ["t00"]
    with rasterio.open(out / "classes.vrt") as mosaic, rasterio.open(out / "tiles" / "t00" / "classes.tif") as t00:
        assert mosaic.shape == t00.shape and np.array_equal(mosaic.read(1), t00.read(1))


def test_kill_9_mid_run_then_rerun_maps_only_the_rest(tiles, tmp_path):
    folder, clf = tiles
    env = dict(os.environ, SOFTCON_CACHE=str(tmp_path / "cache"))
    args = (str(folder), "--classifier", str(clf), "--out-dir", str(tmp_path / "out"), "--no-cache")
    proc = _cli(tmp_path / "first.log", *args, env=env)
    first = tmp_path / "out" / "tiles" / "t00"
    t0 = time.time()
    while not first.is_dir() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # after the first tile is committed, during the second
    proc.wait()
    done = sorted(p.name for p in (tmp_path / "out" / "tiles").iterdir() if not p.name.startswith("."))
    assert "t00" in done and len(done) < 4, done
    rerun = _cli(tmp_path / "rerun.log", *args, env=env)
    rerun.wait(timeout=600)
    log = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, log
    assert f"{4 - len(done)} tile(s) mapped, {len(done)} already mapped and skipped" in log
    assert sorted(p.name for p in (tmp_path / "out" / "tiles").iterdir()) == ["t00", "t01", "t10", "t11"]
    with rasterio.open(tmp_path / "out" / "classes.vrt") as ds:
        assert (ds.read(1) > 0).mean() > 0.99
