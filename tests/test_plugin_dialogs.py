"""The algorithm dialogs as an analyst meets them, in real QGIS (pytest-qgis, the Processing dialog
classes themselves): models by human name, the class field chosen for the user, help and labels in the
dialog's words, messages without command-line options, progress as "n of N windows", a log without
per-batch lines or staging paths, output layers named after the input, and the plugin's own icon."""
from __future__ import annotations

import configparser
import re

import pytest
import rasterio
from processing import createAlgorithmDialog
from qgis import processing
from qgis.core import QgsApplication, QgsFeature, QgsField, QgsProcessingFeedback, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtSvg import QSvgRenderer

import qgis_helpers as helpers
from softcon_qgis.algorithms.base import gui_words, make_progress
from softcon_qgis.algorithms.widgets import guess_class_field, model_label, ModelWrapper

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    plugin = helpers.load_provider()
    yield plugin
    helpers.drop_layers()
    plugin.unload()


def algorithms():
    return QgsApplication.processingRegistry().providerById("softcon").algorithms()


@pytest.fixture
def panel(monkeypatch):
    """The parameters panel asks the interface for its browser model, which pytest-qgis's mock interface
    lacks: build the dialog as without a main window (what the widgets need is the project)."""
    monkeypatch.setattr("processing.gui.ParametersPanel.iface", None)


def dialog(alg_id: str, params: dict | None = None):
    dlg = createAlgorithmDialog(alg_id, params or {})
    assert dlg is not None, alg_id
    return dlg


def wrapper(dlg, name: str):
    return dlg.mainWidget().wrappers[name]


def memory_points(fields: list[tuple[str, QVariant.Type]], rows: list[list]) -> QgsVectorLayer:
    layer = QgsVectorLayer("Point?crs=EPSG:4326", "samples", "memory")
    layer.dataProvider().addAttributes([QgsField(n, t) for n, t in fields])
    layer.updateFields()
    feats = []
    for row in rows:
        f = QgsFeature(layer.fields())
        f.setAttributes(row)
        feats.append(f)
    assert layer.dataProvider().addFeatures(feats)[0]
    return layer


# ------------------------------------------------------------------------------------------ models
def test_models_are_listed_by_human_name(plugin, panel):
    assert model_label("B13_vits14_softcon").startswith("SoftCon ViT-S/14 - Sentinel-2 L1C, 13 bands - ")
    size = re.search(r" - (\d+) MB download$", model_label("B13_vits14_softcon"))
    assert size and 80 <= int(size.group(1)) <= 95, model_label("B13_vits14_softcon")  # 22 M float32 weights
    assert model_label("B2_vits14_softcon").startswith("SoftCon ViT-S/14 - Sentinel-1 VV/VH - ")
    assert model_label("B13_vitb14_softcon").endswith("MB download")
    dlg = dialog("softcon:classify")
    try:
        model = wrapper(dlg, "MODEL")
        assert isinstance(model, ModelWrapper)
        combo = model.widget
        labels = [combo.itemText(i) for i in range(combo.count())]
        default = labels[0]
        assert default.endswith(" - on disk"), default  # the shipped default model
        assert any(lb.startswith("SoftCon ViT-S/14 - Sentinel-1 VV/VH") for lb in labels), labels
        assert model.parameterValue() == plugin.provider.algorithm("classify").parameterDefinition(
            "MODEL").defaultValue()  # the value stays the registry name scripts use
        combo.setCurrentIndex(labels.index(next(lb for lb in labels if "Sentinel-1" in lb)))
        assert model.parameterValue().startswith("B2_")
    finally:
        dlg.close()


