"""The accuracy-assessment loop in real QGIS (pytest-qgis): the sample layer opens with a value map of the class
names on 'reference'; 'Create validation sample' -> label in an edit session -> 'Assess accuracy and estimate
areas' through processing.run; a layer loaded by Processing gets the labelling style."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProject, QgsVectorLayer
from rasterio.transform import from_origin

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis
NAMES = ["open sea", "salt marsh", "forest & woods", "beach/bare sand"]  # '&' and '/' must survive the QML


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    plugin = helpers.load_provider()
    yield plugin
    helpers.drop_layers()
    plugin.unload()


@pytest.fixture(scope="module")
def class_map(tmp_path_factory) -> Path:
    """A 10 m class raster with the tags core.classify writes, codes 11..14, a 2 % class."""
    a = np.full((200, 300), 11, np.uint8)
    a[:, 150:] = 12
    a[150:, :100] = 13
    a[:30, :40] = 14
    path = tmp_path_factory.mktemp("assess") / "classes.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=200, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:32618", transform=from_origin(443_230, 4_166_490, 10, 10)) as dst:
        dst.write(a, 1)
        dst.update_tags(CLASS_NAMES=json.dumps(NAMES), CLASS_VALUES=json.dumps([11, 12, 13, 14]))
    return path


def open_sample(path: str | Path) -> QgsVectorLayer:
    layer = QgsVectorLayer(str(path), "sample", "ogr")  # as Layer > Add Layer does: default style loaded
    assert layer.isValid()
    return layer


def test_sample_layer_opens_with_a_value_map_of_the_class_names(plugin, class_map, tmp_path):
    from core.assess.sampling import create_sample

    create_sample(class_map, tmp_path / "s.gpkg", size=40, min_per_class=5)
    layer = open_sample(tmp_path / "s.gpkg")
    fields = layer.fields()
    setup = layer.editorWidgetSetup(fields.indexOf("reference"))
    assert setup.type() == "ValueMap"
    assert [next(iter(d.values())) for d in setup.config()["map"]] == NAMES
    for hidden in ("map_value", "map_class", "stratum", "stratum_pixels"):   # labelling blind to the map
        assert layer.editorWidgetSetup(fields.indexOf(hidden)).type() == "Hidden"
    assert not layer.editFormConfig().readOnly(fields.indexOf("reference"))
    assert layer.editFormConfig().readOnly(fields.indexOf("map_class"))
    rules = layer.renderer().rootRule().children()
    assert [r.label() for r in rules] == ["to label", "labelled"]
    assert layer.featureCount() == 40 and layer.crs().authid() == "EPSG:32618"
    assert layer.displayExpression() == '"sample_id"'                    # the status bar does not name the class
    del layer


def test_sample_label_assess_through_processing(plugin, class_map, tmp_path):
    sample = str(tmp_path / "sample.gpkg")
    ok, res, fb = helpers.run("softcon:validationsample", {"INPUT": str(class_map), "SIZE": 60, "MIN_PER_CLASS": 8,
                                                           "OUTPUT": sample})
    assert ok, fb.errors
    assert res["POINTS"] == 60 and res["OUTPUT"] == sample
    ok, _, fb = helpers.run("softcon:validationsample", {"INPUT": str(class_map), "SIZE": 20, "MIN_PER_CLASS": 8,
                                                         "OUTPUT": str(tmp_path / "small.gpkg")})
    assert not ok and "ask for at least 32 (the Sample size) or lower the Fewest points per class" in fb.errors[-1]
    assert not (tmp_path / "small.gpkg").exists()
    # label in an edit session, as a user does with the value map: the truth is the map except 6 points
    layer = open_sample(sample)
    QgsProject.instance().addMapLayer(layer)  # as in the desktop: the project owns it
    assert layer.startEditing()
    idx = layer.fields().indexOf("reference")
    for i, f in enumerate(layer.getFeatures()):
        truth = f["map_class"] if i % 10 else NAMES[(NAMES.index(f["map_class"]) + 1) % 4]
        assert layer.changeAttributeValue(f.id(), idx, truth)
    ok, _, fb = helpers.run("softcon:assessaccuracy", {"INPUT": str(class_map), "SAMPLE": layer.id(),
                                                       "OUTPUT_FOLDER": str(tmp_path / "acc")})
    assert not ok and "unsaved edits" in fb.errors[-1]                     # labels not saved yet: refused
    assert layer.commitChanges()
    ok, res, fb = helpers.run("softcon:assessaccuracy", {"INPUT": str(class_map), "SAMPLE": sample,
                                                         "OUTPUT_FOLDER": str(tmp_path / "acc")})
    assert ok, fb.errors
    report = json.loads(Path(res["OUTPUT_JSON"]).read_text())
    assert report["points"]["used"] == 60 and sum(map(sum, report["error_matrix"]["counts"])) == 60
    assert np.trace(report["error_matrix"]["counts"]) == 54
    assert res["OVERALL_ACCURACY"] == pytest.approx(report["overall_accuracy"]["estimate"])
    assert Path(res["OUTPUT_HTML"]).name == "accuracy.html" and Path(res["OUTPUT_CSV"]).exists()
    assert any("overall\u00a0accuracy" in c for c in fb.commands)         # the table, monospace
    helpers.drop_layers()


def test_processing_loads_the_sample_with_its_labelling_style(plugin, class_map, tmp_path):
    from qgis import processing

    out = str(tmp_path / "loaded.gpkg")
    processing.runAndLoadResults("softcon:validationsample", {"INPUT": str(class_map), "SIZE": 30,
                                                              "MIN_PER_CLASS": 5, "OUTPUT": out})
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source().startswith(out)]
    assert len(loaded) == 1 and loaded[0].name().endswith("validation sample")
    layer = loaded[0]
    assert layer.editorWidgetSetup(layer.fields().indexOf("reference")).type() == "ValueMap"
    helpers.drop_layers()
