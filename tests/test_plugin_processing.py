"""Every SoftCon algorithm through ``processing.run`` in real QGIS (pytest-qgis), on a 4 x 4 km crop of
the real Sentinel-2 scene, with the default model's shipped weights (and, for 'Compute embeddings', a
random-init checkpoint file given as the checkpoint parameter). Checks the output layers: valid, CRS,
extent, band count, and the styles QGIS applies."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from qgis import processing
from qgis.core import (QgsApplication, QgsProcessingFeatureSourceDefinition, QgsProcessingModelAlgorithm,
                       QgsProcessingModelChildAlgorithm, QgsProcessingModelChildParameterSource,
                       QgsProcessingModelOutput, QgsProcessingModelParameter, QgsProcessingParameterRasterLayer,
                       QgsProject, QgsRasterLayer, QgsVectorLayer)

import qgis_helpers as helpers
import toy_classifier
from core.embed.spec import DEFAULT_MODE
from core.classify.styles import class_colors, CONFIDENCE
from rasterio.windows import Window

pytestmark = pytest.mark.qgis
CLASSES = {"inland water", "salt marsh", "beach/bare sand"}


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    plugin = helpers.load_provider()
    yield plugin
    helpers.drop_layers()
    plugin.unload()


@pytest.fixture(scope="module")
def data():
    """The crop, the checkpoint and the training points (built once, before the cache is redirected)."""
    return {"crop": helpers.scene_crop(), "checkpoint": helpers.random_checkpoint(), "points": helpers.demo_points()}


@pytest.fixture(scope="module", autouse=True)
def own_cache(data):
    """Weights and embedding caches of these tests live in a temporary folder, never the user's
    (set after ``data`` fetched the real scene into the real cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache"))
        yield


def processing_run(alg_id: str, params: dict):
    return processing.run(alg_id, params, feedback=helpers.RecordingFeedback())


def assert_on_crop(path: str, crop: Path, bands: int) -> QgsRasterLayer:
    """The output opens in QGIS, in the crop's CRS, inside the crop, with ``bands`` bands."""
    layer = QgsRasterLayer(path, Path(path).stem, "gdal")
    assert layer.isValid(), path
    with rasterio.open(crop) as src:
        assert layer.crs().authid() == f"EPSG:{src.crs.to_epsg()}" == "EPSG:32618"
        b = src.bounds
    e = layer.extent()
    assert layer.bandCount() == bands
    tol = 1.0
    assert b.left - tol <= e.xMinimum() < e.xMaximum() <= b.right + tol
    assert b.bottom - tol <= e.yMinimum() < e.yMaximum() <= b.top + tol
    assert e.width() * e.height() > 0.7 * (b.right - b.left) * (b.top - b.bottom)
    return layer


def test_provider_lists_every_algorithm(plugin):
    provider = QgsApplication.processingRegistry().providerById("softcon")
    assert provider is not None and provider.name() == "SoftCon"
    ids = {a.id() for a in provider.algorithms()}
    assert ids == {f"softcon:{n}" for n in ("modelinfo", "embed", "classify", "applyclassifier", "applytiles",
                                            "similarity", "pcapreview", "kmeans", "validationsample", "assessaccuracy")}
    for alg in provider.algorithms():
        assert len(alg.shortHelpString()) > 100, alg.id()
        names = [p.name() for p in alg.parameterDefinitions()]
        assert all(n == n.upper() for n in names), (alg.id(), names)
        mode = alg.parameterDefinition("MODE")
        if mode is not None:  # every MODE enum defaults to the mode the plugin falls back to, which is core's

            assert mode.defaultValue() == DEFAULT_MODE, alg.id()


def test_a_classifier_registered_in_core_is_in_the_classify_dialog(plugin):
    """The Method list, a parameter for the method's own setting, and the help all come from core's registry."""
    from softcon_qgis.core.classify import methods  # the plugin's own copy of core, as QGIS runs it

    def classify_alg():
        return QgsApplication.processingRegistry().createAlgorithmById("softcon:classify")

    assert "centroid" not in classify_alg().parameterDefinition("METHOD").options()
    with toy_classifier.registered(methods):
        alg = classify_alg()
        assert alg.parameterDefinition("METHOD").options()[-1] == "centroid"
        assert alg.parameterDefinition("SPREAD").defaultValue() == 1.0  # its parameter, named as --spread
        assert "'centroid' (nearest class mean, standardised Euclidean distance)" in alg.shortHelpString()
    assert alg.parameterDefinition("K").defaultValue() == 20 and "centroid" not in classify_alg().shortHelpString()


def test_model_info_lists_and_registers_a_checkpoint(plugin, data, tmp_path):
    results = processing_run("softcon:modelinfo", {"MODEL": "softcon_tiny_s2", "ACTION": "list",
                                                   "OUTPUT": str(tmp_path / "models.html")})
    assert "B13_vits14_softcon" in results["MODELS"].split(",")
    html = (tmp_path / "models.html").read_text()
    assert "vit_small_patch14_dinov2" in html and "softcon_tiny_s2" in html
    # the shipped weights, copied by hand elsewhere, register into the cache (strict load, sha256 checked)
    from core.models.registry import get_record

    shipped = Path(get_record("softcon_tiny_s2").local_path)
    copy = tmp_path / "copied_by_hand.safetensors"
    shutil.copyfile(shipped, copy)
    ok, results, fb = helpers.run("softcon:modelinfo", {"MODEL": "softcon_tiny_s2", "ACTION": "register",
                                                  "CHECKPOINT": str(copy)})
    assert ok, fb.errors
    assert results["AVAILABLE"] is True and Path(results["WEIGHTS"]) == shipped  # shipped file comes first
    cached = helpers.shared_dir() / "cache" / "weights" / "softcon_tiny_s2.safetensors"
    assert cached.read_bytes() == shipped.read_bytes()
    assert any("ships its own weights" in e for e in fb.errors)  # a warning, not a failure
    # other weights under the default model's name are refused: they are not the published file
    ok, _, fb = helpers.run("softcon:modelinfo", {"MODEL": "galileo_nano_s2", "ACTION": "register",
                                            "CHECKPOINT": str(data["checkpoint"])})
    assert not ok and any("sha256" in e for e in fb.errors), fb.errors
    # a checkpoint of another architecture is refused with the keys that do not fit
    ok, _, fb = helpers.run("softcon:modelinfo", {"MODEL": "B13_vits14_softcon", "ACTION": "register",
                                            "CHECKPOINT": str(data["checkpoint"])})
    assert not ok and any("B13_vits14_softcon" in e or "key" in e.lower() for e in fb.errors), fb.errors


@pytest.fixture(scope="module")
def classified(plugin, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("classify")
    params = {
        "INPUT": str(data["crop"]), "TRAINING": str(data["points"]), "CLASS_FIELD": "class", "METHOD": "knn",
        "K": 10, "MODE": "dense", "DEVICE": "cpu",
        "OUTPUT_CLASSES": str(out / "classes.tif"), "OUTPUT_PROBABILITY": str(out / "probabilities.tif"),
        "OUTPUT_CONFIDENCE": str(out / "confidence.tif"), "OUTPUT_REPORT": str(out / "report.html"),
        "OUTPUT_CLASSIFIER": str(out / "classifier.npz"),
    }
    ok, results, fb = helpers.run("softcon:classify", params)
    assert ok, fb.errors
    return {"params": params, "results": results, "feedback": fb, "dir": out}


def test_classify_outputs_are_styled_layers(classified, data):
    res, fb = classified["results"], classified["feedback"]
    classes = assert_on_crop(res["OUTPUT_CLASSES"], data["crop"], 1)
    renderer = classes.renderer()
    assert renderer.type() == "paletted"
    labels = {c.label for c in renderer.classes()}
    assert labels == CLASSES
    assert sorted(c.value for c in renderer.classes()) == [1, 2, 3]
    assert len({c.color.name() for c in renderer.classes()}) == 3

    names = res["CLASS_NAMES"].split(",")
    expected = dict(zip(names, class_colors(names)))
    for c in renderer.classes():
        assert (c.color.red(), c.color.green(), c.color.blue()) == tuple(expected[c.label])
    prob = assert_on_crop(res["OUTPUT_PROBABILITY"], data["crop"], 3)  # written, one band per class
    assert any(f"one band per class: 1 = {names[0]}" in i for i in fb.infos), fb.infos  # not loaded: said in the log
    conf = assert_on_crop(res["OUTPUT_CONFIDENCE"], data["crop"], 1)
    assert conf.renderer().type() == "singlebandpseudocolor"  # core's ramp, as the command line's .qml draws it

    items = conf.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert [(i.value, i.color.getRgb()[:3]) for i in items] == [(v, tuple(c)) for v, c in CONFIDENCE.items()]
    with rasterio.open(res["OUTPUT_CLASSES"]) as ds:
        values = np.unique(ds.read(1))
    assert set(values.tolist()) - {0} <= {1, 2, 3} and len(set(values.tolist()) - {0}) >= 2
    report = Path(res["OUTPUT_REPORT"]).read_text()
    assert "accuracy" in report.lower() and "salt marsh" in report
    # core wrote the report and its quicklook to the chosen names; none of its other outputs, no stage folder
    assert "src='report_quicklook.png'" in report and (classified["dir"] / "report_quicklook.png").is_file()
    extra = [p.name for p in classified["dir"].iterdir() if p.name.startswith(".") or p.suffix in (".json", ".txt")]
    assert not extra, extra
    assert 0.5 < res["ACCURACY"] <= 1.0  # 3 classes: chance is about 1/3
    assert f"overall accuracy {100 * res['ACCURACY']:.1f}%" in "\n".join(fb.infos)  # the figure the log shows
    assert Path(res["OUTPUT_CLASSIFIER"]).is_file()
    log = "\n".join(fb.infos)
    assert "Model: galileo_nano_s2" in log and "Device: cpu" in log and "Bands:" in log
    tables = [c for c in fb.commands if "<-\u00a0chosen" in c]  # the method comparison, once (was twice)
    assert len(tables) == 1 and "<- chosen" not in log, (fb.commands, log)
    rows = tables[0].splitlines()  # fixed-width in the dialog: non-breaking spaces keep the columns lined up
    assert " " not in tables[0] and len(rows) >= 3
    assert len({len(r.split("\u00a0\u00a0<-")[0]) for r in rows}) == 1, rows
    assert "Spatially blocked cross-validation: overall accuracy" in log
    assert "Create validation sample" in log  # the next step: the map's accuracy by the book
    assert fb.progress_values and max(fb.progress_values) >= 99
    del classes, prob, conf


def test_apply_saved_classifier_reproduces_the_map(classified, data, tmp_path):
    ok, res, fb = helpers.run("softcon:applyclassifier", {
        "INPUT": str(data["crop"]), "CLASSIFIER": classified["results"]["OUTPUT_CLASSIFIER"],
        "DEVICE": "cpu", "OUTPUT_CLASSES": str(tmp_path / "applied.tif"),
        "OUTPUT_PROBABILITY": None, "OUTPUT_CONFIDENCE": None, "OUTPUT_REPORT": None})
    assert ok, fb.errors
    layer = assert_on_crop(res["OUTPUT_CLASSES"], data["crop"], 1)
    assert {c.label for c in layer.renderer().classes()} == CLASSES
    with rasterio.open(res["OUTPUT_CLASSES"]) as a, rasterio.open(classified["results"]["OUTPUT_CLASSES"]) as b:
        assert np.array_equal(a.read(1), b.read(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applied.qml", "applied.tif"]
    del layer


def test_apply_to_a_folder_of_tiles_loads_the_styled_mosaic(classified, data, tmp_path):
    """The crop cut into a left and a right tile: one map per tile, the class mosaic loaded with the classes' style."""

    folder = tmp_path / "tiles"
    folder.mkdir()
    with rasterio.open(data["crop"]) as src:
        half = src.width // 2
        halves = {"left": Window(0, 0, half, src.height), "right": Window(half, 0, src.width - half, src.height)}
        for name, win in halves.items():
            prof = dict(src.profile, width=win.width, height=win.height, transform=src.window_transform(win))
            with rasterio.open(folder / f"{name}.tif", "w", **prof) as dst:
                dst.write(src.read(window=win))
                dst.descriptions = src.descriptions
    ok, res, fb = helpers.run("softcon:applytiles", {
        "FOLDER": str(folder), "CLASSIFIER": classified["results"]["OUTPUT_CLASSIFIER"], "DEVICE": "cpu",
        "OUTPUT_FOLDER": str(tmp_path / "out")})
    assert ok, fb.errors
    mosaic = assert_on_crop(res["OUTPUT_CLASSES"], data["crop"], 1)
    assert {c.label for c in mosaic.renderer().classes()} == CLASSES
    right = tmp_path / "out" / "tiles" / "right" / "classes.tif"
    with rasterio.open(res["OUTPUT_CLASSES"]) as m, rasterio.open(right) as r:
        assert np.array_equal(m.read(1)[:, half:], r.read(1))
    ok, _, fb = helpers.run("softcon:applytiles", {  # again: every tile is there, nothing is mapped twice
        "FOLDER": str(folder), "CLASSIFIER": classified["results"]["OUTPUT_CLASSIFIER"], "DEVICE": "cpu",
        "OUTPUT_FOLDER": str(tmp_path / "out")})
    assert ok and sum("already mapped" in line for line in fb.infos) == 2, fb.infos
    del mosaic


def test_classify_from_polygons_in_a_memory_layer(classified, data, tmp_path):
    """Polygons (the points buffered by 60 m in UTM, in an unsaved memory layer) train the same classes."""
    utm = processing.run("native:reprojectlayer", {"INPUT": str(data["points"]), "TARGET_CRS": "EPSG:32618",
                                                   "OUTPUT": "memory:"})["OUTPUT"]
    polygons = processing.run("native:buffer", {"INPUT": utm, "DISTANCE": 60, "OUTPUT": "memory:"})["OUTPUT"]
    assert polygons.geometryType() == 2  # polygon
    params = dict(classified["params"], TRAINING=polygons, METHOD="prototype", CV_FOLDS=0, OUTPUT_CLASSIFIER=None,
                  OUTPUT_CLASSES=str(tmp_path / "classes.tif"), OUTPUT_PROBABILITY=None, OUTPUT_CONFIDENCE=None,
                  OUTPUT_REPORT=str(tmp_path / "report.html"))
    ok, res, fb = helpers.run("softcon:classify", params)
    del utm, polygons
    assert ok, fb.errors
    layer = assert_on_crop(res["OUTPUT_CLASSES"], data["crop"], 1)
    assert {c.label for c in layer.renderer().classes()} == CLASSES
    assert "prototype" in Path(res["OUTPUT_REPORT"]).read_text()
    del layer


@pytest.fixture(scope="module")
def embedding(plugin, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "embedding.tif"
    ok, res, fb = helpers.run("softcon:embed", {"INPUT": str(data["crop"]), "BANDS": "s2_l1c", "MODE": "dense",
                                          "CHECKPOINT": str(data["checkpoint"]), "DEVICE": "cpu", "OUTPUT": str(out)})
    assert ok, fb.errors
    return res["OUTPUT"]


def test_embed_writes_a_128_band_raster_on_the_crop(embedding, data):
    layer = assert_on_crop(embedding, data["crop"], 128)
    with rasterio.open(embedding) as ds:
        assert ds.tags(ns="SOFTCON")["model"] == "galileo_nano_s2"
        assert ds.res == (80.0, 80.0)
    del layer


def test_embed_writes_a_cog_when_asked(plugin, data, tmp_path):
    out = tmp_path / "cog.tif"
    ok, res, fb = helpers.run("softcon:embed", {"INPUT": str(data["crop"]), "BANDS": "s2_l1c", "COG": True,
                                          "CHECKPOINT": str(data["checkpoint"]), "DEVICE": "cpu", "OUTPUT": str(out)})
    assert ok, fb.errors
    with rasterio.open(res["OUTPUT"]) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.tags(ns="SOFTCON")["mode"] == "dense"  # the default of every algorithm
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif"]


def test_similarity_from_selected_features(embedding, data, tmp_path):
    points = QgsVectorLayer(str(data["points"]), "points", "ogr")
    assert points.isValid()
    assert QgsProject.instance().addMapLayer(points)
    water = [f.id() for f in points.getFeatures() if f["class"] == "inland water"]
    points.selectByIds(water)
    ok, res, fb = helpers.run("softcon:similarity", {
        "INPUT": embedding, "REFERENCE": QgsProcessingFeatureSourceDefinition(points.id(), True),
        "OUTPUT": str(tmp_path / "similarity.tif")})
    QgsProject.instance().removeMapLayer(points.id())
    del points
    assert ok, fb.errors
    layer = assert_on_crop(res["OUTPUT"], data["crop"], 1)
    assert layer.renderer().type() == "singlebandpseudocolor"
    with rasterio.open(res["OUTPUT"]) as ds:
        sim = ds.read(1)
        assert np.nanmax(sim) <= 1.0001 and np.nanmin(sim) >= -1.0001
        # the reference pixels are the most similar to their own mean
        t = Transformer.from_crs(4326, 32618, always_xy=True)
        feats = json.loads(Path(data["points"]).read_text())["features"]
        xy = [t.transform(*f["geometry"]["coordinates"]) for f in feats if f["properties"]["class"] == "inland water"]
        rc = [ds.index(x, y) for x, y in xy]
        inside = [sim[r, c] for r, c in rc if 0 <= r < ds.height and 0 <= c < ds.width]
    assert inside and np.nanmean(inside) > np.nanmean(sim)
    del layer


def test_pca_preview_and_kmeans(embedding, data, tmp_path):
    ok, res, fb = helpers.run("softcon:pcapreview", {"INPUT": embedding, "OUTPUT": str(tmp_path / "pca.tif")})
    assert ok, fb.errors
    pca = assert_on_crop(res["OUTPUT"], data["crop"], 3)
    assert pca.renderer().type() == "multibandcolor"
    ok, res, fb = helpers.run("softcon:kmeans", {"INPUT": embedding, "CLUSTERS": 4, "OUTPUT": str(tmp_path / "km.tif")})
    assert ok, fb.errors
    km = assert_on_crop(res["OUTPUT"], data["crop"], 1)
    assert km.renderer().type() == "paletted"
    assert [c.label for c in km.renderer().classes()] == [f"cluster {i}" for i in (1, 2, 3, 4)]
    with rasterio.open(res["OUTPUT"]) as ds:
        assert set(np.unique(ds.read(1)).tolist()) - {0} == {1, 2, 3, 4}
    del pca, km
    # PCA and k-means need embeddings: imagery is refused with what to do instead
    ok, _, fb = helpers.run("softcon:kmeans",
                            {"INPUT": str(data["crop"]), "CLUSTERS": 4, "OUTPUT": str(tmp_path / "x.tif")})
    assert not ok and any("Compute embeddings" in e for e in fb.errors)
    assert not (tmp_path / "x.tif").exists()


def test_graphical_modeler_chains_embed_and_kmeans(plugin, data, tmp_path):
    """A model built as the graphical modeler saves it: Compute embeddings (on an extent) feeding
    Cluster embeddings. Parameters travel as the modeler stores them (static strings, child outputs)."""
    model = QgsProcessingModelAlgorithm("embed then cluster", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    embed = QgsProcessingModelChildAlgorithm("softcon:embed")
    embed.setChildId("embed")
    x0, y0 = helpers.CROP_BOUNDS[:2]
    for name, source in {
        "INPUT": QgsProcessingModelChildParameterSource.fromModelParameter("scene"),
        "MODE": QgsProcessingModelChildParameterSource.fromStaticValue("dense"),
        "BANDS": QgsProcessingModelChildParameterSource.fromStaticValue("auto"),
        "MODEL": QgsProcessingModelChildParameterSource.fromStaticValue("softcon_tiny_s2"),
        "DEVICE": QgsProcessingModelChildParameterSource.fromStaticValue("cpu"),
        "EXTENT": QgsProcessingModelChildParameterSource.fromStaticValue(
            f"{x0 + 500},{x0 + 2500},{y0 + 500},{y0 + 2500} [EPSG:32618]"),
    }.items():
        embed.addParameterSources(name, [source])
    model.addChildAlgorithm(embed)
    cluster = QgsProcessingModelChildAlgorithm("softcon:kmeans")
    cluster.setChildId("cluster")
    cluster.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("embed", "OUTPUT")])
    cluster.addParameterSources("CLUSTERS", [QgsProcessingModelChildParameterSource.fromStaticValue(3)])
    out = QgsProcessingModelOutput("clusters", "Clusters")
    out.setChildOutputName("OUTPUT")
    out.setChildId("cluster")
    cluster.setModelOutputs({"clusters": out})
    model.addChildAlgorithm(cluster)
    assert model.toFile(str(tmp_path / "model.model3"))  # what the modeler writes to disk

    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(tmp_path / "model.model3"))

    res = processing.run(loaded, {"scene": str(data["crop"]), "cluster:clusters": str(tmp_path / "clusters.tif")},
                         feedback=helpers.RecordingFeedback())
    layer = QgsRasterLayer(res["cluster:clusters"], "clusters", "gdal")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32618"
    assert layer.extent().width() < 2600 and layer.extent().height() < 2600  # the extent was honoured
    assert [c.label for c in layer.renderer().classes()] == ["cluster 1", "cluster 2", "cluster 3"]
    del layer


def test_download_offline_says_where_to_put_the_file(plugin):
    ok, _, fb = helpers.run("softcon:modelinfo", {"MODEL": "B13_vits14_softcon", "ACTION": "download"})
    assert not ok
    message = "\n".join(fb.errors)
    assert "huggingface.co" in message and "B13_vits14_softcon" in message, message


def test_outputs_loaded_by_the_toolbox_get_their_style(embedding, tmp_path):
    """What the toolbox dialog does: run, load the outputs into the project, call their post-processors
    (Processing itself loads outputs without their .qml)."""
    res = processing.runAndLoadResults("softcon:kmeans", {"INPUT": embedding, "CLUSTERS": 3,
                                                          "OUTPUT": str(tmp_path / "clusters.tif")})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == res["OUTPUT"]]
    try:
        assert len(layers) == 1
        assert layers[0].name() == f"{Path(embedding).stem} - clusters"  # named after the input
        assert layers[0].renderer().type() == "paletted"
        assert [c.label for c in layers[0].renderer().classes()] == ["cluster 1", "cluster 2", "cluster 3"]
    finally:
        del layers
        helpers.drop_layers()