# ------------------------------------------------------------------------------------------ class field
def test_class_field_guess():
    rows = [[i, 100 + i, f"site {i}", ["water", "marsh", "sand"][i % 3], i % 4] for i in range(12)]
    fields = [("fid", QVariant.Int), ("id", QVariant.Int), ("name", QVariant.String), ("landcover", QVariant.String),
              ("code", QVariant.Int)]
    assert guess_class_field(memory_points(fields, rows)) == "landcover"  # not id, not a unique name
    no_text = memory_points([("id", QVariant.Int), ("code", QVariant.Int)], [[i, i % 4] for i in range(12)])
    assert guess_class_field(no_text) == "code"
    assert guess_class_field(memory_points([("id", QVariant.Int)], [[i] for i in range(5)])) is None
    # integer class codes in class_id (the trial's layer): not fid, not a unique integer, not a measurement
    codes = [[i, 1000 + i, 10 * (1 + i % 7), i * 3] for i in range(30)]
    layer = memory_points([("fid", QVariant.Int), ("plot", QVariant.Int), ("class_id", QVariant.Int),
                           ("height", QVariant.Int)], codes)
    assert guess_class_field(layer) == "class_id"
    demo = QgsVectorLayer(str(helpers.demo_points()), "demo", "ogr")
    assert guess_class_field(demo) == "class"


def test_class_field_is_preselected_in_the_dialog(plugin, panel):
    rows = [[i, f"p{i}", ["water", "marsh", "sand"][i % 3]] for i in range(9)]
    layer = memory_points([("id", QVariant.Int), ("label", QVariant.String), ("lc", QVariant.String)], rows)
    QgsProject.instance().addMapLayer(layer)
    dlg = dialog("softcon:classify", {"TRAINING": layer.id()})
    try:
        field = wrapper(dlg, "CLASS_FIELD")
        assert field.parameterValue() == "lc"  # not the first field (id), not the unique labels
    finally:
        dlg.close()
        QgsProject.instance().removeMapLayer(layer.id())
    # nothing looks like classes: no field is chosen (not the first one, fid), so the run asks for one
    ids = memory_points([("fid", QVariant.Int), ("name", QVariant.String)], [[i, f"p{i}"] for i in range(9)])
    QgsProject.instance().addMapLayer(ids)
    dlg = dialog("softcon:classify", {"TRAINING": ids.id()})
    try:
        assert not wrapper(dlg, "CLASS_FIELD").parameterValue()
    finally:
        dlg.close()
        QgsProject.instance().removeMapLayer(ids.id())


# ------------------------------------------------------------------------------------------ wording
def test_labels_and_help_read_like_the_dialog(plugin):
    modes = set()
    for alg in algorithms():
        for p in alg.parameterDefinitions():
            assert "(optional" not in p.description().lower(), (alg.id(), p.description())  # QGIS adds [optional]
            if p.name() == "MODE":
                modes.add(p.defaultValue())
                assert "'dense' (the default)" in alg.shortHelpString() and "'pooled'" in alg.shortHelpString()
        for flag in re.findall(r"--[a-z][a-z-]+", alg.shortHelpString()):
            pytest.fail(f"{alg.id()} help names the command-line option {flag}")
    assert modes == {"dense"}, modes


def test_core_errors_name_the_dialog_not_the_command_line(plugin, tmp_path):
    """A real band-order failure from core: no unnamed bands are guessed, and the fix is said in GUI words."""
    text = gui_words("Give the band order explicitly (e.g. --bands eurosat or --bands B1,B2,...) or use a raster "
                     "with those bands. Use --bbox and --device cpu.")
    assert "--" not in text and "choose a band order in Advanced" in text and "the Extent" in text

    unnamed = tmp_path / "unnamed.tif"
    with rasterio.open(helpers.scene_crop()) as src:
        profile = src.profile | {"count": 4}
        with rasterio.open(unnamed, "w", **profile) as dst:
            dst.write(src.read([2, 3, 4, 8]))
    ok, _, fb = helpers.run("softcon:embed", {"INPUT": str(unnamed), "OUTPUT": str(tmp_path / "emb.tif")})
    message = "\n".join(fb.errors)
    assert not ok and message, message
    assert not re.search(r"--[a-z]", message), message
    assert "Advanced" in message, message


# ------------------------------------------------------------------------------------------ progress and log
class TextFeedback(QgsProcessingFeedback):
    """Records what the dialog would log: progress texts (QGIS 3.22's dialog logs each one) and infos."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        self.infos: list[str] = []

    def setProgressText(self, text):  # QGIS API name
        self.texts.append(text)
        super().setProgressText(text)

    def pushInfo(self, info):  # QGIS API name
        self.infos.append(info)
        super().pushInfo(info)


def test_progress_reads_n_of_n_windows_without_a_line_per_batch(plugin, tmp_path):
    fb = TextFeedback()
    progress = make_progress(fb)
    progress.log("softcon_tiny_s2: dense embeddings, 3000 windows of 64 px every 32 px -> 50 x 50 x 192 on cpu")
    rows = 200
    for row in range(1, rows + 1):  # what core.embed reports: one update per batch row
        progress.update(row, rows, f"{row * 15} windows")
    progress.update(1, 1, "classifying")
    stage = tmp_path / ".softcon-abc123"
    progress.log(f"Wrote {stage}/embedding.tif (3000 windows run, 0 skipped as nodata, 12.0 s).")
    assert len(fb.texts) <= 12, fb.texts  # not one line per batch
    assert fb.texts[0] == "15 of 3000 windows" and "3000 of 3000 windows" in fb.texts and fb.texts[-1] == "classifying"
    assert fb.infos[-1].startswith("Wrote embedding.tif (3000 windows run") and ".softcon-" not in fb.infos[-1]


def test_classify_log_and_layer_names(plugin, tmp_path, monkeypatch):
    """A real Classify run loaded as the dialog loads it: outputs named after the input, the method and the
    time, no staging path or per-batch line in the log."""
    monkeypatch.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache-dialogs"))
    fb = TextFeedback()
    res = processing.runAndLoadResults("softcon:classify", {
        "INPUT": str(helpers.scene_crop()), "TRAINING": str(helpers.demo_points()), "CLASS_FIELD": "class",
        "METHOD": "knn",
        "OUTPUT_CLASSES": str(tmp_path / "classes.tif"), "OUTPUT_CONFIDENCE": str(tmp_path / "confidence.tif"),
        "OUTPUT_PROBABILITY": "", "OUTPUT_REPORT": ""}, feedback=fb)
    try:
        stem = helpers.scene_crop().stem
        names = {lyr.source(): lyr.name() for lyr in QgsProject.instance().mapLayers().values()}
        # repeated runs are told apart: method and time after what the layer holds
        assert re.fullmatch(rf"{stem} - classes \(knn, \d\d:\d\d\)", names[res["OUTPUT_CLASSES"]]), names
        assert re.fullmatch(rf"{stem} - confidence \(knn, \d\d:\d\d\)", names[res["OUTPUT_CONFIDENCE"]]), names
        assert not any(".softcon-" in line for line in fb.infos + fb.texts), fb.infos
        assert len(fb.texts) <= 15, fb.texts
        assert any(re.fullmatch(r"\d+ of \d+ windows", t) for t in fb.texts), fb.texts
    finally:
        helpers.drop_layers()


# ------------------------------------------------------------------------------------------ icon
def test_plugin_icon_in_toolbox_and_plugin_manager(plugin, repo_root):
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(repo_root / "metadata.txt")
    icon = repo_root / "softcon_qgis" / meta["general"]["icon"]
    assert icon.is_file() and QSvgRenderer(str(icon)).isValid()
    assert not plugin.provider.icon().isNull() and plugin.provider.svgIconPath() == str(icon)
    assert {alg.svgIconPath() for alg in algorithms()} == {str(icon)}  # not the generic gear
    assert all(not alg.icon().isNull() for alg in algorithms())
